//! The `pgtunnel` binary, after bore's: parse the arguments, build the tunnel (resolve,
//! report, connect), serve until something stops it, and turn how it stopped into the exit
//! code. Logging and the progress display are set up here; the library never touches the
//! terminal.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use local::Local;
use pgtunnel::config::{ConfigError, LocalEnv, SshConfig};
#[cfg(feature = "demo")]
use pgtunnel::demo::{self, Demo};
use pgtunnel::error::{Error, ErrorKind, chain_of};
use pgtunnel::fleet::{self, ForwardOptions, TunnelPlan};
use pgtunnel::forward::probe::{self, Probe, Probed};
use pgtunnel::forward::socket::SocketListener;
use pgtunnel::forward::{Backoff, Ended, Limits, Reconnect, Tunnel};
use pgtunnel::pg::client::{
    ClientCommand, ClientError, Endpoint, SslMode, Tls, client_command, conninfo,
};
use pgtunnel::plan::chain::Chain;
use pgtunnel::plan::path;
use pgtunnel::spec;
use pgtunnel::ssh::prompt::Prompts;
use pgtunnel::ssh::session::{AgentSource, ConnectOptions, Sessions, connect_chain};
use pgtunnel::tunnel::{self, ConfigSource, Request};
use tokio::sync::oneshot;
use tracing::{info, warn};

mod args;
mod argv;
mod generated;
mod local;
mod logging;
mod many;
mod outputs;
mod progress;
mod terminal;

use args::{Args, Command, Common, Forwards, Output, Serve};
use progress::Progress;

/// Exit codes (also in README.md and `--help`).
mod exit {
    pub const INTERNAL: u8 = 1;
    pub const CONFIG: u8 = 2;
    pub const HOST_KEY: u8 = 3;
    pub const AUTH: u8 = 4;
    pub const CONNECT: u8 = 5;
    pub const NOT_ENCRYPTED: u8 = 6;
    pub const PROBE: u8 = 7;
    pub const LISTEN: u8 = 8;
    /// Ctrl-C while the chain was coming up.
    pub const INTERRUPTED: u8 = 130;
}

fn main() -> ExitCode {
    raise_heap_trim_threshold();
    let mut args = parse_args();
    if args.run.is_some() && args.common.output.verbose == 0 {
        // `-- COMMAND`: the command owns the terminal; pgtunnel says only warnings and errors.
        args.common.output.quiet = true;
    }
    logging::init(args.output());
    // `up`'s tunnels are planned before the runtime is built: the trees of sessions they make
    // decide its threads.
    let up = match &args.command {
        Some(Command::Up {
            names,
            file,
            config,
            ..
        }) => Some(plan_up(names, file.clone(), config.clone())),
        _ => None,
    };
    let trees = match &up {
        Some(Ok(plans)) => Some(fleet::session_trees(plans)),
        _ => None,
    };
    let runtime = match runtime_for(&args, trees).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgtunnel: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    match runtime.block_on(run(args, up)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgtunnel: {}", chain_of(&e));
            if let Some(hint) = port_in_use_hint(&e) {
                eprintln!("pgtunnel: hint: {hint}");
            }
            ExitCode::from(code_for(e.kind()))
        }
    }
}

/// Frees one 1 MiB block that glibc's malloc took from mmap. glibc then raises its mmap
/// threshold to 1 MiB and its heap trim threshold to 2 MiB (mallopt(3), "dynamic mmap
/// threshold"): the heap's top is no longer given back to the system and taken again
/// (`brk`, and the kernel zeroing the pages anew) while channel messages of 32 KiB come and
/// go, a `brk` per few packets before (issue 13). Other allocators ignore it.
fn raise_heap_trim_threshold() {
    // Zeros: calloc maps fresh pages and touches none of them.
    drop(std::hint::black_box(vec![0u8; 1 << 20]));
}

/// The command line, options written before a subcommand moved after it ([`argv`]); a
/// mistake is reported as clap reports its own (exit 2).
fn parse_args() -> Args {
    use clap::{CommandFactory, FromArgMatches};
    // Built once: it is most of clap's start-up work.
    let mut cmd = Args::command();
    let argv = match argv::reorder(&cmd, std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(message) => cmd
            .error(clap::error::ErrorKind::ArgumentConflict, message)
            .exit(),
    };
    let mut matches = cmd
        .try_get_matches_from_mut(argv)
        .unwrap_or_else(|e| e.exit());
    Args::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.format(&mut cmd).exit())
}

/// After "cannot listen on ADDR: Address already in use": who holds the port (from /proc,
/// where readable), and what to change.
fn port_in_use_hint(e: &Error) -> Option<String> {
    use pgtunnel::forward::holder;
    let (addr, tunnel) = holder::in_use(e)?;
    let advice = match tunnel {
        None => "listen on another port (-L PORT), or leave -L out and the system picks a \
                 free one"
            .to_string(),
        Some(name) => format!("give {name} another local port"),
    };
    let user = |uid| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    };
    Some(holder::in_use_hint(
        &holder::holders(addr.port()),
        &advice,
        &user,
    ))
}

