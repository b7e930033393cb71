//! The path report: every segment from the user's client to the target, whether it is
//! encrypted, and what to do about the ones that are not.
//!
//! This is the point of the PostgreSQL manual's page on SSH tunnels: with
//! `ssh -L 63333:db.foo.com:5432 joe@shell.foo.com`, the hop from shell.foo.com to db.foo.com
//! is plain TCP. Pure: it takes the listen address, the hops and the target; once the hops
//! are up, what each one negotiated ([`Negotiated`]) is fed in as data
//! ([`PathReport::with_negotiated`]), so each SSH segment also says how strong it is.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::pg::client::{SslMode, Tls, conninfo};
use crate::plan::chain::Chain;
use crate::spec::HostPort;

/// How one segment is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Client to our listener over loopback: never leaves this machine.
    Loopback,
    /// Our listener is reachable from the network, in plain TCP.
    ExposedListener,
    /// Carried by SSH (encrypted).
    Ssh,
    /// From the last hop to a service on its own loopback: stays on that machine.
    SameHostLoopback,
    /// From the last hop to its own external name: stays on that machine.
    SameHostExternal,
    /// Plain TCP between two machines: NOT encrypted.
    Plain,
}

impl Protection {
    /// Does traffic leave a machine unencrypted here?
    pub fn leaves_machine_unencrypted(self) -> bool {
        matches!(self, Protection::ExposedListener | Protection::Plain)
    }

    fn describe(self, last_hop: &str) -> String {
        match self {
            Protection::Loopback => "local, loopback only".into(),
            Protection::ExposedListener => "plain TCP, NOT encrypted, open to the network".into(),
            Protection::Ssh => "SSH (encrypted)".into(),
            Protection::SameHostLoopback => format!("stays on {last_hop} (loopback)"),
            Protection::SameHostExternal => {
                format!("stays on {last_hop} (its own address, not loopback)")
            }
            Protection::Plain => "plain TCP, NOT encrypted".into(),
        }
    }
}

/// The key exchanges OpenSSH counts as post-quantum (`KEX_IS_PQ` in openssh-portable's
/// `kex-names.c`): hybrids of a post-quantum KEM with a classical key agreement.
pub const POST_QUANTUM_KEX: &[&str] = &[
    "mlkem768x25519-sha256",
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
    "mlkem768nistp256-sha256",
];

/// Whether a key exchange algorithm (its SSH name) is post-quantum, as OpenSSH decides it.
pub fn is_post_quantum_kex(name: &str) -> bool {
    POST_QUANTUM_KEX.contains(&name)
}

/// What one SSH hop's handshake negotiated (SSH names, as on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Key exchange, e.g. `sntrup761x25519-sha512@openssh.com`.
    pub kex: String,
    /// Cipher, e.g. `chacha20-poly1305@openssh.com`.
    pub cipher: String,
    /// Host key algorithm, e.g. `ssh-ed25519` or `rsa-sha2-512`.
    pub host_key: String,
    /// Whether the server proved itself with a host certificate of that type.
    pub host_certificate: bool,
}

impl Negotiated {
    /// Whether the key exchange is post-quantum (see [`is_post_quantum_kex`]).
    pub fn post_quantum(&self) -> bool {
        is_post_quantum_kex(&self.kex)
    }

    /// `sntrup761x25519, chacha20-poly1305; ed25519 host key`: the names without their
    /// hash suffixes and vendor domains, as people say them.
    pub fn summary(&self) -> String {
        let kex = short_name(&self.kex);
        let kex = ["-sha256", "-sha384", "-sha512", "-sha1"]
            .iter()
            .find_map(|h| kex.strip_suffix(h))
            .unwrap_or(kex);
        let host_key = short_name(&self.host_key);
        let host_key = host_key.strip_prefix("ssh-").unwrap_or(host_key);
        let what = if self.host_certificate {
            "host certificate"
        } else {
            "host key"
        };
        format!("{kex}, {}; {host_key} {what}", short_name(&self.cipher))
    }
}

