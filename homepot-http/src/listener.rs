//! A deadline for the first request head of every connection.
//!
//! The idle timeout closes a connection only after a stretch with no bytes at all, so a client
//! that trickles one header byte at a time (slowloris) would hold a connection and its task
//! for as long as it likes. This acceptor wraps each accepted stream and closes it, after a
//! best-effort `408`, when the blank line that ends the first request head has not arrived
//! within the deadline. Later requests on a kept-alive connection come from a client that has
//! already sent a complete request; the idle and body timeouts cover them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Wraps every accepted stream in a [`HeadDeadline`].
pub(crate) struct HeadDeadlineAcceptor<A> {
    inner: A,
    timeout: Duration,
}

impl<A> HeadDeadlineAcceptor<A> {
    pub(crate) fn new(inner: A, timeout: Duration) -> Self {
        Self { inner, timeout }
    }
}

impl<A: Acceptor> Acceptor for HeadDeadlineAcceptor<A> {
    type Io = HeadDeadline<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        Ok((HeadDeadline::new(io, self.timeout), local, remote, scheme))
    }
}

/// A stream whose first request head must be complete before a deadline.
pub(crate) struct HeadDeadline<T> {
    inner: T,
    /// `None` once the first head is complete.
    deadline: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    /// Line feeds seen since the last byte that was neither `\r` nor `\n`; two end a head.
    line_feeds: u8,
}

impl<T> HeadDeadline<T> {
    fn new(inner: T, timeout: Duration) -> Self {
        Self { inner, deadline: Some(Box::pin(tokio::time::sleep(timeout))), timeout, line_feeds: 0 }
    }

    /// Whether `bytes` complete the head (HTTP/1 ends it with an empty line, `\r\n` or a bare
    /// `\n`; the HTTP/2 preface contains one too).
    fn head_ends_in(&mut self, bytes: &[u8]) -> bool {
        for &byte in bytes {
            match byte {
                b'\n' => {
                    self.line_feeds += 1;
                    if self.line_feeds == 2 {
                        return true;
                    }
                }
                b'\r' => {}
                _ => self.line_feeds = 0,
            }
        }
        false
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> HeadDeadline<T> {
    /// Tells the client why, if the socket takes the few bytes at once, then fails the read
    /// so that hyper drops the connection.
    fn expire(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let body = format!(r#"{{"detail":"Request head not received within {} s"}}"#, self.timeout.as_secs_f64());
        let response = format!(
            "HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = Pin::new(&mut self.inner).poll_write(cx, response.as_bytes());
        let _ = Pin::new(&mut self.inner).poll_shutdown(cx);
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request head not received in time")))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadDeadline<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(deadline) = this.deadline.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if deadline.is_elapsed() {
            return this.expire(cx);
        }
        let start = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.head_ends_in(&buf.filled()[start..]) {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => this.expire(cx),
                Poll::Pending => Poll::Pending,
            },
            failed => failed,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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

    fn scanner() -> HeadDeadline<()> {
        HeadDeadline { inner: (), deadline: None, timeout: Duration::ZERO, line_feeds: 0 }
    }

    #[test]
    fn a_head_ends_at_its_empty_line_however_the_bytes_are_split() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody";
        for split in 0..head.len() {
            let mut s = scanner();
            let (a, b) = head.split_at(split);
            let ended = s.head_ends_in(a) || s.head_ends_in(b);
            assert!(ended, "split at {split}");
        }
    }

    #[test]
    fn header_lines_alone_do_not_end_a_head() {
        let mut s = scanner();
        assert!(!s.head_ends_in(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n"));
        assert!(s.head_ends_in(b"\n"), "a bare line feed ends it too");
    }
}
