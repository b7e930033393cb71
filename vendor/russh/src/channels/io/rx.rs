use std::borrow::BorrowMut;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncRead;

use super::{ChannelMsg, ChannelReadHalf};
use crate::channels::flow::ChannelFlow;

#[derive(Debug)]
pub struct ChannelRx<R> {
    channel: R,
    buffer: Option<(ChannelMsg, usize)>,

    ext: Option<u32>,
    // Flow control (patch): where consumption is credited.
    flow: Arc<ChannelFlow>,
}

impl<R: BorrowMut<ChannelReadHalf>> ChannelRx<R> {
    pub fn new(channel: R, ext: Option<u32>) -> Self {
        let flow = channel.borrow().flow.clone();
        Self {
            channel,
            buffer: None,
            ext,
            flow,
        }
    }
}

// Flow control (patch): the rest of a partly read message is discarded: credit it.
impl<R> Drop for ChannelRx<R> {
    fn drop(&mut self) {
        if let Some((ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. }, idx)) =
            &self.buffer
        {
            self.flow.read(data.len().saturating_sub(*idx));
        }
    }
}

impl<R> AsyncRead for ChannelRx<R>
where
    R: BorrowMut<ChannelReadHalf> + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let (msg, mut idx) = match self.buffer.take() {
            Some(msg) => msg,
            None => match ready!(self.channel.borrow_mut().receiver.poll_recv(cx)) {
                Some(msg) => (msg, 0),
                None => return Poll::Ready(Ok(())),
            },
        };

        match (&msg, self.ext) {
            (ChannelMsg::Data { data }, None) => {
                let readable = buf.remaining().min(data.len() - idx);

                // Clamped to maximum `buf.remaining()` and `data.len() - idx` with `.min`
                #[allow(clippy::indexing_slicing)]
                buf.put_slice(&data[idx..idx + readable]);
                idx += readable;
                // Flow control (patch): credit what was copied out.
                self.flow.read(readable);

                if idx != data.len() {
                    self.buffer = Some((msg, idx));
                }

                Poll::Ready(Ok(()))
            }
            (ChannelMsg::ExtendedData { data, ext }, Some(target)) if *ext == target => {
                let readable = buf.remaining().min(data.len() - idx);

                // Clamped to maximum `buf.remaining()` and `data.len() - idx` with `.min`
                #[allow(clippy::indexing_slicing)]
                buf.put_slice(&data[idx..idx + readable]);
                idx += readable;
                // Flow control (patch): credit what was copied out.
                self.flow.read(readable);

                if idx != data.len() {
                    self.buffer = Some((msg, idx));
                }

                Poll::Ready(Ok(()))
            }
            (ChannelMsg::Eof, _) => {
                self.channel.borrow_mut().receiver.close();
                // Flow control (patch): let the session see the queue closed.
                self.flow.read(0);

                Poll::Ready(Ok(()))
            }
            _ => {
                // Flow control (patch): a discarded message (e.g. the other stream's data) is
                // consumed too, or it would eat the window.
                self.flow.read_msg(&msg);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}
