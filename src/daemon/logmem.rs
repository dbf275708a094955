//! What the log last said about each target, so a state change is logged once and repeats go
//! to `debug`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::probe::classify::FailureClass;
use crate::probe::{Outcome, Phase};

/// A target failing the same way is reminded in the log at `warn` this often (at `debug` in
/// between), so a long outage stays findable with `journalctl -p warning --since -1h`.
pub const REMIND_EVERY: Duration = Duration::from_secs(3600);

/// What one outcome changes in what the log last said about its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing: as before (logged at `debug`).
    Same,
    /// It started failing, or now fails with another class or in another phase (`warn`).
    Failed,
    /// Still failing the same way, [`REMIND_EVERY`] after the last `warn` (`warn` again).
    StillFailing {
        /// Failures in a row so far.
        failures: u64,
        /// How long it has been failing.
        failing: Duration,
    },
    /// It works again (`info`).
    Recovered {
        /// Failures in a row it had.
        failures: u64,
        /// How long it had been failing.
        failing: Duration,
    },
    /// It works but slower than its threshold, and was not slow before (`warn`).
    Slow,
    /// It is no longer slow (`info`).
    Fast,
}

/// The state of a target as the log last told it.
#[derive(Clone, Copy, Debug)]
enum Said {
    Fast,
    Slow,
    Failing {
        class: FailureClass,
        phase: Phase,
        since: Instant,
        failures: u64,
        reminded: Instant,
    },
}

/// What the log last said about each target, so that a state change is logged once and
/// repeats of the same failure go to `debug`: 10,000 targets failing do not write 10,000
/// warnings a minute and push the incident lines past journald's rate limit.
#[derive(Debug, Default)]
pub struct LogMemory(Mutex<HashMap<String, Said>>);

impl LogMemory {
    /// Takes one outcome and says what changed.
    pub fn note(&self, o: &Outcome) -> Change {
        let result = match &o.failure {
            None => Ok(o.slow),
            Some(f) => Err((f.class, f.phase)),
        };
        self.note_at(&o.target.name, result, Instant::now())
    }

    pub(super) fn note_at(
        &self,
        target: &str,
        result: Result<bool, (FailureClass, Phase)>,
        now: Instant,
    ) -> Change {
        let mut said = crate::sync::lock(&self.0);
        let before = said.get(target).copied().unwrap_or(Said::Fast);
        let (now_said, change) = match (before, result) {
            (
                Said::Failing {
                    class,
                    phase,
                    since,
                    failures,
                    reminded,
                },
                Err(failure),
            ) if (class, phase) == failure => {
                let failures = failures + 1;
                let remind = now.saturating_duration_since(reminded) >= REMIND_EVERY;
                let now_said = Said::Failing {
                    class,
                    phase,
                    since,
                    failures,
                    reminded: if remind { now } else { reminded },
                };
                let change = if remind {
                    Change::StillFailing {
                        failures,
                        failing: now.saturating_duration_since(since),
                    }
                } else {
                    Change::Same
                };
                (now_said, change)
            }
            (_, Err((class, phase))) => {
                let (since, failures) = match before {
                    Said::Failing {
                        since, failures, ..
                    } => (since, failures),
                    _ => (now, 0),
                };
                let now_said = Said::Failing {
                    class,
                    phase,
                    since,
                    failures: failures + 1,
                    reminded: now,
                };
                (now_said, Change::Failed)
            }
            (
                Said::Failing {
                    since, failures, ..
                },
                Ok(slow),
            ) => {
                let change = Change::Recovered {
                    failures,
                    failing: now.saturating_duration_since(since),
                };
                (if slow { Said::Slow } else { Said::Fast }, change)
            }
            (Said::Fast, Ok(true)) => (Said::Slow, Change::Slow),
            (Said::Slow, Ok(false)) => (Said::Fast, Change::Fast),
            (s, Ok(_)) => (s, Change::Same),
        };
        said.insert(target.to_string(), now_said);
        change
    }

    /// Forgets targets that left the config.
    pub fn forget(&self, targets: &[String]) {
        let mut said = crate::sync::lock(&self.0);
        for t in targets {
            said.remove(t);
        }
    }
}

/// Logs an outcome by what it changed for its target (see [`Change`]); the detail and class of
/// a failure are in the `warn` line that says it started.
pub fn log_outcome(o: &Outcome, change: &Change) {
    let t = &o.target;
    // Tenths of a millisecond, as a number (a number in JSON too).
    let total_ms = (o.total.as_secs_f64() * 10_000.0).round() / 10.0;
    match (&o.failure, change) {
        // mailprobe could not run the probe (no descriptors, a panic...): its own fault, at ERROR
        // when it starts or is reminded, at debug while it repeats.
        (Some(f), Change::Failed | Change::StillFailing { .. })
            if f.class == FailureClass::ProberError =>
        {
            tracing::error!(
                target = %t.name,
                region = %t.region,
                protocol = t.protocol().as_str(),
                class = f.class.as_str(),
                reason = f.fault.map_or("internal", |r| r.as_str()),
                phase = f.phase.as_str(),
                total_ms,
                detail = %f.detail,
                "probe could not run: a fault of mailprobe itself, not of the target"
            )
        }
        (Some(f), Change::Failed) => tracing::warn!(
            target = %t.name,
            region = %t.region,
            protocol = t.protocol().as_str(),
            class = f.class.as_str(),
            phase = f.phase.as_str(),
            total_ms,
            detail = %f.detail,
            "probe failed"
        ),
        (Some(f), Change::StillFailing { failures, failing }) => tracing::warn!(
            target = %t.name,
            region = %t.region,
            protocol = t.protocol().as_str(),
            class = f.class.as_str(),
            phase = f.phase.as_str(),
            failures,
            failing_s = failing.as_secs(),
            detail = %f.detail,
            "probe still failing"
        ),
        (Some(f), _) => tracing::debug!(
            target = %t.name,
            region = %t.region,
            protocol = t.protocol().as_str(),
            class = f.class.as_str(),
            phase = f.phase.as_str(),
            total_ms,
            detail = %f.detail,
            "probe failed"
        ),
        (None, Change::Recovered { failures, failing }) => tracing::info!(
            target = %t.name,
            region = %t.region,
            protocol = t.protocol().as_str(),
            failures,
            failing_s = failing.as_secs(),
            slow = o.slow,
            total_ms,
            "probe succeeded again"
        ),
        (None, Change::Slow) => tracing::warn!(
            target = %t.name,
            region = %t.region,
            protocol = t.protocol().as_str(),
            total_ms,
            slow_threshold_ms = u64::try_from(t.slow_threshold.as_millis()).unwrap_or(u64::MAX),
            "probe slow"
        ),
        (None, Change::Fast) => tracing::info!(
            target = %t.name,
            region = %t.region,
            protocol = t.protocol().as_str(),
            total_ms,
            "probe no longer slow"
        ),
        (None, _) => tracing::debug!(
            target = %t.name,
            region = %t.region,
            protocol = t.protocol().as_str(),
            slow = o.slow,
            total_ms,
            "probe succeeded"
        ),
    }
}
