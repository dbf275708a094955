//! The incident service: one thread owns the engine and the database, fed by probe outcomes,
//! ticking every few seconds, saving each tick in one transaction and publishing a snapshot for
//! the status page. Probes never wait for it: outcomes go through a bounded channel and are
//! dropped (and counted in the log) if it is ever full. What each tick concluded goes to a
//! [`HealthObserver`] the daemon provides (it passes it on to the metrics).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use super::engine::{Engine, Entry, Incident, Known, Scope, Summary};
use super::maintenance::{Window, current_and_upcoming};
use super::providers::{Book, Poll, ProviderView};
use super::seen::Seen;
use super::state::{Observation, TargetState};
use super::store::{Store, StoreError, UpdateError};
use crate::load::IncidentSettings;
use crate::probe::Outcome;
use crate::probe::Target;
use crate::probe::classify::FailureClass;
use crate::throttle::Throttle;

/// How often the timeline is brought up to date and saved.
pub const TICK: Duration = Duration::from_secs(5);
/// How often old incidents are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Outcomes queued for the service at most.
const QUEUE: usize = 16 * 1024;

/// What the status page shows: every target's state and the open incidents, as of the last
/// tick.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// When it was taken.
    pub at: Option<SystemTime>,
    /// Every configured target.
    pub targets: Vec<TargetState>,
    /// Open incidents with how they stand now.
    pub open: Vec<(Incident, Summary)>,
    /// The providers' feeds and issues, and which incident each issue is beside.
    pub providers: ProviderView,
    /// Maintenance windows in force or still to come, soonest first (config and database).
    pub maintenance: Vec<Window>,
    /// Targets under a maintenance window now.
    pub under_maintenance: BTreeSet<String>,
    /// Which locations saw what, when the state is read from Prometheus across locations.
    pub seen: Option<Arc<Seen>>,
}

enum Msg {
    Observe(Observation),
    Targets(Vec<Arc<Target>>),
    Provider(Poll),
    Maintenance(Vec<Window>),
    Known(Vec<Known>),
    Seen(Arc<Seen>),
    Flush(tokio::sync::oneshot::Sender<()>),
    Stop,
}

/// Who hears what each tick concluded, so that the incident service knows nothing of who
/// listens (the daemon passes it on to the metrics).
pub trait HealthObserver: Send + Sync {
    /// A target's health as of this tick.
    fn health(&self, state: &TargetState);
    /// A target left the config.
    fn removed(&self, target: &str);
    /// Open incidents by `(scope, region)`; every scope × configured region is present, at 0
    /// when nothing is open.
    fn incidents_open(&self, counts: &BTreeMap<(String, String), i64>);
    /// An incident was put beside `provider`'s issue, which the provider first posted `delay`
    /// after the incident opened (`None`: before).
    fn provider_first_post(&self, _provider: &str, _delay: Option<Duration>) {}
    /// The targets under a maintenance window now (all of them, every tick).
    fn maintenance(&self, targets: &[&TargetState]);
}

/// A handle to the running service; cheap to clone.
#[derive(Clone)]
pub struct Incidents {
    tx: SyncSender<Msg>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    dir: PathBuf,
    /// One "behind" line per period: when the queue is full, it is full for every probe.
    behind: Arc<Throttle>,
}

