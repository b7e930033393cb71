//! The steps from a request to a running tunnel, each usable on its own (the binary prints
//! between them) or all at once with [`start`].

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;

use crate::config::{ConfigError, LocalEnv, SshConfig};
use crate::error::Error;
use crate::forward::probe::Probe;
use crate::forward::{Backoff, Ended, Reconnect, Tunnel};
use crate::plan::chain::{Chain, resolve_chain};
use crate::plan::names::ConfigNames;
use crate::plan::path::PathReport;
use crate::spec::{HopSpec, Target};
use crate::ssh::session::{ConnectOptions, connect_chain};

/// Which ssh_config to read (`-F`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `~/.ssh/config` if it exists.
    Default,
    /// `-F none`: no config at all.
    None,
    /// `-F FILE`: this file, which must exist.
    File(PathBuf),
}

impl ConfigSource {
    /// From the `-F` argument.
    pub fn from_arg(arg: Option<&str>) -> Self {
        match arg {
            None => ConfigSource::Default,
            Some("none") => ConfigSource::None,
            Some(path) => ConfigSource::File(PathBuf::from(path)),
        }
    }
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// TARGET.
    pub target: Target,
    /// `--via`, if given.
    pub via: Option<Vec<HopSpec>>,
    /// `-F`.
    pub config: ConfigSource,
    /// `--listen`.
    pub listen: SocketAddr,
    /// `--require-encrypted`.
    pub require_encrypted: bool,
    /// `--require-pq`: every SSH hop's key exchange must be post-quantum (checked after each
    /// hop's handshake, see [`ConnectOptions::require_pq`]).
    pub require_pq: bool,
}

/// This machine's user, home and host name, for ssh_config defaults and tokens.
pub fn local_env() -> LocalEnv {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten();
    let local_user = user
        .as_ref()
        .map(|u| u.name.clone())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".into());
    // Like OpenSSH: `~`, `%d` and ~/.ssh/config come from the password database, not $HOME
    // (which is only the fallback when the user has no entry).
    let home = user
        .map(|u| u.dir)
        .filter(|d| !d.as_os_str().is_empty())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from)
        })
        .or_else(dirs::home_dir)
        .unwrap_or_else(|| PathBuf::from("/"));
    let local_hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    LocalEnv {
        local_user,
        home,
        local_hostname,
        uid: nix::unistd::getuid().as_raw(),
        env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
        resolver: crate::config::Resolver::system(),
    }
}

/// Reads the ssh_config named by `source`.
pub fn load_config(source: &ConfigSource, env: &LocalEnv) -> Result<SshConfig, ConfigError> {
    match source {
        ConfigSource::None => Ok(SshConfig::empty()),
        ConfigSource::Default => SshConfig::load_default(&env.home),
        ConfigSource::File(path) => SshConfig::load(path),
    }
}

/// Resolves the hop chain for a request (pure, given the config).
/// The chain knows the config's aliases ([`Chain::names`]), and a TARGET without a hop is
/// told whether it is an alias (or close to one).
pub fn plan(request: &Request, config: &SshConfig, env: &LocalEnv) -> Result<Chain, Error> {
    let names = ConfigNames::of(config);
    let chain = resolve_chain(request.via.as_deref(), &request.target, |q| {
        config.resolve(q, env)
    })
    .map_err(|e| e.with_names(&names))?;
    Ok(Chain { names, ..chain })
}

/// Reads the request's ssh_config and resolves its hop chain: [`load_config`], then [`plan`].
pub fn resolve(request: &Request, env: &LocalEnv) -> Result<Chain, Error> {
    let config = load_config(&request.config, env)?;
    plan(request, &config, env)
}

/// Refuses a path with unencrypted segments when `require_encrypted` is set.
pub fn check_encryption(report: &PathReport, require_encrypted: bool) -> Result<(), Error> {
    let segments = report.unencrypted();
    if require_encrypted && !segments.is_empty() {
        return Err(Error::NotEncrypted { segments });
    }
    Ok(())
}

/// Binds the local listener.
pub async fn bind(listen: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Listen {
            addr: listen,
            source,
        })
}

/// Binds, brings the chain up and returns a tunnel ready to [`Tunnel::serve`], which
/// re-establishes the chain (same options, default backoff) when it is lost.
pub async fn start(
    chain: &Chain,
    listen: SocketAddr,
    opts: &ConnectOptions,
) -> Result<Tunnel, Error> {
    let listener = bind(listen).await?;
    let sessions = connect_chain(chain, opts).await?;
    Ok(
        Tunnel::new(listener, sessions, chain.target.clone()).reconnect(Some(Reconnect {
            chain: chain.clone(),
            opts: opts.clone(),
            backoff: Backoff::default(),
            probe: Probe::Off,
        })),
    )
}

/// Whether the target is PostgreSQL: `--pg` / `--no-pg` (`choice`) decide, else its port
/// (5432).
pub fn is_postgres(target: &Target, choice: Option<bool>) -> bool {
    choice.unwrap_or(target.port == crate::spec::DEFAULT_TARGET_PORT)
}

/// A `psql` command line for a tunnel listening on `addr`.
pub fn psql_command(addr: SocketAddr) -> String {
    format!(
        "psql \"{}\"",
        crate::pg::client::conninfo(addr.into(), None).keywords
    )
}

/// Serves every tunnel until `shutdown` resolves, or one of them ends by itself (its chain
/// lost with reconnecting off, or re-establishing it refused): then the others are stopped
/// too, each draining its connections; `cut` resolving meanwhile closes every tunnel's open
/// connections at once ([`Ended::Cut`]). How each ended, in the tunnels' order.
pub async fn serve_all(
    tunnels: Vec<Tunnel>,
    shutdown: impl std::future::Future<Output = ()>,
    cut: impl std::future::Future<Output = ()>,
) -> Vec<Ended> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (cut_all, cutting) = tokio::sync::watch::channel(false);
    let (ended_tx, mut ended_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let handles: Vec<_> = tunnels
        .into_iter()
        .map(|tunnel| {
            let mut stopped = stopped.clone();
            let mut cutting = cutting.clone();
            let ended_tx = ended_tx.clone();
            tokio::spawn(async move {
                let ended = tunnel
                    .serve_until(
                        async move {
                            let _ = stopped.wait_for(|s| *s).await;
                        },
                        async move {
                            if cutting.wait_for(|c| *c).await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        },
                    )
                    .await;
                if !matches!(ended, Ended::Shutdown { .. } | Ended::Cut { .. }) {
                    let _ = ended_tx.send(());
                }
                ended
            })
        })
        .collect();
    drop(ended_tx);
    tokio::select! {
        () = shutdown => {}
        Some(()) = ended_rx.recv() => {}
    }
    stop.send_replace(true);
    let joined = async {
        let mut out = Vec::with_capacity(handles.len());
        for handle in handles {
            out.push(handle.await.unwrap_or(Ended::Shutdown {
                closed_at_deadline: 0,
            }));
        }
        out
    };
    tokio::pin!(joined, cut);
    tokio::select! {
        out = &mut joined => out,
        () = &mut cut => {
            cut_all.send_replace(true);
            joined.await
        }
    }
}
