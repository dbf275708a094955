//! When each target runs.
//!
//! One lightweight task per target (no thread per target, no lock held across I/O) sleeps until
//! its next planned start. Starts are spread deterministically across the interval by a stable
//! hash of the target name, aligned to the wall clock, so restarts and several instances keep the
//! same rhythm and nothing fires all at once at startup or on the minute. A target never has two
//! probes in flight: a start that comes due while its previous probe still runs, or while it waits
//! for a global concurrency slot, is skipped and counted. Reloads are applied as a diff: unchanged
//! targets keep their schedule, changed ones get their new settings, removed ones stop.
//!
//! A server that asks for a pause (`Retry-After` on a mail API's 429) gets it: the target's
//! next start is the first planned one at least that far away.
//!
//! What a probe does and where its outcome goes are injected: a [`Prober`] runs the probe (like
//! blackbox_exporter's `ProbeFn`; [`Probes`] runs the real protocol dialogues) and an
//! [`Observer`] takes the outcomes and the scheduler's own [`Event`]s (starts and their delay,
//! skipped starts, targets added and removed). The scheduler keeps no metrics and writes no
//! logs itself, so its timing is tested on tokio's paused clock with a prober the test controls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hash::stable_hash;
use crate::probe::{self, Outcome, ProbeContext, Target};

/// Runs one probe of a target when the scheduler says so.
pub trait Prober: Send + Sync + 'static {
    /// Probes `target` once. The probe keeps its own deadline; only the shutdown's hard stop
    /// cuts it from outside.
    fn probe<'a>(&'a self, target: &'a Arc<Target>) -> BoxFuture<'a, Outcome>;
}

/// The real probes: each target's protocol dialogue, sharing resolvers, OAuth2 tokens and
/// what round trips remember between runs.
pub struct Probes(pub ProbeContext);

impl Prober for Probes {
    fn probe<'a>(&'a self, target: &'a Arc<Target>) -> BoxFuture<'a, Outcome> {
        // Boxed: a probe's state (18 KB) would otherwise live in every idle target task.
        Box::pin(probe::run(target, &self.0))
    }
}

/// Where outcomes go once a probe finishes (metrics, logs, incidents).
pub trait OutcomeSink: Send + Sync + 'static {
    /// Takes one finished probe's outcome.
    fn record(&self, outcome: Outcome);
}

/// Takes the outcomes and what the scheduler measures and does itself.
pub trait Observer: OutcomeSink {
    /// Takes one event, as it happens.
    fn event(&self, event: Event);
}

/// What the scheduler did, for the metrics and the log.
#[derive(Clone, Debug)]
pub enum Event {
    /// A target started being probed (at start, or added by a reload).
    Registered(Arc<Target>),
    /// A reload changed a target's settings (its region or protocol, the labels, may be among
    /// them); it keeps its task and picks the new settings up before its next start.
    Changed {
        /// The settings until now.
        old: Arc<Target>,
        /// The settings from now on.
        new: Arc<Target>,
    },
    /// A target left the config and is no longer probed (a probe in flight still finishes).
    Removed(Arc<Target>),
    /// A probe started, `delay` after its planned start (waiting for a concurrency slot, a busy
    /// runtime). One more probe is in flight.
    Started {
        /// What is probed.
        target: Arc<Target>,
        /// How late the start is.
        delay: Duration,
    },
    /// A probe ended, with an outcome or cut by the shutdown's hard stop. One fewer in flight.
    Finished(Arc<Target>),
    /// Planned starts missed because the previous probe overran or waited for a slot.
    Skipped {
        /// Whose starts.
        target: Arc<Target>,
        /// How many.
        missed: u64,
    },
    /// Recording an outcome panicked (a bug in mailprobe, a prober fault); the target's task
    /// goes on.
    RecordPanicked(Arc<Target>),
    /// The shutdown grace ended with probes still running; they are dropped.
    Abandoned {
        /// How many.
        in_flight: usize,
    },
}

