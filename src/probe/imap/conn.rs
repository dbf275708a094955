//! The stream an IMAP session runs over, and the hand-over of a session we logged in to
//! async-imap.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::super::bounded::{Bounded, Limits};
use super::super::net::Stream;

/// The stream an IMAP session runs over: bounded, and able to hand over a session logged in here
/// to async-imap.
///
/// async-imap makes a `Session` only out of its own `login` or `authenticate`. After our own
/// LOGIN or AUTHENTICATE succeeded, `Conn::hand_over` arms a one-shot switch: async-imap's
/// `login` command line is swallowed instead of sent, and the completion it waits for is served
/// locally, so async-imap takes the already authenticated connection. Nothing of this reaches
/// the server.
#[derive(Debug)]
pub struct Conn {
    inner: Bounded<Stream>,
    handover: Handover,
}

#[derive(Debug)]
enum Handover {
    /// Everything goes to and from the server.
    Off,
    /// Swallowing async-imap's command line (up to its CRLF).
    Swallow(Vec<u8>),
    /// Serving the completion async-imap waits for.
    Complete(Vec<u8>),
}

impl Conn {
    pub(super) fn new(stream: Stream, limits: Limits) -> Conn {
        Conn {
            inner: Bounded::new(stream, limits),
            handover: Handover::Off,
        }
    }

    /// The connection itself (the bounds' counters are dropped; e.g. for a STARTTLS upgrade).
    pub(super) fn into_stream(self) -> Stream {
        self.inner.into_inner()
    }

    pub(super) fn hand_over(&mut self) {
        self.handover = Handover::Swallow(Vec::new());
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Handover::Complete(line) = &mut this.handover {
            let n = line.len().min(buf.remaining());
            buf.put_slice(&line[..n]);
            line.drain(..n);
            if line.is_empty() {
                this.handover = Handover::Off;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Handover::Swallow(line) = &mut this.handover {
            line.extend_from_slice(data);
            if line.len() > 256 {
                return Poll::Ready(Err(io::Error::other("session handover: command too long")));
            }
            if line.ends_with(b"\r\n") {
                let tag = line.split(|&b| b == b' ').next().unwrap_or_default();
                let mut done = tag.to_vec();
                done.extend_from_slice(b" OK handed over\r\n");
                this.handover = Handover::Complete(done);
            }
            return Poll::Ready(Ok(data.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.handover {
            Handover::Off => Pin::new(&mut this.inner).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
