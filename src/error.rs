//! Typed errors. Each names what is at fault: the hop (its position, alias and address), the
//! config file and line, or the argument as typed. The binary maps [`ErrorKind`] to exit codes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::config::ConfigError;
use crate::config::known_hosts::CertRefusal;
use crate::plan::chain::{ChainError, Hop};
use crate::plan::names::ConfigNames;
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
    /// One hop failed. A refusal by the previous hop's policy is told by that hop first
    /// (`hop_failure`).
    #[error("{}", hop_failure(hop, source))]
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
    /// A forward's bind address (a name) does not resolve.
    #[error("cannot listen on {bind}: the address does not resolve: {source}")]
    ListenResolve {
        /// The bind address as written, with the port.
        bind: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A forward's local Unix socket cannot be opened.
    #[error("cannot listen on {}: {source}", path.display())]
    ListenPath {
        /// The socket path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// One of several tunnels failed: which, and how.
    #[error("{name}: {source}")]
    Tunnel {
        /// The tunnel's name (a tunnels-file name, or an `-L`/`LocalForward` spec).
        name: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// The tunnels file cannot be used.
    #[error(transparent)]
    Tunnels(#[from] crate::tunnels::TunnelsError),
    /// `--socket DIR` cannot be used.
    #[error(transparent)]
    Socket(#[from] crate::forward::socket::SocketError),
    /// `-- COMMAND` cannot be run as given.
    #[error(transparent)]
    Client(#[from] crate::pg::client::ClientError),
    /// The target did not answer through the chain (the check before the tunnel is ready).
    #[error(transparent)]
    Probe(Box<crate::forward::probe::ProbeError>),
    /// `--require-encrypted` and some segment leaves a machine in plain TCP.
    #[error("--require-encrypted: {}", segments.join("; "))]
    NotEncrypted {
        /// The offending segments, as printed in the path report.
        segments: Vec<String>,
    },
}

impl From<crate::forward::probe::ProbeError> for Error {
    fn from(e: crate::forward::probe::ProbeError) -> Self {
        Error::Probe(Box::new(e))
    }
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
    /// `--require-pq`, and the hop's key exchange is not post-quantum.
    #[error(
        "--require-pq: the key exchange negotiated with this hop is {kex}, which is not \
         post-quantum (none of those pgtunnel supports was agreed on: {supported}); refusing \
         to authenticate or forward over it"
    )]
    NotPostQuantum {
        /// The key exchange negotiated.
        kex: String,
        /// The post-quantum key exchanges pgtunnel supports.
        supported: String,
    },
    /// TCP connection to the first hop failed.
    #[error("cannot connect{}: {source}", attempts_note(*attempts))]
    Connect {
        /// Why (the last attempt's failure).
        #[source]
        source: std::io::Error,
        /// How many rounds of attempts were made (`ConnectionAttempts`).
        attempts: u32,
    },
    /// Hop 1's host name does not resolve.
    #[error("cannot resolve {host}: {source}{}", note.as_ref().map(|n| format!("; {n}")).unwrap_or_default())]
    Resolve {
        /// The name looked up (the HostName).
        host: String,
        /// The resolver's answer.
        #[source]
        source: std::io::Error,
        /// The name is not an ssh_config alias (and which are close), see
        /// [`HopError::with_names`].
        note: Option<String>,
    },
    /// The previous hop could not open a channel to this one.
    #[error("{}", unreachable_words(via, source))]
    Unreachable {
        /// The previous hop.
        via: HopLabel,
        /// Its SSH server's refusal ("connect failed", "administratively prohibited", ...),
        /// or its session ending.
        #[source]
        source: Box<ChannelOpenError>,
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
    #[error("{what}")]
    Handshake {
        /// What the server sent (quoted), or that it closed the connection, and when.
        what: String,
        /// russh's error. Not a `source()`: `what` says it in the server's terms, and the
        /// message must not repeat it in russh's.
        cause: russh::Error,
    },
    /// The server's host key is not in known_hosts and StrictHostKeyChecking refuses unknown keys.
    #[error(
        "host key for {name} is not known ({fingerprint}){}; refusing to connect because \
         StrictHostKeyChecking is {policy}. If you trust it, add it to {file} \
         (e.g. `ssh-keyscan -p PORT HOST >> {file}` after checking the fingerprint, or one \
         `ssh` login)",
        certificate_note(certificate.as_deref())
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
        /// The server presented a host certificate, and this is why it was not accepted.
        certificate: Option<Box<CertRefusal>>,
    },
    /// The server's host key differs from the one in known_hosts.
    #[error(
        "HOST KEY CHANGED for {name}: the server offered {fingerprint}, but {known} says \
         otherwise. Someone could be intercepting the connection; refusing to connect. If the \
         key really changed, remove the old entry (`ssh-keygen -R '{name}'`){}",
        certificate_note(certificate.as_deref())
    )]
    HostKeyChanged {
        /// The known_hosts name looked up.
        name: String,
        /// SHA256 fingerprint of the offered key.
        fingerprint: String,
        /// Where the expected key is (`file:line (fingerprint)`).
        known: String,
        /// The server presented a host certificate, and this is why it was not accepted.
        certificate: Option<Box<CertRefusal>>,
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
    /// The server's RSA host key is smaller than `RequiredRSASize`.
    #[error(
        "host key {fingerprint} is an RSA key of {bits} bits, smaller than RequiredRSASize \
         {required}; refusing to connect"
    )]
    HostKeyRsaTooSmall {
        /// SHA256 fingerprint of the offered key.
        fingerprint: String,
        /// Its size.
        bits: u32,
        /// `RequiredRSASize`.
        required: u32,
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
    #[error("ProxyCommand `{command}`: {source}")]
    ProxyCommand {
        /// The command, as configured (or as expanded, once it could be).
        command: String,
        /// Why it failed.
        #[source]
        source: ProxyCommandError,
    },
    /// The SSH session failed (protocol error, disconnect, ...).
    #[error("SSH session failed: {}{source}", stage.prefix())]
    Ssh {
        /// What was under way.
        stage: SshStage,
        /// russh's error.
        #[source]
        source: russh::Error,
    },
    /// A host key was accepted, but there is no UserKnownHostsFile to record it in.
    #[error(
        "SSH session failed: the host key was accepted, but there is no UserKnownHostsFile to \
         record it in"
    )]
    NoKnownHostsFile,
    /// Authentication took longer than its limit.
    #[error("SSH session failed: authentication took more than {} s", after.as_secs())]
    AuthTimeout {
        /// The limit.
        after: Duration,
    },
    /// The configuration allows only algorithms of one kind that pgtunnel's SSH library does
    /// not implement: refused before connecting.
    #[error(
        "{keyword} allows only algorithms pgtunnel does not implement ({wanted}); allow one it \
         does (`pgtunnel explain` shows the lists) or use ssh"
    )]
    NoImplementedAlgorithm {
        /// The ssh_config keyword (`Ciphers`, `MACs`, ...).
        keyword: &'static str,
        /// The algorithms it allows, as OpenSSH names them.
        wanted: String,
    },
    /// The server kept asking keyboard-interactive questions.
    #[error("SSH session failed: keyboard-interactive: more than {rounds} rounds of questions")]
    TooManyQuestions {
        /// The rounds accepted.
        rounds: usize,
    },
}

