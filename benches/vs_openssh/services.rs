//! The bulk-transfer service behind the hops, and its client side. A connection starts with
//! one operation byte and a length (u64, little-endian):
//! - `U` (upload): the service reads and discards that many bytes, then answers with the
//!   count it received (u64) and closes;
//! - `D` (download): the service sends that many bytes and closes.
//!
//! Lengths are explicit so that no half-close is on the clock (see the half-close row).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const CHUNK: usize = 256 * 1024;
/// No transfer may take longer than this (a stuck tunnel fails the bench instead of hanging).
const LIMIT: Duration = Duration::from_secs(600);

pub struct Transfer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Transfer {
    pub async fn start_on(addr: &str) -> Transfer {
        let listener = TcpListener::bind(addr)
            .await
            .expect("bind transfer service");
        let addr = listener.local_addr().expect("transfer service addr");
        let data: Arc<Vec<u8>> = Arc::new(crate::support::pattern(CHUNK, 5));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, data.clone()));
            }
        });
        Transfer { addr, task }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection; returns quietly on anything unexpected (e.g. pgtunnel's probe, which
/// connects and closes).
async fn serve(mut tcp: TcpStream, data: Arc<Vec<u8>>) {
    let _ = tcp.set_nodelay(true);
    let mut head = [0u8; 9];
    if tcp.read_exact(&mut head).await.is_err() {
        return;
    }
    let len = u64::from_le_bytes(head[1..].try_into().expect("8 bytes"));
    match head[0] {
        b'U' => {
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0u64;
            while got < len {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n as u64,
                }
            }
            let _ = tcp.write_all(&got.to_le_bytes()).await;
        }
        b'D' => {
            let mut left = len;
            while left > 0 {
                let n = left.min(data.len() as u64) as usize;
                if tcp.write_all(&data[..n]).await.is_err() {
                    return;
                }
                left -= n as u64;
            }
        }
        _ => {}
    }
    let _ = tcp.shutdown().await;
}

async fn connect(addr: SocketAddr, op: u8, len: u64) -> TcpStream {
    let mut tcp = TcpStream::connect(addr)
        .await
        .expect("connect to the tunnel");
    tcp.set_nodelay(true).expect("nodelay");
    let mut head = [op; 9];
    head[1..].copy_from_slice(&len.to_le_bytes());
    tcp.write_all(&head).await.expect("send the request");
    tcp
}

/// Sends `len` bytes through `addr` and waits for the service's count; the time it took.
pub async fn upload(addr: SocketAddr, len: u64) -> Duration {
    let t = Instant::now();
    let work = async {
        let mut tcp = connect(addr, b'U', len).await;
        let data = vec![0x5au8; CHUNK];
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            tcp.write_all(&data[..n])
                .await
                .expect("upload through the tunnel");
            left -= n as u64;
        }
        let mut count = [0u8; 8];
        tcp.read_exact(&mut count)
            .await
            .expect("the service's count after the upload");
        assert_eq!(u64::from_le_bytes(count), len, "bytes the service received");
    };
    tokio::time::timeout(LIMIT, work)
        .await
        .expect("upload within 10 minutes");
    t.elapsed()
}

/// Receives `len` bytes through `addr`; the time it took.
pub async fn download(addr: SocketAddr, len: u64) -> Duration {
    let t = Instant::now();
    let work = async {
        let mut tcp = connect(addr, b'D', len).await;
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        while got < len {
            let n = tcp
                .read(&mut buf)
                .await
                .expect("download through the tunnel");
            assert!(n > 0, "the tunnel closed after {got} of {len} bytes");
            got += n as u64;
        }
    };
    tokio::time::timeout(LIMIT, work)
        .await
        .expect("download within 10 minutes");
    t.elapsed()
}
