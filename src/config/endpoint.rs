//! Where and how a target connects: host and port, TLS mode and trust, address families and
//! name servers. Shared by every protocol that speaks over TCP, and the one cached CA reader
//! that targets and OAuth2 token endpoints share.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use serde::Deserialize;

use crate::hash::Fnv64;
use crate::tls::TlsClient;

use super::common::check_host;
use super::error::ConfigError;
use super::locate::{KeyPath, Locator};
use super::secrets::{MAX_PEM_BYTES, read_bounded};
use super::target::TargetCx;

/// Name servers asked at most (`dns_servers`).
const MAX_DNS_SERVERS: usize = 8;

/// How TLS is used on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465, HTTPS).
    Implicit,
    /// Plaintext greeting, then STARTTLS.
    Starttls,
    /// No TLS at all; only with `allow_plaintext = true`.
    None,
}

impl TlsMode {
    /// The config spelling, for summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Implicit => "implicit",
            TlsMode::Starttls => "starttls",
            TlsMode::None => "none",
        }
    }
}

/// Which address families a target is probed over: `ip_protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpProtocol {
    /// A and AAAA; connect as RFC 8305 does, whichever family answers first (IPv6 tried first).
    #[default]
    Any,
    /// A records and IPv4 only: an IPv4 outage fails the probe whatever IPv6 does.
    Ip4,
    /// AAAA records and IPv6 only: an IPv6 outage fails the probe whatever IPv4 does.
    Ip6,
}

impl IpProtocol {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            IpProtocol::Any => "any",
            IpProtocol::Ip4 => "ip4",
            IpProtocol::Ip6 => "ip6",
        }
    }

    /// Whether an address of `ip`'s family may be used.
    pub fn allows(self, ip: IpAddr) -> bool {
        match self {
            IpProtocol::Any => true,
            IpProtocol::Ip4 => ip.is_ipv4(),
            IpProtocol::Ip6 => ip.is_ipv6(),
        }
    }
}

/// How a target reaches its host: which families, and which name servers to ask.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NetSettings {
    /// `ip_protocol`: the families resolved and connected to.
    pub ip_protocol: IpProtocol,
    /// `dns_servers`: name servers asked instead of the system's (`None`: `/etc/resolv.conf`
    /// and `/etc/hosts`).
    pub dns_servers: Option<Arc<[SocketAddr]>>,
}

/// Parses a `dns_servers` entry: an IP address with an optional port (53 by default).
pub fn parse_dns_server(entry: &str) -> Result<SocketAddr, String> {
    // "[2001:db8::53]" without a port is an IPv6 address too.
    let bare = entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .unwrap_or(entry);
    let server = match entry.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => match bare.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, 53),
            Err(_) => {
                let shown: String = entry.chars().take(60).collect();
                let more = if entry.chars().count() > 60 {
                    "…"
                } else {
                    ""
                };
                return Err(format!(
                    "{shown:?}{more} is not a name server address such as \"192.0.2.53\", \
                     \"192.0.2.53:5353\" or \"[2001:db8::53]:53\" (an IP address, not a name)"
                ));
            }
        },
    };
    if server.port() == 0 {
        return Err(format!("{entry}: the port must be 1-65535"));
    }
    Ok(server)
}

/// `dns_servers` at `key`: IP addresses with an optional port (53 by default), no names, no
/// repeats, at most eight.
pub fn dns_servers(
    loc: &Locator<'_>,
    key: &KeyPath,
    list: &[String],
) -> Result<Arc<[SocketAddr]>, ConfigError> {
    if list.is_empty() {
        return Err(loc.error(
            key,
            "is empty: leave it out to use the system's resolver (/etc/resolv.conf)",
        ));
    }
    if list.len() > MAX_DNS_SERVERS {
        return Err(loc.error(
            key,
            format!(
                "has {} entries; at most {MAX_DNS_SERVERS} are asked",
                list.len()
            ),
        ));
    }
    let mut servers: Vec<SocketAddr> = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let item = key.index(i);
        let server = parse_dns_server(entry).map_err(|m| loc.error(&item, m))?;
        if servers.contains(&server) {
            return Err(loc.error(&item, format!("{server} is listed twice")));
        }
        servers.push(server);
    }
    Ok(servers.into())
}

/// Where and how to connect: shared by every protocol that speaks over TCP.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// DNS name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// With `tls = "starttls"`: carry on in plaintext when STARTTLS is not offered.
    pub allow_plaintext: bool,
    /// The TLS client (roots, verification name); `None` when `tls = "none"`.
    pub tls_client: Option<Arc<TlsClient>>,
    /// The address families and name servers for `host`.
    pub net: NetSettings,
}

/// Default ports of a protocol by TLS mode.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// With `tls = "implicit"`.
    pub implicit: u16,
    /// With `tls = "starttls"`.
    pub starttls: u16,
    /// With `tls = "none"`.
    pub plain: u16,
}

/// A target's endpoint keys as written (each protocol's table has them under these names).
#[derive(Clone, Copy, Debug, Default)]
pub struct EndpointKeys<'a> {
    /// `host`.
    pub host: Option<&'a str>,
    /// `port`.
    pub port: Option<u16>,
    /// `tls`.
    pub tls: Option<TlsMode>,
    /// `allow_plaintext`.
    pub allow_plaintext: Option<bool>,
    /// `ca_file`.
    pub ca_file: Option<&'a str>,
    /// `server_name`.
    pub server_name: Option<&'a str>,
    /// `dns_servers`.
    pub dns_servers: Option<&'a [String]>,
    /// `ip_protocol`.
    pub ip_protocol: Option<IpProtocol>,
    /// The host came from the `url` key (HTTPS), which errors about its family then name.
    pub host_from_url: bool,
}

