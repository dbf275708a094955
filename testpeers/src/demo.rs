//! The peers behind the shipped `probes.toml`: a Dovecot and a Postfix on fixed ports, the CA
//! and password files in one directory.

use std::path::Path;

use crate::dovecot::{self, Dovecot, Ports};
use crate::https::{self, HttpsServer};
use crate::pki::TestPki;
use crate::postfix::{self, Postfix};

/// IMAP (STARTTLS) port of the demo Dovecot.
pub const IMAP_PORT: u16 = 10143;
/// IMAPS port of the demo Dovecot.
pub const IMAPS_PORT: u16 = 10993;
/// LMTP port of the demo Dovecot.
pub const LMTP_PORT: u16 = 10024;
/// Auth (SASL for Postfix) port of the demo Dovecot.
pub const AUTH_PORT: u16 = 10026;
/// POP3 (STLS) port of the demo Dovecot.
pub const POP3_PORT: u16 = 10110;
/// POP3S port of the demo Dovecot.
pub const POP3S_PORT: u16 = 10995;
/// Port-25 style (MX) port of the demo Postfix.
pub const SMTP_PORT: u16 = 10025;
/// Submission (STARTTLS + AUTH) port of the demo Postfix.
pub const SUBMISSION_PORT: u16 = 10587;
/// Submissions (implicit TLS + AUTH) port of the demo Postfix.
pub const SUBMISSIONS_PORT: u16 = 10465;
/// Port of the demo HTTPS server (webmail page, Autodiscover, JMAP).
pub const HTTPS_PORT: u16 = 10443;

/// The running demo peers; stopped when dropped (Postfix first: it talks to Dovecot).
pub struct Demo {
    /// The Postfix.
    pub postfix: Postfix,
    /// The Dovecot.
    pub dovecot: Dovecot,
    /// The webmail/JMAP server, once started in a runtime ([`Demo::start_https`]).
    pub https: Option<HttpsServer>,
    pki: TestPki,
}

impl Demo {
    /// One line per peer, for the terminal.
    pub fn describe(&self) -> String {
        format!(
            "demo peers ready: Dovecot IMAP 127.0.0.1:{IMAP_PORT} (STARTTLS), IMAPS 127.0.0.1:{IMAPS_PORT}, POP3S 127.0.0.1:{POP3S_PORT}; \
             Postfix SMTP 127.0.0.1:{SMTP_PORT}, submission {SUBMISSION_PORT} (STARTTLS), submissions \
             {SUBMISSIONS_PORT}; HTTPS 127.0.0.1:{HTTPS_PORT} (webmail /owa/, JMAP); user {}",
            dovecot::USER
        )
    }
}

impl Demo {
    /// Starts the HTTPS server on its fixed port; call from within a tokio runtime.
    pub async fn start_https(&mut self) {
        let opts = https::Options::new(self.pki.valid.clone());
        self.https = Some(HttpsServer::start_on(opts, HTTPS_PORT).await);
    }
}

/// Writes `dir/ca.pem`, `dir/probe.pass` and `dir/jmap.token` and starts Dovecot and Postfix on
/// their fixed ports (the HTTPS server needs a runtime: [`Demo::start_https`]).
pub fn start(dir: &Path) -> Demo {
    std::fs::create_dir_all(dir).expect("demo dir");
    // Dovecot reads certificate paths from its config: they must be absolute.
    let dir = &std::fs::canonicalize(dir).expect("demo dir path");
    let pki = TestPki::generate(&dir.join("pki"));
    std::fs::copy(&pki.ca, dir.join("ca.pem")).expect("copy ca");
    std::fs::write(dir.join("probe.pass"), format!("{}\n", dovecot::PASSWORD))
        .expect("write password");
    let dovecot = Dovecot::start(
        &pki,
        dovecot::Options {
            ports: Some(Ports {
                imap: IMAP_PORT,
                imaps: IMAPS_PORT,
                lmtp: LMTP_PORT,
                auth: AUTH_PORT,
                pop3: POP3_PORT,
                pop3s: POP3S_PORT,
            }),
            ..dovecot::Options::default()
        },
    );
    let postfix = Postfix::start(
        &pki,
        &dovecot,
        Some(postfix::Ports {
            smtp: SMTP_PORT,
            submission: SUBMISSION_PORT,
            submissions: SUBMISSIONS_PORT,
        }),
    );
    std::fs::write(
        dir.join("jmap.token"),
        format!("{}\n", https::Options::new(pki.valid.clone()).token),
    )
    .expect("write jmap token");
    Demo {
        postfix,
        dovecot,
        https: None,
        pki,
    }
}
