//! Maintenance windows: planned work that must not page anyone or open incidents, and that the
//! status page announces before it starts.
//!
//! A window names targets and/or regions (a target is covered when it is named or its region
//! is) and a half-open time span `[start, end)`. Windows come from two places: `[[maintenance]]`
//! in the config (reloaded with it) and `mailprobe maintenance add` (stored in the incident
//! database, read by the daemon every tick: no restart, no reload). During a window probes run
//! and are exported as always; what changes is that a covered target that fails opens no
//! incident, `mailprobe_maintenance` is 1 for it, and the page says "Under maintenance". The
//! window type itself is in `config::maintenance`; here is how the status page shows them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::render::timestamp;
use super::service::Snapshot;
pub use crate::config::maintenance::{
    MAX_REASON, MAX_WINDOW, Source, Window, WindowError, covering, current_and_upcoming,
};

/// A window as the status API gives it.
pub fn window_json(w: &Window, now: SystemTime) -> Value {
    json!({
        "source": w.source,
        "targets": w.targets,
        "regions": w.regions,
        "start": timestamp(w.start),
        "end": timestamp(w.end),
        "reason": w.reason,
        "active": w.active(now),
    })
}

/// The status API's `maintenance`: windows in force and to come, and which grid cells
/// (region × protocol) have targets under maintenance now.
pub fn status_json(s: &Snapshot) -> Value {
    let now = SystemTime::now();
    let mut cells: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for t in s
        .targets
        .iter()
        .filter(|t| s.under_maintenance.contains(&t.name))
    {
        *cells
            .entry((t.region.as_str(), t.protocol.as_str()))
            .or_default() += 1;
    }
    json!({
        "windows": s.maintenance.iter().map(|w| window_json(w, now)).collect::<Vec<_>>(),
        "under_maintenance": cells.iter().map(|((region, protocol), n)| json!({
            "region": region,
            "protocol": protocol,
            "targets": n,
        })).collect::<Vec<_>>(),
    })
}

/// The page's notice: each region × protocol under maintenance now, and the windows in force
/// and to come with their reasons (no target names: the page is for the people whose mail it
/// is; the page helper styles it).
pub fn status_html(h: &mut String, s: &Snapshot) {
    use std::fmt::Write as _;
    if s.maintenance.is_empty() {
        return;
    }
    let now = SystemTime::now();
    h.push_str("<h2>Planned maintenance</h2><ul id=\"maintenance\">");
    for w in &s.maintenance {
        let affected: Vec<&str> = s
            .targets
            .iter()
            .filter(|t| w.covers(&t.name, &t.region))
            .map(|t| t.region.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let _ = write!(
            h,
            "<li class=\"{}\"><strong>{}</strong> {} to {} · {} · {}</li>",
            if w.active(now) { "active" } else { "upcoming" },
            if w.active(now) {
                "Under maintenance"
            } else {
                "Upcoming maintenance"
            },
            esc(&timestamp(w.start)),
            esc(&timestamp(w.end)),
            esc(&affected.join(", ")),
            esc(&w.reason),
        );
    }
    h.push_str("</ul>");
}

/// Text as HTML element content or attribute value.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
