//! Typed errors. Each names what is at fault: the hop (its position, alias and address), the
//! config file and line, or the argument as typed. The binary maps [`ErrorKind`] to exit codes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::config::ConfigError;
use crate::plan::chain::ChainError;
use crate::spec::SpecError;

/// Anything that stops pgtunnel from starting or serving.
#[derive(Debug, Error)]
pub enum Error {
    /// A malformed argument.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// An ssh_config that cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The hop chain cannot be built (loop, no hops, unsupported option).
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// One hop failed.
    #[error("{hop}: {source}")]
    Hop {
        /// Which hop.
        hop: HopLabel,
        /// What went wrong there.
        #[source]
        source: Box<HopError>,
    },
    /// The local listener cannot be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `--require-encrypted` and some segment leaves a machine in plain TCP.
    #[error("--require-encrypted: {}", segments.join("; "))]
    NotEncrypted {
        /// The offending segments, as printed in the path report.
        segments: Vec<String>,
    },
}

/// A hop as the user knows it: its position in the chain, its name and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopLabel {
    /// 1-based position in the chain.
    pub index: usize,
    /// The name as written (`--via` or ProxyJump), e.g. an alias.
    pub name: String,
    /// `HostName:Port` after resolution.
    pub addr: String,
}

impl std::fmt::Display for HopLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name == self.addr || self.addr.starts_with(&format!("{}:", self.name)) {
            write!(f, "hop {} ({})", self.index, self.addr)
        } else {
            write!(f, "hop {} ({}, {})", self.index, self.name, self.addr)
        }
    }
}

/// What went wrong on one hop.
#[derive(Debug, Error)]
pub enum HopError {
    /// TCP connection to the first hop failed.
    #[error("cannot connect: {source}")]
    Connect {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The previous hop could not open a channel to this one.
    #[error("the previous hop could not reach it: {reason}")]
    Unreachable {
        /// The SSH server's reason ("connect failed", "administratively prohibited", ...).
        reason: String,
    },
    /// Connecting plus the SSH handshake took longer than ConnectTimeout.
    #[error("no SSH session within {}s (ConnectTimeout): {stage}", after.as_secs())]
    Timeout {
        /// The limit.
        after: Duration,
        /// How far it got ("the server accepted the connection but sent nothing", ...).
        stage: String,
    },
    /// The peer is not an SSH server, or went away during the handshake; says what it sent.
    #[error("{0}")]
    Handshake(String),
    /// The server's host key is not in known_hosts and StrictHostKeyChecking refuses unknown keys.
    #[error(
        "host key for {name} is not known ({fingerprint}); refusing to connect because \
         StrictHostKeyChecking is {policy}. If you trust it, add it to {file} \
         (e.g. `ssh-keyscan -p PORT HOST >> {file}` after checking the fingerprint, or one \
         `ssh` login)"
    )]
    HostKeyUnknown {
        /// The known_hosts name looked up (`host` or `[host]:port`).
        name: String,
        /// SHA256 fingerprint of the offered key.
        fingerprint: String,
        /// The StrictHostKeyChecking value in force (and, for `ask`, what happened).
        policy: String,
        /// The first user known_hosts file.
        file: String,
    },
    /// The server's host key differs from the one in known_hosts.
    #[error(
        "HOST KEY CHANGED for {name}: the server offered {fingerprint}, but {known} says \
         otherwise. Someone could be intercepting the connection; refusing to connect. If the \
         key really changed, remove the old entry (`ssh-keygen -R '{name}'`)"
    )]
    HostKeyChanged {
        /// The known_hosts name looked up.
        name: String,
        /// SHA256 fingerprint of the offered key.
        fingerprint: String,
        /// Where the expected key is (`file:line (fingerprint)`).
        known: String,
    },
    /// The server's host key is marked `@revoked`.
    #[error("host key for {name} ({fingerprint}) is REVOKED in {at}; refusing to connect")]
    HostKeyRevoked {
        /// The known_hosts name looked up.
        name: String,
        /// SHA256 fingerprint of the offered key.
        fingerprint: String,
        /// `file:line` of the @revoked entry.
        at: String,
    },
    /// known_hosts could not be read.
    #[error("cannot read known_hosts file {}: {source}", path.display())]
    KnownHosts {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An accepted host key could not be written to known_hosts.
    #[error("cannot record the host key in known_hosts file {}: {source}", path.display())]
    KnownHostsWrite {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No authentication method worked.
    #[error("authentication failed for user `{user}`; tried: {tried}{server}", server = server_methods.as_deref().map(|m| format!("; the server accepts: {m}")).unwrap_or_default())]
    Auth {
        /// The user name sent.
        user: String,
        /// What was tried, in order.
        tried: String,
        /// The methods the server said it accepts, when known.
        server_methods: Option<String>,
    },
    /// The hop's `ProxyCommand` could not be run.
    #[error("ProxyCommand `{command}`: {reason}")]
    ProxyCommand {
        /// The command, as configured.
        command: String,
        /// Why it failed.
        reason: String,
    },
    /// The SSH session failed (protocol error, disconnect, ...).
    #[error("SSH session failed: {0}")]
    Ssh(String),
}

/// The target could not be reached from the last hop.
#[derive(Debug, Error)]
#[error("{hop} could not open a connection to {target}: {reason}")]
pub struct TargetError {
    /// The last hop.
    pub hop: HopLabel,
    /// `host:port` of the target.
    pub target: String,
    /// The SSH server's reason.
    pub reason: String,
}

/// Broad classes of failure, for exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad arguments or config.
    Config,
    /// A host key was refused.
    HostKey,
    /// Authentication failed.
    Auth,
    /// A hop or the listener could not be reached or opened.
    Connect,
    /// `--require-encrypted` refused the path.
    NotEncrypted,
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Spec(_) | Error::Config(_) | Error::Chain(_) => ErrorKind::Config,
            Error::NotEncrypted { .. } => ErrorKind::NotEncrypted,
            Error::Listen { .. } => ErrorKind::Connect,
            Error::Hop { source, .. } => match source.as_ref() {
                HopError::HostKeyUnknown { .. }
                | HopError::HostKeyChanged { .. }
                | HopError::HostKeyRevoked { .. } => ErrorKind::HostKey,
                HopError::KnownHosts { .. } | HopError::KnownHostsWrite { .. } => ErrorKind::Config,
                HopError::Auth { .. } => ErrorKind::Auth,
                HopError::Connect { .. }
                | HopError::Unreachable { .. }
                | HopError::Timeout { .. }
                | HopError::ProxyCommand { .. }
                | HopError::Handshake(_)
                | HopError::Ssh(_) => ErrorKind::Connect,
            },
        }
    }

    /// The hop at fault, if one is.
    pub fn hop(&self) -> Option<&HopLabel> {
        match self {
            Error::Hop { hop, .. } => Some(hop),
            _ => None,
        }
    }
}
