//! Consumption-driven, per-channel receive flow control.
//!
//! Patch to russh 0.65.1 carried by pgtunnel and meant for upstream (russh issue #770; see
//! also the closed PR #730 and `PATCH.md` at the crate root).
//!
//! Upstream sent WINDOW_ADJUST on *receipt* and awaited each channel's bounded queue in the
//! session loop, so one channel whose reader stalled parked the whole session: every channel,
//! keepalives, and through nested sessions every hop. Here:
//!
//! * receipt only debits the window ([`receive`]) and hands the message to the channel with
//!   `try_send`; when the channel's queue is full, the message waits in the channel's
//!   [`Backlog`], owned by the session and bounded by the window for a conforming peer;
//! * the reader credits what the application consumes ([`ChannelFlow::read`]) and wakes the
//!   session when OpenSSH's `channel_check_window` rule says a WINDOW_ADJUST is due, or when
//!   the session holds a backlog for it;
//! * the session's wake arm ([`wake`]) refills the queue from the backlog and grants the
//!   window ([`check`]).

use std::collections::{HashMap, VecDeque};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};

use bytes::BytesMut;
use log::{debug, warn};
use ssh_encoding::Encode;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{ChannelMsg, ChannelRef};
use crate::session::Encrypted;
use crate::{ChannelId, Error, msg};

/// Data packets shorter than this are coalesced while they wait in a backlog, so that a peer
/// sending tiny packets costs bytes, not queue entries.
const SMALL_PACKET: usize = 1024;
/// Coalesced runs of small packets are cut at this size.
const COALESCED_MAX: usize = 32 * 1024;

/// Flow state shared by the session ([`ChannelRef`]) and the reader ([`super::ChannelReadHalf`]).
#[derive(Debug, Default)]
pub(crate) struct ChannelFlow {
    /// Set by the session once the channel is established.
    wake: OnceLock<(ChannelId, UnboundedSender<ChannelId>)>,
    /// A wake is queued and not yet handled: don't queue another.
    wake_queued: AtomicBool,
    /// Payload bytes received within the window and handed to the channel (session).
    received: AtomicU64,
    /// Payload bytes the application consumed: read, or discarded unread (reader).
    consumed: AtomicU64,
    /// Mirror of our receive window, `ChannelParams::sender_window_size` (session).
    window: AtomicU32,
    /// The window we keep open: the initial window, or what `Handler::adjust_window` returned.
    target: AtomicU32,
    /// Our maximum packet size.
    max_packet: AtomicU32,
    /// The session holds messages for this channel in its backlog.
    backlog: AtomicBool,
    /// The reader is gone: everything received counts as consumed.
    reader_gone: AtomicBool,
}

impl ChannelFlow {
    /// Reader side: the application consumed `bytes` bytes of payload (read or discarded).
    pub(crate) fn read(&self, bytes: usize) {
        if bytes > 0 {
            self.consumed.fetch_add(bytes as u64, SeqCst);
        }
        if self.backlog.load(SeqCst) || (bytes > 0 && self.due(self.window.load(SeqCst))) {
            self.wake();
        }
    }

    /// Reader side: the application took `msg` off the queue.
    pub(crate) fn read_msg(&self, msg: &ChannelMsg) {
        self.read(payload_len(msg));
    }

    /// Reader side: the reader was dropped; what it did not read counts as consumed.
    pub(crate) fn reader_dropped(&self) {
        self.reader_gone.store(true, SeqCst);
        self.wake();
    }

    fn wake(&self) {
        if let Some((id, wake)) = self.wake.get()
            && !self.wake_queued.swap(true, SeqCst)
        {
            let _ = wake.send(*id);
        }
    }

    /// Session side: called once the channel is established, with the initial window.
    fn attach(
        &self,
        id: ChannelId,
        wake: &UnboundedSender<ChannelId>,
        window: u32,
        max_packet: u32,
    ) {
        if self.wake.get().is_none() && self.wake.set((id, wake.clone())).is_ok() {
            self.target.store(window, SeqCst);
            self.window.store(window, SeqCst);
            self.max_packet.store(max_packet, SeqCst);
        }
    }

