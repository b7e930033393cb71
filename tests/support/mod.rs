//! Test fixtures: in-process bastions (the library's own [`pgtunnel::demo::bastion`]), target
//! services on loopback, and a throw-away home with keys, known_hosts and ssh_config.
#![allow(dead_code)]

pub mod pg;
pub mod process;
pub mod sshd;
pub mod tty;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pgtunnel::config::LocalEnv;
use pgtunnel::demo::bastion::{Bastion, BastionConfig, generate_key};
use pgtunnel::forward::{Ended, Tunnel};
use pgtunnel::plan::chain::Chain;
use pgtunnel::spec::{parse_hops, parse_target};
use pgtunnel::ssh::session::{AgentSource, ConnectOptions};
use pgtunnel::tunnel::{self, ConfigSource, Request};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{PrivateKey, PublicKey};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const USER: &str = "tester";

/// The cipher pgtunnel negotiates by default on this machine, as the path report names it:
/// AES-GCM where the CPU does AES in hardware, else OpenSSH's chacha20-poly1305.
pub fn default_cipher() -> &'static str {
    if pgtunnel::ssh::aes_in_hardware() {
        "aes256-gcm"
    } else {
        "chacha20-poly1305"
    }
}

/// An echo service: echoes every byte, and on EOF finishes echoing then closes its side.
pub struct Echo {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Echo {
    pub async fn start() -> Echo {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> Echo {
        let listener = TcpListener::bind(addr).await.expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut r, mut w) = tcp.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        Echo {
            addr,
            accepted,
            task,
        }
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Deterministic pseudo-random bytes (xorshift), so corruption cannot hide in a pattern.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Sends `len` bytes through `addr` to an echo service while reading the echo; shuts down
/// the write side after sending (half-close) and checks the echo's checksum.
pub async fn echo_round_trip(addr: SocketAddr, len: usize, seed: u64) {
    let data = pattern(len, seed);
    let sent = Sha256::digest(&data);
    let tcp = TcpStream::connect(addr).await.expect("connect to tunnel");
    tcp.set_nodelay(true).expect("nodelay");
    let (mut r, mut w) = tcp.into_split();
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(64 * 1024) {
            w.write_all(chunk).await.expect("write to tunnel");
        }
        w.shutdown().await.expect("shutdown write");
        w
    });
    let mut hasher = Sha256::new();
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf).await.expect("read from tunnel");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        got += n;
    }
    let _w = writer.await.expect("writer task");
    assert_eq!(got, len, "echoed byte count");
    assert_eq!(hasher.finalize(), sent, "echoed checksum");
}

/// Sends `chunks` x 64 KiB through `addr` to an echo, one chunk at a time with a pause, and
/// checks every byte came back: a transfer that lasts a few seconds.
pub async fn paced_transfer(addr: SocketAddr, chunks: usize) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut sent = Sha256::new();
    let mut got = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..chunks {
        let data = pattern(64 * 1024, i as u64 + 1);
        sent.update(&data);
        tcp.write_all(&data).await.expect("write");
        tcp.read_exact(&mut buf)
            .await
            .expect("echo during the outage");
        got.update(&buf);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(got.finalize(), sent.finalize(), "echoed checksum");
}