impl HopError {
    /// A name that does not resolve, on a hop written as a plain name (no HostName from the
    /// config), is told apart from a typo of an alias: "`nosuchhost` is not an alias in
    /// ~/.ssh/config (closest: `...`)".
    pub fn with_names(self, hop: &Hop, names: &ConfigNames) -> HopError {
        match self {
            HopError::Resolve {
                host,
                source,
                note: None,
            } if hop.spec.host == hop.config.host_name && !names.is_alias(&hop.spec.host) => {
                HopError::Resolve {
                    note: Some(names.not_an_alias(&hop.spec.host)),
                    host,
                    source,
                }
            }
            other => other,
        }
    }
}

/// What was under way when an SSH session failed ([`HopError::Ssh`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshStage {
    /// The handshake, before the server said anything recognisable.
    Handshake,
    /// The key exchange with a server that sent this identification line (quoted).
    KeyExchange {
        /// The server's identification line, quoted for display.
        banner: String,
    },
    /// The `none` request that learns the server's methods.
    Authentication,
    /// Keyboard-interactive authentication.
    KeyboardInteractive,
    /// Password authentication.
    Password,
}

impl SshStage {
    /// The words before russh's error in the message.
    fn prefix(&self) -> String {
        match self {
            SshStage::Handshake => String::new(),
            SshStage::KeyExchange { banner } => format!("key exchange with {banner} failed: "),
            SshStage::Authentication => "authentication: ".into(),
            SshStage::KeyboardInteractive => "keyboard-interactive: ".into(),
            SshStage::Password => "password: ".into(),
        }
    }
}

