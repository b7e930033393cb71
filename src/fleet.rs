//! Several tunnels in one process: ssh's own `-L` forwards (`pgtunnel -L 63333:db:5432
//! joe@shell`), an alias's `LocalForward` lines (`pgtunnel ALIAS`, as `ssh -N ALIAS`), and
//! named tunnels from a tunnels file (`pgtunnel up`). Each forward is a [`TunnelPlan`]: a
//! name, its chain (hops and target), where it listens, what to check. They are served
//! together ([`crate::tunnel::serve_all`]), their chains sharing hop sessions through one
//! [`crate::ssh::session::HopPool`].
//!
//! Planning ([`ssh_forwards`], [`named_tunnels`]) is pure; [`bind`] does the listening, with
//! OpenSSH's rules for where a forward listens ([`bind_plan`], after `channel_fwd_bind_addr()`).

pub mod monitor;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use tokio::net::{TcpListener, UnixListener};

use crate::config::forward::{BindPlan, Connect, Listen, LocalForward, bind_plan};
use crate::config::{ConfigError, HostConfig, HostQuery};
use crate::error::Error;
use crate::forward::Listeners;
use crate::forward::probe::Probe;
use crate::plan::chain::{Chain, HopSource, resolve_chain};
use crate::spec::{HopSpec, HostPort, Target};

/// One tunnel of several: a name, a chain, where it listens and what is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPlan {
    /// For messages and status: a tunnels-file name, or the forward as ssh writes it.
    pub name: String,
    /// Its hops and target.
    pub chain: Chain,
    /// Where it listens on TCP or a socket path (`None`: only on `socket_dir`).
    pub listen: Option<ListenAt>,
    /// A private PostgreSQL socket directory (`--socket DIR`, a tunnels file's `socket`).
    pub socket_dir: Option<PathBuf>,
    /// Verified TLS through it (`--sslmode`): named in the ready line's connection string.
    pub sslmode: Option<crate::pg::client::SslMode>,
    /// Every hop's key exchange must be post-quantum (`--require-pq`).
    pub require_pq: bool,
    /// The target is PostgreSQL (see [`crate::tunnel::is_postgres`]).
    pub postgres: bool,
    /// The check before it is ready.
    pub probe: Probe,
    /// A failure to listen, or of the probe, stops pgtunnel (`ExitOnForwardFailure yes`,
    /// and always for named tunnels and TARGET); otherwise it is a warning and the other
    /// forwards go on, as with ssh.
    pub strict: bool,
    /// Refuse unencrypted segments.
    pub require_encrypted: bool,
}

/// Where a tunnel listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAt {
    /// An address and port (`--listen`, a tunnels file's `listen`; port 0: a free one).
    Addr(SocketAddr),
    /// An ssh-style forward: `port` on every address OpenSSH would listen on for `bind`.
    Forward {
        /// The bind address as written (`localhost`, `*`, an address or a name), if any.
        bind: Option<String>,
        /// `GatewayPorts` of the destination.
        gateway_ports: bool,
        /// The port.
        port: u16,
    },
    /// A local Unix socket path (`-L /path/sock:host:port`).
    Path {
        /// The socket path.
        path: PathBuf,
        /// `StreamLocalBindMask`: the socket file's mode is `0777 & !mask`.
        mask: u32,
        /// `StreamLocalBindUnlink`: remove an existing file first.
        unlink: bool,
    },
}

impl ListenAt {
    /// The address the path report judges the listener by before binding: a name is taken
    /// as reachable from elsewhere (it may be), `localhost` and no bind address as loopback.
    pub fn planned_addr(&self) -> SocketAddr {
        let ip: IpAddr = match self {
            ListenAt::Addr(addr) => return *addr,
            ListenAt::Path { .. } => Ipv4Addr::LOCALHOST.into(),
            ListenAt::Forward {
                bind,
                gateway_ports,
                ..
            } => match bind_plan(bind.as_deref(), *gateway_ports) {
                BindPlan::Loopback => Ipv4Addr::LOCALHOST.into(),
                BindPlan::Wildcard => Ipv4Addr::UNSPECIFIED.into(),
                BindPlan::Address(name) => name.parse().unwrap_or(Ipv4Addr::UNSPECIFIED.into()),
            },
        };
        let port = match self {
            ListenAt::Forward { port, .. } => *port,
            _ => 0,
        };
        SocketAddr::new(ip, port)
    }
}

