//! OAuth2 sign-in (XOAUTH2, OAUTHBEARER, bearer tokens) against a real Dovecot that validates
//! tokens itself (passdb oauth2, introspecting at the test's token server) and a real Postfix
//! authenticating through it.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Daemon, Env, USER, failure, phases, sample};
use mailprobe::oauth2::TokenCache;
use mailprobe::probe::{self, Phase, ProbeContext};
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use mailprobe_testpeers::oauth::{Client, Mode, TokenServer};
use mailprobe_testpeers::pki::AppCredential;
use mailprobe_testpeers::postfix::Postfix;

const SECRET: &str = "app-Secret-42";
const REFRESH: &str = "rt-provisioned-once";

struct Idp {
    env: Env,
    tokens: TokenServer,
    dovecot: Dovecot,
}

async fn idp(ttl: Duration) -> Idp {
    let env = Env::new();
    let tokens = TokenServer::start(&env.pki.valid, ttl).await;
    tokens.add_client(
        "app",
        Client {
            secret: Some(SECRET.into()),
            assertion_key: None,
            user: USER.into(),
        },
    );
    tokens.add_refresh_token(REFRESH, USER);
    let dovecot = Dovecot::start(
        &env.pki,
        Options {
            oauth2_introspection: Some(tokens.introspection_url.clone()),
            ..Options::default()
        },
    );
    Idp {
        env,
        tokens,
        dovecot,
    }
}

impl Idp {
    /// `[target.oauth2]` for client credentials with the secret in a file.
    fn client_credentials(&self) -> String {
        let secret = self.env.secret("app.secret", SECRET);
        format!(
            "[target.oauth2]\ntoken_url = \"{}\"\nclient_id = \"app\"\nclient_secret_file = \"{}\"\n\
             scopes = [\"mail\"]\nca_file = \"{}\"\n",
            self.tokens.token_url,
            secret.display(),
            self.env.pki.ca.display()
        )
    }

    /// `[target.oauth2]` for the refresh-token grant (a public client).
    fn refresh_token(&self) -> String {
        let rt = self.env.secret("refresh.token", REFRESH);
        format!(
            "[target.oauth2]\ntoken_url = \"{}\"\nclient_id = \"app\"\nrefresh_token_file = \"{}\"\n\
             ca_file = \"{}\"\n",
            self.tokens.token_url,
            rt.display(),
            self.env.pki.ca.display()
        )
    }

    /// An IMAP target signing in with OAuth2 (`extra` goes before the oauth2 table).
    fn imap(&self, name: &str, extra: &str, oauth2: &str) -> String {
        format!(
            "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nca_file = \"{}\"\nusername = \"{USER}\"\nauth = \"oauth2\"\n{extra}\n{oauth2}",
            self.dovecot.ports.imaps,
            self.env.pki.ca.display()
        )
    }

