//! The SMTP probe against a real Postfix (SASL through Dovecot, delivery over LMTP into the
//! Dovecot mailbox) and against fault servers.

mod common;

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
    // Everything it sent is in once it hung up.
    server.hung_up(1).await;
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
    // The client hung up: the server's writes were refused.
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

/// Probes a plaintext fault server that offers AUTH and answers the AUTH command with `reply`
/// (the exact bytes a provider sends), with the detail for assertions.
async fn auth_answered_with(env: &Env, name: &str, reply: &'static str) -> (String, String) {
    let server = FaultServer::start(smtp_fault(
        "250-fault.example.test\r\n250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN LOGIN XOAUTH2\r\n",
        move |line| {
            if line.to_ascii_uppercase().starts_with("AUTH") {
                Action::send(reply)
            } else {
                Action::send("250 2.0.0 OK\r\n")
            }
        },
    ))
    .await;
    let cfg = env.config(&common::without_ca(env.smtp_target(
        name,
        server.port(),
        "tls = \"none\"\nallow_plaintext = true",
    )));
    let o = probe_first(&cfg).await;
    let (class, phase) = failure(&o);
    assert_eq!(phase, "auth", "{o:?}");
    (class.to_string(), o.failure.unwrap().detail)
}

/// Exchange Online's answer when SMTP AUTH is turned off for the organisation, as Microsoft's
/// "Enable or disable SMTP AUTH in Exchange Online" page words it, with the diagnostic stamp
/// Exchange appends: the credentials were never checked, so this is no rejected password.
#[tokio::test]
async fn exchange_smtp_auth_disabled_for_the_tenant_is_a_policy_refusal_not_rejected_credentials() {
    let env = Env::new();
    let (class, detail) = auth_answered_with(
        &env,
        "exo-tenant",
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the \
         Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. \
         [AM0PR02CA0097.eurprd02.prod.outlook.com 2025-01-14T09:12:33.456Z 08DD33F1A2B3C4D5]\r\n",
    )
    .await;
    assert_eq!(class, "auth_policy", "{detail}");
    assert!(detail.starts_with("SMTP 535 5.7.139 "), "{detail}");
    assert!(
        detail.contains("https://aka.ms/smtp_auth_disabled"),
        "{detail}"
    );
    assert!(
        detail.contains(
            "[AM0PR02CA0097.eurprd02.prod.outlook.com 2025-01-14T09:12:33.456Z 08DD33F1A2B3C4D5]"
        ),
        "the Exchange diagnostic stamp is kept: {detail}"
    );
    assert!(
        detail.contains("not checked"),
        "the meaning is said: {detail}"
    );
}

/// The same code when security defaults block the sign-in (Microsoft's wording).
#[tokio::test]
async fn exchange_security_defaults_block_is_a_policy_refusal() {
    let env = Env::new();
    let (class, detail) = auth_answered_with(
        &env,
        "exo-defaults",
        "535 5.7.139 Authentication unsuccessful, user is locked by your organization's security \
         defaults policy. Contact your administrator. \
         [DB8PR04CA0012.eurprd04.prod.outlook.com 2025-01-14T09:12:33.456Z 08DD33F1A2B3C4D6]\r\n",
    )
    .await;
    assert_eq!(class, "auth_policy", "{detail}");
    assert!(detail.contains("security defaults policy"), "{detail}");
}

/// Exchange's 535 5.7.3: the credentials were checked and refused (Microsoft's MS-SMTPNTLM
/// 2.2.1.4: "the user name or password is incorrect"); with OAuth2 also an application that has
/// no access to the mailbox. Rejected, with the meaning and the stamp in the detail.
#[tokio::test]
async fn exchange_5_7_3_is_rejected_credentials_with_its_meaning_and_stamp() {
    let env = Env::new();
    let (class, detail) = auth_answered_with(
        &env,
        "exo-573",
        "535 5.7.3 Authentication unsuccessful \
         [SN4PR0501CA0054.namprd05.prod.outlook.com 2025-01-14T09:12:33.456Z 08DD33F1A2B3C4D7]\r\n",
    )
    .await;
    assert_eq!(class, "auth_rejected", "{detail}");
    assert!(
        detail.contains("[SN4PR0501CA0054.namprd05.prod.outlook.com"),
        "{detail}"
    );
    assert!(detail.contains("mailbox"), "the meaning is said: {detail}");
}

