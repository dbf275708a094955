//! One bounded, timed HTTP GET of a status feed: the answer is read up to a limit, within the
//! poll's deadline, and parsed as JSON; every way it can fail has a reason of its own, which
//! the metrics count and the log names. A bearer token (Graph) goes in a header only, never
//! into an error.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// Why a feed could not be read: a closed set, the `reason` label of the feed error counter.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The token endpoint gave no token (Microsoft).
    #[error("no token: {0}")]
    Token(String),
    /// The feed answered with an error status.
    #[error("HTTP {status}{detail}")]
    Status {
        /// The status code.
        status: u16,
        /// The error code or message from the body, when there was one (prefixed `: `).
        detail: String,
    },
    /// No connection, TLS refused, the connection dropped.
    #[error("{0}")]
    Transport(String),
    /// No (whole) answer within the poll's deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer was larger than the limit.
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    /// The answer was not the documented shape.
    #[error("not the documented shape: {0}")]
    Garbage(String),
}

impl FeedError {
    /// Every reason, for the counter's series to exist from the start.
    pub const REASONS: [&'static str; 6] = [
        "token",
        "http_status",
        "transport",
        "timeout",
        "too_large",
        "bad_body",
    ];

    /// The `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            FeedError::Token(_) => "token",
            FeedError::Status { .. } => "http_status",
            FeedError::Transport(_) => "transport",
            FeedError::Timeout(_) => "timeout",
            FeedError::TooLarge(_) => "too_large",
            FeedError::Garbage(_) => "bad_body",
        }
    }
}

/// A client for one provider: its TLS, no pooled connections (polls are minutes apart), and
/// the poll's deadline as the request timeout.
pub fn client(tls: &rustls::ClientConfig, timeout: Duration) -> Result<reqwest::Client, FeedError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .pool_max_idle_per_host(0)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mailprobe/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FeedError::Transport(format!("cannot build the HTTP client: {e}")))
}

/// GETs `url` and parses its JSON body, reading at most `max` bytes.
pub async fn get_json(
    client: &reqwest::Client,
    url: url::Url,
    bearer: Option<&SecretString>,
    max: usize,
    timeout: Duration,
) -> Result<serde_json::Value, FeedError> {
    let transport = |e: reqwest::Error| {
        if e.is_timeout() {
            FeedError::Timeout(timeout)
        } else {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            for _ in 0..4 {
                let Some(s) = source else { break };
                let t = s.to_string();
                if !text.ends_with(&t) {
                    text.push_str(": ");
                    text.push_str(&t);
                }
                source = s.source();
            }
            FeedError::Transport(text)
        }
    };
    let mut req = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(token) = bearer {
        req = req.bearer_auth(token.expose_secret());
    }
    let mut resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    if let Some(len) = resp.content_length()
        && len > max as u64
    {
        return Err(FeedError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > max {
            return Err(FeedError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        // Graph's `{"error":{"code":..., "message":...}}`, or nothing.
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let e = v.get("error")?;
                let code = e.get("code").and_then(|c| c.as_str()).unwrap_or_default();
                let msg = e
                    .get("message")
                    .and_then(|c| c.as_str())
                    .unwrap_or_default();
                Some(super::one_line(&format!("{code} {msg}"), 200))
            })
            .filter(|d| !d.is_empty())
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Err(FeedError::Status {
            status: status.as_u16(),
            detail,
        });
    }
    serde_json::from_slice(&body).map_err(|e| FeedError::Garbage(format!("not JSON: {e}")))
}
