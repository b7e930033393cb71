//! pgtunnel versus OpenSSH (`ssh -N -J shell -L …`) through the same two real `sshd` hops on
//! loopback, in the same run, alternating who goes first in each round; prints one table of
//! medians, pgtunnel / ssh ratios and issue 13's targets (the loopback rows; the WAN row is
//! `cargo bench --bench wan`). Machines here are noisy: read the ratios, not the absolute
//! figures.
//!
//!     cargo bench --bench vs_openssh                   # 3 rounds
//!     BENCH_ROUNDS=5 BENCH_MARKDOWN=table.md cargo bench --bench vs_openssh
//!
//! Environment: `BENCH_ROUNDS` (default 3), `BENCH_BULK_MIB` (upload/download size, default
//! 1024), `PGBENCH_SECONDS` (each pgbench run's `-T`, default 10), `BENCH_ONLY` (a comma list
//! of sections: bulk, pgbench, startup, classic; all by default), `BENCH_MARKDOWN` (also
//! write the table as Markdown to that file), `BENCH_BASELINE` (the path of another pgtunnel
//! binary: it takes ssh's place, for an A/B of two builds; the same binary twice shows the
//! machine's noise). `scripts/bench` runs this and the WAN bench.
//!
//! Needs `sshd` and `ssh` (openssh-server, openssh-client), PostgreSQL's server binaries and
//! `pgbench` (postgresql, postgresql-client), `openssl`; scripts/test installs them all.
//! Traffic stays on 127.0.0.0/8: hops on 127.0.0.1 and .2, services on .3.

#[path = "../../tests/support/mod.rs"]
mod support;

mod bulk;
mod classic;
mod lab;
mod pgbench;
mod procfs;
mod services;
mod startup;
mod table;

/// The median of `v` (the upper one of an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The medians of pgtunnel's and ssh's samples.
pub fn pick(pgtunnel: &[f64], ssh: &[f64]) -> (f64, f64) {
    (median(pgtunnel), median(ssh))
}

fn env_number(name: &str, default: u64, range: std::ops::RangeInclusive<u64>) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => {
            let n: u64 = text
                .parse()
                .unwrap_or_else(|_| panic!("{name}={text:?} is not a number"));
            assert!(range.contains(&n), "{name}={n} is outside {range:?}");
            n
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Ctrl-C or SIGTERM: dropping the bench's future stops what the lab started (its sshds,
    // PostgreSQL, the clients), which a killed process would leave running.
    tokio::select! {
        () = bench() => {}
        () = interrupted() => {
            eprintln!("interrupted: the lab's sshds, PostgreSQL and clients are stopped");
            // Not waiting for a pgbench still running in a blocking task (it ends by its -T).
            std::process::exit(130);
        }
    }
}

/// Ctrl-C (SIGINT) or SIGTERM.
async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn bench() {
    let rounds = env_number("BENCH_ROUNDS", 3, 1..=50) as usize;
    let bulk_mib = env_number("BENCH_BULK_MIB", 1024, 1..=16384);
    let pgbench_seconds = env_number("PGBENCH_SECONDS", 10, 1..=600);
    let versus = lab::versus();
    let against = match lab::baseline() {
        None => format!("`ssh -J shell -L … db` ({})", procfs::ssh_version()),
        Some(bin) => format!("the baseline build {bin} (an A/B: no targets)"),
    };
    // A wrong BENCH_BASELINE fails before the lab takes its minute to start.
    let lab = lab::Lab::start().await;
    let heading = vec![
        format!(
            "pgtunnel vs {against}, 2 OpenSSH sshd hops on loopback, medians of {rounds} rounds"
        ),
        format!("machine: {}", procfs::machine()),
        format!(
            "PostgreSQL {} (pgbench -S, sslmode=disable, trust; scale 1)",
            lab.pg.cluster.version()
        ),
    ];
    for h in &heading {
        eprintln!("{h}");
    }
    // BENCH_ONLY=bulk,pgbench,startup,classic: some sections only (all by default).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let wanted = |section: &str| only.is_empty() || only.split(',').any(|s| s.trim() == section);
    let mut rows = Vec::new();
    let mut notes = vec![versus.note().to_string()];
    if wanted("bulk") {
        rows.extend(bulk::rows(&lab, rounds, bulk_mib).await);
    }
    if wanted("pgbench") {
        let (pg_rows, pg_note) = pgbench::rows(&lab, rounds, pgbench_seconds).await;
        rows.extend(pg_rows);
        notes.push(pg_note);
    }
    if wanted("startup") {
        rows.extend(startup::rows(&lab, rounds).await);
    }
    if wanted("classic") {
        rows.extend(classic::rows(&lab, rounds).await);
    }
    println!();
    for h in &heading {
        println!("{h}");
    }
    print!("{}", table::text(&rows, versus));
    for n in &notes {
        println!("({n})");
    }
    if let Ok(path) = std::env::var("BENCH_MARKDOWN") {
        std::fs::write(&path, table::markdown(&heading, &rows, &notes, versus))
            .unwrap_or_else(|e| panic!("write BENCH_MARKDOWN={path}: {e}"));
        println!("(Markdown written to {path})");
    }
    drop(lab);
}
