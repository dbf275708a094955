//! Happy Eyeballs on a paused clock with fake addresses, and what a failed lookup or connect is.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::probe::Phase;
use crate::probe::classify::{FailureClass, classify};

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn a_lookup_that_failed_on_our_own_sockets_is_a_prober_fault() {
    use crate::probe::classify::{ProberFault, judge};
    let emfile = NetError::Io(std::sync::Arc::new(io::Error::from_raw_os_error(
        libc::EMFILE,
    )));
    let verdict = judge(Phase::Dns, &dns_error("mx.example.net", emfile));
    assert_eq!(verdict.class, FailureClass::ProberError);
    assert_eq!(verdict.fault, Some(ProberFault::FileDescriptors));
    // The resolver refusing us is DNS's trouble, not ours.
    let refused = NetError::Io(std::sync::Arc::new(io::Error::from_raw_os_error(
        libc::ECONNREFUSED,
    )));
    assert_eq!(
        classify(Phase::Dns, &dns_error("mx.example.net", refused)),
        FailureClass::DnsFailure
    );
}

#[test]
fn families_alternate_starting_with_the_first_address() {
    let (v6a, v6b, v4a, v4b, v4c) = (
        a("[2001:db8::1]:993"),
        a("[2001:db8::2]:993"),
        a("192.0.2.1:993"),
        a("192.0.2.2:993"),
        a("192.0.2.3:993"),
    );
    assert_eq!(
        interleave(&[v6a, v6b, v4a, v4b, v4c]),
        [v6a, v4a, v6b, v4b, v4c]
    );
    assert_eq!(
        interleave(&[v4a, v4b, v4c, v6a, v6b]),
        [v4a, v6a, v4b, v6b, v4c]
    );
    assert_eq!(interleave(&[v4a, v6a, v4a, v6a]), [v4a, v6a]);
    assert_eq!(interleave(&[v4b, v4a]), [v4b, v4a]);
    assert_eq!(interleave(&[]), Vec::<SocketAddr>::new());
}

/// What a fake address does when connected to, after `ms` milliseconds.
#[derive(Clone, Copy)]
enum Fake {
    Accept(u64),
    Fail(u64, io::ErrorKind),
    Silent,
}

/// Runs a race over `plan`, recording when each attempt started (ms since the start) and
/// how many attempts were dropped unfinished.
async fn run(
    plan: &[(&str, Fake)],
    deadline_ms: Option<u64>,
) -> (
    Result<((), SocketAddr), ProbeError>,
    Vec<(SocketAddr, u64)>,
    usize,
) {
    let order: Vec<SocketAddr> = plan.iter().map(|(s, _)| a(s)).collect();
    let fakes: HashMap<SocketAddr, Fake> = plan.iter().map(|(s, f)| (a(s), *f)).collect();
    let t0 = Instant::now();
    let started = Mutex::new(Vec::new());
    let dropped = AtomicUsize::new(0);
    struct Guard<'a>(&'a AtomicUsize, bool);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            if !self.1 {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let deadline = deadline_ms.map(|ms| t0 + Duration::from_millis(ms));
    let result = race(&order, 0, CONNECTION_ATTEMPT_DELAY, deadline, |addr| {
        started
            .lock()
            .unwrap()
            .push((addr, t0.elapsed().as_millis() as u64));
        let fake = fakes[&addr];
        let dropped = &dropped;
        async move {
            let mut guard = Guard(dropped, false);
            let r = match fake {
                Fake::Accept(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(())
                }
                Fake::Fail(ms, kind) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Err(io::Error::from(kind))
                }
                Fake::Silent => std::future::pending().await,
            };
            guard.1 = true;
            r
        }
    })
    .await;
    let started = started.into_inner().unwrap();
    (result, started, dropped.load(Ordering::SeqCst))
}

#[tokio::test(start_paused = true)]
async fn a_silent_first_address_gets_250_ms_then_the_next_wins() {
    let (result, started, dropped) = run(
        &[
            ("[::1]:993", Fake::Silent),
            ("127.0.0.1:993", Fake::Accept(3)),
        ],
        None,
    )
    .await;
    assert_eq!(result.unwrap().1, a("127.0.0.1:993"));
    assert_eq!(started, [(a("[::1]:993"), 0), (a("127.0.0.1:993"), 250)]);
    assert_eq!(dropped, 1, "the losing attempt is dropped");
}

