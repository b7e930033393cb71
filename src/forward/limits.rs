//! What the tunnel holds at most, and what it counts: the connection limit (excess
//! connections are refused at once and the refusals logged, rate-limited, so the accept loop
//! never stalls) and the live counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::warn;

/// How long open connections may keep going after shutdown is asked for, by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection that arrives while the chain is down waits for it, by default.
pub const DEFAULT_PENDING_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections served at once, by default (the binary lowers it to fit the file limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Refusals (over `--max-connections`) are logged at most this often.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(5);

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

impl Stats {
    /// Adds one to `counter`.
    pub(super) fn count(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    /// Adds `n` to `counter`.
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The connection limit: a slot per connection served, refusals over it logged.
pub(super) struct Slots {
    free: Arc<Semaphore>,
    max: usize,
    refusals: RefusalLog,
}

impl Slots {
    pub(super) fn new(max: usize) -> Self {
        Slots {
            free: Arc::new(Semaphore::new(max.max(1))),
            max,
            refusals: RefusalLog::default(),
        }
    }

    /// The limit.
    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// A slot for a connection from `peer`, or `None` (counted and logged) when all are taken.
    pub(super) fn admit(
        &mut self,
        peer: SocketAddr,
        stats: &Stats,
    ) -> Option<OwnedSemaphorePermit> {
        let permit = self.free.clone().try_acquire_owned().ok();
        if permit.is_none() {
            Stats::count(&stats.rejected);
            self.refusals.refused(peer, self.max);
        }
        permit
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
