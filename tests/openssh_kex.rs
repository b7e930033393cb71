//! Key exchange against real servers: OpenSSH 9.2's `sshd` (sntrup761x25519, its default,
//! and curve25519) and an in-process russh server (mlkem768x25519, which OpenSSH 9.2 lacks).
//! Each test pushes bytes through the tunnel and checks the path report names what was
//! negotiated; `--require-pq` refuses a hop without a post-quantum key exchange, naming it,
//! before authenticating (also when the chain is re-established).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use pgtunnel::error::{ErrorKind, HopError};
use pgtunnel::forward::probe::Probe;
use pgtunnel::forward::{Backoff, Ended, Reconnect, Tunnel};
use pgtunnel::plan::chain::Chain;
use pgtunnel::plan::path::{self, PathReport};
use pgtunnel::ssh::session::{ConnectOptions, connect_chain};
use pgtunnel::tunnel;
use support::sshd::{Sshd, SshdOptions, login_user};
use support::*;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const BIN: &str = env!("CARGO_BIN_EXE_pgtunnel");

/// A tunnel that is up, with the report as the binary prints it once the hops are up.
struct Up {
    addr: SocketAddr,
    report: PathReport,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Ended>,
}

impl Up {
    async fn start(chain: &Chain, opts: &ConnectOptions) -> Result<Up, pgtunnel::Error> {
        Self::start_reconnecting(chain, opts, false).await
    }

    async fn start_reconnecting(
        chain: &Chain,
        opts: &ConnectOptions,
        reconnect: bool,
    ) -> Result<Up, pgtunnel::Error> {
        let listener = tunnel::bind("127.0.0.1:0".parse().expect("addr")).await?;
        let addr = listener.local_addr().expect("local addr");
        let sessions = connect_chain(chain, opts).await?;
        let report = path::analyze(addr, chain).with_negotiated(&sessions.negotiated());
        let tunnel =
            Tunnel::new(listener, sessions, chain.target.clone()).reconnect(reconnect.then(|| {
                Reconnect {
                    chain: chain.clone(),
                    opts: opts.clone(),
                    backoff: Backoff::default(),
                    probe: Probe::Off,
                }
            }));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tunnel.serve(async move {
            let _ = stopped.await;
        }));
        Ok(Up {
            addr,
            report,
            stop,
            task,
        })
    }

    /// The detail of the path report's first SSH segment.
    fn hop_1(&self) -> &str {
        &self.report.segments[1].detail
    }

    async fn stop(self) -> Ended {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("tunnel stops")
            .expect("tunnel task")
    }
}

fn require_pq() -> ConnectOptions {
    ConnectOptions {
        require_pq: true,
        ..options()
    }
}

/// An sshd for `echo` with `extra` config lines, logging at DEBUG1 (its `kex: algorithm:`
/// line), and an ssh_config alias `gw` for it.
fn sshd(home: &Home, echo: &Echo, extra: &str) -> Sshd {
    let sshd = Sshd::start_with(
        SshdOptions {
            ip: "127.0.0.1".parse().expect("ip"),
            authorized: vec![home.public()],
            permit_open: vec![("127.0.0.1".into(), echo.addr.port())],
            extra,
        },
        "LogLevel DEBUG1",
        &[],
    );
    home.trust_addr(sshd.addr, &sshd.host_key);
    home.write_config(&home.block("gw", sshd.addr, &login_user(), ""));
    sshd
}

