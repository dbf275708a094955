//! The Gmail API probe and the JWT-bearer grant (RFC 7523) of Google service accounts, against
//! a local Gmail endpoint serving the documented shapes (testpeers/src/gmail.rs, over TLS) and
//! the test's token server, which checks the grant's signature with the account's public key.
//! The same grant signs in to the real Dovecot over IMAP XOAUTH2. Google itself cannot be
//! reached from here.

mod common;

use std::time::Duration;

use common::{Env, USER, failure, phases};
use mailprobe::probe::{self, Phase, ProbeContext};
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use mailprobe_testpeers::gmail::{GmailServer, Refusal};
use mailprobe_testpeers::oauth::TokenServer;
use mailprobe_testpeers::pki::AppCredential;

const MAILBOX: &str = "probe@example.test";
const ACCOUNT: &str = "mailprobe@probe-project.iam.gserviceaccount.com";

struct Workspace {
    env: Env,
    tokens: std::sync::Arc<TokenServer>,
    gmail: GmailServer,
    /// The service account's JSON key file.
    key_file: std::path::PathBuf,
}

/// A service account JSON key file in Google's format for `key` (PKCS#8 PEM).
fn key_file(env: &Env, name: &str, key: &AppCredential, token_uri: &str) -> std::path::PathBuf {
    let pem = std::fs::read_to_string(&key.key).unwrap();
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "probe-project",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": ACCOUNT,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    });
    let path = env.dir.path().join(name);
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

async fn workspace() -> Workspace {
    let env = Env::new();
    let tokens =
        std::sync::Arc::new(TokenServer::start(&env.pki.valid, Duration::from_secs(3600)).await);
    let account = AppCredential::generate(&env.dir.path().join("sa"));
    tokens.add_service_account(ACCOUNT, account.public_key.clone());
    let t = tokens.clone();
    let gmail = GmailServer::start(
        &env.pki.valid,
        std::sync::Arc::new(move |token: &str| t.token_user(token)),
    )
    .await;
    gmail.add_mailbox(MAILBOX);
    let key_file = key_file(&env, "sa.json", &account, &tokens.token_url);
    Workspace {
        env,
        tokens,
        gmail,
        key_file,
    }
}

impl Workspace {
    /// A Gmail target for `mailbox`; `oauth2_extra` lines go into its `[target.oauth2]`.
    fn target(&self, name: &str, mailbox: &str, oauth2_extra: &str) -> String {
        format!(
            "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"gmail\"\nmailbox = \"{mailbox}\"\n\
             base_url = \"{base}\"\nca_file = \"{ca}\"\n\
             [target.oauth2]\nprovider = \"google\"\nservice_account_key_file = \"{key}\"\nca_file = \"{ca}\"\n{oauth2_extra}\n",
            base = self.gmail.base_url(),
            ca = self.env.pki.ca.display(),
            key = self.key_file.display(),
        )
    }
}

#[tokio::test]
async fn the_inbox_label_is_read_with_a_service_account_acting_for_the_mailbox() {
    let w = workspace().await;
    let cfg = w.env.config(&w.target("gmail-inbox", MAILBOX, ""));
    let o = probe::run(&cfg.targets[0], &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(
        phases(&o),
        vec![
            Phase::Token,
            Phase::Dns,
            Phase::Connect,
            Phase::Tls,
            Phase::Request,
            Phase::Body
        ]
    );
    let asked = w.gmail.asked();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].path,
        format!("/gmail/v1/users/{MAILBOX}/labels/INBOX")
    );
    // The grant the token server verified: signed by the account's key (or it would have been
    // refused), issued by the account, for the mailbox, for this endpoint, an hour at most.
    let grants = w.tokens.grants();
    assert_eq!(grants.len(), 1, "{grants:?}");
    let g = &grants[0];
    assert_eq!(g["iss"], ACCOUNT);
    assert_eq!(g["sub"], MAILBOX);
    assert_eq!(g["aud"], w.tokens.token_url.as_str());
    assert_eq!(g["scope"], "https://www.googleapis.com/auth/gmail.labels");
    let (iat, exp) = (g["iat"].as_u64().unwrap(), g["exp"].as_u64().unwrap());
    assert!(exp > iat && exp - iat <= 3600, "{g}");
    assert_eq!(
        o.token.as_ref().map(|t| t.credential.as_str()),
        Some(format!("{ACCOUNT}@localhost").as_str())
    );
}

fn refusal(status: u16, canonical: &'static str, reason: &'static str) -> Refusal {
    Refusal {
        status,
        canonical,
        reason,
        message: "as documented",
        retry_after: None,
        times: None,
    }
}

/// A mailbox, what Gmail answers for it, extra `[target.oauth2]` lines, the `(class, phase)`.
type Case = (
    &'static str,
    Option<Refusal>,
    &'static str,
    (&'static str, &'static str),
);

