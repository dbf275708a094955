//! Abuse of the daemon's HTTP server (issue 14, defects 1 and 2), each run against this build
//! and, with `--baseline`, against another (`bench/run --baseline-ref main` builds main's):
//!
//! - `http-flood`: the daemon under `ulimit -n 256`; 369 connections that say nothing and 2,000
//!   slowloris connections (a request head that never ends, a byte every 5 s), each held until
//!   the server closes it or the attack window ends;
//! - `http-auth`: the daemon with one basic-auth user (bcrypt cost 10, as `htpasswd -nBC 10`
//!   makes); 128 keep-alive connections sending a wrong password as fast as they are answered,
//!   first all the same one, then a new guess in every request.
//!
//! Both probe 50 IMAP STARTTLS targets at a 1 s interval against the in-process responder and
//! scrape `/metrics` every second with a 10 s timeout (Prometheus' default), in a quiet window
//! and in the attack window alike. Probe time comes from the daemon's own histogram (sum over
//! count) and from the responder's side (accept to LOGOUT of each session), so it is there
//! even when `/metrics` does not answer; CPU and threads from /proc/PID, descriptors from
//! /proc/PID/fd.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mailprobe_testpeers::faultclient::{self, Hold};
use tokio::io::AsyncWriteExt;

use crate::http;
use crate::imapd::{self, Responder};
use crate::procfs;
use crate::procs::{self, Daemon};
use crate::prom;
use crate::report::{Report, Verdict};
use crate::scenarios::{Ctx, ImapTargets, Tls, global, imap_config, median, ms, pct};

/// A mailprobe binary to measure, and what to call it in the report.
pub struct Build {
    /// Its name in the report ("this build", "main (abc1234)").
    pub name: String,
    /// The binary.
    pub bin: PathBuf,
}

/// Targets probed during the runs.
const TARGETS: usize = 50;
/// How long a scrape may take, as Prometheus' default `scrape_timeout`.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// The basic-auth user of `http-auth`.
const USER: &str = "prometheus";
const PASSWORD: &str = "scrape-Secret";

/// What the daemon's counters say about its probes.
#[derive(Default)]
struct Probes {
    ok: f64,
    failed: f64,
    /// Probes mailprobe could not run because of itself (counted apart since issue 14).
    prober_errors: f64,
    duration_sum: f64,
    duration_count: f64,
    classes: BTreeMap<String, f64>,
}

impl Probes {
    fn of(text: &str) -> Probes {
        let mut classes = BTreeMap::new();
        for s in prom::samples(text).filter(|s| s.name == "mailprobe_probe_failures_total") {
            let class = prom::label(s.labels, "class").unwrap_or("?").to_string();
            *classes.entry(class).or_insert(0.0) += s.value;
        }
        Probes {
            ok: prom::sum(text, "mailprobe_probes_total", "result=\"success\""),
            failed: prom::sum(text, "mailprobe_probes_total", "result=\"failure\""),
            prober_errors: prom::sum(text, "mailprobe_prober_errors_total", ""),
            duration_sum: prom::sum(text, "mailprobe_region_probe_duration_seconds_sum", ""),
            duration_count: prom::sum(text, "mailprobe_region_probe_duration_seconds_count", ""),
            classes,
        }
    }

    fn since(&self, before: &Probes) -> Probes {
        let mut classes = BTreeMap::new();
        for (class, n) in &self.classes {
            let d = n - before.classes.get(class).copied().unwrap_or(0.0);
            if d > 0.0 {
                classes.insert(class.clone(), d);
            }
        }
        Probes {
            ok: self.ok - before.ok,
            failed: self.failed - before.failed,
            prober_errors: self.prober_errors - before.prober_errors,
            duration_sum: self.duration_sum - before.duration_sum,
            duration_count: self.duration_count - before.duration_count,
            classes,
        }
    }
}

