//! The incident timeline for people and programs: a table, Markdown, CSV or JSON, with the
//! columns time, event, scope, affected users, cause, status/resolution.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::engine::{Entry, Incident};
use crate::provider::Issue;
use crate::provider::matching;

/// An output format of `mailprobe incidents`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// A Markdown table, for an outage report.
    Markdown,
    /// RFC 4180 CSV, for a spreadsheet.
    Csv,
    /// JSON, for programs.
    Json,
}

/// RFC 3339 in UTC, to the second.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

const HEADERS: [&str; 7] = [
    "INCIDENT",
    "TIME",
    "EVENT",
    "SCOPE",
    "AFFECTED USERS",
    "CAUSE",
    "STATUS",
];

fn row(e: &Entry) -> [String; 7] {
    [
        format!("#{}", e.incident),
        timestamp(e.at),
        e.headline(),
        e.summary.scope_text(),
        e.summary.users.to_string(),
        e.summary.cause_text(),
        e.status.clone(),
    ]
}

/// Renders `history` (incidents with their entries, oldest first) in `format`.
pub fn render(history: &[(Incident, Vec<Entry>)], format: Format) -> String {
    render_with_providers(history, &HashMap::new(), format)
}

/// The timeline rows of the provider issues beside an incident: each issue's first post, later
/// updates and end, with the provider in the scope column.
fn provider_rows(inc: &Incident, issues: &[Issue]) -> Vec<(SystemTime, [String; 7])> {
    issues
        .iter()
        .flat_map(|issue| {
            matching::timeline(issue, inc.opened_at)
                .into_iter()
                .map(|(at, event, status)| {
                    (
                        at,
                        [
                            format!("#{}", inc.id),
                            timestamp(at),
                            event,
                            format!("provider: {} ({})", issue.provider, issue.service),
                            String::new(),
                            issue.classification.clone(),
                            status,
                        ],
                    )
                })
        })
        .collect()
}

/// [`render`], with the provider issues beside each incident (by incident id) as timeline
/// rows of their own, in time order among the incident's.
pub fn render_with_providers(
    history: &[(Incident, Vec<Entry>)],
    linked: &HashMap<i64, Vec<Issue>>,
    format: Format,
) -> String {
    let none = Vec::new();
    let rows: Vec<[String; 7]> = history
        .iter()
        .flat_map(|(inc, entries)| {
            let mut rows: Vec<(SystemTime, [String; 7])> =
                entries.iter().map(|e| (e.at, row(e))).collect();
            rows.extend(provider_rows(inc, linked.get(&inc.id).unwrap_or(&none)));
            // Stable: an entry and a provider post at the same second keep entry first.
            rows.sort_by_key(|(at, _)| *at);
            rows.into_iter().map(|(_, r)| r)
        })
        .collect();
    match format {
        Format::Table => table(&rows),
        Format::Markdown => markdown(&rows),
        Format::Csv => csv(&rows),
        Format::Json => {
            let v: Vec<Value> = history
                .iter()
                .map(|(i, e)| {
                    let mut v = incident_json(i, e);
                    v["provider_issues"] = json!(
                        linked
                            .get(&i.id)
                            .unwrap_or(&none)
                            .iter()
                            .map(|issue| issue_json(issue, Some(i.opened_at)))
                            .collect::<Vec<_>>()
                    );
                    v
                })
                .collect();
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
    }
}

fn table(rows: &[[String; 7]]) -> String {
    let mut out = crate::table::render(&HEADERS, rows);
    if rows.is_empty() {
        out.push_str("(no incidents in this period)\n");
    }
    out
}

fn markdown(rows: &[[String; 7]]) -> String {
    let mut out = String::new();
    let cell = |s: &str| s.replace('|', "\\\\|");
    let _ = writeln!(out, "| {} |", HEADERS.map(|h| h.to_lowercase()).join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADERS.len()));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

fn csv(rows: &[[String; 7]]) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    out.push_str(
        &HEADERS
            .map(|h| h.to_lowercase().replace(' ', "_"))
            .join(","),
    );
    out.push_str("\r\n");
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| quote(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One provider issue as the API and `--format json` give it; beside an incident opened at
/// `opened`, with the sentence that places it.
pub fn issue_json(issue: &Issue, opened: Option<SystemTime>) -> Value {
    json!({
        "provider": issue.provider,
        "kind": issue.kind,
        "id": issue.id,
        "title": issue.title,
        "service": issue.service,
        "classification": issue.classification,
        "status": issue.status,
        "started_at": timestamp(issue.started_at),
        "first_post_at": timestamp(issue.first_post_at),
        "updated_at": timestamp(issue.updated_at),
        "resolved_at": issue.resolved_at.map(timestamp),
        "link": issue.link,
        "summary": opened.map(|o| matching::sentence(issue, o)),
        "updates": issue.updates.iter().map(|u| json!({
            "at": timestamp(u.at),
            "status": u.status,
            "text": u.text,
        })).collect::<Vec<_>>(),
    })
}

/// One incident with its timeline, as the API and `--format json` give it.
pub fn incident_json(inc: &Incident, entries: &[Entry]) -> Value {
    let last = entries.last();
    json!({
        "id": inc.id,
        "opened_at": timestamp(inc.opened_at),
        "closed_at": inc.closed_at.map(timestamp),
        "status": last.map(|e| e.status.clone()).unwrap_or_else(|| "ongoing".into()),
        "summary": last.map(|e| &e.summary),
        "timeline": entries.iter().map(|e| json!({
            "at": timestamp(e.at),
            "event": e.event,
            "kind": e.kind,
            "scope": e.summary.scope,
            "regions": e.summary.regions,
            "protocols": e.summary.protocols,
            "targets": e.summary.targets,
            "down": e.summary.down,
            "degraded": e.summary.degraded,
            "affected_users": e.summary.users.to_string(),
            "cause": e.summary.cause,
            "hint": e.summary.hint,
            "stage": e.summary.stage,
            "status": e.status,
        })).collect::<Vec<_>>(),
    })
}
