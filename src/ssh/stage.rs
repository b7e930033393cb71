//! Where a hop's connection stands, for the progress display: a byte stream that reports
//! once the server's SSH identification line (its banner) has arrived, which is when the key
//! exchange begins.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes looked at for the banner (RFC 4253 allows lines before it).
const LOOK_AT: usize = 8 * 1024;

/// `inner`, calling `on_banner` once when a line starting with `SSH-` has ended.
pub(crate) struct BannerSeen<S> {
    inner: S,
    /// The bytes of the current line (its first few: enough to see `SSH-`).
    line: Vec<u8>,
    /// Bytes looked at so far.
    looked: usize,
    on_banner: Option<Box<dyn FnOnce() + Send>>,
}

impl<S> BannerSeen<S> {
    pub(crate) fn new(inner: S, on_banner: impl FnOnce() + Send + 'static) -> Self {
        BannerSeen {
            inner,
            line: Vec::with_capacity(8),
            looked: 0,
            on_banner: Some(Box::new(on_banner)),
        }
    }

    /// Looks at `bytes` for the end of the banner line.
    fn look(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.on_banner.is_none() || self.looked >= LOOK_AT {
                self.on_banner = None;
                return;
            }
            self.looked += 1;
            if b == b'\n' {
                if banner_line(&self.line)
                    && let Some(f) = self.on_banner.take()
                {
                    f();
                }
                self.line.clear();
            } else if self.line.len() < 4 {
                self.line.push(b);
            }
        }
    }
}

/// Whether a line (its first bytes) is an SSH identification line.
fn banner_line(start: &[u8]) -> bool {
    start == b"SSH-"
}

impl<S: AsyncRead + Unpin> AsyncRead for BannerSeen<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.on_banner.is_some() && matches!(poll, Poll::Ready(Ok(()))) {
            let new = buf.filled().get(before..).unwrap_or_default().to_vec();
            this.look(&new);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BannerSeen<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn seen(chunks: &[&[u8]]) -> usize {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let mut s = BannerSeen::new((), move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        for chunk in chunks {
            s.look(chunk);
        }
        calls.load(Ordering::SeqCst)
    }

    #[test]
    fn the_banner_is_seen_once_its_line_ends() {
        assert_eq!(seen(&[b"SSH-2.0-OpenSSH_9.2\r\n"]), 1);
        assert_eq!(seen(&[b"SS", b"H-2.0-x", b"\r", b"\nmore\n"]), 1);
        // Lines before it are allowed.
        assert_eq!(seen(&[b"hello\nSSH-2.0-x\r\n"]), 1);
        // Not ended yet, or not SSH.
        assert_eq!(seen(&[b"SSH-2.0-x"]), 0);
        assert_eq!(seen(&[b"HTTP/1.1 400 Bad Request\r\n"]), 0);
        // Twice: told once.
        assert_eq!(seen(&[b"SSH-2.0-x\r\nSSH-2.0-y\r\n"]), 1);
    }
}