/// A CA file's contents and their hash (what target fingerprints take in).
pub(super) struct CaFile {
    pem: Vec<u8>,
    hash: u64,
}

impl TargetCx<'_> {
    /// The endpoint of `keys`: `default_tls` when `tls` is not set, a port from `ports` when
    /// `port` is not set; TLS roots and the verification name checked now.
    pub fn endpoint(
        &mut self,
        keys: EndpointKeys<'_>,
        default_tls: TlsMode,
        ports: Ports,
    ) -> Result<Endpoint, ConfigError> {
        let host = keys
            .host
            .ok_or_else(|| self.error("host", "missing: the server to probe"))?
            .to_string();
        check_host(&host).map_err(|m| self.error("host", m))?;
        let tls = keys.tls.unwrap_or(default_tls);
        let allow_plaintext = keys.allow_plaintext.unwrap_or(false);
        match (tls, allow_plaintext) {
            (TlsMode::None, false) => {
                return Err(self.error(
                    "tls",
                    "tls = \"none\" sends the password in clear text; set allow_plaintext = true \
                     if that is really wanted",
                ));
            }
            (TlsMode::Implicit, true) => {
                return Err(self.error(
                    "allow_plaintext",
                    "applies only with tls = \"none\" or \"starttls\" (continue without TLS when \
                     STARTTLS is not offered)",
                ));
            }
            _ => {}
        }
        let port = keys.port.unwrap_or(match tls {
            TlsMode::Implicit => ports.implicit,
            TlsMode::Starttls => ports.starttls,
            TlsMode::None => ports.plain,
        });
        if port == 0 {
            return Err(self.error("port", "must be 1-65535"));
        }
        let tls_client = if tls == TlsMode::None {
            self.refuse_given(
                &["ca_file", "server_name"],
                "has no effect with tls = \"none\"",
            )?;
            None
        } else {
            let server_name = keys.server_name.unwrap_or(&host);
            let verifier = match keys.ca_file {
                Some(file) => self.ca_verifier(&self.key("ca_file"), file)?,
                None => self.system_verifier(&self.key("tls"))?,
            };
            let client = TlsClient::new(verifier, server_name).map_err(|m| {
                let key = if keys.server_name.is_some() {
                    "server_name"
                } else {
                    "host"
                };
                self.error(key, m)
            })?;
            Some(Arc::new(client))
        };
        let net = self.net_settings(&keys, &host)?;
        net.hash(&mut self.fp);
        Ok(Endpoint {
            host,
            port,
            tls,
            allow_plaintext,
            tls_client,
            net,
        })
    }

    /// A target's network settings: its own keys, else `[global]`'s.
    fn net_settings(
        &self,
        keys: &EndpointKeys<'_>,
        host: &str,
    ) -> Result<NetSettings, ConfigError> {
        let dns_servers = match keys.dns_servers {
            Some(list) => {
                let key = self.key("dns_servers");
                if host.parse::<IpAddr>().is_ok() {
                    return Err(self.loc.error(
                        &key,
                        "has no effect: the host is an IP address, nothing is looked up",
                    ));
                }
                Some(dns_servers(self.loc, &key, list)?)
            }
            None => self.load.net.dns_servers.clone(),
        };
        let ip_protocol = keys.ip_protocol.unwrap_or(self.load.net.ip_protocol);
        if let Ok(ip) = host.parse::<IpAddr>()
            && !ip_protocol.allows(ip)
        {
            let (key, from) = match (keys.ip_protocol, keys.host_from_url) {
                (Some(_), _) => ("ip_protocol", ""),
                (None, true) => ("url", " (from [global])"),
                (None, false) => ("host", " (from [global])"),
            };
            let family = if ip.is_ipv4() { "an IPv4" } else { "an IPv6" };
            return Err(self.error(
                key,
                format!(
                    "the host {ip} is {family} address, which ip_protocol = \"{}\"{from} never \
                     connects to",
                    ip_protocol.as_str()
                ),
            ));
        }
        Ok(NetSettings {
            ip_protocol,
            dns_servers,
        })
    }

    /// Roots from the CA file `file` named at `key`, read once per load and hashed into the
    /// fingerprint (its hash, not its bytes: byte by byte for every target, that was a
    /// twentieth of the startup time at 10,000 targets).
    pub fn ca_verifier(
        &mut self,
        key: &KeyPath,
        file: &str,
    ) -> Result<Arc<WebPkiServerVerifier>, ConfigError> {
        let file = self.resolve_path(file);
        if !self.load.ca_files.contains_key(&file) {
            let pem = read_bounded(&file, MAX_PEM_BYTES).map_err(|e| {
                self.loc
                    .error(key, format!("cannot read {}: {e}", file.display()))
            })?;
            let mut hash = Fnv64::default();
            pem.hash(&mut hash);
            let hash = hash.finish();
            self.load
                .ca_files
                .insert(file.clone(), CaFile { pem, hash });
        }
        let ca = &self.load.ca_files[&file];
        ca.hash.hash(&mut self.fp);
        self.load
            .roots
            .from_pem(&file, &ca.pem)
            .map_err(|m| self.loc.error(key, m))
    }

    /// The system's roots; a failure to load them is reported at `key`.
    pub fn system_verifier(
        &mut self,
        key: &KeyPath,
    ) -> Result<Arc<WebPkiServerVerifier>, ConfigError> {
        self.load.roots.system().map_err(|m| self.loc.error(key, m))
    }
}