    fn requests(&self) -> usize {
        self.tokens.token_requests.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn imap_xoauth2_and_oauthbearer_with_client_credentials() {
    let idp = idp(Duration::from_secs(3600)).await;
    for mech in ["xoauth2", "oauthbearer"] {
        let cfg = idp.env.config(&idp.imap(
            &format!("imap-{mech}"),
            &format!("auth_mechanism = \"{mech}\""),
            &idp.client_credentials(),
        ));
        let o = probe::run(&cfg.targets[0], &ProbeContext::new()).await;
        assert!(o.success(), "{mech}: {o:?}\n{}", idp.dovecot.log());
        assert_eq!(
            phases(&o),
            [
                Phase::Token,
                Phase::Dns,
                Phase::Connect,
                Phase::Tls,
                Phase::Greeting,
                Phase::Login,
                Phase::Select,
                Phase::Logout
            ]
        );
        let t = o.token.as_ref().unwrap();
        assert_eq!(t.credential, format!("app@localhost"));
        assert!(matches!(t.fetched, Some((_, true))), "{t:?}");
        // Dovecot logs the mechanism of every login: the configured one was used.
        let login = format!("method={}", mech.to_uppercase());
        assert!(
            idp.dovecot.log().contains(&login),
            "{login}:\n{}",
            idp.dovecot.log()
        );
    }
}

#[tokio::test]
async fn imap_with_a_refresh_token_and_the_mechanism_the_server_offers() {
    let idp = idp(Duration::from_secs(3600)).await;
    let cfg = idp
        .env
        .config(&idp.imap("imap-rt", "", &idp.refresh_token()));
    let o = probe::run(&cfg.targets[0], &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}\n{}", idp.dovecot.log());
}

#[tokio::test]
async fn a_revoked_token_is_auth_rejected_with_the_decoded_status() {
    let idp = idp(Duration::from_secs(3600)).await;
    let cfg = idp
        .env
        .config(&idp.imap("imap-revoked", "", &idp.client_credentials()));
    let ctx = ProbeContext::new();
    assert!(probe::run(&cfg.targets[0], &ctx).await.success());
    // The identity provider revokes it; the cached token is still used and refused.
    idp.tokens.revoke_all();
    let o = probe::run(&cfg.targets[0], &ctx).await;
    assert_eq!(failure(&o), ("auth_rejected", "login"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(detail.starts_with("token rejected (status 401"), "{detail}");
    assert!(detail.contains("AUTHENTICATIONFAILED"), "{detail}");
    assert!(
        !detail.contains("at-"),
        "the access token must not appear: {detail}"
    );
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_or_refuses_is_auth_token_failed() {
    let idp = idp(Duration::from_secs(3600)).await;
    let cfg = idp
        .env
        .config(&idp.imap("imap-idp", "", &idp.client_credentials()));
    idp.tokens.set_mode(Mode::Refuse);
    let o = probe::run(&cfg.targets[0], &ProbeContext::new()).await;
    assert_eq!(failure(&o), ("auth_token_failed", "token"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.contains("HTTP 400 invalid_client: AADSTS7000215"),
        "{detail}"
    );
    assert!(!detail.contains(SECRET));
    // The mail server was never contacted: the identity provider is what failed.
    assert_eq!(phases(&o), [Phase::Token]);

    idp.tokens.take_token_endpoint_down();
    let o = probe::run(&cfg.targets[0], &ProbeContext::new()).await;
    assert_eq!(failure(&o), ("auth_token_failed", "token"), "{o:?}");
    assert!(o.failure.unwrap().detail.contains("cannot connect"));
}

/// The token cache's clock, moved ahead of the system's by the test.
#[derive(Default)]
struct Later(std::sync::Mutex<Duration>);

impl Later {
    fn set(&self, ahead: Duration) {
        *self.0.lock().unwrap() = ahead;
    }
}

impl mailprobe::oauth2::Clock for Later {
    fn now(&self) -> std::time::Instant {
        std::time::Instant::now() + *self.0.lock().unwrap()
    }
}

#[tokio::test]
async fn the_token_is_cached_shared_and_refreshed_before_it_expires() {
    // Tokens live 4 s: refreshed once less than half their lifetime remains, i.e. 2 s after
    // the fetch on the cache's clock, which the test moves instead of waiting.
    let idp = idp(Duration::from_secs(4)).await;
    let shared = idp.client_credentials();
    let cfg = idp.env.config(&format!(
        "{}{}",
        idp.imap("first", "", &shared),
        idp.imap("second", "auth_mechanism = \"oauthbearer\"", &shared)
    ));
    let clock = std::sync::Arc::new(Later::default());
    let ctx = ProbeContext {
        tokens: std::sync::Arc::new(TokenCache::with_clock(clock.clone())),
        ..ProbeContext::new()
    };
    let (a, b) = tokio::join!(
        probe::run(&cfg.targets[0], &ctx),
        probe::run(&cfg.targets[1], &ctx)
    );
    assert!(a.success() && b.success(), "{a:?} {b:?}");
    assert_eq!(
        idp.requests(),
        1,
        "one fetch for two targets sharing a credential set"
    );
    let o = probe::run(&cfg.targets[0], &ctx).await;
    assert!(o.success());
    assert_eq!(o.token.unwrap().fetched, None, "cached");
    // 1 s later (plus the real time the probes took): more than half its lifetime left,
    // still the cached one.
    clock.set(Duration::from_secs(1));
    let o = probe::run(&cfg.targets[1], &ctx).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(o.token.unwrap().fetched, None, "cached 1 s later");
    assert_eq!(idp.requests(), 1);
    // 2.3 s later: under half its lifetime left, so fetched afresh before it expires.
    clock.set(Duration::from_millis(2300));
    let o = probe::run(&cfg.targets[1], &ctx).await;
    assert!(o.success(), "{o:?}");
    assert!(
        matches!(o.token.unwrap().fetched, Some((_, true))),
        "refreshed ahead of expiry"
    );
    assert_eq!(idp.requests(), 2);
}

#[tokio::test]
async fn a_signed_client_assertion_gets_a_token() {
    let idp = idp(Duration::from_secs(3600)).await;
    let app = AppCredential::generate(&idp.env.dir.path().join("app"));
    idp.tokens.add_client(
        "cert-app",
        Client {
            secret: None,
            assertion_key: Some(app.public_key.clone()),
            user: USER.into(),
        },
    );
    let oauth2 = format!(
        "[target.oauth2]\ntoken_url = \"{}\"\nclient_id = \"cert-app\"\nclient_assertion_key_file = \"{}\"\n\
         client_assertion_cert_file = \"{}\"\nca_file = \"{}\"\n",
        idp.tokens.token_url,
        app.key.display(),
        app.cert.display(),
        idp.env.pki.ca.display()
    );
    let cfg = idp.env.config(&idp.imap("imap-cert", "", &oauth2));
    let o = probe::run(&cfg.targets[0], &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}");
}

#[tokio::test]
async fn smtp_through_postfix_with_xoauth2_and_oauthbearer_and_a_rejected_token() {
    let idp = idp(Duration::from_secs(3600)).await;
    let pf = Postfix::start(&idp.env.pki, &idp.dovecot, None);
    let smtp = |name: &str, mech: &str| {
        format!(
            "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"smtp\"\nhost = \"127.0.0.1\"\n\
             port = {}\nca_file = \"{}\"\nehlo_name = \"probe.example.test\"\nusername = \"{USER}\"\n\
             auth = \"oauth2\"\nauth_mechanism = \"{mech}\"\nsend_to = \"{USER}\"\n{}",
            pf.ports.submission,
            idp.env.pki.ca.display(),
            idp.refresh_token()
        )
    };
    let cfg = idp.env.config(&format!(
        "{}{}",
        smtp("smtp-x", "xoauth2"),
        smtp("smtp-o", "oauthbearer")
    ));
    let ctx = ProbeContext::new();
    for t in &cfg.targets {
        let o = probe::run(t, &ctx).await;
        assert!(o.success(), "{}: {o:?}\n{}", t.name, pf.log());
        assert_eq!(phases(&o)[0], Phase::Token);
        assert!(phases(&o).contains(&Phase::Data));
    }
    idp.tokens.revoke_all();
    let o = probe::run(&cfg.targets[0], &ctx).await;
    assert_eq!(
        failure(&o),
        ("auth_rejected", "auth"),
        "{o:?}\n{}",
        pf.log()
    );
    let detail = &o.failure.unwrap().detail;
    assert!(detail.starts_with("token rejected (status 401"), "{detail}");
    assert!(detail.contains("535 5.7.8"), "{detail}");
}

#[tokio::test]
async fn https_targets_use_a_bearer_token_from_the_same_source() {
    let idp = idp(Duration::from_secs(3600)).await;
    let mut opts = mailprobe_testpeers::https::Options::new(idp.env.pki.valid.clone());
    opts.bearer_check = Some(idp.tokens.validator());
    let web = mailprobe_testpeers::https::HttpsServer::start(opts).await;
    let cfg = idp.env.config(&format!(
        "[[target]]\nname = \"jmap\"\nprotocol = \"https\"\nurl = \"{}\"\ncheck = \"jmap\"\nca_file = \"{}\"\n\
         auth = \"oauth2\"\n{}",
        web.url("/.well-known/jmap"),
        idp.env.pki.ca.display(),
        idp.client_credentials()
    ));
    let o = probe::run(&cfg.targets[0], &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(phases(&o)[0], Phase::Token);
    assert!(web.seen().iter().all(|r| {
        r.authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer at-"))
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_metrics_in_the_daemon() {
    let idp = idp(Duration::from_secs(3600)).await;
    let cfg = idp.env.config(&format!(
        "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n{}",
        idp.imap("imap-metrics", "", &idp.client_credentials())
    ));
    let d = Daemon::start(cfg).await;
    let m = d.wait_probes("imap-metrics", "success", 2.0).await;
    let c = [("credential", "app@localhost")];
    assert_eq!(
        sample(
            &m,
            "mailprobe_oauth2_token_fetches_total",
            &[c[0], ("result", "success")]
        ),
        Some(1.0),
        "one fetch serves every probe: {m}"
    );
    assert_eq!(
        sample(
            &m,
            "mailprobe_oauth2_token_fetch_duration_seconds_count",
            &c
        ),
        Some(1.0)
    );
    let remaining = sample(&m, "mailprobe_oauth2_token_lifetime_remaining_seconds", &c).unwrap();
    assert!(remaining > 3500.0 && remaining <= 3600.0, "{remaining}");
    assert!(sample(&m, "mailprobe_oauth2_token_expiry_timestamp_seconds", &c).unwrap() > 1.7e9);
    assert!(
        sample(
            &m,
            "mailprobe_region_phase_duration_seconds_count",
            &[("protocol", "imap"), ("phase", "token")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert!(
        !m.contains(SECRET) && !m.contains("at-1"),
        "no secret or token in metrics"
    );
    d.stop().await;
}
