//! The daemon: config, scheduler, metrics and the HTTP server wired together, with reloads and a
//! graceful stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use arc_swap::ArcSwapOption;
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::incidents::service::Incidents;
use crate::metrics::Metrics;
use crate::probe::classify::FailureClass;
use crate::probe::{Outcome, ProbeContext};
use crate::scheduler::{OutcomeSink, Scheduler};
use crate::server::{self, AppState};

/// Sends each outcome to the metrics and the incident timeline, and writes one log line per
/// failed probe.
struct Reporter {
    metrics: Arc<Metrics>,
    incidents: Incidents,
}

impl OutcomeSink for Reporter {
    fn record(&self, o: Outcome) {
        self.metrics.observe(&o);
        self.incidents.observe(&o);
        log_outcome(&o);
    }
}

/// One line per failed probe (warn) with its class and phase; successes at debug.
pub fn log_outcome(o: &Outcome) {
    let t = &o.target;
    let total_ms = o.total.as_secs_f64() * 1000.0;
    match &o.failure {
        // mailprobe could not run the probe (no descriptors, a panic...): its own fault, at ERROR.
        Some(f) if f.class == FailureClass::ProberError => tracing::error!(
            target = %t.name,
            region = %t.region,
            protocol = t.protocol().as_str(),
            class = f.class.as_str(),
            reason = f.fault.map_or("internal", |r| r.as_str()),
            phase = f.phase.as_str(),
            total_ms = format_args!("{total_ms:.1}"),
            detail = %f.detail,
            "probe could not run: a fault of mailprobe itself, not of the target"
        ),
        Some(f) => tracing::warn!(
            target = %t.name,
            region = %t.region,
            protocol = t.protocol().as_str(),
            class = f.class.as_str(),
            phase = f.phase.as_str(),
            total_ms = format_args!("{total_ms:.1}"),
            detail = %f.detail,
            "probe failed"
        ),
        None => tracing::debug!(
            target = %t.name,
            region = %t.region,
            protocol = t.protocol().as_str(),
            slow = o.slow,
            total_ms = format_args!("{total_ms:.1}"),
            "probe succeeded"
        ),
    }
}

