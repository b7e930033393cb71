//! What the running tunnels look like from outside: a task per tunnel follows its chain's
//! state ([`ChainWatch`]) and records when each change happened; [`Monitor::snapshot`] turns
//! that and the tunnel's counters into the status interface's [`ProcessStatus`], and every
//! change is handed to the caller (for `--json` event lines and systemd's `STATUS=`).
//! The mapping from a chain state to each hop's state is pure ([`hop_statuses`]).

use std::sync::{Arc, Mutex};

use crate::error::HopLabel;
use crate::forward::{ChainState, ChainWatch, Stats};
use crate::status::{HopState, HopStatus, ProcessStatus, TunnelStatus, unix_now};

/// A change worth telling a supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A tunnel's hop was lost (`reconnecting`: it is being re-established).
    Lost {
        /// The tunnel.
        tunnel: String,
        /// The hop.
        hop: String,
        /// Why.
        reason: String,
    },
    /// A tunnel's chain is up again.
    Recovered {
        /// The tunnel.
        tunnel: String,
        /// The hop that had been lost.
        hop: String,
        /// Attempts it took.
        attempts: u32,
    },
}

/// One tunnel as the monitor knows it.
pub struct Watched {
    /// Its name.
    pub name: String,
    /// Where it listens, as shown.
    pub listen: Vec<String>,
    /// Its target, as shown.
    pub target: String,
    /// Its hops, outermost first.
    pub hops: Vec<HopLabel>,
    /// Its counters.
    pub stats: Arc<Stats>,
    /// Its chain.
    pub chain: ChainWatch,
}

struct Entry {
    watched: Watched,
    /// The state last seen, and since when (unix seconds).
    state: Mutex<(ChainState, u64)>,
    /// When the hops before a lost one came up (they stay up).
    up_since: Mutex<u64>,
}

/// The running tunnels, followed.
#[derive(Clone)]
pub struct Monitor {
    started: u64,
    tunnels: Arc<Vec<Entry>>,
}

impl Monitor {
    /// Follows `tunnels`, calling `on_change` for every loss and recovery.
    pub fn start(tunnels: Vec<Watched>, on_change: Arc<dyn Fn(Change) + Send + Sync>) -> Self {
        let now = unix_now();
        let entries: Vec<Entry> = tunnels
            .into_iter()
            .map(|watched| Entry {
                state: Mutex::new((watched.chain.current(), now)),
                up_since: Mutex::new(now),
                watched,
            })
            .collect();
        let monitor = Monitor {
            started: now,
            tunnels: Arc::new(entries),
        };
        for i in 0..monitor.tunnels.len() {
            let m = monitor.clone();
            let on_change = on_change.clone();
            tokio::spawn(async move { m.follow(i, on_change).await });
        }
        monitor
    }

    async fn follow(self, i: usize, on_change: Arc<dyn Fn(Change) + Send + Sync>) {
        let Some(entry) = self.tunnels.get(i) else {
            return;
        };
        let mut watch = entry.watched.chain.clone();
        let mut lost: Option<String> = None;
        while let Some(state) = watch.changed().await {
            let now = unix_now();
            let name = entry.watched.name.clone();
            match &state {
                ChainState::Recovering { hop, reason, .. } | ChainState::Lost { hop, reason }
                    if lost.is_none() =>
                {
                    lost = Some(hop.to_string());
                    on_change(Change::Lost {
                        tunnel: name,
                        hop: hop.to_string(),
                        reason: reason.clone(),
                    });
                }
                ChainState::Up(_) => {
                    if let Ok(mut up) = entry.up_since.lock() {
                        *up = now;
                    }
                    if let Some(hop) = lost.take() {
                        let before = entry.state.lock().map(|s| s.0.clone()).ok();
                        let attempts = match before {
                            Some(ChainState::Recovering { attempt, .. }) => attempt,
                            _ => 1,
                        };
                        on_change(Change::Recovered {
                            tunnel: name,
                            hop,
                            attempts,
                        });
                    }
                }
                _ => {}
            }
            if let Ok(mut slot) = entry.state.lock() {
                // A new attempt is not a new state: keep when the loss happened.
                let same_loss = matches!(
                    (&slot.0, &state),
                    (ChainState::Recovering { .. }, ChainState::Recovering { .. })
                );
                let since = if same_loss { slot.1 } else { now };
                *slot = (state, since);
            }
        }
    }

