//! pgtunnel's known_hosts matcher against OpenSSH itself.
//!
//! Every case in `tests/data/known_hosts/*.case` (format in the README there) is checked three
//! ways: pgtunnel's verdict on the key a real `sshd` presents, `ssh-keygen -F` on the same file
//! (which lines apply to a name), and what a real `ssh` decides when it connects to that `sshd`
//! with the file as its `UserKnownHostsFile`. The writer is checked the same way: the line
//! pgtunnel formats must be the line `ssh` appends, and `ssh` must accept what pgtunnel writes.
//!
//! Needs `ssh`, `ssh-keygen` and `/usr/sbin/sshd` (and `/run/sshd` when run as root): a missing
//! tool fails the test with the reason, it is never skipped. The `sshd` listens on 127.0.0.1 on
//! a free port with its own host keys and config in a temporary directory, and is killed when
//! the test ends; `ssh` reaches it through a `ProxyCommand`, so test host names need no DNS.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgtunnel::config::known_hosts::{
    self, HostKeyLookup, KnownHostsFile, Marker, Verdict, append_entry, format_entry,
    order_host_key_algorithms,
};
use russh::keys::{Certificate, PublicKey, PublicKeyOrCertificate};

const SSHD: &str = "/usr/sbin/sshd";
const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/known_hosts");

// ---------------------------------------------------------------------------------------------
// Tools and keys

fn require_tools() {
    for tool in ["ssh", "ssh-keygen"] {
        let found = Command::new(tool).arg("-V").output();
        assert!(
            found.is_ok(),
            "`{tool}` is not installed or not on PATH: install openssh-client (scripts/test does)"
        );
    }
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing: install openssh-server (scripts/test does)"
    );
    assert!(
        Path::new("/run/sshd").is_dir() || !nix::unistd::getuid().is_root(),
        "/run/sshd is missing: sshd needs it when run as root (scripts/test creates it)"
    );
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn keygen(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    run(Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", ""])
        .args(args)
        .arg("-f")
        .arg(&path));
    path
}

/// `ssh-keygen -s ca -h` on `key`: its `-cert.pub`.
fn certify(ca: &Path, key: &Path, args: &[&str]) -> PathBuf {
    run(Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(ca)
        .args(["-I", "known-hosts-test", "-h"])
        .args(args)
        .arg(key.with_extension("pub")));
    PathBuf::from(format!("{}-cert.pub", key.display()))
}

