//! Incidents: targets that are not up, grouped into the outage story an admin tells.
//!
//! A target that leaves `up` joins the open incident of its region (or the global one), or opens
//! a new one. An incident's scope follows from its members: `target` (one or a few targets),
//! `region` (more than half of a region's targets), `global` (two or more regions that way); region incidents that meet merge into one global incident. Its stage
//! follows too: `outage`, `partial recovery` (some members back, or back but slow),
//! `degraded: slow access`, and `resolved` once every member is up again.
//!
//! Timeline entries are written by [`Engine::tick`], which compares each incident with what its
//! timeline last said: a burst of failures within one tick is one entry, not hundreds. The
//! likely cause of each is worded in `hints.rs`.

mod hints;
mod maintenance;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::state::{Health, Observation, TargetState};
use crate::load::Policy;
use crate::probe::Target;
use crate::probe::classify::FailureClass;
use crate::probe::{Phase, Protocol};

/// How far an incident reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One target, or a few in one region.
    Target,
    /// Most of one region's targets.
    Region,
    /// Several regions.
    Global,
}

impl Scope {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Target => "target",
            Scope::Region => "region",
            Scope::Global => "global",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an incident stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Targets are down and none has come back.
    Outage,
    /// Some targets are back (or back but slow) while others are still down.
    PartialRecovery,
    /// Nothing is down, but some targets are slow.
    Degraded,
    /// Everything is up again (targets removed from the config excepted, and named).
    Resolved,
    /// Its last targets were removed from the config before they recovered: it ended without
    /// a recovery anyone saw.
    Removed,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Outage => "outage",
            Stage::PartialRecovery => "partial recovery",
            Stage::Degraded => "degraded: slow access",
            Stage::Resolved => "resolved",
            Stage::Removed => "ended: removed from monitoring",
        })
    }
}

/// How many users an incident affects, as far as the config says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Users {
    /// Sum of `users` over the affected targets that set it.
    pub known: u64,
    /// Affected targets that set `users`.
    pub counted: usize,
    /// Affected targets.
    pub targets: usize,
}

impl fmt::Display for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.counted == 0 {
            f.write_str("unknown")
        } else if self.counted < self.targets {
            write!(f, "at least {}", self.known)
        } else {
            write!(f, "{}", self.known)
        }
    }
}

/// The most common failure among the targets that are down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// Failure class.
    pub class: FailureClass,
    /// Phase it happened in.
    pub phase: Phase,
}

/// What an incident looks like at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// How far it reaches.
    pub scope: Scope,
    /// Regions with affected targets.
    pub regions: Vec<String>,
    /// Protocols of affected targets.
    pub protocols: Vec<Protocol>,
    /// Affected targets (not up), sorted.
    pub targets: Vec<String>,
    /// How many are down.
    pub down: usize,
    /// How many are degraded.
    pub degraded: usize,
    /// Users affected.
    pub users: Users,
    /// The dominant failure, when something is down.
    pub cause: Option<Cause>,
    /// The likely cause in plain words.
    pub hint: String,
    /// Where it stands.
    pub stage: Stage,
    /// Targets removed from the config while part of it, before they recovered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

impl Summary {
    /// "region: eu-west [imap, smtp] (3 targets)".
    pub fn scope_text(&self) -> String {
        let protocols: Vec<&str> = self.protocols.iter().map(|p| p.as_str()).collect();
        format!(
            "{}: {} [{}] ({} target{})",
            self.scope,
            if self.regions.is_empty() {
                "-".to_string()
            } else {
                self.regions.join(", ")
            },
            protocols.join(", "),
            self.targets.len(),
            if self.targets.len() == 1 { "" } else { "s" }
        )
    }

    /// "connect_timeout at connect: network or datacenter problem", or the hint alone.
    pub fn cause_text(&self) -> String {
        match self.cause {
            Some(c) => format!("{} at {}: {}", c.class, c.phase.as_str(), self.hint),
            None => self.hint.clone(),
        }
    }
}

/// Who wrote a timeline entry: the engine saw a change, a maintenance window began or ended for
/// a member, or a person added a note (`mailprobe incidents note`, the notes API).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// What the probes showed changed.
    #[default]
    Change,
    /// A maintenance window began or ended for a member.
    Maintenance,
    /// An update written by a person.
    Note,
}

impl EntryKind {
    /// The stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Change => "change",
            EntryKind::Maintenance => "maintenance",
            EntryKind::Note => "note",
        }
    }

    /// Parses a stored value.
    pub fn parse(s: &str) -> Option<EntryKind> {
        match s {
            "change" => Some(EntryKind::Change),
            "maintenance" => Some(EntryKind::Maintenance),
            "note" => Some(EntryKind::Note),
            _ => None,
        }
    }
}

