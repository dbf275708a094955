//! The daemon's HTTP endpoints: `/metrics`, `/-/healthy`, `/-/ready`, `POST /-/reload`, and a
//! small index page. The bound listener and the shutdown signal come from the caller.
//!
//! Connections are accepted here rather than by `axum::serve` so that the web config (TLS, basic
//! auth) can apply to every endpoint and change on reload without rebinding.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;
use crate::incidents::service::Incidents;
use crate::metrics::Metrics;
use crate::scheduler::Diff;
use crate::webconfig::WebConfig;

/// How long a client may take for its TLS handshake before it is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections may finish their requests once a stop was asked for.
const DRAIN: Duration = Duration::from_secs(5);
/// Size of the pieces `/metrics` is streamed in.
const METRICS_CHUNK: usize = 256 * 1024;

/// A reload request: the daemon answers on the enclosed channel with the outcome.
pub type ReloadRequest = oneshot::Sender<Result<Reloaded, ReloadError>>;

/// A reload that was applied, with what it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloaded(pub Diff);

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config reloaded: {}", self.0)
    }
}

/// Why a reload was refused; the old config keeps running.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file cannot be read, is invalid, or gives this instance nothing to probe.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// What the handlers need.
#[derive(Clone)]
pub struct AppState {
    /// The metrics to render.
    pub metrics: Arc<Metrics>,
    /// Whether targets are being probed (`/-/ready`).
    pub ready: Arc<crate::liveness::Liveness>,
    /// Where reload requests go.
    pub reload: mpsc::Sender<ReloadRequest>,
    /// TLS and basic auth, replaced on reload.
    pub web: Arc<ArcSwapOption<WebConfig>>,
    /// The incident timeline.
    pub incidents: Incidents,
}

/// The router, separate from [`serve`] so tests can drive it in-process too.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/api/v1/status", get(status_api))
        .route("/api/v1/incidents", get(incidents_api))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .layer(middleware::from_fn_with_state(state.clone(), protect))
        .with_state(state)
}

/// Serves the endpoints on `listener` until `shutdown` is cancelled, then lets open requests
/// finish for a few seconds.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let web = state.web.clone();
    let app = router(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let tls = web.load().as_ref().and_then(|w| w.tls.clone());
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(tcp), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("HTTP connections still open after the drain period; closing them");
    }
    Ok(())
}

/// Basic auth and extra headers from the web config, for every endpoint.
async fn protect(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(web) = s.web.load_full() else {
        return next.run(req).await;
    };
    let given = req.headers().get(header::AUTHORIZATION).cloned();
    let check = web.clone();
    // bcrypt is deliberately slow: keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || check.authorized(given.as_ref()))
        .await
        .unwrap_or(false);
    let mut resp = if ok {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"mailprobe\"")],
            "Unauthorized\n",
        )
            .into_response()
    };
    for (name, value) in &web.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

async fn metrics(State(s): State<AppState>) -> Response {
    // Rendering walks every series: keep it off the async workers, and stream it in pieces so
    // that a large scrape (28 MB at 10,000 targets) never sits in memory whole.
    let m = s.metrics.clone();
    let (tx, rx) = mpsc::channel::<String>(2);
    tokio::task::spawn_blocking(move || {
        m.render_chunks(METRICS_CHUNK, &mut |chunk| tx.blocking_send(chunk).is_ok());
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

async fn ready(State(s): State<AppState>) -> Response {
    match s.ready.check() {
        Ok(()) => (StatusCode::OK, "Ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn reload(State(s): State<AppState>) -> Response {
    let (tx, rx) = oneshot::channel();
    if s.reload.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(Ok(summary)) => (StatusCode::OK, format!("{summary}\n")).into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload refused, old config still running: {e}\n"),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

/// Query of `/api/v1/incidents`.
#[derive(serde::Deserialize)]
struct Since {
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

async fn status_page(State(s): State<AppState>) -> Response {
    let since = std::time::SystemTime::now() - crate::status::DEFAULT_WINDOW;
    match s.incidents.history(since).await {
        Ok(history) => Html(crate::status::page(&s.incidents.snapshot(), &history)).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn status_api(State(s): State<AppState>) -> Response {
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

async fn incidents_api(
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