/// The async runtime: one thread where one chain does all the work (the TARGET form and
/// ssh's form, whose forwards all go through the destination's chain; `check`), or one
/// tree of shared sessions (`up` with every tunnel behind the same first hop: `trees`),
/// which saves the cross-thread wake-ups of a work-stealing pool (issue 13: 10-18 % less
/// CPU, the same throughput); a thread per tree, up to one per core, where several trees
/// work at once (`up`), and per core for the in-process servers of `demo`.
/// `PGTUNNEL_THREADS=N` overrides it: 1 is one thread, more is a pool of N.
fn runtime_for(args: &Args, trees: Option<usize>) -> tokio::runtime::Builder {
    let threads = std::env::var("PGTUNNEL_THREADS")
        .ok()
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|&n| n > 0);
    let one_chain = matches!(
        &args.command,
        None | Some(
            Command::Check { .. }
                | Command::Explain { .. }
                | Command::Status { .. }
                | Command::List { .. }
                | Command::Completions { .. }
                | Command::Man { .. }
        )
    );
    match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None if one_chain || trees == Some(1) => tokio::runtime::Builder::new_current_thread(),
        None => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if let Some(trees) = trees {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                b.worker_threads(trees.min(cores));
            }
            b
        }
    }
}

fn code_for(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Config => exit::CONFIG,
        ErrorKind::HostKey => exit::HOST_KEY,
        ErrorKind::Auth => exit::AUTH,
        ErrorKind::Connect => exit::CONNECT,
        ErrorKind::NotEncrypted => exit::NOT_ENCRYPTED,
        ErrorKind::Probe => exit::PROBE,
        ErrorKind::Listen => exit::LISTEN,
    }
}

/// Runs the command; `up`: its tunnels, when already planned ([`plan_up`]).
async fn run(args: Args, up: Option<Result<Vec<TunnelPlan>, Error>>) -> Result<ExitCode, Error> {
    match args.command {
        #[cfg(feature = "demo")]
        Some(Command::Demo {
            check,
            target,
            common,
        }) => run_demo(check, target, common).await,
        Some(Command::Status { json, .. }) => Ok(show_status(json).await),
        Some(Command::Completions { shell }) => Ok(generated::completions(shell)),
        Some(Command::Man { dir }) => Ok(generated::man(dir.as_deref())),
        Some(Command::List { file, .. }) => {
            let env = tunnel::local_env();
            let file = load_tunnels(file, &env)?;
            print!("{}", file.list());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Up {
            names,
            file,
            config,
            json,
            serve,
            output,
        }) => {
            let plans = match up {
                Some(planned) => planned?,
                None => plan_up(&names, file, config)?,
            };
            let out = outputs::Outputs::new(json);
            many::serve_many(plans, &serve, output, &out).await
        }
        Some(Command::Explain {
            target,
            route,
            forwards,
            ..
        }) => run_explain(target, route, &forwards).await,
        Some(Command::Check {
            target,
            route,
            json,
            pg,
            no_pg,
            output,
        }) => {
            let request = route.request(target, &Forwards::default(), false, false);
            let postgres = pg.then_some(true).or(no_pg.then_some(false));
            run_check(&request, json, postgres, output).await
        }
        None => run_tunnel(args).await,
    }
}

/// `pgtunnel [OPTIONS] TARGET` or ssh's form: the ssh_config is read once, for deciding
/// which form this is and for the tunnel. (Its error, in the TARGET form, is reported
/// where it was before: after TARGET is parsed.)
async fn run_tunnel(args: Args) -> Result<ExitCode, Error> {
    let Some(positional) = args.target.clone() else {
        // clap requires TARGET without a subcommand; keep the binary panic-free regardless.
        eprintln!("pgtunnel: TARGET is required (see --help)");
        return Ok(ExitCode::from(exit::CONFIG));
    };
    let env = tunnel::local_env();
    let config = tunnel::load_config(&ConfigSource::from_arg(args.route.config.as_deref()), &env);
    let config = match config {
        Err(e) if !args.common.forwards.ssh_forwards().is_empty() => return Err(e.into()),
        config => config,
    };
    if let Ok(ssh) = &config
        && let Some(plans) = ssh_style(&args, &positional, ssh, &env)?
    {
        let out = outputs::Outputs::new(args.json);
        return many::serve_many(plans, &args.common.serve, args.common.output, &out).await;
    }
    let target = spec::parse_target(&positional)?;
    let setup = Setup {
        request: args.route.request(
            target,
            &args.common.forwards,
            args.require_encrypted,
            args.require_pq,
        ),
        env,
        config,
        agent: AgentSource::Environment,
        questions: Questions::AskTheUser,
        ready_hint: None,
        self_check: None,
        postgres: args.pg.then_some(true).or(args.no_pg.then_some(false)),
        probe: !args.no_probe,
        command: args.run,
        sslmode: args.sslmode,
        socket: args.socket,
        json: args.json,
    };
    serve(setup, &args.common).await
}

/// The ssh-style tunnels, when the command line asks for them: `-L` forwards
/// (`[bind:]port:host:hostport`), the positional argument being ssh's destination; or, with
/// no `-L` and no `--via`, a destination whose ssh_config has `LocalForward` lines (as
/// `ssh -N ALIAS` opens them). `None`: the TARGET form.
fn ssh_style(
    args: &Args,
    positional: &str,
    config: &SshConfig,
    env: &LocalEnv,
) -> Result<Option<Vec<TunnelPlan>>, Error> {
    let forwards = args.common.forwards.ssh_forwards();
    let explicit = !forwards.is_empty();
    if !dash_l_form(args, explicit)? {
        return Ok(None);
    }
    let destination = match spec::parse_hop(positional) {
        Ok(d) if explicit || d.port.is_none() => d,
        Ok(_) => return Ok(None),
        Err(e) if explicit => return Err(e.into()),
        Err(_) => return Ok(None),
    };
    let options = ForwardOptions {
        postgres: args.pg.then_some(true).or(args.no_pg.then_some(false)),
        probe: !args.no_probe,
        require_encrypted: args.require_encrypted || args.require_pq,
        require_pq: args.require_pq,
        ..Default::default()
    };
    let jumps = args.route.via.clone().unwrap_or_default();
    let planned = plan_ssh_form(config, env, &jumps, &destination, &forwards, options);
    match planned {
        // Not ssh's form after all: the TARGET form reports its own errors.
        Err(_) | Ok(None) if !explicit => Ok(None),
        Ok(Some(plans)) if !explicit => {
            info!("{positional}: opening its LocalForward lines (as ssh -N {positional} would)");
            Ok(Some(plans))
        }
        other => other,
    }
}

