//! The status pages, the incident pages and API, the Atom feeds and the notes people add: the
//! handlers the routers route to beyond metrics, health and reloads.

use super::*;

/// Query of `/api/v1/incidents`.
#[derive(serde::Deserialize)]
pub(super) struct Since {
    since: Option<String>,
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "cannot read incident history");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "incident history unavailable\n",
    )
        .into_response()
}

pub(super) async fn status_page(State(s): State<AppState>) -> Response {
    let since = std::time::SystemTime::now() - crate::status::DEFAULT_WINDOW;
    match s.incidents.history(since).await {
        Ok(history) => Html(crate::status::page(
            &s.incidents.snapshot(),
            &history,
            &s.recent,
        ))
        .into_response(),
        Err(e) => unavailable(e),
    }
}

/// What the public page needs, read from the incident service and its database.
struct PublicData {
    snapshot: Arc<crate::incidents::service::Snapshot>,
    history: Vec<(crate::incidents::Incident, Vec<crate::incidents::Entry>)>,
    uptime: Vec<crate::incidents::uptime::DayRow>,
    settings: Arc<crate::load::StatusSettings>,
    clock: crate::status::model::Clock,
}

impl PublicData {
    async fn read(s: &AppState) -> Result<PublicData, Response> {
        let now = std::time::SystemTime::now();
        let history = s
            .incidents
            .history(now - crate::status::DEFAULT_WINDOW)
            .await
            .map_err(unavailable)?;
        let uptime = s
            .incidents
            .uptime(crate::incidents::uptime::DAYS)
            .await
            .map_err(unavailable)?;
        let settings = s.status.load_full();
        Ok(PublicData {
            snapshot: s.incidents.snapshot(),
            history,
            uptime,
            clock: crate::status::model::Clock::new(now, settings.time_zone.clone()),
            settings,
        })
    }

    fn inputs(&self) -> crate::status::public::Inputs<'_> {
        crate::status::public::Inputs {
            snapshot: &self.snapshot,
            history: &self.history,
            uptime: &self.uptime,
            settings: &self.settings,
            clock: &self.clock,
        }
    }
}

pub(super) async fn public_page(State(s): State<AppState>) -> Response {
    match PublicData::read(&s).await {
        Ok(d) => Html(crate::status::public::page(&d.inputs())).into_response(),
        Err(r) => r,
    }
}

pub(super) async fn public_summary(State(s): State<AppState>) -> Response {
    match PublicData::read(&s).await {
        Ok(d) => axum::Json(crate::status::public::summary_json(&d.inputs())).into_response(),
        Err(r) => r,
    }
}

/// `/incidents/{id}` or `/incidents/{id}.md`, with the admin's CLI report added when `admin`.
pub(super) async fn incident_page(s: &AppState, id: &str, admin: bool) -> Response {
    let (id, markdown) = match id.strip_suffix(".md") {
        Some(id) => (id, true),
        None => (id, false),
    };
    let Ok(id) = id.parse::<i64>() else {
        return (StatusCode::NOT_FOUND, "no such incident\n").into_response();
    };
    let found = match s.incidents.incident(id).await {
        Ok(Some(found)) => found,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such incident\n").into_response(),
        Err(e) => return unavailable(e),
    };
    let d = match PublicData::read(s).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (inc, entries) = &found;
    if markdown {
        return (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            crate::status::public::report(inc, entries, &d.inputs()),
        )
            .into_response();
    }
    let mut page = crate::status::public::incident_page(inc, entries, &d.inputs());
    if admin {
        let cli = crate::incidents::render::render(
            std::slice::from_ref(&found),
            crate::incidents::render::Format::Markdown,
        );
        let section = format!(
            "<h2>For admins: the report as <code>mailprobe incidents --format markdown</code> gives it</h2><pre id=\"admin-report\">{}</pre></main>",
            crate::status::esc(&cli)
        );
        page = page.replacen("</main>", &section, 1);
    }
    Html(page).into_response()
}

pub(super) async fn public_incident(
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    incident_page(&s, &id, false).await
}

pub(super) async fn admin_incident(
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    incident_page(&s, &id, true).await
}

pub(super) async fn status_api(State(s): State<AppState>) -> Response {
    let now = std::time::SystemTime::now();
    match s.incidents.history(now).await {
        Ok(history) => {
            let open: Vec<_> = history
                .into_iter()
                .filter(|(i, _)| i.closed_at.is_none())
                .collect();
            axum::Json(crate::status::status_json(&s.incidents.snapshot(), &open)).into_response()
        }
        Err(e) => unavailable(e),
    }
}

