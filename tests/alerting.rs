//! Alerting end to end, with the shipped rules file: a real Dovecot, two daemons standing for two
//! locations, a real Prometheus scraping both and evaluating deploy/prometheus/mailprobe.rules.yml,
//! and a real Alertmanager notifying a webhook written here. Stopping Dovecot must page with the
//! failure class; starting it again must resolve the page.

mod common;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, Env, http};
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use mailprobe_testpeers::fault::{Action, FaultServer, Script};
use mailprobe_testpeers::prometheus::{Alertmanager, Prometheus};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GLOBAL: &str = "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\nslow_threshold = \"5s\"\n";
const TARGET: &str = "imap-test";
/// A second target of the region, which answers every IMAP command but greets 600 ms late: the
/// one `topk` must name behind the region's latency.
const SLOW: &str = "imap-slow";
const LOCATIONS: [&str; 2] = ["loc-a", "loc-b"];

/// An HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it, as Alertmanager's
/// webhook receiver does.
struct Webhook {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    async fn start() -> Webhook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    if let Some(body) = read_request_body(stream).await {
                        let v = serde_json::from_slice(&body).unwrap_or_else(|e| {
                            Value::String(format!(
                                "not JSON ({e}): {}",
                                String::from_utf8_lossy(&body)
                            ))
                        });
                        sink.lock().unwrap().push(v);
                    }
                });
            }
        });
        Webhook { addr, received }
    }

    /// Every alert received so far, with the notification's time of arrival order kept.
    fn alerts(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The locations of received `alertname` alerts with `status` whose labels include `labels`.
    fn locations(
        &self,
        alertname: &str,
        status: &str,
        labels: &[(&str, &str)],
    ) -> BTreeSet<String> {
        self.alerts()
            .iter()
            .filter(|a| a["status"] == status && a["labels"]["alertname"] == alertname)
            .filter(|a| labels.iter().all(|(k, v)| a["labels"][*k] == *v))
            .filter_map(|a| a["labels"]["location"].as_str().map(str::to_string))
            .collect()
    }

    fn dump(&self) -> String {
        serde_json::to_string_pretty(&*self.received.lock().unwrap()).unwrap()
    }
}

/// Reads one HTTP request with a Content-Length body, answers 200 and returns the body.
async fn read_request_body(mut s: tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Alertmanager sends a Content-Length");
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    Some(buf[head_end..head_end + len].to_vec())
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GETs `path` from Prometheus's API and returns the JSON (status and all).
async fn api(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path).await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: HTTP {status}, {e}: {body}"))
}

/// An instant query: the API's answer (`status` is "success" or "error").
async fn query(addr: SocketAddr, q: &str) -> Value {
    api(addr, &format!("/api/v1/query?query={}", encode(q))).await
}

/// Polls `check` every 50 ms for up to `secs`; on timeout panics with `what` and `diagnose()`.
async fn wait_until<F, Fut, D, DFut>(secs: u64, what: &str, mut check: F, diagnose: D)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
    D: FnOnce() -> DFut,
    DFut: std::future::Future<Output = String>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        if Instant::now() > deadline {
            panic!(
                "timed out after {secs} s waiting for {what}\n{}",
                diagnose().await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The dashboard's queries with Grafana's variables replaced by what Grafana would send.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/mailprobe.json"
    ))
    .unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    let mut exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    exprs.extend(
        dash["annotations"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["expr"].as_str().map(str::to_string)),
    );
    exprs
        .iter()
        .map(|e| {
            e.replace("$location", ".*")
                .replace("$region", ".*")
                .replace("$target", ".*")
                .replace("$protocol", ".*")
                .replace("$__range", "1h")
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "1m")
        })
        .collect()
}

/// Dashboard queries that may rightly show nothing in this test, and why.
const MAY_BE_EMPTY: &[(&str, &str)] = &[
    (
        "target:mailprobe_availability:ratio_1d",
        "recorded by a group evaluated every 5 minutes, longer than this test",
    ),
    (
        "target:mailprobe_availability:ratio_30d",
        "recorded by a group evaluated every 5 minutes, longer than this test",
    ),
    (
        "mailprobe_region_roundtrip_delivery_seconds",
        "this fleet has no round trip (tests/roundtrip.rs reads the series)",
    ),
    (
        "mailprobe_roundtrip_last",
        "this fleet has no round trip (tests/roundtrip.rs reads the series)",
    ),
    (
        "ALERTS{",
        "an annotation query: no page fires on a healthy fleet",
    ),
];

