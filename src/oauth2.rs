//! OAuth2 access tokens for probes that sign in the way Exchange Online and Gmail require.
//!
//! A token is fetched from the target's token endpoint (client credentials, or a refresh token
//! the admin provisioned once), authenticating the client with a secret or a signed client
//! assertion (RS256 JWT with the certificate's `x5t`, as the Microsoft identity platform takes);
//! or with a service account's signed JWT as the grant itself (RFC 7523 2.1: Google's
//! domain-wide delegation, `sub` the mailbox).
//! Tokens are cached per credential set, shared by every target using it, and refreshed ahead of
//! expiry; one fetch at a time per credential set. A token that cannot be refreshed but is still
//! valid keeps being used (the failed fetch is still reported). Tokens are never logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::config::oauth2::{ClientAuth, Grant, OAuth2Spec};

/// How long a token fetch may take at most.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of a token endpoint's answer read.
const MAX_RESPONSE: usize = 64 * 1024;
/// A token is refreshed when less than this (or half its lifetime, if shorter) remains.
const REFRESH_AHEAD: Duration = Duration::from_secs(300);

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
#[error("token endpoint {url}: {reason}")]
pub struct TokenError {
    /// The endpoint.
    pub url: String,
    /// What went wrong (the endpoint's `error` and `error_description` when it said).
    pub reason: String,
    /// Whose failure it is, for the probes' classification.
    pub fault: TokenFault,
}

/// Whose failure a missing token is: the identity provider's, or mailprobe's own (which must
/// not read as the provider failing).
#[derive(Debug)]
pub enum TokenFault {
    /// The endpoint answered with an error or something unusable, or did not answer in time.
    Endpoint,
    /// The request failed with this OS error (a refused connection, or no file descriptor left
    /// here); classify decides whose it is.
    Os(std::io::Error),
    /// The cache could not make the request at all (no HTTP client, no signed assertion).
    Cache,
}

/// What a probe's token lookup did, for the metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenFacts {
    /// The credential set.
    pub credential: String,
    /// `Some((how long, succeeded))` when the lookup fetched from the endpoint.
    pub fetched: Option<(Duration, bool)>,
    /// When the token in use expires.
    pub expires: Option<SystemTime>,
}

struct Cached {
    access: SecretString,
    expires: SystemTime,
    refresh_at: Instant,
    valid_until: Instant,
}

#[derive(Default)]
struct Slot {
    token: Option<Cached>,
    /// The newest refresh token (providers may rotate it).
    refresh: Option<SecretString>,
    client: Option<reqwest::Client>,
}

/// The time the token cache decides by (is a token due for refresh, still valid): the
/// system's monotonic clock, or a test's that it moves itself instead of waiting.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Tokens by credential set, shared by all probes.
pub struct TokenCache {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    clock: Arc<dyn Clock>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }
}

