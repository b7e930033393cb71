//! Several tunnels in one process through real sshd hops: ssh's own `-L` syntax (several
//! forwards, one login per hop), the manual's commands with `ssh` replaced by `pgtunnel`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::process::Pgtunnel;
use support::sshd::{Sshd, SshdOptions, login_user};
use support::{Echo, Home, echo_round_trip};

/// A port free on both loopback addresses now (a forward without a bind address listens on
/// 127.0.0.1 and ::1, as ssh's).
fn free_port() -> u16 {
    for _ in 0..50 {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = v4.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("::1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both 127.0.0.1 and ::1");
}

/// Three echo services behind the manual's two hops: `db.foo.com` (127.0.0.2) may open only
/// them, `shell.foo.com` (127.0.0.1) only `db.foo.com`.
struct Three {
    home: Home,
    echoes: Vec<Echo>,
    shell: Sshd,
    db: Sshd,
}

async fn three() -> Three {
    let home = Home::new();
    let mut echoes = Vec::new();
    for _ in 0..3 {
        echoes.push(Echo::start_on("127.0.0.3:0").await);
    }
    let db = Sshd::start(SshdOptions {
        ip: "127.0.0.2".parse().expect("ip"),
        authorized: vec![home.public()],
        permit_open: echoes
            .iter()
            .map(|e| ("127.0.0.3".to_string(), e.addr.port()))
            .collect(),
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
    let mut config = home.block("shell.foo.com", shell.addr, &user, "");
    config.push_str(&home.block("db.foo.com", db.addr, &user, "  ProxyJump shell.foo.com\n"));
    home.write_config(&config);
    Three {
        home,
        echoes,
        shell,
        db,
    }
}

fn logins(sshd: &Sshd) -> usize {
    sshd.log().matches("Accepted publickey").count()
}

/// The listen address of each ready line (`ready: ADDR [and ADDR] -> TARGET (NAME)`).
fn ready_addrs(p: &Pgtunnel) -> Vec<SocketAddr> {
    p.ready
        .iter()
        .map(|l| {
            l.trim_start_matches("ready: ")
                .split_whitespace()
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no address in {l:?}"))
        })
        .collect()
}

/// `pgtunnel -F HOME's config ARGS`, once `tunnels` ready lines are out.
async fn start(home: &Home, args: &[&str], tunnels: usize) -> Pgtunnel {
    let config = home.config.to_str().expect("utf-8 path");
    let mut all = vec!["-F", config];
    all.extend_from_slice(args);
    Pgtunnel::start_many(home.dir.path(), &all, &[], tunnels).await
}

async fn stop(mut p: Pgtunnel) {
    p.signal(Signal::SIGTERM);
    let status = p.wait(Duration::from_secs(20)).await;
    assert!(status.success(), "exit {status:?}; stderr:\n{}", p.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dash_l_command_with_three_forwards_carries_each_over_one_login_per_hop() {
    let t = three().await;
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let specs: Vec<String> = [
        format!("{}:127.0.0.3:{}", ports[0], t.echoes[0].addr.port()),
        format!(
            "localhost:{}:127.0.0.3:{}",
            ports[1],
            t.echoes[1].addr.port()
        ),
        format!(
            "127.0.0.1:{}:127.0.0.3:{}",
            ports[2],
            t.echoes[2].addr.port()
        ),
    ]
    .into();
    let mut args = vec!["-N"];
    for spec in &specs {
        args.extend(["-L", spec.as_str()]);
    }
    args.push("db.foo.com");
    let p = start(&t.home, &args, 3).await;
    let addrs = ready_addrs(&p);
    assert_eq!(
        addrs.iter().map(SocketAddr::port).collect::<Vec<_>>(),
        ports,
        "{:?}",
        p.ready
    );
    // A forward without bind address, or `localhost`, listens on both loopbacks, as ssh's.
    assert!(
        p.ready[0].contains(&format!("[::1]:{}", ports[0])),
        "{:?}",
        p.ready
    );
    assert!(
        p.ready[1].contains(&format!("[::1]:{}", ports[1])),
        "{:?}",
        p.ready
    );
    assert!(!p.ready[2].contains("[::1]"), "{:?}", p.ready);
    for (i, (port, echo)) in ports.iter().zip(&t.echoes).enumerate() {
        let addr: SocketAddr = ([127, 0, 0, 1], *port).into();
        echo_round_trip(addr, 1 << 20, i as u64).await;
        echo_round_trip(
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, ports[0])),
            4096,
            9,
        )
        .await;
        assert!(echo.connections() >= 1, "echo {i} saw nothing");
    }
    assert_eq!(
        logins(&t.shell),
        1,
        "one login to the bastion for three forwards"
    );
    assert_eq!(
        logins(&t.db),
        1,
        "one login to the inner hop for three forwards"
    );
    stop(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manuals_commands_work_with_ssh_replaced_by_pgtunnel() {
    let t = three().await;
    let user = login_user();
    // `ssh -L 63333:localhost:5432 joe@foo.com`: the service on the SSH server itself.
    let local_echo = Echo::start_on("127.0.0.1:0").await;
    let shell = Sshd::start(SshdOptions {
        ip: "127.0.0.1".parse().expect("ip"),
        authorized: vec![t.home.public()],
        permit_open: vec![("localhost".into(), local_echo.addr.port())],
        extra: "",
    });
    t.home.trust_addr(shell.addr, &shell.host_key);
    let mut config = t.home.block("foo.com", shell.addr, &user, "");
    config.push_str(&t.home.block("shell.foo.com", t.shell.addr, &user, ""));
    t.home.write_config(&config);
    let port = free_port();
    let spec = format!("{port}:localhost:{}", local_echo.addr.port());
    let dest = format!("{user}@foo.com");
    let p = start(&t.home, &["-L", &spec, &dest], 1).await;
    echo_round_trip(([127, 0, 0, 1], port).into(), 1 << 16, 1).await;
    // The probe's connection, then the round trip's.
    assert_eq!(local_echo.connections(), 2);
    stop(p).await;

    // `ssh -L 63333:db.foo.com:5432 joe@shell.foo.com`: db.foo.com is 127.0.0.2 here (the
    // name is resolved by shell.foo.com, which cannot resolve the manual's).
    let port = free_port();
    let spec = format!("{port}:127.0.0.2:{}", t.db.addr.port());
    let dest = format!("{user}@shell.foo.com");
    let p = start(&t.home, &["-L", &spec, &dest, "--no-probe"], 1).await;
    // What comes back through the forward is db.foo.com's SSH banner: the manual's path.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut banner = [0u8; 8];
    tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut banner)
        .await
        .expect("banner");
    assert_eq!(&banner, b"SSH-2.0-");
    // The path report covers the forward, its last segment plain TCP from shell.foo.com
    // (on loopback here, so it stays on that machine).
    let report = p.report.join("\n");
    assert!(
        report.contains(&format!("shell.foo.com -> 127.0.0.2:{}", t.db.addr.port())),
        "{report}"
    );
    stop(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_style_forwards_with_dash_j_and_mistakes_explained() {
    let t = three().await;
    let user = login_user();
    let port = free_port();
    let spec = format!("{port}:127.0.0.3:{}", t.echoes[0].addr.port());
    let dest = format!("{user}@db.foo.com");
    // -J overrides db.foo.com's ProxyJump, as in ssh: here it is the same bastion.
    let p = start(&t.home, &["-J", "shell.foo.com", "-L", &spec, &dest], 1).await;
    echo_round_trip(([127, 0, 0, 1], port).into(), 1 << 16, 3).await;
    stop(p).await;

    // Mixing TARGET's -L PORT with ssh-style forwards is refused with the reason.
    let out = std::process::Command::new(support::process::BIN)
        .args(["-F", "none", "-L", "5555", "-L", &spec, "db.foo.com"])
        .env("HOME", t.home.dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be mixed"), "{err}");
}
