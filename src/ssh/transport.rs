//! How a hop's byte stream is obtained: a TCP connection (the first hop), a `ProxyCommand`'s
//! pipes (the first hop, when configured), or a `direct-tcpip` channel of the previous hop's
//! session (every other hop).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tracing::{debug, warn};

use crate::config::{HostConfig, Tos};
use crate::error::{HopError, ProxyCommandError};
use crate::plan::chain::Hop;
use crate::ssh::diagnose::Heard;
use crate::ssh::session::HopSession;

/// A byte stream a session can run over.
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ByteStream for S {}

/// How a hop is reached.
pub(crate) enum Route<'a> {
    /// A TCP connection to `HostName:Port`.
    Tcp,
    /// The hop's `ProxyCommand`, tokens expanded.
    ProxyCommand(String),
    /// A `direct-tcpip` channel of the previous hop's session.
    Through(&'a HopSession),
}

impl<'a> Route<'a> {
    /// The route to `hop`: through `prev` when there is one, else its `ProxyCommand`, else
    /// TCP. A `ProxyCommand` whose tokens cannot be expanded is an error.
    pub(crate) fn to(hop: &Hop, prev: Option<&'a HopSession>) -> Result<Self, HopError> {
        if let Some(prev) = prev {
            return Ok(Route::Through(prev));
        }
        match hop.config.expanded_proxy_command() {
            None => Ok(Route::Tcp),
            Some(Ok(command)) => Ok(Route::ProxyCommand(command)),
            Some(Err(reason)) => Err(HopError::ProxyCommand {
                command: hop.config.proxy_command.clone().unwrap_or_default(),
                source: ProxyCommandError::Expand(reason),
            }),
        }
    }

    /// For progress reports: "TCP", "ProxyCommand `...`", "through hop 1".
    pub(crate) fn describe(&self) -> String {
        match self {
            Route::Tcp => "TCP".into(),
            Route::ProxyCommand(command) => format!("ProxyCommand `{command}`"),
            Route::Through(prev) => format!("through hop {}", prev.label().index),
        }
    }

    /// Opens the byte stream to `hop`; a `ProxyCommand`'s end is watched through `heard`.
    pub(crate) async fn open(
        &self,
        hop: &Hop,
        heard: &Heard,
    ) -> Result<Box<dyn ByteStream>, HopError> {
        match self {
            // Connections normally connect first, with the limit: see [`connect_tcp`].
            Route::Tcp => Ok(Box::new(connect_tcp(hop, None).await?.0)),
            Route::ProxyCommand(command) => {
                let (stream, watch) = ProxyCommandStream::spawn(command)?;
                heard.command(command, watch);
                Ok(Box::new(stream))
            }
            Route::Through(prev) => {
                let origin = SocketAddr::from(([127, 0, 0, 1], 0));
                let channel = prev
                    .open_direct_tcpip_channel(&hop.config.host_name, hop.config.port, origin)
                    .await
                    .map_err(|source| HopError::Unreachable {
                        via: prev.label().clone(),
                        source: Box::new(source),
                    })?;
                Ok(Box::new(channel.into_stream()))
            }
        }
    }
}

/// Why one TCP connection attempt to one address failed.
enum AttemptFailure {
    /// The socket could not be made, bound or connected.
    Io(std::io::Error),
    /// `ConnectTimeout` passed while connecting.
    TimedOut(Duration),
}

