//! OpenSSH's jump-host grammar (`parse_jump()` in readconf.c), shared by `ProxyJump` lines and
//! `-J/--via` ([`crate::spec::parse_hop`]), as `ssh -J` and `ProxyJump` share it in OpenSSH.
//!
//! Each comma-separated element is either an `ssh://[user[;params]@]host[:port][/]` URI (user
//! URL-decoded, host checked like a domain name, so no IPv6 literal; `parse_uri()`) or
//! `[user@]host[:port]` split at the last `@`, with `[...]` around a host holding `:`
//! (`parse_user_host_port()`); both split host and port with [`crate::spec::hpdelim`]
//! (`hpdelim2`) and take a TCP service name as port (`a2port()`). [`parse_element`] parses one
//! element and says what is wrong; [`check_command_line`] adds the user and host name checks
//! `ssh -J` makes and `ProxyJump` in a file does not (OpenSSH 10.3, backported to Debian's 9.2).
//!
//! For a `ProxyJump` line ([`parse_proxy_jump`]) OpenSSH 9.x takes the value up to the first
//! blank or `#`, `none` (any case) only when it is the whole value, and checks every element,
//! even in blocks that do not apply.

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

/// Why one jump host does not fit OpenSSH's grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HopError {
    /// Nothing at all.
    Empty,
    /// `@` with nothing before it.
    EmptyUser,
    /// No host after the user (or `[]`).
    NoHost,
    /// `[` without its `]`.
    UnclosedBracket,
    /// After the host: not `:` (a `/`, or anything after `]`).
    AfterHost,
    /// The port, as written, is neither 1..=65535 nor a TCP service name.
    BadPort(String),
    /// `ssh://host/path`.
    UriPath,
    /// A bad `%XX` escape in an `ssh://` user, or one that is not UTF-8.
    UriUser,
    /// `ssh://[v6]`: OpenSSH checks URI hosts as domain names. Holds the hop written without
    /// `ssh://`, which OpenSSH accepts.
    UriIpv6(String),
    /// An `ssh://` host that is not a domain name or IPv4 address.
    UriHost,
    /// A host name `ssh -J` refuses (shell metacharacters, blanks, control characters, `-`
    /// first).
    HostChars,
    /// A user name `ssh -J` refuses (shell metacharacters, control characters, `-` first,
    /// `\` last, `-` after a blank).
    UserChars,
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
        .map(|element| parse_element(element).map_err(|_| invalid(raw, element)))
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

/// One jump host: `ssh://...` or `[user@]host[:port]` (OpenSSH `parse_ssh_uri()`, then
/// `parse_user_host_port()`).
pub(crate) fn parse_element(s: &str) -> Result<HopSpec, HopError> {
    if s.is_empty() {
        return Err(HopError::Empty);
    }
    match s.strip_prefix("ssh://") {
        Some(uri) => parse_uri(uri),
        None => parse_user_host_port(s),
    }
}

/// OpenSSH `parse_user_host_port()`.
fn parse_user_host_port(s: &str) -> Result<HopSpec, HopError> {
    let (user, hostport) = match s.rsplit_once('@') {
        Some((user, rest)) if !user.is_empty() => (Some(user.to_string()), rest),
        Some(_) => return Err(HopError::EmptyUser),
        None => (None, s),
    };
    let d = hpdelim(hostport, true).ok_or(HopError::UnclosedBracket)?;
    if d.host.is_empty() {
        return Err(HopError::NoHost);
    }
    let port = match d.delim {
        None => None,
        Some(':') => port(d.after)?,
        Some(_) => return Err(HopError::AfterHost),
    };
    Ok(HopSpec {
        user,
        host: d.host.to_string(),
        port,
    })
}

/// An optional port: none when empty (`host:`), else `a2port()`.
fn port(p: &str) -> Result<Option<u16>, HopError> {
    if p.is_empty() {
        return Ok(None);
    }
    a2port(p)
        .map(Some)
        .ok_or_else(|| HopError::BadPort(p.to_string()))
}

