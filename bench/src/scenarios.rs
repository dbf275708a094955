//! The scenarios behind each figure of BENCHMARKS.md.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use mailprobe_testpeers::dovecot::{self, Dovecot};
use mailprobe_testpeers::pki::TestPki;
use mailprobe_testpeers::postfix::Postfix;
use mailprobe_testpeers::tempfile::TempDir;
use mailprobe_testpeers::util::short_tempdir;
use tokio::sync::Semaphore;

use crate::http;
use crate::imapd::{self, Responder};
use crate::procfs::{self, MachineMark};
use crate::procs::{self, Proc};
use crate::prom;
use crate::report::{Report, Verdict};

/// What every scenario shares: scratch directory, test PKI, the binaries and the machine.
pub struct Ctx {
    dir: Option<TempDir>,
    pub(crate) path: PathBuf,
    pub(crate) pki: TestPki,
    /// A password file every target can use.
    pub(crate) pass: PathBuf,
    /// Dovecot users the IMAP targets log in as, round robin: Dovecot refuses more than 10
    /// sessions of one user from one address at once.
    dovecot_users: Vec<String>,
    pub(crate) bin: PathBuf,
    /// The same build with symbols, for callgrind.
    profiled: PathBuf,
    /// The blackbox_exporter binary.
    pub blackbox: PathBuf,
    pub(crate) ticks: f64,
    /// Online CPUs.
    pub cores: usize,
    pub(crate) quick: bool,
    /// mailprobe's version and commit.
    pub version: String,
    /// /proc/loadavg when the run began.
    pub load_at_start: String,
}

impl Ctx {
    /// Creates the scratch directory and the test PKI.
    pub fn new(bin: &Path, profiled: &Path, blackbox: &Path, quick: bool) -> anyhow::Result<Ctx> {
        let bin = std::fs::canonicalize(bin)
            .with_context(|| format!("{} not found (build it first)", bin.display()))?;
        let dir = short_tempdir("mpb-");
        let path = dir.path().to_path_buf();
        let pki = TestPki::generate(&path.join("pki"));
        let pass = path.join("probe.pass");
        std::fs::write(&pass, format!("{}\n", dovecot::PASSWORD))?;
        let version = std::process::Command::new(&bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let commit = std::env::var("MAILPROBE_BENCH_COMMIT").unwrap_or_default();
        Ok(Ctx {
            dir: Some(dir),
            path,
            pki,
            pass,
            dovecot_users: (0..50)
                .map(|i| format!("bench{i:02}@example.test"))
                .collect(),
            bin,
            profiled: profiled.to_path_buf(),
            blackbox: blackbox.to_path_buf(),
            ticks: procfs::clock_ticks(),
            cores: procfs::cores(),
            quick,
            version: format!("{version} {commit}").trim().to_string(),
            load_at_start: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_string(),
        })
    }

    /// Keeps the scratch directory after the run and returns its path.
    pub fn keep(&mut self) -> PathBuf {
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
        self.path.clone()
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let p = self.path.join(name);
        std::fs::write(&p, text)?;
        Ok(p)
    }

    fn cpu(&self, pid: u32) -> anyhow::Result<Duration> {
        procfs::cpu(pid, self.ticks)
    }
}

// ---------------------------------------------------------------------------------------------
// Configs.

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tls {
    None,
    Starttls,
}

/// `count` IMAP targets named `{prefix}{i:05}`, spread over `ports` on 127.0.0.1 and ten regions.
pub(crate) struct ImapTargets<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) count: usize,
    pub(crate) ports: &'a [u16],
    pub(crate) tls: Tls,
    /// `None`: log in as the target's own name (the responder accepts anyone); otherwise
    /// round robin over these users.
    pub(crate) users: Option<&'a [String]>,
}

pub(crate) fn global(interval: &str, timeout: &str, concurrency: usize) -> String {
    format!(
        "[global]\ninterval = \"{interval}\"\ntimeout = \"{timeout}\"\nconcurrency = {concurrency}\n\n"
    )
}

pub(crate) fn imap_config(ctx: &Ctx, global: &str, t: &ImapTargets) -> String {
    let mut s = String::with_capacity(global.len() + t.count * 300);
    s.push_str(global);
    for i in 0..t.count {
        let name = format!("{}{i:05}", t.prefix);
        let port = t.ports[i % t.ports.len()];
        let _ = write!(
            s,
            "[[target]]\nname = \"{name}\"\nregion = \"r{}\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\n",
            i % 10
        );
        match t.tls {
            Tls::None => s.push_str("tls = \"none\"\nallow_plaintext = true\n"),
            Tls::Starttls => {
                let _ = writeln!(
                    s,
                    "tls = \"starttls\"\nca_file = \"{}\"",
                    ctx.pki.ca.display()
                );
            }
        }
        let _ = writeln!(
            s,
            "username = \"{}\"\npassword_file = \"{}\"\n",
            t.users.map_or(name.as_str(), |u| u[i % u.len()].as_str()),
            ctx.pass.display()
        );
    }
    s
}

fn smtp_config(ctx: &Ctx, global: &str, count: usize, port: u16) -> String {
    let mut s = global.to_string();
    for i in 0..count {
        let _ = writeln!(
            s,
            "[[target]]\nname = \"s{i:05}\"\nprotocol = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = \"starttls\"\nca_file = \"{}\"\nusername = \"{}\"\npassword_file = \"{}\"\n",
            ctx.pki.ca.display(),
            dovecot::USER,
            ctx.pass.display()
        );
    }
    s
}

