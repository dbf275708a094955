//! Incidents: targets that are not up, grouped into the outage story an admin tells.
//!
//! A target that leaves `up` joins the open incident of its region (or the global one), or opens
//! a new one. An incident's scope follows from its members: `target` (one or a few targets),
//! `region` (more than half of a region's targets), `global` (two or more regions that way); region incidents that meet merge into one global incident. Its stage
//! follows too: `outage`, `partial recovery` (some members back, or back but slow),
//! `degraded: slow access`, and `resolved` once every member is up again.
//!
//! Timeline entries are written by [`Engine::tick`], which compares each incident with what its
//! timeline last said: a burst of failures within one tick is one entry, not hundreds.

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
        }
    }

    /// The configured targets (at start and on reload): new ones start up, removed ones leave
    /// their incidents, changed ones keep their health.
    pub fn set_targets(&mut self, targets: &[Arc<Target>], now: SystemTime) {
        let wanted: BTreeMap<&str, &Arc<Target>> =
            targets.iter().map(|t| (t.name.as_str(), t)).collect();
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
            let state = self.targets.entry(t.name.clone()).or_insert_with(|| {
                TargetState::new(&t.name, &t.region, t.protocol(), t.users, now)
            });
            state.region = t.region.clone();
            state.protocol = t.protocol();
            state.users = t.users;
            let endpoint = t.spec.endpoint();
            self.reach.insert(
                t.name.clone(),
                Reach {
                    host: endpoint.map(|e| e.host.clone()),
                    port: endpoint.map_or(0, |e| e.port),
                    timeout: t.timeout,
                },
            );
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
            });
            out.incidents.push(a);
        }
    }

    /// The likely cause, in the words an admin would use in the outage report: what the
    /// evidence shows, narrowed only where other targets' results allow it (a dropped SYN looks
    /// the same from a dead host, a dead path and a full accept queue).
    fn hint(
        &self,
        members: &[&TargetState],
        cause: Option<Cause>,
        scope: Scope,
        stage: Stage,
    ) -> String {
        use FailureClass as C;
        let Some(c) = cause else {
            return if stage == Stage::Degraded {
                "slow access: overload, a struggling backend, or a slow path".into()
            } else {
                "unknown".into()
            };
        };
        let wide = scope != Scope::Target;
        // The members down for the dominant cause: what the hint speaks about.
        let failing: Vec<&TargetState> = members
            .iter()
            .filter(|s| s.health == Health::Down && s.last_failure == Some((c.class, c.phase)))
            .copied()
            .collect();
        let hosts: BTreeSet<&str> = failing
            .iter()
            .map(|s| {
                self.reach
                    .get(&s.name)
                    .and_then(|r| r.host.as_deref())
                    .unwrap_or(s.name.as_str())
            })
            .collect();
        let s = match c.class {
            C::ConnectTimeout => return self.connect_timeout_hint(&failing, wide),
            C::NetworkUnreachable if wide => {
                "no route to the hosts across the region: a network or datacenter problem"
            }
            C::NetworkUnreachable => {
                "no route to the host: the host or the network path to it is down (an ICMP \
                 unreachable, or no local route)"
            }
            C::ConnectRefused if wide => {
                "mail service not running across the region (crash, maintenance)"
            }
            C::ConnectRefused => "mail service not running or port closed",
            C::ConnectionClosed => {
                "connections closed mid-dialogue: the server (crash, overload, connection \
                 limits) or something on the path (proxy, firewall)"
            }
            C::DnsNxdomain => {
                "DNS: the name does not exist (mistyped, an expired domain, or a broken zone)"
            }
            C::DnsFailure => "DNS resolution failing",
            C::TlsCertExpired if hosts.len() > 1 => {
                return format!(
                    "certificates of {} hosts expired at once: the prober's clock, or a shared \
                     certificate not renewed",
                    hosts.len()
                );
            }
            C::TlsCertExpired => {
                "certificate expired: not renewed (or the prober's clock is wrong)"
            }
            C::TlsCertInvalid => {
                "certificate not trusted or not for this name: a wrong certificate deployed, an \
                 intercepting proxy, or changed trust settings"
            }
            C::TlsHandshakeFailed => {
                "TLS handshake failing: the server's TLS configuration (versions, ciphers) or \
                 something on the path"
            }
            C::StarttlsUnavailable => "STARTTLS disabled or stripped on the path",
            C::GreetingTimeout => "server overloaded or hung",
            C::Timeout => match c.phase {
                Phase::Login | Phase::Auth => {
                    "no answer to the login before the deadline: a slow or hung authentication \
                     backend, or a server that delays rejecting a password longer than the \
                     timeout allows (see Timeouts in the README)"
                }
                _ => "server overloaded or hung (or a slow backend)",
            },
            C::ProtocolError => "server answering garbage (misrouted port, broken proxy, bug)",
            C::ServerUnavailable => {
                "the server says it cannot serve now (overload, maintenance, connection or rate \
                 limits)"
            }
            C::AuthRejected if wide || failing.len() > 1 => {
                "credentials rejected on several targets: a shared authentication backend \
                 (directory, SASL) failing, or a shared password changed"
            }
            C::AuthRejected => "probe credentials rejected (password changed or account locked?)",
            C::AuthTokenFailed => {
                "no OAuth2 token: the identity provider failing or refusing the client's \
                 credentials (an expired secret?), not the mail servers"
            }
            C::AuthRequired => "server demands authentication or TLS first (configuration change)",
            C::AuthUnavailable => {
                "the server cannot check credentials now, or offers no way to (AUTH not \
                 advertised, a temporary authentication failure): often its SASL backend is \
                 down, or its configuration changed"
            }
            C::AuthPolicy => {
                "sign-in refused by the provider's policy before the credentials counted (SMTP \
                 AUTH or Basic auth switched off, security defaults, an app password required)"
            }
            C::MessageRejected => "mail refused by policy (recipient, quota, blocklist)",
            C::MailboxError => {
                "the mailbox could not be opened: storage (filesystem, quota, index), or it no \
                 longer exists"
            }
            C::DeliveryTimeout => "mail accepted but not delivered: queue or delivery backend",
            C::HttpStatus => "web frontend returning errors",
            C::ContentMismatch => "web frontend serving the wrong page (maintenance or error page)",
            C::Unrecognized => "an answer mailprobe does not recognise (see the probe's detail)",
            // Never reaches the timeline (the incident service drops prober faults).
            C::ProberError => "mailprobe could not probe (its own fault, not the target's)",
        };
        s.into()
    }

    /// No TCP answer: a dead host, a dead path and a listener whose accept queue is full (it
    /// drops SYNs) look the same from here. Other targets on the same host that answer rule out
    /// the host and the path; every probed port of a host silent points at them.
    fn connect_timeout_hint(&self, failing: &[&TargetState], wide: bool) -> String {
        let names: BTreeSet<&str> = failing.iter().map(|s| s.name.as_str()).collect();
        let reach: Vec<&Reach> = failing
            .iter()
            .filter_map(|s| self.reach.get(&s.name))
            .collect();
        let timeouts: BTreeSet<Duration> = reach.iter().map(|r| r.timeout).collect();
        let within = match (timeouts.first(), timeouts.last()) {
            (Some(a), Some(b)) if a == b => {
                format!("within {}", humantime::format_duration(*a))
            }
            (Some(a), Some(b)) => format!(
                "within {} to {}",
                humantime::format_duration(*a),
                humantime::format_duration(*b)
            ),
            _ => "before the deadline".to_string(),
        };
        // Silent ports by host, and the targets on those hosts whose last probe succeeded.
        let mut silent: BTreeMap<&str, BTreeSet<u16>> = BTreeMap::new();
        for r in &reach {
            if let Some(h) = r.host.as_deref() {
                silent.entry(h).or_default().insert(r.port);
            }
        }
        let mut answering: BTreeMap<&str, Vec<(&str, u16)>> = BTreeMap::new();
        let mut probed: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, r) in &self.reach {
            let Some(h) = r.host.as_deref().filter(|h| silent.contains_key(h)) else {
                continue;
            };
            *probed.entry(h).or_default() += 1;
            let answers = self.targets.get(name).is_some_and(|s| s.successes > 0);
            if answers && !names.contains(name.as_str()) {
                answering
                    .entry(h)
                    .or_default()
                    .push((name.as_str(), r.port));
            }
        }
        let ports = |p: &mut dyn Iterator<Item = u16>| {
            p.map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
        };
        match silent.len() {
            0 if wide => format!(
                "no TCP answer {within} across the region: a network or datacenter problem, or \
                 the hosts or their listeners"
            ),
            0 => format!("no TCP answer {within}: the host, the path, or an overloaded listener"),
            1 => {
                let (host, mine) = silent.iter().next().expect("one host");
                if let Some(peers) = answering.get(host) {
                    let (listeners, are) = if mine.len() == 1 {
                        ("listener on port", "is")
                    } else {
                        ("listeners on ports", "are")
                    };
                    format!(
                        "no TCP answer {within}, but {} on the same host {} (port{} {}): the host \
                         and the path to it work, so the {listeners} {} {are} overloaded (a \
                         full accept queue drops connections just as a dead path does) or \
                         filtered",
                        few(peers.iter().map(|(n, _)| *n)),
                        if peers.len() == 1 {
                            "answers"
                        } else {
                            "answer"
                        },
                        if peers.len() == 1 { "" } else { "s" },
                        ports(&mut peers.iter().map(|(_, p)| *p)),
                        ports(&mut mine.iter().copied()),
                    )
                } else if mine.len() > 1 && probed.get(host) == Some(&reach.len()) {
                    format!(
                        "no TCP answer {within} from {host} on any probed port ({}): the host, \
                         the path to it, or every listener overloaded",
                        ports(&mut mine.iter().copied())
                    )
                } else {
                    format!("no TCP answer {within}: the host, the path, or an overloaded listener")
                }
            }
            n => {
                let base = format!(
                    "no TCP answer {within} from {n} hosts: a network or datacenter problem they \
                     share, or each host, path or listener"
                );
                let peers = few(answering.values().flatten().map(|(name, _)| *name));
                match answering.len() {
                    0 => base,
                    k if k == n => format!(
                        "no TCP answer {within} from {n} hosts, but other targets on each of them \
                         answer ({peers}): the hosts and paths work, so their listeners are \
                         overloaded or filtered"
                    ),
                    k => format!(
                        "{base}; on {k} of them other targets answer ({peers}): there the \
                         listener rather than the host or the path"
                    ),
                }
            }
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
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    /// Targets `{region}-{protocol}-{i}` described as (region, protocol, users).
    fn engine(targets: &[(&str, Protocol, Option<u64>)]) -> Engine {
        let mut e = Engine::new(Policy::default(), Vec::new(), Vec::new(), 1);
        let states: Vec<TargetState> = targets
            .iter()
            .enumerate()
            .map(|(i, (region, p, users))| {
                TargetState::new(
                    &format!("{region}-{}-{i}", p.as_str()),
                    region,
                    *p,
                    *users,
                    t(0),
                )
            })
            .collect();
        for s in states {
            *e.regions.entry(s.region.clone()).or_default() += 1;
            e.targets.insert(s.name.clone(), s);
        }
        e
    }

    fn names(e: &Engine, region: &str) -> Vec<String> {
        e.targets
            .values()
            .filter(|s| s.region == region)
            .map(|s| s.name.clone())
            .collect()
    }

    /// Three probes of every named target with the same result at second `at`.
    fn three(
        e: &mut Engine,
        targets: &[String],
        at: u64,
        result: Result<bool, (FailureClass, Phase)>,
    ) {
        for k in 0..3 {
            for n in targets {
                e.observe(&Observation {
                    target: n.clone(),
                    at: t(at + k),
                    result,
                });
            }
        }
    }

    const TIMEOUT: Result<bool, (FailureClass, Phase)> =
        Err((FailureClass::ConnectTimeout, Phase::Connect));
    const AUTH: Result<bool, (FailureClass, Phase)> =
        Err((FailureClass::AuthRejected, Phase::Login));
    const SLOW: Result<bool, (FailureClass, Phase)> = Ok(true);
    const FAST: Result<bool, (FailureClass, Phase)> = Ok(false);

    #[test]
    fn the_worldwide_outage_story() {
        let mut e = engine(&[
            ("eu", Protocol::Imap, Some(1000)),
            ("eu", Protocol::Smtp, Some(1000)),
            ("us", Protocol::Imap, Some(2000)),
            ("us", Protocol::Smtp, Some(2000)),
            ("asia", Protocol::Imap, None),
            ("asia", Protocol::Smtp, None),
        ]);
        let all: Vec<String> = e.targets.keys().cloned().collect();
        let (eu, us, asia) = (names(&e, "eu"), names(&e, "us"), names(&e, "asia"));

        // 1. Every region down: connections time out. One global incident.
        three(&mut e, &all, 100, TIMEOUT);
        let tick = e.tick();
        assert_eq!(e.open_incidents().len(), 1, "{:?}", e.open_incidents());
        let opened = tick
            .entries
            .iter()
            .find(|x| x.event.starts_with("opened"))
            .unwrap();
        assert_eq!(opened.summary.scope, Scope::Global);
        assert_eq!(opened.summary.stage, Stage::Outage);
        assert_eq!(opened.summary.regions, ["asia", "eu", "us"]);
        assert_eq!(opened.summary.users.to_string(), "at least 6000");
        assert_eq!(
            opened.summary.cause.unwrap().class,
            FailureClass::ConnectTimeout
        );
        assert!(opened.summary.hint.contains("network or datacenter"));
        assert_eq!(opened.status, "ongoing");

        // 2. Europe and the US come back, but slow: partial recovery, asia still down.
        three(&mut e, &eu, 200, SLOW);
        three(&mut e, &us, 200, SLOW);
        let tick = e.tick();
        let entry = &tick.entries[0];
        assert_eq!(entry.summary.stage, Stage::PartialRecovery, "{entry:?}");
        assert_eq!((entry.summary.down, entry.summary.degraded), (2, 4));
        assert!(entry.event.contains("partial recovery"), "{}", entry.event);

        // 3. Asia's failure changes: the login is now refused (the directory behind it).
        three(&mut e, &asia, 300, AUTH);
        let tick = e.tick();
        let entry = &tick.entries[0];
        assert_eq!(
            entry.summary.cause.unwrap().class,
            FailureClass::AuthRejected
        );
        assert!(
            entry.event.contains("cause now auth_rejected at login"),
            "{}",
            entry.event
        );
        assert!(
            entry.summary.hint.contains("directory"),
            "{}",
            entry.summary.hint
        );

        // 4. Asia back (slow too): degraded, slow access.
        three(&mut e, &asia, 400, SLOW);
        let tick = e.tick();
        assert_eq!(tick.entries[0].summary.stage, Stage::Degraded);
        assert!(tick.entries[0].summary.hint.starts_with("slow access"));

        // 5. Everything fast again: resolved, with its duration.
        three(&mut e, &all, 500, FAST);
        let tick = e.tick();
        assert!(e.open_incidents().is_empty());
        let last = tick.entries.last().unwrap();
        assert_eq!(last.summary.stage, Stage::Resolved);
        assert_eq!(last.at, t(501));
        assert_eq!(last.status, "resolved after 6m 39s");
        let closed = tick
            .incidents
            .iter()
            .find(|i| i.closed_at.is_some())
            .unwrap();
        assert_eq!(closed.opened_at, t(102));
    }

    #[test]
    fn flapping_targets_open_no_incident() {
        let mut e = engine(&[("eu", Protocol::Imap, None), ("eu", Protocol::Smtp, None)]);
        let all: Vec<String> = e.targets.keys().cloned().collect();
        for round in 0..30u64 {
            let r = if round % 3 == 2 { FAST } else { TIMEOUT };
            for n in &all {
                e.observe(&Observation {
                    target: n.clone(),
                    at: t(round),
                    result: r,
                });
            }
            assert!(e.tick().entries.is_empty(), "round {round}");
        }
        assert!(e.open_incidents().is_empty());
    }

    #[test]
    fn one_target_of_many_is_target_scope_and_a_burst_is_one_entry() {
        let mut e = engine(&[
            ("eu", Protocol::Imap, Some(10)),
            ("eu", Protocol::Imap, Some(10)),
            ("eu", Protocol::Imap, Some(10)),
            ("eu", Protocol::Imap, Some(10)),
        ]);
        let eu = names(&e, "eu");
        three(
            &mut e,
            &eu[..1],
            0,
            Err((FailureClass::TlsCertExpired, Phase::Tls)),
        );
        let tick = e.tick();
        assert_eq!(tick.entries.len(), 1);
        let s = &tick.entries[0].summary;
        assert_eq!(s.scope, Scope::Target);
        assert_eq!(
            s.hint,
            "certificate expired: not renewed (or the prober's clock is wrong)"
        );
        assert_eq!(s.users.to_string(), "10");
        // Two more in one tick: one entry, and now most of the region: region scope.
        three(&mut e, &eu[1..3], 10, TIMEOUT);
        let tick = e.tick();
        assert_eq!(tick.entries.len(), 1, "{:?}", tick.entries);
        assert_eq!(tick.entries[0].summary.scope, Scope::Region);
        assert!(tick.entries[0].event.contains("scope target → region"));
        // Nothing changes: nothing written.
        assert!(e.tick().entries.is_empty());
    }

    #[test]
    fn region_incidents_that_meet_merge_into_one_global_incident() {
        let mut e = engine(&[
            ("eu", Protocol::Imap, None),
            ("eu", Protocol::Imap, None),
            ("us", Protocol::Imap, None),
            ("us", Protocol::Imap, None),
        ]);
        let (eu, us) = (names(&e, "eu"), names(&e, "us"));
        three(&mut e, &eu, 0, TIMEOUT);
        e.tick();
        three(&mut e, &us[..1], 10, TIMEOUT);
        e.tick();
        assert_eq!(
            e.open_incidents().len(),
            2,
            "us has a target-scope incident of its own"
        );
        three(&mut e, &us[1..], 20, TIMEOUT);
        let tick = e.tick();
        assert_eq!(e.open_incidents().len(), 1);
        assert!(
            tick.entries
                .iter()
                .any(|x| x.event.starts_with("merged into incident #1"))
        );
        let open = &e.open_incidents()[0];
        assert_eq!(open.id, 1);
        assert_eq!(e.summarize(open).scope, Scope::Global);
    }

    /// Targets as the config gives them: (name, region, protocol, host, port).
    fn configured(targets: &[(&str, &str, &str, &str, u16)]) -> Vec<Arc<Target>> {
        let text: String = targets
            .iter()
            .map(|(name, region, protocol, host, port)| {
                format!(
                    "[[target]]\nname = \"{name}\"\nregion = \"{region}\"\nprotocol = \"{protocol}\"\n\
                     host = \"{host}\"\nport = {port}\nusername = \"u\"\npassword_env = \"HOME\"\n"
                )
            })
            .collect();
        crate::load::parse(std::path::Path::new("p.toml"), &text)
            .unwrap()
            .targets
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn targets_removed_while_down_end_as_removed_never_as_recovered() {
        let all = configured(&[
            ("imap-a", "eu", "imap", "a.example", 993),
            ("imap-b", "eu", "imap", "b.example", 993),
            ("imap-c", "us", "imap", "c.example", 993),
        ]);
        let mut e = Engine::new(Policy::default(), Vec::new(), Vec::new(), 1);
        e.set_targets(&all, t(0));
        three(&mut e, &strings(&["imap-a", "imap-b"]), 10, TIMEOUT);
        assert_eq!(e.tick().entries[0].event, "opened: 2 down");

        // imap-a leaves the config while down: the incident shrinks, but nothing recovered.
        e.set_targets(&all[1..], t(20));
        let tick = e.tick();
        assert_eq!(tick.entries.len(), 1, "{:?}", tick.entries);
        let entry = &tick.entries[0];
        assert_eq!(
            entry.event,
            "removed from monitoring before recovering: imap-a; shrank: 1 down"
        );
        assert_eq!(entry.summary.stage, Stage::Outage);
        assert_eq!(entry.status, "ongoing");

        // The last one goes too (a reload that drops them): the incident ends, unresolved.
        e.set_targets(&all[2..], t(30));
        let tick = e.tick();
        assert!(e.open_incidents().is_empty());
        let last = tick.entries.last().unwrap();
        assert_eq!(
            last.event,
            "ended: removed from monitoring before recovering: imap-a, imap-b (no recovery seen)"
        );
        assert_eq!(last.status, "ended after 18s: removed from monitoring");
        assert_eq!(
            last.summary.stage.to_string(),
            "ended: removed from monitoring"
        );
        assert!(tick.entries.iter().all(|x| !x.event.contains("resolved")));
    }

    #[test]
    fn an_incident_whose_other_targets_recovered_names_the_removed_one() {
        let all = configured(&[
            ("imap-a", "eu", "imap", "a.example", 993),
            ("imap-b", "eu", "imap", "b.example", 993),
        ]);
        let mut e = Engine::new(Policy::default(), Vec::new(), Vec::new(), 1);
        e.set_targets(&all, t(0));
        three(&mut e, &strings(&["imap-a", "imap-b"]), 10, TIMEOUT);
        e.tick();
        three(&mut e, &strings(&["imap-a"]), 20, FAST);
        assert_eq!(e.tick().entries[0].summary.stage, Stage::PartialRecovery);
        e.set_targets(&all[..1], t(30));
        let tick = e.tick();
        assert!(e.open_incidents().is_empty());
        let last = tick.entries.last().unwrap();
        assert_eq!(
            last.event,
            "resolved: every target still monitored is up; removed from monitoring before \
             recovering: imap-b"
        );
        assert_eq!(last.status, "resolved after 18s");
        assert_eq!(last.summary.stage, Stage::Resolved);
    }

    /// The hint of the one open incident, after a tick.
    fn hint_now(e: &mut Engine) -> String {
        e.tick();
        let inc = e.open_incidents()[0].clone();
        e.summarize(&inc).hint
    }

    #[test]
    fn a_connect_timeout_hint_claims_no_more_than_the_evidence() {
        let all = configured(&[
            ("smtp-a", "eu", "smtp", "mail.example", 587),
            ("imap-a", "eu", "imap", "mail.example", 993),
            ("imap-b", "eu", "imap", "other.example", 993),
            ("imap-c", "eu", "imap", "third.example", 993),
            ("imap-d", "eu", "imap", "fourth.example", 993),
        ]);
        let mut e = Engine::new(Policy::default(), Vec::new(), Vec::new(), 1);
        e.set_targets(&all, t(0));
        three(&mut e, &strings(&["imap-a", "imap-b", "imap-c"]), 0, FAST);

        // SMTP times out while IMAP on the same host answers: the soak's throttled listener.
        three(&mut e, &strings(&["smtp-a"]), 10, TIMEOUT);
        assert_eq!(
            hint_now(&mut e),
            "no TCP answer within 10s, but imap-a on the same host answers (port 993): the host \
             and the path to it work, so the listener on port 587 is overloaded (a full accept \
             queue drops connections just as a dead path does) or filtered"
        );

        // Nothing on that host answers any more: host, path or listeners, no narrowing.
        three(&mut e, &strings(&["imap-a"]), 20, TIMEOUT);
        assert_eq!(
            hint_now(&mut e),
            "no TCP answer within 10s from mail.example on any probed port (587, 993): the host, \
             the path to it, or every listener overloaded"
        );

        // Another host times out as well: several hosts, nothing to narrow it.
        three(&mut e, &strings(&["imap-b"]), 30, TIMEOUT);
        assert_eq!(
            hint_now(&mut e),
            "no TCP answer within 10s from 2 hosts: a network or datacenter problem they share, \
             or each host, path or listener"
        );
    }

    #[test]
    fn a_lone_connect_timeout_names_every_possibility() {
        let all = configured(&[
            ("smtp-a", "eu", "smtp", "mail.example", 587),
            ("imap-b", "eu", "imap", "other.example", 993),
        ]);
        let mut e = Engine::new(Policy::default(), Vec::new(), Vec::new(), 1);
        e.set_targets(&all, t(0));
        // imap-b answers, but on another host: it says nothing about mail.example.
        three(&mut e, &strings(&["imap-b"]), 0, FAST);
        three(&mut e, &strings(&["smtp-a"]), 10, TIMEOUT);
        assert_eq!(
            hint_now(&mut e),
            "no TCP answer within 10s: the host, the path, or an overloaded listener"
        );
    }

    #[test]
    fn hints_for_other_classes_stay_within_the_evidence() {
        let all = configured(&[
            ("imap-a", "eu", "imap", "a.example", 993),
            ("imap-b", "eu", "imap", "b.example", 993),
            ("imap-c", "eu", "imap", "c.example", 993),
            ("imap-d", "eu", "imap", "d.example", 993),
        ]);
        let fresh = || {
            let mut e = Engine::new(Policy::default(), Vec::new(), Vec::new(), 1);
            e.set_targets(&all, t(0));
            e
        };
        let case = |names: &[&str], class: FailureClass, phase: Phase| {
            let mut e = fresh();
            three(&mut e, &strings(names), 10, Err((class, phase)));
            hint_now(&mut e)
        };
        // A login that times out may be a server slow to reject a password.
        assert_eq!(
            case(&["imap-a"], FailureClass::Timeout, Phase::Login),
            "no answer to the login before the deadline: a slow or hung authentication \
             backend, or a server that delays rejecting a password longer than the timeout \
             allows (see Timeouts in the README)"
        );
        // One expired certificate is a missed renewal; several at once point at the clock too.
        assert_eq!(
            case(&["imap-a"], FailureClass::TlsCertExpired, Phase::Tls),
            "certificate expired: not renewed (or the prober's clock is wrong)"
        );
        assert_eq!(
            case(
                &["imap-a", "imap-b", "imap-c"],
                FailureClass::TlsCertExpired,
                Phase::Tls
            ),
            "certificates of 3 hosts expired at once: the prober's clock, or a shared \
             certificate not renewed"
        );
        // Several targets rejecting the probe's credentials: a backend, or a shared password.
        assert_eq!(
            case(
                &["imap-a", "imap-b"],
                FailureClass::AuthRejected,
                Phase::Login
            ),
            "credentials rejected on several targets: a shared authentication backend \
             (directory, SASL) failing, or a shared password changed"
        );
        assert_eq!(
            case(&["imap-a"], FailureClass::DnsNxdomain, Phase::Dns),
            "DNS: the name does not exist (mistyped, an expired domain, or a broken zone)"
        );
    }

    #[test]
    fn users_unknown_when_not_configured() {
        let mut e = engine(&[("eu", Protocol::Imap, None)]);
        let eu = names(&e, "eu");
        three(&mut e, &eu, 0, TIMEOUT);
        let tick = e.tick();
        assert_eq!(tick.entries[0].summary.users.to_string(), "unknown");
    }
}