/// One row of an incident's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The incident it belongs to.
    pub incident: i64,
    /// When the change happened (the probe result that caused it).
    pub at: SystemTime,
    /// What happened, in words.
    pub event: String,
    /// The incident after the change.
    pub summary: Summary,
    /// "ongoing", or "resolved after 1h 3m".
    pub status: String,
    /// Who wrote it.
    #[serde(default)]
    pub kind: EntryKind,
}

impl Entry {
    /// The event as every view words it: a person's note and a maintenance notice are marked
    /// as such, so that nobody reads them as what the probes saw.
    pub fn headline(&self) -> String {
        match self.kind {
            EntryKind::Change => self.event.clone(),
            EntryKind::Maintenance => format!("maintenance: {}", self.event),
            EntryKind::Note => format!("update: {}", self.event),
        }
    }
}

/// An incident, open or closed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable id (the database row).
    pub id: i64,
    /// When its first target left `up`.
    pub opened_at: SystemTime,
    /// When its last target came back (or it was merged into another).
    pub closed_at: Option<SystemTime>,
    /// Targets not up now.
    pub members: BTreeSet<String>,
    /// Every target that was ever part of it.
    pub ever: BTreeSet<String>,
    /// Members removed from the config before they recovered: they left, but not by coming
    /// back, so the incident must not say they did.
    #[serde(default)]
    pub removed: BTreeSet<String>,
    /// The last change to its members.
    pub last_change: SystemTime,
    /// What the timeline last said.
    pub last: Option<Summary>,
    /// The widest it got (scope first, then affected targets): what a resolved incident was.
    #[serde(default)]
    pub peak: Option<Summary>,
}

/// What one tick changed, for the store and the metrics.
#[derive(Debug, Default)]
pub struct Tick {
    /// New timeline entries.
    pub entries: Vec<Entry>,
    /// Incidents that changed (open or just closed), to save.
    pub incidents: Vec<Incident>,
    /// Target states that changed, to save.
    pub states: Vec<TargetState>,
    /// Targets no longer configured, to forget.
    pub removed: Vec<String>,
}

/// A target as the engine needs to know it: what it is called, where it counts and what it
/// speaks. From the config ([`Engine::set_targets`]) or read from Prometheus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Users it stands for, when known.
    pub users: Option<u64>,
}

/// Where a configured target connects and how long it waits: the evidence that narrows a
/// cause hint (another target on the same host answering, say). Not saved: the config says it.
#[derive(Clone, Debug)]
struct Reach {
    /// Host name or address, as configured; `None` for round trips (two hosts).
    host: Option<String>,
    /// TCP port.
    port: u16,
    /// The probe's deadline.
    timeout: Duration,
}

/// Target states and open incidents.
#[derive(Debug)]
pub struct Engine {
    policy: Policy,
    targets: BTreeMap<String, TargetState>,
    reach: BTreeMap<String, Reach>,
    regions: BTreeMap<String, usize>,
    open: Vec<Incident>,
    next_id: i64,
    dirty: BTreeSet<String>,
    removed: Vec<String>,
    /// Targets under a maintenance window now: they open and join no incident.
    maintenance: BTreeSet<String>,
    /// Maintenance notes for open incidents, written at the next tick: (incident, when, what).
    annotations: Vec<(i64, SystemTime, String)>,
}

impl Engine {
    /// An engine with no targets, resuming from saved `states` and `open` incidents.
    pub fn new(
        policy: Policy,
        states: Vec<TargetState>,
        open: Vec<Incident>,
        next_id: i64,
    ) -> Self {
        Engine {
            policy,
            targets: states.into_iter().map(|s| (s.name.clone(), s)).collect(),
            reach: BTreeMap::new(),
            regions: BTreeMap::new(),
            open,
            next_id,
            dirty: BTreeSet::new(),
            removed: Vec::new(),
            maintenance: BTreeSet::new(),
            annotations: Vec::new(),
        }
    }

    /// The configured targets (at start and on reload): new ones start up, removed ones leave
    /// their incidents, changed ones keep their health.
    pub fn set_targets(&mut self, targets: &[Arc<Target>], now: SystemTime) {
        let known: Vec<Known> = targets
            .iter()
            .map(|t| Known {
                name: t.name.clone(),
                region: t.region.clone(),
                protocol: t.protocol(),
                users: t.users,
            })
            .collect();
        self.set_known(&known, now);
        for t in targets {
            let endpoint = t.spec.endpoint();
            self.reach.insert(
                t.name.clone(),
                Reach {
                    host: endpoint.map(|e| e.host.clone()),
                    port: endpoint.map_or(0, |e| e.port),
                    timeout: t.timeout,
                },
            );
        }
    }

