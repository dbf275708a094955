//! The daemon: config, scheduler, metrics and the HTTP server wired together, with reloads and a
//! graceful stop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwapOption;
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::incidents::TargetState;
use crate::incidents::providers::Poll;
use crate::incidents::service::{HealthObserver, Incidents};
use crate::liveness::{self, Liveness};
use crate::load::{self, Config};
use crate::metrics::Metrics;
use crate::probe::classify::ProberFault;
use crate::probe::{Outcome, ProbeContext};
use crate::provider::feed::FeedError;
use crate::provider::poller::{self, FeedSink};
use crate::provider::{Issue, ProviderSpec};
use crate::scheduler::{Event, Observer, OutcomeSink, Probes, Scheduler};
use crate::server::{self, AppState, ReloadError, Reloaded};
use crate::throttle::Throttle;

mod logmem;

pub use logmem::{Change, LogMemory, REMIND_EVERY, log_outcome};

/// Sends each outcome to the metrics and the incident timeline, tells readiness that probes
/// are finishing, and logs what changed for the target.
struct Reporter {
    metrics: Arc<Metrics>,
    incidents: Incidents,
    liveness: Arc<Liveness>,
    said: LogMemory,
    recent: Arc<crate::status::recent::RecentProbes>,
}

impl OutcomeSink for Reporter {
    fn record(&self, o: Outcome) {
        self.liveness.probe_finished();
        self.metrics.observe(&o);
        self.incidents.observe(&o);
        self.recent.record(&o);
        log_outcome(&o, &self.said.note(&o));
    }
}

/// The incident service's conclusions become series: the daemon hands them from one to the
/// other, so that neither knows the other.
impl HealthObserver for Metrics {
    fn health(&self, state: &TargetState) {
        self.target_health(state);
    }
    fn removed(&self, target: &str) {
        self.forget_target_health(target);
    }
    fn incidents_open(&self, counts: &std::collections::BTreeMap<(String, String), i64>) {
        self.open_incidents(counts);
    }
    fn maintenance(&self, targets: &[&TargetState]) {
        self.set_maintenance(targets);
    }

    fn provider_first_post(&self, provider: &str, delay: Option<Duration>) {
        Metrics::provider_first_post(self, provider, delay);
    }
}

/// Each poll of a provider's feed goes to the metrics, the log (a change of the feed's state
/// at `warn`/`info`, repeats at `debug`) and the incident service; a feed down opens no
/// incident.
struct ProviderFeeds {
    metrics: Arc<Metrics>,
    incidents: Incidents,
    /// Whether each feed was readable at its last poll, as the log last said.
    up: Mutex<HashMap<String, bool>>,
}

impl FeedSink for ProviderFeeds {
    fn polled(&self, spec: &ProviderSpec, result: Result<Vec<Issue>, FeedError>, took: Duration) {
        self.metrics
            .provider_polled(&spec.name, result.as_ref().map(Vec::as_slice), took);
        let was = crate::sync::lock(&self.up).insert(spec.name.clone(), result.is_ok());
        match (&result, was) {
            (Err(e), Some(true) | None) => tracing::warn!(
                provider = %spec.name,
                kind = spec.kind.as_str(),
                reason = e.reason(),
                error = %e,
                "provider status feed cannot be read (not a mail outage: no incident is opened)"
            ),
            (Err(e), Some(false)) => {
                tracing::debug!(provider = %spec.name, error = %e, "provider status feed still unreadable")
            }
            (Ok(_), Some(false)) => {
                tracing::info!(provider = %spec.name, "provider status feed readable again")
            }
            (Ok(issues), _) => tracing::debug!(
                provider = %spec.name,
                open = issues.iter().filter(|i| i.is_open()).count(),
                "provider status feed read"
            ),
        }
        self.incidents.provider_polled(Poll {
            provider: spec.name.clone(),
            kind: spec.kind,
            at: std::time::SystemTime::now(),
            result: result.map_err(|e| e.to_string()),
        });
    }
}

/// The provider pollers, restarted when a reload changes the `[[provider]]`s.
struct Feeds {
    stop: CancellationToken,
    sink: Arc<ProviderFeeds>,
    tokens: Arc<crate::oauth2::TokenCache>,
    /// What the running pollers were started with.
    running: Vec<String>,
}

impl Feeds {
    /// What defines a poller, to tell whether a reload changed it.
    fn identity(specs: &[Arc<ProviderSpec>]) -> Vec<String> {
        specs
            .iter()
            .map(|p| {
                format!(
                    "{}|{}|{}|{:?}|{:?}|{:?}|{}",
                    p.name,
                    p.kind.as_str(),
                    p.url,
                    p.services,
                    p.interval,
                    p.timeout,
                    p.oauth2.as_ref().map_or("", |o| o.key.as_str())
                )
            })
            .collect()
    }

