//! What the public page says, computed from target and incident state before any HTML: the
//! components (a service in one region), their states in the words people know, the overall
//! banner as a sentence, causes in plain words, and times both relative and absolute.
//!
//! Nothing here carries a target name, host, username or failure class: the public page is
//! built from these values alone.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::incidents::service::Snapshot;
use crate::incidents::{Health, Incident, Stage, Summary};
use crate::load::{Service, StatusSettings};
use crate::probe::classify::FailureClass;

/// A component's state, in the vocabulary of status pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    /// Everything works.
    Operational,
    /// Planned work: probes run, nobody is paged (set from maintenance windows).
    Maintenance,
    /// Working, but slow for some.
    Degraded,
    /// Failing for some users.
    PartialOutage,
    /// Failing for everyone.
    MajorOutage,
}

impl ComponentState {
    /// The words on the page.
    pub fn label(self) -> &'static str {
        match self {
            ComponentState::Operational => "Operational",
            ComponentState::Maintenance => "Under maintenance",
            ComponentState::Degraded => "Degraded performance",
            ComponentState::PartialOutage => "Partial outage",
            ComponentState::MajorOutage => "Major outage",
        }
    }

    /// The CSS class and JSON value.
    pub fn key(self) -> &'static str {
        match self {
            ComponentState::Operational => "operational",
            ComponentState::Maintenance => "maintenance",
            ComponentState::Degraded => "degraded",
            ComponentState::PartialOutage => "partial_outage",
            ComponentState::MajorOutage => "major_outage",
        }
    }

    /// From how many of a component's targets are up, slow, down or under maintenance: all
    /// down is a major outage, some down a partial one; maintenance shows only where nothing
    /// is failing outside it.
    pub fn of(c: Counts) -> ComponentState {
        let total = c.up + c.degraded + c.down + c.maintenance;
        if c.down > 0 && c.down + c.maintenance >= total {
            ComponentState::MajorOutage
        } else if c.down > 0 {
            ComponentState::PartialOutage
        } else if c.degraded > 0 {
            ComponentState::Degraded
        } else if c.maintenance > 0 {
            ComponentState::Maintenance
        } else {
            ComponentState::Operational
        }
    }
}

/// Targets of one component by health.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Up.
    pub up: usize,
    /// Up but slow.
    pub degraded: usize,
    /// Down.
    pub down: usize,
    /// In a maintenance window.
    pub maintenance: usize,
}

/// One service in one region, as the page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// Region (its configured key; the display name comes from the settings).
    pub region: String,
    /// Service.
    pub service: Service,
    /// State now.
    pub state: ComponentState,
    /// Targets by health.
    pub counts: Counts,
    /// Since when it has been in this state (its earliest failing target's change).
    pub since: Option<SystemTime>,
    /// Users behind failing targets, where configured.
    pub users: u64,
    /// The most common failure among its down targets, in plain words.
    pub cause: Option<&'static str>,
}

/// The components of a snapshot, by region then service.
pub fn components(s: &Snapshot) -> Vec<Component> {
    /// Per component: counts, earliest change, users, causes of its down targets.
    #[derive(Default)]
    struct Acc {
        counts: Counts,
        since: Option<SystemTime>,
        users: u64,
        causes: BTreeMap<&'static str, usize>,
    }
    let mut by: BTreeMap<(String, Service), Acc> = BTreeMap::new();
    for t in &s.targets {
        let e = by
            .entry((t.region.clone(), Service::of(t.protocol)))
            .or_default();
        // Planned work: neither up nor an outage, and no cause or users to tell.
        if s.under_maintenance.contains(&t.name) {
            e.counts.maintenance += 1;
            continue;
        }
        match t.health {
            Health::Up => e.counts.up += 1,
            Health::Degraded => e.counts.degraded += 1,
            Health::Down => e.counts.down += 1,
        }
        if t.health != Health::Up {
            e.since = Some(e.since.map_or(t.since, |s| s.min(t.since)));
            e.users += t.users.unwrap_or(0);
        }
        if t.health == Health::Down
            && let Some((class, _)) = t.last_failure
        {
            *e.causes.entry(plain_cause(class)).or_default() += 1;
        }
    }
    by.into_iter()
        .map(
            |(
                (region, service),
                Acc {
                    counts,
                    since,
                    users,
                    causes,
                },
            )| {
                let state = ComponentState::of(counts);
                Component {
                    region,
                    service,
                    state,
                    counts,
                    since: (state != ComponentState::Operational)
                        .then_some(since)
                        .flatten(),
                    users,
                    cause: causes
                        .into_iter()
                        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
                        .map(|(c, _)| c),
                }
            },
        )
        .collect()
}

