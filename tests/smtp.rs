//! The SMTP probe against a real Postfix (SASL through Dovecot, delivery over LMTP into the
//! Dovecot mailbox) and against fault servers.

mod common;

use std::time::Duration;

use common::{Env, failure, phases, probe_first};
use mailprobe::probe::Phase::*;
use mailprobe_testpeers::dovecot::{self, Dovecot, Options};
use mailprobe_testpeers::fault::{Action, FaultServer, Script};
use mailprobe_testpeers::postfix::Postfix;

struct Stack {
    dovecot: Dovecot,
    postfix: Postfix,
}

fn stack(env: &Env) -> Stack {
    let dovecot = Dovecot::start(&env.pki, Options::default());
    let postfix = Postfix::start(&env.pki, &dovecot, None);
    Stack { dovecot, postfix }
}

/// A fault SMTP server: greets with 220, answers EHLO with `ehlo` lines, then `rest` decides.
fn smtp_fault(
    ehlo: &'static str,
    rest: impl Fn(&str) -> Action + std::marker::Send + Sync + 'static,
) -> Script {
    Script::new(
        Action::send("220 fault.example.test ESMTP\r\n"),
        move |line| {
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                Action::send(ehlo)
            } else if upper == "QUIT" {
                Action::SendAndClose(b"221 bye\r\n".to_vec())
            } else {
                rest(line)
            }
        },
    )
}

#[tokio::test]
async fn submission_587_starttls_auth_succeeds_with_every_phase() {
    let env = Env::new();
    let s = stack(&env);
    let cfg = env.config(&env.smtp_target("sub", s.postfix.ports.submission, "tls = \"starttls\""));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}\n{}", s.postfix.log());
    assert_eq!(
        phases(&o),
        [
            Dns, Connect, Greeting, Ehlo, Starttls, Tls, EhloTls, Auth, Quit
        ]
    );
    assert_eq!(o.banner.as_deref(), Some("mx.example.test ESMTP Postfix"));
    let tls = o.tls.unwrap();
    assert!(tls.version.is_some());
    assert_eq!(tls.cert.unwrap().not_after, env.pki.valid.not_after);
}

#[tokio::test]
async fn submissions_465_implicit_tls_succeeds() {
    let env = Env::new();
    let s = stack(&env);
    let cfg =
        env.config(&env.smtp_target("subs", s.postfix.ports.submissions, "tls = \"implicit\""));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}\n{}", s.postfix.log());
    assert_eq!(phases(&o), [Dns, Connect, Tls, Greeting, Ehlo, Auth, Quit]);
}

#[tokio::test]
async fn auth_login_mechanism_succeeds() {
    let env = Env::new();
    let s = stack(&env);
    let cfg = env.config(&env.smtp_target(
        "login",
        s.postfix.ports.submission,
        "auth_mechanism = \"login\"",
    ));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}\n{}", s.postfix.log());
}

#[tokio::test]
async fn wrong_password_is_auth_rejected_with_the_enhanced_code_in_the_detail() {
    let env = Env::new();
    let s = stack(&env);
    for mech in ["plain", "login"] {
        let name = format!("wrong-{mech}");
        let bad = env.secret("bad.pass", "not-the-password");
        let t = env
            .smtp_target(
                &name,
                s.postfix.ports.submission,
                &format!("auth_mechanism = \"{mech}\""),
            )
            .replace(
                &env.dir
                    .path()
                    .join(format!("{name}.pass"))
                    .display()
                    .to_string(),
                &bad.display().to_string(),
            );
        let o = probe_first(&env.config(&t)).await;
        assert_eq!(failure(&o), ("auth_rejected", "auth"), "{o:?}");
        let detail = &o.failure.as_ref().unwrap().detail;
        assert!(detail.starts_with("SMTP 535 5.7.8"), "{detail}");
    }
}

#[tokio::test]
async fn a_test_send_arrives_in_the_dovecot_inbox() {
    let env = Env::new();
    let s = stack(&env);
    let cfg = env.config(&env.smtp_target(
        "send",
        s.postfix.ports.submission,
        &format!("send_to = \"{}\"", dovecot::USER),
    ));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}\n{}", s.postfix.log());
    assert_eq!(
        phases(&o),
        [
            Dns, Connect, Greeting, Ehlo, Starttls, Tls, EhloTls, Auth, MailFrom, Rcpt, Data, Quit
        ]
    );
    common::eventually(20, "the test message in the Dovecot INBOX", || async {
        s.dovecot
            .mailbox_contains(dovecot::USER, "X-Mailprobe-Token: ")
            .then_some(())
    })
    .await;
    assert!(
        s.dovecot
            .mailbox_contains(dovecot::USER, "Auto-Submitted: auto-generated")
    );
    assert!(
        s.dovecot
            .mailbox_contains(dovecot::USER, "Subject: mailprobe probe ")
    );
}

