//! The local listener: every accepted connection gets its own `direct-tcpip` channel to the
//! target on the innermost session (multiplexed, like `ssh -L`), and bytes are copied both
//! ways with half-close (EOF) propagated each way.
//!
//! **Recovery.** The serve loop watches the chain. When a hop's session ends (the server
//! went away, keepalives went unanswered, the TCP connection broke), it logs which hop and
//! why, resets every connection that chain carried (the client sees a connection reset:
//! never a clean EOF that could pass for the end of the data), and, when reconnecting is on,
//! brings the chain up again with capped exponential backoff while the local port stays
//! open. Connections that arrive while the chain is down wait for it up to
//! [`Limits::pending_timeout`], then are closed. Without reconnecting, a lost chain ends
//! serving with [`Ended::ChainLost`].
//!
//! **Limits.** At most [`Limits::max_connections`] connections are served at once; excess
//! ones are closed at once and logged (rate-limited), instead of running the process out of
//! file descriptors.
//!
//! **Shutdown.** Stop accepting, close connections still waiting for the chain, let open
//! connections finish for up to the drain timeout, close the rest, then disconnect the
//! sessions innermost first.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::Msg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::error::{Error, ErrorKind, HopLabel};
use crate::plan::chain::Chain;
use crate::spec::Target;
use crate::ssh::session::{ConnectOptions, Sessions, connect_chain};

/// How long open connections may keep going after shutdown is asked for, by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection that arrives while the chain is down waits for it, by default.
pub const DEFAULT_PENDING_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections served at once, by default (the binary lowers it to fit the file limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// A chain that stays up this long resets the reconnection backoff.
const STABLE: Duration = Duration::from_secs(60);
/// How often the serve loop checks that the chain is still up.
const HEALTH_CHECK: Duration = Duration::from_millis(250);
/// Refusals (over `--max-connections`) are logged at most this often.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// Bytes read from a local client per channel write.
const COPY_BUFFER: usize = 32 * 1024;

/// Counters, readable while the tunnel runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections whose channel the last hop refused.
    pub refused: AtomicU64,
    /// Connections turned away: over the connection limit, or the chain stayed down.
    pub rejected: AtomicU64,
    /// Connections reset because the chain carrying them was lost.
    pub reset: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Bytes from local clients to the target.
    pub bytes_up: AtomicU64,
    /// Bytes from the target to local clients.
    pub bytes_down: AtomicU64,
    /// Times the chain was re-established.
    pub reconnects: AtomicU64,
}

/// How serving ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was asked for.
    Shutdown {
        /// Connections still open at the drain deadline, then closed.
        closed_at_deadline: usize,
    },
    /// A hop's session ended and reconnecting is off.
    ChainLost {
        /// The first hop (outermost) found closed.
        hop: HopLabel,
        /// Why its session ended, as far as known.
        reason: String,
    },
    /// Re-establishing the chain failed in a way retrying cannot fix (a host key refused).
    ReconnectRefused {
        /// What failed.
        error: String,
        /// Its kind, for the exit code.
        kind: ErrorKind,
    },
}

/// Capped exponential backoff between attempts to re-establish the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first failed attempt (the first attempt is immediate).
    pub initial: Duration,
    /// The wait doubles after each failure up to this.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait after `failures` failed attempts in a row (1 = after the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// What the tunnel needs to bring the chain up again after losing it.
#[derive(Debug, Clone)]
pub struct Reconnect {
    /// The chain to connect.
    pub chain: Chain,
    /// How (the observer here reports reconnection progress).
    pub opts: ConnectOptions,
    /// Waits between attempts.
    pub backoff: Backoff,
}

/// Bounds on what the tunnel holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long open connections may finish after shutdown.
    pub drain_timeout: Duration,
    /// How long a connection accepted while the chain is down waits for it.
    pub pending_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            pending_timeout: DEFAULT_PENDING_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// A listening tunnel over an established chain.
pub struct Tunnel {
    listener: TcpListener,
    sessions: Sessions,
    target: Target,
    limits: Limits,
    reconnect: Option<Reconnect>,
    stats: Arc<Stats>,
}

/// One established chain. Connections hold it while they use it.
struct Generation {
    sessions: Sessions,
    /// When it came up.
    since: Instant,
    /// Becomes true when the chain is lost: connections on it reset their clients.
    lost: watch::Sender<bool>,
}