/// The name before `@domain`.
fn short_name(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

/// One segment of the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Where the segment starts.
    pub from: String,
    /// Where it goes (`host:port`).
    pub to: String,
    /// How it is protected.
    pub protection: Protection,
    /// The human description.
    pub detail: String,
    /// For an SSH segment of a tunnel that is up: what its hop negotiated.
    pub negotiated: Option<Negotiated>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathReport {
    /// Segments in order.
    pub segments: Vec<Segment>,
    /// Advice and caveats, each a paragraph.
    pub notes: Vec<String>,
}

impl PathReport {
    /// The report for a tunnel that (also, with `tcp_too`) listens on the Unix socket at
    /// `path` (`--socket`): the first segment is that socket, which only its owner reaches.
    pub fn with_local_socket(mut self, path: &std::path::Path, tcp_too: bool) -> Self {
        let socket = Segment {
            detail: "local Unix socket, only you (its directory is 0700)".into(),
            ..segment("you", path.display().to_string(), Protection::Loopback)
        };
        if tcp_too {
            self.segments.insert(0, socket);
        } else if let Some(first) = self.segments.first_mut() {
            *first = socket;
        }
        self
    }

    /// Segments that leave a machine unencrypted, formatted as in the report.
    pub fn unencrypted(&self) -> Vec<String> {
        self.segments
            .iter()
            .filter(|s| s.protection.leaves_machine_unencrypted())
            .map(|s| format!("{} -> {} is {}", s.from, s.to, s.detail))
            .collect()
    }

    /// True when nothing leaves a machine in plain TCP.
    pub fn fully_encrypted(&self) -> bool {
        self.unencrypted().is_empty()
    }

    /// The report of a tunnel that is up: `hops[i]` is what hop i+1 negotiated (`None`: not
    /// known). Each SSH segment names its key exchange, cipher and host key type; one whose
    /// key exchange is not post-quantum is marked, and a note says what that means (as
    /// OpenSSH 10.1's warning does).
    pub fn with_negotiated(mut self, hops: &[Option<Negotiated>]) -> PathReport {
        let ssh = self
            .segments
            .iter_mut()
            .filter(|s| s.protection == Protection::Ssh);
        let mut weak = Vec::new();
        for (segment, negotiated) in ssh.zip(hops) {
            let Some(n) = negotiated else { continue };
            segment.detail = if n.post_quantum() {
                format!("SSH (encrypted: {})", n.summary())
            } else {
                weak.push(format!("{} -> {} ({})", segment.from, segment.to, n.kex));
                format!(
                    "SSH (encrypted: {}), key exchange NOT post-quantum",
                    n.summary()
                )
            };
            segment.negotiated = Some(n.clone());
        }
        if !weak.is_empty() {
            self.notes.push(format!(
                "Warning: not using a post-quantum key exchange: {}. Such a segment may be \
                 vulnerable to \"store now, decrypt later\" attacks; the server may need to be \
                 upgraded (see https://openssh.com/pq.html). --require-pq refuses it.",
                weak.join(", ")
            ));
        }
        self
    }
}

impl fmt::Display for PathReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let left: Vec<String> = self
            .segments
            .iter()
            .map(|s| format!("{} -> {}", s.from, s.to))
            .collect();
        let width = left.iter().map(String::len).max().unwrap_or(0);
        for (l, s) in left.iter().zip(&self.segments) {
            writeln!(f, "  {l:<width$}   {}", s.detail)?;
        }
        for note in &self.notes {
            writeln!(f)?;
            writeln!(f, "{note}")?;
        }
        Ok(())
    }
}

/// Is this target host the last hop's own loopback?
pub fn is_loopback_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h == "localhost" || h.ends_with(".localhost") || h == "ip6-localhost" {
        return true;
    }
    h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Builds the report for a tunnel listening on `listen` through `chain`.
pub fn analyze(listen: SocketAddr, chain: &Chain) -> PathReport {
    let listener = listener_segment(listen);
    let mut notes = Vec::new();
    let local = listen.ip().is_loopback();
    if !local {
        notes.push(format!(
            "Warning: the tunnel listens on {}, which is not a loopback address. \
             Anyone who can reach it uses your tunnel, with your SSH credentials, and their \
             traffic to this machine is plain TCP. Listen on 127.0.0.1 unless you mean it.",
            listener.to
        ));
    }
    let mut segments = vec![listener];

    let mut from = if local {
        listen.ip().to_string()
    } else {
        "this machine".to_string()
    };
    for hop in &chain.hops {
        // The name the user knows (an alias), with the address when they differ.
        let to = if hop.spec.host == hop.config.host_name {
            hop.addr()
        } else {
            format!("{} ({})", hop.spec.host, hop.addr())
        };
        segments.push(segment(&from, to, Protection::Ssh));
        from = hop.spec.host.clone();
    }

    let protection = target_protection(chain);
    segments.push(segment(&from, chain.target.to_string(), protection));
    let last_name = chain
        .hops
        .last()
        .map(|h| h.spec.host.clone())
        .unwrap_or_default();
    for s in &mut segments {
        s.detail = s.protection.describe(&last_name);
    }
    notes.extend(target_notes(protection, chain, &last_name, listen));
    PathReport { segments, notes }
}

