//! The hop chain: which SSH servers to go through, in order, with each one's configuration.
//!
//! Pure: it takes the parsed command line and a resolver (ssh_config lookup) and does no I/O.
//!
//! `ProxyJump` is expanded the way OpenSSH does it. For `ssh -J A,B,C X`, ssh runs
//! `ssh -J A,B -W X C` as its ProxyCommand; that process runs `ssh -J A -W C B`, which runs
//! `ssh -W B A`. A `-J` on the command line takes precedence over a host's own config, so only
//! the *first* host of a jump list has its own `ProxyJump` (or `ProxyCommand`) applied; the
//! others are reached from the host before them. Recursively:
//!
//! ```text
//! chain([h1, h2, .., hn]) = expand(h1) ++ [h2, .., hn]
//! expand(h)               = chain(ProxyJump of h) ++ [h]   if h has one (and not `none`)
//!                         = [h]                              otherwise
//! ```
//!
//! A host with a `ProxyCommand` (and no ProxyJump before it) ends an expansion, so it is
//! always hop 1 of the chain; its byte stream is the command's stdin/stdout.
//!
//! A loop (A's ProxyJump leads back to A) is an error naming the loop; OpenSSH would fork
//! until it runs out of processes.
//!
//! Each such `ssh` canonicalizes its own host name (`CanonicalizeHostname`): `ssh -W B A`
//! connects to A directly, `ssh -J A -W C B` reaches B through a jump host, so only the first
//! host of a list is resolved as direct (if its own config has no ProxyJump/ProxyCommand); the
//! others are resolved with [`HostQuery::jump`] (the hop before them), and `yes` leaves them as written.
//!
//! Each host of a jump list (`--via` or a ProxyJump) after the first is also checked against
//! the host written before it, as `ssh -J` does ([`jumps_to_itself`]): `--via
//! github.com,dotfiles.github.com`, where the second's HostName is `github.com`, would reach
//! github.com through github.com itself.

use std::fmt;

use thiserror::Error;

use crate::config::{ConfigError, HostConfig, HostQuery, ProxyJump};
use crate::plan::names::ConfigNames;
use crate::spec::{HopSpec, Target};

/// At most this many hops; a longer chain is surely a mistake.
pub const MAX_HOPS: usize = 32;

/// The chain cannot be built.
#[derive(Debug, Error)]
pub enum ChainError {
    /// ProxyJump leads back to a host already on the way.
    #[error("ProxyJump loop: {}", cycle.join(" -> "))]
    Loop {
        /// The hosts in the loop, first repeated at the end.
        cycle: Vec<String>,
    },
    /// A host of a jump list is the host written before it (same HostName, port and user),
    /// which `ssh -J` refuses as "jumphost loop".
    #[error(
        "jumphost loop via {via}: {host} (HostName {host_name}, port {port}, user {user}) \
         would be reached through itself"
    )]
    JumpLoop {
        /// The hop before, as written.
        via: String,
        /// The hop, as written.
        host: String,
        /// Its resolved HostName.
        host_name: String,
        /// Its resolved port.
        port: u16,
        /// Its resolved user.
        user: String,
    },
    /// Neither `--via` nor a ProxyJump for TARGET.
    #[error("no SSH hop for {target}: {}", no_hops_advice(host, *port, *alias, close.as_deref()))]
    NoHops {
        /// TARGET as typed.
        target: String,
        /// TARGET's host.
        host: String,
        /// TARGET's port.
        port: u16,
        /// TARGET's host is an ssh_config alias (one without a ProxyJump): most likely a hop
        /// the user meant to go through (see [`ChainError::with_names`]).
        alias: bool,
        /// It is not, but some aliases are close: "`db-prd` is not an alias in FILE
        /// (closest: `db-prod`)".
        close: Option<String>,
    },
    /// TARGET is a name only an ssh_config alias can have (`unix/db`, `[db]`), and no alias
    /// with a ProxyJump gave it a HostName.
    #[error(
        "TARGET {host} is not a host name: a name like that only works as an ssh_config alias \
         (a `Host {host}` block) with a HostName and a ProxyJump, given as TARGET without --via{}",
        if *with_via { "; with --via, TARGET is resolved by the last hop" } else { "" }
    )]
    NotAHostName {
        /// TARGET's host.
        host: String,
        /// `--via` was given (so TARGET was not looked up).
        with_via: bool,
    },
    /// More than [`MAX_HOPS`].
    #[error("the chain has more than {MAX_HOPS} hops: {}", hops.join(" -> "))]
    TooLong {
        /// The hops so far.
        hops: Vec<String>,
    },
    /// A config lookup failed.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// What to do when TARGET has no hop: an alias without ProxyJump is most likely the hop
