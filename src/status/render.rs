//! `pgtunnel status`'s human output. Pure.

use std::borrow::Cow;
use std::fmt::Write;

use super::{HopState, HopStatus, ProcessStatus, TunnelStatus};

/// The processes as text, one block per process (blank lines between), each line ending in a
/// newline; `"no pgtunnel running\n"` when there are none. Times are shown relative to
/// `now_unix`. Control characters in names and reasons are escaped.
///
/// ```text
/// pgtunnel pid 4242, up 2h05m, 1 tunnel
///   staging: 127.0.0.1:6543
///     via bastion (up 3m12s) -> inner (reconnecting since 12s: timed out) -> db:5432
///     connections: 1 open, 3 accepted, 0 refused, 2 rejected, 1 reset
///     bytes: 1.0 KiB up, 4.0 KiB down; reconnects: 1
/// ```
pub fn render(processes: &[ProcessStatus], now_unix: u64) -> String {
    if processes.is_empty() {
        return "no pgtunnel running\n".into();
    }
    let mut out = String::new();
    for (i, process) in processes.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_process(&mut out, process, now_unix);
    }
    out
}

fn render_process(out: &mut String, process: &ProcessStatus, now: u64) {
    let tunnels = match process.tunnels.len() {
        0 => "no tunnels".to_string(),
        1 => "1 tunnel".to_string(),
        n => format!("{n} tunnels"),
    };
    let _ = writeln!(
        out,
        "pgtunnel pid {}, up {}, {tunnels}",
        process.pid,
        human_duration(now.saturating_sub(process.started_unix))
    );
    for tunnel in &process.tunnels {
        render_tunnel(out, tunnel, now);
    }
}

fn render_tunnel(out: &mut String, t: &TunnelStatus, now: u64) {
    let listen = if t.listen.is_empty() {
        "(not listening)".to_string()
    } else {
        t.listen
            .iter()
            .map(|l| printable(l))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "  {}: {listen}", printable(&t.name));
    let target = printable(&t.target);
    if t.hops.is_empty() {
        let _ = writeln!(out, "    to {target}");
    } else {
        let hops: Vec<String> = t.hops.iter().map(|h| hop(h, now)).collect();
        let _ = writeln!(out, "    via {} -> {target}", hops.join(" -> "));
    }
    let _ = writeln!(
        out,
        "    connections: {} open, {} accepted, {} refused, {} rejected, {} reset",
        t.open, t.accepted, t.refused, t.rejected, t.reset
    );
    let _ = writeln!(
        out,
        "    bytes: {} up, {} down; reconnects: {}",
        human_bytes(t.bytes_up),
        human_bytes(t.bytes_down),
        t.reconnects
    );
}

/// `bastion (up 3m12s)`, `inner (reconnecting since 12s: timed out)`.
fn hop(h: &HopStatus, now: u64) -> String {
    let age = human_duration(now.saturating_sub(h.since_unix));
    let state = match h.state {
        HopState::Up => return format!("{} (up {age})", printable(&h.name)),
        HopState::Lost => "lost",
        HopState::Reconnecting => "reconnecting",
    };
    match &h.reason {
        Some(reason) => format!(
            "{} ({state} since {age}: {})",
            printable(&h.name),
            printable(reason)
        ),
        None => format!("{} ({state} since {age})", printable(&h.name)),
    }
}

/// A duration in seconds, two units at most: `45s`, `3m12s`, `2h05m`, `3d04h`.
///
/// ```
/// assert_eq!(pgtunnel::status::human_duration(7500), "2h05m");
/// ```
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if secs < 60 {
        format!("{s}s")
    } else if secs < 3600 {
        format!("{m}m{s:02}s")
    } else if secs < 86_400 {
        format!("{}h{m:02}m", secs / 3600)
    } else {
        format!("{d}d{h:02}h")
    }
}

/// A byte count in binary units, one decimal from KiB up: `512 B`, `1.5 KiB`, `3.4 MiB`.
///
/// ```
/// assert_eq!(pgtunnel::status::human_bytes(1536), "1.5 KiB");
/// ```
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// `s` with control characters (newlines, escapes) escaped: the text may come from a peer.
fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::sample;

    #[test]
    fn nothing_running() {
        assert_eq!(render(&[], 0), "no pgtunnel running\n");
    }

    #[test]
    fn pinned_output_with_every_hop_state() {
        let mut p = sample();
        let now = 1_000 + 7_500;
        let t = &mut p.tunnels[0];
        t.listen.push("/tmp/s/.s.PGSQL.5432".into());
        t.hops[0].state = HopState::Up;
        t.hops[0].since_unix = now - 192;
        t.hops.push(HopStatus {
            name: "inner".into(),
            addr: "10.0.0.5:22".into(),
            state: HopState::Reconnecting,
            since_unix: now - 12,
            reason: Some("timed out".into()),
        });
        t.hops.push(HopStatus {
            name: "db-host".into(),
            addr: "10.0.0.6:22".into(),
            state: HopState::Lost,
            since_unix: now - 3,
            reason: None,
        });
        let mut second = sample();
        second.pid = 4243;
        second.tunnels.clear();
        let want = "\
pgtunnel pid 4242, up 2h05m, 1 tunnel
  staging: 127.0.0.1:6543, /tmp/s/.s.PGSQL.5432
    via bastion (up 3m12s) -> inner (reconnecting since 12s: timed out) -> db-host (lost since 3s) -> db:5432
    connections: 1 open, 3 accepted, 0 refused, 2 rejected, 1 reset
    bytes: 1.0 KiB up, 4.0 KiB down; reconnects: 1

pgtunnel pid 4243, up 2h05m, no tunnels
";
        assert_eq!(render(&[p, second], now), want);
    }

    #[test]
    fn no_hops_no_listener_clock_skew_and_hostile_text() {
        let mut p = sample();
        let t = &mut p.tunnels[0];
        t.listen.clear();
        t.hops.clear();
        t.name = "evil\x1b[2J\nname".into();
        p.tunnels.push(p.tunnels[0].clone());
        p.started_unix = 5_000; // after "now": shown as 0s, not an underflow
        let out = render(&[p], 10);
        assert!(
            out.starts_with("pgtunnel pid 4242, up 0s, 2 tunnels\n"),
            "{out}"
        );
        assert!(out.contains("  evil\\u{1b}[2J\\nname: (not listening)\n    to db:5432\n"));
        assert!(!out.contains('\x1b'));
    }

    #[test]
    fn durations_and_sizes() {
        for (secs, want) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m00s"),
            (192, "3m12s"),
            (3599, "59m59s"),
            (3600, "1h00m"),
            (86_399, "23h59m"),
            (86_400, "1d00h"),
            (3 * 86_400 + 4 * 3600 + 59, "3d04h"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
        for (n, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (3_565_158, "3.4 MiB"),
            (5 << 30, "5.0 GiB"),
            (u64::MAX, "16.0 EiB"),
        ] {
            assert_eq!(human_bytes(n), want, "{n}");
        }
    }
}
