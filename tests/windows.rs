//! Channel windows follow the path's round-trip time (issue 13): on a slow path the windows
//! that pgtunnel grants grow beyond the 2 MiB default, on the outer channel (hop 1's, which
//! carries hop 2's session) and the inner one (hop 2's, to the target) alike; on loopback
//! they stay at 2 MiB. What was granted is read from each sshd's own log (`LogLevel DEBUG2`:
//! `channel N: rcvd adjust BYTES`). The slow path is a delaying TCP relay in front of hop 1
//! (on loopback), which delays every chunk by the same time each way.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::sshd::{Sshd, login_user};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const MIB: usize = 1024 * 1024;

/// A TCP relay to `to` that delays everything by `one_way` in each direction, keeping order
/// and half-closes. It buffers what it holds (bounded here by the SSH windows).
async fn delay_relay(to: SocketAddr, one_way: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let addr = listener.local_addr().expect("relay addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(to).await else {
                continue;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(delayed(cr, sw, one_way));
            tokio::spawn(delayed(sr, cw, one_way));
        }
    });
    addr
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).await.unwrap_or(0);
            // An empty chunk is the end.
            if tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
                || n == 0
            {
                return;
            }
        }
    });
    while let Some((due, chunk)) = rx.recv().await {
        tokio::time::sleep_until(due.into()).await;
        if chunk.is_empty() || to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Through `shell` (at `shell_addr`, direct or through the relay) then `db`: 24 MiB each
/// way; the largest adjustment each sshd received meanwhile.
async fn largest_grants(
    home: &Home,
    (shell, shell_addr): (&Sshd, SocketAddr),
    db: &Sshd,
    target: &str,
) -> (u64, u64) {
    let user = login_user();
    home.trust_addr(shell_addr, &shell.host_key);
    let mut config = home.block("shell", shell_addr, &user, "  BatchMode yes\n");
    config.push_str(&home.block("db", db.addr, &user, "  BatchMode yes\n"));
    home.write_config(&config);
    let (shell_before, db_before) = (shell.window_adjusts().len(), db.window_adjusts().len());
    let chain = home.chain(Some("shell,db"), target).expect("chain");
    assert_eq!(chain.hops.len(), 2);
    let running = Running::start(&chain).await.expect("tunnel up");
    echo_round_trip(running.addr, 24 * MIB, 5).await;
    running.stop().await;
    let max_after = |all: Vec<u64>, from: usize| all[from..].iter().copied().max().unwrap_or(0);
    (
        max_after(shell.window_adjusts(), shell_before),
        max_after(db.window_adjusts(), db_before),
    )
}

#[tokio::test(flavor = "current_thread")]
async fn windows_grow_on_a_busy_fast_path_and_further_on_a_slow_one() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.3:0").await;
    let db = Sshd::logging(
        &home,
        "127.0.0.2",
        ("127.0.0.3".into(), echo.addr.port()),
        "DEBUG2",
    );
    home.trust_addr(db.addr, &db.host_key);
    let shell = Sshd::logging(
        &home,
        "127.0.0.1",
        ("127.0.0.2".into(), db.addr.port()),
        "DEBUG2",
    );

    // Loopback: both windows grow beyond 2 MiB while the data streams (the scheduler's
    // round trip, 20 ms), to 8 MiB at most.
    let target = echo.addr.to_string();
    let (outer, inner) = largest_grants(&home, (&shell, shell.addr), &db, &target).await;
    let (two, eight) = (2 * MIB as u64, 8 * MIB as u64);
    assert!(
        outer > two && inner > two && outer <= eight && inner <= eight,
        "fast path: largest adjustments {outer} (outer) / {inner} (inner), want 2..=8 MiB"
    );

    // 50 ms round trips to hop 1: both channels' windows grow beyond that.
    let relay = delay_relay(shell.addr, Duration::from_millis(25)).await;
    let (outer, inner) = largest_grants(&home, (&shell, relay), &db, &target).await;
    assert!(
        outer > eight && inner > eight,
        "slow path: largest adjustments {outer} (outer) / {inner} (inner), want > 8 MiB"
    );
}

/// A TCP relay to `to` that stops passing what `to` sends for 300 ms once 64 KiB have
/// passed (past the handshake, into the transfer), then passes it at once; the other way
/// goes at once throughout. Its 32 KiB receive buffer keeps the kernel from taking up what
/// `to` sends meanwhile: `to`'s output backs up, as it does towards a busy client, however
/// fast or loaded the machine.
async fn stalling_relay(to: SocketAddr) -> SocketAddr {
    const STALL_AFTER: usize = 64 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let addr = listener.local_addr().expect("relay addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.set_recv_buffer_size(32 * 1024).expect("SO_RCVBUF");
            let Ok(server) = socket.connect(to).await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
            tokio::spawn(async move {
                let (mut buf, mut passed, mut stalled) = (vec![0u8; 32 * 1024], 0, false);
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    passed += n;
                    if passed >= STALL_AFTER && !stalled {
                        stalled = true;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
                let _ = cw.shutdown().await;
            });
        }
    });
    addr
}

/// The channels pgtunnel opens announce a 64 KiB maximum packet (OpenSSH's own are 32 KiB),
/// and sshd fills it when its output backs up (it then goes on reading the target into the
/// channel's buffer): a download arrives in CHANNEL_DATA messages above 32 KiB, fewer
/// packets for every process on the path to handle. sshd's output to us is held up by a
/// relay, as a busy machine's is.
#[tokio::test(flavor = "current_thread")]
async fn sshd_sends_packets_of_up_to_64_kib() {
    const SENT: usize = 16 * MIB;
    let home = Home::new();
    let source = TcpListener::bind("127.0.0.1:0").await.expect("bind source");
    let port = source.local_addr().expect("source addr").port();
    tokio::spawn(async move {
        let (mut conn, _) = source.accept().await.expect("accept");
        conn.write_all(&pattern(SENT, 3)).await.expect("send");
        let _ = conn.shutdown().await;
    });
    let hop = Sshd::logging(&home, "127.0.0.1", ("127.0.0.1".into(), port), "DEBUG1");
    let relay = stalling_relay(hop.addr).await;
    home.trust_addr(relay, &hop.host_key);
    let user = login_user();
    home.write_config(&home.block("hop", relay, &user, "  BatchMode yes\n"));
    let chain = home
        .chain(Some("hop"), &format!("127.0.0.1:{port}"))
        .expect("chain");
    let sessions = pgtunnel::ssh::session::connect_chain(&chain, &options())
        .await
        .expect("connect");
    let origin = "127.0.0.1:0".parse().expect("addr");
    let mut channel = sessions
        .last()
        .expect("a session")
        .open_channel_to(&chain.target, origin)
        .await
        .expect("channel");
    let (mut got, mut largest) = (Vec::with_capacity(SENT), 0);
    while let Some(msg) = channel.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } => {
                largest = largest.max(data.len());
                got.extend_from_slice(&data);
            }
            russh::ChannelMsg::Eof | russh::ChannelMsg::Close => break,
            _ => {}
        }
    }
    sessions.disconnect().await;
    assert!(got == pattern(SENT, 3), "the data arrived intact");
    assert!(
        hop.log().contains("max 65535"),
        "sshd saw the announced maximum: {}",
        hop.log()
    );
    assert!(
        (32 * 1024 + 1..=65535).contains(&largest),
        "largest message {largest} bytes"
    );
}