    fn start(specs: &[Arc<ProviderSpec>], sink: Arc<ProviderFeeds>) -> Feeds {
        let names: Vec<&str> = specs.iter().map(|p| p.name.as_str()).collect();
        sink.metrics.set_providers(&names);
        let tokens = Arc::new(crate::oauth2::TokenCache::default());
        let stop = CancellationToken::new();
        poller::spawn(specs, tokens.clone(), sink.clone(), stop.clone());
        Feeds {
            stop,
            sink,
            tokens,
            running: Self::identity(specs),
        }
    }

    fn apply(&mut self, specs: &[Arc<ProviderSpec>]) {
        if Self::identity(specs) == self.running {
            return;
        }
        self.stop.cancel();
        let names: Vec<&str> = specs.iter().map(|p| p.name.as_str()).collect();
        self.sink.metrics.set_providers(&names);
        self.stop = CancellationToken::new();
        poller::spawn(
            specs,
            self.tokens.clone(),
            self.sink.clone(),
            self.stop.clone(),
        );
        self.running = Self::identity(specs);
    }
}

/// What the scheduler reports: outcomes go on to `sink` (the [`Reporter`], wrapped by tests),
/// the scheduler's own measurements and doings become metrics and log lines.
struct Observed {
    metrics: Arc<Metrics>,
    sink: Arc<dyn OutcomeSink>,
    overruns: Throttle,
}

impl OutcomeSink for Observed {
    fn record(&self, o: Outcome) {
        self.sink.record(o);
    }
}