/// itself (`pgtunnel bastion` for `--via bastion localhost`).
fn no_hops_advice(host: &str, port: u16, alias: bool, close: Option<&str>) -> String {
    if alias {
        return format!(
            "{host} is an ssh_config alias without a ProxyJump, so there is nothing to go \
             through. To reach a service on {host} itself, make it the hop: `pgtunnel --via \
             {host} localhost:{port}` (or `--via {host} HOST:PORT` for one behind it)"
        );
    }
    let close = close.map(|c| format!(" ({c})")).unwrap_or_default();
    format!(
        "give one with --via HOP (e.g. `--via joe@shell.foo.com`), or make {host} an \
         ssh_config alias with a ProxyJump{close}"
    )
}

impl ChainError {
    /// The error with what the config's names tell: whether TARGET without a hop is an alias,
    /// or close to one.
    pub fn with_names(self, names: &ConfigNames) -> ChainError {
        match self {
            ChainError::NoHops {
                target, host, port, ..
            } => ChainError::NoHops {
                alias: names.is_alias(&host),
                close: (!names.closest(&host).is_empty()).then(|| names.not_an_alias(&host)),
                target,
                host,
                port,
            },
            other => other,
        }
    }
}

/// Why a hop is in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopSource {
    /// Written in `--via`.
    CommandLine,
    /// ssh's destination on the command line (`pgtunnel -L ... DEST`, `pgtunnel ALIAS` with
    /// LocalForward lines).
    Destination,
    /// From this host's `ProxyJump`.
    ProxyJumpOf(String),
}

/// One SSH server in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// 1-based position.
    pub index: usize,
    /// As written (in `--via` or in a ProxyJump).
    pub spec: HopSpec,
    /// Its resolved configuration.
    pub config: HostConfig,
    /// Why it is here.
    pub source: HopSource,
}

impl Hop {
    /// `HostName:Port`.
    pub fn addr(&self) -> String {
        crate::spec::HostPort(&self.config.host_name, self.config.port).to_string()
    }

    /// The hop as the user knows it, for messages.
    pub fn label(&self) -> crate::error::HopLabel {
        crate::error::HopLabel {
            index: self.index,
            name: self.spec.host.clone(),
            addr: self.addr(),
        }
    }
}

/// The resolved chain and the final target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The hops, in connection order (never empty).
    pub hops: Vec<Hop>,
    /// Where the last hop connects to (an alias's HostName already applied).
    pub target: Target,
    /// TARGET as typed, when an alias's HostName replaced its host.
    pub target_alias: Option<String>,
    /// The ssh_config's aliases and files, for messages about names that are none of them
    /// (empty unless set by the caller that read the config, e.g. [`crate::tunnel::plan`]).
    pub names: ConfigNames,
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for hop in &self.hops {
            write!(f, "{} -> ", hop.spec.host)?;
        }
        write!(f, "{}", self.target)
    }
}