/// Why a `ProxyCommand` could not be run.
#[derive(Debug, Error)]
pub enum ProxyCommandError {
    /// Its `%` tokens could not be expanded.
    #[error("{0}")]
    Expand(String),
    /// The shell could not be started.
    #[error("cannot run {}: {source}", shell.to_string_lossy())]
    Spawn {
        /// `$SHELL`, or `/bin/sh`.
        shell: std::ffi::OsString,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The command's stdin or stdout is missing.
    #[error("no pipes to the command")]
    NoPipes,
    /// The command ended before any SSH server answered through it.
    #[error(
        "the command {status} before any SSH server answered through it{}",
        last_line.as_ref().map(|l| format!("; the last line of its stderr: {l:?}")).unwrap_or_else(|| "; it wrote nothing on stderr".into())
    )]
    Ended {
        /// "exited with status 127", "was killed by signal 9".
        status: String,
        /// The last non-empty line of its stderr.
        last_line: Option<String>,
    },
}

/// Why a `direct-tcpip` channel could not be opened.
#[derive(Debug, Error)]
pub enum ChannelOpenError {
    /// The hop's SSH server refused: its reason code, and its text when that adds something.
    #[error("{}{}", failure_words(failure), text.as_ref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Refused {
        /// The reason code.
        failure: russh::ChannelOpenFailure,
        /// The server's description, when not empty and not just the reason code's words.
        text: Option<String>,
    },
    /// The session the channel was asked of has ended.
    #[error("the SSH session to {hop} has ended ({source})")]
    SessionEnded {
        /// The hop whose session ended.
        hop: HopLabel,
        /// What russh said.
        #[source]
        source: russh::Error,
    },
    /// Anything else russh reports.
    #[error("{0}")]
    Ssh(#[source] russh::Error),
}

/// An [`Error::Hop`]'s message: "hop 2 (...): what went wrong", or, when the hop before it
/// refused by its policy to open the channel (`administratively prohibited`: PermitOpen,
/// AllowTcpForwarding), that hop first, as the one that said it.
fn hop_failure(hop: &HopLabel, source: &HopError) -> String {
    match source {
        HopError::Unreachable { via, source: why } if why.by_policy() => {
            format!("{via} refused to forward to {hop}: {source}")
        }
        _ => format!("{hop}: {source}"),
    }
}

/// [`HopError::Unreachable`]'s words: the previous hop's refusal by its policy, or its
/// failure to reach this hop.
fn unreachable_words(via: &HopLabel, source: &ChannelOpenError) -> String {
    if source.by_policy() {
        format!(
            "{source}. Its SSH server does not allow forwarding there (its PermitOpen, \
             AllowTcpForwarding or a Match block): ask its admin, or check this hop's \
             HostName and Port"
        )
    } else {
        format!("the previous hop could not reach it: {via} said: {source}")
    }
}

/// The words for a last hop that did not open a channel to the target: a refusal by its
/// policy is not a failure to reach it.
pub fn reach_words(e: &ChannelOpenError) -> &'static str {
    if e.by_policy() {
        "refused to forward to"
    } else {
        "could not reach"
    }
}

impl ChannelOpenError {
    /// Whether the server refused by its policy (`administratively prohibited`: PermitOpen,
    /// AllowTcpForwarding, a Match block) rather than failing to reach the destination.
    pub fn by_policy(&self) -> bool {
        matches!(
            self,
            ChannelOpenError::Refused {
                failure: russh::ChannelOpenFailure::AdministrativelyProhibited,
                ..
            }
        )
    }

    /// A refusal from the server's `code` and `text` (the text kept when it adds something).
    pub fn refused(failure: russh::ChannelOpenFailure, text: Option<String>) -> Self {
        let text = text
            .filter(|t| !t.is_empty())
            .filter(|t| !t.eq_ignore_ascii_case(&failure_words(&failure)));
        ChannelOpenError::Refused { failure, text }
    }

