//! SQLite persistence of target states and incidents in the state directory, so that a restart
//! or a reload loses no history and an incident open at shutdown is still open afterwards.
//!
//! Schema changes are numbered migrations recorded in `PRAGMA user_version`: each runs once, in a
//! transaction, in order. A database written by a newer mailprobe (a higher version than this
//! one knows) is refused rather than misread. WAL mode lets `mailprobe incidents` read while the
//! daemon writes.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, params};

use super::engine::{Entry, EntryKind, Incident, Summary, Tick};

mod providers;
mod updates;
use super::state::{Health, TargetState};
use crate::probe::Protocol;
pub use updates::UpdateError;

/// The database file inside the state directory.
pub const FILE: &str = "mailprobe.db";
/// Held (locked) by the daemon that owns the state directory.
pub const LOCK: &str = "mailprobe.lock";

/// Schema migrations; the index + 1 is the `user_version` after it ran.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        opened_at INTEGER NOT NULL,
        closed_at INTEGER,
        last_change INTEGER NOT NULL,
        members TEXT NOT NULL,
        ever TEXT NOT NULL,
        last TEXT
    );
    CREATE INDEX incidents_closed_at ON incidents (closed_at);
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        incident INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        event TEXT NOT NULL,
        summary TEXT NOT NULL,
        status TEXT NOT NULL
    );
    CREATE INDEX entries_incident ON entries (incident, at);
    CREATE TABLE targets (
        name TEXT PRIMARY KEY,
        region TEXT NOT NULL,
        protocol TEXT NOT NULL,
        users INTEGER,
        health TEXT NOT NULL,
        since INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        successes INTEGER NOT NULL,
        slow INTEGER NOT NULL,
        fast INTEGER NOT NULL,
        last_failure TEXT
    );",
    // 2: the widest extent an incident reached, for reports on resolved incidents.
    "ALTER TABLE incidents ADD COLUMN peak TEXT;",
    // 3: members removed from the config before they recovered (NULL: none).
    "ALTER TABLE incidents ADD COLUMN removed TEXT;",
    // 4: the provider's issues (as JSON: their posts included) and which incident each is
    // beside, so that the provider's side of an outage survives restarts.
    "CREATE TABLE provider_issues (
        provider TEXT NOT NULL,
        id TEXT NOT NULL,
        issue TEXT NOT NULL,
        resolved_at INTEGER,
        PRIMARY KEY (provider, id)
    );
    CREATE TABLE provider_links (
        incident INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        issue TEXT NOT NULL,
        linked_at INTEGER NOT NULL,
        PRIMARY KEY (incident, provider, issue)
    );",
    // 5: per-day rollups of each component (service × region) for the uptime bars.
    "CREATE TABLE uptime (
        day INTEGER NOT NULL,
        region TEXT NOT NULL,
        service TEXT NOT NULL,
        observed_ms INTEGER NOT NULL,
        degraded_ms INTEGER NOT NULL,
        partial_ms INTEGER NOT NULL,
        major_ms INTEGER NOT NULL,
        maintenance_ms INTEGER NOT NULL,
        down_share_ms REAL NOT NULL,
        PRIMARY KEY (day, region, service)
    ) WITHOUT ROWID;
    CREATE TABLE uptime_incidents (
        day INTEGER NOT NULL,
        region TEXT NOT NULL,
        service TEXT NOT NULL,
        incident INTEGER NOT NULL,
        PRIMARY KEY (day, region, service, incident)
    ) WITHOUT ROWID;",
    // 6: who wrote each entry (notes by people, maintenance), maintenance windows added by
    // `mailprobe maintenance add`, and this database's random identity (the Atom feed's ids).
    "ALTER TABLE entries ADD COLUMN kind TEXT NOT NULL DEFAULT 'change';
    CREATE TABLE maintenance (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        targets TEXT NOT NULL,
        regions TEXT NOT NULL,
        starts_at INTEGER NOT NULL,
        ends_at INTEGER NOT NULL,
        reason TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX maintenance_ends_at ON maintenance (ends_at);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta (key, value) VALUES ('instance', lower(hex(randomblob(16))));",
];

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("{path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The state directory could not be made.
    #[error("cannot create the state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A newer mailprobe wrote this database.
    #[error("{path} has schema version {found}; this mailprobe knows up to {known} (downgrade?)")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// Ours.
        known: i64,
    },
    /// Another mailprobe daemon uses this state directory.
    #[error("{0} is locked by another mailprobe daemon; each instance needs its own state_dir")]
    InUse(PathBuf),
    /// No history was ever written here.
    #[error("no incident history at {0} (has the daemon run with this state_dir?)")]
    Missing(PathBuf),
    /// A stored value did not decode.
    #[error("{path}: corrupt row: {what}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What did not decode.
        what: String,
    },
}

