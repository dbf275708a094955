//! The daemon's HTTP endpoints: `/metrics`, `/-/healthy`, `/-/ready`, `POST /-/reload`, the
//! admin view at `/` and the public page at `/status` on the private listener ([`router`]), and
//! the public page alone on `[status] listen` ([`public_router`]); the Atom feed
//! (`/feed.atom`, `/regions/{region}/feed.atom`) on both; the notes API
//! (`POST /api/v1/incidents/{id}/notes`) on the private one only. The bound listeners and the
//! shutdown signal come from the caller.
//!
//! Connections are accepted here rather than by `axum::serve` so that the web config (TLS, basic
//! auth) can apply to every endpoint and change on reload without rebinding, and so that no
//! client can hold a connection, and with it a file descriptor the probes need, for long:
//!
//! - at most [`Limits::max_connections`] are open at once, a quarter of the process's open-file
//!   limit; when that is reached, the connection that has waited longest without a request in
//!   flight is closed to make room, and when every one is busy, new ones wait in the backlog;
//! - the TLS handshake must be done within [`TLS_HANDSHAKE_TIMEOUT`];
//! - a request head must be complete within [`REQUEST_HEAD_TIMEOUT`] of the connection being
//!   ready (after TLS) or of the first byte of a following request on a keep-alive connection;
//! - a keep-alive connection may wait [`IDLE_TIMEOUT`] for its next request;
//! - a response the client does not read for [`STALLED_WRITE_TIMEOUT`] ends its connection.
//!
//! Failed accepts (out of descriptors) back off and are logged at most once a minute.
//!
//! Basic auth (see [`crate::webconfig`]) answers a refused request no sooner than
//! [`REFUSED_AUTH_DELAY`] after it arrived, and a request whose password check could not be
//! queued with 503 and `Retry-After: 1` after the same delay; neither costs the probes CPU.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ConfigError;
use crate::incidents::service::Incidents;
use crate::metrics::Metrics;
use crate::scheduler::Diff;
use crate::sync::lock;
use crate::webconfig::{Access, WebConfig};

mod conn;
mod pages;
use conn::*;
use pages::*;

/// How long a client may take for its TLS handshake before it is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a whole request head: from the connection being ready
/// (after TLS), or from the first byte of a following request on a keep-alive connection. A
/// real client sends its head in one packet; slowloris sends it a byte at a time.
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a keep-alive connection may wait for its next request: longer than the usual
/// scrape intervals (15 s to 60 s), so Prometheus keeps reusing its connection.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// How long a response may wait for the client to read it before the connection is closed.
pub const STALLED_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent HTTP/2 requests per connection (Prometheus sends one at a time).
const MAX_H2_STREAMS: u32 = 16;
/// How long open connections may finish their requests once a stop was asked for.
const DRAIN: Duration = Duration::from_secs(5);
/// Size of the pieces `/metrics` is streamed in.
const METRICS_CHUNK: usize = 256 * 1024;
/// A repeated warning (failed accepts, connections closed to make room) is logged at most once
/// per this period, with the number of times it was held back.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Waits after a failed accept: doubled on each failure in a row, up to the maximum.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Requests whose credentials are refused are answered no sooner than this after they arrived,
/// so that a client replaying a wrong password (answered from the cache in microseconds) or
/// guessing on a keep-alive connection sends one request a second, not thousands.
pub const REFUSED_AUTH_DELAY: Duration = Duration::from_secs(1);

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
    /// `[status]`: the public page's words and zone, replaced on reload.
    pub status: Arc<arc_swap::ArcSwap<crate::load::StatusSettings>>,
    /// Each target's last probes, for the admin view.
    pub recent: Arc<crate::status::recent::RecentProbes>,
}

/// The router, separate from [`serve`] so tests can drive it in-process too.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/api/v1/status", get(status_api))
        .route("/api/v1/incidents", get(incidents_api))
        .route("/api/v1/incidents/{id}/notes", post(add_note))
        .route("/feed.atom", get(feed))
        .route("/regions/{region}/feed.atom", get(region_feed))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/status", get(public_page))
        .route("/api/v1/summary", get(public_summary))
        .route("/incidents/{id}", get(admin_incident))
        .layer(middleware::from_fn_with_state(state.clone(), protect))
        .with_state(state)
}