/// A failure class as the people whose mail it is would say it; exhaustive, so a new class
/// must be worded.
pub fn plain_cause(c: FailureClass) -> &'static str {
    use FailureClass as C;
    match c {
        C::DnsNxdomain | C::DnsFailure => "the mail servers' addresses cannot be looked up",
        C::NullMx => "the domain is set up to accept no mail from the internet",
        C::Throttled => "the provider is limiting how often we check (not an outage)",
        C::ConnectRefused => "the mail service is not running",
        C::ConnectTimeout | C::NetworkUnreachable => {
            "the mail servers cannot be reached (a network problem)"
        }
        C::ConnectionClosed => "connections to the mail servers are being dropped",
        C::TlsHandshakeFailed | C::TlsCertInvalid | C::StarttlsUnavailable => {
            "secure connections to the mail servers fail"
        }
        C::TlsCertExpired => "the mail servers' security certificate has expired",
        C::GreetingTimeout | C::Timeout => "the mail servers are not responding in time",
        C::ProtocolError | C::Unrecognized => "the mail servers give unexpected answers",
        C::ServerUnavailable => "the mail servers are overloaded or temporarily unavailable",
        C::AuthRejected
        | C::AuthTokenFailed
        | C::AuthRequired
        | C::AuthUnavailable
        | C::AuthPolicy => "signing in fails",
        C::MessageRejected => "messages are being refused",
        C::MailboxError => "mailboxes cannot be opened",
        C::DeliveryTimeout => "mail is delayed",
        C::HttpStatus => "the web service answers with errors",
        C::ContentMismatch => "the web service shows the wrong page",
        C::ProberError => "unknown",
    }
}

/// The cause of an incident in plain words.
pub fn incident_cause(s: &Summary) -> &'static str {
    match (s.cause, s.stage) {
        (Some(c), _) => plain_cause(c.class),
        (None, Stage::Degraded) => "slow responses",
        (None, _) => "not known yet",
    }
}

/// Where an incident stands, in words people know.
pub fn stage_label(s: Stage) -> &'static str {
    match s {
        Stage::Outage => "Outage",
        Stage::PartialRecovery => "Partly recovered, slow for some",
        Stage::Degraded => "Working again, but slow",
        Stage::Resolved => "Resolved",
        Stage::Removed => "Ended",
    }
}

/// The services an incident touches.
pub fn services(s: &Summary) -> Vec<Service> {
    let mut v: Vec<Service> = s.protocols.iter().map(|p| Service::of(*p)).collect();
    v.sort();
    v.dedup();
    v
}

/// "a", "a and b", "a, b and c".
pub fn and_list<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [a] => a.as_ref().to_string(),
        [rest @ .., last] => format!(
            "{} and {}",
            rest.iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", "),
            last.as_ref()
        ),
    }
}

/// The headline of an incident: "Reading mail and Sending mail in Europe".
pub fn incident_title(s: &Summary, settings: &StatusSettings) -> String {
    let names: Vec<&str> = services(s).into_iter().map(|v| settings.name(v)).collect();
    let regions: Vec<&str> = s.regions.iter().map(|r| settings.region(r)).collect();
    if regions.is_empty() {
        and_list(&names)
    } else {
        format!("{} in {}", and_list(&names), and_list(&regions))
    }
}

/// One timeline row in plain words: what people could and could not do after the change.
pub fn entry_text(s: &Summary) -> String {
    let verbs: Vec<&str> = services(s).into_iter().map(Service::verb).collect();
    let what = or_list(&verbs);
    match s.stage {
        Stage::Outage => format!("Users affected cannot {what}."),
        Stage::PartialRecovery => {
            format!(
                "Partly recovered: some users can {what} again, slowly for some; others still cannot."
            )
        }
        Stage::Degraded => format!("Users can {what} again, but it is slow."),
        Stage::Resolved => "Resolved: everything works normally again.".to_string(),
        Stage::Removed => "Ended: no longer monitored.".to_string(),
    }
}

/// "a", "a or b", "a, b or c".
fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [a] => a.to_string(),
        [rest @ .., last] => format!("{} or {}", rest.join(", "), last),
    }
}

/// The overall banner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Banner {
    /// The worst component state.
    pub state: ComponentState,
    /// The sentence.
    pub text: String,
}

