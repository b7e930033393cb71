//! The algorithm keywords against a real `sshd`: what ssh_config allows is what is negotiated,
//! read from sshd's own log (`LogLevel DEBUG1`: `kex: algorithm: ...`, `kex: host key
//! algorithm: ...`, `kex: client->server cipher: ... MAC: ... compression: ...`); a
//! restriction sshd does not share, or one pgtunnel's SSH library implements nothing of, fails
//! with the hop named.

mod support;

use std::net::SocketAddr;

use pgtunnel::error::{ErrorKind, HopError};
use russh::keys::PublicKey;
use support::sshd::{Sshd, SshdOptions, login_user, ssh_keygen};
use support::*;

const MIB: usize = 1024 * 1024;

/// An sshd at DEBUG1 (`prelude` first: its values win) that may forward to the echo service,
/// with `extra` sshd_config lines after the defaults.
fn sshd(home: &Home, echo: SocketAddr, prelude: &str, extra: &str) -> Sshd {
    Sshd::start_with(
        SshdOptions {
            ip: "127.0.0.1".parse().expect("ip"),
            authorized: vec![home.public()],
            permit_open: vec![("127.0.0.1".into(), echo.port())],
            extra,
        },
        &format!("LogLevel DEBUG1\n{prelude}"),
        &[],
    )
}

/// Writes a config for the alias `hop` on `sshd` with `extra` lines.
fn configure(home: &Home, sshd: &Sshd, extra: &str) {
    home.trust_addr(sshd.addr, &sshd.host_key);
    home.write_config(&home.block("hop", sshd.addr, &login_user(), extra));
}

/// Brings the tunnel up through `hop`, pushes `len` bytes through and back, stops.
async fn round_trip(home: &Home, echo: &Echo, len: usize) {
    let chain = home
        .chain(Some("hop"), &echo.addr.to_string())
        .expect("chain");
    let running = Running::start(&chain).await.expect("tunnel up");
    echo_round_trip(running.addr, len, 3).await;
    running.stop().await;
}

/// The first sshd log line holding `needle`, without what precedes it.
fn logged(sshd: &Sshd, needle: &str) -> String {
    let log = sshd.log();
    log.lines()
        .find_map(|l| l.find(needle).map(|i| l[i..].trim_end().to_string()))
        .unwrap_or_else(|| panic!("sshd logged no `{needle}`:\n{log}"))
}

