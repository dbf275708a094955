//! The provider's own status beside ours: what Microsoft 365 (Graph service health), Google
//! Workspace (the Status Dashboard feed) or any Atlassian Statuspage says about the service
//! the targets live on, polled on its own interval by its own task.
//!
//! A consumer-side source: it uses `config`, `tls` and `oauth2`, and the incident service and
//! the status page use it; it knows nothing of the daemon or the probes. A feed that cannot be
//! read is not a mail outage: it is counted and logged on its own, never an incident.
//!
//! - [`feed`]: one bounded, timed HTTP GET of a feed and its failure reasons.
//! - [`statuspage`], [`microsoft`], [`google`]: each feed's documented shape into [`Issue`]s.
//! - [`poller`]: the task polling every `[[provider]]`.
//! - [`matching`]: which provider issue belongs to which of our incidents, and the words for it.

pub mod feed;
pub mod google;
pub mod matching;
pub mod microsoft;
pub mod poller;
pub mod statuspage;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::oauth2::OAuth2Spec;

/// Which kind of status feed a `[[provider]]` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Microsoft 365 service health through Graph (`ServiceHealth.Read.All`).
    Microsoft,
    /// The Google Workspace Status Dashboard's public incidents feed.
    Google,
    /// Any Atlassian Statuspage's public v2 API.
    Statuspage,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::Microsoft, Kind::Google, Kind::Statuspage];

    /// The name in the config (`kind = "..."`) and in target `provider` keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Microsoft => "microsoft",
            Kind::Google => "google",
            Kind::Statuspage => "statuspage",
        }
    }

    /// How people name the provider in a sentence ("Microsoft EX123456 ...").
    pub fn display(self) -> &'static str {
        match self {
            Kind::Microsoft => "Microsoft",
            Kind::Google => "Google",
            Kind::Statuspage => "Statuspage",
        }
    }

    /// The feed's public base URL when none is configured (Statuspage has none: each page is
    /// its own site).
    pub fn default_url(self) -> Option<&'static str> {
        match self {
            Kind::Microsoft => Some("https://graph.microsoft.com"),
            Kind::Google => Some("https://www.google.com/appsstatus/dashboard"),
            Kind::Statuspage => None,
        }
    }

    /// The services watched when none are configured: the mail service of each.
    pub fn default_services(self) -> &'static [&'static str] {
        match self {
            Kind::Microsoft => &["Exchange Online"],
            Kind::Google => &["Gmail"],
            Kind::Statuspage => &[],
        }
    }
}

/// The provider a target's host name says it is on, when no `provider` key says it: Microsoft
/// 365's and Google's mail hosts.
pub fn infer_from_host(host: &str) -> Option<Kind> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    let under = |suffix: &str| h.ends_with(suffix) && h.len() > suffix.len();
    if h == "outlook.office365.com"
        || h == "graph.microsoft.com"
        || under(".office365.com")
        || under(".outlook.com")
    {
        Some(Kind::Microsoft)
    } else if h == "imap.gmail.com" || h == "smtp.gmail.com" || under(".googleapis.com") {
        Some(Kind::Google)
    } else {
        None
    }
}

/// One `[[provider]]`, checked and ready to poll.
#[derive(Clone, Debug)]
pub struct ProviderSpec {
    /// Its name: the `provider` label and what targets' `provider` keys name.
    pub name: String,
    /// Which feed.
    pub kind: Kind,
    /// The feed's base URL, ending in `/` (paths are joined below it).
    pub url: url::Url,
    /// Services (Microsoft, Google) or components (Statuspage) watched; empty: all.
    pub services: Vec<String>,
    /// Time between two polls.
    pub interval: Duration,
    /// Deadline of one poll (token, request and body together).
    pub timeout: Duration,
    /// The most bytes of one answer read.
    pub max_body: usize,
    /// TLS for the feed.
    pub tls: Arc<rustls::ClientConfig>,
    /// Where Graph's token comes from (Microsoft only).
    pub oauth2: Option<OAuth2Spec>,
}

