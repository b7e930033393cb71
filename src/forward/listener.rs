//! The accept loop: every accepted connection gets a slot under the connection limit (or is
//! refused at once) and a task of its own; the loop never waits for the chain or a
//! connection. At the end, [`Connections::drain`] lets open connections finish.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::conn::Handler;
use super::limits::{Limits, Slots, Stats};
use super::supervisor::ChainWatch;
use crate::spec::Target;

/// How long connections get to close themselves after the drain deadline.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Wait after a failed accept (EMFILE and friends) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The local listener and the connections it accepted.
pub(super) struct Listener {
    tcp: TcpListener,
    chain: ChainWatch,
    target: Arc<Target>,
    slots: Slots,
    stats: Arc<Stats>,
    pending_timeout: Duration,
    conns: Connections,
}

/// The connections being served.
pub(super) struct Connections {
    tasks: JoinSet<()>,
    /// Signalled at the drain deadline: connections still open close then.
    stop: watch::Sender<()>,
}

impl Listener {
    pub(super) fn new(
        tcp: TcpListener,
        chain: ChainWatch,
        target: Target,
        limits: &Limits,
        stats: Arc<Stats>,
    ) -> Self {
        Listener {
            tcp,
            chain,
            target: Arc::new(target),
            slots: Slots::new(limits.max_connections),
            stats,
            pending_timeout: limits.pending_timeout,
            conns: Connections {
                tasks: JoinSet::new(),
                stop: watch::Sender::new(()),
            },
        }
    }

    /// Accepts until dropped (the caller selects it against what ends serving).
    pub(super) async fn run(&mut self) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        Stats::count(&self.stats.accepted);
                        let Some(permit) = self.slots.admit(peer, &self.stats) else {
                            continue;
                        };
                        self.conns.tasks.spawn(Handler {
                            tcp,
                            peer,
                            chain: self.chain.clone(),
                            target: self.target.clone(),
                            stop: self.conns.stop.subscribe(),
                            stats: self.stats.clone(),
                            pending_timeout: self.pending_timeout,
                            _permit: permit,
                        }.run());
                    }
                    Err(e) => {
                        warn!(cause = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(_) = self.conns.tasks.join_next(), if !self.conns.tasks.is_empty() => {}
            }
        }
    }

    /// Stops accepting (the port closes) and hands over the connections.
    pub(super) fn close(self) -> Connections {
        self.conns
    }
}

impl Connections {
    /// Lets open connections finish for up to `timeout` (saying so when `announce`), then
    /// closes the rest. Returns how many were still open at the deadline.
    pub(super) async fn drain(mut self, timeout: Duration, announce: bool) -> usize {
        let open = self.tasks.len();
        if open > 0 && announce {
            info!(
                open,
                "waiting up to {}s for open connections to finish",
                timeout.as_secs_f32()
            );
        }
        if tokio::time::timeout(timeout, self.join_all()).await.is_ok() {
            return 0;
        }
        let closed_at_deadline = self.tasks.len();
        // Each connection closes its channel and socket on the stop signal.
        self.stop.send_replace(());
        let _ = tokio::time::timeout(CLOSE_GRACE, self.join_all()).await;
        self.tasks.abort_all();
        closed_at_deadline
    }

    async fn join_all(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}