impl std::fmt::Display for ListenAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAt::Addr(addr) => write!(f, "{addr}"),
            ListenAt::Forward {
                bind: Some(bind),
                port,
                ..
            } => write!(f, "{}", HostPort(bind, *port)),
            ListenAt::Forward {
                bind: None, port, ..
            } => write!(f, "{port}"),
            ListenAt::Path { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

/// The tunnels for ssh-style forwards through `jumps` (`-J`) to `destination`: one per
/// forward, each with the chain `jumps, destination` and the forward's target (sent as
/// written to the destination, as ssh does).
pub fn ssh_forwards<F>(
    jumps: &[HopSpec],
    destination: &HopSpec,
    forwards: &[LocalForward],
    options: &ForwardOptions,
    resolve: F,
) -> Result<Vec<TunnelPlan>, Error>
where
    F: Fn(&HostQuery) -> Result<HostConfig, ConfigError>,
{
    let mut hops = jumps.to_vec();
    hops.push(destination.clone());
    let mut plans = Vec::with_capacity(forwards.len());
    for forward in forwards {
        // The forward as ssh's `-L` writes it.
        let name = forward.to_string();
        let target = match &forward.connect {
            Connect::HostPort { host, port } => Target {
                host: host.clone(),
                port: *port,
                port_given: true,
                socket: None,
            },
            Connect::Path(path) => Target::unix(path),
        };
        let chain = resolve_chain(Some(&hops), &target, &resolve).map_err(|e| Error::Tunnel {
            name: name.clone(),
            source: Box::new(e.into()),
        })?;
        let mut chain = chain;
        if let Some(last) = chain.hops.last_mut()
            && last.source == HopSource::CommandLine
        {
            last.source = HopSource::Destination;
        }
        let listen = match &forward.listen {
            Listen::Port { bind, port } => ListenAt::Forward {
                bind: bind.clone(),
                gateway_ports: options.gateway_ports,
                port: *port,
            },
            Listen::Path(path) => ListenAt::Path {
                path: PathBuf::from(path),
                mask: options.stream_local_bind_mask,
                unlink: options.stream_local_bind_unlink,
            },
        };
        let postgres = crate::tunnel::is_postgres(&chain.target, options.postgres);
        plans.push(TunnelPlan {
            name,
            chain,
            listen: Some(listen),
            socket_dir: None,
            sslmode: None,
            require_pq: options.require_pq,
            postgres,
            probe: Probe::for_target(options.probe, postgres),
            strict: options.exit_on_forward_failure,
            require_encrypted: options.require_encrypted,
        });
    }
    Ok(plans)
}

/// The tunnels of a tunnels file (`pgtunnel up`), each with its own chain (resolved as the
/// same words would be on the command line: `via` as `--via`, `target` as TARGET).
pub fn named_tunnels<F>(
    defs: &[&crate::tunnels::TunnelDef],
    resolve: F,
) -> Result<Vec<TunnelPlan>, Error>
where
    F: Fn(&HostQuery) -> Result<HostConfig, ConfigError>,
{
    defs.iter()
        .map(|def| {
            let chain = resolve_chain(def.via.as_deref(), &def.target, &resolve).map_err(|e| {
                Error::Tunnel {
                    name: def.name.clone(),
                    source: Box::new(e.into()),
                }
            })?;
            let postgres = crate::tunnel::is_postgres(&chain.target, def.pg);
            Ok(TunnelPlan {
                name: def.name.clone(),
                listen: def.tcp_listen().map(|addr| match &def.listen_host {
                    // `localhost:6543`: every address the name stands for, as `-L`.
                    Some(host) => ListenAt::Forward {
                        bind: Some(host.clone()),
                        gateway_ports: false,
                        port: addr.port(),
                    },
                    None => ListenAt::Addr(addr),
                }),
                socket_dir: def.socket.clone(),
                sslmode: def.sslmode,
                require_pq: def.require_pq,
                postgres,
                probe: Probe::for_target(def.probe, postgres),
                strict: true,
                require_encrypted: def.require_encrypted || def.require_pq,
                chain,
            })
        })
        .collect()
}

/// How many separate trees of sessions `plans` make (pure): plans whose first hops are the
/// same session (same host, port, user, host key name and ProxyCommand) share it, and all their traffic
/// goes through that one session. The binary runs one tree on one thread (issue 13).
pub fn session_trees(plans: &[TunnelPlan]) -> usize {
    let firsts: std::collections::HashSet<_> = plans
        .iter()
        .filter_map(|p| p.chain.hops.first())
        .map(crate::ssh::pool::HopIdentity::of)
        .collect();
    firsts.len().max(1)
}

/// ssh's form, `pgtunnel [-J JUMPS] [-L FORWARD...] DESTINATION`: the tunnels for the
/// command line's `forwards` and the destination's `LocalForward` lines, combined as ssh
/// combines them ([`HostConfig::effective_local_forwards`]); the destination's
/// `GatewayPorts` and `ExitOnForwardFailure` apply (`options`' own are overridden).
/// `Ok(None)`: nothing to forward (no `-L`, no `LocalForward`). A `ClearAllForwardings yes`
/// that clears forwards given on the command line is an error. Pure, given `resolve`.
///
/// What `ssh -N` would also open and pgtunnel does not (`RemoteForward`, `DynamicForward`)
/// is in [`SshForm::not_opened`], for the caller to say.
pub fn ssh_plans<F>(
    jumps: &[HopSpec],
    destination: &HopSpec,
    forwards: &[LocalForward],
    options: ForwardOptions,
    env: &crate::config::LocalEnv,
    resolve: F,
) -> Result<Option<SshForm>, Error>
where
    F: Fn(&HostQuery) -> Result<HostConfig, ConfigError>,
{
    let mut hops = jumps.to_vec();
    hops.push(destination.clone());
    // The destination's config as its chain resolves it (its ProxyJump, or as -J's child).
    let probe_target = Target {
        host: "localhost".into(),
        port: 22,
        port_given: true,
        socket: None,
    };
    let chain = resolve_chain(Some(&hops), &probe_target, &resolve)?;
    let Some(dest) = chain.hops.last().map(|h| &h.config) else {
        return Ok(None);
    };
    let all = dest.effective_local_forwards(forwards, env)?;
    if all.is_empty() {
        if forwards.is_empty() {
            return Ok(None);
        }
        return Err(Error::Spec(crate::spec::SpecError::Usage {
            what: "-L",
            reason: "ClearAllForwardings yes in the destination's ssh_config clears every \
                     forward, the command line's too (as in ssh)"
                .into(),
        }));
    }
    let options = ForwardOptions {
        gateway_ports: dest.gateway_ports,
        exit_on_forward_failure: dest.exit_on_forward_failure,
        stream_local_bind_mask: dest.stream_local_bind_mask,
        stream_local_bind_unlink: dest.stream_local_bind_unlink,
        ..options
    };
    let not_opened = not_opened(dest);
    let plans = ssh_forwards(jumps, destination, &all, &options, resolve)?;
    Ok(Some(SshForm { plans, not_opened }))
}

/// ssh's form, planned: the tunnels, and what `ssh -N` would open besides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshForm {
    /// One tunnel per local forward.
    pub plans: Vec<TunnelPlan>,
    /// The destination's `RemoteForward` / `DynamicForward` lines (`Keyword file:line`),
    /// which `ssh -N` would open too and pgtunnel does not.
    pub not_opened: Vec<String>,
}