/// The key exchange sshd says it negotiated (the last one in its log).
fn sshd_kex(sshd: &Sshd) -> String {
    let log = sshd.log();
    log.lines()
        .rev()
        .find_map(|l| l.split("kex: algorithm: ").nth(1))
        .unwrap_or_else(|| panic!("no kex line in the sshd log:\n{log}"))
        .trim()
        .trim_end_matches("[preauth]")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_sshd_negotiates_sntrup761() {
    let home = Home::new();
    let echo = Echo::start().await;
    let sshd = sshd(&home, &echo, "");
    let chain = home
        .chain(Some("gw"), &echo.addr.to_string())
        .expect("chain");
    let up = Up::start(&chain, &require_pq()).await.expect("tunnel up");
    echo_round_trip(up.addr, 4 * 1024 * 1024, 1).await;
    // Upstream 9.2 knows sntrup761 as sntrup761x25519-sha512@openssh.com only; Debian's
    // 9.2p1-2+deb12u* also under OpenSSH 9.9's name, which pgtunnel lists first (as
    // OpenSSH 10 does). The same algorithm either way.
    let kex = sshd_kex(&sshd);
    assert!(
        [
            "sntrup761x25519-sha512",
            "sntrup761x25519-sha512@openssh.com"
        ]
        .contains(&kex.as_str()),
        "{kex}"
    );
    let ours = up.report.segments[1]
        .negotiated
        .as_ref()
        .expect("negotiated");
    assert_eq!(ours.kex, kex, "pgtunnel and sshd agree");
    assert_eq!(
        up.hop_1(),
        format!(
            "SSH (encrypted: sntrup761x25519, {}; ed25519 host key)",
            support::default_cipher()
        ),
        "{}",
        up.report
    );
    assert!(
        !up.report.to_string().contains("post-quantum"),
        "{}",
        up.report
    );
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_with_only_sntrup761_is_reached() {
    let home = Home::new();
    let echo = Echo::start().await;
    let sshd = sshd(
        &home,
        &echo,
        "KexAlgorithms sntrup761x25519-sha512@openssh.com\nCiphers aes256-gcm@openssh.com",
    );
    let chain = home
        .chain(Some("gw"), &echo.addr.to_string())
        .expect("chain");
    let up = Up::start(&chain, &options()).await.expect("tunnel up");
    echo_round_trip(up.addr, 4 * 1024 * 1024, 2).await;
    assert_eq!(sshd_kex(&sshd), "sntrup761x25519-sha512@openssh.com");
    assert_eq!(
        up.hop_1(),
        "SSH (encrypted: sntrup761x25519, aes256-gcm; ed25519 host key)"
    );
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sntrup761_rekeys_keep_the_data_intact() {
    let home = Home::new();
    let echo = Echo::start().await;
    let sshd = sshd(
        &home,
        &echo,
        "KexAlgorithms sntrup761x25519-sha512@openssh.com\nRekeyLimit 1M",
    );
    let chain = home
        .chain(Some("gw"), &echo.addr.to_string())
        .expect("chain");
    let up = Up::start(&chain, &options()).await.expect("tunnel up");
    echo_round_trip(up.addr, 8 * 1024 * 1024, 3).await;
    let kexes = sshd
        .log()
        .matches("kex: algorithm: sntrup761x25519-sha512@openssh.com")
        .count();
    assert!(kexes >= 2, "no rekey seen in the sshd log:\n{}", sshd.log());
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curve25519_only_connects_and_is_reported_as_not_post_quantum() {
    let home = Home::new();
    let echo = Echo::start().await;
    let sshd = sshd(&home, &echo, "KexAlgorithms curve25519-sha256");
    let chain = home
        .chain(Some("gw"), &echo.addr.to_string())
        .expect("chain");
    let up = Up::start(&chain, &options()).await.expect("tunnel up");
    echo_round_trip(up.addr, 1024 * 1024, 4).await;
    assert_eq!(sshd_kex(&sshd), "curve25519-sha256");
    assert_eq!(
        up.hop_1(),
        format!(
            "SSH (encrypted: curve25519, {}; ed25519 host key), key exchange NOT post-quantum",
            support::default_cipher()
        )
    );
    let text = up.report.to_string();
    assert!(
        text.contains("not using a post-quantum key exchange")
            && text.contains("(curve25519-sha256)")
            && text.contains("store now, decrypt later"),
        "{text}"
    );
    // Plain TCP is another matter: every segment is still encrypted.
    assert!(up.report.fully_encrypted());
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_pq_refuses_a_curve25519_hop_before_authenticating() {
    let home = Home::new();
    let echo = Echo::start().await;
    let sshd = sshd(&home, &echo, "KexAlgorithms curve25519-sha256");
    let chain = home
        .chain(Some("gw"), &echo.addr.to_string())
        .expect("chain");
    let err = match Up::start(&chain, &require_pq()).await {
        Ok(_) => panic!("--require-pq must refuse a curve25519 hop"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::NotEncrypted);
    assert_eq!(err.hop().expect("names the hop").index, 1);
    let pgtunnel::Error::Hop { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(**source, HopError::NotPostQuantum { ref kex, .. } if kex == "curve25519-sha256"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("hop 1 (gw, 127.0.0.1:")
            && text.contains("--require-pq")
            && text.contains("curve25519-sha256")
            && text.contains("sntrup761x25519-sha512@openssh.com"),
        "{text}"
    );
    // Refused before the key was offered: sshd saw no login, and was told why (its log line
    // may follow our error by a moment).
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        while !sshd
            .log()
            .contains("--require-pq: the key exchange is not post-quantum")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let log = sshd.log();
    assert!(told.is_ok(), "sshd was not told why: {log}");
    assert!(!log.contains("Accepted publickey"), "{log}");
    assert_eq!(echo.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlkem768_against_an_in_process_russh_server() {
    let home = Home::new();
    let echo = Echo::start().await;
    let config = pgtunnel::demo::bastion::BastionConfig::generate(USER, vec![home.public()])
        .expect("bastion key")
        .allow(&[("127.0.0.1", echo.addr.port())])
        .kex(&[russh::kex::MLKEM768X25519_SHA256]);
    let b = pgtunnel::demo::bastion::Bastion::start("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("start bastion");
    home.trust(b.addr().port(), b.host_key());
    home.write_config(&home.host_block("gw", b.addr().port(), ""));
    let chain = home
        .chain(Some("gw"), &echo.addr.to_string())
        .expect("chain");
    let up = Up::start(&chain, &require_pq()).await.expect("tunnel up");
    echo_round_trip(up.addr, 4 * 1024 * 1024, 5).await;
    assert_eq!(
        up.hop_1(),
        format!(
            "SSH (encrypted: mlkem768x25519, {}; ed25519 host key)",
            support::default_cipher()
        )
    );
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn russh_server_with_only_sntrup761_is_reached() {
    // Both halves of part E: pgtunnel's client against the vendored russh's server.
    let home = Home::new();
    let echo = Echo::start().await;
    let config = pgtunnel::demo::bastion::BastionConfig::generate(USER, vec![home.public()])
        .expect("bastion key")
        .allow(&[("127.0.0.1", echo.addr.port())])
        .kex(&[russh::kex::SNTRUP761X25519_SHA512]);
    let b = pgtunnel::demo::bastion::Bastion::start("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("start bastion");
    home.trust(b.addr().port(), b.host_key());
    home.write_config(&home.host_block("gw", b.addr().port(), ""));
    let chain = home
        .chain(Some("gw"), &echo.addr.to_string())
        .expect("chain");
    let up = Up::start(&chain, &require_pq()).await.expect("tunnel up");
    echo_round_trip(up.addr, 1024 * 1024, 6).await;
    assert_eq!(
        up.report.segments[1]
            .negotiated
            .as_ref()
            .map(|n| n.kex.as_str()),
        Some("sntrup761x25519-sha512")
    );
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_pq_also_holds_when_the_chain_is_re_established() {
    let home = Home::new();
    let echo = Echo::start().await;
    let mut sshd = sshd(&home, &echo, "");
    let chain = home
        .chain(Some("gw"), &echo.addr.to_string())
        .expect("chain");
    let up = Up::start_reconnecting(&chain, &require_pq(), true)
        .await
        .expect("tunnel up");
    echo_round_trip(up.addr, 1024 * 1024, 7).await;

    // The server comes back offering only curve25519 (sshd keeps the first value).
    let config = sshd.dir.path().join("sshd_config");
    let text = std::fs::read_to_string(&config).expect("sshd_config");
    std::fs::write(&config, format!("KexAlgorithms curve25519-sha256\n{text}")).expect("write");
    sshd.restart();
    let ended = tokio::time::timeout(Duration::from_secs(60), up.task)
        .await
        .expect("the tunnel gives up")
        .expect("tunnel task");
    let Ended::ReconnectRefused { error, kind } = ended else {
        panic!("{ended:?}")
    };
    assert_eq!(kind, ErrorKind::NotEncrypted);
    assert!(
        error.starts_with("hop 1 (gw,") && error.contains("curve25519-sha256"),
        "{error}"
    );
    assert_eq!(sshd_kex(&sshd), "curve25519-sha256");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_with_exit_code_6_naming_the_hop() {
    let home = Home::new();
    let echo = Echo::start().await;
    let _sshd = sshd(&home, &echo, "KexAlgorithms curve25519-sha256");
    let cfg = home.config.to_str().expect("utf-8");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BIN)
            .env_clear()
            .env("HOME", home.dir.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .args([
                "-F",
                cfg,
                "--require-pq",
                "--via",
                "gw",
                &echo.addr.to_string(),
            ])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("pgtunnel finishes")
    .expect("run pgtunnel");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    let line = stderr
        .lines()
        // The error is the last of the `pgtunnel: hop 1 ...` lines (progress comes first).
        .rfind(|l| l.starts_with("pgtunnel: hop 1"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        line.contains("--require-pq") && line.contains("curve25519-sha256"),
        "{line}"
    );
    assert_eq!(echo.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reports_the_key_exchange_and_warns_when_a_weaker_chain_comes_back() {
    use nix::sys::signal::Signal;
    use support::process::Pgtunnel;
    let home = Home::new();
    let echo = Echo::start().await;
    let mut sshd = sshd(&home, &echo, "");
    let cfg = home.config.to_str().expect("utf-8");
    let target = echo.addr.to_string();
    let mut tunnel = Pgtunnel::start(&home, &["-F", cfg, "--via", "gw", &target]).await;
    let report = tunnel.report.join("\n");
    assert!(
        report.contains(&format!(
            "SSH (encrypted: sntrup761x25519, {}; ed25519 host key)",
            support::default_cipher()
        )),
        "{report}"
    );
    echo_round_trip(tunnel.addr, 1024 * 1024, 8).await;

    // Without --require-pq a chain re-established over curve25519 serves, and says so.
    let config = sshd.dir.path().join("sshd_config");
    let text = std::fs::read_to_string(&config).expect("sshd_config");
    std::fs::write(&config, format!("KexAlgorithms curve25519-sha256\n{text}")).expect("write");
    sshd.restart();
    tunnel
        .wait_for_stderr(
            "re-established with a key exchange that is not post-quantum (curve25519-sha256)",
        )
        .await;
    echo_round_trip(tunnel.addr, 1024 * 1024, 9).await;
    tunnel.signal(Signal::SIGINT);
    let status = tunnel.wait(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", tunnel.stderr());
}
