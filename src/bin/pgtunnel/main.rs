//! The `pgtunnel` binary: parse arguments, set up logging and the progress display, call the
//! library, map errors to exit codes.

use std::collections::HashMap;
use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pgtunnel::config::LocalEnv;
#[cfg(feature = "demo")]
use pgtunnel::demo::{self, Demo};
use pgtunnel::error::{Error, ErrorKind};
use pgtunnel::event::{Event, Observer};
use pgtunnel::forward::{Backoff, Ended, Limits, Reconnect};
use pgtunnel::spec::{self, HopSpec, Target};
use pgtunnel::ssh::session::{AgentSource, ConnectOptions};
use pgtunnel::tunnel::{self, ConfigSource, Request};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

mod terminal;

/// Exit codes (also in README.md).
mod exit {
    pub const INTERNAL: u8 = 1;
    pub const CONFIG: u8 = 2;
    pub const HOST_KEY: u8 = 3;
    pub const AUTH: u8 = 4;
    pub const CONNECT: u8 = 5;
    pub const NOT_ENCRYPTED: u8 = 6;
}

const AFTER_HELP: &str = "\
Examples:
  pgtunnel demo                                         # try it: no servers needed
  pgtunnel explain db-prod                              # where every setting comes from
  pgtunnel --via joe@shell.foo.com db.foo.com:5432
  pgtunnel --via shell.foo.com,db.foo.com localhost     # every segment encrypted
  pgtunnel db-prod                                      # an ssh_config alias with ProxyJump

Exit codes:
  0 stopped by Ctrl-C/SIGTERM   2 bad arguments or config   3 host key refused
  4 authentication failed       5 connection failed or lost  6 --require-encrypted refused
  1 anything else               130 Ctrl-C while connecting";

/// Forward a local port to a PostgreSQL server (or any TCP service) through SSH hops.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// The service as seen from the last hop: host[:port] (port 5432 by default; IPv6 in
    /// brackets). Its name is resolved by the last hop.
    #[arg(value_name = "TARGET", value_parser = spec::parse_target, required = true)]
    target: Option<Target>,

    /// Jump hosts, like ssh -J: HOP[,HOP...], each an ssh_config alias, [user@]host[:port] or
    /// ssh://[user@]host[:port].
    #[arg(
        short = 'J',
        long = "via",
        value_name = "HOP[,HOP...]",
        value_delimiter = ',',
        value_parser = spec::parse_hop
    )]
    via: Option<Vec<HopSpec>>,

    /// ssh config file (default ~/.ssh/config; `none` reads none).
    #[arg(short = 'F', long = "config", value_name = "FILE")]
    config: Option<String>,

    /// Refuse to start when any segment that leaves a machine is not encrypted.
    #[arg(long)]
    require_encrypted: bool,

    #[command(flatten)]
    common: Common,
}

/// Options shared by the tunnel and `demo`.
#[derive(Debug, clap::Args)]
struct Common {
    /// Local listen address [ADDR:]PORT (default 127.0.0.1 and a free port).
    #[arg(short = 'L', long = "listen", value_name = "[ADDR:]PORT", value_parser = spec::parse_listen)]
    listen: Option<std::net::SocketAddr>,

    /// Seconds open connections may keep going after Ctrl-C/SIGTERM.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    drain_timeout: u64,

    /// When a hop's session is lost, exit (status 5) instead of re-establishing the chain.
    #[arg(long)]
    no_reconnect: bool,

    /// Seconds a connection that arrives while the chain is down waits for it.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    wait_for_chain: u64,

    /// Connections served at once; more are closed at once (default 1024, or what the
    /// open-file limit allows).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,

