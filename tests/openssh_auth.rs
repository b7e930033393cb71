//! Host keys and authentication against real OpenSSH servers (`sshd` on loopback) and checked
//! with OpenSSH's own client where it matters: hashed known_hosts, a host known only by its RSA
//! key, `@revoked`, `@cert-authority` host certificates, `accept-new` and `ask` entries that
//! `ssh` then accepts, encrypted keys through `ssh-agent` / a prompter / without one, user
//! certificates, and keyboard-interactive one-time codes through PAM.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgtunnel::error::{ErrorKind, HopError};
use pgtunnel::event::{Event, Observer};
use pgtunnel::spec::parse_target;
use pgtunnel::ssh::prompt::{Answer, PromptError, PromptKind, PromptRequest, Prompts};
use pgtunnel::ssh::session::{AgentSource, ConnectOptions};
use pgtunnel::tunnel::{self, ConfigSource, Request};
use russh::keys::PublicKey;
use support::process::Pgtunnel;
use support::sshd::{Sshd, SshdOptions, login_user, ssh_keygen};
use support::{Echo, echo_round_trip};

/// A throw-away directory with keys, known_hosts and an ssh_config for one sshd.
struct Case {
    dir: tempfile::TempDir,
    known_hosts: PathBuf,
    config: PathBuf,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().expect("tempdir");
        Case {
            known_hosts: dir.path().join("known_hosts"),
            config: dir.path().join("config"),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ssh-keygen -t TYPE` into `name` (and `name.pub`), with `passphrase`.
    fn keygen(&self, name: &str, kind: &str, passphrase: &str) -> PathBuf {
        let path = self.path(name);
        ssh_keygen(&[
            "-q",
            "-t",
            kind,
            "-N",
            passphrase,
            "-C",
            name,
            "-f",
            path.to_str().expect("utf-8"),
        ]);
        path
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// ssh_config: `shell` on `addr`, our known_hosts only, then `lines`.
    fn configure(&self, addr: SocketAddr, lines: &str) {
        let text = format!(
            "Host shell\n  HostName {}\n  Port {}\n  User {}\n  UserKnownHostsFile {}\n  \
             GlobalKnownHostsFile none\n{lines}",
            addr.ip(),
            addr.port(),
            login_user(),
            self.known_hosts.display()
        );
        std::fs::write(&self.config, text).expect("write config");
    }

    /// known_hosts trusts `s`'s host key, under the name OpenSSH uses.
    fn trust(&self, s: &Sshd) {
        std::fs::write(&self.known_hosts, known_line(&name_of(s.addr), &s.host_key))
            .expect("write");
    }

    /// ssh_config: `shell` on `addr`, strict host key checking, `key` as the identity.
    fn configure_key(&self, addr: SocketAddr, key: &Path) {
        self.configure(
            addr,
            &format!(
                "  StrictHostKeyChecking yes\n  IdentityFile {}\n",
                key.display()
            ),
        );
    }

    fn known_hosts_text(&self) -> String {
        std::fs::read_to_string(&self.known_hosts).unwrap_or_default()
    }

    /// Brings up a tunnel through `shell` to `echo` and pushes data through it.
    async fn connect(&self, echo: &Echo, opts: &ConnectOptions) -> Result<(), pgtunnel::Error> {
        let request = Request {
            target: parse_target(&echo.addr.to_string()).expect("target"),
            via: Some(pgtunnel::spec::parse_hops("shell").expect("hop")),
            config: ConfigSource::File(self.config.clone()),
            listen: "127.0.0.1:0".parse().expect("listen"),
            require_encrypted: false,
            require_pq: false,
        };
        let env = tunnel::local_env().with_home(self.dir.path());
        let config = tunnel::load_config(&request.config, &env)?;
        let chain = tunnel::plan(&request, &config, &env)?;
        let t = tunnel::start(&chain, request.listen, opts).await?;
        let addr = t.local_addr().expect("local addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(t.serve(async move {
            let _ = rx.await;
        }));
        echo_round_trip(addr, 64 * 1024, 11).await;
        let _ = tx.send(());
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("tunnel stops")
            .expect("tunnel task");
        Ok(())
    }

    /// Runs OpenSSH's `ssh` against `addr` with strict host key checking and no prompts;
    /// returns whether it got in (host key accepted from our known_hosts, key accepted).
    fn ssh_accepts(&self, addr: SocketAddr, key: &Path) -> (bool, String) {
        let out = Command::new("ssh")
            .args(["-F", "none", "-o", "BatchMode=yes", "-o"])
            .arg("StrictHostKeyChecking=yes")
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=none",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args(["-o", "ConnectTimeout=10", "-i"])
            .arg(key)
            .arg("-p")
            .arg(addr.port().to_string())
            .arg(format!("{}@{}", login_user(), addr.ip()))
            .arg("true")
            .env_remove("SSH_AUTH_SOCK")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run ssh (install openssh-client)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn public_of(path: &Path) -> PublicKey {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    russh::keys::load_public_key(PathBuf::from(p)).expect("public key")
}

fn sshd(authorized: Vec<PublicKey>, echo: &Echo, extra: &str) -> Sshd {
    Sshd::start(SshdOptions {
        ip: "127.0.0.1".parse().expect("ip"),
        authorized,
        permit_open: vec![("127.0.0.1".into(), echo.addr.port())],
        extra,
    })
}

/// An sshd whose host key (`name`, ECDSA) comes with a host certificate signed by `ca` with
/// `ssh-keygen -s` `args` (`-n` principals, `-V` validity); the host key's path and the server.
fn sshd_with_host_certificate(
    c: &Case,
    name: &str,
    ca: &Path,
    args: &[&str],
    key: &Path,
    echo: &Echo,
) -> (PathBuf, Sshd) {
    let host = c.keygen(name, "ecdsa", "");
    let mut host_pub = host.as_os_str().to_owned();
    host_pub.push(".pub");
    let mut sign = vec![
        "-q",
        "-s",
        ca.to_str().expect("utf-8"),
        "-I",
        "test host",
        "-h",
    ];
    sign.extend(args.iter().copied());
    sign.push(host_pub.to_str().expect("utf-8"));
    ssh_keygen(&sign);
    let cert = c.path(&format!("{name}-cert.pub"));
    assert!(cert.exists());
    let s = sshd(
        vec![public_of(key)],
        echo,
        &format!(
            "HostKey {}\nHostCertificate {}",
            host.display(),
            cert.display()
        ),
    );
    (host, s)
}

fn known_line(name: &str, key: &PublicKey) -> String {
    let mut key = key.clone();
    key.set_comment("");
    format!("{name} {}\n", key.to_openssh().expect("encode"))
}

fn name_of(addr: SocketAddr) -> String {
    format!("[{}]:{}", addr.ip(), addr.port())
}

/// Records events; answers questions from a script, recording them.
struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
    asked: Arc<Mutex<Vec<PromptRequest>>>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            events: Arc::default(),
            asked: Arc::default(),
        }
    }

    fn options(&self, answer: Option<fn(&PromptRequest) -> Option<String>>) -> ConnectOptions {
        let events = self.events.clone();
        let asked = self.asked.clone();
        ConnectOptions {
            observer: Observer::new(move |e| events.lock().expect("events").push(e)),
            agent: AgentSource::Disabled,
            default_connect_timeout: Duration::from_secs(20),
            prompts: answer.map(|answer| {
                Prompts::new(move |r: &PromptRequest| -> Result<Answer, PromptError> {
                    asked.lock().expect("asked").push(r.clone());
                    answer(r).map(Answer::new).ok_or(PromptError::Cancelled)
                })
            }),
            ..Default::default()
        }
    }

    fn asked(&self) -> Vec<PromptRequest> {
        self.asked.lock().expect("asked").clone()
    }

    fn authenticated(&self) -> String {
        self.events
            .lock()
            .expect("events")
            .iter()
            .find_map(|e| match e {
                Event::Authenticated { how, .. } => Some(how.clone()),
                _ => None,
            })
            .expect("an Authenticated event")
    }

    fn verified(&self) -> (String, String) {
        self.events
            .lock()
            .expect("events")
            .iter()
            .find_map(|e| match e {
                Event::HostKeyVerified {
                    fingerprint, how, ..
                } => Some((fingerprint.clone(), how.clone())),
                _ => None,
            })
            .expect("a HostKeyVerified event")
    }
}

fn hop_error(e: &pgtunnel::Error) -> &HopError {
    match e {
        pgtunnel::Error::Hop { source, .. } => source,
        other => panic!("not a hop error: {other}"),
    }
}

const PASSPHRASE: &str = "correct horse battery staple";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_known_hosts_entry_is_accepted() {
    let c = Case::new();
    let echo = Echo::start().await;
    let key = c.keygen("id_ed25519", "ed25519", "");
    let s = sshd(vec![public_of(&key)], &echo, "");
    c.trust(&s);
    // ssh-keygen -H hashes the names, as HashKnownHosts would.
    ssh_keygen(&["-H", "-f", c.known_hosts.to_str().expect("utf-8")]);
    assert!(c.known_hosts_text().starts_with("|1|"), "hashed");
    c.configure_key(s.addr, &key);
    let r = Recorder::new();
    c.connect(&echo, &r.options(None)).await.expect("connects");
    assert!(r.verified().1.contains("known_hosts"), "{:?}", r.verified());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_known_only_by_its_rsa_key_connects_although_the_server_prefers_ed25519() {
    let c = Case::new();
    let echo = Echo::start().await;
    let key = c.keygen("id_ed25519", "ed25519", "");
    let rsa_host = c.keygen("host_rsa", "rsa", "");
    let s = sshd(
        vec![public_of(&key)],
        &echo,
        &format!("HostKey {}", rsa_host.display()),
    );
    let rsa_pub = public_of(&rsa_host);
    std::fs::write(&c.known_hosts, known_line(&name_of(s.addr), &rsa_pub)).expect("write");
    c.configure_key(s.addr, &key);
    let r = Recorder::new();
    c.connect(&echo, &r.options(None))
        .await
        .expect("connects with the RSA host key, not 'changed'");
    assert_eq!(
        r.verified().0,
        rsa_pub
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_host_key_is_refused_even_with_checking_off() {
    let c = Case::new();
    let echo = Echo::start().await;
    let key = c.keygen("id_ed25519", "ed25519", "");
    let s = sshd(vec![public_of(&key)], &echo, "");
    std::fs::write(
        &c.known_hosts,
        format!("@revoked {}", known_line(&name_of(s.addr), &s.host_key)),
    )
    .expect("write");
    for policy in ["yes", "no", "accept-new", "ask"] {
        c.configure(
            s.addr,
            &format!(
                "  StrictHostKeyChecking {policy}\n  IdentityFile {}\n",
                key.display()
            ),
        );
        let r = Recorder::new();
        let e = c
            .connect(&echo, &r.options(Some(|_| Some("yes".into()))))
            .await
            .expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::HostKey, "{policy}: {e}");
        assert!(
            matches!(hop_error(&e), HopError::HostKeyRevoked { .. }),
            "{e}"
        );
        assert!(r.asked().is_empty(), "a revoked key is never asked about");
    }
    assert_eq!(echo.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_signed_host_certificate_is_accepted_through_cert_authority() {
    let c = Case::new();
    let echo = Echo::start().await;
    let key = c.keygen("id_ed25519", "ed25519", "");
    let ca = c.keygen("host_ca", "ed25519", "");
    let (_host, s) =
        sshd_with_host_certificate(&c, "host_ecdsa", &ca, &["-n", "127.0.0.1"], &key, &echo);
    std::fs::write(
        &c.known_hosts,
        format!(
            "@cert-authority {}",
            known_line("127.0.0.1", &public_of(&ca))
        ),
    )
    .expect("write");
    c.configure_key(s.addr, &key);
    let r = Recorder::new();
    c.connect(&echo, &r.options(None)).await.expect("connects");
    assert!(
        r.verified().1.contains("@cert-authority"),
        "{:?}",
        r.verified()
    );
    let (ok, err) = c.ssh_accepts(s.addr, &key);
    assert!(ok, "ssh accepts the same known_hosts: {err}");
    // Without the @cert-authority line the same server is unknown.
    std::fs::write(&c.known_hosts, "").expect("write");
    let e = c
        .connect(&echo, &Recorder::new().options(None))
        .await
        .expect_err("unknown");
    assert!(
        matches!(hop_error(&e), HopError::HostKeyUnknown { .. }),
        "{e}"
    );
}

/// Each way a host certificate can fail: pgtunnel's refusal says OpenSSH's reason, and the
/// real `ssh` refuses the same server with the same reason (it prints it at error level).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_host_certificates_say_why() {
    let c = Case::new();
    let echo = Echo::start().await;
    let key = c.keygen("id_ed25519", "ed25519", "");
    let ca = c.keygen("host_ca", "ed25519", "");
    let other_ca = c.keygen("other_ca", "ed25519", "");
    // The CA trusted for 127.0.0.1: the one that signed, or another one.
    let ca_line = |trusted: &str| {
        let key = if trusted == "signer" { &ca } else { &other_ca };
        format!(
            "@cert-authority {}",
            known_line("127.0.0.1", &public_of(key))
        )
    };
    // (name, ssh-keygen -s arguments, CA trusted, OpenSSH's reason, pgtunnel's wording)
    let cases = [
        (
            "expired",
            vec!["-n", "127.0.0.1", "-V", "20200101:20200102"],
            "signer",
            "Certificate invalid: expired",
            "Certificate invalid: expired (CA trusted at",
        ),
        (
            "future",
            vec!["-n", "127.0.0.1", "-V", "+1d:+2d"],
            "signer",
            "Certificate invalid: not yet valid",
            "Certificate invalid: not yet valid",
        ),
        (
            "principal",
            vec!["-n", "db.example.com"],
            "signer",
            "Certificate invalid: name is not a listed principal",
            "name is not a listed principal (127.0.0.1 is not among db.example.com)",
        ),
        (
            "untrusted",
            vec!["-n", "127.0.0.1"],
            "other",
            "No matching CA found",
            "is not trusted for this host",
        ),
    ];
    for (what, args, trusted, ssh_reason, ours) in &cases {
        let (host, s) =
            sshd_with_host_certificate(&c, &format!("host_{what}"), &ca, args, &key, &echo);
        std::fs::write(&c.known_hosts, ca_line(trusted)).expect("write");
        c.configure_key(s.addr, &key);
        let e = c
            .connect(&echo, &Recorder::new().options(None))
            .await
            .expect_err("refused");
        assert!(
            matches!(
                hop_error(&e),
                HopError::HostKeyUnknown {
                    certificate: Some(_),
                    ..
                }
            ),
            "{what}: {e}"
        );
        let text = e.to_string();
        assert!(
            text.contains("the host certificate it presented was not accepted")
                && text.contains(ours),
            "{what}: {text}"
        );
        let (ok, stderr) = c.ssh_accepts(s.addr, &key);
        assert!(!ok, "{what}: ssh refuses it too");
        if *what != "untrusted" {
            // ssh's error line (the untrusted case is a debug line in ssh).
            assert!(stderr.contains(ssh_reason), "{what}: ssh says {stderr}");
        }

        // With the plain key also on file, the connection goes on, with the reason as a warning.
        std::fs::write(
            &c.known_hosts,
            format!(
                "{}{}",
                ca_line(trusted),
                known_line("[127.0.0.1]:*", &public_of(&host))
            ),
        )
        .expect("write");
        let r = Recorder::new();
        c.connect(&echo, &r.options(None))
            .await
            .expect("the plain key is known");
        let warned = r.events.lock().expect("events").iter().any(|e| {
            matches!(e, Event::Warning(w) if w.contains("was not accepted") && w.contains(ours))
        });
        assert!(
            warned,
            "{what}: no warning in {:?}",
            r.events.lock().expect("events")
        );
    }
    assert!(echo.connections() >= cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_key_through_a_real_ssh_agent() {
    let c = Case::new();
    let echo = Echo::start().await;
    let key = c.keygen("id_ed25519", "ed25519", PASSPHRASE);
    let s = sshd(vec![public_of(&key)], &echo, "");
    c.trust(&s);
    c.configure_key(s.addr, &key);
    let sock = c.path("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run ssh-agent (install openssh-client)");
    let _kill = KillOnDrop(&mut agent);
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(sock.exists(), "ssh-agent made no socket");
    // ssh-add reads the passphrase from SSH_ASKPASS when SSH_ASKPASS_REQUIRE=force.
    let askpass = c.write("askpass.sh", &format!("#!/bin/sh\necho '{PASSPHRASE}'\n"));
    chmod_x(&askpass);
    let out = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock)
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env_remove("DISPLAY")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ssh-add");
    assert!(
        out.status.success(),
        "ssh-add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = Recorder::new();
    let opts = ConnectOptions {
        agent: AgentSource::Path(sock.clone()),
        ..r.options(Some(|_| panic!("nothing is asked: the agent signs")))
    };
    c.connect(&echo, &opts).await.expect("connects");
    assert!(
        r.authenticated().contains("ssh-agent"),
        "{}",
        r.authenticated()
    );
    assert!(r.asked().is_empty());
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chmod_x(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_key_asks_for_its_passphrase_only_when_the_server_accepts_it() {
    let c = Case::new();
    let echo = Echo::start().await;
    let other = c.keygen("id_other", "ed25519", "other passphrase");
    let key = c.keygen("id_ecdsa", "ecdsa", PASSPHRASE);
    let s = sshd(vec![public_of(&key)], &echo, "");
    c.trust(&s);
    // The key the server does not accept comes first: ssh offers it, is refused, and never
    // asks for its passphrase.
    c.configure(
        s.addr,
        &format!(
            "  StrictHostKeyChecking yes\n  IdentityFile {}\n  IdentityFile {}\n",
            other.display(),
            key.display()
        ),
    );
    let r = Recorder::new();
    let opts = r.options(Some(|q| {
        // A wrong passphrase first: ssh asks again.
        static ROUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        if ROUND.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Some("wrong".into())
        } else {
            assert_eq!(q.kind, PromptKind::Passphrase);
            Some(PASSPHRASE.into())
        }
    }));
    c.connect(&echo, &opts).await.expect("connects");
    let asked = r.asked();
    assert_eq!(asked.len(), 2, "{asked:?}");
    for q in &asked {
        assert_eq!(q.kind, PromptKind::Passphrase);
        assert!(!q.echo);
        assert_eq!(
            q.prompt,
            format!("Enter passphrase for key '{}': ", key.display())
        );
        assert_eq!(q.hop.index, 1);
        assert!(
            q.question().starts_with("hop 1 (shell, 127.0.0.1:"),
            "{}",
            q.question()
        );
    }
    assert!(
        r.authenticated().contains("id_ecdsa"),
        "{}",
        r.authenticated()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_key_without_a_prompter_says_how_to_use_the_agent() {
    let c = Case::new();
    let echo = Echo::start().await;
    let key = c.keygen("id_ed25519", "ed25519", PASSPHRASE);
    let s = sshd(vec![public_of(&key)], &echo, "");
    c.trust(&s);
    c.configure_key(s.addr, &key);
    let e = c
        .connect(&echo, &Recorder::new().options(None))
        .await
        .expect_err("cannot authenticate");
    assert_eq!(e.kind(), ErrorKind::Auth);
    let text = e.to_string();
    assert!(text.contains("hop 1 (shell"), "{text}");
    assert!(text.contains(&format!("user `{}`", login_user())), "{text}");
    assert!(text.contains("encrypted"), "{text}");
    assert!(
        text.contains(&format!("ssh-add {}", key.display())),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_certificates_from_certificate_file_and_next_to_the_key() {
    let c = Case::new();
    let echo = Echo::start().await;
    let ca = c.keygen("user_ca", "ed25519", "");
    let key = c.keygen("id_rsa", "rsa", "");
    let mut key_pub = key.as_os_str().to_owned();
    key_pub.push(".pub");
    ssh_keygen(&[
        "-q",
        "-s",
        ca.to_str().expect("utf-8"),
        "-I",
        "test user",
        "-n",
        &login_user(),
        key_pub.to_str().expect("utf-8"),
    ]);
    let cert = c.path("id_rsa-cert.pub");
    assert!(cert.exists());
    // The key itself is not authorized: only the CA is trusted. The server refuses SHA-1.
    let s = sshd(
        Vec::new(),
        &echo,
        &format!(
            "TrustedUserCAKeys {}\nPubkeyAcceptedAlgorithms -ssh-rsa*",
            public_path(&ca).display()
        ),
    );
    c.trust(&s);
    // 1. <key>-cert.pub next to the key.
    c.configure_key(s.addr, &key);
    let r = Recorder::new();
    c.connect(&echo, &r.options(None)).await.expect("connects");
    assert!(
        r.authenticated().contains("certificate"),
        "{}",
        r.authenticated()
    );
    // 2. CertificateFile, the certificate elsewhere.
    let moved = c.path("elsewhere.cert");
    std::fs::rename(&cert, &moved).expect("move cert");
    c.configure(
        s.addr,
        &format!(
            "  StrictHostKeyChecking yes\n  IdentityFile {}\n  CertificateFile {}\n",
            key.display(),
            moved.display()
        ),
    );
    let r = Recorder::new();
    c.connect(&echo, &r.options(None)).await.expect("connects");
    assert!(
        r.authenticated().contains("elsewhere.cert"),
        "{}",
        r.authenticated()
    );
    // 3. Without the certificate the key alone is refused.
    c.configure_key(s.addr, &key);
    let e = c
        .connect(&echo, &Recorder::new().options(None))
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    let log = s.log();
    assert!(!log.contains("ssh-rsa-cert-v01"), "never SHA-1: {log}");
}

fn public_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_new_writes_entries_that_ssh_accepts_plain_and_hashed() {
    let echo = Echo::start().await;
    for hashed in [false, true] {
        let c = Case::new();
        let key = c.keygen("id_ed25519", "ed25519", "");
        let s = sshd(vec![public_of(&key)], &echo, "");
        // Before: ssh refuses the unknown host.
        assert!(!c.ssh_accepts(s.addr, &key).0);
        c.configure(
            s.addr,
            &format!(
                "  StrictHostKeyChecking accept-new\n  HashKnownHosts {}\n  IdentityFile {}\n",
                if hashed { "yes" } else { "no" },
                key.display()
            ),
        );
        let r = Recorder::new();
        c.connect(&echo, &r.options(Some(|_| panic!("accept-new never asks"))))
            .await
            .expect("connects");
        let text = c.known_hosts_text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(text.starts_with("|1|"), hashed, "{text}");
        if !hashed {
            assert!(text.starts_with(&format!("{} ", name_of(s.addr))), "{text}");
        }
        let (ok, err) = c.ssh_accepts(s.addr, &key);
        assert!(ok, "ssh accepts the entry pgtunnel wrote ({text}): {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_yes_records_the_key_for_ssh_and_no_refuses() {
    let echo = Echo::start().await;
    let c = Case::new();
    let key = c.keygen("id_ed25519", "ed25519", "");
    let s = sshd(vec![public_of(&key)], &echo, "");
    c.configure(
        s.addr,
        &format!(
            "  StrictHostKeyChecking ask\n  HashKnownHosts yes\n  IdentityFile {}\n",
            key.display()
        ),
    );
    let fingerprint = s
        .host_key
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string();

    // No prompter: as `yes`.
    let e = c
        .connect(&echo, &Recorder::new().options(None))
        .await
        .expect_err("unknown");
    assert!(e.to_string().contains("no terminal or SSH_ASKPASS"), "{e}");

    // "no" refuses and writes nothing.
    let r = Recorder::new();
    let e = c
        .connect(&echo, &r.options(Some(|_| Some("no".into()))))
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::HostKey);
    assert!(e.to_string().contains("answer was no"), "{e}");
    assert_eq!(c.known_hosts_text(), "");
    let q = &r.asked()[0];
    assert_eq!(q.kind, PromptKind::HostKey);
    assert!(q.echo);
    assert_eq!(
        q.prompt,
        "Are you sure you want to continue connecting (yes/no/[fingerprint])? "
    );
    let shown = q.full_text();
    assert!(
        shown.contains(&format!("The authenticity of host '{}'", name_of(s.addr))),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("ED25519 key fingerprint is {fingerprint}.")),
        "{shown}"
    );

    // Something else, then the fingerprint itself: accepted and recorded (hashed).
    let r = Recorder::new();
    let opts = r.options(Some(|q| {
        Some(if q.prompt.starts_with("Please type") {
            FINGERPRINT.lock().expect("fp").clone()
        } else {
            "maybe".into()
        })
    }));
    *FINGERPRINT.lock().expect("fp") = fingerprint.clone();
    c.connect(&echo, &opts).await.expect("connects");
    assert_eq!(r.asked().len(), 2);
    let text = c.known_hosts_text();
    assert!(text.starts_with("|1|"), "{text}");
    let (ok, err) = c.ssh_accepts(s.addr, &key);
    assert!(ok, "ssh accepts the entry: {err}");

    // Known now: nothing is asked.
    let r = Recorder::new();
    c.connect(&echo, &r.options(Some(|_| panic!("known: not asked"))))
        .await
        .expect("connects");

    // A changed key is never asked about.
    let other = c.keygen("other_host", "ed25519", "");
    std::fs::write(
        &c.known_hosts,
        known_line(&name_of(s.addr), &public_of(&other)),
    )
    .expect("write");
    let r = Recorder::new();
    let e = c
        .connect(&echo, &r.options(Some(|_| Some("yes".into()))))
        .await
        .expect_err("changed");
    assert!(
        matches!(hop_error(&e), HopError::HostKeyChanged { .. }),
        "{e}"
    );
    assert!(r.asked().is_empty());
}

static FINGERPRINT: Mutex<String> = Mutex::new(String::new());

const ONE_TIME_CODE: &str = "246810";
use support::sshd::{KBD_INTERACTIVE, PASSWORD};

/// [`Sshd::start_pam`] for `echo`, accepting only [`ONE_TIME_CODE`].
fn pam_sshd(c: &Case, echo: &Echo, methods: &str) -> Sshd {
    Sshd::start_pam(
        c.dir.path(),
        vec![("127.0.0.1".into(), echo.addr.port())],
        methods,
        ONE_TIME_CODE,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_interactive_one_time_code_through_pam() {
    let c = Case::new();
    let echo = Echo::start().await;
    let s = pam_sshd(&c, &echo, KBD_INTERACTIVE);
    c.trust(&s);
    c.configure(s.addr, "  StrictHostKeyChecking yes\n  IdentityFile none\n");

    let r = Recorder::new();
    c.connect(&echo, &r.options(Some(|_| Some(ONE_TIME_CODE.into()))))
        .await
        .expect("connects with the code");
    let asked = r.asked();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let q = &asked[0];
    assert_eq!(q.kind, PromptKind::KeyboardInteractive);
    assert!(!q.echo);
    // OpenSSH 9's form, "(user@host) " before the server's question, after our hop label.
    assert_eq!(q.prompt, format!("({}@127.0.0.1) Password: ", login_user()));
    assert!(
        q.question().starts_with("hop 1 (shell, "),
        "{}",
        q.question()
    );
    assert!(
        r.authenticated().contains("keyboard-interactive"),
        "{}",
        r.authenticated()
    );

    // A wrong code: ssh's three attempts, then a failure naming the method.
    let r = Recorder::new();
    let e = c
        .connect(&echo, &r.options(Some(|_| Some("000000".into()))))
        .await
        .expect_err("wrong code");
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(e.to_string().contains("keyboard-interactive"), "{e}");
    assert_eq!(r.asked().len(), 3);

    // Nobody to ask: not tried, and the error says why.
    let e = c
        .connect(&echo, &Recorder::new().options(None))
        .await
        .expect_err("nobody to ask");
    assert!(
        e.to_string()
            .contains("keyboard-interactive (no terminal or SSH_ASKPASS to ask)"),
        "{e}"
    );
}

/// The binary asks through `SSH_ASKPASS` (with `SSH_ASKPASS_REQUIRE=force`, as OpenSSH does)
/// for an encrypted key's passphrase, with the hop's name in the question.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_asks_for_a_passphrase_through_ssh_askpass() {
    let c = Case::new();
    let echo = Echo::start().await;
    let key = c.keygen("id_ed25519", "ed25519", PASSPHRASE);
    let s = sshd(vec![public_of(&key)], &echo, "");
    c.trust(&s);
    c.configure_key(s.addr, &key);
    let asked = c.path("asked.txt");
    let askpass = c.write(
        "askpass.sh",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\necho '{PASSPHRASE}'\n",
            asked.display()
        ),
    );
    chmod_x(&askpass);
    let target = echo.addr.to_string();
    let mut tunnel = Pgtunnel::start_in(
        c.dir.path(),
        &[
            "-F",
            c.config.to_str().expect("utf-8"),
            "--via",
            "shell",
            &target,
        ],
        &[
            ("SSH_ASKPASS", askpass.as_os_str()),
            ("SSH_ASKPASS_REQUIRE", "force".as_ref()),
        ],
    )
    .await;
    let addr = tunnel.addr;
    echo_round_trip(addr, 64 * 1024, 5).await;
    let text = std::fs::read_to_string(&asked).expect("askpass was run");
    assert_eq!(
        text,
        format!(
            "hop 1 (shell, {}): Enter passphrase for key '{}': \n",
            s.addr,
            key.display()
        ),
        "one question, naming the hop and the key"
    );
    tunnel.signal(nix::sys::signal::Signal::SIGINT);
    let status = tunnel.wait(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0));
}

/// The `password` method against a real sshd (PAM checks the password): the right one, wrong
/// ones `NumberOfPasswordPrompts` times, `BatchMode yes` and nobody to ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_through_pam() {
    let c = Case::new();
    let echo = Echo::start().await;
    let s = pam_sshd(&c, &echo, PASSWORD);
    c.trust(&s);
    let base = "  StrictHostKeyChecking yes\n  IdentityFile none\n";
    c.configure(s.addr, base);

    // The right password.
    let r = Recorder::new();
    c.connect(&echo, &r.options(Some(|_| Some(ONE_TIME_CODE.into()))))
        .await
        .expect("connects with the password");
    let asked = r.asked();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let q = &asked[0];
    assert_eq!(q.kind, PromptKind::Password);
    assert!(!q.echo);
    assert!(q.preamble.is_empty(), "{q:?}");
    assert_eq!(
        q.question(),
        format!(
            "hop 1 (shell, {}): {}@127.0.0.1's password: ",
            s.addr,
            login_user()
        )
    );
    assert_eq!(r.authenticated(), format!("{} (password)", login_user()));

    // Wrong every time: ssh's 3 attempts, "Permission denied, please try again." before the
    // second and third, then a failure naming the method.
    let r = Recorder::new();
    let e = c
        .connect(&echo, &r.options(Some(|_| Some("wrong".into()))))
        .await
        .expect_err("wrong password");
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(e.to_string().contains("password"), "{e}");
    let asked = r.asked();
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(asked[0].preamble.is_empty());
    for q in &asked[1..] {
        assert_eq!(q.preamble, ["Permission denied, please try again."]);
    }

    // Wrong, then right: the second attempt gets in.
    let r = Recorder::new();
    let opts = r.options(Some(|q| {
        Some(if q.preamble.is_empty() {
            "wrong".into()
        } else {
            ONE_TIME_CODE.into()
        })
    }));
    c.connect(&echo, &opts).await.expect("second attempt");
    assert_eq!(r.asked().len(), 2);

    // NumberOfPasswordPrompts 1: one attempt; 0: none, and the error says why.
    c.configure(s.addr, &format!("{base}  NumberOfPasswordPrompts 1\n"));
    let r = Recorder::new();
    c.connect(&echo, &r.options(Some(|_| Some("wrong".into()))))
        .await
        .expect_err("wrong password");
    assert_eq!(r.asked().len(), 1);
    c.configure(s.addr, &format!("{base}  NumberOfPasswordPrompts 0\n"));
    let r = Recorder::new();
    let e = c
        .connect(&echo, &r.options(Some(|_| Some(ONE_TIME_CODE.into()))))
        .await
        .expect_err("no attempts allowed");
    assert!(r.asked().is_empty());
    assert!(
        e.to_string()
            .contains("not tried: password (NumberOfPasswordPrompts 0)"),
        "{e}"
    );

    // BatchMode yes: not asked although someone could answer.
    c.configure(s.addr, &format!("{base}  BatchMode yes\n"));
    let r = Recorder::new();
    let e = c
        .connect(&echo, &r.options(Some(|_| Some(ONE_TIME_CODE.into()))))
        .await
        .expect_err("batch mode");
    assert!(r.asked().is_empty());
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(
        e.to_string()
            .contains("not tried: password (BatchMode yes)"),
        "{e}"
    );

    // Nobody to ask: not tried, and the error says why.
    c.configure(s.addr, base);
    let e = c
        .connect(&echo, &Recorder::new().options(None))
        .await
        .expect_err("nobody to ask");
    assert!(
        e.to_string()
            .contains("not tried: password (no terminal or SSH_ASKPASS to ask)"),
        "{e}"
    );
    assert!(
        e.to_string().contains("the server accepts: password"),
        "{e}"
    );
}

/// `BatchMode yes` asks nothing, even with someone to answer: an unknown host key under
/// `StrictHostKeyChecking ask` is refused (as `ssh`'s `confirm()` returns no), an encrypted
/// key is skipped with a hint; `NumberOfPasswordPrompts` bounds passphrase questions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_asks_nothing_and_password_prompts_bound_passphrases() {
    let c = Case::new();
    let echo = Echo::start().await;
    let key = c.keygen("id_ed25519", "ed25519", PASSPHRASE);
    let s = sshd(vec![public_of(&key)], &echo, "");
    let never = |q: &PromptRequest| -> Option<String> { panic!("BatchMode: asked {q:?}") };

    c.configure(
        s.addr,
        &format!(
            "  StrictHostKeyChecking ask\n  BatchMode yes\n  IdentityFile {}\n",
            key.display()
        ),
    );
    let e = c
        .connect(&echo, &Recorder::new().options(Some(never)))
        .await
        .expect_err("unknown host key");
    assert_eq!(e.kind(), ErrorKind::HostKey, "{e}");
    assert!(e.to_string().contains("BatchMode"), "{e}");
    assert_eq!(c.known_hosts_text(), "");

    c.trust(&s);
    let e = c
        .connect(&echo, &Recorder::new().options(Some(never)))
        .await
        .expect_err("encrypted key");
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(
        e.to_string().contains(&format!(
            "{} (encrypted, and BatchMode yes does not ask for its passphrase; add it to \
             ssh-agent with `ssh-add {}`)",
            key.display(),
            key.display()
        )),
        "{e}"
    );

    // Without BatchMode, NumberOfPasswordPrompts 2: two wrong passphrases, then the key is
    // given up.
    c.configure(
        s.addr,
        &format!(
            "  StrictHostKeyChecking yes\n  NumberOfPasswordPrompts 2\n  IdentityFile {}\n",
            key.display()
        ),
    );
    let r = Recorder::new();
    let e = c
        .connect(&echo, &r.options(Some(|_| Some("wrong".into()))))
        .await
        .expect_err("wrong passphrases");
    assert_eq!(r.asked().len(), 2);
    assert!(e.to_string().contains("wrong passphrase 2 times"), "{e}");
}

/// The `method` of every userauth request in `s`'s log (`LogLevel DEBUG1`), in order.
fn auth_requests(s: &Sshd) -> Vec<String> {
    s.log()
        .lines()
        .filter_map(|l| l.split("userauth-request for user ").nth(1))
        .filter_map(|rest| rest.split(" method ").nth(1))
        .map(|m| m.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_tried_first_goes_without_the_none_request() {
    let c = Case::new();
    let echo = Echo::start().await;
    let key = c.keygen("id_ed25519", "ed25519", "");
    let other = c.keygen("id_other", "ed25519", "");
    let opts = SshdOptions {
        ip: "127.0.0.1".parse().expect("ip"),
        authorized: vec![public_of(&key)],
        permit_open: vec![("127.0.0.1".into(), echo.addr.port())],
        extra: "",
    };
    let s = Sshd::start_with(opts, "LogLevel DEBUG1", &[]);
    c.trust(&s);

    // The key is the first thing pgtunnel would try: it is asked for at once (and, as the
    // only key, signed at once: see the_only_key_is_signed_without_a_query).
    c.configure_key(s.addr, &key);
    let r = Recorder::new();
    c.connect(&echo, &r.options(None)).await.expect("connects");
    assert_eq!(auth_requests(&s), ["publickey"], "one signed request");

    // A refused key still learns what the server accepts, from the refusal.
    c.configure_key(s.addr, &other);
    let e = c
        .connect(&echo, &Recorder::new().options(None))
        .await
        .expect_err("the other key is not authorized");
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(
        e.to_string().contains("the server accepts: publickey"),
        "{e}"
    );
    assert!(!auth_requests(&s).contains(&"none".to_string()));

    // No key to offer: `none` first, as ssh.
    c.configure(
        s.addr,
        "  StrictHostKeyChecking yes\n  IdentityFile none\n  BatchMode yes\n",
    );
    let e = c
        .connect(&echo, &Recorder::new().options(None))
        .await
        .expect_err("nothing to offer");
    assert!(
        e.to_string().contains("the server accepts: publickey"),
        "{e}"
    );
    assert_eq!(auth_requests(&s).last().map(String::as_str), Some("none"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_key_is_signed_without_a_query() {
    let c = Case::new();
    let echo = Echo::start().await;
    let key = c.keygen("id_ed25519", "ed25519", "");
    let other = c.keygen("id_other", "ed25519", "");
    let locked = c.keygen("id_locked", "ecdsa", PASSPHRASE);
    let opts = SshdOptions {
        ip: "127.0.0.1".parse().expect("ip"),
        authorized: vec![public_of(&key), public_of(&locked)],
        permit_open: vec![("127.0.0.1".into(), echo.addr.port())],
        extra: "",
    };
    let s = Sshd::start_with(opts, "LogLevel DEBUG2", &[]);
    c.trust(&s);
    let identities = |files: &[&Path]| {
        let lines: String = files
            .iter()
            .map(|f| format!("  IdentityFile {}\n", f.display()))
            .collect();
        format!("  StrictHostKeyChecking yes\n  IdentitiesOnly yes\n{lines}")
    };

    // One key, not encrypted: its signed request is the only one (no query, no PK_OK).
    c.configure(s.addr, &identities(&[&key]));
    c.connect(&echo, &Recorder::new().options(None))
        .await
        .expect("connects");
    assert_eq!(pubkey_requests(&s), ["attempting"]);

    // Two keys: each is offered first, as ssh does; the accepted one is then signed.
    c.configure(s.addr, &identities(&[&other, &key]));
    c.connect(&echo, &Recorder::new().options(None))
        .await
        .expect("connects");
    assert_eq!(
        pubkey_requests(&s)[1..],
        ["querying", "querying", "attempting"]
    );

    // One key, encrypted: offered first, so that its passphrase is asked for only when the
    // server takes it.
    c.configure(s.addr, &identities(&[&locked]));
    let r = Recorder::new();
    c.connect(&echo, &r.options(Some(|_| Some(PASSPHRASE.into()))))
        .await
        .expect("connects");
    assert_eq!(r.asked().len(), 1);
    assert_eq!(pubkey_requests(&s)[4..], ["querying", "attempting"]);
}

/// Each public-key request in `s`'s log (`LogLevel DEBUG2`): `querying` for an offer without
/// a signature, `attempting` for a signed request (sshd's `userauth_pubkey`).
fn pubkey_requests(s: &Sshd) -> Vec<String> {
    s.log()
        .lines()
        .filter(|l| l.contains("userauth_pubkey: ") && l.contains(" public key "))
        .filter_map(|l| {
            ["querying", "attempting"]
                .into_iter()
                .find(|w| l.contains(&format!(" {w} public key ")))
        })
        .map(String::from)
        .collect()
}
