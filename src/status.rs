//! The status page at `/` and its JSON twins `/api/v1/status` and `/api/v1/incidents`.
//!
//! Server-rendered HTML with inline CSS and no external assets (it must work on an isolated
//! network), readable on a phone, refreshing itself. It shows the health of every region ×
//! protocol at a glance, the ongoing incidents with their timelines, and recent resolved ones.
//! Nothing secret (usernames, addresses, passwords) is on it: targets appear by name.

mod seen;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::incidents::render::{incident_json, timestamp};
use crate::incidents::service::Snapshot;
use crate::incidents::{Entry, Health, Incident};

/// How far back the page and the default API request look for resolved incidents.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(7 * 86_400);
/// Resolved incidents shown on the page at most.
const RECENT: usize = 10;

/// Counts per health for one cell of the grid.
#[derive(Default, Clone, Copy)]
struct Cell {
    up: usize,
    degraded: usize,
    down: usize,
}

impl Cell {
    fn worst(&self) -> Health {
        if self.down > 0 {
            Health::Down
        } else if self.degraded > 0 {
            Health::Degraded
        } else {
            Health::Up
        }
    }
}

fn grid(s: &Snapshot) -> BTreeMap<(String, String), Cell> {
    let mut g: BTreeMap<(String, String), Cell> = BTreeMap::new();
    for t in &s.targets {
        let c = g
            .entry((t.region.clone(), t.protocol.as_str().to_string()))
            .or_default();
        match t.health {
            Health::Up => c.up += 1,
            Health::Degraded => c.degraded += 1,
            Health::Down => c.down += 1,
        }
    }
    g
}

/// `/api/v1/status`: every target's health, the grid, and the open incidents.
pub fn status_json(s: &Snapshot, open: &[(Incident, Vec<Entry>)]) -> Value {
    let g = grid(s);
    let count = |h: Health| s.targets.iter().filter(|t| t.health == h).count();
    json!({
        "generated_at": timestamp(SystemTime::now()),
        "as_of": s.at.map(timestamp),
        "summary": {
            "targets": s.targets.len(),
            "up": count(Health::Up),
            "degraded": count(Health::Degraded),
            "down": count(Health::Down),
        },
        "grid": g.iter().map(|((region, protocol), c)| json!({
            "region": region,
            "protocol": protocol,
            "up": c.up,
            "degraded": c.degraded,
            "down": c.down,
            "state": c.worst(),
        })).collect::<Vec<_>>(),
        "targets": s.targets.iter().map(|t| json!({
            "name": t.name,
            "region": t.region,
            "protocol": t.protocol,
            "state": t.health,
            "since": timestamp(t.since),
            "cause": t.last_failure.map(|(class, phase)| json!({"class": class, "phase": phase})),
        })).collect::<Vec<_>>(),
        "incidents": open.iter().map(|(i, e)| incident_json(i, e)).collect::<Vec<_>>(),
        "stale": seen::stale(s),
        "locations": seen::json(s),
    })
}

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