    /// The targets as known without their config (read from Prometheus): like
    /// [`Engine::set_targets`], with no endpoint to narrow a cause hint by.
    pub fn set_known(&mut self, targets: &[Known], now: SystemTime) {
        let wanted: BTreeMap<&str, &Known> = targets.iter().map(|t| (t.name.as_str(), t)).collect();
        let gone: Vec<String> = self
            .targets
            .keys()
            .filter(|n| !wanted.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.targets.remove(&name);
            self.reach.remove(&name);
            for inc in &mut self.open {
                if inc.members.remove(&name) {
                    inc.removed.insert(name.clone());
                    inc.last_change = now;
                }
            }
            self.dirty.remove(&name);
            self.removed.push(name);
        }
        for t in targets {
            let state = self
                .targets
                .entry(t.name.clone())
                .or_insert_with(|| TargetState::new(&t.name, &t.region, t.protocol, t.users, now));
            state.region = t.region.clone();
            state.protocol = t.protocol;
            state.users = t.users;
            self.reach.remove(&t.name);
            // Saved and exported at the next tick, new or resumed alike.
            self.dirty.insert(t.name.clone());
        }
        self.regions.clear();
        for s in self.targets.values() {
            *self.regions.entry(s.region.clone()).or_default() += 1;
        }
    }

    /// Takes one probe result; returns the target's new health when it changed.
    pub fn observe(&mut self, obs: &Observation) -> Option<Health> {
        let state = self.targets.get_mut(&obs.target)?;
        let before = state.health;
        let changed = state.observe(&self.policy, obs);
        self.dirty.insert(obs.target.clone());
        let after = changed?;
        let (name, region) = (state.name.clone(), state.region.clone());
        match (before, after) {
            // Planned work: the failure is seen and exported, but it is nobody's incident.
            (Health::Up, _) if self.maintenance.contains(&name) => {}
            (Health::Up, _) => self.join(&name, &region, obs.at),
            (_, Health::Up) => {
                for inc in &mut self.open {
                    if inc.members.remove(&name) {
                        inc.last_change = obs.at;
                    }
                }
            }
            _ => {
                for inc in self.open.iter_mut().filter(|i| i.members.contains(&name)) {
                    inc.last_change = obs.at;
                }
            }
        }
        Some(after)
    }

    /// Adds a target that just left `up` to the incident that covers its region, or a new one.
    fn join(&mut self, name: &str, region: &str, at: SystemTime) {
        let covering = self.open.iter().position(|inc| {
            !inc.members.is_empty()
                && (inc.last.as_ref().is_some_and(|s| s.scope == Scope::Global)
                    || inc
                        .members
                        .iter()
                        .any(|m| self.targets.get(m).is_some_and(|s| s.region == region)))
        });
        let inc = match covering {
            Some(i) => &mut self.open[i],
            None => {
                let id = self.next_id;
                self.next_id += 1;
                self.open.push(Incident {
                    id,
                    opened_at: at,
                    closed_at: None,
                    members: BTreeSet::new(),
                    ever: BTreeSet::new(),
                    removed: BTreeSet::new(),
                    last_change: at,
                    last: None,
                    peak: None,
                });
                self.open.last_mut().expect("just pushed")
            }
        };
        inc.members.insert(name.to_string());
        inc.ever.insert(name.to_string());
        // Configured again and failing again: a member like any other.
        inc.removed.remove(name);
        inc.last_change = at;
    }

    /// Regions where more than half of the targets are members (a region probed through a
    /// single target is down when that target is).
    fn region_level(&self, members: &BTreeSet<String>) -> BTreeSet<String> {
        let mut affected: BTreeMap<&str, usize> = BTreeMap::new();
        for m in members {
            if let Some(s) = self.targets.get(m) {
                *affected.entry(s.region.as_str()).or_default() += 1;
            }
        }
        affected
            .into_iter()
            .filter(|(r, n)| {
                let total = self.regions.get(*r).copied().unwrap_or(0);
                n * 2 > total
            })
            .map(|(r, _)| r.to_string())
            .collect()
    }

