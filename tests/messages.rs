//! Issue 14, "messages that lead to the fix": each case as a user meets it, the binary run
//! as a process (its stderr and exit code asserted) or, for the channel-open race, the
//! library against a real `sshd`, 50 times.

mod support;

use std::process::Output;
use std::time::Duration;

use support::process::Pgtunnel;
use support::sshd::{Sshd, SshdOptions, login_user};
use support::*;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Keeps a failing hop from retrying for long.
const HOP_EXTRA: &str = "  ConnectTimeout 10\n  BatchMode yes\n";

async fn run(home: &Home, args: &[&str]) -> Output {
    let run = Command::from(support::process::clean_command(home.dir.path()))
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("pgtunnel finishes")
        .expect("run pgtunnel")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The last line of stderr: where the error must be, alone.
fn last_line(out: &Output) -> String {
    let text = stderr(out);
    assert!(!text.contains("panicked"), "panic: {text}");
    text.lines().last().unwrap_or_default().to_string()
}

fn cfg(home: &Home) -> &str {
    home.config.to_str().expect("utf-8 path")
}

/// An sshd on 127.0.0.1 accepting `home`'s key, permitting `permit` (none when empty),
/// `extra` last in its config (MaxStartups is one of the keywords whose last value wins).
fn sshd(home: &Home, permit: Vec<(String, u16)>, extra: &str) -> Sshd {
    let sshd = Sshd::start(SshdOptions {
        ip: "127.0.0.1".parse().expect("ip"),
        authorized: vec![home.public()],
        permit_open: permit,
        extra,
    });
    home.trust_addr(sshd.addr, &sshd.host_key);
    sshd
}

/// Item 1: the path report's suggestion keeps TARGET's alias, so that its HostName, Port and
/// User apply (`--via ...,10.0.0.5` would be port 22 as the local user).
#[tokio::test]
async fn the_suggested_hop_is_the_alias() {
    let home = Home::new();
    home.write_config(
        "Host db-prod\n  HostName 10.0.0.5\n  Port 2222\n  User dba\n  ProxyJump bastion,inner\n",
    );
    let out = run(&home, &["explain", "-F", cfg(&home), "db-prod"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("make db-prod a hop too")
            && stdout.contains("      pgtunnel --via bastion,inner,db-prod localhost:5432\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("inner,10.0.0.5"), "{stdout}");
}

/// Item 2: `pgtunnel bastion`, an alias without ProxyJump, most likely meant `--via bastion
/// localhost`.
#[tokio::test]
async fn a_target_alias_without_proxyjump_is_told_to_be_the_hop() {
    let home = Home::new();
    home.write_config("Host bastion\n  HostName 127.0.0.1\n  Port 2222\n");
    let out = run(&home, &["-F", cfg(&home), "bastion:6432"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        last_line(&out),
        "pgtunnel: no SSH hop for bastion:6432: bastion is an ssh_config alias without a \
         ProxyJump, so there is nothing to go through. To reach a service on bastion itself, \
         make it the hop: `pgtunnel --via bastion localhost:6432` (or `--via bastion \
         HOST:PORT` for one behind it)"
    );
    // A name that is no alias keeps the general advice, with the alias it is close to.
    let out = run(&home, &["-F", cfg(&home), "bastoin"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let line = last_line(&out);
    assert!(
        line.contains("give one with --via HOP")
            && line.ends_with(&format!(
                "(`bastoin` is not an alias in {} (closest: `bastion`))",
                cfg(&home)
            )),
        "{line}"
    );
}

/// Item 3: a hop name that does not resolve (`.invalid`, RFC 6761: never leaves the machine)
/// is the last line, alone, and says whether it is an alias, or which aliases are close.
#[tokio::test]
async fn a_hop_name_that_does_not_resolve_is_not_an_alias() {
    let home = Home::new();
    home.write_config("Host bastion.invalid\n  HostName 127.0.0.1\n  Port 1\n");
    for (via, note) in [
        (
            "nosuchhost.invalid",
            format!("`nosuchhost.invalid` is not an alias in {}", cfg(&home)),
        ),
        (
            "bastoin.invalid",
            format!(
                "`bastoin.invalid` is not an alias in {} (closest: `bastion.invalid`)",
                cfg(&home)
            ),
        ),
    ] {
        let out = run(&home, &["-F", cfg(&home), "--via", via, "localhost"]).await;
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
        let line = last_line(&out);
        assert!(
            line.starts_with(&format!(
                "pgtunnel: hop 1 ({via}:22): cannot resolve {via}: "
            )) && line.ends_with(&format!("; {note}")),
            "{line}"
        );
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(
            !all.contains("pg_hba") && !all.contains("NOT encrypted"),
            "{all}"
        );
    }
}

/// Item 3 for `pgtunnel check`: a chain that did not come up gets no path report (nor
/// pg_hba.conf advice); the failure is the last line.
#[tokio::test]
async fn check_puts_the_failure_last_and_alone() {
    let home = Home::new();
    home.write_config("Host bastion.invalid\n  HostName 127.0.0.1\n  Port 1\n");
    let args = [
        "check",
        "-F",
        cfg(&home),
        "--via",
        "bastoin.invalid",
        "localhost",
    ];
    let out = run(&home, &args).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("pg_hba") && !stdout.contains("SSH (encrypted)"),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("check failed: hop 1 (bastoin.invalid:22): cannot resolve")
            && last.ends_with("(closest: `bastion.invalid`)"),
        "{stdout}"
    );
}

/// Item 4: a ProxyCommand that cannot run is "the command failed", with its exit status and
/// the last line of its stderr, not "the server closed the connection".
#[tokio::test]
async fn a_failing_proxy_command_reports_its_status_and_stderr() {
    let home = Home::new();
    home.write_config(&format!(
        "Host db\n  ProxyCommand nc-not-there-xyz %h %p\n{HOP_EXTRA}"
    ));
    let out = run(&home, &["-F", cfg(&home), "--via", "db", "localhost"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let line = last_line(&out);
    assert!(
        line.starts_with(
            "pgtunnel: hop 1 (db:22): ProxyCommand `nc-not-there-xyz db 22`: the command \
             exited with status 127 before any SSH server answered through it; the last line \
             of its stderr: \""
        ) && line.ends_with("nc-not-there-xyz: not found\""),
        "{line}"
    );
    assert!(!line.contains("no SSH server there"), "{line}");
}

/// Item 5: a session that was up and is lost says how long it was up, and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_session_says_it_was_up_and_why() {
    let home = Home::new();
    let echo = Echo::start().await;
    let mut shell = sshd(&home, vec![("127.0.0.1".into(), echo.addr.port())], "");
    home.write_config(&home.block("shell", shell.addr, &login_user(), HOP_EXTRA));
    let target = echo.addr.to_string();
    let mut tunnel = Pgtunnel::start(
        &home,
        &[
            "-F",
            cfg(&home),
            "--no-reconnect",
            "--via",
            "shell",
            &target,
        ],
    )
    .await;
    shell.kill_all();
    let status = tunnel.wait(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(5), "{}", tunnel.stderr());
    let text = tunnel.stderr();
    let lost = text
        .lines()
        .find(|l| l.contains("lost the SSH session to hop 1 (shell,"))
        .unwrap_or_else(|| panic!("no loss reported: {text}"));
    // sshd killed: the kernel closes its socket, with a FIN, or a RST when something we sent
    // was still unread (the probe's channel close, a window adjustment): either is said.
    assert!(
        lost.contains(" s up: the other end closed the connection (EOF)")
            || lost.contains(
                " s up: the connection was reset (by the server or something on the way)"
            ),
        "{lost}"
    );
    assert!(!text.contains("during the handshake"), "{text}");
}

/// Item 6: the server's reason for refusing a channel is part of the message every time
/// (it raced the handler before russh patch part J): 50 fresh sessions, the same message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_channel_has_the_same_full_message_every_time() {
    let home = Home::new();
    let echo = Echo::start().await;
    let hop = sshd(&home, vec![("127.0.0.1".into(), echo.addr.port())], "");
    home.write_config(&home.block("hop", hop.addr, &login_user(), HOP_EXTRA));
    let chain = home.chain(Some("hop"), "127.0.0.1:1").expect("chain");
    let origin = "127.0.0.1:0".parse().expect("addr");
    for round in 0..50 {
        let sessions = pgtunnel::ssh::session::connect_chain(&chain, &options())
            .await
            .expect("connect");
        let last = sessions.last().expect("a session");
        let refused = last
            .open_channel_to(&chain.target, origin)
            .await
            .map(|_| ())
            .expect_err("PermitOpen refuses 127.0.0.1:1");
        assert_eq!(
            pgtunnel::error::chain_of(&refused),
            "administratively prohibited (open failed)",
            "round {round}"
        );
        sessions.disconnect().await;
    }
}

/// Item 7: a refusal by a hop's policy says what the server said, and the hop that said it
/// comes first: PermitOpen on the hop before, and sshd's MaxStartups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_policy_names_the_hop_that_said_it() {
    let home = Home::new();
    // PermitOpen none: hop 1 refuses to forward to hop 2.
    let shell = sshd(&home, Vec::new(), "");
    let user = login_user();
    home.write_config(&format!(
        "{}Host inner\n  HostName 127.0.0.1\n  Port 1\n",
        home.block("shell", shell.addr, &user, HOP_EXTRA)
    ));
    let out = run(
        &home,
        &["-F", cfg(&home), "--via", "shell,inner", "localhost"],
    )
    .await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(
        last_line(&out),
        format!(
            "pgtunnel: hop 1 (shell, {}) refused to forward to hop 2 (inner, 127.0.0.1:1): \
             administratively prohibited (open failed). Its SSH server does not allow \
             forwarding there (its PermitOpen, AllowTcpForwarding or a Match block): ask its \
             admin, or check this hop's HostName and Port",
            shell.addr
        )
    );

    // MaxStartups 1, and one connection waiting to log in: sshd turns the next one away.
    let busy = sshd(&home, Vec::new(), "MaxStartups 1");
    home.write_config(&home.block("busy", busy.addr, &user, HOP_EXTRA));
    // (sshd may still count the connection its start was checked with: then it turns this
    // one away too, and it tries again.)
    let mut waiting = None;
    for _ in 0..100 {
        let mut tcp = tokio::net::TcpStream::connect(busy.addr)
            .await
            .expect("connect");
        let mut banner = [0u8; 4];
        if tcp.read_exact(&mut banner).await.is_ok() && &banner == b"SSH-" {
            waiting = Some(tcp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waiting = waiting.expect("sshd lets one connection wait to log in");
    let out = run(&home, &["-F", cfg(&home), "--via", "busy", "localhost"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(
        last_line(&out),
        format!(
            "pgtunnel: hop 1 (busy, {}): the SSH server refused the connection: it said \
             \"Exceeded MaxStartups\" (its MaxStartups limit: too many connections are \
             waiting to log in; try again in a moment, or ask its admin to raise MaxStartups)",
            busy.addr
        )
    );
    drop(waiting);
}