const STYLE: &str = "
body{font:15px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:12px;color:#1b1f24;background:#f6f7f9}
h1{font-size:20px;margin:0 0 4px} h2{font-size:17px;margin:22px 0 8px}
.meta{color:#5a6270;font-size:13px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;background:#fff;min-width:100%}
th,td{border:1px solid #dde1e6;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}
td.up{background:#dcf5e3} td.degraded{background:#fff1c2} td.down{background:#ffd6d6}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:13px;font-weight:600}
.badge.up{background:#2e8540;color:#fff} .badge.degraded{background:#b37d00;color:#fff} .badge.down{background:#c62828;color:#fff}
.incident{background:#fff;border:1px solid #dde1e6;border-left:5px solid #c62828;padding:8px 10px;margin:10px 0}
.incident.resolved{border-left-color:#2e8540}
.incident h3{font-size:15px;margin:0 0 6px}
@media (max-width:600px){body{padding:6px} th,td{padding:4px 5px;font-size:13px}
 table.timeline,table.timeline tbody,table.timeline tr,table.timeline td{display:block;min-width:0}
 table.timeline tr:first-child{display:none}
 table.timeline tr{border-bottom:1px solid #dde1e6;padding:4px 0}
 table.timeline td{border:none;padding:1px 2px}
 table.timeline td:before{content:attr(data-label) \": \";font-weight:600;color:#5a6270}}
";

/// The status page.
pub fn page(s: &Snapshot, history: &[(Incident, Vec<Entry>)]) -> String {
    let g = grid(s);
    let mut regions: Vec<&String> = g.keys().map(|(r, _)| r).collect();
    regions.dedup();
    let mut protocols: Vec<&String> = g.keys().map(|(_, p)| p).collect();
    protocols.sort();
    protocols.dedup();
    let count = |h: Health| s.targets.iter().filter(|t| t.health == h).count();
    let overall = if count(Health::Down) > 0 {
        Health::Down
    } else if count(Health::Degraded) > 0 {
        Health::Degraded
    } else {
        Health::Up
    };
    // Data that is not current is never shown as up.
    let overall_text = if seen::stale(s) {
        "stale"
    } else {
        overall.as_str()
    };

    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"30\"><title>mail status: {}</title><style>{STYLE}</style></head><body>",
        overall_text
    );
    let _ = write!(
        h,
        "<h1>Mail status <span class=\"badge {o}\">{o}</span></h1><div class=\"meta\">{} target{}: {} up, {} degraded, {} down · as of {} · refreshes every 30 s</div>",
        s.targets.len(),
        if s.targets.len() == 1 { "" } else { "s" },
        count(Health::Up),
        count(Health::Degraded),
        count(Health::Down),
        s.at.map(timestamp).unwrap_or_else(|| "starting".into()),
        o = overall_text,
    );
    h.push_str(&seen::html(s));

    h.push_str(
        "<h2>Regions × protocols</h2><div class=\"scroll\"><table id=\"grid\"><tr><th>region</th>",
    );
    for p in &protocols {
        let _ = write!(h, "<th>{}</th>", esc(p));
    }
    h.push_str("</tr>");
    for r in &regions {
        let _ = write!(h, "<tr><th>{}</th>", esc(r));
        for p in &protocols {
            match g.get(&((*r).clone(), (*p).clone())) {
                Some(c) => {
                    let total = c.up + c.degraded + c.down;
                    let mut text = format!("{}/{} up", c.up, total);
                    if c.degraded > 0 {
                        let _ = write!(text, ", {} slow", c.degraded);
                    }
                    if c.down > 0 {
                        let _ = write!(text, ", {} down", c.down);
                    }
                    let _ = write!(
                        h,
                        "<td class=\"{}\">{}</td>",
                        c.worst().as_str(),
                        esc(&text)
                    );
                }
                None => h.push_str("<td>–</td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table></div>");

    let open: Vec<&(Incident, Vec<Entry>)> = history
        .iter()
        .filter(|(i, _)| i.closed_at.is_none())
        .collect();
    let _ = write!(h, "<h2>Ongoing incidents ({})</h2>", open.len());
    if open.is_empty() {
        h.push_str("<p>None.</p>");
    }
    for (inc, entries) in &open {
        let now = s
            .open
            .iter()
            .find(|(i, _)| i.id == inc.id)
            .map(|(_, sum)| sum);
        incident_html(&mut h, inc, entries, now, false);
    }

    let mut resolved: Vec<&(Incident, Vec<Entry>)> = history
        .iter()
        .filter(|(i, _)| i.closed_at.is_some())
        .collect();
    resolved.sort_by_key(|(i, _)| std::cmp::Reverse(i.closed_at));
    let _ = write!(
        h,
        "<h2>Resolved in the last 7 days ({})</h2>",
        resolved.len()
    );
    if resolved.is_empty() {
        h.push_str("<p>None.</p>");
    }
    for (inc, entries) in resolved.iter().take(RECENT) {
        incident_html(&mut h, inc, entries, None, true);
    }
    h.push_str("<p class=\"meta\">mailprobe · <a href=\"/metrics\">metrics</a> · <a href=\"/api/v1/status\">status JSON</a> · <a href=\"/api/v1/incidents\">incidents JSON</a></p></body></html>");
    h
}

fn incident_html(
    h: &mut String,
    inc: &Incident,
    entries: &[Entry],
    now: Option<&crate::incidents::Summary>,
    resolved: bool,
) {
    // Ongoing: how it stands now. Resolved: the widest it got.
    let last = entries.last().map(|e| &e.summary);
    let summary = if resolved {
        inc.peak.as_ref().or(last)
    } else {
        now.or(last)
    };
    let _ = write!(
        h,
        "<div class=\"incident{}\" id=\"incident-{}\"><h3>#{} {}</h3>",
        if resolved { " resolved" } else { "" },
        inc.id,
        inc.id,
        esc(&summary.map(|s| s.scope_text()).unwrap_or_default()),
    );
    if let Some(s) = summary {
        let _ = write!(
            h,
            "<div>Since {} · affected users: {} · likely cause: {}</div>",
            esc(&timestamp(inc.opened_at)),
            esc(&s.users.to_string()),
            esc(&s.cause_text()),
        );
    }
    h.push_str("<div class=\"scroll\"><table class=\"timeline\"><tr><th>time</th><th>event</th><th>scope</th><th>users</th><th>cause</th><th>status</th></tr>");
    for e in entries {
        let _ = write!(
            h,
            "<tr><td data-label=\"time\">{}</td><td data-label=\"event\">{}</td>\
             <td data-label=\"scope\">{}</td><td data-label=\"users\">{}</td>\
             <td data-label=\"cause\">{}</td><td data-label=\"status\">{}</td></tr>",
            esc(&timestamp(e.at)),
            esc(&e.event),
            esc(&e.summary.scope_text()),
            esc(&e.summary.users.to_string()),
            esc(&e.summary.cause_text()),
            esc(&e.status),
        );
    }
    h.push_str("</table></div></div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc("<b>&\"'"), "&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn an_empty_snapshot_renders() {
        let page = page(&Snapshot::default(), &[]);
        assert!(page.contains("Mail status"));
        assert!(page.contains("Ongoing incidents (0)"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no external assets"
        );
    }

    #[test]
    fn one_target_is_one_target() {
        let one = |n: usize| Snapshot {
            targets: (0..n)
                .map(|i| {
                    let name = format!("t{i}");
                    let now = std::time::SystemTime::now();
                    crate::incidents::TargetState::new(
                        &name,
                        "eu",
                        crate::probe::Protocol::Imap,
                        None,
                        now,
                    )
                })
                .collect(),
            ..Snapshot::default()
        };
        assert!(page(&one(1), &[]).contains(">1 target: 1 up,"));
        assert!(page(&one(2), &[]).contains(">2 targets: 2 up,"));
    }
}