/// Wall-clock time, which starts are aligned to: [`SystemTime::now`] but in tests.
pub type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// How long probes in flight may go on after a stop was asked for. Most finish well within it
/// (their deadlines are seconds); a round trip waiting minutes for delivery is cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The global concurrency limit: a semaphore, and the permits still owed to a lowered limit.
struct Slots {
    permits: Arc<Semaphore>,
    /// Permits to take out of circulation as running probes give theirs back. Lowering the
    /// limit must stop new starts at once, but probes already waiting are queued ahead of
    /// anything that could take the permits back, so the limit is lowered here instead.
    owed: Mutex<usize>,
}

impl Slots {
    fn new(n: usize) -> Self {
        Slots {
            permits: Arc::new(Semaphore::new(n)),
            owed: Mutex::new(0),
        }
    }

    /// Waits for a free slot; `None` once closed (shutting down).
    async fn acquire(self: &Arc<Self>) -> Option<Slot> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        Some(Slot {
            permit: Some(permit),
            slots: self.clone(),
        })
    }

    fn raise(&self, by: usize) {
        let mut owed = crate::sync::lock(&self.owed);
        let forgiven = by.min(*owed);
        *owed -= forgiven;
        self.permits.add_permits(by - forgiven);
    }

    fn lower(&self, by: usize) {
        let mut owed = crate::sync::lock(&self.owed);
        *owed += by - self.permits.forget_permits(by);
    }
}

/// A probe's place within the concurrency limit, given back (or, when owed, retired) on drop.
struct Slot {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    slots: Arc<Slots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut owed = crate::sync::lock(&self.slots.owed);
        if let Some(permit) = self.permit.take()
            && *owed > 0
        {
            *owed -= 1;
            permit.forget();
        }
    }
}

struct Shared {
    prober: Arc<dyn Prober>,
    observer: Arc<dyn Observer>,
    wall: WallClock,
    slots: Arc<Slots>,
    in_flight: AtomicUsize,
    /// Cancelled when the shutdown grace is over: probes still running are dropped.
    hard_stop: CancellationToken,
}

impl Shared {
    /// The first planned start of `t` at or after now: `offset + k * interval` in wall-clock
    /// time, with `offset` derived from the target name.
    fn first_start(&self, t: &Target) -> Instant {
        let now_wall = (self.wall)()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Instant::now() + delay_to_slot(now_wall, t.interval, &t.name)
    }
}

struct TaskHandle {
    target: Arc<Target>,
    updates: watch::Sender<Arc<Target>>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// What a reload changed, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    /// Targets that started being probed.
    pub added: Vec<String>,
    /// Targets no longer probed.
    pub removed: Vec<String>,
    /// Targets whose settings changed.
    pub changed: Vec<String>,
    /// Targets left exactly as they were.
    pub unchanged: usize,
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} added, {} removed, {} changed, {} unchanged",
            self.added.len(),
            self.removed.len(),
            self.changed.len(),
            self.unchanged
        )
    }
}

/// Runs every target on its schedule.
pub struct Scheduler {
    shared: Arc<Shared>,
    tasks: HashMap<String, TaskHandle>,
    tracker: TaskTracker,
    concurrency: usize,
}

impl Scheduler {
    /// A scheduler with no targets yet, running `prober` with at most `concurrency` probes at
    /// once and telling `observer` what happens.
    pub fn new(prober: Arc<dyn Prober>, observer: Arc<dyn Observer>, concurrency: usize) -> Self {
        Self::with_wall_clock(prober, observer, concurrency, Arc::new(SystemTime::now))
    }

    /// [`Scheduler::new`], with starts aligned to `wall` instead of the system clock.
    pub fn with_wall_clock(
        prober: Arc<dyn Prober>,
        observer: Arc<dyn Observer>,
        concurrency: usize,
        wall: WallClock,
    ) -> Self {
        Scheduler {
            shared: Arc::new(Shared {
                prober,
                observer,
                wall,
                slots: Arc::new(Slots::new(concurrency)),
                in_flight: AtomicUsize::new(0),
                hard_stop: CancellationToken::new(),
            }),
            tasks: HashMap::new(),
            tracker: TaskTracker::new(),
            concurrency,
        }
    }

