//! A numeric host name rewritten as OpenSSH rewrites it (`10.1` -> `10.0.0.1`).
//!
//! ssh's `main()` (ssh.c, OpenSSH 9.2) takes the host it connects to (`HostName` with `%h`
//! expanded, or the host as typed) and, when `is_addr()` says it is a numeric address,
//! `resolve_canonicalize()` -> `resolve_addr()` replaces it by
//! `getaddrinfo(AI_NUMERICHOST)` + `getnameinfo(NI_NUMERICHOST)`: whatever
//! `CanonicalizeHostname` says, before `-G` prints and before the `ProxyJump` loop check
//! ([`ssh_host_name`]).
//! That name is then `hostname` in `ssh -G`, `%h` in the tokens expanded after it, and the
//! known_hosts name; `HostKeyAlias` is not touched. A name that is not an address is
//! lowercased instead.
//!
//! glibc's `getaddrinfo` reads IPv4 with `inet_aton` (the whole string: `a`, `a.b`, `a.b.c`,
//! `a.b.c.d`, each part decimal, `0` octal or `0x` hex) and IPv6 with `inet_pton`; its
//! `getnameinfo` prints IPv6 with `inet_ntop` (BIND's form, which writes `::2:3` as
//! `::0.2.0.3`). `AddressFamily` is passed as the family hint: under `inet` an IPv6 name is
//! an address only if it is IPv4-mapped (and becomes the IPv4 address), under `inet6` an IPv4
//! name is not one. A scoped IPv6 name (`fe80::1%eth0`) is left as it is.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::keyword::AddressFamily;

/// The host name as ssh's `main()` leaves it: a numeric address in its canonical form
/// (unless that differs from `name` only in case: ssh compares with `strcasecmp` and then
/// keeps `name`); else `name` lowercased, except a name that `is_addr_fast()` takes for an
/// address (one with `:` or `%`, or only digits and dots), which is kept as written.
pub(crate) fn ssh_host_name(name: &str, family: AddressFamily) -> String {
    match canonical_address(name, family) {
        Some(c) if !c.eq_ignore_ascii_case(name) => c,
        Some(_) => name.to_string(),
        None if is_addr_fast(name) => name.to_string(),
        None => name.to_ascii_lowercase(),
    }
}

/// OpenSSH's `is_addr_fast()`.
pub(crate) fn is_addr_fast(name: &str) -> bool {
    name.contains(['%', ':']) || name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// `name` in its canonical form when it is a numeric address (`getaddrinfo` with
/// `AI_NUMERICHOST` and `family` as the hint, then `getnameinfo`), else `None`.
pub(crate) fn canonical_address(name: &str, family: AddressFamily) -> Option<String> {
    let v4 = inet_aton(name);
    let v6 = || name.parse::<Ipv6Addr>().ok();
    match family {
        AddressFamily::Any => v4
            .map(|a| a.to_string())
            .or_else(|| v6().map(|a| inet_ntop6(&a))),
        AddressFamily::Inet => v4
            .or_else(|| v6().and_then(|a| a.to_ipv4_mapped()))
            .map(|a| a.to_string()),
        AddressFamily::Inet6 => {
            if v4.is_some() {
                None
            } else {
                v6().map(|a| inet_ntop6(&a))
            }
        }
    }
}

/// glibc's `__inet_aton_exact`: one to four parts, each `strtoul(.., 0)` (decimal, `0`
/// octal, `0x` hex), all but the last at most 255, the last filling the remaining bytes.
pub(crate) fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let b = s.as_bytes();
    let mut parts: Vec<u64> = Vec::with_capacity(4);
    let mut i = 0;
    loop {
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let (val, used) = strtoul0(&b[i..])?;
        parts.push(val);
        i += used;
        match b.get(i) {
            Some(b'.') => {
                if parts.len() > 3 || val > 0xff {
                    return None;
                }
                i += 1;
            }
            None => break,
            Some(_) => return None,
        }
    }
    let last = parts.pop()?;
    let max = [0xffff_ffff_u64, 0xff_ffff, 0xffff, 0xff][parts.len()];
    if last > max {
        return None;
    }
    let mut addr = last;
    for (k, p) in parts.iter().enumerate() {
        addr |= p << (24 - 8 * k);
    }
    Some(Ipv4Addr::from(u32::try_from(addr).ok()?))
}