/// Hop 1's TCP connection, as `ssh_connect_direct` makes it: the host name resolved once
/// (only the addresses `AddressFamily` allows), then up to `ConnectionAttempts` rounds one
/// second apart, each trying every address in order; each connect may take `limit`
/// (`ConnectTimeout`; `None`: no limit). Each socket is marked with `IPQoS` and bound to
/// `BindAddress` / `BindInterface` before it connects (`ssh_create_socket`). Returns the
/// connection and how long its successful connect took (the handshake gets what is left of
/// `limit`, as ssh's `timeout_ms`).
pub(crate) async fn connect_tcp(
    hop: &Hop,
    limit: Option<Duration>,
) -> Result<(TcpStream, Duration), HopError> {
    let c = &hop.config;
    let attempts = c.connection_attempts.max(1);
    let found = tokio::net::lookup_host((c.host_name.clone(), c.port))
        .await
        .map_err(|source| HopError::Resolve {
            host: c.host_name.clone(),
            source,
            note: None,
        })?;
    let addrs = c
        .address_family
        .filter(&c.host_name, found)
        .map_err(|source| HopError::Connect {
            source,
            attempts: 1,
        })?;
    let mut last = None;
    for attempt in 1..=attempts {
        if attempt > 1 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            debug!(hop = %hop.label(), "trying again (attempt {attempt} of {attempts})");
        }
        for &addr in &addrs {
            let started = Instant::now();
            match connect_one(c, addr, limit).await {
                Ok(tcp) => return Ok((tcp, started.elapsed())),
                Err(failure) => {
                    if let AttemptFailure::Io(e) = &failure {
                        debug!(hop = %hop.label(), "connect to {addr}: {e}");
                    }
                    last = Some(failure);
                }
            }
        }
    }
    Err(attempts_failed(last, attempts))
}

/// The error after every attempt failed: the last failure, and how many attempts were made.
fn attempts_failed(last: Option<AttemptFailure>, attempts: u32) -> HopError {
    match last {
        Some(AttemptFailure::TimedOut(after)) => HopError::Timeout {
            after,
            stage: format!(
                "the connection to the server was not established{}",
                crate::error::attempts_note(attempts)
            ),
        },
        Some(AttemptFailure::Io(source)) => HopError::Connect { source, attempts },
        None => HopError::Connect {
            source: std::io::Error::other("no address to connect to"),
            attempts,
        },
    }
}

/// One connect to `addr`: socket, `IPQoS`, bind, connect within `limit`, then
/// `TCP_NODELAY` and `TCPKeepAlive`.
async fn connect_one(
    c: &HostConfig,
    addr: SocketAddr,
    limit: Option<Duration>,
) -> Result<TcpStream, AttemptFailure> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(AttemptFailure::Io)?;
    set_tos(&socket, addr, c.ip_qos.applied());
    if let Some(local) = local_address(c, addr).await.map_err(AttemptFailure::Io)? {
        socket.bind(local).map_err(|e| {
            AttemptFailure::Io(std::io::Error::new(
                e.kind(),
                format!("bind {}: {e}", local.ip()),
            ))
        })?;
        debug!("bound to {}", local.ip());
    }
    let tcp = match limit {
        Some(limit) => tokio::time::timeout(limit, socket.connect(addr))
            .await
            .map_err(|_| AttemptFailure::TimedOut(limit))?,
        None => socket.connect(addr).await,
    }
    .map_err(AttemptFailure::Io)?;
    tcp.set_nodelay(true).map_err(AttemptFailure::Io)?;
    // TCPKeepAlive (default yes), as ssh sets it.
    if c.tcp_keep_alive {
        socket2::SockRef::from(&tcp)
            .set_keepalive(true)
            .map_err(AttemptFailure::Io)?;
    }
    Ok(tcp)
}

/// `IPQoS` on the socket (`set_sock_tos`): `IP_TOS` for IPv4, `IPV6_TCLASS` for IPv6; `none`
/// leaves it. A refusal by the system is logged and the connection goes on, as in ssh.
fn set_tos(socket: &TcpSocket, addr: SocketAddr, tos: Tos) {
    let Some(value) = tos.value() else {
        return;
    };
    let sock = socket2::SockRef::from(socket);
    let set = if addr.is_ipv4() {
        sock.set_tos_v4(u32::from(value))
    } else {
        sock.set_tclass_v6(u32::from(value))
    };
    if let Err(e) = set {
        warn!(
            "IPQoS: cannot mark the connection to {addr} with {}: {e}",
            tos.name()
        );
    }
}

