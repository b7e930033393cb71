//! Channel windows sized from the path's round-trip time (issue 13).
//!
//! A channel's window is what the server may send before it waits for our WINDOW_ADJUST, so
//! one channel moves at most a window per round trip: 2 MiB (russh's and OpenSSH's default)
//! caps a download at ~50 MiB/s across 40 ms, and even on loopback a busy machine's
//! scheduling makes the round trip milliseconds long ([`SCHEDULED_RTT`], the shortest
//! round trip the windows are sized for). Each session learns
//! its round-trip time from the channels it opens: a CHANNEL_OPEN and its confirmation
//! cross the whole path to that hop (through every hop before it, so the inner hops' time
//! includes the outer ones'), plus the server's connecting to the destination, so the
//! smallest sample counts (no extra packets, and no session held alive by a pinger); and
//! queueing behind a transfer does not inflate it either (OpenSSH's sshd also gets a ping
//! after announcing its host keys, whose round trip is a sample too). A channel whose reader
//! keeps up (two window adjustments by OpenSSH's thresholds within one round trip, with the
//! reader caught up each time: the window, not the reader, sets the pace) has its window
//! doubled, up to what that round trip needs at [`RATE`], within
//! [`MIN_WINDOW`]..=[`MAX_WINDOW`]. A reader that stops stops the adjustments, so a stalled
//! channel never grows; and all channels' growth together stays within [`BUDGET`], which
//! bounds what a process can buffer for readers that stall later.
//!
//! The pure parts ([`flow_rtt`], [`window_for`], [`next_target`]) decide;
//! [`ChannelWindows`] holds one session's channels and takes from the process-wide budget.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use russh::ChannelId;

const MIB: u32 = 1024 * 1024;
/// Every channel's window to begin with (russh's `client::Config::window_size` default).
pub(crate) const MIN_WINDOW: u32 = 2 * MIB;
/// The most any channel's window grows to.
pub(crate) const MAX_WINDOW: u32 = 16 * MIB;
/// The rate (bytes per second) a window is sized for: a window of `RATE x RTT` keeps one
/// channel moving at that rate across the path.
pub(crate) const RATE: u64 = 400 * MIB as u64;
/// The growth beyond [`MIN_WINDOW`] of every channel in the process together.
pub(crate) const BUDGET: u64 = 256 * MIB as u64;

/// The window a path with round-trip time `rtt` needs to carry [`RATE`], within bounds.
pub(crate) fn window_for(rtt: Duration) -> u32 {
    let bytes = RATE.saturating_mul(rtt.as_micros().min(u128::from(u64::MAX)) as u64) / 1_000_000;
    u32::try_from(bytes)
        .unwrap_or(u32::MAX)
        .clamp(MIN_WINDOW, MAX_WINDOW)
}

/// The shortest round trip the windows are sized for, however short the path's: on a busy
/// machine a window comes back only once every process on the path (each sshd, pgtunnel,
/// the reader) has had its turn on a CPU, which takes milliseconds (Linux's scheduler
/// gives each runnable task a slice of a few ms). A 2 MiB window was used up in about
/// 5 ms on loopback, and the sshds waited for our adjustment (12 % of the two cores sat
/// idle during a download). Windows that may grow to `window_for(SCHEDULED_RTT)` (8 MiB)
/// moved a download 1.08x and an upload 1.07x faster on an idle machine (issue 13, an A/B
/// of 9 rounds; 8 of them faster) and 1.34x on a busy one. Growth still needs a reader
/// that keeps up, and stays within [`BUDGET`].
pub(crate) const SCHEDULED_RTT: Duration = Duration::from_millis(20);

/// The round trip the windows are sized for: the path's, at least [`SCHEDULED_RTT`].
pub(crate) fn flow_rtt(path: Duration) -> Duration {
    path.max(SCHEDULED_RTT)
}

/// Bytes a reader may leave unread and still count as keeping up: three packets.
pub(crate) const CAUGHT_UP: u32 = 3 * 32 * 1024;

