//! Open a tunnel from a program and run a query through it with tokio-postgres.
//!
//! With your own servers (the chain resolved from ~/.ssh/config, like `pgtunnel`; keys from
//! ssh-agent or your IdentityFiles):
//!
//!     cargo run --example query -- --via joe@shell.foo.com db.foo.com:5432 \
//!         "user=joe dbname=postgres password=..." "SELECT version()"
//!
//! Out of the box, through the built-in demo (two in-process SSH servers and a throw-away
//! PostgreSQL cluster; needs PostgreSQL's server binaries):
//!
//!     cargo run --example query -- --demo

use std::net::SocketAddr;
use std::process::ExitCode;

use pgtunnel::demo::{self, Demo, DemoTarget};
use pgtunnel::spec::{DEFAULT_LISTEN, parse_hops, parse_target};
use pgtunnel::ssh::session::{AgentSource, ConnectOptions};
use pgtunnel::tunnel::{self, ConfigSource, Request};

const USAGE: &str = "usage: query --demo
       query [-F SSH_CONFIG] [--via HOP[,HOP...]] TARGET [CONNINFO [SQL]]
  CONNINFO: libpq-style settings for tokio-postgres without host/port (the tunnel supplies
  them), e.g. \"user=joe dbname=postgres password=secret\"; SQL defaults to SELECT version()";

/// The first column of every row of `sql`, as text, run through a tunnel the program opens
/// itself: resolve the chain, connect every hop, serve the local port in a task.
pub async fn query_through(
    request: Request,
    env: pgtunnel::config::LocalEnv,
    agent: AgentSource,
    conninfo: &str,
    sql: &str,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let ssh_config = tunnel::load_config(&request.config, &env)?;
    let chain = tunnel::plan(&request, &ssh_config, &env)?;
    println!("chain: {chain}");
    print!("{}", pgtunnel::plan::path::analyze(request.listen, &chain));
    let opts = ConnectOptions {
        agent,
        ..Default::default()
    };
    let tunnel = tunnel::start(&chain, request.listen, &opts).await?;
    let local: SocketAddr = tunnel.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(tunnel.serve(async move {
        let _ = stopped.await;
    }));

    let config = format!("host={} port={} {conninfo}", local.ip(), local.port());
    let result = async {
        let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        let mut out = Vec::new();
        for message in client.simple_query(sql).await? {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                out.push(row.get(0).unwrap_or("NULL").to_string());
            }
        }
        drop(client);
        let _ = connection.await;
        Ok::<_, tokio_postgres::Error>(out)
    }
    .await;

    // Stop the tunnel like Ctrl-C would: drain, then close the sessions innermost first.
    let _ = stop.send(());
    let _ = serving.await;
    Ok(result?)
}

/// The built-in demo's topology with a real PostgreSQL: the same query, no setup.
pub async fn query_demo(sql: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let demo = Demo::start_with(DemoTarget::Postgres).await?;
    let request = demo.request(DEFAULT_LISTEN);
    let env = tunnel::local_env().with_home(demo.dir());
    let conninfo = format!("user={} dbname={}", demo::USER, demo::DATABASE);
    query_through(request, env, AgentSource::Disabled, &conninfo, sql).await
}

fn parse(args: &[String]) -> Result<(Request, String, String), String> {
    let mut config = ConfigSource::Default;
    let mut via = None;
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-F" => config = ConfigSource::from_arg(Some(it.next().ok_or("-F needs a file")?)),
            "--via" | "-J" => {
                let hops = it.next().ok_or("--via needs HOP[,HOP...]")?;
                via = Some(parse_hops(hops).map_err(|e| e.to_string())?);
            }
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => positional.push(other.to_string()),
        }
    }
    let mut positional = positional.into_iter();
    let target =
        parse_target(&positional.next().ok_or("TARGET is missing")?).map_err(|e| e.to_string())?;
    let conninfo = positional
        .next()
        .unwrap_or_else(|| format!("user={} dbname=postgres", tunnel::local_env().local_user));
    let sql = positional
        .next()
        .unwrap_or_else(|| "SELECT version()".into());
    let request = Request {
        target,
        via,
        config,
        listen: DEFAULT_LISTEN,
        require_encrypted: false,
        require_pq: false,
    };
    Ok((request, conninfo, sql))
}

#[allow(dead_code)] // tests/examples.rs includes this file and calls its functions.
#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("-h") | Some("--help") => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
        Some("--demo") => {
            query_demo("SELECT 'PostgreSQL ' || current_setting('server_version') || ' answered ' || current_user || ' at ' || host(inet_client_addr())").await
        }
        Some(_) => match parse(&args) {
            Ok((request, conninfo, sql)) => {
                query_through(
                    request,
                    tunnel::local_env(),
                    AgentSource::Environment,
                    &conninfo,
                    &sql,
                )
                .await
            }
            Err(message) => {
                eprintln!("{message}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(rows) => {
            for row in rows {
                println!("{row}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("query: {e}");
            ExitCode::FAILURE
        }
    }
}
