//! `pgtunnel status`: what the running pgtunnel processes of this user are doing, and the
//! JSON event lines a running tunnel writes for supervisors (`--json`).
//!
//! Every running pgtunnel serves a snapshot of its tunnels ([`ProcessStatus`]) on a Unix
//! socket `DIR/<pid>.sock` ([`StatusServer`]); `pgtunnel status` reads every socket in DIR
//! ([`collect`]) and prints them ([`render`], or [`to_json`] for `--json`).
//!
//! - DIR is [`runtime_dir`]: `$XDG_RUNTIME_DIR/pgtunnel`, else `<temp dir>/pgtunnel-<uid>`,
//!   created with mode 0700; an existing one must be a directory owned by the user and not
//!   accessible to others ([`ensure_dir`]), as for `--socket DIR`. Sockets are mode 0600.
//! - The protocol: connect, read one line of JSON (a [`ProcessStatus`]), the server closes.
//!   Nothing is sent to the server. A socket nobody accepts on (its process was killed) is
//!   stale: the client removes it; a new server with that pid replaces it.
//! - The server is bounded: at most [`ServerLimits::max_clients`] clients are answered at once
//!   (the others wait in the listen backlog), and one that does not read its answer within
//!   [`ServerLimits::write_timeout`] is dropped.
//!
//! # `status --json`
//! One JSON document: an array of processes, pretty-printed, sorted by pid:
//!
//! ```json
//! [ { "pid": 4242, "started_unix": 1767225600,
//!     "tunnels": [ { "name": "staging", "listen": ["127.0.0.1:6543"], "target": "db:5432",
//!                    "hops": [ { "name": "bastion", "addr": "bastion.example.com:22",
//!                                "state": "up", "since_unix": 1767225601, "reason": null } ],
//!                    "open": 1, "accepted": 3, "bytes_up": 1024, "bytes_down": 4096,
//!                    "refused": 0, "rejected": 0, "reset": 0, "reconnects": 0 } ] } ]
//! ```
//!
//! Times are unix seconds (UTC). The shape is stable: fields may be added, none are renamed
//! or removed; `state` is one of `"up"`, `"lost"`, `"reconnecting"`. The same objects are the
//! wire format of the status socket (one line there).
//!
//! # JSON event lines
//! [`JsonEvent`], one per line ([`to_line`], [`EventWriter`]), for `--json` on a running
//! tunnel; see the [`events`] module.

pub mod events;

mod client;
mod dir;
mod render;
mod server;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use client::{Collected, DEFAULT_TIMEOUT, MAX_ANSWER, Problem, collect, collect_with};
pub use dir::{ensure_dir, runtime_dir, search_dirs};
pub use events::{EventLine, EventWriter, JsonEvent, parse_line, to_line};
pub use render::{human_bytes, human_duration, render};
pub use server::{Provider, ServerLimits, StatusServer};

/// One running pgtunnel process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// Its process id.
    pub pid: u32,
    /// When it started, unix seconds.
    pub started_unix: u64,
    /// The tunnels it serves, in the order it started them.
    pub tunnels: Vec<TunnelStatus>,
}

/// One tunnel of a process: where it listens, its chain, its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStatus {
    /// Its name (the tunnels file's name, or the forward as typed).
    pub name: String,
    /// Where it listens: `"127.0.0.1:6543"`, `"/dir/.s.PGSQL.5432"`.
    pub listen: Vec<String>,
    /// The target, `host:port` as the last hop reaches it.
    pub target: String,
    /// The chain, outermost hop first.
    pub hops: Vec<HopStatus>,
    /// Connections open now.
    pub open: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Bytes from local clients to the target.
    pub bytes_up: u64,
    /// Bytes from the target to local clients.
    pub bytes_down: u64,
    /// Connections whose channel the last hop refused.
    pub refused: u64,
    /// Connections turned away (over the connection limit, or the chain stayed down).
    pub rejected: u64,
    /// Connections reset because the chain carrying them was lost.
    pub reset: u64,
    /// Times the chain was re-established.
    pub reconnects: u64,
}

/// One hop of a tunnel's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopStatus {
    /// The name as written (`--via`, ProxyJump, an alias).
    pub name: String,
    /// `HostName:Port` after resolution.
    pub addr: String,
    /// Up, lost or reconnecting.
    pub state: HopState,
    /// Since when it is in that state, unix seconds.
    pub since_unix: u64,
    /// Why it was lost, or what the last attempt to reconnect said.
    pub reason: Option<String>,
}

