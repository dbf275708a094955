//! The last few probes of each target that failed or was slow lately, for the admin view: what a
//! failing target answered, probe by probe, without a trip to the logs. Kept in memory (a handful
//! per such target), fed by the daemon with every outcome. A healthy target keeps nothing: the
//! view shows only targets that are not up, and 10,000 healthy targets' last five probes were
//! 6 MB of a 64 MiB budget.

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
        self.keep(
            &o.target.name,
            Probe {
                at: o.started_at + o.total,
                took: o.total,
                slow: o.slow,
                failure: o
                    .failure
                    .as_ref()
                    .map(|f| (f.class.as_str(), f.phase.as_str(), f.detail.to_string())),
            },
        );
    }

    /// Keeps `p` when `target` failed or was slow within its last [`KEEP`] probes (this one
    /// included), and forgets the target once its last [`KEEP`] were all fine.
    fn keep(&self, target: &str, p: Probe) {
        let notable = |p: &Probe| p.failure.is_some() || p.slow;
        let mut all = lock(&self.0);
        match all.get_mut(target) {
            Some(q) => {
                if q.len() == KEEP {
                    q.pop_front();
                }
                q.push_back(p);
                if !q.iter().any(notable) {
                    all.remove(target);
                }
            }
            None if notable(&p) => {
                let mut q = VecDeque::with_capacity(KEEP);
                q.push_back(p);
                all.insert(target.to_string(), q);
            }
            None => {}
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(i: u64, failed: bool) -> Probe {
        Probe {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(i),
            took: Duration::from_millis(10),
            slow: false,
            failure: failed.then(|| ("connect_refused", "connect", "refused".to_string())),
        }
    }

    #[test]
    fn only_targets_that_failed_lately_keep_their_probes() {
        let r = RecentProbes::default();
        for i in 0..10 {
            r.keep("healthy", probe(i, false));
        }
        assert!(r.of("healthy").is_empty());
        assert!(lock(&r.0).is_empty(), "a healthy target holds nothing");

        r.keep("t", probe(1, false));
        r.keep("t", probe(2, true));
        r.keep("t", probe(3, true));
        let at: Vec<u64> = r
            .of("t")
            .iter()
            .map(|p| {
                p.at.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
            })
            .collect();
        assert_eq!(at, [3, 2], "newest first, from the first failure on");
        // Back up: its recovery stays visible until the failure is KEEP probes old.
        for i in 4..4 + KEEP as u64 - 1 {
            r.keep("t", probe(i, false));
            assert_eq!(r.of("t").len(), KEEP.min(i as usize - 1));
        }
        r.keep("t", probe(99, false));
        assert!(r.of("t").is_empty(), "five fine probes in a row: forgotten");
    }
}