#[tokio::test]
async fn an_mx_on_port_25_accepts_a_test_message_without_auth() {
    let env = Env::new();
    let s = stack(&env);
    let cfg = env.config(&env.mx_target(
        "mx",
        s.postfix.ports.smtp,
        &format!(
            "mail_from = \"monitor@elsewhere.test\"\nsend_to = \"{}\"",
            dovecot::OTHER_USER
        ),
    ));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}\n{}", s.postfix.log());
    assert!(!phases(&o).contains(&Auth));
    common::eventually(20, "the MX test message delivered", || async {
        s.dovecot
            .mailbox_contains(dovecot::OTHER_USER, "X-Mailprobe-Token: ")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_unknown_recipient_is_message_rejected_at_rcpt() {
    let env = Env::new();
    let s = stack(&env);
    let cfg = env.config(&env.smtp_target(
        "unknown-rcpt",
        s.postfix.ports.submission,
        "send_to = \"nobody@example.test\"",
    ));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("message_rejected", "rcpt"), "{o:?}");
    assert!(o.failure.unwrap().detail.contains("550 5.1.1"));
}

#[tokio::test]
async fn auth_on_a_port_that_offers_none_is_auth_unavailable() {
    let env = Env::new();
    let s = stack(&env);
    let cfg = env.config(&env.smtp_target("no-auth-offered", s.postfix.ports.smtp, ""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("auth_unavailable", "auth"), "{o:?}");
}

#[tokio::test]
async fn greeting_421_is_server_unavailable() {
    let env = Env::new();
    let server = FaultServer::start(Script::just(Action::SendAndClose(
        b"421 4.3.2 Service shutting down, try later\r\n".to_vec(),
    )))
    .await;
    let o = probe_first(&env.config(&env.smtp_target("g421", server.port(), ""))).await;
    assert_eq!(failure(&o), ("server_unavailable", "greeting"), "{o:?}");
    assert!(o.failure.unwrap().detail.contains("421 4.3.2"));
}

#[tokio::test]
async fn greeting_554_is_server_unavailable() {
    let env = Env::new();
    let server = FaultServer::start(Script::new(
        Action::send("554 5.3.2 No SMTP service here\r\n"),
        |_| Action::send("503 5.5.1 go away\r\n"),
    ))
    .await;
    let o = probe_first(&env.config(&env.smtp_target("g554", server.port(), ""))).await;
    assert_eq!(failure(&o), ("server_unavailable", "greeting"), "{o:?}");
}

#[tokio::test]
async fn missing_starttls_is_starttls_unavailable_and_no_password_is_sent() {
    let env = Env::new();
    let server = FaultServer::start(smtp_fault(
        "250-fault.example.test\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n",
        |_| Action::send("235 2.7.0 ok\r\n"),
    ))
    .await;
    let o = probe_first(&env.config(&env.smtp_target("nostarttls", server.port(), ""))).await;
    assert_eq!(failure(&o), ("starttls_unavailable", "starttls"), "{o:?}");
    assert!(
        server
            .received()
            .iter()
            .all(|l| !l.to_ascii_uppercase().starts_with("AUTH")),
        "{:?}",
        server.received()
    );
}

#[tokio::test]
async fn missing_starttls_with_allow_plaintext_continues_in_clear() {
    let env = Env::new();
    let server = FaultServer::start(smtp_fault(
        "250-fault.example.test\r\n250 AUTH PLAIN\r\n",
        |_| Action::send("235 2.7.0 ok\r\n"),
    ))
    .await;
    let cfg =
        env.config(&env.smtp_target("opportunistic", server.port(), "allow_plaintext = true"));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(phases(&o), [Dns, Connect, Greeting, Ehlo, Auth, Quit]);
}

#[tokio::test]
async fn rcpt_550_is_message_rejected() {
    let env = Env::new();
    let server = FaultServer::start(smtp_fault(
        "250-fault.example.test\r\n250 PIPELINING\r\n",
        |line| {
            if line.to_ascii_uppercase().starts_with("RCPT") {
                Action::send("550 5.1.1 <probe@example.test>: Recipient address rejected\r\n")
            } else {
                Action::send("250 2.1.0 Ok\r\n")
            }
        },
    ))
    .await;
    let cfg = env.config(&common::without_ca(env.mx_target(
        "rcpt550",
        server.port(),
        "tls = \"none\"\nallow_plaintext = true\nmail_from = \"a@example.test\"\nsend_to = \"probe@example.test\"",
    )));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("message_rejected", "rcpt"), "{o:?}");
    assert!(o.failure.unwrap().detail.contains("550 5.1.1"));
}

#[tokio::test]
async fn mail_from_451_is_server_unavailable() {
    let env = Env::new();
    let server = FaultServer::start(smtp_fault("250 fault.example.test\r\n", |_| {
        Action::send("451 4.3.0 Temporary lookup failure\r\n")
    }))
    .await;
    let cfg = env.config(&common::without_ca(env.mx_target(
        "mail451",
        server.port(),
        "tls = \"none\"\nallow_plaintext = true\nmail_from = \"a@example.test\"\nsend_to = \"probe@example.test\"",
    )));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("server_unavailable", "mail_from"), "{o:?}");
}

