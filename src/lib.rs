//! pgtunnel: reach a PostgreSQL server (or any TCP service) behind one or more SSH bastions.
//!
//! This is the PostgreSQL manual's "Secure TCP/IP Connections with SSH Tunnels" page as a
//! program: a local port whose connections are forwarded through a chain of SSH hops, each hop's
//! session nested inside a `direct-tcpip` channel of the previous one, all in one process, with
//! the chain read from the user's own `~/.ssh/config` and a report of which segments are
//! encrypted.
//!
//! # Layout
//! The module tree is the path data takes, one way:
//!
//! ```text
//! args (binary) -> spec -> plan -> ssh sessions -> forward -> events -> UI (binary)
//! ```
//!
//! - [`spec`]: what the user typed, validated: TARGET, hops (`--via`), the listen address.
//! - [`config`]: the user's OpenSSH configuration, read with OpenSSH's semantics:
//!   `ssh_config` (one table entry per keyword, the file and line of every value),
//!   `known_hosts`, and the one port of OpenSSH's `match.c` both use. Pure but for reading
//!   files, and the name lookups of `CanonicalizeHostname`, made through the resolver the
//!   caller puts in [`config::LocalEnv`].
//! - [`plan`]: from a request and the config to a plan, before any connection: the chain of
//!   hops (`--via` and `ProxyJump`, recursively, loops refused), the path report (which
//!   segments are encrypted, and how to fix those that are not), `explain`. Pure.
//! - [`ssh`]: one SSH session per hop, each over the previous hop's `direct-tcpip` channel:
//!   transport (TCP, `ProxyCommand`, nested channel), what a failed handshake means, the host
//!   key decision (pure) and its I/O, authentication as a method table in OpenSSH's order,
//!   questions for the user through a trait the caller implements.
//! - [`forward`]: serving a local port over a chain: a supervisor task that owns the chain,
//!   recovers it and publishes its state on a `watch`; the accept loop with its connection
//!   limit; one `direct-tcpip` channel per connection with half-close; drain on shutdown.
//! - [`event`]: what the library reports while it works; the binary renders it (spinners on a
//!   terminal, log lines otherwise). The library never touches the terminal.
//! - [`tunnel`]: the steps above glued together, each usable on its own: load the config,
//!   plan, check the path, bind, connect, serve.
//! - [`fleet`]: several tunnels in one process (ssh-style `-L` forwards, `LocalForward`
//!   lines, named tunnels), planned and bound; served together by [`tunnel::serve_all`],
//!   their chains sharing hop sessions.
//! - [`tunnels`]: the named-tunnels file (`tunnels.toml`) that `up` starts and `list` shows:
//!   TOML parsed and checked with [`spec`]'s rules, every refusal naming file, line and
//!   tunnel. Pure but for one `load`.
//! - [`pg`]: the bits of PostgreSQL's protocol the product uses (`SSLRequest`, a `trust`
//!   log-in and a simple query, `ErrorResponse`).
//! - [`status`]: what a running pgtunnel shows of itself: a snapshot of its tunnels served on
//!   a private Unix socket (`pgtunnel status` collects and renders them), and the JSON event
//!   lines `--json` writes for supervisors. Plain data in; no dependency on the forwarder.
//! - [`notify`]: systemd's notify protocol (`READY=1`, `STATUS=`, `STOPPING=1`) for
//!   `Type=notify` services, without libsystemd.
//! - [`error`]: typed errors that name the hop, file or line at fault, their sources kept
//!   typed; [`ErrorKind`] maps them to the binary's exit codes.
//! - `demo` (feature `demo`, on by default): `pgtunnel demo`, and the fixtures it shares with
//!   the tests: an in-process SSH server (`demo::bastion`) and a throw-away PostgreSQL cluster
//!   (`demo::pgcluster`). Not part of the tunnel: `cargo build --no-default-features` builds
//!   the tunnel without them.
//!
//! The binary (`src/bin/pgtunnel/`) is thin: `args` (clap), `main` (build the request, serve
//! until a stop reason, map it to an exit code), `progress` (events as spinners or log
//! lines), `terminal` (answers to questions: `/dev/tty` or `SSH_ASKPASS`).
//!
//! Several tunnels share hop sessions through [`ssh::session::HopPool`], each with its own
//! supervisor; the status interface ([`fleet::monitor`]) reads each [`forward::ChainWatch`]
//! and [`forward::Stats`];
//! PostgreSQL-aware features live in [`pg`] and are switched on by the request.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod check;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod event;
pub mod fleet;
pub mod forward;
pub mod notify;
pub mod pg;
pub mod plan;
pub mod spec;
pub mod ssh;
pub mod status;
pub mod tunnel;
pub mod tunnels;

pub use error::{Error, ErrorKind};
