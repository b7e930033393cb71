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

    /// An sshd on `ip` accepting `home`'s key, permitting `permit` only, at `log_level`
    /// (`DEBUG2` logs the window adjustments it receives, `DEBUG3` the IGNOREs too).
    pub fn logging(home: &super::Home, ip: &str, permit: (String, u16), log_level: &str) -> Sshd {
        Sshd::start_with(
            SshdOptions {
                ip: ip.parse().expect("ip"),
                authorized: vec![home.public()],
                permit_open: vec![permit],
                extra: "",
            },
            &format!("LogLevel {log_level}"),
            &[],
        )
    }

    /// Every window adjustment received, in bytes, from the log (`LogLevel DEBUG2`:
    /// `channel N: rcvd adjust BYTES`).
    pub fn window_adjusts(&self) -> Vec<u64> {
        self.log()
            .lines()
            .filter_map(|l| l.split("rcvd adjust ").nth(1))
            .filter_map(|n| n.trim().parse().ok())
            .collect()
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

/// sshd_config lines for [`Sshd::start_pam`]: keyboard-interactive only.
pub const KBD_INTERACTIVE: &str =
    "KbdInteractiveAuthentication yes\nAuthenticationMethods keyboard-interactive";
/// sshd_config lines for [`Sshd::start_pam`]: password only (sshd hands the password to
/// PAM's auth stack).
pub const PASSWORD: &str = "PasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
                            AuthenticationMethods password";

impl Sshd {
    /// An sshd whose keyboard-interactive or password authentication (`methods`: sshd_config
    /// lines, [`KBD_INTERACTIVE`] or [`PASSWORD`]) goes through PAM, with `/etc/pam.d/sshd`
    /// replaced (in a private mount namespace, so the system's file is untouched) by a stack
    /// that accepts only `secret` (pam_exec reads the answer to PAM's "Password: " question,
    /// or the password sshd hands to PAM). `dir` holds the stack and its check script.
    pub fn start_pam(
        dir: &Path,
        permit_open: Vec<(String, u16)>,
        methods: &str,
        secret: &str,
    ) -> Sshd {
        use std::os::unix::fs::PermissionsExt;
        let pam_exec = [
            "/lib/x86_64-linux-gnu/security/pam_exec.so",
            "/usr/lib/x86_64-linux-gnu/security/pam_exec.so",
            "/lib/security/pam_exec.so",
        ];
        assert!(
            pam_exec.iter().any(|p| Path::new(p).exists()),
            "pam_exec.so is missing: install libpam-modules (scripts/test does this)"
        );
        assert!(
            Path::new("/etc/pam.d/sshd").exists(),
            "/etc/pam.d/sshd is missing: install openssh-server"
        );
        let unshare = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "true"])
            .status();
        assert!(
            matches!(unshare, Ok(s) if s.success()),
            "`unshare --mount` does not work here (needs root / CAP_SYS_ADMIN): it keeps the \
             test's PAM stack private to its sshd"
        );
        let check = dir.join("check-code.sh");
        std::fs::write(
            &check,
            format!("#!/bin/sh\ncode=$(tr -d '\\000')\n[ \"$code\" = \"{secret}\" ]\n"),
        )
        .expect("write check script");
        std::fs::set_permissions(&check, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let pam = dir.join("pam-sshd");
        std::fs::write(
            &pam,
            format!(
                "auth required pam_exec.so expose_authtok quiet {}\n\
                 auth required pam_permit.so\n\
                 account required pam_permit.so\nsession required pam_permit.so\n\
                 password required pam_deny.so\n",
                check.display()
            ),
        )
        .expect("write PAM stack");
        let script = format!(
            "mount --bind {} /etc/pam.d/sshd && exec \"$0\" \"$@\"",
            pam.display()
        );
        Sshd::start_with(
            SshdOptions {
                ip: "127.0.0.1".parse().expect("ip"),
                authorized: Vec::new(),
                permit_open,
                extra: "",
            },
            &format!("UsePAM yes\nPermitRootLogin yes\n{methods}"),
            &[
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ],
        )
    }
}
