//! `ProxyJump` values, parsed with OpenSSH 9.x's rules.
//!
//! These differ from `-J/--via` parsing in [`crate::spec::parse_hop`] (both split host and
//! port with [`crate::spec::hpdelim`], OpenSSH's `hpdelim2`), so they live here:
//! OpenSSH takes the value up to the first blank or `#`, `none` (any case) only when it is the
//! whole value, and for each comma-separated element either an `ssh://[user[;params]@]host[:port][/]`
//! URI (user URL-decoded, host checked like a domain name, so no IPv6 literal) or
//! `[user@]host[:port]` split at the last `@`, with `[...]` around a host holding `:` and a
//! service name allowed as port. Every element is checked, even in blocks that do not apply.

use crate::spec::{HopSpec, hpdelim};

use super::lexer::a2port;

/// A parsed `ProxyJump` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Jump {
    /// `none`.
    None,
    /// Hops in connection order.
    Hops(Vec<HopSpec>),
}

/// Parses the raw value of a `ProxyJump` line (after the keyword, `=` and blanks).
pub(crate) fn parse_proxy_jump(raw: &str) -> Result<Jump, String> {
    if raw.eq_ignore_ascii_case("none") {
        return Ok(Jump::None);
    }
    let value = raw.split('#').next().unwrap_or("");
    let value = value.split([' ', '\t', '\r', '\n']).next().unwrap_or("");
    let hops = value
        .split(',')
        .map(|element| parse_element(element).ok_or_else(|| invalid(raw, element)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Jump::Hops(hops))
}

fn invalid(raw: &str, element: &str) -> String {
    if element.is_empty() {
        format!("invalid ProxyJump `{raw}`: empty jump host")
    } else {
        format!(
            "invalid ProxyJump `{raw}`: `{element}` is not [user@]host[:port] or ssh://[user@]host[:port]"
        )
    }
}

fn parse_element(s: &str) -> Option<HopSpec> {
    match s.strip_prefix("ssh://") {
        Some(uri) => parse_uri(uri),
        None => parse_user_host_port(s),
    }
}

/// OpenSSH `parse_user_host_port()`.
fn parse_user_host_port(s: &str) -> Option<HopSpec> {
    let (user, hostport) = match s.rsplit_once('@') {
        Some((user, rest)) if !user.is_empty() => (Some(user.to_string()), rest),
        Some(_) => return None,
        None => (None, s),
    };
    let (host, port) = split_host_port(hostport, false)?;
    let port = match port {
        Some(p) if !p.is_empty() => Some(a2port(p)?),
        _ => None,
    };
    Some(HopSpec { user, host, port })
}

/// OpenSSH `parse_uri("ssh", ...)` without the scheme; a path is refused.
fn parse_uri(s: &str) -> Option<HopSpec> {
    let (user, rest) = match s.split_once('@') {
        Some((info, rest)) => {
            let user = info.split(';').next().unwrap_or("");
            if user.is_empty() {
                return None;
            }
            (Some(urldecode(user)?), rest)
        }
        None => (None, s),
    };
    let (host, after, delim) = hpdelim_jump(rest, true)?;
    let host = valid_domain(&host)?;
    let mut port = None;
    let mut path = after.unwrap_or("");
    if delim == Some(':') && !path.is_empty() {
        let (p, rest) = match path.split_once('/') {
            Some((p, rest)) => (p, rest),
            None => (path, ""),
        };
        port = Some(a2port(p)?);
        path = rest;
    }
    if !path.is_empty() {
        return None;
    }
    Some(HopSpec { user, host, port })
}

/// `hpdelim2` + `cleanhostname`: host and what follows its `:` (a `/` only ends the host
/// in URIs; OpenSSH 9.2 refuses it elsewhere).
fn split_host_port(s: &str, uri: bool) -> Option<(String, Option<&str>)> {
    let (host, after, _) = hpdelim_jump(s, uri)?;
    Some((host, after))
}

/// [`hpdelim`] as `ProxyJump` takes it: `:` or, in URIs, `/` after the host; brackets hold any
/// non-empty name.
fn hpdelim_jump(s: &str, uri: bool) -> Option<(String, Option<&str>, Option<char>)> {
    let d = hpdelim(s, true)?;
    match d.delim {
        None | Some(':') => {}
        Some('/') if uri => {}
        Some(_) => return None,
    }
    // `[]`: OpenSSH would accept an empty host name; nothing can connect to it.
    if d.host.is_empty() {
        return None;
    }
    Some((d.host.to_string(), d.delim.map(|_| d.after), d.delim))
}

/// OpenSSH `valid_domain(name, 0)`: letters, digits, `-`, `_` and single dots, starting with
/// a letter or digit; a trailing dot is dropped.
fn valid_domain(name: &str) -> Option<String> {
    let first = name.bytes().next()?;
    if !first.is_ascii_alphanumeric() {
        return None;
    }
    if name.contains("..")
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
    {
        return None;
    }
    Some(name.strip_suffix('.').unwrap_or(name).to_string())
}

/// OpenSSH `urldecode()`: `%XX` and `+` for a space.
fn urldecode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                let byte = u8::from_str_radix(hex, 16).ok()?;
                if byte == 0 {
                    return None;
                }
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(user: Option<&str>, host: &str, port: Option<u16>) -> HopSpec {
        HopSpec {
            user: user.map(str::to_string),
            host: host.into(),
            port,
        }
    }

    fn hops(s: &str) -> Vec<HopSpec> {
        match parse_proxy_jump(s) {
            Ok(Jump::Hops(h)) => h,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn none_only_as_whole_value() {
        assert_eq!(parse_proxy_jump("none"), Ok(Jump::None));
        assert_eq!(parse_proxy_jump("NONE"), Ok(Jump::None));
        // OpenSSH 9.2 takes these as a jump host called "none".
        assert_eq!(hops("none # c"), [hop(None, "none", None)]);
        assert_eq!(hops("none#c"), [hop(None, "none", None)]);
    }

    #[test]
    fn lists_and_forms() {
        assert_eq!(
            hops("j1,u@j2:2200"),
            [hop(None, "j1", None), hop(Some("u"), "j2", Some(2200))]
        );
        assert_eq!(hops("u@h@g"), [hop(Some("u@h"), "g", None)]);
        assert_eq!(
            hops("u@[fd00::1]:22"),
            [hop(Some("u"), "fd00::1", Some(22))]
        );
        assert_eq!(hops("[fd00::1]"), [hop(None, "fd00::1", None)]);
        assert_eq!(hops("h:"), [hop(None, "h", None)]);
        assert_eq!(hops("h:022"), [hop(None, "h", Some(22))]);
        assert_eq!(hops("h;x"), [hop(None, "h;x", None)]);
        // Cut at the first blank or '#'.
        assert_eq!(hops("a b,c"), [hop(None, "a", None)]);
        assert_eq!(hops("a,b#c"), [hop(None, "a", None), hop(None, "b", None)]);
    }

    #[test]
    fn uris() {
        assert_eq!(hops("ssh://u@j:22"), [hop(Some("u"), "j", Some(22))]);
        assert_eq!(hops("ssh://u;x=1@j:22/"), [hop(Some("u"), "j", Some(22))]);
        assert_eq!(hops("ssh://u%40v@j"), [hop(Some("u@v"), "j", None)]);
        assert_eq!(hops("ssh://h/"), [hop(None, "h", None)]);
        assert_eq!(hops("ssh://h."), [hop(None, "h", None)]);
        assert_eq!(hops("ssh://h_x"), [hop(None, "h_x", None)]);
    }

    #[test]
    fn invalid_forms() {
        for bad in [
            "a, b",
            ",a",
            "a,",
            "a,,b",
            "a,bad:0",
            "h:0",
            "h:99999",
            "@h",
            "u@",
            ":22",
            "h::22",
            "h/2222",
            "h/",
            "[h]x",
            "fd00::1",
            "ssh://[fd00::1]",
            "ssh://a@b@c",
            "ssh://h/x",
            "ssh://h:/",
            "ssh://@h",
            "ssh://-h",
            "ssh://h..x",
            "SSH://h",
            "[]",
            "",
        ] {
            assert!(parse_proxy_jump(bad).is_err(), "{bad} accepted");
        }
        let err = parse_proxy_jump("a,bad:0").unwrap_err();
        assert!(err.contains("`bad:0`"), "{err}");
    }
}
