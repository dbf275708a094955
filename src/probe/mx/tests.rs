//! The order a sender tries MX hosts in, and whose result is the domain's.

use super::*;

fn rec(preference: u16, name: &str) -> MxRecord {
    MxRecord {
        preference,
        name: name.into(),
    }
}

fn host(preference: u16, name: &str, class: Option<FailureClass>) -> MxHost {
    MxHost {
        name: name.into(),
        preference,
        total: Duration::ZERO,
        phases: Vec::new(),
        failure: class.map(|class| Failure {
            class,
            fault: None,
            phase: Phase::Connect,
            detail: String::new(),
        }),
        tls: None,
        banner: None,
        peer: None,
    }
}

/// RFC 5321 5.1: lowest preference first; ties in name order (stable series), repeats kept
/// once at their best preference.
#[test]
fn records_are_ordered_by_preference_then_name() {
    let found = order(vec![
        rec(20, "b.example"),
        rec(10, "z.example"),
        rec(10, "a.example"),
        rec(30, "A.example"),
    ]);
    assert_eq!(
        found,
        Found::Published(vec![
            rec(10, "a.example"),
            rec(10, "z.example"),
            rec(20, "b.example"),
        ])
    );
}

/// RFC 7505: "0 ." alone is a null MX; beside other records the root is no host to try.
#[test]
fn a_lone_root_exchange_is_a_null_mx() {
    assert_eq!(order(vec![rec(0, "")]), Found::Null);
    assert_eq!(
        order(vec![rec(0, ""), rec(10, "mx.example")]),
        Found::Published(vec![rec(10, "mx.example")])
    );
}

#[test]
fn preferred_needs_a_host_of_the_best_preference() {
    use FailureClass as C;
    let dead_primary = [host(10, "a", Some(C::ConnectRefused)), host(20, "b", None)];
    assert_eq!(
        decide(&dead_primary, Require::Preferred),
        Decision::Failed(0)
    );
    assert_eq!(decide(&dead_primary, Require::Any), Decision::Accepted(1));
    // Equal preferences are alternatives: one of them accepting is enough.
    let tie = [
        host(10, "a", Some(C::ConnectRefused)),
        host(10, "b", None),
        host(20, "c", None),
    ];
    assert_eq!(decide(&tie, Require::Preferred), Decision::Accepted(1));
    let all_dead = [
        host(10, "a", Some(C::ConnectRefused)),
        host(20, "b", Some(C::ConnectTimeout)),
    ];
    assert_eq!(decide(&all_dead, Require::Any), Decision::Failed(0));
    assert_eq!(decide(&all_dead, Require::Preferred), Decision::Failed(0));
}

/// A host mailprobe could not probe (no file descriptors) is no evidence the domain is down.
#[test]
fn a_prober_fault_is_not_the_domains_failure() {
    use FailureClass as C;
    let hosts = [
        host(10, "a", Some(C::ConnectRefused)),
        host(20, "b", Some(C::ProberError)),
    ];
    assert_eq!(decide(&hosts, Require::Any), Decision::Fault(1));
    assert_eq!(decide(&hosts, Require::Preferred), Decision::Failed(0));
}
