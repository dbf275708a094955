//! The HTTPS probe: webmail pages, Autodiscover/EWS-style POST endpoints, and JMAP.
//!
//! Phases: `dns`, `connect`, `tls`, then `request` (until the response headers: time to first
//! byte) and `body` (until the body is read); a JMAP check has `session` and `api` instead. A
//! redirect to another host repeats `dns`, `connect` and `tls` for it.
//!
//! hyper (reqwest's own engine) runs over the shared timed TLS stream rather than reqwest
//! itself: reqwest cannot split connect from TLS or report time to first byte. HTTP/2 or
//! HTTP/1.1 is chosen by ALPN. Each run opens fresh connections (like a user's first visit);
//! within a run a connection is reused for the same host. Headers are bounded by hyper's limits,
//! the body by `max_body`, and the connection as a whole by [`Bounded`].

pub mod spec;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use secrecy::ExposeSecret;
use url::Url;

use super::bounded::{Bounded, Limits};
use super::net::Stream;
use super::{HttpFacts, Phase, PhaseError, PhaseRecorder, ProbeContext, ProbeError};
use crate::config::{Endpoint, TlsMode};
pub use spec::{BodyMatch, HttpAuth, HttpCheck, HttpMethod, HttpsSpec};

/// Protocols offered by ALPN, preferred first.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
/// The most bytes of response headers accepted.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The JMAP mail capability a session must name.
pub const JMAP_MAIL: &str = "urn:ietf:params:jmap:mail";
const JMAP_CORE: &str = "urn:ietf:params:jmap:core";

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

type Io = TokioIo<Bounded<Stream>>;

/// One connection to one origin. The HTTP handshake happens with the first request (and is
/// timed with it); the driver task stops when the connection is dropped.
struct Conn {
    origin: (String, String, u16),
    h2: bool,
    io: Option<Io>,
    sender: Option<Sender>,
    driver: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(d) = &self.driver {
            d.abort();
        }
    }
}

