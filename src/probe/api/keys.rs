//! The keys every mail API target (Graph, Gmail) reads the same way: `mailbox`, `base_url`,
//! `max_body` and the endpoint's TLS and network keys.

use crate::config::{ConfigError, Endpoint, EndpointKeys, IpProtocol, Ports, TargetCx, TlsMode};

const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const MAX_MAX_BODY: u64 = 16 * 1024 * 1024;
const PORTS: Ports = Ports {
    implicit: 443,
    starttls: 443,
    plain: 80,
};

/// The parts of a mail API target every API protocol (Graph, Gmail) reads the same way.
pub struct ApiKeys<'a> {
    /// `base_url` as written.
    pub base_url: Option<&'a str>,
    /// The default base URL.
    pub default_base: &'a str,
    /// `mailbox`.
    pub mailbox: Option<&'a str>,
    /// `max_body`.
    pub max_body: Option<u64>,
    /// `ca_file`.
    pub ca_file: Option<&'a str>,
    /// `server_name`.
    pub server_name: Option<&'a str>,
    /// `dns_servers`.
    pub dns_servers: Option<&'a [String]>,
    /// `ip_protocol`.
    pub ip_protocol: Option<IpProtocol>,
}

/// What [`api_keys`] makes of them.
pub struct ApiTarget {
    /// The base URL.
    pub base: url::Url,
    /// Its endpoint.
    pub endpoint: Endpoint,
    /// The mailbox.
    pub mailbox: String,
    /// The body bound.
    pub max_body: usize,
}

/// Reads and checks the keys every mail API target has.
pub fn api_keys(cx: &mut TargetCx<'_>, keys: ApiKeys<'_>) -> Result<ApiTarget, ConfigError> {
    let mailbox = keys
        .mailbox
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| cx.error("mailbox", "missing: the mailbox (user) to probe"))?;
    if mailbox.contains(['/', '?', '#']) || mailbox.chars().any(char::is_control) {
        return Err(cx.error(
            "mailbox",
            format!("{mailbox:?} is not a user principal name or id"),
        ));
    }
    let raw = keys.base_url.unwrap_or(keys.default_base);
    let base = url::Url::parse(raw)
        .map_err(|e| cx.error("base_url", format!("{raw:?} is not a URL: {e}")))?;
    if base.scheme() != "https" {
        return Err(cx.error(
            "base_url",
            "must be https:// (the bearer token must not travel in clear)",
        ));
    }
    if !base.username().is_empty() || base.password().is_some() || base.query().is_some() {
        return Err(cx.error("base_url", "must have no credentials and no query"));
    }
    let host = match base.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(cx.error("base_url", "the URL has no host")),
    };
    let endpoint = cx.endpoint(
        EndpointKeys {
            host: Some(&host),
            port: base.port_or_known_default(),
            tls: Some(TlsMode::Implicit),
            allow_plaintext: None,
            ca_file: keys.ca_file,
            server_name: keys.server_name,
            dns_servers: keys.dns_servers,
            ip_protocol: keys.ip_protocol,
            host_from_url: true,
        },
        TlsMode::Implicit,
        PORTS,
    )?;
    let max_body = keys.max_body.unwrap_or(DEFAULT_MAX_BODY);
    if !(1024..=MAX_MAX_BODY).contains(&max_body) {
        return Err(cx.error("max_body", "must be between 1024 and 16777216 (16 MiB)"));
    }
    Ok(ApiTarget {
        base,
        endpoint,
        mailbox: mailbox.to_string(),
        max_body: max_body as usize,
    })
}