/// The open database (and, for the daemon's writable one, the lock on its directory).
pub struct Store {
    conn: Connection,
    path: PathBuf,
    _lock: Option<std::fs::File>,
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl Store {
    /// Opens (creating if needed) the database in `dir` and brings its schema up to date.
    ///
    /// Only one daemon may write a state directory: two sharing one would overwrite each
    /// other's target states and incident numbers, so the second is refused.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let dir_error = |source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(dir_error)?;
        let lock_path = dir.join(LOCK);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(dir_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::InUse(lock_path)),
            Err(std::fs::TryLockError::Error(e)) => return Err(dir_error(e)),
        }
        let path = dir.join(FILE);
        let conn = Connection::open(&path).map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let mut store = Store {
            conn,
            path,
            _lock: Some(lock),
        };
        store.sql(|c| {
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "foreign_keys", "ON")?;
            c.pragma_update(None, "synchronous", "NORMAL")?;
            c.busy_timeout(Duration::from_secs(5))
        })?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing database for reading only (`mailprobe incidents`).
    pub fn open_read_only(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(FILE);
        if !path.exists() {
            return Err(StoreError::Missing(path));
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
            |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            },
        )?;
        let store = Store {
            conn,
            path,
            _lock: None,
        };
        let version = store.version()?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                path: store.path.clone(),
                found: version,
                known: MIGRATIONS.len() as i64,
            });
        }
        Ok(store)
    }

    fn sql<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        f(&self.conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    fn corrupt(&self, what: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    /// The schema version recorded in the file.
    pub fn version(&self) -> Result<i64, StoreError> {
        self.sql(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version = self.version()?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known,
            });
        }
        let path = self.path.clone();
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self
                .conn
                .transaction()
                .map_err(|source| StoreError::Sqlite {
                    path: path.clone(),
                    source,
                })?;
            tx.execute_batch(sql)
                .and_then(|_| tx.pragma_update(None, "user_version", i as i64 + 1))
                .and_then(|_| tx.commit())
                .map_err(|source| StoreError::Sqlite {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Target states, open incidents, and the next incident id.
    pub fn load(&self) -> Result<(Vec<TargetState>, Vec<Incident>, i64), StoreError> {
        let rows = self.sql(|c| {
            let mut st = c.prepare(
                "SELECT name, region, protocol, users, health, since, failures, successes, slow, fast, last_failure FROM targets",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    [r.get::<_, u32>(6)?, r.get(7)?, r.get(8)?, r.get(9)?],
                    r.get::<_, Option<String>>(10)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let mut states = Vec::with_capacity(rows.len());
        for (name, region, protocol, users, health, since, n, last) in rows {
            let protocol: Protocol = serde_json::from_value(serde_json::Value::String(protocol))
                .map_err(|e| self.corrupt(format!("target {name}: protocol: {e}")))?;
            let health = Health::parse(&health)
                .ok_or_else(|| self.corrupt(format!("target {name}: health {health:?}")))?;
            let last_failure = match last {
                Some(j) => Some(
                    serde_json::from_str(&j)
                        .map_err(|e| self.corrupt(format!("target {name}: last failure: {e}")))?,
                ),
                None => None,
            };
            states.push(TargetState {
                name,
                region,
                protocol,
                users: users.and_then(|u| u64::try_from(u).ok()),
                health,
                since: time(since),
                failures: n[0],
                successes: n[1],
                slow: n[2],
                fast: n[3],
                last_failure,
            });
        }
        let open = self.incidents("WHERE closed_at IS NULL", params![])?;
        let next_id: i64 = self.sql(|c| {
            c.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM incidents", [], |r| {
                r.get(0)
            })
        })?;
        Ok((states, open, next_id))
    }

    fn incidents(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Incident>, StoreError> {
        let rows = self.sql(|c| {
            let mut st = c.prepare(&format!(
                "SELECT id, opened_at, closed_at, last_change, members, ever, last, peak, removed FROM incidents {filter} ORDER BY opened_at, id"
            ))?;
            let rows = st.query_map(args, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(
                |(id, opened, closed, change, members, ever, last, peak, removed)| {
                    let bad = |e: serde_json::Error| self.corrupt(format!("incident {id}: {e}"));
                    Ok(Incident {
                        id,
                        opened_at: time(opened),
                        closed_at: closed.map(time),
                        last_change: time(change),
                        members: serde_json::from_str(&members).map_err(bad)?,
                        ever: serde_json::from_str(&ever).map_err(bad)?,
                        removed: match removed {
                            Some(j) => serde_json::from_str(&j).map_err(bad)?,
                            None => Default::default(),
                        },
                        last: match last {
                            Some(j) => Some(serde_json::from_str::<Summary>(&j).map_err(bad)?),
                            None => None,
                        },
                        peak: match peak {
                            Some(j) => Some(serde_json::from_str::<Summary>(&j).map_err(bad)?),
                            None => None,
                        },
                    })
                },
            )
            .collect()
    }

    /// Writes one tick's changes in a single transaction.
    pub fn save(&mut self, tick: &Tick) -> Result<(), StoreError> {
        if tick.entries.is_empty()
            && tick.incidents.is_empty()
            && tick.states.is_empty()
            && tick.removed.is_empty()
        {
            return Ok(());
        }
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        let result = (|| -> rusqlite::Result<()> {
            for inc in &tick.incidents {
                tx.execute(
                    "INSERT INTO incidents (id, opened_at, closed_at, last_change, members, ever, last, peak, removed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (id) DO UPDATE SET opened_at = ?2, closed_at = ?3,
                       last_change = ?4, members = ?5, ever = ?6, last = ?7, peak = ?8, removed = ?9",
                    params![
                        inc.id,
                        ms(inc.opened_at),
                        inc.closed_at.map(ms),
                        ms(inc.last_change),
                        json(&inc.members),
                        json(&inc.ever),
                        inc.last.as_ref().map(json),
                        inc.peak.as_ref().map(json),
                        (!inc.removed.is_empty()).then(|| json(&inc.removed)),
                    ],
                )?;
            }
            for e in &tick.entries {
                tx.execute(
                    "INSERT INTO entries (incident, at, event, summary, status, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![e.incident, ms(e.at), e.event, json(&e.summary), e.status, e.kind.as_str()],
                )?;
            }
            for s in &tick.states {
                tx.execute(
                    "INSERT INTO targets (name, region, protocol, users, health, since, failures, successes, slow, fast, last_failure)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (name) DO UPDATE SET region = ?2, protocol = ?3, users = ?4,
                       health = ?5, since = ?6, failures = ?7, successes = ?8, slow = ?9, fast = ?10,
                       last_failure = ?11",
                    params![
                        s.name,
                        s.region,
                        s.protocol.as_str(),
                        s.users.and_then(|u| i64::try_from(u).ok()),
                        s.health.as_str(),
                        ms(s.since),
                        s.failures,
                        s.successes,
                        s.slow,
                        s.fast,
                        s.last_failure.as_ref().map(json),
                    ],
                )?;
            }
            for name in &tick.removed {
                tx.execute("DELETE FROM targets WHERE name = ?1", params![name])?;
            }
            Ok(())
        })();
        result
            .and_then(|_| tx.commit())
            .map_err(|source| StoreError::Sqlite { path, source })
    }

    /// Incidents open now, or opened or closed since `since`, each with its timeline.
    pub fn history(&self, since: SystemTime) -> Result<Vec<(Incident, Vec<Entry>)>, StoreError> {
        let since = ms(since);
        let incidents = self.incidents(
            "WHERE closed_at IS NULL OR opened_at >= ?1 OR closed_at >= ?1",
            params![since],
        )?;
        let mut out = Vec::with_capacity(incidents.len());
        for inc in incidents {
            let entries = self
                .entries("WHERE incident = ?1 ORDER BY at, id", params![inc.id])?
                .into_iter()
                .map(|(_, e)| e)
                .collect();
            out.push((inc, entries));
        }
        Ok(out)
    }

    /// One incident with its timeline, by id (the status page's permalink).
    pub fn incident(&self, id: i64) -> Result<Option<(Incident, Vec<Entry>)>, StoreError> {
        match self.incidents("WHERE id = ?1", params![id])?.pop() {
            Some(inc) => {
                let entries = self
                    .entries("WHERE incident = ?1 ORDER BY at, id", params![inc.id])?
                    .into_iter()
                    .map(|(_, e)| e)
                    .collect();
                Ok(Some((inc, entries)))
            }
            None => Ok(None),
        }
    }

    /// Timeline entries with their row ids, selected and ordered by `filter`.
    fn entries(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<(i64, Entry)>, StoreError> {
        let rows = self.sql(|c| {
            let mut st = c.prepare(&format!(
                "SELECT id, incident, at, event, summary, status, kind FROM entries {filter}"
            ))?;
            let rows = st.query_map(args, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let mut entries = Vec::with_capacity(rows.len());
        for (row, incident, at, event, summary, status, kind) in rows {
            let bad = |what: String| self.corrupt(format!("entry of incident {incident}: {what}"));
            entries.push((
                row,
                Entry {
                    incident,
                    at: time(at),
                    event,
                    summary: serde_json::from_str(&summary).map_err(|e| bad(e.to_string()))?,
                    status,
                    kind: EntryKind::parse(&kind).ok_or_else(|| bad(format!("kind {kind:?}")))?,
                },
            ));
        }
        Ok(entries)
    }

    /// Deletes incidents closed before `cutoff` (their entries go with them); returns how many.
    pub fn prune(&mut self, cutoff: SystemTime) -> Result<usize, StoreError> {
        let day = super::uptime::day_of(cutoff);
        self.sql(|c| {
            c.execute("DELETE FROM uptime WHERE day < ?1", params![day])?;
            c.execute("DELETE FROM uptime_incidents WHERE day < ?1", params![day])?;
            c.execute(
                "DELETE FROM incidents WHERE closed_at IS NOT NULL AND closed_at < ?1",
                params![ms(cutoff)],
            )
        })
    }

    /// Adds rollup time (one transaction): each row's durations add to its day's.
    pub fn add_uptime(&mut self, rows: &[super::uptime::DayRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let result = (|| -> rusqlite::Result<()> {
            let mut add = tx.prepare_cached(
                "INSERT INTO uptime (day, region, service, observed_ms, degraded_ms, partial_ms,
                   major_ms, maintenance_ms, down_share_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (day, region, service) DO UPDATE SET
                   observed_ms = observed_ms + ?4, degraded_ms = degraded_ms + ?5,
                   partial_ms = partial_ms + ?6, major_ms = major_ms + ?7,
                   maintenance_ms = maintenance_ms + ?8, down_share_ms = down_share_ms + ?9",
            )?;
            let mut touch = tx.prepare_cached(
                "INSERT OR IGNORE INTO uptime_incidents (day, region, service, incident)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in rows {
                add.execute(params![
                    r.day,
                    r.region,
                    r.service,
                    r.observed_ms,
                    r.degraded_ms,
                    r.partial_ms,
                    r.major_ms,
                    r.maintenance_ms,
                    r.down_share_ms
                ])?;
                for i in &r.incidents {
                    touch.execute(params![r.day, r.region, r.service, i])?;
                }
            }
            Ok(())
        })();
        result.and_then(|_| tx.commit()).map_err(err)
    }

    /// Rollups from `from_day` on, every component, oldest first.
    pub fn uptime(&self, from_day: i64) -> Result<Vec<super::uptime::DayRow>, StoreError> {
        let mut rows = self.sql(|c| {
            let mut st = c.prepare_cached(
                "SELECT day, region, service, observed_ms, degraded_ms, partial_ms, major_ms,
                   maintenance_ms, down_share_ms FROM uptime WHERE day >= ?1
                 ORDER BY region, service, day",
            )?;
            let rows = st.query_map(params![from_day], |r| {
                Ok(super::uptime::DayRow {
                    day: r.get(0)?,
                    region: r.get(1)?,
                    service: r.get(2)?,
                    observed_ms: r.get(3)?,
                    degraded_ms: r.get(4)?,
                    partial_ms: r.get(5)?,
                    major_ms: r.get(6)?,
                    maintenance_ms: r.get(7)?,
                    down_share_ms: r.get(8)?,
                    incidents: Default::default(),
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let touched = self.sql(|c| {
            let mut st = c.prepare_cached(
                "SELECT day, region, service, incident FROM uptime_incidents WHERE day >= ?1",
            )?;
            let rows = st.query_map(params![from_day], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let mut by: std::collections::HashMap<
            (i64, String, String),
            std::collections::BTreeSet<i64>,
        > = std::collections::HashMap::new();
        for (day, region, service, i) in touched {
            by.entry((day, region, service)).or_default().insert(i);
        }
        for r in &mut rows {
            if let Some(set) = by.remove(&(r.day, r.region.clone(), r.service.clone())) {
                r.incidents = set;
            }
        }
        Ok(rows)
    }
}

/// A small value stored as a JSON text column (sets, summaries: they always encode).
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests;
