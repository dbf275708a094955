//! An MX target (`protocol = "mx"`): its keys, their defaults and checks, and the spec the probe
//! runs.
//!
//! Keys besides every target's: `domain` (required: the mail domain whose MX records are
//! probed), `port` (25; tests and relays on other ports set it), `max_hosts` (5: how many MX
//! hosts, best preference first, are probed and have series), `require` (`"preferred"`: a host
//! of the best preference must accept; `"any"`: any MX host accepting is enough), `ehlo_name`
//! (this machine's host name), `ca_file` (the roots a certificate is checked against, the
//! system's by default; a failed check is reported, never failed), `ip_protocol`,
//! `dns_servers`.

use futures::future::BoxFuture;
use secrecy::SecretString;
use serde::Deserialize;

use crate::config::common::check_host;
use crate::config::{ConfigError, Endpoint, EndpointKeys, IpProtocol, Ports, TargetCx, TlsMode};
use crate::probe::registry::{ProbeSpec, Protocol, Target};
use crate::probe::smtp::spec::default_ehlo_name;
use crate::probe::spec::{ProtocolSpec, SpecTable, Targets};
use crate::probe::{Phase, PhaseError, PhaseRecorder, ProbeContext};

/// MX hosts probed by default.
pub const DEFAULT_MAX_HOSTS: usize = 5;
/// The most MX hosts a target may probe: each has its own series.
pub const MAX_MAX_HOSTS: usize = 10;

/// SMTP between MTAs is port 25 (RFC 5321 section 4.5.4.2), STARTTLS when offered.
const PORTS: Ports = Ports {
    implicit: 25,
    starttls: 25,
    plain: 25,
};

/// When the domain counts as accepting mail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// A host of the best (lowest) preference accepts: mail is not left to a backup MX, which
    /// often only queues it.
    #[default]
    Preferred,
    /// Any MX host accepts: senders fall back to it (RFC 5321 section 5.1), so mail is not
    /// bounced, though a backup may hold it.
    Any,
}

impl Require {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Require::Preferred => "preferred",
            Require::Any => "any",
        }
    }
}

/// What an MX probe does.
#[derive(Clone, Debug)]
pub struct MxSpec {
    /// The mail domain, as configured (no trailing dot).
    pub domain: String,
    /// Port, TLS roots (checked, not enforced) and resolver of every MX host; its `host` is the
    /// domain.
    pub endpoint: Endpoint,
    /// MX hosts probed at most, best preference first.
    pub max_hosts: usize,
    /// When the domain counts as accepting mail.
    pub require: Require,
    /// The name sent in EHLO.
    pub ehlo_name: String,
}

/// The keys of an MX target, as written.
#[derive(Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct MxTable {
    domain: Option<String>,
    port: Option<u16>,
    max_hosts: Option<usize>,
    require: Option<Require>,
    ehlo_name: Option<String>,
    ca_file: Option<String>,
    dns_servers: Option<Vec<String>>,
    ip_protocol: Option<IpProtocol>,
}

impl SpecTable for MxTable {
    fn build(self, cx: &mut TargetCx<'_>, _: &Targets) -> Result<ProbeSpec, ConfigError> {
        let domain = self.domain.as_deref().ok_or_else(|| {
            cx.error("domain", "missing: the mail domain whose MX hosts to probe")
        })?;
        let domain = domain.strip_suffix('.').unwrap_or(domain).to_string();
        check_host(&domain).map_err(|m| cx.error("domain", m))?;
        if domain.parse::<std::net::IpAddr>().is_ok() || !domain.contains('.') {
            return Err(cx.error(
                "domain",
                format!("{domain:?} is not a mail domain such as \"example.com\""),
            ));
        }
        let endpoint = cx.endpoint(
            EndpointKeys {
                host: Some(&domain),
                port: self.port,
                tls: Some(TlsMode::Starttls),
                // Opportunistic STARTTLS, as sending MTAs use it (RFC 3207, RFC 7435).
                allow_plaintext: Some(true),
                ca_file: self.ca_file.as_deref(),
                server_name: None,
                dns_servers: self.dns_servers.as_deref(),
                ip_protocol: self.ip_protocol,
                host_from_url: false,
            },
            TlsMode::Starttls,
            PORTS,
        )?;
        let max_hosts = self.max_hosts.unwrap_or(DEFAULT_MAX_HOSTS);
        if !(1..=MAX_MAX_HOSTS).contains(&max_hosts) {
            return Err(cx.error(
                "max_hosts",
                format!("must be 1-{MAX_MAX_HOSTS} (each host probed has series of its own)"),
            ));
        }
        let ehlo_name = match &self.ehlo_name {
            Some(n) => {
                check_host(n).map_err(|m| cx.error("ehlo_name", m))?;
                n.clone()
            }
            None => default_ehlo_name(),
        };
        Ok(ProbeSpec::Mx(Box::new(MxSpec {
            domain,
            endpoint,
            max_hosts,
            require: self.require.unwrap_or_default(),
            ehlo_name,
        })))
    }
}

impl ProtocolSpec for MxSpec {
    fn protocol(&self) -> Protocol {
        Protocol::Mx
    }

    fn endpoint(&self) -> Option<&Endpoint> {
        Some(&self.endpoint)
    }

    fn secrets(&self) -> Vec<&SecretString> {
        Vec::new()
    }

    fn phases(&self) -> Vec<Phase> {
        // The MX lookup, then the deciding host's session (its own address lookup is a second
        // `dns`, summed with the first).
        vec![
            Phase::Dns,
            Phase::Connect,
            Phase::Greeting,
            Phase::Ehlo,
            Phase::Starttls,
            Phase::Tls,
            Phase::EhloTls,
            Phase::Quit,
        ]
    }

    fn login_phase(&self) -> Option<Phase> {
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