    /// Makes `targets` the set being probed, touching only what differs from the current set.
    pub fn apply(&mut self, targets: &[Arc<Target>]) -> Diff {
        let mut diff = Diff::default();
        let wanted: HashMap<&str, &Arc<Target>> =
            targets.iter().map(|t| (t.name.as_str(), t)).collect();

        let gone: Vec<String> = self
            .tasks
            .keys()
            .filter(|name| !wanted.contains_key(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(task) = self.tasks.remove(&name) {
                task.cancel.cancel();
                self.shared.observer.event(Event::Removed(task.target));
                diff.removed.push(name);
            }
        }

        for t in targets {
            match self.tasks.get_mut(&t.name) {
                Some(task) if task.target.fingerprint == t.fingerprint => diff.unchanged += 1,
                Some(task) => {
                    let old = std::mem::replace(&mut task.target, t.clone());
                    // The task picks the new settings up before its next start.
                    let _ = task.updates.send(t.clone());
                    self.shared.observer.event(Event::Changed {
                        old,
                        new: t.clone(),
                    });
                    diff.changed.push(t.name.clone());
                }
                None => {
                    self.spawn(t.clone());
                    diff.added.push(t.name.clone());
                }
            }
        }
        diff
    }

    /// Changes the global concurrency limit. Lowered, no probe starts until fewer than `n`
    /// run; those running finish.
    pub fn set_concurrency(&mut self, n: usize) {
        if n > self.concurrency {
            self.shared.slots.raise(n - self.concurrency);
        } else if n < self.concurrency {
            self.shared.slots.lower(self.concurrency - n);
        }
        self.concurrency = n;
    }

    /// Whether every target's task is still running (a task ends only when told to, so one
    /// that ended on its own has panicked). The systemd watchdog is fed only while this holds.
    pub fn alive(&self) -> bool {
        self.tasks.values().all(|t| !t.task.is_finished())
    }

    /// Number of targets being probed.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no target is being probed.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Probes running now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    fn spawn(&mut self, target: Arc<Target>) {
        self.shared
            .observer
            .event(Event::Registered(target.clone()));
        let (updates, rx) = watch::channel(target.clone());
        let cancel = CancellationToken::new();
        let shared = self.shared.clone();
        let name = target.name.clone();
        let task = self
            .tracker
            .spawn(run_target(target.clone(), rx, cancel.clone(), shared));
        self.tasks.insert(
            name,
            TaskHandle {
                target,
                updates,
                cancel,
                task,
            },
        );
    }

    /// Stops scheduling; probes in flight finish within their deadline or [`SHUTDOWN_GRACE`],
    /// whichever comes first.
    pub async fn shutdown(mut self) {
        for (_, task) in self.tasks.drain() {
            task.cancel.cancel();
        }
        // Tasks waiting for a slot end.
        self.shared.slots.permits.close();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            self.shared.observer.event(Event::Abandoned {
                in_flight: self.in_flight(),
            });
            self.shared.hard_stop.cancel();
            self.tracker.wait().await;
        }
    }
}

/// How long from `now` (since the epoch) until the target's next slot.
fn delay_to_slot(now: Duration, interval: Duration, name: &str) -> Duration {
    let interval_us = interval.as_micros().max(1) as u64;
    let offset_us = stable_hash(name) % interval_us;
    let now_us = now.as_micros() as u64;
    let phase = (now_us + interval_us - offset_us) % interval_us;
    let wait = if phase == 0 { 0 } else { interval_us - phase };
    Duration::from_micros(wait)
}

