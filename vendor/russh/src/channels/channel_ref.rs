use std::sync::Arc;

use tokio::sync::mpsc::Sender;

use super::WindowSizeRef;
use super::flow::{Backlog, ChannelFlow};
use crate::ChannelMsg;

/// A handle to the [`super::Channel`]'s to be able to transmit messages
/// to it and update it's `window_size`.
#[derive(Debug)]
pub struct ChannelRef {
    pub(super) sender: Sender<ChannelMsg>,
    pub(super) window_size: WindowSizeRef,
    // Flow control (patch, see flow.rs): state shared with the reader, and the messages the
    // session could not hand to a full queue yet.
    pub(crate) flow: Arc<ChannelFlow>,
    pub(crate) backlog: Backlog,
}

impl ChannelRef {
    pub fn new(sender: Sender<ChannelMsg>) -> Self {
        Self {
            sender,
            window_size: WindowSizeRef::new(0),
            flow: Arc::default(),
            backlog: Backlog::default(),
        }
    }

    pub(crate) fn window_size(&self) -> &WindowSizeRef {
        &self.window_size
    }

    // Flow control (patch): the reader's end of the flow state.
    pub(crate) fn flow(&self) -> Arc<ChannelFlow> {
        self.flow.clone()
    }
}

// Flow control (patch): a session that ends (or drops a channel) with a backlog delivers it in
// the background, as upstream's awaited sends would have delivered it before going on.
impl Drop for ChannelRef {
    fn drop(&mut self) {
        if self.backlog.is_empty() || self.sender.is_closed() {
            return;
        }
        let msgs = self.backlog.take();
        let sender = self.sender.clone();
        let deliver = async move {
            for msg in msgs {
                if sender.send(msg).await.is_err() {
                    break;
                }
            }
        };
        #[cfg(not(target_arch = "wasm32"))]
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(deliver);
        }
        #[cfg(target_arch = "wasm32")]
        drop(russh_util::runtime::spawn(deliver));
    }
}

impl std::ops::Deref for ChannelRef {
    type Target = Sender<ChannelMsg>;

    fn deref(&self) -> &Self::Target {
        &self.sender
    }
}
