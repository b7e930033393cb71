//! Rows 7–9, on a fresh client per tool and round, forwarding to the echo service:
//! - cold start: from spawning the client until a connection through it has its first byte
//!   echoed (connect polled every 2 ms, bounded by 30 s);
//! - resident memory (VmRSS of the client's process tree) once that connection has closed,
//!   then with 200 idle connections open, each having echoed a few bytes; and the growth per
//!   connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::lab::{Client, Lab, Target, Tool};
use crate::procfs;
use crate::table::{Better, Row};
use crate::{median, pick};

const OPEN: usize = 200;
/// Time for the client to settle (buffers freed, threads idle) before reading its memory.
const SETTLE: Duration = Duration::from_millis(500);

/// One byte through `stream` and back, within `limit`.
async fn echo_byte(stream: &mut TcpStream, byte: u8, limit: Duration) -> bool {
    let io = async {
        stream.write_all(&[byte]).await?;
        let mut back = [0u8; 1];
        stream.read_exact(&mut back).await?;
        Ok::<bool, std::io::Error>(back[0] == byte)
    };
    matches!(tokio::time::timeout(limit, io).await, Ok(Ok(true)))
}

/// Polls `addr` until a connection gets a byte echoed; the time since `start`.
async fn first_echo(addr: SocketAddr, start: Instant) -> Duration {
    let deadline = start + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut tcp) = TcpStream::connect(addr).await {
            tcp.set_nodelay(true).expect("nodelay");
            if echo_byte(&mut tcp, 0x42, Duration::from_secs(20)).await {
                return start.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("no byte echoed through {addr} within 30 s of starting the client");
}

struct Sample {
    cold_ms: f64,
    idle_kib: f64,
    open_kib: f64,
}

async fn one(lab: &Lab, tool: Tool) -> Sample {
    let target = Target {
        addr: lab.echo.addr,
        postgres: false,
    };
    let start = Instant::now();
    let client = Client::spawn(lab, tool, target);
    let cold = first_echo(client.addr, start).await;
    tokio::time::sleep(SETTLE).await;
    let idle = procfs::rss_kib(client.pid());
    let mut open = Vec::with_capacity(OPEN);
    for i in 0..OPEN {
        let mut tcp = TcpStream::connect(client.addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        for b in 0..4u8 {
            let ok = echo_byte(&mut tcp, b.wrapping_add(i as u8), Duration::from_secs(20)).await;
            assert!(ok, "{tool:?}: connection {i} of {OPEN} did not echo");
        }
        open.push(tcp);
    }
    tokio::time::sleep(SETTLE).await;
    let with_open = procfs::rss_kib(client.pid());
    drop(open);
    Sample {
        cold_ms: cold.as_secs_f64() * 1000.0,
        idle_kib: idle as f64,
        open_kib: with_open as f64,
    }
}

pub async fn rows(lab: &Lab, rounds: usize) -> Vec<Row> {
    let (mut p, mut o) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for tool in Tool::order(round) {
            let sample = one(lab, tool).await;
            match tool {
                Tool::Pgtunnel => p.push(sample),
                Tool::Ssh => o.push(sample),
            }
        }
    }
    eprintln!("cold start and memory: done");
    let get = |s: &[Sample], f: fn(&Sample) -> f64| s.iter().map(f).collect::<Vec<f64>>();
    let growth = |s: &Sample| (s.open_kib - s.idle_kib) / OPEN as f64;
    let mib = |s: &Sample| s.idle_kib / 1024.0;
    let open_mib = |s: &Sample| s.open_kib / 1024.0;
    vec![
        Row::new(
            "cold start to the first echoed byte",
            "ms",
            pick(&get(&p, |s| s.cold_ms), &get(&o, |s| s.cold_ms)),
            Better::Lower,
        )
        .target(0.35)
        .decimals(0),
        Row::new(
            "RSS idle (one connection done)",
            "MiB",
            pick(&get(&p, mib), &get(&o, mib)),
            Better::Lower,
        )
        .target(0.6),
        Row::new(
            &format!("RSS with {OPEN} open idle connections"),
            "MiB",
            pick(&get(&p, open_mib), &get(&o, open_mib)),
            Better::Lower,
        )
        .target(0.6),
        Row::new(
            "RSS growth per open connection",
            "KiB per connection",
            (median(&get(&p, growth)), median(&get(&o, growth))),
            Better::Lower,
        ),
    ]
}
