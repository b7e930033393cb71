//! Several tunnels in one process: ssh-style `-L` forwards, an alias's `LocalForward` lines,
//! named tunnels (`up`). Plan (library), bind, bring every chain up (hop sessions shared
//! through one pool), report, probe, print a ready line per tunnel, serve them together.

use std::io::IsTerminal;
use std::process::ExitCode;

use pgtunnel::error::Error;
use pgtunnel::fleet::{self, Bound, ListenAt, TunnelPlan};
use pgtunnel::forward::probe;
use pgtunnel::forward::socket::SocketListener;
use pgtunnel::forward::{Ended, Tunnel};
use pgtunnel::pg::client::{Endpoint, Tls};
use pgtunnel::plan::path;
use pgtunnel::ssh::session::{AgentSource, ConnectOptions, Sessions, connect_chain};
use pgtunnel::tunnel;
use std::sync::Arc;

use pgtunnel::fleet::monitor::{Monitor, Watched};
use pgtunnel::status::{self, JsonEvent, StatusServer};
use tracing::warn;

use crate::outputs::Outputs;

use crate::args::{Output, Serve};
use crate::progress::Progress;
use crate::{Questions, exit, exit_code, limits, reconnect, shutdown_signals, terminal};

/// One planned tunnel, bound and (once connected) with its sessions.
struct Ready {
    plan: TunnelPlan,
    bound: Bound,
    sessions: Sessions,
}

/// Serves `plans` until Ctrl-C/SIGTERM; the exit code of how that ended.
pub async fn serve_many(
    plans: Vec<TunnelPlan>,
    serve: &Serve,
    output: Output,
    out: &Outputs,
) -> Result<ExitCode, Error> {
    let quiet = output.quiet;
    for plan in &plans {
        let listen = plan.listen.as_ref().map(ListenAt::planned_addr);
        let planned = path::analyze(
            listen.unwrap_or(pgtunnel::spec::DEFAULT_LISTEN),
            &plan.chain,
        );
        tunnel::check_encryption(&planned, plan.require_encrypted)
            .map_err(|e| named(&plan.name, e))?;
    }
    let bound = bind_all(plans, quiet, out).await?;
    let progress = Progress::new(quiet, std::io::stderr().is_terminal());
    let opts = ConnectOptions {
        observer: progress.observer(),
        prompts: Questions::AskTheUser.prompts(&progress),
        agent: AgentSource::Environment,
        ..Default::default()
    };
    let connected = tokio::select! {
        connected = connect_all(bound, &opts) => connected,
        _ = tokio::signal::ctrl_c() => {
            terminal::restore_terminal();
            progress.finish();
            eprintln!("pgtunnel: interrupted while connecting");
            return Ok(ExitCode::from(exit::INTERRUPTED));
        }
    };
    progress.finish();
    let ready = probe_all(connected?, quiet, out).await?;
    // Listened for before the first ready line: a Ctrl-C right after it is not lost.
    let (signal, again) = shutdown_signals();
    let mut tunnels = Vec::with_capacity(ready.len());
    let mut watched = Vec::with_capacity(ready.len());
    let mut sockets = Vec::new();
    for r in ready {
        let (tunnel, w, socket) = go_live(r, (serve, quiet), &opts, out);
        watched.push(w);
        sockets.extend(socket);
        tunnels.push(tunnel);
    }
    let status = go_public(watched, out);
    let ended = tunnel::serve_all(
        tunnels,
        async {
            signal.await;
            out.notify_stopping();
        },
        again,
    )
    .await;
    if let Some(server) = status {
        server.stop().await;
    }
    drop(sockets);
    let first = how_it_ended(&ended);
    out.stopped(&first);
    Ok(exit_code(first, None))
}

