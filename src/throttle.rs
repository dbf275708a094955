//! At most one log line per period for a condition that can recur thousands of times a second
//! (a fleet overrunning its intervals, a full queue): journald keeps the rest of the log
//! readable, and the line says how many it stands for. Counters in `/metrics` keep every one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// A gate in front of one recurring log line.
pub struct Throttle {
    period: Duration,
    state: Mutex<State>,
}

struct State {
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// A gate letting one line through per `period`.
    pub const fn new(period: Duration) -> Self {
        Throttle {
            period,
            state: Mutex::new(State {
                last: None,
                held: 0,
            }),
        }
    }

    /// `Some(n)` when this occurrence is to be logged, `n` being how many were held back since
    /// the last line; `None` to stay quiet.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut s = lock(&self.state);
        match s.last {
            Some(last) if now.saturating_duration_since(last) < self.period => {
                s.held += 1;
                None
            }
            _ => {
                s.last = Some(now);
                Some(std::mem::take(&mut s.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_counting_the_ones_held_back() {
        let t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.admit_at(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(t.admit_at(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(t.admit_at(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(t.admit_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(t.admit_at(t0 + Duration::from_secs(25)), Some(1));
    }
}
