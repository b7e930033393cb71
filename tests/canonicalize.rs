//! `CanonicalizeHostname` with real name lookups, never leaving the machine: every command
//! runs in a private mount namespace (`unshare --mount`) where `/etc/hosts` is the case's own
//! file, `/etc/nsswitch.conf` says `hosts: files` (no DNS is asked) and `/etc/resolv.conf`
//! names only 127.0.0.1 (should anything ask anyway).
//!
//! - `cases_match_ssh_g`: the cases of `tests/data/ssh_config/` that have `# hosts:` lines
//!   (their hosts file; names canonicalization looks up end in a dot, as ssh asks for them,
//!   and glibc's files backend compares them as written) or `# query-via:` queries. For each
//!   `# query: HOST`, `ssh -G -F config HOST` against `pgtunnel explain -F config --via HOST
//!   localhost` (its hop for HOST); for `# query-via: GW HOST`, `ssh -G -J GW HOST` against
//!   `--via GW,HOST`; for `# error: HOST -- text`, both must refuse and ours must say `text`.
//!   Compared: hostname, user, port.
//! - `a_tunnel_reaches_an_alias_by_canonicalization`: `CanonicalDomains test.internal` makes
//!   `--via db` the host `db.test.internal` (127.0.0.1 in the namespace's hosts file), whose
//!   Host block (port, user, key, known_hosts entry under the canonical name) applies in the
//!   second pass; bytes go through the tunnel.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_pgtunnel");
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ssh_config");
/// Compared (the first word of each: `%h` in the first known-hosts file follows the name).
const FIELDS: [&str; 4] = ["hostname", "user", "port", "userknownhostsfile"];

/// The files bind-mounted over the system's in the namespace.
struct Names {
    dir: tempfile::TempDir,
}

impl Names {
    /// `hosts` is the hosts file's text.
    fn new(hosts: &str) -> Names {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write namespace file")
        };
        write("hosts", &format!("127.0.0.1 localhost\n{hosts}"));
        write("nsswitch.conf", "hosts: files\n");
        write("resolv.conf", "nameserver 127.0.0.1\n");
        Names { dir }
    }

    /// `program args` in a private mount namespace with these files.
    fn command(&self, program: &str, args: &[String]) -> Command {
        let d = self.dir.path().display();
        let script = format!(
            "mount --bind {d}/hosts /etc/hosts && \
             mount --bind {d}/nsswitch.conf /etc/nsswitch.conf && \
             mount --bind {d}/resolv.conf /etc/resolv.conf && exec \"$0\" \"$@\""
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }
}

/// The namespace must work (root, or CAP_SYS_ADMIN): without it these tests cannot keep
/// their lookups on the machine, so they fail rather than skip.
fn require_unshare() {
    let ok = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status();
    assert!(
        matches!(ok, Ok(s) if s.success()),
        "`unshare --mount` does not work here (needs root / CAP_SYS_ADMIN): it gives the \
         canonicalization tests a hosts file of their own, so no name is looked up in DNS"
    );
}

#[derive(Debug)]
enum Query {
    /// `HOST`, or `GW HOST` (through a jump host).
    Same { via: Option<String>, host: String },
    /// Both refuse; ours says this.
    Error { host: String, text: String },
    /// `pgtunnel ALIAS`: explain's target host against ssh -G's hostname.
    Target { alias: String },
}

struct Case {
    name: String,
    hosts: String,
    config: String,
    queries: Vec<Query>,
}

fn load_cases() -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(DATA)
        .expect("case directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    paths.sort();
    let mut cases = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("read case");
        let marked = text
            .lines()
            .any(|l| l.starts_with("# hosts:") || l.starts_with("# query-via:"));
        if !marked {
            continue;
        }
        let mut hosts = String::new();
        let mut queries = Vec::new();
        for line in text.lines() {
            if let Some(h) = line.strip_prefix("# hosts:") {
                hosts.push_str(h.trim());
                hosts.push('\n');
            } else if let Some(q) = line.strip_prefix("# query-target:") {
                queries.push(Query::Target {
                    alias: q.trim().to_string(),
                });
            } else if let Some(q) = line.strip_prefix("# query-via:") {
                let (via, host) = q.trim().split_once(' ').expect("query-via: GW HOST");
                queries.push(Query::Same {
                    via: Some(via.to_string()),
                    host: host.trim().to_string(),
                });
            } else if let Some(q) = line.strip_prefix("# query:") {
                queries.push(Query::Same {
                    via: None,
                    host: q.trim().to_string(),
                });
            } else if let Some(q) = line.strip_prefix("# error:") {
                let (host, text) = q.split_once(" -- ").expect("error: HOST -- text");
                queries.push(Query::Error {
                    host: host.trim().to_string(),
                    text: text.trim().to_string(),
                });
            }
        }
        cases.push(Case {
            name: path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
            hosts,
            config: text,
            queries,
        });
    }
    cases
}

