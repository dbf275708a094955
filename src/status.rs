//! The admin view at `/` of the private listener and its JSON twins `/api/v1/status` and
//! `/api/v1/incidents`; the public page (for the people whose mail it is) is in [`public`],
//! built from [`model`], with uptime bars from the per-day rollups.
//!
//! Server-rendered HTML with inline CSS and no external assets (it must work on an isolated
//! network), readable on a phone, refreshing itself. It shows the health of every region ×
//! protocol at a glance, the ongoing incidents with their timelines, and recent resolved ones.
//! Nothing secret (usernames, addresses, passwords) is on it: targets appear by name.

pub mod model;
pub mod public;
pub mod recent;
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
    /// Of those, under a maintenance window now.
    maintenance: usize,
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
        if s.under_maintenance.contains(&t.name) {
            c.maintenance += 1;
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
            "under_maintenance": c.maintenance,
            "state": c.worst(),
        })).collect::<Vec<_>>(),
        "targets": s.targets.iter().map(|t| json!({
            "name": t.name,
            "region": t.region,
            "protocol": t.protocol,
            "state": t.health,
            "under_maintenance": s.under_maintenance.contains(&t.name),
            "since": timestamp(t.since),
            "cause": t.last_failure.map(|(class, phase)| json!({"class": class, "phase": phase})),
        })).collect::<Vec<_>>(),
        "incidents": open.iter().map(|(i, e)| incident_json(i, e)).collect::<Vec<_>>(),
        "providers": providers_json(s, open),
        "maintenance": crate::incidents::maintenance::status_json(s),
        "stale": seen::stale(s),
        "locations": seen::json(s),
    })
}

/// The providers' side: each feed's state, and each issue open or recently resolved with the
/// incidents it is beside (and the sentence placing it beside the first).
fn providers_json(s: &Snapshot, open: &[(Incident, Vec<Entry>)]) -> Value {
    let p = &s.providers;
    json!({
        "feeds": p.feeds,
        "issues": p.issues.iter().map(|issue| {
            let incidents: Vec<i64> = p.links.iter()
                .filter(|(_, prov, id)| *prov == issue.provider && *id == issue.id)
                .map(|(i, _, _)| *i)
                .collect();
            let opened = incidents.first().and_then(|id| {
                open.iter().find(|(i, _)| i.id == *id).map(|(i, _)| i.opened_at)
                    .or_else(|| s.open.iter().find(|(i, _)| i.id == *id).map(|(i, _)| i.opened_at))
            });
            let mut v = crate::incidents::render::issue_json(issue, opened);
            v["incidents"] = json!(incidents);
            v
        }).collect::<Vec<_>>(),
    })
}

/// The page's section on the providers: their open issues (each with the incidents it is
/// beside) and any feed that cannot be read. Nothing when no provider is configured.
fn providers_html(h: &mut String, s: &Snapshot) {
    let p = &s.providers;
    if p.feeds.is_empty() && p.issues.is_empty() {
        return;
    }
    let open: Vec<_> = p.issues.iter().filter(|i| i.is_open()).collect();
    let _ = write!(
        h,
        "<h2 id=\"providers\">Provider status ({} open)</h2>",
        open.len()
    );
    for f in p.feeds.iter().filter(|f| !f.up) {
        let _ = write!(
            h,
            "<p class=\"meta\">{} status feed cannot be read ({}): not a mail outage.</p>",
            esc(&f.provider),
            esc(f.error.as_deref().unwrap_or("unknown")),
        );
    }
    if open.is_empty() {
        h.push_str("<p>No open provider issues.</p>");
        return;
    }
    h.push_str("<div class=\"scroll\"><table class=\"timeline\" id=\"provider-issues\"><tr><th>provider</th><th>issue</th><th>service</th><th>status</th><th>posted</th><th>beside</th></tr>");
    for i in open {
        let beside: Vec<String> = p
            .links
            .iter()
            .filter(|(_, prov, id)| *prov == i.provider && *id == i.id)
            .map(|(inc, _, _)| format!("#{inc}"))
            .collect();
        let _ = write!(
            h,
            "<tr><td data-label=\"provider\">{}</td><td data-label=\"issue\">{} {}</td><td data-label=\"service\">{}</td><td data-label=\"status\">{} ({})</td><td data-label=\"posted\">{}</td><td data-label=\"beside\">{}</td></tr>",
            esc(&i.provider),
            esc(&i.id),
            esc(&i.title),
            esc(&i.service),
            esc(&i.status),
            esc(&i.classification),
            timestamp(i.first_post_at),
            esc(&beside.join(" ")),
        );
    }
    h.push_str("</table></div>");
}