    /// The incident as it stands.
    pub fn summarize(&self, inc: &Incident) -> Summary {
        let members: Vec<&TargetState> = inc
            .members
            .iter()
            .filter_map(|m| self.targets.get(m))
            .collect();
        let down = members.iter().filter(|s| s.health == Health::Down).count();
        let degraded = members
            .iter()
            .filter(|s| s.health == Health::Degraded)
            .count();
        let level = self.region_level(&inc.members);
        let scope = match level.len() {
            0 => Scope::Target,
            1 => Scope::Region,
            _ => Scope::Global,
        };
        let regions: BTreeSet<String> = members.iter().map(|s| s.region.clone()).collect();
        let scope = if scope == Scope::Target && regions.len() > 1 && level.len() == 1 {
            // One region down and scattered failures elsewhere: still a regional story.
            Scope::Region
        } else {
            scope
        };
        let protocols: BTreeSet<Protocol> = members.iter().map(|s| s.protocol).collect();
        let mut causes: BTreeMap<(FailureClass, Phase), usize> = BTreeMap::new();
        for s in members.iter().filter(|s| s.health == Health::Down) {
            if let Some(f) = s.last_failure {
                *causes.entry(f).or_default() += 1;
            }
        }
        let cause = causes
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|((class, phase), _)| Cause {
                class: *class,
                phase: *phase,
            });
        // Members that left by coming back; removed ones did not.
        let recovered = inc.ever.len() > inc.members.len() + inc.removed.len();
        let stage = match (down, degraded) {
            (0, 0) => Stage::Resolved,
            (0, _) => Stage::Degraded,
            (_, d) if d > 0 || recovered => Stage::PartialRecovery,
            _ => Stage::Outage,
        };
        let users = Users {
            known: members.iter().filter_map(|s| s.users).sum(),
            counted: members.iter().filter(|s| s.users.is_some()).count(),
            targets: members.len(),
        };
        Summary {
            hint: self.hint(&members, cause, scope, stage),
            scope,
            regions: regions.into_iter().collect(),
            protocols: protocols.into_iter().collect(),
            targets: members.iter().map(|s| s.name.clone()).collect(),
            down,
            degraded,
            users,
            cause,
            stage,
            removed: inc.removed.iter().cloned().collect(),
        }
    }

    /// Merges incidents that reach whole regions, writes timeline entries for what changed, and
    /// closes incidents whose targets are all up.
    pub fn tick(&mut self) -> Tick {
        let mut out = Tick::default();
        self.annotate(&mut out);
        self.merge_regional(&mut out);
        let mut still_open = Vec::with_capacity(self.open.len());
        for mut inc in std::mem::take(&mut self.open) {
            let summary = self.summarize(&inc);
            if inc.members.is_empty() {
                let closed = inc.last_change;
                inc.closed_at = Some(closed);
                let took = duration(closed, inc.opened_at);
                let removed: Vec<&str> = inc.removed.iter().map(String::as_str).collect();
                let recovered = inc.ever.len() > inc.removed.len();
                let (event, status, stage) = match (removed.is_empty(), recovered) {
                    (true, _) => (
                        "resolved: every target is up".to_string(),
                        format!("resolved after {took}"),
                        Stage::Resolved,
                    ),
                    (false, true) => (
                        format!(
                            "resolved: every target still monitored is up; removed from \
                             monitoring before recovering: {}",
                            removed.join(", ")
                        ),
                        format!("resolved after {took}"),
                        Stage::Resolved,
                    ),
                    (false, false) => (
                        format!(
                            "ended: removed from monitoring before recovering: {} (no recovery \
                             seen)",
                            removed.join(", ")
                        ),
                        format!("ended after {took}: removed from monitoring"),
                        Stage::Removed,
                    ),
                };
                out.entries.push(Entry {
                    incident: inc.id,
                    at: closed,
                    event,
                    status,
                    summary: Summary {
                        stage,
                        removed: summary.removed.clone(),
                        ..inc.last.clone().unwrap_or(summary)
                    },
                    kind: EntryKind::Change,
                });
                out.incidents.push(inc);
                continue;
            }
            let event = describe(inc.last.as_ref(), &summary);
            if let Some(event) = event {
                let at = if inc.last.is_none() {
                    inc.opened_at
                } else {
                    inc.last_change
                };
                out.entries.push(Entry {
                    incident: inc.id,
                    at,
                    event,
                    summary: summary.clone(),
                    status: "ongoing".into(),
                    kind: EntryKind::Change,
                });
                let wider = inc.peak.as_ref().is_none_or(|p| {
                    (summary.scope, summary.targets.len()) > (p.scope, p.targets.len())
                });
                if wider {
                    inc.peak = Some(summary.clone());
                }
                inc.last = Some(summary);
                out.incidents.push(inc.clone());
            }
            still_open.push(inc);
        }
        self.open = still_open;
        out.states = std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|n| self.targets.get(&n).cloned())
            .collect();
        out.removed = std::mem::take(&mut self.removed);
        out
    }

    /// Region-wide incidents that meet become one global incident (the oldest absorbs the rest).
    fn merge_regional(&mut self, out: &mut Tick) {
        let regional: Vec<i64> = self
            .open
            .iter()
            .filter(|inc| !self.region_level(&inc.members).is_empty())
            .map(|inc| inc.id)
            .collect();
        if regional.len() < 2 {
            return;
        }
        let keep_id = self
            .open
            .iter()
            .filter(|inc| regional.contains(&inc.id))
            .min_by_key(|inc| (inc.opened_at, inc.id))
            .map(|inc| inc.id)
            .expect("two or more regional incidents");
        let (absorbed, rest): (Vec<Incident>, Vec<Incident>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|inc| inc.id != keep_id && regional.contains(&inc.id));
        self.open = rest;
        for mut a in absorbed {
            let summary = a.last.clone().unwrap_or_else(|| self.summarize(&a));
            let keep = self
                .open
                .iter_mut()
                .find(|inc| inc.id == keep_id)
                .expect("the kept incident stays open");
            keep.members.extend(a.members.iter().cloned());
            keep.ever.extend(a.ever.iter().cloned());
            keep.removed.extend(a.removed.iter().cloned());
            keep.opened_at = keep.opened_at.min(a.opened_at);
            keep.peak = keep.peak.take().or(a.peak.clone());
            keep.last_change = keep.last_change.max(a.last_change);
            let at = a.last_change;
            a.members.clear();
            a.closed_at = Some(at);
            out.entries.push(Entry {
                incident: a.id,
                at,
                event: format!("merged into incident #{keep_id}, now global"),
                status: format!("merged into #{keep_id}"),
                summary,
                kind: EntryKind::Change,
            });
            out.incidents.push(a);
        }
    }

    /// Open incidents.
    pub fn open_incidents(&self) -> &[Incident] {
        &self.open
    }

    /// Every target's state.
    pub fn states(&self) -> impl Iterator<Item = &TargetState> {
        self.targets.values()
    }
}

