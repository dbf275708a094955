//! The Google Workspace Status Dashboard's public feed of incidents,
//! `https://www.google.com/appsstatus/dashboard/incidents.json`.
//!
//! Shape as its schema (`incidents.schema.json` next to the feed) documents it: an array of
//! incidents with `id`, `number`, `begin`, `created`, `end` (absent while ongoing), `modified`,
//! `external_desc`, `updates[]` (`created`, `modified`, `when`, `text`, `status`),
//! `most_recent_update`, `status_impact` (SERVICE_OUTAGE, SERVICE_DISRUPTION,
//! SERVICE_INFORMATION), `severity` (high, medium, low), `service_key`, `service_name`,
//! `affected_products[]` (`title`, `id`) and `uri`. The feed holds a year of history: only
//! incidents open or ended within [`RECENT`] are kept.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{Issue, ProviderSpec, Update, one_line, parse_time};

/// The feed, below the dashboard's base URL.
pub const INCIDENTS: &str = "incidents.json";
/// Ended incidents older than this are left out.
pub const RECENT: Duration = Duration::from_secs(86_400);

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// The incidents about a watched product, open or ended within [`RECENT`].
pub fn parse(spec: &ProviderSpec, feed: &Value, now: SystemTime) -> Result<Vec<Issue>, String> {
    let list = feed.as_array().ok_or("not an array of incidents")?;
    let mut out = Vec::new();
    for v in list {
        let id = s(v, "id");
        if id.is_empty() {
            return Err("an incident without an id".into());
        }
        let products: Vec<&str> = v
            .get("affected_products")
            .and_then(Value::as_array)
            .map(|p| p.iter().map(|p| s(p, "title")).collect())
            .unwrap_or_default();
        let service = std::iter::once(s(v, "service_name"))
            .chain(products.iter().copied())
            .find(|p| !p.is_empty() && spec.watches(p));
        let Some(service) = service else { continue };
        let begin = parse_time(s(v, "begin")).unwrap_or(now);
        let end = parse_time(s(v, "end"));
        if end.is_some_and(|e| now.duration_since(e).unwrap_or_default() > RECENT) {
            continue;
        }
        let mut updates: Vec<Update> = v
            .get("updates")
            .and_then(Value::as_array)
            .map(|u| {
                u.iter()
                    .map(|u| Update {
                        at: parse_time(s(u, "when"))
                            .or_else(|| parse_time(s(u, "created")))
                            .unwrap_or(begin),
                        status: s(u, "status").to_string(),
                        text: one_line(s(u, "text"), 300),
                    })
                    .collect()
            })
            .unwrap_or_default();
        updates.sort_by_key(|u| u.at);
        let status = v
            .get("most_recent_update")
            .map(|u| s(u, "status"))
            .filter(|s| !s.is_empty())
            .unwrap_or(s(v, "status_impact"));
        let created = parse_time(s(v, "created")).unwrap_or(begin);
        out.push(Issue {
            provider: spec.name.clone(),
            kind: spec.kind,
            id: id.to_string(),
            title: one_line(s(v, "external_desc"), 200),
            service: service.to_string(),
            classification: s(v, "severity").to_string(),
            status: status.to_string(),
            started_at: begin,
            first_post_at: updates.first().map_or(created, |u| u.at.min(created)),
            updated_at: parse_time(s(v, "modified")).unwrap_or(created),
            resolved_at: end,
            link: Some(s(v, "uri"))
                .filter(|u| !u.is_empty())
                .and_then(|u| spec.url.join(u).ok())
                .map(String::from),
            updates,
        });
    }
    Ok(out)
}