/// HTML-escapes text.
pub(crate) fn esc(s: &str) -> String {
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

/// The admin view: the grid, every failing target with its last probes, the incidents.
pub fn page(
    s: &Snapshot,
    history: &[(Incident, Vec<Entry>)],
    recent: &recent::RecentProbes,
) -> String {
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
                    let mut class = c.worst().as_str().to_string();
                    if c.maintenance > 0 {
                        let _ = write!(text, " · Under maintenance");
                        class.push_str(" maintenance");
                    }
                    let _ = write!(h, "<td class=\"{class}\">{}</td>", esc(&text));
                }
                None => h.push_str("<td>–</td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table></div>");
    failing_targets(&mut h, s, recent);
    crate::incidents::maintenance::status_html(&mut h, s);

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

    providers_html(&mut h, s);

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
    h.push_str("<p class=\"meta\">mailprobe · <a href=\"/status\">public page</a> · <a href=\"/metrics\">metrics</a> · <a href=\"/api/v1/status\">status JSON</a> · <a href=\"/api/v1/incidents\">incidents JSON</a></p></body></html>");
    h
}

/// Every target not up, by name: class, phase, detail, since when, and its last probes.
fn failing_targets(h: &mut String, s: &Snapshot, recent: &recent::RecentProbes) {
    let mut failing: Vec<&crate::incidents::TargetState> = s
        .targets
        .iter()
        .filter(|t| t.health != Health::Up)
        .collect();
    failing.sort_by(|a, b| b.health.cmp(&a.health).then(a.since.cmp(&b.since)));
    let _ = write!(h, "<h2>Failing targets ({})</h2>", failing.len());
    if failing.is_empty() {
        h.push_str("<p>None.</p>");
        return;
    }
    h.push_str("<div class=\"scroll\"><table id=\"failing\" class=\"timeline\"><tr><th>target</th><th>region</th><th>protocol</th><th>state</th><th>class</th><th>phase</th><th>since</th><th>detail</th><th>last probes</th></tr>");
    for t in failing {
        let probes = recent.of(&t.name);
        let (class, phase) = t
            .last_failure
            .map_or(("-", "-"), |(c, p)| (c.as_str(), p.as_str()));
        let detail = probes
            .iter()
            .find_map(|p| p.failure.as_ref().map(|f| f.2.clone()))
            .unwrap_or_default();
        let last: Vec<String> = probes
            .iter()
            .map(|p| {
                let took = format!("{:.0} ms", p.took.as_secs_f64() * 1000.0);
                match &p.failure {
                    Some((c, ph, _)) => format!("{} {c} at {ph} ({took})", timestamp(p.at)),
                    None if p.slow => format!("{} slow ({took})", timestamp(p.at)),
                    None => format!("{} ok ({took})", timestamp(p.at)),
                }
            })
            .collect();
        let _ = write!(
            h,
            "<tr><td data-label=\"target\">{}</td><td data-label=\"region\">{}</td><td data-label=\"protocol\">{}</td>\
             <td data-label=\"state\" class=\"{}\">{}</td><td data-label=\"class\">{}</td><td data-label=\"phase\">{}</td>\
             <td data-label=\"since\">{}</td><td data-label=\"detail\">{}</td><td data-label=\"last probes\">{}</td></tr>",
            esc(&t.name),
            esc(&t.region),
            t.protocol.as_str(),
            t.health.as_str(),
            t.health.as_str(),
            class,
            phase,
            esc(&timestamp(t.since)),
            esc(&detail),
            last.iter().map(|l| esc(l)).collect::<Vec<_>>().join("<br>"),
        );
    }
    h.push_str("</table></div>");
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
            esc(&e.headline()),
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
        let page = page(&Snapshot::default(), &[], &Default::default());
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
        assert!(page(&one(1), &[], &Default::default()).contains(">1 target: 1 up,"));
        assert!(page(&one(2), &[], &Default::default()).contains(">2 targets: 2 up,"));
    }
}
