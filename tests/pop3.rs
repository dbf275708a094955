//! The POP3 probe against a real Dovecot POP3 (POP3S and STLS, passwords and OAuth2) and
//! against fault servers for what a real server will not play.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{Env, PASSWORD, USER, failure, phases, probe_first};
use mailprobe::probe::Phase::*;
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use mailprobe_testpeers::fault::{Action, FaultServer, Script};

fn dovecot(env: &Env) -> Dovecot {
    Dovecot::start(&env.pki, Options::default())
}

/// Dovecot's CAPA answer after TLS, replayed by fault servers.
const CAPA: &str = "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n\
                    USER\r\nSASL PLAIN LOGIN\r\n.\r\n";

/// A POP3 server over TLS with the test certificate: greets with `greeting`, answers CAPA as
/// Dovecot does and every other line with what `answer` makes of it (`None`: `-ERR`).
async fn pop3s_fault(
    env: &Env,
    greeting: &str,
    answer: impl Fn(&str) -> Option<String> + std::marker::Send + Sync + 'static,
) -> FaultServer {
    FaultServer::start_tls(
        Script::new(Action::send(format!("{greeting}\r\n")), move |line| {
            if line == "CAPA" {
                return Action::send(CAPA);
            }
            Action::send(answer(line).unwrap_or_else(|| "-ERR what?\r\n".into()))
        }),
        env.pki.valid.server_config(&[]),
    )
    .await
}

#[tokio::test]
async fn pop3s_login_succeeds_with_every_phase_in_order() {
    let env = Env::new();
    let dc = dovecot(&env);
    let cfg = env.config(&env.pop3_target("pop3s", dc.ports.pop3s, "server_name = \"localhost\""));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}\n{}", dc.log());
    assert_eq!(phases(&o), [Dns, Connect, Tls, Greeting, Login, Stat, Quit]);
    let tls = o.tls.as_ref().expect("tls facts");
    assert_eq!(
        tls.cert.as_ref().unwrap().not_after,
        env.pki.valid.not_after
    );
    assert!(
        o.banner.as_deref().unwrap_or("").contains("ready"),
        "{:?}",
        o.banner
    );
    for p in &o.phases {
        assert!(p.duration > Duration::ZERO, "{p:?}");
    }
    let sum: Duration = o.phases.iter().map(|p| p.duration).sum();
    assert!(sum <= o.total, "phases fit inside the total");
}

#[tokio::test]
async fn stls_login_succeeds_with_every_phase_in_order() {
    let env = Env::new();
    let dc = dovecot(&env);
    let cfg = env.config(
        &env.pop3_target(
            "stls",
            dc.ports.pop3,
            "tls = \"starttls\"\nhost = \"localhost\"",
        )
        .replace("host = \"127.0.0.1\"\n", ""),
    );
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}\n{}", dc.log());
    assert_eq!(
        phases(&o),
        [Dns, Connect, Greeting, Starttls, Tls, Login, Stat, Quit]
    );
    assert!(o.tls.as_ref().unwrap().version.is_some());
}

#[tokio::test]
async fn user_and_pass_and_a_long_password_without_initial_response_log_in_to_real_dovecot() {
    let env = Env::new();
    // A password that makes `AUTH PLAIN <initial response>` longer than RFC 5034's 255 octets:
    // the response then waits for Dovecot's empty challenge.
    let long = "Long-Secret-".repeat(20);
    let dc = Dovecot::start(
        &env.pki,
        Options {
            extra_users: vec![("long@example.test".into(), long.clone())],
            ..Options::default()
        },
    );
    let o = probe_first(&env.config(&env.pop3_target(
        "userpass",
        dc.ports.pop3s,
        "auth_mechanism = \"login\"",
    )))
    .await;
    assert!(o.success(), "{o:?}\n{}", dc.log());
    let t = env
        .pop3_target("long", dc.ports.pop3s, "auth_mechanism = \"plain\"")
        .replace(USER, "long@example.test");
    env.secret("long.pass", &long);
    let o = probe_first(&env.config(&t)).await;
    assert!(o.success(), "{o:?}\n{}", dc.log());
}

