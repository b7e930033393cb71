//! Where the tunnel listens: a TCP port (`--listen`, the default), a private Unix socket
//! (`--socket DIR`), or both.

use std::net::SocketAddr;

use pgtunnel::error::Error;
use pgtunnel::fleet::{self, ListenAt};
use pgtunnel::forward::Listeners;
use pgtunnel::forward::socket::SocketListener;
use pgtunnel::pg::client::Endpoint;
use pgtunnel::tunnel;
use tokio::net::TcpListener;
use tracing::warn;

/// The bound listeners. The socket file is removed when this is dropped.
pub struct Local {
    /// The TCP listeners and their addresses (several for a name: `-L localhost:PORT` is
    /// 127.0.0.1 and ::1).
    pub tcp: Vec<(TcpListener, SocketAddr)>,
    /// The Unix socket.
    pub socket: Option<SocketListener>,
}

impl Local {
    /// The (first) TCP address, if there is a TCP listener.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.first().map(|(_, addr)| *addr)
    }

    /// The address the path report judges the listener by: the least private one.
    pub fn report_addr(&self) -> Option<SocketAddr> {
        let addrs: Vec<SocketAddr> = self.tcp.iter().map(|(_, addr)| *addr).collect();
        fleet::least_private(&addrs)
    }

    /// Where clients are told to connect: the socket unless TLS is wanted (libpq uses none
    /// over a Unix socket), else TCP. `None`: TLS wanted and no TCP listener.
    pub fn endpoint(&self, tls: bool) -> Option<Endpoint<'_>> {
        match (&self.socket, self.tcp_addr()) {
            (_, Some(addr)) if tls => Some(Endpoint::Tcp(addr)),
            (Some(_), None) if tls => None,
            (Some(socket), _) => Some(Endpoint::Socket {
                dir: socket.dir(),
                port: socket_port(socket),
            }),
            (None, Some(addr)) => Some(Endpoint::Tcp(addr)),
            (None, None) => None,
        }
    }

    /// For the ready line: the socket and/or the TCP address.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(socket) = &self.socket {
            parts.push(socket.path().display().to_string());
        }
        parts.extend(self.tcp.iter().map(|(_, addr)| addr.to_string()));
        parts.join(" and ")
    }

    /// Every address, for the status interface: the TCP address, the socket path.
    pub fn addresses(&self) -> Vec<String> {
        self.tcp
            .iter()
            .map(|(_, a)| a.to_string())
            .chain(self.socket.iter().map(|s| s.path().display().to_string()))
            .collect()
    }

    /// The listeners, for the tunnel (the socket file stays until `self` is dropped).
    pub fn listeners(&mut self) -> Listeners {
        Listeners {
            tcp: std::mem::take(&mut self.tcp)
                .into_iter()
                .map(|(l, _)| l)
                .collect(),
            unix: self.socket.as_mut().and_then(SocketListener::take),
        }
    }
}

/// Binds `listen`; or, for `-L NAME:PORT` (`name`), every address the name stands for, as
/// ssh binds a forward's (`localhost`: 127.0.0.1 and ::1; another name: what it resolves
/// to), an address that cannot be bound while others can being a warning.
pub async fn bind_tcp(
    listen: SocketAddr,
    name: Option<(&str, u16)>,
) -> Result<Vec<(TcpListener, SocketAddr)>, Error> {
    let Some((host, port)) = name else {
        let listener = tunnel::bind(listen).await?;
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: listen,
            source,
        })?;
        return Ok(vec![(listener, addr)]);
    };
    let bound = fleet::bind_listen(&ListenAt::Forward {
        bind: Some(host.to_string()),
        gateway_ports: false,
        port,
    })
    .await?;
    for skipped in &bound.skipped {
        warn!("-L {host}:{port}: could not listen on {skipped}");
    }
    Ok(bound.listeners.tcp.into_iter().zip(bound.addrs).collect())
}

/// The port in the socket's name (`.s.PGSQL.<port>`).
fn socket_port(socket: &SocketListener) -> u16 {
    socket
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit('.').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(pgtunnel::spec::DEFAULT_TARGET_PORT)
}
