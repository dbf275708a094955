//! DNS and TCP, timed separately so that a slow resolver is never blamed on the mail server.
//!
//! A host may have several addresses in two families. [`connect`] follows RFC 8305 (Happy
//! Eyeballs v2): the families alternate, each attempt gets [`CONNECTION_ATTEMPT_DELAY`] alone
//! before the next address is tried alongside it (at once when it fails), the first connection
//! wins and the others are dropped. A dead IPv6 path therefore costs a quarter second, not the
//! probe. `ip_protocol = "ip4"` or `"ip6"` probes one family on purpose, so that an outage of
//! that family alone is seen.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::error::ProbeError;
use crate::config::{IpProtocol, NetSettings};

/// A resolver; it never caches, so each probe measures a real lookup.
pub type Resolver = TokioResolver;

/// The address family a connection used: the `family` label, and what the detail names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl IpFamily {
    /// The family of `addr`.
    pub fn of(addr: &SocketAddr) -> IpFamily {
        match addr {
            SocketAddr::V4(_) => IpFamily::Ipv4,
            SocketAddr::V6(_) => IpFamily::Ipv6,
        }
    }

    /// The label value: `ipv4` or `ipv6`.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::Ipv4 => "ipv4",
            IpFamily::Ipv6 => "ipv6",
        }
    }

    /// As people write it: `IPv4`, `IPv6`.
    pub fn name(self) -> &'static str {
        match self {
            IpFamily::Ipv4 => "IPv4",
            IpFamily::Ipv6 => "IPv6",
        }
    }
}

/// Which records the resolver asks for under `ip_protocol`.
fn strategy(ip_protocol: IpProtocol) -> LookupIpStrategy {
    match ip_protocol {
        // Both queries at once, AAAA first in the answer (the RFC 6724 default order).
        IpProtocol::Any => LookupIpStrategy::Ipv6AndIpv4,
        IpProtocol::Ip4 => LookupIpStrategy::Ipv4Only,
        IpProtocol::Ip6 => LookupIpStrategy::Ipv6Only,
    }
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
        let mut built = crate::sync::lock(&self.built);
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
    opts.ip_strategy = strategy(net.ip_protocol);
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

/// Resolves `host` to socket addresses of the families `ip_protocol` allows; IP literals skip
/// DNS.
pub async fn resolve(
    resolver: &Resolver,
    host: &str,
    port: u16,
    ip_protocol: IpProtocol,
) -> Result<Vec<SocketAddr>, ProbeError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        // The config refuses such a target; an HTTP redirect may still name one.
        if !ip_protocol.allows(ip) {
            return Err(ProbeError::Dns {
                host: host.to_string(),
                reason: format!(
                    "an address of the wrong family for ip_protocol = \"{}\"",
                    ip_protocol.as_str()
                ),
                os_error: None,
            });
        }
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let lookup = resolver
        .lookup_ip(host)
        .await
        .map_err(|e| dns_error(host, e))?;
    let addrs: Vec<SocketAddr> = lookup
        .iter()
        .filter(|ip| ip_protocol.allows(*ip))
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    if addrs.is_empty() {
        return Err(ProbeError::NoAddress {
            host: host.to_string(),
        });
    }
    Ok(addrs)
}

pub(crate) fn dns_error(host: &str, e: NetError) -> ProbeError {
    let host = host.to_string();
    match &e {
        NetError::Dns(DnsError::NoRecordsFound(nr))
            if nr.response_code == ResponseCode::NXDomain =>
        {
            ProbeError::NxDomain { host }
        }
        NetError::Dns(DnsError::NoRecordsFound(_)) => ProbeError::NoAddress { host },
        // hickory keeps the socket's own error: EMFILE at the resolver is ours, not DNS's.
        NetError::Io(io) => ProbeError::Dns {
            host,
            reason: e.to_string(),
            os_error: io.raw_os_error(),
        },
        _ => ProbeError::Dns {
            host,
            reason: e.to_string(),
            os_error: None,
        },
    }
}

/// How long an attempt runs alone before the next address is tried alongside it: RFC 8305's
/// recommended Connection Attempt Delay.
pub const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Addresses tried at most per connection (the first ones in RFC 8305 order), so a name with
/// dozens of dead addresses cannot hold dozens of sockets per probe.
pub const MAX_ATTEMPTS: usize = 8;

/// Attempts a failure's detail names one by one; the rest are counted.
const NAMED_ATTEMPTS: usize = 4;

/// Connects to `addrs` as RFC 8305 says (see the module doc), giving up at `deadline`; returns
/// the stream and the address that took it.
///
/// When every attempt fails, the error names each address tried with what it did, and carries
/// the most telling failure intact for [`crate::probe::classify`].
pub async fn connect(
    addrs: &[SocketAddr],
    deadline: Option<Instant>,
) -> Result<(TcpStream, SocketAddr), ProbeError> {
    let order = interleave(addrs);
    let (stream, addr) = race(
        &order[..order.len().min(MAX_ATTEMPTS)],
        order.len().saturating_sub(MAX_ATTEMPTS),
        CONNECTION_ATTEMPT_DELAY,
        deadline,
        TcpStream::connect,
    )
    .await?;
    // Small request/response exchanges: do not let Nagle add delay to what we measure.
    let _ = stream.set_nodelay(true);
    Ok((stream, addr))
}

