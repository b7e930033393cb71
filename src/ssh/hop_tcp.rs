//! Hop 1's TCP connection as the session reads it: buffered, and acknowledging at once.
//!
//! - **Buffered reads.** russh reads a packet in two pieces (its length, then the rest), a
//!   system call each; through a 64 KiB buffer one `read` brings in several packets while
//!   data streams, and a small packet still costs one call.
//! - **Quick ACKs.** sshd leaves Nagle on for its client's socket in a forward-only login,
//!   so its second small packet waits for the ACK of the first, which a delayed ACK holds
//!   ~40 ms: short connections, cold start and uploads pay that. Linux's `TCP_QUICKACK`
//!   (which the kernel drops by itself) is re-armed after each read that emptied the
//!   socket, when the peer may be waiting for our ACK; a read that filled the buffer had
//!   more behind it, so the next read follows at once and re-arms. Elsewhere than Linux the
//!   option does not exist and only the buffering applies.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The read buffer's size: two of OpenSSH's 32 KiB channel packets.
const READ_BUFFER: usize = 64 * 1024;

/// Hop 1's connection (see the module's documentation).
pub(crate) struct HopTcp {
    tcp: TcpStream,
    buf: Box<[u8]>,
    /// `buf[start..end]` is read and not yet taken.
    start: usize,
    end: usize,
    /// Reads from the socket (for the tests).
    reads: u64,
}

impl HopTcp {
    pub(crate) fn new(tcp: TcpStream) -> HopTcp {
        HopTcp {
            tcp,
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            reads: 0,
        }
    }

    /// Once the socket is read empty: acknowledge at once again.
    fn rearm(&self) {
        #[cfg(target_os = "linux")]
        {
            // Best effort: a socket that refuses it is only slower.
            let _ = socket2::SockRef::from(&self.tcp).set_tcp_quickack(true);
        }
    }

    /// Reads from the socket into `into`: the bytes read (0 at EOF).
    fn poll_socket(
        &mut self,
        cx: &mut Context<'_>,
        into: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<usize>> {
        let before = into.filled().len();
        let wanted = into.remaining();
        match Pin::new(&mut self.tcp).poll_read(cx, into) {
            Poll::Ready(Ok(())) => {
                self.reads += 1;
                let n = into.filled().len() - before;
                if n > 0 && n < wanted {
                    self.rearm();
                }
                Poll::Ready(Ok(n))
            }
            other => other.map_ok(|()| 0),
        }
    }
}

impl AsyncRead for HopTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.start == this.end {
            if out.remaining() >= READ_BUFFER {
                // As large as ours: read straight into it.
                return this.poll_socket(cx, out).map_ok(|_| ());
            }
            let mut buf = std::mem::take(&mut this.buf);
            let polled = this.poll_socket(cx, &mut ReadBuf::new(&mut buf));
            this.buf = buf;
            match polled {
                Poll::Ready(Ok(n)) => (this.start, this.end) = (0, n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let take = out.remaining().min(this.end - this.start);
        out.put_slice(&this.buf[this.start..this.start + take]);
        this.start += take;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HopTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (HopTcp, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (HopTcp::new(client), server)
    }

    /// After a read that empties the socket it is in quick-ACK mode again (the kernel
    /// leaves it on its own).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn quick_ack_is_rearmed_when_the_socket_is_read_empty() {
        let (mut hop, mut server) = pair().await;
        let quick = |hop: &HopTcp| socket2::SockRef::from(&hop.tcp).tcp_quickack().unwrap();
        for round in 0..3u8 {
            socket2::SockRef::from(&hop.tcp)
                .set_tcp_quickack(false)
                .unwrap();
            server.write_all(&[round; 100]).await.unwrap();
            let mut buf = [0u8; 100];
            hop.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, [round; 100]);
            assert!(quick(&hop), "round {round}");
        }
        // The control: a read past the wrapper leaves the option as it was.
        socket2::SockRef::from(&hop.tcp)
            .set_tcp_quickack(false)
            .unwrap();
        server.write_all(&[9; 10]).await.unwrap();
        let mut buf = [0u8; 10];
        hop.tcp.read_exact(&mut buf).await.unwrap();
        assert!(!quick(&hop));
        hop.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        server.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
    }

    /// Packets read as russh reads them (a 4-byte length, then the rest) come through
    /// intact, several per read from the socket while data streams.
    #[tokio::test]
    async fn packets_read_in_pieces_take_few_reads_and_arrive_intact() {
        let (mut hop, mut server) = pair().await;
        const PACKETS: usize = 400;
        let body = |i: usize| -> Vec<u8> { (0..1000 + i).map(|b| (b * 7 + i) as u8).collect() };
        let mut stream = Vec::new();
        for i in 0..PACKETS {
            let body = body(i);
            stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
            stream.extend_from_slice(&body);
        }
        let total = stream.len();
        let writer = tokio::spawn(async move {
            server.write_all(&stream).await.unwrap();
            server
        });
        for i in 0..PACKETS {
            let mut len = [0u8; 4];
            hop.read_exact(&mut len).await.unwrap();
            let mut got = vec![0u8; u32::from_be_bytes(len) as usize];
            hop.read_exact(&mut got).await.unwrap();
            assert_eq!(got, body(i), "packet {i}");
        }
        let _server = writer.await.unwrap();
        // Unbuffered: two reads per packet, 800. Buffered: about one per 64 KiB.
        let floor = total.div_ceil(READ_BUFFER) as u64;
        assert!(hop.reads >= floor, "{} reads", hop.reads);
        assert!(
            hop.reads < (PACKETS / 4) as u64,
            "{} reads for {PACKETS} packets",
            hop.reads
        );
    }

    /// A read as large as the buffer goes straight to the socket, and EOF is seen.
    #[tokio::test]
    async fn a_large_read_bypasses_the_buffer_and_eof_ends_it() {
        let (mut hop, mut server) = pair().await;
        server.write_all(&[5u8; 3000]).await.unwrap();
        drop(server);
        let mut got = Vec::new();
        let mut big = vec![0u8; READ_BUFFER];
        loop {
            let n = hop.read(&mut big).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&big[..n]);
        }
        assert_eq!(got, vec![5u8; 3000]);
        assert_eq!(hop.start, hop.end, "nothing left in the buffer");
    }
}