#[tokio::test]
async fn the_password_goes_by_sasl_plain_where_capa_offers_it_else_by_user_and_pass() {
    let env = Env::new();
    for (name, sasl, first) in [
        ("offered", "SASL PLAIN LOGIN\r\n", "AUTH PLAIN "),
        ("not-offered", "", "USER "),
    ] {
        let capa = format!("+OK\r\nUSER\r\n{sasl}.\r\n");
        let server = FaultServer::start_tls(
            Script::new(Action::send("+OK ready\r\n"), move |line| {
                if line == "CAPA" {
                    Action::send(capa.clone())
                } else if line == "STAT" {
                    Action::send("+OK 0 0\r\n")
                } else {
                    Action::send("+OK\r\n")
                }
            }),
            env.pki.valid.server_config(&[]),
        )
        .await;
        let o = probe_first(&env.config(&env.pop3_target(name, server.port(), ""))).await;
        assert!(o.success(), "{name}: {o:?}");
        server.hung_up(1).await;
        let received = server.received();
        assert!(received[1].starts_with(first), "{name}: {received:?}");
        assert_eq!(
            received.last().map(String::as_str),
            Some("QUIT"),
            "{received:?}"
        );
    }
}

#[tokio::test]
async fn a_probe_of_a_full_maildrop_leaves_every_message_in_it() {
    let env = Env::new();
    let dc = dovecot(&env);
    dc.plant(USER, "Subject: one\n\nbody\n", Duration::from_secs(60));
    dc.plant(USER, "Subject: two\n\nbody\n", Duration::from_secs(60));
    let o = probe_first(&env.config(&env.pop3_target("full", dc.ports.pop3s, ""))).await;
    assert!(o.success(), "{o:?}\n{}", dc.log());
    // STAT and QUIT only: nothing was deleted.
    assert_eq!(dc.mailbox_len(USER), 2);
}

#[tokio::test]
async fn wrong_password_is_auth_rejected_at_login() {
    let env = Env::new();
    let dc = dovecot(&env);
    for mech in ["plain", "login"] {
        let name = format!("wrongpw-{mech}");
        let t = env.pop3_target(
            &name,
            dc.ports.pop3s,
            &format!("auth_mechanism = \"{mech}\""),
        );
        env.secret(&format!("{name}.pass"), "not-the-password");
        let o = probe_first(&env.config(&t)).await;
        assert_eq!(failure(&o), ("auth_rejected", "login"), "{mech}: {o:?}");
        let detail = &o.failure.as_ref().unwrap().detail;
        assert!(detail.contains("-ERR [AUTH]"), "{detail}");
        assert!(!detail.contains("not-the-password"), "{detail}");
    }
}

