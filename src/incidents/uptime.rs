//! Per-day rollups of each component's state (a service in a region), for the status page's
//! 90-day uptime bars: how long it was operational, slow, partly or wholly down each UTC day,
//! the share of its targets that were down integrated over time (the uptime percentage), and
//! the incidents that touched it. One row per component and day however many targets it has,
//! so 90 days of bars read a few thousand rows even at 10,000 targets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::engine::Incident;
use super::state::{Health, TargetState};
use crate::load::Service;

/// Days of history the bars show.
pub const DAYS: i64 = 90;
/// A gap between two ticks longer than this (the daemon was stopped, the machine slept) is
/// not counted: nobody watched.
pub const MAX_GAP: Duration = Duration::from_secs(60);

/// A UTC day: days since 1970-01-01.
pub fn day_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| (d.as_secs() / 86_400) as i64)
}

/// The start of a UTC day.
pub fn day_start(day: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(day).unwrap_or(0) * 86_400)
}

/// One component's day.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DayRow {
    /// The UTC day.
    pub day: i64,
    /// Region.
    pub region: String,
    /// Service.
    pub service: String,
    /// Time watched, in ms.
    pub observed_ms: i64,
    /// Time with some targets slow and none down.
    pub degraded_ms: i64,
    /// Time with some, not all, targets down.
    pub partial_ms: i64,
    /// Time with every target down.
    pub major_ms: i64,
    /// Time in a maintenance window.
    pub maintenance_ms: i64,
    /// The share of targets down, integrated over time, in ms: 1 - this / observed is uptime.
    pub down_share_ms: f64,
    /// Incidents that touched it that day.
    pub incidents: BTreeSet<i64>,
}

impl DayRow {
    /// Time with nothing wrong.
    pub fn up_ms(&self) -> i64 {
        (self.observed_ms
            - self.degraded_ms
            - self.partial_ms
            - self.major_ms
            - self.maintenance_ms)
            .max(0)
    }

    /// Time the uptime percentage is a share of: watched, and not under maintenance.
    pub fn counted_ms(&self) -> i64 {
        (self.observed_ms - self.maintenance_ms).max(0)
    }
}

/// What the service worker keeps between ticks to accumulate rollups.
#[derive(Debug, Default)]
pub struct Rollup {
    last: Option<SystemTime>,
}