/// Builds the chain for `--via` (if given) and TARGET.
///
/// `resolve` looks a host up in ssh_config (with the command line's `user@`/`:port`).
/// Without `--via`, TARGET's host is looked up: if it has a ProxyJump, that chain is used and
/// its HostName becomes the target address, so existing aliases just work.
pub fn resolve_chain<F>(
    via: Option<&[HopSpec]>,
    target: &Target,
    resolve: F,
) -> Result<Chain, ChainError>
where
    F: Fn(&HostQuery) -> Result<HostConfig, ConfigError>,
{
    let mut out = Vec::new();
    let mut target = target.clone();
    let mut target_alias = None;
    match via {
        Some(list) if !list.is_empty() => expand_list(
            list,
            &HopSource::CommandLine,
            &mut Vec::new(),
            &resolve,
            &mut out,
        )?,
        _ => {
            let config = resolve(&HostQuery {
                host: target.host.clone(),
                user: None,
                port: None,
                jump: None,
            })?;
            match &config.proxy_jump {
                Some(ProxyJump::Hops(list)) if !list.is_empty() => {
                    let source = HopSource::ProxyJumpOf(target.host.clone());
                    let mut stack = vec![target.host.to_ascii_lowercase()];
                    expand_list(list, &source, &mut stack, &resolve, &mut out)?;
                    if config.host_name != target.host {
                        target_alias = Some(target.host.clone());
                        target.host = config.host_name.clone();
                    }
                }
                _ => {
                    return Err(ChainError::NoHops {
                        target: target.to_string(),
                        host: target.host.clone(),
                        port: target.port,
                        alias: false,
                        close: None,
                    });
                }
            }
        }
    }
    if target_alias.is_none() && target.alias_only() {
        return Err(ChainError::NotAHostName {
            host: target.host.clone(),
            with_via: via.is_some_and(|v| !v.is_empty()),
        });
    }
    let hops = out
        .into_iter()
        .enumerate()
        .map(|(i, (spec, config, source))| Hop {
            index: i + 1,
            spec,
            config,
            source,
        })
        .collect();
    Ok(Chain {
        hops,
        target,
        target_alias,
        names: ConfigNames::default(),
    })
}

type Expanded = Vec<(HopSpec, HostConfig, HopSource)>;

/// The ssh_config lookup [`resolve_chain`] was given.
type Resolver<'a> = &'a dyn Fn(&HostQuery) -> Result<HostConfig, ConfigError>;

fn expand_list(
    list: &[HopSpec],
    source: &HopSource,
    stack: &mut Vec<String>,
    resolve: Resolver<'_>,
    out: &mut Expanded,
) -> Result<(), ChainError> {
    let Some((first, rest)) = list.split_first() else {
        return Ok(());
    };
    expand_hop(first, source, stack, resolve, out)?;
    let mut via = first;
    for spec in rest {
        // Reached from the hop before it: its own ProxyJump/ProxyCommand do not apply, and
        // ssh resolves it as `ssh -J <the hop before> <it>`.
        let config = resolve(&HostQuery {
            jump: Some(via.clone()),
            ..query(spec)
        })?;
        if jumps_to_itself(via, &config) {
            return Err(ChainError::JumpLoop {
                via: via.to_string(),
                host: spec.to_string(),
                host_name: config.host_name,
                port: config.port,
                user: config.user,
            });
        }
        push(out, spec.clone(), config, source.clone())?;
        via = spec;
    }
    Ok(())
}

/// OpenSSH's "jumphost loop" check (ssh.c, `main()`, where the ProxyCommand is built from
/// the jump host): the host ssh connects to, reached through the jump host `via`, is `via`
/// itself. Compared: `via`'s host exactly as written (case and all) with the resolved,
/// lowercased HostName; `via`'s port as written (22 when not given, not its configured
/// Port) with the resolved port; `via`'s user as written (when not given, the user of the
/// host being reached, so it always matches) with the resolved user.
pub fn jumps_to_itself(via: &HopSpec, config: &HostConfig) -> bool {
    via.host == config.host_name
        && via.port.unwrap_or(22) == config.port
        && via.user.as_deref().unwrap_or(&config.user) == config.user
}

