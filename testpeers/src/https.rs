//! A local HTTPS server that plays webmail, an Autodiscover-style endpoint, a JMAP server, and
//! the faults: 503, 401, a wrong body, a redirect loop, a stalled body, an endless body.
//!
//! Routes:
//! - `GET /` → 302 to `/owa/`; `GET /owa/` → a login page ("Outlook", "Sign in").
//! - `POST /autodiscover/autodiscover.xml` → XML naming the server, when the request names an
//!   `<EMailAddress>`; 400 otherwise.
//! - `GET /.well-known/jmap` → 301 to `/jmap/session`; `GET /jmap/session` → the session;
//!   `POST /jmap/api/` → `Mailbox/get` (both need `Authorization: Bearer <token>`).
//! - `GET /secure` → 200 with the right Basic credentials, 401 otherwise.
//! - `GET /status/N` → status N; `/loop` → 302 to itself; `/wrongbody` → 200 with a body that
//!   names nothing expected; `/stall` → 200, one chunk, then nothing; `/huge` → an endless body;
//!   `/elsewhere` → 302 to the same path on 127.0.0.1 (another origin than `localhost`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::pki::ServerCert;

/// How the JMAP endpoints behave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Jmap {
    /// A proper session and an Inbox.
    #[default]
    Good,
    /// A session without the mail capability.
    NoMailCapability,
    /// Mailboxes, but none with role `inbox`.
    NoInbox,
}

/// Decides whether a bearer token is valid (e.g. one the test's token server issued).
#[derive(Clone)]
pub struct BearerCheck(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for BearerCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerCheck")
    }
}

/// How to start the server.
#[derive(Clone, Debug)]
pub struct Options {
    /// The certificate it presents.
    pub cert: ServerCert,
    /// ALPN protocols offered (default `h2`, `http/1.1`).
    pub alpn: Vec<Vec<u8>>,
    /// JMAP behaviour.
    pub jmap: Jmap,
    /// The bearer token JMAP requires.
    pub token: String,
    /// The Basic credentials `/secure` requires.
    pub basic: (String, String),
    /// When set, JMAP accepts the bearer tokens this accepts instead of `token`.
    pub bearer_check: Option<BearerCheck>,
}

impl Options {
    /// Defaults around `cert`.
    pub fn new(cert: ServerCert) -> Options {
        Options {
            cert,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            jmap: Jmap::Good,
            token: "jmap-t0ken".into(),
            basic: ("webuser".into(), "web-Secret".into()),
            bearer_check: None,
        }
    }
}

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// HTTP version.
    pub version: String,
    /// The Authorization header, if any.
    pub authorization: Option<String>,
    /// The request body.
    pub body: Vec<u8>,
}

/// A running server; stops accepting when dropped.
pub struct HttpsServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests seen, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Body bytes written by `/huge`.
    pub huge_bytes: Arc<AtomicU64>,
    /// `/huge` bodies the client hung up on (see [`HttpsServer::huge_hung_up`]).
    huge_cut: Arc<watch::Sender<usize>>,
    task: JoinHandle<()>,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).boxed()
}

struct State {
    opts: Options,
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    huge_bytes: Arc<AtomicU64>,
    huge_cut: Arc<watch::Sender<usize>>,
}

impl HttpsServer {
    /// Starts the server on 127.0.0.1:0.
    pub async fn start(opts: Options) -> HttpsServer {
        Self::start_on(opts, 0).await
    }