impl Rollup {
    /// The rows to add for the time since the last call, with every component in the state
    /// `states` and `maintenance` (the targets under a window) show now (a tick is a few
    /// seconds: the state at its end stands for all of it), split at UTC midnight. Empty on
    /// the first call and after a gap of more than [`MAX_GAP`].
    ///
    /// A target under maintenance is neither up nor down: it is left out of the share down,
    /// and a component with some targets under maintenance and none failing outside them is
    /// in maintenance, by the same rule as the status page's component states (the page
    /// depends on this module, never the other way round).
    pub fn advance<'a>(
        &mut self,
        now: SystemTime,
        states: impl Iterator<Item = &'a TargetState>,
        maintenance: &BTreeSet<String>,
        open: &[Incident],
    ) -> Vec<DayRow> {
        let Some(last) = self.last.replace(now) else {
            return Vec::new();
        };
        let Ok(gap) = now.duration_since(last) else {
            return Vec::new();
        };
        if gap > MAX_GAP || gap.is_zero() {
            return Vec::new();
        }
        // Component of each target, and its counts.
        let mut counts: BTreeMap<(String, Service), [u32; 4]> = BTreeMap::new();
        let mut where_is: BTreeMap<&str, (String, Service)> = BTreeMap::new();
        for s in states {
            let key = (s.region.clone(), Service::of(s.protocol));
            let c = counts.entry(key.clone()).or_default();
            match s.health {
                _ if maintenance.contains(&s.name) => c[3] += 1,
                Health::Up => c[0] += 1,
                Health::Degraded => c[1] += 1,
                Health::Down => c[2] += 1,
            }
            where_is.insert(s.name.as_str(), key);
        }
        let mut touched: BTreeMap<(String, Service), BTreeSet<i64>> = BTreeMap::new();
        for inc in open {
            for m in &inc.members {
                if let Some(k) = where_is.get(m.as_str()) {
                    touched.entry(k.clone()).or_default().insert(inc.id);
                }
            }
        }
        // Split the interval at midnight.
        let mut pieces = Vec::new();
        let (mut from, to) = (last, now);
        while day_of(from) < day_of(to) {
            let midnight = day_start(day_of(from) + 1);
            pieces.push((
                day_of(from),
                midnight.duration_since(from).unwrap_or_default(),
            ));
            from = midnight;
        }
        pieces.push((day_of(to), to.duration_since(from).unwrap_or_default()));
        let mut rows = Vec::new();
        for ((region, service), [up, degraded, down, maintained]) in counts {
            // The targets watched for the share down: those under maintenance are not.
            let watched = up + degraded + down;
            let incidents = touched
                .remove(&(region.clone(), service))
                .unwrap_or_default();
            for (day, d) in &pieces {
                let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                let mut row = DayRow {
                    day: *day,
                    region: region.clone(),
                    service: service.key().to_string(),
                    observed_ms: ms,
                    incidents: incidents.clone(),
                    ..DayRow::default()
                };
                if down > 0 && down == watched {
                    row.major_ms = ms;
                } else if down > 0 {
                    row.partial_ms = ms;
                } else if degraded > 0 {
                    row.degraded_ms = ms;
                } else if maintained > 0 {
                    row.maintenance_ms = ms;
                }
                row.down_share_ms = ms as f64 * f64::from(down) / f64::from(watched.max(1));
                rows.push(row);
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Protocol;

    fn t(s: u64) -> SystemTime {
        // 2026-11-30 23:59:50 UTC.
        UNIX_EPOCH + Duration::from_secs(1_796_083_190 + s)
    }

    fn none() -> BTreeSet<String> {
        BTreeSet::new()
    }

    #[test]
    fn time_goes_to_the_state_of_each_component_and_splits_at_midnight() {
        let mut a = TargetState::new("a", "eu", Protocol::Imap, None, t(0));
        let b = TargetState::new("b", "eu", Protocol::Imap, None, t(0));
        let c = TargetState::new("c", "eu", Protocol::Smtp, None, t(0));
        let mut r = Rollup::default();
        assert!(
            r.advance(t(0), [&a, &b, &c].into_iter(), &none(), &[])
                .is_empty()
        );
        a.health = Health::Down;
        let inc = Incident {
            id: 7,
            opened_at: t(0),
            closed_at: None,
            members: ["a".to_string()].into(),
            ever: ["a".to_string()].into(),
            removed: Default::default(),
            last_change: t(0),
            last: None,
            peak: None,
        };
        let rows = r.advance(t(20), [&a, &b, &c].into_iter(), &none(), &[inc]);
        // Two components, each split into 10 s before and after midnight.
        assert_eq!(rows.len(), 4);
        let reading: Vec<&DayRow> = rows.iter().filter(|r| r.service == "reading").collect();
        assert_eq!(reading[0].day + 1, reading[1].day);
        assert_eq!(reading[0].observed_ms, 10_000);
        assert_eq!(reading[0].partial_ms, 10_000);
        assert_eq!(reading[0].down_share_ms, 5_000.0);
        assert_eq!(reading[0].incidents, [7].into());
        let sending: Vec<&DayRow> = rows.iter().filter(|r| r.service == "sending").collect();
        assert_eq!(sending[1].up_ms(), 10_000);
        assert!(sending[1].incidents.is_empty());
        // A long gap (the daemon was stopped) counts nothing.
        assert!(
            r.advance(t(20 + 3600), [&a].into_iter(), &none(), &[])
                .is_empty()
        );
    }

    #[test]
    fn time_under_a_maintenance_window_is_maintenance_not_down() {
        let mut a = TargetState::new("a", "eu", Protocol::Imap, None, t(0));
        let mut b = TargetState::new("b", "eu", Protocol::Imap, None, t(0));
        let mut r = Rollup::default();
        let under: BTreeSet<String> = ["a".to_string()].into();
        r.advance(t(100), [&a, &b].into_iter(), &under, &[]);
        // a is down for its planned work, b is up: the component is under maintenance,
        // nobody is down.
        a.health = Health::Down;
        let rows = r.advance(t(110), [&a, &b].into_iter(), &under, &[]);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.observed_ms, 10_000);
        assert_eq!(row.maintenance_ms, 10_000);
        assert_eq!((row.partial_ms, row.major_ms), (0, 0));
        assert_eq!(row.down_share_ms, 0.0);
        assert_eq!(row.up_ms(), 0);
        // b fails too, outside any window: every target outside maintenance is down, as the
        // page says (a major outage), and the share of the watched targets down is all of them.
        b.health = Health::Down;
        let rows = r.advance(t(115), [&a, &b].into_iter(), &under, &[]);
        let row = &rows[0];
        assert_eq!((row.major_ms, row.maintenance_ms), (5_000, 0));
        assert_eq!(row.down_share_ms, 5_000.0);
        // The whole component under maintenance, up or not, is maintenance too.
        let both: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
        b.health = Health::Up;
        let rows = r.advance(t(117), [&a, &b].into_iter(), &both, &[]);
        let row = &rows[0];
        assert_eq!(
            (row.maintenance_ms, row.major_ms, row.partial_ms),
            (2_000, 0, 0)
        );
        assert_eq!(row.down_share_ms, 0.0);
        // The window over, a down target is down again.
        let rows = r.advance(t(118), [&a, &b].into_iter(), &none(), &[]);
        let row = &rows[0];
        assert_eq!((row.partial_ms, row.maintenance_ms), (1_000, 0));
        assert_eq!(row.down_share_ms, 500.0);
    }
}
