//! Any Atlassian Statuspage's public v2 API: the unresolved incidents and the components.
//!
//! Shapes as documented by Atlassian's public status pages (for instance
//! <https://confluence.status.atlassian.com/api>, "Unresolved incidents" and "Components";
//! the incident fields also in <https://doers.statuspage.io/api/v1/incidents/>): an incident has
//! `id`, `name`, `status` (investigating, identified, monitoring, resolved, postmortem),
//! `impact` (none, minor, major, critical), `created_at`, `updated_at`, `started_at`,
//! `resolved_at`, `shortlink`, `incident_updates[]` (`status`, `body`, `created_at`,
//! `display_at`) and `components[]` (`id`, `name`, `status`); a component's `status` is
//! operational, degraded_performance, partial_outage, major_outage or under_maintenance.

use std::time::SystemTime;

use serde_json::Value;

use super::{Issue, ProviderSpec, Update, one_line, parse_time};

/// The unresolved incidents, below the page's base URL.
pub const INCIDENTS: &str = "api/v2/incidents/unresolved.json";
/// The components, below the page's base URL.
pub const COMPONENTS: &str = "api/v2/components.json";

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// The open issues: unresolved incidents touching a watched component (every incident when
/// all are watched), and watched components not operational that no incident covers.
pub fn parse(
    spec: &ProviderSpec,
    incidents: &Value,
    components: &Value,
    now: SystemTime,
) -> Result<Vec<Issue>, String> {
    let list = incidents
        .get("incidents")
        .and_then(Value::as_array)
        .ok_or("no \"incidents\" array")?;
    let comps = components
        .get("components")
        .and_then(Value::as_array)
        .ok_or("no \"components\" array")?;
    let mut out = Vec::new();
    let mut covered: Vec<String> = Vec::new();
    for inc in list {
        let id = s(inc, "id");
        if id.is_empty() {
            return Err("an incident without an id".into());
        }
        let names: Vec<&str> = inc
            .get("components")
            .and_then(Value::as_array)
            .map(|c| c.iter().map(|c| s(c, "name")).collect())
            .unwrap_or_default();
        let service = if spec.services.is_empty() {
            names.first().copied().unwrap_or("all").to_string()
        } else {
            match names.iter().find(|n| spec.watches(n)) {
                Some(n) => n.to_string(),
                None => continue,
            }
        };
        covered.extend(names.iter().map(|n| n.to_string()));
        let created = parse_time(s(inc, "created_at")).unwrap_or(now);
        let mut updates: Vec<Update> = inc
            .get("incident_updates")
            .and_then(Value::as_array)
            .map(|u| {
                u.iter()
                    .map(|u| Update {
                        at: parse_time(s(u, "display_at"))
                            .or_else(|| parse_time(s(u, "created_at")))
                            .unwrap_or(created),
                        status: s(u, "status").to_string(),
                        text: one_line(s(u, "body"), 300),
                    })
                    .collect()
            })
            .unwrap_or_default();
        updates.sort_by_key(|u| u.at);
        out.push(Issue {
            provider: spec.name.clone(),
            kind: spec.kind,
            id: id.to_string(),
            title: one_line(s(inc, "name"), 200),
            service,
            classification: s(inc, "impact").to_string(),
            status: s(inc, "status").to_string(),
            started_at: parse_time(s(inc, "started_at")).unwrap_or(created),
            first_post_at: updates.first().map_or(created, |u| u.at),
            updated_at: parse_time(s(inc, "updated_at")).unwrap_or(created),
            // Listed as unresolved: open, whatever else it says.
            resolved_at: None,
            link: Some(s(inc, "shortlink").to_string()).filter(|l| !l.is_empty()),
            updates,
        });
    }
    for c in comps {
        let (name, status) = (s(c, "name"), s(c, "status"));
        if status == "operational"
            || status.is_empty()
            || c.get("group").and_then(Value::as_bool) == Some(true)
            || !spec.watches(name)
            || covered.iter().any(|n| n == name)
        {
            continue;
        }
        let since = parse_time(s(c, "updated_at")).unwrap_or(now);
        out.push(Issue {
            provider: spec.name.clone(),
            kind: spec.kind,
            id: format!("component:{}", s(c, "id")),
            title: format!("{name}: {status}"),
            service: name.to_string(),
            classification: status.to_string(),
            status: status.to_string(),
            started_at: since,
            first_post_at: since,
            updated_at: since,
            resolved_at: None,
            link: None,
            updates: Vec::new(),
        });
    }
    Ok(out)
}
