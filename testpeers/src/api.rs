//! The skeleton the mail API peers ([`crate::graph`], [`crate::gmail`]) share: an HTTPS server
//! on 127.0.0.1 (HTTP/2 and HTTP/1.1 by ALPN, the test CA's `localhost` certificate) handing
//! each request, read whole, to a handler, and remembering what it was asked.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::pki::ServerCert;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Asked {
    /// When it arrived.
    pub at: Instant,
    /// Method.
    pub method: String,
    /// Path (percent-decoded).
    pub path: String,
    /// Query pairs (decoded).
    pub query: Vec<(String, String)>,
    /// `Authorization`, if sent.
    pub authorization: Option<String>,
    /// `client-request-id`, if sent.
    pub client_request_id: Option<String>,
    /// The body.
    pub body: Bytes,
}

/// What a handler answers.
pub type Handler = Arc<dyn Fn(&Asked) -> Response<Full<Bytes>> + Send + Sync>;

/// A running API server; stops when dropped.
pub struct ApiServer {
    /// Where it listens.
    pub addr: SocketAddr,
    asked: Arc<Mutex<Vec<Asked>>>,
    task: JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A JSON answer.
pub fn json(status: u16, v: &serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("response")
}

impl ApiServer {
    /// Starts serving `handler` with `cert`.
    pub async fn start(cert: &ServerCert, handler: Handler) -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
        let addr = listener.local_addr().expect("addr");
        let tls = cert.server_config(&[b"h2", b"http/1.1"]);
        let asked: Arc<Mutex<Vec<Asked>>> = Arc::default();
        let log = asked.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                let (handler, log) = (handler.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (handler, log) = (handler.clone(), log.clone());
                        async move {
                            let at = Instant::now();
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let header = |n: &str| {
                                parts
                                    .headers
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string)
                            };
                            let path = percent_decode(parts.uri.path());
                            let asked = Asked {
                                at,
                                method: parts.method.to_string(),
                                path,
                                query: url::form_urlencoded::parse(
                                    parts.uri.query().unwrap_or("").as_bytes(),
                                )
                                .into_owned()
                                .collect(),
                                authorization: header("authorization"),
                                client_request_id: header("client-request-id"),
                                body,
                            };
                            let resp = handler(&asked);
                            log.lock().expect("asked lock").push(asked);
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        ApiServer { addr, asked, task }
    }

    /// `https://localhost:<port>` (the certificate's name).
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Requests answered so far, in order.
    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().expect("asked lock").clone()
    }
}

/// `%XX` sequences decoded (a path as the client meant it).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
