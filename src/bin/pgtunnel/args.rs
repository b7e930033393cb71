//! The command line (clap): the tunnel's arguments, and the `explain` and `demo`
//! subcommands.

use std::net::SocketAddr;

use clap::Parser;
use pgtunnel::config::forward::LocalForward;
#[cfg(feature = "demo")]
use pgtunnel::demo;
use pgtunnel::pg::client::SslMode;
use pgtunnel::spec::{self, DashL, HopSpec, Target};
use pgtunnel::tunnel::{ConfigSource, Request};

const AFTER_HELP: &str = "\
Examples:
  pgtunnel demo                                         # try it: no servers needed
  pgtunnel explain db-prod                              # where every setting comes from
  pgtunnel --via joe@shell.foo.com db.foo.com:5432
  pgtunnel --via shell.foo.com,db.foo.com localhost     # every segment encrypted
  pgtunnel db-prod                                      # an ssh_config alias with ProxyJump
  pgtunnel -L 63333:db.foo.com:5432 joe@shell.foo.com   # ssh's own -L syntax, -L repeatable
  pgtunnel up                                           # the tunnels in tunnels.toml
  pgtunnel status                                       # what is running

Exit codes:
  0 stopped by Ctrl-C/SIGTERM   2 bad arguments or config   3 host key refused
  4 authentication failed       5 connection failed or lost
  6 --require-encrypted or --require-pq refused   7 the target did not answer
  8 cannot listen on the local port (in use)
  1 anything else               130 Ctrl-C while connecting, or twice while draining";

/// Forward a local port to a PostgreSQL server (or any TCP service) through SSH hops.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The service as seen from the last hop: host[:port] (port 5432 by default; IPv6 in
    /// brackets). Its name is resolved by the last hop. With ssh-style -L forwards, or for an
    /// alias with LocalForward lines: ssh's destination, [user@]host (the last hop).
    #[arg(value_name = "TARGET", required = true)]
    pub target: Option<String>,

    /// One JSON event per line on stdout (ready, connection opened/closed, hop lost/recovered,
    /// stopped) for supervisors; the human output goes to stderr.
    #[arg(long)]
    pub json: bool,

    /// Accepted for ssh compatibility (`ssh -N`): pgtunnel never runs a remote command.
    #[arg(short = 'N', hide = true)]
    pub no_command: bool,

    #[command(flatten)]
    pub route: Route,

    /// Refuse to start when any segment that leaves a machine is not encrypted.
    #[arg(long)]
    pub require_encrypted: bool,

    /// Refuse any SSH hop whose key exchange is not post-quantum (mlkem768x25519,
    /// sntrup761x25519), checked after each hop's handshake, before authenticating; implies
    /// --require-encrypted.
    #[arg(long)]
    pub require_pq: bool,

    /// The target is PostgreSQL (the default for port 5432): clients that cannot be carried
    /// are told why in PostgreSQL's protocol.
    #[arg(long, conflicts_with = "no_pg")]
    pub pg: bool,

    /// The target is not PostgreSQL, whatever its port: nothing PostgreSQL-specific is done.
    #[arg(long)]
    pub no_pg: bool,

    /// Verified TLS to the server through the tunnel (require, verify-ca, verify-full): the
    /// ready line's connection string and a `--` command's environment name the server
    /// (host=TARGET's name hostaddr=127.0.0.1 sslmode=MODE), so its certificate and .pgpass
    /// entries match.
    #[arg(long, value_name = "MODE", value_parser = SslMode::parse)]
    pub sslmode: Option<SslMode>,

    /// Listen on a private Unix socket DIR/.s.PGSQL.<port> (as PostgreSQL names its own, so
    /// `psql -h DIR` works): DIR is created 0700 (an existing one must be yours and private);
    /// no TCP port unless -L is given too.
    #[arg(long, value_name = "DIR")]
    pub socket: Option<std::path::PathBuf>,

    /// Do not check the target before the ready line (and after re-establishing the chain):
    /// by default one connection is opened to it through the chain (a PostgreSQL target gets
    /// an SSLRequest).
    #[arg(long)]
    pub no_probe: bool,

    #[command(flatten)]
    pub common: Common,

    /// `-- COMMAND [ARGS...]`: run COMMAND with the tunnel up (PGHOST/PGPORT point at it;
    /// {host} and {port} in ARGS are replaced), exit with its status, then tear the tunnel
    /// down. Nothing of pgtunnel's own goes to stdout; stderr gets warnings and errors.
    #[arg(last = true, value_name = "COMMAND")]
    pub run: Option<Vec<String>>,
}