/// The public listener's router (`[status] listen`): the public page, its incident pages and
/// its JSON, nothing else, so that it can be published as is. `state.web` is the public
/// listener's web config.
pub fn public_router(state: AppState) -> Router {
    Router::new()
        .route("/", get(public_page))
        .route("/api/v1/summary", get(public_summary))
        .route("/incidents/{id}", get(public_incident))
        .route("/feed.atom", get(public_feed))
        .route("/regions/{region}/feed.atom", get(public_region_feed))
        .layer(middleware::from_fn_with_state(state.clone(), protect))
        .with_state(state)
}

/// How many connections the server keeps open at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, at most.
    pub max_connections: usize,
    /// The open-file limit it was derived from.
    pub open_files: u64,
}

impl Limits {
    /// For a process that may open `open_files` descriptors: a quarter of them, between 4 and
    /// 1024, go to HTTP connections. The other three quarters stay for what must never run out:
    /// probe connections (one or two per probe in flight), DNS, the incident database, the log.
    pub fn for_open_files(open_files: u64) -> Limits {
        Limits {
            max_connections: (open_files / 4).clamp(4, 1024) as usize,
            open_files,
        }
    }

    /// For this process's soft open-file limit (`RLIMIT_NOFILE`, `ulimit -n`, systemd's
    /// `LimitNOFILE=`), read from /proc/self/limits; 1024, the usual default, when unreadable.
    pub fn for_this_process() -> Limits {
        Limits::for_open_files(open_file_limit().unwrap_or(1024))
    }
}

/// The soft limit on open files from /proc/self/limits.
fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let rest = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    match rest.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

/// Serves the endpoints on `listener` until `shutdown` is cancelled, then lets open requests
/// finish for a few seconds.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let web = state.web.clone();
    serve_router(listener, router(state), web, shutdown).await
}

/// Serves `app` on `listener` with the limits and timeouts of [`serve`], its TLS from `web`.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    web: Arc<ArcSwapOption<WebConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limits = Limits::for_this_process();
    tracing::debug!(
        max_connections = limits.max_connections,
        open_files = limits.open_files,
        "HTTP connection limit"
    );
    let registry = Arc::new(Registry::default());
    let tracker = TaskTracker::new();
    // Cancelled when the drain period is over: every connection still open closes.
    let close_all = CancellationToken::new();
    let mut accept_failures = LogGate::default();
    let mut evictions = LogGate::default();
    let mut backoff = Duration::ZERO;
    'accept: loop {
        // Room for the next connection before it is accepted, so that the server never holds
        // more than its share of descriptors.
        loop {
            match registry.make_room(limits.max_connections) {
                Room::Free => break,
                Room::Evicted => {
                    if let Some(held_back) = evictions.pass() {
                        tracing::warn!(
                            max_connections = limits.max_connections,
                            open_files = limits.open_files,
                            held_back,
                            "HTTP connection limit reached; closing the connection that waited \
                             longest without a request"
                        );
                    }
                }
                Room::Busy => {}
            }
            tokio::select! {
                _ = registry.freed.notified() => {}
                _ = shutdown.cancelled() => break 'accept,
            }
        }
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = Duration::ZERO;
                    accepted
                }
                // The client gave up before it was accepted: nothing to wait for.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning, and
                    // say so once a minute rather than a thousand times.
                    if let Some(held_back) = accept_failures.pass() {
                        tracing::warn!(error = %e, held_back, "accept failed; backing off");
                    }
                    backoff = (backoff * 2).clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (conn, slot) = registry.open(&close_all);
        let tls = web.load().as_ref().and_then(|w| w.tls.clone());
        let (app, shutdown) = (app.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_connection(tcp, conn, app, peer, shutdown).await,
                Some(tls) => {
                    let handshake = tokio_rustls::TlsAcceptor::from(tls).accept(tcp);
                    let stream = tokio::select! {
                        done = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake) => match done {
                            Ok(Ok(stream)) => stream,
                            _ => return,
                        },
                        _ = conn.evict.cancelled() => return,
                        _ = shutdown.cancelled() => return,
                    };
                    serve_connection(stream, conn, app, peer, shutdown).await;
                }
            }
        });
        // Let the new connection read what it was sent before the next accept: a client that
        // sent its request at once (a scraper) then has it in flight, so a flood of new
        // connections cannot make it the longest-quiet one before it was even looked at.
        tokio::task::yield_now().await;
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::debug!("HTTP connections still open after the drain period; closing them");
        close_all.cancel();
        tracker.wait().await;
    }
    Ok(())
}

