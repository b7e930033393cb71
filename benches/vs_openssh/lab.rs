//! The lab: two real `sshd` hops on loopback (`shell` on 127.0.0.1, `db` on 127.0.0.2), the
//! services behind them on 127.0.0.3 (an echo, a sink/source for bulk transfers, and a
//! PostgreSQL cluster), a throw-away $HOME with the ssh_config both clients read, and the
//! two clients started the same way each time.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::services::Transfer;
use crate::support::pg::{PG_USER, TestPg};
use crate::support::process::BIN;
use crate::support::sshd::{Sshd, SshdOptions, login_user};
use crate::support::{Echo, Home};
use crate::table::Versus;

const SERVICES: &str = "127.0.0.3";
/// The role pgbench logs in as through the tunnels (see [`Lab::bench_role`]).
pub const PG_BENCH_USER: &str = "bench";

pub struct Lab {
    pub home: Home,
    pub echo: Echo,
    pub transfer: Transfer,
    pub pg: TestPg,
    /// The hops, `shell` and `db`: running while the lab lives.
    _hops: [Sshd; 2],
}

impl Lab {
    /// Starts everything; `pgbench -i` initialises the database directly (Unix socket).
    pub async fn start() -> Lab {
        let home = Home::new();
        let echo = Echo::start_on(&format!("{SERVICES}:0")).await;
        let transfer = Transfer::start_on(&format!("{SERVICES}:0")).await;
        let ip: IpAddr = SERVICES.parse().expect("services ip");
        let pg = TestPg::start(ip);
        let targets = [echo.addr, transfer.addr, pg.cluster.addr()];
        let db = Sshd::start(SshdOptions {
            ip: "127.0.0.2".parse().expect("ip"),
            authorized: vec![home.public()],
            permit_open: targets
                .iter()
                .map(|a| (a.ip().to_string(), a.port()))
                .collect(),
            extra: "",
        });
        let shell = Sshd::start(SshdOptions {
            ip: "127.0.0.1".parse().expect("ip"),
            authorized: vec![home.public()],
            permit_open: vec![("127.0.0.2".into(), db.addr.port())],
            extra: "",
        });
        home.trust_addr(shell.addr, &shell.host_key);
        home.trust_addr(db.addr, &db.host_key);
        let user = login_user();
        let mut config = home.block("shell", shell.addr, &user, "  BatchMode yes\n");
        config.push_str(&home.block("db", db.addr, &user, "  BatchMode yes\n"));
        home.write_config(&config);
        let lab = Lab {
            home,
            echo,
            transfer,
            pg,
            _hops: [shell, db],
        };
        lab.pgbench_init();
        lab
    }

    fn pgbench_init(&self) {
        let conninfo = format!(
            "host={} port={} user={PG_USER} dbname=postgres",
            self.pg.cluster.socket_dir().display(),
            self.pg.cluster.addr().port()
        );
        let out = self
            .pg
            .tool("pgbench")
            .args(["-i", "-q", "-s", "1", &conninfo])
            .output()
            .expect("run pgbench -i (install postgresql-client)");
        crate::support::pg::assert_success(&out, "pgbench -i -s 1 (directly, not tunnelled)");
        self.bench_role();
    }

    /// [`PG_BENCH_USER`]: may log in over TCP without a password (`trust`, first in
    /// pg_hba.conf) and only read pgbench's tables, so that connection times are the
    /// tunnels' and the server's, not SCRAM's key stretching (about 6 ms of CPU per
    /// connection here, the same through both tools). Harmless while the cluster lives:
    /// any local user may read random pgbench rows.
    fn bench_role(&self) {
        self.pg.local_sql(
            "postgres",
            &format!(
                "CREATE ROLE {PG_BENCH_USER} LOGIN; \
                 GRANT SELECT ON pgbench_accounts, pgbench_branches TO {PG_BENCH_USER}"
            ),
        );
        let hba = self.pg.cluster.data_dir().join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        let line = format!("host postgres {PG_BENCH_USER} 127.0.0.0/8 trust\n");
        std::fs::write(&hba, line + &text).expect("write pg_hba.conf");
        let reloaded = self.pg.local_sql("postgres", "SELECT pg_reload_conf()");
        assert_eq!(reloaded, "t", "pg_reload_conf()");
    }

