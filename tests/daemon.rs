//! The daemon end to end: real Dovecot, scheduler, /metrics, health, reload, shutdown.

mod common;

use common::{Daemon, Env, http, sample};
use mailprobe_testpeers::dovecot::{Dovecot, Options};

const GLOBAL: &str = "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\nslow_threshold = \"5s\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_hold_the_documented_series_with_the_right_values() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let closed = mailprobe_testpeers::util::free_port();
    let cfg = env.config(&format!(
        "{GLOBAL}{}{}",
        env.imap_target("good", dc.ports.imaps, ""),
        env.imap_target("down", closed, "region = \"other\"")
            .replace("region = \"test\"\n", ""),
    ));
    let d = Daemon::start(cfg).await;

    assert_eq!(http(d.addr, "GET", "/-/healthy").await.0, 200);
    assert_eq!(http(d.addr, "GET", "/-/ready").await.0, 200);

    d.wait_probes("good", "success", 2.0).await;
    let m = d.wait_probes("down", "failure", 2.0).await;
    let good = [("target", "good"), ("region", "test"), ("protocol", "imap")];
    let down = [
        ("target", "down"),
        ("region", "other"),
        ("protocol", "imap"),
    ];

    assert_eq!(
        sample(&m, "mailprobe_probe_success", &good),
        Some(1.0),
        "{m}"
    );
    assert_eq!(sample(&m, "mailprobe_probe_success", &down), Some(0.0));
    assert_eq!(sample(&m, "mailprobe_probe_slow", &good), Some(0.0));
    assert_eq!(
        sample(&m, "mailprobe_probe_consecutive_failures", &good),
        Some(0.0)
    );
    assert!(sample(&m, "mailprobe_probe_consecutive_failures", &down).unwrap() >= 2.0);
    // Why it is down, from the series alone.
    assert_eq!(
        sample(
            &m,
            "mailprobe_probe_failure_info",
            &[
                ("target", "down"),
                ("class", "connect_refused"),
                ("phase", "connect")
            ]
        ),
        Some(1.0)
    );
    assert!(sample(&m, "mailprobe_probe_failure_info", &[("target", "good")]).is_none());
    assert!(
        sample(
            &m,
            "mailprobe_probe_failures_total",
            &[("target", "down"), ("class", "connect_refused")]
        )
        .unwrap()
            >= 2.0
    );
    assert!(sample(&m, "mailprobe_probe_last_duration_seconds", &good).unwrap() > 0.0);
    // Latency per region and protocol: every phase the good target reached has been observed.
    let test_imap = [("region", "test"), ("protocol", "imap")];
    assert!(
        sample(
            &m,
            "mailprobe_region_probe_duration_seconds_count",
            &test_imap
        )
        .unwrap()
            >= 2.0
    );
    for phase in [
        "dns", "connect", "tls", "greeting", "login", "select", "logout",
    ] {
        let v = sample(
            &m,
            "mailprobe_region_phase_duration_seconds_count",
            &[("region", "test"), ("protocol", "imap"), ("phase", phase)],
        );
        assert!(v.is_some_and(|v| v >= 2.0), "phase {phase}: {v:?}");
    }
    // The failing target never got past connect: its region saw no login at all.
    assert_eq!(
        sample(
            &m,
            "mailprobe_region_phase_duration_seconds_count",
            &[
                ("region", "other"),
                ("protocol", "imap"),
                ("phase", "login")
            ]
        ),
        Some(0.0)
    );
    assert!(
        sample(
            &m,
            "mailprobe_probes_total",
            &[("region", "test"), ("result", "success")]
        )
        .unwrap()
            >= 2.0
    );
    // Per-target histograms and phase gauges are opt-in.
    assert!(!m.contains("mailprobe_probe_duration_seconds"), "{m}");
    assert!(!m.contains("mailprobe_probe_phase_duration_seconds"), "{m}");
    // Health: every state, 1 for the current one.
    let state = |s: &str| {
        sample(
            &m,
            "mailprobe_target_state",
            &[("target", "good"), ("state", s)],
        )
    };
    assert_eq!(
        (state("up"), state("degraded"), state("down")),
        (Some(1.0), Some(0.0), Some(0.0))
    );
    assert_eq!(
        sample(&m, "mailprobe_tls_cert_expiry_timestamp_seconds", &good),
        Some(env.pki.valid.not_after as f64)
    );
    assert!(
        sample(
            &m,
            "mailprobe_probe_connection_info",
            &[
                ("target", "good"),
                ("family", "ipv4"),
                ("tls_version", "TLS 1.3")
            ]
        )
        .is_some(),
        "{m}"
    );
    assert!(!m.contains("seconds_since_success"));
    assert!(sample(&m, "mailprobe_probe_last_success_timestamp_seconds", &good).unwrap() > 1.7e9);
    assert!(sample(&m, "mailprobe_probe_last_success_timestamp_seconds", &down).is_none());
    assert!(sample(&m, "mailprobe_probe_last_run_timestamp_seconds", &down).unwrap() > 1.7e9);
    assert_eq!(
        sample(&m, "mailprobe_targets", &[("protocol", "imap")]),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, "mailprobe_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert!(
        sample(
            &m,
            "mailprobe_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        )
        .is_some()
    );
    // The git revision built (this checkout's HEAD when the test binary was built).
    assert!(
        !m.lines()
            .filter(|l| l.starts_with("mailprobe_build_info{"))
            .any(|l| l.contains("revision=\"unknown\"") || !l.contains("revision=\"")),
        "{m}"
    );
    assert!(
        sample(
            &m,
            "mailprobe_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        )
        .is_some()
    );
    assert!(sample(&m, "mailprobe_schedule_delay_seconds_count", &[]).unwrap() >= 4.0);
    assert!(sample(&m, "mailprobe_probes_in_flight", &[]).is_some());
    assert!(sample(&m, "process_resident_memory_bytes", &[]).is_some());
    // No username or address as a label value anywhere.
    assert!(!m.contains(common::USER), "username leaked into metrics");
    assert!(
        !m.contains(common::PASSWORD),
        "password leaked into metrics"
    );
    d.stop().await;
}

/// A `[[maintenance]]` covering `target` from a minute ago for an hour: the series that exist
/// only during a window.
fn maintenance_now(target: &str) -> String {
    let start = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    format!(
        "[[maintenance]]\ntargets = [\"{target}\"]\nstart = {}\nduration = \"1h\"\nreason = \"test\"\n",
        humantime::format_rfc3339_seconds(start)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_documents_every_exported_metric_and_nothing_else() {
    let env = Env::new();
    let idp = mailprobe_testpeers::oauth::TokenServer::start(
        &env.pki.valid,
        std::time::Duration::from_secs(3600),
    )
    .await;
    idp.add_client(
        "app",
        mailprobe_testpeers::oauth::Client {
            secret: Some("s3cret".into()),
            assertion_key: None,
            user: common::USER.into(),
        },
    );
    let dc = Dovecot::start(
        &env.pki,
        Options {
            oauth2_introspection: Some(idp.introspection_url.clone()),
            ..Options::default()
        },
    );
    let pf = mailprobe_testpeers::postfix::Postfix::start(&env.pki, &dc, None);
    let oauth2 = format!(
        "[[target]]\nname = \"oauth\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{ca}\"\n\
         username = \"{}\"\nauth = \"oauth2\"\n[target.oauth2]\ntoken_url = \"{}\"\nclient_id = \"app\"\n\
         client_secret_file = \"{}\"\nca_file = \"{ca}\"\n",
        dc.ports.imaps,
        common::USER,
        idp.token_url,
        env.secret("app.secret", "s3cret").display(),
        ca = env.pki.ca.display(),
    );
    let web = mailprobe_testpeers::https::HttpsServer::start(
        mailprobe_testpeers::https::Options::new(env.pki.valid.clone()),
    )
    .await;
    let closed = mailprobe_testpeers::util::free_port();
    // A provider feed with a component down, beside the failing target's incident.
    let feed = mailprobe_testpeers::providers::FeedServer::start(&env.pki.valid).await;
    feed.set(
        "api/v2/incidents/unresolved.json",
        mailprobe_testpeers::providers::Answer::Json(
            mailprobe_testpeers::providers::statuspage_unresolved(vec![]),
        ),
    );
    feed.set(
        "api/v2/components.json",
        mailprobe_testpeers::providers::Answer::Json(
            mailprobe_testpeers::providers::statuspage_components(&[(
                "c0",
                "IMAP",
                "major_outage",
            )]),
        ),
    );
    let provider = format!(
        "[[provider]]\nname = \"examplemail\"\nkind = \"statuspage\"\nurl = \"{}\"\n\
         interval = \"1s\"\ntimeout = \"1s\"\nca_file = \"{}\"\n",
        feed.base,
        env.pki.ca.display()
    );
    // An MX domain whose one MX host is the Postfix (STARTTLS: every MX family has a series).
    let mx_domain = format!("d.{}", mailprobe_testpeers::dns::DOMAIN);
    let dns = mailprobe_testpeers::dns::Dnsmasq::serve(
        &mailprobe_testpeers::dns::Zone::default()
            .host(&format!("mx.{mx_domain}"), [127, 0, 0, 1].into())
            .mx(&mx_domain, &format!("mx.{mx_domain}"), 10),
    );
    let mx = format!(
        "[[target]]\nname = \"mx\"\nprotocol = \"mx\"\ndomain = \"{mx_domain}\"\nport = {}\n\
         dns_servers = [\"{}\"]\nca_file = \"{}\"\n",
        pf.ports.smtp,
        dns.addr,
        env.pki.ca.display(),
    );
    // Every protocol, a success and a failure, and the opt-in series, so every family has
    // series.
    let cfg = env.config(
        &(format!(
            "{GLOBAL}[metrics]\nper_target_histograms = true\nphase_gauges = true\n{}{}{}[[target]]\nname = \"rt\"\nprotocol = \"roundtrip\"\n\
         smtp_target = \"send\"\nimap_target = \"good\"\ndelivery_timeout = \"3s\"\n\
         interval = \"6s\"\n[[target]]\nname = \"web\"\nprotocol = \"https\"\nurl = \"{}\"\n\
         ca_file = \"{}\"\n",
            env.imap_target("good", dc.ports.imaps, ""),
            env.imap_target("bad", closed, "provider = \"examplemail\""),
            env.smtp_target("send", pf.ports.submission, ""),
            web.url("/owa/"),
            env.pki.ca.display(),
        ) + &oauth2
            + &provider
            + &mx
            + &maintenance_now("web")),
    );
    let d = Daemon::start(cfg).await;
    d.wait_probes("good", "success", 1.0).await;
    d.wait_probes("bad", "failure", 1.0).await;
    d.wait_probes("web", "success", 1.0).await;
    d.wait_probes("oauth", "success", 1.0).await;
    d.wait_probes("mx", "success", 1.0).await;
    d.wait_probes("rt", "success", 1.0).await;
    // The failing target's incident opens and the provider's issue is put beside it.
    let m = common::eventually(30, "the provider's issue beside an incident", || async {
        let m = d.metrics().await;
        sample(
            &m,
            "mailprobe_provider_first_post_delay_seconds_count",
            &[("provider", "examplemail")],
        )
        .map(|_| m)
    })
    .await;
    d.stop().await;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    // The metrics reference is a table whose rows start with the metric name.
    let documented: std::collections::BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `mailprobe_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("mailprobe_{n}"))
        .collect();
    let exported: std::collections::BTreeSet<String> = m
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|n| n.starts_with("mailprobe_"))
        .map(str::to_string)
        .collect();
    assert!(!exported.is_empty());
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "exported but not in README: {undocumented:?}"
    );
    // Everything documented exists (some only for other protocols, or after a reload or an
    // overrun; the scheduler and metrics register every family up front).
    let missing: Vec<_> = documented.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "in README but not exported: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_valid_change_and_refuses_an_invalid_one() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let a = env.imap_target("a", dc.ports.imaps, "");
    let cfg = env.config(&format!("{GLOBAL}{a}"));
    let d = Daemon::start(cfg).await;
    let m = d.wait_probes("a", "success", 2.0).await;
    let before = sample(
        &m,
        "mailprobe_probes_total",
        &[("region", "test"), ("result", "success")],
    )
    .unwrap();

    // Add b, keep a unchanged.
    let b = env
        .imap_target(
            "b",
            dc.ports.imap,
            "tls = \"starttls\"\nhost = \"localhost\"",
        )
        .replace("host = \"127.0.0.1\"\n", "");
    std::fs::write(
        env.config_path(),
        env.with_state(&format!("{GLOBAL}{a}{b}")),
    )
    .unwrap();
    let (status, body) = http(d.addr, "POST", "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("1 added, 0 removed, 0 changed, 1 unchanged"),
        "{body}"
    );
    let m = d.wait_probes("b", "success", 1.0).await;
    let after = sample(
        &m,
        "mailprobe_probes_total",
        &[("region", "test"), ("result", "success")],
    )
    .unwrap();
    assert!(
        after >= before,
        "the region's counter was reset: {before} -> {after}"
    );

    // An invalid file is refused with file, line and key; the old config keeps probing.
    std::fs::write(
        env.config_path(),
        env.with_state(&format!("{GLOBAL}{a}{b}bogus = 1\n")),
    )
    .unwrap();
    let (status, body) = http(d.addr, "POST", "/-/reload").await;
    assert_eq!(status, 500);
    assert!(
        body.contains("probes.toml:") && body.contains("target[2] \"b\".bogus"),
        "{body}"
    );
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, "mailprobe_config_last_reload_successful", &[]),
        Some(0.0)
    );
    d.wait_probes("b", "success", 2.0).await;

    // Removing a target removes its series.
    std::fs::write(env.config_path(), env.with_state(&format!("{GLOBAL}{b}"))).unwrap();
    let (status, body) = http(d.addr, "POST", "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    let m = d.metrics().await;
    assert!(
        sample(&m, "mailprobe_probe_success", &[("target", "a")]).is_none(),
        "{m}"
    );
    assert_eq!(
        sample(&m, "mailprobe_config_last_reload_successful", &[]),
        Some(1.0)
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_turns_the_target_down_and_back_up() {
    let env = Env::new();
    let mut dc = Dovecot::start(&env.pki, Options::default());
    let cfg = env.config(&format!(
        "{GLOBAL}{}",
        env.imap_target("flap", dc.ports.imaps, "")
    ));
    let d = Daemon::start(cfg).await;
    d.wait_probes("flap", "success", 1.0).await;
    dc.stop();
    let m = d.wait_probes("flap", "failure", 1.0).await;
    assert_eq!(
        sample(
            &m,
            "mailprobe_probe_failure_info",
            &[("target", "flap"), ("class", "connect_refused")]
        ),
        Some(1.0),
        "{m}"
    );
    dc.restart();
    let m = d.wait_probes("flap", "success", 1.0).await;
    assert_eq!(
        sample(&m, "mailprobe_probe_success", &[("target", "flap")]),
        Some(1.0)
    );
    assert!(sample(&m, "mailprobe_probe_failure_info", &[("target", "flap")]).is_none());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_targets_run_in_the_daemon_with_their_phases_and_certificate() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let pf = mailprobe_testpeers::postfix::Postfix::start(&env.pki, &dc, None);
    // Phase gauges are opt-in; this target shows them end to end.
    let cfg = env.config(&format!(
        "{GLOBAL}[metrics]\nphase_gauges = true\n{}{}",
        env.smtp_target("submission", pf.ports.submission, ""),
        env.smtp_target("wrongpass", pf.ports.submissions, "tls = \"implicit\"")
            .replace(
                &env.dir.path().join("wrongpass.pass").display().to_string(),
                &env.secret("bad.pass", "nope").display().to_string()
            ),
    ));
    let d = Daemon::start(cfg).await;
    d.wait_probes("submission", "success", 1.0).await;
    let m = d.wait_probes("wrongpass", "failure", 1.0).await;
    let sub = [("target", "submission"), ("protocol", "smtp")];
    assert_eq!(
        sample(&m, "mailprobe_probe_success", &sub),
        Some(1.0),
        "{m}"
    );
    for phase in [
        "greeting", "ehlo", "starttls", "tls", "ehlo_tls", "auth", "quit",
    ] {
        let v = sample(
            &m,
            "mailprobe_probe_phase_duration_seconds",
            &[("target", "submission"), ("phase", phase)],
        );
        assert!(v.is_some_and(|v| v > 0.0), "phase {phase}: {v:?}");
    }
    // The certificate seen after STARTTLS is exported.
    assert_eq!(
        sample(&m, "mailprobe_tls_cert_expiry_timestamp_seconds", &sub),
        Some(env.pki.valid.not_after as f64)
    );
    assert_eq!(
        sample(
            &m,
            "mailprobe_probe_failure_info",
            &[
                ("target", "wrongpass"),
                ("class", "auth_rejected"),
                ("phase", "auth")
            ]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "mailprobe_targets", &[("protocol", "smtp")]),
        Some(2.0)
    );
    d.stop().await;
}

/// In front of the daemon's sink: once `kill` is set, the next target task that reports panics
/// there, as a bug in the reporting path would.
struct Killing {
    inner: std::sync::Arc<dyn mailprobe::scheduler::OutcomeSink>,
    kill: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl mailprobe::scheduler::OutcomeSink for Killing {
    fn record(&self, o: mailprobe::probe::Outcome) {
        if self.kill.swap(false, std::sync::atomic::Ordering::AcqRel) {
            panic!("a bug in the reporting path (deliberate, in the test)");
        }
        self.inner.record(o);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_reporting_path_is_a_prober_fault_and_probing_goes_on() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let cfg = env.config(&format!(
        "{GLOBAL}{}{}",
        env.imap_target("a", dc.ports.imaps, ""),
        env.imap_target("b", dc.ports.imaps, "")
    ));
    let kill = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let k = kill.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(mailprobe::daemon::run_with(
        cfg,
        listener,
        shutdown.clone(),
        Box::new(move |inner| std::sync::Arc::new(Killing { inner, kill: k })),
    ));
    let d = common::Daemon {
        addr,
        shutdown,
        task,
    };
    d.wait_probes("a", "success", 1.0).await;
    d.wait_probes("b", "success", 1.0).await;
    assert_eq!(http(d.addr, "GET", "/-/ready").await.0, 200);

    kill.store(true, std::sync::atomic::Ordering::Release);
    // The panic is caught where the outcome is recorded: counted as mailprobe's own fault, and
    // both targets keep being probed, so the daemon stays ready.
    common::eventually(10, "the panic to be counted as a prober fault", || async {
        let m = d.metrics().await;
        (sample(
            &m,
            "mailprobe_prober_errors_total",
            &[("protocol", "imap"), ("reason", "panic")],
        )
        .is_some_and(|v| v >= 1.0))
        .then_some(())
    })
    .await;
    // A success of each seen from now on (wait_probes counts what it sees while waiting).
    d.wait_probes("a", "success", 2.0).await;
    d.wait_probes("b", "success", 2.0).await;
    assert_eq!(http(d.addr, "GET", "/-/ready").await.0, 200);
    d.stop().await;
}