impl Conn {
    async fn handshake(&mut self) -> Result<(), hyper::Error> {
        let Some(io) = self.io.take() else {
            return Ok(());
        };
        let (sender, driver) = if self.h2 {
            let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .max_header_list_size(MAX_HEADER_BYTES as u32)
                .handshake(io)
                .await?;
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            (Sender::H2(sender), driver)
        } else {
            let (sender, conn) = hyper::client::conn::http1::Builder::new()
                .max_buf_size(MAX_HEADER_BYTES)
                .handshake(io)
                .await?;
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            (Sender::H1(sender), driver)
        };
        self.sender = Some(sender);
        self.driver = Some(driver);
        Ok(())
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, ProbeError> {
        self.handshake().await.map_err(ProbeError::Http)?;
        match self.sender.as_mut() {
            Some(Sender::H1(s)) => {
                s.ready().await.map_err(ProbeError::Http)?;
                s.send_request(req).await.map_err(ProbeError::Http)
            }
            Some(Sender::H2(s)) => {
                s.ready().await.map_err(ProbeError::Http)?;
                s.send_request(req).await.map_err(ProbeError::Http)
            }
            None => Err(ProbeError::Closed),
        }
    }
}

/// `(scheme, host, port)` of a URL.
fn origin(url: &Url) -> (String, String, u16) {
    (
        url.scheme().to_string(),
        url.host_str().unwrap_or_default().to_string(),
        url.port_or_known_default().unwrap_or(443),
    )
}

/// Runs one HTTPS probe against `spec`, recording phases in `rec`.
pub async fn probe(
    spec: &HttpsSpec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
) -> Result<(), PhaseError> {
    let auth = authorization(spec, ctx, rec).await?;
    match spec.check {
        HttpCheck::Page => page(spec, ctx, rec, auth.as_ref()).await,
        HttpCheck::Jmap => jmap(spec, ctx, rec, auth.as_ref()).await,
    }
}

/// The `Authorization` value for this probe, if any (an OAuth2 token is got first, as the
/// `token` phase).
async fn authorization(
    spec: &HttpsSpec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
) -> Result<Option<HeaderValue>, PhaseError> {
    use base64::Engine;
    let value = match &spec.auth {
        None => return Ok(None),
        Some(HttpAuth::Basic(c)) => {
            let password = c.password().map(|p| p.expose_secret()).unwrap_or_default();
            let raw = format!("{}:{password}", c.username);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        }
        Some(HttpAuth::Bearer(t)) => format!("Bearer {}", t.expose_secret()),
        Some(HttpAuth::OAuth2(o)) => {
            let token = super::oauth2_token(rec, ctx, o).await?;
            format!("Bearer {}", token.expose_secret())
        }
    };
    let mut v = HeaderValue::from_str(&value).map_err(|_| PhaseError {
        phase: Phase::Request,
        error: ProbeError::Protocol("credentials are not a valid header value".into()),
    })?;
    v.set_sensitive(true);
    Ok(Some(v))
}

/// Connects to the origin of `url`: `dns`, `connect`, `tls` (with ALPN).
async fn connect(
    rec: &mut PhaseRecorder,
    ctx: &ProbeContext,
    spec: &HttpsSpec,
    url: &Url,
) -> Result<Conn, PhaseError> {
    let fail = |phase, msg: String| PhaseError {
        phase,
        error: ProbeError::Protocol(msg),
    };
    let (scheme, host, port) = origin(url);
    let tls = match scheme.as_str() {
        "https" => TlsMode::Implicit,
        "http" if spec.endpoint.tls == TlsMode::None => TlsMode::None,
        other => {
            return Err(fail(
                Phase::Request,
                format!("refusing to follow a redirect to {other}:// ({url})"),
            ));
        }
    };
    let endpoint = if origin(&spec.url) == origin(url) {
        spec.endpoint.clone()
    } else {
        let tls_client = match (&spec.endpoint.tls_client, tls) {
            (Some(c), TlsMode::Implicit) => Some(std::sync::Arc::new(
                c.for_name(&host).map_err(|m| fail(Phase::Tls, m))?,
            )),
            (None, TlsMode::Implicit) => {
                return Err(fail(Phase::Tls, format!("no TLS settings to reach {url}")));
            }
            _ => None,
        };
        Endpoint {
            host: host.clone(),
            port,
            tls,
            allow_plaintext: spec.endpoint.allow_plaintext,
            tls_client,
            net: spec.endpoint.net.clone(),
        }
    };
    let tcp = super::resolve_and_connect(rec, ctx, &endpoint).await?;
    let stream = match tls {
        TlsMode::Implicit => super::tls_handshake(rec, &endpoint, tcp, ALPN).await?,
        _ => Stream::Plain(tcp),
    };
    let h2 = match &stream {
        Stream::Tls(t) => t.get_ref().1.alpn_protocol() == Some(b"h2"),
        Stream::Plain(_) => false,
    };
    // HTTP/2 frames are binary: only the session total is bounded here, lines are not.
    let limits = Limits {
        max_line: usize::MAX,
        max_total: spec.max_body as u64 + 1024 * 1024,
    };
    Ok(Conn {
        origin: origin(url),
        h2,
        io: Some(TokioIo::new(Bounded::new(stream, limits))),
        sender: None,
        driver: None,
    })
}

/// What to ask for.
struct Req<'a> {
    method: &'a str,
    url: &'a Url,
    body: Option<Bytes>,
    /// Headers besides the configured ones.
    extra: &'a [(HeaderName, HeaderValue)],
    /// `Authorization`, sent only to the configured URL's origin.
    auth: Option<&'a HeaderValue>,
}

/// Builds a request on `conn`. Credentials go only to the configured URL's origin, never to
/// another host a redirect points at.
fn build(spec: &HttpsSpec, conn: &Conn, req: Req<'_>) -> Result<Request<Full<Bytes>>, ProbeError> {
    let Req {
        method,
        url,
        body,
        extra,
        auth,
    } = req;
    let target = if conn.h2 {
        url.as_str().to_string()
    } else {
        let mut p = url.path().to_string();
        if let Some(q) = url.query() {
            p.push('?');
            p.push_str(q);
        }
        p
    };
    let mut b = Request::builder().method(method).uri(target);
    if !conn.h2 {
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
        .header(header::ACCEPT, "*/*");
    for (n, v) in spec.headers.iter().chain(extra) {
        b = b.header(n, v);
    }
    if origin(url) == origin(&spec.url)
        && let Some(auth) = auth
    {
        b = b.header(header::AUTHORIZATION, auth.clone());
    }
    b.body(Full::new(body.unwrap_or_default()))
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

fn version_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

fn accepted(spec: &HttpsSpec, status: StatusCode) -> bool {
    if spec.expect_status.is_empty() {
        status.is_success()
    } else {
        spec.expect_status.contains(&status.as_u16())
    }
}

/// The connection for `url`: the current one if it serves the same origin, else a new one.
async fn connection<'c>(
    rec: &mut PhaseRecorder,
    ctx: &ProbeContext,
    spec: &HttpsSpec,
    conn: &'c mut Option<Conn>,
    url: &Url,
) -> Result<&'c mut Conn, PhaseError> {
    if conn.as_ref().is_none_or(|c| c.origin != origin(url)) {
        *conn = None;
        *conn = Some(connect(rec, ctx, spec, url).await?);
    }
    Ok(conn.as_mut().expect("connected above"))
}

