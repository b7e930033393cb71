//! The local listener: every accepted connection gets its own `direct-tcpip` channel to the
//! target on the innermost session (multiplexed, like `ssh -L`), and bytes are copied both
//! ways with half-close (EOF) propagated each way.
//!
//! Shutdown: stop accepting, let open connections finish for up to the drain timeout, close
//! the rest, then disconnect the sessions innermost first.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::error::HopLabel;
use crate::session::Sessions;
use crate::spec::Target;

/// How long open connections may keep going after shutdown is asked for, by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the accept loop checks that the chain is still up.
const HEALTH_CHECK: Duration = Duration::from_millis(500);

/// Counters, readable while the tunnel runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections whose channel the last hop refused.
    pub refused: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Bytes from local clients to the target.
    pub bytes_up: AtomicU64,
    /// Bytes from the target to local clients.
    pub bytes_down: AtomicU64,
}

/// How serving ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was asked for.
    Shutdown {
        /// Connections still open at the drain deadline, then closed.
        closed_at_deadline: usize,
    },
    /// A hop's session ended: the tunnel cannot carry anything more.
    ChainLost {
        /// The first hop found closed.
        hop: HopLabel,
    },
}

/// A listening tunnel over an established chain.
pub struct Tunnel {
    listener: TcpListener,
    sessions: Arc<Sessions>,
    target: Target,
    drain_timeout: Duration,
    stats: Arc<Stats>,
}

impl Tunnel {
    /// A tunnel forwarding connections from `listener` to `target` through `sessions`.
    pub fn new(listener: TcpListener, sessions: Sessions, target: Target) -> Self {
        Tunnel {
            listener,
            sessions: Arc::new(sessions),
            target,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            stats: Arc::new(Stats::default()),
        }
    }

    /// Sets how long open connections may finish after shutdown.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
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

    /// Serves until `shutdown` resolves or the chain is lost; then drains and disconnects.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Ended {
        let Tunnel {
            listener,
            sessions,
            target,
            drain_timeout,
            stats,
        } = self;
        let target = Arc::new(target);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        let mut health = tokio::time::interval(HEALTH_CHECK);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);

        let mut ended = loop {
            tokio::select! {
                _ = &mut shutdown => break None,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        stats.accepted.fetch_add(1, Ordering::Relaxed);
                        conns.spawn(connection(
                            tcp,
                            peer,
                            sessions.clone(),
                            target.clone(),
                            stop_rx.clone(),
                            stats.clone(),
                        ));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(cause = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                _ = health.tick() => {
                    if let Some(hop) = sessions.hops().iter().find(|h| h.is_closed()) {
                        break Some(Ended::ChainLost { hop: hop.label().clone() });
                    }
                }
            }
        };
        drop(listener);

        let open = conns.len();
        if open > 0 {
            info!(
                open,
                "waiting up to {}s for open connections to finish",
                drain_timeout.as_secs_f32()
            );
        }
        let drained = tokio::time::timeout(drain_timeout, async {
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
        sessions.disconnect().await;
        ended
            .get_or_insert(Ended::Shutdown { closed_at_deadline })
            .clone()
    }
}

async fn connection(
    mut tcp: TcpStream,
    peer: SocketAddr,
    sessions: Arc<Sessions>,
    target: Arc<Target>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        debug!(%peer, "set_nodelay: {e}");
    }
    let Some(last) = sessions.last() else {
        return;
    };
    let mut channel = match last
        .open_direct_tcpip(&target.host, target.port, peer)
        .await
    {
        Ok(channel) => channel,
        Err(reason) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            warn!(
                %peer,
                "{} could not open a connection to {target}: {reason}",
                last.label()
            );
            let _ = tcp.shutdown().await;
            return;
        }
    };
    stats.open.fetch_add(1, Ordering::Relaxed);
    debug!(%peer, "connection open to {target}");
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut tcp, &mut channel) => match result {
            Ok((up, down)) => {
                stats.bytes_up.fetch_add(up, Ordering::Relaxed);
                stats.bytes_down.fetch_add(down, Ordering::Relaxed);
                debug!(%peer, up, down, "connection closed");
            }
            Err(e) => debug!(%peer, "connection ended: {e}"),
        },
        _ = stop.wait_for(|stop| *stop) => {
            debug!(%peer, "closing connection at shutdown");
        }
    }
    stats.open.fetch_sub(1, Ordering::Relaxed);
}