impl Incidents {
    /// Opens the store in `settings.state_dir`, resumes its history and starts the thread.
    pub fn start(
        settings: &IncidentSettings,
        targets: &[Arc<Target>],
        observer: Arc<dyn HealthObserver>,
    ) -> Result<(Incidents, std::thread::JoinHandle<()>), StoreError> {
        let mut store = Store::open(&settings.state_dir)?;
        let (states, open, next_id) = store.load()?;
        let pruned = store.prune(SystemTime::now() - settings.retention)?;
        if pruned > 0 {
            tracing::info!(pruned, "removed incidents older than the retention period");
        }
        let mut engine = Engine::new(settings.policy, states, open, next_id);
        engine.set_targets(targets, SystemTime::now());
        let mut book = Book::load(&store, SystemTime::now())?;
        book.set_targets(targets);
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let worker = Worker {
            engine,
            store,
            book,
            polled: false,
            observer,
            snapshot: snapshot.clone(),
            retention: settings.retention,
            rollup: Default::default(),
            config_windows: Vec::new(),
            stored_windows: Vec::new(),
            seen: None,
        };
        let thread = std::thread::Builder::new()
            .name("incidents".into())
            .spawn(move || worker.run(rx))
            .map_err(|source| StoreError::Dir {
                path: settings.state_dir.clone(),
                source,
            })?;
        let handle = Incidents {
            tx,
            snapshot,
            dir: settings.state_dir.clone(),
            behind: Arc::new(Throttle::new(Duration::from_secs(10))),
        };
        // A first tick at once: the status page and metrics show the resumed state right away.
        handle.send(Msg::Flush(tokio::sync::oneshot::channel().0));
        Ok((handle, thread))
    }

    fn send(&self, msg: Msg) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if let Some(others) = self.behind.admit() {
                    tracing::warn!(
                        others_since_last_line = others,
                        "incident service is behind; a probe result was not recorded"
                    )
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Records one probe outcome (never blocks the probe).
    pub fn observe(&self, o: &Outcome) {
        let at = o.started_at + o.total;
        let obs = match &o.failure {
            None => Observation::ok(&o.target.name, at, o.slow),
            // mailprobe could not run the probe: that says nothing about the target, whose
            // health stays what its last real probe made it.
            Some(f) if f.class == FailureClass::ProberError => return,
            // A mail API rate-limited the probe: the target was not observed either.
            Some(f) if f.class == FailureClass::Throttled => return,
            Some(f) => Observation::failed(&o.target.name, at, f.class, f.phase),
        };
        self.send(Msg::Observe(obs));
    }

    /// Records one observation made elsewhere: the state the locations agree on, read from
    /// Prometheus (the second producer beside [`Incidents::observe`]).
    pub fn observe_combined(&self, obs: Observation) {
        self.send(Msg::Observe(obs));
    }

    /// The targets read from Prometheus changed: like [`Incidents::set_targets`], without a
    /// config behind them.
    pub fn set_known(&self, targets: Vec<Known>) {
        let _ = self.tx.send(Msg::Known(targets));
    }

    /// What the locations saw at the last read (or that the read failed), shown with the
    /// next snapshot.
    pub fn set_seen(&self, seen: Arc<Seen>) {
        let _ = self.tx.send(Msg::Seen(seen));
    }

    /// The configured targets changed (a reload).
    pub fn set_targets(&self, targets: &[Arc<Target>]) {
        let _ = self.tx.send(Msg::Targets(targets.to_vec()));
    }

    /// One poll of a provider's feed (never blocks the poller).
    pub fn provider_polled(&self, poll: Poll) {
        self.send(Msg::Provider(poll));
    }

    /// The config's `[[maintenance]]` windows (at start and on reload); those added by
    /// `mailprobe maintenance add` are read from the database at every tick.
    pub fn set_config_maintenance(&self, windows: &[Window]) {
        let _ = self.tx.send(Msg::Maintenance(windows.to_vec()));
    }

    /// Waits until everything sent so far is processed, ticked and saved.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Saves and stops the thread.
    pub fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
    }

    /// The state as of the last tick.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The database's identity and its latest `limit` timeline entries (of incidents touching
    /// `region`, when given), newest first, with their row ids: what the Atom feed shows.
    pub async fn latest(
        &self,
        region: Option<String>,
        limit: usize,
    ) -> Result<(String, Vec<(i64, Entry)>), StoreError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let store = Store::open_read_only(&dir)?;
            Ok((
                store.instance()?,
                store.latest_entries(region.as_deref(), limit)?,
            ))
        })
        .await
        .unwrap_or_else(|_| Ok((String::new(), Vec::new())))
    }

    /// Adds a note by a person to incident `id` (checked by the caller), as `mailprobe
    /// incidents note` does: a row of its timeline, shown on every surface.
    pub async fn add_note(&self, id: i64, text: String) -> Result<Entry, UpdateError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            Store::open_for_update(&dir)?.add_note(id, SystemTime::now(), &text)
        })
        .await
        .unwrap_or_else(|e| {
            Err(UpdateError::Store(StoreError::Dir {
                path: self.dir.clone(),
                source: std::io::Error::other(e.to_string()),
            }))
        })
    }

    /// Incidents open now or active since `since`, with their timelines, read from the database.
    pub async fn history(
        &self,
        since: SystemTime,
    ) -> Result<Vec<(Incident, Vec<Entry>)>, StoreError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || Store::open_read_only(&dir)?.history(since))
            .await
            .unwrap_or_else(|_| Ok(Vec::new()))
    }
}

