//! The provider's status beside ours: `[[provider]]` feeds served on 127.0.0.1 over TLS in their
//! documented shapes (testpeers/src/providers.rs), polled by the real daemon while a real
//! Dovecot goes away; a feed that cannot be read opens no incident; Graph's and Google's
//! shapes read by the poller.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Daemon, Env, eventually, http, json_ok, mailprobe_ok, sample};
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use mailprobe_testpeers::oauth::{Client, TokenServer};
use mailprobe_testpeers::providers::{
    Answer, FeedServer, google_incident, graph_issue, graph_page, statuspage_components,
    statuspage_incident, statuspage_unresolved,
};
use serde_json::{Value, json};

const UNRESOLVED: &str = "api/v2/incidents/unresolved.json";
const COMPONENTS: &str = "api/v2/components.json";

fn now_rfc3339(offset_secs: i64) -> String {
    let t = std::time::SystemTime::now();
    let t = if offset_secs >= 0 {
        t + Duration::from_secs(offset_secs as u64)
    } else {
        t - Duration::from_secs((-offset_secs) as u64)
    };
    humantime::format_rfc3339_millis(t).to_string()
}

fn statuspage_provider(env: &Env, feed: &FeedServer, extra: &str) -> String {
    format!(
        "[[provider]]\nname = \"examplemail\"\nkind = \"statuspage\"\nurl = \"{}\"\n\
         services = [\"IMAP\"]\ninterval = \"1s\"\ntimeout = \"1s\"\nca_file = \"{}\"\n{extra}\n",
        feed.base,
        env.pki.ca.display()
    )
}

