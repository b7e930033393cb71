#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Allow unwraps, expects and panics in the test suite
// Flow control (patch): a channel whose reader stalls holds back only its own peer (by closing
// its window), not the session; its data is intact once the reader resumes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use crate::server::{self, Auth, Msg, Server as _, Session, VerifiedPublicKey};
use crate::{Channel, ChannelMsg, client};
use ssh_key::PrivateKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::{sleep, timeout};

const WINDOW: u32 = 256 * 1024;
const STALLED: usize = 4 * 1024 * 1024;
const ECHOED: usize = 2 * 1024 * 1024;
/// How far past the window a writer may get: the packet being assembled and rounding.
const SLACK: usize = 64 * 1024;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed ^ (i >> 13) as u8)
        })
        .collect()
}

#[derive(Clone, Default)]
struct Shared {
    /// Bytes the server's `source` writer got accepted.
    sent: Arc<AtomicUsize>,
    /// Released when the server's `sink` may start reading.
    release: Arc<Notify>,
    /// What the server's `sink` read, once done.
    sunk: Arc<Mutex<Option<Vec<u8>>>>,
    sunk_done: Arc<Notify>,
}

#[derive(Clone)]
struct Server(Shared);

impl server::Server for Server {
    type Handler = Self;

    fn new_client(&mut self, _: Option<SocketAddr>) -> Self::Handler {
        self.clone()
    }
}

impl server::Handler for Server {
    type Error = anyhow::Error;

    async fn auth_publickey(
        &mut self,
        _: &str,
        _: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        mut channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        let shared = self.0.clone();
        tokio::spawn(async move {
            let command = loop {
                match channel.wait().await {
                    Some(ChannelMsg::Exec { command, .. }) => break command,
                    Some(_) => {}
                    None => return,
                }
            };
            match &command[..] {
                b"source" => {
                    let mut writer = channel.make_writer();
                    for chunk in pattern(STALLED, 1).chunks(8192) {
                        writer.write_all(chunk).await.unwrap();
                        shared.sent.fetch_add(chunk.len(), Ordering::SeqCst);
                    }
                    channel.eof().await.unwrap();
                    // Keep the channel until the client is done reading.
                    while channel.wait().await.is_some() {}
                }
                b"sink" => {
                    shared.release.notified().await;
                    let mut got = Vec::new();
                    channel.make_reader().read_to_end(&mut got).await.unwrap();
                    *shared.sunk.lock().unwrap() = Some(got);
                    shared.sunk_done.notify_one();
                }
                b"echo" => {
                    let (mut read_half, write_half) = channel.split();
                    let mut writer = write_half.make_writer();
                    tokio::io::copy(&mut read_half.make_reader(), &mut writer)
                        .await
                        .unwrap();
                    write_half.eof().await.unwrap();
                }
                other => panic!("unknown command {other:?}"),
            }
        });
        Ok(())
    }
}

struct Client;

impl client::Handler for Client {
    type Error = anyhow::Error;

    async fn check_server_key(&mut self, _: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

async fn start(shared: Shared) -> anyhow::Result<client::Handle<Client>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = Arc::new(server::Config {
        keys: vec![PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519).unwrap()],
        window_size: WINDOW,
        channel_buffer_size: 4,
        ..Default::default()
    });
    tokio::spawn(async move { Server(shared).run_on_socket(config, &listener).await });
    // The client keeps the default queue (100 messages), which let upstream buffer far more
    // than a window for a reader that does not read; the server's short queue makes its
    // backlog work.
    let config = Arc::new(client::Config {
        window_size: WINDOW,
        ..Default::default()
    });
    let mut session = client::connect(config, addr, Client).await?;
    let key = Arc::new(PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519).unwrap());
    let auth = session
        .authenticate_publickey("user", PrivateKeyWithHashAlg::new(key, None))
        .await?;
    assert!(auth.success());
    Ok(session)
}