/// [`fleet::ssh_plans`] with the ssh_config read; what it does not open is warned of.
fn plan_ssh_form(
    config: &SshConfig,
    env: &LocalEnv,
    jumps: &[spec::HopSpec],
    destination: &spec::HopSpec,
    forwards: &[pgtunnel::config::forward::LocalForward],
    options: ForwardOptions,
) -> Result<Option<Vec<TunnelPlan>>, Error> {
    let Some(form) = fleet::ssh_plans(jumps, destination, forwards, options, env, |q| {
        config.resolve(q, env)
    })?
    else {
        return Ok(None);
    };
    for line in &form.not_opened {
        warn!(
            "{}: {line} is not opened: pgtunnel opens local forwards only (ssh -N would open \
             it too)",
            destination.host
        );
    }
    Ok(Some(form.plans))
}

/// Whether the command line may be ssh's form (`explicit`: it has ssh-style `-L` forwards);
/// options that cannot go with it are refused.
fn dash_l_form(args: &Args, explicit: bool) -> Result<bool, Error> {
    let dash_l = &args.common.forwards;
    let listens = dash_l.given.len() - dash_l.ssh_forwards().len();
    if listens > 1 && !explicit {
        return Err(usage(
            "-L",
            "-L [ADDR:]PORT given more than once: TARGET's tunnel has one listen address; \
             for several forwards write them as ssh does, -L PORT:HOST:HOSTPORT, with the \
             SSH server as the last argument",
        ));
    }
    refuse_mixed_forwards(dash_l)?;
    let target_form = listens > 0
        || args.route.via.is_some()
        || args.run.is_some()
        || args.socket.is_some()
        || args.sslmode.is_some();
    if !explicit && target_form {
        return Ok(false);
    }
    for (given, option) in [
        (args.socket.is_some(), "--socket"),
        (args.sslmode.is_some(), "--sslmode"),
        (args.run.is_some(), "-- COMMAND"),
    ] {
        if given {
            return Err(usage(
                option,
                "applies to the TARGET form (pgtunnel [--via HOPS] TARGET); with ssh-style -L \
                 forwards, listen on a socket with -L /path/to/socket:HOST:PORT",
            ));
        }
    }
    Ok(true)
}

/// `-L [ADDR:]PORT` and ssh-style `-L PORT:HOST:HOSTPORT` forwards on one command line.
fn refuse_mixed_forwards(forwards: &Forwards) -> Result<(), Error> {
    let ssh = forwards.ssh_forwards().len();
    if ssh > 0 && forwards.given.len() > ssh {
        return Err(usage(
            "-L",
            "-L [ADDR:]PORT (where TARGET's tunnel listens) and ssh-style -L \
             PORT:HOST:HOSTPORT forwards cannot be mixed: write every forward as ssh does",
        ));
    }
    Ok(())
}

/// A command-line mistake, as the spec parsers report them.
fn usage(what: &'static str, reason: &'static str) -> Error {
    Error::Spec(spec::SpecError::Usage {
        what,
        reason: reason.into(),
    })
}

/// `pgtunnel up [NAME...]`: the tunnels file's tunnels, served together.
/// `pgtunnel up`'s tunnels: the tunnels file (`names` of it, or all), each resolved.
fn plan_up(
    names: &[String],
    file: Option<std::path::PathBuf>,
    config: Option<String>,
) -> Result<Vec<TunnelPlan>, Error> {
    let env = tunnel::local_env();
    let file = load_tunnels(file, &env)?;
    // -F on the command line wins over the file's `ssh_config`.
    let source = match config {
        Some(arg) => ConfigSource::from_arg(Some(&arg)),
        None => file.ssh_config.clone().unwrap_or(ConfigSource::Default),
    };
    let ssh_config = tunnel::load_config(&source, &env)?;
    let defs = file.select(names)?;
    fleet::named_tunnels(&defs, |q| ssh_config.resolve(q, &env))
}

/// The tunnels file: `-f FILE`, or the default one.
fn load_tunnels(
    file: Option<std::path::PathBuf>,
    env: &LocalEnv,
) -> Result<pgtunnel::tunnels::TunnelsFile, Error> {
    let lookup = |k: &str| env.env.get(k).cloned();
    let path = file.unwrap_or_else(|| pgtunnel::tunnels::default_path(&env.home, &lookup));
    Ok(pgtunnel::tunnels::load(&path, &env.home)?)
}