/// The destination's forwards of kinds pgtunnel does not open (none when
/// `ClearAllForwardings yes` clears them, as in ssh).
pub fn not_opened(dest: &HostConfig) -> Vec<String> {
    if dest.clear_all_forwardings {
        return Vec::new();
    }
    dest.other_keywords
        .iter()
        .filter(|k| matches!(k.name.as_str(), "RemoteForward" | "DynamicForward"))
        .map(|k| format!("{} ({}:{})", k.name, k.origin.file.display(), k.origin.line))
        .collect()
}

/// The command line's options that apply to every ssh-style forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardOptions {
    /// `--pg` / `--no-pg`.
    pub postgres: Option<bool>,
    /// Not `--no-probe`.
    pub probe: bool,
    /// `--require-encrypted`.
    pub require_encrypted: bool,
    /// `--require-pq`.
    pub require_pq: bool,
    /// The destination's `GatewayPorts`.
    pub gateway_ports: bool,
    /// The destination's `ExitOnForwardFailure`.
    pub exit_on_forward_failure: bool,
    /// The destination's `StreamLocalBindMask`.
    pub stream_local_bind_mask: u32,
    /// The destination's `StreamLocalBindUnlink`.
    pub stream_local_bind_unlink: bool,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        ForwardOptions {
            postgres: None,
            probe: true,
            require_encrypted: false,
            require_pq: false,
            gateway_ports: false,
            exit_on_forward_failure: false,
            stream_local_bind_mask: 0o177,
            stream_local_bind_unlink: false,
        }
    }
}

