//! Interoperability with real OpenSSH servers: the manual's topology with two `sshd` hops on
//! their own loopback addresses (127.0.0.1 = shell.foo.com, 127.0.0.2 = db.foo.com) and the
//! service on 127.0.0.3. Each sshd's `PermitOpen` allows only the next step, so a test that
//! gets its bytes back has proven the path went client -> hop 1 -> hop 2 -> service.

mod support;

use pgtunnel::error::{ErrorKind, HopError};
use support::sshd::{ManualHops, Sshd, SshdOptions, login_user};
use support::*;

const MIB: usize = 1024 * 1024;

struct Topology {
    home: Home,
    echo: Echo,
    shell: Sshd,
    db: Sshd,
}

async fn topology() -> Topology {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.3:0").await;
    let hops = ManualHops::start(&home, ("127.0.0.3", echo.addr.port()));
    hops.write_config(&home, "");
    let ManualHops { shell, db } = hops;
    Topology {
        home,
        echo,
        shell,
        db,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_real_sshd_hops_carry_data_intact() {
    let t = topology().await;
    // `--via db.foo.com` expands db.foo.com's ProxyJump: shell -> db.
    let chain = t
        .home
        .chain(Some("db.foo.com"), &t.echo.addr.to_string())
        .expect("chain");
    assert_eq!(chain.hops.len(), 2);
    let running = Running::start(&chain).await.expect("tunnel up");
    echo_round_trip(running.addr, 32 * MIB, 7).await;

    // Several at once, multiplexed over the same nested sessions.
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let addr = running.addr;
        tasks.push(tokio::spawn(async move {
            echo_round_trip(addr, 256 * 1024, 100 + i).await
        }));
    }
    for t in tasks {
        t.await.expect("connection task");
    }
    assert_eq!(t.echo.connections(), 21);
    running.stop().await;
    // PermitOpen on each sshd allowed only the next step: the bytes came back, so the path
    // was hop 1 -> hop 2 -> service.
    drop((t.shell, t.db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit_open_proves_the_path_and_refusals_carry_sshd_reason() {
    let t = topology().await;
    // Hop 1 alone may not reach the service: its refusal reaches the client as an error on
    // that connection, with OpenSSH's reason, and the tunnel stays up.
    let chain = t
        .home
        .chain(Some("shell.foo.com"), &t.echo.addr.to_string())
        .expect("chain");
    let running = Running::start(&chain).await.expect("tunnel up");
    let mut tcp = tokio::net::TcpStream::connect(running.addr)
        .await
        .expect("connect");
    let mut buf = [0u8; 16];
    let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "refused connection must be closed without data");
    assert_eq!(t.echo.connections(), 0, "nothing reached the service");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_key_for_real_sshd_hop_2_is_refused() {
    let t = topology().await;
    // Replace db's known key with another one.
    let other = pgtunnel::demo::bastion::generate_key().expect("key");
    let text = std::fs::read_to_string(&t.home.known_hosts).expect("known_hosts");
    let db_name = format!("[127.0.0.2]:{}", t.db.addr.port());
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with(&db_name))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&t.home.known_hosts, kept).expect("write");
    t.home.trust_addr(t.db.addr, other.public_key());

    let chain = t
        .home
        .chain(Some("db.foo.com"), &t.echo.addr.to_string())
        .expect("chain");
    let err = match Running::start(&chain).await {
        Ok(_) => panic!("a changed host key must be refused"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::HostKey);
    let hop = err.hop().expect("names a hop");
    assert_eq!(hop.index, 2);
    let text = err.to_string();
    assert!(text.contains("db.foo.com"), "{text}");
    assert!(
        matches!(
            err,
            pgtunnel::Error::Hop { ref source, .. } if matches!(**source, HopError::HostKeyChanged { .. })
        ),
        "{err:?}"
    );
    assert!(
        text.contains(&pgtunnel::config::known_hosts::fingerprint(&t.db.host_key)),
        "message shows the offered fingerprint: {text}"
    );
    assert_eq!(t.echo.connections(), 0);
}

/// `ProxyCommand ssh -W %h:%p shell.foo.com` carries hop 1 (db.foo.com); a second hop (an
/// in-process bastion reachable only from db.foo.com) nests inside it, and the service is
/// reached from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxycommand_hop_then_a_nested_hop() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.3:0").await;
    let inner = bastion(&home, &[("127.0.0.3", echo.addr.port())]).await;
    let db = Sshd::start(SshdOptions {
        ip: "127.0.0.2".parse().expect("ip"),
        authorized: vec![home.public()],
        permit_open: vec![("127.0.0.1".into(), inner.addr().port())],
        extra: "",
    });
    let shell = Sshd::start(SshdOptions {
        ip: "127.0.0.1".parse().expect("ip"),
        authorized: vec![home.public()],
        permit_open: vec![("127.0.0.2".into(), db.addr.port())],
        extra: "",
    });
    home.trust_addr(shell.addr, &shell.host_key);
    home.trust_addr(db.addr, &db.host_key);
    let user = login_user();
    let cfg = home.config.display().to_string();
    let mut config = home.block("shell.foo.com", shell.addr, &user, "  BatchMode yes\n");
    config.push_str(&home.block(
        "db.foo.com",
        db.addr,
        &user,
        &format!("  ProxyCommand ssh -F {cfg} -W %h:%p shell.foo.com\n"),
    ));
    config.push_str(&home.host_block("inner", inner.addr().port(), ""));
    home.write_config(&config);

    let chain = home
        .chain(Some("db.foo.com,inner"), &echo.addr.to_string())
        .expect("chain");
    assert_eq!(chain.hops.len(), 2);
    let running = Running::start(&chain).await.expect("tunnel up");
    echo_round_trip(running.addr, 8 * MIB, 9).await;
    let requests = inner.requests();
    assert!(
        requests.iter().all(|r| r.allowed) && requests.len() == 1,
        "{requests:?}"
    );
    running.stop().await;
}
