//! An HTTPS target (`protocol = "https"`): its keys, their defaults and checks, and the spec the
//! probe runs.
//!
//! Keys besides every target's: `url` (required; `http://` only with `allow_plaintext`),
//! `method` (`"GET"`), `body` or `body_file` (POST), `headers`, `expect_status` (any 2xx),
//! `body_contains` or `body_regex`, `max_body` (1 MiB), `max_redirects` (5), `check` (`"page"`
//! or `"jmap"`), `ca_file`, `server_name`, `ip_protocol`, `dns_servers`; `auth` ([`HttpsAuth`]):
//! `"basic"` (with `username` and `password_file` or `password_env`), `"bearer"` (the token in
//! `password_file` or `password_env`) or `"oauth2"` (with `[target.oauth2]`); none by default.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;

use futures::future::BoxFuture;
use secrecy::SecretString;
use serde::Deserialize;

use crate::config::credentials::refused_value;
use crate::config::oauth2::{OAuth2Spec, RawOAuth2};
use crate::config::{
    ConfigError, Credentials, Endpoint, EndpointKeys, IpProtocol, LoginKeys, Ports, TargetCx,
    TlsMode,
};
use crate::probe::phase::with_token;
use crate::probe::registry::{ProbeSpec, Protocol, Target};
use crate::probe::spec::{ProtocolSpec, SpecTable, Targets};
use crate::probe::{Phase, PhaseError, PhaseRecorder, ProbeContext};

/// HTTPS on 443, HTTP on 80.
const PORTS: Ports = Ports {
    implicit: 443,
    starttls: 443,
    plain: 80,
};
/// Microsoft's delegated permission for Exchange Web Services, asked for with a refresh token.
const DELEGATED_SCOPE: &str = "https://outlook.office.com/EWS.AccessAsUser.All";
const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const MAX_MAX_BODY: u64 = 64 * 1024 * 1024;
const DEFAULT_MAX_REDIRECTS: u32 = 5;
const MAX_REDIRECTS: u32 = 100;
/// The largest `body_file` read.
const MAX_BODY_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The request method of an HTTPS probe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET (the default).
    #[default]
    Get,
    /// HEAD.
    Head,
    /// POST, with `body` or `body_file` (Autodiscover, EWS).
    Post,
}

impl HttpMethod {
    /// The method as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
        }
    }
}

/// What an HTTPS probe checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpCheck {
    /// One request (following redirects): status, optionally body.
    #[default]
    Page,
    /// A JMAP server: the session resource names the mail capability, and `Mailbox/get` on the
    /// API URL returns an Inbox.
    Jmap,
}

/// The values of an HTTPS target's `auth` key (IMAP and SMTP read it as a password or OAuth2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpsAuth {
    /// `"basic"`: `Authorization: Basic` with `username` and a password.
    Basic,
    /// `"bearer"`: `Authorization: Bearer` with a token read like a password.
    Bearer,
    /// `"oauth2"`: `Authorization: Bearer` with a token from `[target.oauth2]`.
    OAuth2,
}

impl HttpsAuth {
    fn parse(cx: &TargetCx<'_>, value: &str) -> Result<HttpsAuth, ConfigError> {
        match value {
            "basic" => Ok(HttpsAuth::Basic),
            "bearer" => Ok(HttpsAuth::Bearer),
            "oauth2" => Ok(HttpsAuth::OAuth2),
            other => Err(cx.error(
                "auth",
                format!("{other:?} is not \"basic\", \"bearer\" or \"oauth2\""),
            )),
        }
    }
}

/// How an HTTPS probe authenticates.
#[derive(Clone, Debug)]
pub enum HttpAuth {
    /// `Authorization: Basic` with username and password.
    Basic(Credentials),
    /// `Authorization: Bearer` with a token read like a password.
    Bearer(SecretString),
    /// `Authorization: Bearer` with a token from an OAuth2 credential set.
    OAuth2(Arc<OAuth2Spec>),
}

/// What must be in the response body.
#[derive(Clone, Debug)]
pub enum BodyMatch {
    /// This text, anywhere in the (bounded) body.
    Contains(String),
    /// A match of this regular expression.
    Regex(regex::Regex),
}

/// What an HTTPS probe does.
#[derive(Clone, Debug)]
pub struct HttpsSpec {
    /// The URL requested first.
    pub url: url::Url,
    /// Host, port and TLS derived from the URL (TLS unless `http://` with `allow_plaintext`).
    pub endpoint: Endpoint,
    /// Request method.
    pub method: HttpMethod,
    /// Request body (POST).
    pub body: Option<bytes::Bytes>,
    /// Extra request headers.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Accepted final status codes; empty means any 2xx.
    pub expect_status: Vec<u16>,
    /// What the body must contain.
    pub body_match: Option<BodyMatch>,
    /// The most body bytes read; more is a protocol error.
    pub max_body: usize,
    /// Redirects followed before giving up; 0 means none.
    pub max_redirects: u32,
    /// Authentication, if any.
    pub auth: Option<HttpAuth>,
    /// Page or JMAP.
    pub check: HttpCheck,
}