/// RFC 8305 section 4: the families alternate, starting with the family of the first address
/// (the resolver puts AAAA first); within a family the resolver's order stays. Repeats go.
pub fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for a in addrs {
        if !unique.contains(a) {
            unique.push(*a);
        }
    }
    let Some(first) = unique.first().map(IpFamily::of) else {
        return unique;
    };
    let (mut lead, mut other): (Vec<_>, Vec<_>) = (Vec::new(), Vec::new());
    for a in unique {
        if IpFamily::of(&a) == first {
            lead.push(a);
        } else {
            other.push(a);
        }
    }
    let mut out = Vec::with_capacity(lead.len() + other.len());
    let (mut lead, mut other) = (lead.into_iter(), other.into_iter());
    loop {
        match (lead.next(), other.next()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

/// What became of one address.
#[derive(Debug)]
enum Attempt {
    /// Started at this instant; no answer yet.
    Running(Instant),
    /// Failed with this error.
    Failed(io::Error),
}

/// Races connection attempts to `order` (already sorted), starting one every `delay` or when
/// the previous one fails, until one succeeds, all fail, or `deadline` passes. `skipped`
/// addresses were left out before the race (for the detail).
async fn race<S, F, Fut>(
    order: &[SocketAddr],
    skipped: usize,
    delay: Duration,
    deadline: Option<Instant>,
    connect: F,
) -> Result<(S, SocketAddr), ProbeError>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = io::Result<S>>,
{
    let mut attempts: Vec<Attempt> = Vec::with_capacity(order.len());
    let mut running = FuturesUnordered::new();
    let mut next_start = Instant::now();
    let expired = |now: Instant| deadline.is_some_and(|d| now >= d);
    loop {
        let now = Instant::now();
        if attempts.len() < order.len()
            && (running.is_empty() || now >= next_start)
            && !expired(now)
        {
            let i = attempts.len();
            attempts.push(Attempt::Running(now));
            let attempt = connect(order[i]);
            running.push(async move { (i, attempt.await) });
            next_start = now + delay;
            continue;
        }
        if running.is_empty() {
            break;
        }
        let more = attempts.len() < order.len();
        tokio::select! {
            Some((i, result)) = running.next() => match result {
                Ok(stream) => return Ok((stream, order[i])),
                Err(e) => {
                    attempts[i] = Attempt::Failed(e);
                    // A failed attempt hands over at once.
                    next_start = Instant::now();
                }
            },
            () = tokio::time::sleep_until(next_start), if more => {}
            () = sleep_until_deadline(deadline) => break,
        }
    }
    Err(failure(order, attempts, skipped))
}

async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// How much a failed attempt tells about the target, most first: the host answered (refused),
/// nothing answered, the network said there is no way there, or a local error that says
/// nothing about the target (no IPv6 on this host, no free port, no file descriptor).
fn weight(attempt: &Attempt) -> u8 {
    match attempt {
        Attempt::Running(_) => 1,
        Attempt::Failed(e) => match e.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => 0,
            io::ErrorKind::TimedOut => 1,
            io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => 2,
            _ => 3,
        },
    }
}

/// The error for a race nobody won: the most telling attempt (the earliest among equals)
/// decides the class and is named first, then the others in the order tried.
fn failure(order: &[SocketAddr], attempts: Vec<Attempt>, skipped: usize) -> ProbeError {
    let Some(decisive) = attempts
        .iter()
        .enumerate()
        .min_by_key(|(_, a)| weight(a))
        .map(|(i, _)| i)
    else {
        return ProbeError::Timeout;
    };
    let now = Instant::now();
    let line = |addr: SocketAddr, a: &Attempt| match a {
        Attempt::Running(started) => format!(
            "connect to {addr}: no answer within {:.1} s",
            now.duration_since(*started).as_secs_f64()
        ),
        Attempt::Failed(e) => format!("connect to {addr}: {e}"),
    };
    let mut tried = vec![line(order[decisive], &attempts[decisive])];
    for (i, a) in attempts.iter().enumerate() {
        if i != decisive && tried.len() < NAMED_ATTEMPTS {
            tried.push(line(order[i], a));
        }
    }
    let unnamed = attempts.len() - tried.len();
    let untried = order.len() - attempts.len() + skipped;
    if unnamed > 0 {
        tried.push(format!("{unnamed} more tried"));
    }
    if untried > 0 {
        tried.push(format!("{untried} more not tried"));
    }
    let addr = order[decisive];
    let decisive = match attempts.into_iter().nth(decisive) {
        Some(Attempt::Failed(source)) => ProbeError::Connect { addr, source },
        _ => ProbeError::Timeout,
    };
    ProbeError::ConnectFailed {
        decisive: Box::new(decisive),
        tried,
    }
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

#[cfg(test)]
mod tests;