async fn run_target(
    mut target: Arc<Target>,
    mut updates: watch::Receiver<Arc<Target>>,
    cancel: CancellationToken,
    shared: Arc<Shared>,
) {
    let mut next = shared.first_start(&target);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            changed = updates.changed() => {
                if changed.is_err() {
                    return;
                }
                let new = updates.borrow_and_update().clone();
                if new.interval != target.interval {
                    next = shared.first_start(&new);
                }
                target = new;
                continue;
            }
            _ = tokio::time::sleep_until(next) => {}
        }
        let planned = next;
        let slot = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            s = shared.slots.acquire() => match s {
                Some(s) => s,
                None => return, // closed: shutting down
            },
        };
        let started = Instant::now();
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        shared.observer.event(Event::Started {
            target: target.clone(),
            delay: started - planned,
        });
        next = planned + target.interval;
        skip_past(&shared, &target, &mut next, started);

        let outcome = tokio::select! {
            o = shared.prober.probe(&target) => Some(o),
            _ = shared.hard_stop.cancelled() => None,
        };
        shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        shared.observer.event(Event::Finished(target.clone()));
        let Some(outcome) = outcome else { return };
        drop(slot);
        let retry_after = outcome.retry_after;
        // A bug while recording (metrics, incidents, the log) must not end the target's task;
        // probe panics themselves are caught inside `probe::run`.
        let recorded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shared.observer.record(outcome)
        }));
        if recorded.is_err() {
            shared.observer.event(Event::RecordPanicked(target.clone()));
        }

        skip_past(&shared, &target, &mut next, Instant::now());
        if let Some(wait) = retry_after {
            hold_back(&target, &mut next, Instant::now() + wait);
        }
    }
}

/// Moves `next` to the first planned start at or after `earliest`: the server asked us to
/// wait (`Retry-After`), so the starts before it are not missed but given up on purpose, and
/// the target keeps its place in the interval.
fn hold_back(target: &Target, next: &mut Instant, earliest: Instant) {
    while *next < earliest {
        *next += target.interval;
    }
}

