//! How a hop's byte stream is obtained: a TCP connection (the first hop), a `ProxyCommand`'s
//! pipes (the first hop, when configured), or a `direct-tcpip` channel of the previous hop's
//! session (every other hop).

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::{HopError, ProxyCommandError};
use crate::plan::chain::Hop;
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

    /// Opens the byte stream to `hop`.
    pub(crate) async fn open(&self, hop: &Hop) -> Result<Box<dyn ByteStream>, HopError> {
        match self {
            Route::Tcp => {
                let addr = (hop.config.host_name.clone(), hop.config.port);
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
                // TCPKeepAlive (default yes), as ssh sets it.
                if hop.config.tcp_keep_alive {
                    socket2::SockRef::from(&tcp)
                        .set_keepalive(true)
                        .map_err(|source| HopError::Connect { source })?;
                }
                Ok(Box::new(tcp))
            }
            Route::ProxyCommand(command) => Ok(Box::new(ProxyCommandStream::spawn(command)?)),
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
        let fail = |source| HopError::ProxyCommand {
            command: command.to_string(),
            source,
        };
        let mut child = tokio::process::Command::new(&shell)
            .arg("-c")
            .arg(format!("exec {command}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| fail(ProxyCommandError::Spawn { shell, source }))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(fail(ProxyCommandError::NoPipes));
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
