//! Which vantage points saw what: published beside the incident state by an instance that
//! reads its targets' health from Prometheus across locations (`[global] source =
//! "prometheus"`), so that the status page can say "seen from 3 of 3 locations" or "only from
//! fra: that vantage point's network", and show stale data as stale.
//!
//! Plain data: the combining is done where it is read (the `locations` module); the incident engine
//! never looks at it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::Serialize;

/// What the locations saw as of the last read of the query API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// When the query API last answered in full.
    pub fresh_at: Option<SystemTime>,
    /// Why the latest read failed, when it did: everything shown is as of `fresh_at`.
    pub stale: Option<String>,
    /// Every location that reported at the last good read.
    pub locations: Vec<Location>,
    /// Per target, what each location sees.
    pub targets: BTreeMap<String, TargetSeen>,
}

/// One vantage point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The `location` label.
    pub name: String,
    /// Targets it reports.
    pub targets: usize,
    /// Of those, how many it sees down.
    pub down: usize,
    /// It sees (nearly) everything down while the other locations see the same targets
    /// working: its own network, not an outage. Its view is left out of every vote.
    pub blind: bool,
}

/// One target from every location that reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TargetSeen {
    /// Locations reporting it (blind ones included).
    pub reporting: BTreeSet<String>,
    /// Locations seeing it down.
    pub down: BTreeSet<String>,
    /// Locations seeing it degraded (slow).
    pub degraded: BTreeSet<String>,
    /// Locations whose view was left out because they are blind.
    pub blind: BTreeSet<String>,
}

impl TargetSeen {
    /// Adds `other`'s locations (an incident's members taken together).
    pub fn absorb(&mut self, other: &TargetSeen) {
        self.reporting.extend(other.reporting.iter().cloned());
        self.down.extend(other.down.iter().cloned());
        self.degraded.extend(other.degraded.iter().cloned());
        self.blind.extend(other.blind.iter().cloned());
    }

    /// Locations seeing it failing (down or slow).
    pub fn failing(&self) -> BTreeSet<&String> {
        self.down.iter().chain(self.degraded.iter()).collect()
    }

    /// In words: "seen from 2 of 3 locations (fra, nyc)", "only from fra: that vantage
    /// point's network", or "working from all 3 locations".
    pub fn words(&self, combined_failing: bool) -> String {
        let failing = self.failing();
        let n = self.reporting.len();
        let names =
            |s: &BTreeSet<&String>| s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ");
        if n == 0 {
            return "reported by no location".into();
        }
        if failing.is_empty() {
            return format!("working from all {n} location{}", plural(n));
        }
        if !combined_failing {
            let blind: BTreeSet<&String> = failing
                .iter()
                .copied()
                .filter(|l| self.blind.contains(*l))
                .collect();
            let why = if !blind.is_empty() && blind.len() == failing.len() {
                "that vantage point's network (it sees nearly everything failing)"
            } else {
                "that vantage point's network or its path to the service"
            };
            return format!("only from {}: {why}", names(&failing));
        }
        format!(
            "seen from {} of {n} location{} ({})",
            failing.len(),
            plural(n),
            names(&failing)
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl Seen {
    /// All the given targets' locations together (an incident's members).
    pub fn of<'a>(&self, targets: impl IntoIterator<Item = &'a String>) -> TargetSeen {
        let mut all = TargetSeen::default();
        for t in targets {
            if let Some(s) = self.targets.get(t) {
                all.absorb(s);
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(xs: &[&str]) -> BTreeSet<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn words_say_how_many_locations_saw_it() {
        let s = TargetSeen {
            reporting: set(&["fra", "nyc", "sgp"]),
            down: set(&["fra", "nyc", "sgp"]),
            ..Default::default()
        };
        assert_eq!(s.words(true), "seen from 3 of 3 locations (fra, nyc, sgp)");
        let s = TargetSeen {
            reporting: set(&["fra", "nyc", "sgp"]),
            down: set(&["fra"]),
            blind: set(&["fra"]),
            ..Default::default()
        };
        assert_eq!(
            s.words(false),
            "only from fra: that vantage point's network (it sees nearly everything failing)"
        );
        let s = TargetSeen {
            reporting: set(&["fra", "nyc"]),
            ..Default::default()
        };
        assert_eq!(s.words(false), "working from all 2 locations");
    }
}