/// A channel's next target window: doubled toward [`window_for`] `rtt` when the previous
/// adjustment was less than one round trip ago (`since_last`) and the reader has left at
/// most [`CAUGHT_UP`] unread (`buffered`), at most `room` more; otherwise unchanged.
pub(crate) fn next_target(
    current: u32,
    rtt: Duration,
    since_last: Option<Duration>,
    buffered: u32,
    room: u64,
) -> u32 {
    let cap = window_for(rtt);
    let busy = since_last.is_some_and(|d| d < rtt) && buffered <= CAUGHT_UP;
    if !busy || current >= cap {
        return current;
    }
    let wanted = current.saturating_mul(2).min(cap) - current;
    current + u32::try_from(room).unwrap_or(u32::MAX).min(wanted)
}

/// The process's growth so far (bytes beyond [`MIN_WINDOW`], all channels).
static GROWN: AtomicU64 = AtomicU64::new(0);

/// Takes up to `wanted` bytes of growth from [`BUDGET`]; what was taken.
fn take(wanted: u64) -> u64 {
    let mut taken = 0;
    let _ = GROWN.fetch_update(Ordering::AcqRel, Ordering::Acquire, |grown| {
        taken = BUDGET.saturating_sub(grown).min(wanted);
        Some(grown + taken)
    });
    taken
}

fn give_back(bytes: u64) {
    let _ = GROWN.fetch_update(Ordering::AcqRel, Ordering::Acquire, |g| {
        Some(g.saturating_sub(bytes))
    });
}

/// A session's round-trip time: the smallest sample so far (microseconds; 0: none yet).
#[derive(Debug, Default)]
pub(crate) struct PathRtt(AtomicU64);

impl PathRtt {
    pub(crate) fn record(&self, rtt: Duration) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                Some(if old == 0 { us } else { old.min(us) })
            });
    }

    pub(crate) fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

/// One session's channels (by `K`, russh's `ChannelId`): when each was last adjusted and
/// how much it grew.
#[derive(Debug)]
pub(crate) struct ChannelWindows<K = ChannelId> {
    rtt: Arc<PathRtt>,
    channels: HashMap<K, Grown>,
}

#[derive(Debug)]
struct Grown {
    last: Instant,
    extra: u64,
}

impl<K: Eq + std::hash::Hash> ChannelWindows<K> {
    pub(crate) fn new(rtt: Arc<PathRtt>) -> Self {
        ChannelWindows {
            rtt,
            channels: HashMap::new(),
        }
    }

    /// russh's `Handler::adjust_window_held`: the target for `channel`'s next WINDOW_ADJUST,
    /// its reader having `buffered` bytes unread.
    pub(crate) fn adjust(&mut self, channel: K, current: u32, buffered: u32) -> u32 {
        let Some(rtt) = self.rtt.get().map(flow_rtt) else {
            return current;
        };
        let now = Instant::now();
        let entry = self.channels.entry(channel);
        let since_last = match &entry {
            std::collections::hash_map::Entry::Occupied(g) => Some(now - g.get().last),
            std::collections::hash_map::Entry::Vacant(_) => None,
        };
        let entry = entry.or_insert(Grown {
            last: now,
            extra: 0,
        });
        entry.last = now;
        let wanted = next_target(current, rtt, since_last, buffered, BUDGET) - current;
        if wanted == 0 {
            return current;
        }
        let taken = take(u64::from(wanted));
        entry.extra += taken;
        current + taken as u32
    }

    /// The channel is closed: its growth goes back to the budget.
    pub(crate) fn closed(&mut self, channel: &K) {
        if let Some(g) = self.channels.remove(channel) {
            give_back(g.extra);
        }
    }
}

