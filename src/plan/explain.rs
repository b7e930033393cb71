//! `pgtunnel explain`: like `ssh -G`, but for the whole chain. For every hop, the values the
//! connection will use and where each came from (file and line, the command line, or
//! OpenSSH's default); a hop's `LocalForward` lines one row each, with where each listens.
//! Pure: it formats a resolved [`Chain`].

use std::fmt::Write;

use crate::config::forward::{BindPlan, Listen, bind_plan};
use crate::config::{Allowance, Canonicalization, HostConfig, Keyword, Status};
use crate::plan::chain::{Chain, Hop, HopSource};

/// Renders the explanation of `chain`.
pub fn explain(chain: &Chain) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "chain: {chain}");
    if let Some(alias) = &chain.target_alias {
        let _ = writeln!(
            out,
            "target: {} (the HostName of alias {alias}; resolved by the last hop)",
            chain.target
        );
    } else {
        let _ = writeln!(out, "target: {} (resolved by the last hop)", chain.target);
    }
    for hop in &chain.hops {
        let _ = writeln!(out);
        hop_section(&mut out, hop, hop.index == chain.hops.len());
    }
    out
}

/// One hop's rows; `last`: the hop the chain ends at (the others are jump hosts).
fn hop_section(out: &mut String, hop: &Hop, last: bool) {
    let how = match &hop.source {
        HopSource::CommandLine => "from --via".to_string(),
        HopSource::Destination => "the destination, from the command line".to_string(),
        HopSource::ProxyJumpOf(h) => format!("from the ProxyJump of {h}"),
    };
    let _ = writeln!(out, "hop {}: {} ({how})", hop.index, hop.spec);
    for &keyword in Keyword::ALL {
        if keyword == Keyword::LocalForward {
            forward_rows(out, &hop.config, last);
            continue;
        }
        if let Some((name, value, from)) = row(hop, keyword) {
            let _ = writeln!(out, "  {name:<22} {value:<40} {from}");
        }
    }
    other_keywords(out, hop);
}

/// A row per `LocalForward` line: the forward in `-L` syntax, where it listens, and its line.
/// A jump host's are not opened (`ssh -J` reaches it with `ssh -W`, which clears them), nor
/// any with `ClearAllForwardings yes`.
fn forward_rows(out: &mut String, c: &HostConfig, last: bool) {
    let note = if c.clear_all_forwardings {
        "; not opened: ClearAllForwardings"
    } else if !last {
        "; not opened on a jump host"
    } else {
        ""
    };
    for f in &c.local_forwards {
        let listens = match &f.forward.listen {
            Listen::Path(_) => "a Unix socket".to_string(),
            Listen::Port { bind, .. } => match bind_plan(bind.as_deref(), c.gateway_ports) {
                BindPlan::Loopback => "loopback".to_string(),
                BindPlan::Wildcard => "every address".to_string(),
                BindPlan::Address(a) => a,
            },
        };
        let value = format!("{} (on {listens}{note})", f.forward);
        let from = format!("{}:{}", f.origin.file.display(), f.origin.line);
        let _ = writeln!(out, "  {:<22} {value:<40} {from}", "localforward");
    }
}

/// The keywords outside the table that were in effect, one line per kind (none: no line).
fn other_keywords(out: &mut String, hop: &Hop) {
    /// Whether a keyword (its status, whether its value is what pgtunnel does) is listed.
    type Wanted = fn(Option<Status>, bool) -> bool;
    let groups: [(&str, Wanted); 4] = [
        ("ignored (not applicable to a tunnel)", |s, _| {
            s == Some(Status::NotApplicable)
        }),
        ("ignored (by OpenSSH too)", |s, _| {
            s == Some(Status::IgnoredByOpenSsh)
        }),
        ("not implemented, value as pgtunnel does", |s, noted| {
            s == Some(Status::Unsupported) && noted
        }),
        ("ignored (IgnoreUnknown)", |s, _| s.is_none()),
    ];
    for (label, wanted) in groups {
        let list: Vec<String> = hop
            .config
            .other_keywords
            .iter()
            .filter(|k| wanted(k.status, k.note == Some(Allowance::ValueAsPgtunnelDoes)))
            .map(|k| format!("{} ({}:{})", k.name, k.origin.file.display(), k.origin.line))
            .collect();
        if !list.is_empty() {
            let _ = writeln!(out, "  {label}: {}", list.join(", "));
        }
    }
    for k in &hop.config.other_keywords {
        if k.status == Some(Status::Unsupported)
            && let Some(note) = k.note
            && note != Allowance::ValueAsPgtunnelDoes
        {
            let note = note.describe();
            let _ = writeln!(
                out,
                "  {note}: {} ({}:{})",
                k.name,
                k.origin.file.display(),
                k.origin.line
            );
        }
    }
}