/// A tunnel's bound listeners, and the addresses they are bound to (for the ready line and
/// the path report).
#[derive(Debug)]
pub struct Bound {
    /// The listeners.
    pub listeners: Listeners,
    /// The TCP addresses bound.
    pub addrs: Vec<SocketAddr>,
    /// The Unix socket bound, if any.
    pub path: Option<PathBuf>,
    /// The private PostgreSQL socket, removed when this is dropped.
    pub socket: Option<crate::forward::socket::SocketListener>,
    /// Addresses that could not be bound while others could (ssh warns and goes on).
    pub skipped: Vec<String>,
}

impl Bound {
    /// For the ready line: every address, or the socket path.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.addrs.iter().map(ToString::to_string).collect();
        if let Some(path) = &self.path {
            parts.push(path.display().to_string());
        }
        parts.join(" and ")
    }

    /// The address the path report judges the listener by: the least private one.
    pub fn report_addr(&self) -> SocketAddr {
        least_private(&self.addrs).unwrap_or(crate::spec::DEFAULT_LISTEN)
    }
}

/// Opens a tunnel's listeners: [`bind_listen`], and its PostgreSQL socket directory.
pub async fn bind(plan: &TunnelPlan) -> Result<Bound, Error> {
    let mut bound = match &plan.listen {
        Some(listen) => bind_listen(listen).await?,
        None => Bound {
            listeners: Listeners::default(),
            addrs: Vec::new(),
            path: None,
            socket: None,
            skipped: Vec::new(),
        },
    };
    if let Some(dir) = &plan.socket_dir {
        let mut socket = crate::forward::socket::SocketListener::bind(dir, plan.chain.target.port)?;
        bound.path = Some(socket.path().to_path_buf());
        bound.listeners.unix = socket.take();
        bound.socket = Some(socket);
    }
    Ok(bound)
}

/// Opens the listeners for `listen`. A forward listens on every address its bind address
/// stands for; it fails only when none of them can be bound (as ssh), the others being
/// reported in [`Bound::skipped`].
pub async fn bind_listen(listen: &ListenAt) -> Result<Bound, Error> {
    let addrs = match listen {
        ListenAt::Addr(addr) => vec![*addr],
        ListenAt::Forward {
            bind,
            gateway_ports,
            port,
        } => resolve_bind(bind.as_deref(), *gateway_ports, *port).await?,
        ListenAt::Path { path, mask, unlink } => {
            let listener =
                bind_socket(path, *mask, *unlink).map_err(|source| Error::ListenPath {
                    path: path.clone(),
                    source,
                })?;
            return Ok(Bound {
                listeners: Listeners {
                    tcp: Vec::new(),
                    unix: Some(listener),
                },
                addrs: Vec::new(),
                path: Some(path.clone()),
                socket: None,
                skipped: Vec::new(),
            });
        }
    };
    bind_all(&addrs).await
}

/// A local forward's Unix socket, as ssh's `unix_listener()` makes it: an existing file
/// removed first with `StreamLocalBindUnlink yes` (else binding fails on it), the mode
/// `0777 & !StreamLocalBindMask` (0600 by default; set right after binding, as the umask is
/// the whole process's).
fn bind_socket(path: &std::path::Path, mask: u32, unlink: bool) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if unlink {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777 & !mask))?;
    Ok(listener)
}

async fn bind_all(addrs: &[SocketAddr]) -> Result<Bound, Error> {
    let mut tcp = Vec::new();
    let mut bound = Vec::new();
    let mut skipped = Vec::new();
    let mut first_error = None;
    for addr in addrs {
        // Port 0 on several addresses: the same port on each, as the first one got.
        let addr = match (addr.port(), bound.first()) {
            (0, Some(first)) => SocketAddr::new(addr.ip(), SocketAddr::port(first)),
            _ => *addr,
        };
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                bound.push(listener.local_addr().unwrap_or(addr));
                tcp.push(listener);
            }
            Err(source) => {
                skipped.push(format!("{addr}: {source}"));
                first_error.get_or_insert(Error::Listen { addr, source });
            }
        }
    }
    if tcp.is_empty() {
        return Err(first_error.unwrap_or(Error::Listen {
            addr: crate::spec::DEFAULT_LISTEN,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address to bind"),
        }));
    }
    Ok(Bound {
        listeners: Listeners { tcp, unix: None },
        addrs: bound,
        path: None,
        socket: None,
        skipped,
    })
}