/// OpenSSH `parse_uri("ssh", ...)` without the scheme; a path is refused.
fn parse_uri(s: &str) -> Result<HopSpec, HopError> {
    let (user, rest) = match s.split_once('@') {
        Some((info, rest)) => {
            let user = info.split(';').next().unwrap_or("");
            if user.is_empty() {
                return Err(HopError::EmptyUser);
            }
            (Some(urldecode(user).ok_or(HopError::UriUser)?), rest)
        }
        None => (None, s),
    };
    let d = hpdelim(rest, true).ok_or(HopError::UnclosedBracket)?;
    // `[]`: OpenSSH would accept an empty host name; nothing can connect to it.
    if d.host.is_empty() {
        return Err(HopError::NoHost);
    }
    let (port_text, path) = match d.delim {
        Some(':') => d.after.split_once('/').unwrap_or((d.after, "")),
        Some('/') => ("", d.after),
        None => ("", ""),
        Some(_) => return Err(HopError::AfterHost),
    };
    if d.bracketed && d.host.contains(':') {
        let plain = HopSpec {
            user,
            host: d.host.to_string(),
            port: None,
        };
        let colon = if port_text.is_empty() { "" } else { ":" };
        return Err(HopError::UriIpv6(format!("{plain}{colon}{port_text}")));
    }
    let host = valid_domain(d.host).ok_or(HopError::UriHost)?;
    let port = match d.delim {
        Some(':') if d.after.is_empty() => None,
        Some(':') => Some(a2port(port_text).ok_or_else(|| HopError::BadPort(port_text.into()))?),
        _ => None,
    };
    if !path.is_empty() {
        return Err(HopError::UriPath);
    }
    Ok(HopSpec { user, host, port })
}

/// The checks `ssh -J` makes on the command line and `ProxyJump` in a file does not
/// (OpenSSH 10.3 `ssh_valid_hostname()` and `ssh_valid_ruser()`).
pub(crate) fn check_command_line(hop: &HopSpec) -> Result<(), HopError> {
    // C's isspace() and iscntrl() in the C locale.
    let blank = |c: u8| c == b' ' || (b'\t'..=b'\r').contains(&c);
    let host = hop.host.as_bytes();
    if host.first() == Some(&b'-')
        || host
            .iter()
            .any(|&c| b"'`\"$\\;&<>|(){},".contains(&c) || c == b' ' || c.is_ascii_control())
    {
        return Err(HopError::HostChars);
    }
    let user = hop.user.as_deref().unwrap_or("").as_bytes();
    if user.first() == Some(&b'-')
        || user.last() == Some(&b'\\')
        || user.windows(2).any(|w| blank(w[0]) && w[1] == b'-')
        || user
            .iter()
            .any(|&c| b"'`\";&<>|(){}".contains(&c) || c.is_ascii_control())
    {
        return Err(HopError::UserChars);
    }
    Ok(())
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

    #[test]
    fn element_reasons() {
        for (bad, why) in [
            ("", HopError::Empty),
            ("@h", HopError::EmptyUser),
            ("ssh://;x@h", HopError::EmptyUser),
            ("u@", HopError::NoHost),
            ("[]", HopError::NoHost),
            ("ssh://", HopError::NoHost),
            ("[fd00::1", HopError::UnclosedBracket),
            ("[h]x", HopError::AfterHost),
            ("h/x", HopError::AfterHost),
            ("h:0", HopError::BadPort("0".into())),
            ("ssh://h:/", HopError::BadPort(String::new())),
            ("ssh://h//", HopError::UriPath),
            ("ssh://h:22/x", HopError::UriPath),
            ("ssh://u%0@h", HopError::UriUser),
            ("ssh://%ff@h", HopError::UriUser),
            (
                "ssh://u@[fd00::1]:22/",
                HopError::UriIpv6("u@[fd00::1]:22".into()),
            ),
            ("ssh://-h", HopError::UriHost),
        ] {
            assert_eq!(parse_element(bad), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn command_line_checks() {
        let check = |s: &str| check_command_line(&parse_element(s).unwrap());
        for good in ["u$@h", "é@h", "u v@h", "a,b@h", "u\\x@h", "h_x"] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        for bad in ["a;b", "a$b", "a\\", "-h", "a{b", "h,x@a|b"] {
            assert_eq!(check(bad), Err(HopError::HostChars), "{bad}");
        }
        for bad in ["-u@h", "u;x@h", "u`@h", "u\\@h", "u -v@h", "u\x07@h"] {
            assert_eq!(check(bad), Err(HopError::UserChars), "{bad}");
        }
    }
}
