//! The engine's side of maintenance windows: which targets are under one now, the note an open
//! incident gets when one of its members goes under (or comes out of) maintenance, and the
//! incident a target still failing when its window ends opens then.

use std::collections::BTreeSet;
use std::time::SystemTime;

use super::{Engine, Entry, EntryKind, Tick};
use crate::incidents::maintenance::{Window, covering};
use crate::incidents::render::timestamp;
use crate::incidents::state::Health;

impl Engine {
    /// The windows known at `now` (config and database): targets they cover stop opening
    /// incidents; a covered member of an open incident is noted in its timeline; a target
    /// whose window ended while it still fails joins (or opens) an incident now.
    pub fn set_maintenance(&mut self, windows: &[Window], now: SystemTime) {
        let covered: BTreeSet<String> = self
            .targets
            .values()
            .filter(|s| covering(windows, &s.name, &s.region, now).next().is_some())
            .map(|s| s.name.clone())
            .collect();
        let started: Vec<String> = covered.difference(&self.maintenance).cloned().collect();
        let ended: Vec<String> = self.maintenance.difference(&covered).cloned().collect();
        for name in &started {
            let Some(s) = self.targets.get(name) else {
                continue;
            };
            let w = covering(windows, &s.name, &s.region, now)
                .max_by_key(|w| w.end)
                .expect("covered means a window covers it");
            let text = format!(
                "planned maintenance for {name} until {}: {}",
                timestamp(w.end),
                w.reason
            );
            for inc in self.open.iter().filter(|i| i.members.contains(name)) {
                self.annotations.push((inc.id, now, text.clone()));
            }
        }
        self.maintenance = covered;
        for name in &ended {
            let Some(s) = self.targets.get(name) else {
                continue;
            };
            let member_of: Vec<i64> = self
                .open
                .iter()
                .filter(|i| i.members.contains(name))
                .map(|i| i.id)
                .collect();
            for id in &member_of {
                self.annotations
                    .push((*id, now, format!("planned maintenance for {name} ended")));
            }
            // Still failing after the work: from now on that is an incident like any other.
            if member_of.is_empty() && s.health != Health::Up {
                let region = s.region.clone();
                self.join(name, &region, now);
            }
        }
    }

    /// Targets under a maintenance window as of the last [`Engine::set_maintenance`].
    pub fn under_maintenance(&self) -> &BTreeSet<String> {
        &self.maintenance
    }

    /// Writes the pending maintenance notes of incidents still open.
    pub(super) fn annotate(&mut self, out: &mut Tick) {
        for (id, at, event) in std::mem::take(&mut self.annotations) {
            let Some(inc) = self.open.iter().find(|i| i.id == id) else {
                continue;
            };
            let summary = inc.last.clone().unwrap_or_else(|| self.summarize(inc));
            out.entries.push(Entry {
                incident: id,
                at,
                event,
                summary,
                status: "ongoing".into(),
                kind: EntryKind::Maintenance,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::incidents::maintenance::Source;
    use crate::incidents::state::{Observation, TargetState};
    use crate::load::Policy;
    use crate::probe::Phase;
    use crate::probe::Protocol;
    use crate::probe::classify::FailureClass;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn engine() -> Engine {
        let states = ["a", "b"]
            .iter()
            .map(|n| TargetState::new(n, "eu", Protocol::Imap, None, t(0)))
            .collect();
        let mut e = Engine::new(Policy::default(), states, Vec::new(), 1);
        e.regions.insert("eu".into(), 2);
        e
    }

    fn window(target: &str, start: u64, end: u64) -> Window {
        Window {
            source: Source::Cli(1),
            targets: vec![target.into()],
            regions: Vec::new(),
            start: t(start),
            end: t(end),
            reason: "disk swap".into(),
        }
    }

    fn fail(e: &mut Engine, name: &str, from: u64) {
        for i in 0..3 {
            e.observe(&Observation::failed(
                name,
                t(from + i),
                FailureClass::ConnectRefused,
                Phase::Connect,
            ));
        }
    }

    #[test]
    fn a_target_failing_during_its_window_opens_no_incident() {
        let mut e = engine();
        let ws = [window("a", 10, 100)];
        e.set_maintenance(&ws, t(10));
        fail(&mut e, "a", 20);
        let tick = e.tick();
        assert!(e.open_incidents().is_empty(), "{:?}", e.open_incidents());
        assert!(tick.entries.is_empty());
        // Its health is still what the probes say (and exported as such).
        assert_eq!(e.targets["a"].health, Health::Down);
        assert!(e.under_maintenance().contains("a"));
        // The other target is not covered: its failure is an incident.
        fail(&mut e, "b", 30);
        e.tick();
        assert_eq!(e.open_incidents().len(), 1);
        assert_eq!(
            e.open_incidents()[0].members.iter().collect::<Vec<_>>(),
            ["b"]
        );
    }

    #[test]
    fn still_failing_when_the_window_ends_opens_an_incident_then() {
        let mut e = engine();
        let ws = [window("a", 10, 100)];
        e.set_maintenance(&ws, t(10));
        fail(&mut e, "a", 20);
        e.tick();
        e.set_maintenance(&ws, t(100));
        let tick = e.tick();
        assert_eq!(e.open_incidents().len(), 1);
        assert_eq!(e.open_incidents()[0].opened_at, t(100));
        assert!(tick.entries[0].event.starts_with("opened"), "{tick:?}");
        // Back within the window instead: nothing to open.
        let mut e = engine();
        e.set_maintenance(&ws, t(10));
        fail(&mut e, "a", 20);
        for i in 0..2 {
            e.observe(&Observation::ok("a", t(50 + i), false));
        }
        e.set_maintenance(&ws, t(100));
        assert!(e.tick().entries.is_empty());
        assert!(e.open_incidents().is_empty());
    }

    #[test]
    fn an_open_incident_is_annotated_when_a_member_goes_under_maintenance_and_comes_out() {
        let mut e = engine();
        fail(&mut e, "a", 0);
        e.tick();
        let id = e.open_incidents()[0].id;
        let ws = [window("a", 10, 100)];
        e.set_maintenance(&ws, t(10));
        let tick = e.tick();
        assert_eq!(tick.entries.len(), 1, "{tick:?}");
        let note = &tick.entries[0];
        assert_eq!(
            (note.incident, note.kind, note.at),
            (id, EntryKind::Maintenance, t(10))
        );
        assert!(
            note.event
                .starts_with("planned maintenance for a until 2027-01-15T08:01:40Z: disk swap"),
            "{}",
            note.event
        );
        assert_eq!(note.headline(), format!("maintenance: {}", note.event));
        // Same windows again: nothing new to say.
        e.set_maintenance(&ws, t(20));
        assert!(e.tick().entries.is_empty());
        e.set_maintenance(&ws, t(100));
        let tick = e.tick();
        assert_eq!(tick.entries[0].event, "planned maintenance for a ended");
        assert_eq!(
            e.open_incidents().len(),
            1,
            "still down: still the same incident"
        );
    }
}