/// `user@host:port` as the differential suite writes queries: (user, host, port).
fn split_query(q: &str) -> (Option<&str>, &str, Option<&str>) {
    let (user, rest) = match q.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, q),
    };
    match rest.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (user, h, Some(p))
        }
        _ => (user, rest, None),
    }
}

fn ssh_args(config: &Path, via: Option<&str>, host: &str) -> Vec<String> {
    let (user, host, port) = split_query(host);
    let mut args = vec!["-G".to_string(), "-F".into(), config.display().to_string()];
    if let Some(via) = via {
        args.extend(["-J".to_string(), via.to_string()]);
    }
    if let Some(user) = user {
        args.extend(["-l".to_string(), user.to_string()]);
    }
    if let Some(port) = port {
        args.extend(["-p".to_string(), port.to_string()]);
    }
    args.push(host.to_string());
    args
}

fn explain_args(config: &Path, via: Option<&str>, host: &str) -> Vec<String> {
    let hops = match via {
        Some(via) => format!("{via},{host}"),
        None => host.to_string(),
    };
    vec![
        "explain".into(),
        "-F".into(),
        config.display().to_string(),
        "--via".into(),
        hops,
        "localhost".into(),
    ]
}

fn run(mut cmd: Command, home: &Path) -> Output {
    cmd.env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run in the namespace")
}

/// ssh -G's [`FIELDS`].
fn ssh_fields(out: &Output) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((k, v)) = line.split_once(' ')
            && FIELDS.contains(&k)
        {
            let first = v.split(' ').next().unwrap_or_default();
            map.entry(k.to_string())
                .or_insert_with(|| first.to_string());
        }
    }
    map
}

/// The [`FIELDS`] rows of explain's last `--via` hop named `host`.
fn explain_fields(out: &Output, host: &str) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut map = BTreeMap::new();
    let mut in_hop = false;
    for line in text.lines() {
        if line.starts_with("hop ") {
            in_hop = line.ends_with(&format!(": {host} (from --via)"));
            if in_hop {
                map.clear();
            }
        } else if in_hop && let Some(row) = line.strip_prefix("  ") {
            let mut words = row.split_whitespace();
            if let (Some(k), Some(v)) = (words.next(), words.next())
                && FIELDS.contains(&k)
            {
                map.insert(k.to_string(), v.to_string());
            }
        }
    }
    map
}

/// `pgtunnel explain ALIAS`'s target host against `ssh -G ALIAS`'s hostname.
fn check_target(case: &Case, names: &Names, dir: &Path, alias: &str, failures: &mut Vec<String>) {
    let config = dir.join("config");
    let theirs = run(names.command("ssh", &ssh_args(&config, None, alias)), dir);
    let args = ["explain", "-F", &config.display().to_string(), alias].map(String::from);
    let ours = run(names.command(BIN, &args), dir);
    let target = String::from_utf8_lossy(&ours.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("target: "))
        .and_then(|t| t.split_once(':'))
        .map(|(host, _)| host.to_string());
    let hostname = ssh_fields(&theirs).get("hostname").cloned();
    if target.is_none() || target != hostname {
        failures.push(format!(
            "{} [target {alias}]: ours {target:?} != ssh {hostname:?} ({})",
            case.name,
            String::from_utf8_lossy(&ours.stderr).trim()
        ));
    }
}