/// How pgtunnel ends, from how each tunnel did: as the first that ended by itself; else as a
/// cut drain (every tunnel's cut connections counted together); else as a shutdown.
fn how_it_ended(ended: &[Ended]) -> Ended {
    let cut: usize = ended
        .iter()
        .map(|e| match e {
            Ended::Cut { cut } => *cut,
            _ => 0,
        })
        .sum();
    ended
        .iter()
        .find(|e| !matches!(e, Ended::Shutdown { .. } | Ended::Cut { .. }))
        .cloned()
        .or_else(|| {
            ended
                .iter()
                .any(|e| matches!(e, Ended::Cut { .. }))
                .then_some(Ended::Cut { cut })
        })
        .or(ended.first().cloned())
        .unwrap_or(Ended::Shutdown {
            closed_at_deadline: 0,
        })
}

/// Every tunnel is ready: the monitor follows them, `pgtunnel status` sees them, systemd
/// hears `READY=1`.
pub fn go_public(watched: Vec<Watched>, out: &Outputs) -> Option<StatusServer> {
    let monitor = Monitor::start(watched, out.on_change());
    let status = start_status_server(&monitor);
    out.notify_ready(&monitor.summary());
    status
}

/// A tunnel about to serve, as the outputs see it: its ready event, its connections'
/// events, and what the monitor follows of it.
pub fn announce(
    mut tunnel: Tunnel,
    name: &str,
    listen: Vec<String>,
    chain: &pgtunnel::plan::chain::Chain,
    report: String,
    out: &Outputs,
) -> (Tunnel, Watched) {
    out.event(&JsonEvent::Ready {
        tunnel: name.to_string(),
        listen: listen.clone(),
        target: chain.target.to_string(),
        path_report: report,
    });
    if let Some(observer) = out.connections(name) {
        tunnel = tunnel.on_connection(observer);
    }
    let watched = Watched {
        name: name.to_string(),
        listen,
        target: chain.target.to_string(),
        hops: chain.hops.iter().map(|h| h.label()).collect(),
        stats: tunnel.stats(),
        chain: tunnel.chain(),
    };
    (tunnel, watched)
}

/// A tunnel whose chain is up and checked: its ready line (and event), and the tunnel to
/// serve, what the monitor follows of it, and its PostgreSQL socket (kept until the end).
fn go_live(
    r: Ready,
    (serve, quiet): (&Serve, bool),
    opts: &ConnectOptions,
    out: &Outputs,
) -> (Tunnel, Watched, Option<SocketListener>) {
    out.say(&format!(
        "ready: {} -> {} ({}){}",
        r.bound.describe(),
        r.plan.chain.target,
        r.plan.name,
        hint(&r)
    ));
    let listen: Vec<String> = r
        .bound
        .addrs
        .iter()
        .map(ToString::to_string)
        .chain(r.bound.path.iter().map(|p| p.display().to_string()))
        .collect();
    let report = path::analyze(r.bound.report_addr(), &r.plan.chain)
        .with_negotiated(&r.sessions.negotiated())
        .to_string();
    let opts = ConnectOptions {
        require_pq: r.plan.require_pq,
        ..opts.clone()
    };
    let tunnel = Tunnel::with_listeners(r.bound.listeners, r.sessions, r.plan.chain.target.clone())
        .limits(limits(serve))
        .reconnect(reconnect(serve, quiet, &r.plan.chain, &opts, r.plan.probe))
        .postgres(r.plan.postgres);
    let (tunnel, watched) = announce(tunnel, &r.plan.name, listen, &r.plan.chain, report, out);
    (tunnel, watched, r.bound.socket)
}

/// The status interface for `pgtunnel status` (a warning when it cannot be offered).
fn start_status_server(monitor: &Monitor) -> Option<StatusServer> {
    let env = |k: &str| std::env::var(k).ok();
    let dir = status::runtime_dir(&env, nix::unistd::getuid().as_raw());
    let m = monitor.clone();
    match StatusServer::start(&dir, Arc::new(move || m.snapshot())) {
        Ok(server) => Some(server),
        Err(e) => {
            warn!("`pgtunnel status` will not see this process: {e}");
            None
        }
    }
}

