//! Tunnels whose chains share hops share those hops' sessions (one login to the bastion),
//! and losing an inner hop rebuilds only what depends on it: through real sshd hops.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use pgtunnel::forward::probe::Probe;
use pgtunnel::forward::{Backoff, ChainState, Reconnect, Tunnel};
use pgtunnel::ssh::session::{ConnectOptions, connect_chain};
use pgtunnel::tunnel;
use support::sshd::{Sshd, SshdOptions, login_user};
use support::{Echo, Home, echo_round_trip};

fn logins(sshd: &Sshd) -> usize {
    sshd.log().matches("Accepted publickey").count()
}

/// A tunnel for `chain` over `opts`'s pool, reconnecting quickly, serving in a task.
async fn serve(
    chain: &pgtunnel::plan::chain::Chain,
    opts: &ConnectOptions,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> (SocketAddr, pgtunnel::forward::ChainWatch) {
    let listener = tunnel::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sessions = connect_chain(chain, opts).await.expect("chain up");
    let tunnel = Tunnel::new(listener, sessions, chain.target.clone()).reconnect(Some(Reconnect {
        chain: chain.clone(),
        opts: opts.clone(),
        backoff: Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
        },
        probe: Probe::Off,
    }));
    let watch = tunnel.chain();
    let mut stop = stop.clone();
    tokio::spawn(tunnel.serve(async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    (addr, watch)
}

async fn wait_for(
    watch: &mut pgtunnel::forward::ChainWatch,
    what: &str,
    f: fn(&ChainState) -> bool,
) {
    let ok = tokio::time::timeout(Duration::from_secs(30), async {
        while !f(&watch.current()) {
            if watch.changed().await.is_none() {
                return;
            }
        }
    })
    .await;
    assert!(
        ok.is_ok() && f(&watch.current()),
        "chain never {what}: {:?}",
        watch.current()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_inner_hop_leaves_the_bastions_other_tunnels_serving() {
    let home = Home::new();
    let near = Echo::start_on("127.0.0.1:0").await;
    let far = Echo::start_on("127.0.0.3:0").await;
    let mut db = Sshd::start(SshdOptions {
        ip: "127.0.0.2".parse().expect("ip"),
        authorized: vec![home.public()],
        permit_open: vec![("127.0.0.3".into(), far.addr.port())],
        extra: "",
    });
    let shell = Sshd::start(SshdOptions {
        ip: "127.0.0.1".parse().expect("ip"),
        authorized: vec![home.public()],
        permit_open: vec![
            ("127.0.0.2".into(), db.addr.port()),
            ("127.0.0.1".into(), near.addr.port()),
        ],
        extra: "",
    });
    home.trust_addr(shell.addr, &shell.host_key);
    home.trust_addr(db.addr, &db.host_key);
    let user = login_user();
    let mut config = home.block("shell.foo.com", shell.addr, &user, "");
    config.push_str(&home.block("db.foo.com", db.addr, &user, "  ProxyJump shell.foo.com\n"));
    home.write_config(&config);

    let near_chain = home
        .chain(Some("shell.foo.com"), &near.addr.to_string())
        .expect("chain");
    let far_chain = home
        .chain(Some("db.foo.com"), &far.addr.to_string())
        .expect("chain");
    let opts = support::options();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (near_addr, _) = serve(&near_chain, &opts, &stop).await;
    let (far_addr, mut far_watch) = serve(&far_chain, &opts, &stop).await;
    echo_round_trip(far_addr, 1 << 20, 1).await;
    assert_eq!(logins(&shell), 1, "the bastion's session is shared");

    // The monitor (status, --json, systemd) hears the loss and the recovery, in order.
    let changes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let heard = changes.clone();
    let _monitor = pgtunnel::fleet::monitor::Monitor::start(
        vec![pgtunnel::fleet::monitor::Watched {
            name: "far".into(),
            listen: vec![far_addr.to_string()],
            target: far_chain.target.to_string(),
            hops: far_chain.hops.iter().map(|h| h.label()).collect(),
            stats: Default::default(),
            chain: far_watch.clone(),
        }],
        std::sync::Arc::new(move |c| heard.lock().expect("lock").push(c)),
    );
    // A transfer on the bastion-only tunnel runs while the inner hop goes down and comes back.
    let transfer = tokio::spawn(support::paced_transfer(near_addr, 100));
    tokio::time::sleep(Duration::from_millis(500)).await;
    db.kill_all();
    wait_for(&mut far_watch, "recovering", |s| {
        matches!(s, ChainState::Recovering { .. })
    })
    .await;
    db.restart();
    wait_for(&mut far_watch, "back up", |s| {
        matches!(s, ChainState::Up(_))
    })
    .await;
    echo_round_trip(far_addr, 1 << 20, 2).await;
    transfer
        .await
        .expect("the bastion-only tunnel served throughout");

    let changes = changes.lock().expect("lock").clone();
    use pgtunnel::fleet::monitor::Change;
    assert!(
        matches!(&changes[..], [Change::Lost { tunnel, hop, .. }, Change::Recovered { hop: back, .. }]
            if tunnel == "far" && hop.contains("hop 2") && back == hop),
        "{changes:?}"
    );
    // Only the inner hop was logged in to again; the bastion's session was kept.
    assert_eq!(logins(&shell), 1, "{}", shell.log());
    assert_eq!(logins(&db), 2);
    stop_tx.send_replace(true);
}

/// A bastion session shared from a tunnel without `--require-pq` is checked for one with it:
/// sharing never weakens what a tunnel asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_session_is_checked_against_require_pq() {
    let home = Home::new();
    let echo = Echo::start().await;
    let config =
        pgtunnel::demo::bastion::BastionConfig::generate(support::USER, vec![home.public()])
            .expect("bastion key")
            .allow(&[("127.0.0.1", echo.addr.port())])
            .kex(&[russh::kex::CURVE25519]);
    let b = pgtunnel::demo::bastion::Bastion::start("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("start bastion");
    home.trust(b.addr().port(), b.host_key());
    home.write_config(&home.host_block("gw", b.addr().port(), ""));
    let chain = home
        .chain(Some("gw"), &echo.addr.to_string())
        .expect("chain");
    let opts = support::options();
    let first = connect_chain(&chain, &opts)
        .await
        .expect("no --require-pq: up");
    let strict = ConnectOptions {
        require_pq: true,
        ..opts.clone()
    };
    let err = connect_chain(&chain, &strict)
        .await
        .expect_err("the shared classical session is refused under --require-pq");
    assert!(err.to_string().contains("--require-pq"), "{err}");
    assert_eq!(err.kind(), pgtunnel::ErrorKind::NotEncrypted);
    // The first tunnel's session is untouched.
    assert!(!first.hops()[0].is_closed());
    first.disconnect().await;
}
