//! What the status page and `/api/v1/status` add when the state is read from Prometheus across
//! locations: which locations saw each component and incident, blind vantage points, and
//! whether the data is stale (then the page never says "up").

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::esc;
use crate::incidents::Health;
use crate::incidents::render::timestamp;
use crate::incidents::service::Snapshot;

/// Whether the snapshot's health is not current: read from Prometheus, and the last read
/// failed or none has succeeded yet.
pub fn stale(s: &Snapshot) -> bool {
    s.seen
        .as_ref()
        .is_some_and(|v| v.stale.is_some() || v.fresh_at.is_none())
}

fn failing_now(s: &Snapshot, name: &str) -> bool {
    s.targets
        .iter()
        .any(|t| t.name == name && t.health != Health::Up)
}

/// The `locations` object of `/api/v1/status` (`null` for an instance that probes itself).
pub fn json(s: &Snapshot) -> Value {
    let Some(v) = &s.seen else {
        return Value::Null;
    };
    json!({
        "source": "prometheus",
        "stale": stale(s),
        "stale_reason": v.stale,
        "fresh_at": v.fresh_at.map(timestamp),
        "locations": v.locations,
        "targets": v.targets.iter().map(|(name, t)| (name.clone(), json!({
            "reporting": t.reporting,
            "down": t.down,
            "degraded": t.degraded,
            "blind": t.blind,
            "text": t.words(failing_now(s, name)),
        }))).collect::<serde_json::Map<String, Value>>(),
        "incidents": s.open.iter().map(|(i, _)| {
            let all = v.of(i.ever.iter());
            json!({
                "id": i.id,
                "reporting": all.reporting,
                "failing": all.failing(),
                "text": all.words(true),
            })
        }).collect::<Vec<_>>(),
    })
}

/// The page's section: a stale warning, the vantage points, and where each failing component
/// and open incident was seen from. Empty for an instance that probes itself.
pub fn html(s: &Snapshot) -> String {
    let Some(v) = &s.seen else {
        return String::new();
    };
    let mut h = String::new();
    if stale(s) {
        let _ = write!(
            h,
            "<div id=\"stale\" class=\"incident\" style=\"border-left-color:#6b7280\"><b>Stale:</b> \
             the state below is as of {}, not now: {}. No incident opens or resolves until \
             the data is back.</div>",
            esc(&v.fresh_at.map_or_else(|| "no read yet".into(), timestamp)),
            esc(v.stale.as_deref().unwrap_or("waiting for the first read")),
        );
    }
    let _ = write!(
        h,
        "<h2>Vantage points ({})</h2><ul id=\"locations\">",
        v.locations.len()
    );
    for l in &v.locations {
        let _ = write!(
            h,
            "<li>{}: {} target{}, {} down{}</li>",
            esc(&l.name),
            l.targets,
            if l.targets == 1 { "" } else { "s" },
            l.down,
            if l.blind {
                " · <b>blind</b>: sees nearly everything down while the others do not (its own network); left out of the vote"
            } else {
                ""
            }
        );
    }
    h.push_str("</ul>");
    let mut rows = String::new();
    for (i, _) in &s.open {
        let all = v.of(i.ever.iter());
        let _ = write!(
            rows,
            "<li>incident #{}: {}</li>",
            i.id,
            esc(&all.words(true))
        );
    }
    for (name, t) in &v.targets {
        if !t.failing().is_empty() {
            let _ = write!(
                rows,
                "<li>{}: {}</li>",
                esc(name),
                esc(&t.words(failing_now(s, name)))
            );
        }
    }
    if !rows.is_empty() {
        let _ = write!(h, "<ul id=\"seen-from\">{rows}</ul>");
    }
    h
}
