//! Several tunnels in one process: ssh-style `-L` forwards, an alias's `LocalForward` lines,
//! named tunnels (`up`). Plan (library), bind, bring every chain up (hop sessions shared
//! through one pool), report, probe, print a ready line per tunnel, serve them together.

use std::io::IsTerminal;
use std::process::ExitCode;

use pgtunnel::error::Error;
use pgtunnel::fleet::{self, Bound, ListenAt, TunnelPlan};
use pgtunnel::forward::probe;
use pgtunnel::forward::{Ended, Tunnel};
use pgtunnel::pg::client::{Endpoint, Tls};
use pgtunnel::plan::path;
use pgtunnel::ssh::session::{AgentSource, ConnectOptions, Sessions, connect_chain};
use pgtunnel::tunnel;
use tracing::warn;

use crate::args::Common;
use crate::progress::Progress;
use crate::{Questions, exit, exit_code, limits, reconnect, shutdown_signal, terminal};

/// One planned tunnel, bound and (once connected) with its sessions.
struct Ready {
    plan: TunnelPlan,
    bound: Bound,
    sessions: Sessions,
}

/// Serves `plans` until Ctrl-C/SIGTERM; the exit code of how that ended.
pub async fn serve_many(
    plans: Vec<TunnelPlan>,
    common: &Common,
) -> Result<ExitCode, Error> {
    for plan in &plans {
        let listen = plan.listen.as_ref().map(ListenAt::planned_addr);
        let planned = path::analyze(listen.unwrap_or(pgtunnel::spec::DEFAULT_LISTEN), &plan.chain);
        tunnel::check_encryption(&planned, plan.require_encrypted)
            .map_err(|e| named(&plan.name, e))?;
    }
    let bound = bind_all(plans, common).await?;
    let progress = Progress::new(common.quiet, std::io::stderr().is_terminal());
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
    let ready = probe_all(connected?, common).await?;
    let tunnels: Vec<Tunnel> = ready
        .into_iter()
        .map(|r| {
            println!(
                "ready: {} -> {} ({}){}",
                r.bound.describe(),
                r.plan.chain.target,
                r.plan.name,
                hint(&r)
            );
            Tunnel::with_listeners(r.bound.listeners, r.sessions, r.plan.chain.target.clone())
                .limits(limits(common))
                .reconnect(reconnect(
                    common,
                    &r.plan.chain,
                    &ConnectOptions {
                        require_pq: r.plan.require_pq,
                        ..opts.clone()
                    },
                    r.plan.probe,
                ))
                .postgres(r.plan.postgres)
        })
        .collect();
    let ended = tunnel::serve_all(tunnels, shutdown_signal()).await;
    let first = ended
        .iter()
        .find(|e| !matches!(e, Ended::Shutdown { .. }))
        .or(ended.first())
        .cloned()
        .unwrap_or(Ended::Shutdown {
            closed_at_deadline: 0,
        });
    Ok(exit_code(first, None))
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
    common: &Common,
) -> Result<Vec<(TunnelPlan, Bound)>, Error> {
    let mut out = Vec::new();
    let mut last_error = None;
    for plan in plans {
        match fleet::bind(&plan).await {
            Ok(bound) => {
                for skipped in &bound.skipped {
                    warn!("{}: could not listen on {skipped}", plan.name);
                }
                if !common.quiet {
                    println!("pgtunnel: {}: {}", plan.name, plan.chain);
                }
                out.push((plan, bound));
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
    match (out.is_empty(), last_error) {
        (true, Some(e)) => Err(e),
        _ => Ok(out),
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
async fn probe_all(ready: Vec<Ready>, common: &Common) -> Result<Vec<Ready>, Error> {
    for r in &ready {
        if !common.quiet {
            let report = path::analyze(r.bound.report_addr(), &r.plan.chain)
                .with_negotiated(&r.sessions.negotiated());
            println!("{}:", r.plan.name);
            print!("{report}");
            println!();
        }
        match probe::probe(&r.sessions, &r.plan.chain.target, r.plan.probe).await {
            Ok(probed) => {
                if let Some(found) = probed.describe() {
                    println!("probe: {}: {found}", r.plan.name);
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
