//! `pgtunnel demo`: the PostgreSQL manual's topology in one process, so anyone can watch the
//! real tunnel code work without any server of their own.
//!
//! Two in-process SSH servers ([`crate::demo::bastion`], the same code the integration tests use)
//! listen on loopback: the bastion `shell.foo.com` and the inner host `db.foo.com`, each with
//! its own freshly generated host key. The bastion's allow-list lets it reach only
//! `db.foo.com`; `db.foo.com`'s lets it reach only the service. A throw-away directory holds
//! a client key, an ssh_config with the two aliases (`db.foo.com` has
//! `ProxyJump shell.foo.com`) and a known_hosts with both host keys, so the tunnel runs with
//! strict host-key checking exactly as it would against real servers.
//!
//! The service is a real throw-away PostgreSQL cluster when PostgreSQL's server binaries are
//! installed ([`crate::demo::pgcluster`]: `initdb` in a temporary directory, listening on 127.0.0.1
//! and a free port, `trust` for the demo user, stopped and removed when the demo ends), so
//! `psql` works through the demo tunnel; otherwise an echo server (every byte comes back).
//! [`Demo::self_check`] talks PostgreSQL's protocol through the whole chain ([`crate::pg::wire`])
//! or pushes 1 MiB through the echo and compares checksums.

pub mod bastion;
pub mod pgcluster;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::LineEnding;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::demo::bastion::{Bastion, BastionConfig, generate_key};
use crate::demo::pgcluster::{Cluster, ClusterOptions, PgClusterError};
use crate::spec::{HopSpec, Target};
use crate::tunnel::{ConfigSource, Request};

/// The bastion's alias, as in the manual.
pub const SHELL: &str = "shell.foo.com";
/// The inner host's alias, as in the manual.
pub const DB: &str = "db.foo.com";
/// The user the demo servers accept (SSH, and PostgreSQL: an ordinary role, not a superuser,
/// that owns [`DATABASE`]).
pub const USER: &str = "joe";
/// The database `psql` connects to in the demo.
pub const DATABASE: &str = "demo";

/// Which service the demo tunnels to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DemoTarget {
    /// PostgreSQL if its server binaries are installed, else the echo service.
    #[default]
    Auto,
    /// A throw-away PostgreSQL cluster; an error if PostgreSQL is not installed.
    Postgres,
    /// The echo service.
    Echo,
}

impl std::str::FromStr for DemoTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DemoTarget::Auto),
            "postgres" | "postgresql" => Ok(DemoTarget::Postgres),
            "echo" => Ok(DemoTarget::Echo),
            other => Err(format!(
                "unknown demo target {other:?}: auto, postgres or echo"
            )),
        }
    }
}

/// The service at the end of the demo's tunnel.
enum Service {
    Echo(JoinHandle<()>),
    Postgres(Box<Cluster>),
}

/// The demo could not be set up.
#[derive(Debug, Error)]
pub enum DemoError {
    /// A local operation failed.
    #[error("demo: {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Generating or encoding a key failed.
    #[error("demo: key generation failed: {0}")]
    Key(String),
    /// The self-check found the tunnel broken.
    #[error("demo self-check failed: {0}")]
    Check(String),
    /// The PostgreSQL cluster could not be started.
    #[error("demo: {0}")]
    Postgres(#[from] PgClusterError),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> DemoError {
    move |source| DemoError::Io { what, source }
}

/// The running demo servers and their throw-away configuration.
pub struct Demo {
    dir: tempfile::TempDir,
    config: PathBuf,
    shell: Bastion,
    db: Bastion,
    service_addr: SocketAddr,
    service: Service,
    /// Why the echo service is used under [`DemoTarget::Auto`] (PostgreSQL not installed).
    fallback: Option<String>,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("config", &self.config)
            .field("shell", &self.shell.addr())
            .field("db", &self.db.addr())
            .field("service", &self.service_addr)
            .field("postgres", &matches!(self.service, Service::Postgres(_)))
            .finish_non_exhaustive()
    }
}

impl Demo {
    /// [`Demo::start_with`] with [`DemoTarget::Auto`].
    pub async fn start() -> Result<Demo, DemoError> {
        Demo::start_with(DemoTarget::Auto).await
    }