/// `pgtunnel status`: every running pgtunnel of this user, asked through its socket.
async fn show_status(json: bool) -> ExitCode {
    use pgtunnel::status;
    let env = |k: &str| std::env::var(k).ok();
    let mut processes = Vec::new();
    let mut failed = false;
    for dir in status::search_dirs(&env, nix::unistd::getuid().as_raw()) {
        match status::collect(&dir).await {
            Ok(found) => {
                for problem in &found.problems {
                    warn!("{problem}");
                }
                processes.extend(found.processes);
            }
            Err(e) => {
                eprintln!("pgtunnel: {e}");
                failed = true;
            }
        }
    }
    processes.sort_by_key(|p| p.pid);
    processes.dedup_by_key(|p| p.pid);
    let text = match json {
        true => format!("{}\n", status::to_json(&processes)),
        false => status::render(&processes, status::unix_now()),
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    match failed {
        true => ExitCode::from(exit::CONFIG),
        false => ExitCode::SUCCESS,
    }
}

/// `pgtunnel explain` in ssh's form: `forwards` (`-L PORT:HOST:HOSTPORT`) through
/// `destination`, or, with none given, the `LocalForward` lines of `destination`'s alias:
/// its chain, then each forward's path report. `None`: no forward (explain TARGET as usual).
fn explain_forwards(
    config: &SshConfig,
    env: &LocalEnv,
    jumps: &[spec::HopSpec],
    destination: &spec::HopSpec,
    forwards: &[pgtunnel::config::forward::LocalForward],
) -> Result<Option<ExitCode>, Error> {
    let options = ForwardOptions {
        probe: false,
        ..Default::default()
    };
    let plans = match plan_ssh_form(config, env, jumps, destination, forwards, options) {
        Ok(Some(plans)) => plans,
        Err(e) if !forwards.is_empty() => return Err(e),
        _ => return Ok(None),
    };
    let Some(first) = plans.first() else {
        return Ok(None);
    };
    let host = &destination.host;
    let mut text = match forwards.is_empty() {
        true => format!("{host} opens its LocalForward lines (as ssh -N {host} would):\n\n"),
        false => format!("the -L forwards through {host} (as ssh -N would open them):\n\n"),
    };
    text.push_str(&pgtunnel::plan::explain::explain(&first.chain));
    for plan in &plans {
        let listen = plan.listen.as_ref().map(fleet::ListenAt::planned_addr);
        let report = path::analyze(listen.unwrap_or(spec::DEFAULT_LISTEN), &plan.chain);
        text.push_str(&format!("\n{}:\n{report}", plan.name));
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(Some(ExitCode::SUCCESS))
}

/// `pgtunnel explain TARGET` (or ssh's form, with `-L PORT:HOST:HOSTPORT` forwards or an
/// alias's `LocalForward` lines): connects to nothing.
async fn run_explain(
    target: String,
    route: args::Route,
    forwards: &Forwards,
) -> Result<ExitCode, Error> {
    let env = tunnel::local_env();
    let config = tunnel::load_config(&ConfigSource::from_arg(route.config.as_deref()), &env);
    let ssh_forwards = forwards.ssh_forwards();
    refuse_mixed_forwards(forwards)?;
    if !ssh_forwards.is_empty() {
        // ssh's form: TARGET is ssh's destination.
        let destination = spec::parse_hop(&target)?;
        let jumps = route.via.clone().unwrap_or_default();
        return explain_forwards(&config?, &env, &jumps, &destination, &ssh_forwards)?
            .ok_or_else(|| usage("-L", "no forward to explain"));
    }
    let target = spec::parse_target(&target)?;
    if let (None, Ok(ssh), false) = (&route.via, &config, target.port_given) {
        let destination = spec::HopSpec {
            user: None,
            host: target.host.clone(),
            port: None,
        };
        if let Some(code) = explain_forwards(ssh, &env, &[], &destination, &[])? {
            return Ok(code);
        }
    }
    let request = route.request(target, forwards, false, false);
    // `-L NAME:PORT`: judged by the addresses the tunnel would listen on, as it is.
    let listen = match forwards.listen_name() {
        Some((host, port)) => {
            fleet::least_private(&fleet::resolve_bind(Some(host), false, port).await?)
                .unwrap_or(request.listen)
        }
        None => request.listen,
    };
    explain(&request, listen, &config?, &env)
}

/// `pgtunnel explain`: every hop's settings and where they come from, then the path report
/// for a listener on `listen`.
fn explain(
    request: &Request,
    listen: SocketAddr,
    config: &SshConfig,
    env: &LocalEnv,
) -> Result<ExitCode, Error> {
    let chain = tunnel::plan(request, config, env)?;
    let text = format!(
        "{}\n{}",
        pgtunnel::plan::explain::explain(&chain),
        path::analyze(listen, &chain)
    );
    // A reader that stops early (`| head`) is not an error, as for any filter.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// `pgtunnel check`: every hop and the target, reported (text, or JSON with `--json`).
async fn run_check(
    request: &Request,
    json: bool,
    postgres: Option<bool>,
    output: Output,
) -> Result<ExitCode, Error> {
    let env = tunnel::local_env();
    let chain = tunnel::resolve(request, &env)?;
    let progress = Progress::new(output.quiet || json, std::io::stderr().is_terminal());
    let opts = ConnectOptions {
        observer: progress.observer(),
        prompts: Questions::AskTheUser.prompts(&progress),
        agent: AgentSource::Environment,
        ..Default::default()
    };
    let probe = Probe::for_target(true, tunnel::is_postgres(&chain.target, postgres));
    let report = pgtunnel::check::check(&chain, &opts, probe).await;
    progress.finish();
    let text = if json {
        format!("{}\n", report.to_json())
    } else {
        report.to_string()
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(match report.failed() {
        None => ExitCode::SUCCESS,
        Some(kind) => ExitCode::from(code_for(kind)),
    })
}

/// `pgtunnel demo`: the manual's topology in-process, then the real tunnel through it.
#[cfg(feature = "demo")]
async fn run_demo(
    check: bool,
    target: demo::DemoTarget,
    common: Common,
) -> Result<ExitCode, Error> {
    // Ctrl-C while PostgreSQL is being set up: stop there. (Its server runs in a process group
    // of its own, so the signal reaches only us; the cluster is stopped and removed when its
    // start-up task hands it back, before the runtime exits.)
    let started = tokio::select! {
        biased;
        _ = shutdown_signal() => return Ok(ExitCode::SUCCESS),
        started = Demo::start_with(target) => started,
    };
    let demo = match started {
        Ok(d) => d,
        Err(e) => {
            eprintln!("pgtunnel: {}", chain_of(&e));
            return Ok(ExitCode::from(exit::INTERNAL));
        }
    };
    if let Some(reason) = demo.fallback_reason() {
        warn!("demo: using an echo service instead of PostgreSQL: {reason}");
    }
    if !common.output.quiet {
        introduce(&demo);
    }
    let request = demo.request(common.forwards.listen());
    let env = tunnel::local_env().with_home(demo.dir());
    let setup = Setup {
        config: tunnel::load_config(&request.config, &env),
        request,
        env,
        agent: AgentSource::Disabled,
        // The demo's known_hosts and keys are complete: nothing to ask.
        questions: Questions::NoneToAsk,
        ready_hint: Some(Box::new(|addr| demo.try_hint(addr))),
        self_check: Some(demo_self_check(demo.is_postgres(), check)),
        postgres: Some(demo.is_postgres()),
        probe: true,
        command: None,
        sslmode: None,
        socket: None,
        json: false,
    };
    let code = serve(setup, &common).await;
    drop(demo);
    code
}

/// What the demo runs and what to type.
#[cfg(feature = "demo")]
fn introduce(demo: &Demo) {
    let (shell, db) = demo.ssh_addrs();
    println!(
        "demo: SSH servers {} on {shell} and {} on {db} (in this process, fresh host keys; \
         {} may reach only {}), {}",
        demo::SHELL,
        demo::DB,
        demo::SHELL,
        demo::DB,
        demo.service_description()
    );
    println!("demo: running the equivalent of: {}", demo.command_line());
    println!();
}

/// The demo's check once the tunnel is ready: the data must come back intact. With `--check`
/// (or when it fails) it stops the tunnel.
#[cfg(feature = "demo")]
fn demo_self_check(postgres: bool, check: bool) -> SelfCheck {
    Box::new(move |addr| {
        Box::pin(async move {
            let result = if postgres {
                Demo::postgres_check(addr).await
            } else {
                Demo::self_check(addr).await
            };
            match result {
                Ok(line) => {
                    println!("{line}");
                    if check { Some(ExitCode::SUCCESS) } else { None }
                }
                Err(e) => {
                    eprintln!("pgtunnel: {e}");
                    Some(ExitCode::from(exit::INTERNAL))
                }
            }
        })
    })
}

/// Runs once the tunnel is ready; `Some(code)` stops the tunnel and exits with `code`.
type SelfCheck =
    Box<dyn FnOnce(SocketAddr) -> Pin<Box<dyn Future<Output = Option<ExitCode>> + Send>> + Send>;

/// Whether bringing the chain up may ask the user (passwords, passphrases, new host keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Questions {
    /// On the terminal or through `SSH_ASKPASS`, as OpenSSH would.
    AskTheUser,
    /// Never: everything needed is configured (the demo).
    #[cfg(feature = "demo")]
    NoneToAsk,
}

impl Questions {
    fn prompts(self, progress: &Progress) -> Option<Prompts> {
        match self {
            Questions::AskTheUser => terminal::prompts(progress.bars()),
            #[cfg(feature = "demo")]
            Questions::NoneToAsk => None,
        }
    }
}

/// What to bring up and how: the tunnel's or the demo's.
struct Setup<'a> {
    request: Request,
    env: LocalEnv,
    /// The request's ssh_config, read (or why it could not be).
    config: Result<SshConfig, ConfigError>,
    agent: AgentSource,
    questions: Questions,
    /// What to do with the port, for the ready line (`None`: how to connect, see
    /// [`connect_hint`]).
    ready_hint: Option<Box<dyn Fn(SocketAddr) -> String + 'a>>,
    self_check: Option<SelfCheck>,
    /// `--pg` / `--no-pg` (see [`tunnel::is_postgres`]).
    postgres: Option<bool>,
    /// Probe the target before the ready line (not `--no-probe`).
    probe: bool,
    /// `-- COMMAND [ARGS...]`: run it with the tunnel up, instead of serving until a signal.
    command: Option<Vec<String>>,
    /// `--sslmode`: verified TLS to the server (names it in the hint and the environment).
    sslmode: Option<SslMode>,
    /// `--socket DIR`.
    socket: Option<std::path::PathBuf>,
    /// `--json`: event lines on stdout, the human output on stderr.
    json: bool,
}

/// Why the binary stopped a serving tunnel.
#[derive(Debug)]
enum Stop {
    /// Ctrl-C or SIGTERM.
    Signal,
    /// The self-check asked to exit with this code.
    SelfCheck(ExitCode),
    /// `-- COMMAND` ended (or could not start): its status.
    Command(u8),
}

/// Resolve, report, connect, print the ready line, serve until a [`Stop`] (or the tunnel
/// ends by itself).
async fn serve(setup: Setup<'_>, common: &Common) -> Result<ExitCode, Error> {
    let Setup {
        request,
        env,
        config,
        agent,
        questions,
        ready_hint,
        self_check,
        postgres,
        probe,
        command,
        sslmode,
        socket,
        json,
    } = setup;
    let out = outputs::Outputs::new(json);
    let chain = tunnel::plan(&request, &config?, &env)?;
    let mut local = plan_and_bind(&request, &chain, common, socket.as_deref(), &out).await?;
    let tls = sslmode.map(|mode| Tls {
        server_name: &chain.target.host,
        mode,
    });
    let endpoint = local
        .endpoint(tls.is_some())
        .ok_or(ClientError::TlsWithoutTcp)?;
    let client = command
        .map(|argv| client_command(&argv, endpoint, tls, env.env.keys().map(String::as_str)))
        .transpose()?;
    let hint = match (&ready_hint, local.tcp_addr()) {
        (Some(hint), Some(addr)) => hint(addr),
        _ => connect_hint(endpoint, tls),
    };
    let quiet = common.output.quiet;
    let progress = Progress::new(quiet, std::io::stderr().is_terminal());
    let opts = ConnectOptions {
        observer: progress.observer(),
        prompts: questions.prompts(&progress),
        agent,
        require_pq: request.require_pq,
        ..Default::default()
    };
    let Some(sessions) = connect(&chain, &opts, &progress).await? else {
        return Ok(ExitCode::from(exit::INTERRUPTED));
    };
    let report = path_report(&request, &chain, &local, &sessions);
    out.report(None, &report, quiet);
    let postgres = tunnel::is_postgres(&chain.target, postgres);
    let probe = Probe::for_target(probe, postgres);
    let Some(probed) = probe_or_interrupt(&sessions, &chain, probe).await? else {
        return Ok(ExitCode::from(exit::INTERRUPTED));
    };
    if let (Some(found), None) = (probed.describe(), &client) {
        out.say(&format!("probe: {found}"));
    }
    let where_ = local.describe();
    let self_addr = local.tcp_addr();
    let listen = local.addresses();
    let tunnel = Tunnel::with_listeners(local.listeners(), sessions, chain.target.clone())
        .limits(limits(&common.serve))
        .reconnect(reconnect(&common.serve, quiet, &chain, &opts, probe))
        .postgres(postgres);
    let name = chain
        .target_alias
        .clone()
        .unwrap_or(chain.target.to_string());
    let signals = shutdown_signals();
    let (tunnel, watched) = many::announce(tunnel, &name, listen, &chain, report.to_string(), &out);
    let status = many::go_public(vec![watched], &out);
    let ready = format!("ready: {where_} -> {} ; {hint}", chain.target);
    let self_check = self_check.zip(self_addr);
    let (ended, stop) = serve_until(tunnel, client, self_check, (&ready, signals), &out).await;
    if let Some(status) = status {
        status.stop().await;
    }
    drop(local);
    out.stopped(&ended);
    Ok(exit_code(ended, stop))
}

/// Serves until the `--` command ends, or else (after the ready line) `signal` (listened
/// for since before the ready event) or the self-check stops it; `again`, a second signal
/// while connections drain, closes them at once.
async fn serve_until(
    tunnel: Tunnel,
    client: Option<ClientCommand>,
    self_check: Option<(SelfCheck, SocketAddr)>,
    (ready, (signal, again)): (&str, (impl Future<Output = ()>, impl Future<Output = ()>)),
    out: &outputs::Outputs,
) -> (Ended, Option<Stop>) {
    let mut stop = None;
    let ended = match client {
        Some(client) => {
            tunnel
                .serve(async { stop = Some(run_client(client).await) })
                .await
        }
        None => {
            out.say(ready);
            let self_check = self_check.map(|(check, addr)| start_self_check(check, addr));
            tunnel
                .serve_until(
                    async { stop = Some(stop_reason(self_check, signal).await) },
                    again,
                )
                .await
        }
    };
    (ended, stop)
}

/// The path report, now that every hop is up: each SSH segment says what it negotiated.
fn path_report(
    request: &Request,
    chain: &Chain,
    local: &Local,
    sessions: &Sessions,
) -> path::PathReport {
    let mut report = path::analyze(local.report_addr().unwrap_or(request.listen), chain)
        .with_negotiated(&sessions.negotiated());
    if let Some(socket) = &local.socket {
        report = report.with_local_socket(socket.path(), !local.tcp.is_empty());
    }
    report
}

/// Probes the target; `None` when Ctrl-C came first. Ctrl-C during the probe stops as
/// during connecting (tokio holds SIGINT from the first `ctrl_c()` on: a signal nobody
/// awaits would be lost).
async fn probe_or_interrupt(
    sessions: &Sessions,
    chain: &Chain,
    probe: Probe,
) -> Result<Option<Probed>, Error> {
    tokio::select! {
        probed = probe::probe(sessions, &chain.target, probe) => Ok(Some(probed?)),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("pgtunnel: interrupted while checking the target");
            sessions.disconnect().await;
            Ok(None)
        }
    }
}

/// Resolves the chain and checks the path before touching the network, then binds (so the
/// report shows the port) and prints the chain. (The path report follows once the hops are
/// up: it names what each negotiated.)
async fn plan_and_bind(
    request: &Request,
    chain: &Chain,
    common: &Common,
    socket: Option<&std::path::Path>,
    out: &outputs::Outputs,
) -> Result<Local, Error> {
    let planned = path::analyze(request.listen, chain);
    tunnel::check_encryption(&planned, request.require_encrypted)?;
    // `--socket` alone opens no TCP port.
    let dash_l = &common.forwards;
    let tcp = match socket.is_none() || dash_l.listen_given().is_some() {
        true => local::bind_tcp(request.listen, dash_l.listen_name()).await?,
        false => Vec::new(),
    };
    let socket = socket
        .map(|dir| SocketListener::bind(dir, chain.target.port))
        .transpose()?;
    let local = Local { tcp, socket };
    // A name is judged by the addresses it resolved to.
    if let (Some(_), Some(addr)) = (dash_l.listen_name(), local.report_addr()) {
        tunnel::check_encryption(&path::analyze(addr, chain), request.require_encrypted)?;
    }
    if !common.output.quiet {
        out.say(&format!("pgtunnel: {chain}"));
    }
    Ok(local)
}

/// Brings the chain up, showing progress; `None` when Ctrl-C interrupted it.
async fn connect(
    chain: &Chain,
    opts: &ConnectOptions,
    progress: &Progress,
) -> Result<Option<Sessions>, Error> {
    let sessions = tokio::select! {
        s = connect_chain(chain, opts) => s,
        _ = tokio::signal::ctrl_c() => {
            // A question may have turned echo off.
            terminal::restore_terminal();
            progress.finish();
            eprintln!("pgtunnel: interrupted while connecting");
            return Ok(None);
        }
    };
    progress.finish();
    sessions.map(Some)
}

/// How to bring the chain up again, unless `--no-reconnect`.
fn reconnect(
    serve: &Serve,
    quiet: bool,
    chain: &Chain,
    opts: &ConnectOptions,
    probe: Probe,
) -> Option<Reconnect> {
    (!serve.no_reconnect).then(|| Reconnect {
        chain: chain.clone(),
        opts: ConnectOptions {
            // Reconnection progress goes to the log: the spinners are done by now.
            observer: Progress::new(quiet, false).observer(),
            ..opts.clone()
        },
        backoff: Backoff::default(),
        probe,
    })
}

fn limits(serve: &Serve) -> Limits {
    Limits {
        drain_timeout: Duration::from_secs(serve.drain_timeout),
        pending_timeout: Duration::from_secs(serve.wait_for_chain),
        max_connections: fit_connection_limit(serve.max_connections),
    }
}

/// Runs the self-check on its own task (it may outlive a stop, and print its result while
/// connections drain); its answer arrives on the receiver, if it asks to stop.
fn start_self_check(check: SelfCheck, local: SocketAddr) -> oneshot::Receiver<ExitCode> {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        if let Some(code) = check(local).await {
            let _ = tx.send(code);
        }
    });
    rx
}

