//! `[prometheus]`: where an instance with `[global] source = "prometheus"` reads its targets'
//! health from (a Prometheus-compatible query API: Prometheus, Thanos, Mimir,
//! VictoriaMetrics), how it signs in, and how the locations vote.
//!
//! Secrets are read like a target's (`password_file`/`password_env`, `bearer_token_file`/
//! `bearer_token_env`, systemd credentials) and never leave a [`SecretString`]; the CA file
//! like a target's `ca_file`.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use secrecy::SecretString;
use serde::Deserialize;

use crate::config::{ConfigError, KeyPath, LoadState, Locator, TargetCx};
use crate::hash::Fnv64;

/// Where the instance's data comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// It probes its `[[target]]`s itself (the default).
    #[default]
    Probes,
    /// It probes nothing and reads every location's results from `[prometheus]`.
    Prometheus,
}

/// How the query API is signed in to.
#[derive(Clone, Debug)]
pub enum QueryAuth {
    /// HTTP basic auth.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: SecretString,
    },
    /// `Authorization: Bearer ...`.
    Bearer(SecretString),
}

/// `[prometheus]`, checked.
#[derive(Clone, Debug)]
pub struct PrometheusSettings {
    /// The API's base URL (`http://prometheus:9090`; `/api/v1/query` is appended).
    pub url: reqwest::Url,
    /// Sign-in, if any.
    pub auth: Option<QueryAuth>,
    /// Roots to verify an `https` URL against (`ca_file`, or the system's).
    pub verifier: Option<Arc<WebPkiServerVerifier>>,
    /// Time between two reads.
    pub interval: Duration,
    /// Deadline of one read (all its queries).
    pub timeout: Duration,
    /// Largest response body accepted from one query.
    pub max_response_bytes: u64,
    /// The label the scrape config puts the vantage point in.
    pub location_label: String,
    /// Extra label matchers for every query (`job="mailprobe"`), without braces.
    pub selector: String,
    /// Locations that must agree; `None`: a majority of those reporting a target.
    pub quorum: Option<usize>,
    /// Share of its targets a location must see down to be suspected blind.
    pub blind_share: f64,
    /// Targets a location must report before it can be called blind.
    pub blind_min_targets: usize,
    /// A target no location has reported for this long leaves the timeline.
    pub forget_after: Duration,
}

/// `[prometheus]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrometheus {
    url: Option<String>,
    username: Option<String>,
    password_file: Option<String>,
    password_env: Option<String>,
    bearer_token_file: Option<String>,
    bearer_token_env: Option<String>,
    ca_file: Option<String>,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    max_response_bytes: Option<u64>,
    location_label: Option<String>,
    selector: Option<String>,
    quorum: Option<usize>,
    blind_share: Option<String>,
    blind_min_targets: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    forget_after: Option<Duration>,
}

const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// 64 MiB: 10,000 targets × 3 locations answer in about 6 MiB.
const DEFAULT_MAX_RESPONSE: u64 = 64 << 20;
const MAX_MAX_RESPONSE: u64 = 1 << 30;