impl Incidents {
    /// Per-day rollups of the last `days` days (today included), read from the database.
    pub async fn uptime(&self, days: i64) -> Result<Vec<super::uptime::DayRow>, StoreError> {
        let dir = self.dir.clone();
        let from = super::uptime::day_of(SystemTime::now()) - days + 1;
        tokio::task::spawn_blocking(move || Store::open_read_only(&dir)?.uptime(from))
            .await
            .unwrap_or_else(|_| Ok(Vec::new()))
    }

    /// One incident with its timeline, by id, read from the database.
    pub async fn incident(&self, id: i64) -> Result<Option<(Incident, Vec<Entry>)>, StoreError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || Store::open_read_only(&dir)?.incident(id))
            .await
            .unwrap_or(Ok(None))
    }
}

struct Worker {
    engine: Engine,
    store: Store,
    /// The providers' issues.
    book: Book,
    /// A provider poll came since the last tick (its issues may match incidents).
    polled: bool,
    observer: Arc<dyn HealthObserver>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    retention: Duration,
    rollup: super::uptime::Rollup,
    config_windows: Vec<Window>,
    stored_windows: Vec<Window>,
    seen: Option<Arc<Seen>>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut next_tick = Instant::now() + TICK;
        let mut next_prune = Instant::now() + PRUNE_EVERY;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Msg::Observe(obs)) => {
                    self.engine.observe(&obs);
                    continue;
                }
                Ok(Msg::Targets(t)) => {
                    self.engine.set_targets(&t, SystemTime::now());
                    self.book.set_targets(&t);
                    continue;
                }
                Ok(Msg::Provider(poll)) => {
                    if let Err(e) = self.book.poll(&mut self.store, poll) {
                        tracing::error!(error = %e, "cannot save provider issues");
                    }
                    self.polled = true;
                    continue;
                }
                // New windows show at once (metrics, page), not at the next tick.
                Ok(Msg::Maintenance(w)) => {
                    self.config_windows = w;
                    self.tick();
                }
                Ok(Msg::Known(t)) => {
                    self.engine.set_known(&t, SystemTime::now());
                    continue;
                }
                Ok(Msg::Seen(seen)) => {
                    self.seen = Some(seen);
                    continue;
                }
                Ok(Msg::Flush(done)) => {
                    self.tick();
                    let _ = done.send(());
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.tick();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.tick();
                    next_tick = Instant::now() + TICK;
                }
            }
            if Instant::now() >= next_prune {
                next_prune = Instant::now() + PRUNE_EVERY;
                match self.store.prune(SystemTime::now() - self.retention) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        pruned = n,
                        "removed incidents older than the retention period"
                    ),
                    Err(e) => tracing::error!(error = %e, "cannot prune incident history"),
                }
                if let Err(e) = self
                    .store
                    .prune_provider_issues(SystemTime::now() - self.retention)
                {
                    tracing::error!(error = %e, "cannot prune provider issues");
                }
            }
        }
    }

    /// The config's windows and the database's, in force or to come at `now`.
    fn windows(&mut self, now: SystemTime) -> Vec<Window> {
        match self.store.windows(now) {
            Ok(stored) => self.stored_windows = stored,
            // The windows read last stay in force until a read succeeds again: a busy
            // database must not open incidents for planned work.
            Err(e) => tracing::error!(error = %e, "cannot read maintenance windows"),
        }
        let mut all = self.config_windows.clone();
        all.extend(self.stored_windows.iter().cloned());
        all
    }

    fn tick(&mut self) {
        let now = SystemTime::now();
        let windows = self.windows(now);
        self.engine.set_maintenance(&windows, now);
        let tick = self.engine.tick();
        for e in &tick.entries {
            // Opened or changed is a warning (`journalctl -p warning` finds it); resolved is not.
            macro_rules! log_entry {
                ($level:ident) => {
                    tracing::$level!(
                        incident = e.incident,
                        event = %e.event,
                        scope = %e.summary.scope_text(),
                        users = %e.summary.users,
                        cause = %e.summary.cause_text(),
                        status = %e.status,
                        "incident"
                    )
                };
            }
            if e.summary.stage == super::engine::Stage::Resolved {
                log_entry!(info);
            } else {
                log_entry!(warn);
            }
        }
        if let Err(e) = self.store.save(&tick) {
            // The history on disk falls behind; the engine keeps the truth in memory and the
            // next successful save carries its current state.
            tracing::error!(error = %e, "cannot save incident history");
        }
        let providers = self.providers(!tick.incidents.is_empty());
        let rows = self.rollup.advance(
            SystemTime::now(),
            self.engine.states(),
            self.engine.under_maintenance(),
            self.engine.open_incidents(),
        );
        if let Err(e) = self.store.add_uptime(&rows) {
            tracing::error!(error = %e, "cannot save uptime rollups");
        }
        for s in &tick.states {
            self.observer.health(s);
        }
        for name in &tick.removed {
            self.observer.removed(name);
        }
        let open: Vec<(Incident, Summary)> = self
            .engine
            .open_incidents()
            .iter()
            .map(|i| (i.clone(), self.engine.summarize(i)))
            .collect();
        // Every scope × configured region exists from the start, at 0 when nothing is open.
        let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
        for t in self.engine.states() {
            for scope in [Scope::Target, Scope::Region, Scope::Global] {
                counts.insert((scope.as_str().into(), t.region.clone()), 0);
            }
        }
        for (_, s) in &open {
            for r in &s.regions {
                *counts
                    .entry((s.scope.as_str().into(), r.clone()))
                    .or_default() += 1;
            }
        }
        self.observer.incidents_open(&counts);
        let under = self.engine.under_maintenance().clone();
        let covered: Vec<&TargetState> = self
            .engine
            .states()
            .filter(|s| under.contains(&s.name))
            .collect();
        self.observer.maintenance(&covered);
        self.snapshot.store(Arc::new(Snapshot {
            at: Some(SystemTime::now()),
            targets: self.engine.states().cloned().collect(),
            open,
            providers,
            maintenance: current_and_upcoming(&windows, now)
                .into_iter()
                .cloned()
                .collect(),
            under_maintenance: under,
            seen: self.seen.clone(),
        }));
    }

    /// Puts provider issues beside the incidents they match when either side changed, and
    /// what the status page shows of the providers.
    fn providers(&mut self, incidents_changed: bool) -> ProviderView {
        let now = SystemTime::now();
        let since = now - crate::provider::matching::SLACK;
        if self.book.has_issues() && (incidents_changed || std::mem::take(&mut self.polled)) {
            let linked = self
                .store
                .history(since)
                .map(|h| h.into_iter().map(|(i, _)| i).collect::<Vec<_>>())
                .and_then(|incidents| self.book.link(&mut self.store, &incidents, now));
            match linked {
                Ok(new) => {
                    for (inc, issue, first) in new {
                        tracing::warn!(
                            incident = inc.id,
                            provider = %issue.provider,
                            issue = %issue.id,
                            "{}",
                            crate::provider::matching::sentence(&issue, inc.opened_at)
                        );
                        if first {
                            self.observer.provider_first_post(
                                &issue.provider,
                                issue.first_post_at.duration_since(inc.opened_at).ok(),
                            );
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot match provider issues to incidents"),
            }
        }
        let links = self
            .store
            .links(now - super::providers::VIEW_WINDOW)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read provider links");
                Vec::new()
            });
        self.book.view(links)
    }
}