/// Resolves with the first reason to stop: Ctrl-C/SIGTERM, or the self-check asking to.
async fn stop_reason(
    self_check: Option<oneshot::Receiver<ExitCode>>,
    signal: impl Future<Output = ()>,
) -> Stop {
    let check = async {
        match self_check {
            Some(rx) => match rx.await {
                Ok(code) => code,
                // The check passed and does not stop the tunnel.
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = signal => Stop::Signal,
        code = check => Stop::SelfCheck(code),
    }
}

/// The ready line's "how to connect": a `psql` command with libpq's keyword string, and the
/// same as a URI.
fn connect_hint(local: Endpoint<'_>, tls: Option<Tls<'_>>) -> String {
    let info = conninfo(local, tls);
    format!(
        "connect with: psql \"{}\" (or the URI {})",
        info.keywords, info.uri
    )
}

/// Runs `-- COMMAND` with the terminal passed through, until it exits: its status (or 128 +
/// the signal that ended it). SIGINT is left to the command (the terminal sends it to both:
/// psql cancels its query, the tunnel stays); SIGTERM and SIGHUP are passed on to it. If the
/// tunnel ends first (the chain lost with --no-reconnect), the command is killed.
async fn run_client(client: ClientCommand) -> Stop {
    for warning in &client.warnings {
        warn!("{warning}");
    }
    let Some((program, args)) = client.argv.split_first() else {
        return Stop::Command(exit::CONFIG);
    };
    let mut cmd = tokio::process::Command::new(program);
    // The command is not the service systemd supervises.
    cmd.args(args)
        .kill_on_drop(true)
        .env_remove("NOTIFY_SOCKET");
    for (k, v) in &client.set {
        cmd.env(k, v);
    }
    for k in &client.remove {
        cmd.env_remove(k);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("pgtunnel: cannot run {program}: {e}");
            // As a shell says it: 127 not found, 126 not executable.
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Stop::Command(code);
        }
    };
    let status = forward_signals_until_exit(&mut child).await;
    use std::os::unix::process::ExitStatusExt;
    Stop::Command(pgtunnel::pg::client::exit_status(
        status.as_ref().ok().and_then(|s| s.code()),
        status.as_ref().ok().and_then(|s| s.signal()),
    ))
}

/// Waits for `child`, passing SIGTERM and SIGHUP on to it; SIGINT (Ctrl-C) is swallowed
/// here, the terminal delivers it to the child itself.
async fn forward_signals_until_exit(
    child: &mut tokio::process::Child,
) -> std::io::Result<std::process::ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
    ) else {
        return child.wait().await;
    };
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let pass_on = |sig: nix::sys::signal::Signal| {
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    };
    loop {
        tokio::select! {
            status = child.wait() => return status,
            _ = term.recv() => pass_on(nix::sys::signal::Signal::SIGTERM),
            _ = hup.recv() => pass_on(nix::sys::signal::Signal::SIGHUP),
            _ = int.recv() => {}
        }
    }
}

