//! Microsoft 365 service health through Graph: `GET /v1.0/admin/serviceAnnouncement/issues`
//! with an application token (permission `ServiceHealth.Read.All`).
//!
//! Shapes as documented: the list operation
//! <https://learn.microsoft.com/graph/api/serviceannouncement-list-issues> answers
//! `{"value": [serviceHealthIssue...], "@odata.nextLink"?}`; a serviceHealthIssue
//! (<https://learn.microsoft.com/en-us/graph/api/resources/servicehealthissue>) has `id`, `title`,
//! `impactDescription`, `classification` (advisory, incident, unknownFutureValue), `status` (a
//! serviceHealthStatus: serviceOperational, investigating, restoringService, verifyingService,
//! serviceRestored, postIncidentReviewPublished, serviceDegradation, serviceInterruption,
//! extendedRecovery, falsePositive, investigationSuspended, resolved, ...; see
//! <https://learn.microsoft.com/en-us/graph/api/resources/servicehealth>), `service`,
//! `startDateTime`, `endDateTime`, `lastModifiedDateTime`, `isResolved` and `posts[]`
//! (<https://learn.microsoft.com/en-us/graph/api/resources/servicehealthissuepost>:
//! `createdDateTime`, `postType`, `description.content` in HTML).

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{Issue, ProviderSpec, Update, one_line, parse_time};

/// The issues, below the Graph base URL.
pub const ISSUES: &str = "v1.0/admin/serviceAnnouncement/issues";
/// Pages of `@odata.nextLink` followed at most.
pub const MAX_PAGES: usize = 10;
/// Resolved issues older than this are left out: they can no longer match an incident.
pub const RECENT: Duration = Duration::from_secs(86_400);

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// The issues of one page about a watched service, open or resolved within [`RECENT`].
pub fn parse(spec: &ProviderSpec, page: &Value, now: SystemTime) -> Result<Vec<Issue>, String> {
    let list = page
        .get("value")
        .and_then(Value::as_array)
        .ok_or("no \"value\" array")?;
    let mut out = Vec::new();
    for v in list {
        let id = s(v, "id");
        if id.is_empty() {
            return Err("an issue without an id".into());
        }
        if !spec.watches(s(v, "service")) {
            continue;
        }
        let start = parse_time(s(v, "startDateTime")).unwrap_or(now);
        let modified = parse_time(s(v, "lastModifiedDateTime")).unwrap_or(start);
        let resolved = v.get("isResolved").and_then(Value::as_bool) == Some(true);
        let resolved_at = resolved.then(|| parse_time(s(v, "endDateTime")).unwrap_or(modified));
        if resolved_at.is_some_and(|r| now.duration_since(r).unwrap_or_default() > RECENT) {
            continue;
        }
        let status = s(v, "status").to_string();
        let mut updates: Vec<Update> = v
            .get("posts")
            .and_then(Value::as_array)
            .map(|p| {
                p.iter()
                    .map(|p| Update {
                        at: parse_time(s(p, "createdDateTime")).unwrap_or(start),
                        // Posts carry no status of their own: the status changes seen
                        // between polls are added by the incident service.
                        status: String::new(),
                        text: one_line(
                            p.get("description")
                                .map(|d| s(d, "content"))
                                .unwrap_or_default(),
                            300,
                        ),
                    })
                    .collect()
            })
            .unwrap_or_default();
        updates.sort_by_key(|u| u.at);
        let title = match s(v, "title") {
            "" => one_line(s(v, "impactDescription"), 200),
            t => one_line(t, 200),
        };
        out.push(Issue {
            provider: spec.name.clone(),
            kind: spec.kind,
            id: id.to_string(),
            title,
            service: s(v, "service").to_string(),
            classification: s(v, "classification").to_string(),
            status,
            started_at: start,
            first_post_at: updates.first().map_or(start, |u| u.at),
            updated_at: modified,
            resolved_at,
            link: None,
            updates,
        });
    }
    Ok(out)
}

/// The next page, when Graph gives one on the same host as the base URL (the token is never
/// sent anywhere else).
pub fn next_link(spec: &ProviderSpec, page: &Value) -> Option<url::Url> {
    let next = url::Url::parse(s(page, "@odata.nextLink")).ok()?;
    (next.origin() == spec.url.origin()).then_some(next)
}
