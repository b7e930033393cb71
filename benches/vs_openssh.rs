//! pgtunnel versus OpenSSH (`ssh -N -J shell -L …`) through the same two real `sshd` hops on
//! loopback, in the same run, alternating rounds; reports medians and the ratio
//! pgtunnel / OpenSSH for each workload. Machines here are noisy: read the ratios, not the
//! absolute times.
//!
//!     cargo bench --bench vs_openssh            # default: 5 rounds
//!     BENCH_ROUNDS=9 cargo bench --bench vs_openssh
//!
//! Needs `sshd` and `ssh` (scripts/test installs them). Traffic stays on 127.0.0.0/8.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::sshd::{ManualHops, login_user};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

async fn wait_listening(addr: SocketAddr, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} not listening on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One connection, `len` bytes each way.
async fn bulk(addr: SocketAddr, len: usize) -> Duration {
    let t = Instant::now();
    echo_round_trip(addr, len, 11).await;
    t.elapsed()
}

/// `n` connections one after the other, each a 64-byte round trip.
async fn sequential(addr: SocketAddr, n: usize) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        tcp.write_all(&[7u8; 64]).await.expect("write");
        let mut buf = [0u8; 64];
        tcp.read_exact(&mut buf).await.expect("read");
        assert_eq!(buf, [7u8; 64]);
    }
    t.elapsed()
}

/// `n` connections one after the other, each sending 512 bytes, half-closing, and reading
/// the echo to the end: the close path (EOF each way, channel close) is on the clock too.
async fn sequential_half_close(addr: SocketAddr, n: usize) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        tcp.write_all(&[9u8; 512]).await.expect("write");
        tcp.shutdown().await.expect("half-close");
        let mut back = Vec::new();
        tcp.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, [9u8; 512]);
    }
    t.elapsed()
}

/// `n` concurrent connections, `len` bytes each way.
async fn parallel(addr: SocketAddr, n: usize, len: usize) -> Duration {
    let t = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(echo_round_trip(addr, len, i as u64 + 1)))
        .collect();
    for task in tasks {
        task.await.expect("connection");
    }
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .clamp(1, 50);
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.3:0").await;
    let ManualHops { shell, db } = ManualHops::start(&home, ("127.0.0.3", echo.addr.port()));
    let user = login_user();
    let mut config = home.block("shell", shell.addr, &user, "  BatchMode yes\n");
    config.push_str(&home.block("db", db.addr, &user, "  BatchMode yes\n"));
    home.write_config(&config);
    let cfg = home.config.to_str().expect("utf-8 path").to_string();
    let target = echo.addr.to_string();

    // pgtunnel
    let pg_port = free_port();
    let mut pg = Command::new(env!("CARGO_BIN_EXE_pgtunnel"))
        .args(["-q", "-F", &cfg, "--via", "shell,db", "-L"])
        .arg(format!("127.0.0.1:{pg_port}"))
        .arg(&target)
        .env("HOME", home.dir.path())
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start pgtunnel");
    let pg_addr: SocketAddr = format!("127.0.0.1:{pg_port}").parse().expect("addr");
    wait_listening(pg_addr, "pgtunnel", &mut pg).await;
    let _pg = Proc(pg);

    // OpenSSH
    let ssh_port = free_port();
    let mut ssh = Command::new("ssh")
        .args([
            "-F",
            &cfg,
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-J",
            "shell",
            "-L",
        ])
        .arg(format!("127.0.0.1:{ssh_port}:{target}"))
        .arg("db")
        .env("HOME", home.dir.path())
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .spawn()
        .expect("start ssh (install openssh-client)");
    let ssh_addr: SocketAddr = format!("127.0.0.1:{ssh_port}").parse().expect("addr");
    wait_listening(ssh_addr, "ssh", &mut ssh).await;
    let _ssh = Proc(ssh);

    // Warm-up, and proof both paths work.
    bulk(pg_addr, MIB).await;
    bulk(ssh_addr, MIB).await;

    type Workload = (&'static str, Box<dyn Fn(SocketAddr) -> futures_like::Fut>);
    let workloads: Vec<Workload> = vec![
        (
            "1 connection, 128 MiB each way",
            Box::new(|a| Box::pin(bulk(a, 128 * MIB))),
        ),
        (
            "200 sequential connections, 64 B round trip",
            Box::new(|a| Box::pin(sequential(a, 200))),
        ),
        (
            "50 sequential, 512 B + half-close, read to EOF",
            Box::new(|a| Box::pin(sequential_half_close(a, 50))),
        ),
        (
            "32 parallel connections, 4 MiB each way",
            Box::new(|a| Box::pin(parallel(a, 32, 4 * MIB))),
        ),
    ];
    println!("pgtunnel vs OpenSSH {rounds} rounds, 2 hops (sshd on 127.0.0.1 and 127.0.0.2)");
    for (name, run) in &workloads {
        let (mut p, mut o) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate who goes first so drift affects both alike.
            if round % 2 == 0 {
                p.push(run(pg_addr).await);
                o.push(run(ssh_addr).await);
            } else {
                o.push(run(ssh_addr).await);
                p.push(run(pg_addr).await);
            }
        }
        let (p, o) = (median(p), median(o));
        println!(
            "{name:48} pgtunnel {:>8.3}s  ssh {:>8.3}s  ratio {:.2}",
            p.as_secs_f64(),
            o.as_secs_f64(),
            p.as_secs_f64() / o.as_secs_f64()
        );
    }
    println!("(ratio < 1: pgtunnel faster; medians of {rounds} rounds)");
}

mod futures_like {
    pub type Fut = std::pin::Pin<Box<dyn std::future::Future<Output = std::time::Duration>>>;
}
