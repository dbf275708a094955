//! Small servers that misbehave on purpose, for the failure cases real servers will not play.
//!
//! A [`FaultServer`] accepts on 127.0.0.1:0 and runs a [`Script`] per connection: an optional
//! greeting, then one [`Action`] per line the client sends. It optionally speaks TLS first. It
//! counts what it wrote and notices when the client hangs up, so a test can show that a client
//! stopped reading a hostile stream, or sent nothing more, once it is proven gone
//! ([`FaultServer::hung_up`]) rather than after a guessed pause.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
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
    /// Stop answering but keep the connection open (lines the client still sends are
    /// recorded, never answered).
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
    /// Connections the client ended so far (see [`FaultServer::hung_up`]).
    hangups: Arc<watch::Sender<usize>>,
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
        let hangups = Arc::new(watch::Sender::new(0));
        let (c, b, l, h) = (
            connections.clone(),
            bytes_written.clone(),
            lines.clone(),
            hangups.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let script = script.clone();
                let (b, l, h) = (b.clone(), l.clone(), h.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let end = match tls {
                        None => run_script(tcp, script, b, l).await,
                        Some(cfg) => match tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                            Ok(s) => run_script(s, script, b, l).await,
                            Err(_) => End::Other,
                        },
                    };
                    if let End::ClientHungUp = end {
                        h.send_modify(|n| *n += 1);
                    }
                });
            }
        });
        FaultServer {
            addr,
            connections,
            bytes_written,
            lines,
            hangups,
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

    /// Waits until clients have hung up on `n` connections in all: their end of the stream
    /// seen by a read (EOF, or a reset) or a write refused because they closed. Then every line
    /// they sent is in [`FaultServer::received`] and [`FaultServer::bytes_written`] is final.
    /// Panics after 10 s: a client that never hangs up is the failure under test.
    pub async fn hung_up(&self, n: usize) {
        let mut seen = self.hangups.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|h| *h >= n));
        match waited.await {
            Ok(Ok(_)) => {}
            _ => panic!(
                "the client hung up on {} connection(s) in 10 s, not {n}",
                *self.hangups.borrow()
            ),
        }
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What to do after an action.
enum Next {
    /// Read the next line and answer it.
    Continue,
    /// Read on, answer nothing.
    Silent,
    /// The session is over, this way.
    Stop(End),
}

/// How a session ended.
enum End {
    /// The client closed or reset the connection.
    ClientHungUp,
    /// The script closed it.
    ServerClosed,
    /// Anything else (a failed TLS handshake, another I/O error, 1 GiB sent).
    Other,
}

/// Whether an I/O error says the client is gone: a reset, a write to a connection it closed,
/// or a TLS stream cut without close_notify.
fn client_gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

async fn run_script<S>(
    stream: S,
    script: Script,
    written: Arc<AtomicU64>,
    lines: Arc<Mutex<Vec<String>>>,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    let mut answering = match act(&mut w, script.on_connect.clone(), &written).await {
        Next::Stop(end) => return end,
        Next::Continue => true,
        Next::Silent => false,
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded like any server should be: at most 64 KiB is taken as one line.
        match (&mut r).take(64 * 1024).read_until(b'\n', &mut line).await {
            Ok(0) => return End::ClientHungUp,
            Err(e) if client_gone(&e) => return End::ClientHungUp,
            Err(_) => return End::Other,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        lines.lock().expect("lines lock").push(text.clone());
        if !answering {
            continue;
        }
        let action = (script.on_line)(&text);
        match act(&mut w, action, &written).await {
            Next::Stop(end) => return end,
            Next::Continue => {}
            Next::Silent => answering = false,
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
                    Ok(()) => Next::Continue,
                    Err(end) => Next::Stop(end),
                };
            }
            Action::SendAndClose(bytes) => {
                if let Err(end) = write(w, &bytes, written).await {
                    return Next::Stop(end);
                }
                let _ = w.shutdown().await;
                return Next::Stop(End::ServerClosed);
            }
            Action::Close => {
                let _ = w.shutdown().await;
                return Next::Stop(End::ServerClosed);
            }
            // The connection stays open until the client gives up.
            Action::Hang => return Next::Silent,
            Action::Endless { prefix, chunk } => {
                if let Err(end) = write(w, &prefix, written).await {
                    return Next::Stop(end);
                }
                let mut sent = 0u64;
                while sent < (1 << 30) {
                    if let Err(end) = write(w, &chunk, written).await {
                        return Next::Stop(end);
                    }
                    sent += chunk.len() as u64;
                }
                return Next::Stop(End::Other);
            }
        }
    }
}

/// Writes `bytes` and counts them; a failed write says how the session ended.
async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    written: &AtomicU64,
) -> Result<(), End> {
    let result = match w.write_all(bytes).await {
        Ok(()) => w.flush().await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            written.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            Ok(())
        }
        Err(e) if client_gone(&e) => Err(End::ClientHungUp),
        Err(_) => Err(End::Other),
    }
}
