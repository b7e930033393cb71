//! The `pgtunnel` binary as a user runs it: one clear line for bad input, documented exit
//! codes, the path report and ready line, and a clean exit on Ctrl-C.

mod support;

use std::process::{Output, Stdio};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn command(home: &Home) -> Command {
    let mut cmd = Command::from(support::process::clean_command(home.dir.path()));
    cmd.kill_on_drop(true);
    cmd
}

async fn run(home: &Home, args: &[&str]) -> Output {
    tokio::time::timeout(Duration::from_secs(60), command(home).args(args).output())
        .await
        .expect("pgtunnel finishes")
        .expect("run pgtunnel")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The line of stderr that says what is wrong: clap's `error:` (it adds a usage hint after
/// it), or pgtunnel's last line (progress lines come before it, a `hint:` after it).
fn error_line(out: &Output) -> String {
    let text = stderr(out);
    let line = text
        .lines()
        .find(|l| l.starts_with("error:"))
        .or_else(|| {
            text.lines()
                .rfind(|l| l.starts_with("pgtunnel:") && !l.starts_with("pgtunnel: hint:"))
        })
        .unwrap_or_else(|| panic!("no error line in {text:?}"))
        .to_string();
    assert!(!text.contains("panicked"), "panic: {text}");
    line
}

#[tokio::test]
async fn malformed_arguments_get_one_line_and_exit_2() {
    let home = Home::new();
    for (args, expect) in [
        (vec!["db.foo.com:0"], "port"),
        (vec!["db.foo.com:65536"], "port"),
        (vec!["db.foo.com:pg"], "port"),
        (vec!["[fd00::5"], "]"),
        (vec![""], "empty"),
        (vec!["--via", "joe@", "db"], "no host"),
        (vec!["--via", "a,,b", "db"], "empty"),
        (vec!["--via", "shell:0", "db"], "port"),
        (vec!["--listen", "127.0.0.1:99999", "db"], "port"),
    ] {
        let out = run(&home, &args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let line = error_line(&out).to_lowercase();
        assert!(line.contains(expect), "{args:?}: {line}");
    }
}

#[tokio::test]
async fn missing_config_file_is_named() {
    let home = Home::new();
    let out = run(
        &home,
        &["-F", "/nonexistent/ssh_config", "--via", "shell", "db"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        error_line(&out).contains("/nonexistent/ssh_config"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn proxyjump_loop_is_named() {
    let home = Home::new();
    home.write_config("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n");
    let cfg = home.config.to_str().expect("utf-8");
    let out = run(&home, &["-F", cfg, "--via", "a", "db"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains("loop") && line.contains("a -> b -> a"),
        "{line}"
    );
}

#[tokio::test]
async fn require_encrypted_refuses_a_plaintext_last_segment() {
    let home = Home::new();
    home.write_config(&home.host_block("shell.foo.com", 1, ""));
    let cfg = home.config.to_str().expect("utf-8");
    let out = run(
        &home,
        &[
            "-F",
            cfg,
            "--via",
            "shell.foo.com",
            "--require-encrypted",
            "db.foo.com:5432",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(line.contains("db.foo.com:5432"), "{line}");
}

#[tokio::test]
async fn unreachable_hop_names_the_hop_and_its_address() {
    let home = Home::new();
    // A port with nothing listening: bind, note, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    home.write_config(&home.host_block("shell.foo.com", port, ""));
    let cfg = home.config.to_str().expect("utf-8");
    let out = run(&home, &["-F", cfg, "--via", "shell.foo.com", "db.foo.com"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains("shell.foo.com") && line.contains(&format!("127.0.0.1:{port}")),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_family_filters_the_first_hops_addresses() {
    let home = Home::new();
    let echo = Echo::start().await;
    let b = bastion(&home, &[("127.0.0.1", echo.addr.port())]).await;
    let port = b.addr().port();
    let cfg = home.config.to_str().expect("utf-8");
    let target = echo.addr.to_string();
    // HostName 127.0.0.1 has no IPv6 address: refused before any connection, naming the hop.
    home.write_config(&home.host_block("shell.foo.com", port, "  AddressFamily inet6"));
    let out = run(&home, &["-F", cfg, "--via", "shell.foo.com", &target]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains("shell.foo.com") && line.contains("AddressFamily inet6"),
        "{line}"
    );
    // `inet` keeps it: the connection gets as far as the (unknown) host key.
    std::fs::write(&home.known_hosts, "").expect("empty known_hosts");
    home.write_config(&home.host_block("shell.foo.com", port, "  AddressFamily inet"));
    let out = run(&home, &["-F", cfg, "--via", "shell.foo.com", &target]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(error_line(&out).contains("not known"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_exits_3_and_bad_credentials_exit_4() {
    let home = Home::new();
    let echo = Echo::start().await;
    let b = bastion(&home, &[("127.0.0.1", echo.addr.port())]).await;
    std::fs::write(&home.known_hosts, "").expect("empty known_hosts");
    home.write_config(&home.host_block("shell.foo.com", b.addr().port(), ""));
    let cfg = home.config.to_str().expect("utf-8");
    let target = echo.addr.to_string();
    let out = run(&home, &["-F", cfg, "--via", "shell.foo.com", &target]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(error_line(&out).contains("not known"), "{}", stderr(&out));

    // Known key, but the bastion does not accept our key.
    home.trust(b.addr().port(), b.host_key());
    let other = pgtunnel::demo::bastion::generate_key().expect("key");
    write_private_key(&other, &home.key_path);
    let out = run(&home, &["-F", cfg, "--via", "shell.foo.com", &target]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains("hop 1") && line.contains(USER),
        "names hop and user: {line}"
    );
    assert_eq!(echo.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_line_then_ctrl_c_exits_0() {
    let home = Home::new();
    let echo = Echo::start().await;
    let b = bastion(&home, &[("127.0.0.1", echo.addr.port())]).await;
    home.write_config(&home.host_block("shell.foo.com", b.addr().port(), ""));
    let cfg = home.config.to_str().expect("utf-8");
    let target = echo.addr.to_string();
    let mut child = command(&home)
        .args(["-F", cfg, "--via", "shell.foo.com", &target])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgtunnel");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut report = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if line.starts_with("ready: ") {
                return line;
            }
            report.push(line);
        }
        panic!("pgtunnel exited before it was ready: {report:?}");
    })
    .await
    .expect("ready within 30 s");

    // The path report names both segments and says which is encrypted.
    let report = report.join("\n");
    // Printed once the hop is up: it names what the hop negotiated (the in-process russh
    // bastion prefers mlkem768x25519, as pgtunnel does).
    assert!(
        report.contains(&format!(
            "SSH (encrypted: mlkem768x25519, {}; ed25519 host key)",
            support::default_cipher()
        )),
        "{report}"
    );
    assert!(!report.contains("post-quantum"), "{report}");
    // The target is the bastion's own loopback: that segment stays on the machine.
    assert!(
        report.contains("stays on shell.foo.com (loopback)"),
        "{report}"
    );
    assert!(!report.contains("NOT encrypted"), "{report}");
    // ready: 127.0.0.1:PORT -> TARGET ; connect with: psql "host=127.0.0.1 port=PORT"
    let addr: std::net::SocketAddr = ready
        .trim_start_matches("ready: ")
        .split_whitespace()
        .next()
        .expect("address")
        .parse()
        .expect("socket address");
    assert!(addr.ip().is_loopback());
    assert!(
        ready.contains(&format!("psql \"host=127.0.0.1 port={}\"", addr.port())),
        "{ready}"
    );
    echo_round_trip(addr, 1024 * 1024, 3).await;

    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after Ctrl-C")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_key_is_named() {
    let home = Home::new();
    let echo = Echo::start().await;
    let b = bastion(&home, &[("127.0.0.1", echo.addr.port())]).await;
    home.write_config(&home.host_block("shell.foo.com", b.addr().port(), ""));
    std::fs::write(&home.key_path, "this is not a key\n").expect("overwrite key");
    let cfg = home.config.to_str().expect("utf-8");
    let target = echo.addr.to_string();
    let out = run(&home, &["-F", cfg, "--via", "shell.foo.com", &target]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let text = stderr(&out);
    let key = home.key_path.display().to_string();
    assert!(text.contains(&key), "names the key file: {text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[tokio::test]
async fn explain_shows_each_hop_and_where_its_values_come_from() {
    let home = Home::new();
    home.write_config(
        "Host db\n  HostName 10.0.0.5\n  ProxyJump joe@shell:2222\nHost shell\n  HostName shell.example\n",
    );
    let cfg = home.config.to_str().expect("utf-8");
    let out = run(&home, &["explain", "-F", cfg, "--via", "db", "localhost"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("hop 1: joe@shell:2222 (from the ProxyJump of db)"),
        "{text}"
    );
    assert!(text.contains(&format!("{cfg}:5")), "{text}");
    assert!(text.contains("hop 2: db (from --via)"), "{text}");
    assert!(text.contains("db -> localhost:5432"), "{text}");
}

/// A keyword pgtunnel does not implement, with a value that changes what ssh does, for a hop
/// of the chain: explain and the tunnel refuse to start (exit 2), naming the file and line.
#[tokio::test]
async fn unsupported_keyword_for_a_hop_is_refused_with_its_line() {
    let home = Home::new();
    home.write_config(&format!(
        "{}Host other\n  KbdInteractiveDevices bsdauth\n",
        home.host_block("shell.foo.com", 2222, "  KbdInteractiveDevices pam")
    ));
    let cfg = home.config.to_str().expect("utf-8");
    for args in [
        vec!["explain", "-F", cfg, "--via", "shell.foo.com", "localhost"],
        vec!["-F", cfg, "--via", "shell.foo.com", "localhost"],
    ] {
        let out = run(&home, &args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let line = error_line(&out);
        assert!(
            line.contains(&format!("{cfg}:8: KbdInteractiveDevices is unsupported"))
                && line.contains("pgtunnel does not implement KbdInteractiveDevices yet"),
            "{args:?}: {line}"
        );
    }
    // A keyword nobody knows is refused too, with its line.
    home.write_config(&home.host_block("shell.foo.com", 2222, "  Frobnicate yes"));
    let out = run(
        &home,
        &["explain", "-F", cfg, "--via", "shell.foo.com", "db"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains(&format!("{cfg}:8: Bad configuration option: frobnicate")),
        "{line}"
    );
}

/// Keywords with no effect on a tunnel are accepted: explain lists them, the tunnel runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_applicable_keywords_are_accepted() {
    let home = Home::new();
    let echo = Echo::start().await;
    let b = bastion(&home, &[("127.0.0.1", echo.addr.port())]).await;
    home.write_config(&home.host_block(
        "shell.foo.com",
        b.addr().port(),
        "  RequestTTY yes\n  SendEnv LANG\n  Compression no",
    ));
    let cfg = home.config.to_str().expect("utf-8");
    let target = echo.addr.to_string();
    let out = run(
        &home,
        &["explain", "-F", cfg, "--via", "shell.foo.com", &target],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "ignored (not applicable to a tunnel): RequestTTY ({cfg}:8), SendEnv ({cfg}:9)"
        )),
        "{text}"
    );
    let mut tunnel =
        support::process::Pgtunnel::start(&home, &["-F", cfg, "--via", "shell.foo.com", &target])
            .await;
    echo_round_trip(tunnel.addr, 64 * 1024, 5).await;
    assert!(tunnel.running(), "{}", tunnel.stderr());
}