/// The figures of one window.
struct Window {
    secs: f64,
    /// CPU of the daemon, % of one core.
    cpu: f64,
    threads_max: usize,
    fds_max: usize,
    fds_end: usize,
    /// Scrapes answered (ms, connect to last byte), and how many were not within the timeout.
    scrapes: Vec<f64>,
    scrapes_failed: usize,
    /// The first failed scrape: seconds into the window, and why.
    first_failure: Option<(f64, String)>,
    /// Every scrape: seconds into the window, and whether it was answered.
    scrape_log: Vec<(f64, bool)>,
    probes: Probes,
    /// Accept to LOGOUT at the responder, ms.
    sessions: Vec<f64>,
}

impl Window {
    fn mean_probe_ms(&self) -> Option<f64> {
        (self.probes.duration_count > 0.0)
            .then(|| self.probes.duration_sum / self.probes.duration_count * 1000.0)
    }

    fn session(&self, q: f64) -> Option<f64> {
        let mut v = self.sessions.clone();
        (!v.is_empty()).then(|| pct(&mut v, q))
    }

    fn scrape_median(&self) -> Option<f64> {
        let mut v = self.scrapes.clone();
        (!v.is_empty()).then(|| median(&mut v))
    }

    fn scrapes_text(&self) -> String {
        let n = self.scrapes.len() + self.scrapes_failed;
        match self.scrape_median() {
            Some(m) => {
                let mut v = self.scrapes.clone();
                format!(
                    "{} of {n} answered; median {m:.1} ms, max {:.1} ms",
                    self.scrapes.len(),
                    pct(&mut v, 1.0)
                )
            }
            None => format!("0 of {n} answered within {}", secs(SCRAPE_TIMEOUT)),
        }
    }

    /// Scrapes started at or after `from` seconds into the window: answered, all.
    fn scrapes_from(&self, from: f64) -> (usize, usize) {
        let later: Vec<bool> = self
            .scrape_log
            .iter()
            .filter(|(at, _)| *at >= from)
            .map(|(_, ok)| *ok)
            .collect();
        (later.iter().filter(|ok| **ok).count(), later.len())
    }

    fn scrape_failure_text(&self) -> String {
        match &self.first_failure {
            None => "–".into(),
            Some((at, why)) => format!("at +{at:.1} s: {why}"),
        }
    }

    fn probes_text(&self) -> String {
        let p = &self.probes;
        let mut t = format!("{:.0} succeeded, {:.0} failed", p.ok, p.failed);
        if p.prober_errors > 0.0 {
            let _ = write!(t, ", {:.0} not run (prober faults)", p.prober_errors);
        }
        if !p.classes.is_empty() {
            let classes: Vec<String> = p
                .classes
                .iter()
                .map(|(c, n)| format!("{n:.0} {c}"))
                .collect();
            let _ = write!(t, " ({})", classes.join(", "));
        }
        t
    }

    fn probe_time_text(&self) -> String {
        let mean = self
            .mean_probe_ms()
            .map_or("–".into(), |m| format!("{m:.2} ms"));
        match (self.session(0.5), self.session(0.99)) {
            (Some(p50), Some(p99)) => format!(
                "mean {mean}; server side p50 {p50:.2} ms, p99 {p99:.2} ms ({} sessions)",
                self.sessions.len()
            ),
            _ => format!("mean {mean}; no session reached the server"),
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2} ×", a / b),
        _ => "–".into(),
    }
}

