//! Pure hot paths, timed without network: config load, metrics registration, recording an
//! outcome, rendering `/metrics`, and parsing an IMAP reply, at the 10,000-target scale of
//! BENCHMARKS.md. `cargo bench` (std timing; no benchmark framework to build).
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mailprobe::load;
use mailprobe::metrics::Metrics;
use mailprobe::probe::Target;
use mailprobe::probe::{Outcome, PhaseTiming, expected_phases};
use mailprobe::tls::{CertFacts, TlsFacts};

const TARGETS: usize = 10_000;

/// Runs `f` until `budget` is spent (at least `min` times) and prints min and median per call.
fn bench<T>(name: &str, min: usize, budget: Duration, mut f: impl FnMut() -> T) {
    black_box(f());
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < min || start.elapsed() < budget {
        let t = Instant::now();
        black_box(f());
        times.push(t.elapsed());
    }
    times.sort();
    let fmt = |d: Duration| {
        let ns = d.as_nanos() as f64;
        if ns >= 1e6 {
            format!("{:.2} ms", ns / 1e6)
        } else if ns >= 1e3 {
            format!("{:.2} µs", ns / 1e3)
        } else {
            format!("{ns:.0} ns")
        }
    };
    println!(
        "{name:<44} min {:>10}   median {:>10}   ({} runs)",
        fmt(times[0]),
        fmt(times[times.len() / 2]),
        times.len()
    );
}

/// A config of `n` IMAP STARTTLS targets like the benchmark's, in `dir` (which gets the CA and
/// password files it names).
fn config_text(dir: &Path, n: usize) -> String {
    // Any PEM certificate will do for loading; this one is generated for the bench.
    let pki = mailprobe_testpeers::pki::TestPki::generate(&dir.join("pki"));
    let pass = dir.join("probe.pass");
    std::fs::write(&pass, "secret\n").expect("password file");
    let mut s = String::from("[global]\ninterval = \"60s\"\ntimeout = \"10s\"\n\n");
    for i in 0..n {
        s.push_str(&format!(
            "[[target]]\nname = \"t{i:05}\"\nregion = \"r{}\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = 10143\ntls = \"starttls\"\nca_file = \"{}\"\nusername = \"t{i:05}\"\npassword_file = \"{}\"\n\n",
            i % 10,
            pki.ca.display(),
            pass.display()
        ));
    }
    s
}

/// What a successful IMAP STARTTLS probe of `t` returns.
fn outcome(t: &Arc<Target>) -> Outcome {
    let phases = expected_phases(&t.spec)
        .into_iter()
        .enumerate()
        .map(|(i, phase)| PhaseTiming {
            phase,
            duration: Duration::from_micros(300 + 17 * i as u64),
        })
        .collect();
    Outcome {
        target: t.clone(),
        started_at: SystemTime::now(),
        total: Duration::from_micros(4321),
        phases,
        failure: None,
        slow: false,
        tls: Some(TlsFacts {
            version: Some("TLS 1.3".into()),
            cipher: Some("TLS13_AES_256_GCM_SHA384".into()),
            alpn: None,
            cert: Some(CertFacts {
                not_after: 1_900_000_000,
                subject: "CN=localhost".into(),
                issuer: "CN=mailprobe test CA".into(),
            }),
            cert_check: None,
        }),
        banner: Some("Dovecot ready.".into()),
        delivery: None,
        http: None,
        token: None,
        peer: Some(([127, 0, 0, 1], 993).into()),
        mx: None,
        retry_after: None,
    }
}

fn main() {
    // `cargo bench -- FILTER` runs only the benches whose name contains FILTER.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let on = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    mailprobe::install_crypto_provider();
    let dir = mailprobe_testpeers::tempfile::tempdir().expect("temp dir");
    let text = config_text(dir.path(), TARGETS);
    let path = dir.path().join("probes.toml");
    let secs = Duration::from_secs(3);

    if on("config") {
        bench("config: parse 10,000 IMAP targets", 5, secs, || {
            load::parse(&path, &text).expect("valid config")
        });
    }
    let cfg = load::parse(&path, &text).expect("valid config");
    let targets = cfg.owned_targets();

    if on("register") {
        bench("metrics: new + register 10,000 targets", 5, secs, || {
            let m = Metrics::new();
            for t in &targets {
                m.register_target(t);
            }
            m
        });
    }
    let m = Metrics::new();
    for t in &targets {
        m.register_target(t);
    }
    let outcomes: Vec<Outcome> = targets.iter().map(outcome).collect();
    if on("observe") {
        let mut i = 0;
        bench("metrics: observe one IMAP outcome", 1000, secs, || {
            i = (i + 1) % outcomes.len();
            m.observe(&outcomes[i]);
        });
    }
    for o in &outcomes {
        m.observe(o);
    }
    if on("render") {
        let size = m.render().len();
        bench(
            &format!(
                "metrics: render 10,000 targets ({:.1} MB)",
                size as f64 / 1e6
            ),
            5,
            secs,
            || m.render(),
        );
    }
    if on("imap") {
        let select = b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n";
        bench("imap: parse one untagged FLAGS reply", 1000, secs, || {
            async_imap::imap_proto::Response::parse(select).expect("parses")
        });
    }
    if on("redact") {
        // A failure's detail is redacted whole before it is cut: a usual refusal, and the most an
        // IMAP refusal can hold (the answer and four untagged lines of 64 KiB each).
        let secrets = [
            secrecy::SecretString::from("pr0be-Secret"),
            secrecy::SecretString::from("in"),
        ];
        let usual = "IMAP NO [AUTHENTICATIONFAILED] Authentication failed. LOGIN \"probe@example.test\" \
                     \"pr0be-Secret\"; * NO [WEBALERT https://accounts.google.com/signin/continue?sarp=1] \
                     Web login required."
            .to_string();
        let line = format!(
            "* NO {} AHByb2JlQGV4YW1wbGUudGVzdABwcjBiZS1TZWNyZXQ=\r\n",
            "word ".repeat(13_100)
        );
        let worst = line.repeat(5);
        for (name, text) in [("a usual refusal", &usual), ("a 320 KiB refusal", &worst)] {
            bench(&format!("redact: {name}"), 10, secs, || {
                mailprobe::probe::redact::redact(text, &secrets)
            });
        }
    }
    if on("status") {
        status_benches(dir.path(), &targets, secs);
    }
}