/// The keys of an HTTPS target, as written.
#[derive(Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct HttpsTable {
    url: Option<String>,
    method: Option<HttpMethod>,
    body: Option<String>,
    body_file: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    expect_status: Option<Vec<u16>>,
    body_contains: Option<String>,
    body_regex: Option<String>,
    max_body: Option<u64>,
    max_redirects: Option<u32>,
    auth: Option<String>,
    username: Option<String>,
    password_file: Option<String>,
    password_env: Option<String>,
    /// Accepted by the parser only to refuse it with a helpful message.
    #[serde(default, deserialize_with = "refused_value")]
    password: Option<()>,
    allow_plaintext: Option<bool>,
    ca_file: Option<String>,
    server_name: Option<String>,
    check: Option<HttpCheck>,
    oauth2: Option<RawOAuth2>,
    dns_servers: Option<Vec<String>>,
    ip_protocol: Option<IpProtocol>,
}

impl SpecTable for HttpsTable {
    fn build(self, cx: &mut TargetCx<'_>, _: &Targets) -> Result<ProbeSpec, ConfigError> {
        let raw_url = self
            .url
            .as_deref()
            .ok_or_else(|| cx.error("url", "missing: the URL to request"))?;
        let url = url::Url::parse(raw_url)
            .map_err(|e| cx.error("url", format!("{raw_url:?} is not a URL: {e}")))?;
        let allow_plaintext = self.allow_plaintext.unwrap_or(false);
        let tls = match url.scheme() {
            "https" => {
                if allow_plaintext {
                    return Err(cx.error("allow_plaintext", "applies only to http:// URLs"));
                }
                TlsMode::Implicit
            }
            "http" if allow_plaintext => TlsMode::None,
            "http" => {
                return Err(cx.error(
                    "url",
                    "http:// sends credentials and content in clear; use https://, or set \
                     allow_plaintext = true if that is really wanted",
                ));
            }
            other => {
                return Err(cx.error("url", format!("scheme {other:?} is not http or https")));
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(cx.error("url", "the URL has no host")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(cx.error(
                "url",
                "credentials are never read from probes.toml: use auth with username and \
                 password_file or password_env",
            ));
        }
        let endpoint = cx.endpoint(
            EndpointKeys {
                host: Some(&host),
                port: url.port_or_known_default(),
                tls: Some(tls),
                allow_plaintext: Some(allow_plaintext),
                ca_file: self.ca_file.as_deref(),
                server_name: self.server_name.as_deref(),
                dns_servers: self.dns_servers.as_deref(),
                ip_protocol: self.ip_protocol,
                host_from_url: true,
            },
            tls,
            PORTS,
        )?;

        let method = self.method.unwrap_or_default();
        let body = match (&self.body, &self.body_file) {
            (Some(_), Some(_)) => {
                return Err(cx.error("body_file", "give either body or body_file, not both"));
            }
            (Some(b), None) => Some(bytes::Bytes::from(b.clone())),
            (None, Some(f)) => {
                let data = cx.read_file("body_file", f, MAX_BODY_FILE_BYTES)?;
                data.hash(&mut cx.fp);
                Some(bytes::Bytes::from(data))
            }
            (None, None) => None,
        };
        if body.is_some() && method != HttpMethod::Post {
            return Err(cx.error(
                if self.body.is_some() {
                    "body"
                } else {
                    "body_file"
                },
                "a request body needs method = \"POST\"",
            ));
        }
        let mut headers = Vec::new();
        for (name, value) in self.headers.iter().flatten() {
            let n = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| cx.error("headers", format!("{name:?} is not a header name")))?;
            if n == http::header::AUTHORIZATION || n == http::header::HOST {
                return Err(cx.error(
                    "headers",
                    format!(
                        "{name} is set by mailprobe (use auth for credentials, url for the host)"
                    ),
                ));
            }
            let v = http::HeaderValue::from_str(value).map_err(|_| {
                cx.error(
                    "headers",
                    format!("the value of {name} is not a valid header value"),
                )
            })?;
            headers.push((n, v));
        }
        let expect_status = self.expect_status.clone().unwrap_or_default();
        if let Some(bad) = expect_status.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(cx.error("expect_status", format!("{bad} is not an HTTP status code")));
        }
        let body_match = match (&self.body_contains, &self.body_regex) {
            (Some(_), Some(_)) => {
                return Err(cx.error(
                    "body_regex",
                    "give either body_contains or body_regex, not both",
                ));
            }
            (Some(s), None) => Some(BodyMatch::Contains(s.clone())),
            (None, Some(r)) => Some(BodyMatch::Regex(regex::Regex::new(r).map_err(|e| {
                cx.error("body_regex", format!("not a regular expression: {e}"))
            })?)),
            (None, None) => None,
        };
        let max_body = self.max_body.unwrap_or(DEFAULT_MAX_BODY);
        if !(1..=MAX_MAX_BODY).contains(&max_body) {
            return Err(cx.error("max_body", "must be between 1 and 67108864 (64 MiB)"));
        }
        if self.max_redirects.is_some_and(|n| n > MAX_REDIRECTS) {
            return Err(cx.error("max_redirects", format!("must be at most {MAX_REDIRECTS}")));
        }
        let check = self.check.unwrap_or_default();
        if check == HttpCheck::Jmap && (self.body_contains.is_some() || self.body_regex.is_some()) {
            return Err(cx.error(
                if self.body_contains.is_some() {
                    "body_contains"
                } else {
                    "body_regex"
                },
                "check = \"jmap\" checks the JSON itself",
            ));
        }
        if self.auth.as_deref() != Some("oauth2") && self.oauth2.is_some() {
            return Err(cx.error("oauth2", "has no effect without auth = \"oauth2\""));
        }
        let login = ["username", "password_file", "password_env"];
        let auth = match self.auth.as_deref().map(|a| HttpsAuth::parse(cx, a)) {
            None => {
                cx.refuse_given(
                    &login,
                    "has no effect without auth = \"basic\" or \"bearer\"",
                )?;
                None
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(HttpsAuth::Basic)) => Some(HttpAuth::Basic(cx.credentials(LoginKeys {
                username: self.username.as_deref(),
                password_file: self.password_file.as_deref(),
                password_env: self.password_env.as_deref(),
                auth: None,
                auth_mechanism: None,
                oauth2: None,
                delegated_scope: DELEGATED_SCOPE,
            })?)),
            Some(Ok(HttpsAuth::OAuth2)) => {
                cx.refuse_given(
                    &login,
                    "has no effect with auth = \"oauth2\" (the token is the credential)",
                )?;
                Some(HttpAuth::OAuth2(Arc::new(
                    cx.oauth2(self.oauth2.as_ref(), DELEGATED_SCOPE)?,
                )))
            }
            Some(Ok(HttpsAuth::Bearer)) => {
                if self.username.is_some() {
                    return Err(cx.error("username", "a bearer token has no username"));
                }
                Some(HttpAuth::Bearer(cx.password(
                    self.password_file.as_deref(),
                    self.password_env.as_deref(),
                )?))
            }
        };
        Ok(ProbeSpec::Https(Box::new(HttpsSpec {
            url,
            endpoint,
            method,
            body,
            headers,
            expect_status,
            body_match,
            max_body: max_body as usize,
            max_redirects: self.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS),
            auth,
            check,
        })))
    }
}