/// Moves `next` past `now`, counting each planned start that was missed.
fn skip_past(shared: &Shared, target: &Arc<Target>, next: &mut Instant, now: Instant) {
    let mut missed = 0;
    while *next <= now {
        *next += target.interval;
        missed += 1;
    }
    if missed > 0 {
        shared.observer.event(Event::Skipped {
            target: target.clone(),
            missed,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spread_and_stable() {
        let interval = Duration::from_secs(60);
        let now = Duration::from_secs(1_700_000_000);
        let a = delay_to_slot(now, interval, "imap-eu");
        let b = delay_to_slot(now, interval, "imap-us");
        assert!(a < interval && b < interval);
        assert_ne!(a, b, "different names land on different offsets");
        // One second later the same target is one second closer to its slot.
        let a2 = delay_to_slot(now + Duration::from_secs(1), interval, "imap-eu");
        assert_eq!(
            (a2 + Duration::from_secs(1)).as_micros() % interval.as_micros(),
            a.as_micros() % interval.as_micros()
        );
    }

    #[test]
    fn offsets_cover_the_interval() {
        let interval = Duration::from_secs(60);
        let now = Duration::from_secs(1_700_000_000);
        let mut buckets = [0usize; 6];
        for i in 0..6000 {
            let d = delay_to_slot(now, interval, &format!("target-{i}"));
            buckets[(d.as_secs() / 10) as usize] += 1;
        }
        // 6000 names over six 10 s buckets: each gets roughly 1000.
        for b in buckets {
            assert!((800..1200).contains(&b), "{buckets:?}");
        }
    }

    /// The real probe runner with another dialogue: reaches what no server can (a panic).
    struct Dialogues(ProbeContext, probe::Dialogue);

    impl Prober for Dialogues {
        fn probe<'a>(&'a self, target: &'a Arc<Target>) -> BoxFuture<'a, Outcome> {
            Box::pin(probe::run_with(target, &self.0, self.1))
        }
    }

    /// Every outcome and event, as they come; `panic_first` makes the first record panic.
    struct Collect {
        tx: tokio::sync::mpsc::UnboundedSender<Outcome>,
        events: std::sync::Mutex<Vec<Event>>,
        panic_first: std::sync::atomic::AtomicBool,
    }

    impl OutcomeSink for Collect {
        fn record(&self, o: Outcome) {
            if self.panic_first.swap(false, Ordering::SeqCst) {
                panic!("a bug while recording an outcome");
            }
            let _ = self.tx.send(o);
        }
    }

    impl Observer for Collect {
        fn event(&self, e: Event) {
            self.events.lock().expect("test lock").push(e);
        }
    }

    /// A scheduler probing one target every second with `dialogue`, and its outcomes.
    fn one_target(
        dialogue: probe::Dialogue,
        panic_first: bool,
    ) -> (
        Scheduler,
        Arc<Collect>,
        tokio::sync::mpsc::UnboundedReceiver<Outcome>,
        Arc<Target>,
    ) {
        let text = "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n[[target]]\nname = \"web\"\n\
                    region = \"eu\"\nprotocol = \"https\"\nurl = \"https://127.0.0.1/\"\n";
        let cfg = crate::load::parse(std::path::Path::new("probes.toml"), text).expect("config");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let collect = Arc::new(Collect {
            tx,
            events: std::sync::Mutex::default(),
            panic_first: std::sync::atomic::AtomicBool::new(panic_first),
        });
        let s = Scheduler::new(
            Arc::new(Dialogues(ProbeContext::new(), dialogue)),
            collect.clone(),
            4,
        );
        (s, collect, rx, cfg.targets[0].clone())
    }

    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Outcome>) -> Outcome {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an outcome within 10 s: the target's task still runs")
            .expect("the sink is alive")
    }

    /// A probe that panics in its greeting (a bug no server can be made to trigger here).
    fn panics_at_greeting<'a>(
        _: &'a Arc<Target>,
        _: &'a ProbeContext,
        tl: &'a mut probe::PhaseRecorder,
    ) -> BoxFuture<'a, Result<(), probe::PhaseError>> {
        Box::pin(async move {
            tl.phase(probe::Phase::Connect, async {
                Ok::<_, probe::ProbeError>(())
            })
            .await?;
            tl.phase(probe::Phase::Greeting, async {
                let words: Vec<&str> = Vec::new();
                let _ = words[0]; // out of bounds: the parser bug
                Ok::<_, probe::ProbeError>(())
            })
            .await
        })
    }

    /// A probe that succeeds at once.
    fn succeeds<'a>(
        _: &'a Arc<Target>,
        _: &'a ProbeContext,
        _: &'a mut probe::PhaseRecorder,
    ) -> BoxFuture<'a, Result<(), probe::PhaseError>> {
        Box::pin(async { Ok(()) })
    }

    /// A panic inside a probe is a prober fault of the phase it happened in; the target's task
    /// lives on and probes again.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_probe_is_a_prober_fault_and_the_target_keeps_being_probed() {
        let (mut s, _, mut rx, target) = one_target(panics_at_greeting, false);
        s.apply(&[target]);
        for _ in 0..2 {
            let o = next(&mut rx).await;
            let f = o.failure.expect("a failure");
            assert_eq!(f.class, crate::probe::classify::FailureClass::ProberError);
            assert_eq!(f.fault, Some(crate::probe::classify::ProberFault::Panic));
            assert_eq!(f.phase, probe::Phase::Greeting);
            assert!(f.detail.contains("index out of bounds"), "{}", f.detail);
        }
        assert!(s.alive());
        s.shutdown().await;
    }

    /// A panic while recording an outcome (metrics, incidents, the log) does not end the
    /// target's task either; the observer hears of it.
    #[tokio::test(start_paused = true)]
    async fn a_panic_while_recording_does_not_end_the_target_task() {
        let (mut s, collect, mut rx, target) = one_target(succeeds, true);
        s.apply(&[target]);
        let o = next(&mut rx).await;
        assert!(o.success(), "{:?}", o.failure);
        assert!(s.alive());
        let panicked = collect
            .events
            .lock()
            .expect("test lock")
            .iter()
            .filter(|e| matches!(e, Event::RecordPanicked(t) if t.name == "web"))
            .count();
        assert_eq!(panicked, 1);
        s.shutdown().await;
    }
}