#[tokio::test]
async fn each_gmail_answer_has_its_class() {
    let w = workspace().await;
    let cases: [Case; 7] = [
        (
            "hot@example.test",
            Some(Refusal {
                retry_after: Some("9"),
                ..refusal(429, "RESOURCE_EXHAUSTED", "rateLimitExceeded")
            }),
            "",
            ("throttled", "request"),
        ),
        (
            "quota@example.test",
            Some(refusal(403, "PERMISSION_DENIED", "userRateLimitExceeded")),
            "",
            ("throttled", "request"),
        ),
        (
            "down@example.test",
            Some(refusal(503, "UNAVAILABLE", "backendError")),
            "",
            ("server_unavailable", "request"),
        ),
        (
            "odd@example.test",
            Some(refusal(400, "INVALID_ARGUMENT", "invalidArgument")),
            "",
            ("unrecognized", "request"),
        ),
        // Not added: Gmail's "Mail service not enabled".
        (
            "nogmail@example.test",
            None,
            "",
            ("mailbox_error", "request"),
        ),
        // The token is for another user than the mailbox: delegation denied.
        (
            MAILBOX,
            None,
            "subject = \"someone-else@example.test\"",
            ("auth_rejected", "request"),
        ),
        // A grant signed with a key the token endpoint does not know: no token.
        (MAILBOX, None, "UNKNOWN-KEY", ("auth_token_failed", "token")),
    ];
    let stranger = AppCredential::generate(&w.env.dir.path().join("stranger"));
    let stranger_key = key_file(&w.env, "stranger.json", &stranger, &w.tokens.token_url);
    let mut text = String::new();
    for (i, (mailbox, r, extra, _)) in cases.iter().enumerate() {
        if let Some(r) = r {
            w.gmail.refuse(mailbox, r.clone());
        }
        let mut t = w.target(
            &format!("gmail-{i}"),
            mailbox,
            if *extra == "UNKNOWN-KEY" { "" } else { extra },
        );
        if *extra == "UNKNOWN-KEY" {
            t = t.replace(
                &w.key_file.display().to_string(),
                &stranger_key.display().to_string(),
            );
        }
        text += &t;
    }
    let cfg = w.env.config(&text);
    let ctx = ProbeContext::new();
    for (target, (mailbox, r, _, want)) in cfg.targets.iter().zip(&cases) {
        let o = probe::run(target, &ctx).await;
        assert_eq!(failure(&o), *want, "{mailbox}: {o:?}");
        let detail = &o.failure.as_ref().unwrap().detail;
        if let Some(r) = r {
            assert!(
                detail.contains(r.canonical) && detail.contains(r.reason),
                "{detail}"
            );
        }
        assert_eq!(
            o.retry_after,
            r.as_ref()
                .and_then(|r| r.retry_after)
                .map(|w| Duration::from_secs(w.parse().unwrap())),
        );
        // Neither the key nor a token shows in a detail.
        assert!(!detail.contains("PRIVATE KEY"), "{detail}");
        for token in w.tokens.issued() {
            assert!(!detail.contains(&token), "{detail}");
        }
    }
}

/// The same grant signs in to IMAP with XOAUTH2: Dovecot introspects the token at the token
/// server, which issued it for the grant's `sub`, the target's username by default.
#[tokio::test]
async fn imap_signs_in_with_a_service_account_grant_for_its_username() {
    let w = workspace().await;
    let dovecot = Dovecot::start(
        &w.env.pki,
        Options {
            oauth2_introspection: Some(w.tokens.introspection_url.clone()),
            ..Options::default()
        },
    );
    let cfg = w.env.config(&format!(
        "[[target]]\nname = \"imap-sa\"\nregion = \"test\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\n\
         port = {}\nca_file = \"{ca}\"\nusername = \"{USER}\"\nauth = \"oauth2\"\nauth_mechanism = \"xoauth2\"\n\
         [target.oauth2]\nprovider = \"google\"\nservice_account_key_file = \"{key}\"\nca_file = \"{ca}\"\n",
        dovecot.ports.imaps,
        ca = w.env.pki.ca.display(),
        key = w.key_file.display(),
    ));
    let o = probe::run(&cfg.targets[0], &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(phases(&o)[0], Phase::Token);
    let grants = w.tokens.grants();
    assert_eq!(grants[0]["sub"], USER);
    assert_eq!(grants[0]["scope"], "https://mail.google.com/");
}

/// `mailprobe probe` on Gmail targets: a row with the token, DNS, connect, TLS, request and
/// body timings and exit 0 for a readable inbox; `FAIL server_unavailable request` and exit 1
/// for a mailbox Gmail answers 503 for; neither the service account's key nor a token in
/// anything printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_command_prints_a_gmail_row_with_its_phases_and_the_class_of_a_refusal() {
    let w = workspace().await;
    w.gmail.refuse(
        "down@example.test",
        refusal(503, "UNAVAILABLE", "backendError"),
    );
    w.env.config(&format!(
        "{}{}",
        w.target("gmail-inbox", MAILBOX, ""),
        w.target("gmail-down", "down@example.test", "")
    ));
    let shown = common::api_probe_cli(
        w.env.config_path(),
        "gmail",
        "gmail-inbox",
        ("gmail-down", "server_unavailable", "request"),
    )
    .await;
    assert!(shown.contains("UNAVAILABLE"), "{shown}");
    let key = std::fs::read_to_string(&w.key_file).unwrap();
    let key: serde_json::Value = serde_json::from_str(&key).unwrap();
    let pem = key["private_key"].as_str().unwrap();
    let body = pem.lines().nth(1).unwrap();
    assert!(
        !shown.contains("PRIVATE KEY") && !shown.contains(body),
        "{shown}"
    );
    for token in w.tokens.issued() {
        assert!(!shown.contains(&token), "{shown}");
    }
}
