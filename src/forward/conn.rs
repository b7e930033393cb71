//! One connection: wait for the chain if it is being recovered, open a `direct-tcpip`
//! channel to the target on the innermost session, copy bytes both ways with half-close, and
//! reset the client (RST, never a clean EOF) when the chain carrying it is lost.

use std::future::Future as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::Msg;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::client::ClientStream;
use super::limits::Stats;
use super::supervisor::{ChainWatch, LiveChain, session_closed};
use crate::pg::refuse::{self, Answered, SqlState};
use crate::spec::Target;

/// Bytes read from a local client per channel write, at most: 32 KiB, one SSH packet.
const COPY_BUFFER: usize = 32 * 1024;
/// A connection's read buffer to begin with; it grows to [`COPY_BUFFER`] once a read fills
/// it, so idle and chatty connections hold 4 KiB and bulk ones read whole packets.
const FIRST_BUFFER: usize = 4 * 1024;

/// One accepted connection and what it needs.
pub(super) struct Handler {
    pub(super) tcp: ClientStream,
    pub(super) peer: SocketAddr,
    pub(super) chain: ChainWatch,
    pub(super) target: Arc<Target>,
    /// Signalled at shutdown's drain deadline.
    pub(super) stop: watch::Receiver<()>,
    pub(super) stats: Arc<Stats>,
    pub(super) pending_timeout: Duration,
    /// A PostgreSQL client turned away is told why in its protocol.
    pub(super) postgres: bool,
    /// Told when the connection opens and closes (`--json`).
    pub(super) events: Option<super::ConnObserver>,
    pub(super) _permit: OwnedSemaphorePermit,
}

/// A connection opening or closing, for whoever watches connections (`--json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnEvent {
    /// Its channel to the target is open.
    Opened {
        /// The client.
        peer: SocketAddr,
    },
    /// It ended.
    Closed {
        /// The client.
        peer: SocketAddr,
        /// Bytes from the client to the target.
        bytes_up: u64,
        /// Bytes from the target to the client.
        bytes_down: u64,
        /// How long it was open.
        duration: Duration,
        /// `closed`, or `reset: why`.
        how: String,
    },
}

/// One connection's byte counts.
#[derive(Default)]
struct Bytes {
    up: AtomicU64,
    down: AtomicU64,
}

/// How a connection's copying ended.
enum Finish {
    /// Both directions ended cleanly.
    Done,
    /// The session carrying the channel ended.
    Lost,
    /// Something else failed.
    Failed(String),
    /// Shutdown's drain deadline.
    Stopped,
}

impl Handler {
    pub(super) async fn run(mut self) {
        if let Err(e) = self.tcp.set_nodelay() {
            debug!(peer = %self.peer, "set_nodelay: {e}");
        }
        let Some((live, channel)) = self.open().await else {
            return;
        };
        let Handler {
            tcp,
            peer,
            mut chain,
            target,
            mut stop,
            stats,
            events,
            ..
        } = self;
        Stats::count(&stats.open);
        debug!(%peer, "connection open to {target}");
        let opened = Instant::now();
        if let Some(events) = &events {
            events(ConnEvent::Opened { peer });
        }
        let bytes = Bytes::default();
        let (mut tcp_read, mut tcp_write) = tokio::io::split(tcp);
        let finish = tokio::select! {
            finish = pump(&mut tcp_read, &mut tcp_write, channel, &stats, &bytes) => finish,
            () = chain.lost(&live) => Finish::Lost,
            _ = stop.changed() => Finish::Stopped,
        };
        stats.open.fetch_sub(1, Ordering::Relaxed);
        let closed = |how: String| {
            if let Some(events) = &events {
                events(ConnEvent::Closed {
                    peer,
                    bytes_up: bytes.up.load(Ordering::Relaxed),
                    bytes_down: bytes.down.load(Ordering::Relaxed),
                    duration: opened.elapsed(),
                    how,
                });
            }
        };
        let why = match finish {
            Finish::Done => {
                let _ = tcp_write.shutdown().await;
                debug!(%peer, "connection closed");
                closed("closed".into());
                return;
            }
            Finish::Stopped => "shutdown's drain deadline".to_string(),
            Finish::Failed(why) => why,
            Finish::Lost => match live.closed_hop() {
                Some(hop) => format!("the SSH session to {} ended", hop.label()),
                None => "the SSH session carrying it ended".to_string(),
            },
        };
        Stats::count(&stats.reset);
        info!(%peer, "connection reset: {why}");
        closed(format!("reset: {why}"));
        // RST, not FIN: whatever the client was receiving did not end cleanly.
        tcp_read.unsplit(tcp_write).reset_on_close();
    }