/// The exit code for how serving ended and what stopped it (`None`: nothing did, the tunnel
/// ended by itself). Whichever stop came first counts: a self-check cut short by the user's
/// own Ctrl-C is not a failure.
fn exit_code(ended: Ended, stop: Option<Stop>) -> ExitCode {
    match ended {
        Ended::Shutdown { closed_at_deadline } => {
            if closed_at_deadline > 0 {
                warn!(
                    "{closed_at_deadline} connection(s) were still open at the drain deadline and were closed"
                );
            }
            info!("stopped");
            match stop {
                Some(Stop::SelfCheck(code)) => code,
                Some(Stop::Command(code)) => ExitCode::from(code),
                Some(Stop::Signal) | None => ExitCode::SUCCESS,
            }
        }
        Ended::Cut { cut } => {
            eprintln!(
                "pgtunnel: stopped at once (second Ctrl-C): {}",
                cut_count(cut)
            );
            ExitCode::from(exit::INTERRUPTED)
        }
        Ended::ChainLost { hop, reason } => {
            eprintln!(
                "pgtunnel: lost the SSH session to {hop}: {reason} (--no-reconnect: exiting)"
            );
            ExitCode::from(exit::CONNECT)
        }
        Ended::ReconnectRefused { error, kind } => {
            eprintln!("pgtunnel: could not re-establish the chain: {error}");
            ExitCode::from(code_for(kind))
        }
    }
}

