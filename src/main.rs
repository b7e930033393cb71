//! The `pgtunnel` binary: parse arguments, set up logging and the progress display, call the
//! library, map errors to exit codes.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pgtunnel::error::{Error, ErrorKind};
use pgtunnel::event::{Event, Observer};
use pgtunnel::forward::Ended;
use pgtunnel::session::ConnectOptions;
use pgtunnel::spec::{self, HopSpec, Target};
use pgtunnel::tunnel::{self, ConfigSource, Request};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

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
  pgtunnel --via joe@shell.foo.com db.foo.com:5432
  pgtunnel --via shell.foo.com,db.foo.com localhost     # every segment encrypted
  pgtunnel db-prod                                      # an ssh_config alias with ProxyJump

Exit codes:
  0 stopped by Ctrl-C/SIGTERM   2 bad arguments or config   3 host key refused
  4 authentication failed       5 connection failed or lost  6 --require-encrypted refused
  1 anything else";

/// Forward a local port to a PostgreSQL server (or any TCP service) through SSH hops.
#[derive(Debug, Parser)]
#[command(version, about, after_help = AFTER_HELP)]
struct Args {
    /// The service as seen from the last hop: host[:port] (port 5432 by default; IPv6 in
    /// brackets). Its name is resolved by the last hop.
    #[arg(value_name = "TARGET", value_parser = spec::parse_target)]
    target: Target,

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

    /// Local listen address [ADDR:]PORT (default 127.0.0.1 and a free port).
    #[arg(short = 'L', long = "listen", value_name = "[ADDR:]PORT", value_parser = spec::parse_listen)]
    listen: Option<std::net::SocketAddr>,

    /// Refuse to start when any segment that leaves a machine is not encrypted.
    #[arg(long)]
    require_encrypted: bool,

    /// Seconds open connections may keep going after Ctrl-C/SIGTERM.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    drain_timeout: u64,

    /// More output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Less output: only the ready line, warnings and errors.
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args);
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

fn init_logging(args: &Args) {
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
    let request = Request {
        target: args.target.clone(),
        via: args.via.clone(),
        config: ConfigSource::from_arg(args.config.as_deref()),
        listen: args.listen.unwrap_or(spec::DEFAULT_LISTEN),
        require_encrypted: args.require_encrypted,
    };
    let env = tunnel::local_env();
    let config = tunnel::load_config(&request.config, &env)?;
    let chain = tunnel::plan(&request, &config, &env)?;

    // Check the path before touching the network, then bind so the report shows the port.
    let planned = pgtunnel::path::analyze(request.listen, &chain);
    tunnel::check_encryption(&planned, request.require_encrypted)?;
    let listener = tunnel::bind(request.listen).await?;
    let local = listener.local_addr().map_err(|source| Error::Listen {
        addr: request.listen,
        source,
    })?;
    let report = pgtunnel::path::analyze(local, &chain);
    if !args.quiet {
        println!("pgtunnel: {chain}");
        print!("{report}");
        println!();
    }

    let progress = Progress::new(args.quiet);
    let opts = ConnectOptions {
        observer: progress.observer(),
        ..Default::default()
    };
    let sessions = pgtunnel::session::connect_chain(&chain, &opts).await;
    progress.finish();
    let sessions = sessions?;

    let tunnel = pgtunnel::forward::Tunnel::new(listener, sessions, chain.target.clone())
        .drain_timeout(Duration::from_secs(args.drain_timeout));
    println!(
        "ready: {local} -> {} ; connect with: {}",
        chain.target,
        tunnel::psql_command(local)
    );
    match tunnel.serve(shutdown_signal()).await {
        Ended::Shutdown { closed_at_deadline } => {
            if closed_at_deadline > 0 {
                warn!(
                    "{closed_at_deadline} connection(s) were still open at the drain deadline and were closed"
                );
            }
            info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Ended::ChainLost { hop } => {
            eprintln!(
                "pgtunnel: the SSH session to {hop} ended; the tunnel cannot carry anything more"
            );
            Ok(ExitCode::from(exit::CONNECT))
        }
    }
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
    fn new(quiet: bool) -> Self {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(MultiProgress::new);
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
            for (_, bar) in state.drain() {
                if !bar.is_finished() {
                    bar.abandon();
                }
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
