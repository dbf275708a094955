//! The public status page, its incident pages and its JSON: for the people whose mail it is.
//!
//! Built from the [`model`](super::model) alone (services per region, states, plain causes,
//! affected users, times in the configured zone) and from incident summaries read only for
//! their regions, protocols, stage, users and cause class: no target name, host, username or
//! failure class reaches these pages. Server-rendered HTML, inline CSS, no external assets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::esc;
use super::model::{
    Banner, Clock, Component, ComponentState, and_list, banner, components, duration_text,
    entry_text, incident_cause, incident_title, span, stage_label,
};
use crate::incidents::render::timestamp;
use crate::incidents::service::Snapshot;
use crate::incidents::uptime::{DAYS, DayRow, day_of, day_start};
use crate::incidents::{Entry, Incident, Stage, Summary};
use crate::load::{Service, StatusSettings};

/// What the page is made of.
pub struct Inputs<'a> {
    /// Targets and open incidents now.
    pub snapshot: &'a Snapshot,
    /// Incidents open or active in the last week.
    pub history: &'a [(Incident, Vec<Entry>)],
    /// Rollups of the last [`DAYS`] days.
    pub uptime: &'a [DayRow],
    /// `[status]`.
    pub settings: &'a StatusSettings,
    /// Now, in the configured zone.
    pub clock: &'a Clock,
}