/// "1 open connection was cut", "2 open connections were cut".
fn cut_count(cut: usize) -> String {
    match cut {
        1 => "1 open connection was cut".into(),
        n => format!("{n} open connections were cut"),
    }
}

/// The exit status for how serving ended (for `--json`'s `stopped` event).
fn exit_number(ended: &Ended) -> i32 {
    match ended {
        Ended::Shutdown { .. } => 0,
        Ended::Cut { .. } => i32::from(exit::INTERRUPTED),
        Ended::ChainLost { .. } => i32::from(exit::CONNECT),
        Ended::ReconnectRefused { kind, .. } => i32::from(code_for(*kind)),
    }
}

/// The connection limit: `requested` or the default, within the open-file limit (raised
/// towards the hard limit when needed), keeping some descriptors for sessions and files.
fn fit_connection_limit(requested: Option<u32>) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const RESERVED: u64 = 64;
    let want = requested.map_or(pgtunnel::forward::DEFAULT_MAX_CONNECTIONS, |n| n as usize);
    let Ok((mut soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return want;
    };
    let need = (want as u64).saturating_add(RESERVED);
    if soft < need {
        let raised = need.min(hard);
        if setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok() {
            soft = raised;
        }
    }
    let fits = usize::try_from(soft.saturating_sub(RESERVED).max(1)).unwrap_or(want);
    if fits < want {
        if requested.is_some() {
            warn!(
                "--max-connections {want} does not fit the open-file limit ({soft}): serving at \
                 most {fits} connections at once"
            );
        }
        return fits;
    }
    want
}