    /// The status interface's view of every tunnel now.
    pub fn snapshot(&self) -> ProcessStatus {
        let tunnels = self
            .tunnels
            .iter()
            .map(|e| {
                let (state, since) = e
                    .state
                    .lock()
                    .map(|s| s.clone())
                    .unwrap_or((ChainState::Stopping, 0));
                let up_since = e.up_since.lock().map(|u| *u).unwrap_or(0);
                let w = &e.watched;
                let get =
                    |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
                TunnelStatus {
                    name: w.name.clone(),
                    listen: w.listen.clone(),
                    target: w.target.clone(),
                    hops: hop_statuses(&w.hops, &state, since, up_since),
                    open: get(&w.stats.open),
                    accepted: get(&w.stats.accepted),
                    bytes_up: get(&w.stats.bytes_up),
                    bytes_down: get(&w.stats.bytes_down),
                    refused: get(&w.stats.refused),
                    rejected: get(&w.stats.rejected),
                    reset: get(&w.stats.reset),
                    reconnects: get(&w.stats.reconnects),
                }
            })
            .collect();
        ProcessStatus {
            pid: std::process::id(),
            started_unix: self.started,
            tunnels,
        }
    }

    /// A one-line summary for systemd's `STATUS=`.
    pub fn summary(&self) -> String {
        let snapshot = self.snapshot();
        let total = snapshot.tunnels.len();
        let down: Vec<&str> = snapshot
            .tunnels
            .iter()
            .filter(|t| t.hops.iter().any(|h| h.state != HopState::Up))
            .map(|t| t.name.as_str())
            .collect();
        match down.is_empty() {
            true => format!("{total} tunnel(s) up"),
            false => format!(
                "{} of {total} tunnel(s) up; down: {}",
                total - down.len(),
                down.join(", ")
            ),
        }
    }
}

/// Each hop's state for a chain in `state` (which began at `since`, unix seconds); hops
/// before a lost one have been up since `up_since`. Pure.
pub fn hop_statuses(
    hops: &[HopLabel],
    state: &ChainState,
    since: u64,
    up_since: u64,
) -> Vec<HopStatus> {
    let (lost_index, reason, lost_state) = match state {
        ChainState::Up(_) => (usize::MAX, None, HopState::Up),
        ChainState::Recovering { hop, reason, .. } => {
            (hop.index, Some(reason.clone()), HopState::Reconnecting)
        }
        ChainState::Lost { hop, reason } => (hop.index, Some(reason.clone()), HopState::Lost),
        ChainState::Refused { error, .. } => (1, Some(error.clone()), HopState::Lost),
        ChainState::Stopping => (1, Some("stopping".into()), HopState::Lost),
    };
    hops.iter()
        .map(|hop| {
            let (state, since, reason) = if hop.index < lost_index {
                (HopState::Up, up_since.min(since), None)
            } else if hop.index == lost_index {
                (lost_state, since, reason.clone())
            } else {
                (HopState::Lost, since, None)
            };
            HopStatus {
                name: hop.name.clone(),
                addr: hop.addr.clone(),
                state,
                since_unix: since,
                reason,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(index: usize, name: &str) -> HopLabel {
        HopLabel {
            index,
            name: name.into(),
            addr: format!("{name}:22"),
        }
    }

    #[test]
    fn a_lost_inner_hop_leaves_the_outer_ones_up() {
        let hops = [label(1, "bastion"), label(2, "inner"), label(3, "db")];
        let state = ChainState::Recovering {
            hop: label(2, "inner"),
            reason: "timed out".into(),
            attempt: 2,
        };
        let got = hop_statuses(&hops, &state, 100, 40);
        let states: Vec<HopState> = got.iter().map(|h| h.state).collect();
        assert_eq!(
            states,
            [HopState::Up, HopState::Reconnecting, HopState::Lost]
        );
        assert_eq!(got[0].since_unix, 40);
        assert_eq!(got[1].since_unix, 100);
        assert_eq!(got[1].reason.as_deref(), Some("timed out"));
        assert_eq!(got[2].reason, None);
    }

    #[test]
    fn a_chain_lost_without_reconnecting_is_lost_from_that_hop() {
        let hops = [label(1, "bastion"), label(2, "inner")];
        let state = ChainState::Lost {
            hop: label(1, "bastion"),
            reason: "EOF".into(),
        };
        let got = hop_statuses(&hops, &state, 7, 1);
        assert!(got.iter().all(|h| h.state == HopState::Lost));
    }
}