/// One request; the response headers are awaited within `phase`.
async fn send(
    rec: &mut PhaseRecorder,
    spec: &HttpsSpec,
    c: &mut Conn,
    req: Req<'_>,
    phase: Phase,
) -> Result<(http::response::Parts, Incoming), PhaseError> {
    let req = build(spec, c, req).map_err(|error| PhaseError { phase, error })?;
    let resp = rec.phase(phase, c.send(req)).await?;
    Ok(resp.into_parts())
}

/// One JMAP request and its whole body, as the single phase `phase`.
async fn call(
    rec: &mut PhaseRecorder,
    ctx: &ProbeContext,
    spec: &HttpsSpec,
    conn: &mut Option<Conn>,
    req: Req<'_>,
    phase: Phase,
) -> Result<(http::response::Parts, Bytes), PhaseError> {
    let c = connection(rec, ctx, spec, conn, req.url).await?;
    let req = build(spec, c, req).map_err(|error| PhaseError { phase, error })?;
    rec.phase(phase, async {
        let (parts, incoming) = c.send(req).await?.into_parts();
        let data = read_body(incoming, spec.max_body).await?;
        Ok::<_, ProbeError>((parts, data))
    })
    .await
}

fn redirect_target(parts: &http::response::Parts, url: &Url) -> Option<Result<Url, ProbeError>> {
    if !parts.status.is_redirection() || parts.status == StatusCode::NOT_MODIFIED {
        return None;
    }
    let location = parts.headers.get(header::LOCATION)?;
    Some(
        location
            .to_str()
            .ok()
            .and_then(|l| url.join(l).ok())
            .ok_or_else(|| {
                ProbeError::Protocol(format!("redirect with an unusable Location from {url}"))
            }),
    )
}

/// A page (or API endpoint): request, follow redirects, check status and body.
async fn page(
    spec: &HttpsSpec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
    auth: Option<&HeaderValue>,
) -> Result<(), PhaseError> {
    let mut url = spec.url.clone();
    let mut method = spec.method;
    let mut body = spec.body.clone();
    let mut conn = None;
    let mut redirects = 0u32;
    loop {
        let c = connection(rec, ctx, spec, &mut conn, &url).await?;
        let req = Req {
            method: method.as_str(),
            url: &url,
            body: body.clone(),
            extra: &[],
            auth,
        };
        let (parts, incoming) = send(rec, spec, c, req, Phase::Request).await?;
        rec.set_http(HttpFacts {
            status: parts.status.as_u16(),
            version: version_name(parts.version).into(),
            url: url.to_string(),
            redirects,
        });
        let status = parts.status;
        let follow = spec.max_redirects > 0 && !accepted_explicitly(spec, status);
        if follow && let Some(next) = redirect_target(&parts, &url) {
            let next = next.map_err(|error| PhaseError {
                phase: Phase::Request,
                error,
            })?;
            // Drain the (small) redirect body so the connection can carry the next request.
            rec.phase(Phase::Body, read_body(incoming, spec.max_body))
                .await?;
            if redirects >= spec.max_redirects {
                return Err(PhaseError {
                    phase: Phase::Request,
                    error: ProbeError::HttpStatus {
                        status: status.as_u16(),
                        url: url.to_string(),
                        detail: format!(
                            "more than {} redirects (a redirect loop?), next {next}",
                            spec.max_redirects
                        ),
                    },
                });
            }
            redirects += 1;
            if status == StatusCode::SEE_OTHER
                || (method == HttpMethod::Post
                    && matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND))
            {
                method = HttpMethod::Get;
                body = None;
            }
            url = next;
            continue;
        }
        if !accepted(spec, status) {
            return Err(PhaseError {
                phase: Phase::Request,
                error: ProbeError::HttpStatus {
                    status: status.as_u16(),
                    url: url.to_string(),
                    detail: String::new(),
                },
            });
        }
        let data = if method == HttpMethod::Head {
            Bytes::new()
        } else {
            rec.phase(Phase::Body, read_body(incoming, spec.max_body))
                .await?
        };
        if let Some(m) = &spec.body_match {
            let text = String::from_utf8_lossy(&data);
            let (ok, what) = match m {
                BodyMatch::Contains(s) => (text.contains(s.as_str()), format!("no {s:?}")),
                BodyMatch::Regex(r) => (r.is_match(&text), format!("no match for /{r}/")),
            };
            if !ok {
                return Err(PhaseError {
                    phase: Phase::Body,
                    error: ProbeError::ContentMismatch(format!(
                        "{what} in {} bytes from {url}",
                        data.len()
                    )),
                });
            }
        }
        return Ok(());
    }
}

