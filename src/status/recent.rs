//! The last few probes of each target, for the admin view: what a failing target answered,
//! probe by probe, without a trip to the logs. Kept in memory (a handful per target), fed by
//! the daemon with every outcome.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::probe::Outcome;
use crate::sync::lock;

/// Probes kept per target.
pub const KEEP: usize = 5;

/// One probe as the admin view shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// When it finished.
    pub at: SystemTime,
    /// How long it took.
    pub took: Duration,
    /// Slower than the target's threshold (successes only).
    pub slow: bool,
    /// Class, phase and detail of a failure.
    pub failure: Option<(&'static str, &'static str, String)>,
}

/// The last [`KEEP`] probes per target.
#[derive(Debug, Default)]
pub struct RecentProbes(Mutex<HashMap<String, VecDeque<Probe>>>);

impl RecentProbes {
    /// Keeps one outcome, dropping the oldest beyond [`KEEP`].
    pub fn record(&self, o: &Outcome) {
        let p = Probe {
            at: o.started_at + o.total,
            took: o.total,
            slow: o.slow,
            failure: o
                .failure
                .as_ref()
                .map(|f| (f.class.as_str(), f.phase.as_str(), f.detail.to_string())),
        };
        let mut all = lock(&self.0);
        let q = all.entry(o.target.name.clone()).or_default();
        if q.len() == KEEP {
            q.pop_front();
        }
        q.push_back(p);
    }

    /// A target's last probes, newest first.
    pub fn of(&self, target: &str) -> Vec<Probe> {
        lock(&self.0)
            .get(target)
            .map(|q| q.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets targets that left the config.
    pub fn forget(&self, targets: &[String]) {
        let mut all = lock(&self.0);
        for t in targets {
            all.remove(t);
        }
    }
}
