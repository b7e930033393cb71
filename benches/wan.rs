//! pgtunnel versus OpenSSH (`ssh -N -J shell -L …`) across an emulated distant link: a user
//! far from their data centre. Same run, same two real `sshd` hops, alternating who goes
//! first, medians of BENCH_ROUNDS rounds; prints pgtunnel / ssh ratios.
//!
//!     cargo bench --bench wan                    # 3 rounds
//!     BENCH_ROUNDS=5 BENCH_MARKDOWN=/tmp/wan.md cargo bench --bench wan
//!
//! Topology (benches/support/link.rs builds it; needs root, /dev/net/tun, ip, sysctl, sshd,
//! ssh):
//!
//!     near namespace                          |  far namespace
//!     client -> pgtunnel / ssh -J (127.0.0.1) |
//!               10.213.0.1 ==== delay line ====> 10.213.0.2: sshd "shell" (hop 1)
//!               (RTT/2 each way, user space)  |  127.0.0.1: sshd "db" (hop 2)
//!                                             |  127.0.0.1: source/sink target
//!
//! The whole round-trip time lies between the client and the bastion (hop 1); hop 2 and the
//! target sit on the far side's loopback, reached from the bastion. The delay line holds every
//! packet for RTT/2 in each direction, in order; no rate limit by default, so TCP windows and
//! SSH channel windows are what limit a transfer. The TUN devices have a 1500-byte MTU (TCP's
//! MSS, hence slow start, as on a real path) but hand over 64 KiB super-segments (TSO/GRO,
//! as a NIC would), which keeps the packet rate, and the delay line's CPU, low. TCP buffers
//! inside both namespaces go up to 64 MiB. Linux's defaults stay otherwise: an SSH session
//! that was idle between rounds starts its transfer in slow start again
//! (tcp_slow_start_after_idle), for both tools alike.
//!
//! A raw TCP transfer across the link (no SSH, same size) is measured first and printed as
//! the calibration line, with the delay line's CPU time per GiB: it must stay well above what
//! the tunnels reach, or the link, not the tunnels, is measured (a note under the table says
//! so when a tunnel comes within 80 % of it).
//!
//! Workloads, each through a fresh connection to the tunnel's local port:
//! - download N MiB (default 256): the target sends N MiB, the client reads to EOF; time from
//!   connect to EOF (so the channel open, one round trip, and slow start are on the clock);
//! - upload N MiB: the client sends N MiB, the target confirms the count at the end;
//! - one small round trip: connect, 64 bytes there and back (median of 5 per round).
//!
//! Output: each workload's samples, round by round, on stderr as they come; then the table
//! on stdout in the LAN bench's shape (benches/vs_openssh/table.rs: workload, metric,
//! pgtunnel, ssh -J, pgtunnel/ssh, better, target, met), under the calibration line.
//!
//! Settings (environment): BENCH_ROUNDS (3), BENCH_WAN_RTT_MS (40), BENCH_WAN_MIB (256),
//! BENCH_WAN_MTU (1500), BENCH_WAN_RATE_MIBS (unset: no limit; else MiB/s each direction),
//! BENCH_MARKDOWN (append the table as Markdown to that file; scripts/bench uses this).
//! Traffic stays inside the two namespaces the bench creates and removes.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "support/link.rs"]
mod link;

#[path = "support/target.rs"]
mod target;

// The LAN bench's table (same columns, same Markdown) and its /proc helpers; not all of
// either is used here.
#[allow(dead_code)]
#[path = "vs_openssh/table.rs"]
mod table;

#[allow(dead_code)]
#[path = "vs_openssh/procfs.rs"]
mod procfs;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use link::{Link, LinkOptions, Side};
use support::Home;
use support::sshd::{Sshd, SshdOptions, login_user};
use table::{Better, Row};
use target::Target;
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;