#[tokio::test(start_paused = true)]
async fn a_failing_attempt_hands_over_at_once() {
    let unreachable = io::ErrorKind::NetworkUnreachable;
    let (result, started, _) = run(
        &[
            ("[::1]:993", Fake::Fail(5, unreachable)),
            ("127.0.0.1:993", Fake::Silent),
            ("[::2]:993", Fake::Accept(1)),
        ],
        None,
    )
    .await;
    assert_eq!(result.unwrap().1, a("[::2]:993"));
    assert_eq!(
        started,
        [
            (a("[::1]:993"), 0),
            (a("127.0.0.1:993"), 5),
            (a("[::2]:993"), 255)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_early_answer_wins_while_slower_attempts_still_run() {
    // The first address answers after 400 ms, after the second started at 250 ms.
    let (result, started, dropped) = run(
        &[
            ("[::1]:993", Fake::Accept(400)),
            ("127.0.0.1:993", Fake::Accept(300)),
        ],
        None,
    )
    .await;
    assert_eq!(result.unwrap().1, a("[::1]:993"));
    assert_eq!(started.len(), 2);
    assert_eq!(dropped, 1);
}

#[tokio::test(start_paused = true)]
async fn when_all_fail_the_refusal_decides_and_every_address_is_named() {
    let (result, _, _) = run(
        &[
            (
                "[::1]:993",
                Fake::Fail(1, io::ErrorKind::NetworkUnreachable),
            ),
            (
                "127.0.0.1:993",
                Fake::Fail(2, io::ErrorKind::ConnectionRefused),
            ),
            ("[::2]:993", Fake::Fail(3, io::ErrorKind::AddrNotAvailable)),
        ],
        None,
    )
    .await;
    let e = result.unwrap_err();
    assert_eq!(classify(Phase::Connect, &e), FailureClass::ConnectRefused);
    let text = e.to_string();
    let lines: Vec<&str> = text.split("; ").collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("connect to 127.0.0.1:993: "), "{text}");
    assert!(lines[1].starts_with("connect to [::1]:993: "), "{text}");
    assert!(lines[2].starts_with("connect to [::2]:993: "), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_local_error_does_not_hide_a_host_that_does_not_answer() {
    // No IPv6 on the prober (EADDRNOTAVAIL) while IPv4 is silent: the target's silence is
    // what counts.
    let (result, _, _) = run(
        &[
            ("[::1]:993", Fake::Fail(1, io::ErrorKind::AddrNotAvailable)),
            ("127.0.0.1:993", Fake::Silent),
        ],
        Some(2000),
    )
    .await;
    let e = result.unwrap_err();
    assert_eq!(classify(Phase::Connect, &e), FailureClass::ConnectTimeout);
    assert_eq!(
        e.to_string(),
        "connect to 127.0.0.1:993: no answer within 2.0 s; connect to [::1]:993: \
         address not available"
    );
}

#[tokio::test(start_paused = true)]
async fn at_the_deadline_every_silent_address_is_named_and_the_rest_counted() {
    let plan: Vec<(String, Fake)> = (1..=7)
        .map(|i| (format!("192.0.2.{i}:25"), Fake::Silent))
        .collect();
    let plan: Vec<(&str, Fake)> = plan.iter().map(|(s, f)| (s.as_str(), *f)).collect();
    // 1 s: attempts start at 0, 250, 500, 750 ms; three are never tried.
    let (result, started, dropped) = run(&plan, Some(1000)).await;
    assert_eq!(started.len(), 4);
    assert_eq!(dropped, 4);
    let e = result.unwrap_err();
    assert_eq!(classify(Phase::Connect, &e), FailureClass::ConnectTimeout);
    assert_eq!(
        e.to_string(),
        "connect to 192.0.2.1:25: no answer within 1.0 s; connect to 192.0.2.2:25: no \
         answer within 0.8 s; connect to 192.0.2.3:25: no answer within 0.5 s; connect to \
         192.0.2.4:25: no answer within 0.2 s; 3 more not tried"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deadline_already_past_tries_nothing() {
    let (result, started, _) = run(&[("127.0.0.1:993", Fake::Accept(1))], Some(0)).await;
    assert!(started.is_empty());
    let e = result.unwrap_err();
    assert_eq!(classify(Phase::Connect, &e), FailureClass::ConnectTimeout);
}

#[test]
fn ip_protocol_selects_families_and_records() {
    let (v4, v6): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "::1".parse().unwrap());
    assert!(IpProtocol::Any.allows(v4) && IpProtocol::Any.allows(v6));
    assert!(IpProtocol::Ip4.allows(v4) && !IpProtocol::Ip4.allows(v6));
    assert!(!IpProtocol::Ip6.allows(v4) && IpProtocol::Ip6.allows(v6));
    assert_eq!(strategy(IpProtocol::Ip4), LookupIpStrategy::Ipv4Only);
    assert_eq!(strategy(IpProtocol::Ip6), LookupIpStrategy::Ipv6Only);
    assert_eq!(strategy(IpProtocol::Any), LookupIpStrategy::Ipv6AndIpv4);
}
