//! A small OAuth2 authorization server: a token endpoint over HTTPS (client credentials with a
//! secret or a signed RS256 client assertion, refresh tokens, and a service account's signed
//! JWT as the grant: RFC 7523 2.1 as Google's "Using OAuth 2.0 for Server to Server
//! Applications" documents it, <https://developers.google.com/identity/protocols/oauth2/service-account>)
//! and an introspection endpoint over plain HTTP on 127.0.0.1 for Dovecot's
//! `passdb { driver = oauth2 }`.
//!
//! Tests make it misbehave (answer 400, stop answering at all), revoke the tokens it issued, and
//! count the requests it served, to check caching and refresh.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::pki::ServerCert;

/// A registered client application.
#[derive(Clone, Debug)]
pub struct Client {
    /// Its secret, if it authenticates with one.
    pub secret: Option<String>,
    /// Its RSA public key (PKCS#1 DER), if it signs client assertions.
    pub assertion_key: Option<Vec<u8>>,
    /// The mailbox its client-credentials tokens are valid for.
    pub user: String,
}

/// How the token endpoint behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Issues tokens.
    Normal,
    /// Answers every token request with 400 `invalid_client`.
    Refuse,
}

#[derive(Default)]
struct State {
    clients: HashMap<String, Client>,
    refresh_tokens: HashMap<String, String>,
    /// Service accounts by `client_email`: their RSA public key (PKCS#1 DER).
    service_accounts: HashMap<String, Vec<u8>>,
    /// The claims of every JWT-bearer grant accepted, in order.
    grants: Vec<serde_json::Value>,
    tokens: HashMap<String, (String, Instant)>,
    ttl: Duration,
    mode: Option<Mode>,
    counter: u64,
}

/// A running token server; stops when dropped.
pub struct TokenServer {
    /// The token endpoint (HTTPS, the test CA's `localhost` certificate).
    pub token_url: String,
    /// The introspection endpoint (HTTP) Dovecot asks.
    pub introspection_url: String,
    /// Token requests served (any result).
    pub token_requests: Arc<AtomicUsize>,
    /// Introspection requests served.
    pub introspections: Arc<AtomicUsize>,
    state: Arc<Mutex<State>>,
    token_task: Mutex<Option<JoinHandle<()>>>,
    introspection_task: JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(t) = self.token_task.lock().expect("task lock").take() {
            t.abort();
        }
        self.introspection_task.abort();
    }
}

type Body = Full<Bytes>;

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("response")
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

impl TokenServer {
    /// Starts both endpoints; tokens live `ttl`.
    pub async fn start(cert: &ServerCert, ttl: Duration) -> TokenServer {
        let state = Arc::new(Mutex::new(State {
            ttl,
            mode: Some(Mode::Normal),
            ..State::default()
        }));
        let token_requests = Arc::new(AtomicUsize::new(0));
        let introspections = Arc::new(AtomicUsize::new(0));

        let tls_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind token endpoint");
        let token_url = format!(
            "https://localhost:{}/token",
            tls_listener.local_addr().expect("addr").port()
        );
        let tls: Arc<ServerConfig> = cert.server_config(&[b"http/1.1"]);
        let (s, c, url) = (state.clone(), token_requests.clone(), token_url.clone());
        let token_task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = tls_listener.accept().await else {
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                let (s, c, url) = (s.clone(), c.clone(), url.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (s, c, url) = (s.clone(), c.clone(), url.clone());
                        async move {
                            c.fetch_add(1, Ordering::SeqCst);
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            Ok::<_, Infallible>(token(&s, &url, &form(&body)))
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });

        let plain = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind introspection");
        let introspection_url = format!(
            "http://127.0.0.1:{}/introspect",
            plain.local_addr().expect("addr").port()
        );
        let (s, c) = (state.clone(), introspections.clone());
        let introspection_task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = plain.accept().await else {
                    return;
                };
                let (s, c) = (s.clone(), c.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (s, c) = (s.clone(), c.clone());
                        async move {
                            c.fetch_add(1, Ordering::SeqCst);
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            Ok::<_, Infallible>(introspect(&s, &form(&body)))
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        TokenServer {
            token_url,
            introspection_url,
            token_requests,
            introspections,
            state,
            token_task: Mutex::new(Some(token_task)),
            introspection_task,
        }
    }

    /// Registers a client application.
    pub fn add_client(&self, id: &str, client: Client) {
        self.state
            .lock()
            .expect("state")
            .clients
            .insert(id.into(), client);
    }

    /// Registers a refresh token for `user`.
    pub fn add_refresh_token(&self, token: &str, user: &str) {
        self.state
            .lock()
            .expect("state")
            .refresh_tokens
            .insert(token.into(), user.into());
    }

    /// Registers a service account (its `client_email` and RSA public key, PKCS#1 DER) that may
    /// act for any user of the domain (domain-wide delegation).
    pub fn add_service_account(&self, client_email: &str, public_key: Vec<u8>) {
        self.state
            .lock()
            .expect("state")
            .service_accounts
            .insert(client_email.into(), public_key);
    }

    /// The claims of every JWT-bearer grant accepted so far.
    pub fn grants(&self) -> Vec<serde_json::Value> {
        self.state.lock().expect("state").grants.clone()
    }

    /// The user `token` was issued for, if it is valid now.
    pub fn token_user(&self, token: &str) -> Option<String> {
        let s = self.state.lock().expect("state");
        s.tokens
            .get(token)
            .filter(|(_, exp)| Instant::now() < *exp)
            .map(|(u, _)| u.clone())
    }

    /// Makes every token issued so far invalid (as a revocation would).
    pub fn revoke_all(&self) {
        self.state.lock().expect("state").tokens.clear();
    }

    /// Changes how the token endpoint answers.
    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().expect("state").mode = Some(mode);
    }

    /// Stops the token endpoint altogether: connections are refused from now on.
    pub fn take_token_endpoint_down(&self) {
        if let Some(t) = self.token_task.lock().expect("task lock").take() {
            t.abort();
        }
    }

    /// Whether `token` is a valid access token now.
    pub fn valid(&self, token: &str) -> bool {
        let s = self.state.lock().expect("state");
        s.tokens
            .get(token)
            .is_some_and(|(_, exp)| Instant::now() < *exp)
    }

    /// Every access token issued and not revoked, so tests can look for it where it must not be.
    pub fn issued(&self) -> Vec<String> {
        self.state
            .lock()
            .expect("state")
            .tokens
            .keys()
            .cloned()
            .collect()
    }

    /// A check other test servers can hold to accept this server's tokens.
    pub fn validator(&self) -> crate::https::BearerCheck {
        let state = self.state.clone();
        crate::https::BearerCheck(Arc::new(move |token| {
            let s = state.lock().expect("state");
            s.tokens
                .get(token)
                .is_some_and(|(_, exp)| Instant::now() < *exp)
        }))
    }
}

fn issue(s: &mut State, user: &str) -> Response<Body> {
    s.counter += 1;
    let token = format!("at-{}-{}", s.counter, user.len());
    s.tokens
        .insert(token.clone(), (user.to_string(), Instant::now() + s.ttl));
    json(
        StatusCode::OK,
        serde_json::json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": s.ttl.as_secs(),
        }),
    )
}

