use super::*;
use std::time::Instant;

use crate::probe::Phase;
use crate::probe::classify::FailureClass;

const REFUSED: (FailureClass, Phase) = (FailureClass::ConnectRefused, Phase::Connect);
const REJECTED: (FailureClass, Phase) = (FailureClass::AuthRejected, Phase::Login);

#[test]
fn a_change_is_said_once_and_repeats_are_not() {
    let said = LogMemory::default();
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert_eq!(said.note_at("a", Ok(false), at(0)), Change::Same);
    assert_eq!(said.note_at("a", Err(REFUSED), at(1)), Change::Failed);
    for s in 2..10 {
        assert_eq!(said.note_at("a", Err(REFUSED), at(s)), Change::Same);
    }
    // Another way of failing is news.
    assert_eq!(said.note_at("a", Err(REJECTED), at(10)), Change::Failed);
    assert_eq!(
        said.note_at("a", Ok(false), at(11)),
        Change::Recovered {
            failures: 10,
            failing: Duration::from_secs(10)
        }
    );
    assert_eq!(said.note_at("a", Ok(false), at(12)), Change::Same);
    // Other targets have their own story.
    assert_eq!(said.note_at("b", Err(REFUSED), at(12)), Change::Failed);
}

#[test]
fn a_long_outage_is_reminded_hourly() {
    let said = LogMemory::default();
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert_eq!(said.note_at("a", Err(REFUSED), at(0)), Change::Failed);
    let mut reminders = Vec::new();
    for s in (60..=3 * 3600).step_by(60) {
        match said.note_at("a", Err(REFUSED), at(s)) {
            Change::Same => {}
            Change::StillFailing { failures, failing } => {
                reminders.push((failures, failing.as_secs()))
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(reminders, [(61, 3600), (121, 7200), (181, 10800)]);
}

#[test]
fn slow_and_fast_again_are_said_once() {
    let said = LogMemory::default();
    let t0 = Instant::now();
    assert_eq!(said.note_at("a", Ok(true), t0), Change::Slow);
    assert_eq!(said.note_at("a", Ok(true), t0), Change::Same);
    assert_eq!(said.note_at("a", Ok(false), t0), Change::Fast);
    assert_eq!(said.note_at("a", Ok(false), t0), Change::Same);
    // Back from failing, but slow: that it is back is the news.
    said.note_at("a", Err(REFUSED), t0);
    assert!(matches!(
        said.note_at("a", Ok(true), t0),
        Change::Recovered { failures: 1, .. }
    ));
    assert_eq!(said.note_at("a", Ok(false), t0), Change::Fast);
    said.forget(&["a".into()]);
    assert_eq!(said.note_at("a", Ok(true), t0), Change::Slow);
}