/// What changed between two summaries, in words; `None` when nothing that matters did.
fn describe(prev: Option<&Summary>, now: &Summary) -> Option<String> {
    let Some(p) = prev else {
        return Some(format!("opened: {}", counts(now)));
    };
    let mut parts = Vec::new();
    let newly_removed: Vec<&str> = now
        .removed
        .iter()
        .filter(|r| !p.removed.contains(r))
        .map(String::as_str)
        .collect();
    if !newly_removed.is_empty() {
        parts.push(format!(
            "removed from monitoring before recovering: {}",
            newly_removed.join(", ")
        ));
    }
    if p.scope != now.scope {
        parts.push(format!("scope {} → {}", p.scope, now.scope));
    }
    if p.stage != now.stage {
        parts.push(now.stage.to_string());
    }
    if p.cause != now.cause
        && let Some(c) = now.cause
    {
        parts.push(format!("cause now {} at {}", c.class, c.phase.as_str()));
    }
    let (before, after) = (p.targets.len(), now.targets.len());
    if after > before {
        parts.push(format!("grew: {}", counts(now)));
    } else if after < before {
        parts.push(format!("shrank: {}", counts(now)));
    } else if p.down != now.down || p.degraded != now.degraded {
        parts.push(counts(now));
    }
    if parts.is_empty() && (p.regions != now.regions || p.protocols != now.protocols) {
        parts.push(counts(now));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn counts(s: &Summary) -> String {
    match (s.down, s.degraded) {
        (d, 0) => format!("{d} down"),
        (0, g) => format!("{g} degraded"),
        (d, g) => format!("{d} down, {g} degraded"),
    }
}

/// Up to two names, then how many more: "a", "a and b", "a, b and 3 more".
fn few<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    match names.as_slice() {
        [] => String::new(),
        [a] => a.to_string(),
        [a, b] => format!("{a} and {b}"),
        [a, b, rest @ ..] => format!("{a}, {b} and {} more", rest.len()),
    }
}

/// `end - start`, rounded to seconds, in words.
pub fn duration(end: SystemTime, start: SystemTime) -> String {
    let secs = end
        .duration_since(start)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests;
