//! Hostile and broken peers: "SSH servers" on loopback that send garbage instead of a banner,
//! close in the middle of the key exchange, say nothing at all, or send an endless line or an
//! enormous banner — as hop 1 and as hop 2 (behind an in-process bastion whose allow-list
//! permits them). Each gives one clear error naming the hop within ConnectTimeout (2 s here),
//! never a hang and never a panic, from the library and from the binary (exit code 5). And on
//! the accepting side: local clients that connect and say nothing, or reset at once, do not
//! disturb the other connections.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Mutex, Once};
use std::time::Duration;

use pgtunnel::error::ErrorKind;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::timeout;

/// Bounds every wait: no test asserts a timing, but none may hang.
const LIMIT: Duration = Duration::from_secs(30);
/// Set on the hostile hop in every test's ssh_config.
const CONNECT_TIMEOUT: &str = "  ConnectTimeout 2\n";

/// The threads on which a panic happened. `#[tokio::test]` runs the test and every task it
/// (or the library) spawns on the test's own thread, and a task's panic would not fail the
/// test by itself: each test checks that its thread saw none.
static PANICKED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(mut threads) = PANICKED.lock() {
                threads.push(std::thread::current().name().unwrap_or("?").to_string());
            }
            default(info);
        }));
    });
}

fn assert_no_panic() {
    let me = std::thread::current().name().unwrap_or("?").to_string();
    let threads = PANICKED.lock().map(|t| t.clone()).unwrap_or_default();
    assert!(!threads.contains(&me), "a task of this test panicked");
}

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Answers like an HTTP server: reads the client's first bytes, sends a 400, closes.
    Http,
    /// A valid banner and KEXINIT, then closes once the client's KEXINIT arrives.
    CloseAfterKexinit,
    /// Accepts the connection, reads everything, says nothing.
    Silent,
    /// An endless line without a newline (stops at 16 MiB or when the client goes away).
    EndlessLine,
    /// `SSH-2.0-` followed by 100 000 bytes, then CR LF.
    HugeBanner,
}

/// A fake "SSH server" on 127.0.0.1 that behaves as told on every connection.
struct Fake {
    addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl Fake {
    async fn start(behaviour: Behaviour) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let addr = listener.local_addr().expect("fake addr");
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                conns.spawn(serve(tcp, behaviour));
            }
        });
        Fake { addr, tasks }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn serve(mut tcp: TcpStream, behaviour: Behaviour) {
    let mut buf = vec![0u8; 4096];
    match behaviour {
        Behaviour::Http => {
            let _ = timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
            let _ = tcp
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
                      Connection: close\r\n\r\nBad Request",
                )
                .await;
        }
        Behaviour::CloseAfterKexinit => {
            let mut hello = b"SSH-2.0-Fake_1.0\r\n".to_vec();
            hello.extend(kexinit_packet());
            let _ = tcp.write_all(&hello).await;
            // The client's banner, then its KEXINIT: read until both arrived (or 5 s).
            let mut got = 0;
            let _ = timeout(Duration::from_secs(5), async {
                while got < 300 {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
            })
            .await;
        }
        Behaviour::Silent => {
            // Until the client goes away (or the test drops the fake).
            while let Ok(n) = tcp.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        }
        Behaviour::EndlessLine => {
            let block = vec![b'x'; 64 * 1024];
            for _ in 0..256 {
                if tcp.write_all(&block).await.is_err() {
                    break;
                }
            }
        }
        Behaviour::HugeBanner => {
            let mut banner = b"SSH-2.0-".to_vec();
            banner.extend(std::iter::repeat_n(b'A', 100_000));
            banner.extend(b"\r\n");
            let _ = tcp.write_all(&banner).await;
            let _ = timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
        }
    }
}

/// A well-formed SSH_MSG_KEXINIT binary packet (RFC 4253 §7.1), unencrypted.
fn kexinit_packet() -> Vec<u8> {
    let mut payload = vec![20u8];
    payload.extend([7u8; 16]);
    for list in [
        "curve25519-sha256",
        "ssh-ed25519",
        "aes128-ctr",
        "aes128-ctr",
        "hmac-sha2-256",
        "hmac-sha2-256",
        "none",
        "none",
        "",
        "",
    ] {
        payload.extend(u32::try_from(list.len()).expect("short").to_be_bytes());
        payload.extend(list.as_bytes());
    }
    payload.push(0);
    payload.extend(0u32.to_be_bytes());
    let mut padding = 8 - (5 + payload.len()) % 8;
    if padding < 4 {
        padding += 8;
    }
    let length = u32::try_from(1 + payload.len() + padding).expect("short");
    let mut packet = length.to_be_bytes().to_vec();
    packet.push(u8::try_from(padding).expect("small"));
    packet.extend(payload);
    packet.extend(std::iter::repeat_n(0u8, padding));
    packet
}

