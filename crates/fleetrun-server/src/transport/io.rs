//! The connection's byte stream as hyper sees it, watched on both sides:
//!
//! * reads note when the first byte of a new request head arrives (the header timeout counts
//!   from there);
//! * writes made while no request is in flight can only be hyper's own answer to a request it
//!   could not parse (400, 414, 431 with an empty body). Those are replaced by the typed awsJson
//!   error for the same status, so even a malformed request gets `{"__type": …}`.
//!
//! hyper's writes for a response end with a flush after its body was dropped
//! (`registry::ConnShared::request_finished`), so "no request in flight and flushed" is exact.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::registry::ConnShared;
use crate::edge;

pub(crate) struct Guarded<S> {
    inner: S,
    conn: Arc<ConnShared>,
    /// hyper wrote an answer of its own: ours goes out instead, and every later write is dropped.
    replacement: Option<Replacement>,
}

struct Replacement {
    bytes: Vec<u8>,
    written: usize,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, conn: Arc<ConnShared>) -> Self {
        Self {
            inner,
            conn,
            replacement: None,
        }
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    /// Writes what is left of the replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(r) = &mut self.replacement {
            while r.written < r.bytes.len() {
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &r.bytes[r.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                r.written += n;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// True when this write is (or follows) hyper's own error answer; prepares ours.
    fn intercept(&mut self, first: &[u8]) -> bool {
        if self.replacement.is_some() {
            return true;
        }
        if !self.conn.between_requests() {
            return false;
        }
        let status = status_of(first);
        tracing::debug!(
            conn = self.conn.id,
            status,
            "request not parsed: answering with a typed error"
        );
        self.replacement = Some(Replacement {
            bytes: edge::raw_error(&edge::parse_failure(status)),
            written: 0,
        });
        true
    }
}

/// The status code of an HTTP/1.x status line, or 400.
fn status_of(head: &[u8]) -> u16 {
    head.get(9..12)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok())
        .unwrap_or(400)
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        // Blank lines between requests are allowed and ignored; they start no head.
        if buf.filled()[before..]
            .iter()
            .any(|&b| b != b'\r' && b != b'\n')
        {
            this.conn.head_bytes();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.intercept(buf) {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        ready!(this.poll_replacement(cx))?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if !this.intercept(first) {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        ready!(this.poll_replacement(cx))?;
        Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        this.conn.flushed();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_lines_are_read() {
        assert_eq!(
            super::status_of(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            431
        );
        assert_eq!(super::status_of(b"HTTP/1.1 400 Bad Request\r\n"), 400);
        assert_eq!(super::status_of(b"garbage"), 400);
    }
}