/// The state of a hop's session. Serialized lowercase: `"up"`, `"lost"`, `"reconnecting"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HopState {
    /// The session is up.
    Up,
    /// The session is gone and is not being re-established (yet, or at all).
    Lost,
    /// The session is gone and being re-established.
    Reconnecting,
}

/// Why the status directory or socket cannot be used.
#[derive(Debug, Error)]
pub enum StatusError {
    /// The directory could not be created or read.
    #[error("status directory {}: {source}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The directory is not private to the user.
    #[error(
        "status directory {}: {why}; it must be a directory owned by you and not accessible \
         to others (chmod 700)",
        dir.display()
    )]
    NotPrivate {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Another process serves the socket.
    #[error("status socket {} is in use by another process", path.display())]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// Something that is not a socket is in the way, or binding failed.
    #[error("cannot listen on status socket {}: {source}", path.display())]
    Bind {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl From<crate::forward::socket::SocketError> for StatusError {
    fn from(e: crate::forward::socket::SocketError) -> Self {
        use crate::forward::socket::SocketError as S;
        match e {
            S::Dir { dir, source } => StatusError::Dir { dir, source },
            S::NotPrivate { dir, why } => StatusError::NotPrivate { dir, why },
            S::InUse { path } => StatusError::InUse { path },
            S::Bind { path, source } => StatusError::Bind { path, source },
        }
    }
}

/// `status --json`: the processes as one pretty-printed JSON array (see the module docs),
/// without a trailing newline.
pub fn to_json(processes: &[ProcessStatus]) -> String {
    // Serializing these types cannot fail (no maps, no non-string keys); "[]" if it did.
    serde_json::to_string_pretty(processes).unwrap_or_else(|_| "[]".into())
}

/// Now, unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> ProcessStatus {
        ProcessStatus {
            pid: 4242,
            started_unix: 1_000,
            tunnels: vec![TunnelStatus {
                name: "staging".into(),
                listen: vec!["127.0.0.1:6543".into()],
                target: "db:5432".into(),
                hops: vec![HopStatus {
                    name: "bastion".into(),
                    addr: "bastion.example.com:22".into(),
                    state: HopState::Reconnecting,
                    since_unix: 1_100,
                    reason: Some("timed out".into()),
                }],
                open: 1,
                accepted: 3,
                bytes_up: 1024,
                bytes_down: 4096,
                refused: 0,
                rejected: 2,
                reset: 1,
                reconnects: 1,
            }],
        }
    }

    #[test]
    fn json_shape_is_stable_and_round_trips() {
        let procs = vec![sample()];
        let json = to_json(&procs);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let tunnel = &value[0]["tunnels"][0];
        assert_eq!(value[0]["pid"], 4242);
        assert_eq!(value[0]["started_unix"], 1000);
        assert_eq!(tunnel["listen"][0], "127.0.0.1:6543");
        assert_eq!(tunnel["hops"][0]["state"], "reconnecting");
        assert_eq!(tunnel["hops"][0]["since_unix"], 1100);
        assert_eq!(tunnel["hops"][0]["reason"], "timed out");
        for key in [
            "open",
            "accepted",
            "bytes_up",
            "bytes_down",
            "refused",
            "rejected",
            "reset",
            "reconnects",
        ] {
            assert!(tunnel[key].is_u64(), "{key}");
        }
        let back: Vec<ProcessStatus> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, procs);
        assert_eq!(to_json(&[]), "[]");
    }

    #[test]
    fn states_are_lowercase_and_unknown_fields_are_ignored() {
        for (state, word) in [
            (HopState::Up, "\"up\""),
            (HopState::Lost, "\"lost\""),
            (HopState::Reconnecting, "\"reconnecting\""),
        ] {
            assert_eq!(serde_json::to_string(&state).unwrap(), word);
        }
        // A newer pgtunnel may add fields: an older `status` still reads the rest.
        let newer = r#"{"pid":1,"started_unix":2,"tunnels":[],"version":"9"}"#;
        let p: ProcessStatus = serde_json::from_str(newer).unwrap();
        assert_eq!((p.pid, p.started_unix), (1, 2));
    }
}
