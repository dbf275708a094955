//! When each target runs.
//!
//! One lightweight task per target (no thread per target, no lock held across I/O) sleeps until
//! its next planned start. Starts are spread deterministically across the interval by a stable
//! hash of the target name, aligned to the wall clock, so restarts and several instances keep the
//! same rhythm and nothing fires all at once at startup or on the minute. A target never has two
//! probes in flight: a start that comes due while its previous probe still runs, or while it waits
//! for a global concurrency slot, is skipped and counted. Reloads are applied as a diff: unchanged
//! targets keep their schedule, changed ones get their new settings, removed ones stop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hash::stable_hash;
use crate::metrics::Metrics;
use crate::probe::{self, Outcome, ProbeContext, Target};

/// Where outcomes go once a probe finishes (metrics, logs, incidents).
pub trait OutcomeSink: Send + Sync + 'static {
    /// Takes one finished probe's outcome.
    fn record(&self, outcome: Outcome);
}

/// How long probes in flight may go on after a stop was asked for. Most finish well within it
/// (their deadlines are seconds); a round trip waiting minutes for delivery is cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

struct Shared {
    ctx: ProbeContext,
    /// The probe dialogue: [`probe::dialogue`]; the tests' own to reach a panic.
    dialogue: probe::Dialogue,
    metrics: Arc<Metrics>,
    sink: Arc<dyn OutcomeSink>,
    slots: Arc<Semaphore>,
    /// Cancelled when the shutdown grace is over: probes still running are dropped.
    hard_stop: CancellationToken,
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

/// Runs every target on its schedule.
pub struct Scheduler {
    shared: Arc<Shared>,
    tasks: HashMap<String, TaskHandle>,
    tracker: TaskTracker,
    concurrency: usize,
}

impl Scheduler {
    /// A scheduler with no targets yet, allowing `concurrency` probes at once.
    pub fn new(
        ctx: ProbeContext,
        metrics: Arc<Metrics>,
        sink: Arc<dyn OutcomeSink>,
        concurrency: usize,
    ) -> Self {
        Self::with_dialogue(ctx, metrics, sink, concurrency, probe::dialogue)
    }

    fn with_dialogue(
        ctx: ProbeContext,
        metrics: Arc<Metrics>,
        sink: Arc<dyn OutcomeSink>,
        concurrency: usize,
        dialogue: probe::Dialogue,
    ) -> Self {
        Scheduler {
            shared: Arc::new(Shared {
                ctx,
                dialogue,
                metrics,
                sink,
                slots: Arc::new(Semaphore::new(concurrency)),
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
                self.shared.metrics.unregister_target(&name);
                diff.removed.push(name);
            }
        }

        for t in targets {
            match self.tasks.get_mut(&t.name) {
                Some(task) if task.target.fingerprint == t.fingerprint => diff.unchanged += 1,
                Some(task) => {
                    let labels_changed =
                        task.target.region != t.region || task.target.protocol() != t.protocol();
                    if labels_changed {
                        self.shared.metrics.unregister_target(&t.name);
                        self.shared.metrics.register_target(t);
                    }
                    task.target = t.clone();
                    // The task picks the new settings up before its next start.
                    let _ = task.updates.send(t.clone());
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

    /// Changes the global concurrency limit; lowering it takes effect as running probes finish.
    pub fn set_concurrency(&mut self, n: usize) {
        if n > self.concurrency {
            self.shared.slots.add_permits(n - self.concurrency);
        } else if n < self.concurrency {
            let excess = (self.concurrency - n) as u32;
            let slots = self.shared.slots.clone();
            self.tracker.spawn(async move {
                if let Ok(p) = slots.acquire_many(excess).await {
                    p.forget();
                }
            });
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

    fn spawn(&mut self, target: Arc<Target>) {
        self.shared.metrics.register_target(&target);
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
        // Unblock any pending concurrency-lowering task.
        self.shared.slots.close();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.shared.metrics.in_flight().get(),
                "probes still running after the shutdown grace; abandoning them"
            );
            self.shared.hard_stop.cancel();
            self.tracker.wait().await;
        }
    }
}

/// The first planned start of `t` at or after now: `offset + k * interval` in wall-clock time,
/// with `offset` derived from the target name.
pub fn first_start(t: &Target) -> Instant {
    let now_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let delay = delay_to_slot(now_wall, t.interval, &t.name);
    Instant::now() + delay
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
    let mut next = first_start(&target);
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
                    next = first_start(&new);
                }
                target = new;
                continue;
            }
            _ = tokio::time::sleep_until(next) => {}
        }
        let planned = next;
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            p = shared.slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return, // closed: shutting down
            },
        };
        let started = Instant::now();
        shared.metrics.schedule_delay(started - planned);
        next = planned + target.interval;
        skip_past(&shared, &target, &mut next, started);

