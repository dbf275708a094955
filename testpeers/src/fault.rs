//! Small servers that misbehave on purpose, for the failure cases real servers will not play.
//!
//! A [`FaultServer`] accepts on 127.0.0.1:0 and runs a [`Script`] per connection: an optional
//! greeting, then one [`Action`] per line the client sends. It optionally speaks TLS first. It
//! counts what it wrote, so a test can show that a client stopped reading a hostile stream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What to do at a point in the dialogue.
#[derive(Clone, Debug)]
pub enum Action {
    /// Send these bytes and keep reading lines.
    Send(Vec<u8>),
    /// Send these bytes, then close the connection.
    SendAndClose(Vec<u8>),
    /// Close the connection now.
    Close,
    /// Stop answering but keep the connection open.
    Hang,
    /// Send `prefix`, then `chunk` forever (until the client hangs up or 1 GiB is sent).
    Endless {
        /// Sent once.
        prefix: Vec<u8>,
        /// Repeated.
        chunk: Vec<u8>,
    },
    /// Wait, then do the inner action.
    Delay(Duration, Box<Action>),
}

impl Action {
    /// `Send` of a string.
    pub fn send(s: impl Into<String>) -> Action {
        Action::Send(s.into().into_bytes())
    }
}

type Responder = Arc<dyn Fn(&str) -> Action + Send + Sync>;

/// A dialogue: what to do on connect, and how to answer each line.
#[derive(Clone)]
pub struct Script {
    /// Done right after accepting (and the TLS handshake, if any).
    pub on_connect: Action,
    /// Called with each line the client sends (without CRLF).
    pub on_line: Responder,
}

impl Script {
    /// Greets with `on_connect`, answers every line with `on_line`.
    pub fn new(
        on_connect: Action,
        on_line: impl Fn(&str) -> Action + Send + Sync + 'static,
    ) -> Self {
        Script {
            on_connect,
            on_line: Arc::new(on_line),
        }
    }

    /// Does `on_connect` and then ignores whatever the client says.
    pub fn just(on_connect: Action) -> Self {
        Script::new(on_connect, |_| Action::Hang)
    }
}

/// A running fault server; stops accepting when dropped.
pub struct FaultServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Bytes written to clients so far.
    pub bytes_written: Arc<AtomicU64>,
    /// Lines received, in order, across connections.
    pub lines: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl FaultServer {
    /// Starts a plain TCP fault server on 127.0.0.1:0.
    pub async fn start(script: Script) -> FaultServer {
        Self::start_inner(script, None).await
    }

    /// Starts one that does a TLS handshake with `tls` before the script.
    pub async fn start_tls(script: Script, tls: Arc<ServerConfig>) -> FaultServer {
        Self::start_inner(script, Some(tls)).await
    }

    async fn start_inner(script: Script, tls: Option<Arc<ServerConfig>>) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fault server");
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let bytes_written = Arc::new(AtomicU64::new(0));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (c, b, l) = (connections.clone(), bytes_written.clone(), lines.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let script = script.clone();
                let (b, l) = (b.clone(), l.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => run_script(tcp, script, b, l).await,
                        Some(cfg) => {
                            if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                                run_script(s, script, b, l).await;
                            }
                        }
                    }
                });
            }
        });
        FaultServer {
            addr,
            connections,
            bytes_written,
            lines,
            task,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Lines received so far.
    pub fn received(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Next {
    Continue,
    Stop,
}

async fn run_script<S>(
    stream: S,
    script: Script,
    written: Arc<AtomicU64>,
    lines: Arc<Mutex<Vec<String>>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    if let Next::Stop = act(&mut w, script.on_connect.clone(), &written).await {
        return;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded like any server should be: a line over 64 KiB ends the session.
        match (&mut r).take(64 * 1024).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        lines.lock().expect("lines lock").push(text.clone());
        let action = (script.on_line)(&text);
        if let Next::Stop = act(&mut w, action, &written).await {
            return;
        }
    }
}

async fn act<W: AsyncWrite + Unpin>(w: &mut W, action: Action, written: &AtomicU64) -> Next {
    let mut action = action;
    loop {
        match action {
            Action::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                action = *inner;
            }
            Action::Send(bytes) => {
                return match write(w, &bytes, written).await {
                    true => Next::Continue,
                    false => Next::Stop,
                };
            }
            Action::SendAndClose(bytes) => {
                write(w, &bytes, written).await;
                let _ = w.shutdown().await;
                return Next::Stop;
            }
            Action::Close => {
                let _ = w.shutdown().await;
                return Next::Stop;
            }
            Action::Hang => {
                // Keep the connection open until the client gives up.
                std::future::pending::<()>().await;
            }
            Action::Endless { prefix, chunk } => {
                if !write(w, &prefix, written).await {
                    return Next::Stop;
                }
                let mut sent = 0u64;
                while sent < (1 << 30) {
                    if !write(w, &chunk, written).await {
                        return Next::Stop;
                    }
                    sent += chunk.len() as u64;
                }
                return Next::Stop;
            }
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8], written: &AtomicU64) -> bool {
    if w.write_all(bytes).await.is_err() || w.flush().await.is_err() {
        return false;
    }
    written.fetch_add(bytes.len() as u64, Ordering::SeqCst);
    true
}