    /// Bytes received and not consumed yet.
    fn buffered(&self) -> u64 {
        if self.reader_gone.load(SeqCst) {
            return 0;
        }
        let consumed = self.consumed.load(SeqCst);
        self.received.load(SeqCst).saturating_sub(consumed)
    }

    /// What a WINDOW_ADJUST may grant: the target less the peer's window and what is still
    /// buffered. This is OpenSSH's `local_consumed`, but it also absorbs a tolerated overrun
    /// of the window and a change of target.
    fn owed(&self, window: u32, target: u32) -> u32 {
        let owed = u64::from(target).saturating_sub(u64::from(window) + self.buffered());
        u32::try_from(owed).unwrap_or(u32::MAX)
    }

    /// OpenSSH's `channel_check_window`: a WINDOW_ADJUST is due when something was consumed
    /// and the peer's window is below half the target, or more than three packets short of it.
    fn due(&self, window: u32) -> bool {
        let target = self.target.load(SeqCst);
        let short = target.saturating_sub(window);
        let max_packet = self.max_packet.load(SeqCst);
        self.owed(window, target) > 0
            && (short > max_packet.saturating_mul(3) || window < target / 2)
    }
}

fn payload_len(msg: &ChannelMsg) -> usize {
    match msg {
        ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len(),
        _ => 0,
    }
}

/// Messages the session could not hand to a full channel queue, in order (session side).
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    msgs: VecDeque<ChannelMsg>,
    /// A run of small data packets (extended data code, bytes) that follows `msgs`.
    tail: Option<(Option<u32>, BytesMut)>,
    /// Bytes the peer sent beyond our window, since the last packet that fit.
    excess: u32,
    /// The peer closed the channel: drop it once the backlog is delivered.
    closed: bool,
}

impl Backlog {
    pub(crate) fn is_empty(&self) -> bool {
        self.msgs.is_empty() && self.tail.is_none()
    }

    fn push(&mut self, msg: ChannelMsg) {
        let (ext, data) = match &msg {
            ChannelMsg::Data { data } => (None, data),
            ChannelMsg::ExtendedData { data, ext } => (Some(*ext), data),
            _ => {
                self.seal();
                self.msgs.push_back(msg);
                return;
            }
        };
        if data.len() >= SMALL_PACKET {
            self.seal();
            self.msgs.push_back(msg);
            return;
        }
        if let Some((tail_ext, tail)) = &mut self.tail
            && *tail_ext == ext
            && tail.len() + data.len() <= COALESCED_MAX
        {
            tail.extend_from_slice(data);
            return;
        }
        self.seal();
        self.tail = Some((ext, BytesMut::from(&data[..])));
    }

    fn seal(&mut self) {
        if let Some((ext, data)) = self.tail.take() {
            let data = data.freeze();
            self.msgs.push_back(match ext {
                None => ChannelMsg::Data { data },
                Some(ext) => ChannelMsg::ExtendedData { data, ext },
            });
        }
    }

    fn pop(&mut self) -> Option<ChannelMsg> {
        if self.msgs.is_empty() {
            self.seal();
        }
        self.msgs.pop_front()
    }

    fn clear(&mut self) {
        self.msgs.clear();
        self.tail = None;
    }

    pub(crate) fn take(&mut self) -> VecDeque<ChannelMsg> {
        self.seal();
        std::mem::take(&mut self.msgs)
    }
}

