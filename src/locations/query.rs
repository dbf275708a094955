//! Reading every location's target health from a Prometheus-compatible query API
//! (`/api/v1/query`): two instant queries per read, each answer bounded in size, the whole
//! read bounded in time. Credentials go in headers only and never into an error or a log line.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use thiserror::Error;

use super::combine::Report;
use crate::incidents::Health;
use crate::load::{PrometheusSettings, QueryAuth};
use crate::probe::Phase;
use crate::probe::Protocol;
use crate::probe::classify::FailureClass;

use secrecy::ExposeSecret;

/// Why a read gave nothing to go by.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// No answer: connection refused, DNS, TLS, reset.
    #[error("query API unreachable: {0}")]
    Unreachable(String),
    /// No complete answer within the read's deadline.
    #[error("query API did not answer within {0:?}")]
    Timeout(Duration),
    /// An HTTP status other than 200 (the API's own error text, shortened, when it gave one).
    #[error("query API answered HTTP {status}: {text}")]
    Status {
        /// The status code.
        status: u16,
        /// The API's `error` field or the start of the body.
        text: String,
    },
    /// The body is larger than `max_response_bytes`.
    #[error("query API answer larger than {0} bytes (raise [prometheus] max_response_bytes)")]
    TooLarge(u64),
    /// Not the JSON a query API answers with.
    #[error("query API answer not understood: {0}")]
    Malformed(String),
}

/// One read: what every location reports, and how long it took.
#[derive(Debug)]
pub struct Read {
    /// One report per location and target.
    pub reports: Vec<Report>,
    /// Series that could not be used (an unknown protocol or state, a missing label).
    pub skipped: usize,
    /// Time for both queries.
    pub took: Duration,
    /// Bytes received.
    pub bytes: usize,
}

/// A client for one `[prometheus]` table.
pub struct Client {
    http: reqwest::Client,
    settings: std::sync::Arc<PrometheusSettings>,
    endpoint: reqwest::Url,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    metric: HashMap<String, String>,
}

impl Client {
    /// A client for `settings` (TLS roots from `ca_file` or the system's for an https URL).
    pub fn new(settings: std::sync::Arc<PrometheusSettings>) -> Result<Client, QueryError> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("mailprobe/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(v) = &settings.verifier {
            let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| QueryError::Unreachable(format!("TLS setup: {e}")))?
            .with_webpki_verifier(v.clone())
            .with_no_client_auth();
            builder = builder.use_preconfigured_tls(tls);
        }
        let http = builder
            .build()
            .map_err(|e| QueryError::Unreachable(format!("cannot build the HTTP client: {e}")))?;
        let mut endpoint = settings.url.clone();
        let path = format!("{}/api/v1/query", endpoint.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        Ok(Client {
            http,
            settings,
            endpoint,
        })
    }

    /// The PromQL of both queries (also for the docs and tests).
    pub fn queries(&self) -> (String, String) {
        let s = &self.settings;
        let loc = &s.location_label;
        let mut sel = format!("{loc}!=\"\"");
        if !s.selector.trim().is_empty() {
            sel.push(',');
            sel.push_str(s.selector.trim());
        }
        (
            format!(
                "max by ({loc}, target, region, protocol, state) (mailprobe_target_state{{{sel}}} == 1)"
            ),
            format!("max by ({loc}, target, class, phase) (mailprobe_probe_failure_info{{{sel}}})"),
        )
    }

    /// Reads every location's state of every target, within the configured timeout.
    pub async fn read(&self) -> Result<Read, QueryError> {
        let started = Instant::now();
        let deadline = self.settings.timeout;
        let (states_q, failures_q) = self.queries();
        let both = async {
            let (a, b) = tokio::join!(self.query(&states_q), self.query(&failures_q));
            Ok::<_, QueryError>((a?, b?))
        };
        let ((states, n1), (failures, n2)) = tokio::time::timeout(deadline, both)
            .await
            .map_err(|_| QueryError::Timeout(deadline))??;
        let loc = &self.settings.location_label;
        let mut why: HashMap<(String, String), (FailureClass, Phase)> = HashMap::new();
        for s in failures {
            let m = s.metric;
            let (Some(l), Some(t), Some(c), Some(p)) =
                (m.get(loc), m.get("target"), m.get("class"), m.get("phase"))
            else {
                continue;
            };
            let class = label::<FailureClass>(c).unwrap_or(FailureClass::Unrecognized);
            if let Some(phase) = label::<Phase>(p) {
                why.insert((l.clone(), t.clone()), (class, phase));
            }
        }
        let mut reports = Vec::with_capacity(states.len());
        let mut skipped = 0;
        for s in states {
            let mut m = s.metric;
            let (Some(location), Some(target), Some(region), Some(protocol), Some(state)) = (
                m.remove(loc),
                m.remove("target"),
                m.remove("region"),
                m.get("protocol").and_then(|p| label::<Protocol>(p)),
                m.get("state").and_then(|s| Health::parse(s)),
            ) else {
                skipped += 1;
                continue;
            };
            let failure = why.remove(&(location.clone(), target.clone()));
            reports.push(Report {
                location,
                target,
                region,
                protocol,
                health: state,
                failure,
            });
        }
        Ok(Read {
            reports,
            skipped,
            took: started.elapsed(),
            bytes: n1 + n2,
        })
    }

    async fn query(&self, promql: &str) -> Result<(Vec<Sample>, usize), QueryError> {
        let mut req = self
            .http
            .post(self.endpoint.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("query", promql)]);
        req = match &self.settings.auth {
            None => req,
            Some(QueryAuth::Basic { username, password }) => {
                req.basic_auth(username, Some(password.expose_secret()))
            }
            Some(QueryAuth::Bearer(token)) => req.bearer_auth(token.expose_secret()),
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let limit = self.settings.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(QueryError::TooLarge(limit));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(QueryError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        let n = body.len();
        let answer: Result<Answer, _> = serde_json::from_slice(&body);
        if !status.is_success() {
            let text = match answer {
                Ok(Answer { error: Some(e), .. }) => e,
                _ => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            };
            return Err(QueryError::Status {
                status: status.as_u16(),
                text: shorten(&text),
            });
        }
        let answer = answer.map_err(|e| QueryError::Malformed(e.to_string()))?;
        match answer {
            Answer {
                data: Some(data), ..
            } if answer.status == "success" && data.result_type == "vector" => Ok((data.result, n)),
            Answer { error: Some(e), .. } => Err(QueryError::Malformed(shorten(&e))),
            _ => Err(QueryError::Malformed(
                "not a successful instant vector".into(),
            )),
        }
    }
}

/// A label value read as the enum it names (its serde name), `None` for one this build does not
/// know (a newer prober).
fn label<T: serde::de::DeserializeOwned>(v: &str) -> Option<T> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(v)).ok()
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(200).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// A transport error in words: reqwest's text names the URL (which holds no credentials: the
/// loader refuses them there), never a header.
fn transport(e: reqwest::Error) -> QueryError {
    if e.is_timeout() {
        return QueryError::Unreachable(format!("timed out: {e}"));
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    QueryError::Unreachable(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_read_by_their_serde_names() {
        assert_eq!(label::<Protocol>("imap"), Some(Protocol::Imap));
        assert_eq!(label::<Protocol>("carrier-pigeon"), None);
        assert_eq!(
            label::<FailureClass>("connect_refused"),
            Some(FailureClass::ConnectRefused)
        );
        assert_eq!(label::<Phase>("ehlo_tls"), Some(Phase::EhloTls));
    }
}