struct Settings {
    rounds: usize,
    mib: usize,
    link: LinkOptions,
    markdown: Option<String>,
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

impl Settings {
    fn from_env() -> Settings {
        let defaults = LinkOptions::default();
        Settings {
            rounds: env_number("BENCH_ROUNDS").unwrap_or(3).clamp(1, 50) as usize,
            mib: env_number("BENCH_WAN_MIB").unwrap_or(256).clamp(1, 4096) as usize,
            link: LinkOptions {
                rtt: env_number("BENCH_WAN_RTT_MS")
                    .map_or(defaults.rtt, |ms| Duration::from_millis(ms.min(2000))),
                rate: env_number("BENCH_WAN_RATE_MIBS").map(|r| r.max(1) * MIB as u64),
                mtu: env_number("BENCH_WAN_MTU")
                    .map_or(defaults.mtu, |m| m.clamp(1280, 65000) as u32),
                ..defaults
            },
            markdown: std::env::var("BENCH_MARKDOWN").ok(),
        }
    }

    fn describe(&self) -> String {
        let rate = self.link.rate.map_or("no rate limit".to_string(), |r| {
            format!("{} MiB/s each way, one round trip of queue", r / MIB as u64)
        });
        format!(
            "{} ms RTT emulated (delay line {} ms each way, MTU {}, {rate})",
            self.link.rtt.as_millis(),
            self.link.rtt.as_millis() / 2,
            self.link.mtu
        )
    }
}

/// The far side: both hops and the target.
struct Far {
    /// shell and db, kept running.
    _hops: (Sshd, Sshd),
    target: Target,
}

impl Far {
    fn start(link: &Link, home: &Home) -> Far {
        let target = Target::start(link, Side::Far);
        let service = target.local.port();
        let far_addr = link.far.addr;
        let (shell, db) = link.run_in(Side::Far, || {
            let db = Sshd::start(SshdOptions {
                ip: "127.0.0.1".parse().expect("ip"),
                authorized: vec![home.public()],
                permit_open: vec![("127.0.0.1".into(), service)],
                extra: "",
            });
            let shell = Sshd::start(SshdOptions {
                ip: far_addr.into(),
                authorized: vec![home.public()],
                permit_open: vec![("127.0.0.1".into(), db.addr.port())],
                extra: "",
            });
            (shell, db)
        });
        home.trust_addr(shell.addr, &shell.host_key);
        home.trust_addr(db.addr, &db.host_key);
        let user = login_user();
        let mut config = home.block("shell", shell.addr, &user, "  BatchMode yes\n");
        config.push_str(&home.block("db", db.addr, &user, "  BatchMode yes\n"));
        home.write_config(&config);
        Far {
            _hops: (shell, db),
            target,
        }
    }
}

/// A tunnel process, killed with its children (`ssh -J`'s `ssh -W`) when dropped: left to
/// themselves they would wait on a link that is about to go.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        support::process::signal_tree(self.0.id() as i32, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Waits until something accepts on `addr`, panicking if `child` exits first or 60 s pass.
async fn wait_listening(addr: SocketAddr, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on {addr}: {status}");
        }
        assert!(Instant::now() < deadline, "{what} not listening on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts pgtunnel and `ssh -J` (from the calling thread's namespace: run on the near side),
/// each forwarding a local port to the target through shell and db.
async fn start_tunnels(home: &Home, service: SocketAddr) -> [(SocketAddr, Proc); 2] {
    let cfg = home.config.to_str().expect("utf-8 path").to_string();
    let target = service.to_string();
    let pg_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut pg = Command::new(env!("CARGO_BIN_EXE_pgtunnel"))
        .args(["-q", "-F", &cfg, "--via", "shell,db", "-L"])
        .arg(pg_addr.to_string())
        .arg(&target)
        .env("HOME", home.dir.path())
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start pgtunnel");
    wait_listening(pg_addr, "pgtunnel", &mut pg).await;
    let ssh_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut ssh = Command::new("ssh")
        .args(["-F", &cfg, "-N", "-o", "ExitOnForwardFailure=yes"])
        .args(["-J", "shell", "-L"])
        .arg(format!("{ssh_addr}:{target}"))
        .arg("db")
        .env("HOME", home.dir.path())
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .spawn()
        .expect("start ssh (install openssh-client)");
    wait_listening(ssh_addr, "ssh", &mut ssh).await;
    [(pg_addr, Proc(pg)), (ssh_addr, Proc(ssh))]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A workload: measures one tool once (through the tunnel at the address), giving the metric.
type Workload =
    Box<dyn Fn(SocketAddr) -> std::pin::Pin<Box<dyn std::future::Future<Output = f64>>>>;

/// Runs `run` `rounds` times for each tool, alternating who goes first: pgtunnel's samples
/// and ssh's, in round order.
async fn compare(
    rounds: usize,
    pg: SocketAddr,
    ssh: SocketAddr,
    run: &Workload,
) -> (Vec<f64>, Vec<f64>) {
    let (mut p, mut o) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            p.push(run(pg).await);
            o.push(run(ssh).await);
        } else {
            o.push(run(ssh).await);
            p.push(run(pg).await);
        }
    }
    (p, o)
}

fn samples(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn mib_per_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / MIB as f64 / took.as_secs_f64()
}

/// The workloads, measured through both tunnels: one row each.
async fn measure(settings: &Settings, pg: SocketAddr, ssh: SocketAddr) -> Vec<Row> {
    let len = settings.mib * MIB;
    let (mib, rtt) = (settings.mib, settings.link.rtt.as_millis());
    let download: Workload =
        Box::new(move |a| Box::pin(async move { mib_per_s(len, target::download(a, len).await) }));
    let upload: Workload =
        Box::new(move |a| Box::pin(async move { mib_per_s(len, target::upload(a, len).await) }));
    let round_trip: Workload = Box::new(|a| {
        Box::pin(async move {
            let mut times = Vec::new();
            for _ in 0..5 {
                times.push(target::round_trip(a).await.as_secs_f64() * 1000.0);
            }
            median(times)
        })
    });
    let workloads = [
        (
            format!("download {mib} MiB, {rtt} ms RTT"),
            "MiB/s",
            Better::Higher,
            Some(4.0),
            download,
        ),
        (
            format!("upload {mib} MiB, {rtt} ms RTT"),
            "MiB/s",
            Better::Higher,
            None,
            upload,
        ),
        (
            "fresh connection, 64 B round trip".into(),
            "ms",
            Better::Lower,
            None,
            round_trip,
        ),
    ];
    let mut rows = Vec::new();
    for (workload, metric, better, target, run) in workloads {
        let (p, o) = compare(settings.rounds, pg, ssh, &run).await;
        eprintln!(
            "{workload} ({metric}, each round): pgtunnel {}; ssh -J {}",
            samples(&p),
            samples(&o)
        );
        let row = Row::new(&workload, metric, (median(p), median(o)), better);
        rows.push(match target {
            Some(t) => row.target(t),
            None => row,
        });
    }
    rows
}

/// Raw TCP across the link, no SSH: what the link itself carries, and what carrying it costs
/// the delay line.
struct Calibration {
    download: f64,
    upload: f64,
    connect_ms: f64,
    /// The delay line's CPU time per GiB it carried during the calibration.
    line_cpu_per_gib: Duration,
}

impl Calibration {
    async fn measure(link: &Link, raw: SocketAddr, len: usize) -> Calibration {
        let (cpu, bytes) = (link.stats.cpu(), link.stats.bytes.load(Ordering::Relaxed));
        let download = mib_per_s(len, target::download(raw, len).await);
        let upload = mib_per_s(len, target::upload(raw, len).await);
        let carried = link.stats.bytes.load(Ordering::Relaxed) - bytes;
        let line_cpu_per_gib =
            (link.stats.cpu() - cpu).mul_f64((1u64 << 30) as f64 / carried.max(1) as f64);
        let mut connects = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let tcp = TcpStream::connect(raw)
                .await
                .expect("connect across the link");
            connects.push(t.elapsed().as_secs_f64() * 1000.0);
            drop(tcp);
        }
        Calibration {
            download,
            upload,
            connect_ms: median(connects),
            line_cpu_per_gib,
        }
    }

