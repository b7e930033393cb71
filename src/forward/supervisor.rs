//! The supervisor: the one task that owns the chain's sessions. It watches every hop, and
//! when one's session ends it says which and why, and (when reconnecting is on) brings the
//! chain up again with capped exponential backoff, counting chains that flap. Everything it
//! knows is published as a [`ChainState`] on a `watch` channel; listeners, connections and a
//! status display read the chain from there ([`ChainWatch`]) and never touch the sessions'
//! lifecycle themselves.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::limits::{DEFAULT_PENDING_TIMEOUT, Stats};
use super::probe::{Probe, probe};
use crate::error::{Error, ErrorKind, HopLabel};
use crate::plan::chain::Chain;
use crate::ssh::session::{ConnectOptions, HopSession, Sessions, connect_chain};

/// A chain that stays up this long resets the reconnection backoff.
const STABLE: Duration = Duration::from_secs(60);
/// How often the supervisor checks that every hop's session is still up.
const HEALTH_CHECK: Duration = Duration::from_millis(250);

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

/// What the supervisor needs to bring the chain up again after losing it.
#[derive(Debug, Clone)]
pub struct Reconnect {
    /// The chain to connect.
    pub chain: Chain,
    /// How (the observer here reports reconnection progress).
    pub opts: ConnectOptions,
    /// Waits between attempts.
    pub backoff: Backoff,
    /// The check a re-established chain must pass before it carries connections (the
    /// target answers through it: [`super::probe`]).
    pub probe: Probe,
}

/// One established chain: its sessions and when it came up. Connections hold it while they
/// use it; the supervisor disconnects it when it is lost or serving ends.
#[derive(Clone)]
pub struct LiveChain(Arc<Generation>);

struct Generation {
    sessions: Sessions,
    since: Instant,
}

impl LiveChain {
    fn new(sessions: Sessions) -> Self {
        LiveChain(Arc::new(Generation {
            sessions,
            since: Instant::now(),
        }))
    }

    /// The sessions, outermost first.
    pub fn sessions(&self) -> &Sessions {
        &self.0.sessions
    }

    /// The hops, outermost first.
    pub fn hops(&self) -> impl Iterator<Item = &HopLabel> {
        self.0.sessions.hops().iter().map(|h| h.label())
    }

    /// When this chain came up.
    pub fn since(&self) -> Instant {
        self.0.since
    }

    /// Whether `self` and `other` are the same chain (not merely the same hops).
    pub fn same(&self, other: &LiveChain) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The first hop (outermost) whose session has ended, if any.
    pub(super) fn closed_hop(&self) -> Option<&HopSession> {
        self.0
            .sessions
            .hops()
            .iter()
            .find(|hop| session_closed(hop))
            .map(|hop| &**hop)
    }

    /// The sessions before the first one that has ended: still up, and worth keeping for
    /// the chain's re-establishment (and for the other chains sharing them).
    fn surviving(&self) -> Sessions {
        let hops = self.0.sessions.hops();
        let up = hops.iter().take_while(|h| !session_closed(h)).count();
        self.0.sessions.prefix(up)
    }
}

/// Whether a hop's session has ended: the one place the forwarder asks a session that.
pub(super) fn session_closed(hop: &HopSession) -> bool {
    hop.is_closed()
}

impl std::fmt::Debug for LiveChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.hops()).finish()
    }
}

/// The chain as the supervisor last saw it.
#[derive(Debug, Clone)]
pub enum ChainState {
    /// Every hop's session is up: connections open their channels on it.
    Up(LiveChain),
    /// `hop`'s session ended; the chain is being brought up again (the local port stays open
    /// and new connections wait). `attempt` counts attempts so far (0: backing off first).
    Recovering {
        /// The first hop (outermost) found closed.
        hop: HopLabel,
        /// Why its session ended, as far as known.
        reason: String,
        /// Attempts to re-establish the chain so far.
        attempt: u32,
    },
    /// `hop`'s session ended and reconnecting is off. Final.
    Lost {
        /// The first hop (outermost) found closed.
        hop: HopLabel,
        /// Why its session ended, as far as known.
        reason: String,
    },
    /// Re-establishing the chain failed in a way retrying cannot fix (a host key refused).
    /// Final.
    Refused {
        /// What failed.
        error: String,
        /// Its kind, for the exit code.
        kind: ErrorKind,
    },
    /// Serving is ending: connections still waiting for the chain give up.
    Stopping,
}

impl ChainState {
    /// Whether the chain will not come back (lost without reconnecting, or refused).
    pub fn is_final(&self) -> bool {
        matches!(self, ChainState::Lost { .. } | ChainState::Refused { .. })
    }

