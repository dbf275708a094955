//! The provider's issues and their links to incidents, kept beside the incident timeline.

use std::time::SystemTime;

use rusqlite::params;

use super::{Store, StoreError, json, ms};
use crate::incidents::engine::{Entry, Incident};

/// The provider's issues: `provider_issues` and `provider_links` (migration 4).
impl Store {
    /// Saves (inserts or replaces) `issues`.
    pub fn save_provider_issues(
        &mut self,
        issues: &[&crate::provider::Issue],
    ) -> Result<(), StoreError> {
        if issues.is_empty() {
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
            for i in issues {
                tx.execute(
                    "INSERT INTO provider_issues (provider, id, issue, resolved_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (provider, id) DO UPDATE SET issue = ?3, resolved_at = ?4",
                    params![i.provider, i.id, json(i), i.resolved_at.map(ms)],
                )?;
            }
            Ok(())
        })();
        result
            .and_then(|_| tx.commit())
            .map_err(|source| StoreError::Sqlite { path, source })
    }

    fn provider_issues_where(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<(Option<i64>, crate::provider::Issue)>, StoreError> {
        let rows = self.sql(|c| {
            let mut st = c.prepare(&format!(
                "SELECT l.incident, p.issue FROM provider_issues p {filter}"
            ))?;
            let rows = st.query_map(args, |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, String>(1)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(incident, j)| {
                serde_json::from_str(&j)
                    .map(|i| (incident, i))
                    .map_err(|e| self.corrupt(format!("provider issue: {e}")))
            })
            .collect()
    }

    /// Whether the database has the provider tables (a read-only one written by an older
    /// mailprobe has not).
    pub fn has_provider_tables(&self) -> Result<bool, StoreError> {
        self.sql(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'provider_links'",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n > 0)
    }

    /// The provider issues beside each of `history`'s incidents.
    pub fn linked_for(
        &self,
        history: &[(Incident, Vec<Entry>)],
    ) -> Result<std::collections::HashMap<i64, Vec<crate::provider::Issue>>, StoreError> {
        let mut out = std::collections::HashMap::new();
        if !self.has_provider_tables()? {
            return Ok(out);
        }
        for (inc, _) in history {
            let linked = self.linked_issues(inc.id)?;
            if !linked.is_empty() {
                out.insert(inc.id, linked);
            }
        }
        Ok(out)
    }

    /// Provider issues open, or resolved since `since`.
    pub fn provider_issues(
        &self,
        since: SystemTime,
    ) -> Result<Vec<crate::provider::Issue>, StoreError> {
        Ok(self
            .provider_issues_where(
                "LEFT JOIN (SELECT NULL AS incident) l WHERE p.resolved_at IS NULL OR p.resolved_at >= ?1",
                params![ms(since)],
            )?
            .into_iter()
            .map(|(_, i)| i)
            .collect())
    }

    /// The provider issues beside `incident`.
    pub fn linked_issues(&self, incident: i64) -> Result<Vec<crate::provider::Issue>, StoreError> {
        Ok(self
            .provider_issues_where(
                "JOIN provider_links l ON l.provider = p.provider AND l.issue = p.id WHERE l.incident = ?1 ORDER BY l.linked_at",
                params![incident],
            )?
            .into_iter()
            .map(|(_, i)| i)
            .collect())
    }

    /// Puts `issue` of `provider` beside `incident`; `true` when it was not already.
    pub fn link(
        &mut self,
        incident: i64,
        provider: &str,
        issue: &str,
        at: SystemTime,
    ) -> Result<bool, StoreError> {
        self.sql(|c| {
            c.execute(
                "INSERT OR IGNORE INTO provider_links (incident, provider, issue, linked_at) VALUES (?1, ?2, ?3, ?4)",
                params![incident, provider, issue, ms(at)],
            )
        })
        .map(|n| n > 0)
    }

    /// Every `(incident, provider, issue)` link of incidents open now or active since `since`.
    pub fn links(&self, since: SystemTime) -> Result<Vec<(i64, String, String)>, StoreError> {
        self.sql(|c| {
            let mut st = c.prepare(
                "SELECT l.incident, l.provider, l.issue FROM provider_links l JOIN incidents i ON i.id = l.incident
                 WHERE i.closed_at IS NULL OR i.opened_at >= ?1 OR i.closed_at >= ?1",
            )?;
            let rows = st.query_map(params![ms(since)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    /// Deletes provider issues resolved before `cutoff` that no incident keeps.
    pub fn prune_provider_issues(&mut self, cutoff: SystemTime) -> Result<usize, StoreError> {
        self.sql(|c| {
            c.execute(
                "DELETE FROM provider_issues WHERE resolved_at IS NOT NULL AND resolved_at < ?1
                 AND NOT EXISTS (SELECT 1 FROM provider_links l WHERE l.provider = provider_issues.provider AND l.issue = provider_issues.id)",
                params![ms(cutoff)],
            )
        })
    }
}