/// Whether `status` is listed in `expect_status` (then a 3xx is the answer, not a redirect).
fn accepted_explicitly(spec: &HttpsSpec, status: StatusCode) -> bool {
    spec.expect_status.contains(&status.as_u16())
}

/// JMAP: the session names the mail capability; `Mailbox/get` returns an Inbox.
async fn jmap(
    spec: &HttpsSpec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
    auth: Option<&HeaderValue>,
) -> Result<(), PhaseError> {
    let json_accept = [(header::ACCEPT, HeaderValue::from_static("application/json"))];
    let mut url = spec.url.clone();
    let mut conn = None;
    let mut redirects = 0u32;
    let session = loop {
        let req = Req {
            method: "GET",
            url: &url,
            body: None,
            extra: &json_accept,
            auth,
        };
        let (parts, data) = call(rec, ctx, spec, &mut conn, req, Phase::Session).await?;
        rec.set_http(HttpFacts {
            status: parts.status.as_u16(),
            version: version_name(parts.version).into(),
            url: url.to_string(),
            redirects,
        });
        if let Some(next) = redirect_target(&parts, &url) {
            let next = next.map_err(|error| PhaseError {
                phase: Phase::Session,
                error,
            })?;
            if redirects >= spec.max_redirects.max(1) {
                return Err(PhaseError {
                    phase: Phase::Session,
                    error: ProbeError::HttpStatus {
                        status: parts.status.as_u16(),
                        url: url.to_string(),
                        detail: "too many redirects for the JMAP session".into(),
                    },
                });
            }
            redirects += 1;
            url = next;
            continue;
        }
        let session = json_ok(&parts, &data, &url, "session").map_err(|error| PhaseError {
            phase: Phase::Session,
            error,
        })?;
        break session;
    };
    let (account, api_url) = session_facts(&session, &url).map_err(|error| PhaseError {
        phase: Phase::Session,
        error,
    })?;

    let request = serde_json::json!({
        "using": [JMAP_CORE, JMAP_MAIL],
        "methodCalls": [["Mailbox/get", {"accountId": account, "properties": ["name", "role"]}, "m"]],
    });
    let json_body = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (header::ACCEPT, HeaderValue::from_static("application/json")),
    ];
    let req = Req {
        method: "POST",
        url: &api_url,
        body: Some(Bytes::from(request.to_string())),
        extra: &json_body,
        auth,
    };
    let (parts, data) = call(rec, ctx, spec, &mut conn, req, Phase::Api).await?;
    rec.set_http(HttpFacts {
        status: parts.status.as_u16(),
        version: version_name(parts.version).into(),
        url: api_url.to_string(),
        redirects,
    });
    let reply = json_ok(&parts, &data, &api_url, "API").map_err(|error| PhaseError {
        phase: Phase::Api,
        error,
    })?;
    check_mailboxes(&reply).map_err(|error| PhaseError {
        phase: Phase::Api,
        error,
    })
}