    /// Whether connections on `live` may go on: it is still the chain, or serving is ending
    /// (which lets open connections finish).
    fn carries(&self, live: &LiveChain) -> bool {
        match self {
            ChainState::Up(current) => current.same(live),
            ChainState::Stopping => true,
            _ => false,
        }
    }
}

/// A view of the chain's state, as the supervisor publishes it. Cheap to clone; any number
/// of readers (connections, listeners, a status display).
#[derive(Debug, Clone)]
pub struct ChainWatch(watch::Receiver<ChainState>);

impl ChainWatch {
    /// The state now.
    pub fn current(&self) -> ChainState {
        self.0.borrow().clone()
    }

    /// Waits for the next change and returns the new state; `None` once the supervisor has
    /// finished (the last state stays readable with [`ChainWatch::current`]).
    pub async fn changed(&mut self) -> Option<ChainState> {
        self.0.changed().await.ok()?;
        Some(self.current())
    }

    /// Whether serving is ending, or the chain will not come back.
    pub(super) fn giving_up(&self) -> bool {
        let state = self.0.borrow();
        matches!(*state, ChainState::Stopping) || state.is_final() || self.0.has_changed().is_err()
    }

    /// Why the chain is not up, as far as known (`None` when it is up, or stopping).
    pub(super) fn down_reason(&self) -> Option<String> {
        match &*self.0.borrow() {
            ChainState::Recovering { hop, reason, .. } => {
                Some(format!("{hop} lost: {reason}; reconnecting"))
            }
            ChainState::Lost { hop, reason } => Some(format!("{hop} lost: {reason}")),
            ChainState::Refused { error, .. } => Some(error.clone()),
            ChainState::Up(_) | ChainState::Stopping => None,
        }
    }