/// Descriptors the process has open.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// The daemon's probe counters, retried until a scrape gets through (or 60 s pass).
async fn probes_now(addr: SocketAddr, basic: Option<&str>) -> anyhow::Result<Probes> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match http::scrape_as(addr, "/metrics", basic, SCRAPE_TIMEOUT).await {
            Ok((_, body)) => return Ok(Probes::of(&String::from_utf8_lossy(&body))),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Samples the daemon every second for `len`: descriptors, threads and a timed scrape.
struct Sampled {
    took: Duration,
    cpu: Duration,
    threads_max: usize,
    fds_max: usize,
    fds_end: usize,
    scrapes: Vec<f64>,
    scrapes_failed: usize,
    first_failure: Option<(f64, String)>,
    scrape_log: Vec<(f64, bool)>,
}

async fn sample(
    ctx: &Ctx,
    d: &Daemon,
    basic: Option<&str>,
    len: Duration,
) -> anyhow::Result<Sampled> {
    let pid = d.proc.pid;
    let started = Instant::now();
    let cpu0 = procfs::cpu(pid, ctx.ticks)?;
    let end = started + len;
    let mut s = Sampled {
        took: Duration::ZERO,
        cpu: Duration::ZERO,
        threads_max: 0,
        fds_max: 0,
        fds_end: 0,
        scrapes: Vec::new(),
        scrapes_failed: 0,
        first_failure: None,
        scrape_log: Vec::new(),
    };
    while Instant::now() < end {
        let tick = Instant::now();
        s.threads_max = s.threads_max.max(threads(pid));
        s.fds_max = s.fds_max.max(fds(pid));
        let at = tick.duration_since(started).as_secs_f64();
        match http::scrape_as(d.proc.addr, "/metrics", basic, SCRAPE_TIMEOUT).await {
            Ok((took, _)) => {
                s.scrapes.push(ms(took));
                s.scrape_log.push((at, true));
            }
            Err(e) => {
                s.scrapes_failed += 1;
                s.scrape_log.push((at, false));
                if s.first_failure.is_none() {
                    s.first_failure = Some((at, format!("{e:#}")));
                }
            }
        }
        s.threads_max = s.threads_max.max(threads(pid));
        s.fds_max = s.fds_max.max(fds(pid));
        let next = (tick + Duration::from_secs(1)).min(end);
        tokio::time::sleep_until(next.into()).await;
    }
    s.took = started.elapsed();
    s.cpu = procfs::cpu(pid, ctx.ticks)?.saturating_sub(cpu0);
    s.fds_end = fds(pid);
    Ok(s)
}

fn window(s: Sampled, probes: Probes, sessions: Vec<Duration>) -> Window {
    Window {
        secs: s.took.as_secs_f64(),
        cpu: s.cpu.as_secs_f64() / s.took.as_secs_f64() * 100.0,
        threads_max: s.threads_max,
        fds_max: s.fds_max,
        fds_end: s.fds_end,
        scrapes: s.scrapes,
        scrapes_failed: s.scrapes_failed,
        first_failure: s.first_failure,
        scrape_log: s.scrape_log,
        probes,
        sessions: sessions.into_iter().map(ms).collect(),
    }
}

/// The responder and a config of [`TARGETS`] IMAP STARTTLS targets at 1 s on it, plus `extra`
/// in `[global]`.
fn setup(ctx: &Ctx, name: &str, extra: &str) -> anyhow::Result<(Responder, PathBuf)> {
    let responder = Responder::start(imapd::Options {
        ports: 2,
        greeting_delay: Duration::ZERO,
        tls: Some(ctx.pki.valid.server_config(&[])),
    })?;
    let g = global("1s", "1s", 64).replace("[global]\n", &format!("[global]\n{extra}"));
    let text = imap_config(
        ctx,
        &g,
        &ImapTargets {
            prefix: "p",
            count: TARGETS,
            ports: &responder.ports,
            tls: Tls::Starttls,
            users: None,
        },
    );
    let cfg = ctx.write(name, &text)?;
    Ok((responder, cfg))
}

/// A quiet window: no attack.
async fn quiet(
    ctx: &Ctx,
    d: &Daemon,
    responder: &Responder,
    basic: Option<&str>,
    len: Duration,
) -> anyhow::Result<Window> {
    let before = probes_now(d.proc.addr, basic).await?;
    responder.stats.take_sessions();
    let s = sample(ctx, d, basic, len).await?;
    let sessions = responder.stats.take_sessions();
    let after = probes_now(d.proc.addr, basic).await?;
    Ok(window(s, after.since(&before), sessions))
}

// ---------------------------------------------------------------------------------------------
// Defect 1: connections that hold descriptors.

/// What became of one flood connection.
enum Fate {
    NotConnected,
    ClosedByServer(Duration),
    StillOpen,
}

struct Flood {
    offered: usize,
    window: Window,
    fates: Vec<Fate>,
    accept_failed: usize,
}

/// Idle connections and slowloris connections of the report.
const IDLE: usize = 369;
const SLOWLORIS: usize = 2000;
/// The open-file limit of the report.
const OPEN_FILES: u64 = 256;
/// Seconds into the flood by which the server should have cut the offenders off (its
/// request-head timeout is 10 s); every scrape from then on must be answered.
const CUT_OFF: f64 = 15.0;

async fn flood_one(ctx: &Ctx, build: &Build, len: Duration) -> anyhow::Result<(Window, Flood)> {
    let (responder, cfg) = setup(ctx, "flood.toml", "")?;
    let tag = format!(
        "flood-{}",
        build.name.replace(|c: char| !c.is_alphanumeric(), "-")
    );
    let d = procs::spawn_daemon_limited(&build.bin, &cfg, &ctx.path, &tag, &[], Some(OPEN_FILES))?;
    // Warm up: every target probed once or twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let quiet_len = if ctx.quick {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(20)
    };
    let calm = quiet(ctx, &d, &responder, None, quiet_len).await?;

    eprintln!(
        "  {}: flood of {IDLE} idle + {SLOWLORIS} slowloris connections for {}",
        build.name,
        secs(len)
    );
    let before = probes_now(d.proc.addr, None).await?;
    responder.stats.take_sessions();
    let addr = d.proc.addr;
    let connect = Duration::from_secs(5);
    let mut tasks = Vec::new();
    for i in 0..IDLE + SLOWLORIS {
        let slow = i >= IDLE;
        tasks.push(tokio::spawn(async move {
            let s = if slow {
                faultclient::slowloris(addr, connect).await
            } else {
                faultclient::connect(addr, connect).await
            };
            let Ok(s) = s else {
                return Fate::NotConnected;
            };
            let hold = if slow {
                Hold::Drip(Duration::from_secs(5))
            } else {
                Hold::Silent
            };
            match faultclient::hold_until_closed(s, hold, len).await {
                Ok(after) => Fate::ClosedByServer(after),
                Err(_) => Fate::StillOpen,
            }
        }));
    }
    let s = sample(ctx, &d, None, len).await?;
    let mut fates = Vec::new();
    for t in tasks {
        fates.push(t.await?);
    }
    let sessions = responder.stats.take_sessions();
    // The flood is over (its connections closed): what the daemon counted meanwhile.
    let after = probes_now(addr, None).await?;
    let accept_failed = d.proc.log_text().matches("accept failed").count();
    let attacked = window(s, after.since(&before), sessions);
    Ok((
        calm,
        Flood {
            offered: IDLE + SLOWLORIS,
            window: attacked,
            fates,
            accept_failed,
        },
    ))
}