/// What a user should read for each behaviour (after the hop's name).
fn expected(behaviour: Behaviour) -> &'static str {
    match behaviour {
        Behaviour::Http => "the server did not speak SSH (it sent \"HTTP/1.1 400 Bad Request\"...)",
        Behaviour::CloseAfterKexinit => {
            "the server (\"SSH-2.0-Fake_1.0\") closed the connection during the key exchange"
        }
        Behaviour::Silent => {
            "no SSH session within 2s (ConnectTimeout): the server accepted the connection but \
             sent nothing"
        }
        Behaviour::EndlessLine => {
            "the server did not speak SSH (it sent more than 255 bytes without a line end: \
             \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"...)"
        }
        Behaviour::HugeBanner => {
            "the server's SSH identification line is longer than 255 bytes (it sent \
             \"SSH-2.0-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"...)"
        }
    }
}

/// The fake as hop `hop` (1: directly; 2: behind a bastion allowed to reach it only). Returns
/// the error line the library gives, checked to name the hop.
async fn library_error(behaviour: Behaviour, hop: usize) -> String {
    count_panics();
    let home = Home::new();
    let fake = Fake::start(behaviour).await;
    let _bastion;
    let via = if hop == 1 {
        home.write_config(&home.host_block("fake", fake.addr.port(), CONNECT_TIMEOUT));
        "fake"
    } else {
        let b = bastion(&home, &[("127.0.0.1", fake.addr.port())]).await;
        home.write_config(&format!(
            "{}{}",
            home.host_block("shell", b.addr().port(), ""),
            home.host_block("fake", fake.addr.port(), CONNECT_TIMEOUT)
        ));
        _bastion = b;
        "shell,fake"
    };
    let chain = home.chain(Some(via), "127.0.0.1:5432").expect("chain");
    let result = timeout(
        LIMIT,
        pgtunnel::ssh::session::connect_chain(&chain, &options()),
    )
    .await
    .unwrap_or_else(|_| panic!("{behaviour:?} as hop {hop}: connect_chain hung"));
    let err = result.expect_err("a hostile hop must fail");
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert_eq!(err.hop().map(|h| h.index), Some(hop), "{err}");
    let text = err.to_string();
    let prefix = format!("hop {hop} (fake, 127.0.0.1:{}): ", fake.addr.port());
    assert!(text.starts_with(&prefix), "{behaviour:?}: {text}");
    assert_no_panic();
    text
}

async fn check(behaviour: Behaviour, hop: usize) {
    let text = library_error(behaviour, hop).await;
    let message = text.split_once("): ").map(|(_, m)| m).unwrap_or(&text);
    assert_eq!(message, expected(behaviour), "{behaviour:?} as hop {hop}");
}

#[tokio::test]
async fn hop_1_sends_http_instead_of_ssh() {
    check(Behaviour::Http, 1).await;
}

#[tokio::test]
async fn hop_2_sends_http_instead_of_ssh() {
    check(Behaviour::Http, 2).await;
}

#[tokio::test]
async fn hop_1_closes_after_kexinit() {
    check(Behaviour::CloseAfterKexinit, 1).await;
}

#[tokio::test]
async fn hop_2_closes_after_kexinit() {
    check(Behaviour::CloseAfterKexinit, 2).await;
}

#[tokio::test]
async fn hop_1_says_nothing() {
    check(Behaviour::Silent, 1).await;
}

#[tokio::test]
async fn hop_2_says_nothing() {
    check(Behaviour::Silent, 2).await;
}

#[tokio::test]
async fn hop_1_sends_an_endless_line() {
    check(Behaviour::EndlessLine, 1).await;
}

#[tokio::test]
async fn hop_2_sends_an_endless_line() {
    check(Behaviour::EndlessLine, 2).await;
}

#[tokio::test]
async fn hop_1_sends_an_enormous_banner() {
    check(Behaviour::HugeBanner, 1).await;
}

#[tokio::test]
async fn hop_2_sends_an_enormous_banner() {
    check(Behaviour::HugeBanner, 2).await;
}

