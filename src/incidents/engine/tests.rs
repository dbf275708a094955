//! The incident engine on observations with made-up times.

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
fn three(e: &mut Engine, targets: &[String], at: u64, result: Result<bool, (FailureClass, Phase)>) {
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
const AUTH: Result<bool, (FailureClass, Phase)> = Err((FailureClass::AuthRejected, Phase::Login));
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