    /// A channel to the target on the chain that is up, waiting for the chain up to the
    /// pending timeout. `None`: the client was turned away (and told so) already.
    async fn open(&mut self) -> Option<(LiveChain, russh::Channel<Msg>)> {
        let deadline = Instant::now() + self.pending_timeout;
        loop {
            let Some(live) = self.chain.up_by(deadline).await else {
                self.give_up().await;
                return None;
            };
            let last = live.sessions().last()?;
            match last.open_channel_to(&self.target, self.peer).await {
                Ok(channel) => return Some((live, channel)),
                Err(e) if e.session_ended() || session_closed(last) => {
                    // The chain died under us; the supervisor will notice. Wait for the next.
                    debug!(peer = %self.peer, "chain lost while opening a channel; waiting for it to return");
                    self.chain.changed_by(deadline).await;
                }
                Err(reason) => {
                    Stats::count(&self.stats.refused);
                    warn!(
                        peer = %self.peer,
                        "{} could not open a connection to {}: {reason}",
                        last.label(),
                        self.target
                    );
                    let message = format!(
                        "pgtunnel: {} {} {}: {reason}",
                        last.label(),
                        crate::error::reach_words(&reason),
                        self.target
                    );
                    if !self.tell(SqlState::CannotConnect, &message).await {
                        let _ = self.tcp.shutdown().await;
                    }
                    return None;
                }
            }
        }
    }

    /// Turns the client away: the chain stayed down, or serving is ending.
    async fn give_up(&mut self) {
        Stats::count(&self.stats.rejected);
        let peer = self.peer;
        let message = if self.chain.giving_up() {
            debug!(%peer, "closing a connection that was waiting for the chain: shutting down");
            "pgtunnel: the tunnel is shutting down".to_string()
        } else {
            warn!(
                %peer,
                "closing connection: the chain is still down after {}s",
                self.pending_timeout.as_secs_f32()
            );
            let why = self
                .chain
                .down_reason()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            format!(
                "pgtunnel: the SSH chain is down{why} and was not back within {}s \
                 (--wait-for-chain)",
                self.pending_timeout.as_secs_f32()
            )
        };
        if !self.tell(SqlState::ConnectionFailure, &message).await {
            // Closed (reset) when the handler drops it.
            self.tcp.reset_on_close();
        }
    }

    /// Tells a PostgreSQL client `message` in its protocol, if the target is PostgreSQL and
    /// the client speaks it: `false` when it was not told.
    async fn tell(&mut self, sqlstate: SqlState, message: &str) -> bool {
        self.postgres && refuse::answer(&mut self.tcp, sqlstate, message).await == Answered::Told
    }
}

/// Copies both ways until both directions have ended, one fails, or the session under the
/// channel ends. The channel's messages tell these apart: EOF and CLOSE end the data
/// cleanly, while a queue that closes without a CLOSE means the session is gone (a byte
/// stream over the channel would report both as EOF, and the client would take a lost
/// chain for the end of the data).
///
/// CHANNEL_CLOSE goes out as soon as EOF has gone both ways, as ssh sends it
/// (`chan_is_dead`): the peer's CLOSE then answers ours at once, and the connection ends
/// without waiting for the peer to decide (sshd's CLOSE after its EOF can wait on our
/// delayed ACK under its Nagle).
async fn pump(
    tcp_read: &mut (impl AsyncRead + Unpin),
    tcp_write: &mut (impl AsyncWrite + Unpin),
    channel: russh::Channel<Msg>,
    stats: &Stats,
    bytes: &Bytes,
) -> Finish {
    let (mut rx, tx) = channel.split();
    let ends = HalfCloses::default();
    let down = downstream(&mut rx, &tx, tcp_write, &ends, (stats, bytes));
    let up = async {
        let mut buf = vec![0u8; FIRST_BUFFER];
        loop {
            let n = tcp_read
                .read(&mut buf)
                .await
                .map_err(|e| Finish::Failed(format!("reading from the client: {e}")))?;
            let full = n == buf.len();
            if n == 0 {
                let _ = tx.eof().await;
                if ends.sent_eof() {
                    let _ = tx.close().await;
                }
                return Ok::<(), Finish>(());
            }
            // One message per read (up to 32 KiB, as the peer's maximum packet allows):
            // `ChannelWriteHalf::data` would cut it into 8 KiB packets (tokio::io::copy).
            tx.data_bytes(buf[..n].to_vec())
                .await
                .map_err(|e| Finish::Failed(format!("sending to the target: {e}")))?;
            Stats::add(&stats.bytes_up, n as u64);
            Stats::add(&bytes.up, n as u64);
            if full && buf.len() < COPY_BUFFER {
                buf.resize(COPY_BUFFER, 0);
            }
        }
    };
    tokio::pin!(down, up);
    let mut up_done = false;
    let outcome = loop {
        tokio::select! {
            // The target closed the channel: nothing more either way.
            r = &mut down => break r,
            r = &mut up, if !up_done => match r {
                Ok(()) => up_done = true,
                Err(e) => break Err(e),
            },
        }
    };
    // A no-op when the channel is closed already (russh sends CLOSE once).
    let _ = tx.close().await;
    match outcome {
        Ok(()) => Finish::Done,
        Err(finish) => finish,
    }
}

