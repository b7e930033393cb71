//! An emulated distant link on this machine: two network namespaces, `near` and `far`, each
//! with a TUN device (`wan0`, 10.213.0.1/30 near, 10.213.0.2/30 far), joined by a user-space
//! delay line in this process: every packet read from one TUN is held for half the round-trip
//! time and then written to the other, in order, each direction on its own thread (optionally
//! behind a rate limit). This kernel has no `sch_netem`, hence user space.
//!
//! The namespaces are named `pgtwan-PID-near` / `pgtwan-PID-far`; dropping the [`Link`] stops
//! the delay line and deletes both (also while unwinding from a panic). Namespaces of earlier
//! runs whose process is gone (killed before its drop ran) are removed at start, with any
//! process still inside them (an sshd that run left behind).
//!
//! Code runs on a side by entering its namespace: [`Link::enter`] for the calling thread,
//! [`Link::run_in`] / [`Link::spawn_in`] for a closure on a thread of its own (processes it
//! spawns inherit the namespace), [`Link::command`] for `ip netns exec NS program`.
//!
//! Needs root (namespaces, TUN), `/dev/net/tun`, `ip` (iproute2) and `sysctl` (procps).
//! Traffic stays inside the two namespaces this creates.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sched::{CloneFlags, setns};
use nix::sys::time::TimeSpec;

/// Namespace names start with this, then the creating process's id.
const PREFIX: &str = "pgtwan-";
/// The TUN device's name inside each namespace.
const DEV: &str = "wan0";
/// TCP buffer limits inside both namespaces (min, default, max): up to 64 MiB, so a 40 ms
/// path can carry well over 1 GiB/s before TCP's own window is the limit.
const TCP_RMEM: &str = "4096 131072 67108864";
const TCP_WMEM: &str = "4096 16384 67108864";
/// The most a direction holds (in flight and queued) before it drops packets: a bound on
/// the delay line's memory, well above what 64 MiB TCP buffers put in flight.
pub const HELD_MAX: usize = 256 << 20;
/// The largest packet a TUN device hands over: a 64 KiB GSO super-segment and its
/// virtio_net_hdr (10 bytes), with room to spare.
const PACKET_MAX: usize = 65536 + 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Near,
    Far,
}

#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// Round-trip time the delay line adds (half of it each way).
    pub rtt: Duration,
    /// Bytes per second each direction may carry (serialisation delay); `None`: unlimited.
    pub rate: Option<u64>,
    /// MTU of both TUN devices. TCP segments within a host's stack are larger: the TUN
    /// devices take and hand over 64 KiB super-segments (TSO/GRO, as a NIC would), so the
    /// packet rate stays manageable while TCP's MSS (and slow start) is the MTU's.
    pub mtu: u32,
    /// With a rate: the bytes a direction may hold waiting for the wire (a router's buffer)
    /// before it drops packets (tail drop); `None`: one round trip at the rate. Without a
    /// rate nothing waits for the wire, and only [`HELD_MAX`] bounds what is in flight.
    pub queue_limit: Option<usize>,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            rtt: Duration::from_millis(40),
            rate: None,
            mtu: 1500,
            queue_limit: None,
        }
    }
}

/// One side: its namespace and its address on the link.
#[derive(Clone, Debug)]
pub struct Netns {
    pub name: String,
    pub addr: Ipv4Addr,
}

/// What the delay line did, both directions together.
#[derive(Default)]
pub struct Stats {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped: AtomicU64,
    /// The delay line's threads (kernel thread ids), for their CPU time.
    threads: std::sync::Mutex<Vec<i32>>,
}

impl Stats {
    /// CPU time the delay line's threads have used so far (from /proc/self/task/TID/schedstat),
    /// kernel work done on their behalf (the TUN reads and writes) included.
    pub fn cpu(&self) -> Duration {
        let threads = self.threads.lock().map(|t| t.clone()).unwrap_or_default();
        let nanos: u64 = threads
            .iter()
            .filter_map(|tid| {
                std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()
            })
            .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        Duration::from_nanos(nanos)
    }
}

