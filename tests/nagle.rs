//! What keeps an inner sshd's Nagle from waiting on a delayed ACK (issue 13). sshd leaves
//! Nagle on for its client socket, so a second small packet waits for the TCP acknowledgement
//! of the first; for an inner hop that acknowledgement comes from the outer sshd, which
//! delays it (~40 ms) unless it has something to write to the inner one. pgtunnel gives it
//! something: a WINDOW_ADJUST right after small reads (russh patch part G), and an
//! SSH_MSG_IGNORE after the inner server's control packets (part H). Both are read from the
//! sshds' own logs, two real hops on loopback.

mod support;

use std::time::{Duration, Instant};

use support::sshd::{Sshd, SshdOptions, login_user};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every window adjustment `sshd` received, in bytes, from its log.
fn adjusts(sshd: &Sshd) -> Vec<u64> {
    sshd.log()
        .lines()
        .filter_map(|l| l.split("rcvd adjust ").nth(1))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// How many SSH_MSG_IGNORE `sshd` received (`LogLevel DEBUG3`).
fn ignores(sshd: &Sshd) -> usize {
    sshd.log().matches("Received SSH2_MSG_IGNORE").count()
}

fn sshd(ip: &str, permit: (String, u16), home: &Home) -> Sshd {
    Sshd::start_with(
        SshdOptions {
            ip: ip.parse().expect("ip"),
            authorized: vec![home.public()],
            permit_open: vec![permit],
            extra: "",
        },
        "LogLevel DEBUG3",
        &[],
    )
}

/// `shell` on 127.0.0.1, then `db` on 127.0.0.2, which may reach `echo`.
fn two_hops(home: &Home, echo: &Echo) -> (Sshd, Sshd) {
    let db = sshd("127.0.0.2", ("127.0.0.3".into(), echo.addr.port()), home);
    home.trust_addr(db.addr, &db.host_key);
    let shell = sshd("127.0.0.1", ("127.0.0.2".into(), db.addr.port()), home);
    home.trust_addr(shell.addr, &shell.host_key);
    let user = login_user();
    let mut config = home.block("shell", shell.addr, &user, "  BatchMode yes\n");
    config.push_str(&home.block("db", db.addr, &user, "  BatchMode yes\n"));
    home.write_config(&config);
    (shell, db)
}

/// Waits (bounded) until `done` holds.
async fn eventually(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn small_reads_are_acknowledged_at_once() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.3:0").await;
    let (shell, db) = two_hops(&home, &echo);
    let chain = home
        .chain(Some("shell,db"), &echo.addr.to_string())
        .expect("chain");
    let running = Running::start(&chain).await.expect("tunnel up");

    // Request/response: 100 bytes out, 100 back, five times. OpenSSH's thresholds alone
    // (half the window, or three packets) would adjust nothing for 500 bytes.
    let mut tcp = TcpStream::connect(running.addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    for i in 0..5u8 {
        tcp.write_all(&[i; 100]).await.expect("write");
        let mut back = [0u8; 100];
        tcp.read_exact(&mut back).await.expect("echo");
        assert_eq!(back, [i; 100]);
    }
    // sshd logs an adjustment when it reads it: wait for both (bounded).
    let small = |s: &Sshd| adjusts(s).iter().filter(|&&n| n <= 4096).count();
    eventually(|| small(&db) >= 5 && small(&shell) >= 1).await;
    // The inner channel: one adjustment per 100-byte answer; the outer channel carries the
    // inner session's packets, small too.
    assert!(small(&db) >= 5, "hop 2's adjustments: {:?}", adjusts(&db));
    assert!(
        small(&shell) >= 1,
        "hop 1's adjustments: {:?}",
        adjusts(&shell)
    );
    drop(tcp);
    running.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_inner_servers_control_packets_are_answered() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.3:0").await;
    let (shell, db) = two_hops(&home, &echo);
    let chain = home
        .chain(Some("shell,db"), &echo.addr.to_string())
        .expect("chain");
    let running = Running::start(&chain).await.expect("tunnel up");
    let before = ignores(&db);
    // Three connections, one after the other: each channel's confirmation, EOF and CLOSE
    // from the inner sshd are answered.
    for i in 0..3u64 {
        echo_round_trip(running.addr, 1000, i).await;
    }
    eventually(|| ignores(&db) >= before + 9).await;
    assert!(
        ignores(&db) >= before + 9,
        "IGNOREs at the inner sshd: {} before the connections, {} after",
        before,
        ignores(&db)
    );
    // Hop 1 is our own TCP connection, which acknowledges at once (TCP_QUICKACK): no
    // IGNOREs there.
    assert_eq!(ignores(&shell), 0, "IGNOREs at hop 1");
    running.stop().await;
}
