//! The session loops write while they go on reading (flow control patch, see `PATCH.md`).
//!
//! Upstream awaited each write to the stream before reading again. Two sessions that both
//! have more to write than the path between them holds then wait for each other forever: each
//! waits for the other to read. Nested sessions hit this easily, because the path of a nested
//! session is a channel, which holds one window. OpenSSH never stops reading; neither do the
//! loops here: the write in flight is one more arm of their `select!`, and they stop taking
//! application data while [`OUTPUT_HIGH_WATER`] bytes or more wait to be written.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::sshbuffer::PacketWriter;

/// Above this many bytes waiting to be written, the loops stop taking application data (they
/// go on reading the peer). Like OpenSSH's `ssh_packet_not_very_much_data_to_write`.
pub(crate) const OUTPUT_HIGH_WATER: usize = 256 * 1024;

type Write<'a, W> = Pin<Box<dyn Future<Output = (io::Result<()>, &'a mut W, Vec<u8>)> + Send + 'a>>;

enum State<'a, W> {
    Idle(&'a mut W, Vec<u8>),
    Writing(Write<'a, W>, usize),
    Failed,
}

/// Writes a session's encrypted output in the background of its loop.
pub(crate) struct Output<'a, W> {
    state: State<'a, W>,
}

impl<'a, W: AsyncWrite + Unpin + Send + 'a> Output<'a, W> {
    pub(crate) fn new(stream: &'a mut W) -> Self {
        Output {
            state: State::Idle(stream, Vec::new()),
        }
    }

    /// Bytes waiting to be written: in flight, and still in `writer`.
    pub(crate) fn pending(&self, writer: &mut PacketWriter) -> usize {
        let in_flight = match &self.state {
            State::Writing(_, len) => *len,
            _ => 0,
        };
        in_flight + writer.buffer().buffer.len()
    }

    /// Whether the loop may take more application data.
    pub(crate) fn has_room(&self, writer: &mut PacketWriter) -> bool {
        self.pending(writer) < OUTPUT_HIGH_WATER
    }

    /// Starts writing what `writer` holds, unless a write is in flight (it is picked up when
    /// that one is done).
    pub(crate) fn start(&mut self, writer: &mut PacketWriter) {
        if writer.buffer().buffer.is_empty() {
            return;
        }
        let State::Idle(..) = self.state else {
            return;
        };
        let State::Idle(stream, mut spare) = std::mem::replace(&mut self.state, State::Failed)
        else {
            return;
        };
        spare.clear();
        let bytes = std::mem::replace(&mut writer.buffer().buffer, spare);
        let len = bytes.len();
        self.state = State::Writing(
            Box::pin(async move {
                let mut result = stream.write_all(&bytes).await;
                if result.is_ok() {
                    result = stream.flush().await;
                }
                (result, stream, bytes)
            }),
            len,
        );
    }

    fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let State::Writing(write, _) = &mut self.state else {
            return Poll::Pending;
        };
        let (result, stream, bytes) = std::task::ready!(write.as_mut().poll(cx));
        self.state = match result {
            Ok(()) => State::Idle(stream, bytes),
            Err(_) => State::Failed,
        };
        Poll::Ready(result)
    }

    /// Completes when the write in flight does; never if there is none. Cancel-safe, for
    /// `select!`.
    pub(crate) async fn written(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_written(cx)).await
    }

    /// Writes everything `writer` holds and waits until it is written.
    pub(crate) async fn finish(&mut self, writer: &mut PacketWriter) -> io::Result<()> {
        loop {
            if let State::Writing(..) = self.state {
                self.written().await?;
            }
            if writer.buffer().buffer.is_empty() {
                return Ok(());
            }
            if let State::Failed = self.state {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "stream failed"));
            }
            self.start(writer);
        }
    }
}
