//! Rows 4–6: pgbench through each tool to the lab's PostgreSQL cluster (scale 1,
//! initialised directly, not tunnelled), select-only (`-S`), `-T PGBENCH_SECONDS` (default
//! 10) per run:
//! - `-c 8 -j 2`: transactions per second;
//! - `-C -c 1` and `-C -c 4 -j 2`: a new connection per transaction, pgbench's "average
//!   connection time".
//!
//! libpq settings are the same through both tools: `sslmode=disable` (the tunnel already
//! encrypts; TLS inside it would add the same handshake and crypto to both and hide the
//! tunnels' difference), the read-only role [`PG_BENCH_USER`] with `trust` authentication
//! (SCRAM would add the same ~6 ms of key stretching to both; see `Lab::bench_role`), no
//! PG* variables from the environment. Each round also runs pgbench straight to the server,
//! reported below the table as the floor no tunnel can beat; for the connection times, a row
//! without a target gives what each tool adds to it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::lab::{Client, Lab, PG_BENCH_USER, Target, Tool};
use crate::table::{Better, Row};
use crate::{median, pick};

struct Run {
    name: &'static str,
    args: &'static [&'static str],
    /// The line of pgbench's output holding the figure, and its unit.
    key: &'static str,
    metric: &'static str,
    better: Better,
    target: f64,
}

const RUNS: [Run; 3] = [
    Run {
        name: "pgbench -S -c8 -j2",
        args: &["-c", "8", "-j", "2"],
        key: "tps = ",
        metric: "tps",
        better: Better::Higher,
        target: 1.3,
    },
    Run {
        name: "pgbench -S -C -c1",
        args: &["-C", "-c", "1"],
        key: "average connection time = ",
        metric: "ms per connection",
        better: Better::Lower,
        target: 1.0,
    },
    Run {
        name: "pgbench -S -C -c4 -j2",
        args: &["-C", "-c", "4", "-j", "2"],
        key: "average connection time = ",
        metric: "ms per connection",
        better: Better::Lower,
        target: 0.2,
    },
];

/// Runs pgbench once against `addr` (a client's port, or the server itself); the figure
/// after `run.key`.
async fn pgbench(lab: &Lab, addr: SocketAddr, run: &Run, seconds: u64) -> f64 {
    let conninfo = format!(
        "host={} port={} user={PG_BENCH_USER} dbname=postgres sslmode=disable",
        addr.ip(),
        addr.port()
    );
    let mut command = lab.pg.tool("pgbench");
    command
        .args(["-n", "-S", "-T", &seconds.to_string()])
        .args(run.args)
        .arg(&conninfo);
    let out = tokio::time::timeout(
        Duration::from_secs(seconds + 120),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("pgbench ends within -T + 2 minutes")
    .expect("pgbench task")
    .expect("run pgbench (install postgresql)");
    crate::support::pg::assert_success(&out, run.name);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(run.key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {:?} in {}'s output:\n{text}", run.key, run.name))
}

/// What each tool adds to PostgreSQL's own connection time: the median over the rounds of
/// the tool's time less the same round's time straight to the server (the floor moves
/// between rounds more than the tunnel's share of it).
fn above_the_floor(run: &Run, seconds: u64, (p, o): (&[f64], &[f64]), d: &[f64]) -> Row {
    let above = |t: &[f64]| -> Vec<f64> { t.iter().zip(d).map(|(t, d)| t - d).collect() };
    Row::new(
        &format!("{} ({seconds} s), above the floor", run.name),
        run.metric,
        pick(&above(p), &above(o)),
        Better::Lower,
    )
    .decimals(2)
}

/// The rows, and a note with the same runs straight to the server (no tunnel: the floor).
pub async fn rows(lab: &Lab, rounds: usize, seconds: u64) -> (Vec<Row>, String) {
    let server = lab.pg.cluster.addr();
    let target = Target {
        addr: server,
        postgres: true,
    };
    let pg = Client::start(lab, Tool::Pgtunnel, target).await;
    let ssh = Client::start(lab, Tool::Ssh, target).await;
    let (mut rows, mut direct) = (Vec::new(), Vec::new());
    for run in &RUNS {
        let (mut p, mut o, mut d) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            for tool in Tool::order(round) {
                match tool {
                    Tool::Pgtunnel => p.push(pgbench(lab, pg.addr, run, seconds).await),
                    Tool::Ssh => o.push(pgbench(lab, ssh.addr, run, seconds).await),
                }
            }
            d.push(pgbench(lab, server, run, seconds).await);
        }
        eprintln!("{}: done", run.name);
        let decimals = if run.metric == "tps" { 0 } else { 2 };
        direct.push(format!(
            "{} {:.decimals$} {}",
            run.name,
            median(&d),
            run.metric
        ));
        rows.push(
            Row::new(
                &format!("{} ({seconds} s)", run.name),
                run.metric,
                pick(&p, &o),
                run.better,
            )
            .target(run.target)
            .decimals(decimals),
        );
        if matches!(run.better, Better::Lower) {
            rows.push(above_the_floor(run, seconds, (&p, &o), &d));
        }
    }
    let note = format!(
        "PostgreSQL without a tunnel (the floor, same runs): {}",
        direct.join(", ")
    );
    (rows, note)
}
