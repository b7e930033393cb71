//! Where the tunnel listens: a TCP port (`--listen`, the default), a private Unix socket
//! (`--socket DIR`), or both.

use std::net::SocketAddr;

use pgtunnel::forward::Listeners;
use pgtunnel::forward::socket::SocketListener;
use pgtunnel::pg::client::Endpoint;
use tokio::net::TcpListener;

/// The bound listeners. The socket file is removed when this is dropped.
pub struct Local {
    /// The TCP listener and its address.
    pub tcp: Option<(TcpListener, SocketAddr)>,
    /// The Unix socket.
    pub socket: Option<SocketListener>,
}

impl Local {
    /// The TCP address, if there is a TCP listener.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().map(|(_, addr)| *addr)
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
        if let Some(addr) = self.tcp_addr() {
            parts.push(addr.to_string());
        }
        parts.join(" and ")
    }

    /// Every address, for the status interface: the TCP address, the socket path.
    pub fn addresses(&self) -> Vec<String> {
        self.tcp_addr()
            .map(|a| a.to_string())
            .into_iter()
            .chain(self.socket.iter().map(|s| s.path().display().to_string()))
            .collect()
    }

    /// The listeners, for the tunnel (the socket file stays until `self` is dropped).
    pub fn listeners(&mut self) -> Listeners {
        Listeners {
            tcp: self.tcp.take().map(|(l, _)| l).into_iter().collect(),
            unix: self.socket.as_mut().and_then(SocketListener::take),
        }
    }
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
