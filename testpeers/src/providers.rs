//! A provider status feed server over HTTPS on 127.0.0.1: it serves, path by path, what a test
//! sets, in the shapes the providers document, and misbehaves on request (an error status,
//! garbage, an oversized body, silence).
//!
//! The shapes, from the providers' public references:
//! - Microsoft Graph `GET /v1.0/admin/serviceAnnouncement/issues`
//!   (<https://learn.microsoft.com/graph/api/serviceannouncement-list-issues>): `{"value": [...]}`
//!   of serviceHealthIssue (<https://learn.microsoft.com/en-us/graph/api/resources/servicehealthissue>)
//!   with posts (<https://learn.microsoft.com/en-us/graph/api/resources/servicehealthissuepost>);
//!   errors as Graph's `{"error": {"code", "message"}}`, 401 without a valid bearer token.
//! - Google Workspace Status Dashboard `incidents.json` (fields of its `incidents.schema.json`:
//!   id, number, begin, created, end, modified, external_desc, updates[], most_recent_update,
//!   status_impact, severity, service_key, service_name, affected_products[], uri).
//! - Atlassian Statuspage v2 `/api/v2/incidents/unresolved.json` and `/api/v2/components.json`
//!   (<https://confluence.status.atlassian.com/api>, <https://doers.statuspage.io/api/v1/incidents/>).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::https::BearerCheck;
use crate::pki::ServerCert;

/// What a path answers.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200 with this JSON.
    Json(Value),
    /// This status with this JSON body.
    Status(u16, Value),
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with a JSON-looking body of this many bytes.
    Oversized(usize),
    /// Headers never come (the connection stays open).
    Silent,
}

#[derive(Default)]
struct State {
    answers: HashMap<String, Answer>,
    bearer: Option<BearerCheck>,
}

