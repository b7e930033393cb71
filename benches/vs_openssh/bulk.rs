//! Rows 1–3: one upload and one download of `BENCH_BULK_MIB` (default 1 GiB) per tool and
//! round through a long-lived client, and the client's CPU time across both (utime + stime
//! of its process tree from /proc), per GiB moved.

use crate::lab::{Client, Lab, Target, Tool};
use crate::procfs;
use crate::services::{download, upload};
use crate::table::{Better, Row};
use crate::{median, pick};

const MIB: u64 = 1024 * 1024;

#[derive(Default)]
struct Samples {
    up: Vec<f64>,
    down: Vec<f64>,
    cpu_per_gib: Vec<f64>,
}

pub async fn rows(lab: &Lab, rounds: usize, mib: u64) -> Vec<Row> {
    let target = Target {
        addr: lab.transfer.addr,
        postgres: false,
    };
    let pg = Client::start(lab, Tool::Pgtunnel, target).await;
    let ssh = Client::start(lab, Tool::Ssh, target).await;
    // Warm-up, and proof both paths work.
    for c in [&pg, &ssh] {
        upload(c.addr, MIB).await;
        download(c.addr, MIB).await;
    }
    let mut samples = [Samples::default(), Samples::default()];
    for round in 0..rounds {
        for tool in Tool::order(round) {
            let (client, s) = match tool {
                Tool::Pgtunnel => (&pg, &mut samples[0]),
                Tool::Ssh => (&ssh, &mut samples[1]),
            };
            let pids = procfs::tree(client.pid());
            let cpu = procfs::cpu_seconds(&pids);
            let up = upload(client.addr, mib * MIB).await;
            let down = download(client.addr, mib * MIB).await;
            let cpu = procfs::cpu_seconds(&pids) - cpu;
            s.up.push(mib as f64 / up.as_secs_f64());
            s.down.push(mib as f64 / down.as_secs_f64());
            s.cpu_per_gib.push(cpu / (2.0 * mib as f64 / 1024.0));
        }
        let last = |s: &Samples| {
            let (up, down) = (s.up.last(), s.down.last());
            format!(
                "up {:.0} down {:.0} MiB/s",
                up.unwrap_or(&0.0),
                down.unwrap_or(&0.0)
            )
        };
        eprintln!(
            "bulk: round {} of {rounds} done: {} {}, {} {}",
            round + 1,
            Tool::Pgtunnel.label(),
            last(&samples[0]),
            Tool::Ssh.label(),
            last(&samples[1])
        );
    }
    let size = if mib.is_multiple_of(1024) {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    };
    let [p, o] = samples;
    vec![
        Row::new(
            &format!("upload, {size}, 1 connection"),
            "MiB/s",
            pick(&p.up, &o.up),
            Better::Higher,
        )
        .target(2.5)
        .decimals(0),
        Row::new(
            &format!("download, {size}, 1 connection"),
            "MiB/s",
            pick(&p.down, &o.down),
            Better::Higher,
        )
        .target(1.8)
        .decimals(0),
        Row::new(
            "client CPU, the upload + download above",
            "CPU s per GiB moved",
            (median(&p.cpu_per_gib), median(&o.cpu_per_gib)),
            Better::Lower,
        )
        .target(0.4)
        .decimals(2),
    ]
}
