//! Mail APIs over HTTPS (Microsoft Graph, the Gmail API): the timed JSON client both probes
//! share, and the parts of an answer both read (`Retry-After`, bounded bodies).
//!
//! Like the HTTPS probe, hyper runs over the shared timed TLS stream: `dns`, `connect` and
//! `tls` are timed apart, then `request` (until the response headers: time to first byte) and
//! `body` (until the body is read, at most `max_body` bytes). HTTP/2 or HTTP/1.1 by ALPN. One
//! connection per probe, to the configured base URL's origin only (the bearer token never goes
//! anywhere else); it is opened again if the server closed it between two calls (a round trip
//! polling for minutes).

pub mod keys;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use url::Url;

use super::bounded::{Bounded, Limits};
use super::net::Stream;
use super::{HttpFacts, Phase, PhaseError, PhaseRecorder, ProbeContext, ProbeError};
use crate::config::Endpoint;

/// Protocols offered by ALPN, preferred first.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
/// The most bytes of response headers accepted.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The longest `Retry-After` honoured: a server asking for more still gets its target probed
/// within the hour (a target nobody probes for a day is a blind spot, not politeness).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
}

/// One open connection and the task driving it (stopped on drop).
struct Conn {
    h2: bool,
    sender: Sender,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// An answer, read whole (bounded).
#[derive(Debug)]
pub struct ApiResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl ApiResponse {
    /// A header's value as text, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// How long the server asked us to wait (`Retry-After`, RFC 9110 10.2.3: seconds or an
    /// HTTP date), capped at [`MAX_RETRY_AFTER`]; `None` when absent or unreadable.
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(self.header("retry-after")?)
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date.
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            let at = std::time::UNIX_EPOCH + Duration::from_secs(at.timestamp().max(0) as u64);
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A client of one API origin, for one probe.
pub struct Api<'a> {
    endpoint: &'a Endpoint,
    auth: HeaderValue,
    max_body: usize,
    conn: Option<Conn>,
}

/// One call: what to ask, and the phases its two halves are timed as.
pub struct Call<'a> {
    /// The method.
    pub method: Method,
    /// The URL (on the endpoint's origin).
    pub url: &'a Url,
    /// A JSON body to send, if any.
    pub json: Option<serde_json::Value>,
    /// Headers besides `Authorization`, `Accept` and `User-Agent`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The phase until the response headers.
    pub request: Phase,
    /// The phase reading the body.
    pub body: Phase,
}

impl<'a> Api<'a> {
    /// A client of `endpoint` sending `Authorization: Bearer <token>`.
    pub fn new(
        endpoint: &'a Endpoint,
        token: &secrecy::SecretString,
        max_body: usize,
    ) -> Result<Self, PhaseError> {
        let mut api = Api {
            endpoint,
            auth: HeaderValue::from_static(""),
            max_body,
            conn: None,
        };
        api.set_token(token).map_err(|error| PhaseError {
            phase: Phase::Token,
            error,
        })?;
        Ok(api)
    }