    /// More output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Less output: only the ready line, warnings and errors.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Show, like `ssh -G` but for the whole chain, every hop's resolved settings and the
    /// file and line that set each one; then the path report. Connects to nothing.
    Explain {
        /// The service as seen from the last hop: host[:port].
        #[arg(value_name = "TARGET", value_parser = spec::parse_target)]
        target: Target,

        /// Jump hosts, like ssh -J: HOP[,HOP...].
        #[arg(
            short = 'J',
            long = "via",
            value_name = "HOP[,HOP...]",
            value_delimiter = ',',
            value_parser = spec::parse_hop
        )]
        via: Option<Vec<HopSpec>>,

        /// ssh config file (default ~/.ssh/config; `none` reads none).
        #[arg(short = 'F', long = "config", value_name = "FILE")]
        config: Option<String>,

        #[command(flatten)]
        common: Common,
    },
    #[cfg(feature = "demo")]
    /// Run the PostgreSQL manual's bastion topology in this process (two SSH servers on
    /// loopback, shell.foo.com and db.foo.com, and a throw-away PostgreSQL cluster, or an echo
    /// service without PostgreSQL) and tunnel through it.
    Demo {
        /// Exit after the self-check (status 0 if the data came back intact, 1 otherwise).
        #[arg(long)]
        check: bool,

        /// The service: auto (PostgreSQL if installed, else echo), postgres or echo.
        #[arg(
            long,
            value_name = "auto|postgres|echo",
            default_value = "auto",
            env = "PGTUNNEL_DEMO_TARGET"
        )]
        target: demo::DemoTarget,

        #[command(flatten)]
        common: Common,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(match &args.command {
        #[cfg(feature = "demo")]
        Some(Command::Demo { common, .. }) => common,
        Some(Command::Explain { common, .. }) => common,
        None => &args.common,
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgtunnel: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgtunnel: {}", chain_of(&e));
            ExitCode::from(code_for(e.kind()))
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
    }
}