fn quiet(feed: &FeedServer) {
    feed.set(UNRESOLVED, Answer::Json(statuspage_unresolved(vec![])));
    feed.set(
        COMPONENTS,
        Answer::Json(statuspage_components(&[("c0", "IMAP", "operational")])),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_issue_opens_and_resolves_beside_a_real_incident() {
    let env = Env::new();
    let mut dc = Dovecot::start(&env.pki, Options::default());
    let feed = FeedServer::start(&env.pki.valid).await;
    quiet(&feed);
    let text = format!(
        "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n[incidents]\nstate_dir = \"{}\"\n\
         down_after = 2\nup_after = 2\n{}{}",
        env.dir.path().join("state").display(),
        statuspage_provider(&env, &feed, ""),
        env.imap_target("imap-1", dc.ports.imaps, "provider = \"examplemail\""),
    );
    let d = Daemon::start(env.config(&text)).await;
    d.wait_probes("imap-1", "success", 1.0).await;
    let m = eventually(20, "the feed read", || async {
        let m = d.metrics().await;
        (sample(
            &m,
            "mailprobe_provider_feed_up",
            &[("provider", "examplemail")],
        ) == Some(1.0))
        .then_some(m)
    })
    .await;
    assert!(
        !m.contains("mailprobe_provider_issues_open{"),
        "nothing open yet"
    );

    dc.stop();
    let incident = eventually(30, "an open incident", || async {
        let s = json_ok(&d, "/api/v1/status").await;
        s["incidents"].as_array()?.first().cloned()
    })
    .await;
    let id = incident["id"].as_i64().unwrap();

    // The provider posts a few minutes later.
    let posted = now_rfc3339(0);
    feed.set(
        UNRESOLVED,
        Answer::Json(statuspage_unresolved(vec![statuspage_incident(
            "p1abc",
            "IMAP logins failing",
            "investigating",
            "major",
            &posted,
            &["IMAP"],
            &[(
                "investigating",
                "We are investigating IMAP login failures.",
                &posted,
            )],
        )])),
    );
    let issue = eventually(20, "the issue beside the incident", || async {
        let s = json_ok(&d, "/api/v1/status").await;
        let issue = s["providers"]["issues"].as_array()?.first()?.clone();
        (issue["incidents"] == json!([id])).then_some(issue)
    })
    .await;
    assert_eq!(issue["id"], "p1abc");
    assert_eq!(issue["status"], "investigating");
    assert_eq!(issue["service"], "IMAP");
    let summary = issue["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("examplemail p1abc 'IMAP logins failing', investigating, posted "),
        "{summary}"
    );
    assert!(summary.contains("after this incident opened"), "{summary}");
    let m = d.metrics().await;
    assert_eq!(
        sample(
            &m,
            "mailprobe_provider_issues_open",
            &[
                ("provider", "examplemail"),
                ("service", "IMAP"),
                ("classification", "major")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "mailprobe_provider_first_post_delay_seconds_count",
            &[("provider", "examplemail")]
        ),
        Some(1.0)
    );
    let (_, page) = http(d.addr, "GET", "/").await;
    assert!(page.contains("Provider status (1 open)"), "{page}");
    assert!(page.contains("IMAP logins failing"), "{page}");

    // An update, then the provider resolves it (it leaves the unresolved list).
    let later = now_rfc3339(1);
    feed.set(
        UNRESOLVED,
        Answer::Json(statuspage_unresolved(vec![statuspage_incident(
            "p1abc",
            "IMAP logins failing",
            "identified",
            "major",
            &posted,
            &["IMAP"],
            &[
                (
                    "investigating",
                    "We are investigating IMAP login failures.",
                    &posted,
                ),
                ("identified", "A storage node failed.", &later),
            ],
        )])),
    );
    eventually(20, "the update seen", || async {
        let s = json_ok(&d, "/api/v1/status").await;
        (s["providers"]["issues"][0]["status"] == "identified").then_some(())
    })
    .await;
    quiet(&feed);
    eventually(20, "the issue resolved", || async {
        let s = json_ok(&d, "/api/v1/status").await;
        s["providers"]["issues"][0]["resolved_at"]
            .as_str()
            .map(|_| ())
    })
    .await;
    let m = d.metrics().await;
    assert!(!m.contains("mailprobe_provider_issues_open{"), "{m}");

    // Our side recovers; the daemon restarts: the history keeps the provider's side.
    dc.restart();
    eventually(30, "the incident resolved", || async {
        let list = json_ok(&d, "/api/v1/incidents?since=1h").await;
        let inc = list.as_array()?.iter().find(|i| i["id"] == id)?.clone();
        inc["closed_at"].is_string().then_some(())
    })
    .await;
    d.stop().await;
    let d = Daemon::start(env.config(&text)).await;
    d.stop().await;

    let cfg = env.config_path();
    let cfg = cfg.to_str().unwrap();
    let table = mailprobe_ok(&["incidents", "-c", cfg, "--since", "1h"]);
    assert!(
        table.contains("examplemail p1abc 'IMAP logins failing', investigating, posted "),
        "{table}"
    );
    assert!(
        table.contains("examplemail p1abc update: identified: A storage node failed."),
        "{table}"
    );
    assert!(
        table.contains("examplemail p1abc resolved by the provider"),
        "{table}"
    );
    assert!(table.contains("provider: examplemail (IMAP)"), "{table}");
    let markdown = mailprobe_ok(&[
        "incidents",
        "-c",
        cfg,
        "--since",
        "1h",
        "--format",
        "markdown",
    ]);
    let lines: Vec<&str> = markdown.lines().collect();
    let opened = lines.iter().position(|l| l.contains("| opened")).unwrap();
    let posted = lines
        .iter()
        .position(|l| l.contains("examplemail p1abc 'IMAP logins failing'"))
        .unwrap();
    let resolved = lines
        .iter()
        .position(|l| l.contains("| resolved:"))
        .unwrap();
    assert!(opened < posted && posted < resolved, "{markdown}");
    let json: Value = serde_json::from_str(&mailprobe_ok(&[
        "incidents",
        "-c",
        cfg,
        "--since",
        "1h",
        "--format",
        "json",
    ]))
    .unwrap();
    let mine = json
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap();
    assert_eq!(mine["provider_issues"][0]["id"], "p1abc");
    assert_eq!(mine["provider_issues"][0]["status"], "identified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_cannot_be_read_is_no_mail_outage() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let feed = FeedServer::start(&env.pki.valid).await;
    quiet(&feed);
    let text = format!(
        "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n{}{}",
        statuspage_provider(&env, &feed, ""),
        env.imap_target("imap-1", dc.ports.imaps, "provider = \"examplemail\""),
    );
    let d = Daemon::start(env.config(&text)).await;
    d.wait_probes("imap-1", "success", 1.0).await;
    let errors = |m: &str, reason: &str| {
        sample(
            m,
            "mailprobe_provider_feed_errors_total",
            &[("provider", "examplemail"), ("reason", reason)],
        )
    };
    let m = d.metrics().await;
    for reason in ["http_status", "bad_body", "too_large", "timeout"] {
        assert_eq!(errors(&m, reason), Some(0.0), "{reason} exists at 0");
    }
    for (answer, reason) in [
        (
            Answer::Status(503, json!({"error": "maintenance"})),
            "http_status",
        ),
        (Answer::Garbage, "bad_body"),
        (Answer::Oversized(17 * 1024 * 1024), "too_large"),
        (Answer::Silent, "timeout"),
        (Answer::Json(json!({"page": {}})), "bad_body"),
    ] {
        let before = errors(&d.metrics().await, reason).unwrap();
        feed.set(UNRESOLVED, answer);
        eventually(20, &format!("a {reason} error counted"), || async {
            let m = d.metrics().await;
            (errors(&m, reason)? > before
                && sample(
                    &m,
                    "mailprobe_provider_feed_up",
                    &[("provider", "examplemail")],
                ) == Some(0.0))
            .then_some(())
        })
        .await;
    }
    // All along: the target is up and no incident was opened.
    let s = json_ok(&d, "/api/v1/status").await;
    assert_eq!(s["incidents"], json!([]), "{s}");
    assert_eq!(s["summary"]["down"], 0, "{s}");
    assert_eq!(s["providers"]["feeds"][0]["up"], false, "{s}");
    let m = d.metrics().await;
    assert_eq!(
        sample(
            &m,
            "mailprobe_incidents_open",
            &[("scope", "target"), ("region", "test")]
        ),
        Some(0.0)
    );
    let (_, page) = http(d.addr, "GET", "/").await;
    assert!(page.contains("status feed cannot be read"), "{page}");
    // And it comes back.
    quiet(&feed);
    eventually(20, "the feed read again", || async {
        let m = d.metrics().await;
        (sample(
            &m,
            "mailprobe_provider_feed_up",
            &[("provider", "examplemail")],
        ) == Some(1.0))
        .then_some(())
    })
    .await;
    d.stop().await;
}

/// A `[[provider]]` of `kind` at `feed`, loaded through the real loader.
fn provider_spec(env: &Env, toml: &str) -> Arc<mailprobe::provider::ProviderSpec> {
    let cfg = env.config(&format!("{toml}\n{}", env.imap_target("imap-1", 1, "")));
    cfg.providers[0].clone()
}

async fn poll(
    spec: &mailprobe::provider::ProviderSpec,
) -> Result<Vec<mailprobe::provider::Issue>, mailprobe::provider::feed::FeedError> {
    let client = mailprobe::provider::feed::client(&spec.tls, spec.timeout).unwrap();
    let tokens = mailprobe::oauth2::TokenCache::default();
    mailprobe::provider::poller::poll(spec, &client, &tokens).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_service_health_is_read_with_an_application_token() {
    let env = Env::new();
    let tokens = TokenServer::start(&env.pki.valid, Duration::from_secs(3600)).await;
    tokens.add_client(
        "health-app",
        Client {
            secret: Some("s3cret".into()),
            assertion_key: None,
            user: "tenant".into(),
        },
    );
    let feed = FeedServer::start(&env.pki.valid).await;
    feed.require_bearer(tokens.validator());
    feed.set(
        "v1.0/admin/serviceAnnouncement/issues",
        Answer::Json(graph_page(vec![
            graph_issue(
                "EX123456",
                "Users can't access mailbox",
                "Exchange Online",
                "incident",
                "serviceDegradation",
                &now_rfc3339(-600),
                None,
                &[(
                    &now_rfc3339(-300),
                    "<p>Title: Users can't access mailbox</p>",
                )],
            ),
            graph_issue(
                "TM1",
                "Teams chat slow",
                "Microsoft Teams",
                "advisory",
                "investigating",
                &now_rfc3339(-600),
                None,
                &[],
            ),
            graph_issue(
                "EX1",
                "Long resolved",
                "Exchange Online",
                "incident",
                "serviceRestored",
                "2026-01-01T00:00:00Z",
                Some("2026-01-01T02:00:00Z"),
                &[],
            ),
        ])),
    );
    let secret = env.secret("health.secret", "s3cret");
    let toml = |secret: &std::path::Path| {
        format!(
            "[[provider]]\nkind = \"microsoft\"\nurl = \"{}\"\nca_file = \"{ca}\"\n\
             [provider.oauth2]\ntoken_url = \"{}\"\nclient_id = \"health-app\"\n\
             client_secret_file = \"{}\"\nca_file = \"{ca}\"\n",
            feed.base,
            tokens.token_url,
            secret.display(),
            ca = env.pki.ca.display()
        )
    };
    let spec = provider_spec(&env, &toml(&secret));
    assert_eq!(spec.name, "microsoft");
    assert_eq!(
        spec.oauth2.as_ref().unwrap().scopes,
        ["https://graph.microsoft.com/.default"]
    );
    let issues = poll(&spec).await.unwrap();
    assert_eq!(
        issues.len(),
        1,
        "only Exchange Online, only recent: {issues:?}"
    );
    let i = &issues[0];
    assert_eq!(
        (i.id.as_str(), i.status.as_str(), i.classification.as_str()),
        ("EX123456", "serviceDegradation", "incident")
    );
    assert!(i.is_open());
    assert_eq!(i.updates[0].text, "Title: Users can't access mailbox");

    // A wrong secret: no token, said as such (and the feed is never asked without one).
    let wrong = env.secret("wrong.secret", "nope");
    let spec = provider_spec(&env, &toml(&wrong));
    let e = poll(&spec).await.unwrap_err();
    assert_eq!(e.reason(), "token", "{e}");
    assert!(!e.to_string().contains("nope"), "{e}");

    // A feed refusing the token: Graph's 401 error code in the reason.
    feed.require_bearer(mailprobe_testpeers::https::BearerCheck(Arc::new(|_| false)));
    let spec = provider_spec(&env, &toml(&secret));
    let e = poll(&spec).await.unwrap_err();
    assert_eq!(e.reason(), "http_status", "{e}");
    assert!(
        e.to_string().contains("401: InvalidAuthenticationToken"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_google_dashboard_feed_is_filtered_to_gmail() {
    let env = Env::new();
    let feed = FeedServer::start(&env.pki.valid).await;
    feed.set(
        "incidents.json",
        Answer::Json(json!([
            google_incident(
                "aBcD123",
                "Gmail users unable to send",
                "Gmail",
                "high",
                &now_rfc3339(-900),
                None,
                &[(
                    &now_rfc3339(-600),
                    "SERVICE_OUTAGE",
                    "We're investigating reports of an issue with Gmail."
                )],
            ),
            google_incident(
                "zzz",
                "Drive slow",
                "Google Drive",
                "medium",
                &now_rfc3339(-900),
                None,
                &[],
            ),
            google_incident(
                "old",
                "Gmail last spring",
                "Gmail",
                "high",
                "2026-03-01T10:00:00+00:00",
                Some("2026-03-01T12:00:00+00:00"),
                &[],
            ),
        ])),
    );
    let spec = provider_spec(
        &env,
        &format!(
            "[[provider]]\nkind = \"google\"\nurl = \"{}\"\nca_file = \"{}\"\n",
            feed.base,
            env.pki.ca.display()
        ),
    );
    let issues = poll(&spec).await.unwrap();
    assert_eq!(issues.len(), 1, "{issues:?}");
    let i = &issues[0];
    assert_eq!(i.id, "aBcD123");
    assert_eq!(i.service, "Gmail");
    assert_eq!(i.status, "SERVICE_OUTAGE");
    assert_eq!(i.classification, "high");
    assert_eq!(
        i.link.as_deref(),
        Some(format!("{}incidents/aBcD123", feed.base).as_str())
    );
}

#[test]
fn targets_are_put_on_a_provider_by_key_or_by_host() {
    let env = Env::new();
    let target = |name: &str, host: &str, extra: &str| {
        env.imap_target(name, 993, extra)
            .replace("host = \"127.0.0.1\"", &format!("host = \"{host}\""))
    };
    let cfg = env.config(&format!(
        "[[provider]]\nname = \"examplemail\"\nkind = \"statuspage\"\nurl = \"https://status.example.test\"\n{}{}{}{}",
        target("m365", "outlook.office365.com", ""),
        target("gmail", "imap.gmail.com", ""),
        target("own", "mail.example.test", ""),
        target("keyed", "mail.example.test", "provider = \"examplemail\""),
    ));
    let on: Vec<Option<&str>> = cfg.targets.iter().map(|t| t.provider.as_deref()).collect();
    assert_eq!(
        on,
        [Some("microsoft"), Some("google"), None, Some("examplemail")]
    );

    // A provider key naming no [[provider]] is an error located at the key.
    let path = env.config_path();
    std::fs::write(
        &path,
        env.with_state(&target("bad", "mail.example.test", "provider = \"nosuch\"")),
    )
    .unwrap();
    let e = mailprobe::load::load(&path).unwrap_err().to_string();
    assert!(e.contains("no [[provider]] named \"nosuch\""), "{e}");
    assert!(e.contains("provider"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_starts_and_stops_provider_polling() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let feed = FeedServer::start(&env.pki.valid).await;
    quiet(&feed);
    let target = env.imap_target("imap-1", dc.ports.imaps, "");
    let d = Daemon::start(env.config(&format!(
        "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n{target}"
    )))
    .await;
    d.wait_probes("imap-1", "success", 1.0).await;
    assert_eq!(feed.requests.load(std::sync::atomic::Ordering::SeqCst), 0);

    // Added by a reload: polled.
    env.config(&format!(
        "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n{target}{}",
        statuspage_provider(&env, &feed, "")
    ));
    let (status, body) = http(d.addr, "POST", "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    eventually(20, "the new provider polled", || async {
        let m = d.metrics().await;
        (sample(
            &m,
            "mailprobe_provider_feed_up",
            &[("provider", "examplemail")],
        ) == Some(1.0))
        .then_some(())
    })
    .await;

    // Removed by a reload: no longer polled, its series gone.
    env.config(&format!(
        "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n{target}"
    ));
    let (status, body) = http(d.addr, "POST", "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    let m = d.metrics().await;
    assert!(!m.contains("provider=\"examplemail\""), "{m}");
    let before = feed.requests.load(std::sync::atomic::Ordering::SeqCst);
    // Three of its intervals pass (the target's probes are the clock): no request came.
    let m = d.metrics().await;
    let seen = sample(&m, "mailprobe_probes_total", &[("result", "success")]).unwrap();
    eventually(20, "three more probes", || async {
        let m = d.metrics().await;
        (sample(&m, "mailprobe_probes_total", &[("result", "success")])? >= seen + 3.0)
            .then_some(())
    })
    .await;
    assert_eq!(
        feed.requests.load(std::sync::atomic::Ordering::SeqCst),
        before
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_issue_and_its_status_changes_are_told_beside_the_incident() {
    let env = Env::new();
    let mut dc = Dovecot::start(&env.pki, Options::default());
    let idp = TokenServer::start(&env.pki.valid, Duration::from_secs(3600)).await;
    idp.add_client(
        "health-app",
        Client {
            secret: Some("s3cret".into()),
            assertion_key: None,
            user: "tenant".into(),
        },
    );
    let feed = FeedServer::start(&env.pki.valid).await;
    feed.require_bearer(idp.validator());
    const ISSUES: &str = "v1.0/admin/serviceAnnouncement/issues";
    feed.set(ISSUES, Answer::Json(graph_page(vec![])));
    let text = format!(
        "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n[incidents]\nstate_dir = \"{state}\"\n\
         down_after = 2\nup_after = 2\n[[provider]]\nkind = \"microsoft\"\nurl = \"{url}\"\n\
         interval = \"1s\"\ntimeout = \"1s\"\nca_file = \"{ca}\"\n[provider.oauth2]\n\
         token_url = \"{token}\"\nclient_id = \"health-app\"\nclient_secret_file = \"{secret}\"\n\
         ca_file = \"{ca}\"\n{target}",
        state = env.dir.path().join("state").display(),
        url = feed.base,
        ca = env.pki.ca.display(),
        token = idp.token_url,
        secret = env.secret("health.secret", "s3cret").display(),
        target = env.imap_target("exo-1", dc.ports.imaps, "provider = \"microsoft\""),
    );
    let d = Daemon::start(env.config(&text)).await;
    d.wait_probes("exo-1", "success", 1.0).await;
    dc.stop();
    let id = eventually(30, "an open incident", || async {
        let s = json_ok(&d, "/api/v1/status").await;
        s["incidents"].as_array()?.first()?["id"].as_i64()
    })
    .await;
    let start = now_rfc3339(-60);
    let issue = |status: &str, end: Option<&str>, posts: &[(&str, &str)]| {
        Answer::Json(graph_page(vec![graph_issue(
            "EX123456",
            "Users can't access mailbox",
            "Exchange Online",
            "incident",
            status,
            &start,
            end,
            posts,
        )]))
    };
    let first = now_rfc3339(0);
    feed.set(
        ISSUES,
        issue(
            "investigating",
            None,
            &[(&first, "<p>Title: Users can't access mailbox</p>")],
        ),
    );
    eventually(20, "the Graph issue beside the incident", || async {
        let s = json_ok(&d, "/api/v1/status").await;
        (s["providers"]["issues"][0]["incidents"] == json!([id])).then_some(())
    })
    .await;
    // Microsoft moves it on without a post: the change is an update of its own.
    feed.set(
        ISSUES,
        issue(
            "serviceDegradation",
            None,
            &[(&first, "<p>Title: Users can't access mailbox</p>")],
        ),
    );
    eventually(20, "the status change", || async {
        let s = json_ok(&d, "/api/v1/status").await;
        (s["providers"]["issues"][0]["status"] == "serviceDegradation").then_some(())
    })
    .await;
    let end = now_rfc3339(0);
    feed.set(
        ISSUES,
        issue(
            "serviceRestored",
            Some(&end),
            &[
                (&first, "<p>Title: Users can't access mailbox</p>"),
                (&end, "<p>Final status: we restored access.</p>"),
            ],
        ),
    );
    eventually(20, "the issue resolved", || async {
        let s = json_ok(&d, "/api/v1/status").await;
        s["providers"]["issues"][0]["resolved_at"]
            .as_str()
            .map(|_| ())
    })
    .await;
    dc.restart();
    d.wait_probes("exo-1", "success", 2.0).await;
    d.stop().await;
    let cfg = env.config_path();
    let table = mailprobe_ok(&["incidents", "-c", cfg.to_str().unwrap(), "--since", "1h"]);
    // What an admin reads (shown with --nocapture).
    println!("{table}");
    assert!(
        table.contains("Microsoft EX123456 'Users can't access mailbox', investigating, posted "),
        "{table}"
    );
    assert!(table.contains("after this incident opened"), "{table}");
    assert!(
        table.contains("Microsoft EX123456 update: status serviceDegradation"),
        "{table}"
    );
    assert!(
        table.contains("Microsoft EX123456 update: Final status: we restored access."),
        "{table}"
    );
    assert!(
        table.contains("Microsoft EX123456 resolved by the provider"),
        "{table}"
    );
    assert!(
        table.contains("provider: microsoft (Exchange Online)"),
        "{table}"
    );
}
