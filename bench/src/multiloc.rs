//! A status instance's read per tick (issue 18): 10,000 targets × 3 locations held by a real
//! Prometheus, read through mailprobe's own query client and combined, as every tick does.
//!
//! Three small exporters written here serve what three probing daemons would export for
//! `mailprobe_target_state` (3 series per target) and `mailprobe_probe_failure_info` (the
//! failing targets); Prometheus scrapes each with its `location` label. Once it holds all
//! 30,000 current states, the status instance's read (both queries, parsing) and the vote are
//! timed over repeated ticks.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mailprobe::locations::combine::{Vote, combine};
use mailprobe::locations::query::Client;
use mailprobe_testpeers::prometheus::Prometheus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http;
use crate::report::{Report, Verdict};
use crate::scenarios::Ctx;

const TARGETS: usize = 10_000;
const LOCATIONS: [&str; 3] = ["fra", "nyc", "sgp"];
/// The tick the read must fit in well under: `[prometheus] interval`'s default.
const TICK: Duration = Duration::from_secs(15);

/// What a probing daemon at `location` exports for the status instance: every target up,
/// except every 50th down at `sgp` (200 failure_info series there).
fn exposition(location: &str) -> String {
    let mut s = String::with_capacity(TARGETS * 330);
    s.push_str("# HELP mailprobe_target_state The target's health after hysteresis.\n# TYPE mailprobe_target_state gauge\n");
    let down = |i: usize| location == "sgp" && i.is_multiple_of(50);
    for i in 0..TARGETS {
        let protocol = if i % 2 == 0 { "imap" } else { "smtp" };
        let now = if down(i) { "down" } else { "up" };
        for state in ["up", "degraded", "down"] {
            let _ = writeln!(
                s,
                "mailprobe_target_state{{protocol=\"{protocol}\",region=\"region-{:02}\",state=\"{state}\",target=\"target-{i:05}\"}} {}",
                i % 20,
                u8::from(state == now)
            );
        }
    }
    s.push_str("# HELP mailprobe_probe_failure_info The last failure.\n# TYPE mailprobe_probe_failure_info gauge\n");
    for i in (0..TARGETS).filter(|i| down(*i)) {
        let protocol = if i % 2 == 0 { "imap" } else { "smtp" };
        let _ = writeln!(
            s,
            "mailprobe_probe_failure_info{{class=\"connect_timeout\",phase=\"connect\",protocol=\"{protocol}\",region=\"region-{:02}\",target=\"target-{i:05}\"}} 1",
            i % 20
        );
    }
    s
}

