//! The `pgtunnel` binary's questions on a real terminal: it runs as the session leader of a new
//! pseudo-terminal (`setsid --ctty` from util-linux, the pty from `openpty`), so `/dev/tty` is
//! that terminal, as when a user runs it; the test reads what the terminal shows and types the
//! answers. Against real `sshd` servers on loopback:
//!
//! - `StrictHostKeyChecking ask`: the question names the hop, the host and the SHA256
//!   fingerprint; `yes` connects and records the key (which `ssh` then accepts with
//!   `StrictHostKeyChecking=yes`, `BatchMode=yes`); `no` exits 3;
//! - an encrypted key's passphrase is typed with echo off (the terminal never shows it);
//! - a keyboard-interactive one-time code (through PAM) is typed on the terminal;
//! - the progress spinners are on (stderr is this terminal) and the questions still appear
//!   whole: the spinners are suspended while a question is shown;
//! - `BatchMode yes` asks nothing, even on a terminal.
//!
//! Waits are bounded (a step that does not happen fails the test with the terminal's text);
//! nothing is timed.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use russh::keys::PublicKey;
use support::Echo;
use support::sshd::{KBD_INTERACTIVE, Sshd, SshdOptions, login_user, ssh_keygen};
use support::tty::OnTty;

/// How long one step (output appearing, the program exiting) may take before the test fails.
const STEP: Duration = Duration::from_secs(60);
const PASSPHRASE: &str = "tty passphrase 7431";
const ONE_TIME_CODE: &str = "135791";

/// A home with a config for `shell` (the sshd at `addr`) and a known_hosts file.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn known_hosts(&self) -> PathBuf {
        self.path("known_hosts")
    }

    fn keygen(&self, name: &str, passphrase: &str) -> PathBuf {
        let path = self.path(name);
        ssh_keygen(&[
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            name,
            "-f",
            path.to_str().expect("utf-8"),
        ]);
        path
    }

    fn configure(&self, addr: SocketAddr, lines: &str) -> PathBuf {
        let config = self.path("config");
        std::fs::write(
            &config,
            format!(
                "Host shell\n  HostName {}\n  Port {}\n  User {}\n  UserKnownHostsFile {}\n  \
                 GlobalKnownHostsFile none\n{lines}",
                addr.ip(),
                addr.port(),
                login_user(),
                self.known_hosts().display()
            ),
        )
        .expect("write config");
        config
    }

    fn know(&self, addr: SocketAddr, key: &PublicKey) {
        let mut key = key.clone();
        key.set_comment("");
        std::fs::write(
            self.known_hosts(),
            format!(
                "[{}]:{} {}\n",
                addr.ip(),
                addr.port(),
                key.to_openssh().expect("encode")
            ),
        )
        .expect("write known_hosts");
    }

    /// `pgtunnel -F config --via shell ECHO` on a terminal of its own.
    fn run(&self, config: &Path, echo: &Echo) -> OnTty {
        let target = echo.addr.to_string();
        OnTty::spawn(
            self.dir.path(),
            &[
                "-F",
                config.to_str().expect("utf-8"),
                "--via",
                "shell",
                &target,
            ],
        )
    }
}

fn public_of(path: &Path) -> PublicKey {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    russh::keys::load_public_key(PathBuf::from(p)).expect("public key")
}

fn sshd(authorized: Vec<PublicKey>, echo: &Echo) -> Sshd {
    Sshd::start(SshdOptions {
        ip: "127.0.0.1".parse().expect("ip"),
        authorized,
        permit_open: vec![("127.0.0.1".into(), echo.addr.port())],
        extra: "",
    })
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(russh::keys::HashAlg::Sha256).to_string()
}

