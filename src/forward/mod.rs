//! The forwarder: a local port whose every connection gets its own `direct-tcpip` channel
//! to the target on the innermost session (multiplexed, like `ssh -L`), bytes copied both
//! ways with half-close (EOF) propagated each way.
//!
//! Three parts, after mini-redis's server:
//!
//! - `supervisor`: the one task that owns the chain. When a hop's session ends (the server
//!   went away, keepalives went unanswered, the TCP connection broke) it logs which hop and
//!   why, and, when reconnecting is on, brings the chain up again with capped exponential
//!   backoff while the local port stays open. It publishes the chain's state
//!   ([`ChainState`]: up, recovering, lost, refused, stopping) on a `watch` channel; every
//!   other part reads the chain from there ([`ChainWatch`], also [`Tunnel::chain`]).
//! - `listener`: the accept loop. At most [`Limits::max_connections`] connections are
//!   served at once; excess ones are closed at once and logged (rate-limited), instead of
//!   running the process out of file descriptors.
//! - `conn`: one connection. It takes the chain that is up from the watch (waiting for it
//!   up to [`Limits::pending_timeout`] while it is being recovered), and when that chain is
//!   lost it resets its client: a connection reset, never a clean EOF that could pass for
//!   the end of the data.
//!
//! Without reconnecting, a lost chain ends serving with [`Ended::ChainLost`].
//!
//! **Shutdown.** Stop accepting, close connections still waiting for the chain, let open
//! connections finish for up to the drain timeout, close the rest, then disconnect the
//! sessions innermost first.

mod client;
mod conn;
pub mod holder;
mod limits;
mod listener;
pub mod probe;
pub mod socket;
mod supervisor;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use conn::ConnEvent;
pub use limits::{
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_PENDING_TIMEOUT, Limits, Stats,
};
pub use supervisor::{Backoff, ChainState, ChainWatch, LiveChain, Reconnect};

/// Receives [`ConnEvent`]s.
pub type ConnObserver = Arc<dyn Fn(ConnEvent) + Send + Sync>;

use crate::error::{ErrorKind, HopLabel};
use crate::spec::Target;
use crate::ssh::session::Sessions;
pub use listener::Listeners;
use listener::{Drained, Listener};
use supervisor::Supervisor;

/// How serving ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was asked for.
    Shutdown {
        /// Connections still open at the drain deadline, then closed.
        closed_at_deadline: usize,
    },
    /// Shutdown was asked for, then asked again while connections drained: those still open
    /// were closed at once.
    Cut {
        /// How many.
        cut: usize,
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

impl Ended {
    /// How a final chain state ends serving (`None`: the state is not final).
    fn from_final(state: ChainState) -> Option<Ended> {
        match state {
            ChainState::Lost { hop, reason } => Some(Ended::ChainLost { hop, reason }),
            ChainState::Refused { error, kind } => Some(Ended::ReconnectRefused { error, kind }),
            _ => None,
        }
    }
}

/// A listening tunnel over an established chain.
pub struct Tunnel {
    listener: Listeners,
    supervisor: Supervisor,
    target: Target,
    limits: Limits,
    stats: Arc<Stats>,
    postgres: bool,
    events: Option<ConnObserver>,
}

impl Tunnel {
    /// A tunnel forwarding connections from `listener` to `target` through `sessions`.
    /// It does not reconnect unless [`Tunnel::reconnect`] says how.
    pub fn new(listener: TcpListener, sessions: Sessions, target: Target) -> Self {
        Tunnel::with_listeners(
            Listeners {
                tcp: vec![listener],
                unix: None,
            },
            sessions,
            target,
        )
    }

    /// Like [`Tunnel::new`], listening on a TCP port, a Unix socket, or both.
    pub fn with_listeners(listeners: Listeners, sessions: Sessions, target: Target) -> Self {
        let stats = Arc::new(Stats::default());
        Tunnel {
            listener: listeners,
            supervisor: Supervisor::new(sessions, stats.clone()),
            target,
            limits: Limits::default(),
            stats,
            postgres: false,
            events: None,
        }
    }

    /// Tells `observer` of every connection's opening and closing (bytes, duration, how).
    pub fn on_connection(mut self, observer: ConnObserver) -> Self {
        self.events = Some(observer);
        self
    }

    /// The target is PostgreSQL: a PostgreSQL client that cannot be carried is told why in
    /// its protocol ([`crate::pg::refuse`]) instead of being reset. Off by default.
    pub fn postgres(mut self, on: bool) -> Self {
        self.postgres = on;
        self
    }

    /// Sets every limit.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self.supervisor.pending_timeout = limits.pending_timeout;
        self
    }

    /// Re-establishes the chain when it is lost (`None`: a lost chain ends serving).
    pub fn reconnect(mut self, reconnect: Option<Reconnect>) -> Self {
        self.supervisor.reconnect = reconnect;
        self
    }

    /// The (first) bound TCP address (an error when the tunnel listens on a Unix socket only).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self.listener.tcp.first() {
            Some(l) => l.local_addr(),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the tunnel listens on a Unix socket only",
            )),
        }
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// The chain's state, as the supervisor publishes it, from now until serving ends.
    pub fn chain(&self) -> ChainWatch {
        self.supervisor.watch()
    }

    /// Serves until `shutdown` resolves, or the chain is lost and cannot be re-established;
    /// then drains and disconnects.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Ended {
        self.serve_until(shutdown, std::future::pending()).await
    }

    /// Like [`Tunnel::serve`]; `cut` resolving while connections drain closes them at once
    /// ([`Ended::Cut`]: a second Ctrl-C).
    pub async fn serve_until(
        self,
        shutdown: impl Future<Output = ()>,
        cut: impl Future<Output = ()>,
    ) -> Ended {
        let Tunnel {
            listener,
            supervisor,
            target,
            limits,
            stats,
            postgres,
            events,
        } = self;
        let mut chain = supervisor.watch();
        let mut listener = Listener::new(listener, chain.clone(), target, &limits, stats);
        listener.postgres = postgres;
        listener.events = events;
        // Dropping `stop_supervisor` stops the supervisor.
        let (stop_supervisor, stopped) = oneshot::channel::<()>();
        let supervising = tokio::spawn(supervisor.run(stopped));

        let ended = tokio::select! {
            () = shutdown => None,
            state = chain.ended() => Ended::from_final(state),
            () = listener.run() => None,
        };
        let conns = listener.close();
        drop(stop_supervisor);
        // The supervisor publishes `Stopping` (connections still waiting give up) and hands
        // back the chain that is up, if any, to disconnect once connections are done.
        let live = supervising.await.ok().flatten();
        let announce = !matches!(ended, Some(Ended::ChainLost { .. }));
        let drained = conns.drain(limits.drain_timeout, announce, cut).await;
        if let Some(live) = live {
            live.sessions().disconnect().await;
        }
        match (ended, drained) {
            (Some(ended), _) => ended,
            (None, Drained::Cut(cut)) => Ended::Cut { cut },
            (None, Drained::AtDeadline(closed_at_deadline)) => {
                Ended::Shutdown { closed_at_deadline }
            }
            (None, Drained::Finished) => Ended::Shutdown {
                closed_at_deadline: 0,
            },
        }
    }
}
