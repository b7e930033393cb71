//! A source/sink target for transfer benchmarks, and its clients. A connection starts with a
//! 9-byte request, an operation and a length (u64, little-endian):
//! - `D` len: the target sends len bytes, then closes its side;
//! - `U` len: the client sends len bytes; the target answers with the count it read (u64 LE)
//!   once it has them all, then closes its side;
//! - `E` len: the target echoes len bytes, then closes its side.
//!
//! Every client call is bounded in time (it panics past [`LIMIT`]).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::link::{Link, Side};

/// The longest a single client call may take.
pub const LIMIT: Duration = Duration::from_secs(300);
const CHUNK: usize = 256 * 1024;

/// The target, serving on its own thread in one namespace of a [`Link`].
pub struct Target {
    /// On that side's loopback (for the hops to reach).
    pub local: SocketAddr,
    /// On that side's link address (for raw transfers across the link).
    pub raw: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Target {
    pub fn start(link: &Link, side: Side) -> Target {
        let link_ip = link.ns(side).addr;
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = link.spawn_in(side, move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async move {
                let local = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
                let raw = TcpListener::bind((link_ip, 0)).await.expect("bind target");
                let addrs = (
                    local.local_addr().expect("addr"),
                    raw.local_addr().expect("addr"),
                );
                tx.send(addrs).expect("report the target's addresses");
                tokio::select! {
                    _ = accept(local) => {}
                    _ = accept(raw) => {}
                    _ = stopped => {}
                }
            });
        });
        let (local, raw) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the target did not start");
        Target {
            local,
            raw,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(listener: TcpListener) {
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(async move {
            let _ = serve(tcp).await;
        });
    }
}

async fn serve(mut tcp: TcpStream) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await?;
    let len = u64::from_le_bytes(head[1..].try_into().expect("8 bytes")) as usize;
    let mut buf = super::support::pattern(CHUNK, 7);
    match head[0] {
        b'D' => {
            let mut left = len;
            while left > 0 {
                let n = left.min(CHUNK);
                tcp.write_all(&buf[..n]).await?;
                left -= n;
            }
        }
        b'U' => {
            let mut got = 0usize;
            while got < len {
                match tcp.read(&mut buf).await? {
                    0 => break,
                    n => got += n,
                }
            }
            tcp.write_all(&(got as u64).to_le_bytes()).await?;
        }
        b'E' => {
            let mut echo = vec![0u8; len.min(CHUNK)];
            tcp.read_exact(&mut echo).await?;
            tcp.write_all(&echo).await?;
        }
        _ => return Ok(()),
    }
    tcp.shutdown().await?;
    // Read to the client's EOF, so that closing does not reset unread bytes.
    tokio::io::copy(&mut tcp, &mut tokio::io::sink()).await?;
    Ok(())
}

/// Connects and sends the request, followed by `payload` in the same write.
async fn request(addr: SocketAddr, op: u8, len: usize, payload: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    tcp.set_nodelay(true).expect("nodelay");
    let mut head = vec![op];
    head.extend_from_slice(&(len as u64).to_le_bytes());
    head.extend_from_slice(payload);
    tcp.write_all(&head).await.expect("send the request");
    tcp
}

async fn bounded<T>(what: &str, addr: SocketAddr, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} through {addr} took over {LIMIT:?}"))
}

/// Downloads `len` bytes through `addr`: time from connect to EOF.
pub async fn download(addr: SocketAddr, len: usize) -> Duration {
    bounded("download", addr, async {
        let t = Instant::now();
        let mut tcp = request(addr, b'D', len, &[]).await;
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0usize;
        loop {
            match tcp.read(&mut buf).await.expect("read the download") {
                0 => break,
                n => got += n,
            }
        }
        let took = t.elapsed();
        assert_eq!(got, len, "downloaded byte count through {addr}");
        took
    })
    .await
}

/// Uploads `len` bytes through `addr`: time from connect to the target's confirmation.
pub async fn upload(addr: SocketAddr, len: usize) -> Duration {
    bounded("upload", addr, async {
        let t = Instant::now();
        let mut tcp = request(addr, b'U', len, &[]).await;
        let data = super::support::pattern(CHUNK, 3);
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            tcp.write_all(&data[..n]).await.expect("write the upload");
            left -= n;
        }
        let mut count = [0u8; 8];
        tcp.read_exact(&mut count)
            .await
            .expect("read the confirmation");
        let took = t.elapsed();
        assert_eq!(u64::from_le_bytes(count), len as u64, "uploaded byte count");
        took
    })
    .await
}

/// One fresh connection, 64 bytes there and back (in one write with the request): time from
/// connect to the last byte back.
pub async fn round_trip(addr: SocketAddr) -> Duration {
    bounded("round trip", addr, async {
        let t = Instant::now();
        let mut tcp = request(addr, b'E', 64, &[0x42; 64]).await;
        let mut back = [0u8; 64];
        tcp.read_exact(&mut back).await.expect("read the echo");
        let took = t.elapsed();
        assert_eq!(back, [0x42; 64], "echoed bytes through {addr}");
        took
    })
    .await
}
