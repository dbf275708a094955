//! DNS and TCP, timed separately so that a slow resolver is never blamed on the mail server.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::error::ProbeError;

/// The resolver every probe shares; it never caches, so each probe measures a real lookup.
pub type Resolver = TokioResolver;

/// Builds the shared resolver from `/etc/resolv.conf` and `/etc/hosts`.
///
/// Caching is off (a prober that answers from cache hides DNS outages) and each query is tried
/// once; the probe's own deadline bounds the whole lookup.
pub fn system_resolver() -> Resolver {
    let mut builder = match TokioResolver::builder_tokio() {
        Ok(b) => b,
        Err(e) => {
            // Without resolv.conf there is nothing to ask: names fail, IP literals still work.
            tracing::warn!(error = %e, "cannot read the system DNS configuration; only IP addresses and /etc/hosts will resolve");
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], vec![]),
                TokioRuntimeProvider::default(),
            )
        }
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.cache_size = 0;
    opts.attempts = 1;
    opts.use_hosts_file = ResolveHosts::Always;
    match builder.build() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the DNS resolver from system settings; using an empty one");
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], vec![]),
                TokioRuntimeProvider::default(),
            )
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
