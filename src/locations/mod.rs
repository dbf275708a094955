//! Many vantage points, one truth: an instance with `[global] source = "prometheus"` probes
//! nothing and reads every location's target health from a Prometheus-compatible query API
//! each `[prometheus] interval`, combines it ([`combine`]: the vote, the blind vantage point)
//! and feeds the result to the same incident service a probing daemon feeds
//! ([`Incidents::observe_combined`]): timeline, scopes, stages, hints, SQLite history, status
//! page, CLI and metrics work unchanged.
//!
//! A read that fails (API down, slow, too large an answer) changes no target: nothing opens or
//! resolves on missing data, and the status page shows the last good data as stale.

pub mod combine;
pub mod query;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::incidents::seen::Seen;
use crate::incidents::service::Incidents;
use crate::incidents::{Health, Known, Observation};
use crate::liveness::Liveness;
use crate::load::{self, Config, PrometheusSettings};
use crate::metrics::Metrics;
use crate::probe::Phase;
use crate::probe::classify::FailureClass;
use crate::scheduler::Diff;
use crate::server::{self, AppState, Reloaded};
use combine::{Vote, combine};
use query::{Client, QueryError, Read};

/// Turns reads into what the incident service takes: the targets known, one observation per
/// target and read, and the locations' view.
pub struct Producer {
    incidents: Incidents,
    vote: Vote,
    forget_after: Duration,
    /// Every target some location reported, with when it last did.
    known: BTreeMap<String, (Known, SystemTime)>,
    last: Arc<Seen>,
}

impl Producer {
    /// A producer feeding `incidents`, voting as `settings` say.
    pub fn new(incidents: Incidents, settings: &PrometheusSettings) -> Producer {
        Producer {
            incidents,
            vote: vote(settings),
            forget_after: settings.forget_after,
            known: BTreeMap::new(),
            last: Arc::new(Seen::default()),
        }
    }

    /// Takes one read's result at `now`.
    pub fn apply(&mut self, read: Result<Read, QueryError>, now: SystemTime) {
        let read = match read {
            Ok(r) => r,
            Err(e) => {
                if self.last.stale.is_none() {
                    tracing::warn!(
                        error = %e,
                        "cannot read target health from Prometheus; the status page shows the last data as stale and no incident opens or resolves until it can"
                    );
                } else {
                    tracing::debug!(error = %e, "still cannot read target health from Prometheus");
                }
                let mut stale = (*self.last).clone();
                stale.stale = Some(e.to_string());
                self.last = Arc::new(stale);
                self.incidents.set_seen(self.last.clone());
                return;
            }
        };
        if self.last.stale.is_some() {
            tracing::info!("reading target health from Prometheus again");
        }
        tracing::debug!(
            reports = read.reports.len(),
            skipped = read.skipped,
            took_ms = u64::try_from(read.took.as_millis()).unwrap_or(u64::MAX),
            bytes = read.bytes,
            "read target health from Prometheus"
        );
        let (combined, mut seen) = combine(&read.reports, &self.vote);
        let mut changed = false;
        for c in &combined {
            let k = Known {
                name: c.name.clone(),
                region: c.region.clone(),
                protocol: c.protocol,
                users: None,
            };
            match self.known.insert(c.name.clone(), (k.clone(), now)) {
                Some((old, _)) if old == k => {}
                _ => changed = true,
            }
        }
        let before = self.known.len();
        let forget_after = self.forget_after;
        self.known.retain(|_, (_, at)| {
            now.duration_since(*at)
                .is_ok_and(|quiet| quiet < forget_after)
                || *at >= now
        });
        changed |= self.known.len() != before;
        if changed {
            self.incidents
                .set_known(self.known.values().map(|(k, _)| k.clone()).collect());
        }
        for c in &combined {
            let obs = match (c.health, c.cause) {
                (None, _) => continue,
                (Some(Health::Up), _) => Observation::ok(&c.name, now, false),
                (Some(Health::Degraded), _) => Observation::ok(&c.name, now, true),
                (Some(Health::Down), Some((class, phase))) => {
                    Observation::failed(&c.name, now, class, phase)
                }
                // Down with no location saying why (its failure series not scraped yet):
                // said to be unknown, never guessed.
                (Some(Health::Down), None) => {
                    Observation::failed(&c.name, now, FailureClass::Unrecognized, Phase::Connect)
                }
            };
            self.incidents.observe_combined(obs);
        }
        for l in seen.locations.iter().filter(|l| l.blind) {
            let was = self
                .last
                .locations
                .iter()
                .any(|o| o.name == l.name && o.blind);
            if !was {
                tracing::warn!(
                    location = %l.name,
                    down = l.down,
                    targets = l.targets,
                    "a vantage point sees nearly everything down while the others do not: its own network, left out of the vote"
                );
            }
        }
        seen.fresh_at = Some(now);
        self.last = Arc::new(seen);
        self.incidents.set_seen(self.last.clone());
    }
}