/// `strtoul(s, &end, 0)` on a string starting with a digit: the value (`None` above
/// 0xffffffff) and the bytes used. `0x` without a hex digit after it is just `0`.
fn strtoul0(s: &[u8]) -> Option<(u64, usize)> {
    let (radix, start) = match s {
        [b'0', b'x' | b'X', h, ..] if h.is_ascii_hexdigit() => (16, 2),
        [b'0', ..] => (8, 0),
        _ => (10, 0),
    };
    let mut val: u64 = 0;
    let mut i = start;
    while let Some(d) = s.get(i).and_then(|&c| char::from(c).to_digit(radix)) {
        val = val * u64::from(radix) + u64::from(d);
        if val > 0xffff_ffff {
            return None;
        }
        i += 1;
    }
    Some((val, i))
}

/// glibc's `inet_ntop` for IPv6: lowercase hex groups, the first longest run of two or more
/// zero groups as `::`, and the last 32 bits as dotted IPv4 after a leading `::` of six zero
/// groups or `::ffff:` (`::1.2.3.4`, `::0.2.0.3`, `::ffff:1.2.3.4`).
pub(crate) fn inet_ntop6(a: &Ipv6Addr) -> String {
    let words = a.segments();
    // Runs of zero groups as (first group, length).
    let mut best: Option<(usize, usize)> = None;
    let mut cur: Option<(usize, usize)> = None;
    for (i, &w) in words.iter().enumerate() {
        if w == 0 {
            cur = Some(match cur {
                Some((base, len)) => (base, len + 1),
                None => (i, 1),
            });
        } else {
            cur = None;
        }
        if let Some((_, len)) = cur
            && best.is_none_or(|(_, best_len)| len > best_len)
        {
            best = cur;
        }
    }
    let best = best.filter(|&(_, len)| len >= 2);
    let mut out = String::new();
    let mut i = 0;
    while i < 8 {
        if let Some((base, len)) = best
            && i == base
        {
            out.push(':');
            i += len;
            if i == 8 {
                out.push(':');
            }
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6
            && let Some((0, len)) = best
            && (len == 6 || (len == 5 && words[5] == 0xffff))
        {
            let [.., a, b, c, d] = a.octets();
            out.push_str(&Ipv4Addr::new(a, b, c, d).to_string());
            break;
        }
        out.push_str(&format!("{:x}", words[i]));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pair: as written, as `ssh -F none -G -o HostName=...` (OpenSSH 9.2, glibc 2.36)
    /// prints it (`None`: not an address, kept as written).
    const ANY: &[(&str, Option<&str>)] = &[
        ("10.1", Some("10.0.0.1")),
        ("192.168.001.010", Some("192.168.1.8")),
        ("0x7f.1", Some("127.0.0.1")),
        ("0X7F.0x1", Some("127.0.0.1")),
        ("127.65535", Some("127.0.255.255")),
        ("1.2.3", Some("1.2.0.3")),
        ("4294967295", Some("255.255.255.255")),
        ("0xffffffff", Some("255.255.255.255")),
        ("0377.0377.0377.0377", Some("255.255.255.255")),
        ("010.0.0.1", Some("8.0.0.1")),
        ("1.256", Some("1.0.1.0")),
        ("1.16777215", Some("1.255.255.255")),
        ("1.2.3.04", Some("1.2.3.4")),
        ("00000000012.1", Some("10.0.0.1")),
        ("0x00000000a.1", Some("10.0.0.1")),
        ("0", Some("0.0.0.0")),
        ("00", Some("0.0.0.0")),
        ("1.2.3.4", Some("1.2.3.4")),
        ("4294967296", None),
        ("0x100000000", None),
        ("1.16777216", None),
        ("1.2.65536", None),
        ("0400.1.1.1", None),
        ("1.2.3.4.", None),
        ("1.2.3.4.5", None),
        ("09.1", None),
        ("1.2.3.08", None),
        ("0x", None),
        ("1..2", None),
        (".1", None),
        ("1e1", None),
        ("+1.2.3.4", None),
        ("-1", None),
        ("1.2.3.-4", None),
        ("1.2.3.4 ", None),
        ("abc", None),
        ("::ffff:1.2.3.4", Some("::ffff:1.2.3.4")),
        ("::FFFF:102:304", Some("::ffff:1.2.3.4")),
        ("::2:3", Some("::0.2.0.3")),
        ("::1:0", Some("::0.1.0.0")),
        ("::0:0:1:0", Some("::0.1.0.0")),
        ("::1.2.3.4", Some("::1.2.3.4")),
        ("::ffff:0.0.0.0", Some("::ffff:0.0.0.0")),
        ("::ffff:0:1.2.3.4", Some("::ffff:0:102:304")),
        ("1:2:3:4:5:6:1.2.3.4", Some("1:2:3:4:5:6:102:304")),
        ("0:0:0:0:0:0:0:1", Some("::1")),
        ("::", Some("::")),
        ("1::", Some("1::")),
        ("1:0:0:2::3", Some("1:0:0:2::3")),
        ("1:0:0:2:0:0:0:3", Some("1:0:0:2::3")),
        ("2001:DB8:0:0:1:0:0:1", Some("2001:db8::1:0:0:1")),
        ("2001:db8:0:1:1:1:1:1", Some("2001:db8:0:1:1:1:1:1")),
        ("[::1]", None),
        ("fe80::1%lo", None),
        ("0:0::1::", None),
    ];

    #[test]
    fn numeric_names_as_ssh_rewrites_them() {
        for &(name, want) in ANY {
            assert_eq!(
                canonical_address(name, AddressFamily::Any).as_deref(),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn what_ssh_leaves_of_a_host_name() {
        let host = |n| ssh_host_name(n, AddressFamily::Any);
        assert_eq!(host("10.1"), "10.0.0.1");
        assert_eq!(host("0X7F.1"), "127.0.0.1");
        assert_eq!(host("2001:DB8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
        // Canonical but for case: kept as written.
        assert_eq!(host("FFFF::1"), "FFFF::1");
        assert_eq!(host("::FFFF:1.2.3.4"), "::FFFF:1.2.3.4");
        // Not an address, but is_addr_fast() says it may be one: not lowercased.
        assert_eq!(host("Ec7:Df306F532a4b"), "Ec7:Df306F532a4b");
        assert_eq!(host("FE80::1%LO"), "FE80::1%LO");
        assert_eq!(host("Db.Example"), "db.example");
        assert_eq!(host("09.1.ABC"), "09.1.abc");
        // Under inet6, 0X7F.1 is not an address: lowercased.
        assert_eq!(ssh_host_name("0X7F.1", AddressFamily::Inet6), "0x7f.1");
    }

    #[test]
    fn address_family_is_the_hint() {
        let inet = |n| canonical_address(n, AddressFamily::Inet);
        let inet6 = |n| canonical_address(n, AddressFamily::Inet6);
        assert_eq!(inet("10.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(inet("::FFFF:102:304").as_deref(), Some("1.2.3.4"));
        assert_eq!(inet("::1.2.3.4"), None);
        assert_eq!(inet("::1"), None);
        assert_eq!(inet6("10.1"), None);
        assert_eq!(inet6("::2:3").as_deref(), Some("::0.2.0.3"));
    }

    #[test]
    fn ntop_matches_std_where_glibc_has_no_ipv4_form() {
        for s in [
            "2001:db8::1",
            "fe80::1:2",
            "1::",
            "::1",
            "1:2:3:4:5:6:7:8",
            "0:1::",
        ] {
            let a: Ipv6Addr = s.parse().unwrap();
            assert_eq!(inet_ntop6(&a), a.to_string(), "{s}");
        }
    }
}