fn segment(from: &str, to: String, protection: Protection) -> Segment {
    Segment {
        from: from.to_string(),
        to,
        protection,
        detail: String::new(),
        negotiated: None,
    }
}

/// The user's client to our listener (`ADDR:PORT` once bound).
fn listener_segment(listen: SocketAddr) -> Segment {
    let to = if listen.port() == 0 {
        // Not bound yet: the OS picks the port.
        HostPort(&listen.ip().to_string(), 0)
            .to_string()
            .trim_end_matches(":0")
            .to_string()
            + ":PORT"
    } else {
        listen.to_string()
    };
    if listen.ip().is_loopback() {
        segment("you", to, Protection::Loopback)
    } else {
        segment("anyone", to, Protection::ExposedListener)
    }
}

/// The last segment: the last hop to the target.
fn target_protection(chain: &Chain) -> Protection {
    if chain.target.socket.is_some() {
        // A Unix socket on the last hop: the bytes never leave it.
        return Protection::SameHostLoopback;
    }
    let target_host = chain.target.host.to_ascii_lowercase();
    if is_loopback_name(&chain.target.host) {
        Protection::SameHostLoopback
    } else if chain.hops.last().is_some_and(|h| {
        target_host == h.config.host_name.to_ascii_lowercase()
            || target_host == h.spec.host.to_ascii_lowercase()
    }) {
        Protection::SameHostExternal
    } else {
        Protection::Plain
    }
}

