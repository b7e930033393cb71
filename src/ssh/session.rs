//! One hop's SSH session, over any byte stream: host key check, authentication, channels.
//!
//! Hop 1 runs over a TCP connection; hop N+1 runs over a `direct-tcpip` channel of hop N
//! (`russh::client::connect_stream` over `channel.into_stream()`), so the whole chain lives in
//! this process and hop N only ever sees hop N+1's encrypted bytes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle, Msg};
use russh::keys::{PublicKey, PublicKeyOrCertificate};
use russh::{ChannelId, ChannelOpenFailure, ChannelStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::ssh::auth::AuthContext;
use crate::ssh::prompt::{
    Confirmation, PromptClock, PromptError, PromptKind, PromptRequest, Prompts, parse_confirmation,
};

use crate::config::StrictHostKeyChecking;
use crate::config::known_hosts::{self, KnownHostsFile, Verdict};
use crate::error::{Error, HopError, HopLabel};
use crate::event::{Event, Observer};
use crate::plan::chain::{Chain, Hop};

/// Connect + SSH handshake limit when the config sets no ConnectTimeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit for authentication on one hop, not counting the time spent answering questions.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(60);
/// Keepalive interval when the config sets no ServerAliveInterval.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);

/// Where to find ssh-agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSource {
    /// `SSH_AUTH_SOCK` from the environment (unless IdentityAgent says otherwise).
    Environment,
    /// This socket.
    Path(PathBuf),
    /// No agent.
    Disabled,
}

/// How to bring sessions up.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Progress reports.
    pub observer: Observer,
    /// ssh-agent to use.
    pub agent: AgentSource,
    /// Connect + handshake limit when ConnectTimeout is unset.
    pub default_connect_timeout: Duration,
    /// Keepalive interval when ServerAliveInterval is unset.
    pub default_keepalive: Duration,
    /// Who answers questions (unknown host keys under `StrictHostKeyChecking ask`,
    /// passphrases, passwords, keyboard-interactive). `None`: nothing is asked.
    pub prompts: Option<Prompts>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            observer: Observer::none(),
            agent: AgentSource::Environment,
            default_connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            default_keepalive: DEFAULT_KEEPALIVE,
            prompts: None,
        }
    }
}

/// The byte stream one hop's session runs over: a TCP socket or a channel of the previous hop.
pub type HopStream = ChannelStream<Msg>;

/// An established, authenticated session on one hop.
pub struct HopSession {
    label: HopLabel,
    handle: Handle<HopHandler>,
    notes: Arc<HandlerNotes>,
}

/// What a session's handler learns that the rest of the program asks about later.
#[derive(Debug, Default)]
struct HandlerNotes {
    /// The last channel-open failure: its code and the server's text.
    open_failure: Mutex<Option<(u32, String)>>,
    /// Why the session ended (a peer's disconnect message, a keepalive timeout, an I/O
    /// error); the first reason heard is kept.
    end_reason: Mutex<Option<String>>,
}

