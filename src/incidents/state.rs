//! Per-target health with hysteresis: one lost packet is not an incident.
//!
//! A target goes `down` after `down_after` failures in a row and `degraded` after `down_after`
//! slow successes in a row; it comes back after `up_after` successes in a row (`degraded` when
//! those were slow: back, but slow).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::load::Policy;
use crate::probe::classify::FailureClass;
use crate::probe::{Phase, Protocol};

/// How a target is doing, after hysteresis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Working at normal speed.
    Up,
    /// Working, but slower than its slow threshold.
    Degraded,
    /// Failing.
    Down,
}

impl Health {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }

    /// Parses a stored value.
    pub fn parse(s: &str) -> Option<Health> {
        match s {
            "up" => Some(Health::Up),
            "degraded" => Some(Health::Degraded),
            "down" => Some(Health::Down),
            _ => None,
        }
    }
}

/// One probe result, as the incident logic sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Target name.
    pub target: String,
    /// When the probe finished.
    pub at: SystemTime,
    /// What it found.
    pub result: Result<bool, (FailureClass, Phase)>,
}

impl Observation {
    /// A success (`slow` when slower than the target's threshold).
    pub fn ok(target: &str, at: SystemTime, slow: bool) -> Observation {
        Observation {
            target: target.into(),
            at,
            result: Ok(slow),
        }
    }

    /// A failure of `class` at `phase`.
    pub fn failed(target: &str, at: SystemTime, class: FailureClass, phase: Phase) -> Observation {
        Observation {
            target: target.into(),
            at,
            result: Err((class, phase)),
        }
    }
}

/// What is known of a target, kept across restarts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetState {
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Users it stands for, when configured.
    pub users: Option<u64>,
    /// Current health.
    pub health: Health,
    /// Since when.
    pub since: SystemTime,
    /// Failures in a row.
    pub failures: u32,
    /// Successes in a row (slow or not).
    pub successes: u32,
    /// Slow successes in a row.
    pub slow: u32,
    /// Fast successes in a row.
    pub fast: u32,
    /// The last failure's class and phase, while not up.
    pub last_failure: Option<(FailureClass, Phase)>,
}

impl TargetState {
    /// A target never seen failing: up since `now`.
    pub fn new(
        name: &str,
        region: &str,
        protocol: Protocol,
        users: Option<u64>,
        now: SystemTime,
    ) -> Self {
        TargetState {
            name: name.into(),
            region: region.into(),
            protocol,
            users,
            health: Health::Up,
            since: now,
            failures: 0,
            successes: 0,
            slow: 0,
            fast: 0,
            last_failure: None,
        }
    }

    /// Takes one result; returns the new health when it changed.
    pub fn observe(&mut self, policy: &Policy, obs: &Observation) -> Option<Health> {
        let before = self.health;
        match obs.result {
            Err(failure) => {
                self.failures += 1;
                self.successes = 0;
                self.slow = 0;
                self.fast = 0;
                self.last_failure = Some(failure);
                if self.failures >= policy.down_after {
                    self.health = Health::Down;
                }
            }
            Ok(slow) => {
                self.failures = 0;
                self.successes += 1;
                if slow {
                    self.slow += 1;
                    self.fast = 0;
                } else {
                    self.fast += 1;
                    self.slow = 0;
                }
                self.health = match self.health {
                    Health::Down if self.successes >= policy.up_after => {
                        if self.slow >= policy.up_after {
                            Health::Degraded
                        } else {
                            Health::Up
                        }
                    }
                    Health::Up if self.slow >= policy.down_after => Health::Degraded,
                    Health::Degraded if self.fast >= policy.up_after => Health::Up,
                    h => h,
                };
                if self.health == Health::Up {
                    self.last_failure = None;
                }
            }
        }
        if self.health != before {
            self.since = obs.at;
            Some(self.health)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn state() -> TargetState {
        TargetState::new("imap-eu", "eu", Protocol::Imap, Some(100), t(0))
    }

    const FAIL: (FailureClass, Phase) = (FailureClass::ConnectTimeout, Phase::Connect);

    #[test]
    fn down_after_n_failures_and_up_after_m_successes() {
        let p = Policy::default();
        let mut s = state();
        assert_eq!(
            s.observe(&p, &Observation::failed("imap-eu", t(1), FAIL.0, FAIL.1)),
            None
        );
        assert_eq!(
            s.observe(&p, &Observation::failed("imap-eu", t(2), FAIL.0, FAIL.1)),
            None
        );
        assert_eq!(
            s.observe(&p, &Observation::failed("imap-eu", t(3), FAIL.0, FAIL.1)),
            Some(Health::Down)
        );
        assert_eq!(s.since, t(3));
        assert_eq!(
            s.observe(&p, &Observation::ok("imap-eu", t(4), false)),
            None
        );
        assert_eq!(
            s.observe(&p, &Observation::ok("imap-eu", t(5), false)),
            Some(Health::Up)
        );
        assert_eq!(s.last_failure, None);
    }

    #[test]
    fn flapping_never_goes_down() {
        let p = Policy::default();
        let mut s = state();
        for i in 0..50 {
            let obs = if i % 3 == 2 {
                Observation::ok("imap-eu", t(i), false)
            } else {
                Observation::failed("imap-eu", t(i), FAIL.0, FAIL.1)
            };
            assert_eq!(s.observe(&p, &obs), None, "probe {i}");
        }
        assert_eq!(s.health, Health::Up);
    }

    #[test]
    fn back_but_slow_is_degraded_then_up() {
        let p = Policy::default();
        let mut s = state();
        for i in 0..3 {
            s.observe(&p, &Observation::failed("imap-eu", t(i), FAIL.0, FAIL.1));
        }
        assert_eq!(s.health, Health::Down);
        s.observe(&p, &Observation::ok("imap-eu", t(10), true));
        assert_eq!(
            s.observe(&p, &Observation::ok("imap-eu", t(11), true)),
            Some(Health::Degraded)
        );
        assert_eq!(
            s.observe(&p, &Observation::ok("imap-eu", t(12), false)),
            None
        );
        assert_eq!(
            s.observe(&p, &Observation::ok("imap-eu", t(13), true)),
            None
        );
        assert_eq!(
            s.observe(&p, &Observation::ok("imap-eu", t(14), false)),
            None
        );
        assert_eq!(
            s.observe(&p, &Observation::ok("imap-eu", t(15), false)),
            Some(Health::Up)
        );
    }

    #[test]
    fn slow_for_long_enough_is_degraded() {
        let p = Policy::default();
        let mut s = state();
        s.observe(&p, &Observation::ok("imap-eu", t(1), true));
        s.observe(&p, &Observation::ok("imap-eu", t(2), true));
        assert_eq!(
            s.observe(&p, &Observation::ok("imap-eu", t(3), true)),
            Some(Health::Degraded)
        );
    }
}
