//! What keeps an inner sshd's Nagle from waiting on a delayed ACK (issue 13). sshd leaves
//! Nagle on for its client socket, so a second small packet waits for the TCP acknowledgement
//! of the first; for an inner hop that acknowledgement comes from the outer sshd, which
//! delays it (~40 ms) unless it has something to write to the inner one. pgtunnel gives it
//! something: an SSH_MSG_IGNORE when a packet from the inner server is not followed by one
//! of ours within a millisecond (russh patch part H). Read from the sshds' own logs
//! (`LogLevel DEBUG3`), two real hops on loopback.

mod support;

use std::time::{Duration, Instant};

use support::sshd::{Sshd, login_user};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How many SSH_MSG_IGNORE `sshd` received (`LogLevel DEBUG3`).
fn ignores(sshd: &Sshd) -> usize {
    sshd.log().matches("Received SSH2_MSG_IGNORE").count()
}

/// `shell` on 127.0.0.1, then `db` on 127.0.0.2, which may reach `echo`.
fn two_hops(home: &Home, echo: &Echo) -> (Sshd, Sshd) {
    let db = Sshd::logging(
        home,
        "127.0.0.2",
        ("127.0.0.3".into(), echo.addr.port()),
        "DEBUG3",
    );
    home.trust_addr(db.addr, &db.host_key);
    let shell = Sshd::logging(
        home,
        "127.0.0.1",
        ("127.0.0.2".into(), db.addr.port()),
        "DEBUG3",
    );
    home.trust_addr(shell.addr, &shell.host_key);
    let user = login_user();
    let mut config = home.block("shell", shell.addr, &user, "  BatchMode yes\n");
    config.push_str(&home.block("db", db.addr, &user, "  BatchMode yes\n"));
    home.write_config(&config);
    (shell, db)
}

/// A tunnel through [`two_hops`] to an echo.
struct Lab {
    _home: Home,
    _echo: Echo,
    shell: Sshd,
    db: Sshd,
    running: Running,
}

impl Lab {
    async fn start() -> Lab {
        let home = Home::new();
        let echo = Echo::start_on("127.0.0.3:0").await;
        let (shell, db) = two_hops(&home, &echo);
        let chain = home
            .chain(Some("shell,db"), &echo.addr.to_string())
            .expect("chain");
        let running = Running::start(&chain).await.expect("tunnel up");
        Lab {
            _home: home,
            _echo: echo,
            shell,
            db,
            running,
        }
    }
}

/// Waits (bounded) until `done` holds.
async fn eventually(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_answer_we_do_not_follow_up_is_acknowledged() {
    // Every field bound: the home and the echo live as long as the test.
    let Lab {
        _home,
        _echo,
        shell,
        db,
        running,
    } = Lab::start().await;
    let mut tcp = TcpStream::connect(running.addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    // Wait for the connection's own packets to settle, then: 100 bytes out, 100 back, and
    // nothing more for a while, five times. Each answer gets an IGNORE back (not a window
    // adjustment: 500 bytes are far below OpenSSH's thresholds).
    echo_byte(&mut tcp, 9).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = ignores(&db);
    for i in 0..5u8 {
        tcp.write_all(&[i; 100]).await.expect("write");
        let mut back = [0u8; 100];
        tcp.read_exact(&mut back).await.expect("echo");
        assert_eq!(back, [i; 100]);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    eventually(|| ignores(&db) >= before + 5).await;
    assert!(
        ignores(&db) >= before + 5,
        "IGNOREs at the inner sshd: {before} before the answers, {} after",
        ignores(&db)
    );
    assert!(
        db.window_adjusts().iter().all(|&n| n > 4096),
        "no small window adjustments: {:?}",
        db.window_adjusts()
    );
    assert_eq!(ignores(&shell), 0, "IGNOREs at hop 1");
    drop(tcp);
    running.stop().await;
}

/// One byte through `tcp` and back.
async fn echo_byte(tcp: &mut TcpStream, b: u8) {
    tcp.write_all(&[b]).await.expect("write");
    let mut back = [0u8; 1];
    tcp.read_exact(&mut back).await.expect("echo");
    assert_eq!(back, [b]);
}

#[tokio::test(flavor = "current_thread")]
async fn the_inner_servers_control_packets_are_answered() {
    // Every field bound: the home and the echo live as long as the test.
    let Lab {
        _home,
        _echo,
        shell,
        db,
        running,
    } = Lab::start().await;
    let before = ignores(&db);
    // Three connections, one after the other: the inner sshd's CLOSE, after which we have
    // nothing to send, is answered each time.
    for i in 0..3u64 {
        echo_round_trip(running.addr, 1000, i).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    eventually(|| ignores(&db) >= before + 3).await;
    assert!(
        ignores(&db) >= before + 3,
        "IGNOREs at the inner sshd: {} before the connections, {} after",
        before,
        ignores(&db)
    );
    // Hop 1 is our own TCP connection, which acknowledges at once (TCP_QUICKACK): no
    // IGNOREs there.
    assert_eq!(ignores(&shell), 0, "IGNOREs at hop 1");
    running.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_that_speaks_first_answers_the_confirmation_itself() {
    // Every field bound: the home and the echo live as long as the test.
    let Lab {
        _home,
        _echo,
        shell,
        db,
        running,
    } = Lab::start().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = ignores(&db);
    // The client writes before the channel is open, as a PostgreSQL client does: its bytes
    // go out right after the inner sshd's confirmation, and acknowledge it, so no IGNORE
    // answers the confirmation. The echo is the one answer left unanswered (the connection
    // stays open: no EOF or CLOSE to answer).
    let mut tcp = TcpStream::connect(running.addr).await.expect("connect");
    tcp.write_all(&[7; 100]).await.expect("write");
    let mut back = [0u8; 100];
    tcp.read_exact(&mut back).await.expect("echo");
    assert_eq!(back, [7; 100]);
    eventually(|| ignores(&db) > before).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        ignores(&db),
        before + 1,
        "IGNOREs at the inner sshd for one connection whose client spoke first \
         (one for the echo; one more would answer the confirmation)"
    );
    assert_eq!(ignores(&shell), 0, "IGNOREs at hop 1");
    drop(tcp);
    running.stop().await;
}