/// Of the addresses a listener is bound to, the one the path report judges it by: the first
/// that is not loopback, else the first (pure).
pub fn least_private(addrs: &[SocketAddr]) -> Option<SocketAddr> {
    addrs
        .iter()
        .find(|a| !a.ip().is_loopback())
        .or(addrs.first())
        .copied()
}

/// The addresses a listener with bind address `bind` and `port` is bound to, as ssh decides
/// them ([`bind_plan`]); a name is looked up (`getaddrinfo`).
pub async fn resolve_bind(
    bind: Option<&str>,
    gateway_ports: bool,
    port: u16,
) -> Result<Vec<SocketAddr>, Error> {
    let ips: Vec<IpAddr> = match bind_plan(bind, gateway_ports) {
        BindPlan::Loopback => vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()],
        BindPlan::Wildcard => {
            vec![Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()]
        }
        BindPlan::Address(name) => match name.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => {
                let found = tokio::net::lookup_host((name.as_str(), port))
                    .await
                    .map_err(|source| Error::ListenResolve {
                        bind: HostPort(&name, port).to_string(),
                        source,
                    })?;
                let mut ips: Vec<IpAddr> = found.map(|a| a.ip()).collect();
                ips.dedup();
                ips
            }
        },
    };
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The report judges a listener by its least private address.
    #[test]
    fn the_least_private_address_is_the_first_not_loopback() {
        let a = |s: &str| -> SocketAddr { s.parse().unwrap() };
        assert_eq!(least_private(&[]), None);
        assert_eq!(
            least_private(&[a("[::1]:1"), a("127.0.0.1:1")]),
            Some(a("[::1]:1"))
        );
        assert_eq!(
            least_private(&[a("127.0.0.1:1"), a("10.0.0.5:1"), a("0.0.0.0:1")]),
            Some(a("10.0.0.5:1"))
        );
    }

    fn resolver(text: &str) -> impl Fn(&HostQuery) -> Result<HostConfig, ConfigError> + use<> {
        let env = crate::config::LocalEnv::fixture();
        let config =
            crate::config::SshConfig::parse_str(text, std::path::Path::new("/cfg"), &env.home)
                .unwrap();
        move |q| config.resolve(q, &env)
    }

    /// Tunnels through the same bastion are one tree of sessions; another bastion (or the
    /// same host as another user) is another.
    #[test]
    fn tunnels_through_one_bastion_are_one_tree_of_sessions() {
        let trees = |toml: &str| {
            let file = crate::tunnels::parse(
                std::path::Path::new("/t.toml"),
                toml,
                std::path::Path::new("/home/me"),
            )
            .unwrap();
            let defs = file.select(&[]).unwrap();
            let config = "Host b\n  HostName 10.0.0.1\nHost c\n  HostName 10.0.0.2\n";
            session_trees(&named_tunnels(&defs, resolver(config)).unwrap())
        };
        let one = "[tunnel.a]\nvia = \"b\"\ntarget = \"db:5432\"\n\
                   [tunnel.d]\nvia = \"b,c\"\ntarget = \"cache:6379\"\n";
        assert_eq!(trees(one), 1);
        let two = "[tunnel.a]\nvia = \"b\"\ntarget = \"db:5432\"\n\
                   [tunnel.d]\nvia = \"c\"\ntarget = \"cache:6379\"\n";
        assert_eq!(trees(two), 2);
        let other_user = "[tunnel.a]\nvia = \"b\"\ntarget = \"db:5432\"\n\
                          [tunnel.d]\nvia = \"eve@b\"\ntarget = \"cache:6379\"\n";
        assert_eq!(trees(other_user), 2);
    }

    /// Each tunnel of a tunnels file becomes a plan with its own options, strict.
    #[test]
    fn a_tunnels_file_gives_one_plan_per_tunnel_with_its_options() {
        let file = crate::tunnels::parse(
            std::path::Path::new("/t.toml"),
            "[tunnel.a]\nvia = \"b\"\ntarget = \"db:5432\"\nlisten = 6543\n\
             require_encrypted = true\nsslmode = \"verify-full\"\n\
             [tunnel.c]\nvia = \"b\"\ntarget = \"cache:6379\"\nprobe = false\n\
             require_pq = true\nsocket = \"/run/s\"\n\
             [tunnel.d]\nvia = \"b\"\ntarget = \"db:5432\"\nlisten = \"localhost:6544\"\n",
            std::path::Path::new("/home/me"),
        )
        .unwrap();
        let defs = file.select(&[]).unwrap();
        let plans = named_tunnels(&defs, resolver("Host b\n  HostName 10.0.0.1\n")).unwrap();
        let (a, c) = (&plans[0], &plans[1]);
        assert_eq!((a.name.as_str(), c.name.as_str()), ("a", "c"));
        assert_eq!(
            a.listen,
            Some(ListenAt::Addr("127.0.0.1:6543".parse().unwrap()))
        );
        assert!(a.postgres && a.require_encrypted && !a.require_pq && a.strict);
        assert_eq!(a.sslmode, Some(crate::pg::client::SslMode::VerifyFull));
        assert_eq!(a.probe, Probe::Postgres);
        assert_eq!(a.chain.hops[0].config.host_name, "10.0.0.1");
        // Socket only, no TCP port; not PostgreSQL by its port; require_pq implies
        // require_encrypted.
        assert_eq!(c.listen, None);
        // `localhost`: every loopback address, as `-L localhost:6544`.
        assert_eq!(
            plans[2].listen,
            Some(ListenAt::Forward {
                bind: Some("localhost".into()),
                gateway_ports: false,
                port: 6544
            })
        );
        assert_eq!(
            c.socket_dir.as_deref(),
            Some(std::path::Path::new("/run/s"))
        );
        assert!(!c.postgres && c.require_pq && c.require_encrypted);
        assert_eq!(c.probe, Probe::Off);
    }

    /// ssh's form: the destination's LocalForward lines after the command line's, its
    /// GatewayPorts and ExitOnForwardFailure applied, what ssh -N would open besides named.
    #[test]
    fn ssh_form_takes_the_destinations_forwarding_settings() {
        let env = crate::config::LocalEnv::fixture();
        let resolve = resolver(
            "Host d\n  LocalForward 7000 db:5432\n  GatewayPorts yes\n  \
             ExitOnForwardFailure yes\n  DynamicForward 1080\n",
        );
        let dest = crate::spec::parse_hop("d").unwrap();
        let cli =
            crate::config::forward::parse_local_forward("6000:cache:6379", &|_| None).unwrap();
        let form = ssh_plans(&[], &dest, &[cli], ForwardOptions::default(), &env, resolve)
            .unwrap()
            .unwrap();
        let names: Vec<&str> = form.plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["6000:cache:6379", "7000:db:5432"]);
        assert!(form.plans.iter().all(|p| p.strict));
        assert_eq!(
            form.plans[1].listen,
            Some(ListenAt::Forward {
                bind: None,
                gateway_ports: true,
                port: 7000
            })
        );
        assert_eq!(form.not_opened.len(), 1);
        assert!(
            form.not_opened[0].starts_with("DynamicForward (/cfg:5)"),
            "{:?}",
            form.not_opened
        );
        // No -L and no LocalForward: not ssh's form.
        let none = ssh_plans(
            &[],
            &dest,
            &[],
            ForwardOptions::default(),
            &env,
            resolver(""),
        )
        .unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn a_local_socket_is_made_as_ssh_makes_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = bind_socket(&path, 0o177, false).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            drop(listener);
            // The file is left behind: without StreamLocalBindUnlink it is refused.
            assert!(bind_socket(&path, 0o177, false).is_err());
            let _listener = bind_socket(&path, 0o077, true).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        });
    }

    #[test]
    fn names_are_written_as_ssh_takes_them() {
        let env = |_: &str| None;
        for spec in [
            "63333:db.foo.com:5432",
            "127.0.0.1:6000:db:5432",
            "[::1]:6000:[fd00::5]:5432",
            "/tmp/s:db:5432",
        ] {
            let forward = crate::config::forward::parse_local_forward(spec, &env).unwrap();
            assert_eq!(forward.to_string(), spec);
        }
    }

    #[tokio::test]
    async fn a_forward_without_bind_address_listens_on_both_loopbacks_on_one_port() {
        let bound = bind_listen(&ListenAt::Forward {
            bind: None,
            gateway_ports: false,
            port: 0,
        })
        .await
        .unwrap();
        assert!(bound.addrs.iter().all(|a| a.ip().is_loopback()));
        assert!(
            bound
                .addrs
                .iter()
                .all(|a| a.port() == bound.addrs[0].port())
        );
        assert!(bound.addrs[0].is_ipv4());
    }
}