        shared.metrics.in_flight().inc();
        let outcome = tokio::select! {
            // Boxed: a probe's state (18 KB) would otherwise live in every idle target task.
            o = Box::pin(probe::run_with(&target, &shared.ctx, shared.dialogue)) => Some(o),
            _ = shared.hard_stop.cancelled() => None,
        };
        shared.metrics.in_flight().dec();
        let Some(outcome) = outcome else { return };
        drop(permit);
        // A bug while recording (metrics, incidents, the log) must not end the target's task;
        // probe panics themselves are caught inside `probe::run_with`.
        let protocol = target.protocol();
        let recorded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.sink.record(outcome)));
        if recorded.is_err() {
            shared
                .metrics
                .prober_fault(protocol, crate::probe::classify::ProberFault::Panic);
            tracing::error!(
                target = %target.name,
                protocol = protocol.as_str(),
                "recording a probe's outcome panicked (a bug in mailprobe); probing goes on"
            );
        }

        skip_past(&shared, &target, &mut next, Instant::now());
    }
}

/// Moves `next` past `now`, counting each planned start that was missed.
fn skip_past(shared: &Shared, target: &Target, next: &mut Instant, now: Instant) {
    let mut missed = 0;
    while *next <= now {
        *next += target.interval;
        missed += 1;
    }
    if missed > 0 {
        shared.metrics.skipped(target, missed);
        tracing::warn!(
            target = %target.name,
            missed,
            "probe overran its interval (or waited for a concurrency slot); skipped planned starts"
        );
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

    /// Every outcome, as it is recorded; `panic_first` makes the first record panic.
    struct Collect {
        tx: tokio::sync::mpsc::UnboundedSender<Outcome>,
        panic_first: std::sync::atomic::AtomicBool,
    }

    impl OutcomeSink for Collect {
        fn record(&self, o: Outcome) {
            if self
                .panic_first
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                panic!("a bug while recording an outcome");
            }
            let _ = self.tx.send(o);
        }
    }

    /// A scheduler probing one target every second with `dialogue`, and its outcomes.
    fn one_target(
        dialogue: probe::Dialogue,
        panic_first: bool,
    ) -> (
        Scheduler,
        tokio::sync::mpsc::UnboundedReceiver<Outcome>,
        Arc<Target>,
    ) {
        let dir = std::env::temp_dir().join(format!("mp-sched-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("p"), "pw\n").expect("password file");
        let text = "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n[[target]]\nname = \"im\"\n\
                    region = \"eu\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\ntls = \"none\"\n\
                    allow_plaintext = true\nusername = \"u\"\npassword_file = \"p\"\n";
        let cfg = crate::load::parse(&dir.join("c.toml"), text).expect("config");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = Arc::new(Collect {
            tx,
            panic_first: std::sync::atomic::AtomicBool::new(panic_first),
        });
        let s = Scheduler::with_dialogue(
            ProbeContext::new(),
            Arc::new(Metrics::new()),
            sink,
            4,
            dialogue,
        );
        (s, rx, cfg.targets[0].clone())
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
    ) -> futures::future::BoxFuture<'a, Result<(), probe::PhaseError>> {
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
    ) -> futures::future::BoxFuture<'a, Result<(), probe::PhaseError>> {
        Box::pin(async { Ok(()) })
    }

    /// A panic inside a probe is a prober fault of the phase it happened in; the target's task
    /// lives on and probes again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_probe_is_a_prober_fault_and_the_target_keeps_being_probed() {
        let (mut s, mut rx, target) = one_target(panics_at_greeting, false);
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
    /// target's task either.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_while_recording_does_not_end_the_target_task() {
        let (mut s, mut rx, target) = one_target(succeeds, true);
        s.apply(&[target]);
        let o = next(&mut rx).await;
        assert!(o.success(), "{:?}", o.failure);
        assert!(s.alive());
        s.shutdown().await;
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
}