/// What to know about the last segment, and how to encrypt it when it is plain TCP.
fn target_notes(
    protection: Protection,
    chain: &Chain,
    last_name: &str,
    listen: SocketAddr,
) -> Vec<String> {
    let target = &chain.target;
    let pg_sees = format!(
        "If the service is PostgreSQL: it sees these connections as coming from {last_name} \
         (the last hop), not from you, and not as SSL unless the client itself asks for TLS: pg_hba.conf rules must \
         allow that address (\"host\" lines, or \"hostssl\" with sslmode=require)."
    );
    if let Some(path) = &target.socket {
        return vec![format!(
            "The target is the Unix socket {path} on {last_name}: the bytes never leave that \
             machine. If it is PostgreSQL's, it sees these connections as local (Unix-socket) \
             ones of {last_name}'s login user: pg_hba.conf \"local\" lines apply."
        )];
    }
    match protection {
        Protection::Plain => {
            // An alias keeps its HostName, Port and User as the new hop; its HostName alone
            // would be reached on port 22 as the local user.
            let hop_name = chain.target_alias.as_deref().unwrap_or(&target.host);
            let hops: Vec<String> = chain.hops.iter().map(|h| h.spec.to_string()).collect();
            let verified = conninfo(
                listen.into(),
                Some(Tls {
                    server_name: &target.host,
                    mode: SslMode::VerifyFull,
                }),
            )
            .keywords;
            // Before the port is chosen (explain), it is a placeholder.
            let verified = match listen.port() {
                0 => verified.replace("port=0", "port=PORT"),
                _ => verified,
            };
            let fix = format!(
                "The last segment, {last_name} -> {target}, is plain TCP: anyone on that network \
                 can read it. To encrypt it, either\n  \
                 - make {th} a hop too and target its loopback, if you can log in there:\n      \
                 pgtunnel --via {via},{th} localhost:{port}\n  \
                 - or have PostgreSQL encrypt it, checking its certificate against its name \
                 (--sslmode verify-full gives this string and sets it for `--` commands; \
                 sslmode=require encrypts without checking):\n      \
                 psql \"{verified}\"",
                th = hop_name,
                via = hops.join(","),
                port = target.port,
            );
            vec![fix, pg_sees]
        }
        Protection::SameHostExternal => {
            let listen = format!(
                "The target is {last_name}'s own external name, so the traffic stays on that \
                 machine, but the server sees the connection arrive on that address, which \
                 PostgreSQL's default listen_addresses = 'localhost' does not open. Target \
                 localhost:{} instead unless the server listens there.",
                target.port
            );
            vec![listen, pg_sees]
        }
        Protection::SameHostLoopback => vec![pg_sees],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LocalEnv, SshConfig};
    use crate::plan::chain::resolve_chain;
    use crate::spec::{parse_hops, parse_target};

    fn chain(via: &str, target: &str) -> Chain {
        let env = LocalEnv::fixture();
        let cfg = SshConfig::empty();
        resolve_chain(
            Some(&parse_hops(via).unwrap()),
            &parse_target(target).unwrap(),
            |q| cfg.resolve(q, &env),
        )
        .unwrap()
    }

    /// The chain of `pgtunnel TARGET` (no `--via`) under the ssh_config `text`.
    fn alias_chain(text: &str, target: &str) -> Chain {
        let env = LocalEnv::fixture();
        let cfg = SshConfig::parse_str(text, std::path::Path::new("/cfg"), &env.home).unwrap();
        resolve_chain(None, &parse_target(target).unwrap(), |q| {
            cfg.resolve(q, &env)
        })
        .unwrap()
    }

    /// Issue 14: the suggestion names the alias, so that its HostName, Port and User apply
    /// (`10.0.0.5` as a hop would be port 22 and the local user).
    #[test]
    fn the_suggested_hop_is_the_alias_not_its_host_name() {
        let chain = alias_chain(
            "Host db-prod\n  HostName 10.0.0.5\n  Port 2222\n  User dba\n  \
             ProxyJump bastion,inner\n",
            "db-prod",
        );
        let text = analyze(listen("127.0.0.1:5000"), &chain).to_string();
        assert!(
            text.contains("make db-prod a hop too")
                && text.contains("pgtunnel --via bastion,inner,db-prod localhost:5432\n"),
            "{text}"
        );
        assert!(!text.contains("inner,10.0.0.5"), "{text}");
        // The segment still shows where the bytes go.
        assert!(text.contains("inner -> 10.0.0.5:5432"), "{text}");
    }

    fn listen(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn manual_hop_example_has_a_plaintext_last_segment() {
        let r = analyze(
            listen("127.0.0.1:49731"),
            &chain("joe@shell.foo.com", "db.foo.com:5432"),
        );
        let text = r.to_string();
        assert!(text.contains("you -> 127.0.0.1:49731"), "{text}");
        assert!(text.contains("local, loopback only"), "{text}");
        assert!(text.contains("127.0.0.1 -> shell.foo.com:22"), "{text}");
        assert!(text.contains("SSH (encrypted)"), "{text}");
        assert!(
            text.contains("shell.foo.com -> db.foo.com:5432") && text.contains("NOT encrypted"),
            "{text}"
        );
        assert!(
            text.contains("pgtunnel --via joe@shell.foo.com,db.foo.com localhost:5432"),
            "{text}"
        );
        assert!(text.contains("sslmode=require"), "{text}");
        assert!(text.contains("verify-full"), "{text}");
        assert!(text.contains("pg_hba"), "{text}");
        assert!(!r.fully_encrypted());
        assert_eq!(
            r.unencrypted(),
            ["shell.foo.com -> db.foo.com:5432 is plain TCP, NOT encrypted"]
        );
        assert_eq!(r.segments[2].protection, Protection::Plain);
    }

    #[test]
    fn loopback_target_on_last_hop_is_fully_encrypted() {
        for target in ["localhost", "127.0.0.1:5432", "[::1]:5432", "LOCALHOST."] {
            let r = analyze(
                listen("127.0.0.1:5000"),
                &chain("shell.foo.com,db.foo.com", target),
            );
            assert!(r.fully_encrypted(), "{target}: {r}");
            assert_eq!(r.segments.len(), 4);
            assert_eq!(r.segments[3].protection, Protection::SameHostLoopback);
            assert!(r.segments[3].detail.contains("stays on db.foo.com"));
            assert_eq!(r.segments[2].from, "shell.foo.com");
            assert!(r.to_string().contains("not as SSL"));
        }
    }

    #[test]
    fn last_hops_own_name_warns_about_listen_addresses() {
        let r = analyze(listen("127.0.0.1:5000"), &chain("joe@foo.com", "foo.com"));
        assert!(r.fully_encrypted());
        assert_eq!(r.segments[2].protection, Protection::SameHostExternal);
        assert!(
            r.to_string().contains("listen_addresses = 'localhost'"),
            "{r}"
        );
    }

    #[test]
    fn exposed_listener_is_a_warning_and_unencrypted() {
        let r = analyze(listen("0.0.0.0:5000"), &chain("gw", "localhost"));
        assert!(!r.fully_encrypted());
        assert_eq!(r.segments[0].from, "anyone");
        assert_eq!(r.segments[1].from, "this machine");
        assert!(
            r.to_string()
                .contains("Warning: the tunnel listens on 0.0.0.0:5000")
        );
        let r = analyze(listen("[::1]:5000"), &chain("gw", "localhost"));
        assert!(r.fully_encrypted());
    }

    #[test]
    fn unbound_port_is_shown_as_placeholder() {
        let r = analyze(listen("127.0.0.1:0"), &chain("gw", "localhost"));
        assert_eq!(r.segments[0].to, "127.0.0.1:PORT");
    }

    fn negotiated(kex: &str, cipher: &str, host_key: &str) -> Option<Negotiated> {
        Some(Negotiated {
            kex: kex.into(),
            cipher: cipher.into(),
            host_key: host_key.into(),
            host_certificate: false,
        })
    }

    #[test]
    fn each_ssh_segment_names_what_its_hop_negotiated() {
        let r = analyze(
            listen("127.0.0.1:5000"),
            &chain("shell.foo.com,db.foo.com", "localhost"),
        )
        .with_negotiated(&[
            negotiated(
                "sntrup761x25519-sha512@openssh.com",
                "chacha20-poly1305@openssh.com",
                "ssh-ed25519",
            ),
            negotiated(
                "mlkem768x25519-sha256",
                "aes256-gcm@openssh.com",
                "rsa-sha2-512",
            ),
        ]);
        assert_eq!(
            r.segments[1].detail,
            "SSH (encrypted: sntrup761x25519, chacha20-poly1305; ed25519 host key)"
        );
        assert_eq!(
            r.segments[2].detail,
            "SSH (encrypted: mlkem768x25519, aes256-gcm; rsa-sha2-512 host key)"
        );
        assert!(r.segments[1].negotiated.as_ref().unwrap().post_quantum());
        let text = r.to_string();
        assert!(!text.contains("post-quantum"), "{text}");
        // The other segments are as before.
        assert_eq!(r.segments[0].detail, "local, loopback only");
        assert!(r.segments[3].detail.contains("stays on db.foo.com"));
    }

    #[test]
    fn a_classical_key_exchange_is_marked_and_explained() {
        let r = analyze(
            listen("127.0.0.1:5000"),
            &chain("shell.foo.com,db.foo.com", "localhost"),
        )
        .with_negotiated(&[
            negotiated(
                "curve25519-sha256",
                "chacha20-poly1305@openssh.com",
                "ecdsa-sha2-nistp256",
            ),
            None,
        ]);
        assert_eq!(
            r.segments[1].detail,
            "SSH (encrypted: curve25519, chacha20-poly1305; ecdsa-sha2-nistp256 host key), \
             key exchange NOT post-quantum"
        );
        // Not known: left as planned.
        assert_eq!(r.segments[2].detail, "SSH (encrypted)");
        let text = r.to_string();
        assert!(
            text.contains(
                "not using a post-quantum key exchange: 127.0.0.1 -> shell.foo.com:22 \
                 (curve25519-sha256)"
            ) && text.contains("store now, decrypt later")
                && text.contains("--require-pq"),
            "{text}"
        );
        // Still fully encrypted: post-quantum is a separate question.
        assert!(r.fully_encrypted());
    }

    #[test]
    fn post_quantum_is_openssh_s_list() {
        for yes in [
            "mlkem768x25519-sha256",
            "sntrup761x25519-sha512",
            "sntrup761x25519-sha512@openssh.com",
            "mlkem768nistp256-sha256",
        ] {
            assert!(is_post_quantum_kex(yes), "{yes}");
        }
        for no in [
            "curve25519-sha256",
            "curve25519-sha256@libssh.org",
            "ecdh-sha2-nistp256",
            "diffie-hellman-group16-sha512",
            "sntrup761x25519",
        ] {
            assert!(!is_post_quantum_kex(no), "{no}");
        }
        let mut n = negotiated("diffie-hellman-group14-sha256", "aes128-ctr", "ssh-rsa").unwrap();
        n.host_certificate = true;
        assert_eq!(
            n.summary(),
            "diffie-hellman-group14, aes128-ctr; rsa host certificate"
        );
    }

    #[test]
    fn loopback_names() {
        for yes in [
            "localhost",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "foo.localhost",
        ] {
            assert!(is_loopback_name(yes), "{yes}");
        }
        for no in ["db.foo.com", "10.0.0.1", "localhost.foo.com", "::2"] {
            assert!(!is_loopback_name(no), "{no}");
        }
    }
}