/// A 200 with a JSON body, or the right error.
fn json_ok(
    parts: &http::response::Parts,
    data: &[u8],
    url: &Url,
    what: &str,
) -> Result<serde_json::Value, ProbeError> {
    if parts.status != StatusCode::OK {
        return Err(ProbeError::HttpStatus {
            status: parts.status.as_u16(),
            url: url.to_string(),
            detail: format!("JMAP {what}"),
        });
    }
    serde_json::from_slice(data)
        .map_err(|e| ProbeError::Protocol(format!("JMAP {what} from {url} is not JSON: {e}")))
}

/// The mail account id and the API URL from a JMAP session object.
fn session_facts(session: &serde_json::Value, url: &Url) -> Result<(String, Url), ProbeError> {
    let caps = session
        .get("capabilities")
        .and_then(|c| c.as_object())
        .ok_or_else(|| ProbeError::Protocol("JMAP session has no capabilities".into()))?;
    if !caps.contains_key(JMAP_MAIL) {
        return Err(ProbeError::Protocol(format!(
            "JMAP session does not name the mail capability {JMAP_MAIL}"
        )));
    }
    let account = session
        .get("primaryAccounts")
        .and_then(|p| p.get(JMAP_MAIL))
        .and_then(|a| a.as_str())
        .ok_or_else(|| ProbeError::Protocol("JMAP session has no primary mail account".into()))?;
    let api = session
        .get("apiUrl")
        .and_then(|a| a.as_str())
        .ok_or_else(|| ProbeError::Protocol("JMAP session has no apiUrl".into()))?;
    let api = url
        .join(api)
        .map_err(|e| ProbeError::Protocol(format!("JMAP apiUrl {api:?} is not a URL: {e}")))?;
    Ok((account.to_string(), api))
}

/// The `Mailbox/get` response must list a mailbox with role `inbox`.
fn check_mailboxes(reply: &serde_json::Value) -> Result<(), ProbeError> {
    let first = reply
        .get("methodResponses")
        .and_then(|r| r.get(0))
        .ok_or_else(|| ProbeError::Protocol("JMAP reply has no methodResponses".into()))?;
    let name = first.get(0).and_then(|n| n.as_str()).unwrap_or_default();
    let args = first.get(1).cloned().unwrap_or_default();
    if name == "error" {
        return Err(ProbeError::Protocol(format!(
            "JMAP Mailbox/get failed: {}",
            args.get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("unknown error")
        )));
    }
    if name != "Mailbox/get" {
        return Err(ProbeError::Protocol(format!(
            "JMAP answered {name:?} to Mailbox/get"
        )));
    }
    let inbox = args
        .get("list")
        .and_then(|l| l.as_array())
        .is_some_and(|l| {
            l.iter()
                .any(|m| m.get("role").and_then(|r| r.as_str()) == Some("inbox"))
        });
    if inbox {
        Ok(())
    } else {
        Err(ProbeError::Protocol(
            "JMAP Mailbox/get lists no mailbox with role \"inbox\"".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn session_needs_mail_capability_account_and_api() {
        let url = Url::parse("https://mail.example.test/.well-known/jmap").unwrap();
        let good = json!({
            "capabilities": {JMAP_CORE: {}, JMAP_MAIL: {}},
            "primaryAccounts": {JMAP_MAIL: "A1"},
            "apiUrl": "/jmap/api/",
        });
        let (a, api) = session_facts(&good, &url).unwrap();
        assert_eq!(a, "A1");
        assert_eq!(api.as_str(), "https://mail.example.test/jmap/api/");
        let no_mail = json!({"capabilities": {JMAP_CORE: {}}, "apiUrl": "/api"});
        assert!(
            session_facts(&no_mail, &url)
                .unwrap_err()
                .to_string()
                .contains("mail capability")
        );
    }

    #[test]
    fn mailboxes_need_an_inbox() {
        let ok = json!({"methodResponses": [["Mailbox/get", {"list": [{"role": "inbox"}]}, "m"]]});
        assert!(check_mailboxes(&ok).is_ok());
        let none = json!({"methodResponses": [["Mailbox/get", {"list": [{"role": "sent"}]}, "m"]]});
        assert!(check_mailboxes(&none).is_err());
        let err = json!({"methodResponses": [["error", {"type": "accountNotFound"}, "m"]]});
        assert!(
            check_mailboxes(&err)
                .unwrap_err()
                .to_string()
                .contains("accountNotFound")
        );
    }
}