impl Args {
    /// How much every command says (`-v`, `-q`).
    pub fn output(&self) -> Output {
        match &self.command {
            #[cfg(feature = "demo")]
            Some(Command::Demo { common, .. }) => common.output,
            Some(Command::Explain { output, .. })
            | Some(Command::Check { output, .. })
            | Some(Command::Up { output, .. })
            | Some(Command::List { output, .. })
            | Some(Command::Status { output, .. }) => *output,
            Some(Command::Completions { .. }) | Some(Command::Man { .. }) => Output::default(),
            None => self.common.output,
        }
    }
}

/// How the chain is found: the tunnel's and `explain`'s.
#[derive(Debug, Clone, clap::Args)]
pub struct Route {
    /// Jump hosts, like ssh -J: HOP[,HOP...], each an ssh_config alias, [user@]host[:port] or
    /// ssh://[user@]host[:port].
    #[arg(
        short = 'J',
        long = "via",
        value_name = "HOP[,HOP...]",
        value_delimiter = ',',
        value_parser = spec::parse_hop
    )]
    pub via: Option<Vec<HopSpec>>,

    /// ssh config file (default ~/.ssh/config; `none` reads none).
    #[arg(short = 'F', long = "config", value_name = "FILE")]
    pub config: Option<String>,
}

impl Route {
    /// The request for `target` along this route; `--require-pq` implies
    /// `--require-encrypted`.
    pub fn request(
        self,
        target: Target,
        forwards: &Forwards,
        require_encrypted: bool,
        require_pq: bool,
    ) -> Request {
        Request {
            target,
            via: self.via,
            config: ConfigSource::from_arg(self.config.as_deref()),
            listen: forwards.listen(),
            require_encrypted: require_encrypted || require_pq,
            require_pq,
        }
    }
}

/// The options of the commands that serve a tunnel (the tunnel itself and `demo`): where
/// it listens, how it serves, how much it says.
#[derive(Debug, clap::Args)]
pub struct Common {
    #[command(flatten)]
    pub forwards: Forwards,

    #[command(flatten)]
    pub serve: Serve,

    #[command(flatten)]
    pub output: Output,
}

/// `-L`: where the tunnel listens, or ssh's own forwards.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Forwards {
    /// Local listen address [ADDR:]PORT (default 127.0.0.1 and a free port; ADDR may be a
    /// name, every address it resolves to is used); or, repeatable, ssh's own forwards
    /// [bind_address:]port:host:hostport (also local_socket:host:hostport), the positional
    /// argument being then ssh's destination: `pgtunnel -L 63333:db.foo.com:5432
    /// joe@shell.foo.com`.
    #[arg(
        short = 'L',
        long = "listen",
        value_name = "[ADDR:]PORT | [BIND:]PORT:HOST:HOSTPORT",
        value_parser = dash_l
    )]
    pub given: Vec<DashL>,
}

/// How a tunnel is served: the tunnel's, `up`'s and `demo`'s.
#[derive(Debug, Clone, clap::Args)]
pub struct Serve {
    /// Seconds open connections may keep going after Ctrl-C/SIGTERM (a second Ctrl-C cuts
    /// them at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub drain_timeout: u64,

    /// When a hop's session is lost, exit (status 5) instead of re-establishing the chain.
    #[arg(long)]
    pub no_reconnect: bool,

    /// Seconds a connection that arrives while the chain is down waits for it.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    pub wait_for_chain: u64,

    /// Connections served at once; more are closed at once (default 1024, or what the
    /// open-file limit allows).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
}

/// How much is said on stderr: every command's.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Output {
    /// More output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less output: only the ready line, warnings and errors.
    #[arg(short, long)]
    pub quiet: bool,
}

impl Forwards {
    /// `--listen`, or the default.
    pub fn listen(&self) -> SocketAddr {
        self.listen_given().unwrap_or(spec::DEFAULT_LISTEN)
    }

    /// `-L [ADDR:]PORT`, if given (a name as its planned address: see [`Common::listen_name`]).
    pub fn listen_given(&self) -> Option<SocketAddr> {
        self.given.iter().find_map(|f| match f {
            DashL::Listen(addr) => Some(*addr),
            DashL::ListenName { port, .. } => {
                Some(SocketAddr::new(spec::DEFAULT_LISTEN.ip(), *port))
            }
            DashL::Forward(_) => None,
        })
    }