/// A peer that closes without a byte, and one that writes control characters: the message
/// says so, and escapes what the peer sent.
#[tokio::test]
async fn a_peer_that_closes_at_once_or_sends_terminal_escapes() {
    count_panics();
    for (sends, expect) in [
        (
            &b""[..],
            "the server closed the connection without sending anything (no SSH server there?)",
        ),
        (
            &b"\x1b[2J\x1b]0;owned\x07 hi\x00\r\n"[..],
            "the server did not speak SSH (it sent \"\\u{1b}[2J\\u{1b}]0;owned\\u{7} hi\\0\")",
        ),
    ] {
        let home = Home::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let peer = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let _ = tcp.write_all(sends).await;
            let _ = tcp.shutdown().await;
            // Let the client read it all before the socket goes.
            let mut buf = [0u8; 1024];
            let _ = timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
        });
        home.write_config(&home.host_block("fake", port, CONNECT_TIMEOUT));
        let chain = home.chain(Some("fake"), "127.0.0.1:5432").expect("chain");
        let err = timeout(
            LIMIT,
            pgtunnel::ssh::session::connect_chain(&chain, &options()),
        )
        .await
        .expect("connect_chain hung")
        .expect_err("must fail");
        assert_eq!(
            err.to_string(),
            format!("hop 1 (fake, 127.0.0.1:{port}): {expect}")
        );
        peer.abort();
    }
    assert_no_panic();
}

/// The binary: exit code 5 and one line naming the hop, for a garbage hop 1 and for a silent
/// hop 2 (the ConnectTimeout path).
#[tokio::test]
async fn the_binary_says_one_clear_line_and_exits_5() {
    for (behaviour, hop) in [(Behaviour::Http, 1), (Behaviour::Silent, 2)] {
        let home = Home::new();
        let fake = Fake::start(behaviour).await;
        let b = bastion(&home, &[("127.0.0.1", fake.addr.port())]).await;
        home.write_config(&format!(
            "{}{}",
            home.host_block("shell", b.addr().port(), ""),
            home.host_block("fake", fake.addr.port(), CONNECT_TIMEOUT)
        ));
        let via = if hop == 1 { "fake" } else { "shell,fake" };
        let config = home.config.to_string_lossy().into_owned();
        let out = timeout(
            LIMIT,
            tokio::process::Command::new(process::BIN)
                .args(["-F", &config, "--via", via, "127.0.0.1:5432"])
                .env_clear()
                .env("HOME", home.dir.path())
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("USER", "localuser")
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("pgtunnel exits")
        .expect("run pgtunnel");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{behaviour:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        // Progress lines (`pgtunnel: hop ...`, to stderr without a terminal), then the error:
        // one line, last.
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let expect = format!(
            "pgtunnel: hop {hop} (fake, 127.0.0.1:{}): {}",
            fake.addr.port(),
            expected(behaviour)
        );
        assert_eq!(
            lines.last(),
            Some(&expect.as_str()),
            "{behaviour:?}: {stderr}"
        );
        for line in &lines[..lines.len() - 1] {
            assert!(
                line.starts_with("pgtunnel: hop "),
                "{behaviour:?}: {stderr}"
            );
        }
    }
}

/// Local clients that connect and send nothing, or reset at once, do not disturb the others.
#[tokio::test]
async fn idle_and_resetting_local_clients_do_not_disturb_others() {
    count_panics();
    let home = Home::new();
    let echo = Echo::start().await;
    let b = bastion(&home, &[("127.0.0.1", echo.addr.port())]).await;
    home.write_config(&home.host_block("shell", b.addr().port(), ""));
    let chain = home
        .chain(Some("shell"), &echo.addr.to_string())
        .expect("chain");
    let running = Running::start(&chain).await.expect("tunnel up");

    // Idle clients that keep their connections open and say nothing.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(
            TcpStream::connect(running.addr)
                .await
                .expect("connect idle"),
        );
    }
    // Clients that reset at once (SO_LINGER 0: close sends RST), and ones that close cleanly.
    for i in 0..50 {
        let tcp = TcpStream::connect(running.addr).await.expect("connect");
        if i % 2 == 0 {
            tcp.set_zero_linger().expect("linger 0");
        }
        drop(tcp);
    }
    // Meanwhile, and afterwards, ordinary connections work.
    let mut work = JoinSet::new();
    for seed in 0..8u64 {
        let addr = running.addr;
        work.spawn(async move { echo_round_trip(addr, 256 * 1024, seed).await });
    }
    while let Some(done) = timeout(LIMIT, work.join_next())
        .await
        .expect("round trips finish")
    {
        done.expect("round trip");
    }
    // The idle ones still hold working channels: one of them speaks now.
    let mut first = idle.remove(0);
    first.write_all(b"still here").await.expect("write");
    let mut back = [0u8; 10];
    timeout(LIMIT, first.read_exact(&mut back))
        .await
        .expect("idle connection answers")
        .expect("read");
    assert_eq!(&back, b"still here");
    drop(idle);
    assert!(!running.task.is_finished(), "the tunnel stopped");
    running.stop().await;
    assert_no_panic();
}