/// The `imap_starttls` and `smtp_starttls` modules of blackbox_exporter's example config, plus
/// the CA they must trust.
fn blackbox_config(ctx: &Ctx) -> String {
    let ca = ctx.pki.ca.display();
    format!(
        r#"# imap_starttls and smtp_starttls as in /usr/share/doc/prometheus-blackbox-exporter/examples/example.yml,
# plus tls_config.ca_file for the benchmark's test CA.
modules:
  imap_starttls:
    prober: tcp
    timeout: 5s
    tcp:
      query_response:
        - expect: "OK.*STARTTLS"
        - send: ". STARTTLS"
        - expect: "OK"
        - starttls: true
        - send: ". capability"
        - expect: "CAPABILITY IMAP4rev1"
      tls_config:
        ca_file: {ca}
  smtp_starttls:
    prober: tcp
    timeout: 5s
    tcp:
      query_response:
        - expect: "^220 ([^ ]+) ESMTP (.+)$"
        - send: "EHLO prober\r"
        - expect: "^250-STARTTLS"
        - send: "STARTTLS\r"
        - expect: "^220"
        - starttls: true
        - send: "EHLO prober\r"
        - expect: "^250-AUTH"
        - send: "QUIT\r"
      tls_config:
        ca_file: {ca}
"#
    )
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of `v` (sorted in place).
pub(crate) fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    pct(v, 0.5)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn now_unix() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn verdict(ok: bool) -> Verdict {
    if ok { Verdict::Met } else { Verdict::Missed }
}

async fn metrics(addr: SocketAddr) -> anyhow::Result<String> {
    let (_, body) = http::scrape(addr, "/metrics").await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Counters read from one scrape of the daemon.
struct Snapshot {
    probes: f64,
    failures: f64,
    duration_sum: f64,
    duration_count: f64,
    delay: Vec<(f64, f64)>,
}

impl Snapshot {
    fn of(text: &str) -> Snapshot {
        Snapshot {
            probes: prom::sum(text, "mailprobe_probes_total", ""),
            failures: prom::sum(text, "mailprobe_probes_total", "result=\"failure\""),
            duration_sum: prom::sum(text, "mailprobe_region_probe_duration_seconds_sum", ""),
            duration_count: prom::sum(text, "mailprobe_region_probe_duration_seconds_count", ""),
            delay: prom::buckets(text, "mailprobe_schedule_delay_seconds"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 10,000 targets.

/// The large fleet: a responder (STARTTLS, greeting at once) on 8 ports and a config of `n`
/// IMAP STARTTLS targets on them at a 60 s interval, written to `file`.
fn fleet(ctx: &Ctx, n: usize, file: &str) -> anyhow::Result<(Responder, PathBuf)> {
    let responder = Responder::start(imapd::Options {
        ports: 8,
        greeting_delay: Duration::ZERO,
        tls: Some(ctx.pki.valid.server_config(&[])),
    })?;
    let text = imap_config(
        ctx,
        &global("60s", "10s", 64),
        &ImapTargets {
            prefix: "t",
            count: n,
            ports: &responder.ports,
            tls: Tls::Starttls,
            users: None,
        },
    );
    let cfg = ctx.write(file, &text)?;
    Ok((responder, cfg))
}

/// 10,000 IMAP STARTTLS targets at a 60 s interval against the responder: startup to READY,
/// CPU, RSS, `/metrics` scrape time and schedule jitter.
pub async fn scale(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    const N: usize = 10_000;
    eprintln!("scale: {N} IMAP STARTTLS targets at 60 s against the responder");
    let (responder, cfg) = fleet(ctx, N, "scale.toml")?;

    // Startup to READY, a few separate starts.
    let runs = if ctx.quick { 3 } else { 5 };
    let mut startups = Vec::new();
    for i in 0..runs {
        let d = procs::spawn_daemon(&ctx.bin, &cfg, &ctx.path, &format!("startup{i}"), &[])?;
        startups.push(ms(d.ready_after));
        // READY means /-/ready answers 200 already.
        http::scrape(d.proc.addr, "/-/ready")
            .await
            .context("/-/ready after READY=1")?;
        drop(d);
    }

    let d = procs::spawn_daemon(&ctx.bin, &cfg, &ctx.path, "scale", &[])?;
    let (pid, addr) = (d.proc.pid, d.proc.addr);
    let warm = Duration::from_secs(if ctx.quick { 5 } else { 10 });
    let window = Duration::from_secs(if ctx.quick { 20 } else { 60 });
    let scrape_every = Duration::from_secs(15);
    tokio::time::sleep(warm).await;

    let before = Snapshot::of(&metrics(addr).await?);
    responder.stats.take();
    let t0 = Instant::now();
    let t0_unix = now_unix();
    let c0 = ctx.cpu(pid)?;
    let m0 = MachineMark::now();
    let mut rss_max = 0u64;
    let mut scrapes: Vec<f64> = Vec::new();
    let mut size = 0usize;
    let mut series = 0usize;
    let mut target_series = 0usize;
    let mut in_flight_max = 0f64;
    let mut next_scrape = t0 + Duration::from_secs(5);
    while t0.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(procfs::rss(pid)?.0);
        if Instant::now() >= next_scrape {
            next_scrape += scrape_every;
            let (took, body) = http::scrape(addr, "/metrics").await?;
            scrapes.push(ms(took));
            size = body.len();
            let samples = body
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty() && l[0] != b'#');
            series = samples.clone().count();
            target_series = samples
                .filter(|l| l.windows(8).any(|w| w == b"target=\""))
                .count();
            let text = String::from_utf8_lossy(&body);
            in_flight_max = in_flight_max.max(prom::sum(&text, "mailprobe_probes_in_flight", ""));
        }
    }
    let c1 = ctx.cpu(pid)?;
    let elapsed = t0.elapsed();
    let t1_unix = now_unix();
    let busy = m0.cores_busy_since(ctx.cores as f64);
    let after = Snapshot::of(&metrics(addr).await?);
    let records = responder.stats.take();
    // A few more scrapes back to back, for the spread.
    for _ in 0..5 {
        let (took, _) = http::scrape(addr, "/metrics").await?;
        scrapes.push(ms(took));
    }
    let (rss_now, hwm) = procfs::rss(pid)?;
    let ready = ms(d.ready_after);
    drop(d);
    // Series that name a target, per target (the rest is per region and protocol, or global).
    let per_target = target_series as f64 / N as f64;

    let cpu_pct = (c1 - c0).as_secs_f64() / elapsed.as_secs_f64() * 100.0;
    let probes = after.probes - before.probes;
    let failures = after.failures - before.failures;
    let delay = prom::bucket_delta(&before.delay, &after.delay);
    let (p50, _) = prom::quantile(0.5, &delay).unwrap_or((f64::NAN, f64::NAN));
    let (p99, p99_le) = prom::quantile(0.99, &delay).unwrap_or((f64::NAN, f64::NAN));
    let total = delay.last().map_or(0.0, |b| b.1);
    let within_10ms = delay
        .iter()
        .find(|b| b.0 == 0.01)
        .map_or(f64::NAN, |b| b.1 / total * 100.0);

    // Cross-check from the server: accept time against the planned slot of the target.
    let interval_us = 60_000_000u64;
    let mut late: Vec<f64> = records
        .iter()
        .filter(|r| r.accepted_unix >= t0_unix && r.accepted_unix <= t1_unix)
        .map(|r| {
            let offset = mailprobe::hash::stable_hash(&r.user) % interval_us;
            let at = r.accepted_unix.as_micros() as u64;
            let phase = (at + interval_us - offset) % interval_us;
            let signed = if phase > interval_us / 2 {
                phase as f64 - interval_us as f64
            } else {
                phase as f64
            };
            signed / 1000.0
        })
        .collect();
    let seen = late.len();
    let x50 = pct(&mut late, 0.5);
    let x99 = pct(&mut late, 0.99);
    let xmax = pct(&mut late, 1.0);
    let mut st = startups.clone();
    let st_med = median(&mut st);
    let st_max = pct(&mut st, 1.0);
    let mut sc = scrapes.clone();
    let sc_med = median(&mut sc);
    let sc_max = pct(&mut sc, 1.0);

    report.figure(
        "startup to READY, 10,000 targets",
        "≤ 100 ms",
        format!(
            "median {st_med:.0} ms, max {st_max:.0} ms ({runs} starts: {})",
            startups
                .iter()
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        verdict(st_med <= 100.0),
    );
    report.figure(
        "CPU, 10,000 targets at 60 s",
        "≤ 25 % of one core",
        format!(
            "{cpu_pct:.1} % ({probes:.0} probes in {:.0} s)",
            elapsed.as_secs_f64()
        ),
        verdict(cpu_pct <= 25.0),
    );
    report.figure(
        "RSS, 10,000 targets",
        "≤ 64 MiB",
        format!(
            "peak {:.1} MiB (VmHWM), {:.1} MiB at the end",
            mib(hwm),
            mib(rss_now)
        ),
        verdict(mib(hwm) <= 64.0),
    );
    report.figure(
        "`/metrics` scrape, 10,000 targets",
        "≤ 100 ms",
        format!(
            "median {sc_med:.0} ms, max {sc_max:.0} ms ({:.1} MB, {series} series, {per_target} per target)",
            size as f64 / 1e6
        ),
        verdict(sc_max <= 100.0),
    );
    report.figure(
        "schedule jitter p99, 10,000 targets",
        "≤ 10 ms",
        format!(
            "{:.2} ms (histogram; in bucket ≤ {} ms); server side p99 {x99:.2} ms",
            p99 * 1000.0,
            p99_le * 1000.0
        ),
        verdict(p99 <= 0.010),
    );
    report.section(
        "10,000 targets at a 60 s interval",
        format!(
            "10,000 IMAP targets (STARTTLS, LOGIN, SELECT, LOGOUT) in ten regions, spread over the \
             responder's 8 ports on 127.0.0.1 (greeting at once, TLS with the test CA), `interval = \"60s\"`, \
             `concurrency = 64`, default log level. Host is an IP literal, so no DNS.\n\n\
             - warm-up {:.0} s, then a {:.0} s window: {probes:.0} probes ({failures:.0} failed), \
             {:.1} probes/s\n\
             - mailprobe CPU {cpu_pct:.1} % of one core (utime+stime from /proc); whole machine busy \
             {:.0} % of one core (includes the responder's TLS server side and the benchmark)\n\
             - RSS: peak {:.1} MiB, largest sample in the window {:.1} MiB, {:.1} MiB at the end\n\
             - `/metrics`: {} scrapes on new connections (every 15 s in the window, then 5 back to back): \
             {} ms; {:.1} MB, {series} series of which {target_series} name a target ({per_target:.1} per target); most probes in flight seen at a scrape: {in_flight_max:.0}\n\
             - startup to READY=1 (spawn to the sd-notify datagram): {} ms; the main run's start: {ready:.0} ms\n\
             - `mailprobe_schedule_delay_seconds` over the window: {total:.0} starts, p50 {:.2} ms, \
             p99 {:.2} ms (interpolated as `histogram_quantile` does), {within_10ms:.2} % within 10 ms\n\
             - server side (responder accept time minus the target's planned slot, {seen} probes; \
             includes connect): p50 {x50:.2} ms, p99 {x99:.2} ms, max {xmax:.2} ms\n",
            warm.as_secs_f64(),
            elapsed.as_secs_f64(),
            probes / elapsed.as_secs_f64(),
            busy * 100.0,
            mib(hwm),
            mib(rss_max),
            mib(rss_now),
            scrapes.len(),
            scrapes
                .iter()
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            size as f64 / 1e6,
            startups
                .iter()
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            p50 * 1000.0,
            p99 * 1000.0,
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reloads.

/// 10,000 targets, three SIGHUPs with the config unchanged and one with a target changed: the
/// resident memory after them, against before (a reload must not leave a second copy behind).
///
/// "Before" is read once the daemon is warm: every target probed at least once (its series
/// exist), not a few seconds after start while a third of the fleet has never run. A control
/// window as long as the reloads, without any, comes first: what the daemon grows by on its own
/// is told apart from what the reloads add.
pub async fn reload(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    const N: usize = 10_000;
    const ROUNDS: usize = 4;
    eprintln!("reload: {N} targets, 3 unchanged reloads and 1 with a target changed");
    let (responder, cfg) = fleet(ctx, N, "reload.toml")?;
    let d = procs::spawn_daemon(&ctx.bin, &cfg, &ctx.path, "reload", &[])?;
    let (pid, addr) = (d.proc.pid, d.proc.addr);
    let settle = Duration::from_secs(if ctx.quick { 5 } else { 10 });

    // Warm: every target has run once (the fleet's interval is 60 s).
    let t = Instant::now();
    let warm_after = loop {
        let text = metrics(addr).await?;
        let probed = prom::samples(&text)
            .filter(|s| s.name == "mailprobe_probe_last_run_timestamp_seconds")
            .count();
        if probed >= N {
            break t.elapsed();
        }
        if t.elapsed() > Duration::from_secs(150) {
            bail!("reload: only {probed} of {N} targets probed after 150 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    tokio::time::sleep(settle).await;
    metrics(addr).await?;
    let warm = procfs::rss(pid)?.0;

    // The control: the same windows, no reload.
    let mut control = Vec::new();
    for _ in 0..ROUNDS {
        tokio::time::sleep(settle).await;
        metrics(addr).await?;
        control.push(procfs::rss(pid)?.0);
    }
    let before = *control.last().unwrap_or(&warm);

    let reloaded_at = |text: &str| {
        prom::sum(
            text,
            "mailprobe_config_last_reload_success_timestamp_seconds",
            "",
        )
    };
    let mut after_each = Vec::new();
    let mut took = Vec::new();
    for round in 0..ROUNDS {
        if round == ROUNDS - 1 {
            // One target changed: another port.
            let text = std::fs::read_to_string(&cfg)?;
            let port = responder.ports[0];
            let other = responder.ports[1];
            let changed = text.replacen(
                &format!("name = \"t00000\"\nregion = \"r0\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\n"),
                &format!("name = \"t00000\"\nregion = \"r0\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {other}\n"),
                1,
            );
            if changed == text {
                bail!("reload: target t00000 not found in the config to change");
            }
            std::fs::write(&cfg, changed)?;
        }
        let last = reloaded_at(&metrics(addr).await?);
        let t = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -HUP {pid} failed");
        }
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let text = metrics(addr).await?;
            if reloaded_at(&text) > last {
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!("reload {round} not done after 30 s: {}", d.proc.log_text());
            }
        }
        took.push(ms(t.elapsed()));
        tokio::time::sleep(settle.saturating_sub(t.elapsed())).await;
        metrics(addr).await?;
        after_each.push(procfs::rss(pid)?.0);
    }
    let log = d.proc.log_text();
    drop(d);
    if !log.contains("unchanged=10000") && !log.contains("unchanged=9999") {
        eprintln!("reload: no unchanged reload seen in the log");
    }
    let after = *after_each.last().unwrap_or(&before);
    let pct = |a: u64, b: u64| (a as f64 - b as f64) / b as f64 * 100.0;
    let growth = pct(after, before);
    let drift = pct(before, warm);
    let list = |v: &[u64]| {
        v.iter()
            .map(|b| format!("{:.1}", mib(*b)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    report.figure(
        "RSS after 4 reloads of 10,000 targets",
        "within 10 % of before",
        format!(
            "{:.1} MiB before, {:.1} MiB after ({growth:+.1} %; after each: {} MiB); \
             without reloads over as long: {drift:+.1} %",
            mib(before),
            mib(after),
            list(&after_each)
        ),
        verdict(growth.abs() <= 10.0),
    );
    report.section(
        "Reloads of 10,000 targets",
        format!(
            "The 10,000-target config of the scale run. Warm first: every target probed once \
             ({:.0} s after start), then {:.0} s more and a scrape. A control of {ROUNDS} windows \
             of {:.0} s without a reload, each ending with a scrape and a VmRSS reading; then \
             `kill -HUP` three times with the file unchanged and once with one target moved to \
             another port, each reload done when \
             `mailprobe_config_last_reload_success_timestamp_seconds` moves, then the rest of \
             the {:.0} s window, a scrape and VmRSS.\n\n\
             - VmRSS warm: {:.1} MiB; control windows (no reload): {} MiB ({drift:+.1} %)\n\
             - VmRSS before the reloads: {:.1} MiB; after each reload: {} MiB; growth {growth:+.1} %\n\
             - reload to applied (SIGHUP to the timestamp seen on `/metrics`): {} ms\n",
            warm_after.as_secs_f64(),
            settle.as_secs_f64(),
            settle.as_secs_f64(),
            settle.as_secs_f64(),
            mib(warm),
            list(&control),
            mib(before),
            list(&after_each),
            took.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(", "),
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Measurement bias.

/// Greeting-phase bias against a responder that greets exactly 200 ms after accepting: the
/// daemon at a steady 1,000 probes in flight (the figure), then 1,000 probes started in one
/// burst by `mailprobe probe` (a stress case the scheduler never produces).
pub async fn bias(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    let delay = Duration::from_millis(200);
    let mut body = String::from(
        "The responder writes its greeting 200 ms after accepting: a dedicated thread sleeps to \
         the deadline on the kernel's high-resolution timer and writes the greeting itself (on a \
         duplicate of the socket), and the server records its actual delay (accept to greeting written) per \
         connection. Responder and mailprobe share the machine's 2 cores, so the server's work \
         competes with the prober's, which a remote server's would not. Each \
         greeting phase mailprobe reports is compared with 200 ms and with the server's actual \
         delay for that very connection (paired by login name and time).\n\n\
         | run | probes in flight | samples | greeting − server's actual delay: p50 / p99 / max | greeting − 200 ms: p50 / p99 / max | server's delay − 200 ms: p99 |\n\
         |---|---|---|---|---|---|\n",
    );
    bias_daemon(ctx, report, delay, &mut body).await?;
    for tls in [Tls::None, Tls::Starttls] {
        bias_burst(ctx, report, delay, tls, &mut body).await?;
    }
    let _ = writeln!(
        body,
        "\nThe target is read as: 99 % of greeting phases are within 1 ms of the server's actual \
         delay for that connection, at a steady 1,000 probes in flight in the daemon (the \
         figure row gives the 1st and 99th percentiles and the extremes). \
         The burst rows start 1,000 sessions in the same few milliseconds on 2 cores: their \
         greetings arrive together 200 ms later and wait for CPU behind each other (and, with \
         STARTTLS, behind the TLS handshakes of the sessions before them); the daemon's \
         scheduler spreads starts so that this does not happen in operation."
    );
    report.section("Measurement bias", body);
    Ok(())
}

/// Percentiles of bias samples for the table: p50 / p99 / max.
fn spread(v: &mut [f64]) -> (f64, f64, f64) {
    (pct(v, 0.5), pct(v, 0.99), pct(v, 1.0))
}

/// The daemon with 5,000 plaintext targets at a 1 s interval: 5,000 probes/s of about 200 ms,
/// so 1,000 in flight at any time; greeting phases read from `/metrics` every 2 s.
async fn bias_daemon(
    ctx: &Ctx,
    report: &mut Report,
    delay: Duration,
    body: &mut String,
) -> anyhow::Result<()> {
    const N: usize = 5000;
    eprintln!("bias: daemon, {N} targets at 1 s, 200 ms greeting delay (1,000 in flight)");
    let responder = Responder::start(imapd::Options {
        ports: 8,
        greeting_delay: delay,
        tls: None,
    })?;
    // Each target's last greeting is read from its phase gauge, an opt-in series.
    let text = imap_config(
        ctx,
        &(global("1s", "1s", 2 * N) + "[metrics]\nphase_gauges = true\n\n"),
        &ImapTargets {
            prefix: "b",
            count: N,
            ports: &responder.ports,
            tls: Tls::None,
            users: None,
        },
    );
    let cfg = ctx.write("bias-daemon.toml", &text)?;
    let d = procs::spawn_daemon(&ctx.bin, &cfg, &ctx.path, "bias", &[])?;
    let addr = d.proc.addr;
    tokio::time::sleep(Duration::from_secs(if ctx.quick { 3 } else { 5 })).await;
    responder.stats.take();
    responder.stats.take_max_open();
    let window = Duration::from_secs(if ctx.quick { 10 } else { 30 });
    let t0 = Instant::now();
    // (target, finished at) -> greeting seconds; one entry per probe seen.
    let mut seen: std::collections::HashMap<(String, u64), f64> = Default::default();
    let mut in_flight = Vec::new();
    while t0.elapsed() < window {
        // Each target's greeting gauge holds its last probe: harvested every 5 s (Prometheus
        // would scrape every 15-60 s; a 5,000-target scrape takes CPU from the probes).
        tokio::time::sleep(Duration::from_secs(5)).await;
        let text = metrics(addr).await?;
        in_flight.push(prom::sum(&text, "mailprobe_probes_in_flight", ""));
        let mut finished: std::collections::HashMap<&str, u64> = Default::default();
        for s in prom::samples(&text) {
            if s.name == "mailprobe_probe_last_run_timestamp_seconds"
                && let Some(t) = prom::label(s.labels, "target")
            {
                finished.insert(t, (s.value * 1e6) as u64);
            }
        }
        for s in prom::samples(&text) {
            if s.name == "mailprobe_probe_phase_duration_seconds"
                && s.labels.contains("phase=\"greeting\"")
                && let Some(t) = prom::label(s.labels, "target")
                && let Some(&at) = finished.get(t)
                && s.value > 0.0
            {
                seen.insert((t.to_string(), at), s.value);
            }
        }
    }
    let max_open = responder.stats.take_max_open();
    let probes_s = Snapshot::of(&metrics(addr).await?);
    drop(d);
    if probes_s.failures > 0.0 {
        eprintln!("bias: {} probes failed (overload?)", probes_s.failures);
    }
    // The server's record of each probe: the last accept of that user before it finished.
    let mut by_user: std::collections::HashMap<String, Vec<imapd::Record>> = Default::default();
    for r in responder.stats.take() {
        by_user.entry(r.user.clone()).or_default().push(r);
    }
    let (mut own, mut nominal, mut server) = (Vec::new(), Vec::new(), Vec::new());
    for ((target, at_us), greeting) in &seen {
        let Some(records) = by_user.get(target) else {
            continue;
        };
        let at = Duration::from_micros(*at_us);
        let Some(r) = records
            .iter()
            .filter(|r| r.accepted_unix < at && at - r.accepted_unix < Duration::from_secs(1))
            .max_by_key(|r| r.accepted_unix)
        else {
            continue;
        };
        let actual = ms(r.greeted - r.accepted);
        own.push(greeting * 1000.0 - actual);
        nominal.push(greeting * 1000.0 - ms(delay));
        server.push(actual - ms(delay));
    }
    let n = own.len();
    if n == 0 {
        bail!("no greeting samples could be paired with the responder's records");
    }
    let mut abs: Vec<f64> = own.iter().map(|v| v.abs()).collect();
    let abs99 = pct(&mut abs, 0.99);
    let (o50, o99, omax) = spread(&mut own);
    let (o1, omin) = (pct(&mut own, 0.01), own[0]);
    let (a50, a99, amax) = spread(&mut nominal);
    let s99 = pct(&mut server, 0.99);
    let mut fl = in_flight.clone();
    let fl_med = median(&mut fl);
    let _ = writeln!(
        body,
        "| daemon, {N} plaintext targets at 1 s | median {fl_med:.0} (server saw up to {max_open} connections) | {n} | {o50:+.2} / {o99:+.2} / {omax:+.2} ms | {a50:+.2} / {a99:+.2} / {amax:+.2} ms | {s99:+.3} ms |"
    );
    report.figure(
        "greeting bias at 1,000 probes in flight",
        "within 1 ms of the server's 200 ms",
        format!(
            "99 % within {abs99:.2} ms (p1 {o1:+.2}, p50 {o50:+.2}, p99 {o99:+.2} ms; min {omin:+.2}, max {omax:+.2} ms; {n} probes, median {fl_med:.0} in flight)"
        ),
        verdict(abs99 <= 1.0),
    );
    Ok(())
}

/// 1,000 probes started in one burst by `mailprobe probe` (global `concurrency = 1000`).
async fn bias_burst(
    ctx: &Ctx,
    report: &mut Report,
    delay: Duration,
    tls: Tls,
    body: &mut String,
) -> anyhow::Result<()> {
    const N: usize = 1000;
    let runs = if ctx.quick { 1 } else { 3 };
    let label = if tls == Tls::None {
        "plaintext"
    } else {
        "STARTTLS"
    };
    eprintln!("bias: burst of {N} {label} probes at once");
    let responder = Responder::start(imapd::Options {
        ports: 8,
        greeting_delay: delay,
        tls: (tls == Tls::Starttls).then(|| ctx.pki.valid.server_config(&[])),
    })?;
    let text = imap_config(
        ctx,
        &global("60s", "10s", N),
        &ImapTargets {
            prefix: "b",
            count: N,
            ports: &responder.ports,
            tls,
            users: None,
        },
    );
    let cfg = ctx.write(&format!("bias-burst-{label}.toml"), &text)?;
    let (mut own, mut nominal, mut server) = (Vec::new(), Vec::new(), Vec::new());
    let mut max_open = 0;
    for _ in 0..runs {
        responder.stats.take();
        responder.stats.take_max_open();
        let out = std::process::Command::new(&ctx.bin)
            .args(["probe", "--json", "--config"])
            .arg(&cfg)
            .output()?;
        let outcomes: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).with_context(|| {
                format!(
                    "mailprobe probe output: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        max_open = max_open.max(responder.stats.take_max_open());
        let records: std::collections::HashMap<String, imapd::Record> = responder
            .stats
            .take()
            .into_iter()
            .map(|r| (r.user.clone(), r))
            .collect();
        if let Some(bad) = outcomes.iter().find(|o| o["success"] != true) {
            bail!("a burst probe failed: {}", bad["detail"]);
        }
        for o in &outcomes {
            let name = o["target"].as_str().unwrap_or_default();
            let greeting = o["phases"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["phase"] == "greeting"))
                .and_then(|p| p["ms"].as_f64());
            let (Some(g), Some(r)) = (greeting, records.get(name)) else {
                continue;
            };
            let actual = ms(r.greeted - r.accepted);
            own.push(g - actual);
            nominal.push(g - ms(delay));
            server.push(actual - ms(delay));
        }
    }
    let n = own.len();
    let (o50, o99, omax) = spread(&mut own);
    let (a50, a99, amax) = spread(&mut nominal);
    let s99 = pct(&mut server, 0.99);
    let _ = writeln!(
        body,
        "| burst: `mailprobe probe`, {N} {label} targets at once, {runs} run(s) | {max_open} | {n} | {o50:+.2} / {o99:+.2} / {omax:+.2} ms | {a50:+.2} / {a99:+.2} / {amax:+.2} ms | {s99:+.3} ms |"
    );
    report.figure(
        &format!("greeting bias, burst of 1,000 {label} probes at once"),
        "(stress case, no target)",
        format!("p50 {o50:+.1} ms, p99 {o99:+.1} ms, max {omax:+.1} ms"),
        Verdict::Info,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Side by side with blackbox_exporter against real Dovecot and Postfix.

/// Which probe the comparison runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Imap,
    Smtp,
}

/// One round of one program: CPU and probes in the window.
struct Round {
    cpu: Duration,
    probes: f64,
    failures: f64,
    window: Duration,
    in_flight: f64,
    peer_cpu: Option<Duration>,
    busy: f64,
}

impl Round {
    fn per_probe_us(&self) -> f64 {
        self.cpu.as_secs_f64() / self.probes * 1e6
    }
}

/// Starts Dovecot (and Postfix) and blackbox_exporter, then runs the comparisons and callgrind.
pub async fn real_peers(
    ctx: &mut Ctx,
    report: &mut Report,
    imap: bool,
    smtp: bool,
    callgrind: bool,
) -> anyhow::Result<()> {
    eprintln!("starting Dovecot (imap-login service_count = 0) and blackbox_exporter");
    let dovecot = Dovecot::start(
        &ctx.pki,
        dovecot::Options {
            reuse_login_processes: true,
            extra_users: ctx
                .dovecot_users
                .iter()
                .map(|u| (u.clone(), dovecot::PASSWORD.to_string()))
                .collect(),
            ..dovecot::Options::default()
        },
    );
    let bb_cfg = ctx.write("blackbox.yml", &blackbox_config(ctx))?;
    let blackbox = procs::spawn_blackbox(&ctx.blackbox, &bb_cfg, &ctx.path)?;
    if imap {
        compare(
            ctx,
            report,
            Kind::Imap,
            &dovecot,
            dovecot.ports.imap,
            &blackbox,
        )
        .await?;
    }
    if smtp {
        eprintln!("starting Postfix");
        let postfix = Postfix::start(&ctx.pki, &dovecot, None);
        compare(
            ctx,
            report,
            Kind::Smtp,
            &dovecot,
            postfix.ports.submission,
            &blackbox,
        )
        .await?;
    }
    drop(blackbox);
    if callgrind {
        instructions(ctx, report, &dovecot, &bb_cfg).await?;
    }
    Ok(())
}

/// The same probe rate through mailprobe (its scheduler, `concurrency = 64`) and through
/// blackbox_exporter (`/probe` requests at the same rate, at most 64 in flight), alternating
/// rounds; CPU per probe of each from /proc.
async fn compare(
    ctx: &Ctx,
    report: &mut Report,
    kind: Kind,
    dovecot: &Dovecot,
    port: u16,
    blackbox: &Proc,
) -> anyhow::Result<()> {
    let (name, module, rate) = match kind {
        Kind::Imap => ("IMAP", "imap_starttls", 100.0),
        Kind::Smtp => ("SMTP", "smtp_starttls", 40.0),
    };
    let rounds = match (kind, ctx.quick) {
        (_, true) => 1,
        (Kind::Imap, false) => 3,
        (Kind::Smtp, false) => 2,
    };
    let warm = Duration::from_secs(if ctx.quick { 3 } else { 5 });
    let window = Duration::from_secs(match (kind, ctx.quick) {
        (_, true) => 10,
        (Kind::Imap, false) => 20,
        (Kind::Smtp, false) => 15,
    });
    let interval = 10u64;
    let count = (rate * interval as f64) as usize;
    let text = match kind {
        Kind::Imap => imap_config(
            ctx,
            &global(&format!("{interval}s"), "5s", 64),
            &ImapTargets {
                prefix: "d",
                count,
                ports: &[port],
                tls: Tls::Starttls,
                users: Some(&ctx.dovecot_users),
            },
        ),
        Kind::Smtp => smtp_config(ctx, &global(&format!("{interval}s"), "5s", 64), count, port),
    };
    let cfg = ctx.write(&format!("compare-{module}.toml"), &text)?;
    let dovecot_pid = dovecot.pid().context("Dovecot is not running")?;
    let path = format!("/probe?module={module}&target=127.0.0.1:{port}");
    let mut mp_rounds = Vec::new();
    let mut bb_rounds = Vec::new();
    for round in 0..rounds {
        eprintln!(
            "{name}: round {}/{rounds}: mailprobe, {rate} probes/s for {} s",
            round + 1,
            window.as_secs()
        );
        let d = procs::spawn_daemon(&ctx.bin, &cfg, &ctx.path, module, &[])?;
        let (pid, addr) = (d.proc.pid, d.proc.addr);
        tokio::time::sleep(warm).await;
        let s0 = Snapshot::of(&metrics(addr).await?);
        let (c0, p0, m0, t0) = (
            ctx.cpu(pid)?,
            procfs::tree_cpu(dovecot_pid, ctx.ticks)?,
            MachineMark::now(),
            Instant::now(),
        );
        // Scraped every 15 s as Prometheus would; the scrape's cost is part of the figure.
        let mut next = t0 + Duration::from_secs(7);
        while t0.elapsed() < window {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if Instant::now() >= next {
                next += Duration::from_secs(15);
                metrics(addr).await?;
            }
        }
        let (c1, p1, busy, elapsed) = (
            ctx.cpu(pid)?,
            procfs::tree_cpu(dovecot_pid, ctx.ticks)?,
            m0.cores_busy_since(ctx.cores as f64),
            t0.elapsed(),
        );
        let s1 = Snapshot::of(&metrics(addr).await?);
        drop(d);
        let probes = s1.probes - s0.probes;
        let mean = (s1.duration_sum - s0.duration_sum) / (s1.duration_count - s0.duration_count);
        mp_rounds.push(Round {
            cpu: c1 - c0,
            probes,
            failures: s1.failures - s0.failures,
            window: elapsed,
            in_flight: probes / elapsed.as_secs_f64() * mean,
            peer_cpu: (kind == Kind::Imap).then(|| p1 - p0),
            busy,
        });

        eprintln!(
            "{name}: round {}/{rounds}: blackbox_exporter {module}, {rate} probes/s for {} s",
            round + 1,
            window.as_secs()
        );
        drive(blackbox.addr, &path, rate, 64, warm).await?;
        let (c0, p0, m0, t0) = (
            ctx.cpu(blackbox.pid)?,
            procfs::tree_cpu(dovecot_pid, ctx.ticks)?,
            MachineMark::now(),
            Instant::now(),
        );
        let r = drive(blackbox.addr, &path, rate, 64, window).await?;
        let (c1, p1, busy, elapsed) = (
            ctx.cpu(blackbox.pid)?,
            procfs::tree_cpu(dovecot_pid, ctx.ticks)?,
            m0.cores_busy_since(ctx.cores as f64),
            t0.elapsed(),
        );
        bb_rounds.push(Round {
            cpu: c1 - c0,
            probes: r.ok as f64,
            failures: r.failed as f64,
            window: elapsed,
            in_flight: r.latency.as_secs_f64() / elapsed.as_secs_f64(),
            peer_cpu: (kind == Kind::Imap).then(|| p1 - p0),
            busy,
        });
        if r.ok == 0 {
            bail!(
                "blackbox_exporter's {module} never succeeded: {}",
                blackbox.log_text()
            );
        }
    }
    let mut ratios: Vec<f64> = mp_rounds
        .iter()
        .zip(&bb_rounds)
        .map(|(m, b)| m.per_probe_us() / b.per_probe_us())
        .collect();
    let listed = ratios
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    let ratio = median(&mut ratios);
    let mut mp: Vec<f64> = mp_rounds.iter().map(Round::per_probe_us).collect();
    let mut bb: Vec<f64> = bb_rounds.iter().map(Round::per_probe_us).collect();
    let (mp_med, bb_med) = (median(&mut mp), median(&mut bb));
    let what = match kind {
        Kind::Imap => "IMAP STARTTLS + LOGIN + SELECT",
        Kind::Smtp => "SMTP submission STARTTLS + AUTH",
    };
    report.figure(
        &format!("CPU per {what} probe vs blackbox `{module}`"),
        if kind == Kind::Imap {
            "≤ 0.5 × blackbox"
        } else {
            "(no target)"
        },
        format!("{mp_med:.0} µs vs {bb_med:.0} µs: **{ratio:.2} ×** (rounds: {listed})"),
        if kind == Kind::Imap {
            verdict(ratio <= 0.5)
        } else {
            Verdict::Info
        },
    );
    let mut body = format!(
        "{rate} probes/s offered to each program in turn against the same {}, {rounds} alternating \
         round(s) of {} s after a {} s warm-up. mailprobe: {count} targets at `interval = \"{interval}s\"`, \
         `concurrency = 64`, `/metrics` scraped every 15 s during the window (its cost included). \
         blackbox_exporter 0.23: `GET {path}` at the same rate over keep-alive connections, at most 64 \
         in flight (its HTTP handling per probe is part of its model and included). CPU is utime+stime \
         of each process from /proc/PID/stat. In flight: mean probes in flight (rate × mean duration).\n\n\
         | round | program | probes (failed) | CPU | CPU per probe | in flight | {}machine busy (cores) |\n\
         |---|---|---|---|---|---|{}---|\n",
        if kind == Kind::Imap {
            "private Dovecot (imap-login `service_count = 0`, `process_min_avail = 2`)"
        } else {
            "private Postfix (submission port, SASL through Dovecot)"
        },
        window.as_secs(),
        warm.as_secs(),
        if kind == Kind::Imap {
            "Dovecot CPU per probe | "
        } else {
            ""
        },
        if kind == Kind::Imap { "---|" } else { "" },
    );
    for (i, (m, b)) in mp_rounds.iter().zip(&bb_rounds).enumerate() {
        for (prog, r) in [("mailprobe", m), ("blackbox_exporter", b)] {
            let peer = r.peer_cpu.map_or(String::new(), |p| {
                format!("{:.0} µs | ", p.as_secs_f64() / r.probes * 1e6)
            });
            let _ = writeln!(
                body,
                "| {} | {prog} | {:.0} ({:.0}) in {:.1} s | {:.2} s | {:.0} µs | {:.2} | {peer}{:.2} |",
                i + 1,
                r.probes,
                r.failures,
                r.window.as_secs_f64(),
                r.cpu.as_secs_f64(),
                r.per_probe_us(),
                r.in_flight,
                r.busy
            );
        }
    }
    let _ = writeln!(
        body,
        "\nRatio mailprobe / blackbox_exporter per round: {listed}; median **{ratio:.2}**. \
         blackbox's `{module}` does less work per probe than mailprobe's {what}."
    );
    report.section(
        &format!("{name}: CPU per probe, side by side with blackbox_exporter"),
        body,
    );
    Ok(())
}

/// What driving blackbox_exporter gave.
struct Driven {
    ok: u64,
    failed: u64,
    /// Sum of request latencies (for mean in flight).
    latency: Duration,
}

/// Sends `GET path` to `addr` at `rate` per second for `dur`, at most `limit` in flight, over
/// keep-alive connections; waits for the last answer.
async fn drive(
    addr: SocketAddr,
    path: &str,
    rate: f64,
    limit: usize,
    dur: Duration,
) -> anyhow::Result<Driven> {
    let pool: Arc<std::sync::Mutex<Vec<http::Conn>>> = Arc::default();
    let slots = Arc::new(Semaphore::new(limit));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latency_us = Arc::new(AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let end = Instant::now() + dur;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tick.tick().await;
        if Instant::now() >= end {
            break;
        }
        let (pool, slots, ok, failed, latency_us) = (
            pool.clone(),
            slots.clone(),
            ok.clone(),
            failed.clone(),
            latency_us.clone(),
        );
        let path = path.to_string();
        tasks.spawn(async move {
            let Ok(_permit) = slots.acquire().await else {
                return;
            };
            let start = Instant::now();
            let conn = pool.lock().expect("pool").pop();
            let conn = match conn {
                Some(c) => Ok(c),
                None => http::Conn::open(addr).await,
            };
            let result = match conn {
                Ok(mut c) => match c.get(&path).await {
                    Ok((status, body)) => {
                        pool.lock().expect("pool").push(c);
                        status == 200
                            && String::from_utf8_lossy(&body).contains("\nprobe_success 1")
                    }
                    Err(_) => false,
                },
                Err(_) => false,
            };
            latency_us.fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
            if result {
                ok.fetch_add(1, Ordering::Relaxed);
            } else {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(Driven {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        latency: Duration::from_micros(latency_us.load(Ordering::Relaxed)),
    })
}

// ---------------------------------------------------------------------------------------------
// Instruction counts.

/// Total instructions callgrind counted, from its output file.
fn callgrind_total(out: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(out)?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no totals in the callgrind output")
}

/// Instructions per IMAP probe under callgrind: mailprobe's `probe` command with 1 and 21
/// targets, and blackbox_exporter serving 1 and 21 `/probe` requests; the difference over 20.
async fn instructions(
    ctx: &Ctx,
    report: &mut Report,
    dovecot: &Dovecot,
    bb_cfg: &Path,
) -> anyhow::Result<()> {
    eprintln!("callgrind: instructions per IMAP probe (slow: runs under valgrind)");
    let port = dovecot.ports.imap;
    let mut mp = Vec::new();
    let mut outs = Vec::new();
    for n in [1usize, 21] {
        // One probe at a time: under valgrind everything is serialized anyway.
        let text = imap_config(
            ctx,
            &global("60s", "60s", 1),
            &ImapTargets {
                prefix: "cg",
                count: n,
                ports: &[port],
                tls: Tls::Starttls,
                users: Some(&ctx.dovecot_users),
            },
        );
        let cfg = ctx.write(&format!("callgrind-{n}.toml"), &text)?;
        let out = ctx.path.join(format!("callgrind-mailprobe-{n}.out"));
        let run = std::process::Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(&ctx.profiled)
            .args(["probe", "--config"])
            .arg(&cfg)
            .output()?;
        if !run.status.success() {
            bail!(
                "mailprobe probe under callgrind failed ({}): {}{}",
                run.status,
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            );
        }
        mp.push(callgrind_total(&out)?);
        outs.push(out);
    }
    let mp_per = (mp[1] as f64 - mp[0] as f64) / 20.0;
    let profile = profile_table(&outs[0], &outs[1], 20.0)?;

    // blackbox_exporter: counters zeroed after a warm-up probe, then 20 probes, then dumped.
    // The Debian binary carries a file capability (ICMP), which valgrind refuses to run, and
    // callgrind trips over Go's preemption signals: a plain copy, and GODEBUG=asyncpreemptoff=1.
    let bbx = ctx.path.join("blackbox_exporter");
    std::fs::copy(&ctx.blackbox, &bbx)?;
    let out = ctx.path.join("callgrind-blackbox.out");
    let addr: SocketAddr = ([127, 0, 0, 1], mailprobe_testpeers::util::free_port()).into();
    let mut child = std::process::Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&bbx)
        .arg(format!("--config.file={}", bb_cfg.display()))
        .arg(format!("--web.listen-address={addr}"))
        .env("GODEBUG", "asyncpreemptoff=1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(
            ctx.path.join("callgrind-blackbox.log"),
        )?)
        .spawn()?;
    let pid = child.id().to_string();
    let measured = async {
        let start = Instant::now();
        let mut conn = loop {
            if let Ok(c) = http::Conn::open(addr).await {
                break c;
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("blackbox_exporter under callgrind did not come up");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let path = format!("/probe?module=imap_starttls&target=127.0.0.1:{port}");
        let control = |flag: &str| {
            std::process::Command::new("callgrind_control")
                .args([flag, &pid])
                .output()
                .map(|o| o.status.success())
        };
        // A warm-up probe, a dump (which also zeroes the counters), 20 probes, a second dump:
        // the second dump holds exactly those 20. Each dump is waited for, since callgrind
        // takes the request only when the program next runs.
        let dumps = || -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&ctx.path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("callgrind-blackbox.out."))
                })
                .collect();
            v.sort();
            v
        };
        let dump_and_wait = |n: usize| async move {
            if !control("--dump")? {
                bail!("callgrind_control --dump failed");
            }
            let start = Instant::now();
            while dumps().len() < n {
                if start.elapsed() > Duration::from_secs(60) {
                    bail!("callgrind wrote no dump {n} for blackbox_exporter");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(())
        };
        for round in 0..21 {
            if round == 1 {
                dump_and_wait(1).await?;
            }
            let (_, body) = conn.get(&path).await?;
            if !String::from_utf8_lossy(&body).contains("\nprobe_success 1") {
                bail!("blackbox probe under callgrind failed");
            }
        }
        dump_and_wait(2).await?;
        // Let callgrind finish writing the file before it is read.
        tokio::time::sleep(Duration::from_millis(500)).await;
        anyhow::Ok(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    measured?;
    let dump = ctx.path.join("callgrind-blackbox.out.2");
    let bb_total = callgrind_total(&dump)?;
    let bb_per = bb_total as f64 / 20.0;
    report.figure(
        "instructions per IMAP probe (callgrind) vs blackbox `imap_starttls`",
        "(repeatable cross-check)",
        format!(
            "{:.2} M vs {:.2} M: {:.2} ×",
            mp_per / 1e6,
            bb_per / 1e6,
            mp_per / bb_per
        ),
        Verdict::Info,
    );
    report.section(
        "Instructions per probe (callgrind)",
        format!(
            "`valgrind --tool=callgrind` counts instructions, which, unlike CPU time, does not move \
             with other load on the machine. mailprobe: `mailprobe probe` with 1 and with 21 IMAP \
             STARTTLS targets against the Dovecot above: {} and {} instructions, so {:.0} per probe \
             (the difference over 20; startup and config load cancel out). blackbox_exporter: \
             started under callgrind (`GODEBUG=asyncpreemptoff=1`), one warm-up \
             `/probe?module=imap_starttls` request, a dump (which zeroes the counters), 20 requests \
             on one keep-alive connection, a second dump: {} instructions, {:.0} per probe. Ratio \
             {:.2}. (blackbox's figure includes its HTTP request handling; mailprobe's does not \
             include metrics or scheduling, which the CPU figures above do.)\n\n\
             Where mailprobe's instructions go, per probe (`callgrind_annotate` of the two runs, \
             the 1-target run subtracted from the 21-target run, grouped by source file and \
             function; the binary is `cargo build --profile profiling`, release with symbols):\n\n\
             {profile}",
            mp[0],
            mp[1],
            mp_per,
            bb_total,
            bb_per,
            mp_per / bb_per
        ),
    );
    Ok(())
}

/// Where the instructions of a callgrind run go, for the report: what the probe code spends
/// its time on, by group of functions. The groups are ordered by cost per probe.
fn profile_table(one: &Path, many: &Path, probes: f64) -> anyhow::Result<String> {
    let (a, b) = (annotate_groups(one)?, annotate_groups(many)?);
    let total: f64 = PROFILE_GROUPS
        .iter()
        .map(|(g, _)| b.get(g).copied().unwrap_or(0) as f64 - a.get(g).copied().unwrap_or(0) as f64)
        .sum::<f64>()
        / probes;
    let mut rows: Vec<(&str, f64)> = PROFILE_GROUPS
        .iter()
        .map(|(g, _)| {
            let d = b.get(g).copied().unwrap_or(0) as f64 - a.get(g).copied().unwrap_or(0) as f64;
            (*g, d / probes)
        })
        .collect();
    rows.sort_by(|x, y| y.1.total_cmp(&x.1));
    let mut s = String::from("| where | instructions per probe | share |\n|---|---|---|\n");
    for (g, per) in rows {
        if per.abs() < total * 0.001 {
            continue;
        }
        let _ = writeln!(
            s,
            "| {g} | {:.0} k | {:.1} % |",
            per / 1e3,
            100.0 * per / total
        );
    }
    Ok(s)
}

/// Groups of functions and the patterns (in callgrind_annotate's `file:function`) that put a
/// function in a group; the first match wins, the last group takes the rest.
const PROFILE_GROUPS: &[(&str, &[&str])] = &[
    (
        "ring: P-256 (ECDSA checks of the certificate chain and the handshake signature)",
        &["nistz256", "p256", "ecp_", "/ec/"],
    ),
    ("ring: X25519 (key exchange)", &["curve25519", "x25519"]),
    (
        "ring: SHA-2 (handshake transcript, HKDF, certificate digests)",
        &["sha512", "sha256", "digest"],
    ),
    (
        "ring: AES-GCM (record encryption)",
        &["aes", "gcm", "ghash"],
    ),
    ("ring: other", &["/ring-"]),
    (
        "rustls (TLS state machine, certificate parsing)",
        &["/rustls", "/webpki", "/rustls-webpki"],
    ),
    ("glibc malloc and free", &["malloc", "/arena.c"]),
    (
        "glibc memset and memcpy",
        &["memset", "memmove", "memcpy", "memcmp"],
    ),
    (
        "IMAP reply parsing (imap-proto, nom)",
        &["imap-proto", "/nom-"],
    ),
    ("async-imap", &["async-imap"]),
    ("tokio (runtime, I/O, timers)", &["/tokio-", "/mio-"]),
    ("Rust standard library", &["/rustc/"]),
    ("other crates", &["/.cargo/registry/"]),
    ("mailprobe's own code", &["/src/", "mailprobe::"]),
    ("kernel interface and the rest", &[""]),
];

/// Instructions per group of [`PROFILE_GROUPS`] in one callgrind output.
fn annotate_groups(out: &Path) -> anyhow::Result<std::collections::HashMap<&'static str, u64>> {
    let run = std::process::Command::new("callgrind_annotate")
        .args(["--threshold=100", "--auto=no"])
        .arg(out)
        .output()
        .context("cannot run callgrind_annotate")?;
    if !run.status.success() {
        bail!(
            "callgrind_annotate failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let mut groups = std::collections::HashMap::new();
    for line in String::from_utf8_lossy(&run.stdout).lines() {
        // `  14,134,504 (21.99%)  file:function [object]`
        let line = line.trim_start();
        let Some((count, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(count) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        let Some((_, what)) = rest.split_once(')') else {
            continue;
        };
        let what = what.trim();
        if what == "PROGRAM TOTALS" {
            continue;
        }
        let lower = what.to_ascii_lowercase();
        // ring's groups go by function name within ring's own files only.
        let group = PROFILE_GROUPS
            .iter()
            .filter(|(g, _)| !g.starts_with("ring:") || lower.contains("ring"))
            .find(|(_, pats)| pats.iter().any(|p| lower.contains(p)))
            .map(|(g, _)| *g)
            .unwrap_or("kernel interface and the rest");
        *groups.entry(group).or_default() += count;
    }
    Ok(groups)
}

// ---------------------------------------------------------------------------------------------
// Shards.

/// The 10,000 targets split over two instances (`--shard 0/2`, `--shard 1/2`).
pub async fn shard(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    const N: usize = 10_000;
    eprintln!("shard: {N} targets over two instances");
    let (_responder, cfg) = fleet(ctx, N, "shard.toml")?;
    let window = Duration::from_secs(30);
    let mut daemons = Vec::new();
    for i in 0..2 {
        let shard = format!("{i}/2");
        daemons.push(procs::spawn_daemon(
            &ctx.bin,
            &cfg,
            &ctx.path,
            &format!("shard{i}"),
            &["--shard", &shard],
        )?);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut marks = Vec::new();
    for d in &daemons {
        marks.push((
            ctx.cpu(d.proc.pid)?,
            Snapshot::of(&metrics(d.proc.addr).await?),
        ));
    }
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = t0.elapsed();
    let mut body = String::from(
        "The 10,000-target config above, run by two instances on this one machine with \
         `--shard 0/2` and `--shard 1/2` for 30 s.\n\n\
         | instance | targets | probes in window | CPU (% of one core) | peak RSS | startup to READY |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut total = 0.0;
    let mut counts = Vec::new();
    for (i, (d, (c0, s0))) in daemons.iter().zip(&marks).enumerate() {
        let c1 = ctx.cpu(d.proc.pid)?;
        let text = metrics(d.proc.addr).await?;
        let s1 = Snapshot::of(&text);
        let targets = prom::sum(&text, "mailprobe_targets", "");
        total += targets;
        counts.push(format!("{targets:.0}"));
        let (_, hwm) = procfs::rss(d.proc.pid)?;
        let _ = writeln!(
            body,
            "| `--shard {i}/2` | {targets:.0} | {:.0} | {:.1} % | {:.1} MiB | {:.0} ms |",
            s1.probes - s0.probes,
            (c1 - *c0).as_secs_f64() / elapsed.as_secs_f64() * 100.0,
            mib(hwm),
            ms(d.ready_after)
        );
    }
    drop(daemons);
    if total as usize != N {
        bail!("the shards probe {total} targets, not {N}");
    }
    report.figure(
        "two shards of 10,000 targets",
        "(split check)",
        format!("{} targets between them", counts.join(" + ")),
        Verdict::Info,
    );
    report.section("Sharding", body);
    Ok(())
}
