//! One state per target from what every location reports: the vote, and the blind vantage
//! point left out of it. Pure: reports in, combined states and the per-location view out.

use std::collections::{BTreeMap, BTreeSet};

use crate::incidents::Health;
use crate::incidents::seen::{Location, Seen, TargetSeen};
use crate::probe::classify::FailureClass;
use crate::probe::{Phase, Protocol};

/// What one location says of one target (its `mailprobe_target_state`, after its own
/// hysteresis, and the last failure's class and phase when it has one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The `location` label.
    pub location: String,
    /// Target name.
    pub target: String,
    /// Its region.
    pub region: String,
    /// Its protocol.
    pub protocol: Protocol,
    /// Its health at that location.
    pub health: Health,
    /// The class and phase of its last failure there.
    pub failure: Option<(FailureClass, Phase)>,
}

/// How locations vote.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Vote {
    /// Locations that must see a target down (or failing) for it to be; `None`: a majority
    /// of those reporting it. Never more than the locations reporting it (one left is enough
    /// when only one reports).
    pub quorum: Option<usize>,
    /// A location seeing at least this share of its targets down while the others see most
    /// of the same targets working is blind.
    pub blind_share: f64,
    /// ... and reporting at least this many targets (one failing target is not "everything").
    pub blind_min_targets: usize,
}

impl Default for Vote {
    fn default() -> Self {
        Vote {
            quorum: None,
            blind_share: 0.9,
            blind_min_targets: 2,
        }
    }
}

/// A target's combined state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Combined {
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The vote's result; `None` when only blind locations report it (nothing to go by).
    pub health: Option<Health>,
    /// The failure most of the voters that see it down report, when down.
    pub cause: Option<(FailureClass, Phase)>,
}

/// Combines `reports` (any order, at most one per location and target; later ones win).
pub fn combine(reports: &[Report], vote: &Vote) -> (Vec<Combined>, Seen) {
    // target → location → report
    let mut by_target: BTreeMap<&str, BTreeMap<&str, &Report>> = BTreeMap::new();
    for r in reports {
        by_target
            .entry(r.target.as_str())
            .or_default()
            .insert(r.location.as_str(), r);
    }
    let mut per_location: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for locs in by_target.values() {
        for (l, r) in locs {
            let e = per_location.entry(l).or_default();
            e.0 += 1;
            if r.health == Health::Down {
                e.1 += 1;
            }
        }
    }
    let blind: BTreeSet<&str> = per_location
        .iter()
        .filter(|(l, (n, down))| {
            if *n < vote.blind_min_targets.max(1) || (*down as f64) < vote.blind_share * *n as f64 {
                return false;
            }
            // The others' view of the same targets: mostly working?
            let (mut others, mut others_down) = (0usize, 0usize);
            for locs in by_target.values() {
                if !locs.contains_key(*l) {
                    continue;
                }
                for (o, r) in locs {
                    if o != *l {
                        others += 1;
                        others_down += usize::from(r.health == Health::Down);
                    }
                }
            }
            others > 0 && others_down * 2 < others
        })
        .map(|(l, _)| *l)
        .collect();

    let mut seen = Seen {
        locations: per_location
            .iter()
            .map(|(l, (n, down))| Location {
                name: l.to_string(),
                targets: *n,
                down: *down,
                blind: blind.contains(l),
            })
            .collect(),
        ..Seen::default()
    };
    let mut out = Vec::with_capacity(by_target.len());
    for (name, locs) in &by_target {
        let mut ts = TargetSeen::default();
        let mut voters = Vec::with_capacity(locs.len());
        for (l, r) in locs {
            ts.reporting.insert(l.to_string());
            match r.health {
                Health::Down => ts.down.insert(l.to_string()),
                Health::Degraded => ts.degraded.insert(l.to_string()),
                Health::Up => false,
            };
            if blind.contains(l) {
                ts.blind.insert(l.to_string());
            } else {
                voters.push(*r);
            }
        }
        let any = locs.values().next().expect("a target has a report");
        let (health, cause) = decide(&voters, vote);
        out.push(Combined {
            name: name.to_string(),
            region: any.region.clone(),
            protocol: any.protocol,
            health,
            cause,
        });
        seen.targets.insert(name.to_string(), ts);
    }
    (out, seen)
}