    /// Starts the server on 127.0.0.1:`port` (0 for any).
    pub async fn start_on(opts: Options, port: u16) -> HttpsServer {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind https");
        let addr = listener.local_addr().expect("addr");
        let alpn: Vec<&[u8]> = opts.alpn.iter().map(Vec::as_slice).collect();
        let tls: Arc<ServerConfig> = opts.cert.server_config(&alpn);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let huge_bytes = Arc::new(AtomicU64::new(0));
        let huge_cut = Arc::new(watch::Sender::new(0));
        let state = Arc::new(State {
            opts,
            base: format!("https://localhost:{}", addr.port()),
            seen: seen.clone(),
            huge_bytes: huge_bytes.clone(),
            huge_cut: huge_cut.clone(),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                let state = state.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(route(&state, req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HttpsServer {
            addr,
            seen,
            huge_bytes,
            huge_cut,
            task,
        }
    }

    /// `https://localhost:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// Waits until a client hung up on a `/huge` body: hyper dropped the body before it was all
    /// sent, which it does only when the connection (or the HTTP/2 stream) is gone. Then
    /// [`HttpsServer::huge_bytes`] is final. Panics after 10 s.
    pub async fn huge_hung_up(&self) {
        let mut cut = self.huge_cut.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(10), cut.wait_for(|n| *n >= 1));
        assert!(
            matches!(waited.await, Ok(Ok(_))),
            "the client did not hang up on /huge within 10 s"
        );
    }
}

/// Counts a `/huge` body as cut when it is dropped before the end.
struct Cut {
    finished: bool,
    cut: Arc<watch::Sender<usize>>,
}

impl Cut {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        if !self.finished {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

fn redirect(status: StatusCode, to: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("location", to)
        .body(full(format!("moved to {to}")))
        .expect("response")
}

fn status(code: StatusCode, text: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(full(text.to_string()))
        .expect("response")
}

fn json(v: serde_json::Value) -> Response<Body> {
    Response::builder()
        .header("content-type", "application/json")
        .body(full(v.to_string()))
        .expect("response")
}

async fn route(state: &State, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let version = format!("{:?}", req.version());
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Request bodies are small here; bound them anyway.
    let body = http_body_util::Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    state.seen.lock().expect("seen lock").push(Seen {
        method: method.clone(),
        path: path.clone(),
        version,
        authorization: authorization.clone(),
        body: body.clone(),
    });
    let o = &state.opts;
    let bearer_ok = match (
        &o.bearer_check,
        authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer ")),
    ) {
        (Some(check), Some(token)) => (check.0)(token),
        (None, Some(token)) => token == o.token,
        (_, None) => false,
    };
    let p = path.split('?').next().unwrap_or("");
    match (method.as_str(), p) {
        ("GET", "/") => redirect(StatusCode::FOUND, "/owa/"),
        ("GET", "/owa/") => Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(full(
                "<!doctype html><html><head><title>Outlook</title></head><body>\
                 <form method=post action=/owa/auth.owa><input name=username>\
                 <input type=password name=password><button>Sign in</button></form></body></html>",
            ))
            .expect("response"),
        ("POST", "/autodiscover/autodiscover.xml") => {
            let text = String::from_utf8_lossy(&body);
            if text.contains("<EMailAddress>") {
                Response::builder()
                    .header("content-type", "text/xml; charset=utf-8")
                    .body(full(
                        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover><Response><Account>\
                         <Protocol><Type>EXCH</Type><Server>mail.example.test</Server></Protocol>\
                         </Account></Response></Autodiscover>",
                    ))
                    .expect("response")
            } else {
                status(StatusCode::BAD_REQUEST, "no EMailAddress in the request")
            }
        }
        ("GET", "/.well-known/jmap") => redirect(StatusCode::MOVED_PERMANENTLY, "/jmap/session"),
        ("GET", "/jmap/session") if !bearer_ok => status(StatusCode::UNAUTHORIZED, "bad token"),
        ("GET", "/jmap/session") => {
            let mut caps =
                serde_json::json!({"urn:ietf:params:jmap:core": {"maxSizeRequest": 10000000}});
            if o.jmap != Jmap::NoMailCapability {
                caps["urn:ietf:params:jmap:mail"] = serde_json::json!({});
            }
            json(serde_json::json!({
                "capabilities": caps,
                "accounts": {"A13": {"name": "probe@example.test", "isPersonal": true}},
                "primaryAccounts": {"urn:ietf:params:jmap:mail": "A13"},
                "username": "probe@example.test",
                "apiUrl": format!("{}/jmap/api/", state.base),
                "state": "s1",
            }))
        }
        ("POST", "/jmap/api/") if !bearer_ok => status(StatusCode::UNAUTHORIZED, "bad token"),
        ("POST", "/jmap/api/") => {
            let call: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let account = call["methodCalls"][0][1]["accountId"].clone();
            let inbox_role = if o.jmap == Jmap::NoInbox {
                "archive"
            } else {
                "inbox"
            };
            json(serde_json::json!({
                "methodResponses": [["Mailbox/get", {
                    "accountId": account,
                    "state": "m1",
                    "list": [
                        {"id": "M1", "name": "Inbox", "role": inbox_role},
                        {"id": "M2", "name": "Sent", "role": "sent"},
                    ],
                    "notFound": [],
                }, call["methodCalls"][0][2].clone()]],
                "sessionState": "s1",
            }))
        }
        ("GET", "/secure") => {
            use base64::Engine as _;
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", o.basic.0, o.basic.1))
            );
            if authorization.as_deref() == Some(want.as_str()) {
                status(StatusCode::OK, "welcome")
            } else {
                Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header("www-authenticate", "Basic realm=\"mail\"")
                    .body(full("who are you?"))
                    .expect("response")
            }
        }
        ("GET", "/loop") => redirect(StatusCode::FOUND, "/loop"),
        ("GET", "/elsewhere") => redirect(
            StatusCode::FOUND,
            &format!(
                "https://127.0.0.1:{}/secure",
                state.base.rsplit(':').next().unwrap_or("")
            ),
        ),
        ("GET", "/wrongbody") => status(StatusCode::OK, "maintenance page: nothing here"),
        ("GET", "/stall") => {
            let s = futures::stream::once(async {
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"<html>")))
            })
            .chain(futures::stream::pending());
            Response::builder()
                .header("content-type", "text/html")
                .body(BodyExt::boxed(StreamBody::new(s)))
                .expect("response")
        }
        ("GET", "/huge") => {
            let counter = state.huge_bytes.clone();
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let cut = Cut {
                finished: false,
                cut: state.huge_cut.clone(),
            };
            let s = futures::stream::unfold((0u64, cut), move |(sent, mut cut)| {
                let chunk = chunk.clone();
                let counter = counter.clone();
                async move {
                    if sent > (1 << 30) {
                        cut.finish();
                        return None;
                    }
                    counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    Some((
                        Ok::<_, Infallible>(Frame::data(chunk.clone())),
                        (sent + chunk.len() as u64, cut),
                    ))
                }
            });
            Response::builder()
                .body(BodyExt::boxed(StreamBody::new(s)))
                .expect("response")
        }
        ("GET", p) if p.starts_with("/status/") => {
            let code = p["/status/".len()..].parse().unwrap_or(500);
            status(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "as asked",
            )
        }
        _ => status(StatusCode::NOT_FOUND, "no such page"),
    }
}
