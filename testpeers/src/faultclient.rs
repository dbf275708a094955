//! HTTP clients that misbehave on purpose, to show that a server bounds what they can hold:
//! connections that say nothing, slowloris (a request head sent a byte at a time and never
//! finished), and clients that stop after the TLS handshake. Shared by the tests and the benchmark.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The start of a request head a slowloris client sends and never finishes: one header line
/// is left open, so every byte dripped after it is still part of the head.
pub const SLOWLORIS_HEAD: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: mailprobe\r\nX-Slow: ";

/// What a held connection does while it waits for the server to close it.
#[derive(Clone, Copy, Debug)]
pub enum Hold {
    /// Nothing at all.
    Silent,
    /// One more byte of an unfinished header value every `0`.
    Drip(Duration),
}

/// Holds `s` open as a misbehaving client would until the server closes it (EOF or a reset),
/// and returns how long that took; an error when it is still open after `within`. Anything the
/// server sends before closing (an error response) is read and ignored.
pub async fn hold_until_closed<S>(
    mut s: S,
    hold: Hold,
    within: Duration,
) -> Result<Duration, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + within;
    let every = match hold {
        Hold::Silent => within * 2,
        Hold::Drip(d) => d,
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Ok(start.elapsed()),
                Ok(_) => {}
            },
            _ = tick.tick(), if matches!(hold, Hold::Drip(_)) => {
                let sent = async {
                    s.write_all(b"a").await?;
                    s.flush().await
                };
                if sent.await.is_err() {
                    return Ok(start.elapsed());
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(format!("still open after {within:?} ({hold:?})"));
            }
        }
    }
}

/// A TCP connection to `addr` (127.0.0.1 or ::1 only) within `within`.
pub async fn connect(addr: SocketAddr, within: Duration) -> Result<TcpStream, String> {
    assert!(
        addr.ip().is_loopback(),
        "fault clients talk to loopback only"
    );
    match tokio::time::timeout(within, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no TCP connection within {within:?}")),
    }
}

/// A slowloris connection: connected, with [`SLOWLORIS_HEAD`] sent.
pub async fn slowloris(addr: SocketAddr, within: Duration) -> Result<TcpStream, String> {
    let mut s = connect(addr, within).await?;
    s.write_all(SLOWLORIS_HEAD)
        .await
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// A TLS connection to `addr` trusting the CA in `ca` (PEM), for the name `localhost`, with
/// the handshake done and nothing else sent.
pub async fn tls_connect(addr: SocketAddr, ca: &Path) -> Result<TlsStream<TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = connect(addr, Duration::from_secs(10)).await?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            ServerName::try_from("localhost").map_err(|e| e.to_string())?,
            tcp,
        )
        .await
        .map_err(|e| e.to_string())
}

/// Reads one HTTP/1.1 response with a `Content-Length` (what the daemon's small endpoints
/// send) from a keep-alive connection: `(status, body)`.
pub async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Result<(u16, String), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err("response head over 64 KiB".into());
        }
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "closed in the response head: {:?}",
                String::from_utf8_lossy(&buf)
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed in the response body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
    Ok((status, body))
}
