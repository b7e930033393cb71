//! Resolve a hop chain from an ssh_config, as `pgtunnel` would, and print it with its path
//! report: which segments are encrypted. Pure: it connects to nothing.
//!
//!     cargo run --example resolve -- [-F SSH_CONFIG] [--via HOP[,HOP...]] TARGET
//!     cargo run --example resolve -- -F docker/.state/ssh_config db.foo.com:5432   # after docker/up

use std::process::ExitCode;

use pgtunnel::spec::{DEFAULT_LISTEN, parse_hops, parse_target};
use pgtunnel::tunnel::{self, ConfigSource, Request};

const USAGE: &str = "usage: resolve [-F SSH_CONFIG] [--via HOP[,HOP...]] TARGET
  e.g. resolve --via joe@shell.foo.com db.foo.com:5432
  (reads ~/.ssh/config unless -F is given; connects to nothing)";

/// The chain, each hop's settings with where they come from, and the path report, for
/// command-line arguments (without the program name).
pub fn report(args: &[String]) -> Result<String, String> {
    let mut config = ConfigSource::Default;
    let mut via = None;
    let mut target = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-F" => {
                let file = it.next().ok_or("-F needs a file")?;
                config = ConfigSource::from_arg(Some(file));
            }
            "--via" | "-J" => {
                let hops = it.next().ok_or("--via needs HOP[,HOP...]")?;
                via = Some(parse_hops(hops).map_err(|e| e.to_string())?);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            t if target.is_none() && !t.starts_with('-') => {
                target = Some(parse_target(t).map_err(|e| e.to_string())?);
            }
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        }
    }
    let target = target.ok_or(USAGE)?;
    let request = Request {
        target,
        via,
        config,
        listen: DEFAULT_LISTEN,
        require_encrypted: false,
        require_pq: false,
    };

    // The library's steps, none of which touches the network.
    let env = tunnel::local_env();
    let ssh_config = tunnel::load_config(&request.config, &env).map_err(|e| e.to_string())?;
    let chain = tunnel::plan(&request, &ssh_config, &env).map_err(|e| e.to_string())?;
    let report = pgtunnel::plan::path::analyze(request.listen, &chain);
    Ok(format!(
        "chain: {chain}\n\n{}\n{report}",
        pgtunnel::plan::explain::explain(&chain)
    ))
}

#[allow(dead_code)] // tests/examples.rs includes this file and calls `report`.
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match report(&args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}
