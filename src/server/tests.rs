use super::*;

#[test]
fn a_quarter_of_the_open_file_limit_goes_to_connections() {
    assert_eq!(Limits::for_open_files(256).max_connections, 64);
    assert_eq!(Limits::for_open_files(1024).max_connections, 256);
    assert_eq!(Limits::for_open_files(65536).max_connections, 1024);
    assert_eq!(Limits::for_open_files(u64::MAX).max_connections, 1024);
    assert_eq!(Limits::for_open_files(8).max_connections, 4);
    assert!(open_file_limit().is_some_and(|n| n > 0));
}

#[test]
fn deadlines_follow_what_the_connection_is_doing() {
    let t0 = Instant::now();
    let mut a = Activity::new(t0);
    // A new connection must send its request head at once.
    assert_eq!(a.deadline().unwrap().0, t0 + REQUEST_HEAD_TIMEOUT);
    // While its request runs, nothing runs out...
    a.in_flight = 1;
    a.head_since = None;
    assert_eq!(a.deadline(), None);
    // ...unless the client stops reading the response.
    a.write_blocked_since = Some(t0);
    assert_eq!(a.deadline().unwrap().0, t0 + STALLED_WRITE_TIMEOUT);
    a.write_blocked_since = None;
    // Between requests the idle timeout runs, and a new head has its own.
    a.in_flight = 0;
    assert_eq!(a.deadline().unwrap().0, t0 + IDLE_TIMEOUT);
    let t1 = t0 + Duration::from_secs(30);
    a.head_since = Some(t1);
    assert_eq!(a.deadline().unwrap().0, t1 + REQUEST_HEAD_TIMEOUT);
}

#[test]
fn a_full_server_closes_the_longest_quiet_connection_never_a_busy_one() {
    let registry = Arc::new(Registry::default());
    let all = CancellationToken::new();
    let (old, old_slot) = registry.open(&all);
    let (busy, _busy_slot) = registry.open(&all);
    let (new, _new_slot) = registry.open(&all);
    let _request = busy.begin(false);
    // `busy` is the oldest of the quiet ones once its request ends, but has one in flight.
    {
        let mut a = lock(&busy.activity);
        a.quiet_since -= Duration::from_secs(60);
    }
    assert!(matches!(registry.make_room(4), Room::Free));
    assert!(matches!(registry.make_room(3), Room::Evicted));
    assert!(old.evict.is_cancelled());
    assert!(!busy.evict.is_cancelled() && !new.evict.is_cancelled());
    // Until the evicted one has closed, nothing more is closed.
    assert!(matches!(registry.make_room(3), Room::Busy));
    drop(old_slot);
    assert!(matches!(registry.make_room(3), Room::Free));
    assert!(!new.evict.is_cancelled());
}