/// Checks `[prometheus]` (required with `source = "prometheus"`, refused without).
pub(super) fn prometheus(
    loc: &Locator<'_>,
    load: &mut LoadState,
    source: Source,
    raw: Option<RawPrometheus>,
) -> Result<Option<PrometheusSettings>, ConfigError> {
    let path = KeyPath::table("prometheus");
    let raw = match (source, raw) {
        (Source::Probes, None) => return Ok(None),
        (Source::Probes, Some(_)) => {
            return Err(loc.error(
                &path,
                "[prometheus] is read only with [global] source = \"prometheus\"",
            ));
        }
        (Source::Prometheus, None) => {
            return Err(loc.error(
                &KeyPath::table("global").key("source"),
                "source = \"prometheus\" needs a [prometheus] table with its url",
            ));
        }
        (Source::Prometheus, Some(r)) => r,
    };
    let url_text = raw
        .url
        .as_deref()
        .ok_or_else(|| loc.error(&path.key("url"), "missing: the query API's base URL"))?;
    let url = reqwest::Url::parse(url_text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            loc.error(
                &path.key("url"),
                format!("{url_text:?} is not an http(s) URL such as \"http://127.0.0.1:9090\""),
            )
        })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(loc.error(
            &path.key("url"),
            "credentials do not belong in the URL: use username with password_file",
        ));
    }
    let mut cx = TargetCx::new(loc, path.clone(), load, Fnv64::default());
    let password = cx.read_secret(
        &path,
        ("password_file", raw.password_file.as_deref()),
        ("password_env", raw.password_env.as_deref()),
    )?;
    let bearer = cx.read_secret(
        &path,
        ("bearer_token_file", raw.bearer_token_file.as_deref()),
        ("bearer_token_env", raw.bearer_token_env.as_deref()),
    )?;
    let auth = match (raw.username, password, bearer) {
        (None, None, None) => None,
        (Some(username), Some(password), None) => Some(QueryAuth::Basic { username, password }),
        (None, None, Some(token)) => Some(QueryAuth::Bearer(token)),
        (Some(_), None, _) => {
            return Err(loc.error(
                &path.key("password_file"),
                "missing: username needs password_file or password_env",
            ));
        }
        (None, Some(_), _) => {
            return Err(loc.error(
                &path.key("username"),
                "missing: a password needs a username",
            ));
        }
        (Some(_), Some(_), Some(_)) => {
            return Err(loc.error(
                &path.key("bearer_token_file"),
                "give either basic auth (username, password) or a bearer token, not both",
            ));
        }
    };
    let verifier = match (&raw.ca_file, url.scheme()) {
        (Some(f), "https") => Some(cx.ca_verifier(&path.key("ca_file"), f)?),
        (Some(_), _) => {
            return Err(loc.error(&path.key("ca_file"), "applies only to an https url"));
        }
        (None, "https") => Some(cx.system_verifier(&path.key("url"))?),
        (None, _) => None,
    };
    let interval = raw.interval.unwrap_or(DEFAULT_INTERVAL);
    let timeout = raw.timeout.unwrap_or(DEFAULT_TIMEOUT);
    if interval < Duration::from_secs(1) {
        return Err(loc.error(&path.key("interval"), "must be at least 1s"));
    }
    if timeout.is_zero() || timeout > interval {
        return Err(loc.error(
            &path.key("timeout"),
            format!(
                "must be above 0 and at most the interval ({})",
                humantime::format_duration(interval)
            ),
        ));
    }
    let max_response_bytes = raw.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE);
    if !(1024..=MAX_MAX_RESPONSE).contains(&max_response_bytes) {
        return Err(loc.error(
            &path.key("max_response_bytes"),
            format!("must be between 1024 and {MAX_MAX_RESPONSE}"),
        ));
    }
    let location_label = raw.location_label.unwrap_or_else(|| "location".into());
    if location_label.is_empty()
        || !location_label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || location_label.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(loc.error(
            &path.key("location_label"),
            format!("{location_label:?} is not a Prometheus label name"),
        ));
    }
    let selector = raw.selector.unwrap_or_default();
    if selector.contains(['{', '}']) {
        return Err(loc.error(
            &path.key("selector"),
            "label matchers without braces, such as job=\"mailprobe\"",
        ));
    }
    if raw.quorum == Some(0) {
        return Err(loc.error(&path.key("quorum"), "must be at least 1"));
    }
    let blind_share = match raw.blind_share.as_deref() {
        None => 0.9,
        Some(s) => s
            .trim_end_matches('%')
            .parse::<f64>()
            .ok()
            .map(|v| if s.ends_with('%') { v / 100.0 } else { v })
            .filter(|v| *v > 0.5 && *v <= 1.0)
            .ok_or_else(|| {
                loc.error(
                    &path.key("blind_share"),
                    format!("{s:?} is not a share above half such as \"90%\""),
                )
            })?,
    };
    Ok(Some(PrometheusSettings {
        url,
        auth,
        verifier,
        interval,
        timeout,
        max_response_bytes,
        location_label,
        selector,
        quorum: raw.quorum,
        blind_share,
        blind_min_targets: raw.blind_min_targets.unwrap_or(2),
        forget_after: raw.forget_after.unwrap_or(Duration::from_secs(3600)),
    }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A directory of this test's own under the system temp directory.
    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("mailprobe-prom-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn parse(dir: &Path, text: &str) -> Result<crate::load::Config, String> {
        crate::load::parse(&dir.join("status.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_status_instance_reads_prometheus_with_a_secret_that_is_never_shown() {
        let dir = dir("secret");
        std::fs::write(dir.join("token"), "s3cret-token\n").unwrap();
        let c = parse(
            &dir,
            "[global]\nsource = \"prometheus\"\n[prometheus]\nurl = \"http://127.0.0.1:9090/\"\n\
             bearer_token_file = \"token\"\nquorum = 2\nblind_share = \"80%\"\n",
        )
        .unwrap();
        assert!(c.targets.is_empty());
        let p = c.prometheus.unwrap();
        assert_eq!(p.quorum, Some(2));
        assert!((p.blind_share - 0.8).abs() < 1e-9);
        match &p.auth {
            Some(QueryAuth::Bearer(t)) => {
                use secrecy::ExposeSecret;
                assert_eq!(t.expose_secret(), "s3cret-token");
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{p:?}").contains("s3cret"));
    }

    #[test]
    fn what_a_status_instance_refuses() {
        let dir = dir("refused");
        let e = parse(&dir, "[global]\nsource = \"prometheus\"\n").unwrap_err();
        assert!(e.contains("needs a [prometheus] table"), "{e}");
        let e = parse(
            &dir,
            "[global]\nsource = \"prometheus\"\n[prometheus]\nurl = \"http://u:p@127.0.0.1:9090\"\n",
        )
        .unwrap_err();
        assert!(e.contains("credentials do not belong in the URL"), "{e}");
        assert!(!e.contains("u:p@"), "{e}");
        let e = parse(
            &dir,
            "[global]\nsource = \"prometheus\"\n[prometheus]\nurl = \"http://127.0.0.1:9090\"\nusername = \"a\"\n",
        )
        .unwrap_err();
        assert!(e.contains("username needs password_file"), "{e}");
        let e = parse(
            &dir,
            "[global]\nsource = \"prometheus\"\n[prometheus]\nurl = \"http://127.0.0.1:9090\"\n\
             [[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\n",
        )
        .unwrap_err();
        assert!(e.contains("probes nothing"), "{e}");
        let e = parse(&dir, "[prometheus]\nurl = \"http://127.0.0.1:9090\"\n").unwrap_err();
        assert!(e.contains("only with [global] source"), "{e}");
    }
}
