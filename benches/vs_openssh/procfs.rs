//! What the kernel says about a client process tree: CPU time and resident memory, from
//! /proc. A "tree" is a process and its descendants (for `ssh -J`, the `ssh -W` child it
//! spawns for ProxyJump), so both tools are measured the same way.

use std::sync::OnceLock;

use crate::support::process::descendants;

/// The process and everything below it.
pub fn tree(pid: i32) -> Vec<i32> {
    let mut pids = vec![pid];
    pids.extend(descendants(pid));
    pids
}

/// Clock ticks per second (sysconf `CLK_TCK`, asked of `getconf`: the lib forbids unsafe
/// code and nix's `sysconf` is behind a feature the crate does not enable).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("run getconf CLK_TCK (install libc-bin)");
        let text = String::from_utf8_lossy(&out.stdout);
        let ticks: f64 = text
            .trim()
            .parse()
            .expect("getconf CLK_TCK prints a number");
        assert!(ticks > 0.0, "CLK_TCK is {ticks}");
        ticks
    })
}

/// utime + stime of one process (all its threads), in clock ticks; 0 if it is gone.
fn ticks(pid: i32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // pid (comm) state ppid ...: fields after the comm's closing parenthesis start at
    // field 3 (state); utime and stime are fields 14 and 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

/// CPU seconds (user + system) used so far by `pids`.
pub fn cpu_seconds(pids: &[i32]) -> f64 {
    pids.iter().map(|&p| ticks(p)).sum::<u64>() as f64 / clock_ticks()
}

/// VmRSS of one process in KiB; 0 if it is gone.
fn rss(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory of the tree below (and including) `pid`, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    tree(pid).into_iter().map(rss).sum()
}

/// One line about the machine, for the table's heading.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let aes = if cpuinfo.contains(" aes") {
        "AES-NI"
    } else {
        "no AES-NI"
    };
    format!("{model}, {cores} cores ({aes}), Linux {}", kernel.trim())
}

/// `ssh -V` (it prints on stderr).
pub fn ssh_version() -> String {
    std::process::Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_else(|_| "ssh not found".into())
}