/// One keyword's row: name, value and where the value came from (`None`: no row). Most rows
/// are the keyword's name and [`Keyword::explain_value`]; these few are worded here.
fn row(hop: &Hop, keyword: Keyword) -> Option<(&'static str, String, String)> {
    let c = &hop.config;
    let origin = || match c.origins.get(&keyword) {
        Some(o) => format!("{}:{}", o.file.display(), o.line),
        None => "default".into(),
    };
    let set = c.origins.contains_key(&keyword);
    let or = |default: &str| if set { origin() } else { default.into() };
    Some(match keyword {
        Keyword::HostName => (
            "hostname",
            c.host_name.clone(),
            match &c.canonicalization {
                Canonicalization::Renamed { from, .. } => {
                    format!("canonicalized from {from} (CanonicalizeHostname)")
                }
                _ => or("default (the name as written)"),
            },
        ),
        Keyword::Port => (
            "port",
            c.port.to_string(),
            if hop.spec.port.is_some() {
                "command line".into()
            } else {
                origin()
            },
        ),
        Keyword::User => (
            "user",
            c.user.clone(),
            if hop.spec.user.is_some() {
                "command line".into()
            } else {
                or("default (local user)")
            },
        ),
        Keyword::ProxyCommand => {
            let (value, from) = transport(hop, origin);
            ("transport", value, from)
        }
        Keyword::IdentityFile => {
            let files: Vec<String> = c
                .identity_files
                .iter()
                .map(|f| f.path.display().to_string())
                .collect();
            let explicit = c.identity_files.iter().any(|f| f.explicit);
            let from = if explicit { origin() } else { "default".into() };
            ("identityfile", files.join(" "), from)
        }
        // A later hop of a jump list: `ssh -J a,b` reaches b with `-J a` on its command
        // line, which replaces b's own ProxyJump.
        Keyword::ProxyJump if !set => (
            keyword.name(),
            keyword.explain_value(c)?,
            match &hop.source {
                HopSource::CommandLine => {
                    "command line (--via: reached through the hop before)".into()
                }
                HopSource::Destination => {
                    "command line (-J: reached through the hop before)".into()
                }
                HopSource::ProxyJumpOf(h) => {
                    format!("the ProxyJump of {h} (reached through the hop before)")
                }
            },
        ),
        Keyword::HostKeyAlias => (
            "host key name",
            c.known_hosts_name(),
            if c.host_key_alias.is_some() {
                format!("HostKeyAlias, {}", origin())
            } else {
                "HostName and port".into()
            },
        ),
        _ => (keyword.name(), keyword.explain_value(c)?, origin()),
    })
}