#[tokio::test]
async fn oauth2_xoauth2_and_oauthbearer_log_in_and_a_revoked_token_is_auth_rejected() {
    use mailprobe::probe::{self, ProbeContext};
    use mailprobe_testpeers::oauth::{Client, TokenServer};
    let env = Env::new();
    let tokens = TokenServer::start(&env.pki.valid, Duration::from_secs(3600)).await;
    tokens.add_client(
        "app",
        Client {
            secret: Some("app-Secret-42".into()),
            assertion_key: None,
            user: USER.into(),
        },
    );
    let dc = Dovecot::start(
        &env.pki,
        Options {
            oauth2_introspection: Some(tokens.introspection_url.clone()),
            ..Options::default()
        },
    );
    let secret = env.secret("app.secret", "app-Secret-42");
    let target = |name: &str, mech: &str| {
        format!(
            "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\n\
             port = {}\nca_file = \"{ca}\"\nusername = \"{USER}\"\nauth = \"oauth2\"\n{mech}\n\
             [target.oauth2]\ntoken_url = \"{}\"\nclient_id = \"app\"\nclient_secret_file = \"{}\"\n\
             scopes = [\"mail\"]\nca_file = \"{ca}\"\n",
            dc.ports.pop3s,
            tokens.token_url,
            secret.display(),
            ca = env.pki.ca.display(),
        )
    };
    for mech in ["xoauth2", "oauthbearer"] {
        let cfg = env.config(&target(
            &format!("pop3-{mech}"),
            &format!("auth_mechanism = \"{mech}\""),
        ));
        let o = probe::run(&cfg.targets[0], &ProbeContext::new()).await;
        assert!(o.success(), "{mech}: {o:?}\n{}", dc.log());
        assert_eq!(
            phases(&o),
            [Token, Dns, Connect, Tls, Greeting, Login, Stat, Quit]
        );
        let login = format!("method={}", mech.to_uppercase());
        assert!(dc.log().contains(&login), "{login}:\n{}", dc.log());
    }
    // The identity provider revokes the token; the cached one is refused by Dovecot after its
    // XOAUTH2 error challenge, which the probe answers with an empty line.
    let cfg = env.config(&target("pop3-revoked", ""));
    let ctx = ProbeContext::new();
    let o = probe::run(&cfg.targets[0], &ctx).await;
    assert!(o.success(), "{o:?}\n{}", dc.log());
    tokens.revoke_all();
    let o = probe::run(&cfg.targets[0], &ctx).await;
    assert_eq!(failure(&o), ("auth_rejected", "login"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(detail.starts_with("token rejected (status 401"), "{detail}");
    assert!(detail.contains("POP3 AUTH: -ERR [AUTH]"), "{detail}");
    assert!(
        !detail.contains("at-"),
        "the token must not appear: {detail}"
    );
}

#[tokio::test]
async fn a_xoauth2_error_challenge_is_answered_with_an_empty_line() {
    let env = Env::new();
    let lines = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = lines.clone();
    let server = pop3s_fault(&env, "+OK ready", move |line| {
        seen.lock().unwrap().push(line.to_string());
        if line == "AUTH XOAUTH2" {
            Some("+ \r\n".into())
        } else if line.is_empty() {
            Some("-ERR [AUTH] Invalid credentials\r\n".into())
        } else {
            // The token itself: refused with Google's JSON challenge.
            Some(
                "+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=\r\n".into(),
            )
        }
    })
    .await;
    let tokens =
        mailprobe_testpeers::oauth::TokenServer::start(&env.pki.valid, Duration::from_secs(3600))
            .await;
    tokens.add_client(
        "app",
        mailprobe_testpeers::oauth::Client {
            secret: Some("app-Secret-42".into()),
            assertion_key: None,
            user: USER.into(),
        },
    );
    let secret = env.secret("app.secret", "app-Secret-42");
    let t = format!(
        "[[target]]\nname = \"xo\"\nregion = \"test\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\n\
         port = {}\nca_file = \"{ca}\"\nusername = \"{USER}\"\nauth = \"oauth2\"\nauth_mechanism = \"xoauth2\"\n\
         [target.oauth2]\ntoken_url = \"{}\"\nclient_id = \"app\"\nclient_secret_file = \"{}\"\n\
         scopes = [\"mail\"]\nca_file = \"{ca}\"\n",
        server.port(),
        tokens.token_url,
        secret.display(),
        ca = env.pki.ca.display(),
    );
    let o = probe_first(&env.config(&t)).await;
    assert_eq!(failure(&o), ("auth_rejected", "login"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.starts_with("token rejected (status 401, scope mail, schemes Bearer)"),
        "{detail}"
    );
    server.hung_up(1).await;
    let lines = lines.lock().unwrap().clone();
    // AUTH with the token as its initial response, then the empty line that answers the error
    // challenge, and nothing more.
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("AUTH XOAUTH2 "), "{lines:?}");
    assert_eq!(lines[1], "");
}

#[tokio::test]
async fn closed_port_is_connect_refused() {
    let env = Env::new();
    let port = mailprobe_testpeers::util::free_port();
    let o = probe_first(&env.config(&env.pop3_target("closed", port, ""))).await;
    assert_eq!(failure(&o), ("connect_refused", "connect"), "{o:?}");
    assert_eq!(phases(&o), [Dns, Connect]);
}

#[tokio::test]
async fn certificate_for_another_name_is_tls_cert_invalid() {
    let env = Env::new();
    let dc = dovecot(&env);
    let cfg = env.config(&env.pop3_target(
        "othername",
        dc.ports.pop3s,
        "server_name = \"mail.example.net\"",
    ));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("tls_cert_invalid", "tls"), "{o:?}");
}

#[tokio::test]
async fn expired_certificate_is_tls_cert_expired() {
    let env = Env::new();
    let server = FaultServer::start_tls(
        Script::just(Action::send("+OK ready\r\n")),
        env.pki.expired.server_config(&[]),
    )
    .await;
    let o = probe_first(&env.config(&env.pop3_target("expired", server.port(), ""))).await;
    assert_eq!(failure(&o), ("tls_cert_expired", "tls"), "{o:?}");
    assert_eq!(
        o.tls.unwrap().cert.unwrap().not_after,
        env.pki.expired.not_after
    );
}

#[tokio::test]
async fn silent_server_is_greeting_timeout_within_the_deadline() {
    let env = Env::new();
    let server = FaultServer::start(Script::just(Action::Hang)).await;
    let cfg = env.config(&env.pop3_target(
        "silent",
        server.port(),
        "tls = \"starttls\"\ntimeout = \"1s\"",
    ));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("greeting_timeout", "greeting"), "{o:?}");
    assert!(o.total < Duration::from_millis(2500), "{:?}", o.total);
    assert!(o.phase(Greeting).unwrap() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_greeting_slower_than_the_timeout_is_greeting_timeout() {
    let env = Env::new();
    let server = FaultServer::start_tls(
        Script::just(Action::Delay(
            Duration::from_secs(5),
            Box::new(Action::send("+OK late\r\n")),
        )),
        env.pki.valid.server_config(&[]),
    )
    .await;
    let cfg = env.config(&env.pop3_target("slow", server.port(), "timeout = \"1s\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("greeting_timeout", "greeting"), "{o:?}");
    assert!(o.total < Duration::from_millis(2500), "{:?}", o.total);
}

#[tokio::test]
async fn reset_after_the_greeting_is_connection_closed() {
    let env = Env::new();
    let server = FaultServer::start(Script::just(Action::Close)).await;
    let cfg = env.config(&env.pop3_target("close", server.port(), "tls = \"starttls\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("connection_closed", "greeting"), "{o:?}");
    // Closed after the password was sent: the same class, in the login phase.
    let server = FaultServer::start_tls(
        Script::new(Action::send("+OK ready\r\n"), |line| {
            if line == "CAPA" {
                Action::send(CAPA)
            } else {
                Action::Close
            }
        }),
        env.pki.valid.server_config(&[]),
    )
    .await;
    let o = probe_first(&env.config(&env.pop3_target("close-login", server.port(), ""))).await;
    assert_eq!(failure(&o), ("connection_closed", "login"), "{o:?}");
}

#[tokio::test]
async fn garbage_greeting_is_protocol_error() {
    let env = Env::new();
    for garbage in [
        "HTTP/1.1 400 Bad Request\r\n\r\n",
        "* OK IMAP4rev1 ready\r\n",
    ] {
        let server = FaultServer::start(Script::just(Action::send(garbage))).await;
        let cfg = env.config(&env.pop3_target("garbage", server.port(), "tls = \"starttls\""));
        let o = probe_first(&cfg).await;
        assert_eq!(
            failure(&o),
            ("protocol_error", "greeting"),
            "{garbage:?}: {o:?}"
        );
        let detail = &o.failure.as_ref().unwrap().detail;
        assert!(detail.contains("not a POP3 +OK or -ERR line"), "{detail}");
    }
}

#[tokio::test]
async fn a_stat_answer_that_is_not_count_and_size_is_protocol_error() {
    let env = Env::new();
    let server = pop3s_fault(&env, "+OK ready", |line| match line {
        "STAT" => Some("+OK lots of mail\r\n".into()),
        _ => Some("+OK\r\n".into()),
    })
    .await;
    let o = probe_first(&env.config(&env.pop3_target("badstat", server.port(), ""))).await;
    assert_eq!(failure(&o), ("protocol_error", "stat"), "{o:?}");
}

#[tokio::test]
async fn endless_line_is_protocol_error_and_reading_stops() {
    let env = Env::new();
    let server = FaultServer::start(Script::just(Action::Endless {
        prefix: b"+OK ".to_vec(),
        chunk: vec![b'A'; 16 * 1024],
    }))
    .await;
    let cfg = env.config(&env.pop3_target(
        "endless",
        server.port(),
        "tls = \"starttls\"\ntimeout = \"10s\"",
    ));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("protocol_error", "greeting"), "{o:?}");
    assert!(o.failure.unwrap().detail.contains("longer than 2048"));
    server.hung_up(1).await;
    let sent = server
        .bytes_written
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        sent < 32 << 20,
        "server sent {sent} bytes before the client hung up"
    );
}

#[tokio::test]
async fn an_endless_capa_answer_is_protocol_error() {
    let env = Env::new();
    let server = FaultServer::start(Script::new(Action::send("+OK ready\r\n"), |line| {
        if line == "CAPA" {
            Action::Endless {
                prefix: b"+OK\r\n".to_vec(),
                chunk: b"X-TAG\r\n".repeat(100),
            }
        } else {
            Action::send("-ERR\r\n")
        }
    }))
    .await;
    let cfg = env.config(&env.pop3_target(
        "endless-capa",
        server.port(),
        "tls = \"starttls\"\ntimeout = \"10s\"",
    ));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("protocol_error", "greeting"), "{o:?}");
    assert!(o.failure.unwrap().detail.contains("longer than 64 lines"));
}

#[tokio::test]
async fn stls_not_advertised_is_starttls_unavailable_and_nothing_more_is_sent() {
    let env = Env::new();
    let server = FaultServer::start(Script::new(Action::send("+OK no tls here\r\n"), |line| {
        if line == "CAPA" {
            Action::send("+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n")
        } else {
            Action::send("-ERR unknown command\r\n")
        }
    }))
    .await;
    let cfg = env.config(&env.pop3_target("nostls", server.port(), "tls = \"starttls\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("starttls_unavailable", "starttls"), "{o:?}");
    server.hung_up(1).await;
    assert_eq!(server.received(), ["CAPA"]);
}

#[tokio::test]
async fn stls_refused_by_real_dovecot_without_tls_is_starttls_unavailable() {
    let env = Env::new();
    let dc = Dovecot::start(
        &env.pki,
        Options {
            starttls: false,
            ..Options::default()
        },
    );
    let cfg = env.config(&env.pop3_target("dovecot-notls", dc.ports.pop3, "tls = \"starttls\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("starttls_unavailable", "starttls"), "{o:?}");
}

#[tokio::test]
async fn err_greeting_is_server_unavailable() {
    let env = Env::new();
    let server = FaultServer::start(Script::just(Action::SendAndClose(
        b"-ERR [SYS/TEMP] Too many connections, try again later\r\n".to_vec(),
    )))
    .await;
    let cfg = env.config(&env.pop3_target("errgreet", server.port(), "tls = \"starttls\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("server_unavailable", "greeting"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.contains("POP3 greeting: -ERR [SYS/TEMP] Too many connections"),
        "{detail}"
    );
}

#[tokio::test]
async fn sys_temp_in_use_and_login_delay_at_login_are_server_unavailable() {
    let env = Env::new();
    for (name, err) in [
        ("sys-temp", "-ERR [SYS/TEMP] Backend down"),
        ("in-use", "-ERR [IN-USE] Unable to lock maildrop"),
        ("login-delay", "-ERR [LOGIN-DELAY] Wait 15 minutes"),
    ] {
        let err = err.to_string();
        let server = pop3s_fault(&env, "+OK ready", move |line| {
            line.starts_with("AUTH PLAIN ")
                .then(|| format!("{err}\r\n"))
        })
        .await;
        let o = probe_first(&env.config(&env.pop3_target(name, server.port(), ""))).await;
        assert_eq!(
            failure(&o),
            ("server_unavailable", "login"),
            "{name}: {o:?}"
        );
    }
    // The same at STAT: the maildrop locked after login.
    let server = pop3s_fault(&env, "+OK ready", |line| {
        Some(if line == "STAT" {
            "-ERR [IN-USE] Mailbox is locked\r\n".into()
        } else {
            "+OK\r\n".into()
        })
    })
    .await;
    let o = probe_first(&env.config(&env.pop3_target("in-use-stat", server.port(), ""))).await;
    assert_eq!(failure(&o), ("server_unavailable", "stat"), "{o:?}");
}

#[tokio::test]
async fn an_err_without_a_code_at_stat_is_unrecognized_never_a_guess() {
    let env = Env::new();
    let server = pop3s_fault(&env, "+OK ready", |line| {
        Some(if line == "STAT" {
            "-ERR [X-FROBNICATED] something odd\r\n".into()
        } else {
            "+OK\r\n".into()
        })
    })
    .await;
    let o = probe_first(&env.config(&env.pop3_target("odd-stat", server.port(), ""))).await;
    assert_eq!(failure(&o), ("unrecognized", "stat"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.contains("X-FROBNICATED is unknown to mailprobe"),
        "{detail}"
    );
}

#[tokio::test]
async fn user_pass_is_not_sent_where_capa_does_not_list_user() {
    let env = Env::new();
    let server = FaultServer::start(Script::new(Action::send("+OK ready\r\n"), |line| {
        if line == "CAPA" {
            // Dovecot's CAPA on a connection it does not take passwords on in clear.
            Action::send("+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nSTLS\r\nSASL\r\n.\r\n")
        } else {
            Action::send("-ERR [AUTH] Plaintext authentication disallowed\r\n")
        }
    }))
    .await;
    let t = common::without_ca(env.pop3_target(
        "nouser",
        server.port(),
        "tls = \"none\"\nallow_plaintext = true",
    ));
    let o = probe_first(&env.config(&t)).await;
    assert_eq!(failure(&o), ("auth_required", "login"), "{o:?}");
    server.hung_up(1).await;
    assert_eq!(server.received(), ["CAPA"]);
}

#[tokio::test]
async fn a_server_echoing_the_password_never_gets_it_into_the_detail() {
    let env = Env::new();
    let server = pop3s_fault(&env, "+OK ready", |line| {
        Some(if line.starts_with("USER") {
            "+OK\r\n".into()
        } else {
            format!("-ERR [AUTH] you said: {line}\r\n")
        })
    })
    .await;
    for mech in ["login", "plain"] {
        let cfg = env.config(&env.pop3_target(
            &format!("echo-{mech}"),
            server.port(),
            &format!("auth_mechanism = \"{mech}\""),
        ));
        let o = probe_first(&cfg).await;
        assert_eq!(failure(&o), ("auth_rejected", "login"), "{o:?}");
        let f = o.failure.as_ref().unwrap();
        let plain = base64(&format!("\0{USER}\0{PASSWORD}"));
        assert!(
            server
                .received()
                .iter()
                .any(|l| *l == format!("PASS {PASSWORD}") || *l == format!("AUTH PLAIN {plain}")),
            "{mech}: {:?}",
            server.received()
        );
        assert!(!f.detail.contains(PASSWORD), "{}", f.detail);
        assert!(!f.detail.contains(&plain), "{}", f.detail);
        assert!(f.detail.contains("[REDACTED]"), "{}", f.detail);
    }
}

fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `mailprobe <args>`: (success, stdout, stderr).
fn mailprobe(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run mailprobe");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mailprobe_probe_runs_a_pop3_target_and_prints_its_phases() {
    let env = Env::new();
    let dc = dovecot(&env);
    std::fs::write(
        env.config_path(),
        env.with_state(&env.pop3_target("pop3s-up", dc.ports.pop3s, "")),
    )
    .unwrap();
    let cfg = env.config_path();
    let (ok, stdout, stderr) = mailprobe(&["check", "-c", cfg.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("127.0.0.1:{}", dc.ports.pop3s)),
        "{stdout}"
    );
    let (ok, stdout, stderr) = mailprobe(&["probe", "-c", cfg.to_str().unwrap()]);
    assert!(ok, "{stdout}{stderr}\n{}", dc.log());
    let row = stdout.lines().find(|l| l.starts_with("pop3s-up ")).unwrap();
    assert!(row.contains(" pop3 ") && row.contains(" ok "), "{row}");
    for p in [
        "dns=",
        "connect=",
        "tls=",
        "greeting=",
        "login=",
        "stat=",
        "quit=",
    ] {
        assert!(row.contains(p), "{row}");
    }
}

#[test]
fn a_key_that_does_not_apply_to_pop3_and_plaintext_without_consent_are_refused() {
    let env = Env::new();
    let cfg = env.config_path();
    for (extra, line, error) in [
        (
            "mailbox = \"INBOX\"",
            9,
            "key `mailbox` does not apply to protocol \"pop3\"",
        ),
        (
            "ehlo_name = \"probe.example.test\"",
            9,
            "key `ehlo_name` does not apply to protocol \"pop3\"",
        ),
        (
            "tls = \"none\"",
            9,
            "tls = \"none\" sends the password in clear text; set allow_plaintext = true",
        ),
    ] {
        let t = common::without_ca(env.pop3_target("p", 110, extra));
        std::fs::write(&cfg, &t).unwrap();
        let (ok, _, stderr) = mailprobe(&["check", "-c", cfg.to_str().unwrap()]);
        assert!(!ok, "{extra}: accepted");
        assert!(
            stderr.contains(&format!(":{line}:")) && stderr.contains(error),
            "{extra}: {stderr}"
        );
    }
    // With the consent the same target is taken, on port 110 by default.
    let t = common::without_ca(env.pop3_target("p", 110, "tls = \"none\"\nallow_plaintext = true"))
        .replace("port = 110\n", "");
    std::fs::write(&cfg, &t).unwrap();
    let (ok, stdout, stderr) = mailprobe(&["check", "-c", cfg.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("127.0.0.1:110"), "{stdout}");
    // And POP3S is on 995 by default.
    let t = env.pop3_target("p", 1, "").replace("port = 1\n", "");
    std::fs::write(&cfg, &t).unwrap();
    let (ok, stdout, stderr) = mailprobe(&["check", "-c", cfg.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("127.0.0.1:995"), "{stdout}");
}

#[test]
fn a_password_with_a_line_break_never_reaches_pass() {
    // USER and PASS carry the password as the rest of a command line: a line break in it would
    // end PASS and send the rest to the server as a command of its own. The secret is refused
    // when the config is read.
    let env = Env::new();
    let cfg = env.config_path();
    let t = env.pop3_target("p", 995, "auth_mechanism = \"login\"");
    env.secret("p.pass", "first-line\r\nDELE 1");
    std::fs::write(&cfg, &t).unwrap();
    let (ok, _, stderr) = mailprobe(&["check", "-c", cfg.to_str().unwrap()]);
    assert!(!ok, "accepted");
    assert!(
        stderr.contains("target[1] \"p\".password_file: the secret must be a single line"),
        "{stderr}"
    );
}