/// Serves `body` as `/metrics` to every request on 127.0.0.1:0.
async fn exporter(body: String) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The scenario.
pub async fn multilocation(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("multilocation: 3 exporters of {TARGETS} targets, a real Prometheus");
    let mut scrape = String::new();
    for loc in LOCATIONS {
        let addr = exporter(exposition(loc)).await?;
        let _ = write!(
            scrape,
            "      - targets: ['{addr}']\n        labels: {{location: {loc}}}\n"
        );
    }
    let config = format!(
        "global:\n  scrape_interval: 5s\n  scrape_timeout: 5s\n\
         scrape_configs:\n  - job_name: mailprobe\n    static_configs:\n{scrape}"
    );
    let prom = tokio::task::spawn_blocking(move || Prometheus::start(&config)).await?;
    let p = prom.addr();
    let want = TARGETS * LOCATIONS.len();
    let count_q = format!(
        "/api/v1/query?query={}",
        encode("count(mailprobe_target_state == 1)")
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, body) = http::scrape(p, &count_q).await?;
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let n = v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        if n == want {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "Prometheus holds {n} of {want} current states after 90 s\n{}",
                prom.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let path = ctx.path.join("status.toml");
    std::fs::write(
        &path,
        format!(
            "[global]\nsource = \"prometheus\"\n[prometheus]\nurl = \"http://{p}\"\ninterval = \"15s\"\ntimeout = \"10s\"\n\
             [incidents]\nstate_dir = \"{}\"\n",
            ctx.path.join("status-state").display()
        ),
    )?;
    let cfg = mailprobe::load::load(&path).context("status config")?;
    let settings = cfg.prometheus.context("[prometheus]")?;
    let client = Client::new(settings).map_err(anyhow::Error::new)?;
    let rounds = if ctx.quick { 5 } else { 20 };
    let (states_q, failures_q) = client.queries();
    let raw_paths = [
        format!("/api/v1/query?query={}", encode(&states_q)),
        format!("/api/v1/query?query={}", encode(&failures_q)),
    ];
    let (mut reads, mut combines, mut raws) = (Vec::new(), Vec::new(), Vec::new());
    let (mut bytes, mut reports, mut down, mut blind) = (0, 0, 0, 0);
    // Two reads to warm Prometheus's caches and the connection, then the measured ticks.
    for round in 0..rounds + 2 {
        let read = client.read().await.map_err(anyhow::Error::new)?;
        let started = Instant::now();
        let (combined, seen) = combine(&read.reports, &Vote::default());
        let took = started.elapsed();
        if round >= 2 {
            reads.push(read.took);
            combines.push(took);
            // Prometheus alone: the same two queries, one after the other, body unread.
            let mut raw = Duration::ZERO;
            for q in &raw_paths {
                raw += http::scrape(p, q).await?.0;
            }
            raws.push(raw);
        }
        bytes = read.bytes;
        reports = read.reports.len();
        down = combined
            .iter()
            .filter(|c| c.health == Some(mailprobe::incidents::Health::Down))
            .count();
        blind = seen.locations.iter().filter(|l| l.blind).count();
    }
    if reports != want {
        bail!("a read returned {reports} reports, not {want}");
    }
    reads.sort();
    combines.sort();
    raws.sort();
    let median = reads[reads.len() / 2];
    let max = *reads.last().expect("rounds > 0");
    let whole = median + combines[combines.len() / 2];
    report.figure(
        "Status instance: read per tick, 10,000 targets × 3 locations",
        "well under the 15 s tick (< 1.5 s)",
        format!(
            "{} median, {} max over {rounds} ticks (read {}, vote {}); {:.1} MB per read",
            ms(whole),
            ms(max + *combines.last().expect("rounds > 0")),
            ms(median),
            ms(combines[combines.len() / 2]),
            bytes as f64 / 1e6
        ),
        if max < TICK / 10 {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    );
    report.section(
        "Status instance reading 10,000 targets × 3 locations from Prometheus",
        format!(
            "Three exporters serve what three probing daemons export for 10,000 targets \
             (`mailprobe_target_state`, 3 series each, 90,000 series; 200 targets down from \
             `sgp` only, with their `mailprobe_probe_failure_info`), scraped every 5 s by the \
             machine's Prometheus with `location` labels. Each tick the status instance runs \
             its two instant queries (`max by (location, target, region, protocol, state) \
             (mailprobe_target_state == 1)` and the failure info) through its own bounded client \
             and votes: {reports} reports, {bytes} bytes per read, {down} targets down after \
             the vote (the 200 seen from `sgp` alone are not), {blind} blind locations.\n\n\
             Read (both queries, transfer, JSON parsing): median {}, max {}. Vote: median {}, \
             max {}. Prometheus alone (the same two queries one after the other, from request to \
             last byte, nothing parsed): median {}, max {}. Over {rounds} ticks after two \
             warm-up reads.\n",
            ms(median),
            ms(max),
            ms(combines[combines.len() / 2]),
            ms(*combines.last().expect("rounds > 0")),
            ms(raws[raws.len() / 2]),
            ms(*raws.last().expect("rounds > 0")),
        ),
    );
    drop(prom);
    Ok(())
}
