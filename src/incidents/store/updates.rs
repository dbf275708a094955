//! What people add to the history beside the daemon: maintenance windows and notes, written
//! by `mailprobe maintenance`/`mailprobe incidents note` from a shell or by the notes API, while
//! the daemon holds the state directory's lock. SQLite's WAL and busy timeout serialise the
//! writers; the daemon reads the windows again at every tick and notes are rows of the timeline
//! it only ever appends to, so nothing needs a restart or a reload. Also the reads the Atom feed
//! makes: the latest entries with their row ids, which name them for good.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, params};

use super::{FILE, MIGRATIONS, Store, StoreError, json, ms, time};
use crate::incidents::engine::{Entry, EntryKind, Summary};
use crate::incidents::maintenance::{Source, Window};

/// Why a window or a note was not written.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The database said no.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No incident with that id (never, or pruned by retention).
    #[error("no incident #{0} (see `mailprobe incidents`)")]
    NoIncident(i64),
    /// No window with that id, or it is over already.
    #[error("no current or upcoming maintenance window #{0} (see `mailprobe maintenance list`)")]
    NoWindow(i64),
}

/// A window as stored, decoded.
type WindowRow = (i64, String, String, i64, i64, String);

impl Store {
    /// Opens the database in `dir` to add windows or notes: with the lock when no daemon runs
    /// (creating or upgrading the database as the daemon would), and without it beside a
    /// running daemon, which has brought the schema up to date already.
    pub fn open_for_update(dir: &Path) -> Result<Store, StoreError> {
        match Store::open(dir) {
            Err(StoreError::InUse(_)) => {}
            other => return other,
        }
        let path = dir.join(FILE);
        let conn = Connection::open(&path).map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let store = Store {
            conn,
            path,
            _lock: None,
        };
        store.sql(|c| {
            c.pragma_update(None, "foreign_keys", "ON")?;
            c.busy_timeout(Duration::from_secs(5))
        })?;
        let (found, known) = (store.version()?, MIGRATIONS.len() as i64);
        if found != known {
            return Err(StoreError::TooNew {
                path: store.path.clone(),
                found,
                known,
            });
        }
        Ok(store)
    }

