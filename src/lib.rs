//! pgtunnel: reach a PostgreSQL server (or any TCP service) behind one or more SSH bastions.
//!
//! This is the PostgreSQL manual's "Secure TCP/IP Connections with SSH Tunnels" page as a
//! program: a local port whose connections are forwarded through a chain of SSH hops, each hop's
//! session nested inside a `direct-tcpip` channel of the previous one, all in one process, with
//! the chain read from the user's own `~/.ssh/config` and a report of which segments are
//! encrypted.
//!
//! # Layout
//! Data flows one way:
//!
//! ```text
//! args -> spec -> chain -> path report -> sessions -> listener -> connections
//! ```
//!
//! - [`spec`]: what the user typed, validated (TARGET, hops, listen address).
//! - [`config`]: ssh_config resolution and known_hosts matching, with OpenSSH's semantics.
//! - [`chain`]: hops from `--via` and `ProxyJump`, expanded recursively, loops refused (pure).
//! - [`path`]: the segment report: which links are encrypted and what to do (pure).
//! - [`session`]: one hop's SSH session over any stream: host key check, authentication.
//! - [`forward`]: the listener, one `direct-tcpip` channel per connection, half-close, shutdown.
//! - [`tunnel`]: the steps from a request to a running tunnel.
//! - [`bastion`]: an in-process SSH server (demo and tests), built on russh.
//! - [`pgcluster`]: a throw-away PostgreSQL cluster (demo and tests).
//! - [`pgwire`]: just enough of PostgreSQL's protocol to check a server through a tunnel.
//! - [`error`]: typed errors that name the hop, file or line at fault.
//!
//! The library never touches the terminal: progress is reported as [`event::Event`]s that the
//! binary renders.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod event;
pub mod forward;
pub mod pg;
pub mod plan;
pub mod spec;
pub mod ssh;
pub mod tunnel;

pub use error::{Error, ErrorKind};