    /// Sends `token` from now on (a long wait outlives the first token; the cache renews it).
    pub fn set_token(&mut self, token: &secrecy::SecretString) -> Result<(), ProbeError> {
        use secrecy::ExposeSecret;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| {
                ProbeError::Protocol("the access token is not a valid header value".into())
            })?;
        auth.set_sensitive(true);
        self.auth = auth;
        Ok(())
    }

    /// Opens the connection if there is none or the server closed it: `dns`, `connect`, `tls`.
    async fn connect(
        &mut self,
        rec: &mut PhaseRecorder,
        ctx: &ProbeContext,
    ) -> Result<(), PhaseError> {
        if self.conn.as_ref().is_some_and(|c| !c.sender.is_closed()) {
            return Ok(());
        }
        self.conn = None;
        let ep = self.endpoint;
        let tcp = super::resolve_and_connect(rec, ctx, ep).await?;
        let stream = super::tls_handshake(rec, ep, tcp, ALPN).await?;
        let h2 = match &stream {
            Stream::Tls(t) => t.get_ref().1.alpn_protocol() == Some(b"h2"),
            Stream::Plain(_) => false,
        };
        // HTTP/2 frames are binary: the session total is bounded here, lines are not.
        let limits = Limits {
            max_line: usize::MAX,
            max_total: self.max_body as u64 * 64 + 1024 * 1024,
        };
        let io = TokioIo::new(Bounded::new(stream, limits));
        let handshake = async {
            if h2 {
                let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .max_header_list_size(MAX_HEADER_BYTES as u32)
                    .handshake(io)
                    .await?;
                let driver = tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok::<_, hyper::Error>((Sender::H2(sender), driver))
            } else {
                let (sender, conn) = hyper::client::conn::http1::Builder::new()
                    .max_buf_size(MAX_HEADER_BYTES)
                    .handshake(io)
                    .await?;
                let driver = tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok((Sender::H1(sender), driver))
            }
        };
        let (sender, driver) = handshake.await.map_err(|e| PhaseError {
            phase: Phase::Tls,
            error: ProbeError::Http(e),
        })?;
        self.conn = Some(Conn { h2, sender, driver });
        Ok(())
    }

    /// Sends `call` and reads its answer whole, whatever its status (the caller judges it);
    /// records the status in the outcome's HTTP facts.
    pub async fn call(
        &mut self,
        rec: &mut PhaseRecorder,
        ctx: &ProbeContext,
        call: Call<'_>,
    ) -> Result<ApiResponse, PhaseError> {
        self.connect(rec, ctx).await?;
        let conn = self.conn.as_mut().expect("connected above");
        let req = build(conn.h2, &self.auth, &call).map_err(|error| PhaseError {
            phase: call.request,
            error,
        })?;
        let sender = &mut conn.sender;
        let resp = rec
            .phase(call.request, async {
                match sender {
                    Sender::H1(s) => {
                        s.ready().await.map_err(ProbeError::Http)?;
                        s.send_request(req).await.map_err(ProbeError::Http)
                    }
                    Sender::H2(s) => {
                        s.ready().await.map_err(ProbeError::Http)?;
                        s.send_request(req).await.map_err(ProbeError::Http)
                    }
                }
            })
            .await?;
        let (parts, incoming) = resp.into_parts();
        rec.set_http(HttpFacts {
            status: parts.status.as_u16(),
            version: if conn.h2 { "HTTP/2" } else { "HTTP/1.1" }.into(),
            url: call.url.to_string(),
            redirects: 0,
        });
        let body = rec
            .phase(call.body, read_body(incoming, self.max_body))
            .await?;
        Ok(ApiResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// The request for `call`; `Authorization` goes only to the endpoint this client was made for.
fn build(
    h2: bool,
    auth: &HeaderValue,
    call: &Call<'_>,
) -> Result<Request<Full<Bytes>>, ProbeError> {
    let url = call.url;
    let target = if h2 {
        url.as_str().to_string()
    } else {
        let mut p = url.path().to_string();
        if let Some(q) = url.query() {
            p.push('?');
            p.push_str(q);
        }
        p
    };
    let mut b = Request::builder().method(call.method.clone()).uri(target);
    if !h2 {
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        b = b.header(header::HOST, host);
    }
    b = b
        .header(
            header::USER_AGENT,
            concat!("mailprobe/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::ACCEPT, "application/json")
        .header(header::AUTHORIZATION, auth.clone());
    for (n, v) in &call.headers {
        b = b.header(n, v);
    }
    let body = match &call.json {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    b.body(Full::new(body))
        .map_err(|e| ProbeError::Internal(format!("cannot build the request: {e}")))
}

/// Reads at most `max` body bytes; more is a protocol error (a broken or hostile server).
async fn read_body(mut body: Incoming, max: usize) -> Result<Bytes, ProbeError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ProbeError::Http)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                return Err(ProbeError::Protocol(format!(
                    "response body larger than max_body ({max} bytes)"
                )));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        assert_eq!(retry_after("30"), Some(Duration::from_secs(30)));
        assert_eq!(retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(retry_after("999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past is no wait"
        );
        assert_eq!(retry_after("soon"), None);
        assert_eq!(retry_after("-5"), None);
    }
}
