//! A stream wrapper that bounds what a server can make us read: the length of any one line and
//! the total bytes of a session.
//!
//! Protocol libraries buffer until a response parses (async-imap grows its buffer up to 512 MiB
//! and re-parses it on every read), so a hostile server sending an endless line could cost memory
//! and CPU. Wrapping the socket below the parser makes every protocol bounded the same way.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Which bound a server crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// A line (bytes between two LFs) was longer than allowed.
    #[error("server sent a line longer than {0} bytes")]
    Line(usize),
    /// The session as a whole sent more than allowed.
    #[error("server sent more than {0} bytes")]
    Total(u64),
}

impl LimitExceeded {
    /// The bound crossed, if `e` reports one.
    pub fn from_io(e: &io::Error) -> Option<LimitExceeded> {
        e.get_ref()?.downcast_ref::<LimitExceeded>().copied()
    }
}

/// Bounds for one session.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest line accepted.
    pub max_line: usize,
    /// Most bytes accepted over the whole session.
    pub max_total: u64,
}

/// A stream that fails reads with [`LimitExceeded`] once a bound is crossed.
#[derive(Debug)]
pub struct Bounded<S> {
    inner: S,
    limits: Limits,
    line: usize,
    total: u64,
}

impl<S> Bounded<S> {
    /// Wraps `inner` with fresh counters.
    pub fn new(inner: S, limits: Limits) -> Self {
        Bounded {
            inner,
            limits,
            line: 0,
            total: 0,
        }
    }

    /// The wrapped stream (counters are dropped; e.g. for a STARTTLS upgrade).
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Counts `data` just read; an error if it crosses a bound.
    fn account(&mut self, data: &[u8]) -> io::Result<()> {
        self.total += data.len() as u64;
        if self.total > self.limits.max_total {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                LimitExceeded::Total(self.limits.max_total),
            ));
        }
        let mut segments = data.split(|&b| b == b'\n');
        // The first segment continues the line in progress; a later one starts a new line.
        let mut line = self.line + segments.next().map_or(0, <[u8]>::len);
        let mut longest = line;
        for seg in segments {
            line = seg.len();
            longest = longest.max(line);
        }
        self.line = line;
        if longest > self.limits.max_line {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                LimitExceeded::Line(self.limits.max_line),
            ));
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Bounded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let checked = this.account(&buf.filled()[before..]);
                if checked.is_err() {
                    // A failed read hands over no data.
                    buf.set_filled(before);
                }
                Poll::Ready(checked)
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Bounded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const LIMITS: Limits = Limits {
        max_line: 8,
        max_total: 64,
    };

    async fn read_all(data: &'static [u8]) -> io::Result<Vec<u8>> {
        let mut b = Bounded::new(data, LIMITS);
        let mut out = Vec::new();
        b.read_to_end(&mut out).await.map(|_| out)
    }

    #[tokio::test]
    async fn short_lines_pass() {
        assert_eq!(
            read_all(b"abc\r\ndef\r\n").await.unwrap(),
            b"abc\r\ndef\r\n"
        );
    }

    #[tokio::test]
    async fn long_line_fails() {
        let e = read_all(b"ok\nthis line is too long\n").await.unwrap_err();
        assert_eq!(LimitExceeded::from_io(&e), Some(LimitExceeded::Line(8)));
    }

    #[tokio::test]
    async fn long_unterminated_tail_fails() {
        let e = read_all(b"123456789").await.unwrap_err();
        assert_eq!(LimitExceeded::from_io(&e), Some(LimitExceeded::Line(8)));
    }

    #[tokio::test]
    async fn line_split_across_reads_counts_whole() {
        let mut b = Bounded::new(&b""[..], LIMITS);
        assert!(b.account(b"12345").is_ok());
        assert!(b.account(b"6789\n").is_err());
    }

    #[tokio::test]
    async fn total_bound_holds() {
        let e = read_all(&[b'\n'; 100]).await.unwrap_err();
        assert_eq!(LimitExceeded::from_io(&e), Some(LimitExceeded::Total(64)));
    }
}
