//! Which provider issue belongs to which of our incidents, and the words that tell it.
//!
//! An issue matches an incident when one of the incident's targets is on that provider (its
//! `provider` key, or the preset its host name implies) and the two overlap in time, with
//! [`SLACK`] either side: providers post minutes to an hour after the fact, and often start
//! their issue before anyone noticed. The service was already filtered when the feed was read
//! (only the services a `[[provider]]` watches become issues).

use std::time::{Duration, SystemTime};

use super::Issue;

/// How far apart in time an issue and an incident may be and still be the same outage.
pub const SLACK: Duration = Duration::from_secs(3600);

/// Whether `issue` belongs to the incident open from `opened` to `closed` (`None`: open),
/// whose targets are on the providers `providers` (each a `[[provider]]` name or a kind).
pub fn matches<'a>(
    issue: &Issue,
    opened: SystemTime,
    closed: Option<SystemTime>,
    mut providers: impl Iterator<Item = &'a str>,
    now: SystemTime,
) -> bool {
    let on_it = providers.any(|p| p == issue.provider || p == issue.kind.as_str());
    let issue_end = issue.resolved_at.unwrap_or(now);
    let incident_end = closed.unwrap_or(now);
    on_it
        && issue.started_at.min(issue.first_post_at) <= incident_end + SLACK
        && issue_end + SLACK >= opened
}

/// "14 min after this incident opened", "3 min before", "as it opened".
fn relative(posted: SystemTime, opened: SystemTime) -> String {
    let (d, word) = match posted.duration_since(opened) {
        Ok(d) => (d, "after"),
        Err(e) => (e.duration(), "before"),
    };
    let mins = d.as_secs() / 60;
    match mins {
        0 => format!("{}s {word} this incident opened", d.as_secs()),
        m if m < 120 => format!("{m} min {word} this incident opened"),
        m => format!("{}h {}min {word} this incident opened", m / 60, m % 60),
    }
}

/// HH:MM in UTC.
fn clock(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} UTC", &s[11..16])
}

/// The issue beside an incident, in one line: "Microsoft EX123456 'Users can't access
/// mailbox', serviceDegradation, posted 09:23 UTC, 14 min after this incident opened".
pub fn sentence(issue: &Issue, opened: SystemTime) -> String {
    sentence_as(issue, &issue.status, opened)
}

/// [`sentence`] with the status the issue had then.
fn sentence_as(issue: &Issue, status: &str, opened: SystemTime) -> String {
    format!(
        "{} {} '{}', {}, posted {}, {}",
        who(issue),
        issue.id,
        issue.title,
        status,
        clock(issue.first_post_at),
        relative(issue.first_post_at, opened)
    )
}

/// The provider as people name it: "Microsoft", "Google", or the Statuspage's own name.
pub fn who(issue: &Issue) -> String {
    match issue.kind {
        super::Kind::Microsoft | super::Kind::Google => issue.kind.display().to_string(),
        super::Kind::Statuspage => issue.provider.clone(),
    }
}

/// The issue's history as timeline lines `(when, event, status)`: its first post (the
/// [`sentence`]), each later update, and its end.
pub fn timeline(issue: &Issue, opened: SystemTime) -> Vec<(SystemTime, String, String)> {
    // The first post with the status it had then (the issue's status is its latest).
    let first = issue
        .updates
        .first()
        .map(|u| u.status.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| issue.status.clone());
    let mut out = vec![(
        issue.first_post_at,
        sentence_as(issue, &first, opened),
        first,
    )];
    for u in issue.updates.iter().skip(1) {
        let text = match (u.status.is_empty(), u.text.is_empty()) {
            (true, _) => u.text.clone(),
            (false, true) => format!("status {}", u.status),
            (false, false) => format!("{}: {}", u.status, u.text),
        };
        out.push((
            u.at,
            format!("{} {} update: {text}", who(issue), issue.id),
            if u.status.is_empty() {
                "posted".into()
            } else {
                u.status.clone()
            },
        ));
    }
    if let Some(r) = issue.resolved_at {
        out.push((
            r,
            format!("{} {} resolved by the provider", who(issue), issue.id),
            "resolved".into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{Kind, Update};
    use std::time::UNIX_EPOCH;

    fn t(min: u64) -> SystemTime {
        // 2026-11-30 09:00 UTC
        UNIX_EPOCH + Duration::from_secs(1_796_029_200 + min * 60)
    }

    fn issue(start: u64, posted: u64, resolved: Option<u64>) -> Issue {
        Issue {
            provider: "m365".into(),
            kind: Kind::Microsoft,
            id: "EX123456".into(),
            title: "Users can't access mailbox".into(),
            service: "Exchange Online".into(),
            classification: "incident".into(),
            status: "serviceDegradation".into(),
            started_at: t(start),
            first_post_at: t(posted),
            updated_at: t(posted),
            resolved_at: resolved.map(t),
            link: None,
            updates: vec![Update {
                at: t(posted),
                status: String::new(),
                text: "Title: Users can't access mailbox".into(),
            }],
        }
    }

    #[test]
    fn the_sentence_says_when_the_provider_posted() {
        assert_eq!(
            sentence(&issue(5, 23, None), t(9)),
            "Microsoft EX123456 'Users can't access mailbox', serviceDegradation, posted \
             09:23 UTC, 14 min after this incident opened"
        );
        assert!(sentence(&issue(0, 2, None), t(9)).ends_with("7 min before this incident opened"));
    }

    #[test]
    fn matched_by_provider_and_time() {
        let i = issue(5, 23, Some(60));
        let on = |p: &'static str| std::iter::once(p);
        assert!(matches(&i, t(9), None, on("m365"), t(30)));
        assert!(matches(&i, t(9), None, on("microsoft"), t(30)), "by kind");
        assert!(!matches(&i, t(9), None, on("google"), t(30)));
        assert!(!matches(&i, t(9), None, std::iter::empty(), t(30)));
        // An incident long after the issue ended, or long before it began.
        assert!(!matches(&i, t(200), None, on("m365"), t(300)));
        assert!(!matches(
            &issue(300, 300, None),
            t(9),
            Some(t(20)),
            on("m365"),
            t(400)
        ));
        // Posted 50 min after our incident closed: still the same outage.
        assert!(matches(
            &issue(70, 70, None),
            t(9),
            Some(t(20)),
            on("m365"),
            t(80)
        ));
    }
}