    /// Whether the session ended under the request (rather than the server refusing it).
    pub fn session_ended(&self) -> bool {
        matches!(self, ChannelOpenError::SessionEnded { .. })
    }
}

/// A channel-open reason code in words.
fn failure_words(f: &russh::ChannelOpenFailure) -> String {
    use russh::ChannelOpenFailure as F;
    match f {
        F::AdministrativelyProhibited => "administratively prohibited".into(),
        F::ConnectFailed => "connect failed".into(),
        F::UnknownChannelType => "unknown channel type".into(),
        F::ResourceShortage => "resource shortage".into(),
        F::Other { code, reason } => format!("error {code}: {reason}"),
    }
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
    /// A hop could not be reached, or was lost.
    Connect,
    /// `--require-encrypted` refused the path, or `--require-pq` a hop.
    NotEncrypted,
    /// The target did not answer through the chain (the probe).
    Probe,
    /// The local port (or socket) could not be opened: in use, not allowed, no such address.
    Listen,
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            // A host name canonicalization could not resolve: like any name that does not
            // resolve, a connection failure (ssh exits 255 for both).
            Error::Config(ConfigError::Unresolved { .. })
            | Error::Chain(ChainError::Config(ConfigError::Unresolved { .. })) => {
                ErrorKind::Connect
            }
            Error::Spec(_)
            | Error::Config(_)
            | Error::Chain(_)
            | Error::Client(_)
            | Error::Tunnels(_)
            | Error::Socket(_) => ErrorKind::Config,
            Error::NotEncrypted { .. } => ErrorKind::NotEncrypted,
            Error::Probe(_) => ErrorKind::Probe,
            Error::Listen { .. } | Error::ListenResolve { .. } | Error::ListenPath { .. } => {
                ErrorKind::Listen
            }
            Error::Tunnel { source, .. } => source.kind(),
            Error::Hop { source, .. } => match source.as_ref() {
                HopError::HostKeyUnknown { .. }
                | HopError::HostKeyChanged { .. }
                | HopError::HostKeyRevoked { .. }
                | HopError::HostKeyRsaTooSmall { .. } => ErrorKind::HostKey,
                HopError::KnownHosts { .. }
                | HopError::KnownHostsWrite { .. }
                | HopError::NoImplementedAlgorithm { .. } => ErrorKind::Config,
                HopError::Auth { .. } => ErrorKind::Auth,
                HopError::NotPostQuantum { .. } => ErrorKind::NotEncrypted,
                HopError::Connect { .. }
                | HopError::Resolve { .. }
                | HopError::Unreachable { .. }
                | HopError::Timeout { .. }
                | HopError::ProxyCommand { .. }
                | HopError::Handshake { .. }
                | HopError::Ssh { .. }
                | HopError::NoKnownHostsFile
                | HopError::AuthTimeout { .. }
                | HopError::TooManyQuestions { .. } => ErrorKind::Connect,
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

/// The clause a host key refusal gets when the server presented a host certificate that did
/// not vouch for its key.
fn certificate_note(refusal: Option<&CertRefusal>) -> String {
    match refusal {
        Some(why) => format!(" (the host certificate it presented was not accepted: {why})"),
        None => String::new(),
    }
}

/// " (after 3 attempts, ConnectionAttempts 3)" when more than one attempt was made.
pub(crate) fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts, ConnectionAttempts {attempts})")
    } else {
        String::new()
    }
}

