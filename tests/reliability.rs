//! Recovery, with the binary as a user runs it and real OpenSSH hops (127.0.0.1 =
//! shell.foo.com, 127.0.0.2 = db.foo.com, the service on 127.0.0.3): a hop that goes silent
//! or away resets the connections it carried (an error, never a clean end of data, never a
//! hang), the tunnel keeps its local port and re-establishes the chain when the hop is back;
//! a restarted target needs nothing at all; `--no-reconnect` makes a lost chain fatal; the
//! connection limit turns excess connections away; SIGTERM drains and exits 0.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use support::process::Pgtunnel;
use support::sshd::{ManualHops, Sshd};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::timeout;

/// Bounds every wait: no test asserts a timing, but none may hang.
const LIMIT: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;
const SEQUENTIAL: usize = 5000;

/// A service with two roles picked by the first byte: `S` sends an endless pattern, `E`
/// echoes until EOF. Dropping it (or [`Service::stop`]) closes every connection.
struct Service {
    addr: SocketAddr,
    tasks: JoinSet<()>,
    connections: Arc<AtomicUsize>,
}

impl Service {
    async fn start(addr: SocketAddr) -> Service {
        let listener = TcpListener::bind(addr).await.expect("bind the service");
        let addr = listener.local_addr().expect("service address");
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                conns.spawn(async move {
                    let mut role = [0u8; 1];
                    if tcp.read_exact(&mut role).await.is_err() {
                        return;
                    }
                    match &role {
                        b"S" => {
                            let block = pattern(64 * 1024, 9);
                            while tcp.write_all(&block).await.is_ok() {}
                        }
                        b"E" => {
                            let (mut r, mut w) = tcp.split();
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                            let _ = w.shutdown().await;
                        }
                        _ => {}
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Service {
            addr,
            tasks,
            connections,
        }
    }

    /// Closes the listener and every connection (the connections' tasks live in the
    /// accept task's set, aborted with it).
    async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

struct Topology {
    home: Home,
    service: Service,
    shell: Sshd,
    db: Sshd,
}

/// Keepalives every second, two unanswered ones end a session: a silent hop is found
/// within about 3 s. ConnectTimeout bounds each reconnection attempt.
const HOP_EXTRA: &str = "  ServerAliveInterval 1\n  ServerAliveCountMax 2\n  ConnectTimeout 3\n";

async fn topology() -> Topology {
    let home = Home::new();
    let service = Service::start("127.0.0.3:0".parse().expect("addr")).await;
    let hops = ManualHops::start(&home, ("127.0.0.3", service.addr.port()));
    hops.write_config(&home, HOP_EXTRA);
    let ManualHops { shell, db } = hops;
    Topology {
        home,
        service,
        shell,
        db,
    }
}

impl Topology {
    async fn pgtunnel(&self, extra: &[&str]) -> Pgtunnel {
        let cfg = self.home.config.to_str().expect("utf-8 path");
        let target = self.service.addr.to_string();
        let mut args = vec!["-F", cfg, "--via", "db.foo.com"];
        args.extend_from_slice(extra);
        args.push(&target);
        Pgtunnel::start(&self.home, &args).await
    }
}

/// The connection the probe makes to the target before the ready line (one channel: the
/// service is not PostgreSQL).
const PROBE: usize = 1;

/// Opens a connection that downloads from the endless source and has read `at_least`.
async fn downloading(addr: SocketAddr, at_least: usize) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.expect("connect to pgtunnel");
    tcp.write_all(b"S").await.expect("ask for the source");
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < at_least {
        let n = timeout(LIMIT, tcp.read(&mut buf))
            .await
            .expect("the source sends")
            .expect("read from the source");
        assert!(n > 0, "the source ended early");
        got += n;
    }
    tcp
}

/// Reads until the connection ends; returns how: `Ok(bytes)` for a clean EOF, `Err` for an
/// error (a reset).
async fn read_to_end_or_error(tcp: &mut TcpStream) -> std::io::Result<usize> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    timeout(LIMIT, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) => return Ok(total),
                Ok(n) => total += n,
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the connection ends instead of hanging")
}

async fn echo_once(addr: SocketAddr, len: usize, seed: u64) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect to pgtunnel");
    tcp.write_all(b"E").await.expect("role");
    let data = pattern(len, seed);
    let (mut r, mut w) = tcp.split();
    let write = async {
        w.write_all(&data).await.expect("send");
        w.shutdown().await.expect("half-close");
    };
    let read = async {
        let mut back = Vec::with_capacity(len);
        r.read_to_end(&mut back).await.expect("read the echo");
        back
    };
    let ((), back) = timeout(LIMIT, async { tokio::join!(write, read) })
        .await
        .expect("echo within the limit");
    assert!(
        back == data,
        "echo intact ({} of {len} bytes back)",
        back.len()
    );
}

async fn lose_a_hop_then_recover(which: usize) {
    let mut t = topology().await;
    let mut tunnel = t.pgtunnel(&["--wait-for-chain", "45"]).await;
    echo_once(tunnel.addr, MIB, 1).await;

    // A download in flight when the hop goes silent.
    let mut inflight = downloading(tunnel.addr, MIB).await;
    let hop = if which == 1 { &t.shell } else { &t.db };
    hop.freeze();
    let ended = read_to_end_or_error(&mut inflight).await;
    assert!(
        ended.is_err(),
        "the in-flight download must end with an error, not a clean EOF: {ended:?}"
    );
    let name = if which == 1 {
        "shell.foo.com"
    } else {
        "db.foo.com"
    };
    tunnel
        .wait_for_stderr(&format!("lost the SSH session to hop {which} ({name}"))
        .await;
    tunnel.wait_for_stderr("no answer to keepalives").await;

    // The hop comes back (same address, same host key): a new connection on the same local
    // port works without touching pgtunnel. It may arrive while the chain is still down: it
    // waits for it.
    if which == 1 {
        t.shell.restart();
    } else {
        t.db.restart();
    }
    echo_once(tunnel.addr, MIB, 2).await;
    tunnel.wait_for_stderr("chain re-established").await;
    assert!(tunnel.running(), "pgtunnel kept running");
    echo_once(tunnel.addr, MIB, 3).await;

    tunnel.signal(Signal::SIGINT);
    let status = tunnel.wait(LIMIT).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", tunnel.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_1_goes_silent_then_comes_back() {
    lose_a_hop_then_recover(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_2_goes_silent_then_comes_back() {
    lose_a_hop_then_recover(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_restarts_and_the_chain_carries_on() {
    let t = topology().await;
    let mut tunnel = t.pgtunnel(&[]).await;
    let mut inflight = downloading(tunnel.addr, MIB).await;
    let addr = t.service.addr;
    t.service.stop().await;
    // The target went away: the connection ends (sshd reports the target's close).
    let _ = read_to_end_or_error(&mut inflight).await;
    let service = Service::start(addr).await;
    echo_once(tunnel.addr, MIB, 4).await;
    assert_eq!(service.connections.load(Ordering::SeqCst), 1);
    assert!(
        !tunnel.stderr().contains("lost the SSH session"),
        "the chain itself was never lost:\n{}",
        tunnel.stderr()
    );
    tunnel.signal(Signal::SIGTERM);
    assert_eq!(tunnel.wait(LIMIT).await.code(), Some(0));
    drop((t.shell, t.db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reconnect_makes_a_lost_hop_fatal() {
    let mut t = topology().await;
    let mut tunnel = t.pgtunnel(&["--no-reconnect"]).await;
    let mut inflight = downloading(tunnel.addr, MIB).await;
    t.shell.kill_all();
    let ended = read_to_end_or_error(&mut inflight).await;
    assert!(ended.is_err(), "reset, not EOF: {ended:?}");
    let status = tunnel.wait(LIMIT).await;
    assert_eq!(status.code(), Some(5), "stderr:\n{}", tunnel.stderr());
    let stderr = tunnel.stderr();
    assert!(
        stderr.contains("lost the SSH session to hop 1 (shell.foo.com")
            && stderr.contains("--no-reconnect"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_turned_away() {
    let t = topology().await;
    let tunnel = t.pgtunnel(&["--max-connections", "2"]).await;
    let a = downloading(tunnel.addr, 1024).await;
    let b = downloading(tunnel.addr, 1024).await;
    // The third is closed at once, without reaching the target.
    let mut c = TcpStream::connect(tunnel.addr).await.expect("connect");
    let _ = c.write_all(b"E").await;
    let ended = read_to_end_or_error(&mut c).await;
    assert!(matches!(ended, Ok(0) | Err(_)), "{ended:?}");
    tunnel.wait_for_stderr("--max-connections").await;
    // The two carried, and the probe's before the ready line.
    assert_eq!(t.service.connections.load(Ordering::SeqCst), 2 + PROBE);
    // Room again once one closes.
    drop(a);
    let mut served = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut d = TcpStream::connect(tunnel.addr).await.expect("connect");
        d.write_all(b"E").await.expect("role");
        d.write_all(b"ping").await.expect("ping");
        d.shutdown().await.expect("half-close");
        let mut back = Vec::new();
        if timeout(LIMIT, d.read_to_end(&mut back)).await.is_ok() && back == b"ping" {
            served = true;
            break;
        }
    }
    assert!(served, "a connection is served once there is room");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_open_connections_then_exits_0() {
    let t = topology().await;
    let mut tunnel = t.pgtunnel(&["--drain-timeout", "30"]).await;
    // An echo in progress when SIGTERM arrives finishes intact...
    let mut tcp = TcpStream::connect(tunnel.addr).await.expect("connect");
    tcp.write_all(b"E").await.expect("role");
    let data = pattern(4 * MIB, 5);
    tcp.write_all(&data[..MIB]).await.expect("first part");
    tunnel.signal(Signal::SIGTERM);
    tunnel
        .wait_for_stderr("waiting up to 30s for 1 open connection(s) to finish")
        .await;
    // ...new connections are no longer accepted...
    assert!(
        timeout(LIMIT, TcpStream::connect(tunnel.addr))
            .await
            .expect("connect returns")
            .is_err(),
        "the listener is closed"
    );
    let (mut r, mut w) = tcp.split();
    let write = async {
        w.write_all(&data[MIB..]).await.expect("rest");
        w.shutdown().await.expect("half-close");
    };
    let read = async {
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.expect("echo");
        back
    };
    let ((), back) = timeout(LIMIT, async { tokio::join!(write, read) })
        .await
        .expect("echo finishes");
    assert!(back == data, "intact after SIGTERM ({} bytes)", back.len());
    // ...and once it is done, pgtunnel exits 0 without waiting for the deadline.
    let status = tunnel.wait(LIMIT).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", tunnel.stderr());

    // With a connection that never finishes, it exits 0 at the drain deadline.
    let mut tunnel = t.pgtunnel(&["--drain-timeout", "1"]).await;
    let mut idle = downloading(tunnel.addr, 1024).await;
    tunnel.signal(Signal::SIGTERM);
    let status = tunnel.wait(LIMIT).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", tunnel.stderr());
    let ended = read_to_end_or_error(&mut idle).await;
    assert!(
        ended.is_err(),
        "closed at the deadline with a reset: {ended:?}"
    );
}

/// One short connection, as a pooled client's: connect, send a request, read the reply
/// (the echo of it), close.
async fn short_echo(addr: SocketAddr, payload: &[u8]) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect to pgtunnel");
    tcp.set_nodelay(true).expect("nodelay");
    let mut request = b"E".to_vec();
    request.extend_from_slice(payload);
    tcp.write_all(&request).await.expect("send");
    let mut back = vec![0u8; payload.len()];
    timeout(LIMIT, tcp.read_exact(&mut back))
        .await
        .expect("echo within the limit")
        .expect("read the echo");
    assert!(back == payload, "echo intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_200_concurrent_then_5000_sequential_without_growth() {
    let t = topology().await;
    let tunnel = t.pgtunnel(&[]).await;

    // 200 connections at once, 1 MiB each way, through both real hops.
    let mut all = JoinSet::new();
    for i in 0..200u64 {
        let addr = tunnel.addr;
        all.spawn(async move { echo_once(addr, MIB, 1000 + i).await });
    }
    while let Some(done) = all.join_next().await {
        done.expect("every echo intact");
    }
    assert_eq!(t.service.connections.load(Ordering::SeqCst), 200 + PROBE);

    // Warm up, then measure: 5,000 short connections one after the other must leave no
    // descriptors behind and no growing memory.
    let payload = pattern(512, 77);
    for _ in 0..100 {
        short_echo(tunnel.addr, &payload).await;
    }
    let fds_before = settled_fds(&tunnel, usize::MAX).await;
    let rss_before = tunnel.rss_kib();
    for _ in 0..SEQUENTIAL {
        short_echo(tunnel.addr, &payload).await;
    }
    let fds_after = settled_fds(&tunnel, fds_before).await;
    let rss_after = tunnel.rss_kib();
    eprintln!(
        "5000 sequential connections: open fds {fds_before} -> {fds_after}, \
         VmRSS {rss_before} KiB -> {rss_after} KiB"
    );
    assert!(
        fds_after <= fds_before,
        "open descriptors grew: {fds_before} -> {fds_after}"
    );
    assert!(
        rss_after < rss_before + 8 * 1024,
        "resident memory grew by {} KiB over 5000 connections",
        rss_after.saturating_sub(rss_before)
    );
    assert_eq!(
        t.service.connections.load(Ordering::SeqCst),
        PROBE + 200 + 100 + 5000
    );
    drop((t.shell, t.db));
}

/// pgtunnel's open descriptors once closes have settled: waits (bounded) until the count is
/// at most `target`, and returns the count then.
async fn settled_fds(tunnel: &Pgtunnel, target: usize) -> usize {
    let mut fds = tunnel.open_fds();
    for _ in 0..100 {
        if fds <= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds = tunnel.open_fds();
    }
    if target == usize::MAX {
        // A baseline: let in-flight closes finish first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        fds = tunnel.open_fds();
    }
    fds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_wait_for_a_lost_chain_only_so_long() {
    let mut t = topology().await;
    let mut tunnel = t.pgtunnel(&["--wait-for-chain", "2"]).await;
    echo_once(tunnel.addr, 1024, 6).await;
    t.shell.kill_all();
    tunnel
        .wait_for_stderr("lost the SSH session to hop 1 (shell.foo.com")
        .await;
    // The port stays open; a connection made now waits for the chain, which does not come
    // back: after --wait-for-chain it is closed, and the tunnel goes on trying.
    let mut waiting = TcpStream::connect(tunnel.addr)
        .await
        .expect("the local port stays open while the chain is down");
    let _ = waiting.write_all(b"E").await;
    let ended = read_to_end_or_error(&mut waiting).await;
    assert!(matches!(ended, Ok(0) | Err(_)), "{ended:?}");
    tunnel
        .wait_for_stderr("the chain is still down after 2s")
        .await;
    tunnel.wait_for_stderr("attempt 1 failed").await;
    assert!(tunnel.running(), "pgtunnel keeps trying");
    assert_eq!(t.service.connections.load(Ordering::SeqCst), 1 + PROBE);
    tunnel.signal(Signal::SIGINT);
    assert_eq!(tunnel.wait(LIMIT).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bastion_that_keeps_dropping_us_is_retried_with_backoff() {
    // sshd drops a connection that has had no channel open for a second
    // (UnusedConnectionTimeout, OpenSSH 9.2): an idle one-hop tunnel is let in and dropped
    // again and again. pgtunnel must not reconnect in a tight loop.
    let home = Home::new();
    let service = Service::start("127.0.0.3:0".parse().expect("addr")).await;
    let shell = Sshd::start(support::sshd::SshdOptions {
        ip: "127.0.0.1".parse().expect("ip"),
        authorized: vec![home.public()],
        permit_open: vec![("127.0.0.3".into(), service.addr.port())],
        extra: "UnusedConnectionTimeout 1",
    });
    home.trust_addr(shell.addr, &shell.host_key);
    let user = support::sshd::login_user();
    home.write_config(&home.block("shell.foo.com", shell.addr, &user, HOP_EXTRA));
    let cfg = home.config.to_str().expect("utf-8 path");
    let target = service.addr.to_string();
    let mut tunnel = Pgtunnel::start(&home, &["-F", cfg, "--via", "shell.foo.com", &target]).await;
    tunnel
        .wait_for_stderr("lost 2 time(s) in a row within 60s of coming up; waiting 2s")
        .await;
    // Still serving between the drops.
    assert!(tunnel.running());
    tunnel.signal(Signal::SIGINT);
    assert_eq!(tunnel.wait(LIMIT).await.code(), Some(0));
}

/// A tunnel being served through a frozen bastion, and what it runs on.
struct FrozenBastion {
    served: tokio::task::JoinHandle<pgtunnel::forward::Ended>,
    /// The chain's resolved ServerAliveInterval, per hop.
    intervals: Vec<Option<Duration>>,
    _hops: ManualHops,
    _service: Service,
}

/// A tunnel through the two sshd hops (`extra` added to each hop's block) with a 1 s default
/// keepalive and no reconnecting, whose bastion is then frozen.
async fn serve_with_frozen_bastion(home: &Home, extra: &str) -> FrozenBastion {
    let service = Service::start("127.0.0.3:0".parse().expect("addr")).await;
    let hops = ManualHops::start(home, ("127.0.0.3", service.addr.port()));
    hops.write_config(home, extra);
    let chain = home
        .chain(Some("db.foo.com"), &service.addr.to_string())
        .expect("chain");
    let intervals = chain
        .hops
        .iter()
        .map(|h| h.config.server_alive_interval)
        .collect();
    let opts = pgtunnel::ssh::session::ConnectOptions {
        default_keepalive: Duration::from_secs(1),
        ..options()
    };
    let tunnel = pgtunnel::tunnel::start(&chain, "127.0.0.1:0".parse().expect("addr"), &opts)
        .await
        .expect("tunnel up")
        .reconnect(None);
    let served = tokio::spawn(tunnel.serve(std::future::pending()));
    hops.shell.freeze();
    FrozenBastion {
        served,
        intervals,
        _hops: hops,
        _service: service,
    }
}

/// Without ServerAliveInterval in the config, the library's default keepalive applies (here
/// shortened through `ConnectOptions::default_keepalive`; the binary's is 30 s) with OpenSSH's
/// default ServerAliveCountMax of 3: a silent hop is still found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_keepalive_finds_a_silent_hop() {
    let home = Home::new();
    let frozen = serve_with_frozen_bastion(&home, "").await;
    assert!(
        frozen.intervals.iter().all(Option::is_none),
        "no ServerAliveInterval configured"
    );
    let ended = timeout(LIMIT, frozen.served)
        .await
        .expect("the silent hop is found")
        .expect("serve task");
    match ended {
        pgtunnel::forward::Ended::ChainLost { reason, .. } => {
            assert!(reason.contains("no answer to keepalives"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

/// `ServerAliveInterval 0` turns keepalives off, as in ssh, rather than leaving the interval
/// unset: the default keepalive (1 s here, which finds a silent hop within about 4 s in
/// `the_default_keepalive_finds_a_silent_hop`) is not used, so a silent hop ends nothing.
/// (The wait is an upper bound: a slow machine could only make this pass wrongly, never fail.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_alive_interval_0_turns_the_default_keepalive_off() {
    let home = Home::new();
    let frozen = serve_with_frozen_bastion(&home, "  ServerAliveInterval 0\n").await;
    assert!(
        frozen.intervals.iter().all(|i| *i == Some(Duration::ZERO)),
        "ServerAliveInterval 0 is kept as 0, not as unset"
    );
    let ended = timeout(Duration::from_secs(8), frozen.served).await;
    assert!(ended.is_err(), "no keepalive ended the session: {ended:?}");
}

/// The supervisor publishes the chain's state: up with its hops, then which hop was lost
/// while it brings the chain up again, then stopping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_state_names_the_lost_hop_while_recovering() {
    use pgtunnel::forward::{ChainState, Ended};
    let home = Home::new();
    let service = Service::start("127.0.0.3:0".parse().expect("addr")).await;
    let mut hops = ManualHops::start(&home, ("127.0.0.3", service.addr.port()));
    hops.write_config(&home, "");
    let chain = home
        .chain(Some("db.foo.com"), &service.addr.to_string())
        .expect("chain");
    let tunnel = pgtunnel::tunnel::start(&chain, "127.0.0.1:0".parse().expect("addr"), &options())
        .await
        .expect("tunnel up");
    let mut watch = tunnel.chain();
    match watch.current() {
        ChainState::Up(live) => {
            let names: Vec<&str> = live.hops().map(|h| h.name.as_str()).collect();
            assert_eq!(names, ["shell.foo.com", "db.foo.com"]);
        }
        other => panic!("not up: {other:?}"),
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(tunnel.serve(async move {
        let _ = stopped.await;
    }));

    // db.foo.com (hop 2) goes away; shell.foo.com's session stays up.
    hops.db.kill_all();
    let lost = timeout(LIMIT, async {
        loop {
            match watch.changed().await {
                Some(ChainState::Recovering { hop, .. }) => break hop,
                Some(_) => {}
                None => panic!("the supervisor finished"),
            }
        }
    })
    .await
    .expect("the loss is published");
    assert_eq!(lost.index, 2, "{lost}");

    let _ = stop.send(());
    let ended = timeout(LIMIT, serving)
        .await
        .expect("tunnel stops")
        .expect("serve task");
    assert!(matches!(ended, Ended::Shutdown { .. }), "{ended:?}");
    assert!(matches!(watch.current(), ChainState::Stopping));
}

/// A re-established chain is probed before it carries connections: hop 2 comes back while
/// the target is down, so the chain is up but the probe fails and the tunnel keeps trying;
/// once the target is back, the chain is re-established and carries again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reestablished_chain_is_probed_before_it_carries() {
    let t = topology().await;
    let tunnel = t.pgtunnel(&[]).await;
    echo_once(tunnel.addr, 1024, 11).await;
    let Topology {
        home: _home,
        service,
        shell: _shell,
        mut db,
    } = t;
    let service_addr = service.addr;
    service.stop().await;
    db.restart();
    tunnel
        .wait_for_stderr("lost the SSH session to hop 2 (db.foo.com")
        .await;
    tunnel
        .wait_for_stderr("the chain came up, but the probe failed")
        .await;
    assert!(
        tunnel
            .stderr()
            .contains(&format!("could not reach {service_addr}")),
        "{}",
        tunnel.stderr()
    );
    assert!(
        !tunnel.stderr().contains("chain re-established"),
        "not serving while the target is down: {}",
        tunnel.stderr()
    );
    // The target is back: the next attempt probes fine and the chain carries again.
    let service = Service::start(service_addr).await;
    tunnel.wait_for_stderr("chain re-established").await;
    echo_once(tunnel.addr, 1024, 12).await;
    assert!(
        service.connections.load(Ordering::SeqCst) >= 2,
        "the probe and the echo"
    );
}