/// The target's side of [`pump`]: its data to the client, the data messages already queued
/// gathered into one write ([`gather`]); its EOF, and the CLOSE that ends the channel.
async fn downstream(
    rx: &mut russh::ChannelReadHalf,
    tx: &russh::ChannelWriteHalf<Msg>,
    tcp_write: &mut (impl AsyncWrite + Unpin),
    ends: &HalfCloses,
    (stats, bytes): (&Stats, &Bytes),
) -> Result<(), Finish> {
    // A message `gather` took from the queue behind the data (`Some(None)`: it closed).
    let mut carried = None;
    // Reused: no allocation per message.
    let mut batch = Vec::new();
    loop {
        let msg = match carried.take() {
            Some(msg) => msg,
            None => rx.wait().await,
        };
        match msg {
            Some(ChannelMsg::Data { data }) => {
                carried = gather(data, &mut batch, || queued(rx));
                let n: usize = batch.iter().map(bytes::Bytes::len).sum();
                let written = write_gathered(tcp_write, &batch).await;
                batch.clear();
                written.map_err(|e| Finish::Failed(format!("writing to the client: {e}")))?;
                Stats::add(&stats.bytes_down, n as u64);
                Stats::add(&bytes.down, n as u64);
            }
            Some(ChannelMsg::Eof) => {
                let _ = tcp_write.shutdown().await;
                if ends.received_eof() {
                    let _ = tx.close().await;
                }
            }
            Some(ChannelMsg::Close) => return Ok(()),
            Some(_) => {}
            None => return Err(Finish::Lost),
        }
    }
}

/// At most this much of the target's data goes to the client in one write.
const GATHER: usize = 256 * 1024;

/// `first` and the data messages queued behind it (`queued` never waits: `None` when
/// nothing is), up to [`GATHER`] bytes, into the empty `batch`, for one write to the client
/// instead of one per message (the hop's read brings in several packets at once). A message
/// that is not data (or the queue's end, `Some(None)`) is handed back, to be handled after
/// the write.
fn gather(
    first: bytes::Bytes,
    batch: &mut Vec<bytes::Bytes>,
    mut queued: impl FnMut() -> Option<Option<ChannelMsg>>,
) -> Option<Option<ChannelMsg>> {
    let mut total = first.len();
    batch.push(first);
    while total < GATHER {
        match queued() {
            Some(Some(ChannelMsg::Data { data })) => {
                total += data.len();
                batch.push(data);
            }
            None => break,
            other => return other,
        }
    }
    None
}

/// The channel's next message if it is there already, without waiting (`Some(None)`: the
/// queue is closed). Polling `wait` once and dropping it loses nothing: the queue's receive
/// is cancel-safe, and a message it returns is credited to the window in that same poll.
fn queued(rx: &mut russh::ChannelReadHalf) -> Option<Option<ChannelMsg>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(rx.wait()).poll(&mut cx) {
        std::task::Poll::Ready(msg) => Some(msg),
        std::task::Poll::Pending => None,
    }
}

