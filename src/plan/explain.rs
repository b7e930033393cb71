//! `pgtunnel explain`: like `ssh -G`, but for the whole chain. For every hop, the values the
//! connection will use and where each came from (file and line, the command line, or
//! OpenSSH's default). Pure: it formats a resolved [`Chain`].

use std::fmt::Write;
use std::time::Duration;

use crate::config::{ProxyJump, StrictHostKeyChecking};
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
        hop_section(&mut out, hop);
    }
    out
}

fn hop_section(out: &mut String, hop: &Hop) {
    let c = &hop.config;
    let how = match &hop.source {
        HopSource::CommandLine => "from --via".to_string(),
        HopSource::ProxyJumpOf(h) => format!("from the ProxyJump of {h}"),
    };
    let _ = writeln!(out, "hop {}: {} ({how})", hop.index, hop.spec);
    let origin = |key: &str| -> String {
        match c.origins.get(key) {
            Some(o) => format!("{}:{}", o.file.display(), o.line),
            None => "default".into(),
        }
    };
    let mut row = |name: &str, value: String, from: String| {
        let _ = writeln!(out, "  {name:<22} {value:<40} {from}");
    };
    row(
        "hostname",
        c.host_name.clone(),
        if c.origins.contains_key("hostname") {
            origin("hostname")
        } else {
            "default (the name as written)".into()
        },
    );
    row(
        "port",
        c.port.to_string(),
        if hop.spec.port.is_some() {
            "command line".into()
        } else {
            origin("port")
        },
    );
    row(
        "user",
        c.user.clone(),
        if hop.spec.user.is_some() {
            "command line".into()
        } else if c.origins.contains_key("user") {
            origin("user")
        } else {
            "default (local user)".into()
        },
    );
    let transport = if hop.index == 1 {
        match &c.proxy_command {
            Some(cmd) => (format!("ProxyCommand {cmd}"), origin("proxycommand")),
            None => ("TCP".into(), "default".into()),
        }
    } else {
        (
            format!("direct-tcpip channel of hop {}", hop.index - 1),
            match &hop.source {
                HopSource::ProxyJumpOf(_) | HopSource::CommandLine => "chain order".into(),
            },
        )
    };
    row("transport", transport.0, transport.1);
    if let Some(ProxyJump::Hops(list)) = &c.proxy_jump {
        let list: Vec<String> = list.iter().map(|h| h.to_string()).collect();
        row("proxyjump", list.join(","), origin("proxyjump"));
    }
    let files: Vec<String> = c
        .identity_files
        .iter()
        .map(|f| f.path.display().to_string())
        .collect();
    row(
        "identityfile",
        files.join(" "),
        if c.identity_files.iter().any(|f| f.explicit) {
            origin("identityfile")
        } else {
            "default".into()
        },
    );
    if !c.certificate_files.is_empty() {
        let certs: Vec<String> = c
            .certificate_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        row(
            "certificatefile",
            certs.join(" "),
            origin("certificatefile"),
        );
    }
    row(
        "identitiesonly",
        yes_no(c.identities_only),
        origin("identitiesonly"),
    );
    row(
        "identityagent",
        c.identity_agent
            .clone()
            .unwrap_or_else(|| "SSH_AUTH_SOCK".into()),
        origin("identityagent"),
    );
    let paths = |v: &[std::path::PathBuf]| {
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    row(
        "userknownhostsfile",
        paths(&c.user_known_hosts_files),
        origin("userknownhostsfile"),
    );
    row(
        "globalknownhostsfile",
        paths(&c.global_known_hosts_files),
        origin("globalknownhostsfile"),
    );
    row(
        "host key name",
        c.known_hosts_name(),
        if c.host_key_alias.is_some() {
            format!("HostKeyAlias, {}", origin("hostkeyalias"))
        } else {
            "HostName and port".into()
        },
    );
    row(
        "stricthostkeychecking",
        match c.strict_host_key_checking {
            StrictHostKeyChecking::Yes => "yes",
            StrictHostKeyChecking::AcceptNew => "accept-new",
            StrictHostKeyChecking::No => "no",
            StrictHostKeyChecking::Ask if c.batch_mode => "ask (yes: BatchMode)",
            StrictHostKeyChecking::Ask => "ask (yes without a terminal)",
        }
        .into(),
        origin("stricthostkeychecking"),
    );
    row(
        "batchmode",
        if c.batch_mode {
            "yes (nothing is asked)".into()
        } else {
            "no".into()
        },
        origin("batchmode"),
    );
    row(
        "numberofpasswordprompts",
        c.number_of_password_prompts.to_string(),
        origin("numberofpasswordprompts"),
    );
    row(
        "serveraliveinterval",
        match c.server_alive_interval {
            Some(d) => secs(d),
            None => "unset (pgtunnel keeps alive every 30s)".into(),
        },
        origin("serveraliveinterval"),
    );
    row(
        "serveralivecountmax",
        c.server_alive_count_max.to_string(),
        origin("serveralivecountmax"),
    );
    row(
        "connecttimeout",
        match c.connect_timeout {
            Some(d) => secs(d),
            None => "unset (pgtunnel gives up after 30s)".into(),
        },
        origin("connecttimeout"),
    );
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{LocalEnv, SshConfig};
    use crate::plan::chain::resolve_chain;
    use crate::spec::{parse_hops, parse_target};

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
                    Host *\n  BatchMode no\n";
        let env = LocalEnv {
            local_user: "me".into(),
            home: "/home/me".into(),
            local_hostname: "laptop".into(),
            uid: 1000,
            env: Default::default(),
        };
        let config = SshConfig::parse_str(text, Path::new("/cfg"), &env.home).unwrap();
        let render = |via: &str, target: &str| {
            let chain = resolve_chain(
                Some(&parse_hops(via).unwrap()),
                &parse_target(target).unwrap(),
                |q| config.resolve(q, &env),
            )
            .unwrap();
            explain(&chain)
        };
        let got = format!(
            "{}\n{}",
            render("db", "localhost"),
            render("pc,x", "[fd00::1]:6432")
        );
        let want = include_str!("testdata/explain_full.txt");
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn every_value_names_its_origin() {
        let text = "Host db\n  HostName 10.0.0.5\n  ProxyJump joe@shell:2222\n  \
                    ServerAliveInterval 15\nHost shell\n  HostName shell.example\n  \
                    IdentityFile ~/.ssh/work\n  HostKeyAlias shellkey\n  BatchMode yes\n";
        let env = LocalEnv {
            local_user: "me".into(),
            home: "/home/me".into(),
            local_hostname: "laptop".into(),
            uid: 1000,
            env: Default::default(),
        };
        let config = SshConfig::parse_str(text, Path::new("/cfg"), &env.home).unwrap();
        let chain = resolve_chain(
            Some(&parse_hops("db").unwrap()),
            &parse_target("localhost").unwrap(),
            |q| config.resolve(q, &env),
        )
        .unwrap();
        let text = explain(&chain);
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