/// The spinners were drawn on this terminal: a hop's finished spinner line.
fn assert_spinners_shown(screen: &str) {
    assert!(
        screen.contains("✓ hop 1 (shell, "),
        "no spinner line on the terminal:\n{screen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_question_yes_records_a_key_ssh_accepts() {
    let echo = Echo::start().await;
    let home = Home::new();
    let key = home.keygen("id_ed25519", "");
    let s = sshd(vec![public_of(&key)], &echo);
    let config = home.configure(
        s.addr,
        &format!(
            "  StrictHostKeyChecking ask\n  IdentityFile {}\n",
            key.display()
        ),
    );
    let mut tty = home.run(&config, &echo);
    let name = format!("[{}]:{}", s.addr.ip(), s.addr.port());
    tty.expect(&format!(
        "The authenticity of host '{name}' ({}) can't be established.",
        s.addr
    ));
    tty.expect(&format!(
        "ED25519 key fingerprint is {}.",
        fingerprint(&s.host_key)
    ));
    // The question whole, on one line, after the hop's name: the spinner did not cut in.
    tty.expect(&format!(
        "hop 1 (shell, {}): Are you sure you want to continue connecting (yes/no/[fingerprint])? ",
        s.addr
    ));
    assert!(tty.echo_on(), "the host key question is asked with echo on");
    tty.type_line("yes");
    tty.expect("ready: 127.0.0.1:");
    let screen = tty.screen();
    assert!(screen.contains("yes"), "the answer is echoed:\n{screen}");
    assert_spinners_shown(&screen);
    assert_eq!(tty.interrupt(), 0, "{}", tty.screen());

    let known = std::fs::read_to_string(home.known_hosts()).expect("known_hosts written");
    assert!(
        known.starts_with(&format!("{name} ssh-ed25519 ")),
        "{known}"
    );
    let out = Command::new("ssh")
        .args(["-F", "none", "-o", "BatchMode=yes"])
        .args(["-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!(
            "UserKnownHostsFile={}",
            home.known_hosts().display()
        ))
        .args([
            "-o",
            "GlobalKnownHostsFile=none",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-i")
        .arg(&key)
        .arg("-p")
        .arg(s.addr.port().to_string())
        .arg(format!("{}@{}", login_user(), s.addr.ip()))
        .arg("true")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .expect("run ssh (install openssh-client)");
    assert!(
        out.status.success(),
        "ssh accepts the key pgtunnel recorded: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_question_no_exits_3() {
    let echo = Echo::start().await;
    let home = Home::new();
    let key = home.keygen("id_ed25519", "");
    let s = sshd(vec![public_of(&key)], &echo);
    let config = home.configure(
        s.addr,
        &format!(
            "  StrictHostKeyChecking ask\n  IdentityFile {}\n",
            key.display()
        ),
    );
    let mut tty = home.run(&config, &echo);
    tty.expect("Are you sure you want to continue connecting (yes/no/[fingerprint])? ");
    tty.type_line("no");
    assert_eq!(tty.wait(), 3, "{}", tty.screen());
    let screen = tty.screen();
    assert!(screen.contains("answer was no"), "{screen}");
    assert!(!home.known_hosts().exists(), "nothing recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrase_is_typed_with_echo_off() {
    let echo = Echo::start().await;
    let home = Home::new();
    let key = home.keygen("id_ed25519", PASSPHRASE);
    let s = sshd(vec![public_of(&key)], &echo);
    home.know(s.addr, &s.host_key);
    let config = home.configure(
        s.addr,
        &format!(
            "  StrictHostKeyChecking yes\n  IdentityFile {}\n",
            key.display()
        ),
    );
    let mut tty = home.run(&config, &echo);
    // A wrong one first: asked again, as ssh does.
    let question = format!(
        "hop 1 (shell, {}): Enter passphrase for key '{}': ",
        s.addr,
        key.display()
    );
    tty.expect(&question);
    assert!(!tty.echo_on(), "echo is off once the question is shown");
    tty.type_line("not it");
    tty.expect(&question);
    assert!(!tty.echo_on());
    tty.type_line(PASSPHRASE);
    tty.expect("ready: 127.0.0.1:");
    assert!(tty.echo_on(), "echo is back on after the question");
    let screen = tty.screen();
    assert!(
        !screen.contains(PASSPHRASE) && !screen.contains("not it"),
        "a passphrase appeared on the terminal:\n{screen}"
    );
    assert_spinners_shown(&screen);
    assert_eq!(tty.interrupt(), 0, "{}", tty.screen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_code_is_typed_on_the_terminal() {
    let echo = Echo::start().await;
    let home = Home::new();
    let s = Sshd::start_pam(
        home.dir.path(),
        vec![("127.0.0.1".into(), echo.addr.port())],
        KBD_INTERACTIVE,
        ONE_TIME_CODE,
    );
    home.know(s.addr, &s.host_key);
    let config = home.configure(s.addr, "  StrictHostKeyChecking yes\n  IdentityFile none\n");
    let mut tty = home.run(&config, &echo);
    tty.expect(&format!(
        "hop 1 (shell, {}): ({}@127.0.0.1) Password: ",
        s.addr,
        login_user()
    ));
    assert!(!tty.echo_on(), "PAM's question is answered without echo");
    tty.type_line(ONE_TIME_CODE);
    tty.expect("ready: 127.0.0.1:");
    let screen = tty.screen();
    assert!(!screen.contains(ONE_TIME_CODE), "{screen}");
    assert!(screen.contains("keyboard-interactive"), "{screen}");
    assert_eq!(tty.interrupt(), 0, "{}", tty.screen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_asks_nothing_on_a_terminal() {
    let echo = Echo::start().await;
    let home = Home::new();
    let key = home.keygen("id_ed25519", PASSPHRASE);
    let s = sshd(vec![public_of(&key)], &echo);
    let lines = format!(
        "  StrictHostKeyChecking ask\n  BatchMode yes\n  IdentityFile {}\n",
        key.display()
    );
    // An unknown host key: refused, not asked about.
    let config = home.configure(s.addr, &lines);
    let mut tty = home.run(&config, &echo);
    assert_eq!(tty.wait(), 3, "{}", tty.screen());
    let screen = tty.screen();
    assert!(!screen.contains("Are you sure"), "{screen}");
    assert!(screen.contains("BatchMode"), "{screen}");
    assert!(!home.known_hosts().exists());

    // A known host and an encrypted key: no passphrase question, exit 4 with the hint.
    home.know(s.addr, &s.host_key);
    let mut tty = home.run(&config, &echo);
    assert_eq!(tty.wait(), 4, "{}", tty.screen());
    let screen = tty.screen();
    assert!(!screen.contains("Enter passphrase"), "{screen}");
    assert!(
        screen.contains("BatchMode yes does not ask for its passphrase"),
        "{screen}"
    );
}

/// `pgtunnel ... -- psql` on a terminal: psql owns it (its prompt, line editing); Ctrl-C at
/// psql during a long query cancels the query (psql's cancel request goes through the
/// tunnel too) and neither psql nor the tunnel stops; `\q` ends both, with psql's status.
#[test]
fn ctrl_c_in_psql_under_pgtunnel_cancels_the_query_only() {
    use support::pg::{PG_USER, TestPg, password};
    use support::sshd::ManualHops;
    let home = support::Home::new();
    let pg = TestPg::start("127.0.0.3".parse().expect("ip"));
    let hops = ManualHops::start(&home, ("127.0.0.3", pg.cluster.addr().port()));
    hops.write_config(&home, "");
    let cfg = home.config.to_str().expect("utf-8 path").to_string();
    let target = pg.cluster.addr().to_string();
    let psql = pg.cluster.bindir().join("psql").display().to_string();
    let mut tty = OnTty::spawn_with(
        home.dir.path(),
        &[
            "-F",
            &cfg,
            "--via",
            "db.foo.com",
            "--pg",
            &target,
            "--",
            &psql,
            "-X",
        ],
        &[
            ("PGUSER", PG_USER),
            ("PGDATABASE", "postgres"),
            ("PGPASSWORD", password()),
        ],
    );
    tty.expect("postgres=#");
    tty.type_line("SELECT pg_sleep(60);");
    // Until the server runs it (bounded).
    let deadline = Instant::now() + STEP;
    while pg.local_sql(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'",
    ) != "1"
    {
        assert!(
            Instant::now() < deadline,
            "the query never started:\n{}",
            tty.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    tty.ctrl_c();
    tty.expect("canceling statement due to user request");
    tty.expect("postgres=#");
    tty.type_line("SELECT 6 * 7 AS answer;");
    tty.expect("42");
    tty.type_line("\\q");
    assert_eq!(tty.wait(), 0, "{}", tty.screen());
}