impl<K> Drop for ChannelWindows<K> {
    fn drop(&mut self) {
        give_back(self.channels.values().map(|g| g.extra).sum());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_window_follows_the_round_trip_within_bounds() {
        assert_eq!(
            window_for(Duration::from_micros(50)),
            MIN_WINDOW,
            "loopback"
        );
        assert_eq!(window_for(MS), MIN_WINDOW, "a LAN");
        assert_eq!(window_for(10 * MS), 4 * MIB);
        assert_eq!(window_for(20 * MS), 8 * MIB);
        assert_eq!(window_for(40 * MS), MAX_WINDOW, "a continent");
        assert_eq!(window_for(Duration::from_secs(3600)), MAX_WINDOW);
    }

    #[test]
    fn a_busy_channel_doubles_toward_the_cap_and_an_idle_one_stays() {
        let rtt = 40 * MS;
        assert_eq!(next_target(MIN_WINDOW, rtt, Some(MS), 0, BUDGET), 4 * MIB);
        assert_eq!(next_target(8 * MIB, rtt, Some(MS), 0, BUDGET), MAX_WINDOW);
        assert_eq!(
            next_target(MAX_WINDOW, rtt, Some(MS), 0, BUDGET),
            MAX_WINDOW
        );
        // Adjusted less often than once a round trip: the reader sets the pace.
        assert_eq!(
            next_target(MIN_WINDOW, rtt, Some(50 * MS), 0, BUDGET),
            MIN_WINDOW
        );
        assert_eq!(next_target(MIN_WINDOW, rtt, None, 0, BUDGET), MIN_WINDOW);
        // A short path needs no more than the minimum, however busy.
        assert_eq!(
            next_target(MIN_WINDOW, MS / 2, Some(MS / 4), 0, BUDGET),
            MIN_WINDOW
        );
        // A reader that leaves data unread sets the pace itself: more window would only
        // buffer more.
        assert_eq!(
            next_target(MIN_WINDOW, rtt, Some(MS), MIB, BUDGET),
            MIN_WINDOW
        );
        // Toward the cap, not past it: 20 ms needs 8 MiB.
        assert_eq!(next_target(6 * MIB, 20 * MS, Some(MS), 0, BUDGET), 8 * MIB);
    }

    #[test]
    fn windows_are_sized_for_the_scheduler_on_a_short_path() {
        assert_eq!(flow_rtt(Duration::from_micros(50)), SCHEDULED_RTT);
        assert_eq!(window_for(flow_rtt(Duration::from_micros(50))), 8 * MIB);
        assert_eq!(flow_rtt(40 * MS), 40 * MS, "a long path keeps its own");
        let rtt = Arc::new(PathRtt::default());
        let mut windows = ChannelWindows::<u32>::new(rtt.clone());
        assert_eq!(
            windows.adjust(1, MIN_WINDOW, 0),
            MIN_WINDOW,
            "no sample yet"
        );
        rtt.record(Duration::from_micros(50));
        assert_eq!(
            windows.adjust(1, MIN_WINDOW, 0),
            MIN_WINDOW,
            "the first adjustment"
        );
        let grown = windows.adjust(1, MIN_WINDOW, 0);
        assert!(
            grown > MIN_WINDOW && grown <= 4 * MIB,
            "busy on loopback: {grown}"
        );
        // A reader that leaves data unread keeps its window.
        assert_eq!(windows.adjust(1, grown, MIB), grown);
        windows.closed(&1);
    }

    #[test]
    fn growth_stops_at_the_budget() {
        let rtt = 40 * MS;
        assert_eq!(next_target(MIN_WINDOW, rtt, Some(MS), 0, 0), MIN_WINDOW);
        assert_eq!(
            next_target(MIN_WINDOW, rtt, Some(MS), 0, 1000),
            MIN_WINDOW + 1000
        );
    }

    #[test]
    fn the_smallest_round_trip_counts() {
        let rtt = PathRtt::default();
        assert_eq!(rtt.get(), None);
        rtt.record(30 * MS);
        rtt.record(80 * MS);
        assert_eq!(rtt.get(), Some(30 * MS));
        rtt.record(20 * MS);
        assert_eq!(rtt.get(), Some(20 * MS));
    }

    #[test]
    fn channels_grow_only_while_busy_and_give_their_growth_back() {
        let rtt = Arc::new(PathRtt::default());
        let mut windows = ChannelWindows::new(rtt.clone());
        let ch = 7u32;
        // No round trip measured yet: nothing changes.
        assert_eq!(windows.adjust(ch, MIN_WINDOW, 0), MIN_WINDOW);
        rtt.record(Duration::from_secs(10));
        // First adjustment after the measurement, then one at once: busy, so it doubles.
        let first = windows.adjust(ch, MIN_WINDOW, 0);
        let second = windows.adjust(ch, first, 0);
        assert!(second > first, "{first} -> {second}");
        let before = GROWN.load(Ordering::Acquire);
        assert!(before >= u64::from(second - MIN_WINDOW));
        windows.closed(&ch);
        assert!(GROWN.load(Ordering::Acquire) <= before - u64::from(second - MIN_WINDOW));
    }
}