impl ChannelRef {
    /// Hands `msg` to the channel without waiting: through its queue if the backlog is empty
    /// and the queue has room, else through the backlog, so order is kept.
    pub(crate) fn deliver(&mut self, msg: ChannelMsg) -> Result<(), Error> {
        if self.flow.reader_gone.load(SeqCst) {
            return Ok(());
        }
        if self.backlog.is_empty() {
            match self.sender.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(msg)) => self.backlog.msgs.push_back(msg),
                Err(TrySendError::Closed(_)) => {
                    self.flow.reader_gone.store(true, SeqCst);
                    return Ok(());
                }
            }
        } else {
            self.backlog.push(msg);
            // A conforming peer's data is bounded by the window, and coalescing keeps small
            // packets from multiplying entries: more is a peer flooding a stalled channel.
            let limit = 1024 + 2 * (self.flow.target.load(SeqCst) as usize / SMALL_PACKET);
            if self.backlog.msgs.len() > limit {
                warn!("channel backlog over {limit} messages: peer floods a stalled channel");
                return Err(Error::Pending);
            }
        }
        self.refill();
        Ok(())
    }

    /// Moves backlog messages into the channel's queue while it has room.
    pub(crate) fn refill(&mut self) {
        while let Some(msg) = self.backlog.pop() {
            match self.sender.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(msg)) => {
                    self.backlog.msgs.push_front(msg);
                    // Publish the backlog, then try once more: a reader that made room before
                    // it could see the flag will not wake us.
                    if self.flow.backlog.swap(true, SeqCst) {
                        return;
                    }
                }
                Err(TrySendError::Closed(_)) => {
                    self.flow.reader_gone.store(true, SeqCst);
                    self.backlog.clear();
                }
            }
        }
        self.flow.backlog.store(false, SeqCst);
    }
}

/// The session's end of the readers' wake-ups: the ids of channels to look at.
#[derive(Debug)]
pub(crate) struct FlowWake {
    sender: UnboundedSender<ChannelId>,
    receiver: UnboundedReceiver<ChannelId>,
}

impl FlowWake {
    pub(crate) fn new() -> Self {
        let (sender, receiver) = unbounded_channel();
        FlowWake { sender, receiver }
    }

    /// Waits for a wake-up. Never ends: the session holds a sender.
    pub(crate) async fn recv(&mut self) -> ChannelId {
        match self.receiver.recv().await {
            Some(id) => id,
            None => std::future::pending().await,
        }
    }

    pub(crate) fn try_recv(&mut self) -> Option<ChannelId> {
        self.receiver.try_recv().ok()
    }
}

/// Session side: the channel is established (it can receive from now on), so its reader may
/// wake the session.
pub(crate) fn attach(enc: &Encrypted, chan: &ChannelRef, wake: &FlowWake, id: ChannelId) {
    if let Some(params) = enc.channels.get(&id) {
        chan.flow.attach(
            id,
            &wake.sender,
            params.sender_window_size,
            params.sender_maximum_packet_size,
        );
    }
}

/// Session side of CHANNEL_DATA and CHANNEL_EXTENDED_DATA: debits the window and hands the
/// message to the channel without waiting. Call [`check`] afterwards.
///
/// Data beyond the window is a protocol violation (RFC 4254 section 5.2). Like OpenSSH, an
/// overrun of up to a tenth of the target window is delivered (dropping it would corrupt the
/// stream) and logged; beyond that the session ends with [`Error::Inconsistent`].
pub(crate) fn receive(
    enc: &mut Encrypted,
    chan: Option<&mut ChannelRef>,
    wake: &FlowWake,
    id: ChannelId,
    msg: ChannelMsg,
) -> Result<(), Error> {
    let (Some(params), Some(chan)) = (enc.channels.get_mut(&id), chan) else {
        // Nobody can read it: don't debit, as if it was consumed on receipt.
        return Ok(());
    };
    let len = u32::try_from(payload_len(&msg)).map_err(|_| Error::Inconsistent)?;
    chan.flow.attach(
        id,
        &wake.sender,
        params.sender_window_size,
        params.sender_maximum_packet_size,
    );
    let window = params.sender_window_size;
    if len <= window {
        params.sender_window_size = window - len;
        chan.backlog.excess = 0;
    } else {
        params.sender_window_size = 0;
        chan.backlog.excess = chan.backlog.excess.saturating_add(len - window);
        warn!(
            "channel {id:?}: peer sent {len} bytes with {window} left in the window (excess {})",
            chan.backlog.excess
        );
        if chan.backlog.excess > chan.flow.target.load(SeqCst) / 10 {
            return Err(Error::Inconsistent);
        }
    }
    chan.flow.window.store(params.sender_window_size, SeqCst);
    chan.flow.received.fetch_add(u64::from(len), SeqCst);
    chan.deliver(msg)
}

