//! An address whose SYNs are silently dropped, made on loopback without touching the firewall.
//!
//! A listening socket whose accept queue is full makes Linux drop every further SYN without an
//! answer (the client retransmits until it gives up), which is what a dead path, a firewall
//! that drops, or an overloaded listener looks like from the probe's side. [`SynDrop`] listens
//! with a backlog of 0, never accepts, and fills its queue with connections of its own.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// A listener on an address that takes no more connections: SYNs to it go unanswered.
pub struct SynDrop {
    /// The address that drops SYNs.
    pub addr: SocketAddr,
    _listener: Socket,
    _queued: Vec<TcpStream>,
}

impl SynDrop {
    /// Listens on `addr` (port 0 picks one) and fills the accept queue; fails if `addr` cannot
    /// be bound. Returns once a connection attempt has gone unanswered.
    pub fn bind(addr: SocketAddr) -> io::Result<SynDrop> {
        let domain = if addr.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let listener = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        if addr.is_ipv6() {
            listener.set_only_v6(true)?;
        }
        listener.bind(&addr.into())?;
        listener.listen(0)?;
        let addr = listener
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))?;
        // The kernel's queue limit depends on its version and on SYN cookies: connect until an
        // attempt goes unanswered, which is the state the tests need.
        let mut queued = Vec::new();
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => queued.push(s),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                Err(e) => return Err(e),
            }
            if queued.len() > 64 {
                return Err(io::Error::other(format!(
                    "{addr} still accepts after 64 queued connections"
                )));
            }
        }
        Ok(SynDrop {
            addr,
            _listener: listener,
            _queued: queued,
        })
    }
}