    /// The chain once it is up; `None` at `deadline`, or when it will not be up again.
    pub(super) async fn up_by(&mut self, deadline: Instant) -> Option<LiveChain> {
        let wait = self
            .0
            .wait_for(|s| !matches!(s, ChainState::Recovering { .. }));
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(Ok(state)) => match &*state {
                ChainState::Up(live) => Some(live.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Waits for any change, up to `deadline`.
    pub(super) async fn changed_by(&mut self, deadline: Instant) {
        let _ = tokio::time::timeout_at(deadline, self.0.changed()).await;
    }

    /// Resolves when `live` is lost (never once the supervisor has finished: serving is
    /// ending then, and open connections may finish).
    pub(super) async fn lost(&mut self, live: &LiveChain) {
        if self.0.wait_for(|s| !s.carries(live)).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves with the final state, if the chain reaches one.
    pub(super) async fn ended(&mut self) -> ChainState {
        let state = self
            .0
            .wait_for(ChainState::is_final)
            .await
            .map(|s| s.clone());
        match state {
            Ok(state) => state,
            Err(_) => std::future::pending().await,
        }
    }
}

/// Owns the chain: watches it, recovers it, publishes its state.
pub(super) struct Supervisor {
    state: watch::Sender<ChainState>,
    current: Option<LiveChain>,
    /// How to bring the chain up again (`None`: a lost chain is final).
    pub(super) reconnect: Option<Reconnect>,
    /// How long new connections wait for a chain being recovered (for the log).
    pub(super) pending_timeout: Duration,
    stats: Arc<Stats>,
    /// While recovering: the outer sessions that are still up, held so that the new chain
    /// is built on them (through the pool) instead of logging in to them again.
    kept: Option<Sessions>,
    /// Chains lost soon after coming up, in a row: a bastion that accepts and then drops us
    /// is retried with backoff too, not in a tight loop.
    flaps: u32,
}

impl Supervisor {
    /// Supervises `sessions`, not reconnecting until told how.
    pub(super) fn new(sessions: Sessions, stats: Arc<Stats>) -> Self {
        let live = LiveChain::new(sessions);
        Supervisor {
            state: watch::Sender::new(ChainState::Up(live.clone())),
            current: Some(live),
            reconnect: None,
            pending_timeout: DEFAULT_PENDING_TIMEOUT,
            stats,
            kept: None,
            flaps: 0,
        }
    }

    pub(super) fn watch(&self) -> ChainWatch {
        ChainWatch(self.state.subscribe())
    }

    /// Supervises until `stop`'s sender is dropped, then publishes [`ChainState::Stopping`]
    /// and hands back the chain that is up (to disconnect once connections are done); or
    /// until the chain reaches a final state (`None`: nothing left to disconnect).
    pub(super) async fn run(mut self, mut stop: oneshot::Receiver<()>) -> Option<LiveChain> {
        while let Some(live) = self.current.clone() {
            let (hop, reason) = tokio::select! {
                _ = &mut stop => break,
                lost = closed(&live) => lost,
            };
            warn!("lost the SSH session to {hop}: {reason}");
            let Some(how) = self.reconnect.clone() else {
                self.lose(live, ChainState::Lost { hop, reason });
                return None;
            };
            self.lose(
                live,
                ChainState::Recovering {
                    hop,
                    reason,
                    attempt: 0,
                },
            );
            info!(
                "re-establishing the chain (local port stays open; new connections wait up to {}s)",
                self.pending_timeout.as_secs()
            );
            let result = tokio::select! {
                _ = &mut stop => break,
                result = reestablish(how, self.flaps, &self.state) => result,
            };
            match result {
                Ok((sessions, attempts)) => self.recovered(sessions, attempts),
                Err(e) => {
                    self.state.send_replace(ChainState::Refused {
                        kind: e.kind(),
                        error: e.to_string(),
                    });
                    return None;
                }
            }
        }
        self.state.send_replace(ChainState::Stopping);
        if let (None, Some(kept)) = (&self.current, self.kept.take()) {
            kept.disconnect().await;
        }
        self.current
    }

    /// `live` lost a hop: publishes `now` (connections on it reset their clients, each
    /// logs it) and closes the rest of the chain, useless without the hop.
    fn lose(&mut self, live: LiveChain, now: ChainState) {
        self.state.send_replace(now);
        self.flaps = if live.since().elapsed() < STABLE {
            self.flaps.saturating_add(1)
        } else {
            0
        };
        self.current = None;
        let kept = live.surviving();
        // The sessions from the lost hop inwards ran over it: closed (those not shared).
        // The ones before it stay up for the next chain, unless nothing reconnects.
        self.kept = self.reconnect.is_some().then(|| kept.clone());
        drop(kept);
        tokio::spawn(async move { live.sessions().disconnect().await });
    }

    fn recovered(&mut self, sessions: Sessions, attempts: u32) {
        Stats::count(&self.stats.reconnects);
        info!("chain re-established (attempt {attempts}); serving again");
        // The path report was printed for the first chain: say it again if this one is weaker.
        for hop in sessions.hops() {
            if let Some(n) = hop.negotiated().filter(|n| !n.post_quantum()) {
                warn!(
                    "{}: re-established with a key exchange that is not post-quantum ({})",
                    hop.label(),
                    n.kex
                );
            }
        }
        let live = LiveChain::new(sessions);
        self.state.send_replace(ChainState::Up(live.clone()));
        self.current = Some(live);
        self.kept = None;
    }
}

/// Resolves with the first hop of `live` found closed, and why its session ended.
async fn closed(live: &LiveChain) -> (HopLabel, String) {
    let mut health = tokio::time::interval(HEALTH_CHECK);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        health.tick().await;
        if let Some(hop) = live.closed_hop() {
            let reason = hop
                .end_reason()
                .unwrap_or_else(|| "the session ended".to_string());
            return (hop.label().clone(), reason);
        }
    }
}

/// Brings the chain up again: the first attempt at once, then with backoff. After `flaps`
/// chains in a row that were lost within [`STABLE`] of coming up, the backoff goes on from
/// there instead of starting over: a bastion that lets us in and drops us again is not
/// hammered (nor made to collect a signature of ours per attempt). Only a refused host key,
/// or a hop `--require-pq` refuses, stops it: retrying cannot fix that, and the user must look. Each attempt is published.
async fn reestablish(
    how: Reconnect,
    flaps: u32,
    state: &watch::Sender<ChainState>,
) -> Result<(Sessions, u32), Error> {
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
        state.send_modify(|s| {
            if let ChainState::Recovering { attempt, .. } = s {
                *attempt = attempts;
            }
        });
        let failure = match connect_chain(&how.chain, &how.opts).await {
            Ok(sessions) => match probe(&sessions, &how.chain.target, how.probe).await {
                Ok(_) => return Ok((sessions, attempts)),
                Err(e) => {
                    // The chain is up, the target is not (yet): not ready to carry.
                    sessions.disconnect().await;
                    format!("the chain came up, but the probe failed: {e}")
                }
            },
            // `--require-pq` refusing a hop: the server's algorithms will not change either.
            Err(e) if matches!(e.kind(), ErrorKind::HostKey | ErrorKind::NotEncrypted) => {
                warn!("re-establishing the chain: {e}; giving up");
                return Err(e);
            }
            Err(e) => e.to_string(),
        };
        failures = failures.saturating_add(1);
        let delay = how.backoff.delay(failures);
        warn!(
            "re-establishing the chain, attempt {attempts} failed: {failure}; next attempt in {}s",
            delay.as_secs_f32()
        );
        tokio::time::sleep(delay).await;
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