    /// Stores a window (checked by the caller); returns its id.
    pub fn add_window(&self, w: &Window, now: SystemTime) -> Result<i64, StoreError> {
        self.sql(|c| {
            c.execute(
                "INSERT INTO maintenance (targets, regions, starts_at, ends_at, reason, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    json(&w.targets),
                    json(&w.regions),
                    ms(w.start),
                    ms(w.end),
                    w.reason,
                    ms(now)
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Stored windows that end after `after` (current and upcoming ones, for the daemon's
    /// tick; earlier ones too for `maintenance list --all`), soonest first.
    pub fn windows(&self, after: SystemTime) -> Result<Vec<Window>, StoreError> {
        let rows: Vec<WindowRow> = self.sql(|c| {
            let mut st = c.prepare(
                "SELECT id, targets, regions, starts_at, ends_at, reason FROM maintenance
                 WHERE ends_at > ?1 ORDER BY starts_at, id",
            )?;
            let rows = st.query_map(params![ms(after)], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(id, targets, regions, start, end, reason)| {
                let bad = |e: serde_json::Error| self.corrupt(format!("maintenance {id}: {e}"));
                Ok(Window {
                    source: Source::Cli(id),
                    targets: serde_json::from_str(&targets).map_err(bad)?,
                    regions: serde_json::from_str(&regions).map_err(bad)?,
                    start: time(start),
                    end: time(end),
                    reason,
                })
            })
            .collect()
    }

    /// Ends window `id` at `now`: one in force stops now, one still to come is cancelled.
    /// Returns it as it was.
    pub fn end_window(&self, id: i64, now: SystemTime) -> Result<Window, UpdateError> {
        let w = self
            .windows(now)?
            .into_iter()
            .find(|w| w.source == Source::Cli(id))
            .ok_or(UpdateError::NoWindow(id))?;
        self.sql(|c| {
            if w.start > now {
                c.execute("DELETE FROM maintenance WHERE id = ?1", params![id])
            } else {
                c.execute(
                    "UPDATE maintenance SET ends_at = ?2 WHERE id = ?1",
                    params![id, ms(now)],
                )
            }
        })?;
        Ok(w)
    }

    /// Adds a note (checked by the caller) to incident `id`'s timeline at `at`. It carries the
    /// incident's state as its last entry gave it, so that every view of "the incident now"
    /// (its last entry) stays true.
    pub fn add_note(&mut self, id: i64, at: SystemTime, text: &str) -> Result<Entry, UpdateError> {
        let path = self.path.clone();
        let sqlite = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sqlite)?;
        let last: Option<(String, String)> = tx
            .query_row(
                "SELECT summary, status FROM entries WHERE incident = ?1 ORDER BY at DESC, id DESC LIMIT 1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sqlite)?;
        let (summary, status) = match last {
            Some(l) => l,
            None => {
                // Opened but not yet described (the daemon ticks every few seconds), or none.
                let row: Option<Option<String>> = tx
                    .query_row(
                        "SELECT last FROM incidents WHERE id = ?1",
                        params![id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sqlite)?;
                match row {
                    Some(Some(last)) => (last, "ongoing".to_string()),
                    _ => return Err(UpdateError::NoIncident(id)),
                }
            }
        };
        let summary: Summary = serde_json::from_str(&summary).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            what: format!("incident {id}: {e}"),
        })?;
        let entry = Entry {
            incident: id,
            at,
            event: text.to_string(),
            summary,
            status,
            kind: EntryKind::Note,
        };
        tx.execute(
            "INSERT INTO entries (incident, at, event, summary, status, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, ms(at), entry.event, json(&entry.summary), entry.status, EntryKind::Note.as_str()],
        )
        .and_then(|_| tx.commit())
        .map_err(sqlite)?;
        Ok(entry)
    }

    /// This database's random identity, made when its schema got notes: the Atom feed's ids
    /// start with it, so that two installations never share one.
    pub fn instance(&self) -> Result<String, StoreError> {
        self.sql(|c| {
            c.query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| {
                r.get(0)
            })
        })
    }

    /// The latest `limit` timeline entries, newest first, with their row ids; of incidents
    /// touching `region` only, when given.
    pub fn latest_entries(
        &self,
        region: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(i64, Entry)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match region {
            None => self.entries("ORDER BY at DESC, id DESC LIMIT ?1", params![limit]),
            Some(r) => self.entries(
                "WHERE EXISTS (SELECT 1 FROM json_each(entries.summary, '$.regions') WHERE value = ?1)
                 ORDER BY at DESC, id DESC LIMIT ?2",
                params![r, limit],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::incidents::engine::Engine;
    use crate::incidents::state::{Observation, TargetState};
    use crate::load::Policy;
    use crate::probe::classify::FailureClass;
    use crate::probe::{Phase, Protocol};

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("mp-upd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn window(start: u64, end: u64) -> Window {
        Window {
            source: Source::Cli(0),
            targets: vec!["a".into()],
            regions: vec![],
            start: t(start),
            end: t(end),
            reason: "work".into(),
        }
    }

    #[test]
    fn windows_are_stored_beside_a_running_daemon_and_ended_or_cancelled() {
        let d = dir("win");
        let daemon = Store::open(&d).unwrap();
        let cli = Store::open_for_update(&d).unwrap();
        assert!(
            cli._lock.is_none(),
            "the daemon holds the lock; the CLI writes beside it"
        );
        let now = cli.add_window(&window(10, 100), t(0)).unwrap();
        let later = cli.add_window(&window(200, 300), t(0)).unwrap();
        let seen: Vec<Source> = daemon
            .windows(t(50))
            .unwrap()
            .iter()
            .map(|w| w.source)
            .collect();
        assert_eq!(seen, [Source::Cli(now), Source::Cli(later)]);
        // Ending the one in force shortens it; ending the one to come cancels it.
        assert_eq!(cli.end_window(now, t(60)).unwrap().end, t(100));
        assert!(cli.end_window(later, t(60)).is_ok());
        assert!(daemon.windows(t(60)).unwrap().is_empty());
        let all = daemon.windows(UNIX_EPOCH).unwrap();
        assert_eq!((all.len(), all[0].end), (1, t(60)));
        assert!(matches!(
            cli.end_window(now, t(61)),
            Err(UpdateError::NoWindow(_))
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_note_carries_the_incidents_state_and_unknown_incidents_are_refused() {
        let d = dir("note");
        let mut daemon = Store::open(&d).unwrap();
        let seed = vec![TargetState::new("a", "eu", Protocol::Imap, None, t(0))];
        let mut e = Engine::new(Policy::default(), seed, Vec::new(), 1);
        for i in 0..3 {
            e.observe(&Observation::failed(
                "a",
                t(i),
                FailureClass::ConnectRefused,
                Phase::Connect,
            ));
        }
        daemon.save(&e.tick()).unwrap();
        let mut cli = Store::open_for_update(&d).unwrap();
        let note = cli.add_note(1, t(30), "found a full disk <b>").unwrap();
        assert_eq!(
            (note.kind, note.status.as_str()),
            (EntryKind::Note, "ongoing")
        );
        assert!(matches!(
            cli.add_note(9, t(30), "x"),
            Err(UpdateError::NoIncident(9))
        ));
        let (_, entries) = &daemon.history(t(0)).unwrap()[0];
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].kind, EntryKind::Note);
        assert_eq!(entries[1].event, "found a full disk <b>");
        assert_eq!(entries[1].summary, entries[0].summary);
        // The daemon keeps writing its own entries after it.
        for i in 40..42 {
            e.observe(&Observation::ok("a", t(i), false));
        }
        daemon.save(&e.tick()).unwrap();
        let (_, entries) = &daemon.history(t(0)).unwrap()[0];
        let kinds: Vec<EntryKind> = entries.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EntryKind::Change, EntryKind::Note, EntryKind::Change]
        );
        let latest = daemon.latest_entries(Some("eu"), 2).unwrap();
        assert_eq!(latest.len(), 2);
        assert!(latest[0].0 > latest[1].0, "newest first");
        assert!(daemon.latest_entries(Some("us"), 10).unwrap().is_empty());
        assert_eq!(daemon.instance().unwrap().len(), 32);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