/// The error and its causes, once each.
fn chain_of(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn init_logging(args: &Common) {
    let default = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (_, 0) => "warn,pgtunnel=info",
        (_, 1) => "info,pgtunnel=debug",
        _ => "debug,pgtunnel=trace",
    };
    let filter =
        EnvFilter::try_from_env("PGTUNNEL_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // Timestamps help when debugging; at the default level they are noise.
    if args.verbose > 0 {
        builder.init();
    } else {
        builder.without_time().init();
    }
}

async fn run(args: Args) -> Result<ExitCode, Error> {
    let (target, common) = match args.command {
        #[cfg(feature = "demo")]
        Some(Command::Demo {
            check,
            target,
            common,
        }) => return run_demo(check, target, common).await,
        Some(Command::Explain {
            target,
            via,
            config,
            common,
        }) => {
            let request = Request {
                target,
                via,
                config: ConfigSource::from_arg(config.as_deref()),
                listen: common.listen.unwrap_or(spec::DEFAULT_LISTEN),
                require_encrypted: false,
            };
            let env = tunnel::local_env();
            let config = tunnel::load_config(&request.config, &env)?;
            let chain = tunnel::plan(&request, &config, &env)?;
            print!("{}", pgtunnel::plan::explain::explain(&chain));
            println!();
            print!("{}", pgtunnel::plan::path::analyze(request.listen, &chain));
            return Ok(ExitCode::SUCCESS);
        }
        None => (args.target, args.common),
    };
    let Some(target) = target else {
        // clap requires TARGET without a subcommand; keep the binary panic-free regardless.
        eprintln!("pgtunnel: TARGET is required (see --help)");
        return Ok(ExitCode::from(exit::CONFIG));
    };
    let request = Request {
        target,
        via: args.via,
        config: ConfigSource::from_arg(args.config.as_deref()),
        listen: common.listen.unwrap_or(spec::DEFAULT_LISTEN),
        require_encrypted: args.require_encrypted,
    };
    let ready = |addr: SocketAddr| format!("connect with: {}", tunnel::psql_command(addr));
    serve(
        request,
        tunnel::local_env(),
        AgentSource::Environment,
        true,
        &common,
        ready,
        None,
    )
    .await
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
    let (shell, db) = demo.ssh_addrs();
    if let Some(reason) = demo.fallback_reason() {
        warn!("demo: using an echo service instead of PostgreSQL: {reason}");
    }
    if !common.quiet {
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
    let request = demo.request(common.listen.unwrap_or(spec::DEFAULT_LISTEN));
    let ready = |addr: SocketAddr| demo.try_hint(addr);
    let postgres = demo.is_postgres();
    let after_ready: AfterReady = Box::new(move |addr| {
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
    });
    let env = LocalEnv {
        home: demo.dir().to_path_buf(),
        ..tunnel::local_env()
    };
    let code = serve(
        request,
        env,
        AgentSource::Disabled,
        // The demo's known_hosts and keys are complete: nothing to ask.
        false,
        &common,
        ready,
        Some(after_ready),
    )
    .await;
    drop(demo);
    code
}

/// Runs once the tunnel is ready; `Some(code)` stops the tunnel and exits with `code`.
type AfterReady =
    Box<dyn FnOnce(SocketAddr) -> Pin<Box<dyn Future<Output = Option<ExitCode>> + Send>> + Send>;

/// Resolve, report, connect, print the ready line, serve until Ctrl-C (or `after_ready`
/// says stop).
async fn serve(
    request: Request,
    env: LocalEnv,
    agent: AgentSource,
    ask: bool,
    common: &Common,
    ready_hint: impl Fn(SocketAddr) -> String,
    after_ready: Option<AfterReady>,
) -> Result<ExitCode, Error> {
    let config = tunnel::load_config(&request.config, &env)?;
    let chain = tunnel::plan(&request, &config, &env)?;

    // Check the path before touching the network, then bind so the report shows the port.
    let planned = pgtunnel::plan::path::analyze(request.listen, &chain);
    tunnel::check_encryption(&planned, request.require_encrypted)?;
    let listener = tunnel::bind(request.listen).await?;
    let local = listener.local_addr().map_err(|source| Error::Listen {
        addr: request.listen,
        source,
    })?;
    let report = pgtunnel::plan::path::analyze(local, &chain);
    if !common.quiet {
        println!("pgtunnel: {chain}");
        print!("{report}");
        println!();
    }

    let progress = Progress::new(common.quiet, std::io::stderr().is_terminal());
    let opts = ConnectOptions {
        observer: progress.observer(),
        prompts: if ask {
            terminal::prompts(progress.bars.clone())
        } else {
            None
        },
        agent,
        ..Default::default()
    };
    let sessions = tokio::select! {
        s = pgtunnel::ssh::session::connect_chain(&chain, &opts) => s,
        _ = tokio::signal::ctrl_c() => {
            // A question may have turned echo off.
            terminal::restore_terminal();
            progress.finish();
            eprintln!("pgtunnel: interrupted while connecting");
            return Ok(ExitCode::from(130));
        }
    };
    progress.finish();
    let sessions = sessions?;

    let reconnect = (!common.no_reconnect).then(|| Reconnect {
        chain: chain.clone(),
        opts: ConnectOptions {
            // Reconnection progress goes to the log: the spinners are done by now.
            observer: Progress::new(common.quiet, false).observer(),
            ..opts.clone()
        },
        backoff: Backoff::default(),
    });
    let limits = Limits {
        drain_timeout: Duration::from_secs(common.drain_timeout),
        pending_timeout: Duration::from_secs(common.wait_for_chain),
        max_connections: fit_connection_limit(common.max_connections),
    };
    let tunnel = pgtunnel::forward::Tunnel::new(listener, sessions, chain.target.clone())
        .limits(limits)
        .reconnect(reconnect);
    println!("ready: {local} -> {} ; {}", chain.target, ready_hint(local));

    // Stop on Ctrl-C/SIGTERM, or when the after-ready step asks to.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<ExitCode>();
    let early_exit = Arc::new(Mutex::new(None));
    if let Some(after) = after_ready {
        let early_exit = early_exit.clone();
        tokio::spawn(async move {
            if let Some(code) = after(local).await {
                if let Ok(mut slot) = early_exit.lock() {
                    *slot = Some(code);
                }
                let _ = stop_tx.send(code);
            }
        });
    }
    // Ctrl-C/SIGTERM wins over the after-ready step: a self-check cut short by the user's own
    // Ctrl-C is not a failure.
    let signalled = Arc::new(AtomicBool::new(false));
    let shutdown = {
        let signalled = signalled.clone();
        async move {
            tokio::select! {
                _ = shutdown_signal() => signalled.store(true, Ordering::SeqCst),
                Ok(_) = stop_rx => {}
            }
        }
    };
    let ended = tunnel.serve(shutdown).await;
    let early = early_exit
        .lock()
        .ok()
        .and_then(|mut slot| slot.take())
        .filter(|_| !signalled.load(Ordering::SeqCst));
    match ended {
        Ended::Shutdown { closed_at_deadline } => {
            if closed_at_deadline > 0 {
                warn!(
                    "{closed_at_deadline} connection(s) were still open at the drain deadline and were closed"
                );
            }
            info!("stopped");
            Ok(early.unwrap_or(ExitCode::SUCCESS))
        }
        Ended::ChainLost { hop, reason } => {
            eprintln!(
                "pgtunnel: lost the SSH session to {hop}: {reason} (--no-reconnect: exiting)"
            );
            Ok(ExitCode::from(exit::CONNECT))
        }
        Ended::ReconnectRefused { error, kind } => {
            eprintln!("pgtunnel: could not re-establish the chain: {error}");
            Ok(ExitCode::from(code_for(kind)))
        }
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

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    info!("shutting down");
}

/// Spinners per hop on a terminal, plain lines otherwise.
struct Progress {
    bars: Option<MultiProgress>,
    state: Arc<Mutex<HashMap<usize, ProgressBar>>>,
    quiet: bool,
}

impl Progress {
    /// Spinners when `spinners` (a terminal) and not `quiet`; log lines otherwise.
    fn new(quiet: bool, spinners: bool) -> Self {
        let bars = (!quiet && spinners).then(MultiProgress::new);
        Progress {
            bars,
            state: Arc::new(Mutex::new(HashMap::new())),
            quiet,
        }
    }

    fn observer(&self) -> Observer {
        let bars = self.bars.clone();
        let state = self.state.clone();
        let quiet = self.quiet;
        Observer::new(move |event| {
            let Some(bars) = &bars else {
                match event {
                    Event::Warning(w) => warn!("{w}"),
                    Event::HopFailed { .. } => {}
                    other if !quiet => info!("{}", describe(&other)),
                    _ => {}
                }
                return;
            };
            let Ok(mut state) = state.lock() else {
                return;
            };
            match &event {
                Event::Connecting { hop, .. } => {
                    let bar = bars.add(ProgressBar::new_spinner());
                    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                        bar.set_style(style);
                    }
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bar.set_message(describe(&event));
                    state.insert(hop.index, bar);
                }
                Event::HostKeyVerified { hop, .. } => {
                    if let Some(bar) = state.get(&hop.index) {
                        bar.set_message(describe(&event));
                    }
                }
                Event::Authenticated { hop, .. } => {
                    if let Some(bar) = state.get(&hop.index) {
                        bar.finish_with_message(format!("✓ {}", describe(&event)));
                    }
                }
                Event::HopFailed { hop } => {
                    if let Some(bar) = state.get(&hop.index) {
                        bar.abandon_with_message(format!("✗ {hop}: failed"));
                    }
                }
                Event::Warning(w) => {
                    let _ = bars.println(format!("warning: {w}"));
                }
            }
        })
    }

    fn finish(&self) {
        if let Ok(mut state) = self.state.lock() {
            let drawn = !state.is_empty();
            for (_, bar) in state.drain() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            // indicatif leaves the cursor at the end of the last bar's line: end that line,
            // or the next output (the ready line) would continue it.
            if drawn && self.bars.is_some() {
                eprintln!();
            }
        }
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::Connecting { hop, how } => format!("{hop}: connecting ({how})"),
        Event::HostKeyVerified {
            hop,
            fingerprint,
            how,
        } => format!("{hop}: host key {fingerprint} verified ({how})"),
        Event::Authenticated { hop, how } => format!("{hop}: authenticated as {how}"),
        Event::HopFailed { hop } => format!("{hop}: failed"),
        Event::Warning(w) => format!("warning: {w}"),
    }
}