/// The status page at 10,000 targets in 10 regions: a tick's rollup (one region under
/// maintenance), saving it, reading 90 days of rollups, and rendering the public page and the
/// admin view with 1,000 targets down.
fn status_benches(dir: &Path, targets: &[Arc<Target>], secs: Duration) {
    use mailprobe::incidents::service::Snapshot;
    use mailprobe::incidents::store::Store;
    use mailprobe::incidents::uptime::{DayRow, Rollup, day_of};
    use mailprobe::incidents::{Health, TargetState};
    use mailprobe::status::model::Clock;
    use mailprobe::status::public::{Inputs, page};

    let now = SystemTime::now();
    let mut states: Vec<TargetState> = targets
        .iter()
        .map(|t| TargetState::new(&t.name, &t.region, t.protocol(), Some(100), now))
        .collect();
    for s in states.iter_mut().step_by(10) {
        s.health = Health::Down;
        s.last_failure = Some((
            mailprobe::probe::classify::FailureClass::ConnectRefused,
            mailprobe::probe::Phase::Connect,
        ));
    }
    // One region in ten under a maintenance window.
    let maintenance: std::collections::BTreeSet<String> = states
        .iter()
        .filter(|s| s.region == states[0].region)
        .map(|s| s.name.clone())
        .collect();
    let mut rollup = Rollup::default();
    rollup.advance(now, states.iter(), &maintenance, &[]);
    let mut t = now;
    bench(
        "status: rollup of one tick, 10,000 targets",
        20,
        secs,
        || {
            t += Duration::from_secs(5);
            rollup.advance(t, states.iter(), &maintenance, &[])
        },
    );
    // 90 days of a fleet with 10 regions and two services per region.
    let mut store = Store::open(&dir.join("state")).expect("store");
    let today = day_of(now);
    let mut rows = Vec::new();
    for day in today - 89..=today {
        for r in 0..10 {
            for service in ["reading", "sending"] {
                rows.push(DayRow {
                    day,
                    region: format!("r{r}"),
                    service: service.into(),
                    observed_ms: 86_400_000,
                    partial_ms: 60_000,
                    down_share_ms: 6_000.0,
                    incidents: [day].into(),
                    ..DayRow::default()
                });
            }
        }
    }
    store.add_uptime(&rows).expect("saved");
    let tick: Vec<DayRow> = rows[rows.len() - 20..].to_vec();
    bench(
        "status: save one tick's rollups (20 components)",
        20,
        secs,
        || store.add_uptime(&tick).expect("saved"),
    );
    bench(
        "status: read 90 days of rollups (20 components)",
        20,
        secs,
        || store.uptime(today - 89).expect("read"),
    );
    let uptime = store.uptime(today - 89).expect("read");
    let snapshot = Snapshot {
        at: Some(now),
        targets: states,
        open: Vec::new(),
        ..Snapshot::default()
    };
    let settings = mailprobe::load::StatusSettings::default();
    let clock = Clock::new(now, settings.time_zone.clone());
    let inputs = Inputs {
        snapshot: &snapshot,
        history: &[],
        uptime: &uptime,
        settings: &settings,
        clock: &clock,
    };
    let size = page(&inputs).len();
    bench(
        &format!(
            "status: public page, 10,000 targets ({:.0} kB)",
            size as f64 / 1e3
        ),
        20,
        secs,
        || page(&inputs),
    );
    let recent = mailprobe::status::recent::RecentProbes::default();
    let size = mailprobe::status::page(&snapshot, &[], &recent).len();
    bench(
        &format!(
            "status: admin view, 1,000 failing ({:.0} kB)",
            size as f64 / 1e3
        ),
        5,
        secs,
        || mailprobe::status::page(&snapshot, &[], &recent),
    );
}
