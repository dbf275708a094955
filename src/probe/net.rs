//! DNS and TCP, timed separately so that a slow resolver is never blamed on the mail server.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::error::ProbeError;

/// A resolver; it never caches, so each probe measures a real lookup.
pub type Resolver = TokioResolver;

/// How a target reaches its host: which name servers to ask.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NetSettings {
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

/// Distinct settings kept at most; past that the set starts afresh (a rebuilt resolver costs
/// microseconds, and reloads with ever new `dns_servers` must not grow it without end).
const MAX_RESOLVERS: usize = 64;

/// The resolvers probes use, one per distinct [`NetSettings`], built when first needed.
pub struct Resolvers {
    built: Mutex<HashMap<NetSettings, Resolver>>,
}

impl Resolvers {
    /// The set, with the system resolver built at once (so a missing resolv.conf is reported
    /// at startup).
    pub fn new() -> Self {
        let default = NetSettings::default();
        let system = build(&default);
        Resolvers {
            built: Mutex::new(HashMap::from([(default, system)])),
        }
    }

    /// The resolver for `net`.
    pub fn get(&self, net: &NetSettings) -> Resolver {
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = built.get(net) {
            return r.clone();
        }
        if built.len() >= MAX_RESOLVERS {
            built.clear();
        }
        let r = build(net);
        built.insert(net.clone(), r.clone());
        r
    }
}

impl Default for Resolvers {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds a resolver for `net`: its `dns_servers` (UDP, TCP when an answer is truncated), or
/// the system's settings and `/etc/hosts`.
///
/// Caching is off (a prober that answers from cache hides DNS outages) and each query is tried
/// once; the probe's own deadline bounds the whole lookup.
fn build(net: &NetSettings) -> Resolver {
    let empty = || {
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], vec![]),
            TokioRuntimeProvider::default(),
        )
    };
    let (mut builder, hosts) = match &net.dns_servers {
        Some(servers) => {
            let servers = servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            let config = ResolverConfig::from_parts(None, vec![], servers);
            let builder =
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
            // The configured servers answer, not the local hosts file.
            (builder, ResolveHosts::Never)
        }
        None => match TokioResolver::builder_tokio() {
            Ok(b) => (b, ResolveHosts::Always),
            Err(e) => {
                // Without resolv.conf there is nothing to ask: names fail, IP literals still work.
                tracing::warn!(error = %e, "cannot read the system DNS configuration; only IP addresses and /etc/hosts will resolve");
                (empty(), ResolveHosts::Always)
            }
        },
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.cache_size = 0;
    opts.attempts = 1;
    opts.use_hosts_file = hosts;
    match builder.build() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the DNS resolver; using an empty one");
            empty()
                .build()
                .expect("a resolver without name servers always builds")
        }
    }
}

/// Resolves `host` to socket addresses; IP literals skip DNS.
pub async fn resolve(
    resolver: &Resolver,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, ProbeError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let lookup = resolver
        .lookup_ip(host)
        .await
        .map_err(|e| dns_error(host, e))?;
    let addrs: Vec<SocketAddr> = lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
    if addrs.is_empty() {
        return Err(ProbeError::NoAddress {
            host: host.to_string(),
        });
    }
    Ok(addrs)
}

fn dns_error(host: &str, e: NetError) -> ProbeError {
    let host = host.to_string();
    match &e {
        NetError::Dns(DnsError::NoRecordsFound(nr))
            if nr.response_code == ResponseCode::NXDomain =>
        {
            ProbeError::NxDomain { host }
        }
        NetError::Dns(DnsError::NoRecordsFound(_)) => ProbeError::NoAddress { host },
        _ => ProbeError::Dns {
            host,
            reason: e.to_string(),
        },
    }
}

/// Connects to the first address that accepts, trying them in order.
pub async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, ProbeError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                // Small request/response exchanges: do not let Nagle add delay to what we measure.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(source) => {
                last = Some(ProbeError::Connect {
                    addr: *addr,
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or(ProbeError::Protocol("no address to connect to".into())))
}

/// A TCP connection before or after TLS (STARTTLS upgrades in place).
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The plain TCP stream, for a STARTTLS upgrade; `None` if already TLS.
    pub fn into_plain(self) -> Option<TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(_) => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