impl Observer for Observed {
    fn event(&self, event: Event) {
        let m = &self.metrics;
        match event {
            Event::Registered(t) => m.register_target(&t),
            Event::Changed { old, new } => {
                if old.region != new.region || old.protocol() != new.protocol() {
                    m.unregister_target(&old.name);
                    m.register_target(&new);
                }
            }
            Event::Removed(t) => m.unregister_target(&t.name),
            Event::Started { delay, .. } => {
                m.schedule_delay(delay);
                m.in_flight().inc();
            }
            Event::Finished(_) => m.in_flight().dec(),
            Event::Skipped { target, missed } => {
                m.skipped(&target, missed);
                // A slow fleet overruns for every target at once: one line per period, the
                // rest counted in it (and each in mailprobe_probes_skipped_total).
                if let Some(others) = self.overruns.admit() {
                    tracing::warn!(
                        target = %target.name,
                        missed,
                        others_since_last_line = others,
                        "probe overran its interval (or waited for a concurrency slot); skipped planned starts"
                    );
                }
            }
            Event::RecordPanicked(t) => {
                let protocol = t.protocol();
                m.prober_fault(protocol, ProberFault::Panic);
                tracing::error!(
                    target = %t.name,
                    protocol = protocol.as_str(),
                    "recording a probe's outcome panicked (a bug in mailprobe); probing goes on"
                );
            }
            Event::Abandoned { in_flight } => tracing::warn!(
                in_flight,
                "probes still running after the shutdown grace; abandoning them"
            ),
        }
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
    let listeners = Listeners {
        private: listener,
        public: None,
    };
    run_all(config, listeners, shutdown, wrap).await
}

/// The daemon's bound listeners: the private one (metrics, health, admin view, reloads) and,
/// when `[status] listen` is set, the public one serving the status page alone.
pub struct Listeners {
    /// `[global] listen`.
    pub private: TcpListener,
    /// `[status] listen`.
    pub public: Option<TcpListener>,
}

/// [`run`] on both listeners.
pub async fn run_listeners(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_all(config, listeners, shutdown, Box::new(|sink| sink)).await
}

async fn run_all(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    wrap: WrapSink,
) -> anyhow::Result<()> {
    let Listeners {
        private: listener,
        public,
    } = listeners;
    if config.global.source == load::Source::Prometheus {
        return crate::locations::run(config, listener, public, shutdown).await;
    }
    let metrics = Arc::new(Metrics::new());
    metrics.set_options(config.metrics);
    metrics.config_loaded(true);
    let (incidents, incidents_thread) =
        Incidents::start(&config.incidents, &config.owned_targets(), metrics.clone())
            .context("cannot open the incident history")?;
    let mut feeds = Feeds::start(
        &config.providers,
        Arc::new(ProviderFeeds {
            metrics: metrics.clone(),
            incidents: incidents.clone(),
            up: Mutex::default(),
        }),
    );
    incidents.set_config_maintenance(&config.maintenance);
    let liveness = Arc::new(Liveness::new());
    let reporter = Arc::new(Reporter {
        metrics: metrics.clone(),
        incidents: incidents.clone(),
        liveness: liveness.clone(),
        said: LogMemory::default(),
        recent: Arc::new(Default::default()),
    });
    let observed = Arc::new(Observed {
        metrics: metrics.clone(),
        sink: wrap(reporter.clone()),
        overruns: Throttle::new(Duration::from_secs(10)),
    });
    let mut scheduler = Scheduler::new(
        Arc::new(Probes(ProbeContext::new())),
        observed,
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
    let public_web = Arc::new(arc_swap::ArcSwapOption::new(config.status.web.clone()));
    let status_settings = Arc::new(arc_swap::ArcSwap::from_pointee(config.status.clone()));
    let state = AppState {
        metrics: metrics.clone(),
        ready: liveness.clone(),
        reload: reload_tx,
        web: web.clone(),
        incidents: incidents.clone(),
        status: status_settings.clone(),
        recent: reporter.recent.clone(),
    };
    let public_addr = public.as_ref().and_then(|l| l.local_addr().ok());
    let public_server = public.map(|listener| {
        let state = AppState {
            web: public_web.clone(),
            ..state.clone()
        };
        tokio::spawn(server::serve_router(
            listener,
            server::public_router(state),
            public_web.clone(),
            http_shutdown.clone(),
        ))
    });
    let server = tokio::spawn(server::serve(listener, state, http_shutdown.clone()));
    tracing::info!(
        config = %config.path.display(),
        targets = scheduler.len(),
        shard = %config.global.shard.map_or("all".into(), |s| s.to_string()),
        listen = %addr.map_or_else(|| "unknown".into(), |a| a.to_string()),
        status_listen = %public_addr.map_or_else(|| "none".into(), |a| a.to_string()),
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
        said: &reporter.said,
        feeds: &mut feeds,
        public_web: &public_web,
        status: &status_settings,
        recent: &reporter.recent,
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
    feeds.stop.cancel();
    // The last outcomes are in; save the timeline.
    incidents.stop();
    let _ = tokio::task::spawn_blocking(move || incidents_thread.join()).await;
    http_shutdown.cancel();
    server
        .await
        .context("HTTP server task failed")?
        .context("HTTP server failed")?;
    if let Some(public) = public_server {
        public
            .await
            .context("public HTTP server task failed")?
            .context("public HTTP server failed")?;
    }
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
    let n = scheduler.len();
    format!(
        "probing {n} target{}, {} failing",
        if n == 1 { "" } else { "s" },
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
    said: &'a LogMemory,
    feeds: &'a mut Feeds,
    public_web: &'a ArcSwapOption<crate::webconfig::WebConfig>,
    status: &'a arc_swap::ArcSwap<crate::load::StatusSettings>,
    recent: &'a crate::status::recent::RecentProbes,
}

impl Reloading<'_> {
    /// Re-reads the config with systemd told RELOADING, then READY again (the old config keeps
    /// running when the new one is refused).
    fn reload(&mut self, current: &mut Config) -> Result<Reloaded, ReloadError> {
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
fn reload(current: &mut Config, r: &mut Reloading<'_>) -> Result<Reloaded, ReloadError> {
    let (scheduler, metrics, web, incidents) = (&mut *r.scheduler, r.metrics, r.web, r.incidents);
    // A shard given on the command line holds for every reload too.
    let loaded = load::load(&current.path).and_then(|mut new| {
        if let Some(s) = current.shard_override {
            new.override_shard(s)?;
        }
        Ok(new)
    });
    match loaded {
        Ok(mut new) => {
            new.share_unchanged(current);
            if new.global.listen != current.global.listen {
                tracing::warn!(old = %current.global.listen, new = %new.global.listen, "listen address changes need a restart; still listening on the old one");
            }
            if new.status.listen != current.status.listen {
                tracing::warn!(
                    "[status] listen changes need a restart; the public page stays where it was"
                );
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
            metrics.set_options(new.metrics);
            web.store(new.global.web.clone());
            r.public_web.store(new.status.web.clone());
            r.status.store(Arc::new(new.status.clone()));
            let targets = new.owned_targets();
            let diff = scheduler.apply(&targets);
            incidents.set_targets(&targets);
            r.feeds.apply(&new.providers);
            incidents.set_config_maintenance(&new.maintenance);
            r.liveness.set_targets(&targets);
            r.said.forget(&diff.removed);
            r.recent.forget(&diff.removed);
            tracing::info!(
                added = %diff.added.join(","),
                removed = %diff.removed.join(","),
                changed = %diff.changed.join(","),
                unchanged = diff.unchanged,
                "config reloaded"
            );
            new.log_warnings();
            metrics.config_loaded(true);
            *current = new;
            Ok(Reloaded(diff))
        }
        Err(e) => {
            tracing::error!(error = %e, "config reload refused; the old config keeps running");
            metrics.config_loaded(false);
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests;
