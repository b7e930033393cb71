//! The earlier rows, kept for comparison with past runs: echo workloads through a
//! long-lived client of each tool; time per workload (lower is better).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::lab::{Client, Lab, Target, Tool};
use crate::pick;
use crate::support::echo_round_trip;
use crate::table::{Better, Row};

const MIB: usize = 1024 * 1024;

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

type Fut = Pin<Box<dyn Future<Output = Duration>>>;
type Workload = (&'static str, fn(SocketAddr) -> Fut);

const WORKLOADS: [Workload; 4] = [
    ("echo, 1 connection, 128 MiB each way", |a| {
        Box::pin(bulk(a, 128 * MIB))
    }),
    ("echo, 200 sequential connections, 64 B", |a| {
        Box::pin(sequential(a, 200))
    }),
    ("echo, 50 sequential, 512 B + half-close", |a| {
        Box::pin(sequential_half_close(a, 50))
    }),
    ("echo, 32 parallel connections, 4 MiB each", |a| {
        Box::pin(parallel(a, 32, 4 * MIB))
    }),
];

pub async fn rows(lab: &Lab, rounds: usize) -> Vec<Row> {
    let target = Target {
        addr: lab.echo.addr,
        postgres: false,
    };
    let pg = Client::start(lab, Tool::Pgtunnel, target).await;
    let ssh = Client::start(lab, Tool::Ssh, target).await;
    // Warm-up, and proof both paths work.
    bulk(pg.addr, MIB).await;
    bulk(ssh.addr, MIB).await;
    let mut rows = Vec::new();
    for (name, run) in WORKLOADS {
        let (mut p, mut o) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            for tool in Tool::order(round) {
                match tool {
                    Tool::Pgtunnel => p.push(run(pg.addr).await.as_secs_f64()),
                    Tool::Ssh => o.push(run(ssh.addr).await.as_secs_f64()),
                }
            }
        }
        rows.push(Row::new(name, "s", pick(&p, &o), Better::Lower).decimals(3));
    }
    eprintln!("echo workloads: done");
    rows
}
