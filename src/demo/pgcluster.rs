//! A throw-away PostgreSQL cluster: `initdb` into a temporary directory, a server on one
//! loopback address and a free port (its Unix socket in the same directory), stopped and
//! removed on drop. `pgtunnel demo` uses it as its target when PostgreSQL's server binaries
//! are installed; the integration tests use it behind real sshd hops.
//!
//! PostgreSQL refuses to run as root: when this process is root, `initdb` and `postgres` run
//! as the `postgres` user (the Debian packages create it) and the directory is owned by it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

/// Why the cluster could not be made or started.
#[derive(Debug, Error)]
pub enum PgClusterError {
    /// No directory with `initdb` and `postgres` was found.
    #[error(
        "PostgreSQL server binaries not found (looked in {searched}); install them (Debian: apt-get install postgresql) or set PGTUNNEL_PG_BINDIR"
    )]
    NotInstalled {
        /// Where we looked.
        searched: String,
    },
    /// Running as root and there is no unprivileged user to run the server as.
    #[error(
        "running as root, and PostgreSQL refuses to run as root: no `postgres` user to run it as"
    )]
    NoServerUser,
    /// A local operation failed.
    #[error("PostgreSQL cluster: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// `initdb` failed.
    #[error("initdb failed ({status}): {output}")]
    Initdb {
        /// Its exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// A set-up statement (`init_sql`) failed.
    #[error("setting up the cluster failed (postgres --single, {status}): {output}")]
    Setup {
        /// The exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// The server exited or did not become ready.
    #[error("the PostgreSQL server did not start: {reason}; its log:\n{log}")]
    Start {
        /// What happened.
        reason: String,
        /// The end of the server's log.
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgClusterError {
    let what = what.into();
    move |source| PgClusterError::Io { what, source }
}

/// How to set the cluster up.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The only address the server listens on (`listen_addresses`).
    pub listen: IpAddr,
    /// The bootstrap superuser's name (`initdb -U`).
    pub superuser: String,
    /// The superuser's password (`initdb --pwfile`), stored as SCRAM; `None` sets none.
    pub password: Option<String>,
    /// The whole of `pg_hba.conf`, one entry per line.
    pub hba: Vec<String>,
    /// Extra `postgresql.conf` lines (`name = value`, value quoted as the file wants it).
    pub settings: Vec<String>,
    /// Files written into the data directory, readable only by the server's user (for
    /// example `server.crt` and `server.key`, named by `ssl_cert_file`/`ssl_key_file`).
    pub files: Vec<(String, Vec<u8>)>,
    /// SQL statements run once, in the `postgres` database, before the server starts
    /// (single-user mode: no connection, no authentication), e.g. `CREATE ROLE ...`.
    pub init_sql: Vec<String>,
}

impl ClusterOptions {
    /// A server on `listen` where only the Unix socket lets anyone in (`trust`); the socket's
    /// directory is accessible to the server's user (and root) alone. Add `hba` lines for TCP.
    pub fn new(listen: IpAddr, superuser: &str) -> ClusterOptions {
        ClusterOptions {
            listen,
            superuser: superuser.into(),
            password: None,
            hba: vec!["local all all trust".into()],
            settings: Vec::new(),
            files: Vec::new(),
            init_sql: Vec::new(),
        }
    }
}

/// A running throw-away cluster. Dropping it stops the server (fast shutdown) and removes
/// the directory.
#[derive(Debug)]
pub struct Cluster {
    child: Option<Child>,
    addr: SocketAddr,
    bindir: PathBuf,
    data: PathBuf,
    superuser: String,
    version: String,
    // Last, so that the directory is removed after the server has stopped.
    dir: tempfile::TempDir,
}

/// Where PostgreSQL's server binaries are: `$PGTUNNEL_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian, Ubuntu), else the directory of `initdb` on `PATH`.
pub fn find_bindir() -> Result<PathBuf, PgClusterError> {
    let usable = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let mut searched = Vec::new();
    if let Some(dir) = std::env::var_os("PGTUNNEL_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if usable(&dir) {
            return Ok(dir);
        }
        return Err(PgClusterError::NotInstalled {
            searched: format!("PGTUNNEL_PG_BINDIR={}", dir.display()),
        });
    }
    searched.push("/usr/lib/postgresql/*/bin".to_string());
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let key = name
                .split('.')
                .map(|p| p.parse::<u32>().ok())
                .collect::<Option<Vec<_>>>()?;
            let bin = e.path().join("bin");
            usable(&bin).then_some((key, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    searched.push("PATH".into());
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if usable(&dir) {
                return Ok(dir);
            }
        }
    }
    Err(PgClusterError::NotInstalled {
        searched: searched.join(", "),
    })
}

/// The user the server runs as: `postgres` when we are root, else ourselves (`None`).
fn server_user() -> Result<Option<nix::unistd::User>, PgClusterError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(PgClusterError::NoServerUser),
    }
}

