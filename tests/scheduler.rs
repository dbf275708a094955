//! The scheduler on tokio's paused clock: when targets start, what is skipped, how concurrency,
//! reloads and the shutdown behave, with a prober the test controls (its probes take virtual
//! time, or wait until the test opens a gate). Minutes of schedule run in milliseconds, and
//! every start is checked to the millisecond (the timer's resolution).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use mailprobe::hash::stable_hash;
use mailprobe::probe::Outcome;
use mailprobe::probe::Target;
use mailprobe::scheduler::{
    Diff, Event, Observer, OutcomeSink, Prober, SHUTDOWN_GRACE, Scheduler, WallClock,
};
use tokio::time::{Instant, sleep};

/// Wall-clock time when each test starts: not a multiple of any interval used here.
const WALL0: Duration = Duration::from_micros(1_700_000_123_456_789);
/// The timer's resolution: a start is due at its planned microsecond and runs within this.
const TICK: Duration = Duration::from_millis(1);

/// What a fake probe does.
#[derive(Clone)]
enum Act {
    /// Takes this long.
    Take(Duration),
    /// Waits until the gate opens, then takes this long.
    Gated(Duration),
    /// Never ends by itself.
    Forever,
    /// Takes 100 ms and asks, once, to be left alone this long (a mail API's 429 with
    /// `Retry-After`); then takes 100 ms as usual.
    AskToWait(Duration),
}

/// One probe start, as the prober saw it.
#[derive(Clone, Debug)]
struct Start {
    name: String,
    region: String,
    at: Instant,
    /// Probes already running when it started.
    running: usize,
}

/// A prober the test controls: a fixed act per target (100 ms by default).
struct Fake {
    acts: Mutex<HashMap<String, Act>>,
    gate: tokio::sync::watch::Sender<bool>,
    running: AtomicUsize,
    starts: Mutex<Vec<Start>>,
}

impl Fake {
    fn new() -> Arc<Fake> {
        Arc::new(Fake {
            acts: Mutex::default(),
            gate: tokio::sync::watch::channel(false).0,
            running: AtomicUsize::new(0),
            starts: Mutex::default(),
        })
    }

    fn set(&self, name: &str, act: Act) {
        self.acts.lock().unwrap().insert(name.into(), act);
    }

    fn starts(&self) -> Vec<Start> {
        self.starts.lock().unwrap().clone()
    }

    fn starts_of(&self, name: &str) -> Vec<Instant> {
        self.starts()
            .into_iter()
            .filter(|s| s.name == name)
            .map(|s| s.at)
            .collect()
    }
}

impl Prober for Fake {
    fn probe<'a>(&'a self, target: &'a Arc<Target>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let act = self.acts.lock().unwrap().get(&target.name).cloned();
            let running = self.running.fetch_add(1, Ordering::SeqCst);
            let start = Instant::now();
            self.starts.lock().unwrap().push(Start {
                name: target.name.clone(),
                region: target.region.clone(),
                at: start,
                running,
            });
            // Counted down even when the hard stop drops this future.
            struct Running<'a>(&'a AtomicUsize);
            impl Drop for Running<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _running = Running(&self.running);
            if let Some(Act::AskToWait(wait)) = act {
                self.set(&target.name, Act::Take(Duration::from_millis(100)));
                sleep(Duration::from_millis(100)).await;
                let mut o = outcome(target, start.elapsed());
                o.retry_after = Some(wait);
                return o;
            }
            match act.unwrap_or(Act::Take(Duration::from_millis(100))) {
                Act::Take(d) => sleep(d).await,
                Act::Gated(d) => {
                    let mut gate = self.gate.subscribe();
                    let _ = gate.wait_for(|open| *open).await;
                    sleep(d).await;
                }
                Act::Forever => std::future::pending().await,
                Act::AskToWait(_) => unreachable!("answered above"),
            }
            outcome(target, start.elapsed())
        })
    }
}

/// A successful outcome of `t` that took `total`.
fn outcome(t: &Arc<Target>, total: Duration) -> Outcome {
    Outcome {
        target: t.clone(),
        started_at: SystemTime::now(),
        total,
        phases: Vec::new(),
        failure: None,
        slow: false,
        tls: None,
        banner: None,
        delivery: None,
        http: None,
        token: None,
        peer: None,
        mx: None,
        retry_after: None,
    }
}

