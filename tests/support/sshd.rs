//! A real OpenSSH `sshd` on a loopback address, with its own host key and config in a
//! temporary directory, for interoperability tests. Dropping it kills the server.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use russh::keys::PublicKey;

pub const SSHD: &str = "/usr/sbin/sshd";

/// The name sshd will accept a login for: the user running the tests.
pub fn login_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("the test user has a passwd entry")
}

pub struct Sshd {
    pub addr: SocketAddr,
    pub host_key: PublicKey,
    pub dir: tempfile::TempDir,
    child: Child,
    /// What sshd runs through (see [`Sshd::start_with`]), for [`Sshd::restart`].
    wrapper: Vec<String>,
}

pub struct SshdOptions<'a> {
    pub ip: IpAddr,
    /// Keys allowed to log in (as [`login_user`]).
    pub authorized: Vec<PublicKey>,
    /// `PermitOpen` destinations (host, port); empty = `PermitOpen none`.
    pub permit_open: Vec<(String, u16)>,
    /// Extra sshd_config lines.
    pub extra: &'a str,
}

fn require_sshd() {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing: install openssh-server (scripts/test does this)"
    );
    assert!(
        Path::new("/run/sshd").is_dir() || !nix::unistd::getuid().is_root(),
        "/run/sshd is missing: sshd needs it when run as root (scripts/test creates it)"
    );
}

