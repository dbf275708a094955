//! A small IMAP responder for the 10,000-target and bias runs: greeting (after an exact delay),
//! CAPABILITY, STARTTLS (optional), LOGIN, SELECT, NOOP, LOGOUT, on a few 127.0.0.1 ports.
//!
//! It runs on its own runtime so its work is never charged to the program measured, and it
//! records per connection when it accepted, when its greeting was written and which user
//! logged in (the benchmark makes the user the target name), so schedule jitter and the
//! prober's greeting measurement can be checked from the server's side.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// How to run the responder.
#[derive(Clone)]
pub struct Options {
    /// Number of ports to listen on (many targets share each).
    pub ports: usize,
    /// Time from accept to the greeting written; zero greets at once.
    pub greeting_delay: Duration,
    /// Offer STARTTLS with this server config; `None` offers none.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// What the server saw of one connection that logged in.
#[derive(Clone, Debug)]
pub struct Record {
    /// The LOGIN user (the benchmark's target name).
    pub user: String,
    /// Wall-clock accept time.
    pub accepted_unix: Duration,
    /// Monotonic accept time.
    pub accepted: Instant,
    /// Monotonic time the greeting write returned.
    pub greeted: Instant,
}

/// Counters and records, shared with the benchmark driver.
#[derive(Default)]
pub struct Stats {
    records: Mutex<Vec<Record>>,
    /// Accept to LOGOUT of every session that logged out: the probe as the server saw it.
    sessions: Mutex<Vec<Duration>>,
    open: AtomicUsize,
    max_open: AtomicUsize,
}

impl Stats {
    /// Takes the records gathered so far.
    pub fn take(&self) -> Vec<Record> {
        std::mem::take(&mut *self.records.lock().expect("records lock"))
    }

    /// Takes the session durations (accept to LOGOUT) gathered so far.
    pub fn take_sessions(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.sessions.lock().expect("sessions lock"))
    }

    /// Most connections open at once since the last call; resets it.
    pub fn take_max_open(&self) -> usize {
        self.max_open
            .swap(self.open.load(Ordering::Relaxed), Ordering::Relaxed)
    }
}

/// A running responder; stops when dropped.
pub struct Responder {
    /// The ports it listens on, all on 127.0.0.1.
    pub ports: Vec<u16>,
    /// What it saw.
    pub stats: Arc<Stats>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Responder {
    /// Binds the ports and starts serving on a runtime of its own (two worker threads).
    pub fn start(opts: Options) -> anyhow::Result<Responder> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("imapd")
            .enable_all()
            .build()?;
        let stats = Arc::new(Stats::default());
        let timer = Timer::start();
        let shared = Arc::new(Shared {
            opts: opts.clone(),
            stats: stats.clone(),
            timer,
            acceptor: opts.tls.clone().map(tokio_rustls::TlsAcceptor::from),
        });
        let mut ports = Vec::new();
        for _ in 0..opts.ports {
            // Bound with std so that starting works from inside another runtime, too.
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.set_nonblocking(true)?;
            ports.push(listener.local_addr()?.port());
            let shared = shared.clone();
            rt.spawn(async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => accept_loop(l, shared).await,
                    Err(e) => eprintln!("imapd: cannot listen: {e}"),
                }
            });
        }
        Ok(Responder {
            ports,
            stats,
            rt: Some(rt),
        })
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