/// Everything the scheduler reported, with the virtual time it came at.
#[derive(Default)]
struct Seen {
    events: Mutex<Vec<(Instant, Event)>>,
    outcomes: Mutex<Vec<(Instant, String)>>,
}

impl OutcomeSink for Seen {
    fn record(&self, o: Outcome) {
        self.outcomes
            .lock()
            .unwrap()
            .push((Instant::now(), o.target.name.clone()));
    }
}

impl Observer for Seen {
    fn event(&self, e: Event) {
        self.events.lock().unwrap().push((Instant::now(), e));
    }
}

impl Seen {
    fn events(&self) -> Vec<(Instant, Event)> {
        self.events.lock().unwrap().clone()
    }

    fn outcomes(&self) -> Vec<String> {
        self.outcomes
            .lock()
            .unwrap()
            .iter()
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// Missed starts reported for `name`, in order.
    fn skipped(&self, name: &str) -> Vec<u64> {
        self.events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                Event::Skipped { target, missed } if target.name == name => Some(missed),
                _ => None,
            })
            .collect()
    }
}

/// Targets parsed from a config (https ones: the fake prober never connects); each entry is a
/// name and extra keys for its table. Interval 10 s, timeout 5 s unless given.
fn targets(entries: &[(&str, &str)]) -> Vec<Arc<Target>> {
    let mut text = String::from("[global]\ninterval = \"10s\"\ntimeout = \"5s\"\n");
    for (name, extra) in entries {
        let region = if extra.contains("region") {
            String::new()
        } else {
            "region = \"eu\"\n".into()
        };
        text.push_str(&format!(
            "[[target]]\nname = \"{name}\"\n{region}protocol = \"https\"\n\
             url = \"https://127.0.0.1/\"\n{extra}\n"
        ));
    }
    mailprobe::load::parse(Path::new("probes.toml"), &text)
        .expect("valid config")
        .targets
}

/// A scheduler on a wall clock that reads `wall0` now and moves with tokio's (paused) clock.
fn scheduler(fake: &Arc<Fake>, seen: &Arc<Seen>, concurrency: usize, wall0: Duration) -> Scheduler {
    let t0 = Instant::now();
    let wall: WallClock = Arc::new(move || UNIX_EPOCH + wall0 + t0.elapsed());
    Scheduler::with_wall_clock(fake.clone(), seen.clone(), concurrency, wall)
}

/// The target's offset in its interval: where its slots are in wall-clock time.
fn offset(name: &str, interval: Duration) -> Duration {
    Duration::from_micros(stable_hash(name) % interval.as_micros() as u64)
}

/// How far after its slot (offset + k × interval, wall clock) a start at `at` came, for a
/// scheduler whose wall clock read `wall0` at `t0`.
fn after_slot(
    at: Instant,
    t0: Instant,
    wall0: Duration,
    name: &str,
    interval: Duration,
) -> Duration {
    let wall = (wall0 + (at - t0)).as_micros() as u64;
    let (interval, offset) = (
        interval.as_micros() as u64,
        offset(name, interval).as_micros() as u64,
    );
    Duration::from_micros((wall + interval - offset) % interval)
}

/// Shuts `s` down; a shutdown that would never end fails within an hour of virtual time.
async fn stop(s: Scheduler) {
    tokio::time::timeout(Duration::from_secs(3600), s.shutdown())
        .await
        .expect("the shutdown ends");
}

fn near(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) < TICK
}