/// The vote among non-blind reports.
fn decide(voters: &[&Report], vote: &Vote) -> (Option<Health>, Option<(FailureClass, Phase)>) {
    let n = voters.len();
    if n == 0 {
        return (None, None);
    }
    let quorum = vote.quorum.unwrap_or(n / 2 + 1).clamp(1, n);
    let down = voters.iter().filter(|r| r.health == Health::Down).count();
    let failing = voters.iter().filter(|r| r.health != Health::Up).count();
    if down >= quorum {
        let mut causes: BTreeMap<(FailureClass, Phase), usize> = BTreeMap::new();
        for r in voters.iter().filter(|r| r.health == Health::Down) {
            if let Some(f) = r.failure {
                *causes.entry(f).or_default() += 1;
            }
        }
        // Most reported first; ties to the first in class order, so the result is stable.
        let cause = causes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(c, _)| c);
        (Some(Health::Down), cause)
    } else if failing >= quorum {
        (Some(Health::Degraded), None)
    } else {
        (Some(Health::Up), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: (FailureClass, Phase) = (FailureClass::ConnectRefused, Phase::Connect);
    const TIMEOUT: (FailureClass, Phase) = (FailureClass::ConnectTimeout, Phase::Connect);

    fn r(location: &str, target: &str, health: Health) -> Report {
        Report {
            location: location.into(),
            target: target.into(),
            region: "eu".into(),
            protocol: Protocol::Imap,
            health,
            failure: (health == Health::Down).then_some(REFUSED),
        }
    }

    fn health_of(c: &[Combined], name: &str) -> Option<Health> {
        c.iter().find(|c| c.name == name).and_then(|c| c.health)
    }

    #[test]
    fn down_when_a_majority_of_reporting_locations_see_it_down() {
        let reports = [
            r("fra", "a", Health::Down),
            r("nyc", "a", Health::Down),
            r("sgp", "a", Health::Up),
            r("fra", "b", Health::Down),
            r("nyc", "b", Health::Up),
            r("sgp", "b", Health::Up),
            r("fra", "c", Health::Up),
            r("nyc", "c", Health::Up),
            r("sgp", "c", Health::Up),
        ];
        let (c, seen) = combine(&reports, &Vote::default());
        assert_eq!(health_of(&c, "a"), Some(Health::Down));
        assert_eq!(c[0].cause, Some(REFUSED));
        assert_eq!(health_of(&c, "b"), Some(Health::Up));
        assert_eq!(
            seen.targets["a"].words(true),
            "seen from 2 of 3 locations (fra, nyc)"
        );
        assert_eq!(
            seen.targets["b"].words(false),
            "only from fra: that vantage point's network or its path to the service"
        );
        // Two of three targets down from fra: not "everything".
        assert!(seen.locations.iter().all(|l| !l.blind));
    }

    #[test]
    fn a_configured_quorum_and_the_locations_that_report() {
        let reports = [r("fra", "a", Health::Down), r("nyc", "a", Health::Up)];
        let one = Vote {
            quorum: Some(1),
            ..Vote::default()
        };
        assert_eq!(
            health_of(&combine(&reports, &one).0, "a"),
            Some(Health::Down)
        );
        // Majority of two is two.
        assert_eq!(
            health_of(&combine(&reports, &Vote::default()).0, "a"),
            Some(Health::Up)
        );
        // A quorum of 3 with one location left reporting: that one decides.
        let three = Vote {
            quorum: Some(3),
            ..Vote::default()
        };
        assert_eq!(
            health_of(&combine(&[r("fra", "a", Health::Down)], &three).0, "a"),
            Some(Health::Down)
        );
    }

    #[test]
    fn a_location_seeing_everything_down_alone_is_blind_not_an_outage() {
        let mut reports = Vec::new();
        for t in ["a", "b", "c", "d"] {
            reports.push(r("fra", t, Health::Down));
            reports.push(r("nyc", t, Health::Up));
            reports.push(r("sgp", t, Health::Up));
        }
        let (c, seen) = combine(&reports, &Vote::default());
        assert!(c.iter().all(|c| c.health == Some(Health::Up)), "{c:?}");
        let fra = seen.locations.iter().find(|l| l.name == "fra").unwrap();
        assert!(fra.blind);
        assert!(seen.locations.iter().filter(|l| l.blind).count() == 1);
        // Even a quorum of one does not let a blind location page anyone.
        let one = Vote {
            quorum: Some(1),
            ..Vote::default()
        };
        let (c, _) = combine(&reports, &one);
        assert!(c.iter().all(|c| c.health == Some(Health::Up)), "{c:?}");
    }

    #[test]
    fn everything_down_everywhere_is_an_outage_and_nobody_is_blind() {
        let mut reports = Vec::new();
        for t in ["a", "b", "c"] {
            for l in ["fra", "nyc", "sgp"] {
                reports.push(r(l, t, Health::Down));
            }
        }
        let (c, seen) = combine(&reports, &Vote::default());
        assert!(c.iter().all(|c| c.health == Some(Health::Down)));
        assert!(seen.locations.iter().all(|l| !l.blind));
        assert_eq!(
            seen.targets["a"].words(true),
            "seen from 3 of 3 locations (fra, nyc, sgp)"
        );
    }

    #[test]
    fn only_a_blind_location_reporting_a_target_decides_nothing() {
        let mut reports = vec![r("fra", "only-fra", Health::Down)];
        for t in ["a", "b", "c"] {
            reports.push(r("fra", t, Health::Down));
            reports.push(r("nyc", t, Health::Up));
        }
        let (c, _) = combine(&reports, &Vote::default());
        assert_eq!(health_of(&c, "only-fra"), None);
    }

    #[test]
    fn slow_from_a_majority_is_degraded_and_the_commonest_cause_wins() {
        let mut reports = [
            r("fra", "a", Health::Degraded),
            r("nyc", "a", Health::Down),
            r("sgp", "a", Health::Up),
        ];
        let (c, _) = combine(&reports, &Vote::default());
        assert_eq!(health_of(&c, "a"), Some(Health::Degraded));
        reports[0] = r("fra", "a", Health::Down);
        reports[0].failure = Some(TIMEOUT);
        reports[2] = r("sgp", "a", Health::Down);
        reports[2].failure = Some(TIMEOUT);
        let (c, _) = combine(&reports, &Vote::default());
        assert_eq!(c[0].cause, Some(TIMEOUT));
    }

    #[test]
    fn a_single_location_is_never_blind() {
        let reports: Vec<Report> = ["a", "b", "c"]
            .iter()
            .map(|t| r("fra", t, Health::Down))
            .collect();
        let (c, seen) = combine(&reports, &Vote::default());
        assert!(c.iter().all(|c| c.health == Some(Health::Down)));
        assert!(!seen.locations[0].blind);
    }
}