/// Round-trips `ECHOED` bytes through an `echo` channel of `session`.
async fn echo(session: &client::Handle<Client>) -> anyhow::Result<()> {
    let channel = session.channel_open_session().await?;
    channel.exec(true, "echo").await?;
    let (mut read_half, write_half) = channel.split();
    let data = pattern(ECHOED, 7);
    let expected = data.clone();
    let writing = tokio::spawn(async move {
        write_half.make_writer().write_all(&data).await.unwrap();
        write_half.eof().await.unwrap();
        write_half
    });
    let mut got = Vec::new();
    while let Some(msg) = read_half.wait().await {
        match msg {
            ChannelMsg::Data { data } => got.extend_from_slice(&data),
            ChannelMsg::Eof => break,
            _ => {}
        }
    }
    let _write_half = writing.await?;
    assert!(got == expected, "echo corrupted ({} bytes)", got.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_reader_holds_back_only_its_channel() -> anyhow::Result<()> {
    let _ = env_logger::try_init();
    let shared = Shared::default();
    let session = start(shared.clone()).await?;

    // The server writes STALLED bytes that the client does not read yet.
    let mut stalled = session.channel_open_session().await?;
    stalled.exec(true, "source").await?;
    sleep(Duration::from_millis(300)).await;
    let sent = shared.sent.load(Ordering::SeqCst);
    assert!(
        sent <= WINDOW as usize + SLACK,
        "the server wrote {sent} bytes to a reader that read nothing"
    );

    // Another channel of the same session still works.
    timeout(Duration::from_secs(60), echo(&session)).await??;

    // The stalled data is intact once the reader reads.
    let mut got = Vec::new();
    timeout(
        Duration::from_secs(60),
        stalled.make_reader().read_to_end(&mut got),
    )
    .await??;
    assert!(got == pattern(STALLED, 1), "stalled data corrupted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_reader_holds_back_only_its_channel() -> anyhow::Result<()> {
    let _ = env_logger::try_init();
    let shared = Shared::default();
    let session = start(shared.clone()).await?;

    // The client writes STALLED bytes that the server does not read yet.
    let stalled = session.channel_open_session().await?;
    stalled.exec(true, "sink").await?;
    let written = Arc::new(AtomicUsize::new(0));
    let writing = tokio::spawn({
        let written = written.clone();
        async move {
            let mut writer = stalled.make_writer();
            for chunk in pattern(STALLED, 3).chunks(8192) {
                writer.write_all(chunk).await.unwrap();
                written.fetch_add(chunk.len(), Ordering::SeqCst);
            }
            stalled.eof().await.unwrap();
            stalled
        }
    });
    sleep(Duration::from_millis(300)).await;
    let sent = written.load(Ordering::SeqCst);
    assert!(
        sent <= WINDOW as usize + SLACK,
        "the client wrote {sent} bytes to a reader that read nothing"
    );

    timeout(Duration::from_secs(60), echo(&session)).await??;

    let done = shared.sunk_done.notified();
    shared.release.notify_one();
    timeout(Duration::from_secs(60), done).await?;
    let _stalled = writing.await?;
    let sunk = shared.sunk.lock().unwrap().take().unwrap();
    assert!(sunk == pattern(STALLED, 3), "stalled data corrupted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_writing_to_each_other_keep_reading() -> anyhow::Result<()> {
    let _ = env_logger::try_init();
    // A path that holds little, like the channel a nested session runs in: both sessions have
    // more to write than it holds, and each must go on reading for the other to finish.
    let (client_end, server_end) = tokio::io::duplex(16 * 1024);
    let config = Arc::new(server::Config {
        keys: vec![PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519).unwrap()],
        ..Default::default()
    });
    let server = server::run_stream(config, server_end, Server(Shared::default()));
    let (server, session) = tokio::join!(
        server,
        client::connect_stream(Arc::new(client::Config::default()), client_end, Client)
    );
    let _server = server?;
    let mut session = session?;
    let key = Arc::new(PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519).unwrap());
    let auth = session
        .authenticate_publickey("user", PrivateKeyWithHashAlg::new(key, None))
        .await?;
    assert!(auth.success());

    let echoes = futures::future::try_join_all((0..4).map(|_| echo(&session)));
    timeout(Duration::from_secs(60), echoes).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rekey_amid_many_busy_channels_keeps_the_session() -> anyhow::Result<()> {
    let _ = env_logger::try_init();
    // Rekey every 512 KiB while eight channels echo at once. What the server has in flight
    // when our KEXINIT reaches it is bounded by the eight windows, well above the
    // 2 * window_size that used to end the session with `Error::Pending`.
    let window = 64 * 1024;
    let limits = crate::Limits::new(512 * 1024, 512 * 1024, Duration::from_secs(3600));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = Arc::new(server::Config {
        keys: vec![PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519).unwrap()],
        window_size: window,
        ..Default::default()
    });
    tokio::spawn(async move {
        Server(Shared::default())
            .run_on_socket(config, &listener)
            .await
    });
    let config = Arc::new(client::Config {
        window_size: window,
        limits,
        ..Default::default()
    });
    let mut session = client::connect(config, addr, Client).await?;
    let key = Arc::new(PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519).unwrap());
    let auth = session
        .authenticate_publickey("user", PrivateKeyWithHashAlg::new(key, None))
        .await?;
    assert!(auth.success());

    let echoes = futures::future::try_join_all((0..8).map(|_| echo(&session)));
    timeout(Duration::from_secs(60), echoes).await??;
    Ok(())
}
