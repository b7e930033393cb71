//! The accept loop: every accepted connection gets a slot under the connection limit (or is
//! refused at once) and a task of its own; the loop never waits for the chain or a
//! connection. At the end, [`Connections::drain`] lets open connections finish.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::client::ClientStream;
use super::conn::Handler;
use super::limits::{Limits, Slots, Stats};
use super::supervisor::ChainWatch;
use crate::pg::refuse::{self, SqlState};
use crate::spec::Target;

/// How long connections get to close themselves after the drain deadline.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// PostgreSQL clients over the connection limit told so at once; more are just closed.
const MAX_ANSWERING: usize = 32;
/// Wait after a failed accept (EMFILE and friends) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The local listener and the connections it accepted.
pub(super) struct Listener {
    tcp: Vec<TcpListener>,
    unix: Option<UnixListener>,
    chain: ChainWatch,
    target: Arc<Target>,
    slots: Slots,
    stats: Arc<Stats>,
    pending_timeout: Duration,
    conns: Connections,
    /// PostgreSQL clients turned away are told why ([`crate::pg::refuse`]).
    pub(super) postgres: bool,
    /// Told when connections open and close.
    pub(super) events: Option<super::ConnObserver>,
    /// Bounds the clients over the limit being told so at once.
    answering: Arc<Semaphore>,
}

/// Where a tunnel listens: TCP ports (one per address: `localhost` is 127.0.0.1 and ::1), a
/// Unix socket, or both.
#[derive(Debug, Default)]
pub struct Listeners {
    /// The TCP listeners (`--listen`, or an ssh-style forward's every address).
    pub tcp: Vec<TcpListener>,
    /// The Unix-socket listener (`--socket`).
    pub unix: Option<UnixListener>,
}

/// The originator a `direct-tcpip` channel names for a client of the Unix socket (it has no
/// address of its own).
const UNIX_ORIGINATOR: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// The next client of any listener.
async fn accept(
    tcp: &[TcpListener],
    unix: &Option<UnixListener>,
) -> std::io::Result<(ClientStream, std::net::SocketAddr)> {
    std::future::poll_fn(|cx| {
        for listener in tcp {
            if let Poll::Ready(accepted) = listener.poll_accept(cx) {
                return Poll::Ready(accepted.map(|(s, peer)| (ClientStream::Tcp(s), peer)));
            }
        }
        if let Some(listener) = unix
            && let Poll::Ready(accepted) = listener.poll_accept(cx)
        {
            return Poll::Ready(accepted.map(|(s, _)| (ClientStream::Unix(s), UNIX_ORIGINATOR)));
        }
        Poll::Pending
    })
    .await
}

/// How draining ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drained {
    /// Every connection finished in time.
    Finished,
    /// This many were still open at the deadline, and were closed.
    AtDeadline(usize),
    /// This many were still open when draining was cut short, and were closed at once.
    Cut(usize),
}

/// The connections being served.
pub(super) struct Connections {
    tasks: JoinSet<()>,
    /// Signalled at the drain deadline: connections still open close then.
    stop: watch::Sender<()>,
}

impl Listener {
    pub(super) fn new(
        listeners: Listeners,
        chain: ChainWatch,
        target: Target,
        limits: &Limits,
        stats: Arc<Stats>,
    ) -> Self {
        Listener {
            tcp: listeners.tcp,
            unix: listeners.unix,
            chain,
            target: Arc::new(target),
            slots: Slots::new(limits.max_connections),
            stats,
            pending_timeout: limits.pending_timeout,
            conns: Connections {
                tasks: JoinSet::new(),
                stop: watch::Sender::new(()),
            },
            postgres: false,
            events: None,
            answering: Arc::new(Semaphore::new(MAX_ANSWERING)),
        }
    }

    /// Accepts until dropped (the caller selects it against what ends serving).
    pub(super) async fn run(&mut self) {
        loop {
            tokio::select! {
                accepted = accept(&self.tcp, &self.unix) => match accepted {
                    Ok((tcp, peer)) => {
                        Stats::count(&self.stats.accepted);
                        let Some(permit) = self.slots.admit(peer, &self.stats) else {
                            self.turn_away(tcp);
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
                            postgres: self.postgres,
                            events: self.events.clone(),
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

    /// A connection over the limit: a PostgreSQL client is told so (at most
    /// [`MAX_ANSWERING`] at once, in tasks of their own that end within a few seconds);
    /// otherwise, or beyond that, it is closed at once.
    fn turn_away(&self, mut tcp: ClientStream) {
        let permit = match self.postgres {
            true => self.answering.clone().try_acquire_owned().ok(),
            false => None,
        };
        let Some(permit) = permit else {
            return;
        };
        let message = format!(
            "pgtunnel: too many connections: this tunnel carries at most {} at once \
             (--max-connections)",
            self.slots.max()
        );
        tokio::spawn(async move {
            // Not a PostgreSQL client: closed, as any client over the limit.
            let _ = refuse::answer(&mut tcp, SqlState::CannotConnect, &message).await;
            drop(permit);
        });
    }

    /// Stops accepting (the port closes) and hands over the connections.
    pub(super) fn close(self) -> Connections {
        self.conns
    }
}

impl Connections {
    /// Lets open connections finish for up to `timeout` (saying so when `announce`), then
    /// closes the rest; `cut` resolving first closes them at once.
    pub(super) async fn drain(
        mut self,
        timeout: Duration,
        announce: bool,
        cut: impl Future<Output = ()>,
    ) -> Drained {
        let open = self.tasks.len();
        if open > 0 && announce {
            info!(
                "waiting up to {}s for {open} open connection(s) to finish",
                timeout.as_secs_f32()
            );
        }
        tokio::pin!(cut);
        let cut_now = tokio::select! {
            done = tokio::time::timeout(timeout, self.join_all()) => match done {
                Ok(()) => return Drained::Finished,
                Err(_) => false,
            },
            () = &mut cut => true,
        };
        let still_open = self.tasks.len();
        // Each connection closes its channel and socket on the stop signal.
        self.stop.send_replace(());
        let cut_now = cut_now
            || tokio::select! {
                _ = tokio::time::timeout(CLOSE_GRACE, self.join_all()) => false,
                () = &mut cut => true,
            };
        self.tasks.abort_all();
        self.join_all().await;
        match cut_now {
            true => Drained::Cut(still_open),
            false => Drained::AtDeadline(still_open),
        }
    }

    async fn join_all(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}