/// A cluster being made: the server binaries, the user they run as, the private directory.
struct Setup {
    bindir: PathBuf,
    user: Option<nix::unistd::User>,
    dir: tempfile::TempDir,
}

impl Setup {
    /// Finds the binaries and makes the directory, private to the server's user (the Unix
    /// socket lives there and pg_hba.conf trusts it: only that user, and root, may enter).
    fn new() -> Result<Setup, PgClusterError> {
        use std::os::unix::fs::PermissionsExt;
        let bindir = find_bindir()?;
        let user = server_user()?;
        let dir = tempfile::Builder::new()
            .prefix("pgtunnel-pg-")
            .tempdir()
            .map_err(io("create a temporary directory"))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(io("make the cluster directory private"))?;
        let setup = Setup { bindir, user, dir };
        setup.own(setup.dir.path())?;
        Ok(setup)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Gives `path` to the server's user (when we are root).
    fn own(&self, path: &Path) -> Result<(), PgClusterError> {
        if let Some(u) = &self.user {
            nix::unistd::chown(path, Some(u.uid), Some(u.gid)).map_err(|e| PgClusterError::Io {
                what: format!("give {} to user {}", path.display(), u.name),
                source: e.into(),
            })?;
        }
        Ok(())
    }

    /// Writes a file only the server's user may read.
    fn write_owned(&self, path: &Path, bytes: &[u8]) -> Result<(), PgClusterError> {
        write_private(path, bytes)?;
        self.own(path)
    }

    /// Runs `initdb`; returns the major version it made.
    fn initdb(&self, opts: &ClusterOptions) -> Result<String, PgClusterError> {
        let data = self.data();
        let mut initdb = Command::new(self.bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", &opts.superuser, "-A", "trust", "-E", "UTF8"])
            .args(["--no-locale", "--no-sync", "--no-instructions"]);
        let pwfile = self.dir.path().join("pwfile");
        if let Some(password) = &opts.password {
            self.write_owned(&pwfile, password.as_bytes())?;
            initdb.arg(format!("--pwfile={}", pwfile.display()));
        }
        as_user(&mut initdb, &self.user, self.dir.path());
        let out = initdb.output().map_err(io("run initdb"))?;
        let _ = std::fs::remove_file(&pwfile);
        if !out.status.success() {
            return Err(PgClusterError::Initdb {
                status: out.status.to_string(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        let version = std::fs::read(data.join("PG_VERSION")).map_err(io("read PG_VERSION"))?;
        Ok(String::from_utf8_lossy(&version).trim().to_string())
    }

    /// pg_hba.conf, postgresql.conf settings, extra files, set-up SQL.
    fn configure(&self, opts: &ClusterOptions) -> Result<(), PgClusterError> {
        let data = self.data();
        let mut hba = opts.hba.join("\n");
        hba.push('\n');
        std::fs::write(data.join("pg_hba.conf"), hba).map_err(io("write pg_hba.conf"))?;
        let mut conf = String::from(
            "\n# pgtunnel: a throw-away cluster\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nmax_connections = 40\n",
        );
        for line in &opts.settings {
            conf.push_str(line);
            conf.push('\n');
        }
        append(&data.join("postgresql.conf"), &conf)?;
        for (name, bytes) in &opts.files {
            self.write_owned(&data.join(name), bytes)?;
        }
        if !opts.init_sql.is_empty() {
            single_user(
                &self.bindir,
                &data,
                &self.user,
                self.dir.path(),
                &opts.init_sql,
            )?;
        }
        Ok(())
    }

    /// Starts `postgres` on `listen` and `port`, its output to `log`.
    fn spawn_server(&self, listen: IpAddr, port: u16, log: &Path) -> Result<Child, PgClusterError> {
        let log_file = std::fs::File::create(log).map_err(io("create the server log"))?;
        let log_err = log_file.try_clone().map_err(io("open the server log"))?;
        let mut postgres = Command::new(self.bindir.join("postgres"));
        postgres
            .arg("-D")
            .arg(self.data())
            .arg("-c")
            .arg(format!("listen_addresses={listen}"))
            .arg("-c")
            .arg(format!("port={port}"))
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        as_user(&mut postgres, &self.user, self.dir.path());
        // Its own process group: a terminal's Ctrl-C reaches us, and we stop the server
        // after the tunnel has drained.
        std::os::unix::process::CommandExt::process_group(&mut postgres, 0);
        postgres.spawn().map_err(io("start postgres"))
    }
}

/// A free port on `listen` (free now: another process may take it before the server does).
fn free_port(listen: IpAddr) -> Result<u16, PgClusterError> {
    Ok(std::net::TcpListener::bind((listen, 0))
        .and_then(|l| l.local_addr())
        .map_err(io(format!("find a free port on {listen}")))?
        .port())
}

impl Cluster {
    /// Runs `initdb` and starts the server; returns once it accepts connections (bounded:
    /// 60 s). Blocking: from async code, call it in `spawn_blocking`.
    pub fn start(opts: &ClusterOptions) -> Result<Cluster, PgClusterError> {
        let mut setup = Setup::new()?;
        let version = setup.initdb(opts)?;
        setup.configure(opts)?;
        let log = setup.dir.path().join("postgres.log");
        let mut last = String::new();
        // The port is found free, then handed to the server: retry if another process took it
        // in between.
        for _ in 0..5 {
            let port = free_port(opts.listen)?;
            let child = setup.spawn_server(opts.listen, port, &log)?;
            let mut cluster = Cluster {
                child: Some(child),
                addr: SocketAddr::new(opts.listen, port),
                bindir: setup.bindir.clone(),
                data: setup.data(),
                superuser: opts.superuser.clone(),
                version: version.clone(),
                dir: setup.dir,
            };
            let reason = match cluster.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return Ok(cluster),
                Err(reason) => reason,
            };
            cluster.stop();
            last = std::fs::read_to_string(&log).unwrap_or_default();
            if !(last.contains("could not bind") || last.contains("in use")) {
                return Err(PgClusterError::Start {
                    reason,
                    log: tail(&last),
                });
            }
            // Take the directory back for the next attempt.
            setup.dir = std::mem::replace(
                &mut cluster.dir,
                tempfile::Builder::new()
                    .prefix("pgtunnel-pg-unused-")
                    .tempdir()
                    .map_err(io("create a temporary directory"))?,
            );
        }
        Err(PgClusterError::Start {
            reason: "no free port after 5 attempts".into(),
            log: tail(&last),
        })
    }

    /// Waits for `postmaster.pid` to say `ready` (as `pg_ctl start -w` does).
    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let pidfile = self.data.join("postmaster.pid");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("postgres exited ({status})"));
            }
            if let Ok(text) = std::fs::read_to_string(&pidfile)
                && text.lines().nth(7).map(str::trim) == Some("ready")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready within {} s", limit.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's TCP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory holding the Unix socket (for `host=` in a connection string).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The directory of the server binaries used (client programs of the same version, such
    /// as `psql`, are usually there too).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The bootstrap superuser.
    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    /// The major version (`PG_VERSION`), e.g. `15`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Fast shutdown (SIGINT, what `pg_ctl stop -m fast` sends), then SIGKILL after 15 s.
    /// Also done on drop.
    pub fn stop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `statements` in single-user mode (`postgres --single`), each on its own.
fn single_user(
    bindir: &Path,
    data: &Path,
    user: &Option<nix::unistd::User>,
    dir: &Path,
    statements: &[String],
) -> Result<(), PgClusterError> {
    use std::io::Write;
    let mut cmd = Command::new(bindir.join("postgres"));
    // -j: a statement ends at a semicolon followed by an empty line.
    cmd.args(["--single", "-j", "-D"])
        .arg(data)
        .arg("postgres")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    as_user(&mut cmd, user, dir);
    let mut child = cmd.spawn().map_err(io("run postgres --single"))?;
    let mut input = String::new();
    for sql in statements {
        input.push_str(sql.trim_end().trim_end_matches(';'));
        input.push_str(";\n\n");
    }
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(io("write to postgres --single"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(io("run postgres --single"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || text.contains("ERROR:") || text.contains("FATAL:") {
        return Err(PgClusterError::Setup {
            status: out.status.to_string(),
            output: text,
        });
    }
    Ok(())
}

/// Runs `cmd` as `user` (if any) in `dir`.
fn as_user(cmd: &mut Command, user: &Option<nix::unistd::User>, dir: &Path) {
    use std::os::unix::process::CommandExt;
    cmd.current_dir(dir);
    if let Some(u) = user {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
        cmd.env("HOME", dir)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name);
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PgClusterError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let what = || format!("write {}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(what()))?;
    f.write_all(bytes).map_err(io(what()))
}

fn append(path: &Path, text: &str) -> Result<(), PgClusterError> {
    use std::io::Write;
    let what = || format!("append to {}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io(what()))?;
    f.write_all(text.as_bytes()).map_err(io(what()))
}

/// The last 40 lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
