//! The IMAP probe against a real Dovecot and against fault servers.

mod common;

use std::time::Duration;

use common::{Env, PASSWORD, failure, phases, probe_first};
use mailprobe::probe::Phase::*;
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use mailprobe_testpeers::fault::{Action, FaultServer, Script};

fn dovecot(env: &Env) -> Dovecot {
    Dovecot::start(&env.pki, Options::default())
}

#[tokio::test]
async fn imaps_login_succeeds_with_every_phase_in_order() {
    let env = Env::new();
    let dc = dovecot(&env);
    let cfg = env.config(&env.imap_target("imaps", dc.ports.imaps, "server_name = \"localhost\""));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}\n{}", dc.log());
    assert_eq!(
        phases(&o),
        [Dns, Connect, Tls, Greeting, Login, Select, Logout]
    );
    let tls = o.tls.as_ref().expect("tls facts");
    assert!(
        tls.version
            .as_deref()
            .is_some_and(|v| v.starts_with("TLS 1.")),
        "{tls:?}"
    );
    assert_eq!(
        tls.cert.as_ref().unwrap().not_after,
        env.pki.valid.not_after
    );
    assert!(
        o.banner.as_deref().unwrap_or("").contains("ready"),
        "{:?}",
        o.banner
    );
    let sum: Duration = o.phases.iter().map(|p| p.duration).sum();
    assert!(sum <= o.total, "phases fit inside the total");
}

#[tokio::test]
async fn starttls_login_succeeds_with_every_phase_in_order() {
    let env = Env::new();
    let dc = dovecot(&env);
    let cfg = env.config(
        &env.imap_target(
            "starttls",
            dc.ports.imap,
            "tls = \"starttls\"\nhost = \"localhost\"",
        )
        .replace("host = \"127.0.0.1\"\n", ""),
    );
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}\n{}", dc.log());
    assert_eq!(
        phases(&o),
        [Dns, Connect, Greeting, Starttls, Tls, Login, Select, Logout]
    );
    assert!(o.tls.as_ref().unwrap().version.is_some());
}

#[tokio::test]
async fn authenticate_plain_succeeds() {
    let env = Env::new();
    let dc = dovecot(&env);
    let cfg = env.config(&env.imap_target("plain", dc.ports.imaps, "auth_mechanism = \"plain\""));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}\n{}", dc.log());
}