/// A running feed server; stops when dropped.
pub struct FeedServer {
    /// Its base URL (`https://localhost:port/`), the test CA's `localhost` certificate.
    pub base: String,
    /// Requests served.
    pub requests: Arc<AtomicUsize>,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FeedServer {
    /// Starts it; every path answers 404 until set.
    pub async fn start(cert: &ServerCert) -> FeedServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind feed");
        let base = format!(
            "https://localhost:{}/",
            listener.local_addr().expect("addr").port()
        );
        let state = Arc::new(Mutex::new(State::default()));
        let requests = Arc::new(AtomicUsize::new(0));
        let tls = cert.server_config(&[b"http/1.1"]);
        let (s, c) = (state.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                let (s, c) = (s.clone(), c.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (s, c) = (s.clone(), c.clone());
                        async move {
                            c.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(answer(&s, &req).await)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FeedServer {
            base,
            requests,
            state,
            task,
        }
    }

    /// Makes `path` (without the leading `/`, query ignored) answer `a`.
    pub fn set(&self, path: &str, a: Answer) {
        self.state
            .lock()
            .expect("state")
            .answers
            .insert(path.trim_start_matches('/').to_string(), a);
    }

    /// Requires a bearer token `check` accepts (Graph).
    pub fn require_bearer(&self, check: BearerCheck) {
        self.state.lock().expect("state").bearer = Some(check);
    }
}

async fn answer(s: &Mutex<State>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_start_matches('/').to_string();
    let (a, bearer) = {
        let s = s.lock().expect("state");
        (s.answers.get(&path).cloned(), s.bearer.clone())
    };
    if let Some(check) = bearer {
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !token.is_some_and(|t| (check.0)(t)) {
            // Graph's error body for a missing or invalid token.
            return respond(
                401,
                json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty or invalid."}})
                    .to_string(),
            );
        }
    }
    match a {
        None => respond(404, json!({"error": "not found"}).to_string()),
        Some(Answer::Json(v)) => respond(200, v.to_string()),
        Some(Answer::Status(code, v)) => respond(code, v.to_string()),
        Some(Answer::Garbage) => respond(200, "<html>Service Unavailable</html>".into()),
        Some(Answer::Oversized(n)) => {
            let mut body = String::with_capacity(n);
            body.push_str("{\"incidents\":[");
            while body.len() < n {
                body.push_str("{\"id\":\"x\"},");
            }
            respond(200, body)
        }
        Some(Answer::Silent) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            respond(200, String::new())
        }
    }
}

fn respond(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

/// A Statuspage v2 incident: `updates` are `(status, body, created_at)`.
pub fn statuspage_incident(
    id: &str,
    name: &str,
    status: &str,
    impact: &str,
    created_at: &str,
    components: &[&str],
    updates: &[(&str, &str, &str)],
) -> Value {
    json!({
        "id": id,
        "name": name,
        "status": status,
        "impact": impact,
        "created_at": created_at,
        "updated_at": updates.last().map_or(created_at, |u| u.2),
        "monitoring_at": null,
        "resolved_at": null,
        "started_at": created_at,
        "page_id": "testpage",
        "shortlink": format!("https://stspg.io/{id}"),
        "incident_updates": updates.iter().rev().enumerate().map(|(n, (st, body, at))| json!({
            "id": format!("{id}-u{n}"),
            "status": st,
            "body": body,
            "incident_id": id,
            "created_at": at,
            "updated_at": at,
            "display_at": at,
            "affected_components": null,
        })).collect::<Vec<_>>(),
        "components": components.iter().enumerate().map(|(n, c)| json!({
            "id": format!("c{n}"),
            "name": c,
            "status": "major_outage",
            "created_at": created_at,
            "updated_at": created_at,
            "position": n,
            "description": null,
            "showcase": true,
            "group_id": null,
            "page_id": "testpage",
            "group": false,
            "only_show_if_degraded": false,
        })).collect::<Vec<_>>(),
    })
}

/// The page object every Statuspage v2 answer starts with.
fn statuspage_page() -> Value {
    json!({"id": "testpage", "name": "Example Mail", "url": "https://status.example.test", "time_zone": "Etc/UTC", "updated_at": "2026-11-30T09:00:00.000Z"})
}

/// `/api/v2/incidents/unresolved.json`.
pub fn statuspage_unresolved(incidents: Vec<Value>) -> Value {
    json!({"page": statuspage_page(), "incidents": incidents})
}

/// `/api/v2/components.json`: `(id, name, status)`.
pub fn statuspage_components(components: &[(&str, &str, &str)]) -> Value {
    json!({"page": statuspage_page(), "components": components.iter().enumerate().map(|(n, (id, name, status))| json!({
        "id": id, "name": name, "status": status, "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-11-30T09:00:00.000Z", "position": n, "description": null,
        "showcase": false, "start_date": null, "group_id": null, "page_id": "testpage",
        "group": false, "only_show_if_degraded": false,
    })).collect::<Vec<_>>()})
}

/// A Graph serviceHealthIssue; `posts` are `(createdDateTime, html)`.
#[allow(clippy::too_many_arguments)]
pub fn graph_issue(
    id: &str,
    title: &str,
    service: &str,
    classification: &str,
    status: &str,
    start: &str,
    end: Option<&str>,
    posts: &[(&str, &str)],
) -> Value {
    json!({
        "startDateTime": start,
        "endDateTime": end,
        "lastModifiedDateTime": posts.last().map_or(start, |p| p.0),
        "title": title,
        "id": id,
        "impactDescription": format!("Users may be unable to use {service}."),
        "classification": classification,
        "origin": "microsoft",
        "status": status,
        "service": service,
        "feature": "E-Mail and calendar access",
        "featureGroup": "Management and Provisioning",
        "isResolved": end.is_some(),
        "highImpact": null,
        "details": [],
        "posts": posts.iter().map(|(at, html)| json!({
            "createdDateTime": at,
            "postType": "regular",
            "description": {"contentType": "html", "content": html},
        })).collect::<Vec<_>>(),
    })
}

/// One page of the issues list.
pub fn graph_page(issues: Vec<Value>) -> Value {
    json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#admin/serviceAnnouncement/issues",
        "value": issues,
    })
}

/// A Google Workspace Status Dashboard incident; `updates` are `(when, status, text)`.
pub fn google_incident(
    id: &str,
    desc: &str,
    product: &str,
    severity: &str,
    begin: &str,
    end: Option<&str>,
    updates: &[(&str, &str, &str)],
) -> Value {
    let ups: Vec<Value> = updates
        .iter()
        .rev()
        .map(|(when, status, text)| {
            json!({"created": when, "modified": when, "when": when, "text": text, "status": status})
        })
        .collect();
    json!({
        "id": id,
        "number": "12345678901234567890",
        "begin": begin,
        "created": updates.first().map_or(begin, |u| u.0),
        "end": end,
        "modified": updates.last().map_or(begin, |u| u.0),
        "external_desc": desc,
        "updates": ups,
        "most_recent_update": ups.first(),
        "status_impact": "SERVICE_OUTAGE",
        "severity": severity,
        "service_key": "test-key",
        "service_name": product,
        "affected_products": [{"title": product, "id": "test-key"}],
        "uri": format!("incidents/{id}"),
    })
}