/// The local address to bind to for a connection to `dest`: `BindAddress` (resolved, of
/// `dest`'s family), else `BindInterface`'s address of that family ([`interface_address`]),
/// else none. `BindAddress` wins when both are set, as in `ssh_create_socket`.
async fn local_address(c: &HostConfig, dest: SocketAddr) -> std::io::Result<Option<SocketAddr>> {
    let family = if dest.is_ipv4() { "IPv4" } else { "IPv6" };
    if let Some(name) = &c.bind_address {
        let found = tokio::net::lookup_host((name.as_str(), 0))
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("BindAddress {name}: {e}")))?;
        let mut found = found.filter(|a| a.is_ipv4() == dest.is_ipv4());
        return found.next().map(Some).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("BindAddress {name}: no {family} address to connect to {dest} from"),
            )
        });
    }
    let Some(ifname) = &c.bind_interface else {
        return Ok(None);
    };
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| std::io::Error::other(format!("getifaddrs: {ifname}: {e}")))?
        .filter_map(|ifa| {
            let up = ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP);
            let addr = ifa.address?;
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                SocketAddr::from((v4.ip(), 0))
            } else {
                SocketAddr::V6(std::net::SocketAddrV6::from(*addr.as_sockaddr_in6()?))
            };
            Some(InterfaceAddress {
                name: ifa.interface_name,
                up,
                addr: ip,
            })
        })
        .collect::<Vec<_>>();
    interface_address(ifname, dest.is_ipv6(), &addrs)
        .map(Some)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("BindInterface {ifname}: no suitable {family} address"),
            )
        })
}

/// One address of a network interface, from `getifaddrs`.
#[derive(Debug, Clone)]
struct InterfaceAddress {
    name: String,
    up: bool,
    addr: SocketAddr,
}

/// OpenSSH's `check_ifaddrs`: the first address of the interface `name` (which must be up)
/// in the wanted family, preferring one that is not loopback (IPv4 127.0.0.1 exactly, IPv6
/// `::1`) or IPv6 link-local; those only when nothing else matches. Port 0.
fn interface_address(name: &str, v6: bool, addrs: &[InterfaceAddress]) -> Option<SocketAddr> {
    let local = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4 == std::net::Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    let candidates = || {
        addrs
            .iter()
            .filter(move |a| a.up && a.name == name && a.addr.is_ipv6() == v6)
    };
    candidates()
        .find(|a| !local(a.addr.ip()))
        .or_else(|| candidates().next())
        .map(|a| a.addr)
}

/// A hop's byte stream through a `ProxyCommand`: the command's stdout is what the server
/// sends, its stdin what we send. Run as OpenSSH does, `$SHELL -c "exec COMMAND"`. Its
/// stderr is read here (each line logged, the last kept) and its exit status awaited by a
/// task of its own, so that a command that fails (`exec: nc: not found`, status 127) is
/// reported as such ([`CommandEnd`]) rather than as a server that closed the connection.
/// The process is killed when the stream is dropped (the session ended).
struct ProxyCommandStream {
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
    /// Dropped with the stream: tells the task to kill the process.
    _kill: tokio::sync::oneshot::Sender<()>,
}

/// How a `ProxyCommand` ended: its exit status and the last line it wrote to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandEnd {
    /// The exit status in words: "exited with status 127", "was killed by signal 9".
    pub(crate) status: String,
    /// The last non-empty line of its stderr (cleaned for display), if any.
    pub(crate) last_line: Option<String>,
}

/// Where a `ProxyCommand`'s end is published (`None` while it runs).
pub(crate) type CommandWatch = tokio::sync::watch::Receiver<Option<CommandEnd>>;

/// The longest stderr line kept for the error message.
const STDERR_LINE_LIMIT: usize = 200;