#[tokio::test]
async fn wrong_password_is_auth_rejected_at_login() {
    let env = Env::new();
    let dc = dovecot(&env);
    let t = env.imap_target("wrongpw", dc.ports.imaps, "");
    let bad = env.secret("bad.pass", "not-the-password");
    let t = t.replace(
        &env.dir.path().join("wrongpw.pass").display().to_string(),
        &bad.display().to_string(),
    );
    let cfg = env.config(&t);
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("auth_rejected", "login"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(detail.contains("AUTHENTICATIONFAILED"), "{detail}");
    assert!(!detail.contains("not-the-password"));
}

#[tokio::test]
async fn missing_mailbox_is_mailbox_error_at_select() {
    let env = Env::new();
    let dc = dovecot(&env);
    let cfg = env.config(&env.imap_target("nobox", dc.ports.imaps, "mailbox = \"Does-Not-Exist\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("mailbox_error", "select"), "{o:?}");
}

#[tokio::test]
async fn closed_port_is_connect_refused() {
    let env = Env::new();
    let port = mailprobe_testpeers::util::free_port();
    let cfg = env.config(&env.imap_target("closed", port, ""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("connect_refused", "connect"), "{o:?}");
    assert_eq!(phases(&o), [Dns, Connect]);
}

#[tokio::test]
async fn certificate_for_another_name_is_tls_cert_invalid() {
    let env = Env::new();
    let dc = dovecot(&env);
    let cfg = env.config(&env.imap_target(
        "othername",
        dc.ports.imaps,
        "server_name = \"mail.example.net\"",
    ));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("tls_cert_invalid", "tls"), "{o:?}");
    // The certificate is still reported, so the admin sees which one was served.
    assert_eq!(
        o.tls.unwrap().cert.unwrap().not_after,
        env.pki.valid.not_after
    );
}

#[tokio::test]
async fn untrusted_ca_is_tls_cert_invalid() {
    let env = Env::new();
    let dc = dovecot(&env);
    let other = mailprobe_testpeers::pki::TestPki::generate(&env.dir.path().join("other-pki"));
    let t = env.imap_target("untrusted", dc.ports.imaps, "").replace(
        &env.pki.ca.display().to_string(),
        &other.ca.display().to_string(),
    );
    let o = probe_first(&env.config(&t)).await;
    assert_eq!(failure(&o), ("tls_cert_invalid", "tls"), "{o:?}");
}

#[tokio::test]
async fn expired_certificate_is_tls_cert_expired() {
    let env = Env::new();
    let server = FaultServer::start_tls(
        Script::just(Action::send("* OK ready\r\n")),
        env.pki.expired.server_config(&[]),
    )
    .await;
    let cfg = env.config(&env.imap_target("expired", server.port(), ""));
    let o = probe_first(&cfg).await;
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
    let cfg = env.config(&env.imap_target(
        "silent",
        server.port(),
        "tls = \"starttls\"\ntimeout = \"1s\"",
    ));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("greeting_timeout", "greeting"), "{o:?}");
    // Never outlives its deadline (generous margin for a loaded CI machine).
    assert!(o.total < Duration::from_millis(2500), "{:?}", o.total);
    assert!(o.phase(Greeting).unwrap() >= Duration::from_millis(900));
}

#[tokio::test]
async fn silent_tls_server_times_out_in_tls_phase() {
    let env = Env::new();
    let server = FaultServer::start(Script::just(Action::Hang)).await;
    let cfg = env.config(&env.imap_target("silent-tls", server.port(), "timeout = \"1s\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("timeout", "tls"), "{o:?}");
}

#[tokio::test]
async fn garbage_greeting_is_protocol_error() {
    let env = Env::new();
    let server = FaultServer::start(Script::just(Action::send(
        "HTTP/1.1 400 Bad Request\r\n\r\n",
    )))
    .await;
    let cfg = env.config(&env.imap_target("garbage", server.port(), "tls = \"starttls\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("protocol_error", "greeting"), "{o:?}");
}

#[tokio::test]
async fn endless_line_is_protocol_error_and_reading_stops() {
    let env = Env::new();
    let server = FaultServer::start(Script::just(Action::Endless {
        prefix: b"* OK ".to_vec(),
        chunk: vec![b'A'; 16 * 1024],
    }))
    .await;
    let cfg = env.config(&env.imap_target(
        "endless",
        server.port(),
        "tls = \"starttls\"\ntimeout = \"10s\"",
    ));
    let o = probe_first(&cfg).await;
    // protocol_error, not timeout: the bound stopped it, not the deadline.
    assert_eq!(failure(&o), ("protocol_error", "greeting"), "{o:?}");
    assert!(o.failure.unwrap().detail.contains("longer than"));
    // The client hung up: the server could not push more than the line bound plus socket
    // buffers, out of the 1 GiB it would have sent.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = server
        .bytes_written
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        sent < 32 << 20,
        "server sent {sent} bytes before the client hung up"
    );
}

#[tokio::test]
async fn endless_stream_of_short_lines_hits_the_session_bound() {
    let env = Env::new();
    let server = FaultServer::start(Script::new(
        Action::send("* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"),
        |line| {
            let tag = line.split(' ').next().unwrap_or("*").to_string();
            if line.contains("STARTTLS") {
                Action::Endless {
                    prefix: Vec::new(),
                    chunk: b"* OK still going\r\n".repeat(1000),
                }
            } else {
                Action::send(format!("{tag} BAD\r\n"))
            }
        },
    ))
    .await;
    let cfg = env.config(&env.imap_target(
        "chatty",
        server.port(),
        "tls = \"starttls\"\ntimeout = \"10s\"",
    ));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("protocol_error", "starttls"), "{o:?}");
    assert!(o.failure.unwrap().detail.contains("more than"));
}

#[tokio::test]
async fn starttls_not_advertised_is_starttls_unavailable() {
    let env = Env::new();
    let server = FaultServer::start(Script::new(
        Action::send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] no tls here\r\n"),
        |line| {
            let tag = line.split(' ').next().unwrap_or("*");
            Action::send(format!("{tag} BAD unknown command\r\n"))
        },
    ))
    .await;
    let cfg = env.config(&env.imap_target("notls", server.port(), "tls = \"starttls\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("starttls_unavailable", "starttls"), "{o:?}");
    // It never sent the password in clear: nothing was asked of the server at all.
    assert!(server.received().is_empty(), "{:?}", server.received());
}

#[tokio::test]
async fn starttls_refused_by_real_dovecot_without_tls_is_starttls_unavailable() {
    let env = Env::new();
    let dc = Dovecot::start(
        &env.pki,
        Options {
            starttls: false,
            ..Options::default()
        },
    );
    let cfg = env.config(&env.imap_target("dovecot-notls", dc.ports.imap, "tls = \"starttls\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("starttls_unavailable", "starttls"), "{o:?}");
}

#[tokio::test]
async fn starttls_refused_when_not_in_greeting_capabilities() {
    let env = Env::new();
    let server = FaultServer::start(Script::new(Action::send("* OK hi\r\n"), |line| {
        let tag = line.split(' ').next().unwrap_or("*");
        Action::send(format!("{tag} NO STARTTLS not available\r\n"))
    }))
    .await;
    let cfg = env.config(&env.imap_target("refuses", server.port(), "tls = \"starttls\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("starttls_unavailable", "starttls"), "{o:?}");
}

#[tokio::test]
async fn bye_greeting_is_server_unavailable() {
    let env = Env::new();
    let server = FaultServer::start(Script::just(Action::SendAndClose(
        b"* BYE Too many connections, try again later\r\n".to_vec(),
    )))
    .await;
    let cfg = env.config(&env.imap_target("bye", server.port(), "tls = \"starttls\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("server_unavailable", "greeting"), "{o:?}");
    assert!(o.failure.unwrap().detail.contains("Too many connections"));
}

#[tokio::test]
async fn unavailable_login_is_server_unavailable() {
    let env = Env::new();
    let server = FaultServer::start_tls(
        Script::new(Action::send("* OK ready\r\n"), |line| {
            let tag = line.split(' ').next().unwrap_or("*");
            Action::send(format!("{tag} NO [UNAVAILABLE] Backend down\r\n"))
        }),
        env.pki.valid.server_config(&[]),
    )
    .await;
    let cfg = env.config(&env.imap_target("unavail", server.port(), ""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("server_unavailable", "login"), "{o:?}");
}

#[tokio::test]
async fn immediate_close_is_connection_closed() {
    let env = Env::new();
    let server = FaultServer::start(Script::just(Action::Close)).await;
    let cfg = env.config(&env.imap_target("close", server.port(), "tls = \"starttls\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("connection_closed", "greeting"), "{o:?}");
}

#[tokio::test]
async fn nonexistent_name_is_dns_nxdomain() {
    let env = Env::new();
    let t = env
        .imap_target("nx", 993, "")
        .replace("host = \"127.0.0.1\"", "host = \"no-such-host.invalid\"");
    let o = probe_first(&env.config(&t)).await;
    assert_eq!(failure(&o), ("dns_nxdomain", "dns"), "{o:?}");
}

#[tokio::test]
async fn a_server_echoing_the_password_never_gets_it_into_the_detail() {
    let env = Env::new();
    let server = FaultServer::start_tls(
        Script::new(Action::send("* OK ready\r\n"), {
            // AUTHENTICATE gets a continuation; the blob that follows is echoed under its tag.
            let pending = std::sync::Mutex::new(None::<String>);
            move |line| {
                let mut pending = pending.lock().unwrap();
                if line.contains("AUTHENTICATE") {
                    *pending = line.split(' ').next().map(str::to_string);
                    return Action::send("+ \r\n");
                }
                let tag = pending
                    .take()
                    .unwrap_or_else(|| line.split(' ').next().unwrap_or("*").to_string());
                Action::send(format!("{tag} NO you said: {line}\r\n"))
            }
        }),
        env.pki.valid.server_config(&[]),
    )
    .await;
    for mech in ["login", "plain"] {
        let cfg = env.config(&env.imap_target(
            &format!("echo-{mech}"),
            server.port(),
            &format!("auth_mechanism = \"{mech}\""),
        ));
        let o = probe_first(&cfg).await;
        let f = o.failure.as_ref().expect("fails");
        // The server was really sent the password, in the form of the mechanism under test.
        let plain = base64(&format!("\0{}\0{PASSWORD}", common::USER));
        let sent = server.received();
        assert!(
            sent.iter().any(|l| match mech {
                "login" => l.ends_with(&format!(" \"{PASSWORD}\"")),
                _ => *l == plain,
            }),
            "{mech}: {sent:?}"
        );
        assert!(!f.detail.contains(PASSWORD), "{}", f.detail);
        assert!(!f.detail.contains(&plain), "{}", f.detail);
        assert!(f.detail.contains("[REDACTED]"), "{}", f.detail);
        assert!(
            !format!("{o:?}").contains(PASSWORD),
            "Debug of the outcome leaks"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// What a server answers is classed for what it means (RFC 5530 codes, providers' own wording),
// the detail keeps it as sent, and the password never leaks in any of its wire forms.

/// A scripted IMAP server speaking just enough of the protocol for a probe: it greets with
/// `greeting` and gives every complete command (tag, then the command with any literal joined in
/// and an AUTHENTICATE's answer appended) to `answer`, which returns the lines to send back
/// (untagged ones and the tagged completion, CRLF-terminated). A synchronizing literal gets its
/// `+` continuation, AUTHENTICATE without an initial response its empty challenge.
fn imap_script(
    greeting: &str,
    answer: impl Fn(&str, &str) -> String + std::marker::Send + Sync + 'static,
) -> Script {
    // (tag, the command so far) while a literal or an AUTHENTICATE answer is awaited.
    let pending = std::sync::Mutex::new(None::<(String, String)>);
    Script::new(Action::send(format!("{greeting}\r\n")), move |line| {
        let mut pending = pending.lock().unwrap();
        let (tag, command) = match pending.take() {
            Some((tag, so_far)) if so_far.starts_with("AUTHENTICATE") => {
                (tag, format!("{so_far} {line}"))
            }
            Some((tag, so_far)) => (tag, format!("{so_far}{line}")),
            None => {
                let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
                (tag.to_string(), rest.to_string())
            }
        };
        if command.ends_with('}') && !command.ends_with("+}") {
            *pending = Some((tag, command));
            return Action::send("+ go ahead\r\n");
        }
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("AUTHENTICATE") && upper.split(' ').count() == 2 {
            *pending = Some((tag, command));
            return Action::send("+ \r\n");
        }
        Action::send(answer(&tag, &command))
    })
}

/// The usual answers: OK to everything but what `special` answers (given tag and command).
fn answering(
    special: impl Fn(&str, &str) -> Option<String> + std::marker::Send + Sync + 'static,
) -> impl Fn(&str, &str) -> String + std::marker::Send + Sync + 'static {
    move |tag, command| {
        special(tag, command).unwrap_or_else(|| {
            if command.to_ascii_uppercase().starts_with("LOGOUT") {
                format!("* BYE bye\r\n{tag} OK done\r\n")
            } else {
                format!("{tag} OK done\r\n")
            }
        })
    }
}

/// An IMAPS fault server greeting with `greeting` and answering with `answer`.
async fn imaps_fault(
    env: &Env,
    greeting: &str,
    answer: impl Fn(&str, &str) -> String + std::marker::Send + Sync + 'static,
) -> FaultServer {
    FaultServer::start_tls(
        imap_script(greeting, answer),
        env.pki.valid.server_config(&[]),
    )
    .await
}

/// An IMAP target logging in with `password` instead of the test password.
fn target_with_password(env: &Env, name: &str, port: u16, extra: &str, password: &str) -> String {
    let t = env.imap_target(name, port, extra);
    let own = env.secret(&format!("{name}.own.pass"), password);
    t.replace(
        &env.dir
            .path()
            .join(format!("{name}.pass"))
            .display()
            .to_string(),
        &own.display().to_string(),
    )
}

#[tokio::test]
async fn a_password_echoed_in_any_wire_form_is_redacted() {
    let env = Env::new();
    // Every form the password takes on the wire: IMAP-quoted with its quote and backslash
    // escaped, a literal, and base64 inside AUTHENTICATE PLAIN.
    for (name, password, mech) in [
        ("quoted", r#"Pw"Quo\te-secret"#, "login"),
        ("literal", "pässwörd-Ünïcode", "login"),
        ("plain", r#"Pw"Quo\te-secret"#, "plain"),
    ] {
        let server = imaps_fault(
            &env,
            "* OK ready",
            answering(|tag, cmd| {
                (!cmd.starts_with("LOGOUT")).then(|| format!("{tag} NO you said: {cmd}\r\n"))
            }),
        )
        .await;
        let t = target_with_password(
            &env,
            &format!("echo-{name}"),
            server.port(),
            &format!("auth_mechanism = \"{mech}\""),
            password,
        );
        let o = probe_first(&env.config(&t)).await;
        let f = o.failure.as_ref().expect("fails");
        let escaped = password.replace('\\', "\\\\").replace('"', "\\\"");
        let plain = base64(&format!("\0{}\0{password}", common::USER));
        let sent = server.received().join("\n");
        // The server really was sent the password in the form under test.
        let form_sent = match name {
            "quoted" => sent.contains(&format!("\"{escaped}\"")),
            "literal" => sent.contains(password),
            _ => sent.contains(&plain),
        };
        assert!(form_sent, "{name}: {sent}");
        for form in [password, escaped.as_str(), plain.as_str()] {
            assert!(!f.detail.contains(form), "{name}: {form} in {}", f.detail);
        }
        assert!(f.detail.contains("[REDACTED]"), "{name}: {}", f.detail);
    }
}

#[tokio::test]
async fn an_echo_crossing_the_detail_bound_leaks_no_part_of_the_password() {
    let env = Env::new();
    // The echo starts at every offset that puts the password across the detail's bound.
    const BOUND: usize = mailprobe::probe::DETAIL_MAX;
    for offset in BOUND - 60..BOUND - 20 {
        let server = imaps_fault(
            &env,
            "* OK ready",
            answering(move |tag, cmd| {
                cmd.starts_with("LOGIN")
                    .then(|| format!("{tag} NO {}{cmd}\r\n", "x".repeat(offset)))
            }),
        )
        .await;
        let o =
            probe_first(&env.config(&env.imap_target(&format!("cut-{offset}"), server.port(), "")))
                .await;
        let f = o.failure.as_ref().expect("fails");
        for n in 4..=PASSWORD.len() {
            assert!(
                !f.detail.contains(&PASSWORD[..n]),
                "offset {offset}: {} leaks {:?}",
                f.detail,
                &PASSWORD[..n]
            );
        }
    }
}

#[tokio::test]
async fn a_short_password_is_redacted_where_the_protocol_put_it_not_inside_words() {
    let env = Env::new();
    let server = imaps_fault(
        &env,
        "* OK ready",
        answering(|tag, cmd| {
            cmd.starts_with("LOGIN").then(|| {
                format!("{tag} NO [AUTHENTICATIONFAILED] Login failed within domain for: {cmd}\r\n")
            })
        }),
    )
    .await;
    let t = target_with_password(&env, "short", server.port(), "", "in");
    let o = probe_first(&env.config(&t)).await;
    let detail = &o.failure.as_ref().expect("fails").detail;
    assert!(
        detail.contains(
            "Login failed within domain for: LOGIN \"probe@example.test\" \"[REDACTED]\""
        ),
        "{detail}"
    );
}

fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
