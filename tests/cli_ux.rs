//! The running tunnel's terminal behaviour (issue 14), the binary run as a process: `-q`
//! keeps warnings, `-L NAME:PORT`, a local port already in use (its own exit code and who
//! holds it), a second Ctrl-C during the drain, one log format, the spinner's stages, and
//! the demo's suggestion for its echo service. Waits are bounded; nothing is timed.

mod support;

use std::process::{Output, Stdio};

use std::time::Duration;

use nix::sys::signal::Signal;
use support::process::{BIN, Pgtunnel};
use support::tty::OnTty;
use support::*;
use tokio::io::AsyncWriteExt;

const LIMIT: Duration = Duration::from_secs(60);

async fn run(home: &Home, args: &[&str], path: Option<&str>) -> Output {
    let path = path.map_or(std::env::var_os("PATH").unwrap_or_default(), Into::into);
    tokio::time::timeout(
        LIMIT,
        tokio::process::Command::new(BIN)
            .args(args)
            .env_clear()
            .env("HOME", home.dir.path())
            .env("PATH", path)
            .env("USER", "localuser")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("pgtunnel finishes")
    .expect("run pgtunnel")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A home whose ssh_config has `shell.foo.com`, an in-process bastion that may reach an echo
/// service; the echo's address as TARGET.
async fn lab() -> (Home, Echo, pgtunnel::demo::bastion::Bastion, String) {
    let home = Home::new();
    let echo = Echo::start().await;
    let b = bastion(&home, &[("127.0.0.1", echo.addr.port())]).await;
    home.write_config(&home.host_block("shell.foo.com", b.addr().port(), ""));
    let target = echo.addr.to_string();
    (home, echo, b, target)
}

/// No log line in tracing's raw format (`  INFO message field=1`) at the default verbosity.
fn assert_human_lines(stderr: &str) {
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let raw = ["INFO", "WARN", "ERROR", "DEBUG"]
            .iter()
            .any(|level| line.trim_start().starts_with(level));
        assert!(!raw, "a raw tracing line: {line:?} in\n{stderr}");
        assert!(line.starts_with("pgtunnel: "), "{line:?} in\n{stderr}");
    }
}

/// Issue 14: `-q --listen 0.0.0.0:0` printed nothing about the exposed listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_keeps_the_exposed_listener_warning() {
    let (home, _echo, _b, target) = lab().await;
    let cfg = home.config.to_str().expect("utf-8");
    let args = [
        "-q",
        "-F",
        cfg,
        "--listen",
        "0.0.0.0:0",
        "--via",
        "shell.foo.com",
        &target,
    ];
    let mut tunnel = Pgtunnel::start(&home, &args).await;
    let port = tunnel.addr.port();
    tunnel
        .wait_for_stderr("pgtunnel: warning: the tunnel listens on 0.0.0.0:")
        .await;
    // Only the warning: no path report, no chain line.
    assert!(
        !tunnel.report.iter().any(|l| l.contains("->")),
        "{:?}",
        tunnel.report
    );
    echo_round_trip(([127, 0, 0, 1], port).into(), 1024, 1).await;
    tunnel.signal(Signal::SIGINT);
    let status = tunnel.wait(LIMIT).await;
    assert_eq!(status.code(), Some(0), "{}", tunnel.stderr());
    let stderr = tunnel.stderr();
    assert!(
        stderr.contains(&format!(
            "pgtunnel: warning: the tunnel listens on 0.0.0.0:{port}, which is not a loopback \
             address. Anyone who can reach it uses your tunnel"
        )),
        "{stderr}"
    );
    assert_human_lines(&stderr);
}

/// Issue 14: `-L localhost:PORT` was refused ("must be an IP address"), where ssh accepts
/// it: it listens on the loopback addresses, as ssh's `-L localhost:...` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_as_the_listen_address() {
    let (home, _echo, _b, target) = lab().await;
    let cfg = home.config.to_str().expect("utf-8");
    let args = [
        "-F",
        cfg,
        "-L",
        "localhost:0",
        "--via",
        "shell.foo.com",
        &target,
    ];
    let mut tunnel = Pgtunnel::start(&home, &args).await;
    assert!(tunnel.addr.ip().is_loopback(), "{:?}", tunnel.ready);
    let report = tunnel.report.join("\n");
    assert!(report.contains("local, loopback only"), "{report}");
    assert!(!report.contains("Warning"), "{report}");
    echo_round_trip(tunnel.addr, 64 * 1024, 2).await;
    tunnel.signal(Signal::SIGINT);
    assert_eq!(
        tunnel.wait(LIMIT).await.code(),
        Some(0),
        "{}",
        tunnel.stderr()
    );

    // A name that does not resolve: said so, exit 8 (the local port), before any hop.
    let out = run(
        &home,
        &[
            "-F",
            cfg,
            "-L",
            "no-such-host.invalid:0",
            "--via",
            "shell.foo.com",
            &target,
        ],
        None,
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    assert!(
        stderr.contains("cannot listen on no-such-host.invalid:0: the address does not resolve"),
        "{stderr}"
    );
}

