//! Whether targets are actually being probed: what `/-/ready` answers and what the systemd
//! watchdog is fed on. A process that serves `/metrics` is not enough; a scheduler whose target
//! tasks died, or that has not finished a probe for longer than its schedule allows, is not
//! ready, so the orchestrator or systemd can step in instead of trusting frozen series.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::probe::Target;

/// The daemon's control loop refreshes its view of the target tasks this often.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A control loop silent for this long is stuck (it also drives reloads and the watchdog).
const LOOP_STUCK_AFTER: Duration = Duration::from_secs(10);

/// Why the daemon is not ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// A stop was asked for; no new probes start.
    Stopping,
    /// A target's task ended without being told to (it panicked): that target is not probed.
    TaskDied,
    /// No probe has finished for longer than the schedule allows.
    Stalled {
        /// Since the last probe finished (or the daemon started).
        silent: Duration,
        /// The longest silence the schedule allows.
        allowed: Duration,
    },
    /// The loop that checks the tasks, reloads and feeds the watchdog has not run for a while.
    LoopStuck(Duration),
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::Stopping => f.write_str("stopping"),
            NotReady::TaskDied => f.write_str("a target's task has died; it is no longer probed"),
            NotReady::Stalled { silent, allowed } => write!(
                f,
                "no probe has finished for {} s (the schedule allows {} s): the scheduler is stuck",
                silent.as_secs(),
                allowed.as_secs()
            ),
            NotReady::LoopStuck(d) => {
                write!(
                    f,
                    "the daemon's control loop has not run for {} s",
                    d.as_secs()
                )
            }
        }
    }
}

/// Shared between the scheduler's sink (probe finished), the control loop (tasks alive) and
/// the HTTP handler (verdict). Times are milliseconds since `epoch`, so plain atomics hold them.
#[derive(Debug)]
pub struct Liveness {
    epoch: Instant,
    last_finish: AtomicU64,
    checked: AtomicU64,
    /// Longest silence allowed, in ms; 0 when there is nothing to probe.
    allowed: AtomicU64,
    tasks_alive: AtomicBool,
    stopping: AtomicBool,
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new()
    }
}

impl Liveness {
    /// Ready, as of now, with nothing to probe yet.
    pub fn new() -> Self {
        Liveness {
            epoch: Instant::now(),
            last_finish: AtomicU64::new(0),
            checked: AtomicU64::new(0),
            allowed: AtomicU64::new(0),
            tasks_alive: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// A probe finished (whatever its result): the scheduler is moving.
    pub fn probe_finished(&self) {
        self.last_finish
            .fetch_max(self.ms(Instant::now()), Ordering::AcqRel);
    }

    /// Takes the schedule of the targets now being probed (at start and after each reload).
    pub fn set_targets(&self, targets: &[Arc<Target>]) {
        let allowed = allowed_silence(targets)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.allowed.store(allowed, Ordering::Release);
    }

    /// The control loop's periodic look at the target tasks.
    pub fn checked(&self, tasks_alive: bool) {
        self.tasks_alive.store(tasks_alive, Ordering::Release);
        self.checked
            .store(self.ms(Instant::now()), Ordering::Release);
    }

    /// A stop was asked for.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Whether targets are being probed now.
    pub fn check(&self) -> Result<(), NotReady> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<(), NotReady> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(NotReady::Stopping);
        }
        let now = self.ms(now);
        let since =
            |t: &AtomicU64| Duration::from_millis(now.saturating_sub(t.load(Ordering::Acquire)));
        let quiet = since(&self.checked);
        if quiet > LOOP_STUCK_AFTER {
            return Err(NotReady::LoopStuck(quiet));
        }
        if !self.tasks_alive.load(Ordering::Acquire) {
            return Err(NotReady::TaskDied);
        }
        let allowed = self.allowed.load(Ordering::Acquire);
        let silent = since(&self.last_finish);
        if allowed > 0 && silent > Duration::from_millis(allowed) {
            return Err(NotReady::Stalled {
                silent,
                allowed: Duration::from_millis(allowed),
            });
        }
        Ok(())
    }
}

/// The longest time without any probe finishing that a working scheduler can take: `None`
/// without targets.
///
/// The target with the shortest interval starts again within that interval; it may wait for a
/// concurrency slot, freed within the longest deadline, and then runs within its own. Twice
/// that leaves room for a busy machine, so only a scheduler that is really stuck fails.
pub fn allowed_silence(targets: &[Arc<Target>]) -> Option<Duration> {
    let interval = targets.iter().map(|t| t.interval).min()?;
    let timeout = targets.iter().map(|t| t.timeout).max()?;
    Some(2 * (interval + 2 * timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(allowed_ms: u64) -> Liveness {
        let l = Liveness::new();
        l.allowed.store(allowed_ms, Ordering::Release);
        l
    }

    #[test]
    fn fresh_is_ready() {
        let l = live(6000);
        assert_eq!(l.check_at(l.epoch + Duration::from_secs(5)), Ok(()));
    }

    #[test]
    fn no_probe_finishing_for_longer_than_allowed_is_stalled() {
        let l = live(6000);
        l.checked(true);
        l.checked.store(60_000, Ordering::Release);
        l.last_finish.store(53_000, Ordering::Release);
        assert_eq!(l.check_at(l.epoch + Duration::from_secs(59)), Ok(()));
        assert_eq!(
            l.check_at(l.epoch + Duration::from_millis(59_001)),
            Err(NotReady::Stalled {
                silent: Duration::from_millis(6001),
                allowed: Duration::from_secs(6)
            })
        );
        // Nothing to probe: nothing can stall.
        l.allowed.store(0, Ordering::Release);
        assert_eq!(l.check_at(l.epoch + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn a_dead_task_a_stuck_loop_and_a_stop_are_not_ready() {
        let l = live(6000);
        l.checked(false);
        assert_eq!(l.check_at(l.epoch), Err(NotReady::TaskDied));
        l.checked(true);
        assert_eq!(l.check_at(l.epoch), Ok(()));
        assert_eq!(
            l.check_at(l.epoch + Duration::from_secs(11)),
            Err(NotReady::LoopStuck(Duration::from_secs(11)))
        );
        l.stopping();
        assert_eq!(l.check_at(l.epoch), Err(NotReady::Stopping));
    }
}
