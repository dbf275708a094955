use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::incidents::TargetState;
use crate::probe::Phase;
use crate::probe::Protocol;

/// 2026-11-30 08:12:00 UTC (09:12 in Berlin).
fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_026_320 + s)
}

fn target(name: &str, region: &str, p: Protocol, health: Health) -> TargetState {
    let mut t = TargetState::new(name, region, p, Some(100), at(0));
    t.health = health;
    if health == Health::Down {
        t.last_failure = Some((FailureClass::ConnectRefused, Phase::Connect));
    }
    t
}

fn settings() -> StatusSettings {
    let mut s = StatusSettings::default();
    s.regions.insert("eu-west".into(), "Europe".into());
    s.time_zone = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    s
}

fn snapshot(targets: Vec<TargetState>) -> Snapshot {
    Snapshot {
        at: Some(at(0)),
        targets,
        open: Vec::new(),
        ..Snapshot::default()
    }
}

#[test]
fn states_follow_the_share_of_targets_down() {
    let c = |up, degraded, down, maintenance| {
        ComponentState::of(Counts {
            up,
            degraded,
            down,
            maintenance,
        })
    };
    assert_eq!(c(4, 0, 0, 0), ComponentState::Operational);
    assert_eq!(c(3, 1, 0, 0), ComponentState::Degraded);
    assert_eq!(c(3, 0, 1, 0), ComponentState::PartialOutage);
    assert_eq!(c(0, 2, 2, 0), ComponentState::PartialOutage);
    assert_eq!(c(0, 0, 4, 0), ComponentState::MajorOutage);
    assert_eq!(c(0, 0, 0, 2), ComponentState::Maintenance);
    assert_eq!(c(1, 0, 0, 1), ComponentState::Maintenance);
    assert_eq!(c(0, 0, 1, 1), ComponentState::MajorOutage);
    assert_eq!(c(0, 0, 0, 0), ComponentState::Operational);
    assert!(ComponentState::MajorOutage > ComponentState::PartialOutage);
    assert!(ComponentState::Degraded > ComponentState::Maintenance);
}

#[test]
fn one_of_four_down_is_a_partial_outage_in_a_sentence() {
    let mut targets = vec![
        target("imap-1", "eu-west", Protocol::Imap, Health::Up),
        target("imap-2", "eu-west", Protocol::Imap, Health::Up),
        target("imap-3", "eu-west", Protocol::Imap, Health::Up),
        target("imap-4", "eu-west", Protocol::Imap, Health::Down),
        target("smtp-1", "eu-west", Protocol::Smtp, Health::Up),
    ];
    targets[3].since = at(0);
    let s = snapshot(targets);
    let comps = components(&s);
    assert_eq!(comps.len(), 2);
    assert_eq!(comps[0].service, Service::Reading);
    assert_eq!(comps[0].state, ComponentState::PartialOutage);
    assert_eq!(comps[0].users, 100);
    assert_eq!(comps[0].cause, Some("the mail service is not running"));
    assert_eq!(comps[1].state, ComponentState::Operational);
    let clock = Clock::new(at(14 * 60 + 5), settings().time_zone.clone());
    let b = banner(&comps, &settings(), &clock);
    assert_eq!(b.state, ComponentState::PartialOutage);
    assert_eq!(
        b.text,
        "Partial outage in Europe: some users cannot read mail since 09:12, 14 min"
    );
}

#[test]
fn all_down_is_major_and_slow_is_degraded() {
    let s = snapshot(vec![
        target("a", "eu-west", Protocol::Imap, Health::Down),
        target("b", "us", Protocol::Smtp, Health::Degraded),
    ]);
    let comps = components(&s);
    let clock = Clock::new(at(3 * 3600 + 300), jiff::tz::TimeZone::UTC);
    let b = banner(&comps, &settings(), &clock);
    assert_eq!(
        b.text,
        "Major outage in Europe: users cannot read mail since 08:12, 3 h 5 min"
    );
    let s = snapshot(vec![target("b", "us", Protocol::Smtp, Health::Degraded)]);
    let b = banner(&components(&s), &settings(), &clock);
    assert_eq!(b.state, ComponentState::Degraded);
    assert!(
        b.text
            .starts_with("Degraded performance in us: slow for some users to send mail since"),
        "{}",
        b.text
    );
    let s = snapshot(vec![target("a", "eu-west", Protocol::Imap, Health::Up)]);
    assert_eq!(
        banner(&components(&s), &settings(), &clock).text,
        "All services are operational"
    );
}

#[test]
fn times_are_absolute_in_the_zone_and_relative() {
    let berlin = Clock::new(at(0), settings().time_zone.clone());
    assert_eq!(berlin.time(at(0)), "09:12");
    assert_eq!(
        berlin.time(at(0) - Duration::from_secs(86_400)),
        "Sun 29 Nov 09:12"
    );
    assert_eq!(berlin.full(at(0)), "2026-11-30 09:12:00 CET");
    assert_eq!(berlin.day(at(0)), "Mon 30 Nov 2026");
    assert_eq!(span(Duration::from_secs(40)), "40 s");
    assert_eq!(span(Duration::from_secs(14 * 60 + 59)), "14 min");
    assert_eq!(span(Duration::from_secs(7200)), "2 h");
    assert_eq!(
        span(Duration::from_secs(3 * 86_400 + 4 * 3600)),
        "3 days 4 h"
    );
    assert_eq!(span(Duration::from_secs(86_400)), "1 day");
}

#[test]
fn plain_causes_speak_no_jargon() {
    use FailureClass as C;
    let every = [
        C::DnsNxdomain,
        C::DnsFailure,
        C::ConnectRefused,
        C::ConnectTimeout,
        C::NetworkUnreachable,
        C::ConnectionClosed,
        C::TlsHandshakeFailed,
        C::TlsCertInvalid,
        C::TlsCertExpired,
        C::StarttlsUnavailable,
        C::GreetingTimeout,
        C::ProtocolError,
        C::ServerUnavailable,
        C::AuthRejected,
        C::AuthTokenFailed,
        C::AuthRequired,
        C::AuthUnavailable,
        C::AuthPolicy,
        C::MessageRejected,
        C::MailboxError,
        C::Timeout,
        C::DeliveryTimeout,
        C::HttpStatus,
        C::ContentMismatch,
        C::Unrecognized,
        C::ProberError,
    ];
    for c in every {
        let words = plain_cause(c);
        for jargon in [
            "_", "TLS", "STARTTLS", "DNS", "SASL", "IMAP", "SMTP", "TCP", "HTTP",
        ] {
            assert!(!words.contains(jargon), "{c:?}: {words}");
        }
    }
}

#[test]
fn lists_read_as_sentences() {
    assert_eq!(and_list::<&str>(&[]), "");
    assert_eq!(and_list(&["a"]), "a");
    assert_eq!(and_list(&["a", "b"]), "a and b");
    assert_eq!(and_list(&["a", "b", "c"]), "a, b and c");
    assert_eq!(
        or_list(&["read mail", "send mail"]),
        "read mail or send mail"
    );
}