/// Runs the daemon on an already-bound `listener` until `shutdown` is cancelled.
///
/// The config is re-read from `config.path` on SIGHUP and on `POST /-/reload`; an invalid file
/// is refused, logged and exported while the old config keeps running.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    metrics.config_loaded(true);
    let (incidents, incidents_thread) =
        Incidents::start(&config.incidents, &config.owned_targets(), metrics.clone())
            .context("cannot open the incident history")?;
    let reporter = Arc::new(Reporter {
        metrics: metrics.clone(),
        incidents: incidents.clone(),
    });
    let mut scheduler = Scheduler::new(
        ProbeContext::new(),
        metrics.clone(),
        reporter,
        config.global.concurrency,
    );
    scheduler.apply(&config.owned_targets());

    let ready = Arc::new(AtomicBool::new(true));
    let (reload_tx, mut reload_rx) = mpsc::channel(4);
    let addr = listener.local_addr().ok();
    let http_shutdown = CancellationToken::new();
    let web = Arc::new(arc_swap::ArcSwapOption::new(config.global.web.clone()));
    let server = tokio::spawn(server::serve(
        listener,
        AppState {
            metrics: metrics.clone(),
            ready: ready.clone(),
            reload: reload_tx,
            web: web.clone(),
            incidents: incidents.clone(),
        },
        http_shutdown.clone(),
    ));
    tracing::info!(
        config = %config.path.display(),
        targets = scheduler.len(),
        shard = %config.global.shard.map_or("all".into(), |s| s.to_string()),
        listen = ?addr,
        tls = config.global.web.as_ref().is_some_and(|w| w.tls.is_some()),
        "mailprobe started"
    );
    // Config loaded, listener bound, scheduler running: ready.
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&status(&scheduler, &metrics)),
    ]);

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    let watchdog = sd_notify::watchdog_enabled();
    let mut watchdog_tick =
        tokio::time::interval(watchdog.map_or(std::time::Duration::from_secs(3600), |d| d / 2));
    let mut current = config;
    let mut reloading = Reloading {
        scheduler: &mut scheduler,
        metrics: &metrics,
        web: &web,
        incidents: &incidents,
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = hangup.recv() => {
                let _ = reloading.reload(&mut current);
            }
            Some(reply) = reload_rx.recv() => {
                let _ = reply.send(reloading.reload(&mut current));
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                // Fed from the loop that also drives reloads, and only while every target task
                // is alive: a wedged runtime or a dead scheduler gets restarted by systemd.
                if reloading.scheduler.alive() {
                    notify(&[
                        NotifyState::Watchdog,
                        NotifyState::Status(&status(reloading.scheduler, &metrics)),
                    ]);
                } else {
                    tracing::error!("a target task has died; no longer feeding the systemd watchdog");
                }
            }
        }
    }

    notify(&[NotifyState::Stopping]);
    tracing::info!(
        "stopping: no new probes; waiting for probes in flight (bounded by their deadlines)"
    );
    ready.store(false, Ordering::Release);
    scheduler.shutdown().await;
    // The last outcomes are in; save the timeline.
    incidents.stop();
    let _ = tokio::task::spawn_blocking(move || incidents_thread.join()).await;
    http_shutdown.cancel();
    server
        .await
        .context("HTTP server task failed")?
        .context("HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Sends `state` to systemd when run under it (`NOTIFY_SOCKET`); a no-op otherwise.
fn notify(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The one-line status systemd shows in `systemctl status`.
fn status(scheduler: &Scheduler, metrics: &Metrics) -> String {
    format!(
        "probing {} targets, {} failing",
        scheduler.len(),
        metrics.failing()
    )
}

/// What a reload changes.
struct Reloading<'a> {
    scheduler: &'a mut Scheduler,
    metrics: &'a Metrics,
    web: &'a ArcSwapOption<crate::webconfig::WebConfig>,
    incidents: &'a Incidents,
}

impl Reloading<'_> {
    /// Re-reads the config with systemd told RELOADING, then READY again (the old config keeps
    /// running when the new one is refused).
    fn reload(&mut self, current: &mut Config) -> Result<String, String> {
        let mut states = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        notify(&states);
        let result = reload(
            current,
            self.scheduler,
            self.metrics,
            self.web,
            self.incidents,
        );
        notify(&[
            NotifyState::Ready,
            NotifyState::Status(&status(self.scheduler, self.metrics)),
        ]);
        result
    }
}

/// Re-reads the config; applies it if valid, keeps the old one otherwise.
fn reload(
    current: &mut Config,
    scheduler: &mut Scheduler,
    metrics: &Metrics,
    web: &ArcSwapOption<crate::webconfig::WebConfig>,
    incidents: &Incidents,
) -> Result<String, String> {
    // A shard given on the command line holds for every reload too.
    let loaded = config::load(&current.path).and_then(|mut new| {
        if let Some(s) = current.shard_override {
            new.override_shard(s)?;
        }
        Ok(new)
    });
    match loaded {
        Ok(new) => {
            if new.global.listen != current.global.listen {
                tracing::warn!(old = %current.global.listen, new = %new.global.listen, "listen address changes need a restart; still listening on the old one");
            }
            if new.global.log_format != current.global.log_format
                || new.global.log_level != current.global.log_level
            {
                tracing::warn!("log settings change at the next restart");
            }
            if new.incidents != current.incidents {
                tracing::warn!("[incidents] changes take effect at the next restart");
            }
            scheduler.set_concurrency(new.global.concurrency);
            web.store(new.global.web.clone());
            let targets = new.owned_targets();
            let diff = scheduler.apply(&targets);
            incidents.set_targets(&targets);
            let summary = format!(
                "config reloaded: {} added, {} removed, {} changed, {} unchanged",
                diff.added.len(),
                diff.removed.len(),
                diff.changed.len(),
                diff.unchanged
            );
            tracing::info!(added = ?diff.added, removed = ?diff.removed, changed = ?diff.changed, unchanged = diff.unchanged, "config reloaded");
            new.log_warnings();
            metrics.config_loaded(true);
            *current = new;
            Ok(summary)
        }
        Err(e) => {
            tracing::error!(error = %e, "config reload refused; the old config keeps running");
            metrics.config_loaded(false);
            Err(e.to_string())
        }
    }
}