/// Errors of `accept` that concern one connection only (it went away while queued).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Serves HTTP/1.1 or HTTP/2 on one connection until it ends, a timeout of the module's list
/// runs out, it is evicted, or the server stops (then open requests finish first).
async fn serve_connection<S>(
    io: S,
    conn: Arc<Conn>,
    app: Router,
    peer: SocketAddr,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    conn.ready();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The request-head timeout is ours (it must not also be the idle timeout, as hyper's is).
    builder.http1().header_read_timeout(None);
    builder.http2().max_concurrent_streams(MAX_H2_STREAMS);
    let service = Tracked {
        app: TowerToHyperService::new(app),
        conn: conn.clone(),
        peer,
    };
    let io = TokioIo::new(Watched {
        inner: io,
        conn: conn.clone(),
    });
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    let mut draining = false;
    loop {
        let wake = conn
            .deadline()
            .map_or_else(|| Instant::now() + Duration::from_secs(3600), |(at, _)| at);
        tokio::select! {
            done = served.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            // Something moved a deadline: compute it again.
            _ = conn.changed.notified() => {}
            _ = tokio::time::sleep_until(wake) => {
                if let Some((at, why)) = conn.deadline()
                    && at <= Instant::now()
                {
                    tracing::debug!(%peer, reason = why, "closing HTTP connection");
                    return;
                }
            }
            _ = conn.evict.cancelled() => {
                tracing::debug!(%peer, "closing HTTP connection to make room for a new one");
                return;
            }
            _ = shutdown.cancelled(), if !draining => {
                served.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// The client's address, for the handlers (basic auth queues checks per client).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// The router as a hyper service that counts its requests in flight on the connection.
#[derive(Clone)]
struct Tracked {
    app: TowerToHyperService<Router>,
    conn: Arc<Conn>,
    peer: SocketAddr,
}

type Served = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Served;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Served {
        let in_flight = self
            .conn
            .begin(req.version() == axum::http::Version::HTTP_2);
        req.extensions_mut().insert(ClientAddr(self.peer));
        let response = self.app.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                axum::body::Body::new(TrackedBody {
                    body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// A response body that keeps its request counted in flight until the body is done.
struct TrackedBody {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Lets a repeated warning through at most once per [`LOG_EVERY`] and counts the rest, so that
/// a flood writes a line a minute, not one per event.
#[derive(Default)]
struct LogGate {
    last: Option<Instant>,
    held_back: u64,
}

impl LogGate {
    /// `Some(times held back since the last line)` when this one may be logged.
    fn pass(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

/// Refused and unchecked credentials, for a warning at most once per [`LOG_EVERY`].
static REFUSALS: Mutex<LogGate> = Mutex::new(LogGate {
    last: None,
    held_back: 0,
});

/// Basic auth and extra headers from the web config, for every endpoint.
async fn protect(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(web) = s.web.load_full() else {
        return next.run(req).await;
    };
    let arrived = Instant::now();
    let client = req
        .extensions()
        .get::<ClientAddr>()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
    let given = req.headers().get(header::AUTHORIZATION);
    let with_credentials = given.is_some();
    let access = web.check(given, client).await;
    let mut resp = match access {
        Access::Granted => next.run(req).await,
        Access::Refused | Access::Busy => {
            if with_credentials && let Some(held_back) = lock(&REFUSALS).pass() {
                tracing::warn!(
                    client = %client,
                    busy = access == Access::Busy,
                    held_back,
                    "HTTP request with wrong basic-auth credentials, or too many checks waiting"
                );
            }
            tokio::time::sleep_until(arrived + REFUSED_AUTH_DELAY).await;
            if access == Access::Busy {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1")],
                    "Too many password checks waiting; try again\n",
                )
                    .into_response()
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Basic realm=\"mailprobe\"")],
                    "Unauthorized\n",
                )
                    .into_response()
            }
        }
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

#[cfg(test)]
mod tests;