/// What connections see of the chain.
#[derive(Clone)]
enum ChainState {
    Up(Arc<Generation>),
    Down,
    /// Shutting down: waiting connections give up.
    Stopping,
}

type Reconnecting = Pin<Box<dyn Future<Output = Result<(Sessions, u32), Error>> + Send>>;

impl Tunnel {
    /// A tunnel forwarding connections from `listener` to `target` through `sessions`.
    /// It does not reconnect unless [`Tunnel::reconnect`] says how.
    pub fn new(listener: TcpListener, sessions: Sessions, target: Target) -> Self {
        Tunnel {
            listener,
            sessions,
            target,
            limits: Limits::default(),
            reconnect: None,
            stats: Arc::new(Stats::default()),
        }
    }

    /// Sets how long open connections may finish after shutdown.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.limits.drain_timeout = timeout;
        self
    }

    /// Sets every limit.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Re-establishes the chain when it is lost (`None`: a lost chain ends serving).
    pub fn reconnect(mut self, reconnect: Option<Reconnect>) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Serves until `shutdown` resolves, or the chain is lost and cannot be re-established;
    /// then drains and disconnects.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Ended {
        let Tunnel {
            listener,
            sessions,
            target,
            limits,
            reconnect,
            stats,
        } = self;
        let target = Arc::new(target);
        let first = Arc::new(Generation {
            sessions,
            since: Instant::now(),
            lost: watch::channel(false).0,
        });
        let (state_tx, state_rx) = watch::channel(ChainState::Up(first.clone()));
        let mut current = Some(first);
        let (stop_tx, stop_rx) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let mut refusals = RefusalLog::default();
        let mut conns = JoinSet::new();
        let mut reconnecting: Option<Reconnecting> = None;
        // Chains lost soon after coming up, in a row: a bastion that accepts and then drops
        // us is retried with backoff too, not in a tight loop.
        let mut flaps = 0u32;
        let mut health = tokio::time::interval(HEALTH_CHECK);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);

        let ended = loop {
            tokio::select! {
                _ = &mut shutdown => break None,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        stats.accepted.fetch_add(1, Ordering::Relaxed);
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            stats.rejected.fetch_add(1, Ordering::Relaxed);
                            refusals.refused(peer, limits.max_connections);
                            drop(tcp);
                            continue;
                        };
                        conns.spawn(connection(Conn {
                            tcp,
                            peer,
                            state: state_rx.clone(),
                            target: target.clone(),
                            stop: stop_rx.clone(),
                            stats: stats.clone(),
                            pending_timeout: limits.pending_timeout,
                            _permit: permit,
                        }));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(cause = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                _ = health.tick(), if current.is_some() => {
                    let Some(generation) = &current else { continue };
                    let Some(hop) = generation.sessions.hops().iter().find(|h| h.is_closed()) else {
                        continue;
                    };
                    let label = hop.label().clone();
                    let reason = hop
                        .end_reason()
                        .unwrap_or_else(|| "the session ended".to_string());
                    // Connections on this chain reset their clients (each logs it).
                    warn!("lost the SSH session to {label}: {reason}");
                    let _ = generation.lost.send(true);
                    let _ = state_tx.send(ChainState::Down);
                    flaps = if generation.since.elapsed() < STABLE {
                        flaps.saturating_add(1)
                    } else {
                        0
                    };
                    if let Some(old) = current.take() {
                        // The rest of the chain is useless without this hop: close it.
                        tokio::spawn(async move { old.sessions.disconnect().await });
                    }
                    match &reconnect {
                        None => break Some(Ended::ChainLost { hop: label, reason }),
                        Some(how) => {
                            info!(
                                "re-establishing the chain (local port stays open; new connections wait up to {}s)",
                                limits.pending_timeout.as_secs()
                            );
                            reconnecting = Some(Box::pin(reestablish(how.clone(), flaps)));
                        }
                    }
                }
                result = async {
                    match reconnecting.as_mut() {
                        Some(attempts) => attempts.await,
                        None => std::future::pending().await,
                    }
                }, if reconnecting.is_some() => {
                    reconnecting = None;
                    match result {
                        Ok((sessions, attempts)) => {
                            stats.reconnects.fetch_add(1, Ordering::Relaxed);
                            info!("chain re-established (attempt {attempts}); serving again");
                            let generation = Arc::new(Generation {
                                sessions,
                                since: Instant::now(),
                                lost: watch::channel(false).0,
                            });
                            let _ = state_tx.send(ChainState::Up(generation.clone()));
                            current = Some(generation);
                        }
                        Err(e) => {
                            break Some(Ended::ReconnectRefused {
                                kind: e.kind(),
                                error: e.to_string(),
                            });
                        }
                    }
                }
            }
        };
        drop(listener);
        drop(reconnecting);
        // Connections still waiting for the chain give up now.
        let _ = state_tx.send(ChainState::Stopping);

        let open = conns.len();
        if open > 0 && !matches!(ended, Some(Ended::ChainLost { .. })) {
            info!(
                open,
                "waiting up to {}s for open connections to finish",
                limits.drain_timeout.as_secs_f32()
            );
        }
        let drained = tokio::time::timeout(limits.drain_timeout, async {
            while conns.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        let mut closed_at_deadline = 0;
        if !drained {
            closed_at_deadline = conns.len();
            let _ = stop_tx.send(true);
            // Each connection closes its channel and socket on the stop signal.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while conns.join_next().await.is_some() {}
            })
            .await;
            conns.abort_all();
        }
        if let Some(generation) = current {
            generation.sessions.disconnect().await;
        }
        ended.unwrap_or(Ended::Shutdown { closed_at_deadline })
    }
}

