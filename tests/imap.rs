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
    // The client hung up (the server's writes were refused): it could not push more than the
    // line bound plus socket buffers, out of the 1 GiB it would have sent.
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
    // It never sent the password in clear: nothing was asked of the server at all, up to the
    // moment it hung up.
    server.hung_up(1).await;
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
/// `+` continuation, AUTHENTICATE without an initial response its empty challenge; an answer
/// that is a challenge (`+ ...`) gets the client's next line appended. (The line
/// reader joins a literal only when its bytes hold no line break, enough for these tests.)
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
        if command.ends_with('}') {
            // The literal's bytes (and the rest of the command) come as the next line; a
            // non-synchronizing literal (`{n+}`, RFC 7888) is not asked for.
            let sync = !command.ends_with("+}");
            *pending = Some((tag, command));
            return match sync {
                true => Action::send("+ go ahead\r\n"),
                false => Action::send(""),
            };
        }
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("AUTHENTICATE") && upper.split(' ').count() == 2 {
            *pending = Some((tag, command));
            return Action::send("+ \r\n");
        }
        let reply = answer(&tag, &command);
        if reply.starts_with('+') {
            // A SASL challenge: the client's answer comes as the next line.
            *pending = Some((tag, command));
        }
        Action::send(reply)
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

/// Logs in over the plain port and stays connected, holding one of Dovecot's per-user+IP slots.
async fn hold_a_session(dc: &Dovecot) -> tokio::net::TcpStream {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", dc.ports.imap))
        .await
        .unwrap();
    let mut r = BufReader::new(tcp);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("* OK"), "{line}");
    r.get_mut()
        .write_all(format!("h1 LOGIN \"{}\" \"{PASSWORD}\"\r\n", common::USER).as_bytes())
        .await
        .unwrap();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).await.unwrap() > 0, "closed");
        if line.starts_with("h1 ") {
            assert!(line.starts_with("h1 OK"), "{line}");
            return r.into_inner();
        }
    }
}

#[tokio::test]
async fn dovecot_connection_limit_at_login_is_server_unavailable_not_auth_rejected() {
    let env = Env::new();
    let dc = Dovecot::start(
        &env.pki,
        Options {
            max_userip_connections: Some(1),
            ..Options::default()
        },
    );
    let _held = hold_a_session(&dc).await;
    let cfg = env.config(&env.imap_target("limit", dc.ports.imaps, ""));
    let o = probe_first(&cfg).await;
    assert_eq!(
        failure(&o),
        ("server_unavailable", "login"),
        "{o:?}\n{}",
        dc.log()
    );
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(detail.contains("NO [LIMIT] "), "{detail}");
    assert!(detail.contains("Maximum number of connections"), "{detail}");
}

#[tokio::test]
async fn rfc5530_codes_at_login_are_classed_by_what_they_mean() {
    let env = Env::new();
    for (code, class) in [
        ("AUTHENTICATIONFAILED", "auth_rejected"),
        ("AUTHORIZATIONFAILED", "auth_rejected"),
        ("EXPIRED", "auth_rejected"),
        ("CONTACTADMIN", "auth_rejected"),
        ("UNAVAILABLE", "server_unavailable"),
        ("LIMIT", "server_unavailable"),
        ("INUSE", "server_unavailable"),
        ("SERVERBUG", "server_unavailable"),
        ("OVERQUOTA", "server_unavailable"),
        ("PRIVACYREQUIRED", "auth_required"),
    ] {
        let server = imaps_fault(
            &env,
            "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready",
            answering(move |tag, cmd| {
                cmd.starts_with("LOGIN")
                    .then(|| format!("{tag} NO [{code}] Refused by policy 42.\r\n"))
            }),
        )
        .await;
        let cfg = env.config(&env.imap_target(&format!("c-{code}"), server.port(), ""));
        let o = probe_first(&cfg).await;
        assert_eq!(failure(&o), (class, "login"), "[{code}]: {o:?}");
        let detail = &o.failure.as_ref().unwrap().detail;
        assert!(
            detail.contains(&format!("NO [{code}] Refused by policy 42.")),
            "{detail}"
        );
    }
}

