//! The transport and authentication keywords against a real OpenSSH `sshd`: `BindAddress`
//! and `BindInterface` (sshd's log names the address the connection came from),
//! `ConnectionAttempts` (a refused first attempt, then sshd comes up and the next attempt
//! gets through; the error after the last attempt says how many were made), `RekeyLimit`
//! (sshd's DEBUG1 log shows the key exchanges, the bytes come back intact) and
//! `PreferredAuthentications` (the user's order decides; a list without the server's
//! method fails naming the hop).

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pgtunnel::error::ErrorKind;
use support::sshd::{Sshd, SshdOptions, login_user};
use support::*;

/// pgtunnel's debug log, captured for the whole test binary.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn debug_log() -> &'static Capture {
    static LOG: OnceLock<Capture> = OnceLock::new();
    LOG.get_or_init(|| {
        let capture = Capture::default();
        let writer = capture.clone();
        tracing_subscriber::fmt()
            .with_env_filter("pgtunnel=debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        capture
    })
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture")).into_owned()
    }
}

/// A real sshd accepting `home`'s key and forwarding to `echo`, with `prelude` lines.
fn sshd(home: &Home, echo: &Echo, prelude: &str) -> Sshd {
    let sshd = Sshd::start_with(
        SshdOptions {
            ip: "127.0.0.1".parse().expect("ip"),
            authorized: vec![home.public()],
            permit_open: vec![("127.0.0.1".into(), echo.addr.port())],
            extra: "",
        },
        prelude,
        &[],
    );
    home.trust_addr(sshd.addr, &sshd.host_key);
    sshd
}

/// Home's config: alias `h` for `sshd` with `extra` lines.
fn configure(home: &Home, sshd: &Sshd, extra: &str) {
    home.write_config(&home.block("h", sshd.addr, &login_user(), extra));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_address_and_bind_interface_pick_the_source_address() {
    let home = Home::new();
    let echo = Echo::start().await;
    let sshd = sshd(&home, &echo, "");
    configure(
        &home,
        &sshd,
        "  BindAddress 127.0.0.2\n  BindInterface lo\n",
    );
    let chain = home
        .chain(Some("h"), &echo.addr.to_string())
        .expect("chain");
    let running = Running::start(&chain).await.expect("tunnel up");
    echo_round_trip(running.addr, 64 * 1024, 1).await;
    running.stop().await;
    let log = sshd.log();
    assert!(log.contains("Connection from 127.0.0.2 port"), "{log}");

    // BindInterface alone: lo's IPv4 address (127.0.0.1, the only one, so allowed).
    configure(&home, &sshd, "  BindInterface lo\n");
    let chain = home
        .chain(Some("h"), &echo.addr.to_string())
        .expect("chain");
    let running = Running::start(&chain).await.expect("tunnel up");
    echo_round_trip(running.addr, 1024, 2).await;
    running.stop().await;
    let log = sshd.log();
    assert!(log.contains("Connection from 127.0.0.1 port"), "{log}");

    // An interface without an address of the family: the hop fails, naming it.
    configure(&home, &sshd, "  BindInterface nosuch0\n");
    let chain = home
        .chain(Some("h"), &echo.addr.to_string())
        .expect("chain");
    let err = match Running::start(&chain).await {
        Ok(_) => panic!("there is no interface nosuch0"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Connect);
    let text = err.to_string();
    assert!(
        text.contains("hop 1") && text.contains("BindInterface nosuch0: no suitable IPv4 address"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_attempts_wait_for_a_server_that_comes_up() {
    let log = debug_log();
    let home = Home::new();
    let echo = Echo::start().await;
    let mut sshd = sshd(&home, &echo, "");
    let port = sshd.addr.port();
    // Nothing listens on the port now.
    sshd.kill_all();
    configure(&home, &sshd, "  ConnectionAttempts 30\n");
    let chain = home
        .chain(Some("h"), &echo.addr.to_string())
        .expect("chain");
    let up = tokio::spawn(async move { Running::start(&chain).await });
    // Wait for the first attempt to be refused, then bring sshd up.
    let refused = format!("connect to 127.0.0.1:{port}: Connection refused");
    let mut seen = false;
    for _ in 0..600 {
        if log.text().contains(&refused) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "no refused attempt logged:\n{}", log.text());
    // Kept until the end: dropping it would stop the server again.
    let _sshd = tokio::task::spawn_blocking(move || {
        sshd.restart();
        sshd
    })
    .await
    .expect("restart sshd");
    let running = up
        .await
        .expect("task")
        .expect("a later attempt gets through");
    echo_round_trip(running.addr, 64 * 1024, 3).await;
    running.stop().await;
    assert!(log.text().contains("trying again (attempt 2 of 30)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_after_the_last_attempt_says_how_many_were_made() {
    let home = Home::new();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    home.write_config(&home.block("h", dead, &login_user(), "  ConnectionAttempts 2\n"));
    let chain = home.chain(Some("h"), "127.0.0.1:5432").expect("chain");
    let err = match Running::start(&chain).await {
        Ok(_) => panic!("nothing listens there"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Connect);
    let text = err.to_string();
    assert!(
        text.contains("hop 1")
            && text.contains("after 2 attempts, ConnectionAttempts 2")
            && text.contains("refused"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_rekey_limit_rekeys_and_keeps_the_bytes_intact() {
    let home = Home::new();
    let echo = Echo::start().await;
    let sshd = sshd(&home, &echo, "LogLevel DEBUG1");
    configure(&home, &sshd, "  RekeyLimit 64K\n");
    let chain = home
        .chain(Some("h"), &echo.addr.to_string())
        .expect("chain");
    let running = Running::start(&chain).await.expect("tunnel up");
    // 1 MiB each way: about 32 re-keyings at 64 KiB.
    echo_round_trip(running.addr, 1024 * 1024, 4).await;
    running.stop().await;
    let log = sshd.log();
    let kex = log.matches("SSH2_MSG_KEXINIT received").count();
    assert!(kex >= 3, "{kex} key exchanges:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_authentications_decides_the_methods() {
    let home = Home::new();
    let echo = Echo::start().await;
    let sshd = sshd(&home, &echo, "");
    // The server takes publickey only: a list of password alone fails, naming the hop.
    configure(&home, &sshd, "  PreferredAuthentications password\n");
    let chain = home
        .chain(Some("h"), &echo.addr.to_string())
        .expect("chain");
    let err = match Running::start(&chain).await {
        Ok(_) => panic!("publickey is not in PreferredAuthentications"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Auth);
    let text = err.to_string();
    assert!(
        text.contains("hop 1")
            && text.contains("publickey (not in PreferredAuthentications)")
            && text.contains("the server accepts: publickey"),
        "{text}"
    );
    // Methods the server or pgtunnel lacks are passed over; publickey gets through.
    configure(
        &home,
        &sshd,
        "  PreferredAuthentications hostbased,keyboard-interactive,publickey\n",
    );
    let chain = home
        .chain(Some("h"), &echo.addr.to_string())
        .expect("chain");
    let running = Running::start(&chain).await.expect("publickey works");
    echo_round_trip(running.addr, 1024, 5).await;
    running.stop().await;
    // A list naming no method pgtunnel has is refused before connecting.
    configure(&home, &sshd, "  PreferredAuthentications gssapi-with-mic\n");
    let err = home
        .chain(Some("h"), &echo.addr.to_string())
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string()
            .contains("PreferredAuthentications is unsupported"),
        "{err}"
    );
}
