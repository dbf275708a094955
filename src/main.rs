//! The `mailprobe` command: a thin clap wrapper over the library.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use mailprobe::config::LogFormat;
use mailprobe::load::{self, Config};
use mailprobe::probe::{self, ProbeContext};
use mailprobe::{daemon, incidents, logging, report, table};

/// jemalloc, because it gives memory back: glibc kept the ~50 MiB a reload of 10,000 targets
/// parses and frees, so every reload left the daemon larger (BENCHMARKS.md, Reloads).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Synthetic mailbox availability prober: IMAP (and more) probes exported to Prometheus.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: probe every target on its schedule and serve /metrics.
    Run {
        /// The config file.
        #[arg(short, long, default_value = "probes.toml", env = "MAILPROBE_CONFIG")]
        config: PathBuf,
        /// Listen here instead of `[global] listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Probe only shard INDEX/COUNT of the targets (overrides `[global] shard`), so that
        /// COUNT instances split a large fleet; INDEX counts from 0.
        #[arg(long, value_name = "INDEX/COUNT")]
        shard: Option<mailprobe::load::Shard>,
    },
    /// Validate the config and print a summary of its targets; exit 1 if it is invalid.
    Check {
        /// The config file.
        #[arg(short, long, default_value = "probes.toml", env = "MAILPROBE_CONFIG")]
        config: PathBuf,
    },
    /// Print the incident timeline kept by the daemon.
    Incidents {
        /// The config file (only its [incidents] table is read).
        #[arg(short, long, default_value = "probes.toml", env = "MAILPROBE_CONFIG")]
        config: PathBuf,
        /// How far back: incidents open now, or opened or closed within this period.
        #[arg(long, default_value = "7d")]
        since: humantime::Duration,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: incidents::render::Format,
        /// Read this state directory instead of the config's.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Add an update to an incident instead of printing the timeline.
        #[command(subcommand)]
        action: Option<IncidentsAction>,
    },
    /// Planned work: windows during which targets open no incidents and page no one.
    Maintenance {
        #[command(subcommand)]
        action: MaintenanceAction,
    },
    /// Probe the named targets (default: all) once, now, and print what happened.
    Probe {
        /// The config file.
        #[arg(short, long, default_value = "probes.toml", env = "MAILPROBE_CONFIG")]
        config: PathBuf,
        /// Print JSON (one object per target, in an array) instead of a table.
        #[arg(long)]
        json: bool,
        /// Target names; all targets when none are given.
        targets: Vec<String>,
    },
}

/// Where the incident database is: `--state-dir`, or the config's `[incidents] state_dir`.
#[derive(clap::Args)]
struct StateArgs {
    /// The config file (its [incidents], targets' names and regions, [[maintenance]]).
    #[arg(short, long, default_value = "probes.toml", env = "MAILPROBE_CONFIG")]
    config: PathBuf,
    /// Use this state directory instead of the config's (the config is then only read for
    /// names, when it can be).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum IncidentsAction {
    /// Add an update by a person to incident ID's timeline (what was found, what is being done).
    Note {
        #[command(flatten)]
        state: StateArgs,
        /// The incident's number (`mailprobe incidents` lists them).
        id: i64,
        /// The update, in words for the people whose mail it is.
        text: String,
    },
}