#[tokio::test]
async fn an_unknown_response_code_at_login_is_said_to_be_unknown() {
    let env = Env::new();
    let server = imaps_fault(
        &env,
        "* OK ready",
        answering(|tag, cmd| {
            cmd.starts_with("LOGIN")
                .then(|| format!("{tag} NO [X-FROBNICATED 7] Try elsewhere\r\n"))
        }),
    )
    .await;
    let cfg = env.config(&env.imap_target("unknown-code", server.port(), ""));
    let o = probe_first(&cfg).await;
    // A NO to LOGIN is a rejected login (RFC 3501 6.2.3) whatever code a client does not know
    // (RFC 3501 7.1: unknown codes are ignored); the detail says the code is not known.
    assert_eq!(failure(&o), ("auth_rejected", "login"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.contains("NO [X-FROBNICATED 7] Try elsewhere"),
        "{detail}"
    );
    assert!(detail.contains("unknown"), "{detail}");
}

#[tokio::test]
async fn gmail_simultaneous_connection_limit_is_server_unavailable_with_the_code_as_sent() {
    let env = Env::new();
    // Gmail's words: https://github.com/jstedfast/MailKit/issues/377,
    // https://github.com/zone-eu/wildduck/issues/35 ("Too many simultaneous connections",
    // Gmail Help answer 97150).
    let server = imaps_fault(
        &env,
        "* OK Gimap ready for requests from 127.0.0.1 x2mb241876667wmk",
        answering(|tag, cmd| {
            cmd.starts_with("LOGIN").then(|| {
                format!("{tag} NO [ALERT] Too many simultaneous connections. (Failure)\r\n")
            })
        }),
    )
    .await;
    let cfg = env.config(&env.imap_target("gmail-limit", server.port(), ""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("server_unavailable", "login"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.contains("NO [ALERT] Too many simultaneous connections. (Failure)"),
        "{detail}"
    );
}

#[tokio::test]
async fn gmail_web_login_required_is_a_policy_refusal_with_the_webalert_link_in_the_detail() {
    let env = Env::new();
    // As Gmail sends it: https://github.com/pmengal/MailSystem.NET/issues/17,
    // https://github.com/MailCore/mailcore2/issues/876.
    const LINK: &str = "https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgnsbttoGtD4OMtfxi7uAy8s84fzfawSNIPPED";
    let server = imaps_fault(
        &env,
        "* OK Gimap ready for requests from 127.0.0.1 x2mb241876667wmk",
        answering(|tag, cmd| {
            cmd.starts_with("LOGIN").then(|| {
                format!(
                    "* NO [WEBALERT {LINK}] Web login required.\r\n{tag} NO [ALERT] Please log in \
                     via your web browser: https://support.google.com/mail/accounts/answer/78754 (Failure)\r\n"
                )
            })
        }),
    )
    .await;
    let cfg = env.config(&env.imap_target("gmail-web", server.port(), ""));
    let o = probe_first(&cfg).await;
    // Google's policy blocked the sign-in (as SMTP's 5.7.14 says): a browser sign-in fixes it.
    assert_eq!(failure(&o), ("auth_policy", "login"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.contains("NO [ALERT] Please log in via your web browser"),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("[WEBALERT {LINK}] Web login required.")),
        "{detail}"
    );
}

#[tokio::test]
async fn exchange_throttling_at_login_and_at_select_is_server_unavailable() {
    let env = Env::new();
    // Exchange Online's words (imapsync's FAQ.Office365, quoted in
    // https://github.com/imapsync/imapsync/issues/272; https://github.com/ikvk/imap_tools/issues/135;
    // https://github.com/simonrob/email-oauth2-proxy/issues/191).
    const THROTTLED: &str = "Request is throttled. Suggested Backoff Time: 299961 milliseconds";
    let exchange = "* OK The Microsoft Exchange IMAP4 service is ready. \
                    [QgBZADIAUABSADEAMQBDAEEAMAAwADcAMAAuAG4AYQBtAHAAcgBkADEAMQAuAHAAcgBvAGQALgBvAHUAdABsAG8AbwBrAC4AYwBvAG0A]";
    let at_login = imaps_fault(
        &env,
        exchange,
        answering(|tag, cmd| {
            cmd.starts_with("LOGIN")
                .then(|| format!("{tag} NO {THROTTLED}\r\n"))
        }),
    )
    .await;
    let at_select = imaps_fault(
        &env,
        exchange,
        answering(|tag, cmd| {
            cmd.starts_with("SELECT")
                .then(|| format!("{tag} BAD {THROTTLED}\r\n* BYE Connection closed. 14\r\n"))
        }),
    )
    .await;
    for (server, phase) in [(&at_login, "login"), (&at_select, "select")] {
        let cfg = env.config(&env.imap_target(&format!("throttled-{phase}"), server.port(), ""));
        let o = probe_first(&cfg).await;
        assert_eq!(failure(&o), ("server_unavailable", phase), "{o:?}");
        let detail = &o.failure.as_ref().unwrap().detail;
        assert!(detail.contains(THROTTLED), "{detail}");
        // The Exchange diagnostic stamp in the greeting is base64 but no secret: never redacted.
        assert!(
            o.banner.as_deref().unwrap_or("").contains("QgBZADIA"),
            "{:?}",
            o.banner
        );
    }
}

#[tokio::test]
async fn gmail_connection_limit_at_select_is_server_unavailable_not_mailbox_error() {
    let env = Env::new();
    let server = imaps_fault(
        &env,
        "* OK Gimap ready",
        answering(|tag, cmd| {
            cmd.starts_with("SELECT").then(|| {
                format!("{tag} NO [ALERT] Too many simultaneous connections. (Failure)\r\n")
            })
        }),
    )
    .await;
    let cfg = env.config(&env.imap_target("gmail-select", server.port(), ""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("server_unavailable", "select"), "{o:?}");
}

#[tokio::test]
async fn exchange_bad_at_select_after_an_xoauth2_login_is_mailbox_error() {
    let env = Env::new();
    // The app signed in, but has no access to the mailbox (no Add-MailboxPermission): Exchange
    // answers the first command after AUTHENTICATE with BAD (https://github.com/jstedfast/MailKit/issues/1135,
    // https://github.com/Webklex/php-imap/issues/450, https://github.com/simonrob/email-oauth2-proxy/issues/275).
    let server = imaps_fault(
        &env,
        "* OK The Microsoft Exchange IMAP4 service is ready.",
        answering(|tag, cmd| {
            if cmd.starts_with("AUTHENTICATE") {
                Some(format!("{tag} OK AUTHENTICATE completed.\r\n"))
            } else if cmd.starts_with("SELECT") {
                Some(format!(
                    "{tag} BAD User is authenticated but not connected.\r\n"
                ))
            } else {
                None
            }
        }),
    )
    .await;
    let (t, _tokens) = xoauth2_target(&env, "exo-app", server.port()).await;
    let o = probe_first(&env.config(&t)).await;
    assert_eq!(failure(&o), ("mailbox_error", "select"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.contains("BAD User is authenticated but not connected."),
        "{detail}"
    );
}

/// A client-credentials `[target.oauth2]` IMAP target against `port`, with its token server.
async fn xoauth2_target(
    env: &Env,
    name: &str,
    port: u16,
) -> (String, mailprobe_testpeers::oauth::TokenServer) {
    use mailprobe_testpeers::oauth::{Client, TokenServer};
    let tokens = TokenServer::start(&env.pki.valid, Duration::from_secs(3600)).await;
    tokens.add_client(
        "app",
        Client {
            secret: Some("app-Secret-42".into()),
            assertion_key: None,
            user: common::USER.into(),
        },
    );
    let secret = env.secret(&format!("{name}.secret"), "app-Secret-42");
    let t = format!(
        "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\n\
         port = {port}\nca_file = \"{ca}\"\nusername = \"{}\"\nauth = \"oauth2\"\nauth_mechanism = \"xoauth2\"\n\
         [target.oauth2]\ntoken_url = \"{}\"\nclient_id = \"app\"\nclient_secret_file = \"{}\"\n\
         scopes = [\"mail\"]\nca_file = \"{ca}\"\n",
        common::USER,
        tokens.token_url,
        secret.display(),
        ca = env.pki.ca.display(),
    );
    (t, tokens)
}

#[tokio::test]
async fn gmail_connection_limit_after_an_xoauth2_error_challenge_is_server_unavailable() {
    let env = Env::new();
    // Gmail's answer to XOAUTH2 at its connection limit: an error challenge first, then the
    // limit (the protocol log in https://github.com/jstedfast/MailKit/issues/377).
    let server = imaps_fault(
        &env,
        "* OK Gimap ready for requests from 127.0.0.1",
        answering(|tag, cmd| {
            if cmd.starts_with("AUTHENTICATE XOAUTH2 ") && cmd.ends_with(' ') {
                Some(format!(
                    "{tag} NO [ALERT] Too many simultaneous connections. (Failure)\r\n"
                ))
            } else if cmd.starts_with("AUTHENTICATE XOAUTH2 ") {
                Some(
                    "+ eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==\r\n"
                        .to_string(),
                )
            } else {
                None
            }
        }),
    )
    .await;
    let (t, _tokens) = xoauth2_target(&env, "gmail-xoauth2", server.port()).await;
    let o = probe_first(&env.config(&t)).await;
    assert_eq!(failure(&o), ("server_unavailable", "login"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.contains("NO [ALERT] Too many simultaneous connections. (Failure)"),
        "{detail}"
    );
    assert!(detail.contains("status 400"), "{detail}");
    assert!(!detail.contains("token rejected"), "{detail}");
}

#[tokio::test]
async fn a_refused_select_shows_the_servers_words() {
    let env = Env::new();
    let dc = dovecot(&env);
    let cfg = env.config(&env.imap_target(
        "nobox-words",
        dc.ports.imaps,
        "mailbox = \"Does-Not-Exist\"",
    ));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("mailbox_error", "select"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(detail.starts_with("IMAP NO "), "{detail}");
    assert!(
        detail.contains("Mailbox doesn't exist: Does-Not-Exist"),
        "{detail}"
    );
    assert!(!detail.contains("Outcome"), "{detail}");
}

#[tokio::test]
async fn logindisabled_without_tls_is_auth_required_and_the_password_is_not_sent() {
    let env = Env::new();
    // Dovecot's greeting on a connection it does not consider secure (disable_plaintext_auth);
    // the real Dovecot of these tests treats loopback as secure, so a fault server replays it.
    let server = FaultServer::start(imap_script(
        "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS \
         LOGINDISABLED] Dovecot (Debian) ready.",
        answering(|tag, cmd| {
            cmd.starts_with("LOGIN").then(|| {
                format!(
                    "{tag} NO [PRIVACYREQUIRED] Plaintext authentication disallowed on \
                     non-secure (SSL/TLS) connections.\r\n"
                )
            })
        }),
    ))
    .await;
    let t = common::without_ca(env.imap_target(
        "logindisabled",
        server.port(),
        "tls = \"none\"\nallow_plaintext = true",
    ));
    let o = probe_first(&env.config(&t)).await;
    assert_eq!(failure(&o), ("auth_required", "login"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(detail.contains("LOGINDISABLED"), "{detail}");
    server.hung_up(1).await;
    let received = server.received();
    assert!(
        received.iter().all(|l| !l.contains(PASSWORD)),
        "{received:?}"
    );
}

#[tokio::test]
async fn logindisabled_learnt_from_capability_keeps_the_password_back() {
    let env = Env::new();
    // No capabilities in the greeting: the probe must ask before it sends LOGIN.
    let server = FaultServer::start(imap_script(
        "* OK ready",
        answering(|tag, cmd| {
            cmd.eq_ignore_ascii_case("CAPABILITY").then(|| {
                format!("* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n{tag} OK done\r\n")
            })
        }),
    ))
    .await;
    let t = common::without_ca(env.imap_target(
        "capa-logindisabled",
        server.port(),
        "tls = \"none\"\nallow_plaintext = true",
    ));
    let o = probe_first(&env.config(&t)).await;
    assert_eq!(failure(&o), ("auth_required", "login"), "{o:?}");
    server.hung_up(1).await;
    let received = server.received();
    assert!(
        received
            .iter()
            .all(|l| !l.to_ascii_uppercase().contains("LOGIN \"") && !l.contains(PASSWORD)),
        "{received:?}"
    );
}

#[tokio::test]
async fn a_non_ascii_password_goes_as_a_literal_never_as_raw_bytes_in_quotes() {
    let env = Env::new();
    let password = "pässwörd-Ünïcode";
    for (caps, plus) in [("IMAP4rev1", false), ("IMAP4rev1 LITERAL+", true)] {
        let server = imaps_fault(
            &env,
            &format!("* OK [CAPABILITY {caps}] ready"),
            answering(move |tag, cmd| {
                cmd.starts_with("LOGIN").then(|| {
                    // The literal form joined back: LOGIN "user" {n}password
                    if cmd.ends_with(password) {
                        format!("{tag} OK logged in\r\n")
                    } else {
                        format!("{tag} NO [AUTHENTICATIONFAILED] wrong form: {cmd}\r\n")
                    }
                })
            }),
        )
        .await;
        let name = if plus { "literal-plus" } else { "literal" };
        let t = target_with_password(&env, name, server.port(), "", password);
        let o = probe_first(&env.config(&t)).await;
        assert!(o.success(), "{o:?}");
        server.hung_up(1).await;
        let received = server.received();
        let n = password.len();
        let literal = if plus {
            format!("{{{n}+}}")
        } else {
            format!("{{{n}}}")
        };
        assert!(
            received
                .iter()
                .any(|l| l.contains("LOGIN \"probe@example.test\" ") && l.ends_with(&literal)),
            "{received:?}"
        );
        assert!(
            !received
                .iter()
                .any(|l| l.contains(&format!("\"{password}\""))),
            "{received:?}"
        );
    }
}

#[tokio::test]
async fn a_non_ascii_password_logs_in_to_real_dovecot() {
    let env = Env::new();
    let password = "pässwörd-Ünïcode";
    let dc = Dovecot::start(
        &env.pki,
        Options {
            extra_users: vec![("unicode@example.test".into(), password.into())],
            ..Options::default()
        },
    );
    for mech in ["login", "plain"] {
        let t = target_with_password(
            &env,
            &format!("unicode-{mech}"),
            dc.ports.imaps,
            &format!("auth_mechanism = \"{mech}\""),
            password,
        )
        .replace(common::USER, "unicode@example.test");
        let o = probe_first(&env.config(&t)).await;
        assert!(o.success(), "{mech}: {o:?}\n{}", dc.log());
    }
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
