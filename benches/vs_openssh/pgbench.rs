//! Rows 4–6: pgbench through each tool to the lab's PostgreSQL cluster (scale 1,
//! initialised directly, not tunnelled), select-only (`-S`), `-T PGBENCH_SECONDS` (default
//! 10) per run:
//! - `-c 8 -j 2`: transactions per second;
//! - `-C -c 1` and `-C -c 4 -j 2`: a new connection per transaction, pgbench's "average
//!   connection time".
//!
//! libpq settings are the same through both tools: `sslmode=disable` (the tunnel already
//! encrypts; TLS inside it would add the same handshake and crypto to both and hide the
//! tunnels' difference), SCRAM-SHA-256 password authentication (the cluster's pg_hba), no
//! PG* variables from the environment.

use std::time::Duration;

use crate::lab::{Client, Lab, Target, Tool};
use crate::pick;
use crate::table::{Better, Row};

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

/// Runs pgbench once through `client`; the figure after `run.key`.
async fn pgbench(lab: &Lab, client: &Client, run: &Run, seconds: u64) -> f64 {
    let conninfo = format!(
        "host=127.0.0.1 port={} user={} dbname=postgres sslmode=disable",
        client.addr.port(),
        crate::support::pg::PG_USER
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
    .expect("run pgbench (install postgresql-client)");
    crate::support::pg::assert_success(&out, run.name);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(run.key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {:?} in {}'s output:\n{text}", run.key, run.name))
}

pub async fn rows(lab: &Lab, rounds: usize, seconds: u64) -> Vec<Row> {
    let target = Target {
        addr: lab.pg.cluster.addr(),
        postgres: true,
    };
    let pg = Client::start(lab, Tool::Pgtunnel, target).await;
    let ssh = Client::start(lab, Tool::Ssh, target).await;
    let mut rows = Vec::new();
    for run in &RUNS {
        let (mut p, mut o) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            for tool in Tool::order(round) {
                match tool {
                    Tool::Pgtunnel => p.push(pgbench(lab, &pg, run, seconds).await),
                    Tool::Ssh => o.push(pgbench(lab, &ssh, run, seconds).await),
                }
            }
        }
        eprintln!("{}: done", run.name);
        let decimals = if run.metric == "tps" { 0 } else { 2 };
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
    }
    rows
}