/// An error and its causes, as the binary prints them: the message, then each source whose
/// text it does not already contain.
pub fn chain_of(e: &dyn std::error::Error) -> String {
    std::iter::successors(e.source(), |s| s.source()).fold(e.to_string(), |text, s| {
        let more = s.to_string();
        if text.contains(&more) {
            text
        } else {
            format!("{text}: {more}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(index: usize) -> HopLabel {
        HopLabel {
            index,
            name: "bastion".into(),
            addr: "10.0.0.1:22".into(),
        }
    }

    fn hop(source: HopError) -> String {
        chain_of(&Error::Hop {
            hop: label(2),
            source: Box::new(source),
        })
    }

    #[test]
    fn a_name_canonicalization_cannot_resolve_is_a_connection_failure() {
        let unresolved = || ConfigError::Unresolved {
            message: "Could not resolve host \"db\"".into(),
            keyword: "CanonicalizeHostname",
            file: "/cfg".into(),
            line: 3,
            tried: vec!["db.a.example.".into()],
        };
        assert_eq!(Error::Config(unresolved()).kind(), ErrorKind::Connect);
        let chained = Error::Chain(ChainError::Config(unresolved()));
        assert_eq!(chained.kind(), ErrorKind::Connect);
        assert_eq!(
            chained.to_string(),
            "Could not resolve host \"db\" (CanonicalizeHostname, /cfg:3; looked up \
             db.a.example.)"
        );
        let bad_line = ConfigError::Line {
            file: "/cfg".into(),
            line: 1,
            message: "x".into(),
        };
        assert_eq!(Error::Config(bad_line).kind(), ErrorKind::Config);
    }

    #[test]
    fn typed_sources_print_as_the_strings_did() {
        let refused = HopError::Unreachable {
            via: label(1),
            source: Box::new(ChannelOpenError::refused(
                russh::ChannelOpenFailure::ConnectFailed,
                Some("Connection refused".into()),
            )),
        };
        assert_eq!(
            hop(refused),
            "hop 2 (bastion, 10.0.0.1:22): the previous hop could not reach it: hop 1 (bastion, \
             10.0.0.1:22) said: connect failed (Connection refused)"
        );
        // Issue 14: a refusal by the previous hop's policy is said by that hop, first.
        let prohibited = HopError::Unreachable {
            via: HopLabel {
                index: 1,
                name: "shell".into(),
                addr: "127.0.0.1:2222".into(),
            },
            source: Box::new(ChannelOpenError::refused(
                russh::ChannelOpenFailure::AdministrativelyProhibited,
                Some("open failed".into()),
            )),
        };
        assert_eq!(
            hop(prohibited),
            "hop 1 (shell, 127.0.0.1:2222) refused to forward to hop 2 (bastion, 10.0.0.1:22): \
             administratively prohibited (open failed). Its SSH server does not allow \
             forwarding there (its PermitOpen, AllowTcpForwarding or a Match block): ask its \
             admin, or check this hop's HostName and Port"
        );
        // The server's text is left out when it only repeats the reason code.
        let plain = ChannelOpenError::refused(
            russh::ChannelOpenFailure::AdministrativelyProhibited,
            Some("Administratively Prohibited".into()),
        );
        assert_eq!(chain_of(&plain), "administratively prohibited");
        assert!(!plain.session_ended());
        let ended = ChannelOpenError::SessionEnded {
            hop: label(1),
            source: russh::Error::Disconnect,
        };
        assert!(ended.session_ended());
        assert_eq!(
            chain_of(&ended),
            "the SSH session to hop 1 (bastion, 10.0.0.1:22) has ended (Disconnected)"
        );
        let kex = HopError::Ssh {
            stage: SshStage::KeyExchange {
                banner: "\"SSH-2.0-x\"".into(),
            },
            source: russh::Error::KexInit,
        };
        assert_eq!(
            hop(kex),
            "hop 2 (bastion, 10.0.0.1:22): SSH session failed: key exchange with \"SSH-2.0-x\" \
             failed: Key exchange init failed"
        );
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out reading");
        let ssh = HopError::Ssh {
            stage: SshStage::Password,
            source: russh::Error::IO(io),
        };
        assert_eq!(
            hop(ssh),
            "hop 2 (bastion, 10.0.0.1:22): SSH session failed: password: timed out reading"
        );
        let spawn = HopError::ProxyCommand {
            command: "nc %h %p".into(),
            source: ProxyCommandError::Spawn {
                shell: "/bin/nosh".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
        };
        assert_eq!(
            hop(spawn),
            "hop 2 (bastion, 10.0.0.1:22): ProxyCommand `nc %h %p`: cannot run /bin/nosh: entity \
             not found"
        );
        // The handshake's description replaces russh's words.
        let closed = HopError::Handshake {
            what: "the server closed the connection without sending anything".into(),
            cause: russh::Error::HUP,
        };
        assert_eq!(
            hop(closed),
            "hop 2 (bastion, 10.0.0.1:22): the server closed the connection without sending \
             anything"
        );
        assert_eq!(
            hop(HopError::AuthTimeout {
                after: Duration::from_secs(60)
            }),
            "hop 2 (bastion, 10.0.0.1:22): SSH session failed: authentication took more than 60 s"
        );
    }
}
