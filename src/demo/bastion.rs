//! An in-process SSH server for the demo and the tests: a bastion that accepts public-key
//! logins and opens `direct-tcpip` channels to an allow-list of destinations, recording every
//! request so a test can prove which way the traffic went.
//!
//! One implementation serves both `pgtunnel demo` and `tests/`. It listens where it is told
//! (loopback in every use we make of it) and dials only what its allow-list permits.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::{Algorithm, PrivateKey, PublicKey};
use russh::server::ChannelOpenHandle;
use russh::server::{self, Auth, Msg, Session};
use russh::{Channel, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::debug;

/// Who may log in and where they may go.
#[derive(Debug, Clone)]
pub struct BastionConfig {
    /// The server's host key.
    pub host_key: PrivateKey,
    /// The only user name accepted.
    pub user: String,
    /// Public keys allowed to log in as `user`.
    pub authorized_keys: Vec<PublicKey>,
    /// `(host, port)` destinations that `direct-tcpip` may reach; `None` allows any.
    pub allow: Option<Vec<(String, u16)>>,
    /// The key exchanges offered, most preferred first; `None`: russh's defaults.
    pub kex: Option<Vec<russh::kex::Name>>,
}

impl BastionConfig {
    /// A config with a freshly generated ed25519 host key.
    pub fn generate(user: &str, authorized_keys: Vec<PublicKey>) -> Result<Self, russh::Error> {
        Ok(BastionConfig {
            host_key: generate_key()?,
            user: user.to_string(),
            authorized_keys,
            allow: None,
            kex: None,
        })
    }

    /// Offers only these key exchanges (as sshd's `KexAlgorithms`).
    pub fn kex(mut self, names: &[russh::kex::Name]) -> Self {
        self.kex = Some(names.to_vec());
        self
    }

    /// Restricts `direct-tcpip` to these destinations.
    pub fn allow(mut self, destinations: &[(&str, u16)]) -> Self {
        self.allow = Some(
            destinations
                .iter()
                .map(|(h, p)| (h.to_string(), *p))
                .collect(),
        );
        self
    }
}

/// russh's preferences, with only `kex` when given (and strict key exchange, as sshd offers
/// it whatever its `KexAlgorithms`).
fn preferred(kex: Option<&[russh::kex::Name]>) -> russh::Preferred {
    let Some(kex) = kex else {
        return russh::Preferred::default();
    };
    let mut names = kex.to_vec();
    names.push(russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER);
    russh::Preferred {
        kex: names.into(),
        ..Default::default()
    }
}

/// A fresh ed25519 key.
pub fn generate_key() -> Result<PrivateKey, russh::Error> {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| russh::Error::from(russh::keys::Error::from(e)))
}

/// One `direct-tcpip` request the bastion received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRequest {
    /// Requested host.
    pub host: String,
    /// Requested port.
    pub port: u16,
    /// Whether the allow-list let it through.
    pub allowed: bool,
}

/// A session's task and a handle on its socket.
type Running = (JoinHandle<()>, socket2::Socket);

/// A running bastion. Dropping it stops the server and its sessions.
pub struct Bastion {
    addr: SocketAddr,
    host_key: PublicKey,
    log: Arc<Mutex<Vec<ForwardRequest>>>,
    sessions: Arc<Mutex<Vec<Running>>>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for Bastion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bastion")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Bastion {
    /// Starts a bastion on `listen` (port 0 picks a free port).
    pub async fn start(listen: SocketAddr, config: BastionConfig) -> std::io::Result<Bastion> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let host_key = config.host_key.public_key().clone();
        let server_config = Arc::new(server::Config {
            keys: vec![config.host_key.clone()],
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            auth_rejection_time: Duration::from_millis(20),
            auth_rejection_time_initial: Some(Duration::from_millis(0)),
            inactivity_timeout: None,
            nodelay: true,
            preferred: preferred(config.kex.as_deref()),
            ..Default::default()
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(config);
        let accept = tokio::spawn({
            let log = log.clone();
            let sessions = sessions.clone();
            async move {
                loop {
                    let Ok((tcp, peer)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    // A second handle on the socket: `stop` shuts it down, which ends the
                    // session (russh runs it on a task of its own that aborting ours would
                    // leave running).
                    let Ok(socket) = socket2::SockRef::from(&tcp).try_clone() else {
                        continue;
                    };
                    let handler = BastionHandler {
                        config: shared.clone(),
                        log: log.clone(),
                        forwards: Vec::new(),
                    };
                    let server_config = server_config.clone();
                    let task = tokio::spawn(async move {
                        match server::run_stream(server_config, tcp, handler).await {
                            Ok(running) => {
                                if let Err(e) = running.await {
                                    debug!(%peer, "bastion session ended: {e:?}");
                                }
                            }
                            Err(e) => debug!(%peer, "bastion handshake failed: {e:?}"),
                        }
                    });
                    if let Ok(mut s) = sessions.lock() {
                        s.retain(|(t, _): &Running| !t.is_finished());
                        s.push((task, socket));
                    }
                }
            }
        });
        Ok(Bastion {
            addr,
            host_key,
            log,
            sessions,
            accept,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's public host key.
    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// Every `direct-tcpip` request so far.
    pub fn requests(&self) -> Vec<ForwardRequest> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stops accepting and ends every session (as if the server died).
    pub fn stop(&self) {
        self.accept.abort();
        if let Ok(mut sessions) = self.sessions.lock() {
            for (task, socket) in sessions.drain(..) {
                let _ = socket.shutdown(std::net::Shutdown::Both);
                task.abort();
            }
        }
    }
}

impl Drop for Bastion {
    fn drop(&mut self) {
        self.stop();
    }
}

struct BastionHandler {
    config: Arc<BastionConfig>,
    log: Arc<Mutex<Vec<ForwardRequest>>>,
    forwards: Vec<JoinHandle<()>>,
}

impl Drop for BastionHandler {
    fn drop(&mut self) {
        for f in &self.forwards {
            f.abort();
        }
    }
}

impl BastionHandler {
    fn authorized(&self, user: &str, key: &PublicKey) -> bool {
        user == self.config.user
            && self
                .config
                .authorized_keys
                .iter()
                .any(|k| k.key_data() == key.key_data())
    }
}

impl server::Handler for BastionHandler {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.authorized(user, offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.authorized(user, key.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let port = u16::try_from(port_to_connect).unwrap_or(0);
        let host = host_to_connect.to_string();
        let allowed = port != 0
            && self
                .config
                .allow
                .as_ref()
                .is_none_or(|list| list.iter().any(|(h, p)| *h == host && *p == port));
        if let Ok(mut log) = self.log.lock() {
            log.push(ForwardRequest {
                host: host.clone(),
                port,
                allowed,
            });
        }
        if !allowed {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.forwards.retain(|f| !f.is_finished());
        // Dial without holding up the session loop.
        self.forwards.push(tokio::spawn(async move {
            match TcpStream::connect((host.as_str(), port)).await {
                Ok(mut tcp) => {
                    let _ = tcp.set_nodelay(true);
                    reply.accept().await;
                    let mut stream = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
                }
                Err(e) => {
                    debug!("bastion: connect to {host}:{port} failed: {e}");
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                }
            }
        }));
        Ok(())
    }
}
