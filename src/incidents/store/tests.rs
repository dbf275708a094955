use super::*;
use crate::incidents::engine::Engine;
use crate::incidents::state::Observation;
use crate::load::Policy;
use crate::probe::Phase;
use crate::probe::classify::FailureClass;

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
}

#[test]
fn an_open_incident_survives_a_reopen_and_closes_later() {
    let dir = std::env::temp_dir().join(format!("mp-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = Store::open(&dir).unwrap();
    assert_eq!(store.version().unwrap(), MIGRATIONS.len() as i64);
    let (states, open, next) = store.load().unwrap();
    assert!(states.is_empty() && open.is_empty());
    let seed = vec![
        TargetState::new("a", "eu", Protocol::Imap, Some(5), t(0)),
        TargetState::new("b", "eu", Protocol::Imap, None, t(0)),
    ];
    let mut e = Engine::new(Policy::default(), seed, Vec::new(), next);
    for i in 0..3 {
        e.observe(&Observation::failed(
            "a",
            t(i),
            FailureClass::ConnectRefused,
            Phase::Connect,
        ));
    }
    store.save(&e.tick()).unwrap();
    drop(store);

    // A restart: the same file, a fresh engine from it.
    let mut store = Store::open(&dir).unwrap();
    let (states, open, next) = store.load().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        states.iter().find(|s| s.name == "a").unwrap().health,
        Health::Down
    );
    assert_eq!(next, open[0].id + 1);
    let mut e = Engine::new(Policy::default(), states, open, next);
    for i in 10..12 {
        e.observe(&Observation::ok("a", t(i), false));
    }
    store.save(&e.tick()).unwrap();
    let history = store.history(t(0)).unwrap();
    assert_eq!(history.len(), 1);
    let (inc, entries) = &history[0];
    assert_eq!(inc.closed_at, Some(t(11)));
    let events: Vec<&str> = entries.iter().map(|x| x.event.as_str()).collect();
    assert_eq!(events, ["opened: 1 down", "resolved: every target is up"]);
    assert_eq!(entries[1].status, "resolved after 9s");
    // Retention removes it, entries included.
    assert_eq!(store.prune(t(100)).unwrap(), 1);
    assert!(store.history(t(0)).unwrap().is_empty());
    // Read-only access works alongside.
    assert!(Store::open_read_only(&dir).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn members_removed_from_the_config_are_remembered_across_a_restart() {
    let dir = std::env::temp_dir().join(format!("mp-store-rm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = Store::open(&dir).unwrap();
    let seed = vec![
        TargetState::new("a", "eu", Protocol::Imap, None, t(0)),
        TargetState::new("b", "eu", Protocol::Imap, None, t(0)),
    ];
    let mut e = Engine::new(Policy::default(), seed, Vec::new(), 1);
    for i in 0..3 {
        for n in ["a", "b"] {
            e.observe(&Observation::failed(
                n,
                t(i),
                FailureClass::ConnectTimeout,
                Phase::Connect,
            ));
        }
    }
    store.save(&e.tick()).unwrap();
    // A reload drops "a" while it is down.
    let b = crate::load::parse(
        Path::new("p.toml"),
        "[[target]]\nname = \"b\"\nregion = \"eu\"\nprotocol = \"imap\"\nhost = \"h\"\n\
             username = \"u\"\npassword_env = \"HOME\"\n",
    )
    .unwrap()
    .targets;
    e.set_targets(&b, t(5));
    store.save(&e.tick()).unwrap();
    drop(store);

    let mut store = Store::open(&dir).unwrap();
    let (states, open, next) = store.load().unwrap();
    assert_eq!(open[0].removed, ["a".to_string()].into());
    let mut e = Engine::new(Policy::default(), states, open, next);
    e.set_targets(&b, t(9));
    for i in 10..12 {
        e.observe(&Observation::ok("b", t(i), false));
    }
    store.save(&e.tick()).unwrap();
    let (_, entries) = &store.history(t(0)).unwrap()[0];
    assert_eq!(
        entries.last().unwrap().event,
        "resolved: every target still monitored is up; removed from monitoring before \
             recovering: a"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_writer_is_refused() {
    let dir = std::env::temp_dir().join(format!("mp-store-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = Store::open(&dir).unwrap();
    let e = Store::open(&dir).err().unwrap().to_string();
    assert!(e.contains("locked by another mailprobe daemon"), "{e}");
    assert!(Store::open_read_only(&dir).is_ok(), "readers are welcome");
    drop(first);
    assert!(
        Store::open(&dir).is_ok(),
        "free again once the first is gone"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_version_1_database_is_migrated_in_place() {
    let dir = std::env::temp_dir().join(format!("mp-store-v1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A database as the first release wrote it, with an open incident.
    let conn = Connection::open(dir.join(FILE)).unwrap();
    conn.execute_batch(MIGRATIONS[0]).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute(
            "INSERT INTO incidents (id, opened_at, last_change, members, ever) VALUES (7, 1000, 1000, '[\"a\"]', '[\"a\"]')",
            [],
        )
        .unwrap();
    drop(conn);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.version().unwrap(), MIGRATIONS.len() as i64);
    let (_, open, next) = store.load().unwrap();
    assert_eq!((open.len(), open[0].id, next), (1, 7, 8));
    assert!(open[0].peak.is_none());
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn uptime_rollups_add_up_per_day_and_go_with_retention() {
    use crate::incidents::uptime::{DayRow, day_start};
    let dir = std::env::temp_dir().join(format!("mp-store-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = Store::open(&dir).unwrap();
    let row = |day, partial, incident: Option<i64>| DayRow {
        day,
        region: "eu".into(),
        service: "reading".into(),
        observed_ms: 5_000,
        partial_ms: partial,
        down_share_ms: partial as f64 / 4.0,
        incidents: incident.into_iter().collect(),
        ..DayRow::default()
    };
    store.add_uptime(&[row(100, 5_000, Some(3))]).unwrap();
    store
        .add_uptime(&[row(100, 0, Some(3)), row(101, 0, None)])
        .unwrap();
    store.add_uptime(&[row(100, 5_000, Some(4))]).unwrap();
    let rows = store.uptime(0).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].observed_ms, 15_000);
    assert_eq!(rows[0].partial_ms, 10_000);
    assert_eq!(rows[0].up_ms(), 5_000);
    assert_eq!(rows[0].down_share_ms, 2_500.0);
    assert_eq!(rows[0].incidents, [3, 4].into());
    assert!(rows[1].incidents.is_empty());
    assert_eq!(store.uptime(101).unwrap().len(), 1);
    // Readers see it too.
    assert_eq!(
        Store::open_read_only(&dir)
            .unwrap()
            .uptime(0)
            .unwrap()
            .len(),
        2
    );
    // Retention drops days before the cutoff's.
    store.prune(day_start(101)).unwrap();
    let rows = store.uptime(0).unwrap();
    assert_eq!((rows.len(), rows[0].day), (1, 101));
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = std::env::temp_dir().join(format!("mp-store-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    drop(Store::open(&dir).unwrap());
    let conn = Connection::open(dir.join(FILE)).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let e = Store::open(&dir).err().unwrap().to_string();
    assert!(e.contains("schema version 99"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