impl ProxyCommandStream {
    fn spawn(command: &str) -> Result<(Self, CommandWatch), HopError> {
        let shell = std::env::var_os("SHELL")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".into());
        let fail = |source| HopError::ProxyCommand {
            command: command.to_string(),
            source,
        };
        let mut child = tokio::process::Command::new(&shell)
            .arg("-c")
            .arg(format!("exec {command}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| fail(ProxyCommandError::Spawn { shell, source }))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(fail(ProxyCommandError::NoPipes));
        };
        let (kill, killed) = tokio::sync::oneshot::channel();
        let (ended, watch) = tokio::sync::watch::channel(None);
        tokio::spawn(watch_command(child, stderr, killed, ended));
        let stream = ProxyCommandStream {
            stdin,
            stdout,
            _kill: kill,
        };
        Ok((stream, watch))
    }
}

/// Reads the command's stderr to its end (logging each line, keeping the last), then its exit
/// status, and publishes both; or kills it when the stream is dropped first.
async fn watch_command(
    mut child: tokio::process::Child,
    stderr: tokio::process::ChildStderr,
    killed: tokio::sync::oneshot::Receiver<()>,
    ended: tokio::sync::watch::Sender<Option<CommandEnd>>,
) {
    let pid = child.id();
    let run = async {
        let last_line = last_stderr_line(stderr).await;
        let status = child.wait().await;
        CommandEnd {
            status: match status {
                Ok(status) => exit_words(status),
                Err(e) => format!("could not be waited for ({e})"),
            },
            last_line,
        }
    };
    tokio::pin!(run);
    let end = tokio::select! {
        end = &mut run => end,
        // The stream was dropped: the session is over (or the handshake failed because the
        // command is ending). Killed, its stderr and status follow at once; a grandchild
        // holding stderr open is not waited for long.
        _ = killed => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // Not reaped yet (nothing waited for it): the pid is still this child's.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            match tokio::time::timeout(COMMAND_KILL_WAIT, &mut run).await {
                Ok(end) => end,
                Err(_) => return,
            }
        }
    };
    let _ = ended.send(Some(end));
}

/// How long a killed `ProxyCommand`'s stderr and status are waited for.
const COMMAND_KILL_WAIT: Duration = Duration::from_secs(2);

/// Reads `stderr` to its end: each line is logged; the last non-empty one is returned.
async fn last_stderr_line(stderr: tokio::process::ChildStderr) -> Option<String> {
    use tokio::io::AsyncBufReadExt;
    let mut reader = tokio::io::BufReader::new(stderr);
    let mut last = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return last,
            Ok(_) => {}
        }
        let text = crate::ssh::prompt::clean_server_line(String::from_utf8_lossy(&line).trim());
        if !text.is_empty() {
            tracing::info!("ProxyCommand: {text}");
            last = Some(text.chars().take(STDERR_LINE_LIMIT).collect());
        }
    }
}