fn expand_hop(
    spec: &HopSpec,
    source: &HopSource,
    stack: &mut Vec<String>,
    resolve: Resolver<'_>,
    out: &mut Expanded,
) -> Result<(), ChainError> {
    let key = spec.host.to_ascii_lowercase();
    if let Some(pos) = stack.iter().position(|h| *h == key) {
        let mut cycle = stack[pos..].to_vec();
        cycle.push(key);
        return Err(ChainError::Loop { cycle });
    }
    if stack.len() > MAX_HOPS {
        return Err(ChainError::TooLong {
            hops: stack.clone(),
        });
    }
    let config = resolve(&query(spec))?;
    match &config.proxy_jump {
        Some(ProxyJump::Hops(list)) if !list.is_empty() => {
            stack.push(key);
            let inner = HopSource::ProxyJumpOf(spec.host.clone());
            expand_list(list, &inner, stack, resolve, out)?;
            stack.pop();
        }
        // No jump list: connect directly, or through the hop's ProxyCommand (the resolver
        // keeps only the one of ProxyJump/ProxyCommand that OpenSSH would use). Such a hop
        // is always the first of its expansion, hence hop 1 of the chain: the session layer
        // runs the command there.
        _ => {}
    }
    push(out, spec.clone(), config, source.clone())
}

fn push(
    out: &mut Expanded,
    spec: HopSpec,
    config: HostConfig,
    source: HopSource,
) -> Result<(), ChainError> {
    if out.len() >= MAX_HOPS {
        let mut hops: Vec<String> = out.iter().map(|(s, _, _)| s.host.clone()).collect();
        hops.push(spec.host);
        return Err(ChainError::TooLong { hops });
    }
    out.push((spec, config, source));
    Ok(())
}

fn query(spec: &HopSpec) -> HostQuery {
    HostQuery {
        host: spec.host.clone(),
        user: spec.user.clone(),
        port: spec.port,
        jump: None,
    }
}

/// Resolutions of a config text for unit tests elsewhere in the crate (the config file is
/// `/cfg`, the environment [`LocalEnv::fixture`](crate::config::LocalEnv::fixture)).
#[cfg(test)]
pub(crate) mod fixture {
    use std::path::Path;

    use super::{Hop, resolve_chain};
    use crate::config::{HostConfig, HostQuery, LocalEnv, SshConfig};
    use crate::spec::{parse_hops, parse_target};

    /// The resolved configuration of host `h` under `config`.
    pub(crate) fn host(config: &str) -> HostConfig {
        let env = LocalEnv::fixture();
        SshConfig::parse_str(config, Path::new("/cfg"), &env.home)
            .unwrap()
            .resolve(
                &HostQuery {
                    host: "h".into(),
                    ..HostQuery::default()
                },
                &env,
            )
            .unwrap()
    }