#[tokio::test]
async fn auth_530_is_auth_required() {
    let env = Env::new();
    let server = FaultServer::start(smtp_fault(
        "250-fault.example.test\r\n250 AUTH PLAIN\r\n",
        |_| Action::send("530 5.7.0 Must issue a STARTTLS command first\r\n"),
    ))
    .await;
    let cfg = env.config(&common::without_ca(env.smtp_target(
        "auth530",
        server.port(),
        "tls = \"none\"\nallow_plaintext = true",
    )));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("auth_required", "auth"), "{o:?}");
}

#[tokio::test]
async fn endless_multiline_reply_is_protocol_error_and_bounded() {
    let env = Env::new();
    let server = FaultServer::start(Script::new(Action::send("220 endless ESMTP\r\n"), |_| {
        Action::Endless {
            prefix: b"250-fault.example.test\r\n".to_vec(),
            chunk: b"250-SIZE 10240000\r\n".repeat(100),
        }
    }))
    .await;
    let cfg = env.config(&env.smtp_target("endless", server.port(), "timeout = \"10s\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("protocol_error", "ehlo"), "{o:?}");
    assert!(o.failure.unwrap().detail.contains("256 lines"));
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
async fn endless_single_line_is_protocol_error() {
    let env = Env::new();
    let server = FaultServer::start(Script::just(Action::Endless {
        prefix: b"220 ".to_vec(),
        chunk: vec![b'x'; 4096],
    }))
    .await;
    let o = probe_first(&env.config(&env.smtp_target("endless-line", server.port(), ""))).await;
    assert_eq!(failure(&o), ("protocol_error", "greeting"), "{o:?}");
}

#[tokio::test]
async fn garbage_greeting_is_protocol_error() {
    let env = Env::new();
    let server = FaultServer::start(Script::just(Action::send("* OK this is IMAP\r\n"))).await;
    let o = probe_first(&env.config(&env.smtp_target("garbage", server.port(), ""))).await;
    assert_eq!(failure(&o), ("protocol_error", "greeting"), "{o:?}");
}

#[tokio::test]
async fn the_password_never_reaches_the_detail_even_when_echoed() {
    let env = Env::new();
    let server = FaultServer::start(smtp_fault(
        "250-fault.example.test\r\n250 AUTH PLAIN LOGIN\r\n",
        |line| Action::send(format!("535 5.7.8 you sent {line}\r\n")),
    ))
    .await;
    for mech in ["plain", "login"] {
        let cfg = env.config(&common::without_ca(env.smtp_target(
            &format!("echo-{mech}"),
            server.port(),
            &format!("tls = \"none\"\nallow_plaintext = true\nauth_mechanism = \"{mech}\""),
        )));
        let o = probe_first(&cfg).await;
        let f = o.failure.as_ref().expect("fails");
        assert_eq!(f.class.as_str(), "auth_rejected");
        if mech == "plain" {
            assert!(f.detail.contains("[REDACTED]"), "{}", f.detail);
        }
        assert!(!f.detail.contains(common::PASSWORD), "{}", f.detail);
    }
    // The LOGIN exchange was answered at the username step; push on to the password step.
    let server = FaultServer::start(smtp_fault("250-x\r\n250 AUTH LOGIN\r\n", {
        let step = std::sync::atomic::AtomicUsize::new(0);
        move |line| match step.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 | 1 => Action::send("334 VXNlcm5hbWU6\r\n"),
            _ => Action::send(format!("535 5.7.8 bad password {line}\r\n")),
        }
    }))
    .await;
    let cfg = env.config(&common::without_ca(env.smtp_target(
        "echo-login-pass",
        server.port(),
        "tls = \"none\"\nallow_plaintext = true\nauth_mechanism = \"login\"",
    )));
    let o = probe_first(&cfg).await;
    let f = o.failure.as_ref().expect("fails");
    assert!(f.detail.contains("[REDACTED]"), "{}", f.detail);
}

#[tokio::test]
async fn sasl_backend_down_makes_postfix_drop_the_connection_after_ehlo() {
    // Postfix asks Dovecot's auth service for its mechanisms when it builds the EHLO reply;
    // with Dovecot gone its smtpd logs "fatal: no SASL authentication mechanisms" and drops us.
    let env = Env::new();
    let mut s = stack(&env);
    s.dovecot.stop();
    let cfg = env.config(&env.smtp_target("sasl-down", s.postfix.ports.submission, ""));
    let o = probe_first(&cfg).await;
    assert_eq!(
        failure(&o),
        ("connection_closed", "ehlo_tls"),
        "{o:?}\n{}",
        s.postfix.log()
    );
    assert!(
        s.postfix
            .log()
            .contains("no SASL authentication mechanisms")
    );
}
