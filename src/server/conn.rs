//! The server's connections: the registry that caps them and picks which to close, each
//! connection's activity and deadlines, and the stream wrapper that watches them.

use super::*;

/// The open connections: their number against the cap, and which to close to make room.
#[derive(Default)]
pub(super) struct Registry {
    pub(super) conns: Mutex<HashMap<u64, Arc<Conn>>>,
    pub(super) next_id: AtomicU64,
    /// A connection ended or its last request did (one waiter: the accept loop).
    pub(super) freed: Arc<Notify>,
}

/// What [`Registry::make_room`] did.
pub(super) enum Room {
    /// There is room for one more.
    Free,
    /// A connection was told to close; wait until it has.
    Evicted,
    /// Every connection is busy with a request, or one is closing already; wait.
    Busy,
}

impl Registry {
    /// Registers a new connection; it leaves the registry when the [`Slot`] is dropped.
    pub(super) fn open(self: &Arc<Self>, close_all: &CancellationToken) -> (Arc<Conn>, Slot) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            activity: Mutex::new(Activity::new(Instant::now())),
            changed: Notify::new(),
            evict: close_all.child_token(),
            freed: self.freed.clone(),
        });
        lock(&self.conns).insert(id, conn.clone());
        (
            conn,
            Slot {
                registry: self.clone(),
                id,
            },
        )
    }

    /// Makes sure one more connection fits under `max`: when full, closes the connection that
    /// has been without a request in flight the longest (a slowloris or silent one counts as
    /// without a request from its start; a keep-alive scraper from its last response).
    pub(super) fn make_room(&self, max: usize) -> Room {
        let conns = lock(&self.conns);
        if conns.len() < max {
            return Room::Free;
        }
        if conns.values().any(|c| c.evict.is_cancelled()) {
            return Room::Busy;
        }
        let victim = conns
            .values()
            .filter_map(|c| c.quiet_since().map(|t| (t, c)))
            .min_by_key(|(t, _)| *t);
        match victim {
            Some((_, c)) => {
                c.evict.cancel();
                Room::Evicted
            }
            None => Room::Busy,
        }
    }
}

/// A connection's place in the [`Registry`], given back when dropped.
pub(super) struct Slot {
    pub(super) registry: Arc<Registry>,
    pub(super) id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.registry.conns).remove(&self.id);
        self.registry.freed.notify_one();
    }
}

/// One connection as the timeouts see it.
pub(super) struct Conn {
    pub(super) activity: Mutex<Activity>,
    /// Woken when a deadline may have moved earlier.
    pub(super) changed: Notify,
    /// Cancelled to close the connection (to make room, or at the end of the drain).
    pub(super) evict: CancellationToken,
    /// The registry's: told when this connection's last request is done, as the accept loop
    /// may be waiting for a connection it can close.
    pub(super) freed: Arc<Notify>,
}

/// What a connection is doing, from its reads and writes and its requests' start and end.
pub(super) struct Activity {
    /// Requests whose response has not been written out yet.
    pub(super) in_flight: usize,
    /// When the connection last had no request in flight: ready, or the last response done.
    pub(super) quiet_since: Instant,
    /// When the request head being read began (the connection start for the first one).
    pub(super) head_since: Option<Instant>,
    /// Bytes arrived while a request was in flight: the next head has begun.
    pub(super) read_while_busy: bool,
    /// When a write last found the client not reading, if it still has not.
    pub(super) write_blocked_since: Option<Instant>,
    /// HTTP/2: frames arrive between requests (pings, window updates), so reads do not start
    /// a request head; only the idle timeout applies between requests.
    pub(super) h2: bool,
}

impl Activity {
    pub(super) fn new(now: Instant) -> Activity {
        Activity {
            in_flight: 0,
            quiet_since: now,
            head_since: Some(now),
            read_while_busy: false,
            write_blocked_since: None,
            h2: false,
        }
    }

    /// The earliest deadline now running, and what runs out then.
    pub(super) fn deadline(&self) -> Option<(Instant, &'static str)> {
        let stalled = self.write_blocked_since.map(|t| {
            (
                t + STALLED_WRITE_TIMEOUT,
                "the client did not read its response",
            )
        });
        let waiting = (self.in_flight == 0).then(|| match self.head_since {
            Some(t) => (t + REQUEST_HEAD_TIMEOUT, "no complete request head in time"),
            None => (self.quiet_since + IDLE_TIMEOUT, "idle for too long"),
        });
        match (stalled, waiting) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

impl Conn {
    /// Ready for its first request (after the TLS handshake, if any).
    pub(super) fn ready(&self) {
        let now = Instant::now();
        let mut a = lock(&self.activity);
        a.quiet_since = now;
        a.head_since = Some(now);
    }

    pub(super) fn deadline(&self) -> Option<(Instant, &'static str)> {
        lock(&self.activity).deadline()
    }

    /// Since when it has had no request in flight; `None` while it has one, or is closing.
    pub(super) fn quiet_since(&self) -> Option<Instant> {
        let a = lock(&self.activity);
        (a.in_flight == 0 && !self.evict.is_cancelled()).then_some(a.quiet_since)
    }

    pub(super) fn read_some(&self) {
        let mut a = lock(&self.activity);
        if a.in_flight > 0 {
            a.read_while_busy = true;
        } else if a.head_since.is_none() && !a.h2 {
            a.head_since = Some(Instant::now());
            self.changed.notify_one();
        }
    }

    pub(super) fn write_blocked(&self, blocked: bool) {
        let mut a = lock(&self.activity);
        match (blocked, a.write_blocked_since) {
            (true, None) => {
                a.write_blocked_since = Some(Instant::now());
                self.changed.notify_one();
            }
            (false, Some(_)) => a.write_blocked_since = None,
            _ => {}
        }
    }

    pub(super) fn begin(self: &Arc<Self>, h2: bool) -> InFlight {
        let mut a = lock(&self.activity);
        a.in_flight += 1;
        a.head_since = None;
        a.h2 |= h2;
        InFlight(self.clone())
    }
}

/// A request in flight, until its response body has been handed to the connection in full.
pub(super) struct InFlight(pub(super) Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut a = lock(&self.0.activity);
        a.in_flight = a.in_flight.saturating_sub(1);
        if a.in_flight == 0 {
            let now = Instant::now();
            a.quiet_since = now;
            a.head_since = (a.read_while_busy && !a.h2).then_some(now);
            a.read_while_busy = false;
            self.0.freed.notify_one();
        }
        self.0.changed.notify_one();
    }
}

/// The connection's stream, telling its [`Conn`] about reads and blocked writes.
pub(super) struct Watched<S> {
    pub(super) inner: S,
    pub(super) conn: Arc<Conn>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.read_some();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.conn.write_blocked(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.conn.write_blocked(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.conn.write_blocked(polled.is_pending());
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