fn check_query(case: &Case, names: &Names, dir: &Path, q: &Query, failures: &mut Vec<String>) {
    let config = dir.join("config");
    let (via, host, error) = match q {
        Query::Same { via, host } => (via.as_deref(), host.as_str(), None),
        Query::Error { host, text } => (None, host.as_str(), Some(text.as_str())),
        Query::Target { alias } => return check_target(case, names, dir, alias, failures),
    };
    let label = format!(
        "{} [{}{host}]",
        case.name,
        via.map(|v| format!("-J {v} ")).unwrap_or_default()
    );
    let theirs = run(names.command("ssh", &ssh_args(&config, via, host)), dir);
    let (_, bare, _) = split_query(host);
    let ours = run(names.command(BIN, &explain_args(&config, via, host)), dir);
    let their_err = String::from_utf8_lossy(&theirs.stderr).trim().to_string();
    let our_err = String::from_utf8_lossy(&ours.stderr).trim().to_string();
    match error {
        Some(text) => {
            if theirs.status.success() {
                failures.push(format!(
                    "{label}: ssh -G should fail, it printed {:?}",
                    ssh_fields(&theirs)
                ));
            }
            if ours.status.success() {
                failures.push(format!(
                    "{label}: explain should fail, it printed {:?}",
                    explain_fields(&ours, host)
                ));
            } else if !our_err.contains(text) {
                failures.push(format!(
                    "{label}: our error `{our_err}` does not say `{text}`"
                ));
            } else if text.contains("Could not resolve") && ours.status.code() != Some(5) {
                // A name that does not resolve is a connection failure: exit code 5.
                failures.push(format!(
                    "{label}: exit code {:?}, not 5",
                    ours.status.code()
                ));
            }
        }
        None => {
            if !theirs.status.success() {
                failures.push(format!("{label}: ssh -G failed: {their_err}"));
                return;
            }
            if !ours.status.success() {
                failures.push(format!("{label}: explain failed: {our_err}"));
                return;
            }
            let (t, o) = (ssh_fields(&theirs), explain_fields(&ours, host));
            if t != o {
                failures.push(format!("{label}: ours {o:?} != ssh {t:?} (host {bare})"));
            }
        }
    }
}

#[test]
fn cases_match_ssh_g() {
    require_unshare();
    let cases = load_cases();
    assert!(
        cases.len() >= 10,
        "expected the canonicalization cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut queries = 0;
    for case in &cases {
        let names = Names::new(&case.hosts);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config"), &case.config).expect("write config");
        for q in &case.queries {
            queries += 1;
            check_query(case, &names, dir.path(), q, &mut failures);
        }
    }
    eprintln!(
        "{} cases, {queries} queries, in a private mount namespace",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} deviation(s) from ssh -G:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_reaches_an_alias_by_canonicalization() {
    require_unshare();
    let home = Home::new();
    let echo = Echo::start().await;
    let b = bastion(&home, &[("127.0.0.1", echo.addr.port())]).await;
    // Only under its canonical name is the bastion known: port, user, key, known_hosts.
    let port = b.addr().port();
    let mut key = b.host_key().clone();
    key.set_comment("");
    std::fs::write(
        &home.known_hosts,
        format!(
            "[db.test.internal]:{port} {}\n",
            key.to_openssh().expect("openssh key")
        ),
    )
    .expect("write known_hosts");
    home.write_config(&format!(
        "CanonicalizeHostname yes\nCanonicalDomains example.invalid test.internal\n\
         Host db.test.internal\n  Port {port}\n  User {USER}\n  IdentityFile {}\n  \
         UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
        home.key_path.display(),
        home.known_hosts.display()
    ));
    // ssh asks for `db.test.internal.`; the connection for `db.test.internal`.
    let names = Names::new("127.0.0.1 db.test.internal. db.test.internal\n");
    let args: Vec<String> = [
        "-F",
        home.config.to_str().expect("utf-8"),
        "--via",
        "db",
        &echo.addr.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let mut cmd = tokio::process::Command::from(names.command(BIN, &args));
    cmd.env_clear()
        .env("HOME", home.dir.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn pgtunnel");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut report = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if line.starts_with("ready: ") {
                return Some(line);
            }
            report.push(line);
        }
        None
    })
    .await
    .expect("ready within 30 s");
    let Some(ready) = ready else {
        let out = child.wait_with_output().await.expect("wait");
        panic!(
            "pgtunnel exited before it was ready: {report:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let report = report.join("\n");
    assert!(report.contains("db.test.internal"), "{report}");
    let addr: std::net::SocketAddr = ready
        .trim_start_matches("ready: ")
        .split_whitespace()
        .next()
        .expect("address")
        .parse()
        .expect("socket address");
    echo_round_trip(addr, 256 * 1024, 7).await;
    assert!(echo.connections() >= 1);
    child.start_kill().expect("stop pgtunnel");
    let _ = child.wait().await;
}