    /// Starts the service and both SSH servers on 127.0.0.1 and writes the client files.
    pub async fn start_with(target: DemoTarget) -> Result<Demo, DemoError> {
        let dir = tempfile::Builder::new()
            .prefix("pgtunnel-demo-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(io("create a temporary directory"))?;
        let (service_addr, service, fallback) = start_service(target).await?;
        let client_key = generate_key().map_err(key_error)?;
        let (shell, db) = start_bastions(client_key.public_key(), service_addr.port()).await?;
        let config = write_client_files(dir.path(), &client_key, &shell, &db)?;
        Ok(Demo {
            dir,
            config,
            shell,
            db,
            service_addr,
            service,
            fallback,
        })
    }

    /// The throw-away ssh_config.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    /// The directory holding the demo's files (removed on drop).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The service's address (on 127.0.0.1).
    pub fn service_addr(&self) -> SocketAddr {
        self.service_addr
    }

    /// Whether the service is PostgreSQL (else the echo service).
    pub fn is_postgres(&self) -> bool {
        matches!(self.service, Service::Postgres(_))
    }

    /// Why the echo service stands in for PostgreSQL, if it does under [`DemoTarget::Auto`]
    /// (not installed, or it would not start).
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The service, in a few words: `a PostgreSQL 15 server (...)` or `an echo service`.
    pub fn service_description(&self) -> String {
        match &self.service {
            Service::Postgres(c) => format!(
                "a throw-away PostgreSQL {} cluster on {} (data in {}, user {USER} without a password, database {DATABASE})",
                c.version(),
                self.service_addr,
                c.data_dir().display()
            ),
            Service::Echo(_) => format!("an echo service on {}", self.service_addr),
        }
    }

    /// What to try once the tunnel listens on `addr`.
    pub fn try_hint(&self, addr: SocketAddr) -> String {
        match self.service {
            Service::Postgres(_) => format!(
                "try it: psql \"host={} port={} user={USER} dbname={DATABASE}\"",
                addr.ip(),
                addr.port()
            ),
            Service::Echo(_) => echo_try_hint(addr, &installed),
        }
    }

    /// Talks PostgreSQL through the tunnel at `addr`: asks whether the server offers TLS
    /// (`SSLRequest`), then logs in as the demo user and checks a query's answer, including a
    /// 1 MiB value. Bounded by a 30 s timeout per step.
    pub async fn postgres_check(addr: SocketAddr) -> Result<String, DemoError> {
        use crate::pg::wire as pgwire;
        let limit = std::time::Duration::from_secs(30);
        let fail = |e: pgwire::PgWireError| DemoError::Check(e.to_string());
        let tls = pgwire::offers_tls(addr, limit).await.map_err(fail)?;
        let who = pgwire::simple_query(
            addr,
            USER,
            DATABASE,
            "SELECT current_user, host(inet_client_addr()), \
             md5(repeat('pgtunnel', 131072)), length(repeat('pgtunnel', 131072))",
            limit,
        )
        .await
        .map_err(fail)?;
        let row = who
            .rows
            .first()
            .ok_or_else(|| DemoError::Check("the query returned no row".into()))?;
        let field = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let big = pgwire::simple_query(
            addr,
            USER,
            DATABASE,
            "SELECT repeat('pgtunnel', 131072)",
            limit,
        )
        .await
        .map_err(fail)?;
        let value = big
            .rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .unwrap_or_default();
        let expected = "pgtunnel".repeat(131_072);
        if field(0) != USER || field(3) != expected.len().to_string() || value != expected {
            return Err(DemoError::Check(format!(
                "unexpected answer: user {:?}, length {:?}, value of {} bytes",
                field(0),
                field(3),
                value.len()
            )));
        }
        let md5 = field(2);
        Ok(format!(
            "self-check: PostgreSQL {} answered through {SHELL} and {DB}: logged in as {USER}, \
             a 1 MiB value came back intact (md5 {}...), the server sees the client at {} \
             (db.foo.com), TLS offered: {}",
            who.parameter("server_version").unwrap_or("?"),
            md5.get(..12).unwrap_or(&md5),
            field(1),
            if tls { "yes" } else { "no" }
        ))
    }

    /// The bastion and inner host addresses.
    pub fn ssh_addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.shell.addr(), self.db.addr())
    }

    /// What `pgtunnel --via db.foo.com localhost:PORT` would ask for: the inner host's own
    /// ProxyJump brings in the bastion, and the service is db.foo.com's loopback, so every
    /// segment that leaves a machine is encrypted.
    pub fn request(&self, listen: SocketAddr) -> Request {
        Request {
            target: Target {
                host: "localhost".into(),
                port: self.service_addr.port(),
                port_given: true,
                socket: None,
            },
            via: Some(vec![HopSpec {
                user: None,
                host: DB.into(),
                port: None,
            }]),
            config: ConfigSource::File(self.config.clone()),
            listen,
            require_encrypted: true,
            require_pq: false,
        }
    }

    /// The command line a user would type for [`Demo::request`].
    pub fn command_line(&self) -> String {
        format!(
            "pgtunnel -F {} --via {DB} localhost:{}",
            self.config.display(),
            self.service_addr.port()
        )
    }

    /// Sends 1 MiB through the tunnel at `addr` and checks that the same bytes come back;
    /// returns a one-line summary. Bounded by a 30 s timeout.
    pub async fn self_check(addr: SocketAddr) -> Result<String, DemoError> {
        const LEN: usize = 1024 * 1024;
        let check = async {
            let data: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
            let sent = Sha256::digest(&data);
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| DemoError::Check(format!("cannot connect to {addr}: {e}")))?;
            let (mut r, mut w) = tcp.into_split();
            let writer = tokio::spawn(async move {
                w.write_all(&data).await?;
                w.shutdown().await
            });
            let mut back = Vec::with_capacity(LEN);
            r.read_to_end(&mut back)
                .await
                .map_err(|e| DemoError::Check(format!("reading the echo: {e}")))?;
            match writer.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(DemoError::Check(format!("sending: {e}"))),
                Err(e) => return Err(DemoError::Check(format!("sender task: {e}"))),
            }
            if back.len() != LEN || Sha256::digest(&back) != sent {
                return Err(DemoError::Check(format!(
                    "sent {LEN} bytes, got {} back, checksums {}",
                    back.len(),
                    if Sha256::digest(&back) == sent {
                        "match"
                    } else {
                        "differ"
                    }
                )));
            }
            Ok(format!(
                "self-check: 1 MiB went through {SHELL} and {DB} to the echo service and came back intact (SHA-256 {})",
                hex_prefix(&sent)
            ))
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), check)
            .await
            .map_err(|_| DemoError::Check("no answer within 30 s".into()))?
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.shell.stop();
        self.db.stop();
        match &mut self.service {
            Service::Echo(task) => task.abort(),
            // Fast shutdown, then the cluster's directory is removed.
            Service::Postgres(cluster) => cluster.stop(),
        }
    }
}