/// A throw-away $HOME with a client key, known_hosts and ssh_config.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub key: PrivateKey,
    pub key_path: PathBuf,
    pub known_hosts: PathBuf,
    pub config: PathBuf,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::tempdir().expect("tempdir");
        let ssh = dir.path().join(".ssh");
        std::fs::create_dir_all(&ssh).expect("mkdir .ssh");
        let key = generate_key().expect("client key");
        let key_path = ssh.join("id_ed25519");
        write_private_key(&key, &key_path);
        Home {
            known_hosts: ssh.join("known_hosts"),
            config: ssh.join("config"),
            dir,
            key,
            key_path,
        }
    }

    pub fn public(&self) -> PublicKey {
        self.key.public_key().clone()
    }

    pub fn env(&self) -> LocalEnv {
        LocalEnv {
            local_user: "localuser".into(),
            home: self.dir.path().to_path_buf(),
            local_hostname: "testhost".into(),
            uid: 1000,
            env: Default::default(),
            resolver: pgtunnel::config::Resolver::none(),
        }
    }

    /// Trusts `key` for `127.0.0.1:port` in known_hosts.
    pub fn trust(&self, port: u16, key: &PublicKey) {
        let mut key = key.clone();
        key.set_comment("");
        let line = format!(
            "[127.0.0.1]:{port} {}\n",
            key.to_openssh().expect("openssh public key")
        );
        let mut text = std::fs::read_to_string(&self.known_hosts).unwrap_or_default();
        text.push_str(&line);
        std::fs::write(&self.known_hosts, text).expect("write known_hosts");
    }

    /// Trusts `key` for `addr` in known_hosts, under the name OpenSSH uses.
    pub fn trust_addr(&self, addr: SocketAddr, key: &PublicKey) {
        let mut key = key.clone();
        key.set_comment("");
        let name = if addr.port() == 22 {
            addr.ip().to_string()
        } else {
            format!("[{}]:{}", addr.ip(), addr.port())
        };
        let line = format!("{name} {}\n", key.to_openssh().expect("openssh public key"));
        let mut text = std::fs::read_to_string(&self.known_hosts).unwrap_or_default();
        text.push_str(&line);
        std::fs::write(&self.known_hosts, text).expect("write known_hosts");
    }

    /// A Host block for an alias on `addr`, logging in as `user`.
    pub fn block(&self, alias: &str, addr: SocketAddr, user: &str, extra: &str) -> String {
        format!(
            "Host {alias}\n  HostName {}\n  Port {}\n  User {user}\n  \
             IdentityFile {}\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n{extra}\n",
            addr.ip(),
            addr.port(),
            self.key_path.display(),
            self.known_hosts.display()
        )
    }

    /// A Host block for an alias on 127.0.0.1:port with our key and known_hosts.
    pub fn host_block(&self, alias: &str, port: u16, extra: &str) -> String {
        format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {USER}\n  \
             IdentityFile {}\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n{extra}\n",
            self.key_path.display(),
            self.known_hosts.display()
        )
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write ssh config");
    }

    pub fn request(&self, via: Option<&str>, target: &str) -> Request {
        Request {
            target: parse_target(target).expect("target"),
            via: via.map(|v| parse_hops(v).expect("hops")),
            config: ConfigSource::File(self.config.clone()),
            listen: "127.0.0.1:0".parse().expect("listen"),
            require_encrypted: false,
            require_pq: false,
        }
    }

    pub fn chain(&self, via: Option<&str>, target: &str) -> Result<Chain, pgtunnel::Error> {
        let env = self.env();
        let request = self.request(via, target);
        let config = tunnel::load_config(&request.config, &env)?;
        tunnel::plan(&request, &config, &env)
    }
}

pub fn write_private_key(key: &PrivateKey, path: &Path) {
    let text = key.to_openssh(LineEnding::LF).expect("encode key");
    std::fs::write(path, text.as_bytes()).expect("write key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
}

pub fn options() -> ConnectOptions {
    ConnectOptions {
        agent: AgentSource::Disabled,
        default_connect_timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

/// A bastion on 127.0.0.1 accepting `home`'s key, limited to `allow`.
pub async fn bastion(home: &Home, allow: &[(&str, u16)]) -> Bastion {
    let config = BastionConfig::generate(USER, vec![home.public()])
        .expect("bastion key")
        .allow(allow);
    let b = Bastion::start("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("start bastion");
    home.trust(b.addr().port(), b.host_key());
    b
}

/// A serving tunnel and the means to stop it.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Ended>,
}

impl Running {
    pub async fn start(chain: &Chain) -> Result<Running, pgtunnel::Error> {
        Self::start_with(chain, |t| t).await
    }

    pub async fn start_with(
        chain: &Chain,
        configure: impl FnOnce(Tunnel) -> Tunnel,
    ) -> Result<Running, pgtunnel::Error> {
        let tunnel = configure(
            tunnel::start(chain, "127.0.0.1:0".parse().expect("addr"), &options()).await?,
        );
        let addr = tunnel.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(tunnel.serve(async move {
            let _ = rx.await;
        }));
        Ok(Running {
            addr,
            stop: Some(tx),
            task,
        })
    }

    /// Asks for shutdown (like Ctrl-C).
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub async fn stop(mut self) -> Ended {
        self.shutdown();
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("tunnel stops")
            .expect("tunnel task")
    }
}