/// Brings the chain up again: the first attempt at once, then with backoff. After `flaps`
/// chains in a row that were lost within [`STABLE`] of coming up, the backoff goes on from
/// there instead of starting over: a bastion that lets us in and drops us again is not
/// hammered (nor made to collect a signature of ours per attempt). Only a refused host key
/// stops it: retrying cannot fix that, and the user must look.
async fn reestablish(how: Reconnect, flaps: u32) -> Result<(Sessions, u32), Error> {
    if flaps > 0 {
        let delay = how.backoff.delay(flaps);
        warn!(
            "the chain was lost {flaps} time(s) in a row within {}s of coming up; waiting {}s \
             before reconnecting",
            STABLE.as_secs(),
            delay.as_secs_f32()
        );
        tokio::time::sleep(delay).await;
    }
    let mut failures = flaps;
    let mut attempts = 0u32;
    loop {
        attempts = attempts.saturating_add(1);
        match connect_chain(&how.chain, &how.opts).await {
            Ok(sessions) => return Ok((sessions, attempts)),
            Err(e) if e.kind() == ErrorKind::HostKey => {
                warn!("re-establishing the chain: {e}; giving up");
                return Err(e);
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = how.backoff.delay(failures);
                warn!(
                    "re-establishing the chain, attempt {attempts} failed: {e}; next attempt in {}s",
                    delay.as_secs_f32()
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Logs connections refused over the limit: the first at once, then a count at most every
/// [`REFUSAL_LOG_INTERVAL`].
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    since_last: u64,
}

impl RefusalLog {
    fn refused(&mut self, peer: SocketAddr, max: usize) {
        self.since_last += 1;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|last| now.duration_since(last) >= REFUSAL_LOG_INTERVAL)
        {
            warn!(
                %peer,
                "refused {} connection(s): {max} connections are open (--max-connections)",
                self.since_last
            );
            self.last = Some(now);
            self.since_last = 0;
        }
    }
}

struct Conn {
    tcp: TcpStream,
    peer: SocketAddr,
    state: watch::Receiver<ChainState>,
    target: Arc<Target>,
    stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
    pending_timeout: Duration,
    _permit: OwnedSemaphorePermit,
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

async fn connection(conn: Conn) {
    let Conn {
        tcp,
        peer,
        mut state,
        target,
        mut stop,
        stats,
        pending_timeout,
        _permit,
    } = conn;
    if let Err(e) = tcp.set_nodelay(true) {
        debug!(%peer, "set_nodelay: {e}");
    }
    let deadline = Instant::now() + pending_timeout;
    let (generation, channel) = loop {
        let Some(generation) = wait_until_up(&mut state, deadline).await else {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            if matches!(*state.borrow(), ChainState::Stopping) {
                debug!(%peer, "closing a connection that was waiting for the chain: shutting down");
            } else {
                warn!(
                    %peer,
                    "closing connection: the chain is still down after {}s",
                    pending_timeout.as_secs_f32()
                );
            }
            reset(tcp);
            return;
        };
        let Some(last) = generation.sessions.last() else {
            return;
        };
        match last
            .open_direct_tcpip_channel(&target.host, target.port, peer)
            .await
        {
            Ok(channel) => break (generation, channel),
            Err(e) if e.session_ended() => {
                // The chain died under us; the serve loop will notice. Wait for the next one.
                debug!(%peer, "chain lost while opening a channel; waiting for it to return");
                let _ = tokio::time::timeout_at(deadline, state.changed()).await;
            }
            Err(reason) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                warn!(
                    %peer,
                    "{} could not open a connection to {target}: {reason}",
                    last.label()
                );
                let mut tcp = tcp;
                let _ = tcp.shutdown().await;
                return;
            }
        }
    };
    stats.open.fetch_add(1, Ordering::Relaxed);
    debug!(%peer, "connection open to {target}");
    let mut lost = generation.lost.subscribe();
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let finish = tokio::select! {
        finish = pump(&mut tcp_read, &mut tcp_write, channel, &stats) => finish,
        _ = lost.wait_for(|lost| *lost) => Finish::Lost,
        _ = stop.wait_for(|stop| *stop) => Finish::Stopped,
    };
    stats.open.fetch_sub(1, Ordering::Relaxed);
    let why = match finish {
        Finish::Done => {
            let _ = tcp_write.shutdown().await;
            debug!(%peer, "connection closed");
            return;
        }
        Finish::Stopped => "shutdown's drain deadline".to_string(),
        Finish::Failed(why) => why,
        Finish::Lost => {
            let hop = generation
                .sessions
                .hops()
                .iter()
                .find(|h| h.is_closed())
                .map(|h| h.label().to_string());
            match hop {
                Some(hop) => format!("the SSH session to {hop} ended"),
                None => "the SSH session carrying it ended".to_string(),
            }
        }
    };
    stats.reset.fetch_add(1, Ordering::Relaxed);
    info!(%peer, "connection reset: {why}");
    // RST, not FIN: whatever the client was receiving did not end cleanly.
    if let Ok(tcp) = tcp_read.reunite(tcp_write) {
        reset(tcp);
    }
}

/// Waits until the chain is up (or `deadline`, or shutdown).
async fn wait_until_up(
    state: &mut watch::Receiver<ChainState>,
    deadline: Instant,
) -> Option<Arc<Generation>> {
    let wait = state.wait_for(|s| !matches!(s, ChainState::Down));
    match tokio::time::timeout_at(deadline, wait).await {
        Ok(Ok(s)) => match &*s {
            ChainState::Up(generation) => Some(generation.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Resets a client connection (RST, not FIN).
fn reset(tcp: TcpStream) {
    let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
    drop(tcp);
}

/// Copies both ways until both directions have ended, one fails, or the session under the
/// channel ends. The channel's messages tell these apart: EOF and CLOSE end the data
/// cleanly, while a queue that closes without a CLOSE means the session is gone (a byte
/// stream over the channel would report both as EOF, and the client would take a lost
/// chain for the end of the data).
async fn pump(
    tcp_read: &mut OwnedReadHalf,
    tcp_write: &mut OwnedWriteHalf,
    channel: russh::Channel<Msg>,
    stats: &Stats,
) -> Finish {
    let (mut rx, tx) = channel.split();
    let down = async {
        loop {
            match rx.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    tcp_write
                        .write_all(&data)
                        .await
                        .map_err(|e| Finish::Failed(format!("writing to the client: {e}")))?;
                    stats
                        .bytes_down
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Some(ChannelMsg::Eof) => {
                    let _ = tcp_write.shutdown().await;
                }
                Some(ChannelMsg::Close) => return Ok(()),
                Some(_) => {}
                None => return Err(Finish::Lost),
            }
        }
    };
    let up = async {
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            let n = tcp_read
                .read(&mut buf)
                .await
                .map_err(|e| Finish::Failed(format!("reading from the client: {e}")))?;
            if n == 0 {
                let _ = tx.eof().await;
                return Ok::<(), Finish>(());
            }
            tx.data(&buf[..n])
                .await
                .map_err(|e| Finish::Failed(format!("sending to the target: {e}")))?;
            stats.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
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
    let _ = tx.close().await;
    match outcome {
        Ok(()) => Finish::Done,
        Err(finish) => finish,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        // No overflow however long the outage.
        assert_eq!(b.delay(u32::MAX), b.max);
        assert_eq!(b.delay(0), b.initial);
    }
}