#[derive(Subcommand)]
enum MaintenanceAction {
    /// Add a window; the running daemon applies it within seconds, no restart or reload.
    Add {
        #[command(flatten)]
        state: StateArgs,
        /// A target under maintenance (repeat for several).
        #[arg(long = "target", value_name = "NAME")]
        targets: Vec<String>,
        /// A whole region under maintenance (repeat for several).
        #[arg(long = "region", value_name = "NAME")]
        regions: Vec<String>,
        /// When it starts: RFC 3339 with an offset (2026-12-01T22:00:00Z), or `now`.
        #[arg(long, default_value = "now")]
        start: String,
        /// When it ends: RFC 3339 with an offset.
        #[arg(
            long,
            conflicts_with = "duration",
            required_unless_present = "duration"
        )]
        end: Option<String>,
        /// How long it lasts (e.g. 2h, 30m).
        #[arg(long)]
        duration: Option<humantime::Duration>,
        /// Why, in words for the status page.
        #[arg(long)]
        reason: String,
    },
    /// List windows in force or to come (with --all, ended ones too).
    List {
        #[command(flatten)]
        state: StateArgs,
        /// Ended windows too (stored ones only; retention does not apply to them).
        #[arg(long)]
        all: bool,
    },
    /// End window ID now (one still to come is cancelled).
    End {
        #[command(flatten)]
        state: StateArgs,
        /// The window's number, as `add` and `list` give it.
        id: i64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    mailprobe::install_crypto_provider();
    let result = match cli.command {
        Command::Run {
            config,
            listen,
            shard,
        } => run(&config, listen, shard),
        Command::Check { config } => check(&config),
        Command::Incidents {
            action: Some(IncidentsAction::Note { state, id, text }),
            ..
        } => add_note(&state, id, &text),
        Command::Incidents {
            config,
            since,
            format,
            state_dir,
            action: None,
        } => print_incidents(&config, *since, format, state_dir),
        Command::Maintenance { action } => maintenance(action),
        Command::Probe {
            config,
            json,
            targets,
        } => probe_once(&config, &targets, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Not eprintln!: it panics (exit 101) when stderr is closed.
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to stdout. A reader that has gone away (`mailprobe check | head -1`) is not an
/// error: the command ends as it would have, without the rest of its output.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to stdout"),
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    // The error already names file, line and key.
    load::load(path).map_err(|e| anyhow::anyhow!(e))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(
    path: &Path,
    listen: Option<SocketAddr>,
    shard: Option<mailprobe::load::Shard>,
) -> anyhow::Result<ExitCode> {
    let mut config = load(path)?;
    if let Some(s) = shard {
        config.override_shard(s).map_err(|e| anyhow::anyhow!(e))?;
    }
    let _log = logging::init(config.global.log_format, &config.global.log_level);
    config.log_warnings();
    let addr = listen.unwrap_or(config.global.listen);
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let public = match config.status.listen {
            Some(a) => Some(
                tokio::net::TcpListener::bind(a)
                    .await
                    .with_context(|| format!("cannot listen on {a} ([status] listen)"))?,
            ),
            None => None,
        };
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            wait_for_stop_signal().await;
            stop.cancel();
        });
        let listeners = daemon::Listeners {
            private: listener,
            public,
        };
        daemon::run_listeners(config, listeners, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install SIGTERM/SIGINT handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

fn print_incidents(
    path: &Path,
    since: std::time::Duration,
    format: incidents::render::Format,
    state_dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let dir = match state_dir {
        Some(d) => d,
        None => {
            load::load_incident_settings(path)
                .map_err(|e| anyhow::anyhow!(e))?
                .state_dir
        }
    };
    let store = incidents::store::Store::open_read_only(&dir)?;
    let cutoff = std::time::SystemTime::now()
        .checked_sub(since)
        .unwrap_or(std::time::UNIX_EPOCH);
    let history = store.history(cutoff)?;
    let linked = store.linked_for(&history)?;
    emit(&incidents::render::render_with_providers(
        &history, &linked, format,
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    for w in &config.warnings {
        // Not eprintln!: it panics when stderr is closed.
        let _ = writeln!(std::io::stderr(), "warning: {w}");
    }
    let g = &config.global;
    let n = config.targets.len();
    let mut out = format!(
        "{}: OK: {n} target{}; listen {}, interval {}, timeout {}, slow above {}, concurrency {}\n",
        path.display(),
        if n == 1 { "" } else { "s" },
        g.listen,
        humantime::format_duration(g.interval),
        humantime::format_duration(g.timeout),
        humantime::format_duration(g.slow_threshold),
        g.concurrency
    );
    if config.targets.is_empty() {
        emit(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    out.push('\n');
    let rows: Vec<[String; 7]> = config
        .targets
        .iter()
        .map(|t| {
            let (endpoint, tls) = t.spec.endpoint().map_or(("-".into(), "-"), |e| {
                (format!("{}:{}", e.host, e.port), e.tls.as_str())
            });
            [
                t.name.clone(),
                t.region.clone(),
                t.protocol().as_str().to_string(),
                endpoint,
                tls.to_string(),
                humantime::format_duration(t.interval).to_string(),
                humantime::format_duration(t.timeout).to_string(),
            ]
        })
        .collect();
    let headers = [
        "TARGET", "REGION", "PROTOCOL", "ENDPOINT", "TLS", "INTERVAL", "TIMEOUT",
    ];
    out.push_str(&table::render(&headers, &rows));
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn probe_once(path: &Path, names: &[String], json: bool) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    // Problems go to stderr as log lines; stdout stays the table or JSON.
    let _log = logging::init(LogFormat::Text, "warn");
    let known = config.target_names();
    if let Some(unknown) = names.iter().find(|n| !known.contains(n.as_str())) {
        anyhow::bail!(
            "{}: no target named {unknown:?} (known: {})",
            path.display(),
            {
                let mut k: Vec<&str> = known.into_iter().collect();
                k.sort_unstable();
                k.join(", ")
            }
        );
    }
    let targets: Vec<_> = config
        .targets
        .iter()
        .filter(|t| names.is_empty() || names.contains(&t.name))
        .cloned()
        .collect();
    let concurrency = config.global.concurrency;
    let outcomes = runtime()?.block_on(async move {
        let ctx = Arc::new(ProbeContext::new());
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let handles: Vec<_> = targets
            .into_iter()
            .map(|t| {
                let ctx = ctx.clone();
                let slots = slots.clone();
                tokio::spawn(async move {
                    let _permit = slots.acquire_owned().await;
                    probe::run(&t, &ctx).await
                })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(handles.len());
        for h in handles {
            outcomes.push(h.await.context("probe task failed")?);
        }
        anyhow::Ok(outcomes)
    })?;
    if json {
        let all: Vec<_> = outcomes.iter().map(report::json).collect();
        emit(&format!("{}\n", serde_json::to_string_pretty(&all)?))?;
    } else {
        emit(&report::table(&outcomes))?;
    }
    Ok(if outcomes.iter().all(probe::Outcome::success) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The config's light part (names, regions, windows) and the state directory to use.
fn light(state: &StateArgs) -> anyhow::Result<(Option<load::Light>, PathBuf)> {
    match &state.state_dir {
        // An explicit directory: the config is a help for checking names, not a need.
        Some(dir) => Ok((load::load_light(&state.config).ok(), dir.clone())),
        None => {
            let light = load::load_light(&state.config).map_err(|e| anyhow::anyhow!(e))?;
            let dir = light.incidents.state_dir.clone();
            Ok((Some(light), dir))
        }
    }
}

fn add_note(state: &StateArgs, id: i64, text: &str) -> anyhow::Result<ExitCode> {
    let text = incidents::notes::check(text)?;
    let (_, dir) = light(state)?;
    let mut store = incidents::store::Store::open_for_update(&dir)?;
    let entry = store.add_note(id, std::time::SystemTime::now(), &text)?;
    emit(&format!(
        "note added to incident #{id} at {}\n",
        incidents::render::timestamp(entry.at)
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `now` or RFC 3339 with an offset.
fn parse_instant(what: &str, s: &str) -> anyhow::Result<std::time::SystemTime> {
    if s == "now" {
        return Ok(std::time::SystemTime::now());
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).with_context(|| {
        format!("--{what} {s:?}: not RFC 3339 with an offset (e.g. 2026-12-01T22:00:00Z) or now")
    })?;
    let secs = u64::try_from(t.timestamp()).with_context(|| format!("--{what} is before 1970"))?;
    Ok(std::time::UNIX_EPOCH + std::time::Duration::new(secs, t.timestamp_subsec_nanos()))
}

fn maintenance(action: MaintenanceAction) -> anyhow::Result<ExitCode> {
    use incidents::maintenance::{Source, Window, current_and_upcoming};
    use incidents::store::Store;
    let now = std::time::SystemTime::now();
    match action {
        MaintenanceAction::Add {
            state,
            targets,
            regions,
            start,
            end,
            duration,
            reason,
        } => {
            let (light, dir) = light(&state)?;
            if let Some(l) = &light {
                if let Some(t) = targets.iter().find(|t| !l.targets.contains(*t)) {
                    anyhow::bail!("{}: no target named {t:?}", state.config.display());
                }
                if let Some(r) = regions.iter().find(|r| !l.regions.contains(*r)) {
                    anyhow::bail!(
                        "{}: no target is in region {r:?}, so the window would cover nothing",
                        state.config.display()
                    );
                }
            }
            let start = parse_instant("start", &start)?;
            let end = match (end, duration) {
                (Some(e), _) => parse_instant("end", &e)?,
                (None, Some(d)) => start + *d,
                (None, None) => anyhow::bail!("give --end or --duration"),
            };
            let mut w = Window {
                source: Source::Cli(0),
                targets,
                regions,
                start,
                end,
                reason: reason.trim().to_string(),
            };
            w.check().context("refused")?;
            if w.end <= now {
                anyhow::bail!("refused: the window is over already");
            }
            let store = Store::open_for_update(&dir)?;
            let id = store.add_window(&w, now)?;
            w.source = Source::Cli(id);
            emit(&format!(
                "maintenance window #{id} added: {} to {}\n",
                incidents::render::timestamp(w.start),
                incidents::render::timestamp(w.end)
            ))?;
        }
        MaintenanceAction::List { state, all } => {
            let (light, dir) = light(&state)?;
            let store = Store::open_read_only(&dir);
            let mut windows: Vec<Window> = light.map(|l| l.maintenance).unwrap_or_default();
            match store {
                Ok(s) => {
                    windows.extend(s.windows(if all { std::time::UNIX_EPOCH } else { now })?)
                }
                // Nothing stored yet: the config's windows are all there is.
                Err(incidents::store::StoreError::Missing(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let shown: Vec<&Window> = if all {
                windows.iter().collect()
            } else {
                current_and_upcoming(&windows, now)
            };
            let rows: Vec<[String; 7]> = shown
                .iter()
                .map(|w| {
                    let state = if w.active(now) {
                        "in force"
                    } else if w.start > now {
                        "upcoming"
                    } else {
                        "ended"
                    };
                    [
                        w.source.to_string(),
                        state.to_string(),
                        incidents::render::timestamp(w.start),
                        incidents::render::timestamp(w.end),
                        w.targets.join(","),
                        w.regions.join(","),
                        w.reason.clone(),
                    ]
                })
                .collect();
            let mut out = table::render(
                &[
                    "ID", "STATE", "START", "END", "TARGETS", "REGIONS", "REASON",
                ],
                &rows,
            );
            if rows.is_empty() {
                out.push_str("(no maintenance windows)\n");
            }
            emit(&out)?;
        }
        MaintenanceAction::End { state, id } => {
            let (_, dir) = light(&state)?;
            let store = Store::open_for_update(&dir)?;
            let w = store.end_window(id, now)?;
            let what = if w.start > now { "cancelled" } else { "ended" };
            emit(&format!("maintenance window #{id} {what}\n"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