    /// Hop 1 of `--via h localhost:5432` under `config`.
    pub(crate) fn hop(config: &str) -> Hop {
        let env = LocalEnv::fixture();
        let config = SshConfig::parse_str(config, Path::new("/cfg"), &env.home).unwrap();
        let chain = resolve_chain(
            Some(&parse_hops("h").unwrap()),
            &parse_target("localhost:5432").unwrap(),
            |q| config.resolve(q, &env),
        )
        .unwrap();
        chain.hops[0].clone()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{LocalEnv, SshConfig};
    use crate::spec::{parse_hops, parse_target};

    /// A fake resolver: alias -> (HostName, ProxyJump string or "none").
    fn resolver(
        table: &[(&str, &str, Option<&str>)],
    ) -> impl Fn(&HostQuery) -> Result<HostConfig, ConfigError> {
        let table: HashMap<String, (String, Option<String>)> = table
            .iter()
            .map(|(a, h, j)| (a.to_string(), (h.to_string(), j.map(str::to_string))))
            .collect();
        move |q: &HostQuery| {
            let mut c = SshConfig::empty().resolve(q, &LocalEnv::fixture())?;
            if let Some((h, j)) = table.get(&q.host) {
                c.host_name = h.clone();
                c.proxy_jump = j.as_ref().map(|j| match j.as_str() {
                    "none" => ProxyJump::None,
                    list => ProxyJump::Hops(parse_hops(list).unwrap()),
                });
            }
            Ok(c)
        }
    }

    fn names(chain: &Chain) -> Vec<String> {
        chain.hops.iter().map(|h| h.spec.host.clone()).collect()
    }

    #[test]
    fn via_list_in_order_with_overrides() {
        let r = resolver(&[]);
        let via = parse_hops("joe@shell.foo.com:2222,db.foo.com").unwrap();
        let chain = resolve_chain(Some(&via), &parse_target("localhost").unwrap(), r).unwrap();
        assert_eq!(names(&chain), ["shell.foo.com", "db.foo.com"]);
        assert_eq!(chain.hops[0].config.user, "joe");
        assert_eq!(chain.hops[0].config.port, 2222);
        assert_eq!(chain.hops[1].config.user, "me");
        assert_eq!(chain.hops[0].index, 1);
        assert_eq!(chain.target.to_string(), "localhost:5432");
    }

    #[test]
    fn first_hop_proxyjump_is_expanded_recursively() {
        let r = resolver(&[
            ("db", "db.foo.com", Some("shell")),
            ("shell", "shell.foo.com", Some("gw")),
            ("gw", "gw.foo.com", None),
        ]);
        let via = parse_hops("db").unwrap();
        let chain = resolve_chain(Some(&via), &parse_target("localhost").unwrap(), r).unwrap();
        assert_eq!(names(&chain), ["gw", "shell", "db"]);
        assert_eq!(
            chain.hops[0].source,
            HopSource::ProxyJumpOf("shell".to_string())
        );
        assert_eq!(chain.hops[2].source, HopSource::CommandLine);
    }

    #[test]
    fn later_hops_ignore_their_own_proxyjump() {
        // ssh -J a,b: b is reached from a, b's own ProxyJump does not apply.
        let r = resolver(&[("b", "b.example", Some("elsewhere"))]);
        let via = parse_hops("a,b").unwrap();
        let chain = resolve_chain(Some(&via), &parse_target("t").unwrap(), r).unwrap();
        assert_eq!(names(&chain), ["a", "b"]);
    }

    #[test]
    fn a_later_hop_whose_own_proxyjump_loops_is_fine() {
        // ssh -J a,b: b's own `ProxyJump b` does not apply, so it is no loop.
        let text = "Host b\n  HostName b.example\n  ProxyJump b.example\n  \
                    ProxyCommand nc %h %p\n";
        let config = SshConfig::parse_str(text, "/cfg".as_ref(), "/home/me".as_ref()).unwrap();
        let r = |q: &HostQuery| config.resolve(q, &LocalEnv::fixture());
        let via = parse_hops("a,b").unwrap();
        let chain = resolve_chain(Some(&via), &parse_target("t").unwrap(), r).unwrap();
        assert_eq!(names(&chain), ["a", "b"]);
        let b = &chain.hops[1].config;
        assert_eq!(b.proxy_jump, Some(ProxyJump::Hops(vec![via[0].clone()])));
        assert_eq!(b.proxy_command, None);
        // Alone, b loops.
        assert!(
            resolve_chain(
                Some(&parse_hops("b").unwrap()),
                &parse_target("t").unwrap(),
                r
            )
            .is_err()
        );
    }

    #[test]
    fn a_target_that_is_only_an_alias_name() {
        let r = resolver(&[
            ("unix/db", "10.0.0.5", Some("shell")),
            ("[db]", "10.0.0.6", Some("shell")),
        ]);
        let chain = resolve_chain(None, &parse_target("unix/db").unwrap(), &r).unwrap();
        assert_eq!(chain.target.to_string(), "10.0.0.5:5432");
        let chain = resolve_chain(None, &parse_target("[db]:6432").unwrap(), &r).unwrap();
        assert_eq!(chain.target.to_string(), "10.0.0.6:6432");
        assert_eq!(chain.target_alias.as_deref(), Some("[db]"));
        let via = parse_hops("shell").unwrap();
        let err = resolve_chain(Some(&via), &parse_target("unix/db").unwrap(), &r).unwrap_err();
        assert!(
            matches!(err, ChainError::NotAHostName { with_via: true, .. }),
            "{err}"
        );
        let r = resolver(&[("unix/x", "unix/x", Some("shell"))]);
        let err = resolve_chain(None, &parse_target("unix/x").unwrap(), &r).unwrap_err();
        assert!(err.to_string().contains("is not a host name"), "{err}");
    }

    #[test]
    fn proxyjump_list_inside_config() {
        let r = resolver(&[("db", "10.0.0.5", Some("a,b"))]);
        let chain = resolve_chain(None, &parse_target("db:5433").unwrap(), r).unwrap();
        assert_eq!(names(&chain), ["a", "b"]);
        assert_eq!(chain.target.to_string(), "10.0.0.5:5433");
        assert_eq!(chain.target_alias.as_deref(), Some("db"));
    }

    #[test]
    fn proxyjump_none_stops_expansion() {
        let r = resolver(&[("shell", "shell.foo.com", Some("none"))]);
        let via = parse_hops("shell").unwrap();
        let chain = resolve_chain(Some(&via), &parse_target("db").unwrap(), r).unwrap();
        assert_eq!(names(&chain), ["shell"]);
    }

    #[test]
    fn loops_are_named() {
        let r = resolver(&[("a", "a", Some("b")), ("b", "b", Some("a"))]);
        let via = parse_hops("a").unwrap();
        let err = resolve_chain(Some(&via), &parse_target("db").unwrap(), r).unwrap_err();
        assert_eq!(err.to_string(), "ProxyJump loop: a -> b -> a");
        let r = resolver(&[("a", "a", Some("a"))]);
        let err = resolve_chain(Some(&via), &parse_target("db").unwrap(), r).unwrap_err();
        assert_eq!(err.to_string(), "ProxyJump loop: a -> a");
        // Through the target alias itself.
        let r = resolver(&[("db", "db", Some("a")), ("a", "a", Some("db"))]);
        let err = resolve_chain(None, &parse_target("db").unwrap(), r).unwrap_err();
        assert_eq!(err.to_string(), "ProxyJump loop: db -> a -> db");
    }

    /// `--via via` under the ssh_config `config`: the hops' names, or the error.
    fn via_with(config: &str, via: &str) -> Result<Vec<String>, String> {
        let env = LocalEnv::fixture();
        let config = SshConfig::parse_str(config, std::path::Path::new("/cfg"), &env.home)
            .map_err(|e| e.to_string())?;
        resolve_chain(
            Some(&parse_hops(via).unwrap()),
            &parse_target("db:5432").unwrap(),
            |q| config.resolve(q, &env),
        )
        .map(|c| names(&c))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_via_hop_that_is_the_hop_before_it_is_a_jumphost_loop() {
        let config = "Host dotfiles.github.com\n  HostName github.com\n\
                      Host up\n  HostName GitHub.com\n\
                      Host p\n  HostName github.com\n  Port 2222\n\
                      Host us\n  HostName github.com\n  User bob\n\
                      Host jp\n  Port 2222\n";
        let looped = |via: &str| match via_with(config, via) {
            Err(e) if e.starts_with("jumphost loop via ") => true,
            Err(e) => panic!("{via}: {e}"),
            Ok(_) => false,
        };
        let err = via_with(config, "github.com,dotfiles.github.com").unwrap_err();
        assert_eq!(
            err,
            "jumphost loop via github.com: dotfiles.github.com (HostName github.com, port 22, \
             user me) would be reached through itself"
        );
        // The HostName is lowercased; the hop before is compared as written.
        assert!(looped("github.com,up"));
        assert!(!looped("GitHub.com,dotfiles.github.com"));
        // Ports: the one written before (22 when none) against the resolved one.
        assert!(!looped("github.com,p"));
        assert!(looped("github.com:2222,p"));
        assert!(looped("github.com:22,dotfiles.github.com"));
        assert!(!looped("github.com,dotfiles.github.com:2222"));
        // The hop before's own Port does not count: `jp` is compared as port 22.
        assert!(looped("jp,jp:22"));
        assert!(!looped("jp,jp"));
        // Users: the one written before (when none, the reached host's own) against the
        // resolved one.
        assert!(looped("github.com,us"));
        assert!(looped("bob@github.com,us"));
        assert!(!looped("joe@github.com,us"));
        assert!(looped("bob@github.com,bob@dotfiles.github.com"));
        assert!(!looped("bob@github.com,dotfiles.github.com"));
        // Only neighbours are compared; any pair in the list counts.
        assert!(looped("a,github.com,dotfiles.github.com,b"));
        assert!(!looped("github.com,x,dotfiles.github.com"));
        assert!(!looped("dotfiles.github.com,github.com"));
        assert!(looped("127.0.0.1,127.0.0.1"));
        // The HostName is rewritten first when numeric; the hop before is not.
        assert!(looped("127.0.0.1,127.1"));
        assert!(!looped("127.1,127.0.0.1"));
        assert!(looped("[::1],[::1]"));
    }

    #[test]
    fn a_proxyjump_list_is_checked_hop_by_hop_too() {
        // ssh db runs `ssh -J gw.example shell` for the list's last host, which refuses.
        let config = "Host db\n  ProxyJump gw.example,shell\n\
                      Host shell\n  HostName gw.example\n";
        let err = via_with(config, "db").unwrap_err();
        assert!(
            err.starts_with("jumphost loop via gw.example: shell "),
            "{err}"
        );
        // A loop of aliases is still reported as such.
        let config = "Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n";
        assert_eq!(
            via_with(config, "a").unwrap_err(),
            "ProxyJump loop: a -> b -> a"
        );
    }

    #[test]
    fn no_hops_is_an_error_with_a_hint() {
        let r = resolver(&[]);
        let err = resolve_chain(None, &parse_target("db.foo.com").unwrap(), r).unwrap_err();
        assert!(err.to_string().contains("--via"), "{err}");
        let r = resolver(&[("db", "db", Some("none"))]);
        assert!(resolve_chain(None, &parse_target("db").unwrap(), r).is_err());
    }

    #[test]
    fn a_very_long_chain_is_refused() {
        let table: Vec<(String, String, Option<String>)> = (0..40)
            .map(|i| {
                (
                    format!("h{i}"),
                    format!("h{i}"),
                    Some(format!("h{}", i + 1)),
                )
            })
            .collect();
        let table: Vec<(&str, &str, Option<&str>)> = table
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_deref()))
            .collect();
        let r = resolver(&table);
        let via = parse_hops("h0").unwrap();
        let err = resolve_chain(Some(&via), &parse_target("db").unwrap(), r).unwrap_err();
        assert!(matches!(err, ChainError::TooLong { .. }), "{err}");
    }