/// Writes every buffer of `batch`, in order, with as few (vectored) writes as the socket
/// takes.
async fn write_gathered(
    w: &mut (impl AsyncWrite + Unpin),
    batch: &[bytes::Bytes],
) -> std::io::Result<()> {
    if let [one] = batch {
        return w.write_all(one).await;
    }
    let mut slices: Vec<std::io::IoSlice<'_>> =
        batch.iter().map(|b| std::io::IoSlice::new(b)).collect();
    let mut left = &mut slices[..];
    std::io::IoSlice::advance_slices(&mut left, 0);
    while !left.is_empty() {
        let n = w.write_vectored(left).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut left, n);
    }
    Ok(())
}

/// Which EOFs a channel has seen, so that its CLOSE follows the second. Both directions
/// are futures of one task, never run at once: the flags only need to be shareable.
#[derive(Default)]
struct HalfCloses {
    sent: std::sync::atomic::AtomicBool,
    received: std::sync::atomic::AtomicBool,
}

impl HalfCloses {
    /// Our EOF went out: is the channel done both ways?
    fn sent_eof(&self) -> bool {
        self.sent.store(true, Ordering::Relaxed);
        self.received.load(Ordering::Relaxed)
    }

    /// The peer's EOF came in: is the channel done both ways?
    fn received_eof(&self) -> bool {
        self.received.store(true, Ordering::Relaxed);
        self.sent.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::collections::VecDeque;

    fn data(byte: u8, len: usize) -> Option<ChannelMsg> {
        Some(ChannelMsg::Data {
            data: Bytes::from(vec![byte; len]),
        })
    }

    /// `gather` over a queue of what `queued` would return, front first.
    fn gathered(
        mut queue: VecDeque<Option<Option<ChannelMsg>>>,
    ) -> (Vec<usize>, Option<Option<ChannelMsg>>, usize) {
        let mut batch = Vec::new();
        let next = gather(Bytes::from(vec![0; 100]), &mut batch, || {
            queue.pop_front().flatten()
        });
        (batch.iter().map(Bytes::len).collect(), next, queue.len())
    }

    #[test]
    fn queued_data_is_gathered_until_the_queue_is_empty() {
        let queue = VecDeque::from([Some(data(1, 10)), Some(data(2, 20)), None, Some(data(3, 1))]);
        let (lens, next, left) = gathered(queue);
        assert_eq!(lens, [100, 10, 20]);
        assert!(next.is_none());
        assert_eq!(left, 1, "stops at the first empty poll");
    }

    #[test]
    fn a_message_that_is_not_data_is_handed_back_in_order() {
        let queue = VecDeque::from([
            Some(data(1, 10)),
            Some(Some(ChannelMsg::Eof)),
            Some(data(2, 20)),
        ]);
        let (lens, next, left) = gathered(queue);
        assert_eq!(lens, [100, 10]);
        assert!(matches!(next, Some(Some(ChannelMsg::Eof))));
        assert_eq!(left, 1);
        // The queue's end too.
        let (lens, next, _) = gathered(VecDeque::from([Some(data(1, 5)), Some(None)]));
        assert_eq!(lens, [100, 5]);
        assert!(matches!(next, Some(None)));
    }

    #[test]
    fn gathering_stops_at_its_limit() {
        let queue: VecDeque<_> = (0..100).map(|_| Some(data(1, 32 * 1024))).collect();
        let (lens, next, left) = gathered(queue);
        let total: usize = lens.iter().sum();
        assert!((GATHER..GATHER + 32 * 1024).contains(&total), "{total}");
        assert!(next.is_none());
        assert_eq!(left, 100 - (lens.len() - 1));
    }

    /// A writer that takes at most `step` bytes per call, vectored or not.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.got.extend_from_slice(&buf[..n]);
            self.calls += 1;
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.step - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.step {
                    break;
                }
            }
            self.calls += 1;
            std::task::Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_gathered_batch_is_written_whole_and_in_order_through_partial_writes() {
        let batch: Vec<Bytes> = (0..5u8)
            .map(|i| Bytes::from(vec![i; 1000 + usize::from(i)]))
            .collect();
        let want: Vec<u8> = batch.iter().flat_map(|b| b.iter().copied()).collect();
        for step in [1usize, 7, 999, 1000, 4096, 1 << 20] {
            let mut w = Trickle {
                got: Vec::new(),
                step,
                calls: 0,
            };
            write_gathered(&mut w, &batch).await.unwrap();
            assert_eq!(w.got, want, "step {step}");
            assert_eq!(w.calls, want.len().div_ceil(step), "step {step}");
        }
    }
}