impl TokenCache {
    /// An empty cache deciding by `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        TokenCache {
            slots: Mutex::default(),
            clock,
        }
    }

    /// A valid token for `spec`: the cached one, or a fresh one when it is about to expire.
    pub async fn token(&self, spec: &OAuth2Spec) -> (Result<SecretString, TokenError>, TokenFacts) {
        let slot = {
            // A poisoned lock is taken over (crate::sync): this map holds only handles, each
            // insert one call. A probe that panics while it holds a slot (below) is caught as a
            // prober fault by `probe::run`; the async mutex is released on unwind and the next
            // probe fetches again. No background task refreshes tokens, so none can die unseen.
            let mut slots = crate::sync::lock(&self.slots);
            slots.entry(spec.key.clone()).or_default().clone()
        };
        // One fetch at a time per credential set: others wait and then find the fresh token.
        let mut slot = slot.lock().await;
        let now = self.clock.now();
        let mut facts = TokenFacts {
            credential: spec.label.clone(),
            fetched: None,
            expires: slot.token.as_ref().map(|t| t.expires),
        };
        if let Some(t) = &slot.token
            && now < t.refresh_at
        {
            return (Ok(t.access.clone()), facts);
        }
        let client = match &slot.client {
            Some(c) => c.clone(),
            // No pooled connections: a refresh comes an hour later and would find the idle
            // connection long closed, and each fetch's duration is then a whole fetch (connect
            // and TLS included), as the fetch-duration metric says.
            None => match reqwest::Client::builder()
                .use_preconfigured_tls((*spec.tls).clone())
                .pool_max_idle_per_host(0)
                .timeout(FETCH_TIMEOUT)
                .user_agent(concat!("mailprobe/", env!("CARGO_PKG_VERSION")))
                .build()
            {
                Ok(c) => {
                    slot.client = Some(c.clone());
                    c
                }
                Err(e) => {
                    let err = TokenError {
                        url: spec.token_url.to_string(),
                        reason: format!("cannot build the HTTP client: {e}"),
                        fault: TokenFault::Cache,
                    };
                    return (Err(err), facts);
                }
            },
        };
        let refresh = match &spec.grant {
            Grant::RefreshToken(configured) => {
                Some(slot.refresh.clone().unwrap_or_else(|| configured.clone()))
            }
            Grant::ClientCredentials | Grant::JwtBearer(_) => None,
        };
        let started = Instant::now();
        let result = fetch(&client, spec, refresh.as_ref()).await;
        let took = started.elapsed();
        facts.fetched = Some((took, result.is_ok()));
        match result {
            Ok(fresh) => {
                let lifetime = fresh.expires_in;
                let ahead = REFRESH_AHEAD.min(lifetime / 2);
                let fetched_at = self.clock.now();
                let expires = SystemTime::now() + lifetime;
                if let Some(r) = fresh.refresh {
                    slot.refresh = Some(r);
                }
                slot.token = Some(Cached {
                    access: fresh.access.clone(),
                    expires,
                    refresh_at: fetched_at + lifetime - ahead,
                    valid_until: fetched_at + lifetime,
                });
                facts.expires = Some(expires);
                (Ok(fresh.access), facts)
            }
            Err(e) => match &slot.token {
                // Still valid: keep using it; the failed refresh is reported all the same.
                Some(t) if self.clock.now() < t.valid_until => (Ok(t.access.clone()), facts),
                _ => (Err(e), facts),
            },
        }
    }
}

struct Fresh {
    access: SecretString,
    expires_in: Duration,
    refresh: Option<SecretString>,
}

async fn fetch(
    client: &reqwest::Client,
    spec: &OAuth2Spec,
    refresh: Option<&SecretString>,
) -> Result<Fresh, TokenError> {
    let fail = |reason: String| TokenError {
        url: spec.token_url.to_string(),
        reason,
        fault: TokenFault::Endpoint,
    };
    let transport = |e: reqwest::Error| TokenError {
        url: spec.token_url.to_string(),
        reason: transport_reason(&e),
        fault: os_error(&e).map_or(TokenFault::Endpoint, TokenFault::Os),
    };
    let mut form: Vec<(&str, String)> = Vec::new();
    match (&spec.grant, refresh) {
        // RFC 7523 2.1 as Google documents it for service accounts: the grant type and the
        // assertion, nothing else (the scopes are in the JWT).
        (Grant::JwtBearer(account), _) => {
            form.push((
                "grant_type",
                "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
            ));
            let signed = grant_assertion(spec, account).map_err(|reason| TokenError {
                fault: TokenFault::Cache,
                ..fail(reason)
            })?;
            form.push(("assertion", signed));
        }
        (Grant::RefreshToken(_), Some(r)) => {
            form.push(("client_id", spec.client_id.clone()));
            form.push(("grant_type", "refresh_token".into()));
            form.push(("refresh_token", r.expose_secret().to_string()));
        }
        _ => {
            form.push(("client_id", spec.client_id.clone()));
            form.push(("grant_type", "client_credentials".into()));
        }
    }
    if !spec.scopes.is_empty() && !matches!(spec.grant, Grant::JwtBearer(_)) {
        form.push(("scope", spec.scopes.join(" ")));
    }
    match &spec.client_auth {
        ClientAuth::Secret(s) => form.push(("client_secret", s.expose_secret().to_string())),
        ClientAuth::Assertion { key, x5t } => {
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
            let signed = assertion(spec, key, x5t).map_err(|reason| TokenError {
                fault: TokenFault::Cache,
                ..fail(reason)
            })?;
            form.push(("client_assertion", signed));
        }
        ClientAuth::None => {}
    }
    let mut resp = client
        .post(spec.token_url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form)
        .send()
        .await
        .map_err(transport)?;
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(fail(format!("answer larger than {MAX_RESPONSE} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_string);
    if !status.is_success() {
        let mut reason = format!("HTTP {}", status.as_u16());
        if let Some(e) = text("error") {
            reason.push(' ');
            reason.push_str(&e);
        }
        if let Some(d) = text("error_description") {
            reason.push_str(": ");
            reason.extend(d.chars().take(200));
        }
        return Err(fail(reason));
    }
    let access =
        text("access_token").ok_or_else(|| fail("no access_token in the answer".into()))?;
    if let Some(kind) = text("token_type")
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(fail(format!("token_type {kind:?} is not Bearer")));
    }
    let expires_in = match json.get("expires_in") {
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| fail("expires_in is not a number".into()))?,
        None => 3600,
    };
    Ok(Fresh {
        access: SecretString::from(access),
        expires_in: Duration::from_secs(expires_in.max(1)),
        refresh: text("refresh_token").map(SecretString::from),
    })
}

/// The OS error under a transport failure, if any (a copy: the chain is borrowed).
fn os_error(e: &reqwest::Error) -> Option<std::io::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(raw) = s
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            return Some(std::io::Error::from_raw_os_error(raw));
        }
        source = s.source();
    }
    None
}