fn vote(s: &PrometheusSettings) -> Vote {
    Vote {
        quorum: s.quorum,
        blind_share: s.blind_share,
        blind_min_targets: s.blind_min_targets,
    }
}

/// Runs a status instance on an already-bound `listener` until `shutdown` is cancelled: the
/// HTTP endpoints of the daemon (status page, APIs, metrics) over state read from Prometheus.
pub async fn run(
    config: Config,
    listener: TcpListener,
    public: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let settings = config
        .prometheus
        .clone()
        .context("source = \"prometheus\" without [prometheus]")?;
    let metrics = Arc::new(Metrics::new());
    metrics.set_options(config.metrics);
    metrics.config_loaded(true);
    let (incidents, incidents_thread) = Incidents::start(&config.incidents, &[], metrics.clone())
        .context("cannot open the incident history")?;
    let liveness = Arc::new(Liveness::new());
    liveness.checked(true);
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
        // Nothing is probed here: the admin view has no last probes to show.
        recent: Arc::new(Default::default()),
    };
    // The public page is what a status instance is for: served on `[status] listen` as by a
    // probing daemon.
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
        prometheus = %settings.url,
        interval_s = settings.interval.as_secs(),
        listen = %addr.map_or_else(|| "unknown".into(), |a| a.to_string()),
        "mailprobe started: reading target health from Prometheus, probing nothing"
    );
    let client = Client::new(settings.clone()).map_err(anyhow::Error::new)?;
    let producer = Producer::new(incidents.clone(), &settings);
    // Reads run on their own task: a slow query API never holds up reloads or readiness.
    let (settings_tx, settings_rx) = mpsc::channel(4);
    let reader_stop = CancellationToken::new();
    let reader = tokio::spawn(read_loop(
        client,
        producer,
        settings.interval,
        settings_rx,
        reader_stop.clone(),
    ));
    let mut check_tick = tokio::time::interval(crate::liveness::CHECK_EVERY);
    let mut current = config;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = check_tick.tick() => liveness.checked(!reader.is_finished()),
            Some(reply) = reload_rx.recv() => {
                let result = match load::load(&current.path) {
                    Ok(new) => match new.prometheus.clone() {
                        Some(s) => {
                            if new.incidents != current.incidents {
                                tracing::warn!("[incidents] changes take effect at the next restart");
                            }
                            let _ = settings_tx.send(s).await;
                            web.store(new.global.web.clone());
                            public_web.store(new.status.web.clone());
                            status_settings.store(Arc::new(new.status.clone()));
                            metrics.config_loaded(true);
                            tracing::info!("config reloaded");
                            current = new;
                            Ok(Reloaded(Diff::default()))
                        }
                        None => {
                            tracing::error!("config reload refused: switching the source to probing needs a restart");
                            metrics.config_loaded(false);
                            Ok(Reloaded(Diff::default()))
                        }
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "config reload refused; the old config keeps running");
                        metrics.config_loaded(false);
                        Err(e.into())
                    }
                };
                let _ = reply.send(result);
            }
        }
    }
    reader_stop.cancel();
    let _ = reader.await;
    liveness.stopping();
    incidents.stop();
    let _ = tokio::task::spawn_blocking(move || incidents_thread.join()).await;
    http_shutdown.cancel();
    if let Some(public) = public_server {
        public
            .await
            .context("public HTTP server task failed")?
            .context("public HTTP server failed")?;
    }
    server
        .await
        .context("HTTP server task failed")?
        .context("HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Reads every `interval` until `stop`, taking new settings from a reload.
async fn read_loop(
    mut client: Client,
    mut producer: Producer,
    interval: Duration,
    mut settings: mpsc::Receiver<Arc<PrometheusSettings>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                let read = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = client.read() => r,
                };
                producer.apply(read, SystemTime::now());
            }
            Some(s) = settings.recv() => match Client::new(s.clone()) {
                Ok(c) => {
                    client = c;
                    producer.vote = vote(&s);
                    producer.forget_after = s.forget_after;
                    if s.interval != tick.period() {
                        tick = tokio::time::interval(s.interval);
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                }
                Err(e) => tracing::error!(error = %e, "new [prometheus] settings refused; reading with the old ones"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::service::HealthObserver;
    use crate::load::{IncidentSettings, Policy};
    use crate::probe::Protocol;
    use combine::Report;

    struct Nobody;
    impl HealthObserver for Nobody {
        fn health(&self, _: &crate::incidents::TargetState) {}
        fn removed(&self, _: &str) {}
        fn incidents_open(&self, _: &BTreeMap<(String, String), i64>) {}
        fn maintenance(&self, _: &[&crate::incidents::TargetState]) {}
    }

    fn settings() -> PrometheusSettings {
        PrometheusSettings {
            url: "http://127.0.0.1:9".parse().unwrap(),
            auth: None,
            verifier: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            max_response_bytes: 1 << 20,
            location_label: "location".into(),
            selector: String::new(),
            quorum: None,
            blind_share: 0.9,
            blind_min_targets: 2,
            forget_after: Duration::from_secs(3600),
        }
    }

    fn read(health: Health) -> Result<Read, QueryError> {
        let reports = ["fra", "nyc"]
            .iter()
            .map(|l| Report {
                location: l.to_string(),
                target: "imap-eu".into(),
                region: "eu".into(),
                protocol: Protocol::Imap,
                health,
                failure: (health == Health::Down)
                    .then_some((FailureClass::ConnectRefused, Phase::Connect)),
            })
            .collect();
        Ok(Read {
            reports,
            skipped: 0,
            took: Duration::ZERO,
            bytes: 0,
        })
    }

    /// A failed read is stale data: the page says so, and no target changes, so nothing opens
    /// or resolves; the next good read carries on.
    #[tokio::test]
    async fn a_failed_read_changes_nothing_and_is_stale() {
        let dir = std::env::temp_dir().join(format!("mailprobe-producer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let policy = Policy {
            down_after: 1,
            up_after: 1,
        };
        let (incidents, thread) = Incidents::start(
            &IncidentSettings {
                state_dir: dir.clone(),
                policy,
                retention: Duration::from_secs(86_400),
            },
            &[],
            Arc::new(Nobody),
        )
        .unwrap();
        let mut p = Producer::new(incidents.clone(), &settings());
        let t0 = SystemTime::now();
        p.apply(read(Health::Down), t0);
        incidents.flush().await;
        let s = incidents.snapshot();
        assert_eq!(s.targets[0].health, Health::Down);
        assert_eq!(s.open.len(), 1);
        let seen = s.seen.clone().unwrap();
        assert_eq!(seen.stale, None);
        assert_eq!(seen.targets["imap-eu"].down.len(), 2);

        for i in 1..4 {
            p.apply(
                Err(QueryError::Timeout(Duration::from_secs(1))),
                t0 + Duration::from_secs(i),
            );
        }
        incidents.flush().await;
        let s = incidents.snapshot();
        assert_eq!(
            s.targets[0].health,
            Health::Down,
            "no data is not a recovery"
        );
        assert_eq!(s.open.len(), 1);
        let seen = s.seen.clone().unwrap();
        assert!(seen.stale.as_deref().unwrap().contains("did not answer"));
        assert_eq!(seen.fresh_at, Some(t0), "the last good read's time");

        p.apply(read(Health::Up), t0 + Duration::from_secs(5));
        incidents.flush().await;
        let s = incidents.snapshot();
        assert_eq!(s.targets[0].health, Health::Up);
        assert!(s.open.is_empty());
        assert_eq!(s.seen.clone().unwrap().stale, None);
        incidents.stop();
        thread.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