pub struct Link {
    pub near: Netns,
    pub far: Netns,
    pub options: LinkOptions,
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Link {
    /// Creates both namespaces, their TUN devices and the delay line between them.
    pub fn new(options: LinkOptions) -> Link {
        require_prerequisites();
        remove_leftovers();
        let pid = std::process::id();
        let mut link = Link {
            near: Netns {
                name: format!("{PREFIX}{pid}-near"),
                addr: Ipv4Addr::new(10, 213, 0, 1),
            },
            far: Netns {
                name: format!("{PREFIX}{pid}-far"),
                addr: Ipv4Addr::new(10, 213, 0, 2),
            },
            options,
            stats: Arc::default(),
            stop: Arc::default(),
            threads: Vec::new(),
        };
        // From here on, dropping `link` removes whatever exists of it.
        let mut tuns = Vec::new();
        for side in [Side::Near, Side::Far] {
            let ns = link.ns(side).clone();
            ip(&["netns", "add", &ns.name]);
            let tun = link
                .run_in(side, || open_tun(DEV))
                .unwrap_or_else(|e| panic!("create TUN {DEV} in {}: {e}", ns.name));
            tuns.push(Arc::new(tun));
            let mtu = link.options.mtu.to_string();
            ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{}/30", ns.addr),
                "dev",
                DEV,
            ]);
            ip(&["-n", &ns.name, "link", "set", DEV, "mtu", &mtu, "up"]);
            link.sysctl(side, "net.ipv4.tcp_rmem", TCP_RMEM);
            link.sysctl(side, "net.ipv4.tcp_wmem", TCP_WMEM);
        }
        let (near, far) = (tuns[0].clone(), tuns[1].clone());
        link.threads
            .push(link.delay_line("near->far", near.clone(), far.clone()));
        link.threads.push(link.delay_line("far->near", far, near));
        link
    }

    pub fn ns(&self, side: Side) -> &Netns {
        match side {
            Side::Near => &self.near,
            Side::Far => &self.far,
        }
    }

    /// `ip netns exec NS program`: a command that runs on `side`.
    pub fn command(&self, side: Side, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(side).name, program]);
        c
    }

    /// Moves the calling thread into `side`'s network namespace (for good: use a thread of
    /// its own). Sockets it creates afterwards, and processes it spawns, live there.
    pub fn enter(&self, side: Side) {
        let name = &self.ns(side).name;
        let ns = File::open(format!("/run/netns/{name}"))
            .unwrap_or_else(|e| panic!("open /run/netns/{name}: {e}"));
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns into {name}: {e}"));
    }

    /// Runs `f` on a fresh thread inside `side`'s namespace and returns its result (a panic
    /// in `f` is resumed here).
    pub fn run_in<T: Send>(&self, side: Side, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            let thread = s.spawn(|| {
                self.enter(side);
                f()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Starts `f` on a thread of its own inside `side`'s namespace.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        side: Side,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let name = self.ns(side).name.clone();
        let ns = File::open(format!("/run/netns/{name}"))
            .unwrap_or_else(|e| panic!("open /run/netns/{name}: {e}"));
        std::thread::Builder::new()
            .name(format!("in-{name}"))
            .spawn(move || {
                setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns into {name}: {e}"));
                f()
            })
            .expect("spawn a thread")
    }

    fn sysctl(&self, side: Side, key: &str, value: &str) {
        let out = self
            .command(side, "sysctl")
            .args(["-q", "-w", &format!("{key}={value}")])
            .output()
            .expect("run sysctl (install procps)");
        assert!(
            out.status.success(),
            "sysctl {key} in {}: {}",
            self.ns(side).name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn delay_line(&self, name: &str, from: Arc<File>, to: Arc<File>) -> JoinHandle<()> {
        let line = DelayLine {
            from,
            to,
            delay: self.options.rtt / 2,
            rate: self.options.rate,
            queue_limit: self.options.queue_limit.unwrap_or_else(|| {
                let rate = self.options.rate.unwrap_or(0) as f64;
                (rate * self.options.rtt.as_secs_f64()) as usize
            }),
            stop: self.stop.clone(),
            stats: self.stats.clone(),
        };
        std::thread::Builder::new()
            .name(format!("delay {name}"))
            .spawn(move || line.run())
            .expect("spawn the delay line")
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // The TUN devices go with their last file (the threads held them).
        for ns in [&self.near, &self.far] {
            if std::path::Path::new(&format!("/run/netns/{}", ns.name)).exists() {
                let _ = Command::new("ip").args(["netns", "del", &ns.name]).status();
            }
        }
    }
}

/// One direction: reads packets from `from`, writes each to `to` once its time has come.
struct DelayLine {
    from: Arc<File>,
    to: Arc<File>,
    delay: Duration,
    rate: Option<u64>,
    queue_limit: usize,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
}

impl DelayLine {
    fn run(self) {
        if let Ok(mut threads) = self.stats.threads.lock() {
            threads.push(nix::unistd::gettid().as_raw());
        }
        // (due, buffer, length); buffers are reused.
        let mut queue: VecDeque<(Instant, Vec<u8>, usize)> = VecDeque::new();
        let mut spare: Vec<Vec<u8>> = Vec::new();
        let mut queued = 0usize;
        // When the (rate-limited) link finishes sending what it holds.
        let mut busy_until = Instant::now();
        let tick = Duration::from_millis(50);
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while let Some((due, ..)) = queue.front() {
                if *due > now {
                    break;
                }
                let (_, buf, len) = queue.pop_front().expect("front exists");
                // A packet the far stack refuses (none expected) is lost, like on a wire.
                let _ = (&*self.to).write(&buf[..len]);
                queued -= len;
                spare.push(buf);
            }
            let wait = queue.front().map_or(tick, |(due, ..)| {
                due.saturating_duration_since(now).min(tick)
            });
            let mut fds = [PollFd::new(self.from.as_fd(), PollFlags::POLLIN)];
            match ppoll(&mut fds, Some(TimeSpec::from_duration(wait)), None) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => panic!("poll the TUN device: {e}"),
            }
            loop {
                let mut buf = spare.pop().unwrap_or_else(|| vec![0u8; PACKET_MAX]);
                let len = match (&*self.from).read(&mut buf) {
                    Ok(len) => len,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        spare.push(buf);
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => panic!("read the TUN device: {e}"),
                };
                let Some(sent) = self.admit(len, queued, &mut busy_until) else {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    spare.push(buf);
                    continue;
                };
                queued += len;
                self.stats.packets.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes.fetch_add(len as u64, Ordering::Relaxed);
                queue.push_back((sent + self.delay, buf, len));
            }
        }
    }
}

impl DelayLine {
    /// When a packet of `len` bytes arriving now has left the (rate-limited) wire, with
    /// `queued` bytes held and the wire busy until `busy_until`; `None`: dropped, the queue
    /// is full.
    fn admit(&self, len: usize, queued: usize, busy_until: &mut Instant) -> Option<Instant> {
        let arrived = Instant::now();
        if queued + len > HELD_MAX {
            return None;
        }
        let Some(rate) = self.rate else {
            return Some(arrived);
        };
        // What still waits for the wire when this packet arrives.
        let waiting = busy_until.saturating_duration_since(arrived);
        let backlog = (waiting.as_secs_f64() * rate as f64) as usize;
        if backlog + len > self.queue_limit.max(len) {
            return None;
        }
        let wire = Duration::from_secs_f64(len as f64 / rate as f64);
        *busy_until = (*busy_until).max(arrived) + wire;
        Some(*busy_until)
    }
}

/// Opens `/dev/net/tun` and attaches it to a new TUN device `name` in the calling thread's
/// network namespace: bare IP packets (IFF_TUN | IFF_NO_PI), each preceded by a
/// `virtio_net_hdr` (IFF_VNET_HDR) that carries segmentation offload (TSO/GSO, checksum
/// offload), so a packet read here may be a 64 KiB TCP super-segment, as a NIC with TSO and
/// GRO would hand it over. The device lives as long as the returned file. Non-blocking.
fn open_tun(name: &str) -> std::io::Result<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    /// `struct ifreq` as TUNSETIFF reads it: the name, the flags, padding to its full size.
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        pad: [u8; 22],
    }
    assert!(name.len() < libc::IFNAMSIZ, "interface name too long");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
        pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let offload = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    // SAFETY: TUNSETIFF reads (and may write back) one `struct ifreq` at the pointer: `req`
    // is a fully initialised value of that layout and size (40 bytes) that outlives the
    // call. TUNSETOFFLOAD takes its flags by value. `file` is an open /dev/net/tun.
    let rc = unsafe {
        match libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) {
            0 => libc::ioctl(
                file.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                offload as libc::c_ulong,
            ),
            failed => failed,
        }
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

fn require_prerequisites() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the WAN bench needs root: it creates network namespaces and TUN devices"
    );
    assert!(
        std::path::Path::new("/dev/net/tun").exists(),
        "/dev/net/tun is missing: load the tun module (modprobe tun) or, in a container, \
         pass the device in"
    );
    let ip = Command::new("ip").arg("-V").output();
    assert!(
        matches!(ip, Ok(ref o) if o.status.success()),
        "`ip` is missing: install iproute2"
    );
    let sysctl = Command::new("sysctl").arg("-V").output();
    assert!(
        matches!(sysctl, Ok(ref o) if o.status.success()),
        "`sysctl` is missing: install procps"
    );
}

/// Runs `ip ARGS`, panicking with its error output if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (install iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes namespaces an earlier run left behind (its process is gone), ending what still
/// runs inside them: those processes were started by that run.
fn remove_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue; // a run still going
        }
        if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
            for p in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                if let Ok(p) = p.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", name]).status();
        eprintln!("removed {name}, left behind by an earlier run");
    }
}