/// How the hop's byte stream is made: TCP or ProxyCommand for hop 1, else a channel.
fn transport(hop: &Hop, proxy_command_origin: impl Fn() -> String) -> (String, String) {
    if hop.index > 1 {
        return (
            format!("direct-tcpip channel of hop {}", hop.index - 1),
            "chain order".into(),
        );
    }
    match &hop.config.proxy_command {
        Some(cmd) => (format!("ProxyCommand {cmd}"), proxy_command_origin()),
        None => ("TCP".into(), "default".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{LocalEnv, SshConfig};
    use crate::plan::chain::resolve_chain;
    use crate::spec::{parse_hops, parse_target};

    /// The explanation of `--via via target` with `config` as the ssh_config file `/cfg`.
    fn render(config: &str, via: &str, target: &str) -> String {
        let env = LocalEnv::fixture();
        let config = SshConfig::parse_str(config, Path::new("/cfg"), &env.home).unwrap();
        let chain = resolve_chain(
            Some(&parse_hops(via).unwrap()),
            &parse_target(target).unwrap(),
            |q| config.resolve(q, &env),
        )
        .unwrap();
        explain(&chain)
    }

    /// Every row of a rich configuration, byte for byte (pins the output across refactors).
    #[test]
    fn full_output_is_stable() {
        let text = "Host db\n  HostName 10.0.0.5\n  ProxyJump joe@shell:2222,gw\n  \
                    ServerAliveInterval 15\n  ServerAliveCountMax 5\n  ConnectTimeout 1m\n\
                    Host shell\n  HostName Shell.Example\n  IdentityFile ~/.ssh/work\n  \
                    IdentityFile ~/.ssh/%h_%r\n  CertificateFile ~/.ssh/work-cert.pub\n  \
                    IdentitiesOnly yes\n  IdentityAgent ~/agent.sock\n  \
                    UserKnownHostsFile ~/.ssh/kh1 ~/.ssh/kh2\n  GlobalKnownHostsFile none\n  \
                    HostKeyAlias ShellKey\n  StrictHostKeyChecking accept-new\n  \
                    NumberOfPasswordPrompts 1\nHost gw\n  User gwuser\n  Port 2200\n  \
                    StrictHostKeyChecking no\n  IdentityFile none\nHost pc\n  \
                    ProxyCommand nc %h %p\n  StrictHostKeyChecking yes\n  BatchMode yes\n\
                    Host *\n  BatchMode no\nHost db\n  LocalForward 63333 localhost:5432\n  \
                    LocalForward [::1]:63334 /run/postgresql/.s.PGSQL.5432\n  \
                    ExitOnForwardFailure yes\nHost shell\n  LocalForward 8080 web:80\n  \
                    GatewayPorts yes\n";
        let got = format!(
            "{}\n{}",
            render(text, "db", "localhost"),
            render(text, "pc,x", "[fd00::1]:6432")
        );
        let want = include_str!("testdata/explain_full.txt");
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn local_forwards_are_listed_with_where_they_listen() {
        let rows = |config: &str, via: &str| -> Vec<String> {
            render(config, via, "localhost")
                .lines()
                .filter(|l| l.contains("forward") || l.contains("gatewayports"))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect()
        };
        let text = "Host a\n  LocalForward *:1 db:1\n  LocalForward localhost:2 db:2\n  \
                    LocalForward LOCALHOST:3 db:3\n  LocalForward /tmp/%h.s /run/pg.s\n  \
                    LocalForward 4 db:4\n  GatewayPorts yes\n";
        assert_eq!(
            rows(text, "a"),
            [
                "localforward *:1:db:1 (on every address) /cfg:2",
                "localforward localhost:2:db:2 (on loopback) /cfg:3",
                "localforward LOCALHOST:3:db:3 (on LOCALHOST) /cfg:4",
                "localforward /tmp/a.s:/run/pg.s (on a Unix socket) /cfg:5",
                "localforward 4:db:4 (on every address) /cfg:6",
                "gatewayports yes (a forward without a bind address listens on every address) /cfg:7",
                "exitonforwardfailure no (a forward that cannot listen is left out) default",
                "clearallforwardings no default",
            ]
        );
        // Cleared, or on a jump host: listed, not opened; no forward and no switch: no row.
        let text = "Host a\n  LocalForward 4 db:4\n  ClearAllForwardings yes\n\
                    Host b\n  LocalForward 5 db:5\n";
        let got = rows(text, "a,b");
        assert_eq!(
            got[0],
            "localforward 4:db:4 (on loopback; not opened: ClearAllForwardings) /cfg:2"
        );
        assert_eq!(
            got[3],
            "clearallforwardings yes (no forward is opened, not even -L) /cfg:3"
        );
        assert_eq!(got[4], "localforward 5:db:5 (on loopback) /cfg:5");
        let got = rows(text, "b,x");
        assert_eq!(
            got[0],
            "localforward 5:db:5 (on loopback; not opened on a jump host) /cfg:5"
        );
        assert_eq!(got.len(), 4, "hop x has no forward row: {got:?}");
        assert!(rows("Host a\n  User u\n", "a").is_empty());
    }

    #[test]
    fn other_keywords_are_listed_with_their_status() {
        let text = render(
            "Host a\n  RequestTTY yes\n  SendEnv LANG\n  Protocol 2\n  HostbasedAuthentication no\n\
             IgnoreUnknown UseFoo\nHost *\n  UseFoo yes\n",
            "a",
            "localhost",
        );
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  ") && l.contains(": "))
            .collect();
        assert_eq!(
            rows,
            [
                "  ignored (not applicable to a tunnel): RequestTTY (/cfg:2), SendEnv (/cfg:3)",
                "  ignored (by OpenSSH too): Protocol (/cfg:4)",
                "  not implemented, value as pgtunnel does: HostbasedAuthentication (/cfg:5)",
                "  ignored (IgnoreUnknown): usefoo (/cfg:8)",
            ],
            "{text}"
        );
    }

    #[test]
    fn algorithm_lists_are_shown_resolved_when_set() {
        let text = render(
            "Host a\n  Ciphers -chacha20*,aes1*\n  KexAlgorithms ^curve25519-sha256\n  \
             Compression yes\n  RequiredRSASize 2048\n",
            "a,b",
            "localhost",
        );
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| {
                [
                    "ciphers",
                    "kexalgorithms",
                    "compression",
                    "requiredrsasize",
                    "macs",
                ]
                .iter()
                .any(|k| l.trim_start().starts_with(k))
            })
            .collect();
        assert_eq!(rows.len(), 4, "{text}");
        assert!(
            rows[0].contains("ciphers                aes256-gcm@openssh.com,aes256-ctr ")
                && rows[0].ends_with("/cfg:2"),
            "{text}"
        );
        assert!(
            rows[1].contains("curve25519-sha256,mlkem768x25519-sha256,")
                && rows[1].ends_with("/cfg:3"),
            "{text}"
        );
        assert!(rows[2].contains("yes (zlib@openssh.com"), "{text}");
        assert!(rows[3].contains("2048 bits"), "{text}");
    }

    #[test]
    fn canonicalization_is_shown_with_its_outcome() {
        use crate::config::Resolver;
        use crate::config::canonical::tests::Table;
        let env = LocalEnv {
            resolver: Resolver::new(Table::new(&[("db.b.test.", None)])),
            ..LocalEnv::fixture()
        };
        let text = "CanonicalizeHostname yes\nCanonicalDomains a.test b.test\n\
                    Host db.b.test\n  Port 2200\n";
        let config = SshConfig::parse_str(text, Path::new("/cfg"), &env.home).unwrap();
        let chain = resolve_chain(
            Some(&parse_hops("db,web,x.y.z").unwrap()),
            &parse_target("localhost").unwrap(),
            |q| config.resolve(q, &env),
        )
        .unwrap();
        let text = explain(&chain);
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("canonical") || l.starts_with("  hostname"))
            .collect();
        assert_eq!(
            rows,
            [
                "  hostname               db.b.test                                canonicalized from db (CanonicalizeHostname)",
                "  canonicalizehostname   yes (db -> db.b.test)                    /cfg:1",
                "  canonicaldomains       a.test b.test                            /cfg:2",
                "  hostname               web                                      default (the name as written)",
                "  canonicalizehostname   yes (not applied: reached through a ProxyCommand or jump host; `always` would) /cfg:1",
                "  canonicaldomains       a.test b.test                            /cfg:2",
                "  hostname               x.y.z                                    default (the name as written)",
                "  canonicalizehostname   yes (not applied: reached through a ProxyCommand or jump host; `always` would) /cfg:1",
                "  canonicaldomains       a.test b.test                            /cfg:2",
            ],
            "{text}"
        );
        assert!(
            text.contains("host key name          [db.b.test]:2200"),
            "{text}"
        );
        // Direct, but not canonicalized: why.
        for (via, why) in [
            (
                "x.y.z",
                "yes (not applied: more dots than CanonicalizeMaxDots 1)",
            ),
            (
                "nothere",
                "yes (no domain resolved, tried nothere.a.test. nothere.b.test.; kept as \
                 written: CanonicalizeFallbackLocal)",
            ),
            ("10.1", "yes (not applied: a numeric address)"),
        ] {
            let chain = resolve_chain(
                Some(&parse_hops(via).unwrap()),
                &parse_target("localhost").unwrap(),
                |q| config.resolve(q, &env),
            )
            .unwrap();
            let text = explain(&chain);
            assert!(text.contains(why), "{via}: {text}");
        }
    }

    #[test]
    fn address_family_is_shown_when_set() {
        let text = render("Host a\n  AddressFamily inet6\n", "a,b", "localhost");
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("addressfamily"))
            .collect();
        // Hop a sets it; hop b has the default, which is not shown.
        assert_eq!(
            rows,
            ["  addressfamily          inet6                                    /cfg:2"],
            "{text}"
        );
    }

    #[test]
    fn transport_keywords_are_shown_when_set() {
        let text = "Host a\n  IPQoS ef\n  RekeyLimit 1M 1h\n  ConnectionAttempts 3\n  \
                    BindAddress 127.0.0.2\n  PreferredAuthentications password,publickey\n  \
                    ConnectTimeout 0\n";
        let text = render(text, "a,b", "localhost");
        let rows: Vec<String> = text
            .lines()
            .filter(|l| {
                [
                    "ipqos",
                    "rekeylimit",
                    "connectionattempts",
                    "bindaddress",
                    "preferred",
                    "connecttimeout",
                ]
                .iter()
                .any(|k| l.trim_start().starts_with(k))
            })
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        // Hop a sets them; hop b shows only ConnectTimeout's default.
        assert_eq!(
            rows,
            [
                "connecttimeout 0 (no time limit, as in ssh) /cfg:7",
                "bindaddress 127.0.0.2 /cfg:5",
                "connectionattempts 3 /cfg:4",
                "ipqos ef ef (a direct TCP connection is marked ef) /cfg:2",
                "rekeylimit 1048576 bytes, 3600s /cfg:3",
                "preferredauthentications password,publickey /cfg:6",
                "connecttimeout unset (pgtunnel gives up after 30s) default",
            ],
            "{text}"
        );
    }

    #[test]
    fn server_alive_interval_0_is_shown_as_off() {
        let text = "Host a\n  ServerAliveInterval 0\n";
        let text = render(text, "a,b", "localhost");
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("serveraliveinterval"))
            .collect();
        assert_eq!(
            rows,
            [
                "  serveraliveinterval    0 (off: no keepalives)                   /cfg:2",
                "  serveraliveinterval    unset (pgtunnel keeps alive every 30s)   default",
            ],
            "{text}"
        );
    }

    #[test]
    fn every_value_names_its_origin() {
        let text = "Host db\n  HostName 10.0.0.5\n  ProxyJump joe@shell:2222\n  \
                    ServerAliveInterval 15\nHost shell\n  HostName shell.example\n  \
                    IdentityFile ~/.ssh/work\n  HostKeyAlias shellkey\n  BatchMode yes\n";
        let text = render(text, "db", "localhost");
        assert!(
            text.contains("hop 1: joe@shell:2222 (from the ProxyJump of db)"),
            "{text}"
        );
        assert!(
            text.contains("hostname               shell.example"),
            "{text}"
        );
        assert!(text.contains("/cfg:6"), "{text}");
        assert!(text.contains("/home/me/.ssh/work"), "{text}");
        assert!(text.contains("user                   joe"), "{text}");
        assert!(text.contains("command line"), "{text}");
        assert!(text.contains("shellkey"), "{text}");
        assert!(text.contains("hop 2: db (from --via)"), "{text}");
        assert!(text.contains("serveraliveinterval    15s"), "{text}");
        assert!(text.contains("/cfg:4"), "{text}");
        assert!(text.contains("direct-tcpip channel of hop 1"), "{text}");
        assert!(
            text.contains("batchmode              yes (nothing is asked)"),
            "{text}"
        );
        assert!(text.contains("/cfg:9"), "{text}");
        assert!(text.contains("numberofpasswordprompts 3 "), "{text}");
        assert!(text.contains("ask (yes: BatchMode)"), "{text}");
    }
}