fn named(name: &str, e: Error) -> Error {
    Error::Tunnel {
        name: name.to_string(),
        source: Box::new(e),
    }
}

/// Binds every tunnel's listeners. A forward that cannot listen stops pgtunnel when it is
/// strict, else it is dropped with a warning (ssh's `ExitOnForwardFailure no`); none left
/// listening is an error.
async fn bind_all(
    plans: Vec<TunnelPlan>,
    quiet: bool,
    out: &Outputs,
) -> Result<Vec<(TunnelPlan, Bound)>, Error> {
    let mut bound_all = Vec::new();
    let mut last_error = None;
    for plan in plans {
        match fleet::bind(&plan).await {
            Ok(bound) => {
                for skipped in &bound.skipped {
                    warn!("{}: could not listen on {skipped}", plan.name);
                }
                if !quiet {
                    out.say(&format!("pgtunnel: {}: {}", plan.name, plan.chain));
                }
                bound_all.push((plan, bound));
            }
            Err(e) if plan.strict => return Err(named(&plan.name, e)),
            Err(e) => {
                warn!(
                    "{}: {e}; not forwarding it (ExitOnForwardFailure no)",
                    plan.name
                );
                last_error = Some(named(&plan.name, e));
            }
        }
    }
    match (bound_all.is_empty(), last_error) {
        (true, Some(e)) => Err(e),
        _ => Ok(bound_all),
    }
}

/// Brings every chain up, in order; hops already up for an earlier tunnel are shared.
async fn connect_all(
    bound: Vec<(TunnelPlan, Bound)>,
    opts: &ConnectOptions,
) -> Result<Vec<Ready>, Error> {
    let mut out = Vec::with_capacity(bound.len());
    for (plan, bound) in bound {
        let opts = ConnectOptions {
            require_pq: plan.require_pq,
            ..opts.clone()
        };
        let sessions = connect_chain(&plan.chain, &opts)
            .await
            .map_err(|e| named(&plan.name, e))?;
        out.push(Ready {
            plan,
            bound,
            sessions,
        });
    }
    Ok(out)
}

/// Prints each tunnel's path report and probes its target: a strict tunnel's failure stops
/// pgtunnel, another's is a warning (the tunnel is served anyway, as ssh would).
async fn probe_all(ready: Vec<Ready>, quiet: bool, out: &Outputs) -> Result<Vec<Ready>, Error> {
    for r in &ready {
        let report = path::analyze(r.bound.report_addr(), &r.plan.chain)
            .with_negotiated(&r.sessions.negotiated());
        out.report(Some(&r.plan.name), &report, quiet);
        match probe::probe(&r.sessions, &r.plan.chain.target, r.plan.probe).await {
            Ok(probed) => {
                if let Some(found) = probed.describe() {
                    out.say(&format!("probe: {}: {found}", r.plan.name));
                }
            }
            Err(e) if r.plan.strict => return Err(named(&r.plan.name, e.into())),
            Err(e) => warn!(
                "{}: {e} (serving it anyway; ExitOnForwardFailure yes would stop here)",
                r.plan.name
            ),
        }
    }
    Ok(ready)
}

/// The ready line's "how to connect", for a PostgreSQL target.
fn hint(r: &Ready) -> String {
    if !r.plan.postgres {
        return String::new();
    }
    let tls = r.plan.sslmode.map(|mode| Tls {
        server_name: &r.plan.chain.target.host,
        mode,
    });
    let endpoint = match (r.bound.addrs.first(), &r.bound.socket) {
        (Some(addr), _) => Endpoint::Tcp(*addr),
        (None, Some(socket)) if tls.is_none() => Endpoint::Socket {
            dir: socket.dir(),
            port: r.plan.chain.target.port,
        },
        _ => return String::new(),
    };
    format!(" ; {}", crate::connect_hint(endpoint, tls))
}
