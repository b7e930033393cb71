//! Who holds a local port that pgtunnel could not listen on: the listening sockets in
//! Linux's `/proc/net/tcp` and `/proc/net/tcp6` (parsed by [`listening_on`], pure), matched
//! to a process through the `socket:[INODE]` links in `/proc/PID/fd` where they are readable
//! (another user's are not, unless root: then the socket's owner is named). Nothing is run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::Error;

/// A socket listening on the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its owner's uid.
    pub uid: u32,
    /// Its inode (`socket:[INODE]` in `/proc/PID/fd`).
    pub inode: u64,
    /// The process that has it open, if it could be told: pid and command name.
    pub process: Option<(u32, String)>,
}

/// The address pgtunnel could not listen on because it is in use, if that is what `error`
/// says (also for one of several tunnels: then its name).
pub fn in_use(error: &Error) -> Option<(SocketAddr, Option<&str>)> {
    match error {
        Error::Listen { addr, source } if source.kind() == std::io::ErrorKind::AddrInUse => {
            Some((*addr, None))
        }
        Error::Tunnel { name, source } => in_use(source).map(|(addr, _)| (addr, Some(&**name))),
        _ => None,
    }
}

/// The sockets listening on `port`, with the processes holding them where `/proc` tells.
/// Empty where `/proc/net` cannot be read (not Linux).
pub fn holders(port: u16) -> Vec<Holder> {
    let mut found: Vec<Holder> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| listening_on(&table, port))
        .collect();
    if found.is_empty() {
        return found;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Some(inode) = std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| socket_inode(&l.to_string_lossy()))
            else {
                continue;
            };
            for holder in found.iter_mut().filter(|h| h.inode == inode) {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                holder.process = Some((pid, comm.trim().to_string()));
            }
        }
    }
    found
}

/// The hint after "cannot listen on ADDR: Address already in use": who holds it (when
/// known), then `advice` (what to change). `user_name` names a uid. Pure.
pub fn in_use_hint(
    holders: &[Holder],
    advice: &str,
    user_name: &dyn Fn(u32) -> Option<String>,
) -> String {
    let who: Vec<String> = holders
        .iter()
        .map(|h| match &h.process {
            Some((pid, comm)) => format!("{comm} (pid {pid}) listens on {}", h.addr),
            None => {
                let owner = user_name(h.uid).map_or(format!("uid {}", h.uid), |name| {
                    format!("{name} (uid {})", h.uid)
                });
                format!("a process of {owner} listens on {}", h.addr)
            }
        })
        .collect();
    match who.is_empty() {
        true => advice.to_string(),
        false => format!("{}; {advice}", who.join(", ")),
    }
}

/// The listening sockets on `port` in a `/proc/net/tcp` or `tcp6` table (the process is
/// not known yet). Pure.
pub fn listening_on(table: &str, port: u16) -> Vec<Holder> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (*cols.get(1)?, *cols.get(3)?);
            let (uid, inode) = (cols.get(7)?.parse().ok()?, cols.get(9)?.parse().ok()?);
            let addr = proc_addr(local)?;
            (state == LISTEN && addr.port() == port).then_some(Holder {
                addr,
                uid,
                inode,
                process: None,
            })
        })
        .collect()
}

/// `0100007F:15B3` (or 32 hex digits for IPv6): the address as the kernel prints it, each
/// 32-bit word in the machine's byte order.
fn proc_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..ip.len()).step_by(8) {
        let word = u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// `socket:[12345]` -> 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table as the kernel prints it on this machine (the words in its byte order).
    fn table(rows: &[(&str, &str, u32, u64)]) -> String {
        let mut text = String::from(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
        );
        for (i, (local, state, uid, inode)) in rows.iter().enumerate() {
            text.push_str(&format!(
                "   {i}: {local} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000  {uid}        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
            ));
        }
        text
    }

    fn v4(ip: [u8; 4], port: u16) -> String {
        format!("{:08X}:{port:04X}", u32::from_ne_bytes(ip))
    }

    #[test]
    fn listening_sockets_on_the_port_are_found() {
        let text = table(&[
            (&v4([127, 0, 0, 1], 5555), "0A", 1000, 42),
            (&v4([0, 0, 0, 0], 5432), "0A", 0, 43),
            // Established, not listening.
            (&v4([127, 0, 0, 1], 5555), "01", 1000, 44),
        ]);
        assert_eq!(
            listening_on(&text, 5555),
            vec![Holder {
                addr: "127.0.0.1:5555".parse().unwrap(),
                uid: 1000,
                inode: 42,
                process: None,
            }]
        );
        assert!(listening_on(&text, 6000).is_empty());
        assert!(listening_on("garbage\nnot a table", 5555).is_empty());
    }

    #[test]
    fn ipv6_addresses_are_read_word_by_word() {
        let words: String = Ipv6Addr::LOCALHOST
            .octets()
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect();
        assert_eq!(
            proc_addr(&format!("{words}:15B3")),
            Some("[::1]:5555".parse().unwrap())
        );
        assert_eq!(proc_addr("0100:15B3"), None);
        assert_eq!(socket_inode("socket:[77]"), Some(77));
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn the_hint_names_the_holder_when_known() {
        let advice = "leave out -L for a free port";
        let holder = |process| Holder {
            addr: "0.0.0.0:5555".parse().unwrap(),
            uid: 1001,
            inode: 1,
            process,
        };
        let names = |uid| (uid == 1001).then(|| "bob".to_string());
        assert_eq!(
            in_use_hint(&[holder(Some((77, "postgres".into())))], advice, &names),
            "postgres (pid 77) listens on 0.0.0.0:5555; leave out -L for a free port"
        );
        assert_eq!(
            in_use_hint(&[holder(None)], advice, &names),
            "a process of bob (uid 1001) listens on 0.0.0.0:5555; leave out -L for a free port"
        );
        assert_eq!(in_use_hint(&[], advice, &names), advice);
    }
}