/// Resolves on Ctrl-C or SIGTERM. The signals are listened for from the call on (not from
/// the first poll): a Ctrl-C right after the ready line is not lost. (The demo's set-up.)
#[cfg(feature = "demo")]
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let first = nth_signal(counted_signals(), 1);
    async move {
        first.await;
        info!("shutting down");
    }
}

/// Two futures: the first Ctrl-C or SIGTERM (stop accepting, drain), and the second (close
/// what is still open at once). Both count signals from the call on.
fn shutdown_signals() -> (
    impl Future<Output = ()> + Send + 'static,
    impl Future<Output = ()> + Send + 'static,
) {
    let counted = counted_signals();
    let (first, second) = (nth_signal(counted.clone(), 1), nth_signal(counted, 2));
    let first = async move {
        first.await;
        info!("shutting down (Ctrl-C again to close open connections at once)");
    };
    (first, second)
}

/// How many Ctrl-Cs and SIGTERMs have arrived since the call.
fn counted_signals() -> tokio::sync::watch::Receiver<u32> {
    use tokio::signal::unix::{SignalKind, signal};
    let (count, counted) = tokio::sync::watch::channel(0u32);
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    tokio::spawn(async move {
        match (int, term) {
            (Ok(mut int), Ok(mut term)) => loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                count.send_modify(|n| *n += 1);
            },
            _ => {
                while tokio::signal::ctrl_c().await.is_ok() {
                    count.send_modify(|n| *n += 1);
                }
            }
        }
    });
    counted
}

/// Resolves once `n` signals have arrived.
async fn nth_signal(mut counted: tokio::sync::watch::Receiver<u32>, n: u32) {
    if counted.wait_for(|c| *c >= n).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc's chunk header: the size word just before the pointer, whose bit 1 says the
    /// chunk was mapped by itself (`IS_MMAPPED`).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn mapped_by_itself(block: &[u8]) -> bool {
        // SAFETY: glibc's malloc keeps the chunk's size word in the 8 bytes before every
        // pointer it returns; the block is live while it is read.
        let size_word = unsafe { block.as_ptr().cast::<usize>().sub(1).read_unaligned() };
        size_word & 2 != 0
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn after_the_threshold_is_raised_a_half_mebibyte_block_comes_from_the_heap() {
        // 512 KiB: above glibc's default mmap threshold (128 KiB), below the raised one
        // (1 MiB), and so within the heap whose top is no longer trimmed below 2 MiB.
        raise_heap_trim_threshold();
        let block = std::hint::black_box(vec![1u8; 512 * 1024]);
        assert!(!mapped_by_itself(&block), "a 512 KiB block was mmapped");
        // The check itself is sound: a block above the raised threshold is mapped.
        let big = std::hint::black_box(vec![1u8; 4 << 20]);
        assert!(mapped_by_itself(&big), "a 4 MiB block came from the heap");
    }
}
