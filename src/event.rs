//! Progress events. The library reports what it is doing; the binary decides how to show it
//! (spinners on a terminal, log lines otherwise).

use std::sync::Arc;

use crate::error::HopLabel;

/// Something worth telling the user while the chain comes up or runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Connecting to a hop (TCP for hop 1, a channel through the previous hop otherwise).
    Connecting {
        /// Which hop.
        hop: HopLabel,
        /// How it is reached ("TCP" or "through hop N").
        how: String,
    },
    /// What the hop's connection waits for now (after [`Event::Connecting`], in order).
    Waiting {
        /// Which hop.
        hop: HopLabel,
        /// For what.
        stage: Stage,
    },
    /// The hop's host key matched known_hosts (or was accepted by policy).
    HostKeyVerified {
        /// Which hop.
        hop: HopLabel,
        /// SHA256 fingerprint.
        fingerprint: String,
        /// How it was verified ("known_hosts line 3", "accepted (new)", ...).
        how: String,
    },
    /// Authenticated on the hop.
    Authenticated {
        /// Which hop.
        hop: HopLabel,
        /// User and method, e.g. "joe (publickey, agent)".
        how: String,
    },
    /// The hop's session was already up for another tunnel (or the part of the chain that
    /// survived a loss): it is shared, not connected again.
    Shared {
        /// Which hop.
        hop: HopLabel,
    },
    /// A hop failed (the error follows as the function's result).
    HopFailed {
        /// Which hop.
        hop: HopLabel,
    },
    /// A non-fatal problem worth showing (unreadable key, malformed known_hosts line).
    Warning(String),
}

/// What a hop's connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The TCP connection to hop 1 (`ConnectionAttempts` tries included).
    TcpConnect,
    /// The server's SSH identification line (its banner), once the byte stream is there.
    Banner,
    /// The key exchange (the host key is checked at its end).
    KeyExchange,
    /// Authentication.
    Authentication,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::TcpConnect => "the TCP connection",
            Stage::Banner => "the server's SSH banner",
            Stage::KeyExchange => "the key exchange",
            Stage::Authentication => "authentication",
        })
    }
}

/// Receives events. Cheap to clone.
#[derive(Clone)]
pub struct Observer(Arc<dyn Fn(Event) + Send + Sync>);

impl Observer {
    /// Wraps a callback.
    pub fn new(f: impl Fn(Event) + Send + Sync + 'static) -> Self {
        Observer(Arc::new(f))
    }

    /// Drops every event.
    pub fn none() -> Self {
        Observer::new(|_| {})
    }

    /// Reports an event.
    pub fn emit(&self, event: Event) {
        (self.0)(event)
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}