fn error(code: &str, description: &str) -> Response<Body> {
    json(
        StatusCode::BAD_REQUEST,
        serde_json::json!({"error": code, "error_description": description}),
    )
}

fn token(state: &Mutex<State>, url: &str, f: &HashMap<String, String>) -> Response<Body> {
    let mut s = state.lock().expect("state");
    if s.mode == Some(Mode::Refuse) {
        return error(
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        );
    }
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    match get("grant_type") {
        "client_credentials" => {
            let Some(client) = s.clients.get(get("client_id")).cloned() else {
                return error("invalid_client", "unknown client");
            };
            let by_secret = client.secret.is_some()
                && client.secret.as_deref() == f.get("client_secret").map(String::as_str);
            let by_assertion = client.assertion_key.as_ref().is_some_and(|key| {
                get("client_assertion_type")
                    == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                    && verify_assertion(get("client_assertion"), key, url, get("client_id"))
            });
            if !(by_secret || by_assertion) {
                return error("invalid_client", "client authentication failed");
            }
            issue(&mut s, &client.user)
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let Some(claims) = verify_grant(&s.service_accounts, get("assertion"), url) else {
                return error("invalid_grant", "Invalid JWT Signature.");
            };
            let Some(user) = claims["sub"].as_str().map(str::to_string) else {
                return error("invalid_grant", "no sub");
            };
            s.grants.push(claims);
            issue(&mut s, &user)
        }
        "refresh_token" => match s.refresh_tokens.get(get("refresh_token")).cloned() {
            Some(user) => issue(&mut s, &user),
            None => error("invalid_grant", "refresh token unknown or revoked"),
        },
        other => error("unsupported_grant_type", other),
    }
}

/// Checks an RS256 JWT client assertion: signature, audience, issuer and expiry.
fn verify_assertion(jwt: &str, public_key: &[u8], url: &str, client_id: &str) -> bool {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(sig) = b64.decode(sig) else {
        return false;
    };
    let signed = format!("{h}.{c}");
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    );
    if key.verify(signed.as_bytes(), &sig).is_err() {
        return false;
    }
    let header: serde_json::Value = b64
        .decode(h)
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default();
    let claims: serde_json::Value = b64
        .decode(c)
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    header["alg"] == "RS256"
        && header["x5t"].is_string()
        && claims["aud"] == url
        && claims["iss"] == client_id
        && claims["sub"] == client_id
        && claims["exp"].as_u64().is_some_and(|e| e > now)
}

/// Checks a service account's grant (RFC 7523 2.1, RFC 7519): an RS256 signature by a
/// registered account's key (`iss`), `aud` this endpoint, a `sub`, a `scope`, and `exp` in the
/// future at most an hour after `iat` (Google refuses longer). The claims, when all hold.
fn verify_grant(
    accounts: &HashMap<String, Vec<u8>>,
    jwt: &str,
    url: &str,
) -> Option<serde_json::Value> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(h).ok()?).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&b64.decode(c).ok()?).ok()?;
    let key = accounts.get(claims["iss"].as_str()?)?;
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key);
    key.verify(format!("{h}.{c}").as_bytes(), &b64.decode(sig).ok()?)
        .ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (iat, exp) = (claims["iat"].as_u64()?, claims["exp"].as_u64()?);
    (header["alg"] == "RS256"
        && claims["aud"] == url
        && claims["sub"].is_string()
        && claims["scope"].as_str().is_some_and(|s| !s.is_empty())
        && exp > now
        && exp > iat
        && exp - iat <= 3600)
        .then_some(claims)
}

fn introspect(state: &Mutex<State>, f: &HashMap<String, String>) -> Response<Body> {
    let s = state.lock().expect("state");
    let token = f.get("token").map(String::as_str).unwrap_or("");
    match s.tokens.get(token) {
        Some((user, exp)) if Instant::now() < *exp => json(
            StatusCode::OK,
            serde_json::json!({"active": true, "username": user}),
        ),
        _ => json(StatusCode::OK, serde_json::json!({"active": false})),
    }
}