/// An exit status in words.
fn exit_words(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended ({status})"),
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
    use crate::plan::chain::fixture::hop;

    fn iface(name: &str, up: bool, addr: &str) -> InterfaceAddress {
        InterfaceAddress {
            name: name.into(),
            up,
            addr: SocketAddr::new(addr.parse().unwrap(), 0),
        }
    }

    #[test]
    fn bind_interface_picks_as_check_ifaddrs() {
        let addrs = [
            iface("lo", true, "127.0.0.1"),
            iface("eth0", true, "fe80::1"),
            iface("eth0", false, "192.0.2.9"),
            iface("eth0", true, "192.0.2.7"),
            iface("eth0", true, "2001:db8::7"),
            iface("lo", true, "::1"),
        ];
        let pick = |name, v6| interface_address(name, v6, &addrs).map(|a| a.ip().to_string());
        assert_eq!(pick("eth0", false).as_deref(), Some("192.0.2.7"), "up only");
        assert_eq!(
            pick("eth0", true).as_deref(),
            Some("2001:db8::7"),
            "link-local only if nothing else"
        );
        assert_eq!(
            pick("lo", false).as_deref(),
            Some("127.0.0.1"),
            "loopback if alone"
        );
        assert_eq!(pick("lo", true).as_deref(), Some("::1"));
        assert_eq!(pick("eth1", false), None);
        let only_local = [iface("eth0", true, "fe80::1")];
        assert_eq!(
            interface_address("eth0", true, &only_local).map(|a| a.ip().to_string()),
            Some("fe80::1".into())
        );
    }

    /// A listener on 127.0.0.1 sees the connection come from BindAddress, and the client
    /// socket carries IPQoS's interactive value (read back from the kernel).
    #[tokio::test]
    async fn bind_address_and_ipqos_on_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let h = hop(&format!(
            "Host h\n  HostName 127.0.0.1\n  Port {port}\n  BindAddress 127.0.0.2\n  IPQoS ef cs1\n"
        ));
        let (tcp, _) = connect_tcp(&h, Some(Duration::from_secs(5))).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.2");
        assert_eq!(socket2::SockRef::from(&tcp).tos_v4().unwrap(), 0xb8, "ef");
        // The default is OpenSSH 9.2's interactive af21; `none` leaves the system's 0.
        let h = hop(&format!("Host h\n  HostName 127.0.0.1\n  Port {port}\n"));
        let (tcp, _) = connect_tcp(&h, None).await.unwrap();
        assert_eq!(socket2::SockRef::from(&tcp).tos_v4().unwrap(), 0x48, "af21");
        let h = hop(&format!(
            "Host h\n  HostName 127.0.0.1\n  Port {port}\n  IPQoS none\n  BindInterface lo\n"
        ));
        let (tcp, _) = connect_tcp(&h, None).await.unwrap();
        assert_eq!(socket2::SockRef::from(&tcp).tos_v4().unwrap(), 0);
        assert_eq!(tcp.local_addr().unwrap().ip().to_string(), "127.0.0.1");
    }

    #[tokio::test]
    async fn ipv6_sockets_get_the_traffic_class() {
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            panic!("this test needs IPv6 on loopback (::1)");
        };
        let port = listener.local_addr().unwrap().port();
        let h = hop(&format!(
            "Host h\n  HostName ::1\n  Port {port}\n  IPQoS af41\n"
        ));
        let (tcp, _) = connect_tcp(&h, None).await.unwrap();
        assert_eq!(socket2::SockRef::from(&tcp).tclass_v6().unwrap(), 0x88);
    }

    #[test]
    fn the_last_failure_and_the_attempts_make_the_error() {
        let timed_out = attempts_failed(Some(AttemptFailure::TimedOut(Duration::from_secs(2))), 3);
        assert_eq!(
            timed_out.to_string(),
            "no SSH session within 2s (ConnectTimeout): the connection to the server was not \
             established (after 3 attempts, ConnectionAttempts 3)"
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let one = attempts_failed(Some(AttemptFailure::Io(refused)), 1).to_string();
        assert_eq!(one, "cannot connect: connection refused");
        assert!(matches!(
            attempts_failed(None, 2),
            HopError::Connect { attempts: 2, .. }
        ));
    }

    #[tokio::test]
    async fn failures_name_the_bind_and_the_attempts() {
        // Nothing listens on this port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let h = hop(&format!(
            "Host h\n  HostName 127.0.0.1\n  Port {port}\n  ConnectionAttempts 2\n"
        ));
        let err = connect_tcp(&h, None).await.unwrap_err().to_string();
        assert!(
            err.contains("after 2 attempts, ConnectionAttempts 2") && err.contains("refused"),
            "{err}"
        );
        let h = hop(&format!(
            "Host h\n  HostName 127.0.0.1\n  Port {port}\n  BindAddress ::1\n"
        ));
        let err = connect_tcp(&h, None).await.unwrap_err().to_string();
        assert!(err.contains("BindAddress ::1: no IPv4 address"), "{err}");
        let h = hop(&format!(
            "Host h\n  HostName 127.0.0.1\n  Port {port}\n  BindInterface nosuch0\n"
        ));
        let err = connect_tcp(&h, None).await.unwrap_err().to_string();
        assert!(
            err.contains("BindInterface nosuch0: no suitable IPv4 address"),
            "{err}"
        );
        let h = hop(&format!(
            "Host h\n  HostName 127.0.0.1\n  Port {port}\n  BindAddress 192.0.2.1\n"
        ));
        let err = connect_tcp(&h, None).await.unwrap_err().to_string();
        assert!(err.contains("bind 192.0.2.1:"), "{err}");
    }
}
