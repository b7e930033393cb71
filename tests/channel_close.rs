//! CHANNEL_CLOSE follows the second EOF (issue 13): once EOF has gone both ways, pgtunnel
//! closes the channel itself, as ssh does, instead of waiting for the server to. The server
//! here is a russh server that answers a channel's data with an echo and EOF and then never
//! closes on its own: it only reports whether a CLOSE came. The server's answering CLOSE
//! must then end the connection (vendor/russh/PATCH.md, part F).
//!
//! The same server reports the sizes of the data messages it got: a connection's data goes
//! out in messages of up to 32 KiB, one per read, from a read buffer that starts at 4 KiB.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pgtunnel::forward::Ended;
use russh::keys::PublicKey;
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelMsg, MethodKind, MethodSet};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the server saw after its own EOF.
#[derive(Debug, PartialEq)]
enum Seen {
    /// The client's CLOSE, while the server had sent none.
    Close,
    /// The channel's queue ended without a CLOSE.
    Gone,
    /// Something else first (data after EOF, ...).
    Other(String),
}

struct EchoThenEof {
    seen: mpsc::UnboundedSender<Seen>,
    /// The sizes of a channel's data messages, in order, sent at its EOF.
    sizes: mpsc::UnboundedSender<Vec<usize>>,
}

impl server::Handler for EchoThenEof {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _: &str,
        _: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn auth_publickey(
        &mut self,
        _: &str,
        _: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        _: &str,
        _: u32,
        _: &str,
        _: u32,
        reply: ChannelOpenHandle,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        tokio::spawn(echo_then_wait(
            channel,
            self.seen.clone(),
            self.sizes.clone(),
        ));
        Ok(())
    }
}

/// Collects the client's data up to its EOF, sends it back with EOF, and reports what
/// comes next.
async fn echo_then_wait(
    mut channel: Channel<Msg>,
    seen: mpsc::UnboundedSender<Seen>,
    sizes: mpsc::UnboundedSender<Vec<usize>>,
) {
    let mut got = Vec::new();
    let mut messages = Vec::new();
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Data { data }) => {
                messages.push(data.len());
                got.extend_from_slice(&data)
            }
            Some(ChannelMsg::Eof) => {
                let _ = sizes.send(messages);
                break;
            }
            None => {
                let _ = seen.send(Seen::Gone);
                return;
            }
            Some(other) => {
                let _ = seen.send(Seen::Other(format!("{other:?} before EOF")));
                return;
            }
        }
    }
    if channel.data_bytes(got).await.is_err() || channel.eof().await.is_err() {
        let _ = seen.send(Seen::Other("could not answer".into()));
        return;
    }
    // The client's WINDOW_ADJUST for the echo may come first.
    let next = loop {
        match channel.wait().await {
            Some(ChannelMsg::WindowAdjusted { .. }) => continue,
            Some(ChannelMsg::Close) => break Seen::Close,
            None => break Seen::Gone,
            Some(other) => break Seen::Other(format!("{other:?}")),
        }
    };
    let _ = seen.send(next);
}

/// Starts the server on 127.0.0.1; its host key is trusted in `home`.
async fn start_server(
    home: &Home,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Seen>,
    mpsc::UnboundedReceiver<Vec<usize>>,
) {
    let key = pgtunnel::demo::bastion::generate_key().expect("host key");
    let public: PublicKey = key.public_key().clone();
    let config = Arc::new(server::Config {
        keys: vec![key],
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        inactivity_timeout: Some(Duration::from_secs(60)),
        nodelay: true,
        ..Default::default()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    home.trust(addr.port(), &public);
    let (tx, rx) = mpsc::unbounded_channel();
    let (sizes_tx, sizes_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let handler = EchoThenEof {
                seen: tx.clone(),
                sizes: sizes_tx.clone(),
            };
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(running) = server::run_stream(config, tcp, handler).await {
                    let _ = running.await;
                }
            });
        }
    });
    (addr, rx, sizes_rx)
}

#[tokio::test]
async fn close_follows_the_second_eof() {
    let home = Home::new();
    let (server, mut seen, _sizes) = start_server(&home).await;
    home.write_config(&home.host_block("hop", server.port(), ""));
    // The server answers itself; the target address is never dialled.
    let chain = home.chain(Some("hop"), "127.0.0.1:9").expect("chain");
    let running = Running::start(&chain).await.expect("tunnel up");

    // Three connections, each: data, our EOF, the server's echo and EOF, then our CLOSE.
    for round in 0..3u8 {
        let mut tcp = TcpStream::connect(running.addr).await.expect("connect");
        let sent = vec![round; 1000];
        tcp.write_all(&sent).await.expect("write");
        tcp.shutdown().await.expect("half-close");
        let mut back = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut back))
            .await
            .expect("the echo and EOF arrive")
            .expect("read");
        assert_eq!(back, sent, "round {round}: the echo");
        let next = tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("pgtunnel closes the channel after both EOFs, without the server's CLOSE")
            .expect("server running");
        assert_eq!(next, Seen::Close, "round {round}");
    }
    // The server's answering CLOSE reached each connection: none was still open at
    // shutdown (russh used to drop that answer, and the connection waited for it).
    match running.stop().await {
        Ended::Shutdown {
            closed_at_deadline: 0,
        } => {}
        other => panic!("connections left open after both CLOSEs: {other:?}"),
    }
}

#[tokio::test]
async fn client_data_goes_in_32_kib_messages_from_a_4_kib_start() {
    let home = Home::new();
    let (server, _seen, mut sizes) = start_server(&home).await;
    home.write_config(&home.host_block("hop", server.port(), ""));
    let chain = home.chain(Some("hop"), "127.0.0.1:9").expect("chain");
    let running = Running::start(&chain).await.expect("tunnel up");

    let sent: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut tcp = TcpStream::connect(running.addr).await.expect("connect");
    let (mut read, mut write) = tcp.split();
    let send = async {
        write.write_all(&sent).await.expect("write");
        write.shutdown().await.expect("half-close");
    };
    let mut back = Vec::new();
    let receive = tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut back));
    let ((), received) = tokio::join!(send, receive);
    received.expect("the echo arrives").expect("read");
    assert!(back == sent, "the echo is intact");
    let sizes = tokio::time::timeout(Duration::from_secs(10), sizes.recv())
        .await
        .expect("the server got EOF")
        .expect("server running");
    assert_eq!(sizes.iter().sum::<usize>(), sent.len());
    // The first read fills a 4 KiB buffer: an idle or chatty connection holds no more.
    assert!(sizes[0] <= 4096, "first message {} bytes", sizes[0]);
    // Then the buffer is 32 KiB (one SSH packet's payload), one message per read, none cut
    // into 8 KiB pieces.
    let max = sizes.iter().copied().max().unwrap_or(0);
    assert_eq!(max, 32 * 1024, "{sizes:?}");
    let big = sizes.iter().filter(|&&n| n > 8 * 1024).count();
    assert!(big * 2 > sizes.len(), "mostly whole packets: {sizes:?}");
    running.stop().await;
}
