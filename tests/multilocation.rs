//! Many vantage points, one truth, end to end: three probing daemons with the `location` labels
//! loc-a, loc-b and loc-c probing the real Dovecot (loc-c through a proxy this test can cut), a
//! real Prometheus scraping them, and a status instance (`source = "prometheus"`) reading from
//! that Prometheus. A blinded location opens no incident and is flagged; an outage every
//! location sees opens a global incident "seen from 3 of 3 locations"; Prometheus stopped makes
//! the page stale and nothing resolves; Prometheus back, the incident resolves.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Daemon, Env, http};
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use mailprobe_testpeers::prometheus::Prometheus;
use serde_json::Value;

const LOCATIONS: [&str; 3] = ["loc-a", "loc-b", "loc-c"];
/// Two targets in two regions: an outage of both is global.
const TARGETS: [(&str, &str); 2] = [("imap-eu", "eu"), ("imap-us", "us")];

/// A TCP proxy to `upstream` that can be cut: while cut, it accepts and closes at once (the
/// vantage point's own network failing, the server untouched).
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let gate = open.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !gate.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Proxy { port, open }
    }

    fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
    }
}

/// The status instance's `/api/v1/status`.
async fn status(addr: SocketAddr) -> Value {
    let (code, body) = http(addr, "GET", "/api/v1/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `check` on the status JSON every 100 ms for up to `secs`; returns the JSON that
/// satisfied it, or panics with the last one seen and `what`.
async fn wait_status(
    addr: SocketAddr,
    secs: u64,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = status(addr).await;
        if check(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}; last status:\n{}",
            serde_json::to_string_pretty(&s).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn all_up(s: &Value) -> bool {
    s["summary"]["targets"] == 2 && s["summary"]["up"] == 2
}

fn blind(s: &Value) -> Vec<String> {
    s["locations"]["locations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["blind"] == true)
        .filter_map(|l| l["name"].as_str().map(str::to_string))
        .collect()
}

fn reporting(s: &Value) -> usize {
    s["locations"]["locations"].as_array().map_or(0, Vec::len)
}

fn prometheus_config(daemons: &[Daemon]) -> String {
    let targets: String = daemons
        .iter()
        .zip(LOCATIONS)
        .map(|(d, loc)| {
            format!(
                "      - targets: ['{}']\n        labels: {{location: {loc}}}\n",
                d.addr
            )
        })
        .collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: mailprobe\n    static_configs:\n{targets}"
    )
}

fn status_config(env: &Env, prometheus: SocketAddr) -> String {
    format!(
        "[global]\nsource = \"prometheus\"\n\
         [prometheus]\nurl = \"http://{prometheus}\"\ninterval = \"1s\"\ntimeout = \"1s\"\n\
         [incidents]\nstate_dir = \"{}\"\ndown_after = 1\nup_after = 1\n",
        env.dir.path().join("status-state").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_vote_a_blind_one_is_flagged_and_missing_data_changes_nothing() {
    let env = Env::new();
    let mut dc = Dovecot::start(&env.pki, Options::default());
    let proxy = Proxy::start(dc.ports.imaps).await;

    let mut daemons = Vec::new();
    for loc in LOCATIONS {
        let port = if loc == "loc-c" {
            proxy.port
        } else {
            dc.ports.imaps
        };
        let mut text = "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n".to_string();
        for (name, region) in TARGETS {
            text.push_str(
                &env.imap_target(name, port, "")
                    .replace("region = \"test\"", &format!("region = \"{region}\"")),
            );
        }
        text.push_str(&format!(
            "[incidents]\nstate_dir = \"{}\"\n",
            env.dir.path().join(loc).display()
        ));
        daemons.push(Daemon::start(env.config(&text)).await);
    }
    let prom_config = prometheus_config(&daemons);
    let pc = prom_config.clone();
    let prom = tokio::task::spawn_blocking(move || Prometheus::start(&pc))
        .await
        .unwrap();

    let path = env.dir.path().join("status.toml");
    std::fs::write(&path, status_config(&env, prom.addr())).unwrap();
    let cfg = mailprobe::load::load(&path).unwrap();
    let st = Daemon::start(cfg).await;
    let a = st.addr;

    // Every location reports both targets up.
    wait_status(a, 40, "both targets up from 3 locations", |s| {
        all_up(s) && reporting(s) == 3 && s["stale"] == false
    })
    .await;
    let (_, page) = http(a, "GET", "/").await;
    assert!(page.contains("Vantage points (3)"), "{page}");
    assert!(!page.contains("id=\"stale\""), "{page}");

    // loc-c's network fails: it sees everything down, the others see mail working. Flagged
    // blind; no incident.
    proxy.set_open(false);
    let s = wait_status(a, 30, "loc-c flagged blind", |s| blind(s) == ["loc-c"]).await;
    assert!(
        all_up(&s),
        "a blind vantage point must not take a target down: {s}"
    );
    assert_eq!(s["incidents"].as_array().unwrap().len(), 0, "{s}");
    assert_eq!(
        s["locations"]["targets"]["imap-eu"]["text"],
        "only from loc-c: that vantage point's network (it sees nearly everything failing)"
    );
    let (_, page) = http(a, "GET", "/").await;
    assert!(
        page.contains("loc-c: 2 targets, 2 down · <b>blind</b>"),
        "{page}"
    );
    // The blind location's own daemon did open an incident of its own: the difference is
    // the vote, not a quiet prober.
    let (_, own) = http(daemons[2].addr, "GET", "/api/v1/status").await;
    let own: Value = serde_json::from_str(&own).unwrap();
    assert_eq!(own["summary"]["down"], 2, "{own}");
    let (_, history) = http(a, "GET", "/api/v1/incidents?since=1h").await;
    let history: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(
        history.as_array().expect("an array of incidents").len(),
        0,
        "{history}"
    );

    proxy.set_open(true);
    wait_status(a, 30, "loc-c seeing again", |s| {
        blind(s).is_empty() && all_up(s) && s["locations"]["locations"][2]["down"] == 0
    })
    .await;

    // Dovecot down: every location sees it. One global incident, seen from 3 of 3.
    tokio::task::block_in_place(|| dc.stop());
    let s = wait_status(a, 30, "a global incident seen from every location", |s| {
        s["summary"]["down"] == 2
            && s["incidents"]
                .as_array()
                .is_some_and(|i| i.len() == 1 && i[0]["summary"]["scope"] == "global")
            && s["locations"]["incidents"][0]["text"]
                == "seen from 3 of 3 locations (loc-a, loc-b, loc-c)"
    })
    .await;
    assert!(
        blind(&s).is_empty(),
        "everything down everywhere is an outage: {s}"
    );
    let incident = s["incidents"][0]["id"].clone();
    let cause = &s["incidents"][0]["summary"]["cause"];
    assert_eq!(cause["class"], "connect_refused", "{s}");

    // Prometheus stops. The page goes stale, not up, and the incident stays open while mail
    // comes back behind the missing data.
    drop(prom);
    let s = wait_status(a, 20, "stale", |s| s["stale"] == true).await;
    assert!(
        s["locations"]["stale_reason"]
            .as_str()
            .is_some_and(|r| r.contains("unreachable")),
        "{s}"
    );
    let (_, page) = http(a, "GET", "/").await;
    assert!(page.contains("id=\"stale\""), "{page}");
    assert!(
        page.contains("<span class=\"badge stale\">stale</span>"),
        "{page}"
    );
    tokio::task::block_in_place(|| dc.restart());
    // Each probing daemon sees mail back on its own...
    for d in &daemons {
        let addr = d.addr;
        common::eventually(30, "a probing daemon to see mail back", || async move {
            let (_, body) = http(addr, "GET", "/api/v1/status").await;
            let v: Value = serde_json::from_str(&body).ok()?;
            (v["summary"]["up"] == 2).then_some(())
        })
        .await;
    }
    // ... and the status instance, ticking on without data, resolves nothing: two of its
    // ticks later (its snapshot's time moved on), the incident is still open.
    let before = status(a).await["as_of"].clone();
    let s = wait_status(a, 20, "a tick of the status instance", |s| {
        s["as_of"] != before
    })
    .await;
    let s2 = wait_status(a, 20, "another tick", |x| x["as_of"] != s["as_of"]).await;
    for s in [&s, &s2] {
        assert_eq!(s["stale"], true, "{s}");
        assert_eq!(s["summary"]["down"], 2, "no data is not a recovery: {s}");
        assert_eq!(s["incidents"][0]["id"], incident, "{s}");
        assert_eq!(s["incidents"][0]["closed_at"], Value::Null, "{s}");
    }

    // Prometheus back (a new one: the status instance is pointed at it by a reload).
    let pc = prom_config.clone();
    let prom = tokio::task::spawn_blocking(move || Prometheus::start(&pc))
        .await
        .unwrap();
    std::fs::write(&path, status_config(&env, prom.addr())).unwrap();
    let (code, body) = http(a, "POST", "/-/reload").await;
    assert_eq!(code, 200, "{body}");
    wait_status(a, 40, "fresh data, mail up, the incident resolved", |s| {
        s["stale"] == false && all_up(s) && s["incidents"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    let (_, history) = http(a, "GET", "/api/v1/incidents?since=1h").await;
    let history: Value = serde_json::from_str(&history).unwrap();
    let resolved = history
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == incident)
        .unwrap_or_else(|| panic!("incident {incident} in {history}"));
    assert!(resolved["closed_at"].is_string(), "{history}");

    st.stop().await;
    for d in daemons {
        d.stop().await;
    }
}

/// The deployment example: the status instance's config loads with the real loader, and
/// Prometheus accepts the scrape config (probing instances with shards, status instances in a
/// job of their own) with the rules it loads.
#[test]
fn the_deployment_example_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/status");
    let cfg = mailprobe::load::load(std::path::Path::new(&format!("{dir}/status.toml")))
        .unwrap_or_else(|e| panic!("deploy/status/status.toml: {e}"));
    let p = cfg.prometheus.expect("[prometheus]");
    assert_eq!(p.selector, "job=\"mailprobe\"");
    assert_eq!(cfg.incidents.policy.down_after, 1);
    let promtool = mailprobe_testpeers::util::require_program("promtool", "prometheus");
    let out = std::process::Command::new(promtool)
        .args(["check", "config", &format!("{dir}/prometheus.yml")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(format!("{dir}/prometheus.yml")).unwrap();
    assert!(text.contains("job_name: mailprobe\n"), "{text}");
    assert!(text.contains("job_name: mailprobe-status"), "{text}");
}