impl ProviderSpec {
    /// Whether a target's `provider` value (a `[[provider]]` name, or a kind a preset
    /// inferred) designates this provider.
    pub fn designated_by(&self, value: &str) -> bool {
        value == self.name || value == self.kind.as_str()
    }

    /// Whether `service` is one of those watched.
    pub fn watches(&self, service: &str) -> bool {
        self.services.is_empty()
            || self
                .services
                .iter()
                .any(|s| s.eq_ignore_ascii_case(service.trim()))
    }
}

/// One status update the provider posted (or a status change seen between two polls).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// When it was posted.
    pub at: SystemTime,
    /// The issue's status with it (the feed's own word).
    pub status: String,
    /// Its text, shortened.
    pub text: String,
}

/// One issue the provider published, as read from its feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    /// The `[[provider]]` it came from.
    pub provider: String,
    /// That provider's kind.
    pub kind: Kind,
    /// The provider's id ("EX123456").
    pub id: String,
    /// Its title.
    pub title: String,
    /// The service (or component) it is about.
    pub service: String,
    /// Microsoft's classification (incident, advisory), Google's severity, Statuspage's impact.
    pub classification: String,
    /// Its current status, in the feed's word (serviceDegradation, investigating, ...).
    pub status: String,
    /// When the provider says it began.
    pub started_at: SystemTime,
    /// When the provider first posted about it.
    pub first_post_at: SystemTime,
    /// When the provider last changed it.
    pub updated_at: SystemTime,
    /// When it ended (the provider's end time, or when it left a feed of open issues).
    pub resolved_at: Option<SystemTime>,
    /// A link to the provider's page about it, when the feed gives one.
    pub link: Option<String>,
    /// Its posts, oldest first.
    pub updates: Vec<Update>,
}

impl Issue {
    /// Whether it is still open.
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// Text from a feed, made one short line: no markup, no control characters, at most `max`
/// characters.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 3));
    let mut in_tag = false;
    let mut space = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                space = true;
            }
            _ if in_tag => {}
            c if c.is_whitespace() || c.is_control() => space = true,
            c => {
                if space && !out.is_empty() {
                    out.push(' ');
                }
                space = false;
                out.push(c);
            }
        }
        if out.chars().count() > max {
            let cut: String = out.chars().take(max).collect();
            return cut + "...";
        }
    }
    out
}

/// An RFC 3339 time from a feed (any offset, fractional seconds); a time without an offset
/// is read as UTC.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .or_else(|| chrono::DateTime::parse_from_rfc3339(&format!("{s}Z")).ok())?;
    let nanos = t.timestamp_nanos_opt()?;
    let nanos = u64::try_from(nanos).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_their_provider() {
        for h in [
            "outlook.office365.com",
            "smtp.office365.com",
            "contoso.mail.protection.outlook.com",
        ] {
            assert_eq!(infer_from_host(h), Some(Kind::Microsoft), "{h}");
        }
        for h in ["imap.gmail.com", "smtp.gmail.com", "gmail.googleapis.com"] {
            assert_eq!(infer_from_host(h), Some(Kind::Google), "{h}");
        }
        for h in [
            "mail.example.com",
            "office365.com.evil.test",
            "gmail.com",
            "127.0.0.1",
        ] {
            assert_eq!(infer_from_host(h), None, "{h}");
        }
    }

    #[test]
    fn feed_times_with_offsets_and_fractions() {
        let z = parse_time("2026-11-30T09:23:00Z").unwrap();
        assert_eq!(parse_time("2026-11-30T09:23:00.000Z"), Some(z));
        assert_eq!(parse_time("2026-11-30T03:23:00-06:00"), Some(z));
        assert_eq!(parse_time("2026-11-30T10:23:00+01:00"), Some(z));
        assert_eq!(
            parse_time("2026-11-30T09:23:00.5Z"),
            Some(z + Duration::from_millis(500))
        );
        assert_eq!(parse_time("2026-11-30T09:23:00"), Some(z));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn feed_text_is_one_short_line() {
        assert_eq!(
            one_line("<p>Title:  Users\ncan't</p><p>access</p>", 100),
            "Title: Users can't access"
        );
        assert_eq!(one_line("abcdef", 3), "abc...");
    }
}