    fn line(&self, len_mib: usize) -> String {
        format!(
            "calibration: raw TCP across the link (no SSH), {len_mib} MiB: download {:.0} \
             MiB/s, upload {:.0} MiB/s; TCP connect {:.1} ms; the delay line used {:.2} s CPU \
             per GiB carried",
            self.download,
            self.upload,
            self.connect_ms,
            self.line_cpu_per_gib.as_secs_f64()
        )
    }
}

/// Everything measured on the near side: the calibration, then the tunnels.
fn run_near(link: &Link, home: &Home, far: &Far, settings: &Settings) -> (Calibration, Vec<Row>) {
    let raw = far.target.raw;
    let service = far.target.local;
    link.run_in(Side::Near, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async {
            let calibration = Calibration::measure(link, raw, settings.mib * MIB).await;
            eprintln!("{}", calibration.line(settings.mib));
            let [(pg, _pg), (ssh, _ssh)] = start_tunnels(home, service).await;
            // Warm-up, and proof that both paths work.
            target::round_trip(pg).await;
            target::round_trip(ssh).await;
            let rows = measure(settings, pg, ssh).await;
            (calibration, rows)
        })
    })
}

/// Notes under the table: how to read it, the delay line's record, and a warning where a
/// transfer came within 80 % of raw TCP (then the link, or the CPU it costs, may be the
/// limit rather than the tunnel).
fn notes(link: &Link, calibration: &Calibration, rows: &[Row]) -> Vec<String> {
    let mut notes = vec![
        "pgtunnel/ssh: pgtunnel's median over ssh's; \"better\" says which way is better; \
         the target is issue 13's"
            .to_string(),
        format!(
            "delay line: {} packets, {} MiB, {} dropped",
            link.stats.packets.load(Ordering::Relaxed),
            link.stats.bytes.load(Ordering::Relaxed) / MIB as u64,
            link.stats.dropped.load(Ordering::Relaxed)
        ),
    ];
    for (row, raw) in rows
        .iter()
        .filter(|r| r.metric == "MiB/s")
        .zip([calibration.download, calibration.upload])
    {
        if row.pgtunnel.max(row.ssh) > 0.8 * raw {
            notes.push(format!(
                "warning: {}: within 80 % of raw TCP's {raw:.0} MiB/s, the link may be the limit",
                row.workload
            ));
        }
    }
    notes
}