    /// Canonicalization per hop, as ssh does it for each hop's own `ssh`: the target alias
    /// (reached through its ProxyJump) only with `always`, and its canonical name is then
    /// the target; the first hop of a list directly; the others as `ssh -J`.
    #[test]
    fn canonicalization_applies_per_hop_as_ssh_runs_it() {
        use crate::config::Resolver;
        use crate::config::canonical::tests::Table;
        let env = LocalEnv {
            resolver: Resolver::new(Table::new(&[
                ("db.test.", None),
                ("gw.test.", None),
                ("mid.test.", None),
                ("yes.test.", None),
            ])),
            ..LocalEnv::fixture()
        };
        let text = "Host prod\n  HostName db\n  ProxyJump gw\n  CanonicalizeHostname always\n\
                    Host yes\n  ProxyJump gw\n\
                    Host *\n  CanonicalizeHostname yes\n  CanonicalDomains test\n";
        let config = SshConfig::parse_str(text, std::path::Path::new("/cfg"), &env.home).unwrap();
        let plan = |via: Option<&str>, target: &str| {
            let via = via.map(|v| parse_hops(v).unwrap());
            resolve_chain(via.as_deref(), &parse_target(target).unwrap(), |q| {
                config.resolve(q, &env)
            })
            .unwrap()
        };
        let chain = plan(None, "prod");
        assert_eq!(chain.target.host, "db.test");
        assert_eq!(chain.target_alias.as_deref(), Some("prod"));
        assert_eq!(chain.hops[0].config.host_name, "gw.test");
        // `yes` and a ProxyJump: the alias's name is passed on as it is.
        assert_eq!(plan(None, "yes").target.host, "yes");
        let chain = plan(Some("mid,gw"), "localhost");
        let hosts: Vec<&str> = chain
            .hops
            .iter()
            .map(|h| h.config.host_name.as_str())
            .collect();
        assert_eq!(hosts, ["mid.test", "gw"]);
    }
}