pub fn ssh_keygen(args: &[&str]) {
    let out = Command::new("ssh-keygen")
        .args(args)
        .output()
        .expect("run ssh-keygen (install openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Sshd {
    pub fn start(opts: SshdOptions<'_>) -> Sshd {
        Sshd::start_with(opts, "", &[])
    }

    /// Like [`Sshd::start`], with `prelude` lines before the defaults (sshd keeps the first
    /// value of a keyword, so these override them) and sshd run through `wrapper` (a command
    /// and its arguments, sshd's command line appended).
    pub fn start_with(opts: SshdOptions<'_>, prelude: &str, wrapper: &[&str]) -> Sshd {
        require_sshd();
        let dir = tempfile::tempdir().expect("tempdir");
        let host_key = dir.path().join("host_ed25519");
        ssh_keygen(&[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "",
            "-f",
            host_key.to_str().expect("utf-8 path"),
        ]);
        let pub_text =
            std::fs::read_to_string(host_key.with_extension("pub")).expect("read host key");
        let host_pub = PublicKey::from_openssh(pub_text.trim()).expect("parse host key");
        let mut authorized = String::new();
        for k in &opts.authorized {
            authorized.push_str(&k.to_openssh().expect("encode key"));
            authorized.push('\n');
        }
        std::fs::write(dir.path().join("authorized_keys"), authorized).expect("authorized_keys");
        let permit_open = if opts.permit_open.is_empty() {
            "none".to_string()
        } else {
            opts.permit_open
                .iter()
                .map(|(h, p)| format!("{h}:{p}"))
                .collect::<Vec<_>>()
                .join(" ")
        };

        // sshd cannot bind port 0 and report it: pick a free port, retry if we lose a race.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind((opts.ip, 0))
                .and_then(|l| l.local_addr())
                .expect("find a free port")
                .port();
            let addr = SocketAddr::new(opts.ip, port);
            let config = dir.path().join("sshd_config");
            let log = dir.path().join("sshd.log");
            std::fs::write(
                &config,
                format!(
                    "{prelude}\nListenAddress {listen}\nHostKey {key}\nPidFile none\n\
                     AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nUsePAM no\n\
                     PubkeyAuthentication yes\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                     AllowTcpForwarding yes\nPermitOpen {permit_open}\nLogLevel VERBOSE\n\
                     MaxStartups 200\nMaxSessions 200\n{extra}\n",
                    listen = match opts.ip {
                        IpAddr::V4(_) => addr.to_string(),
                        IpAddr::V6(ip) => format!("[{ip}]:{port}"),
                    },
                    key = host_key.display(),
                    dir = dir.path().display(),
                    extra = opts.extra,
                ),
            )
            .expect("write sshd_config");
            let wrapper: Vec<String> = wrapper.iter().map(|w| w.to_string()).collect();
            let mut child = spawn(&wrapper, &config, &log);
            match wait_for_banner(addr, &mut child, Instant::now() + Duration::from_secs(10)) {
                Up::Yes => {
                    return Sshd {
                        addr,
                        host_key: host_pub,
                        dir,
                        child,
                        wrapper,
                    };
                }
                Up::Exited => last_log = std::fs::read_to_string(&log).unwrap_or_default(),
                Up::TimedOut => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "sshd on {addr} did not come up within 10 s: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        }
        panic!("sshd would not start: {last_log}");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The listening sshd's process id (its per-connection processes are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    /// Stops (SIGSTOP) the server and every session it serves: the hop goes silent, its TCP
    /// connections stay open, as when a bastion hangs or the network drops packets.
    pub fn freeze(&self) {
        super::process::signal_tree(self.child.id() as i32, nix::sys::signal::Signal::SIGSTOP);
    }

    /// Kills the server and every session it serves.
    pub fn kill_all(&mut self) {
        super::process::signal_tree(self.child.id() as i32, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// Kills everything (see [`Sshd::kill_all`]) and starts sshd again on the same address
    /// with the same host key and configuration.
    pub fn restart(&mut self) {
        self.kill_all();
        let config = self.dir.path().join("sshd_config");
        let log = self.log_path();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut child = spawn(&self.wrapper, &config, &log);
            match wait_for_banner(self.addr, &mut child, deadline) {
                Up::Yes => {
                    self.child = child;
                    return;
                }
                // E.g. the address is not free yet: try again.
                Up::Exited => {}
                Up::TimedOut => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            assert!(
                Instant::now() < deadline,
                "sshd on {} did not come back within 10 s: {}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // The sessions too: a frozen one would otherwise stay behind, stopped.
        self.kill_all();
    }
}

/// Starts `sshd -D -f config -E log`, through `wrapper` if any.
fn spawn(wrapper: &[String], config: &Path, log: &Path) -> Child {
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(SSHD);
            c
        }
        None => Command::new(SSHD),
    };
    command
        .arg("-D")
        .arg("-f")
        .arg(config)
        .arg("-E")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sshd")
}

enum Up {
    Yes,
    Exited,
    TimedOut,
}

/// Waits until `addr` greets with an SSH banner, `child` exits, or `deadline` passes.
fn wait_for_banner(addr: SocketAddr, child: &mut Child, deadline: Instant) -> Up {
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Up::Exited;
        }
        if let Ok(mut tcp) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let mut banner = [0u8; 4];
            if tcp.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                return Up::Yes;
            }
        }
        if Instant::now() > deadline {
            return Up::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The manual's topology with real servers: `db` (db.foo.com) on 127.0.0.2 may open only the
/// service, `shell` (shell.foo.com) on 127.0.0.1 may open only `db`, so bytes that come back
/// prove the path went through both. Both host keys are trusted in `home`'s known_hosts.
pub struct ManualHops {
    pub shell: Sshd,
    pub db: Sshd,
}

impl ManualHops {
    /// Starts both hops for a service at `service` (host, port as db.foo.com dials it).
    pub fn start(home: &super::Home, service: (&str, u16)) -> ManualHops {
        let db = Sshd::start(SshdOptions {
            ip: "127.0.0.2".parse().expect("ip"),
            authorized: vec![home.public()],
            permit_open: vec![(service.0.into(), service.1)],
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
        ManualHops { shell, db }
    }

    /// Writes `home`'s ssh_config: aliases `shell.foo.com` and `db.foo.com` (with
    /// `ProxyJump shell.foo.com`), each with `extra` lines.
    pub fn write_config(&self, home: &super::Home, extra: &str) {
        let user = login_user();
        let mut config = home.block("shell.foo.com", self.shell.addr, &user, extra);
        config.push_str(&home.block(
            "db.foo.com",
            self.db.addr,
            &user,
            &format!("{extra}  ProxyJump shell.foo.com\n"),
        ));
        home.write_config(&config);
    }
}
