//! One hop's SSH session, and the chain of them: [`connect_chain`] brings the hops up in
//! order, each by `connect_hop`: its byte stream (`transport`), the handshake with the host
//! key check (`host_key`) recorded for diagnosis (`diagnose`) within ConnectTimeout, what it
//! negotiated checked against `--require-pq`, then authentication (`auth`); the
//! [`HopSession`] then opens channels, and tells what it negotiated for the path report.
//!
//! Hop 1 runs over a TCP connection (or its `ProxyCommand`); hop N+1 runs over a
//! `direct-tcpip` channel of hop N (`russh::client::connect_stream` over
//! `channel.into_stream()`), so the whole chain lives in this process and hop N only ever sees
//! hop N+1's encrypted bytes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::ChannelId;
use russh::client::{self, Handle, Msg};
use russh::keys::PublicKeyOrCertificate;
use tracing::{debug, info};

use crate::config::RekeyLimit;
use crate::error::{ChannelOpenError, Error, HopError, HopLabel};
use crate::event::{Event, Observer, Stage};
use crate::plan::chain::{Chain, Hop};
use crate::plan::path::{Negotiated, is_post_quantum_kex};
use crate::ssh::algorithms;
use crate::ssh::auth::AuthContext;
use crate::ssh::diagnose::{Heard, Recording, describe_loss};
use crate::ssh::hop_tcp::HopTcp;
use crate::ssh::host_key::HostKeyCheck;
use crate::ssh::pool::HopIdentity;
pub use crate::ssh::pool::HopPool;
use crate::ssh::prompt::{PromptClock, Prompts, clean_server_line, clean_server_text};
use crate::ssh::stage::BannerSeen;
use crate::ssh::transport::{ByteStream, Route, connect_tcp};
use crate::ssh::window::{ChannelWindows, PathRtt};

/// Connect + SSH handshake limit when the config sets no ConnectTimeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit for authentication on one hop, not counting the time spent answering questions.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(60);
/// Keepalive interval when the config sets no ServerAliveInterval.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);
/// A nested session sends an SSH_MSG_IGNORE when this long passes after a server's packet
/// without one of ours ([`client_config`]): far below the ~40 ms delayed ACK it stands in
/// for, above the time a request/response peer takes to answer.
const NUDGE_AFTER: Duration = Duration::from_millis(1);

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
    /// Keepalive interval when ServerAliveInterval is not set (`ServerAliveInterval 0` turns
    /// keepalives off, as in ssh); zero: no keepalives by default either.
    pub default_keepalive: Duration,
    /// Who answers questions (unknown host keys under `StrictHostKeyChecking ask`,
    /// passphrases, passwords, keyboard-interactive). `None`: nothing is asked.
    pub prompts: Option<Prompts>,
    /// `--require-pq`: refuse a hop whose key exchange is not post-quantum, right after its
    /// handshake (before authenticating, so no credentials cross it), also when recovering.
    pub require_pq: bool,
    /// Sessions shared between chains (and with the same chain re-established): a hop
    /// already up there is used, not connected again. A fresh pool by default.
    pub pool: HopPool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            observer: Observer::none(),
            agent: AgentSource::Environment,
            default_connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            default_keepalive: DEFAULT_KEEPALIVE,
            prompts: None,
            require_pq: false,
            pool: HopPool::default(),
        }
    }
}

/// An established, authenticated session on one hop.
pub struct HopSession {
    label: HopLabel,
    handle: Handle<HopHandler>,
    notes: Arc<HandlerNotes>,
}

/// What a session's handler learns that the rest of the program asks about later.
#[derive(Debug, Default)]
struct HandlerNotes {
    /// Why the session ended (a peer's disconnect message, a keepalive timeout, an I/O
    /// error); the first reason heard is kept.
    end_reason: Mutex<Option<String>>,
    /// When the session was authenticated (up): a loss afterwards says how long it was up.
    up_since: Mutex<Option<Instant>>,
    /// What the last key exchange negotiated (a rekey renegotiates).
    negotiated: Mutex<Option<Negotiated>>,
    /// The session's round-trip time, for its channels' windows ([`crate::ssh::window`]).
    rtt: Arc<PathRtt>,
}