fn read_pub(key: &Path) -> String {
    let text = std::fs::read_to_string(key.with_extension("pub")).expect("read public key");
    // "type base64" without the comment.
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Host keys, certificates and other keys, generated for this run.
struct Keys {
    dir: tempfile::TempDir,
    /// Placeholder name -> "type base64".
    public: BTreeMap<&'static str, String>,
    /// Host key algorithm -> what the sshd presents for it.
    offered: BTreeMap<&'static str, PublicKeyOrCertificate>,
    host_keys: Vec<PathBuf>,
    certificates: Vec<PathBuf>,
}

impl Keys {
    fn generate() -> Keys {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let host_ed25519 = keygen(d, "host_ed25519", &["-t", "ed25519"]);
        let host_rsa = keygen(d, "host_rsa", &["-t", "rsa", "-b", "2048"]);
        let host_ecdsa = keygen(d, "host_ecdsa", &["-t", "ecdsa", "-b", "256"]);
        let ca = keygen(d, "ca", &["-t", "ed25519"]);
        let mut public = BTreeMap::new();
        for (name, path) in [
            ("host_ed25519", &host_ed25519),
            ("host_rsa", &host_rsa),
            ("host_ecdsa", &host_ecdsa),
            ("ca", &ca),
        ] {
            public.insert(name, read_pub(path));
        }
        for (name, args) in [
            ("other_ed25519", &["-t", "ed25519"][..]),
            ("other_rsa", &["-t", "rsa", "-b", "2048"][..]),
            ("other_ecdsa384", &["-t", "ecdsa", "-b", "384"][..]),
            ("other_ca", &["-t", "ed25519"][..]),
        ] {
            public.insert(name, read_pub(&keygen(d, name, args)));
        }
        let cert_ed25519 = certify(
            &ca,
            &host_ed25519,
            &["-n", "cert.example.com,alias.example", "-V", "-5m:+1d"],
        );
        let cert_rsa = certify(
            &ca,
            &host_rsa,
            &["-n", "cert.example.com", "-V", "20200101:20200102"],
        );
        let cert_ecdsa = certify(&ca, &host_ecdsa, &["-V", "-5m:+1d"]);

        let plain = |name: &str| PublicKeyOrCertificate::PublicKey {
            key: PublicKey::from_openssh(&public[name]).expect("parse public key"),
            hash_alg: None,
        };
        let cert = |path: &Path| {
            let text = std::fs::read_to_string(path).expect("read certificate");
            PublicKeyOrCertificate::Certificate(
                Certificate::from_openssh(text.trim()).expect("parse certificate"),
            )
        };
        let mut offered = BTreeMap::new();
        offered.insert("ssh-ed25519", plain("host_ed25519"));
        offered.insert("rsa-sha2-512", plain("host_rsa"));
        offered.insert("rsa-sha2-256", plain("host_rsa"));
        offered.insert("ecdsa-sha2-nistp256", plain("host_ecdsa"));
        offered.insert("ssh-ed25519-cert-v01@openssh.com", cert(&cert_ed25519));
        offered.insert("rsa-sha2-512-cert-v01@openssh.com", cert(&cert_rsa));
        offered.insert(
            "ecdsa-sha2-nistp256-cert-v01@openssh.com",
            cert(&cert_ecdsa),
        );
        Keys {
            dir,
            public,
            offered,
            host_keys: vec![host_ed25519, host_rsa, host_ecdsa],
            certificates: vec![cert_ed25519, cert_rsa, cert_ecdsa],
        }
    }

    fn substitute(&self, text: &str) -> String {
        let mut text = text.replace("{TAB}", "\t").replace("{CR}", "\r");
        for (name, key) in &self.public {
            text = text.replace(&format!("{{{name}}}"), key);
        }
        assert!(
            !text.contains("{host_") && !text.contains("{other_") && !text.contains("{ca}"),
            "unknown placeholder in:\n{text}"
        );
        text
    }
}

// ---------------------------------------------------------------------------------------------
// A real sshd on loopback

struct Sshd {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl Sshd {
    fn start(keys: &Keys) -> Sshd {
        let dir = keys.dir.path().to_path_buf();
        let log = dir.join("sshd.log");
        let mut last_log = String::new();
        // sshd cannot report a port it picked: find a free one, retry if we lose a race.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("find a free port")
                .port();
            let mut config = format!(
                "ListenAddress 127.0.0.1:{port}\nPidFile none\nUsePAM no\nStrictModes no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 AuthorizedKeysFile none\nLoginGraceTime 20\nMaxStartups 100\nLogLevel VERBOSE\n"
            );
            for k in &keys.host_keys {
                config.push_str(&format!("HostKey {}\n", k.display()));
            }
            for c in &keys.certificates {
                config.push_str(&format!("HostCertificate {}\n", c.display()));
            }
            let config_path = dir.join("sshd_config");
            std::fs::write(&config_path, config).expect("write sshd_config");
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-f")
                .arg(&config_path)
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sshd");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    last_log = std::fs::read_to_string(&log).unwrap_or_default();
                    break;
                }
                if let Ok(mut tcp) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut banner = [0u8; 4];
                    if tcp.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                        return Sshd { port, dir, child };
                    }
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "sshd did not come up: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("sshd would not start: {last_log}");
    }

    /// `ssh` to `name` through this sshd, with verbose output; returns stderr.
    fn ssh(&self, user_file: &Path, global_file: &Path, args: &[&str], name: &str) -> String {
        // The ProxyCommand's stderr is silenced and its reader killed when ssh closes its
        // stdin, so nothing keeps ssh's stderr open after ssh exits.
        let proxy = format!(
            "ProxyCommand=bash -c 'exec 3<>/dev/tcp/127.0.0.1/{}; cat <&3 & cat >&3; kill $!' \
             2>/dev/null",
            self.port
        );
        let mut cmd = Command::new("timeout");
        cmd.args(["30", "ssh", "-F", "/dev/null", "-v"])
            .args(args)
            .args(["-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no"])
            .args(["-o", "UpdateHostKeys=no", "-o", "CheckHostIP=no"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", user_file.display()))
            .arg("-o")
            .arg(format!("GlobalKnownHostsFile={}", global_file.display()))
            .args(["-o", &proxy, name, "true"])
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        let out = cmd.output().expect("run ssh");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Outcomes, in a form both sides can produce

/// Where a line is: the user file or the global one, and its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct At {
    global: bool,
    line: usize,
}

impl At {
    fn parse(s: &str) -> At {
        let (global, n) = match s.strip_prefix("global:") {
            Some(n) => (true, n),
            None => (false, s),
        };
        At {
            global,
            line: n
                .parse()
                .unwrap_or_else(|_| panic!("bad line reference {s:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Known { ca: bool, at: At },
    Changed(Vec<At>),
    Revoked(Option<At>),
    Unknown,
}

impl Outcome {
    fn parse(s: &str) -> Outcome {
        let mut words = s.split_whitespace();
        let kind = words.next().unwrap_or("");
        let arg = words.next();
        let at = || At::parse(arg.unwrap_or_else(|| panic!("{s:?} needs a line")));
        match kind {
            "known" => Outcome::Known {
                ca: false,
                at: at(),
            },
            "known-ca" => Outcome::Known { ca: true, at: at() },
            "changed" => Outcome::Changed(
                arg.unwrap_or_else(|| panic!("{s:?} needs lines"))
                    .split(',')
                    .map(At::parse)
                    .collect(),
            ),
            "revoked" => Outcome::Revoked(Some(at())),
            "unknown" => Outcome::Unknown,
            _ => panic!("bad expected outcome {s:?}"),
        }
    }

    fn from_verdict(v: &Verdict, global_path: &Path) -> Outcome {
        let at = |path: &Path, line: usize| At {
            global: path == global_path,
            line,
        };
        match v {
            Verdict::Known {
                path,
                line,
                cert_authority,
            } => Outcome::Known {
                ca: *cert_authority,
                at: at(path, *line),
            },
            Verdict::Revoked { path, line } => Outcome::Revoked(Some(at(path, *line))),
            Verdict::Changed { known } => {
                Outcome::Changed(known.iter().map(|k| at(&k.path, k.line)).collect())
            }
            Verdict::Unknown => Outcome::Unknown,
        }
    }

    /// What `ssh -v` decided, from its stderr.
    fn from_ssh(stderr: &str, user_path: &Path, global_path: &Path) -> Outcome {
        let at = |text: &str| -> At {
            let text = text.trim().trim_end_matches('.');
            let (path, line) = text
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("no file:line in {text:?}\n{stderr}"));
            let path = Path::new(path);
            assert!(
                path == user_path || path == global_path,
                "unexpected file {path:?}\n{stderr}"
            );
            At {
                global: path == global_path,
                line: line.parse().expect("line number"),
            }
        };
        let failed = stderr.contains("Host key verification failed.");
        if !failed && (stderr.contains("Permission denied") || stderr.contains("Authenticated to"))
        {
            // The last "Found ... in file:line" is the one that settled it (after a certificate
            // is retried as a plain key, or after the retry without the port).
            let found = stderr
                .lines()
                .rev()
                .find_map(|l| {
                    l.split_once("debug1: Found CA key in ")
                        .map(|(_, rest)| (true, rest))
                        .or_else(|| {
                            l.split_once("debug1: Found key in ")
                                .map(|(_, rest)| (false, rest))
                        })
                })
                .unwrap_or_else(|| panic!("ssh accepted the key but did not say where:\n{stderr}"));
            return Outcome::Known {
                ca: found.0,
                at: at(found.1),
            };
        }
        if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
            let offending = stderr
                .lines()
                .find_map(|l| {
                    l.find(" key in ")
                        .filter(|_| l.starts_with("Offending "))
                        .map(|i| &l[i + " key in ".len()..])
                })
                .unwrap_or_else(|| panic!("no offending key line:\n{stderr}"));
            return Outcome::Changed(vec![at(offending)]);
        }
        if stderr.contains("host key is known for") && stderr.contains("requested strict checking")
        {
            return Outcome::Unknown;
        }
        if stderr.contains("REVOKED HOST KEY DETECTED") {
            return Outcome::Revoked(None);
        }
        panic!("cannot tell what ssh decided:\n{stderr}");
    }

    /// Whether what ssh reports (`self`) agrees with an expected outcome: ssh names no line
    /// for a revocation, and names only the last of the keys on file for a change.
    fn ssh_agrees(&self, expected: &Outcome) -> bool {
        match (self, expected) {
            (Outcome::Revoked(None), Outcome::Revoked(_)) => true,
            (Outcome::Changed(ssh), Outcome::Changed(all)) => {
                ssh.as_slice() == &all[all.len() - 1..]
            }
            (a, b) => a == b,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Case files

struct Case {
    name: String,
    user: String,
    global: Option<String>,
    hash: bool,
    queries: Vec<String>,
}

fn load_cases() -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(CASES)
        .expect("read tests/data/known_hosts")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("read case");
            let mut case = Case {
                name: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                user: String::new(),
                global: None,
                hash: false,
                queries: Vec::new(),
            };
            let mut section = "";
            for line in text.split_inclusive('\n') {
                if let Some(name) = line.strip_prefix("--- ") {
                    section = match name.trim() {
                        "known_hosts" => "user",
                        "global_known_hosts" => {
                            case.global = Some(String::new());
                            "global"
                        }
                        "options" => "options",
                        "queries" => "queries",
                        other => panic!("{}: unknown section {other:?}", case.name),
                    };
                    continue;
                }
                match section {
                    "user" => case.user.push_str(line),
                    "global" => {
                        if let Some(g) = case.global.as_mut() {
                            g.push_str(line);
                        }
                    }
                    "options" => match line.trim() {
                        "" => {}
                        "hash" => case.hash = true,
                        other => panic!("{}: unknown option {other:?}", case.name),
                    },
                    "queries" => {
                        let q = line.trim();
                        if !q.is_empty() && !q.starts_with('#') {
                            case.queries.push(q.to_string());
                        }
                    }
                    _ => {}
                }
            }
            case
        })
        .collect()
}

/// `ssh-keygen -F name -f file`: (line, tag) of each line it lists.
fn keygen_find(file: &Path, name: &str) -> Vec<(usize, String)> {
    let out = Command::new("ssh-keygen")
        .args(["-F", name, "-f"])
        .arg(file)
        .output()
        .expect("run ssh-keygen -F");
    let prefix = format!("# Host {name} found: line ");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let (n, tag) = rest.split_once(' ').unwrap_or((rest, ""));
            (n.parse().expect("line number"), tag.trim().to_string())
        })
        .collect()
}

/// The same list from pgtunnel's matcher.
fn our_find(file: &KnownHostsFile, name: &str) -> Vec<(usize, String)> {
    file.matching(name)
        .map(|e| {
            let tag = match e.marker() {
                None => "",
                Some(Marker::CertAuthority) => "CA",
                Some(Marker::Revoked) => "REVOKED",
            };
            (e.line(), tag.to_string())
        })
        .collect()
}

struct Checker<'a> {
    keys: &'a Keys,
    sshd: &'a Sshd,
    failures: Vec<String>,
    compared: usize,
}

impl Checker<'_> {
    fn fail(&mut self, case: &str, query: &str, what: String) {
        self.failures.push(format!("{case}: {query}: {what}"));
    }

    fn find(&mut self, case: &str, query: &str, files: &[(PathBuf, KnownHostsFile)], name: &str) {
        for (path, parsed) in files {
            let theirs = keygen_find(path, name);
            let ours = our_find(parsed, name);
            self.compared += 1;
            if theirs != ours {
                self.fail(
                    case,
                    query,
                    format!(
                        "for {name:?} in {}: ssh-keygen -F lists {theirs:?}, we match {ours:?}",
                        path.display()
                    ),
                );
            }
        }
    }

    fn run_case(&mut self, case: &Case) {
        let dir = tempfile::tempdir().expect("tempdir");
        let user_path = dir.path().join("known_hosts");
        let global_path = dir.path().join("ssh_known_hosts");
        std::fs::write(&user_path, self.keys.substitute(&case.user)).expect("write");
        std::fs::write(
            &global_path,
            self.keys.substitute(case.global.as_deref().unwrap_or("")),
        )
        .expect("write");
        if case.hash {
            for p in [&user_path, &global_path] {
                let _ = run(Command::new("ssh-keygen").arg("-H").arg("-f").arg(p));
            }
        }
        let files = vec![
            (
                user_path.clone(),
                KnownHostsFile::load(&user_path).expect("load"),
            ),
            (
                global_path.clone(),
                KnownHostsFile::load(&global_path).expect("load"),
            ),
        ];
        let parsed: Vec<KnownHostsFile> = files.iter().map(|(_, f)| f.clone()).collect();

        for query in &case.queries {
            let (verb, rest) = query.split_once(' ').unwrap_or((query, ""));
            match verb {
                "find" => self.find(&case.name, query, &files, rest.trim()),
                "warnings" => {
                    let ours: Vec<usize> = parsed[0].warnings().iter().map(|w| w.line).collect();
                    let expected: Vec<usize> = match rest.trim() {
                        "-" => Vec::new(),
                        list => list
                            .split(',')
                            .map(|n| n.trim().parse().expect("line number"))
                            .collect(),
                    };
                    if ours != expected {
                        self.fail(
                            &case.name,
                            query,
                            format!("we warn about lines {ours:?}: {:?}", parsed[0].warnings()),
                        );
                    }
                }
                "connect" => self.connect(&case.name, query, rest, &files, &parsed),
                other => panic!("{}: unknown query {other:?}", case.name),
            }
        }
    }

    fn connect(
        &mut self,
        case: &str,
        query: &str,
        rest: &str,
        files: &[(PathBuf, KnownHostsFile)],
        parsed: &[KnownHostsFile],
    ) {
        let (spec, expected) = rest
            .split_once("=>")
            .unwrap_or_else(|| panic!("{case}: {query}: no => expected outcome"));
        let (expected_ours, expected_ssh) = match expected.split_once('|') {
            Some((ours, ssh)) => {
                let ssh = ssh
                    .trim()
                    .strip_prefix("ssh:")
                    .unwrap_or_else(|| panic!("{case}: {query}: `| ssh: ...` expected"));
                (Outcome::parse(ours), Outcome::parse(ssh))
            }
            None => (Outcome::parse(expected), Outcome::parse(expected)),
        };
        let mut words = spec.split_whitespace();
        let name = words.next().expect("host name");
        let (mut port, mut alias, mut alg) = (22u16, None, None);
        for w in words {
            match w.split_once('=') {
                Some(("port", p)) => port = p.parse().expect("port"),
                Some(("alias", a)) => alias = Some(a),
                Some(("alg", a)) => alg = Some(a),
                _ => panic!("{case}: {query}: bad word {w:?}"),
            }
        }
        let alg = alg.unwrap_or_else(|| panic!("{case}: {query}: alg= is required"));
        let offered = self
            .keys
            .offered
            .get(alg)
            .unwrap_or_else(|| panic!("{case}: {query}: the sshd has no {alg}"));

        // pgtunnel.
        let lookup = HostKeyLookup::new(name, port, alias);
        let ours = Outcome::from_verdict(&lookup.check(parsed, offered), &files[1].0);
        self.compared += 1;
        if ours != expected_ours {
            self.fail(case, query, format!("pgtunnel says {ours:?}"));
        }

        // ssh-keygen -F on the name looked up.
        self.find(case, query, files, lookup.name());

        // ssh.
        let mut args = vec!["-p".to_string(), port.to_string()];
        args.extend(["-o".into(), format!("HostKeyAlgorithms={alg}")]);
        args.extend(["-o".into(), "StrictHostKeyChecking=yes".into()]);
        if let Some(a) = alias {
            args.extend(["-o".into(), format!("HostKeyAlias={a}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = self.sshd.ssh(&files[0].0, &files[1].0, &args, name);
        let theirs = Outcome::from_ssh(&stderr, &files[0].0, &files[1].0);
        self.compared += 1;
        if !theirs.ssh_agrees(&expected_ssh) {
            self.fail(
                case,
                query,
                format!("ssh says {theirs:?}, expected {expected_ssh:?}\n{stderr}"),
            );
        }
    }
}

#[test]
fn known_hosts_cases_match_openssh() {
    require_tools();
    let keys = Keys::generate();
    let sshd = Sshd::start(&keys);
    let cases = load_cases();
    assert!(cases.len() >= 20, "only {} cases", cases.len());
    let mut checker = Checker {
        keys: &keys,
        sshd: &sshd,
        failures: Vec::new(),
        compared: 0,
    };
    for case in &cases {
        checker.run_case(case);
    }
    eprintln!(
        "{} known_hosts cases, {} comparisons with OpenSSH",
        cases.len(),
        checker.compared
    );
    assert!(
        checker.failures.is_empty(),
        "{} disagreement(s):\n{}",
        checker.failures.len(),
        checker.failures.join("\n")
    );
}

/// What pgtunnel writes is what ssh writes, and ssh accepts it.
#[test]
fn written_entries_match_openssh() {
    require_tools();
    let keys = Keys::generate();
    let sshd = Sshd::start(&keys);
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").expect("write");
    let ed25519 = PublicKey::from_openssh(&keys.public["host_ed25519"]).expect("key");
    let accept_new = |file: &Path, extra: &[&str], port: &str, name: &str| {
        let mut args = vec!["-p", port, "-o", "HostKeyAlgorithms=ssh-ed25519"];
        args.extend(["-o", "StrictHostKeyChecking=accept-new"]);
        args.extend(extra);
        let stderr = sshd.ssh(file, &empty, &args, name);
        assert!(
            stderr.contains("Permanently added"),
            "ssh did not add the key:\n{stderr}"
        );
    };
    let strict = |file: &Path, port: &str, name: &str| {
        let args = [
            "-p",
            port,
            "-o",
            "HostKeyAlgorithms=ssh-ed25519",
            "-o",
            "StrictHostKeyChecking=yes",
        ];
        let stderr = sshd.ssh(file, &empty, &args, name);
        Outcome::from_ssh(&stderr, file, &empty)
    };

    // Unhashed: byte for byte what ssh appends (it lowercases the name).
    let by_ssh = dir.path().join("by_ssh");
    accept_new(
        &by_ssh,
        &["-o", "HashKnownHosts=no"],
        "2222",
        "Foo.Example.COM",
    );
    let ours = format_entry("[Foo.Example.COM]:2222", &ed25519, false).expect("format");
    assert_eq!(
        std::fs::read_to_string(&by_ssh).expect("read"),
        format!("{ours}\n")
    );

    // Hashed: ssh's line matches for us, ours matches for ssh-keygen -F and for ssh.
    let hashed_by_ssh = dir.path().join("hashed_by_ssh");
    accept_new(
        &hashed_by_ssh,
        &["-o", "HashKnownHosts=yes"],
        "22",
        "Hashed.Example.com",
    );
    let file = KnownHostsFile::load(&hashed_by_ssh).expect("load");
    assert!(file.entries()[0].is_hashed());
    let offered = PublicKeyOrCertificate::PublicKey {
        key: ed25519.clone(),
        hash_alg: None,
    };
    assert_eq!(
        known_hosts::check(&[file], "hashed.example.com", &offered),
        Verdict::Known {
            path: hashed_by_ssh.clone(),
            line: 1,
            cert_authority: false
        }
    );
    let hashed_by_us = dir.path().join("sub/dir/hashed_by_us");
    std::fs::create_dir_all(dir.path().join("sub")).expect("mkdir");
    let line = format_entry("[Hashed.Example.com]:2200", &ed25519, true).expect("format");
    append_entry(&hashed_by_us, &line).expect("append");
    assert_eq!(
        keygen_find(&hashed_by_us, "[hashed.example.com]:2200"),
        vec![(1, String::new())]
    );
    assert_eq!(
        strict(&hashed_by_us, "2200", "hashed.example.com"),
        Outcome::Known {
            ca: false,
            at: At {
                global: false,
                line: 1
            }
        }
    );

    // Appending to a file without a final newline: the entry gets its own line.
    let no_newline = dir.path().join("no_newline");
    std::fs::write(&no_newline, "# written by hand, no newline").expect("write");
    let line = format_entry("foo.example.com", &ed25519, false).expect("format");
    append_entry(&no_newline, &line).expect("append");
    assert_eq!(
        strict(&no_newline, "22", "foo.example.com"),
        Outcome::Known {
            ca: false,
            at: At {
                global: false,
                line: 2
            }
        }
    );
}

/// `order_host_key_algorithms` puts first what ssh's `order_hostkeyalgs()` puts first.
#[test]
fn host_key_algorithm_order_matches_openssh() {
    require_tools();
    let keys = Keys::generate();
    let sshd = Sshd::start(&keys);
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").expect("write");
    let russh_default = russh::Preferred::default().key.to_vec();
    for (known, expect_alg) in [
        ("host_rsa", "rsa-sha2-512"),
        ("host_ecdsa", "ecdsa-sha2-nistp256"),
        ("host_ed25519", "ssh-ed25519"),
    ] {
        let path = dir.path().join(known);
        std::fs::write(&path, format!("foo.example.com {}\n", keys.public[known])).expect("write");
        // ssh with its default HostKeyAlgorithms, which it reorders for the host.
        let stderr = sshd.ssh(
            &path,
            &empty,
            &["-v", "-v", "-v", "-o", "StrictHostKeyChecking=yes"],
            "foo.example.com",
        );
        let negotiated = stderr
            .lines()
            .find_map(|l| {
                l.split_once("kex: host key algorithm: ")
                    .map(|(_, a)| a.trim())
            })
            .unwrap_or_else(|| panic!("no negotiated algorithm:\n{stderr}"));
        // ssh brings certificate algorithms of a known key type forward too, and this sshd has
        // a certificate for each of its keys.
        assert_eq!(
            negotiated.replace("-cert-v01@openssh.com", ""),
            expect_alg,
            "{stderr}"
        );
        // The plain algorithms ssh preferred (it logs them only when it reordered).
        let preferred: Vec<&str> = stderr
            .lines()
            .find_map(|l| l.split_once("prefer hostkeyalgs: ").map(|(_, a)| a.trim()))
            .map(|list| list.split(',').filter(|a| !a.contains("-cert-")).collect())
            .unwrap_or_default();
        let file = KnownHostsFile::load(&path).expect("load");
        let ours = order_host_key_algorithms(&[file], "foo.example.com", &russh_default);
        let ours: Vec<String> = ours.iter().map(|a| a.as_str().to_string()).collect();
        if preferred.is_empty() {
            // Best preference already known: the list is used verbatim.
            assert!(
                stderr.contains("using HostkeyAlgorithms verbatim"),
                "{stderr}"
            );
            let default: Vec<String> = russh_default
                .iter()
                .map(|a| a.as_str().to_string())
                .collect();
            assert_eq!(ours, default);
        } else {
            // ssh's default list has no ssh-rsa (russh's has); otherwise ours starts the same.
            let ours_first: Vec<&str> = ours
                .iter()
                .map(String::as_str)
                .filter(|a| *a != "ssh-rsa")
                .take(preferred.len())
                .collect();
            assert_eq!(ours_first, preferred, "{stderr}");
            assert_eq!(ours[0], preferred[0]);
        }
    }
}