const STYLE: &str = "
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
main{max-width:860px;margin:0 auto;padding:16px}
h1{font-size:22px;margin:4px 0 12px} h2{font-size:17px;margin:26px 0 8px} h3{font-size:15px;margin:0}
a{color:#0b5cad}
.meta{color:#5a6270;font-size:13px}
.banner{border-radius:8px;padding:14px 16px;color:#fff;font-weight:600;font-size:16px}
.banner.operational{background:#2e8540} .banner.degraded{background:#b37d00} .banner.partial_outage{background:#d9660b}
.banner.major_outage{background:#c62828} .banner.maintenance{background:#1f6fb5}
.region{background:#fff;border:1px solid #dde1e6;border-radius:8px;margin:10px 0;overflow:hidden}
.region>h3{padding:8px 12px;background:#eef1f4;border-bottom:1px solid #dde1e6}
.component{padding:10px 12px;border-top:1px solid #eef1f4}
.component:first-of-type{border-top:none}
.row{display:flex;justify-content:space-between;gap:10px;flex-wrap:wrap}
.name{font-weight:600} .desc{color:#5a6270;font-size:13px}
.state{font-weight:600;white-space:nowrap}
.state.operational{color:#2e8540} .state.degraded{color:#8a6100} .state.partial_outage{color:#b3530a}
.state.major_outage{color:#c62828} .state.maintenance{color:#1f6fb5}
.detail{font-size:13px;color:#3d444d;margin-top:2px}
.bars{display:flex;gap:1px;height:28px;margin-top:8px}
.bars span{flex:1;border-radius:1px;background:#c9ced6;min-width:2px}
.bars span.operational{background:#3aa757} .bars span.degraded{background:#e0a800}
.bars span.partial_outage{background:#f08a24} .bars span.major_outage{background:#d93025}
.bars span.maintenance{background:#4a90d9}
.bars span:focus{outline:2px solid #1b1f24}
.axis{display:flex;justify-content:space-between;font-size:12px;color:#5a6270}
.tip{font-size:13px;min-height:1.4em;color:#3d444d}
.incident{background:#fff;border:1px solid #dde1e6;border-left:5px solid #c62828;border-radius:6px;padding:10px 12px;margin:10px 0}
.incident.resolved{border-left-color:#2e8540}
.incident ul{margin:6px 0 0;padding-left:18px}
.incident li{margin:2px 0}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border:1px solid #dde1e6;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4}
pre{background:#fff;border:1px solid #dde1e6;padding:8px;overflow-x:auto;font-size:12px}
@media (max-width:600px){main{padding:8px} .banner{font-size:15px} .bars{height:22px;gap:0}
 table,tbody,tr,td{display:block;width:auto} tr:first-child{display:none} tr{border-bottom:1px solid #dde1e6;padding:4px 0}
 td{border:none;padding:1px 4px} td:before{content:attr(data-label) \": \";font-weight:600;color:#5a6270}}
";

/// The `<script>` that shows a tapped or hovered day's story under its bars (a tooltip does
/// not open on a phone). The page works without it: each day keeps its `title`.
const SCRIPT: &str = "document.querySelectorAll('.bars span').forEach(function(s){function show(){var t=s.parentNode.nextElementSibling.nextElementSibling;if(t)t.textContent=s.getAttribute('title');}s.addEventListener('click',show);s.addEventListener('mouseenter',show);s.addEventListener('focus',show);});";

fn head(h: &mut String, title: &str, refresh: bool) {
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{}\
         <title>{}</title><style>{STYLE}</style></head><body><main>",
        if refresh {
            "<meta http-equiv=\"refresh\" content=\"60\">"
        } else {
            ""
        },
        esc(title)
    );
}

/// The public page.
pub fn page(i: &Inputs<'_>) -> String {
    let comps = components(i.snapshot);
    let b = banner(&comps, i.settings, i.clock);
    let mut h = String::with_capacity(32 * 1024);
    head(
        &mut h,
        &format!("{}: {}", i.settings.title, b.state.label()),
        true,
    );
    let _ = write!(
        h,
        "<h1>{}</h1><div class=\"banner {}\" id=\"banner\">{}</div>\
         <p class=\"meta\">Updated {} ({}) · measured by automatic checks</p>",
        esc(&i.settings.title),
        b.state.key(),
        esc(&b.text),
        i.snapshot
            .at
            .map_or_else(|| "just now".into(), |t| i.clock.time(t)),
        esc(&i.settings.time_zone_name),
    );

    // Ongoing first: what people came for.
    let open: Vec<&(Incident, Vec<Entry>)> = i
        .history
        .iter()
        .filter(|(inc, _)| inc.closed_at.is_none())
        .collect();
    if !open.is_empty() {
        h.push_str("<h2>Ongoing incidents</h2>");
        for (inc, entries) in &open {
            let now = i
                .snapshot
                .open
                .iter()
                .find(|(o, _)| o.id == inc.id)
                .map(|(_, s)| s);
            incident_card(&mut h, inc, entries, now, i);
        }
    }

    h.push_str("<h2>Services</h2>");
    let uptime = Uptime::from_rows(i.uptime, i.clock.now);
    let mut regions: Vec<&str> = comps.iter().map(|c| c.region.as_str()).collect();
    regions.dedup();
    for r in regions {
        let _ = write!(
            h,
            "<section class=\"region\"><h3>{}</h3>",
            esc(i.settings.region(r))
        );
        for c in comps.iter().filter(|c| c.region == r) {
            component_html(&mut h, c, &uptime, i);
        }
        h.push_str("</section>");
    }

    maintenance_html(&mut h, i);

    let mut resolved: Vec<&(Incident, Vec<Entry>)> = i
        .history
        .iter()
        .filter(|(inc, _)| inc.closed_at.is_some())
        .collect();
    resolved.sort_by_key(|(inc, _)| std::cmp::Reverse(inc.closed_at));
    h.push_str("<h2>Past incidents (7 days)</h2>");
    if resolved.is_empty() {
        h.push_str("<p>No incidents in the last 7 days.</p>");
    }
    for (inc, entries) in resolved.iter().take(20) {
        incident_card(&mut h, inc, entries, None, i);
    }
    let _ = write!(
        h,
        "<p class=\"meta\">Times in {} · <a href=\"/api/v1/summary\">this page as JSON</a></p>\
         </main><script>{SCRIPT}</script></body></html>",
        esc(&i.settings.time_zone_name)
    );
    h
}

/// Planned work in force or to come: where (services and regions by their display names,
/// never the targets a window names), when, and why.
fn maintenance_html(h: &mut String, i: &Inputs<'_>) {
    let windows = &i.snapshot.maintenance;
    if windows.is_empty() {
        return;
    }
    h.push_str("<h2 id=\"maintenance\">Planned maintenance</h2><ul class=\"maintenance\">");
    for w in windows {
        let mut places: Vec<String> = w
            .regions
            .iter()
            .map(|r| format!("all services in {}", i.settings.region(r)))
            .collect();
        for t in i
            .snapshot
            .targets
            .iter()
            .filter(|t| w.targets.contains(&t.name))
        {
            let place = format!(
                "{} in {}",
                i.settings.name(Service::of(t.protocol)),
                i.settings.region(&t.region)
            );
            if !places.contains(&place) {
                places.push(place);
            }
        }
        let when = if w.start <= i.clock.now {
            format!("now, until {}", i.clock.full(w.end))
        } else {
            format!("{} to {}", i.clock.full(w.start), i.clock.full(w.end))
        };
        let _ = write!(
            h,
            "<li><strong>{}</strong> · {}: {}</li>",
            esc(&when),
            esc(&and_list(&places)),
            esc(&w.reason)
        );
    }
    h.push_str("</ul>");
}

fn component_html(h: &mut String, c: &Component, uptime: &Uptime, i: &Inputs<'_>) {
    let text = i.settings.services.get(&c.service);
    let _ = write!(
        h,
        "<div class=\"component\" data-service=\"{}\"><div class=\"row\"><div><div class=\"name\">{}</div>",
        c.service.key(),
        esc(i.settings.name(c.service)),
    );
    if let Some(t) = text.filter(|t| !t.description.is_empty()) {
        let _ = write!(h, "<div class=\"desc\">{}</div>", esc(&t.description));
    }
    let _ = write!(
        h,
        "</div><div class=\"state {}\">{}</div></div>",
        c.state.key(),
        c.state.label()
    );
    if c.state != ComponentState::Operational {
        let mut parts = Vec::new();
        if let Some(s) = c.since {
            parts.push(format!("since {} ({})", i.clock.time(s), i.clock.ago(s)));
        }
        if c.users > 0 {
            parts.push(format!("{} users affected", c.users));
        }
        if let Some(cause) = c.cause {
            parts.push(format!("likely cause: {cause}"));
        }
        if !parts.is_empty() {
            let _ = write!(h, "<div class=\"detail\">{}</div>", esc(&parts.join(" · ")));
        }
    }
    uptime.bars(h, &c.region, c.service, i);
    h.push_str("</div>");
}

fn incident_card(
    h: &mut String,
    inc: &Incident,
    entries: &[Entry],
    now: Option<&Summary>,
    i: &Inputs<'_>,
) {
    let resolved = inc.closed_at.is_some();
    let last = entries.last().map(|e| &e.summary);
    let summary = if resolved {
        inc.peak.as_ref().or(last)
    } else {
        now.or(last)
    };
    let Some(s) = summary else { return };
    let _ = write!(
        h,
        "<article class=\"incident{}\" id=\"incident-{}\"><h3><a href=\"/incidents/{}\">{}</a></h3>",
        if resolved { " resolved" } else { "" },
        inc.id,
        inc.id,
        esc(&incident_title(s, i.settings)),
    );
    let when = match inc.closed_at {
        Some(end) => format!(
            "Resolved after {} · {} – {}",
            duration_text(inc, i.clock),
            i.clock.time(inc.opened_at),
            i.clock.time(end)
        ),
        None => format!(
            "{} · since {} ({})",
            stage_label(now.or(last).map_or(Stage::Outage, |s| s.stage)),
            i.clock.time(inc.opened_at),
            duration_text(inc, i.clock)
        ),
    };
    let _ = write!(
        h,
        "<div class=\"detail\">{} · affected users: {} · likely cause: {}</div><ul>",
        esc(&when),
        esc(&s.users.to_string()),
        esc(incident_cause(s)),
    );
    for e in entries.iter().rev().take(4) {
        let _ = write!(
            h,
            "<li><time datetime=\"{}\" title=\"{}\">{}</time> {}</li>",
            timestamp(e.at),
            esc(&i.clock.full(e.at)),
            esc(&i.clock.time(e.at)),
            esc(&entry_text(&e.summary)),
        );
    }
    h.push_str("</ul></article>");
}

/// An incident's own page: timeline, duration, what it affected, the outage report.
pub fn incident_page(inc: &Incident, entries: &[Entry], i: &Inputs<'_>) -> String {
    let last = entries.last().map(|e| &e.summary);
    let peak = inc.peak.as_ref().or(last);
    let title = peak.map_or_else(
        || format!("Incident {}", inc.id),
        |s| incident_title(s, i.settings),
    );
    let mut h = String::with_capacity(16 * 1024);
    head(&mut h, &format!("{title} · {}", i.settings.title), false);
    let state = match (inc.closed_at, last) {
        (Some(_), _) => "Resolved",
        (None, Some(s)) => stage_label(s.stage),
        (None, None) => "Outage",
    };
    let _ = write!(
        h,
        "<p class=\"meta\"><a href=\"/\">← {}</a></p><h1>{}</h1><div class=\"banner {}\">{}</div>",
        esc(&i.settings.title),
        esc(&title),
        if inc.closed_at.is_some() {
            "operational"
        } else {
            "partial_outage"
        },
        state
    );
    let mut services: Vec<Service> = Vec::new();
    let mut regions: Vec<String> = Vec::new();
    for e in entries {
        services.extend(super::model::services(&e.summary));
        regions.extend(e.summary.regions.iter().cloned());
    }
    services.sort();
    services.dedup();
    regions.sort();
    regions.dedup();
    let service_names: Vec<&str> = services.iter().map(|s| i.settings.name(*s)).collect();
    let region_names: Vec<&str> = regions.iter().map(|r| i.settings.region(r)).collect();
    h.push_str("<h2>Summary</h2><table>");
    let mut row = |k: &str, v: String| {
        let _ = write!(
            h,
            "<tr><th>{}</th><td data-label=\"{}\">{}</td></tr>",
            esc(k),
            esc(k),
            esc(&v)
        );
    };
    row(
        "Started",
        format!(
            "{} ({} ago)",
            i.clock.full(inc.opened_at),
            i.clock.ago(inc.opened_at)
        ),
    );
    match inc.closed_at {
        Some(end) => row("Resolved", i.clock.full(end)),
        None => row("Resolved", "not yet".into()),
    }
    row("Duration", duration_text(inc, i.clock));
    row("Affected services", super::model::and_list(&service_names));
    row("Regions", super::model::and_list(&region_names));
    if let Some(s) = peak {
        row("Affected users (at most)", s.users.to_string());
        row("Likely cause", incident_cause(s).to_string());
    }
    h.push_str("</table><h2>Timeline</h2><table><tr><th>time</th><th>what happened</th><th>affected users</th></tr>");
    for e in entries {
        let _ = write!(
            h,
            "<tr><td data-label=\"time\"><time datetime=\"{}\">{}</time> <span class=\"meta\">({} ago)</span></td>\
             <td data-label=\"what happened\">{}</td><td data-label=\"affected users\">{}</td></tr>",
            timestamp(e.at),
            esc(&i.clock.full(e.at)),
            esc(&i.clock.ago(e.at)),
            esc(&entry_text(&e.summary)),
            esc(&e.summary.users.to_string()),
        );
    }
    let _ = write!(
        h,
        "</table><h2>Outage report</h2><pre id=\"report\">{}</pre>\
         <p class=\"meta\"><a href=\"/incidents/{}.md\">as Markdown</a> · times in {}</p></main></body></html>",
        esc(&report(inc, entries, i)),
        inc.id,
        esc(&i.settings.time_zone_name)
    );
    h
}

/// The outage report in Markdown, in the page's plain words.
pub fn report(inc: &Incident, entries: &[Entry], i: &Inputs<'_>) -> String {
    let peak = inc.peak.as_ref().or(entries.last().map(|e| &e.summary));
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# {}\n",
        peak.map_or_else(
            || format!("Incident {}", inc.id),
            |s| incident_title(s, i.settings)
        )
    );
    let _ = writeln!(md, "- Started: {}", i.clock.full(inc.opened_at));
    match inc.closed_at {
        Some(end) => {
            let _ = writeln!(md, "- Resolved: {}", i.clock.full(end));
        }
        None => {
            let _ = writeln!(md, "- Resolved: not yet");
        }
    }
    let _ = writeln!(md, "- Duration: {}", duration_text(inc, i.clock));
    if let Some(s) = peak {
        let _ = writeln!(md, "- Affected users (at most): {}", s.users);
        let _ = writeln!(md, "- Likely cause: {}", incident_cause(s));
    }
    let _ = writeln!(
        md,
        "\n| time | what happened | affected users |\n|---|---|---|"
    );
    for e in entries {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            i.clock.full(e.at),
            entry_text(&e.summary).replace('|', "\\|"),
            e.summary.users
        );
    }
    md
}

/// The page as JSON (`/api/v1/summary`): what the page says, nothing more.
pub fn summary_json(i: &Inputs<'_>) -> Value {
    let comps = components(i.snapshot);
    let Banner { state, text } = banner(&comps, i.settings, i.clock);
    let uptime = Uptime::from_rows(i.uptime, i.clock.now);
    json!({
        "title": i.settings.title,
        "generated_at": timestamp(i.clock.now),
        "time_zone": i.settings.time_zone_name,
        "status": {"state": state.key(), "label": state.label(), "text": text},
        "components": comps.iter().map(|c| json!({
            "region": c.region,
            "region_name": i.settings.region(&c.region),
            "service": c.service.key(),
            "name": i.settings.name(c.service),
            "state": c.state.key(),
            "label": c.state.label(),
            "since": c.since.map(timestamp),
            "affected_users": c.users,
            "cause": c.cause,
            "uptime_90d": uptime.percent(&c.region, c.service),
        })).collect::<Vec<_>>(),
        "incidents": i.history.iter().map(|(inc, entries)| {
            let s = inc.peak.as_ref().or(entries.last().map(|e| &e.summary));
            json!({
                "id": inc.id,
                "url": format!("/incidents/{}", inc.id),
                "title": s.map(|s| incident_title(s, i.settings)),
                "started": timestamp(inc.opened_at),
                "resolved": inc.closed_at.map(timestamp),
                "stage": entries.last().map(|e| stage_label(e.summary.stage)),
                "affected_users": s.map(|s| s.users.to_string()),
                "cause": s.map(incident_cause),
                "updates": entries.iter().map(|e| json!({
                    "at": timestamp(e.at),
                    "text": entry_text(&e.summary),
                })).collect::<Vec<_>>(),
            })
        }).collect::<Vec<_>>(),
    })
}

/// Rollups by component and day.
pub struct Uptime<'a> {
    by: BTreeMap<(&'a str, &'a str), BTreeMap<i64, &'a DayRow>>,
    today: i64,
}

impl<'a> Uptime<'a> {
    /// Indexes `rows`; `now` fixes today.
    pub fn from_rows(rows: &'a [DayRow], now: SystemTime) -> Uptime<'a> {
        let mut by: BTreeMap<(&str, &str), BTreeMap<i64, &DayRow>> = BTreeMap::new();
        for r in rows {
            by.entry((r.region.as_str(), r.service.as_str()))
                .or_default()
                .insert(r.day, r);
        }
        Uptime {
            by,
            today: day_of(now),
        }
    }

    /// The share of time up over the days with data, as a percentage; `None` without data.
    /// Time under maintenance is neither up nor down: it is left out of the time counted.
    pub fn percent(&self, region: &str, service: Service) -> Option<f64> {
        let days = self.by.get(&(region, service.key()))?;
        let counted: i64 = days.values().map(|r| r.counted_ms()).sum();
        if counted == 0 {
            return None;
        }
        let down: f64 = days.values().map(|r| r.down_share_ms).sum();
        Some(((1.0 - down / counted as f64) * 100_000.0).round() / 1000.0)
    }

    fn bars(&self, h: &mut String, region: &str, service: Service, i: &Inputs<'_>) {
        let days = self.by.get(&(region, service.key()));
        h.push_str("<div class=\"bars\" role=\"list\">");
        for day in (self.today - DAYS + 1)..=self.today {
            let row = days.and_then(|d| d.get(&day)).copied();
            let (class, tip) = day_story(day, row, i);
            let _ = write!(
                h,
                "<span role=\"listitem\" tabindex=\"0\" class=\"{class}\" data-day=\"{}\" title=\"{}\"></span>",
                day_start(day)
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                esc(&tip)
            );
        }
        let pct = self
            .percent(region, service)
            .map_or_else(|| "no data yet".into(), |p| format!("{p:.2} % uptime"));
        let _ = write!(
            h,
            "</div><div class=\"axis\"><span>{DAYS} days ago</span><span class=\"pct\">{pct}</span><span>today</span></div><div class=\"tip\"></div>"
        );
    }
}

/// A day's colour and what happened, in words.
fn day_story(day: i64, row: Option<&DayRow>, i: &Inputs<'_>) -> (&'static str, String) {
    // The UTC day's noon, so the label names the right date in any zone near UTC.
    let label = i.clock.day(day_start(day) + Duration::from_secs(43_200));
    let Some(r) = row.filter(|r| r.observed_ms > 0) else {
        return ("", format!("{label}: no data"));
    };
    let ms = |v: i64| span(Duration::from_millis(u64::try_from(v).unwrap_or(0)));
    let mut parts = Vec::new();
    let mut class = ComponentState::Operational;
    for (v, state) in [
        (r.major_ms, ComponentState::MajorOutage),
        (r.partial_ms, ComponentState::PartialOutage),
        (r.degraded_ms, ComponentState::Degraded),
        (r.maintenance_ms, ComponentState::Maintenance),
    ] {
        if v > 0 {
            parts.push(format!("{} for {}", state.label().to_lowercase(), ms(v)));
            class = class.max(state);
        }
    }
    // A day of nothing but maintenance has no uptime to tell.
    let up = match r.counted_ms() {
        0 => String::new(),
        counted => format!(
            " ({:.2} % up)",
            100.0 * (1.0 - r.down_share_ms / counted as f64)
        ),
    };
    let mut tip = if parts.is_empty() {
        format!("{label}: no problems{up}")
    } else {
        format!("{label}: {}{up}", parts.join(", "))
    };
    if !r.incidents.is_empty() {
        let ids: Vec<String> = r.incidents.iter().map(|i| format!("#{i}")).collect();
        tip.push_str(&format!("; incident {}", ids.join(", ")));
    }
    (class.key(), tip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_leaves_maintenance_out_of_the_time_it_is_a_share_of() {
        let now = SystemTime::now();
        let row = |day, maintenance_ms, down_share_ms| DayRow {
            day,
            region: "eu".into(),
            service: "reading".into(),
            observed_ms: 10_000,
            maintenance_ms,
            down_share_ms,
            ..DayRow::default()
        };
        // A quarter of the time watched was planned work and a quarter everything was down:
        // down for a third of the time that counts.
        let today = day_of(now);
        let rows = [row(today - 1, 5_000, 0.0), row(today, 0, 5_000.0)];
        let up = Uptime::from_rows(&rows, now);
        assert_eq!(up.percent("eu", Service::Reading), Some(66.667));
        // Nothing but maintenance: no time to tell uptime from.
        let rows = [row(today, 10_000, 0.0)];
        let up = Uptime::from_rows(&rows, now);
        assert_eq!(up.percent("eu", Service::Reading), None);
        let clock = Clock::new(now, jiff::tz::TimeZone::UTC);
        let settings = StatusSettings::default();
        let snapshot = Snapshot::default();
        let i = Inputs {
            snapshot: &snapshot,
            history: &[],
            uptime: &rows,
            settings: &settings,
            clock: &clock,
        };
        let (class, tip) = day_story(today, Some(&rows[0]), &i);
        assert_eq!(class, "maintenance");
        assert!(tip.ends_with(": under maintenance for 10 s"), "{tip}");
    }
}
