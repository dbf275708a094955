//! A real HTTP/1.1 client (hyper) for scraping `/metrics` and driving blackbox_exporter.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Empty<Bytes>>,
}

impl Conn {
    /// Connects to `addr` (127.0.0.1 only in this benchmark).
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "the benchmark talks to loopback only"
        );
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { addr, sender })
    }

    /// GETs `path` and returns the status and the whole body.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Bytes)> {
        self.get_as(path, None).await
    }

    /// GETs `path` with Basic credentials (`user:password`), if any.
    pub async fn get_as(
        &mut self,
        path: &str,
        basic: Option<&str>,
    ) -> anyhow::Result<(u16, Bytes)> {
        use base64::Engine;
        self.sender.ready().await?;
        let mut req = hyper::Request::get(path).header(hyper::header::HOST, self.addr.to_string());
        if let Some(pair) = basic {
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            req = req.header(hyper::header::AUTHORIZATION, format!("Basic {encoded}"));
        }
        let req = req.body(Empty::<Bytes>::new())?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// A scrape as Prometheus does it on a new connection: time from connect to the last body byte.
pub async fn scrape(addr: SocketAddr, path: &str) -> anyhow::Result<(Duration, Bytes)> {
    let start = Instant::now();
    let mut c = Conn::open(addr).await?;
    let (status, body) = c.get(path).await?;
    let took = start.elapsed();
    if status != 200 {
        bail!("GET {path} answered {status}");
    }
    Ok((took, body))
}

/// A scrape as Prometheus does it, with Basic credentials (`user:password`) if any, given up
/// after `timeout` (Prometheus' default `scrape_timeout` is 10 s): the time from connect to the
/// last body byte, or why it failed.
pub async fn scrape_as(
    addr: SocketAddr,
    path: &str,
    basic: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(Duration, Bytes)> {
    let start = Instant::now();
    let get = async {
        let mut c = Conn::open(addr).await?;
        c.get_as(path, basic).await
    };
    let (status, body) = tokio::time::timeout(timeout, get)
        .await
        .map_err(|_| anyhow::anyhow!("GET {path}: no answer within {timeout:?}"))??;
    if status != 200 {
        bail!("GET {path} answered {status}");
    }
    Ok((start.elapsed(), body))
}