/// Issue 14: a local port already in use exited 5 ("a hop failed"). It is exit 8 now, with
/// who holds the port (this test process, found through /proc) and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_port_in_use_exits_8_and_names_its_holder() {
    let home = Home::new();
    home.write_config(&home.host_block("shell.foo.com", 9, ""));
    let cfg = home.config.to_str().expect("utf-8");
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let me = format!("(pid {})", std::process::id());

    let listen = format!("127.0.0.1:{port}");
    let out = run(
        &home,
        &["-F", cfg, "-L", &listen, "--via", "shell.foo.com", "db"],
        None,
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    let mut lines = stderr.lines().filter(|l| l.starts_with("pgtunnel: "));
    let error = lines.next().unwrap_or_default();
    assert!(
        error.starts_with(&format!("pgtunnel: cannot listen on 127.0.0.1:{port}: ")),
        "{stderr}"
    );
    assert!(error.contains("in use"), "{stderr}");
    let hint = lines.next().unwrap_or_default();
    assert!(
        hint.starts_with("pgtunnel: hint: ")
            && hint.contains(&me)
            && hint.contains(&format!("listens on 127.0.0.1:{port}"))
            && hint.contains("leave -L out and the system picks a free one"),
        "{stderr}"
    );

    // ssh's form (on the one address held: with `localhost` ::1 would do, as in ssh): the
    // forward is named, and the advice is about its port.
    let forward = format!("127.0.0.1:{port}:db:5432");
    let out = run(&home, &["-F", cfg, "-L", &forward, "shell.foo.com"], None).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    assert!(
        stderr.contains(&format!("give {forward} another local port")) && stderr.contains(&me),
        "{stderr}"
    );
    drop(held);
}

/// Issue 14: a second Ctrl-C during the drain stops at once, saying how many connections
/// it cut; exit 130. (The drain timeout is long: only the second signal can end it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_cuts_the_drain_short() {
    let (home, echo, _b, target) = lab().await;
    let cfg = home.config.to_str().expect("utf-8");
    let args = [
        "-F",
        cfg,
        "--drain-timeout",
        "3600",
        "--via",
        "shell.foo.com",
        &target,
    ];
    let mut tunnel = Pgtunnel::start(&home, &args).await;
    // A connection through the tunnel, open and carrying data.
    let mut conn = tokio::net::TcpStream::connect(tunnel.addr)
        .await
        .expect("connect");
    conn.write_all(b"ping\n").await.expect("write");
    let mut got = [0u8; 5];
    tokio::time::timeout(
        LIMIT,
        tokio::io::AsyncReadExt::read_exact(&mut conn, &mut got),
    )
    .await
    .expect("echo within the limit")
    .expect("echo");
    assert_eq!(&got, b"ping\n");
    assert!(echo.connections() >= 1);

    tunnel.signal(Signal::SIGINT);
    tunnel
        .wait_for_stderr("pgtunnel: waiting up to 3600s for 1 open connection(s) to finish")
        .await;
    assert!(tunnel.running(), "{}", tunnel.stderr());
    tunnel.signal(Signal::SIGINT);
    let status = tunnel.wait(LIMIT).await;
    let stderr = tunnel.stderr();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("pgtunnel: stopped at once (second Ctrl-C): 1 open connection was cut"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pgtunnel: shutting down (Ctrl-C again to close open connections at once)"),
        "{stderr}"
    );
    assert_human_lines(&stderr);
    // The client's connection is closed.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        LIMIT,
        tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut rest),
    )
    .await
    .expect("closed within the limit");
    assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");
}

/// Issue 14: the demo's echo mode suggested `nc`, which many machines lack: it suggests a
/// client that is installed, or else `pgtunnel demo --check`.
#[tokio::test]
async fn the_demo_suggests_an_installed_client() {
    let home = Home::new();
    let bin = tempfile::tempdir().expect("tempdir");
    let args = ["demo", "--check", "--target", "echo"];

    // Only socat on PATH.
    let socat = bin.path().join("socat");
    std::fs::write(&socat, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(
        &socat,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .expect("chmod");
    let path = bin.path().to_str().expect("utf-8");
    let out = run(&home, &args, Some(path)).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("; try it: socat - TCP:127.0.0.1:"),
        "{stdout}"
    );
    assert!(!stdout.contains("nc 127.0.0.1"), "{stdout}");

    // Nothing to type into it: the self-check is the suggestion.
    std::fs::remove_file(&socat).expect("rm");
    let out = run(&home, &args, Some(path)).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("; try it: pgtunnel demo --check --target echo"),
        "{stdout}"
    );
}

/// Issue 14: the spinner says what it waits for. On a terminal (a pty of its own, `setsid
/// --ctty`), against a server that accepts and stays silent, then sends its banner only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spinner_says_what_it_waits_for() {
    let home = Home::new();
    let server = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = server.local_addr().expect("addr").port();
    home.write_config(&home.host_block("fake", port, "  ConnectTimeout 0"));
    let cfg = home.config.to_str().expect("utf-8");
    let mut tty = OnTty::spawn(home.dir.path(), &["-F", cfg, "--via", "fake", "db"]);
    let (mut conn, _) = tokio::time::timeout(LIMIT, server.accept())
        .await
        .expect("pgtunnel connects")
        .expect("accept");
    let hop = format!("hop 1 (fake, 127.0.0.1:{port})");
    tty.expect(&format!("{hop}: waiting for the server's SSH banner"));
    conn.write_all(b"SSH-2.0-Silent_1.0\r\n")
        .await
        .expect("banner");
    tty.expect(&format!("{hop}: waiting for the key exchange"));
    assert_eq!(tty.interrupt(), 130, "{}", tty.screen());
}