/// A demo cluster on 127.0.0.1 (blocking work off the async threads).
async fn start_postgres() -> Result<Cluster, DemoError> {
    // The bootstrap superuser is reachable only through the Unix socket, in a directory that
    // only the server's user can enter. Over TCP, only `joe` and without a password (any local
    // user could log in as joe while the demo runs: it is an ordinary role, owning only the
    // empty demo database).
    let mut opts = ClusterOptions::new(std::net::Ipv4Addr::LOCALHOST.into(), "pgtunnel_admin");
    opts.hba.extend([
        format!("host all {USER} 127.0.0.1/32 trust"),
        format!("host all {USER} ::1/128 trust"),
    ]);
    opts.init_sql = vec![
        format!("CREATE ROLE {USER} LOGIN"),
        format!("CREATE DATABASE {DATABASE} OWNER {USER}"),
    ];
    match tokio::task::spawn_blocking(move || Cluster::start(&opts)).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(DemoError::Check(format!("starting PostgreSQL: {e}"))),
    }
}

fn hex_prefix(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// Echoes every byte; on EOF finishes echoing and closes its side.
fn key_error(e: impl std::fmt::Display) -> DemoError {
    DemoError::Key(e.to_string())
}

/// The demo's service: PostgreSQL (per `target`), else the echo service; with the reason
/// for falling back under [`DemoTarget::Auto`].
async fn start_service(
    target: DemoTarget,
) -> Result<(SocketAddr, Service, Option<String>), DemoError> {
    let mut fallback = None;
    let postgres = match target {
        DemoTarget::Echo => None,
        DemoTarget::Postgres => Some(start_postgres().await?),
        DemoTarget::Auto => match start_postgres().await {
            Ok(cluster) => Some(cluster),
            Err(e) => {
                fallback = Some(e.to_string());
                None
            }
        },
    };
    if let Some(cluster) = postgres {
        return Ok((
            cluster.addr(),
            Service::Postgres(Box::new(cluster)),
            fallback,
        ));
    }
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io("start the echo service"))?;
    let addr = listener
        .local_addr()
        .map_err(io("start the echo service"))?;
    let echo = Service::Echo(tokio::spawn(echo_service(listener)));
    Ok((addr, echo, fallback))
}

/// `shell.foo.com` and `db.foo.com` on 127.0.0.1, each accepting `client`, each allowed to
/// reach only the next step (`db.foo.com`, then the service on `service_port`).
async fn start_bastions(
    client: &russh::keys::PublicKey,
    service_port: u16,
) -> Result<(Bastion, Bastion), DemoError> {
    let loopback: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    // Inner host first: the bastion's allow-list needs its address.
    let db_config = BastionConfig::generate(USER, vec![client.clone()])
        .map_err(key_error)?
        .allow(&[("localhost", service_port), ("127.0.0.1", service_port)]);
    let db = Bastion::start(loopback, db_config)
        .await
        .map_err(io("start the demo db.foo.com SSH server"))?;
    let shell_config = BastionConfig::generate(USER, vec![client.clone()])
        .map_err(key_error)?
        .allow(&[("127.0.0.1", db.addr().port())]);
    let shell = Bastion::start(loopback, shell_config)
        .await
        .map_err(io("start the demo shell.foo.com SSH server"))?;
    Ok((shell, db))
}