/// Runs every dashboard query against Prometheus until each is accepted and returns series
/// (rates need a few scrapes, recorded series an evaluation), unless listed in
/// [`MAY_BE_EMPTY`]; gives up after 30 s.
async fn dashboard_shows_data(p: SocketAddr, fleet: &str) {
    let queries = dashboard_queries();
    assert!(queries.len() >= 10);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut empty = Vec::new();
        for q in &queries {
            let answer = query(p, q).await;
            assert_eq!(answer["status"], "success", "dashboard query {q}: {answer}");
            let rows = answer["data"]["result"].as_array().map_or(0, Vec::len);
            if rows == 0 && !MAY_BE_EMPTY.iter().any(|(what, _)| q.contains(what)) {
                empty.push(q.clone());
            }
        }
        if empty.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "dashboard queries without data on a {fleet} fleet: {empty:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_pages_with_its_class_through_prometheus_and_alertmanager_then_resolves() {
    let env = Env::new();
    let mut dc = Dovecot::start(&env.pki, Options::default());
    let slow = FaultServer::start_tls(
        Script::new(
            Action::Delay(
                Duration::from_millis(600),
                Box::new(Action::send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] slow\r\n")),
            ),
            |line| {
                let mut words = line.split(' ');
                let tag = words.next().unwrap_or("*");
                match words.next().map(str::to_ascii_uppercase).as_deref() {
                    Some("CAPABILITY") => Action::send(format!(
                        "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n"
                    )),
                    Some("SELECT") | Some("EXAMINE") => Action::send(format!(
                        "* FLAGS (\\Seen)\r\n* 0 EXISTS\r\n* 0 RECENT\r\n{tag} OK [READ-WRITE] done\r\n"
                    )),
                    Some("LOGOUT") => Action::SendAndClose(
                        format!("* BYE bye\r\n{tag} OK done\r\n").into_bytes(),
                    ),
                    _ => Action::send(format!("{tag} OK done\r\n")),
                }
            },
        ),
        env.pki.valid.server_config(&[]),
    )
    .await;
    let config = format!(
        "{GLOBAL}{}{}",
        env.imap_target(TARGET, dc.ports.imaps, ""),
        // Its own interval, so that its 600 ms never overrun a probe.
        env.imap_target(SLOW, slow.port(), "interval = \"3s\"\ntimeout = \"2s\"")
    );
    // Two daemons probing the same mailbox stand for two vantage points (each with its own
    // state directory, as two machines would have).
    let at = |location: &str| {
        format!(
            "{config}[incidents]\nstate_dir = \"{}\"\n",
            env.dir.path().join(location).display()
        )
    };
    let daemons = [
        Daemon::start(env.config(&at("loc-a"))).await,
        Daemon::start(env.config(&at("loc-b"))).await,
    ];
    let webhook = Webhook::start().await;

    let am_config = format!(
        "global:\n  resolve_timeout: 5s\n\
         route:\n  receiver: test\n  group_by: ['...']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: test\n    webhook_configs:\n      - url: http://{}/alerts\n        send_resolved: true\n",
        webhook.addr
    );
    let am = tokio::task::spawn_blocking(move || Alertmanager::start(&am_config))
        .await
        .unwrap();
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/mailprobe.rules.yml"
    );
    let scrape_targets: String = daemons
        .iter()
        .zip(LOCATIONS)
        .map(|(d, loc)| {
            format!(
                "      - targets: ['{}']\n        labels: {{location: {loc}}}\n",
                d.addr
            )
        })
        .collect();
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n\
         scrape_configs:\n  - job_name: mailprobe\n    static_configs:\n{scrape_targets}",
        am.addr()
    );
    let prom = tokio::task::spawn_blocking(move || Prometheus::start(&prom_config))
        .await
        .unwrap();
    let p = prom.addr();
    let diagnose = || async {
        format!(
            "--- webhook received ---\n{}\n--- Prometheus alerts ---\n{}\n--- Prometheus log ---\n{}\n--- Alertmanager log ---\n{}",
            webhook.dump(),
            api(p, "/api/v1/alerts").await,
            prom.log(),
            am.log()
        )
    };

    // Healthy from both locations, as Prometheus sees it.
    let healthy = format!("count(mailprobe_probe_success{{target=\"{TARGET}\"}} == 1)");
    wait_until(
        30,
        "Prometheus to see the target up from both locations",
        || async { query(p, &healthy).await["data"]["result"][0]["value"][1] == "2" },
        diagnose,
    )
    .await;

    // Every shipped rule evaluates without error against the real series: those Prometheus
    // evaluates every second have run, and each rule's expression (the 30-day group runs only
    // every 5 minutes) is accepted as a query.
    let groups = api(p, "/api/v1/rules").await["data"]["groups"].clone();
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.len(), 9, "{groups:?}");
    wait_until(
        10,
        "every rule of the fast groups to be evaluated once",
        || async {
            let groups = api(p, "/api/v1/rules").await["data"]["groups"].clone();
            let fast: Vec<Value> = groups
                .as_array()
                .unwrap()
                .iter()
                .filter(|g| g["interval"].as_f64() == Some(1.0))
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            for r in &fast {
                assert_ne!(r["health"], "err", "rule failed: {r}");
            }
            fast.len() >= 20 && fast.iter().all(|r| r["health"] == "ok")
        },
        diagnose,
    )
    .await;
    for rule in groups
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
    {
        let answer = query(p, rule["query"].as_str().unwrap()).await;
        assert_eq!(answer["status"], "success", "rule {rule}: {answer}");
    }

    // Every dashboard query is PromQL the real Prometheus accepts, and shows data on a healthy
    // fleet (failure panels a 0, not "No data").
    let healthy_slow = format!("mailprobe_probe_success{{target=\"{SLOW}\"}} == 1");
    wait_until(
        30,
        "the slow target up from both locations",
        || async {
            query(p, &healthy_slow).await["data"]["result"]
                .as_array()
                .is_some_and(|r| r.len() == 2)
        },
        diagnose,
    )
    .await;
    dashboard_shows_data(p, "healthy").await;

    // The README's recipe: the region's p95 is the slow target's, and topk names it. The slow
    // target probes every 3 s, so its first observation may predate Prometheus's first scrape;
    // the rate shows it once a later probe lands between two scrapes.
    let p95 = "histogram_quantile(0.95, sum by (le, region, protocol) (rate(mailprobe_region_probe_duration_seconds_bucket{region=\"test\", protocol=\"imap\"}[1m])))";
    wait_until(
        30,
        "the region's p95 to hold the slow target's 600 ms",
        || async {
            let answer = query(p, p95).await;
            answer["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v >= 0.5)
        },
        || async { format!("{}\n{}", query(p, p95).await, diagnose().await) },
    )
    .await;
    let worst = "topk(1, max by (target, region, protocol) (mailprobe_probe_last_duration_seconds{region=\"test\", protocol=\"imap\"}))";
    let answer = query(p, worst).await;
    assert_eq!(
        answer["data"]["result"][0]["metric"]["target"], SLOW,
        "{answer}"
    );

    assert!(
        webhook
            .alerts()
            .iter()
            .all(|a| a["labels"]["alertname"] != "MailprobeTargetDown"),
        "paged while healthy: {}",
        webhook.dump()
    );

    // Stop the server: both locations page, with the class and phase of the failure.
    tokio::task::block_in_place(|| dc.stop());
    let stopped = Instant::now();
    let down = [
        ("target", TARGET),
        ("region", "test"),
        ("protocol", "imap"),
        ("class", "connect_refused"),
        ("phase", "connect"),
        ("severity", "critical"),
        ("job", "mailprobe"),
    ];
    let first_firing = Cell::new(None);
    wait_until(
        30,
        "MailprobeTargetDown firing with class connect_refused from both locations",
        || async {
            let seen = webhook.locations("MailprobeTargetDown", "firing", &down);
            if !seen.is_empty() && first_firing.get().is_none() {
                first_firing.set(Some(stopped.elapsed()));
            }
            seen.len() == LOCATIONS.len()
        },
        diagnose,
    )
    .await;
    let all_firing = stopped.elapsed();
    // And on a failing fleet.
    dashboard_shows_data(p, "failing").await;
    let page = webhook
        .alerts()
        .into_iter()
        .find(|a| a["labels"]["alertname"] == "MailprobeTargetDown")
        .unwrap();
    let description = page["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains(TARGET)
            && description.contains("connect_refused at phase connect")
            && description.contains("from location loc-"),
        "{description}"
    );

    // Start it again: the page resolves for both locations.
    tokio::task::block_in_place(|| dc.restart());
    let restarted = Instant::now();
    let first_resolved = Cell::new(None);
    wait_until(
        30,
        "MailprobeTargetDown resolved for both locations",
        || async {
            let seen = webhook.locations("MailprobeTargetDown", "resolved", &down);
            if !seen.is_empty() && first_resolved.get().is_none() {
                first_resolved.set(Some(restarted.elapsed()));
            }
            seen.len() == LOCATIONS.len()
        },
        diagnose,
    )
    .await;
    let all_resolved = restarted.elapsed();

    eprintln!(
        "Dovecot stopped -> firing webhook: {:.1} s (both locations: {:.1} s); \
         restarted -> resolved webhook: {:.1} s (both: {:.1} s)",
        first_firing.get().unwrap().as_secs_f64(),
        all_firing.as_secs_f64(),
        first_resolved.get().unwrap().as_secs_f64(),
        all_resolved.as_secs_f64(),
    );
    // Nothing but the target-down pages and their resolution: no other alert fired on the way.
    let names: BTreeSet<String> = webhook
        .alerts()
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
        .collect();
    // (A real outage also burns the error budget: that page may come too.)
    assert!(
        names.contains("MailprobeTargetDown")
            && names
                .iter()
                .all(|n| ["MailprobeTargetDown", "MailprobeErrorBudgetBurn"].contains(&n.as_str())),
        "{names:?}: {}",
        webhook.dump()
    );

    for d in daemons {
        d.stop().await;
    }
}
