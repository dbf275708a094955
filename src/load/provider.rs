//! `[[provider]]`: the provider status feeds polled beside our probes (Microsoft 365 service
//! health, the Google Workspace Status Dashboard, any Atlassian Statuspage), checked into
//! [`ProviderSpec`]s. Errors name file, line, column and key like the rest of the loader.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::config::common::{MAX_INTERVAL, MIN_INTERVAL, check_label};
use crate::config::oauth2::RawOAuth2;
use crate::config::{ConfigError, KeyPath, LoadState, Locator, TargetCx};
use crate::hash::Fnv64;
use crate::provider::{Kind, ProviderSpec};

/// Between two polls when `interval` is not set: providers update their pages every few
/// minutes, and Graph throttles tenants that ask much more often.
pub const DEFAULT_PROVIDER_INTERVAL: Duration = Duration::from_secs(300);
/// One poll's deadline when `timeout` is not set (token, request and body together).
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes of one answer read: Google's feed holds a year of incidents.
pub const MAX_FEED_BYTES: usize = 16 * 1024 * 1024;

/// One `[[provider]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    name: Option<String>,
    kind: Kind,
    url: Option<String>,
    services: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    ca_file: Option<String>,
    oauth2: Option<RawOAuth2>,
}

/// Checks every `[[provider]]`.
pub(super) fn providers(
    loc: &Locator<'_>,
    state: &mut LoadState,
    raw: Vec<RawProvider>,
) -> Result<Vec<Arc<ProviderSpec>>, ConfigError> {
    let mut out: Vec<Arc<ProviderSpec>> = Vec::with_capacity(raw.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, p) in raw.into_iter().enumerate() {
        let path = KeyPath::table("provider").index(i);
        let spec = provider(loc, state, &path, p)?;
        if let Some(first) = names.insert(spec.name.clone(), i) {
            return Err(loc.error(
                &path.key("name"),
                format!(
                    "duplicate provider name {:?} (first used by provider[{}]); give each a \
                     name of its own",
                    spec.name,
                    first + 1
                ),
            ));
        }
        out.push(Arc::new(spec));
    }
    Ok(out)
}

