//! The HTTPS probe against a local HTTPS server (rustls, test CA) playing webmail,
//! Autodiscover, JMAP and HTTP faults.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Daemon, Env, failure, phases, probe_first, sample};
use mailprobe::probe::Phase;
use mailprobe_testpeers::https::{HttpsServer, Jmap, Options};

fn https_target(env: &Env, name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"https\"\nurl = \"{url}\"\n\
         ca_file = \"{ca}\"\ntimeout = \"3s\"\n{extra}\n",
        ca = env.pki.ca.display()
    )
}

async fn server(env: &Env) -> HttpsServer {
    HttpsServer::start(Options::new(env.pki.valid.clone())).await
}

#[tokio::test]
async fn webmail_login_page_over_http2_with_every_phase() {
    let env = Env::new();
    let s = server(&env).await;
    let cfg = env.config(&https_target(
        &env,
        "owa",
        &s.url("/owa/"),
        "body_contains = \"Sign in\"",
    ));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(
        phases(&o),
        [
            Phase::Dns,
            Phase::Connect,
            Phase::Tls,
            Phase::Request,
            Phase::Body
        ]
    );
    let h = o.http.as_ref().unwrap();
    assert_eq!(
        (h.status, h.version.as_str(), h.redirects),
        (200, "HTTP/2", 0)
    );
    let tls = o.tls.unwrap();
    assert_eq!(tls.alpn.as_deref(), Some("h2"));
    assert_eq!(tls.cert.unwrap().not_after, env.pki.valid.not_after);
    assert!(s.seen()[0].authorization.is_none());
}

#[tokio::test]
async fn http11_only_server_is_spoken_to_in_http11() {
    let env = Env::new();
    let mut opts = Options::new(env.pki.valid.clone());
    opts.alpn = vec![b"http/1.1".to_vec()];
    let s = HttpsServer::start(opts).await;
    let o = probe_first(&env.config(&https_target(&env, "h1", &s.url("/owa/"), ""))).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(o.http.unwrap().version, "HTTP/1.1");
    assert_eq!(s.seen()[0].version, "HTTP/1.1");
}

#[tokio::test]
async fn redirects_are_followed_on_one_connection_or_refused() {
    let env = Env::new();
    let s = server(&env).await;
    let o = probe_first(&env.config(&https_target(&env, "root", &s.url("/"), ""))).await;
    assert!(o.success(), "{o:?}");
    let h = o.http.unwrap();
    assert_eq!((h.status, h.redirects), (200, 1));
    assert!(h.url.ends_with("/owa/"));
    // Same origin: one connection, so one dns/connect/tls.
    assert_eq!(o.phases.iter().filter(|p| p.phase == Phase::Tls).count(), 1);

    let o = probe_first(&env.config(&https_target(
        &env,
        "noredir",
        &s.url("/"),
        "max_redirects = 0",
    )))
    .await;
    assert_eq!(failure(&o), ("http_status", "request"), "{o:?}");
    assert!(o.failure.unwrap().detail.starts_with("HTTP 302 from "));
}

#[tokio::test]
async fn redirect_loop_is_http_status() {
    let env = Env::new();
    let s = server(&env).await;
    let o = probe_first(&env.config(&https_target(&env, "loop", &s.url("/loop"), ""))).await;
    assert_eq!(failure(&o), ("http_status", "request"), "{o:?}");
    assert!(o.failure.unwrap().detail.contains("more than 5 redirects"));
    assert_eq!(s.seen().len(), 6);
}

#[tokio::test]
async fn autodiscover_post_with_a_body_file() {
    let env = Env::new();
    let s = server(&env).await;
    let request = env.secret(
        "autodiscover.xml",
        "<Autodiscover><Request><EMailAddress>probe@example.test</EMailAddress>\
         <AcceptableResponseSchema>x</AcceptableResponseSchema></Request></Autodiscover>",
    );
    let cfg = env.config(&https_target(
        &env,
        "autodiscover",
        &s.url("/autodiscover/autodiscover.xml"),
        &format!(
            "method = \"POST\"\nbody_file = \"{}\"\nheaders = {{ \"Content-Type\" = \"text/xml\" }}\n\
             body_regex = \"<Server>[a-z.]+</Server>\"",
            request.display()
        ),
    ));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}");
    let seen = s.seen();
    assert_eq!(seen[0].method, "POST");
    assert!(String::from_utf8_lossy(&seen[0].body).contains("<EMailAddress>probe@example.test"));
}

