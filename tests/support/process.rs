//! The `pgtunnel` binary as a child process, for what only a separate process shows (exit
//! codes, signals, its open files and memory in /proc), and signals to whole process trees
//! (sshd serves each connection from a child that outlives a signal to the listener).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::Home;

pub const BIN: &str = env!("CARGO_BIN_EXE_pgtunnel");

/// The binary with `home` as $HOME in an otherwise clean environment (PATH kept, USER
/// `localuser`, no ssh-agent) and stdin closed: where every test that runs it starts.
pub fn clean_command(home: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("USER", "localuser")
        .stdin(Stdio::null());
    cmd
}

/// A running `pgtunnel`, past its ready line.
pub struct Pgtunnel {
    child: Child,
    pid: i32,
    /// Where it listens (from the ready line).
    pub addr: SocketAddr,
    /// What it printed on stdout before the ready line (the path report).
    pub report: Vec<String>,
    /// Every ready line awaited ([`Pgtunnel::start_many`]: one per tunnel), in order.
    pub ready: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Pgtunnel {
    /// Starts `pgtunnel ARGS` with `home` as $HOME and waits (up to 60 s) for its ready line.
    pub async fn start(home: &Home, args: &[&str]) -> Pgtunnel {
        Pgtunnel::start_in(home.dir.path(), args, &[]).await
    }

    /// Like [`Pgtunnel::start`], with `home` as $HOME and `env` added to its environment.
    pub async fn start_in(home: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Pgtunnel {
        Pgtunnel::start_many(home, args, env, 1).await
    }

    /// Like [`Pgtunnel::start_in`], waiting for `tunnels` ready lines (one per tunnel).
    pub async fn start_many(
        home: &Path,
        args: &[&str],
        env: &[(&str, &OsStr)],
        tunnels: usize,
    ) -> Pgtunnel {
        let mut child = Command::from(clean_command(home))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn pgtunnel");
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).expect("pid");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        let out = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(out).lines();
        let mut report = Vec::new();
        let mut ready_lines = Vec::new();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("ready: ") {
                    ready_lines.push(line);
                    if ready_lines.len() == tunnels {
                        return ready_lines.first().cloned();
                    }
                    continue;
                }
                report.push(line);
            }
            None
        })
        .await
        .ok()
        .flatten();
        let Some(ready) = ready else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            panic!(
                "pgtunnel {args:?} did not print its ready line; stderr:\n{}",
                stderr.lock().map(|s| s.clone()).unwrap_or_default()
            );
        };
        // Keep draining stdout so the child never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addr = ready
            .trim_start_matches("ready: ")
            .split_whitespace()
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {ready:?}"));
        Pgtunnel {
            child,
            pid,
            addr,
            report,
            ready: ready_lines,
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits (up to 60 s) until stderr contains `needle`.
    pub async fn wait_for_stderr(&self, needle: &str) {
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            while !self.stderr().contains(needle) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "pgtunnel never said {needle:?}; stderr:\n{}",
            self.stderr()
        );
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid), signal).expect("signal pgtunnel");
    }

    /// Waits for it to exit (at most `limit`; panics past it).
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "pgtunnel still running after {limit:?}; stderr:\n{}",
                    self.stderr()
                )
            })
            .expect("wait for pgtunnel");
        // Let the stderr reader catch up with the last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
        status
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its open file descriptors, from /proc.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .expect("read /proc/PID/fd")
            .count()
    }

    /// Its resident memory in KiB (VmRSS), from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }
}

/// Every process below `pid` (children, grandchildren, ...), from /proc.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces and parentheses.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                parents.push((p, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Sends `signal` to `pid` and every process below it.
pub fn signal_tree(pid: i32, signal: Signal) {
    let below = descendants(pid);
    let _ = kill(Pid::from_raw(pid), signal);
    for p in below {
        let _ = kill(Pid::from_raw(p), signal);
    }
}