/// The client key, a known_hosts with both host keys (by alias, HostKeyAlias, as many real
/// setups do) and the ssh_config with both aliases, in `dir`; returns the ssh_config's path.
fn write_client_files(
    dir: &Path,
    client_key: &russh::keys::PrivateKey,
    shell: &Bastion,
    db: &Bastion,
) -> Result<PathBuf, DemoError> {
    let key_path = dir.join("id_ed25519");
    let key_text = client_key.to_openssh(LineEnding::LF).map_err(key_error)?;
    write_private(&key_path, key_text.as_bytes()).map_err(io("write the demo client key"))?;

    let known_hosts = dir.join("known_hosts");
    let mut known = String::new();
    for (name, bastion) in [(SHELL, shell), (DB, db)] {
        let mut key = bastion.host_key().clone();
        key.set_comment("");
        let text = key.to_openssh().map_err(key_error)?;
        known.push_str(&format!("{name} {text}\n"));
    }
    std::fs::write(&known_hosts, known).map_err(io("write the demo known_hosts"))?;

    let config = dir.join("ssh_config");
    let block = |alias: &str, port: u16, extra: &str| {
        format!(
            "Host {alias}\n    HostName 127.0.0.1\n    Port {port}\n    User {USER}\n    \
             HostKeyAlias {alias}\n    IdentityFile {key}\n    IdentitiesOnly yes\n    \
             UserKnownHostsFile {known}\n    StrictHostKeyChecking yes\n{extra}\n",
            key = key_path.display(),
            known = known_hosts.display(),
        )
    };
    let text = format!(
        "# Written by `pgtunnel demo`; deleted when it exits.\n{}{}",
        block(SHELL, shell.addr().port(), ""),
        block(DB, db.addr().port(), &format!("    ProxyJump {SHELL}\n")),
    );
    std::fs::write(&config, text).map_err(io("write the demo ssh_config"))?;
    Ok(config)
}

async fn echo_service(listener: TcpListener) {
    while let Ok((mut tcp, _)) = listener.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = tcp.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
    }
}

/// What to try on the echo service at `addr`: the first client `has` finds (`nc`, `ncat`,
/// `socat`, `telnet`), else bash's `/dev/tcp`, else `pgtunnel demo --check` (which pushes
/// data through the tunnel itself). Pure.
pub fn echo_try_hint(addr: SocketAddr, has: &dyn Fn(&str) -> bool) -> String {
    let (ip, port) = (addr.ip(), addr.port());
    let host = crate::spec::HostPort(&ip.to_string(), port).to_string();
    let command = if has("nc") {
        format!("nc {ip} {port}")
    } else if has("ncat") {
        format!("ncat {ip} {port}")
    } else if has("socat") {
        format!("socat - TCP:{host}")
    } else if has("telnet") {
        format!("telnet {ip} {port}")
    } else if has("bash") {
        format!("bash -c 'exec 3<>/dev/tcp/{ip}/{port}; cat <&3 & cat >&3'")
    } else {
        return "try it: pgtunnel demo --check --target echo (sends 1 MiB through the tunnel and \
                checks it comes back; no nc, socat, telnet or bash found to type into it)"
            .into();
    };
    format!("try it: {command} (every line you type comes back)")
}

/// Whether `program` is an executable file in a directory of `$PATH`.
fn installed(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_hint_names_a_client_that_is_installed() {
        let addr: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        let only = |names: &'static [&'static str]| move |p: &str| names.contains(&p);
        assert_eq!(
            echo_try_hint(addr, &only(&["nc", "socat"])),
            "try it: nc 127.0.0.1 4242 (every line you type comes back)"
        );
        assert_eq!(
            echo_try_hint(addr, &only(&["socat", "bash"])),
            "try it: socat - TCP:127.0.0.1:4242 (every line you type comes back)"
        );
        let v6: SocketAddr = "[::1]:4242".parse().unwrap();
        assert!(echo_try_hint(v6, &only(&["socat"])).contains("socat - TCP:[::1]:4242"));
        assert!(
            echo_try_hint(addr, &only(&["bash"]))
                .contains("bash -c 'exec 3<>/dev/tcp/127.0.0.1/4242; cat <&3 & cat >&3'")
        );
        assert!(echo_try_hint(addr, &only(&[])).starts_with("try it: pgtunnel demo --check"));
    }
}