/// Defect 1 for every build: fds held, `/metrics` and probes under the flood.
pub async fn http_flood(
    ctx: &mut Ctx,
    report: &mut Report,
    builds: &[Build],
) -> anyhow::Result<()> {
    let len = if ctx.quick {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(60)
    };
    eprintln!(
        "http-flood: {IDLE} idle + {SLOWLORIS} slowloris connections, ulimit -n {OPEN_FILES}"
    );
    let mut runs = Vec::new();
    for b in builds {
        runs.push(flood_one(ctx, b, len).await?);
    }
    let mut t = String::new();
    let _ = writeln!(
        t,
        "The daemon runs with `ulimit -n {OPEN_FILES}` and probes {TARGETS} IMAP STARTTLS targets at a 1 s interval against the responder. After a quiet window, {IDLE} connections that send nothing and {SLOWLORIS} slowloris connections (the head `GET /metrics HTTP/1.1`, `Host`, and an unfinished `X-Slow:` header dripped a byte every 5 s) connect at once and are held for {} each, or until the server closes them; they do not reconnect. A connection the kernel dropped because the listen queue (128) was full counts as still open on the client's side, as nothing ever tells that client; the daemon's descriptors show what it holds. `/metrics` is scraped every second on a new connection with a {} timeout. Probe counts are the daemon's counters from just before the flood to just after it (read once a scrape gets through again); the server-side probe time is accept to LOGOUT at the responder.\n",
        secs(len),
        secs(SCRAPE_TIMEOUT)
    );
    let _ = write!(t, "| | ");
    for b in builds {
        let _ = write!(t, "{}: quiet | {}: flood | ", b.name, b.name);
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "|---|{}", "---|---|".repeat(builds.len()));
    let row = |t: &mut String, name: &str, f: &dyn Fn(&Window, Option<&Flood>) -> String| {
        let _ = write!(t, "| {name} | ");
        for (calm, flood) in &runs {
            let _ = write!(
                t,
                "{} | {} | ",
                f(calm, None),
                f(&flood.window, Some(flood))
            );
        }
        let _ = writeln!(t);
    };
    row(&mut t, "flood connections", &|_, f| match f {
        None => "–".into(),
        Some(f) => {
            let connected = f
                .fates
                .iter()
                .filter(|x| !matches!(x, Fate::NotConnected))
                .count();
            format!("{connected} of {} connected", f.offered)
        }
    });
    row(
        &mut t,
        &format!("closed by the server within {} (client side)", secs(len)),
        &|_, f| match f {
            None => "–".into(),
            Some(f) => {
                let mut closed: Vec<f64> = f
                    .fates
                    .iter()
                    .filter_map(|x| match x {
                        Fate::ClosedByServer(d) => Some(d.as_secs_f64()),
                        _ => None,
                    })
                    .collect();
                let open = f
                    .fates
                    .iter()
                    .filter(|x| matches!(x, Fate::StillOpen))
                    .count();
                if closed.is_empty() {
                    format!("none; {open} still open")
                } else {
                    format!(
                        "{} (median after {:.1} s, last after {:.1} s); {open} still open",
                        closed.len(),
                        median(&mut closed),
                        pct(&mut closed, 1.0)
                    )
                }
            }
        },
    );
    row(&mut t, "daemon's open descriptors", &|w, _| {
        format!("max {}, at the end {}", w.fds_max, w.fds_end)
    });
    row(&mut t, "`/metrics` scrapes", &|w, _| w.scrapes_text());
    row(&mut t, "first failed scrape", &|w, _| {
        w.scrape_failure_text()
    });
    row(
        &mut t,
        &format!("`/metrics` scrapes from +{CUT_OFF:.0} s on"),
        &|w, _| {
            let (ok, all) = w.scrapes_from(CUT_OFF);
            format!("{ok} of {all} answered")
        },
    );
    row(&mut t, "probes", &|w, _| w.probes_text());
    row(&mut t, "probe time", &|w, _| w.probe_time_text());
    row(&mut t, "daemon CPU", &|w, _| {
        format!("{:.1} % of one core", w.cpu)
    });
    row(&mut t, "`accept failed` log lines", &|_, f| match f {
        None => "–".into(),
        Some(f) => f.accept_failed.to_string(),
    });
    report.section(
        "HTTP flood: idle and slowloris connections at `ulimit -n 256`",
        t,
    );
    for (b, (calm, flood)) in builds.iter().zip(&runs) {
        let w = &flood.window;
        let (later_ok, later) = w.scrapes_from(CUT_OFF);
        let ok = later_ok == later && w.probes.failed == 0.0 && w.probes.prober_errors == 0.0;
        report.figure(
            &format!("HTTP flood ({IDLE} idle + {SLOWLORIS} slowloris, ulimit -n {OPEN_FILES}), {}", b.name),
            &format!("`/metrics` answers from +{CUT_OFF:.0} s on (offenders cut off), no probe fails"),
            format!(
                "`/metrics`: {}, from +{CUT_OFF:.0} s on {later_ok} of {later}; probes: {}; descriptors max {} of {OPEN_FILES}; probe time {} of quiet (mean)",
                w.scrapes_text(),
                w.probes_text(),
                w.fds_max,
                ratio(w.mean_probe_ms(), calm.mean_probe_ms())
            ),
            if ok { Verdict::Met } else { Verdict::Missed },
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Defect 2: wrong basic-auth passwords.

/// Attack connections of the report.
const ATTACKERS: usize = 128;

/// Answers the attackers got.
#[derive(Default)]
struct Answers {
    unauthorized: AtomicU64,
    busy: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
}

/// One attacker: a keep-alive connection sending `GET /metrics` with a wrong password as fast
/// as it is answered (a new guess each time when `guess`), reconnecting when closed.
async fn attacker(addr: SocketAddr, id: usize, guess: bool, until: Instant, answers: Arc<Answers>) {
    use base64::Engine;
    let mut n = 0u64;
    while Instant::now() < until {
        let Ok(mut s) = faultclient::connect(addr, Duration::from_secs(5)).await else {
            answers.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while Instant::now() < until {
            n += 1;
            let password = if guess {
                format!("guess-{id}-{n}")
            } else {
                "wrong".to_string()
            };
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
            let req = format!(
                "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\r\n"
            );
            if s.write_all(req.as_bytes()).await.is_err() {
                answers.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let left = until.saturating_duration_since(Instant::now()) + Duration::from_secs(30);
            match tokio::time::timeout(left, faultclient::read_response(&mut s)).await {
                Ok(Ok((401, _))) => answers.unauthorized.fetch_add(1, Ordering::Relaxed),
                Ok(Ok((503, _))) => answers.busy.fetch_add(1, Ordering::Relaxed),
                Ok(Ok(_)) => answers.other.fetch_add(1, Ordering::Relaxed),
                _ => {
                    answers.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
        }
    }
}

/// The attacks of `http-auth`, in order.
const ATTACKS: [(&str, bool); 2] = [
    ("the same wrong password", false),
    ("a new guess each request", true),
];

/// One cell's windows, one per round: the phase's window, that round's quiet window, and the
/// attack's answers (none for the quiet phase).
type Cells<'a> = [(&'a Window, &'a Window, Option<&'a Answers>)];

/// One build's `http-auth` run: per round, the quiet window and one per attack.
struct AuthRun {
    rounds: Vec<(Window, Vec<(Window, Answers)>)>,
}

async fn auth_one(
    ctx: &Ctx,
    build: &Build,
    len: Duration,
    rounds: usize,
) -> anyhow::Result<AuthRun> {
    let hash = bcrypt::hash(PASSWORD, 10)?;
    let web = ctx.write(
        "web-auth.yml",
        &format!("basic_auth_users:\n  {USER}: '{hash}'\n"),
    )?;
    let (responder, cfg) = setup(
        ctx,
        "auth.toml",
        &format!("web_config_file = \"{}\"\n", web.display()),
    )?;
    let tag = format!(
        "auth-{}",
        build.name.replace(|c: char| !c.is_alphanumeric(), "-")
    );
    let d = procs::spawn_daemon(&build.bin, &cfg, &ctx.path, &tag, &[])?;
    let basic = format!("{USER}:{PASSWORD}");
    let basic = Some(basic.as_str());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut run = AuthRun { rounds: Vec::new() };
    for round in 1..=rounds {
        let calm = quiet(ctx, &d, &responder, basic, len).await?;
        let mut attacks = Vec::new();
        for (name, guess) in ATTACKS {
            eprintln!(
                "  {} round {round}: {ATTACKERS} connections sending {name} for {}",
                build.name,
                secs(len)
            );
            let before = probes_now(d.proc.addr, basic).await?;
            responder.stats.take_sessions();
            let answers = Arc::new(Answers::default());
            let until = Instant::now() + len;
            let tasks: Vec<_> = (0..ATTACKERS)
                .map(|id| tokio::spawn(attacker(d.proc.addr, id, guess, until, answers.clone())))
                .collect();
            let s = sample(ctx, &d, basic, len).await?;
            let sessions = responder.stats.take_sessions();
            for t in tasks {
                t.await?;
            }
            let after = probes_now(d.proc.addr, basic).await?;
            let answers = Arc::try_unwrap(answers).unwrap_or_default();
            attacks.push((window(s, after.since(&before), sessions), answers));
            // Let the attack's work drain before the next window.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        run.rounds.push((calm, attacks));
    }
    Ok(run)
}

/// `values` with their median: "1.02 × (1.01, 1.02, 1.05)".
fn ratios(values: &[Option<f64>]) -> String {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    if v.is_empty() {
        return "–".into();
    }
    let each: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
    let m = median(&mut v);
    if each.len() == 1 {
        format!("{m:.2} ×")
    } else {
        format!("**{m:.2} ×** ({})", each.join(", "))
    }
}

fn over(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// Defect 2 for every build: CPU, threads, probe and `/metrics` time under wrong passwords.
pub async fn http_auth(ctx: &mut Ctx, report: &mut Report, builds: &[Build]) -> anyhow::Result<()> {
    let len = if ctx.quick {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(20)
    };
    let rounds = if ctx.quick { 1 } else { 3 };
    eprintln!("http-auth: {ATTACKERS} connections with wrong basic-auth passwords");
    let mut runs = Vec::new();
    for b in builds {
        runs.push(auth_one(ctx, b, len, rounds).await?);
    }
    let mut t = String::new();
    let _ = writeln!(
        t,
        "The daemon has one basic-auth user (bcrypt cost 10) and probes {TARGETS} IMAP STARTTLS targets at a 1 s interval against the responder. Each round is a quiet window of {len}, then {ATTACKERS} keep-alive connections sending `GET /metrics` with a wrong password as fast as they are answered (reconnecting when closed): for {len} all with the same wrong password, then for {len} with a new guess in every request. `/metrics` is scraped every second with the right password on a new connection, with a {} timeout. {rounds} round(s) per build; counts are summed over the rounds, CPU and times are medians over them, ratios are against the same round's quiet window (which takes most of the machine's noise out), their median in bold.\n",
        secs(SCRAPE_TIMEOUT),
        len = secs(len),
    );
    let _ = write!(t, "| | ");
    for b in builds {
        let _ = write!(t, "{}: quiet | ", b.name);
        for (name, _) in ATTACKS {
            let _ = write!(t, "{}: {name} | ", b.name);
        }
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "|---|{}",
        "---|".repeat((1 + ATTACKS.len()) * builds.len())
    );
    // One cell per build and phase (0 quiet, 1.. the attacks), from that phase's windows of
    // every round, with the quiet window of the same round beside each.
    let row = |t: &mut String, name: &str, f: &dyn Fn(&Cells) -> String| {
        let _ = write!(t, "| {name} | ");
        for run in &runs {
            for phase in 0..=ATTACKS.len() {
                let cells: Vec<_> = run
                    .rounds
                    .iter()
                    .map(|(calm, attacks)| match phase {
                        0 => (calm, calm, None),
                        n => (&attacks[n - 1].0, calm, Some(&attacks[n - 1].1)),
                    })
                    .collect();
                let _ = write!(t, "{} | ", f(&cells));
            }
        }
        let _ = writeln!(t);
    };
    let med = |v: Vec<f64>| {
        let mut v = v;
        median(&mut v)
    };
    row(&mut t, "attack requests answered", &|c| {
        if c[0].2.is_none() {
            return "–".into();
        }
        let sum = |f: &dyn Fn(&Answers) -> u64| c.iter().filter_map(|x| x.2).map(f).sum::<u64>();
        let n401 = sum(&|a| a.unauthorized.load(Ordering::Relaxed));
        let n503 = sum(&|a| a.busy.load(Ordering::Relaxed));
        let secs: f64 = c.iter().map(|x| x.0.secs).sum();
        format!(
            "{:.0}/s: {n401} × 401, {n503} × 503, {} other, {} errors",
            (n401 + n503) as f64 / secs,
            sum(&|a| a.other.load(Ordering::Relaxed)),
            sum(&|a| a.errors.load(Ordering::Relaxed))
        )
    });
    row(&mut t, "daemon CPU (% of one core)", &|c| {
        format!("{:.1} %", med(c.iter().map(|x| x.0.cpu).collect()))
    });
    row(&mut t, "daemon threads (max of each round)", &|c| {
        let each: Vec<String> = c.iter().map(|x| x.0.threads_max.to_string()).collect();
        each.join(", ")
    });
    row(&mut t, "probes", &|c| {
        let ok: f64 = c.iter().map(|x| x.0.probes.ok).sum();
        let failed: f64 = c.iter().map(|x| x.0.probes.failed).sum();
        let timeouts: f64 = c
            .iter()
            .map(|x| x.0.probes.classes.get("timeout").copied().unwrap_or(0.0))
            .sum();
        format!("{ok:.0} succeeded, {failed:.0} failed ({timeouts:.0} timeout)")
    });
    row(&mut t, "probe time, mean (daemon)", &|c| {
        format!(
            "{:.2} ms",
            med(c.iter().filter_map(|x| x.0.mean_probe_ms()).collect())
        )
    });
    row(&mut t, "probe time, p50 / p99 (server side)", &|c| {
        format!(
            "{:.2} / {:.2} ms",
            med(c.iter().filter_map(|x| x.0.session(0.5)).collect()),
            med(c.iter().filter_map(|x| x.0.session(0.99)).collect())
        )
    });
    row(&mut t, "probe time vs quiet, mean", &|c| {
        ratios(
            &c.iter()
                .map(|x| over(x.0.mean_probe_ms(), x.1.mean_probe_ms()))
                .collect::<Vec<_>>(),
        )
    });
    row(&mut t, "probe time vs quiet, p50", &|c| {
        ratios(
            &c.iter()
                .map(|x| over(x.0.session(0.5), x.1.session(0.5)))
                .collect::<Vec<_>>(),
        )
    });
    row(&mut t, "probe time vs quiet, p99", &|c| {
        ratios(
            &c.iter()
                .map(|x| over(x.0.session(0.99), x.1.session(0.99)))
                .collect::<Vec<_>>(),
        )
    });
    row(&mut t, "`/metrics` scrapes", &|c| {
        let ok: usize = c.iter().map(|x| x.0.scrapes.len()).sum();
        let failed: usize = c.iter().map(|x| x.0.scrapes_failed).sum();
        let m = med(c.iter().filter_map(|x| x.0.scrape_median()).collect());
        format!("{ok} of {} answered, median {m:.1} ms", ok + failed)
    });
    row(&mut t, "`/metrics` time vs quiet, median", &|c| {
        ratios(
            &c.iter()
                .map(|x| over(x.0.scrape_median(), x.1.scrape_median()))
                .collect::<Vec<_>>(),
        )
    });
    report.section(
        "HTTP auth: 128 connections with wrong basic-auth passwords",
        t,
    );
    for (b, run) in builds.iter().zip(&runs) {
        for (i, (name, _)) in ATTACKS.iter().enumerate() {
            let pick = |f: &dyn Fn(&Window, &Window) -> Option<f64>| {
                ratios(
                    &run.rounds
                        .iter()
                        .map(|(calm, a)| f(&a[i].0, calm))
                        .collect::<Vec<_>>(),
                )
            };
            let cpu = med(run.rounds.iter().map(|(_, a)| a[i].0.cpu).collect());
            let calm_cpu = med(run.rounds.iter().map(|(c, _)| c.cpu).collect());
            let threads = run
                .rounds
                .iter()
                .map(|(_, a)| a[i].0.threads_max)
                .max()
                .unwrap_or(0);
            // The first quiet window: later ones may still see threads an attack left behind.
            let calm_threads = run.rounds.first().map_or(0, |(c, _)| c.threads_max);
            report.figure(
                &format!("{ATTACKERS} connections with wrong passwords ({name}), {}", b.name),
                "probe time unmoved",
                format!(
                    "CPU {cpu:.1} % (quiet {calm_cpu:.1} %), {threads} threads (before the first attack {calm_threads}); probe time vs quiet: p50 {}, p99 {}, mean {}; `/metrics` median {}",
                    pick(&|w, c| over(w.session(0.5), c.session(0.5))),
                    pick(&|w, c| over(w.session(0.99), c.session(0.99))),
                    pick(&|w, c| over(w.mean_probe_ms(), c.mean_probe_ms())),
                    pick(&|w, c| over(w.scrape_median(), c.scrape_median())),
                ),
                Verdict::Info,
            );
        }
    }
    Ok(())
}
