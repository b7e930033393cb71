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
    /// An echo the bastion itself may reach (127.0.0.1).
    near: Echo,
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
    let near = Echo::start_on("127.0.0.1:0").await;
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
    Three {
        home,
        echoes,
        near,
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

/// What `pgtunnel status --json` (with `run` as $XDG_RUNTIME_DIR) says of the process `pid`
/// (other tests' processes may be listed too: the fallback directory is searched as well).
async fn status_of(run: &std::path::Path, pid: u32) -> pgtunnel::status::ProcessStatus {
    let out = tokio::process::Command::new(support::process::BIN)
        .args(["status", "--json"])
        .env("XDG_RUNTIME_DIR", run)
        .output()
        .await
        .expect("status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let processes: Vec<pgtunnel::status::ProcessStatus> =
        serde_json::from_slice(&out.stdout).expect("status json");
    processes
        .into_iter()
        .find(|p| p.pid == pid)
        .unwrap_or_else(|| panic!("pgtunnel {pid} not in status"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_events_and_systemd_notify_follow_the_tunnels() {
    use pgtunnel::status::{JsonEvent, parse_line};
    use tokio::io::AsyncBufReadExt;
    let t = three().await;
    let run = tempfile::tempdir().expect("tempdir");
    let notify_path = run.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let specs: Vec<String> = (0..2)
        .map(|i| format!("{}:127.0.0.3:{}", ports[i], t.echoes[i].addr.port()))
        .collect();
    let config = t.home.config.to_str().expect("utf-8");
    let mut child = tokio::process::Command::new(support::process::BIN)
        .args([
            "--json",
            "-F",
            config,
            "-L",
            &specs[0],
            "-L",
            &specs[1],
            "db.foo.com",
        ])
        .env_clear()
        .env("HOME", t.home.dir.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("XDG_RUNTIME_DIR", run.path())
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut events = Vec::new();
    let mut next = async || {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("an event within 60 s")
            .expect("read stdout")
            .expect("stdout open");
        parse_line(&line).unwrap_or_else(|e| panic!("not an event line {line:?}: {e}"))
    };
    // systemd hears READY=1 once both tunnels are up, and not before their ready events.
    let mut buf = [0u8; 512];
    let mut datagrams = Vec::new();
    while !datagrams.iter().any(|d: &String| d == "READY=1") {
        let n = notify.recv(&mut buf).expect("a notify datagram");
        datagrams.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    // At READY=1 every tunnel's chain is up: the status socket says so already.
    let pid = child.id().expect("pid");
    let ours = status_of(run.path(), pid).await;
    assert_eq!(ours.tunnels.len(), 2);
    assert!(ours.tunnels.iter().all(|t| {
        t.hops.len() == 2
            && t.hops
                .iter()
                .all(|h| h.state == pgtunnel::status::HopState::Up)
    }));
    for _ in 0..2 {
        events.push(next().await.event);
    }
    let ready: Vec<&JsonEvent> = events
        .iter()
        .filter(|e| matches!(e, JsonEvent::Ready { .. }))
        .collect();
    assert_eq!(ready.len(), 2, "{events:?}");
    assert!(
        datagrams
            .iter()
            .any(|d| d.starts_with("STATUS=2 tunnel(s) up")),
        "{datagrams:?}"
    );
    if let JsonEvent::Ready {
        listen,
        path_report,
        ..
    } = ready[0]
    {
        assert!(
            listen.contains(&format!("127.0.0.1:{}", ports[0])),
            "{listen:?}"
        );
        assert!(path_report.contains("SSH (encrypted"), "{path_report}");
    }

    // Traffic on the first tunnel: its events and its status counts say exactly what was sent.
    echo_round_trip(([127, 0, 0, 1], ports[0]).into(), 100_000, 5).await;
    let closed = loop {
        match next().await.event {
            e @ JsonEvent::ConnectionClosed { .. } => break e,
            JsonEvent::ConnectionOpened { tunnel, .. } => assert_eq!(tunnel, specs[0]),
            other => panic!("unexpected {other:?}"),
        }
    };
    match closed {
        JsonEvent::ConnectionClosed {
            tunnel,
            bytes_up,
            bytes_down,
            how,
            ..
        } => {
            assert_eq!(tunnel, specs[0]);
            assert_eq!((bytes_up, bytes_down), (100_000, 100_000));
            assert_eq!(how, "closed");
        }
        _ => unreachable!(),
    }
    let ours = status_of(run.path(), pid).await;
    let tunnels = &ours.tunnels;
    assert_eq!(
        tunnels.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        [specs[0].as_str(), specs[1].as_str()]
    );
    assert_eq!(
        (
            tunnels[0].accepted,
            tunnels[0].bytes_up,
            tunnels[0].bytes_down
        ),
        (1, 100_000, 100_000)
    );
    assert_eq!((tunnels[1].accepted, tunnels[1].bytes_up), (0, 0));
    assert!(tunnels.iter().all(|t| {
        t.hops.len() == 2
            && t.hops
                .iter()
                .all(|h| h.state == pgtunnel::status::HopState::Up)
    }));
    let text = tokio::process::Command::new(support::process::BIN)
        .arg("status")
        .env("XDG_RUNTIME_DIR", run.path())
        .output()
        .await
        .expect("status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&specs[0]) && text.contains("shell.foo.com (up"),
        "{text}"
    );

    // Stopping: STOPPING=1 and a last `stopped` event.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().expect("pid") as i32),
        Signal::SIGTERM,
    )
    .expect("signal");
    loop {
        let n = notify.recv(&mut buf).expect("STOPPING=1");
        if &buf[..n] == b"STOPPING=1" {
            break;
        }
    }
    loop {
        if let JsonEvent::Stopped { exit_code, .. } = next().await.event {
            assert_eq!(exit_code, 0);
            break;
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert!(status.success());
    assert!(
        !run.path().join("pgtunnel").exists(),
        "the status socket, and its directory once empty, are removed on exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_with_two_local_forward_lines_opens_both_as_ssh_dash_n_would() {
    let t = three().await;
    let user = login_user();
    let ports = [free_port(), free_port()];
    let mut config = t.home.block("shell.foo.com", t.shell.addr, &user, "");
    config.push_str(&t.home.block(
        "db.foo.com",
        t.db.addr,
        &user,
        &format!(
            "  ProxyJump shell.foo.com\n  DynamicForward 1080\n  LocalForward {} 127.0.0.3:{}\n  \
             LocalForward 127.0.0.1:{} 127.0.0.3:{}\n",
            ports[0],
            t.echoes[0].addr.port(),
            ports[1],
            t.echoes[1].addr.port()
        ),
    ));
    t.home.write_config(&config);
    let p = start(&t.home, &["db.foo.com"], 2).await;
    // What ssh -N would open besides is said, not silently dropped.
    assert!(
        p.stderr().contains("DynamicForward (") && p.stderr().contains("is not opened"),
        "{}",
        p.stderr()
    );
    assert!(
        p.stderr().contains("opening its LocalForward lines"),
        "{}",
        p.stderr()
    );
    for (i, port) in ports.iter().enumerate() {
        echo_round_trip(([127, 0, 0, 1], *port).into(), 1 << 18, i as u64).await;
        assert!(t.echoes[i].connections() >= 1);
    }
    assert_eq!(logins(&t.shell), 1);
    assert_eq!(logins(&t.db), 1);
    stop(p).await;

    // explain lists them, with their lines.
    let out = std::process::Command::new(support::process::BIN)
        .args(["explain", "-F", t.home.config.to_str().expect("utf-8")])
        .arg("db.foo.com")
        .env("HOME", t.home.dir.path())
        .output()
        .expect("explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("db.foo.com opens its LocalForward lines"),
        "{text}"
    );
    for (port, echo) in ports.iter().zip(&t.echoes) {
        // Its line in explain's table, and a path report of its own.
        let name = format!("{port}:127.0.0.3:{}", echo.addr.port());
        assert!(text.matches(&name).count() >= 2, "{name} in:\n{text}");
    }
}

/// A tunnels file for [`three`]: `near` through the bastion only, `far1` and `far2` through
/// the bastion and the inner hop.
fn tunnels_file(t: &Three, ports: &[u16; 3]) -> std::path::PathBuf {
    let path = t.home.dir.path().join("tunnels.toml");
    let text = format!(
        "ssh_config = \"{config}\"\n\
         [tunnel.near]\nvia = \"shell.foo.com\"\ntarget = \"127.0.0.1:{near}\"\nlisten = {p0}\n\
         pg = false\n\n\
         [tunnel.far1]\nvia = \"db.foo.com\"\ntarget = \"127.0.0.3:{e1}\"\nlisten = \"127.0.0.1:{p1}\"\n\n\
         [tunnel.far2]\nvia = [\"db.foo.com\"]\ntarget = \"127.0.0.3:{e2}\"\nlisten = \"localhost:{p2}\"\npg = false\n",
        config = t.home.config.display(),
        near = t.near.addr.port(),
        e1 = t.echoes[1].addr.port(),
        e2 = t.echoes[2].addr.port(),
        p0 = ports[0],
        p1 = ports[1],
        p2 = ports[2],
    );
    std::fs::write(&path, text).expect("write tunnels file");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_tunnels_behind_one_bastion_share_its_session_and_survive_the_inner_hop() {
    let mut t = three().await;
    let ports = [free_port(), free_port(), free_port()];
    let file = tunnels_file(&t, &ports);
    let file = file.to_str().expect("utf-8");
    // `list` shows what the file defines.
    let out = std::process::Command::new(support::process::BIN)
        .args(["list", "-f", file])
        .output()
        .expect("list");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["near", "far1", "far2"] {
        assert!(listed.contains(name), "{listed}");
    }

    let run = tempfile::tempdir().expect("tempdir");
    let p = Pgtunnel::start_many(
        t.home.dir.path(),
        &["up", "-f", file, "--wait-for-chain", "30"],
        &[("XDG_RUNTIME_DIR", run.path().as_os_str())],
        3,
    )
    .await;
    assert_eq!(
        logins(&t.shell),
        1,
        "one login to the bastion for three tunnels"
    );
    assert_eq!(
        logins(&t.db),
        1,
        "one login to the inner hop for the two through it"
    );
    echo_round_trip(([127, 0, 0, 1], ports[1]).into(), 1 << 18, 1).await;
    echo_round_trip(([127, 0, 0, 1], ports[2]).into(), 1 << 18, 2).await;
    // far2's `listen = "localhost:PORT"` is both loopback addresses, as `-L localhost:PORT`.
    echo_round_trip((std::net::Ipv6Addr::LOCALHOST, ports[2]).into(), 4096, 5).await;

    // A transfer on `near` (bastion only) runs while the inner hop's sshd is killed and
    // restarted: it goes on intact, the tunnels through the inner hop recover.
    let transfer = tokio::spawn(support::paced_transfer(
        ([127, 0, 0, 1], ports[0]).into(),
        100,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    t.db.kill_all();
    p.wait_for_stderr("lost the SSH session to hop 2").await;
    t.db.restart();
    p.wait_for_stderr("chain re-established").await;
    transfer
        .await
        .expect("the bastion-only tunnel served throughout");
    echo_round_trip(([127, 0, 0, 1], ports[1]).into(), 1 << 18, 3).await;
    echo_round_trip(([127, 0, 0, 1], ports[2]).into(), 1 << 18, 4).await;
    assert_eq!(
        logins(&t.shell),
        1,
        "the bastion was not logged in to again"
    );
    let ours = status_of(run.path(), p.pid() as u32).await;
    let tunnels = &ours.tunnels;
    let by_name = |n: &str| tunnels.iter().find(|t| t.name == n).expect("tunnel");
    assert_eq!(by_name("near").reconnects, 0);
    assert_eq!(by_name("near").reset, 0);
    assert_eq!(by_name("near").bytes_up, 100 * 64 * 1024);
    assert!(by_name("far1").reconnects >= 1);
    assert!(by_name("far2").reconnects >= 1);
    assert_eq!(by_name("far1").bytes_up, 2 << 18);
    stop(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tunnels_file_is_one_clear_error_naming_file_line_and_tunnel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "[tunnel.a]\ntarget = \"db\"\nsslmdoe = \"require\"\n",
            "tunnels.toml:3: tunnel `a`: unknown key `sslmdoe` (did you mean `sslmode`?)",
        ),
        (
            "[tunnel.a]\ntarget = \"db\"\n\n[tunnel.a]\ntarget = \"db2\"\n",
            "tunnel `a`: defined twice",
        ),
        (
            "[tunnel.a]\ntarget = \"db\"\nlisten = 6543\n[tunnel.b]\ntarget = \"db2\"\nlisten = 6543\n",
            "conflicts with tunnel `a`",
        ),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("tunnels.toml");
        std::fs::write(&path, text).expect("write");
        let out = std::process::Command::new(support::process::BIN)
            .args(["up", "-f", path.to_str().expect("utf-8")])
            .env("HOME", dir.path())
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(expected), "{text}: {err}");
        assert_eq!(err.lines().count(), 1, "one error: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_to_a_unix_socket_on_the_server_and_from_a_local_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = three().await;
    // A Unix-socket echo on db.foo.com (this machine): ssh's `-L PORT:/remote/socket`.
    let dir = tempfile::tempdir().expect("tempdir");
    let remote = dir.path().join("echo.sock");
    let listener = tokio::net::UnixListener::bind(&remote).expect("bind unix echo");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    // PermitOpen restricts socket paths too (sshd's channel_connect_to_path): this inner hop
    // permits any, with the same host key.
    let user = login_user();
    let db = Sshd::start_with(
        SshdOptions {
            ip: "127.0.0.2".parse().expect("ip"),
            authorized: vec![t.home.public()],
            permit_open: vec![("127.0.0.3".into(), t.echoes[0].addr.port())],
            extra: "",
        },
        "PermitOpen any",
        &[],
    );
    t.home.trust_addr(db.addr, &db.host_key);
    let shell = Sshd::start(SshdOptions {
        ip: "127.0.0.1".parse().expect("ip"),
        authorized: vec![t.home.public()],
        permit_open: vec![("127.0.0.2".into(), db.addr.port())],
        extra: "",
    });
    t.home.trust_addr(shell.addr, &shell.host_key);
    let mut config = t.home.block("shell.foo.com", shell.addr, &user, "");
    config.push_str(
        &t.home
            .block("db.foo.com", db.addr, &user, "  ProxyJump shell.foo.com\n"),
    );
    t.home.write_config(&config);
    let port = free_port();
    let to_socket = format!("{port}:{}", remote.display());
    // And `-L /local/socket:host:port`: a local Unix socket forwarded to a TCP echo.
    let local = dir.path().join("local.sock");
    let from_socket = format!("{}:127.0.0.3:{}", local.display(), t.echoes[0].addr.port());
    let p = start(
        &t.home,
        &["-L", &to_socket, "-L", &from_socket, "db.foo.com"],
        2,
    )
    .await;
    let report = p.report.join("\n");
    assert!(
        report.contains("the bytes never leave that machine"),
        "{report}"
    );
    echo_round_trip(([127, 0, 0, 1], port).into(), 1 << 18, 8).await;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&local)
            .expect("socket")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "StreamLocalBindMask's default, as ssh");
    }
    let mut s = tokio::net::UnixStream::connect(&local)
        .await
        .expect("local socket");
    s.write_all(b"through a local socket").await.expect("write");
    s.shutdown().await.expect("shutdown");
    let mut back = Vec::new();
    s.read_to_end(&mut back).await.expect("read");
    assert_eq!(back, b"through a local socket");
    stop(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_that_cannot_listen_is_left_out_unless_exit_on_forward_failure() {
    let t = three().await;
    let (free, taken) = (free_port(), free_port());
    // Something else holds `taken` on both loopback addresses.
    let _v4 = std::net::TcpListener::bind(("127.0.0.1", taken)).expect("bind");
    let _v6 = std::net::TcpListener::bind(("::1", taken)).expect("bind");
    let ok = format!("{free}:127.0.0.3:{}", t.echoes[0].addr.port());
    let busy = format!("{taken}:127.0.0.3:{}", t.echoes[1].addr.port());
    let p = start(&t.home, &["-L", &busy, "-L", &ok, "db.foo.com"], 1).await;
    assert!(p.ready[0].contains(&format!("({ok})")), "{:?}", p.ready);
    assert!(
        p.stderr().contains(&format!("{busy}: cannot listen"))
            && p.stderr()
                .contains("not forwarding it (ExitOnForwardFailure no)"),
        "{}",
        p.stderr()
    );
    echo_round_trip(([127, 0, 0, 1], free).into(), 1 << 16, 1).await;
    stop(p).await;

    // With ExitOnForwardFailure yes on the destination, pgtunnel stops, naming the forward.
    let user = login_user();
    let mut config = t.home.block("shell.foo.com", t.shell.addr, &user, "");
    config.push_str(&t.home.block(
        "db.foo.com",
        t.db.addr,
        &user,
        "  ProxyJump shell.foo.com\n  ExitOnForwardFailure yes\n",
    ));
    t.home.write_config(&config);
    let out = std::process::Command::new(support::process::BIN)
        .args(["-F", t.home.config.to_str().expect("utf-8")])
        .args(["-L", &busy, "-L", &ok, "db.foo.com"])
        .env("HOME", t.home.dir.path())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    // 8: the local port (issue 14; it was 5, "a hop failed").
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(
        err.contains(&format!("pgtunnel: {busy}: cannot listen")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_form_with_json_writes_only_event_lines_on_stdout() {
    use pgtunnel::status::{JsonEvent, parse_line};
    use tokio::io::AsyncBufReadExt;
    let t = three().await;
    let config = t.home.config.to_str().expect("utf-8");
    let target = t.echoes[0].addr.to_string();
    let mut child = tokio::process::Command::new(support::process::BIN)
        .args(["--json", "-F", config, "--via", "db.foo.com", &target])
        .env("HOME", t.home.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("a line within 60 s")
        .expect("read")
        .expect("open");
    let event = parse_line(&first).unwrap_or_else(|e| panic!("not an event {first:?}: {e}"));
    match event.event {
        JsonEvent::Ready { target: to, .. } => assert_eq!(to, target),
        other => panic!("first event {other:?}"),
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().expect("pid") as i32),
        Signal::SIGTERM,
    )
    .expect("signal");
    while let Some(line) = lines.next_line().await.expect("read") {
        parse_line(&line).unwrap_or_else(|e| panic!("not an event {line:?}: {e}"));
    }
    assert!(child.wait().await.expect("wait").success());
}

/// The threads of process `pid` that are tokio's pool workers (named `tokio-rt-worker`).
fn pool_workers(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc/PID/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("tokio-rt-worker"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_chain_runs_on_one_thread_several_on_a_pool() {
    // Issue 13: one chain's work on one thread (no work-stealing pool), where one chain does
    // all the work: the TARGET form, and ssh's form (every forward through the destination's
    // chain); and `up` whose tunnels all go through one first hop's session. `up` with
    // tunnels behind two first hops runs them at once: a pool.
    let t = three().await;
    let target = t.echoes[0].addr.to_string();
    let p = start(&t.home, &["--via", "db.foo.com", &target], 1).await;
    echo_round_trip(p.addr, 1 << 16, 1).await;
    assert_eq!(pool_workers(p.pid()), 0, "the TARGET form");
    drop(p);
    let (a, b) = (free_port(), free_port());
    let la = format!("{a}:{}", t.echoes[0].addr);
    let lb = format!("{b}:{}", t.echoes[1].addr);
    let p = start(&t.home, &["-N", "-L", &la, "-L", &lb, "db.foo.com"], 2).await;
    echo_round_trip(([127, 0, 0, 1], b).into(), 1 << 16, 2).await;
    assert_eq!(pool_workers(p.pid()), 0, "ssh's form");
    drop(p);
    let ports = [free_port(), free_port(), free_port()];
    let file = tunnels_file(&t, &ports);
    let file = file.to_str().expect("utf-8");
    let p = Pgtunnel::start_many(t.home.dir.path(), &["up", "-f", file], &[], 3).await;
    assert_eq!(
        pool_workers(p.pid()),
        0,
        "up, every tunnel behind shell.foo.com"
    );
    drop(p);
    // The inner sshd reached directly: a second first hop.
    let user = login_user();
    let mut config = std::fs::read_to_string(&t.home.config).expect("config");
    config.push_str(&t.home.block("db-direct", t.db.addr, &user, ""));
    t.home.write_config(&config);
    let port = free_port();
    let path = t.home.dir.path().join("two.toml");
    let text = format!(
        "ssh_config = \"{config}\"\n\
         [tunnel.a]\nvia = \"shell.foo.com\"\ntarget = \"127.0.0.1:{near}\"\nlisten = {p0}\n\
         pg = false\n\n\
         [tunnel.b]\nvia = \"db-direct\"\ntarget = \"127.0.0.3:{e}\"\nlisten = {p1}\npg = false\n",
        config = t.home.config.display(),
        near = t.near.addr.port(),
        e = t.echoes[0].addr.port(),
        p0 = ports[0],
        p1 = port,
    );
    std::fs::write(&path, text).expect("write tunnels file");
    let p = Pgtunnel::start_many(
        t.home.dir.path(),
        &["up", "-f", path.to_str().expect("utf-8")],
        &[],
        2,
    )
    .await;
    echo_round_trip(([127, 0, 0, 1], port).into(), 1 << 16, 1).await;
    assert!(
        pool_workers(p.pid()) >= 1,
        "up behind two first hops: a pool"
    );
}