/// `starts` are one per `interval` from `from` until `to`: the first within an interval of
/// `from`, the last within an interval of `to`, none missed or doubled between.
fn steady(starts: &[Instant], interval: Duration, from: Instant, to: Instant) {
    let (Some(first), Some(last)) = (starts.first(), starts.last()) else {
        panic!("no start between {from:?} and {to:?}");
    };
    assert!(*first >= from && *first - from < interval, "{starts:?}");
    assert!(*last < to && to - *last <= interval, "{starts:?}");
    for pair in starts.windows(2) {
        assert!(near(pair[1] - pair[0], interval), "{starts:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn starts_are_spread_over_the_interval_by_name_and_keep_their_slots_across_restarts() {
    let interval = Duration::from_secs(60);
    let names: Vec<String> = (0..240).map(|i| format!("mbx-{i}")).collect();
    let entries: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "interval = \"60s\""))
        .collect();
    let all = targets(&entries);
    // Two instances (or a restart) with clocks 1234.5 s apart land on the same slots.
    for wall0 in [WALL0, WALL0 + Duration::from_millis(1_234_500)] {
        let (fake, seen) = (Fake::new(), Arc::new(Seen::default()));
        let t0 = Instant::now();
        let mut s = scheduler(&fake, &seen, 1000, wall0);
        s.apply(&all);
        sleep(2 * interval).await;
        stop(s).await;

        let mut per_bucket = [0usize; 6];
        for name in &names {
            let starts = fake.starts_of(name);
            assert_eq!(
                starts.len(),
                2,
                "{name}: one start per interval: {starts:?}"
            );
            for at in &starts {
                let late = after_slot(*at, t0, wall0, name, interval);
                assert!(late < TICK, "{name} started {late:?} after its slot");
            }
            assert!(near(starts[1] - starts[0], interval), "{name}: {starts:?}");
            per_bucket[((starts[0] - t0).as_secs() / 10) as usize] += 1;
        }
        // 240 names over six 10 s buckets: about 40 each, never all at once.
        for n in per_bucket {
            assert!((20..=60).contains(&n), "starts per 10 s: {per_bucket:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_overruns_its_interval_skips_the_starts_it_missed_and_counts_them() {
    let interval = Duration::from_secs(10);
    let (fake, seen) = (Fake::new(), Arc::new(Seen::default()));
    fake.set("slow", Act::Take(Duration::from_secs(25)));
    fake.set("just-in-time", Act::Take(Duration::from_millis(9_900)));
    let mut s = scheduler(&fake, &seen, 10, WALL0);
    s.apply(&targets(&[("slow", ""), ("just-in-time", "")]));
    sleep(Duration::from_secs(100)).await;

    // 25 s of probing misses the starts at +10 s and +20 s; the next is at +30 s, on its slot.
    let slow = fake.starts_of("slow");
    assert!(slow.len() >= 3, "{slow:?}");
    for pair in slow.windows(2) {
        assert!(near(pair[1] - pair[0], 3 * interval), "{slow:?}");
    }
    let finished = seen.outcomes().iter().filter(|n| *n == "slow").count();
    assert_eq!(seen.skipped("slow"), vec![2; finished]);
    // A probe that ends within its interval skips nothing.
    let on_time = fake.starts_of("just-in-time");
    assert_eq!(on_time.len(), 10, "{on_time:?}");
    for pair in on_time.windows(2) {
        assert!(near(pair[1] - pair[0], interval), "{on_time:?}");
    }
    assert_eq!(seen.skipped("just-in-time"), Vec::<u64>::new());
    stop(s).await;
}

#[tokio::test(start_paused = true)]
async fn concurrency_bounds_probes_in_flight_and_can_be_raised_and_lowered() {
    let (fake, seen) = (Fake::new(), Arc::new(Seen::default()));
    let names: Vec<String> = (0..8).map(|i| format!("busy-{i}")).collect();
    let entries: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "interval = \"60s\""))
        .collect();
    for n in &names {
        fake.set(n, Act::Take(Duration::from_secs(40)));
    }
    let mut s = scheduler(&fake, &seen, 2, WALL0);
    s.apply(&targets(&entries));
    let most_running = |from: usize| {
        fake.starts()[from..]
            .iter()
            .map(|s| s.running + 1)
            .max()
            .unwrap_or(0)
    };

    // Eight 40 s probes a minute and two slots: never more than two run, and those that waited
    // for a slot started late, or skipped their start.
    sleep(Duration::from_secs(300)).await;
    assert_eq!(most_running(0), 2);
    let late = seen
        .events()
        .iter()
        .filter(
            |(_, e)| matches!(e, Event::Started { delay, .. } if *delay >= Duration::from_secs(1)),
        )
        .count();
    assert!(late > 0, "some starts waited for a slot");
    assert!(names.iter().any(|n| !seen.skipped(n).is_empty()));

    // Raised to five: five run at once.
    s.set_concurrency(5);
    let from = fake.starts().len();
    sleep(Duration::from_secs(300)).await;
    assert_eq!(most_running(from), 5);

    // Lowered to one while up to five run: they finish, and no new probe starts until the
    // running ones are down to none.
    assert!(s.in_flight() > 1, "{}", s.in_flight());
    s.set_concurrency(1);
    let from = fake.starts().len();
    sleep(Duration::from_secs(300)).await;
    let after: Vec<Start> = fake.starts()[from..].to_vec();
    assert!(after.len() >= 5, "{after:?}");
    assert!(after.iter().all(|s| s.running == 0), "{after:?}");

    // Lowered and raised again before any probe ended: the last limit asked for holds.
    s.set_concurrency(5);
    sleep(Duration::from_secs(300)).await;
    assert_eq!(s.in_flight(), 5);
    s.set_concurrency(1);
    s.set_concurrency(3);
    let from = fake.starts().len();
    sleep(Duration::from_secs(300)).await;
    assert_eq!(most_running(from), 3);
    stop(s).await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_touches_only_what_changed_and_a_changed_interval_is_spread_again() {
    let (fake, seen) = (Fake::new(), Arc::new(Seen::default()));
    let t0 = Instant::now();
    let mut s = scheduler(&fake, &seen, 10, WALL0);
    let before = targets(&[("kept", ""), ("dropped", ""), ("moved", ""), ("slower", "")]);
    let diff = s.apply(&before);
    assert_eq!(diff.added, ["kept", "dropped", "moved", "slower"]);
    sleep(Duration::from_millis(25_300)).await;
    let reloaded_at = Instant::now();

    let after = targets(&[
        ("kept", ""),
        ("moved", "region = \"us\""),
        ("slower", "interval = \"30s\""),
        ("new", ""),
    ]);
    let diff = s.apply(&after);
    assert_eq!(
        diff,
        Diff {
            added: vec!["new".into()],
            removed: vec!["dropped".into()],
            changed: vec!["moved".into(), "slower".into()],
            unchanged: 1,
        }
    );
    assert_eq!(
        diff.to_string(),
        "1 added, 1 removed, 2 changed, 1 unchanged"
    );
    let said: Vec<String> = seen
        .events()
        .into_iter()
        .filter(|(at, _)| *at >= reloaded_at)
        .filter_map(|(_, e)| match e {
            Event::Registered(t) => Some(format!("registered {}", t.name)),
            Event::Removed(t) => Some(format!("removed {}", t.name)),
            Event::Changed { old, new } => Some(format!(
                "changed {} {}→{}",
                new.name, old.region, new.region
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        said,
        [
            "removed dropped",
            "changed moved eu→us",
            "changed slower eu→eu",
            "registered new"
        ]
    );
    sleep(Duration::from_secs(65)).await;
    let end = Instant::now();
    stop(s).await;

    let ten = Duration::from_secs(10);
    let thirty = Duration::from_secs(30);
    let on_slots = |name: &str, interval: Duration, starts: &[Instant]| {
        for at in starts {
            let late = after_slot(*at, t0, WALL0, name, interval);
            assert!(late < TICK, "{name} started {late:?} after its slot");
        }
    };
    // Unchanged: the same rhythm through the reload, no start lost or added.
    let kept = fake.starts_of("kept");
    steady(&kept, ten, t0, end);
    on_slots("kept", ten, &kept);
    // Removed: no start after the reload.
    let dropped = fake.starts_of("dropped");
    steady(&dropped, ten, t0, reloaded_at);
    // New labels, same interval: the same slots, probed with the new settings.
    let moved = fake.starts_of("moved");
    steady(&moved, ten, t0, end);
    on_slots("moved", ten, &moved);
    for s in fake.starts().iter().filter(|s| s.name == "moved") {
        let want = if s.at < reloaded_at { "eu" } else { "us" };
        assert_eq!(s.region, want, "{s:?}");
    }
    // A new interval: spread again, over 30 s, by its name.
    let (old, new): (Vec<Instant>, Vec<Instant>) = fake
        .starts_of("slower")
        .into_iter()
        .partition(|at| *at < reloaded_at);
    steady(&old, ten, t0, reloaded_at);
    on_slots("slower", ten, &old);
    steady(&new, thirty, reloaded_at, end);
    on_slots("slower", thirty, &new);
    // Added: on its own slots from the reload on.
    let added = fake.starts_of("new");
    steady(&added, ten, reloaded_at, end);
    on_slots("new", ten, &added);
}

#[tokio::test(start_paused = true)]
async fn the_shutdown_waits_for_probes_within_the_grace_and_cuts_those_that_outlive_it() {
    let (fake, seen) = (Fake::new(), Arc::new(Seen::default()));
    fake.set("quick", Act::Gated(SHUTDOWN_GRACE - Duration::from_secs(2)));
    fake.set("stuck", Act::Forever);
    let mut s = scheduler(&fake, &seen, 10, WALL0);
    s.apply(&targets(&[("quick", ""), ("stuck", "")]));
    // Both started (each within its first interval) and are running.
    sleep(Duration::from_secs(10)).await;
    assert_eq!(s.in_flight(), 2);

    fake.gate.send_replace(true);
    let asked = Instant::now();
    stop(s).await;
    assert!(
        near(asked.elapsed(), SHUTDOWN_GRACE),
        "{:?}",
        asked.elapsed()
    );
    // The one that finished within the grace was recorded; the other was dropped, unrecorded.
    assert_eq!(seen.outcomes(), ["quick"]);
    assert_eq!(
        fake.running.load(Ordering::SeqCst),
        0,
        "the stuck probe was dropped"
    );
    let events = seen.events();
    let abandoned: Vec<usize> = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Abandoned { in_flight } => Some(*in_flight),
            _ => None,
        })
        .collect();
    assert_eq!(abandoned, [1]);
    let finished: Vec<&str> = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Finished(t) => Some(t.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(finished, ["quick", "stuck"]);
    assert_eq!(fake.starts().len(), 2, "nothing started after the stop");
}

#[tokio::test(start_paused = true)]
async fn the_shutdown_ends_when_the_last_probe_does() {
    let (fake, seen) = (Fake::new(), Arc::new(Seen::default()));
    fake.set("a", Act::Gated(Duration::from_secs(3)));
    fake.set("b", Act::Gated(Duration::from_secs(7)));
    let mut s = scheduler(&fake, &seen, 10, WALL0);
    s.apply(&targets(&[("a", ""), ("b", "")]));
    sleep(Duration::from_secs(10)).await;
    assert_eq!(s.in_flight(), 2);
    fake.gate.send_replace(true);
    let asked = Instant::now();
    stop(s).await;
    assert!(
        near(asked.elapsed(), Duration::from_secs(7)),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(seen.outcomes(), ["a", "b"]);
    assert!(
        !seen
            .events()
            .iter()
            .any(|(_, e)| matches!(e, Event::Abandoned { .. }))
    );
}

/// A server that asks for a pause (a mail API's 429 with `Retry-After: 35`) gets it: the
/// target's next start is its first slot at least 35 s later, none of the starts given up is
/// counted as skipped, and the target keeps its place in the interval. Others are untouched.
#[tokio::test(start_paused = true)]
async fn a_retry_after_holds_the_next_start_back_to_a_slot_at_least_that_far() {
    let interval = Duration::from_secs(10);
    let (fake, seen) = (Fake::new(), Arc::new(Seen::default()));
    fake.set("throttled", Act::AskToWait(Duration::from_secs(35)));
    let t0 = Instant::now();
    let mut s = scheduler(&fake, &seen, 10, WALL0);
    s.apply(&targets(&[("throttled", ""), ("neighbour", "")]));
    sleep(Duration::from_secs(100)).await;
    stop(s).await;

    let starts = fake.starts_of("throttled");
    assert!(starts.len() >= 5, "{starts:?}");
    // 100 ms of probing and 35 s of waiting: the slots at +10, +20 and +30 s are given up.
    assert!(near(starts[1] - starts[0], 4 * interval), "{starts:?}");
    assert!(starts[1] - starts[0] >= Duration::from_secs(35));
    for pair in starts[1..].windows(2) {
        assert!(near(pair[1] - pair[0], interval), "{starts:?}");
    }
    for at in &starts {
        assert!(after_slot(*at, t0, WALL0, "throttled", interval) < TICK);
    }
    assert_eq!(seen.skipped("throttled"), Vec::<u64>::new());
    let neighbour = fake.starts_of("neighbour");
    assert_eq!(neighbour.len(), 10, "{neighbour:?}");
}