/// Session side: refills the channel's queue from its backlog and sends a WINDOW_ADJUST if one
/// is due. `adjust_window` is the handler's hook: it gets the current target window and what
/// the channel holds unread, and
/// returns the next one (0 keeps it). This makes `client::Handler::adjust_window` take effect
/// (#770), per channel.
pub(crate) fn check(
    enc: &mut Encrypted,
    chan: &mut ChannelRef,
    id: ChannelId,
    adjust_window: impl FnOnce(u32, u32) -> u32,
) -> Result<(), Error> {
    chan.refill();
    // Closed on our side (or closing): no more window for the peer.
    let Some(params) = enc.channels.get_mut(&id) else {
        return Ok(());
    };
    if params.pending_close || chan.flow.wake.get().is_none() {
        return Ok(());
    }
    let window = params.sender_window_size;
    if !chan.flow.due(window) {
        return Ok(());
    }
    // Patch, part G: the hook also learns what the reader has left unread.
    let current = chan.flow.target.load(SeqCst);
    let buffered = u32::try_from(chan.flow.buffered()).unwrap_or(u32::MAX);
    let target = match adjust_window(current, buffered) {
        0 => current,
        target => target,
    };
    chan.flow.target.store(target, SeqCst);
    let grant = chan.flow.owed(window, target);
    if grant == 0 {
        return Ok(());
    }
    params.sender_window_size = window.saturating_add(grant);
    chan.flow.window.store(params.sender_window_size, SeqCst);
    let recipient = params.recipient_channel;
    debug!(
        "channel {:?}: window adjust {grant}, window {}",
        params.sender_channel, params.sender_window_size
    );
    push_packet!(enc.write, {
        enc.write.push(msg::CHANNEL_WINDOW_ADJUST);
        recipient.encode(&mut enc.write)?;
        grant.encode(&mut enc.write)?;
    });
    Ok(())
}

/// Session side of a reader's wake-up: refill, grant, and drop a closed channel once its
/// backlog is delivered.
pub(crate) fn wake(
    enc: &mut Encrypted,
    channels: &mut HashMap<ChannelId, ChannelRef>,
    id: ChannelId,
    adjust_window: impl FnOnce(u32, u32) -> u32,
) -> Result<(), Error> {
    let Some(chan) = channels.get_mut(&id) else {
        return Ok(());
    };
    // Clear before looking, so that a read from now on queues a new wake-up.
    chan.flow.wake_queued.store(false, SeqCst);
    check(enc, chan, id, adjust_window)?;
    if chan.backlog.closed && chan.backlog.is_empty() {
        channels.remove(&id);
    }
    Ok(())
}

/// Session side of a CHANNEL_CLOSE for a channel that is no longer established (patch,
/// part F). `Encrypted::close` forgets a channel when it sends our CLOSE, so the peer's
/// answering CLOSE found no channel and was dropped: the reader never saw a Close and the
/// channel's entry stayed here until the session ended (one per channel closed by us
/// first). If the channel is still here but gone from `enc`, this is that answer: the
/// reader gets its Close (after any backlog) and the entry goes. `true` if it was.
pub(crate) fn answer_to_our_close(
    enc: Option<&Encrypted>,
    channels: &mut HashMap<ChannelId, ChannelRef>,
    id: ChannelId,
) -> Result<bool, Error> {
    let forgotten = enc.is_some_and(|enc| !enc.channels.contains_key(&id));
    if !forgotten || !channels.contains_key(&id) {
        return Ok(false);
    }
    close(channels, id)?;
    Ok(true)
}

/// Session side of CHANNEL_CLOSE: the Close follows any backlog, and the channel is dropped
/// only once that is delivered.
pub(crate) fn close(
    channels: &mut HashMap<ChannelId, ChannelRef>,
    id: ChannelId,
) -> Result<(), Error> {
    if let Some(chan) = channels.get_mut(&id) {
        chan.deliver(ChannelMsg::Close)?;
        chan.backlog.closed = true;
        if chan.backlog.is_empty() {
            channels.remove(&id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
