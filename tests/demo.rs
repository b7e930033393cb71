//! `pgtunnel demo`: the README's first command works on a machine with no servers of its own:
//! with a real throw-away PostgreSQL when its server binaries are installed (they are where
//! the tests run: scripts/test installs them), else with an echo service.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_pgtunnel");

fn demo(args: &[&str], target: Option<&str>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("demo")
        .args(args)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("PGTUNNEL_DEMO_TARGET");
    if let Some(t) = target {
        cmd.env("PGTUNNEL_DEMO_TARGET", t);
    }
    cmd
}

fn run(cmd: &mut Command) -> (Output, String) {
    let out = cmd.output().expect("run pgtunnel demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (out, stdout)
}

/// The demo process; a test that fails half-way still stops it (SIGINT: it stops its
/// PostgreSQL and removes its files), then kills it if it is still there after 30 s.
struct DemoProcess(Option<std::process::Child>);

impl DemoProcess {
    /// SIGINT, then the exit status (bounded: 60 s).
    fn interrupt(&mut self) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
        for _ in 0..600 {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("pgtunnel demo did not exit within 60 s of SIGINT");
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if self.0.is_some() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.interrupt()));
        }
    }
}

fn require_postgres() -> PathBuf {
    match pgtunnel::demo::pgcluster::find_bindir() {
        Ok(dir) => dir,
        Err(e) => panic!(
            "these tests need PostgreSQL's server binaries (scripts/test installs them): {e}"
        ),
    }
}