/// RFC 4954's temporary authentication failure: the server could not check the credentials now.
#[tokio::test]
async fn temporary_authentication_failure_4_7_0_is_not_a_rejected_password() {
    let env = Env::new();
    let (class, detail) = auth_answered_with(
        &env,
        "tempfail",
        "454 4.7.0 Temporary authentication failure\r\n",
    )
    .await;
    assert_eq!(class, "auth_unavailable", "{detail}");
}

/// Gmail's multi-line refusal of a wrong password: the help link and the session id are on the
/// second line, and both reach the detail.
#[tokio::test]
async fn every_line_of_a_multi_line_reply_reaches_the_detail() {
    let env = Env::new();
    let (class, detail) = auth_answered_with(
        &env,
        "gmail-535",
        "535-5.7.8 Username and Password not accepted. For more information, go to\r\n\
         535 5.7.8  https://support.google.com/mail/?p=BadCredentials \
         d9443c01a7336-2d8b3f1f0f4sm1234567pla.12 - gsmtp\r\n",
    )
    .await;
    assert_eq!(class, "auth_rejected", "{detail}");
    assert!(
        detail.contains("Username and Password not accepted. For more information, go to"),
        "{detail}"
    );
    assert!(
        detail.contains(
            "https://support.google.com/mail/?p=BadCredentials d9443c01a7336-2d8b3f1f0f4sm1234567pla.12 - gsmtp"
        ),
        "{detail}"
    );
}

/// Gmail refuses the account password of an account with 2-Step Verification (534 5.7.9): a
/// policy of the provider, not a wrong password.
#[tokio::test]
async fn gmail_application_specific_password_required_is_a_policy_refusal() {
    let env = Env::new();
    let (class, detail) = auth_answered_with(
        &env,
        "gmail-534",
        "534-5.7.9 Application-specific password required. For more information, go to\r\n\
         534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor \
         d9443c01a7336-2d8b3f1f0f4sm1234567pla.13 - gsmtp\r\n",
    )
    .await;
    assert_eq!(class, "auth_policy", "{detail}");
    assert!(detail.contains("?p=InvalidSecondFactor"), "{detail}");
}

/// Exchange Online's answer once Basic authentication is retired for client submission.
#[tokio::test]
async fn exchange_basic_authentication_not_supported_is_a_policy_refusal() {
    let env = Env::new();
    let (class, detail) = auth_answered_with(
        &env,
        "exo-basic",
        "550 5.7.30 Basic authentication is not supported for Client Submission.\r\n",
    )
    .await;
    assert_eq!(class, "auth_policy", "{detail}");
}

/// Exchange Online refusing a TLS version it no longer accepts (its published wording): the fix
/// is on the TLS side, not a server that is down.
#[tokio::test]
async fn exchange_421_4_7_66_points_at_tls_not_at_an_unavailable_server() {
    let env = Env::new();
    let (class, detail) = auth_answered_with(
        &env,
        "exo-tls",
        "421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to \
         support TLS 1.2. Visit https://aka.ms/smtp_auth_tls \
         [AM0PR02CA0097.eurprd02.prod.outlook.com 2025-01-14T09:12:33.456Z 08DD33F1A2B3C4D8]\r\n",
    )
    .await;
    assert_eq!(class, "tls_handshake_failed", "{detail}");
    assert!(detail.contains("https://aka.ms/smtp_auth_tls"), "{detail}");
}

/// A refusal at AUTH that no RFC and no provider documentation explains is said to be unknown,
/// with what was received, never guessed into rejected credentials.
#[tokio::test]
async fn an_unknown_refusal_at_auth_is_unrecognized_not_auth_rejected() {
    let env = Env::new();
    let (class, detail) = auth_answered_with(
        &env,
        "unknown",
        "556 5.9.9 Something mailprobe has never seen\r\n",
    )
    .await;
    assert_eq!(class, "unrecognized", "{detail}");
    assert!(
        detail.contains("556 5.9.9 Something mailprobe has never seen"),
        "{detail}"
    );
}