pub(super) async fn incidents_api(
    State(s): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<Since>,
) -> Response {
    let window = match q.since.as_deref().map(humantime::parse_duration) {
        None => crate::status::DEFAULT_WINDOW,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("since: {e} (e.g. since=7d)\n"),
            )
                .into_response();
        }
    };
    let since = std::time::SystemTime::now()
        .checked_sub(window)
        .unwrap_or(std::time::UNIX_EPOCH);
    match s.incidents.history(since).await {
        Ok(history) => axum::Json(
            history
                .iter()
                .map(|(i, e)| crate::incidents::render::incident_json(i, e))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => unavailable(e),
    }
}

/// Query of `/feed.atom`.
#[derive(serde::Deserialize)]
pub(super) struct FeedQuery {
    region: Option<String>,
}

/// `/feed.atom[?region=R]`: the Atom feed of incident events.
pub(super) async fn feed(
    State(s): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<FeedQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    feed_response(&s, q.region, &headers, crate::feed::Audience::Admin).await
}

/// The public listener's `/feed.atom[?region=R]`: in the public page's words.
pub(super) async fn public_feed(
    State(s): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<FeedQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    feed_response(&s, q.region, &headers, crate::feed::Audience::Public).await
}

/// The public listener's `/regions/{region}/feed.atom`.
pub(super) async fn public_region_feed(
    State(s): State<AppState>,
    axum::extract::Path(region): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    feed_response(&s, Some(region), &headers, crate::feed::Audience::Public).await
}

/// `/regions/{region}/feed.atom`: the same as `/feed.atom?region=R`.
pub(super) async fn region_feed(
    State(s): State<AppState>,
    axum::extract::Path(region): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    feed_response(&s, Some(region), &headers, crate::feed::Audience::Admin).await
}

pub(super) async fn feed_response(
    s: &AppState,
    region: Option<String>,
    headers: &axum::http::HeaderMap,
    audience: crate::feed::Audience,
) -> Response {
    // A region nobody probes is a typo in a subscription, not an empty feed.
    if let Some(r) = &region
        && !s
            .incidents
            .snapshot()
            .targets
            .iter()
            .any(|t| &t.region == r)
    {
        return (StatusCode::NOT_FOUND, "no such region\n").into_response();
    }
    // Links are absolute where the request says where it came to (a feed reader resolves
    // them against the feed's address otherwise).
    let tls = s.web.load_full().is_some_and(|w| w.tls.is_some());
    let base = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .map(|h| format!("{}://{h}", if tls { "https" } else { "http" }));
    match s.incidents.latest(region.clone(), crate::feed::LIMIT).await {
        Ok((instance, entries)) => (
            [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
            crate::feed::render(
                &instance,
                &crate::feed::Origin {
                    base,
                    region,
                    audience,
                },
                &s.status.load(),
                &entries,
                std::time::SystemTime::now(),
            ),
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

/// `POST /api/v1/incidents/{id}/notes` with `{"text": "..."}`: a note by a person, as
/// `mailprobe incidents note` adds. Writes need an identity: basic auth when the web config has
/// users (the `protect` layer checked them), else only clients on this host (who could run the
/// CLI anyway). `Content-Type: application/json` is required, so a web page elsewhere cannot make
/// a browser post one (that needs a CORS preflight nobody answers); the body is bounded.
pub(super) async fn add_note(
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    req: Request,
) -> Response {
    use crate::incidents::notes::{MAX_NOTE_BODY, check, may_write};
    use crate::incidents::store::UpdateError;
    let client = req.extensions().get::<ClientAddr>().map(|c| c.0.ip());
    let authenticated = s.web.load_full().is_some_and(|w| w.requires_auth());
    if !may_write(authenticated, client) {
        return (
            StatusCode::FORBIDDEN,
            "notes need basic auth (basic_auth_users in the web config) or a client on this host\n",
        )
            .into_response();
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json and {\"text\": \"...\"}\n",
        )
            .into_response();
    }
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_NOTE_BODY).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_NOTE_BODY} bytes\n"),
        )
            .into_response();
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Note {
        text: String,
    }
    let text = match serde_json::from_slice::<Note>(&body) {
        Ok(n) => match check(&n.text) {
            Ok(t) => t,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        },
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("expected {{\"text\": \"...\"}}: {e}\n"),
            )
                .into_response();
        }
    };
    match s.incidents.add_note(id, text).await {
        Ok(e) => (
            StatusCode::CREATED,
            axum::Json(serde_json::json!({
                "incident": e.incident,
                "at": crate::incidents::render::timestamp(e.at),
                "kind": e.kind,
                "text": e.event,
            })),
        )
            .into_response(),
        Err(UpdateError::NoIncident(_)) => {
            (StatusCode::NOT_FOUND, format!("no incident #{id}\n")).into_response()
        }
        Err(e) => unavailable(e),
    }
}