fn main() {
    let settings = Settings::from_env();
    let mut heading = vec![
        format!(
            "pgtunnel vs `ssh -J shell -L … db` ({}), 2 OpenSSH sshd hops behind {}, medians \
             of {} rounds",
            procfs::ssh_version(),
            settings.describe(),
            settings.rounds
        ),
        format!("machine: {}", procfs::machine()),
    ];
    for h in &heading {
        eprintln!("{h}");
    }
    let link = Link::new(settings.link.clone());
    let home = Home::new();
    let far = Far::start(&link, &home);
    let (calibration, rows) = run_near(&link, &home, &far, &settings);
    heading.push(calibration.line(settings.mib));
    let notes = notes(&link, &calibration, &rows);
    println!();
    for h in &heading {
        println!("{h}");
    }
    print!("{}", table::text(&rows, table::Versus::Ssh));
    for n in &notes {
        println!("({n})");
    }
    if let Some(path) = &settings.markdown {
        use std::io::Write;
        let text = format!(
            "\n{}",
            table::markdown(&heading, &rows, &notes, table::Versus::Ssh)
        );
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .unwrap_or_else(|e| panic!("append to BENCH_MARKDOWN={path}: {e}"));
        println!("(Markdown appended to {path})");
    }
    drop(far);
    drop(link);
}
