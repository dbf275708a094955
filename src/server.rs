//! The daemon's HTTP endpoints: `/metrics`, `/-/healthy`, `/-/ready`, `POST /-/reload`, and a
//! small index page. The bound listener and the shutdown signal come from the caller.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// A reload request: the daemon answers on the enclosed channel with the outcome.
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

/// What the handlers need.
#[derive(Clone)]
pub struct AppState {
    /// The metrics to render.
    pub metrics: Arc<Metrics>,
    /// Whether the scheduler is running (`/-/ready`).
    pub ready: Arc<AtomicBool>,
    /// Where reload requests go.
    pub reload: mpsc::Sender<ReloadRequest>,
}

/// The router, separate from [`serve`] so tests can drive it in-process too.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn metrics(State(s): State<AppState>) -> Response {
    // Rendering walks every series; keep it off the async workers' hot path.
    let m = s.metrics.clone();
    match tokio::task::spawn_blocking(move || m.render()).await {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn ready(State(s): State<AppState>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "Ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Not ready\n").into_response()
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

async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mailprobe</title></head><body>",
        "<h1>mailprobe</h1><ul>",
        "<li><a href=\"/metrics\">/metrics</a></li>",
        "<li><a href=\"/-/healthy\">/-/healthy</a></li>",
        "<li><a href=\"/-/ready\">/-/ready</a></li>",
        "</ul></body></html>"
    ))
}