/// The error of bringing the tunnel up through `hop`.
async fn failure(home: &Home, echo: &Echo) -> pgtunnel::Error {
    let chain = home
        .chain(Some("hop"), &echo.addr.to_string())
        .expect("chain");
    match Running::start(&chain).await {
        Ok(_) => panic!("the tunnel must not come up"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ciphers_restricted_to_aes256_gcm_negotiate_exactly_that() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.1:0").await;
    let sshd = sshd(&home, echo.addr, "", "");
    configure(&home, &sshd, "  Ciphers aes256-gcm@openssh.com\n");
    round_trip(&home, &echo, MIB).await;
    assert_eq!(
        logged(&sshd, "kex: client->server cipher:"),
        "kex: client->server cipher: aes256-gcm@openssh.com MAC: <implicit> compression: none [preauth]"
    );
    assert!(
        logged(&sshd, "kex: server->client cipher:").contains("aes256-gcm@openssh.com"),
        "{}",
        sshd.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mac_with_a_non_aead_cipher_is_negotiated_as_configured() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.1:0").await;
    let sshd = sshd(&home, echo.addr, "", "");
    // `-` and `^` lists: everything but the AEAD ciphers, and hmac-sha2-512 first.
    configure(
        &home,
        &sshd,
        "  Ciphers -chacha20*,*gcm*\n  MACs ^hmac-sha2-512\n",
    );
    round_trip(&home, &echo, MIB).await;
    assert_eq!(
        logged(&sshd, "kex: client->server cipher:"),
        "kex: client->server cipher: aes128-ctr MAC: hmac-sha2-512 compression: none [preauth]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kex_algorithms_are_negotiated_as_configured() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.1:0").await;
    let sshd = sshd(&home, echo.addr, "", "");
    configure(
        &home,
        &sshd,
        "  KexAlgorithms diffie-hellman-group14-sha256,curve25519-sha256\n",
    );
    round_trip(&home, &echo, MIB).await;
    assert_eq!(
        logged(&sshd, "kex: algorithm:"),
        "kex: algorithm: diffie-hellman-group14-sha256 [preauth]"
    );
}

/// An RSA host key beside sshd's Ed25519 one, both known: `HostKeyAlgorithms rsa-sha2-256`
/// gets the RSA key signed with SHA-256, though Ed25519 is the default's first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_algorithms_pick_the_host_key() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.1:0").await;
    let (_keys, rsa, rsa_pub) = rsa_host_key();
    let sshd = sshd(&home, echo.addr, "", &format!("HostKey {}", rsa.display()));
    home.trust_addr(sshd.addr, &rsa_pub);
    configure(&home, &sshd, "  HostKeyAlgorithms rsa-sha2-256\n");
    round_trip(&home, &echo, 64 * 1024).await;
    assert_eq!(
        logged(&sshd, "kex: host key algorithm:"),
        "kex: host key algorithm: rsa-sha2-256 [preauth]"
    );
}

/// A 2048-bit RSA host key for sshd: (its directory, the private key file, the public key).
fn rsa_host_key() -> (tempfile::TempDir, std::path::PathBuf, PublicKey) {
    let keys = tempfile::tempdir().expect("tempdir");
    let rsa = keys.path().join("host_rsa");
    ssh_keygen(&[
        "-q",
        "-t",
        "rsa",
        "-b",
        "2048",
        "-N",
        "",
        "-C",
        "",
        "-f",
        rsa.to_str().expect("utf-8"),
    ]);
    let text = std::fs::read_to_string(rsa.with_extension("pub")).expect("read");
    let public = PublicKey::from_openssh(text.trim()).expect("parse");
    (keys, rsa, public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_rsa_size_refuses_a_smaller_rsa_host_key() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.1:0").await;
    let (_keys, rsa, rsa_pub) = rsa_host_key();
    let sshd = sshd(&home, echo.addr, "", &format!("HostKey {}", rsa.display()));
    home.trust_addr(sshd.addr, &rsa_pub);
    configure(
        &home,
        &sshd,
        "  HostKeyAlgorithms rsa-sha2-512\n  RequiredRSASize 3072\n",
    );
    let err = failure(&home, &echo).await;
    assert_eq!(err.kind(), ErrorKind::HostKey, "{err}");
    assert_eq!(err.hop().map(|h| h.index), Some(1), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("2048 bits") && text.contains("RequiredRSASize 3072"),
        "{text}"
    );
    assert_eq!(echo.connections(), 0);
}

/// The client key is Ed25519: `PubkeyAcceptedAlgorithms` without it leaves no identity, and
/// the failure names the hop and why the key was not offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubkey_accepted_algorithms_excluding_the_key_type_fails_authentication() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.1:0").await;
    let sshd = sshd(&home, echo.addr, "", "");
    configure(
        &home,
        &sshd,
        "  PubkeyAcceptedAlgorithms rsa-sha2-512,rsa-sha2-256\n  IdentityAgent none\n",
    );
    let err = failure(&home, &echo).await;
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert_eq!(err.hop().map(|h| h.index), Some(1), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("ssh-ed25519 is not in PubkeyAcceptedAlgorithms"),
        "{text}"
    );
    assert!(!sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    // Allowed again with `+`: the same key logs in.
    configure(
        &home,
        &sshd,
        "  PubkeyAcceptedAlgorithms +ssh-ed25519\n  IdentityAgent none\n",
    );
    round_trip(&home, &echo, 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restriction_sshd_does_not_allow_fails_naming_the_hop() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.1:0").await;
    let sshd = sshd(&home, echo.addr, "Ciphers aes128-ctr\n", "");
    configure(&home, &sshd, "  Ciphers aes256-gcm@openssh.com\n");
    let err = failure(&home, &echo).await;
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert_eq!(err.hop().map(|h| h.index), Some(1), "{err}");
    let text = err.to_string();
    assert!(text.contains("hop"), "names the hop: {text}");
    assert!(
        text.to_lowercase().contains("cipher") && text.contains("aes256-gcm@openssh.com"),
        "says what could not be agreed: {text}"
    );
    assert_eq!(echo.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_pgtunnel_implements_nothing_of_is_refused_before_connecting() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.1:0").await;
    let sshd = sshd(&home, echo.addr, "", "");
    configure(
        &home,
        &sshd,
        "  Ciphers aes128-ctr\n  MACs umac-64@openssh.com,umac-128-etm@openssh.com\n",
    );
    let err = failure(&home, &echo).await;
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(err.hop().map(|h| h.index), Some(1), "{err}");
    assert!(
        matches!(
            &err,
            pgtunnel::Error::Hop { source, .. }
                if matches!(**source, HopError::NoImplementedAlgorithm { keyword: "MACs", .. })
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("umac-64@openssh.com,umac-128-etm@openssh.com"),
        "{text}"
    );
    // (Refused before the TCP connection: `connect_hop` checks the lists first; sshd's log
    // cannot show it, as `Sshd::start` itself connects to wait for the banner.)
    assert!(!sshd.log().contains("kex: algorithm"), "{}", sshd.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_yes_negotiates_delayed_zlib_and_keeps_bytes_intact() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.1:0").await;
    let sshd = sshd(&home, echo.addr, "", "");
    configure(&home, &sshd, "  Compression yes\n");
    round_trip(&home, &echo, 8 * MIB).await;
    assert!(
        logged(&sshd, "kex: client->server cipher:")
            .ends_with("compression: zlib@openssh.com [preauth]"),
        "{}",
        sshd.log()
    );
    assert!(
        logged(&sshd, "kex: server->client cipher:")
            .ends_with("compression: zlib@openssh.com [preauth]"),
        "{}",
        sshd.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_no_is_the_default() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.1:0").await;
    let sshd = sshd(&home, echo.addr, "", "");
    configure(&home, &sshd, "");
    round_trip(&home, &echo, 64 * 1024).await;
    assert!(
        logged(&sshd, "kex: client->server cipher:").ends_with("compression: none [preauth]"),
        "{}",
        sshd.log()
    );
}

/// A host certificate signed by an Ed25519 CA: accepted through `@cert-authority` with the
/// default `CASignatureAlgorithms`, refused with OpenSSH's reason when the list leaves
/// Ed25519 out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_signature_algorithms_judge_host_certificates() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.1:0").await;
    let keys = tempfile::tempdir().expect("tempdir");
    let keygen = |name: &str, kind: &str| {
        let path = keys.path().join(name);
        let p = path.to_str().expect("utf-8");
        ssh_keygen(&["-q", "-t", kind, "-N", "", "-C", "", "-f", p]);
        path
    };
    let ca = keygen("ca", "ed25519");
    let host = keygen("host_ecdsa", "ecdsa");
    let host_pub = format!("{}.pub", host.display());
    let ca_path = ca.to_str().expect("utf-8");
    ssh_keygen(&[
        "-q",
        "-s",
        ca_path,
        "-I",
        "test host",
        "-h",
        "-n",
        "127.0.0.1",
        &host_pub,
    ]);
    let cert = keys.path().join("host_ecdsa-cert.pub");
    let sshd = sshd(
        &home,
        echo.addr,
        "",
        &format!(
            "HostKey {}\nHostCertificate {}",
            host.display(),
            cert.display()
        ),
    );
    let ca_pub = std::fs::read_to_string(format!("{ca_path}.pub")).expect("read");
    let write = |extra: &str| {
        std::fs::write(
            &home.known_hosts,
            format!("@cert-authority [127.0.0.1]:{} {ca_pub}", sshd.addr.port()),
        )
        .expect("known_hosts");
        home.write_config(&home.block("hop", sshd.addr, &login_user(), extra));
    };
    write("");
    round_trip(&home, &echo, 1024).await;
    write("  CASignatureAlgorithms ecdsa-sha2-nistp256,rsa-sha2-512\n");
    let err = failure(&home, &echo).await;
    assert_eq!(err.kind(), ErrorKind::HostKey, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(
            "Certificate signed with disallowed algorithm ssh-ed25519 (CASignatureAlgorithms)"
        ),
        "{text}"
    );
}

/// Without a `Ciphers` setting, pgtunnel offers AES-GCM first on a CPU with AES in hardware
/// (chacha20-poly1305, OpenSSH's first, otherwise); a configured `Ciphers` wins over that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aes_gcm_is_the_default_with_aes_in_hardware_and_ciphers_still_wins() {
    let home = Home::new();
    let echo = Echo::start_on("127.0.0.1:0").await;
    let sshd = sshd(&home, echo.addr, "", "");
    configure(&home, &sshd, "");
    round_trip(&home, &echo, MIB).await;
    let expected = if pgtunnel::ssh::aes_in_hardware() {
        "aes256-gcm@openssh.com"
    } else {
        "chacha20-poly1305@openssh.com"
    };
    assert!(
        logged(&sshd, "kex: client->server cipher:").contains(expected),
        "{}",
        sshd.log()
    );

    let sshd = sshd_again(&home, &echo);
    configure(
        &home,
        &sshd,
        "  Ciphers chacha20-poly1305@openssh.com,aes128-gcm@openssh.com\n",
    );
    round_trip(&home, &echo, MIB).await;
    assert!(
        logged(&sshd, "kex: client->server cipher:").contains("chacha20-poly1305@openssh.com"),
        "{}",
        sshd.log()
    );
}

fn sshd_again(home: &Home, echo: &Echo) -> Sshd {
    sshd(home, echo.addr, "", "")
}