fn provider(
    loc: &Locator<'_>,
    state: &mut LoadState,
    path: &KeyPath,
    p: RawProvider,
) -> Result<ProviderSpec, ConfigError> {
    let name = p
        .name
        .clone()
        .unwrap_or_else(|| p.kind.as_str().to_string());
    check_label(&name).map_err(|m| loc.error(&path.key("name"), m))?;
    let url = match (&p.url, p.kind.default_url()) {
        (Some(u), _) => u.clone(),
        (None, Some(d)) => d.to_string(),
        (None, None) => {
            return Err(loc.error(
                &path.key("url"),
                "missing: the Statuspage's address, e.g. \"https://status.example.com\"",
            ));
        }
    };
    let mut url = url::Url::parse(&url)
        .map_err(|e| loc.error(&path.key("url"), format!("{url:?} is not a URL: {e}")))?;
    if url.scheme() != "https" {
        return Err(loc.error(&path.key("url"), "must be https://"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(loc.error(&path.key("url"), "the base URL takes no query or fragment"));
    }
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    let services = match p.services {
        Some(s) => {
            if let Some(bad) = s.iter().find(|s| s.trim().is_empty() || s.len() > 128) {
                return Err(loc.error(
                    &path.key("services"),
                    format!("{bad:?}: a service name is 1-128 characters"),
                ));
            }
            s
        }
        None => p
            .kind
            .default_services()
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let interval = p.interval.unwrap_or(DEFAULT_PROVIDER_INTERVAL);
    if interval < MIN_INTERVAL {
        return Err(loc.error(&path.key("interval"), "must be at least 1s"));
    }
    if interval > MAX_INTERVAL {
        return Err(loc.error(&path.key("interval"), "must be at most 24h"));
    }
    let timeout = p.timeout.unwrap_or(DEFAULT_PROVIDER_TIMEOUT.min(interval));
    if timeout.is_zero() {
        return Err(loc.error(&path.key("timeout"), "must be greater than zero"));
    }
    if timeout > interval {
        return Err(loc.error(
            &path.key("timeout"),
            format!(
                "timeout ({}) must not exceed the interval ({}): polls of one provider never \
                 overlap",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            ),
        ));
    }
    let mut cx = TargetCx::new(loc, path.clone(), state, Fnv64::default());
    let oauth2 = match (p.kind, &p.oauth2) {
        (Kind::Microsoft, None) => {
            return Err(loc.error(
                &path.key("oauth2"),
                "missing: kind = \"microsoft\" reads Graph service health with an application \
                 token: add [provider.oauth2] (provider = \"microsoft\", tenant, client_id and \
                 a client secret or certificate; permission ServiceHealth.Read.All)",
            ));
        }
        (Kind::Microsoft, Some(o)) => {
            let mut spec = cx.oauth2(
                Some(o),
                "https://graph.microsoft.com/ServiceHealth.Read.All",
            )?;
            let given = loc
                .keys_of(&path.key("oauth2"))
                .iter()
                .any(|(k, _)| k == "scopes");
            if !given && matches!(spec.grant, crate::config::oauth2::Grant::ClientCredentials) {
                // The preset's `.default` is Exchange Online's resource; service health is
                // Graph's. A different resource is a different token: a different cache key.
                spec.scopes = vec!["https://graph.microsoft.com/.default".into()];
                spec.key = format!("{}-graph", spec.key);
            }
            Some(spec)
        }
        (_, Some(_)) => {
            return Err(loc.error(
                &path.key("oauth2"),
                format!(
                    "does not apply to kind = \"{}\": its feed is public",
                    p.kind.as_str()
                ),
            ));
        }
        (_, None) => None,
    };
    let verifier = match &p.ca_file {
        Some(f) => cx.ca_verifier(&path.key("ca_file"), f)?,
        None => cx.system_verifier(&path.key("url"))?,
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| loc.error(path, format!("TLS setup: {e}")))?
    .with_webpki_verifier(verifier)
    .with_no_client_auth();
    Ok(ProviderSpec {
        name,
        kind: p.kind,
        url,
        services,
        interval,
        timeout,
        max_body: MAX_FEED_BYTES,
        tls: Arc::new(tls),
        oauth2,
    })
}

/// Checks a target's `provider` key: a `[[provider]]` name, or a kind (`microsoft`,
/// `google`), which a preset would also infer from the host name.
pub(super) fn check_target_provider(
    value: &str,
    providers: &[Arc<ProviderSpec>],
) -> Result<(), String> {
    if providers.iter().any(|p| p.designated_by(value))
        || Kind::ALL.iter().any(|k| k.as_str() == value)
    {
        return Ok(());
    }
    let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    Err(format!(
        "no [[provider]] named {value:?} (known: {}; or a kind: microsoft, google, statuspage)",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const TARGET: &str = "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\n\
                          username = \"u\"\npassword_env = \"HOME\"\n";

    fn err(providers: &str) -> String {
        crate::load::parse(Path::new("probes.toml"), &format!("{TARGET}{providers}"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn provider_errors_name_line_column_and_key() {
        assert_eq!(
            err("[[provider]]\nkind = \"yahoo\"\n"),
            "probes.toml:8:8: provider[1].kind: unknown variant `yahoo`, expected one of \
             `microsoft`, `google`, `statuspage`"
        );
        assert_eq!(
            err("[[provider]]\nkind = \"statuspage\"\n"),
            "probes.toml:7:1: provider[1].url: missing: the Statuspage's address, e.g. \
             \"https://status.example.com\""
        );
        assert_eq!(
            err("[[provider]]\nkind = \"google\"\nurl = \"http://www.google.com/\"\n"),
            "probes.toml:9:1: provider[1].url: must be https://"
        );
        let e = err("[[provider]]\nkind = \"microsoft\"\n");
        assert!(
            e.starts_with("probes.toml:7:1: provider[1].oauth2: missing: kind = \"microsoft\""),
            "{e}"
        );
        assert!(e.contains("ServiceHealth.Read.All"), "{e}");
        assert_eq!(
            err("[[provider]]\nkind = \"google\"\n[provider.oauth2]\nclient_id = \"x\"\n"),
            "probes.toml:9:11: provider[1].oauth2: does not apply to kind = \"google\": its feed \
             is public"
        );
        assert_eq!(
            err("[[provider]]\nkind = \"google\"\ninterval = \"1m\"\ntimeout = \"2m\"\n"),
            "probes.toml:10:1: provider[1].timeout: timeout (2m) must not exceed the interval \
             (1m): polls of one provider never overlap"
        );
        assert_eq!(
            err("[[provider]]\nkind = \"google\"\n[[provider]]\nkind = \"google\"\n"),
            "probes.toml:9:1: provider[2].name: duplicate provider name \"google\" (first used \
             by provider[1]); give each a name of its own"
        );
        assert_eq!(
            err("[[provider]]\nkind = \"google\"\nservice = [\"Gmail\"]\n"),
            "probes.toml:9:1: provider[1].service: unknown key; did you mean `services`?"
        );
    }

    #[test]
    fn a_microsoft_provider_asks_graph_for_its_token() {
        let cfg = crate::load::parse(
            Path::new("probes.toml"),
            &format!(
                "{TARGET}[[provider]]\nkind = \"microsoft\"\n[provider.oauth2]\n\
                 provider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\n\
                 client_id = \"app\"\nclient_secret_env = \"HOME\"\n"
            ),
        )
        .unwrap();
        let p = &cfg.providers[0];
        assert_eq!(
            (p.name.as_str(), p.url.as_str()),
            ("microsoft", "https://graph.microsoft.com/")
        );
        assert_eq!(p.services, ["Exchange Online"]);
        let o = p.oauth2.as_ref().unwrap();
        assert_eq!(o.scopes, ["https://graph.microsoft.com/.default"]);
        assert_eq!(
            o.token_url.as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(p.interval, super::DEFAULT_PROVIDER_INTERVAL);
    }

    #[test]
    fn graph_next_pages_are_followed_only_on_graph_itself() {
        let cfg = crate::load::parse(
            Path::new("probes.toml"),
            &format!(
                "{TARGET}[[provider]]\nkind = \"microsoft\"\n[provider.oauth2]\n\
                 provider = \"microsoft\"\ntenant = \"t\"\nclient_id = \"app\"\n\
                 client_secret_env = \"HOME\"\n"
            ),
        )
        .unwrap();
        let p = &cfg.providers[0];
        let page = |next: &str| serde_json::json!({"value": [], "@odata.nextLink": next});
        let same = "https://graph.microsoft.com/v1.0/admin/serviceAnnouncement/issues?$skiptoken=x";
        assert_eq!(
            crate::provider::microsoft::next_link(p, &page(same)).map(String::from),
            Some(same.to_string())
        );
        // The bearer token is never sent to another host.
        assert!(
            crate::provider::microsoft::next_link(p, &page("https://evil.test/issues")).is_none()
        );
        assert!(
            crate::provider::microsoft::next_link(p, &page("http://graph.microsoft.com/x"))
                .is_none()
        );
    }

    #[test]
    fn a_statuspage_component_down_without_an_incident_is_an_issue() {
        let cfg = crate::load::parse(
            Path::new("probes.toml"),
            &format!(
                "{TARGET}[[provider]]\nname = \"mail\"\nkind = \"statuspage\"\n\
                 url = \"https://status.example.test\"\nservices = [\"IMAP\", \"SMTP\"]\n"
            ),
        )
        .unwrap();
        let p = &cfg.providers[0];
        let incidents = serde_json::json!({"incidents": [
            {"id": "i1", "name": "Web slow", "status": "investigating", "impact": "minor",
             "created_at": "2026-11-30T09:00:00.000-06:00", "components": [{"name": "Webmail"}],
             "incident_updates": []}
        ]});
        let components = serde_json::json!({"components": [
            {"id": "c1", "name": "IMAP", "status": "partial_outage", "updated_at": "2026-11-30T09:05:00Z", "group": false},
            {"id": "c2", "name": "SMTP", "status": "operational", "group": false},
            {"id": "c3", "name": "Webmail", "status": "major_outage", "group": false}
        ]});
        let issues = crate::provider::statuspage::parse(
            p,
            &incidents,
            &components,
            std::time::SystemTime::now(),
        )
        .unwrap();
        // The Webmail incident and component are not watched; IMAP's component is down.
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].id, "component:c1");
        assert_eq!(issues[0].title, "IMAP: partial_outage");
        assert_eq!(issues[0].classification, "partial_outage");
        let e = crate::provider::statuspage::parse(
            p,
            &serde_json::json!({"page": {}}),
            &components,
            std::time::SystemTime::now(),
        )
        .unwrap_err();
        assert_eq!(e, "no \"incidents\" array");
    }
}