impl std::fmt::Debug for HopSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HopSession")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl HopSession {
    /// The hop.
    pub fn label(&self) -> &HopLabel {
        &self.label
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Why the session ended, when it has and the reason is known.
    pub fn end_reason(&self) -> Option<String> {
        self.notes
            .end_reason
            .lock()
            .ok()
            .and_then(|slot| slot.clone())
    }

    /// Like [`HopSession::open_direct_tcpip`], but the channel itself rather than a byte
    /// stream: its messages tell a clean end of data (EOF, close) from the session ending
    /// under it (the message queue closes), which a byte stream reports alike.
    pub async fn open_direct_tcpip_channel(
        &self,
        host: &str,
        port: u16,
        originator: SocketAddr,
    ) -> Result<russh::Channel<Msg>, String> {
        self.open_channel(host, port, originator).await
    }

    /// Opens a `direct-tcpip` channel from this hop to `host:port`; the host name is resolved
    /// by the hop. On refusal, returns the SSH server's reason.
    pub async fn open_direct_tcpip(
        &self,
        host: &str,
        port: u16,
        originator: SocketAddr,
    ) -> Result<HopStream, String> {
        self.open_channel(host, port, originator)
            .await
            .map(russh::Channel::into_stream)
    }

    async fn open_channel(
        &self,
        host: &str,
        port: u16,
        originator: SocketAddr,
    ) -> Result<russh::Channel<Msg>, String> {
        match self
            .handle
            .channel_open_direct_tcpip(
                host,
                u32::from(port),
                originator.ip().to_string(),
                u32::from(originator.port()),
            )
            .await
        {
            Ok(channel) => Ok(channel),
            Err(russh::Error::ChannelOpenFailure(failure)) => {
                // The handler records the server's text just after the failure is delivered.
                tokio::task::yield_now().await;
                let text = self
                    .notes
                    .open_failure
                    .lock()
                    .ok()
                    .and_then(|mut slot| slot.take())
                    .filter(|(code, _)| *code == failure.code())
                    .map(|(_, text)| text)
                    .filter(|t| !t.is_empty());
                let reason = open_failure_reason(&failure);
                Err(match text {
                    Some(text) if !text.eq_ignore_ascii_case(&reason) => {
                        format!("{reason} ({text})")
                    }
                    _ => reason,
                })
            }
            Err(e) if self.handle.is_closed() => {
                Err(format!("the SSH session to {} has ended ({e})", self.label))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Ends the session politely.
    pub async fn disconnect(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "pgtunnel closing", "en")
            .await;
    }
}

fn open_failure_reason(f: &ChannelOpenFailure) -> String {
    match f {
        ChannelOpenFailure::AdministrativelyProhibited => "administratively prohibited".into(),
        ChannelOpenFailure::ConnectFailed => "connect failed".into(),
        ChannelOpenFailure::UnknownChannelType => "unknown channel type".into(),
        ChannelOpenFailure::ResourceShortage => "resource shortage".into(),
        ChannelOpenFailure::Other { code, reason } => format!("error {code}: {reason}"),
    }
}

/// All sessions of a chain, outermost first.
#[derive(Debug)]
pub struct Sessions {
    hops: Vec<HopSession>,
}

impl Sessions {
    /// The sessions, outermost first.
    pub fn hops(&self) -> &[HopSession] {
        &self.hops
    }

    /// The innermost session: channels to the target are opened on it.
    pub fn last(&self) -> Option<&HopSession> {
        self.hops.last()
    }

    /// Disconnects every session, innermost first.
    pub async fn disconnect(&self) {
        for hop in self.hops.iter().rev() {
            hop.disconnect().await;
        }
    }
}

/// Brings the whole chain up, hop by hop. Nothing is forwarded over a hop whose host key was
/// not verified: a refusal stops here with the hop named.
pub async fn connect_chain(chain: &Chain, opts: &ConnectOptions) -> Result<Sessions, Error> {
    let mut sessions: Vec<HopSession> = Vec::new();
    for hop in &chain.hops {
        let result = match sessions.last() {
            None => connect_first(hop, opts).await,
            Some(prev) => connect_through(prev, hop, opts).await,
        };
        match result {
            Ok(session) => sessions.push(session),
            Err(source) => {
                opts.observer.emit(Event::HopFailed { hop: hop.label() });
                let done = Sessions { hops: sessions };
                done.disconnect().await;
                return Err(Error::Hop {
                    hop: hop.label(),
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(Sessions { hops: sessions })
}

async fn connect_first(hop: &Hop, opts: &ConnectOptions) -> Result<HopSession, HopError> {
    let limit = hop
        .config
        .connect_timeout
        .unwrap_or(opts.default_connect_timeout);
    if let Some(command) = hop.config.expanded_proxy_command() {
        let command = command.map_err(|e| HopError::ProxyCommand {
            command: hop.config.proxy_command.clone().unwrap_or_default(),
            reason: e,
        })?;
        opts.observer.emit(Event::Connecting {
            hop: hop.label(),
            how: format!("ProxyCommand `{command}`"),
        });
        let clock = PromptClock::default();
        let heard = Heard::default();
        let setup = async {
            let stream = ProxyCommandStream::spawn(&command)?;
            heard.connected();
            handshake(hop, stream, opts, &clock, &heard).await
        };
        let session = clock
            .limit(limit, setup)
            .await
            .ok_or_else(|| heard.timeout(limit))??;
        return authenticate(session, hop, opts, &clock).await;
    }
    opts.observer.emit(Event::Connecting {
        hop: hop.label(),
        how: "TCP".into(),
    });
    let addr = (hop.config.host_name.clone(), hop.config.port);
    let clock = PromptClock::default();
    let heard = Heard::default();
    let setup = async {
        // AddressFamily: only the resolved addresses of that family (none: an error).
        let family = hop.config.address_family;
        let addrs = tokio::net::lookup_host(addr)
            .await
            .and_then(|found| family.filter(&hop.config.host_name, found))
            .map_err(|source| HopError::Connect { source })?;
        let tcp = TcpStream::connect(&addrs[..])
            .await
            .map_err(|source| HopError::Connect { source })?;
        tcp.set_nodelay(true)
            .map_err(|source| HopError::Connect { source })?;
        heard.connected();
        handshake(hop, tcp, opts, &clock, &heard).await
    };
    let session = clock
        .limit(limit, setup)
        .await
        .ok_or_else(|| heard.timeout(limit))??;
    authenticate(session, hop, opts, &clock).await
}

async fn connect_through(
    prev: &HopSession,
    hop: &Hop,
    opts: &ConnectOptions,
) -> Result<HopSession, HopError> {
    opts.observer.emit(Event::Connecting {
        hop: hop.label(),
        how: format!("through hop {}", prev.label.index),
    });
    let limit = hop
        .config
        .connect_timeout
        .unwrap_or(opts.default_connect_timeout);
    let clock = PromptClock::default();
    let heard = Heard::default();
    let setup = async {
        let origin = SocketAddr::from(([127, 0, 0, 1], 0));
        let stream = prev
            .open_direct_tcpip(&hop.config.host_name, hop.config.port, origin)
            .await
            .map_err(|reason| HopError::Unreachable {
                reason: format!("{} said: {reason}", prev.label),
            })?;
        heard.connected();
        handshake(hop, stream, opts, &clock, &heard).await
    };
    let session = clock
        .limit(limit, setup)
        .await
        .ok_or_else(|| heard.timeout(limit))??;
    authenticate(session, hop, opts, &clock).await
}

/// Result of the handshake: a session not yet authenticated.
struct Unauthenticated {
    handle: Handle<HopHandler>,
    label: HopLabel,
    notes: Arc<HandlerNotes>,
}

async fn handshake<S>(
    hop: &Hop,
    stream: S,
    opts: &ConnectOptions,
    clock: &PromptClock,
    heard: &Heard,
) -> Result<Unauthenticated, HopError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let label = hop.label();
    let files = load_known_hosts(hop, &opts.observer)?;
    let lookup = known_hosts::HostKeyLookup::new(
        &hop.config.host_name,
        hop.config.port,
        hop.config.host_key_alias.as_deref(),
    );
    let preferred = host_key_preferences(&files, &lookup);
    let notes = Arc::new(HandlerNotes::default());
    let handler = HopHandler {
        label: label.clone(),
        lookup,
        files,
        policy: hop.config.strict_host_key_checking,
        write_file: hop.config.user_known_hosts_files.first().cloned(),
        hash_known_hosts: hop.config.hash_known_hosts,
        observer: opts.observer.clone(),
        notes: notes.clone(),
        prompts: opts.prompts.clone(),
        batch_mode: hop.config.batch_mode,
        clock: clock.clone(),
    };
    let keepalive = hop
        .config
        .server_alive_interval
        .unwrap_or(opts.default_keepalive);
    let config = client::Config {
        keepalive_interval: Some(keepalive),
        keepalive_max: hop.config.server_alive_count_max as usize,
        nodelay: true,
        preferred,
        ..Default::default()
    };
    let stream = Recording {
        inner: stream,
        heard: Some(heard.clone()),
    };
    let handle = client::connect_stream(Arc::new(config), stream, handler)
        .await
        .map_err(|e| match e {
            HandlerError::HostKey(e) => e,
            HandlerError::Ssh(e) => heard.failure(&e),
        })?;
    Ok(Unauthenticated {
        handle,
        label,
        notes,
    })
}

fn describe_ssh_error(e: &russh::Error) -> String {
    match e {
        russh::Error::Disconnect => "the server closed the connection".into(),
        russh::Error::HUP => "the connection was closed during the handshake".into(),
        _ if is_closed(e) => "the connection was closed during the handshake".into(),
        other => other.to_string(),
    }
}

/// Whether `e` says the peer went away (closed or reset the connection).
fn is_closed(e: &russh::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    match e {
        russh::Error::Disconnect | russh::Error::HUP => true,
        russh::Error::IO(io) => matches!(
            io.kind(),
            UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted
        ),
        _ => false,
    }
}

/// How much of what a server sends first is kept, to say what answered when the handshake
/// fails or stalls (russh's errors do not carry it).
const HEARD_LIMIT: usize = 512;
/// How much of a line an error message quotes.
const QUOTE_LIMIT: usize = 60;
/// The longest identification line russh accepts (RFC 4253: 255 bytes with CR LF).
const MAX_ID_LINE: usize = 255;

/// What a hop's server sent before its session was up, shared by the stream that records it
/// and the code that reports a failed or stalled handshake (also after a timeout dropped the
/// handshake).
#[derive(Debug, Clone, Default)]
struct Heard(Arc<Mutex<HeardState>>);

#[derive(Debug, Default)]
struct HeardState {
    /// The byte stream to the server exists (TCP connected, channel opened, command run).
    connected: bool,
    /// The first [`HEARD_LIMIT`] bytes it sent.
    bytes: Vec<u8>,
}

/// What the recorded bytes show.
enum Said<'a> {
    Nothing,
    /// An SSH identification line (`SSH-2.0-...`).
    Banner(&'a [u8]),
    /// Something else: the server is not an SSH server (or not one russh speaks to).
    NotSsh(String),
}

impl Heard {
    fn connected(&self) {
        if let Ok(mut state) = self.0.lock() {
            state.connected = true;
        }
    }

    /// Records `bytes`; false once the limit is reached (recording can stop).
    fn record(&self, bytes: &[u8]) -> bool {
        let Ok(mut state) = self.0.lock() else {
            return false;
        };
        let room = HEARD_LIMIT.saturating_sub(state.bytes.len());
        state
            .bytes
            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
        state.bytes.len() < HEARD_LIMIT
    }

    fn snapshot(&self) -> (bool, Vec<u8>) {
        self.0
            .lock()
            .map(|s| (s.connected, s.bytes.clone()))
            .unwrap_or_default()
    }

    /// The handshake failed with `e`.
    fn failure(&self, e: &russh::Error) -> HopError {
        let (_, bytes) = self.snapshot();
        match said(&bytes) {
            Said::NotSsh(what) => HopError::Handshake(what),
            Said::Nothing if is_closed(e) => HopError::Handshake(
                "the server closed the connection without sending anything (no SSH server there?)"
                    .into(),
            ),
            Said::Nothing => HopError::Ssh(describe_ssh_error(e)),
            Said::Banner(banner) if is_closed(e) => HopError::Handshake(format!(
                "the server ({}) closed the connection during the key exchange",
                quote(banner)
            )),
            Said::Banner(banner) => HopError::Ssh(format!(
                "key exchange with {} failed: {}",
                quote(banner),
                describe_ssh_error(e)
            )),
        }
    }

    /// ConnectTimeout passed: where the handshake stood.
    fn timeout(&self, after: Duration) -> HopError {
        let (connected, bytes) = self.snapshot();
        let stage = match said(&bytes) {
            Said::Nothing if !connected => {
                "the connection to the server was not established".into()
            }
            Said::Nothing => "the server accepted the connection but sent nothing".into(),
            Said::NotSsh(what) => what,
            Said::Banner(banner) => format!(
                "the server ({}) stopped answering during the key exchange",
                quote(banner)
            ),
        };
        HopError::Timeout { after, stage }
    }
}

/// Reads the first bytes a server sent the way russh does (`ssh_read.rs`): lines before the
/// `SSH-2.0-`/`SSH-1.99-` line are allowed, a line may not exceed 255 bytes.
fn said(bytes: &[u8]) -> Said<'_> {
    if bytes.is_empty() {
        return Said::Nothing;
    }
    let mut rest = bytes;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = rest.get(..end).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() < MAX_ID_LINE
            && (line.starts_with(b"SSH-2.0-") || line.starts_with(b"SSH-1.99-"))
        {
            return Said::Banner(line);
        }
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    // No identification line: describe the first line.
    let first_end = bytes.iter().position(|&b| b == b'\n');
    let first = bytes
        .get(..first_end.unwrap_or(bytes.len()))
        .unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let quoted = quote(first);
    let after_line = first_end.map_or(bytes.len(), |e| e + 1);
    let quoted = if bytes.len() > after_line && !quoted.ends_with("...") {
        quoted + "..."
    } else {
        quoted
    };
    let too_long = first_end.map_or(bytes.len() >= MAX_ID_LINE, |e| e > MAX_ID_LINE);
    Said::NotSsh(if first.starts_with(b"SSH-") && too_long {
        format!(
            "the server's SSH identification line is longer than {MAX_ID_LINE} bytes (it sent \
             {quoted})"
        )
    } else if first.starts_with(b"SSH-") {
        format!("the server speaks an SSH version pgtunnel does not (it sent {quoted})")
    } else if too_long {
        format!(
            "the server did not speak SSH (it sent more than {MAX_ID_LINE} bytes without a line \
             end: {quoted})"
        )
    } else {
        format!("the server did not speak SSH (it sent {quoted})")
    })
}

/// The start of `line` in quotes (`...` after it when cut), with control characters and
/// quotes escaped: a hostile peer chooses these bytes, they must not reach the terminal as
/// they are.
fn quote(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let shown: String = text.chars().take(QUOTE_LIMIT).collect();
    let cut = if shown.len() < text.len() { "..." } else { "" };
    format!("\"{}\"{cut}", shown.escape_debug())
}

/// A hop's byte stream that records what the server sends first into [`Heard`] (then stops
/// recording: one `Option` check per read afterwards).
struct Recording<S> {
    inner: S,
    heard: Option<Heard>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (std::task::Poll::Ready(Ok(())), Some(heard)) = (&poll, &this.heard) {
            let new = buf.filled().get(before..).unwrap_or_default();
            if !heard.record(new) {
                this.heard = None;
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn load_known_hosts(hop: &Hop, observer: &Observer) -> Result<Arc<Vec<KnownHostsFile>>, HopError> {
    let mut files = Vec::new();
    for path in hop
        .config
        .user_known_hosts_files
        .iter()
        .chain(&hop.config.global_known_hosts_files)
    {
        let file = KnownHostsFile::load(path).map_err(|source| HopError::KnownHosts {
            path: path.clone(),
            source,
        })?;
        for warning in file.warnings() {
            warn!(%warning, "malformed known_hosts line");
            observer.emit(Event::Warning(warning.to_string()));
        }
        files.push(file);
    }
    Ok(Arc::new(files))
}

/// Host key algorithms in `ssh`'s order for this host (`order_hostkeyalgs()`): types already
/// in known_hosts first, so a host known by its RSA key is not reported as changed because the
/// server prefers Ed25519; host certificates are asked for when a `@cert-authority` line
/// applies to the host.
fn host_key_preferences(
    files: &[KnownHostsFile],
    lookup: &known_hosts::HostKeyLookup,
) -> russh::Preferred {
    let default = russh::Preferred::default();
    let name = lookup.name();
    let key = known_hosts::order_host_key_algorithms(files, name, &default.key);
    // A CA line for the port-less name vouches too (ssh retries certificates under it), and
    // ssh asks for certificates first by default.
    let ca = known_hosts::has_cert_authority(files, name)
        || lookup
            .fallback()
            .is_some_and(|f| known_hosts::has_cert_authority(files, f));
    let certificates: Vec<russh::keys::Algorithm> = if ca {
        key.iter()
            .filter(|a| !matches!(a, russh::keys::Algorithm::Rsa { hash: None }))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    russh::Preferred {
        key: key.into(),
        host_key_certificates: certificates.into(),
        ..default
    }
}

/// Errors the russh handler can return: russh's own, or our host key refusal.
#[derive(Debug)]
enum HandlerError {
    Ssh(russh::Error),
    HostKey(HopError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

struct HopHandler {
    label: HopLabel,
    lookup: known_hosts::HostKeyLookup,
    files: Arc<Vec<KnownHostsFile>>,
    policy: StrictHostKeyChecking,
    write_file: Option<PathBuf>,
    /// `HashKnownHosts`: write new entries hashed, as `ssh` would.
    hash_known_hosts: bool,
    observer: Observer,
    notes: Arc<HandlerNotes>,
    /// Who answers `StrictHostKeyChecking ask`.
    prompts: Option<Prompts>,
    /// `BatchMode yes`: `ask` refuses without asking, as `ssh`'s `confirm()` does.
    batch_mode: bool,
    clock: PromptClock,
}

fn offered_key(key: &PublicKeyOrCertificate) -> PublicKey {
    match key {
        PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
        PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
    }
}

impl HopHandler {
    async fn verify(&self, key: &PublicKeyOrCertificate) -> Result<(), HopError> {
        let public = offered_key(key);
        let fingerprint = known_hosts::fingerprint(&public);
        let name = self.lookup.name().to_string();
        let verdict = self.lookup.check(&self.files, key);
        let how = match verdict {
            Verdict::Known {
                path,
                line,
                cert_authority: false,
            } => format!("known_hosts {}:{line}", path.display()),
            Verdict::Known {
                path,
                line,
                cert_authority: true,
            } => format!(
                "host certificate signed by the @cert-authority key at known_hosts {}:{line}",
                path.display()
            ),
            Verdict::Revoked { path, line } => {
                return Err(HopError::HostKeyRevoked {
                    name,
                    fingerprint,
                    at: format!("{}:{line}", path.display()),
                });
            }
            Verdict::Changed { known } => {
                let known = known
                    .iter()
                    .map(|k| format!("{}:{} ({})", k.path.display(), k.line, k.fingerprint_sha256))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(HopError::HostKeyChanged {
                    name,
                    fingerprint,
                    known,
                });
            }
            Verdict::Unknown => match self.policy {
                StrictHostKeyChecking::Yes => {
                    return Err(self.unknown(name, fingerprint, "yes".into()));
                }
                StrictHostKeyChecking::Ask if self.batch_mode => {
                    return Err(self.unknown(
                        name,
                        fingerprint,
                        "ask and BatchMode yes (nothing is asked)".into(),
                    ));
                }
                StrictHostKeyChecking::Ask => {
                    let Some(prompts) = &self.prompts else {
                        return Err(self.unknown(
                            name,
                            fingerprint,
                            "ask and there is no terminal or SSH_ASKPASS to ask".into(),
                        ));
                    };
                    match self.confirm(prompts, &name, &public, &fingerprint).await {
                        Ok(true) => {
                            let file = self.add_known_host(&name, &public)?;
                            self.observer.emit(Event::Warning(format!(
                                "{}: permanently added '{name}' ({}) to the list of known \
                                 hosts ({})",
                                self.label,
                                key_type_name(&public),
                                file.display()
                            )));
                            format!("accepted at the prompt; added to {}", file.display())
                        }
                        Ok(false) => {
                            return Err(self.unknown(
                                name,
                                fingerprint,
                                "ask and the answer was no".into(),
                            ));
                        }
                        Err(e) => {
                            return Err(self.unknown(
                                name,
                                fingerprint,
                                match e {
                                    PromptError::Unavailable => {
                                        "ask and there is no terminal or SSH_ASKPASS to ask".into()
                                    }
                                    e => format!("ask and the question failed ({e})"),
                                },
                            ));
                        }
                    }
                }
                StrictHostKeyChecking::No => {
                    self.observer.emit(Event::Warning(format!(
                        "{}: host key {fingerprint} for {name} is not known; accepted because \
                         StrictHostKeyChecking is no",
                        self.label
                    )));
                    "accepted unknown key (StrictHostKeyChecking no)".to_string()
                }
                StrictHostKeyChecking::AcceptNew => {
                    let file = self.add_known_host(&name, &public)?;
                    format!("new key added to {}", file.display())
                }
            },
        };
        debug!(hop = %self.label, %fingerprint, %how, "host key verified");
        self.observer.emit(Event::HostKeyVerified {
            hop: self.label.clone(),
            fingerprint,
            how,
        });
        Ok(())
    }
}

impl HopHandler {
    fn unknown(&self, name: String, fingerprint: String, policy: String) -> HopError {
        HopError::HostKeyUnknown {
            name,
            fingerprint,
            policy,
            file: self
                .write_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "~/.ssh/known_hosts".into()),
        }
    }

    /// Writes the entry `ssh` would write for a newly accepted key (accept-new, or `yes` at
    /// the prompt): to the first UserKnownHostsFile, hashed when HashKnownHosts is yes.
    fn add_known_host(&self, name: &str, public: &PublicKey) -> Result<PathBuf, HopError> {
        let Some(file) = &self.write_file else {
            return Err(HopError::Ssh(
                "the host key was accepted, but there is no UserKnownHostsFile to record it in"
                    .into(),
            ));
        };
        append_known_host(file, name, public, self.hash_known_hosts).map_err(|source| {
            HopError::KnownHostsWrite {
                path: file.clone(),
                source,
            }
        })?;
        Ok(file.clone())
    }

    /// OpenSSH's question for an unknown host key (sshconnect.c), asked until the answer is
    /// yes, no or the fingerprint (at most [`HOST_KEY_QUESTIONS`] times).
    async fn confirm(
        &self,
        prompts: &Prompts,
        name: &str,
        public: &PublicKey,
        fingerprint: &str,
    ) -> Result<bool, PromptError> {
        let preamble = vec![
            format!(
                "The authenticity of host '{name}' ({}) can't be established.",
                self.label.addr
            ),
            format!(
                "{} key fingerprint is {fingerprint}.",
                key_type_name(public)
            ),
        ];
        let mut prompt =
            "Are you sure you want to continue connecting (yes/no/[fingerprint])? ".to_string();
        for round in 0..HOST_KEY_QUESTIONS {
            let request = PromptRequest {
                hop: self.label.clone(),
                kind: PromptKind::HostKey,
                preamble: if round == 0 {
                    preamble.clone()
                } else {
                    Vec::new()
                },
                prompt: prompt.clone(),
                echo: true,
            };
            let answer = prompts.ask(request, &self.clock).await?;
            match parse_confirmation(&answer, fingerprint) {
                Confirmation::Yes => return Ok(true),
                Confirmation::No => return Ok(false),
                Confirmation::Again => {
                    prompt = "Please type 'yes', 'no' or the fingerprint: ".into();
                }
            }
        }
        Ok(false)
    }
}

/// How often the host key question is repeated after answers that are neither yes nor no.
const HOST_KEY_QUESTIONS: usize = 5;

/// The key type as `ssh` names it in messages (`ED25519`, `RSA`, `ECDSA`).
fn key_type_name(key: &PublicKey) -> String {
    use russh::keys::Algorithm;
    match key.algorithm() {
        Algorithm::Ed25519 => "ED25519".into(),
        Algorithm::Rsa { .. } => "RSA".into(),
        Algorithm::Ecdsa { .. } => "ECDSA".into(),
        Algorithm::Dsa => "DSA".into(),
        other => other.as_str().to_uppercase(),
    }
}

/// Appends the line `ssh` writes for a new key (hashed when `HashKnownHosts yes`),
/// creating the file (0600, parent 0700) if needed.
fn append_known_host(
    file: &Path,
    name: &str,
    key: &PublicKey,
    hashed: bool,
) -> std::io::Result<()> {
    let line = known_hosts::format_entry(name, key, hashed)?;
    known_hosts::append_entry(file, &line)
}

impl client::Handler for HopHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        self.verify(key).await.map_err(HandlerError::HostKey)?;
        Ok(true)
    }

    async fn channel_open_failure(
        &mut self,
        _channel: ChannelId,
        reason: ChannelOpenFailure,
        description: &str,
        _language: &str,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        if let Ok(mut slot) = self.notes.open_failure.lock() {
            *slot = Some((reason.code(), description.to_string()));
        }
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let text = match &reason {
            client::DisconnectReason::ReceivedDisconnect(info) => {
                let message = info.message.trim();
                if message.is_empty() {
                    format!("the server disconnected ({:?})", info.reason_code)
                } else {
                    format!("the server disconnected: {message}")
                }
            }
            client::DisconnectReason::Error(HandlerError::Ssh(russh::Error::KeepaliveTimeout)) => {
                "no answer to keepalives (ServerAliveInterval x ServerAliveCountMax)".into()
            }
            client::DisconnectReason::Error(HandlerError::Ssh(e)) => describe_ssh_error(e),
            client::DisconnectReason::Error(HandlerError::HostKey(e)) => e.to_string(),
        };
        debug!(hop = %self.label, "session ended: {text}");
        if let Ok(mut slot) = self.notes.end_reason.lock() {
            slot.get_or_insert(text);
        }
        match reason {
            client::DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            client::DisconnectReason::Error(e) => Err(e),
        }
    }

    async fn auth_banner(
        &mut self,
        banner: &str,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let banner = banner.trim();
        if !banner.is_empty() {
            info!(hop = %self.label, "banner: {banner}");
        }
        Ok(())
    }
}

async fn authenticate(
    session: Unauthenticated,
    hop: &Hop,
    opts: &ConnectOptions,
    clock: &PromptClock,
) -> Result<HopSession, HopError> {
    let Unauthenticated {
        mut handle,
        label,
        notes,
    } = session;
    let ctx = AuthContext {
        observer: &opts.observer,
        prompts: opts.prompts.as_ref(),
        clock,
        agent: agent_socket(hop, opts),
    };
    let how = clock
        .limit(
            AUTH_TIMEOUT,
            crate::ssh::auth::authenticate(&mut handle, hop, &ctx),
        )
        .await
        .ok_or_else(|| {
            HopError::Ssh(format!(
                "authentication took more than {} s",
                AUTH_TIMEOUT.as_secs()
            ))
        })??;
    debug!(hop = %label, %how, "authenticated");
    opts.observer.emit(Event::Authenticated {
        hop: label.clone(),
        how,
    });
    Ok(HopSession {
        label,
        handle,
        notes,
    })
}

/// ssh-agent's socket for this hop: `IdentityAgent` (a path, `none`, `SSH_AUTH_SOCK`), else
/// the caller's choice.
fn agent_socket(hop: &Hop, opts: &ConnectOptions) -> Option<PathBuf> {
    match hop.config.identity_agent.as_deref() {
        Some("none") => return None,
        Some("SSH_AUTH_SOCK") | None => {}
        Some(path) => return Some(PathBuf::from(path)),
    }
    match &opts.agent {
        AgentSource::Disabled => None,
        AgentSource::Path(p) => Some(p.clone()),
        AgentSource::Environment => std::env::var_os("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
    }
}

/// A hop's byte stream through a `ProxyCommand`: the command's stdout is what the server
/// sends, its stdin what we send. Run as OpenSSH does, `$SHELL -c "exec COMMAND"`, with its
/// stderr passed through; the process is killed when the session ends.
struct ProxyCommandStream {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
}

impl ProxyCommandStream {
    fn spawn(command: &str) -> Result<Self, HopError> {
        let shell = std::env::var_os("SHELL")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".into());
        let fail = |reason: String| HopError::ProxyCommand {
            command: command.to_string(),
            reason,
        };
        let mut child = tokio::process::Command::new(&shell)
            .arg("-c")
            .arg(format!("exec {command}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", shell.to_string_lossy())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(fail("no pipes to the command".into()));
        };
        Ok(ProxyCommandStream {
            child,
            stdin,
            stdout,
        })
    }
}

impl Drop for ProxyCommandStream {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl AsyncRead for ProxyCommandStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProxyCommandStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stdin).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_ssh(bytes: &[u8]) -> String {
        match said(bytes) {
            Said::NotSsh(text) => text,
            Said::Nothing => "nothing".into(),
            Said::Banner(b) => format!("banner {}", quote(b)),
        }
    }

    #[test]
    fn what_the_server_said() {
        assert_eq!(not_ssh(b""), "nothing");
        // Lines before the identification line are allowed (RFC 4253 4.2).
        assert_eq!(
            not_ssh(b"hello\r\nSSH-2.0-OpenSSH_9.2\r\n\0\0"),
            "banner \"SSH-2.0-OpenSSH_9.2\""
        );
        assert_eq!(
            not_ssh(b"SSH-1.5-old\n"),
            "the server speaks an SSH version pgtunnel does not (it sent \"SSH-1.5-old\")"
        );
        assert_eq!(
            not_ssh("caf\u{e9} \u{202e}\n".as_bytes()),
            "the server did not speak SSH (it sent \"caf\u{e9} \\u{202e}\")"
        );
        assert_eq!(
            not_ssh(b"\xff\xfe\n"),
            "the server did not speak SSH (it sent \"\u{fffd}\u{fffd}\")"
        );
        // A partial first line (the server is still sending, or stalled).
        assert_eq!(
            not_ssh(b"220 smtp.example ESMTP"),
            "the server did not speak SSH (it sent \"220 smtp.example ESMTP\")"
        );
    }
}
