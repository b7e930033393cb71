//! End-to-end tests through in-process russh bastions on loopback: data integrity over 1, 2
//! and 3 nested hops, half-close, host key refusal, authentication errors, ProxyJump
//! handling, concurrency and shutdown.

mod support;

use std::time::{Duration, Instant};

use pgtunnel::error::{ErrorKind, HopError};
use pgtunnel::forward::{Ended, Limits};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;

/// `n` bastions in a line, each allowed to reach only the next, the last only the target.
async fn line_of_bastions(
    home: &Home,
    n: usize,
    target: std::net::SocketAddr,
) -> Vec<pgtunnel::demo::bastion::Bastion> {
    // Start from the end so each knows the next one's address.
    let mut next = ("127.0.0.1".to_string(), target.port());
    let mut out = Vec::new();
    for _ in 0..n {
        let b = bastion(home, &[(next.0.as_str(), next.1)]).await;
        next = ("127.0.0.1".to_string(), b.addr().port());
        out.push(b);
    }
    out.reverse();
    let mut config = String::new();
    for (i, b) in out.iter().enumerate() {
        config.push_str(&home.host_block(&format!("hop{}", i + 1), b.addr().port(), ""));
    }
    home.write_config(&config);
    out
}

fn via(n: usize) -> String {
    (1..=n)
        .map(|i| format!("hop{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn carries_64_mib(hops: usize) {
    let home = Home::new();
    let echo = Echo::start().await;
    let bastions = line_of_bastions(&home, hops, echo.addr).await;
    let chain = home
        .chain(Some(&via(hops)), &echo.addr.to_string())
        .expect("chain");
    assert_eq!(chain.hops.len(), hops);
    let running = Running::start(&chain).await.expect("tunnel up");
    echo_round_trip(running.addr, 64 * MIB, hops as u64).await;

    // The path went through every hop in order: each was asked for exactly the next one.
    for (i, b) in bastions.iter().enumerate() {
        let next_port = match bastions.get(i + 1) {
            Some(n) => n.addr().port(),
            None => echo.addr.port(),
        };
        let requests = b.requests();
        assert!(!requests.is_empty(), "hop {} saw no request", i + 1);
        assert!(
            requests.iter().all(|r| r.allowed && r.port == next_port),
            "hop {}: {requests:?}",
            i + 1
        );
    }
    assert_eq!(echo.connections(), 1);
    assert!(matches!(running.stop().await, Ended::Shutdown { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hop_carries_64_mib_both_ways() {
    carries_64_mib(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hops_carry_64_mib_both_ways() {
    carries_64_mib(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hops_carry_64_mib_both_ways() {
    carries_64_mib(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_still_delivers_the_reply() {
    // A target that reads the whole request until EOF, then answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        tcp.read_to_end(&mut request).await.unwrap();
        let reply = format!("got {} bytes", request.len());
        tcp.write_all(reply.as_bytes()).await.unwrap();
        tcp.shutdown().await.unwrap();
    });
    let home = Home::new();
    let _b = line_of_bastions(&home, 2, target).await;
    let chain = home.chain(Some("hop1,hop2"), &target.to_string()).unwrap();
    let running = Running::start(&chain).await.unwrap();

    let mut tcp = TcpStream::connect(running.addr).await.unwrap();
    tcp.write_all(&[7u8; 100_000]).await.unwrap();
    tcp.shutdown().await.unwrap(); // our write side ends; we keep reading
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_string(&mut reply))
        .await
        .expect("reply arrives after half-close")
        .unwrap();
    assert_eq!(reply, "got 100000 bytes");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_on_hop_2_is_refused_and_nothing_reaches_the_target() {
    let home = Home::new();
    let echo = Echo::start().await;
    let bastions = line_of_bastions(&home, 2, echo.addr).await;
    // Replace hop 2's known key with another one.
    let impostor = pgtunnel::demo::bastion::generate_key().unwrap();
    std::fs::write(&home.known_hosts, "").unwrap();
    home.trust(bastions[0].addr().port(), bastions[0].host_key());
    home.trust(bastions[1].addr().port(), impostor.public_key());

    let chain = home
        .chain(Some("hop1,hop2"), &echo.addr.to_string())
        .unwrap();
    let err = Running::start(&chain).await.err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::HostKey);
    assert_eq!(err.hop().map(|h| h.index), Some(2));
    let text = err.to_string();
    assert!(text.contains("hop 2"), "{text}");
    assert!(text.contains("HOST KEY CHANGED"), "{text}");
    let offered = bastions[1]
        .host_key()
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string();
    assert!(
        text.contains(&offered),
        "names the offered fingerprint: {text}"
    );
    assert!(
        bastions[1].requests().is_empty(),
        "hop 2 was asked to forward"
    );
    assert_eq!(echo.connections(), 0, "a byte reached the target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_is_refused_under_strict_checking() {
    let home = Home::new();
    let echo = Echo::start().await;
    let bastions = line_of_bastions(&home, 1, echo.addr).await;
    std::fs::write(&home.known_hosts, "").unwrap();
    let chain = home.chain(Some("hop1"), &echo.addr.to_string()).unwrap();
    let err = Running::start(&chain).await.err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::HostKey);
    let Some(pgtunnel::Error::Hop { source, .. }) = Some(&err) else {
        panic!("{err}");
    };
    assert!(matches!(**source, HopError::HostKeyUnknown { .. }), "{err}");
    assert!(
        err.to_string().contains("StrictHostKeyChecking is yes"),
        "{err}"
    );
    assert!(bastions[0].requests().is_empty());
    assert_eq!(echo.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_on_hop_2_name_hop_2() {
    let home = Home::new();
    let echo = Echo::start().await;
    let b2 = {
        let other = Home::new(); // hop 2 only accepts someone else's key
        let config = pgtunnel::demo::bastion::BastionConfig::generate(USER, vec![other.public()])
            .unwrap()
            .allow(&[("127.0.0.1", echo.addr.port())]);
        pgtunnel::demo::bastion::Bastion::start("127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap()
    };
    home.trust(b2.addr().port(), b2.host_key());
    let b1 = bastion(&home, &[("127.0.0.1", b2.addr().port())]).await;
    home.write_config(&format!(
        "{}{}",
        home.host_block("hop1", b1.addr().port(), ""),
        home.host_block("hop2", b2.addr().port(), "")
    ));
    let chain = home
        .chain(Some("hop1,hop2"), &echo.addr.to_string())
        .unwrap();
    let err = Running::start(&chain).await.err().expect("auth fails");
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(err.hop().map(|h| h.index), Some(2));
    let text = err.to_string();
    assert!(text.contains("hop 2 (hop2, 127.0.0.1:"), "{text}");
    assert!(text.contains(&format!("user `{USER}`")), "{text}");
    assert!(text.contains("id_ed25519"), "names the key tried: {text}");
    assert_eq!(echo.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxyjump_from_config_and_none() {
    let home = Home::new();
    let echo = Echo::start().await;
    let b2 = bastion(&home, &[("127.0.0.1", echo.addr.port())]).await;
    let b1 = bastion(&home, &[("127.0.0.1", b2.addr().port())]).await;
    // hop2 jumps through hop1; `Host *` would send everything through a dead "nowhere",
    // except that hop1 says `ProxyJump none` first.
    home.write_config(&format!(
        "{}{}{}",
        home.host_block("hop1", b1.addr().port(), "  ProxyJump none"),
        home.host_block("hop2", b2.addr().port(), "  ProxyJump hop1"),
        "Host *\n  ProxyJump nowhere.invalid\n"
    ));
    // --via hop2 expands to hop1 -> hop2.
    let chain = home.chain(Some("hop2"), &echo.addr.to_string()).unwrap();
    let names: Vec<_> = chain.hops.iter().map(|h| h.spec.host.as_str()).collect();
    assert_eq!(names, ["hop1", "hop2"]);
    let running = Running::start(&chain).await.unwrap();
    echo_round_trip(running.addr, MIB, 9).await;
    running.stop().await;
    assert_eq!(b1.requests().len(), 1);
    assert_eq!(b2.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_alias_with_proxyjump_just_works() {
    let home = Home::new();
    let echo = Echo::start().await;
    let b1 = bastion(&home, &[("127.0.0.1", echo.addr.port())]).await;
    home.write_config(&format!(
        "{}Host db\n  HostName 127.0.0.1\n  ProxyJump hop1\n",
        home.host_block("hop1", b1.addr().port(), ""),
    ));
    let chain = home
        .chain(None, &format!("db:{}", echo.addr.port()))
        .unwrap();
    assert_eq!(chain.target.host, "127.0.0.1");
    let running = Running::start(&chain).await.unwrap();
    echo_round_trip(running.addr, MIB, 3).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxyjump_loop_is_an_error() {
    let home = Home::new();
    home.write_config("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n");
    let err = home.chain(Some("a"), "db").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(err.to_string(), "ProxyJump loop: a -> b -> a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_refused_by_last_hop_is_reported_and_the_tunnel_survives() {
    let home = Home::new();
    let echo = Echo::start().await;
    // The bastion allows only the echo service; the target asked for is something else.
    let _b = line_of_bastions(&home, 1, echo.addr).await;
    let chain = home.chain(Some("hop1"), "127.0.0.1:9").unwrap();
    let running = Running::start(&chain).await.unwrap();
    let mut tcp = TcpStream::connect(running.addr).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0, "the refused connection is closed");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_connections_through_two_hops() {
    let home = Home::new();
    let echo = Echo::start().await;
    let _b = line_of_bastions(&home, 2, echo.addr).await;
    let chain = home
        .chain(Some("hop1,hop2"), &echo.addr.to_string())
        .unwrap();
    let running = Running::start(&chain).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let addr = running.addr;
        tasks.push(tokio::spawn(async move {
            echo_round_trip(addr, 256 * 1024 + i as usize * 1000, i).await
        }));
    }
    for t in tasks {
        t.await.expect("round trip intact");
    }
    assert_eq!(echo.connections(), 50);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_open_connections_finish() {
    let home = Home::new();
    let echo = Echo::start().await;
    let _b = line_of_bastions(&home, 2, echo.addr).await;
    let chain = home
        .chain(Some("hop1,hop2"), &echo.addr.to_string())
        .unwrap();
    let mut running = Running::start_with(&chain, |t| {
        t.limits(Limits {
            drain_timeout: Duration::from_secs(20),
            ..Limits::default()
        })
    })
    .await
    .unwrap();
    let mut tcp = TcpStream::connect(running.addr).await.unwrap();
    tcp.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    tcp.read_exact(&mut buf).await.unwrap();

    running.shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new connections once shutdown began...
    assert!(
        TcpStream::connect(running.addr).await.is_err(),
        "listener still accepting after shutdown"
    );
    // ...but the open one keeps working until it is done.
    tcp.write_all(b"after!").await.unwrap();
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"after!");
    tcp.shutdown().await.unwrap();
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(15), &mut running.task)
        .await
        .expect("tunnel stops once the connection is done")
        .unwrap();
    assert_eq!(
        ended,
        Ended::Shutdown {
            closed_at_deadline: 0
        }
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_at_the_drain_deadline() {
    let home = Home::new();
    let echo = Echo::start().await;
    let _b = line_of_bastions(&home, 1, echo.addr).await;
    let chain = home.chain(Some("hop1"), &echo.addr.to_string()).unwrap();
    let mut running = Running::start_with(&chain, |t| {
        t.limits(Limits {
            drain_timeout: Duration::from_millis(500),
            ..Limits::default()
        })
    })
    .await
    .unwrap();
    let mut tcp = TcpStream::connect(running.addr).await.unwrap();
    tcp.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    tcp.read_exact(&mut one).await.unwrap();
    running.shutdown();
    let ended = tokio::time::timeout(Duration::from_secs(10), &mut running.task)
        .await
        .expect("stops after the drain timeout")
        .unwrap();
    assert_eq!(
        ended,
        Ended::Shutdown {
            closed_at_deadline: 1
        }
    );
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut one))
        .await
        .expect("client sees the close")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_new_refuses_to_record_a_name_that_would_match_every_host() {
    let home = Home::new();
    let echo = Echo::start().await;
    let b = bastion(&home, &[("127.0.0.1", echo.addr.port())]).await;
    // `HostKeyAlias *`: written unhashed, that entry would trust the key for every host, so
    // the writer refuses it.
    std::fs::write(&home.known_hosts, "").unwrap();
    home.write_config(&format!(
        "Host hop1\n  HostName 127.0.0.1\n  Port {}\n  User {USER}\n  IdentityFile {}\n  \
         UserKnownHostsFile {}\n  StrictHostKeyChecking accept-new\n  HostKeyAlias *\n",
        b.addr().port(),
        home.key_path.display(),
        home.known_hosts.display()
    ));
    let chain = home.chain(Some("hop1"), &echo.addr.to_string()).unwrap();
    let err = Running::start(&chain).await.err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("cannot record the host key in known_hosts file") && text.contains("hop 1"),
        "{text}"
    );
    assert!(b.requests().is_empty());
    assert_eq!(echo.connections(), 0);
    assert_eq!(std::fs::read_to_string(&home.known_hosts).unwrap(), "");
}

/// `Bastion::stop` ends its sessions as a dying server would (russh runs each session on a
/// task of its own, which aborting the bastion's task used to leave running): without
/// reconnecting, the tunnel through it ends with the chain lost at hop 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_bastion_ends_the_chain_through_it() {
    let home = Home::new();
    let echo = Echo::start().await;
    let bastions = line_of_bastions(&home, 1, echo.addr).await;
    let chain = home.chain(Some("hop1"), &echo.addr.to_string()).unwrap();
    let mut running = Running::start_with(&chain, |t| t.reconnect(None))
        .await
        .unwrap();
    echo_round_trip(running.addr, 1024, 1).await;
    bastions[0].stop();
    let ended = tokio::time::timeout(Duration::from_secs(30), &mut running.task)
        .await
        .expect("the tunnel notices the lost session")
        .expect("tunnel task");
    match ended {
        Ended::ChainLost { hop, .. } => assert_eq!(hop.index, 1, "{hop}"),
        other => panic!("expected the chain lost at hop 1, got {other:?}"),
    }
}
