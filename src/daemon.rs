//! The daemon: config, scheduler, metrics and the HTTP server wired together, with reloads and a
//! graceful stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwapOption;
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::incidents::service::Incidents;
use crate::liveness::{self, Liveness};
use crate::metrics::Metrics;
use crate::probe::{Outcome, ProbeContext};
use crate::scheduler::{OutcomeSink, Scheduler};
use crate::server::{self, AppState};

/// Sends each outcome to the metrics and the incident timeline, tells readiness that probes
/// are finishing, and writes one log line per failed probe.
struct Reporter {
    metrics: Arc<Metrics>,
    incidents: Incidents,
    liveness: Arc<Liveness>,
}

impl OutcomeSink for Reporter {
    fn record(&self, o: Outcome) {
        self.liveness.probe_finished();
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

/// Wraps the sink outcomes go to. The identity in production; tests wrap it to stall or kill
/// target tasks and see readiness and the watchdog notice.
pub type WrapSink = Box<dyn FnOnce(Arc<dyn OutcomeSink>) -> Arc<dyn OutcomeSink> + Send>;

/// Runs the daemon on an already-bound `listener` until `shutdown` is cancelled.
///
/// The config is re-read from `config.path` on SIGHUP and on `POST /-/reload`; an invalid file
/// is refused, logged and exported while the old config keeps running.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with(config, listener, shutdown, Box::new(|sink| sink)).await
}

/// [`run`], with the sink the scheduler reports to wrapped by `wrap` (a test seam).
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    wrap: WrapSink,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    metrics.config_loaded(true);
    let (incidents, incidents_thread) =
        Incidents::start(&config.incidents, &config.owned_targets(), metrics.clone())
            .context("cannot open the incident history")?;
    let liveness = Arc::new(Liveness::new());
    let reporter = Arc::new(Reporter {
        metrics: metrics.clone(),
        incidents: incidents.clone(),
        liveness: liveness.clone(),
    });
    let mut scheduler = Scheduler::new(
        ProbeContext::new(),
        metrics.clone(),
        wrap(reporter),
        config.global.concurrency,
    );
    let targets = config.owned_targets();
    scheduler.apply(&targets);
    liveness.set_targets(&targets);
    liveness.checked(scheduler.alive());
    let (reload_tx, mut reload_rx) = mpsc::channel(4);
    let addr = listener.local_addr().ok();
    let http_shutdown = CancellationToken::new();
    let web = Arc::new(arc_swap::ArcSwapOption::new(config.global.web.clone()));
    let server = tokio::spawn(server::serve(
        listener,
        AppState {
            metrics: metrics.clone(),
            ready: liveness.clone(),
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
        tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
    let mut check_tick = tokio::time::interval(liveness::CHECK_EVERY);
    let mut ready = Ok(());
    let mut current = config;
    let mut reloading = Reloading {
        scheduler: &mut scheduler,
        metrics: &metrics,
        web: &web,
        incidents: &incidents,
        liveness: &liveness,
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
            _ = check_tick.tick() => {
                reloading.liveness.checked(reloading.scheduler.alive());
                let now = reloading.liveness.check();
                match (&ready, &now) {
                    (Ok(()), Err(why)) => tracing::error!(
                        reason = %why,
                        "not ready: targets are not being probed; /-/ready answers 503 and the systemd watchdog is not fed"
                    ),
                    (Err(_), Ok(())) => tracing::info!("ready again: probes are finishing"),
                    _ => {}
                }
                ready = now;
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                // Fed from the loop that also drives reloads, and only while targets are being
                // probed: a wedged runtime, a dead or a stuck scheduler gets restarted by systemd.
                if reloading.liveness.check().is_ok() {
                    notify(&[
                        NotifyState::Watchdog,
                        NotifyState::Status(&status(reloading.scheduler, &metrics)),
                    ]);
                }
            }
        }
    }

    notify(&[NotifyState::Stopping]);
    tracing::info!(
        "stopping: no new probes; waiting for probes in flight (bounded by their deadlines)"
    );
    liveness.stopping();
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
    liveness: &'a Liveness,
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
        let result = reload(current, self);
        notify(&[
            NotifyState::Ready,
            NotifyState::Status(&status(self.scheduler, self.metrics)),
        ]);
        result
    }
}

/// Re-reads the config; applies it if valid, keeps the old one otherwise.
fn reload(current: &mut Config, r: &mut Reloading<'_>) -> Result<String, String> {
    let (scheduler, metrics, web, incidents) = (&mut *r.scheduler, r.metrics, r.web, r.incidents);
    match config::load(&current.path) {
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
            r.liveness.set_targets(&targets);
            let summary = format!(
                "config reloaded: {} added, {} removed, {} changed, {} unchanged",
                diff.added.len(),
                diff.removed.len(),
                diff.changed.len(),
                diff.unchanged
            );
            tracing::info!(added = ?diff.added, removed = ?diff.removed, changed = ?diff.changed, unchanged = diff.unchanged, "config reloaded");
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