#[tokio::test]
async fn jmap_session_and_mailbox_get_with_a_bearer_token() {
    let env = Env::new();
    let s = server(&env).await;
    let token = env.secret("jmap.token", "jmap-t0ken");
    let cfg = env.config(&https_target(
        &env,
        "jmap",
        &s.url("/.well-known/jmap"),
        &format!(
            "check = \"jmap\"\nauth = \"bearer\"\npassword_file = \"{}\"",
            token.display()
        ),
    ));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}");
    // The session redirect stays on the same origin: one connection, one call per phase.
    assert_eq!(
        phases(&o),
        [
            Phase::Dns,
            Phase::Connect,
            Phase::Tls,
            Phase::Session,
            Phase::Session,
            Phase::Api
        ]
    );
    let seen = s.seen();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/.well-known/jmap", "/jmap/session", "/jmap/api/"]);
    assert!(
        seen.iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer jmap-t0ken"))
    );
    assert!(String::from_utf8_lossy(&seen[2].body).contains("Mailbox/get"));
}

#[tokio::test]
async fn jmap_faults_are_protocol_errors_and_a_bad_token_is_auth_rejected() {
    let env = Env::new();
    let token = env.secret("jmap.token", "jmap-t0ken");
    let jmap = |env: &Env, s: &HttpsServer, name: &str| {
        env.config(&https_target(
            env,
            name,
            &s.url("/.well-known/jmap"),
            &format!(
                "check = \"jmap\"\nauth = \"bearer\"\npassword_file = \"{}\"",
                token.display()
            ),
        ))
    };
    let mut opts = Options::new(env.pki.valid.clone());
    opts.jmap = Jmap::NoMailCapability;
    let s = HttpsServer::start(opts.clone()).await;
    let o = probe_first(&jmap(&env, &s, "nomail")).await;
    assert_eq!(failure(&o), ("protocol_error", "session"), "{o:?}");
    assert!(o.failure.unwrap().detail.contains("mail capability"));

    opts.jmap = Jmap::NoInbox;
    let s = HttpsServer::start(opts.clone()).await;
    let o = probe_first(&jmap(&env, &s, "noinbox")).await;
    assert_eq!(failure(&o), ("protocol_error", "api"), "{o:?}");

    opts.jmap = Jmap::Good;
    opts.token = "another-token".into();
    let s = HttpsServer::start(opts).await;
    let o = probe_first(&jmap(&env, &s, "badtoken")).await;
    assert_eq!(failure(&o), ("auth_rejected", "session"), "{o:?}");
    assert_eq!(o.http.unwrap().status, 401);
}

#[tokio::test]
async fn status_codes_map_to_classes() {
    let env = Env::new();
    let s = server(&env).await;
    for (path, class) in [
        ("/status/503", "server_unavailable"),
        ("/status/502", "server_unavailable"),
        ("/status/504", "server_unavailable"),
        ("/status/401", "auth_rejected"),
        ("/status/403", "auth_rejected"),
        ("/status/404", "http_status"),
        ("/status/500", "http_status"),
    ] {
        let o = probe_first(&env.config(&https_target(&env, "st", &s.url(path), ""))).await;
        assert_eq!(failure(&o), (class, "request"), "{path}: {o:?}");
        assert!(
            o.failure
                .unwrap()
                .detail
                .starts_with(&format!("HTTP {}", &path[8..]))
        );
    }
    let o = probe_first(&env.config(&https_target(
        &env,
        "expect",
        &s.url("/status/404"),
        "expect_status = [404]",
    )))
    .await;
    assert!(o.success(), "an expected status is a success: {o:?}");
}

#[tokio::test]
async fn basic_auth_good_and_bad() {
    let env = Env::new();
    let s = server(&env).await;
    let good = env.secret("web.pass", "web-Secret");
    let cfg = env.config(&https_target(
        &env,
        "basic",
        &s.url("/secure"),
        &format!(
            "auth = \"basic\"\nusername = \"webuser\"\npassword_file = \"{}\"",
            good.display()
        ),
    ));
    assert!(probe_first(&cfg).await.success());
    let bad = env.secret("bad.pass", "nope");
    let cfg = env.config(&https_target(
        &env,
        "basic-bad",
        &s.url("/secure"),
        &format!(
            "auth = \"basic\"\nusername = \"webuser\"\npassword_file = \"{}\"",
            bad.display()
        ),
    ));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("auth_rejected", "request"), "{o:?}");
}

#[tokio::test]
async fn credentials_never_follow_a_redirect_to_another_origin() {
    let env = Env::new();
    let s = server(&env).await;
    let good = env.secret("web.pass", "web-Secret");
    let cfg = env.config(&https_target(
        &env,
        "elsewhere",
        &s.url("/elsewhere"),
        &format!(
            "auth = \"basic\"\nusername = \"webuser\"\npassword_file = \"{}\"",
            good.display()
        ),
    ));
    let o = probe_first(&cfg).await;
    // 127.0.0.1 is another origin than localhost: no credentials, so /secure answers 401.
    assert_eq!(failure(&o), ("auth_rejected", "request"), "{o:?}");
    let seen = s.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].authorization.is_some());
    assert!(
        seen[1].authorization.is_none(),
        "credentials leaked across origins"
    );
    // A new origin is a new connection: dns, connect, tls again.
    assert_eq!(o.phases.iter().filter(|p| p.phase == Phase::Tls).count(), 2);
}