/// The banner sentence: the worst state, where, what people cannot do, and since when.
///
/// "Partial outage in Europe: some users cannot read mail since 09:12, 14 min".
pub fn banner(components: &[Component], settings: &StatusSettings, clock: &Clock) -> Banner {
    let worst = components
        .iter()
        .map(|c| c.state)
        .max()
        .unwrap_or(ComponentState::Operational);
    if worst == ComponentState::Operational {
        return Banner {
            state: worst,
            text: "All services are operational".into(),
        };
    }
    let hit: Vec<&Component> = components.iter().filter(|c| c.state == worst).collect();
    let mut regions: Vec<&str> = hit.iter().map(|c| settings.region(&c.region)).collect();
    regions.dedup();
    let mut services: Vec<Service> = hit.iter().map(|c| c.service).collect();
    services.sort();
    services.dedup();
    let verbs: Vec<&str> = services.iter().map(|s| s.verb()).collect();
    let since = hit.iter().filter_map(|c| c.since).min();
    let what = match worst {
        ComponentState::MajorOutage => format!("users cannot {}", or_list(&verbs)),
        ComponentState::PartialOutage => format!("some users cannot {}", or_list(&verbs)),
        ComponentState::Degraded => format!("slow for some users to {}", or_list(&verbs)),
        ComponentState::Maintenance => {
            format!("planned work; users may be unable to {}", or_list(&verbs))
        }
        ComponentState::Operational => unreachable!("handled above"),
    };
    let mut text = format!("{} in {}: {what}", worst.label(), and_list(&regions));
    if let Some(t) = since {
        text.push_str(&format!(" since {}, {}", clock.time(t), clock.ago(t)));
    }
    Banner { state: worst, text }
}

/// Times as the page shows them: absolute in the configured zone, and relative to now.
pub struct Clock {
    /// Now.
    pub now: SystemTime,
    /// The zone.
    pub tz: jiff::tz::TimeZone,
}

impl Clock {
    /// A clock at `now` in `tz`.
    pub fn new(now: SystemTime, tz: jiff::tz::TimeZone) -> Clock {
        Clock { now, tz }
    }

    fn zoned(&self, t: SystemTime) -> Option<jiff::ZonedDateTime> {
        jiff::Timestamp::try_from(t)
            .ok()
            .map(|ts| ts.to_zoned_datetime(self.tz.clone()))
    }

    /// "09:12" today, "Mon 28 Nov 09:12" on another day.
    pub fn time(&self, t: SystemTime) -> String {
        let (Some(z), Some(now)) = (self.zoned(t), self.zoned(self.now)) else {
            return "?".into();
        };
        if z.date() == now.date() {
            z.strftime("%H:%M").to_string()
        } else if z.year() == now.year() {
            z.strftime("%a %-d %b %H:%M").to_string()
        } else {
            z.strftime("%a %-d %b %Y %H:%M").to_string()
        }
    }

    /// "2026-11-30 09:12 CET": for a tooltip or a report.
    pub fn full(&self, t: SystemTime) -> String {
        self.zoned(t)
            .map(|z| z.strftime("%Y-%m-%d %H:%M:%S %Z").to_string())
            .unwrap_or_else(|| "?".into())
    }

    /// A day heading: "Mon 30 Nov 2026".
    pub fn day(&self, t: SystemTime) -> String {
        self.zoned(t)
            .map(|z| z.strftime("%a %-d %b %Y").to_string())
            .unwrap_or_else(|| "?".into())
    }

    /// How long ago: "14 min", "2 h 5 min", "3 days".
    pub fn ago(&self, t: SystemTime) -> String {
        span(self.now.duration_since(t).unwrap_or(Duration::ZERO))
    }
}

/// A duration in words people read at a glance: "40 s", "14 min", "2 h 5 min", "3 days 4 h".
pub fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => match (s % 3600) / 60 {
            0 => format!("{} h", s / 3600),
            m => format!("{} h {m} min", s / 3600),
        },
        _ => {
            let days = s / 86_400;
            let h = (s % 86_400) / 3600;
            let unit = if days == 1 { "day" } else { "days" };
            if h == 0 {
                format!("{days} {unit}")
            } else {
                format!("{days} {unit} {h} h")
            }
        }
    }
}

/// An incident for the public page: its headline, where it stands, and how long it lasted.
pub fn duration_text(inc: &Incident, clock: &Clock) -> String {
    let end = inc.closed_at.unwrap_or(clock.now);
    span(end.duration_since(inc.opened_at).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests;