/// A transport failure in words (the URL is already in the error; reqwest's own text repeats it).
fn transport_reason(e: &reqwest::Error) -> String {
    let mut reason = if e.is_timeout() {
        "no answer in time".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    // The whole chain, down to the OS error ("dns error" alone hides "Too many open files"),
    // each cause once (some repeat their source's words).
    let mut source = std::error::Error::source(e);
    for _ in 0..6 {
        let Some(s) = source else { break };
        let text = s.to_string();
        if !reason.ends_with(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = s.source();
    }
    reason
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A client assertion: a JWT signed with RS256, valid for ten minutes, for this endpoint only.
fn assertion(spec: &OAuth2Spec, key: &ring::rsa::KeyPair, x5t: &str) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": x5t});
    let claims = serde_json::json!({
        "aud": spec.token_url.as_str(),
        "iss": spec.client_id,
        "sub": spec.client_id,
        "jti": crate::hash::unique_token(),
        "nbf": now,
        "iat": now,
        "exp": now + 600,
    });
    sign_rs256(key, &header, &claims).map_err(|()| "cannot sign the client assertion".to_string())
}

/// The longest a grant assertion is valid: Google refuses one whose `exp` is more than an hour
/// after its `iat`.
const GRANT_ASSERTION_LIFETIME: u64 = 3600;

/// A service account's grant (RFC 7523 2.1, Google's "Using OAuth 2.0 for Server to Server
/// Applications"): an RS256 JWT with `iss` = the account's email, `sub` = the user it acts for,
/// `scope`, `aud` = the token endpoint, `iat` and `exp` at most an hour apart.
fn grant_assertion(
    spec: &OAuth2Spec,
    account: &crate::config::oauth2::ServiceAccount,
) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = &account.key_id {
        header["kid"] = serde_json::Value::from(kid.as_str());
    }
    let claims = serde_json::json!({
        "iss": account.client_email,
        "sub": account.subject,
        "scope": spec.scopes.join(" "),
        "aud": spec.token_url.as_str(),
        "iat": now,
        "exp": now + GRANT_ASSERTION_LIFETIME,
    });
    sign_rs256(&account.key, &header, &claims)
        .map_err(|()| "cannot sign the service account's grant".to_string())
}

/// `header.claims.signature`, RS256 with `key`.
fn sign_rs256(
    key: &ring::rsa::KeyPair,
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> Result<String, ()> {
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| ())?;
    Ok(format!("{signing_input}.{}", b64url(&signature)))
}
