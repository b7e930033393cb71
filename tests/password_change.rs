//! A server that answers a password with SSH_MSG_USERAUTH_PASSWD_CHANGEREQ (an expired
//! password; RFC 4252, section 8). OpenSSH's `ssh` would ask for the old and a new password;
//! pgtunnel does not change passwords and must say so, not hang. OpenSSH's sshd never sends the
//! message, so the server is asyncssh's (`tests/support/passwd_change_server.py`, Debian's
//! `python3-asyncssh`, installed by `scripts/test`).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pgtunnel::error::ErrorKind;
use pgtunnel::event::Observer;
use pgtunnel::spec::{parse_hops, parse_target};
use pgtunnel::ssh::prompt::{Answer, PromptError, PromptKind, PromptRequest, Prompts};
use pgtunnel::ssh::session::{AgentSource, ConnectOptions};
use pgtunnel::tunnel::{self, ConfigSource, Request};

const PYTHON: &str = "/usr/bin/python3";
const SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/passwd_change_server.py"
);

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_request_is_a_clear_error_not_a_hang() {
    let probe = Command::new(PYTHON)
        .args(["-c", "import asyncssh"])
        .output();
    assert!(
        matches!(&probe, Ok(o) if o.status.success()),
        "{PYTHON} with asyncssh is needed: apt-get install python3-asyncssh (scripts/test \
         does this): {probe:?}"
    );
    let mut child = Command::new(PYTHON)
        .args(["-W", "ignore", SERVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the asyncssh server");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the server's first line");
    let (port, host_key) = line.trim().split_once(' ').expect("port and host key");
    let port: u16 = port.parse().expect("port");

    let dir = tempfile::tempdir().expect("tempdir");
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_key}\n")).expect("write");
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "Host shell\n  HostName 127.0.0.1\n  Port {port}\n  User joe\n  \
             UserKnownHostsFile {}\n  GlobalKnownHostsFile none\n  StrictHostKeyChecking yes\n  \
             IdentityFile none\n  KbdInteractiveAuthentication no\n",
            known_hosts.display()
        ),
    )
    .expect("write config");

    let request = Request {
        target: parse_target("127.0.0.1:5432").expect("target"),
        via: Some(parse_hops("shell").expect("hop")),
        config: ConfigSource::File(config),
        listen: "127.0.0.1:0".parse().expect("listen"),
        require_encrypted: false,
        require_pq: false,
    };
    let env = tunnel::local_env().with_home(dir.path());
    let cfg = tunnel::load_config(&request.config, &env).expect("config");
    let chain = tunnel::plan(&request, &cfg, &env).expect("plan");
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<PromptKind>::new()));
    let record = asked.clone();
    let opts = ConnectOptions {
        observer: Observer::new(|_| {}),
        agent: AgentSource::Disabled,
        default_connect_timeout: Duration::from_secs(20),
        prompts: Some(Prompts::new(
            move |r: &PromptRequest| -> Result<Answer, PromptError> {
                record.lock().expect("asked").push(r.kind);
                Ok(Answer::new("old password".into()))
            },
        )),
        ..Default::default()
    };
    // Bounded: the upstream client waited for an answer that never came.
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        tunnel::start(&chain, request.listen, &opts),
    )
    .await
    .expect("pgtunnel gives up instead of waiting forever");
    let e = match result {
        Ok(_) => panic!("authenticated with an expired password"),
        Err(e) => e,
    };
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    let text = e.to_string();
    assert!(
        text.contains(
            "password (the server requires a new password: \"Your password has expired.\"; \
             pgtunnel does not change passwords: change it with `ssh` first)"
        ),
        "{text}"
    );
    // One password question: the change request is not answered with more questions.
    assert_eq!(*asked.lock().expect("asked"), [PromptKind::Password]);
    drop(server);
}