impl HandlerNotes {
    fn negotiated(&self) -> Option<Negotiated> {
        self.negotiated.lock().ok().and_then(|slot| slot.clone())
    }
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

    /// What the handshake negotiated: key exchange, cipher, host key type.
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.notes.negotiated()
    }

    /// Why the session ended, when it has and the reason is known.
    pub fn end_reason(&self) -> Option<String> {
        self.notes
            .end_reason
            .lock()
            .ok()
            .and_then(|slot| slot.clone())
    }

    /// Opens a `direct-tcpip` channel from this hop to `host:port`; the host name is resolved
    /// by the hop. On refusal, returns the SSH server's reason. The channel itself rather than
    /// a byte stream: its messages tell a clean end of data (EOF, close) from the session
    /// ending under it (the message queue closes), which a byte stream reports alike
    /// (`Channel::into_stream` makes one when that does not matter).
    pub async fn open_direct_tcpip_channel(
        &self,
        host: &str,
        port: u16,
        originator: SocketAddr,
    ) -> Result<russh::Channel<Msg>, ChannelOpenError> {
        let asked = Instant::now();
        let opened = self
            .handle
            .channel_open_direct_tcpip(
                host,
                u32::from(port),
                originator.ip().to_string(),
                u32::from(originator.port()),
            )
            .await;
        self.opened(opened, asked).await
    }

    /// A channel from this hop to `target`: `direct-tcpip` to its host and port, or
    /// `direct-streamlocal@openssh.com` to its Unix socket.
    pub async fn open_channel_to(
        &self,
        target: &crate::spec::Target,
        originator: SocketAddr,
    ) -> Result<russh::Channel<Msg>, ChannelOpenError> {
        match &target.socket {
            Some(path) => {
                let asked = Instant::now();
                let opened = self.handle.channel_open_direct_streamlocal(path).await;
                self.opened(opened, asked).await
            }
            None => {
                self.open_direct_tcpip_channel(&target.host, target.port, originator)
                    .await
            }
        }
    }

    /// A channel-open result (asked for at `asked`), a refusal with the server's reason.
    /// An opened channel's round trip is a sample of the session's round-trip time for the
    /// windows ([`crate::ssh::window`]): the server's connecting to the destination adds to
    /// it, so the smallest sample counts.
    async fn opened(
        &self,
        opened: Result<russh::Channel<Msg>, russh::Error>,
        asked: Instant,
    ) -> Result<russh::Channel<Msg>, ChannelOpenError> {
        match opened {
            Ok(channel) => {
                self.notes.rtt.record(asked.elapsed());
                Ok(channel)
            }
            // The server's text comes with its reason code (russh patch, part J): never one
            // without the other, whatever the tasks' timing.
            Err(russh::Error::ChannelOpenRefused {
                reason,
                description,
            }) => Err(ChannelOpenError::refused(
                reason,
                Some(clean_server_line(&description)),
            )),
            Err(russh::Error::ChannelOpenFailure(failure)) => {
                Err(ChannelOpenError::refused(failure, None))
            }
            Err(source) if self.handle.is_closed() => Err(ChannelOpenError::SessionEnded {
                hop: self.label.clone(),
                source,
            }),
            Err(e) => Err(ChannelOpenError::Ssh(e)),
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

/// All sessions of a chain, outermost first. A session may be shared with other chains of
/// the same [`HopPool`] (same hops before it, same identity): it is disconnected only by the
/// last chain that holds it.
#[derive(Debug, Clone)]
pub struct Sessions {
    hops: Vec<Arc<HopSession>>,
}

impl Sessions {
    /// The sessions, outermost first.
    pub fn hops(&self) -> &[Arc<HopSession>] {
        &self.hops
    }

    /// What each hop negotiated, outermost first (for [`PathReport::with_negotiated`]).
    ///
    /// [`PathReport::with_negotiated`]: crate::plan::path::PathReport::with_negotiated
    pub fn negotiated(&self) -> Vec<Option<Negotiated>> {
        self.hops.iter().map(|h| h.negotiated()).collect()
    }

    /// The innermost session: channels to the target are opened on it.
    pub fn last(&self) -> Option<&HopSession> {
        self.hops.last().map(|h| &**h)
    }

    /// The first `n` sessions (the outer hops that are still up when hop `n + 1` is lost).
    pub fn prefix(&self, n: usize) -> Sessions {
        Sessions {
            hops: self.hops.iter().take(n).cloned().collect(),
        }
    }

    /// Disconnects every session no other chain holds, innermost first (a shared one stays
    /// up for the chains still using it).
    pub async fn disconnect(&self) {
        for hop in self.hops.iter().rev() {
            if Arc::strong_count(hop) == 1 {
                hop.disconnect().await;
            }
        }
    }
}

/// Brings the whole chain up, hop by hop, taking from `opts.pool` every hop already up there
/// (same identity, over the same sessions before it). Nothing is forwarded over a hop whose
/// host key was not verified: a refusal stops here with the hop named.
pub async fn connect_chain(chain: &Chain, opts: &ConnectOptions) -> Result<Sessions, Error> {
    let mut sessions: Vec<Arc<HopSession>> = Vec::new();
    let mut path = Vec::new();
    for hop in &chain.hops {
        path.push(HopIdentity::of(hop));
        let prev = sessions.last().cloned();
        let up = opts
            .pool
            .get_or_connect(&path, prev, |prev| async move {
                connect_hop(prev.as_deref(), hop, opts).await
            })
            .await;
        // A session shared from a tunnel without --require-pq is checked for one with it.
        let up = up.and_then(|(session, shared)| {
            if shared && opts.require_pq {
                require_post_quantum(session.negotiated().as_ref())?;
            }
            Ok((session, shared))
        });
        match up {
            Ok((session, shared)) => {
                if shared {
                    debug!(hop = %session.label(), "sharing the session already up");
                    opts.observer.emit(Event::Shared { hop: hop.label() });
                }
                sessions.push(session)
            }
            Err(source) => {
                opts.observer.emit(Event::HopFailed { hop: hop.label() });
                let done = Sessions { hops: sessions };
                done.disconnect().await;
                return Err(Error::Hop {
                    hop: hop.label(),
                    source: Box::new(source.with_names(hop, &chain.names)),
                });
            }
        }
    }
    Ok(Sessions { hops: sessions })
}

/// One hop: its byte stream, the handshake (host key check included) within ConnectTimeout,
/// then authentication.
async fn connect_hop(
    prev: Option<&HopSession>,
    hop: &Hop,
    opts: &ConnectOptions,
) -> Result<HopSession, HopError> {
    // A list russh implements nothing of is refused before any connection is made.
    algorithms::preferred(&hop.config)?;
    algorithms::host_key_algorithms(&hop.config)?;
    let route = Route::to(hop, prev)?;
    opts.observer.emit(Event::Connecting {
        hop: hop.label(),
        how: route.describe(),
    });
    let limit = connect_limit(hop.config.connect_timeout, opts.default_connect_timeout);
    let nested = !matches!(route, Route::Tcp);
    // A TCP hop connects first, ConnectionAttempts times if need be, each connect within
    // the limit; the handshake then has what is left of it (ssh's `timeout_ms`).
    let waiting = |stage| {
        opts.observer.emit(Event::Waiting {
            hop: hop.label(),
            stage,
        })
    };
    let (tcp, spent) = match route {
        Route::Tcp => {
            waiting(Stage::TcpConnect);
            let (tcp, spent) = connect_tcp(hop, limit).await?;
            (Some(tcp), spent)
        }
        _ => (None, Duration::ZERO),
    };
    let clock = PromptClock::default();
    let heard = Heard::default();
    let setup = async {
        let stream: Box<dyn ByteStream> = match tcp {
            Some(tcp) => Box::new(HopTcp::new(tcp)),
            None => route.open(hop, &heard).await?,
        };
        heard.connected();
        waiting(Stage::Banner);
        handshake(hop, stream, (opts, nested), &clock, &heard).await
    };
    let session = match limit {
        Some(limit) => clock
            .limit(limit.saturating_sub(spent), setup)
            .await
            .ok_or_else(|| heard.timeout(limit))??,
        None => setup.await?,
    };
    let negotiated = session.notes.negotiated();
    if let Some(n) = &negotiated {
        debug!(hop = %session.label, "negotiated {}", n.summary());
    }
    if opts.require_pq
        && let Err(e) = require_post_quantum(negotiated.as_ref())
    {
        // Said to the server too, rather than just dropping the connection.
        let _ = session
            .handle
            .disconnect(
                russh::Disconnect::ByApplication,
                "pgtunnel --require-pq: the key exchange is not post-quantum",
                "en",
            )
            .await;
        return Err(e);
    }
    waiting(Stage::Authentication);
    authenticate(session, hop, opts, &clock).await
}

/// The post-quantum key exchanges russh implements, in its order.
fn supported_post_quantum_kex() -> Vec<&'static str> {
    russh::kex::ALL_KEX_ALGORITHMS
        .iter()
        .map(|name| name.as_ref())
        .filter(|name| is_post_quantum_kex(name))
        .collect()
}

/// `--require-pq`: the hop's key exchange must be post-quantum.
fn require_post_quantum(negotiated: Option<&Negotiated>) -> Result<(), HopError> {
    match negotiated {
        Some(n) if n.post_quantum() => Ok(()),
        other => Err(HopError::NotPostQuantum {
            kex: other.map_or_else(|| "not known".to_string(), |n| n.kex.clone()),
            supported: supported_post_quantum_kex().join(", "),
        }),
    }
}

/// The connect + handshake limit: `ConnectTimeout`, or `default` when it is not set;
/// `ConnectTimeout 0` is no limit, as in ssh (`None`).
fn connect_limit(configured: Option<Duration>, default: Duration) -> Option<Duration> {
    match configured {
        Some(Duration::ZERO) => None,
        Some(d) => Some(d),
        None => Some(default),
    }
}

/// Result of the handshake: a session not yet authenticated.
struct Unauthenticated {
    handle: Handle<HopHandler>,
    label: HopLabel,
    notes: Arc<HandlerNotes>,
}

/// The SSH handshake over `stream`; `nested`: the stream is not our own TCP connection (a
/// channel of the previous hop, or a ProxyCommand), see [`client_config`].
async fn handshake(
    hop: &Hop,
    stream: Box<dyn ByteStream>,
    (opts, nested): (&ConnectOptions, bool),
    clock: &PromptClock,
    heard: &Heard,
) -> Result<Unauthenticated, HopError> {
    let label = hop.label();
    let check = HostKeyCheck::new(hop, opts, clock)?;
    let preferred = check.preferences();
    let notes = Arc::new(HandlerNotes::default());
    let handler = HopHandler {
        label: label.clone(),
        check,
        notes: notes.clone(),
        host_certificate: false,
        windows: ChannelWindows::new(notes.rtt.clone()),
    };
    let config = client_config(hop, opts, preferred, nested)?;
    let (observer, hop_label) = (opts.observer.clone(), label.clone());
    let stream = BannerSeen::new(Recording::new(stream, heard), move || {
        observer.emit(Event::Waiting {
            hop: hop_label,
            stage: Stage::KeyExchange,
        })
    });
    let handle = match client::connect_stream(Arc::new(config), stream, handler).await {
        Ok(handle) => handle,
        Err(HandlerError::HostKey(e)) => return Err(e),
        Err(HandlerError::Ssh(e)) => return Err(heard.failure_after_command(e).await),
    };
    Ok(Unauthenticated {
        handle,
        label,
        notes,
    })
}

/// The russh client configuration for `hop`: its algorithm lists (host key algorithms from
/// `host_keys`, the host key check's), keepalives. A `nested` session (over the previous
/// hop's channel, or a ProxyCommand) sends an SSH_MSG_IGNORE when a server's packet is not
/// followed by one of ours within [`NUDGE_AFTER`] (`nudge_peer`, russh patch part H): the hop
/// in between then acknowledges the server's TCP segment at once, and sshd's Nagle does not
/// hold its next small packet (EOF after data, a channel's confirmation after the previous
/// one's CLOSE) for ~40 ms. Our own TCP socket acknowledges at once anyway (`hop_tcp::HopTcp`).
fn client_config(
    hop: &Hop,
    opts: &ConnectOptions,
    host_keys: russh::Preferred,
    nested: bool,
) -> Result<client::Config, HopError> {
    let preferred = russh::Preferred {
        key: host_keys.key,
        host_key_certificates: host_keys.host_key_certificates,
        ..algorithms::preferred(&hop.config)?
    };
    Ok(client::Config {
        keepalive_interval: keepalive_interval(
            hop.config.server_alive_interval,
            opts.default_keepalive,
        ),
        keepalive_max: hop.config.server_alive_count_max as usize,
        nodelay: true,
        nudge_peer: nested.then_some(NUDGE_AFTER),
        preferred,
        limits: rekey_limits(hop.config.rekey_limit),
        // The largest CHANNEL_DATA we take (OpenSSH's own channels say 32 KiB): sshd fills
        // it when its output backs up, half the packets for every process on the path
        // (issue 13; tests/windows.rs). russh warns beyond 65535, a TCP segment's size.
        maximum_packet_size: 65535,
        ..Default::default()
    })
}

/// `RekeyLimit` as russh's limits: the data limit for each direction, at most russh's own
/// (1 GiB, the bound `Limits::new` enforces; ssh too takes the smaller of its cipher's limit
/// and the configured one); `default` and no time keep russh's 1 GiB and 1 hour (ssh has no
/// time limit then: re-keying more often changes nothing the user sees).
fn rekey_limits(r: RekeyLimit) -> russh::Limits {
    let default = russh::Limits::default();
    let data = match r.data {
        0 => default.rekey_write_limit,
        n => usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(default.rekey_write_limit),
    };
    russh::Limits {
        rekey_write_limit: data,
        rekey_read_limit: data,
        rekey_time_limit: match r.time {
            0 => default.rekey_time_limit,
            s => Duration::from_secs(u64::from(s)),
        },
    }
}

/// How often to send keepalives (`None`: never). `ServerAliveInterval 0` turns them off, as
/// in ssh; when it is not set, `default` applies (pgtunnel keeps alive by default, unlike ssh),
/// and a zero `default` turns them off too.
fn keepalive_interval(configured: Option<Duration>, default: Duration) -> Option<Duration> {
    Some(configured.unwrap_or(default)).filter(|d| !d.is_zero())
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

/// The russh handler of one hop's session: the host key check, and notes for later.
struct HopHandler {
    label: HopLabel,
    check: HostKeyCheck,
    notes: Arc<HandlerNotes>,
    /// Whether the server presented a host certificate (for [`Negotiated`]).
    host_certificate: bool,
    /// The channels' windows, grown on a long path ([`crate::ssh::window`]).
    windows: ChannelWindows,
}

impl client::Handler for HopHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        self.check
            .verify(key)
            .await
            .map_err(HandlerError::HostKey)?;
        self.host_certificate = matches!(key, PublicKeyOrCertificate::Certificate(_));
        Ok(true)
    }

    /// After each key exchange (the host key check came first): what was negotiated.
    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let negotiated = Negotiated {
            kex: names.kex.as_ref().to_string(),
            cipher: names.cipher.as_ref().to_string(),
            host_key: names.key.as_str().to_string(),
            host_certificate: self.host_certificate,
        };
        if let Ok(mut slot) = self.notes.negotiated.lock() {
            *slot = Some(negotiated);
        }
        Ok(())
    }

    /// A channel's next window: larger on a long path while its reader keeps up.
    fn adjust_window_held(&mut self, channel: ChannelId, window: u32, buffered: u32) -> u32 {
        self.windows.adjust(channel, window, buffered)
    }

    /// OpenSSH's sshd announces its host keys right after authentication. The announcement
    /// is answered with a ping (`keepalive@openssh.com`), for two reasons: its round trip is
    /// a sample of the session's round-trip time ([`crate::ssh::window`]); and the packet
    /// that carries it makes the hop before (on an inner hop) acknowledge the announcement's
    /// TCP segment at once, where sshd's Nagle would otherwise hold its next small packet
    /// (the first channel's confirmation) for the delayed ACK, ~40 ms.
    async fn openssh_ext_host_keys_announced(
        &mut self,
        _keys: Vec<russh::keys::PublicKey>,
        session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let (pong, answered) = tokio::sync::oneshot::channel();
        let asked = Instant::now();
        if session.send_ping(pong).is_ok() {
            let rtt = self.notes.rtt.clone();
            tokio::spawn(async move {
                if answered.await.is_ok() {
                    rtt.record(asked.elapsed());
                }
            });
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.windows.closed(&channel);
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let text = match &reason {
            client::DisconnectReason::ReceivedDisconnect(info) => {
                let message = clean_server_line(info.message.trim());
                if message.is_empty() {
                    format!("the server disconnected ({:?})", info.reason_code)
                } else {
                    format!("the server disconnected: {message}")
                }
            }
            client::DisconnectReason::Error(HandlerError::Ssh(e)) => {
                let up_since = self.notes.up_since.lock().ok().and_then(|slot| *slot);
                describe_loss(e, up_since.map(|t| t.elapsed()))
            }
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
        let banner = clean_server_text(banner.trim());
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
        .ok_or(HopError::AuthTimeout {
            after: AUTH_TIMEOUT,
        })??;
    debug!(hop = %label, %how, "authenticated");
    if let Ok(mut slot) = notes.up_since.lock() {
        *slot = Some(Instant::now());
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LocalEnv, SshConfig};
    use crate::plan::chain::{fixture, resolve_chain};
    use crate::spec::{parse_hops, parse_target};

    /// The keepalive settings handed to russh for the one hop `h`, under `config`.
    fn russh_keepalive(config: &str, default: Duration) -> (Option<Duration>, usize) {
        let opts = ConnectOptions {
            default_keepalive: default,
            ..ConnectOptions::default()
        };
        let c = client_config(&fixture::hop(config), &opts, Default::default(), false).unwrap();
        (c.keepalive_interval, c.keepalive_max)
    }

    /// The algorithm lists (here from the system-wide file, as a distribution's crypto policy
    /// sets them) are what russh is given; a list russh implements nothing of is refused.
    #[test]
    fn algorithm_lists_are_applied_and_unimplemented_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("ssh_config");
        std::fs::write(
            &system,
            "Host *\n  Ciphers aes256-ctr,aes128-cbc\n  KexAlgorithms -mlkem*\n\
             Host umac\n  MACs umac-64@openssh.com,umac-128-etm@openssh.com\n",
        )
        .unwrap();
        let env = LocalEnv::fixture();
        let config = SshConfig::load_files(None, Some(&system), dir.path()).unwrap();
        let chain = resolve_chain(
            Some(&parse_hops("h,umac").unwrap()),
            &parse_target("localhost:5432").unwrap(),
            |q| config.resolve(q, &env),
        )
        .unwrap();
        let opts = ConnectOptions::default();
        let c = client_config(&chain.hops[0], &opts, russh::Preferred::default(), false).unwrap();
        let ciphers: Vec<&str> = c.preferred.cipher.iter().map(|n| n.as_ref()).collect();
        assert_eq!(ciphers, ["aes256-ctr", "aes128-cbc"]);
        assert!(
            c.preferred
                .kex
                .iter()
                .any(|k| k.as_ref() == "curve25519-sha256")
        );
        assert!(
            c.preferred
                .kex
                .iter()
                .all(|k| !k.as_ref().starts_with("mlkem"))
        );
        match client_config(&chain.hops[1], &opts, russh::Preferred::default(), false) {
            Err(HopError::NoImplementedAlgorithm { keyword, wanted }) => {
                assert_eq!(keyword, "MACs");
                assert_eq!(wanted, "umac-64@openssh.com,umac-128-etm@openssh.com");
            }
            other => panic!("{:?}", other.map(|c| c.preferred)),
        }
    }

    #[test]
    fn an_explicit_server_alive_interval_0_sends_no_keepalives() {
        let s = Duration::from_secs;
        assert_eq!(russh_keepalive("", s(30)), (Some(s(30)), 3), "the default");
        assert_eq!(russh_keepalive("", s(1)), (Some(s(1)), 3));
        assert_eq!(
            russh_keepalive("Host h\n  ServerAliveInterval 0\n", s(30)),
            (None, 3),
            "0 is off, as in ssh, not unset"
        );
        assert_eq!(
            russh_keepalive(
                "Host h\n  ServerAliveInterval 0\nHost *\n  ServerAliveInterval 9\n",
                s(30)
            ),
            (None, 3),
            "0 is a value: the first one wins"
        );
        assert_eq!(
            russh_keepalive(
                "Host h\n  ServerAliveInterval none\nHost *\n  ServerAliveInterval 9\n  ServerAliveCountMax 5\n",
                s(30)
            ),
            (Some(s(9)), 5),
            "none leaves it unset"
        );
        assert_eq!(
            russh_keepalive("Host h\n  ServerAliveInterval none\n", s(30)),
            (Some(s(30)), 3)
        );
        assert_eq!(
            russh_keepalive("ServerAliveInterval 1m\n", s(30)),
            (Some(s(60)), 3)
        );
        assert_eq!(russh_keepalive("", Duration::ZERO), (None, 3), "no default");
    }

    #[test]
    fn rekey_limit_becomes_russh_limits() {
        let l = |data, time| {
            let l = rekey_limits(RekeyLimit { data, time });
            (l.rekey_write_limit, l.rekey_read_limit, l.rekey_time_limit)
        };
        let s = Duration::from_secs;
        assert_eq!(l(0, 0), (1 << 30, 1 << 30, s(3600)), "russh's defaults");
        assert_eq!(l(16 * 1024, 0), (16 * 1024, 16 * 1024, s(3600)));
        assert_eq!(l(1 << 40, 60), (1 << 30, 1 << 30, s(60)), "at most 1 GiB");
    }

    #[test]
    fn connect_timeout_0_is_no_limit() {
        let s = Duration::from_secs;
        assert_eq!(connect_limit(None, s(30)), Some(s(30)));
        assert_eq!(connect_limit(Some(s(5)), s(30)), Some(s(5)));
        assert_eq!(connect_limit(Some(Duration::ZERO), s(30)), None);
    }

    #[test]
    fn keepalive_interval_table() {
        let s = Duration::from_secs;
        assert_eq!(keepalive_interval(None, s(30)), Some(s(30)));
        assert_eq!(keepalive_interval(Some(s(5)), s(30)), Some(s(5)));
        assert_eq!(keepalive_interval(Some(Duration::ZERO), s(30)), None);
        assert_eq!(keepalive_interval(None, Duration::ZERO), None);
        assert_eq!(keepalive_interval(Some(s(5)), Duration::ZERO), Some(s(5)));
    }
}