struct Shared {
    opts: Options,
    stats: Arc<Stats>,
    timer: Timer,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let accepted = Instant::now();
        let accepted_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let shared = shared.clone();
        tokio::spawn(async move {
            let s = &shared.stats;
            let open = s.open.fetch_add(1, Ordering::Relaxed) + 1;
            s.max_open.fetch_max(open, Ordering::Relaxed);
            let _ = tcp.set_nodelay(true);
            serve(tcp, accepted, accepted_unix, &shared).await;
            s.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Where a session goes next.
enum Next {
    Starttls,
    Done,
}

struct Conn {
    accepted: Instant,
    accepted_unix: Duration,
    greeted: Instant,
}

async fn serve(mut tcp: TcpStream, accepted: Instant, accepted_unix: Duration, shared: &Shared) {
    let delay = shared.opts.greeting_delay;
    let caps = if shared.acceptor.is_some() {
        "IMAP4rev1 STARTTLS AUTH=PLAIN"
    } else {
        "IMAP4rev1 AUTH=PLAIN"
    };
    let greeting = format!("* OK [CAPABILITY {caps}] bench-imapd ready.\r\n");
    let greeted = if delay.is_zero() {
        if tcp.write_all(greeting.as_bytes()).await.is_err() {
            return;
        }
        Instant::now()
    } else {
        // The timer thread writes the greeting itself, on a duplicate of the socket, the
        // moment the deadline passes: no task wake-up between the deadline and the write.
        let Ok(std) = tcp.into_std() else { return };
        let Ok(dup) = std.try_clone() else { return };
        let Some(greeted) = shared
            .timer
            .write_at(accepted + delay, dup, greeting.into_bytes())
            .await
        else {
            return;
        };
        let Ok(back) = TcpStream::from_std(std) else {
            return;
        };
        tcp = back;
        greeted
    };
    let conn = Conn {
        accepted,
        accepted_unix,
        greeted,
    };
    let mut plain = BufReader::new(tcp);
    match session(&mut plain, &conn, shared, caps, true).await {
        Next::Done => {}
        Next::Starttls => {
            let Some(acceptor) = &shared.acceptor else {
                return;
            };
            // Anything pipelined after STARTTLS is dropped with the plain buffer.
            let tcp = plain.into_inner();
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut tls = BufReader::new(tls);
            session(&mut tls, &conn, shared, "IMAP4rev1 AUTH=PLAIN", false).await;
        }
    }
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    conn: &Conn,
    shared: &Shared,
    caps: &str,
    plain: bool,
) -> Next {
    let mut line = String::new();
    loop {
        line.clear();
        match io.read_line(&mut line).await {
            Ok(0) | Err(_) => return Next::Done,
            Ok(_) if line.len() > 8192 => return Next::Done,
            Ok(_) => {}
        }
        let text = line.trim_end();
        let (tag, rest) = text.split_once(' ').unwrap_or((text, ""));
        let (cmd, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let reply = match cmd.to_ascii_uppercase().as_str() {
            "CAPABILITY" => format!("* CAPABILITY {caps}\r\n{tag} OK Capability completed.\r\n"),
            "NOOP" => format!("{tag} OK NOOP completed.\r\n"),
            "STARTTLS" if plain && shared.acceptor.is_some() => {
                let ok = format!("{tag} OK Begin TLS negotiation now.\r\n");
                if io.get_mut().write_all(ok.as_bytes()).await.is_err() {
                    return Next::Done;
                }
                return Next::Starttls;
            }
            "LOGIN" => {
                shared
                    .stats
                    .records
                    .lock()
                    .expect("records lock")
                    .push(Record {
                        user: first_arg(args).to_string(),
                        accepted_unix: conn.accepted_unix,
                        accepted: conn.accepted,
                        greeted: conn.greeted,
                    });
                format!("{tag} OK [CAPABILITY IMAP4rev1] Logged in\r\n")
            }
            "SELECT" | "EXAMINE" => format!(
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
                 * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n\
                 * 0 EXISTS\r\n* 0 RECENT\r\n\
                 * OK [UIDVALIDITY 1700000000] UIDs valid\r\n\
                 * OK [UIDNEXT 1] Predicted next UID\r\n\
                 {tag} OK [READ-WRITE] Select completed.\r\n"
            ),
            "LOGOUT" => {
                shared
                    .stats
                    .sessions
                    .lock()
                    .expect("sessions lock")
                    .push(conn.accepted.elapsed());
                let bye = format!("* BYE Logging out\r\n{tag} OK Logout completed.\r\n");
                let w = io.get_mut();
                let _ = w.write_all(bye.as_bytes()).await;
                let _ = w.flush().await;
                let _ = w.shutdown().await;
                return Next::Done;
            }
            _ => format!("{tag} BAD Unknown command.\r\n"),
        };
        let w = io.get_mut();
        if w.write_all(reply.as_bytes()).await.is_err() || w.flush().await.is_err() {
            return Next::Done;
        }
    }
}

/// The first IMAP argument: an atom or a quoted string (without escapes; ours are plain).
fn first_arg(args: &str) -> &str {
    if let Some(rest) = args.strip_prefix('"') {
        rest.split('"').next().unwrap_or("")
    } else {
        args.split(' ').next().unwrap_or("")
    }
}

/// Exact delays: tokio's timer has millisecond granularity, this thread sleeps to the
/// deadline with the kernel's high-resolution timer, writes the greeting and reports when.
struct Timer {
    tx: Mutex<mpsc::Sender<Entry>>,
}

struct Entry {
    at: Instant,
    socket: std::net::TcpStream,
    data: Vec<u8>,
    /// Gets the time the write returned, or nothing if it failed.
    done: oneshot::Sender<Option<Instant>>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: the heap's top is the earliest deadline.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.at.cmp(&self.at)
    }
}

impl Timer {
    fn start() -> Timer {
        let (tx, rx) = mpsc::channel::<Entry>();
        std::thread::Builder::new()
            .name("imapd-timer".into())
            .spawn(move || {
                let mut heap = BinaryHeap::new();
                loop {
                    let now = Instant::now();
                    while heap.peek().is_some_and(|e: &Entry| e.at <= now) {
                        if let Some(mut e) = heap.pop() {
                            use std::io::Write;
                            // A fresh socket's send buffer always takes a one-line greeting.
                            let ok = e.socket.write_all(&e.data).is_ok();
                            let _ = e.done.send(ok.then(Instant::now));
                        }
                    }
                    let next = match heap.peek() {
                        Some(e) => rx.recv_timeout(e.at - now),
                        None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                    };
                    match next {
                        Ok(e) => heap.push(e),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .expect("timer thread");
        Timer { tx: Mutex::new(tx) }
    }

    /// Writes `data` to `socket` at `at`; the time the write returned, if it succeeded.
    async fn write_at(
        &self,
        at: Instant,
        socket: std::net::TcpStream,
        data: Vec<u8>,
    ) -> Option<Instant> {
        let (done, rx) = oneshot::channel();
        let entry = Entry {
            at,
            socket,
            data,
            done,
        };
        self.tx.lock().expect("timer lock").send(entry).ok()?;
        rx.await.ok().flatten()
    }
}