    /// `-L NAME:PORT`, if given: resolved when binding.
    pub fn listen_name(&self) -> Option<(&str, u16)> {
        self.given.iter().find_map(|f| match f {
            DashL::ListenName { host, port } => Some((host.as_str(), *port)),
            _ => None,
        })
    }

    /// The ssh-style `-L` forwards, in order.
    pub fn ssh_forwards(&self) -> Vec<LocalForward> {
        self.given
            .iter()
            .filter_map(|f| match f {
                DashL::Forward(forward) => Some(forward.clone()),
                DashL::Listen(_) | DashL::ListenName { .. } => None,
            })
            .collect()
    }
}

/// `-L`, with `${VAR}` from the environment (as ssh expands it).
fn dash_l(input: &str) -> Result<DashL, spec::SpecError> {
    spec::parse_dash_l(input, &|name| std::env::var(name).ok())
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show, like `ssh -G` but for the whole chain, every hop's resolved settings and the
    /// file and line that set each one; then the path report. Connects to nothing.
    Explain {
        /// The service as seen from the last hop: host[:port] (with ssh-style -L forwards:
        /// ssh's destination, [user@]host).
        #[arg(value_name = "TARGET")]
        target: String,

        #[command(flatten)]
        route: Route,

        // -L: where the tunnel would listen (the path report judges it), or ssh's forwards.
        #[command(flatten)]
        forwards: Forwards,

        #[command(flatten)]
        output: Output,
    },
    /// Connect every hop and open one connection to the target, report each step (address,
    /// time, host key and what vouched for it, authentication, what was negotiated; the
    /// target, PostgreSQL or not, TLS offered; the path report), then exit: 0 when everything
    /// works, the failing step's exit code otherwise. Opens no listener.
    Check {
        /// The service as seen from the last hop: host[:port].
        #[arg(value_name = "TARGET", value_parser = spec::parse_target)]
        target: Target,

        #[command(flatten)]
        route: Route,

        /// The report as one JSON object on stdout (for scripts and monitoring).
        #[arg(long)]
        json: bool,

        /// The target is PostgreSQL (the default for port 5432): it is sent an SSLRequest.
        #[arg(long, conflicts_with = "no_pg")]
        pg: bool,

        /// The target is not PostgreSQL: only a channel is opened to it.
        #[arg(long)]
        no_pg: bool,

        #[command(flatten)]
        output: Output,
    },
    /// Start the tunnels of a tunnels file (all, or those NAMEd), over shared hop sessions.
    Up {
        /// Tunnels to start (default: every tunnel in the file).
        #[arg(value_name = "NAME")]
        names: Vec<String>,

        /// The tunnels file (default $XDG_CONFIG_HOME/pgtunnel/tunnels.toml or
        /// ~/.config/pgtunnel/tunnels.toml).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<std::path::PathBuf>,

        /// ssh config file (default: the file's `ssh_config`, else ~/.ssh/config).
        #[arg(short = 'F', long = "config", value_name = "FILE")]
        config: Option<String>,

        /// One JSON event per line on stdout; the human output goes to stderr.
        #[arg(long)]
        json: bool,

        #[command(flatten)]
        serve: Serve,

        #[command(flatten)]
        output: Output,
    },
    /// Show the tunnels a tunnels file defines.
    List {
        /// The tunnels file (default as for `up`).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<std::path::PathBuf>,

        #[command(flatten)]
        output: Output,
    },
    /// Show every running pgtunnel of this user: each tunnel's listen address, chain with each
    /// hop's state (up / lost / reconnecting, since when), open connections, bytes each way,
    /// connections refused. Asks them through private Unix sockets in
    /// $XDG_RUNTIME_DIR/pgtunnel (or /tmp/pgtunnel-UID).
    Status {
        /// One JSON array of processes on stdout (for scripts).
        #[arg(long)]
        json: bool,

        #[command(flatten)]
        output: Output,
    },
    /// Print a shell completion script for SHELL on stdout (bash, zsh, fish, elvish,
    /// powershell): `source <(pgtunnel completions bash)`; README.md says where to install it.
    Completions {
        /// The shell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page pgtunnel(1) on stdout (`pgtunnel man | man -l -`); with DIR,
    /// write it and a page per subcommand (pgtunnel-explain.1, ...) there.
    Man {
        /// The directory to write the pages to, e.g. ~/.local/share/man/man1.
        #[arg(value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
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