impl ProtocolSpec for HttpsSpec {
    fn protocol(&self) -> Protocol {
        Protocol::Https
    }

    fn endpoint(&self) -> Option<&Endpoint> {
        Some(&self.endpoint)
    }

    fn secrets(&self) -> Vec<&SecretString> {
        match &self.auth {
            Some(HttpAuth::Basic(c)) => c.secret.static_secrets(),
            Some(HttpAuth::Bearer(t)) => vec![t],
            Some(HttpAuth::OAuth2(o)) => o.secrets(),
            None => vec![],
        }
    }

    fn phases(&self) -> Vec<Phase> {
        let mut p = vec![Phase::Dns, Phase::Connect];
        if self.endpoint.tls != TlsMode::None {
            p.push(Phase::Tls);
        }
        match self.check {
            HttpCheck::Page => p.extend([Phase::Request, Phase::Body]),
            HttpCheck::Jmap => p.extend([Phase::Session, Phase::Api]),
        }
        with_token(matches!(self.auth, Some(HttpAuth::OAuth2(_))), p)
    }

    fn login_phase(&self) -> Option<Phase> {
        // The credentials go with the request, which has no login delay of its own to allow for.
        None
    }

    fn dialogue<'a>(
        &'a self,
        _: &'a Target,
        ctx: &'a ProbeContext,
        rec: &'a mut PhaseRecorder,
    ) -> BoxFuture<'a, Result<(), PhaseError>> {
        Box::pin(super::probe(self, ctx, rec))
    }
}