    fn config(&self) -> &str {
        self.home.config.to_str().expect("utf-8 path")
    }
}

/// `BENCH_BASELINE=PATH`: the second client is the pgtunnel binary at PATH instead of
/// `ssh -J`, with the same arguments as the first: an A/B of two builds (the targets do not
/// apply), or with the same binary twice an A/A that shows how noisy the machine is.
pub fn baseline() -> Option<&'static str> {
    static BASELINE: OnceLock<Option<String>> = OnceLock::new();
    BASELINE
        .get_or_init(|| {
            let path = std::env::var("BENCH_BASELINE").ok()?;
            assert!(
                std::path::Path::new(&path).is_file(),
                "BENCH_BASELINE={path}: no such file (the path of a pgtunnel binary)"
            );
            Some(path)
        })
        .as_deref()
}

/// What the second column is, by `BENCH_BASELINE`.
pub fn versus() -> Versus {
    match baseline() {
        None => Versus::Ssh,
        Some(_) => Versus::Baseline,
    }
}

/// The two clients compared: pgtunnel, and `ssh -J` (or the baseline build).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tool {
    Pgtunnel,
    Ssh,
}

impl Tool {
    /// Its name in the progress lines.
    pub fn label(self) -> &'static str {
        match self {
            Tool::Pgtunnel => "pgtunnel",
            Tool::Ssh => versus().name(),
        }
    }

    /// Both, in the order a round runs them: alternating who goes first.
    pub fn order(round: usize) -> [Tool; 2] {
        if round.is_multiple_of(2) {
            [Tool::Pgtunnel, Tool::Ssh]
        } else {
            [Tool::Ssh, Tool::Pgtunnel]
        }
    }
}

/// A running client forwarding a local port to one target through both hops; dropping it
/// kills it (and, for ssh, its `ssh -W` child goes with the pipe).
pub struct Client {
    pub addr: SocketAddr,
    child: Child,
}

/// What a client forwards to.
#[derive(Clone, Copy)]
pub struct Target {
    pub addr: SocketAddr,
    /// A PostgreSQL server (pgtunnel's `--pg`, as for port 5432).
    pub postgres: bool,
}

impl Client {
    /// Spawns `tool` forwarding a free local port to `target`, without waiting:
    /// `pgtunnel -q -F CONFIG --via shell,db -L 127.0.0.1:PORT TARGET` or
    /// `ssh -F CONFIG -N -o ExitOnForwardFailure=yes -J shell -L 127.0.0.1:PORT:TARGET db`.
    pub fn spawn(lab: &Lab, tool: Tool, target: Target) -> Client {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let pgtunnel = |bin: &str| {
            let mut c = Command::new(bin);
            c.args(["-q", "-F", lab.config(), "--via", "shell,db", "-L"])
                .arg(addr.to_string())
                .arg(if target.postgres { "--pg" } else { "--no-pg" })
                .arg(target.addr.to_string());
            c
        };
        let mut command = match (tool, baseline()) {
            (Tool::Pgtunnel, _) => pgtunnel(BIN),
            (Tool::Ssh, Some(bin)) => pgtunnel(bin),
            (Tool::Ssh, None) => {
                let mut c = Command::new("ssh");
                c.args(["-F", lab.config(), "-N", "-o", "ExitOnForwardFailure=yes"])
                    .args(["-J", "shell", "-L"])
                    .arg(format!("{addr}:{}", target.addr))
                    .arg("db");
                c
            }
        };
        let child = command
            .env("HOME", lab.home.dir.path())
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {tool:?} (ssh: install openssh-client): {e}"));
        Client { addr, child }
    }

    /// Spawns and waits (up to 30 s) until it accepts connections.
    pub async fn start(lab: &Lab, tool: Tool, target: Target) -> Client {
        let mut client = Client::spawn(lab, tool, target);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(client.addr).await.is_ok() {
                return client;
            }
            if let Ok(Some(status)) = client.child.try_wait() {
                panic!(
                    "{tool:?} exited before listening on {}: {status}",
                    client.addr
                );
            }
            assert!(
                Instant::now() < deadline,
                "{tool:?} not listening within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let below = crate::support::process::descendants(self.pid());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in below {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}