#[tokio::test]
async fn wrong_body_is_content_mismatch() {
    let env = Env::new();
    let s = server(&env).await;
    let o = probe_first(&env.config(&https_target(
        &env,
        "wrongbody",
        &s.url("/wrongbody"),
        "body_contains = \"Sign in\"",
    )))
    .await;
    assert_eq!(failure(&o), ("content_mismatch", "body"), "{o:?}");
}

#[tokio::test]
async fn stalled_body_times_out_in_the_body_phase_within_the_deadline() {
    let env = Env::new();
    let s = server(&env).await;
    let o = probe_first(
        &env.config(
            &https_target(&env, "stall", &s.url("/stall"), "timeout = \"1s\"")
                .replace("timeout = \"3s\"\n", ""),
        ),
    )
    .await;
    assert_eq!(failure(&o), ("timeout", "body"), "{o:?}");
    assert!(o.total < Duration::from_millis(2500), "{:?}", o.total);
}

#[tokio::test]
async fn huge_body_is_cut_at_max_body() {
    let env = Env::new();
    let s = server(&env).await;
    let o = probe_first(&env.config(&https_target(
        &env,
        "huge",
        &s.url("/huge"),
        "max_body = 262144",
    )))
    .await;
    assert_eq!(failure(&o), ("protocol_error", "body"), "{o:?}");
    assert!(o.failure.unwrap().detail.contains("larger than max_body"));
    // The client hung up on the body: what was pushed until then is all there is.
    s.huge_hung_up().await;
    let sent = s.huge_bytes.load(Ordering::SeqCst);
    assert!(
        sent < 32 << 20,
        "the server pushed {sent} bytes before the client hung up"
    );
}

#[tokio::test]
async fn expired_certificate_is_tls_cert_expired() {
    let env = Env::new();
    let s = HttpsServer::start(Options::new(env.pki.expired.clone())).await;
    let o = probe_first(&env.config(&https_target(&env, "expired", &s.url("/owa/"), ""))).await;
    assert_eq!(failure(&o), ("tls_cert_expired", "tls"), "{o:?}");
    assert!(s.seen().is_empty());
}

#[tokio::test]
async fn plain_http_needs_consent_and_credentials_in_urls_are_refused() {
    let env = Env::new();
    std::fs::write(
        env.config_path(),
        https_target(&env, "plain", "http://localhost:8080/", ""),
    )
    .unwrap();
    let e = mailprobe::load::load(&env.config_path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("target[1] \"plain\".url: http:// sends credentials"),
        "{e}"
    );
    std::fs::write(
        env.config_path(),
        https_target(&env, "creds", "https://u:p@localhost/", ""),
    )
    .unwrap();
    let e = mailprobe::load::load(&env.config_path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("target[1] \"creds\".url: credentials are never read"),
        "{e}"
    );
    assert!(!e.contains(":p@"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_run_in_the_daemon_with_the_status_code_exported() {
    let env = Env::new();
    let s = server(&env).await;
    let cfg = env.config(&format!(
        "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n{}{}",
        https_target(&env, "webmail", &s.url("/owa/"), "").replace("timeout = \"3s\"\n", ""),
        https_target(&env, "down", &s.url("/status/503"), "").replace("timeout = \"3s\"\n", ""),
    ));
    let d = Daemon::start(cfg).await;
    d.wait_probes("webmail", "success", 1.0).await;
    let m = d.wait_probes("down", "failure", 1.0).await;
    assert_eq!(
        sample(&m, "mailprobe_http_status_code", &[("target", "webmail")]),
        Some(200.0)
    );
    assert_eq!(
        sample(&m, "mailprobe_http_status_code", &[("target", "down")]),
        Some(503.0)
    );
    assert_eq!(
        sample(
            &m,
            "mailprobe_probe_failure_info",
            &[
                ("target", "down"),
                ("class", "server_unavailable"),
                ("phase", "request")
            ]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &m,
            "mailprobe_region_phase_duration_seconds_count",
            &[("protocol", "https"), ("phase", "request")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        sample(
            &m,
            "mailprobe_probe_connection_info",
            &[("target", "webmail"), ("tls_version", "TLS 1.3")]
        ),
        Some(1.0)
    );
    d.stop().await;
}