/// The chain shell.foo.com -> db.foo.com came from db.foo.com's ProxyJump, and every segment
/// is encrypted or stays on a machine.
fn assert_chain(stdout: &str) {
    assert!(
        stdout.contains("pgtunnel: shell.foo.com -> db.foo.com -> localhost:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("127.0.0.1 -> shell.foo.com (127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("shell.foo.com -> db.foo.com (127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stays on db.foo.com (loopback)"),
        "{stdout}"
    );
    assert!(!stdout.contains("NOT encrypted"), "{stdout}");
    assert!(stdout.contains("\nready: 127.0.0.1:"), "{stdout}");
}

#[test]
fn demo_check_talks_to_a_real_postgres_through_both_in_process_servers() {
    require_postgres();
    let (_, stdout) = run(&mut demo(&["--check"], None));
    assert_chain(&stdout);
    assert!(
        stdout.contains("a throw-away PostgreSQL "),
        "PostgreSQL is installed, so the demo uses it: {stdout}"
    );
    assert!(
        stdout.contains("; try it: psql \"host=127.0.0.1 port="),
        "{stdout}"
    );
    assert!(stdout.contains("self-check: PostgreSQL "), "{stdout}");
    assert!(stdout.contains("logged in as joe"), "{stdout}");
    assert!(stdout.contains("came back intact"), "{stdout}");
    // The cluster's directory is gone once the demo has exited.
    let data = stdout
        .split("(data in ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no data directory in {stdout}"));
    assert!(
        !std::path::Path::new(data).exists(),
        "{data} must be removed"
    );
}

#[test]
fn demo_check_with_the_echo_target() {
    let (_, stdout) = run(&mut demo(&["--check"], Some("echo")));
    assert_chain(&stdout);
    assert!(stdout.contains("an echo service on 127.0.0.1:"), "{stdout}");
    // A client that is installed (nc is often not: see tests/cli_ux.rs).
    assert!(stdout.contains("; try it: "), "{stdout}");
    assert!(
        stdout.contains("to the echo service and came back intact"),
        "{stdout}"
    );
    // The same with the option instead of the environment variable.
    let (_, stdout) = run(&mut demo(&["--check", "--target", "echo"], None));
    assert!(
        stdout.contains("to the echo service and came back intact"),
        "{stdout}"
    );
}

/// What a user does: `pgtunnel demo`, then the ready line's psql command in another terminal,
/// then Ctrl-C; the cluster is stopped and removed.
#[test]
fn psql_through_the_demo_tunnel_then_ctrl_c_removes_the_cluster() {
    let bindir = require_postgres();
    let mut child = demo(&[], Some("postgres"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pgtunnel demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut child = DemoProcess(Some(child));
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut psql_conninfo = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        lines.push(line.clone());
        if let Some(rest) = line.split("try it: psql \"").nth(1) {
            psql_conninfo = rest.strip_suffix('"').map(str::to_string);
        }
        if line.starts_with("self-check:") {
            break;
        }
    }
    let text = lines.join("\n");
    let conninfo =
        psql_conninfo.unwrap_or_else(|| panic!("no psql command in the demo's output:\n{text}"));
    let data = text
        .split("(data in ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .map(PathBuf::from)
        .expect("data directory in the output");
    let pid_text =
        std::fs::read_to_string(data.join("postmaster.pid")).expect("read postmaster.pid");
    let postmaster: u32 = pid_text
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("postmaster pid");

    let psql = |sql: &str| {
        let out = Command::new(bindir.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &conninfo,
                "-c",
                sql,
            ])
            .env("PGCONNECT_TIMEOUT", "30")
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {conninfo:?} -c {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(psql("SELECT current_user"), "joe");
    psql("CREATE TABLE hops (n int, name text)");
    psql("INSERT INTO hops VALUES (1, 'shell.foo.com'), (2, 'db.foo.com')");
    assert_eq!(
        psql("SELECT string_agg(name, ' -> ' ORDER BY n) FROM hops"),
        "shell.foo.com -> db.foo.com"
    );
    // Anyone on this machine can log in as joe while the demo runs, so joe is no superuser;
    // the superuser is reachable only through the Unix socket, in a directory only the
    // server's user may enter.
    assert_eq!(
        psql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"),
        "f"
    );
    let admin = Command::new(bindir.join("psql"))
        .args([
            "-X",
            "-d",
            &conninfo.replace("user=joe", "user=pgtunnel_admin"),
            "-c",
            "SELECT 1",
        ])
        .output()
        .expect("run psql");
    assert!(!admin.status.success());
    assert!(
        String::from_utf8_lossy(&admin.stderr).contains("no pg_hba.conf entry"),
        "{}",
        String::from_utf8_lossy(&admin.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let socket_dir = data.parent().expect("cluster directory");
    let mode = std::fs::metadata(socket_dir)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{}", socket_dir.display());

    // Ctrl-C.
    let status = child.interrupt();
    assert_eq!(status.code(), Some(0), "{text}");
    let _ = reader.join();
    assert!(!data.exists(), "{} must be removed", data.display());
    assert!(
        !std::path::Path::new(&format!("/proc/{postmaster}")).exists(),
        "the demo's postgres (pid {postmaster}) must be stopped"
    );
}

/// Without PostgreSQL (simulated with a PGTUNNEL_PG_BINDIR that has no server binaries), the
/// default falls back to the echo service and says why; `--target postgres` refuses.
#[test]
fn without_postgres_auto_falls_back_to_echo_and_postgres_target_fails() {
    let empty = tempfile::tempdir().expect("tempdir");
    let (out, stdout) = run(demo(&["--check"], None).env("PGTUNNEL_PG_BINDIR", empty.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("to the echo service and came back intact"),
        "{stdout}"
    );
    assert!(
        stderr.contains("using an echo service instead of PostgreSQL")
            && stderr.contains("PostgreSQL server binaries not found"),
        "{stderr}"
    );

    let out = demo(&["--check", "--target", "postgres"], None)
        .env("PGTUNNEL_PG_BINDIR", empty.path())
        .output()
        .expect("run pgtunnel demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("PostgreSQL server binaries not found"),
        "{stderr}"
    );
}

/// Ctrl-C at any moment — while PostgreSQL is being set up, while the tunnel comes up, once
/// it serves — leaves no directory and no server behind. (The delays only spread the signal
/// over the demo's life; nothing here depends on how long a step takes.)
#[test]
fn ctrl_c_at_any_moment_leaves_nothing_behind() {
    require_postgres();
    for delay_ms in [0u64, 20, 100, 300, 1000, 3000] {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            use std::os::unix::fs::PermissionsExt;
            // The server's user must reach its cluster directory inside.
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        let child = demo(&[], Some("postgres"))
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pgtunnel demo");
        let mut child = DemoProcess(Some(child));
        std::thread::sleep(Duration::from_millis(delay_ms));
        let status = child.interrupt();
        // 0 once our handler is installed; 130 while the SSH hops come up ("interrupted while
        // connecting"); killed by SIGINT if it came even earlier.
        assert!(
            status.code() == Some(0)
                || status.code() == Some(130)
                || std::os::unix::process::ExitStatusExt::signal(&status) == Some(2),
            "after {delay_ms} ms: {status:?}"
        );
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("read tmp")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(
            left.is_empty(),
            "after {delay_ms} ms, left behind: {left:?}"
        );
        let needle = tmp.path().to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&cmdline).contains(&needle),
                "after {delay_ms} ms, still running: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            );
        }
    }
}
