//! Local forwarding specifications as OpenSSH parses them (`parse_forward()` and
//! `parse_fwd_field()` in `readconf.c`, OpenSSH 9.2), for `ssh -L` and `LocalForward`:
//! `[bind_address:]port:host:hostport`, `[bind_address:]port:remote_socket`,
//! `local_socket:host:hostport`, `local_socket:remote_socket`; a field in `[ ]` is taken
//! literally (an IPv6 address), `\` escapes the next character, a field with `/` is a Unix
//! socket path, ports are numbers or service names, `${VAR}` is expanded first.
//!
//! Pure; [`LocalForward::openssh_format`] writes it as `ssh -G` prints it
//! (`localforward [bind]:port [host]:port`), which the differential test compares, and its
//! `Display` in `-L` syntax (what `parse_local_forward` reads back to the same value).
//! [`bind_plan`] is where a forward's TCP listener binds, as `ssh` decides it
//! (`channel_fwd_bind_addr()` and `channel_setup_fwd_listener_tcpip()` in `channels.c`).
//! The `LocalForward` lines of a host are [`crate::config::HostConfig::local_forwards`];
//! with the command line's `-L`, [`crate::config::HostConfig::effective_local_forwards`].

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::keyword::AddressFamily;
use super::lexer::a2port;
use super::ssh_config::Origin;

/// Where a local forward listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP port, on `bind` (ssh's default bind address when `None`).
    Port {
        /// The bind address as written (`localhost`, `*`, `::1`), if any.
        bind: Option<String>,
        /// The port.
        port: u16,
    },
    /// A local Unix socket path.
    Path(String),
}

/// Where the last hop connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connect {
    /// A host and port, resolved by the last hop.
    HostPort {
        /// The host as written.
        host: String,
        /// The port.
        port: u16,
    },
    /// A Unix socket path on the last hop.
    Path(String),
}

/// One local forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalForward {
    /// Where it listens.
    pub listen: Listen,
    /// Where it goes.
    pub connect: Connect,
}

/// NI_MAXHOST: longer host names are refused.
const MAX_HOST: usize = 1025;
/// sizeof(sun_path) on Linux: longer socket paths are refused.
const MAX_SUN_PATH: usize = 108;

impl LocalForward {
    /// As `ssh -G` prints it after `localforward `.
    pub fn openssh_format(&self) -> String {
        let mut out = String::new();
        match &self.listen {
            Listen::Port { bind: None, port } => {
                let _ = write!(out, "{port}");
            }
            Listen::Port {
                bind: Some(b),
                port,
            } => {
                let _ = write!(out, "[{b}]:{port}");
            }
            Listen::Path(p) => out.push_str(p),
        }
        out.push(' ');
        match &self.connect {
            Connect::HostPort { host, port } => {
                let _ = write!(out, "[{host}]:{port}");
            }
            Connect::Path(p) => out.push_str(p),
        }
        out
    }

    /// The same forward with `f` applied to its socket paths (`ssh` expands `%` tokens in
    /// them once the files are read); host names and ports are kept.
    pub(crate) fn map_paths(
        &self,
        f: impl Fn(&str) -> Result<String, String>,
    ) -> Result<LocalForward, String> {
        Ok(LocalForward {
            listen: match &self.listen {
                Listen::Path(p) => Listen::Path(f(p)?),
                other => other.clone(),
            },
            connect: match &self.connect {
                Connect::Path(p) => Connect::Path(f(p)?),
                other => other.clone(),
            },
        })
    }
}

/// The forward in `-L` syntax (`[bind:]port:host:hostport`, a socket path for either side),
/// which [`parse_local_forward`] reads back to the same value: a field with `:` is written in
/// `[ ]` (`[::1]:63333:[fd00::5]:5432`), or with `\` escapes when it also holds `]`. (Not
/// round-tripped: a `${` in a field, which the parser expands.)
impl fmt::Display for LocalForward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.listen {
            Listen::Port { bind: None, port } => write!(f, "{port}:")?,
            Listen::Port {
                bind: Some(b),
                port,
            } => write!(f, "{}:{port}:", l_field(b))?,
            Listen::Path(p) => write!(f, "{}:", l_field(p))?,
        }
        match &self.connect {
            Connect::HostPort { host, port } => write!(f, "{}:{port}", l_field(host)),
            Connect::Path(p) => f.write_str(&l_field(p)),
        }
    }
}

/// One field of the `-L` syntax, quoted so that `parse_fwd_field()` reads it back.
fn l_field(s: &str) -> String {
    if s.contains(':') && !s.contains(']') {
        return format!("[{s}]");
    }
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        let leading = i == 0 && (c == '[' || c.is_ascii_whitespace());
        if leading || c == ':' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One `LocalForward` line in effect for a host (an entry of
/// [`HostConfig::local_forwards`](crate::config::HostConfig::local_forwards)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredForward {
    /// The forward, `%` tokens expanded in its socket paths, as `ssh` expands them once the
    /// files are read (`${VAR}` was expanded while reading the line).
    pub forward: LocalForward,
    /// The line it came from.
    pub origin: Origin,
    /// As read (`%` tokens not expanded): what `ssh` compares to drop a duplicate, before it
    /// expands anything.
    pub(crate) written: LocalForward,
}

/// Where the TCP listener of a local forward binds, as `ssh` decides it for `-L` and
/// `LocalForward` (`channel_fwd_bind_addr()` with `is_client`, then `getaddrinfo()` with
/// `AI_PASSIVE` for a wildcard). `ssh` binds every address in turn (IPv6 ones with
/// `IPV6_V6ONLY`) and the forward is up when at least one of them is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindPlan {
    /// Every loopback address, `127.0.0.1` and `::1` ([`BindPlan::addresses`]): no bind
    /// address and `GatewayPorts no`, or the bind address `localhost` exactly (ssh does not
    /// resolve that name but asks `getaddrinfo` for no name, which gives both families).
    Loopback,
    /// Every address, `0.0.0.0` and `::`: the bind address `*` or empty (`-L :63333:...`),
    /// or no bind address and `GatewayPorts yes`.
    Wildcard,
    /// The bind address as written (`127.0.0.1`, `::1`, `0.0.0.0`, `LOCALHOST`, a name):
    /// the caller resolves it (`getaddrinfo`, `AddressFamily` as the hint) and binds each
    /// address. `GatewayPorts` does not change it.
    Address(String),
}

impl BindPlan {
    /// The addresses of [`BindPlan::Loopback`] and [`BindPlan::Wildcard`] in the order glibc's
    /// `getaddrinfo()` gives them to ssh (`::1` then `127.0.0.1`; `0.0.0.0` then `::`),
    /// those of `family` only (`AddressFamily` is ssh's hint there too). `None` for an
    /// [`BindPlan::Address`], which the caller resolves.
    pub fn addresses(&self, family: AddressFamily) -> Option<Vec<IpAddr>> {
        let all: [IpAddr; 2] = match self {
            BindPlan::Loopback => [Ipv6Addr::LOCALHOST.into(), Ipv4Addr::LOCALHOST.into()],
            BindPlan::Wildcard => [Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()],
            BindPlan::Address(_) => return None,
        };
        Some(
            all.into_iter()
                .filter(|a| match family {
                    AddressFamily::Any => true,
                    AddressFamily::Inet => a.is_ipv4(),
                    AddressFamily::Inet6 => a.is_ipv6(),
                })
                .collect(),
        )
    }
}

/// Where a local forward with bind address `bind` listens (`None`: none was given), as the
/// ssh client decides it (`channel_fwd_bind_addr()`, `is_client` set): `GatewayPorts` only
/// matters when no bind address is given; `*` and an empty one mean every address;
/// `localhost` (exactly, case-sensitive) means every loopback address; any other is used as
/// written.
pub fn bind_plan(bind: Option<&str>, gateway_ports: bool) -> BindPlan {
    match bind {
        None if gateway_ports => BindPlan::Wildcard,
        None | Some("localhost") => BindPlan::Loopback,
        Some("" | "*") => BindPlan::Wildcard,
        Some(address) => BindPlan::Address(address.to_string()),
    }
}

/// One field and whether it is a path (`parse_fwd_field()`).
struct Field {
    arg: String,
    is_path: bool,
}

/// Splits the next field off `s` (`None`: no field there, or a malformed bracket).
fn next_field(s: &str) -> Option<(Field, &str)> {
    if s.is_empty() {
        return None;
    }
    if let Some(inner) = s.strip_prefix('[') {
        let end = inner.find(']')?;
        let (arg, rest) = (&inner[..end], &inner[end + 1..]);
        let rest = match rest.strip_prefix(':') {
            Some(after) => after,
            None if rest.is_empty() => rest,
            None => return None,
        };
        return Some((
            Field {
                arg: arg.to_string(),
                is_path: arg.contains('/'),
            },
            rest,
        ));
    }
    let mut arg = String::new();
    let mut is_path = false;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => {
                    is_path |= escaped == '/';
                    arg.push(escaped);
                }
                None => return None,
            },
            ':' => {
                return Some((Field { arg, is_path }, &s[i + 1..]));
            }
            c => {
                is_path |= c == '/';
                arg.push(c);
            }
        }
    }
    Some((Field { arg, is_path }, ""))
}

/// `${VAR}` references expanded with `env` (`dollar_expand()`): an unset variable or an
/// unclosed reference is an error (its reason).
fn dollar_expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`${{{after}` has no closing `}}`"))?;
        let name = &after[..end];
        out.push_str(
            &env(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?,
        );
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// OpenSSH's `fwdarg[256]`: `LocalForward A B` is parsed as `A:B` cut to 255 bytes.
const MAX_FWDARG: usize = 255;

/// Parses one `LocalForward LISTEN TARGET` line's arguments, `env` for `${VAR}`: as
/// `readconf.c` does, `LISTEN:TARGET` (cut to 255 bytes, as ssh's buffer cuts it) read like
/// `-L`. `Err`: ssh's "Bad forwarding specification", with the value (and an unset
/// variable's name).
pub(crate) fn parse_forward_line(
    listen: &str,
    target: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<LocalForward, String> {
    let mut joined = format!("{listen}:{target}");
    if joined.len() > MAX_FWDARG {
        let mut end = MAX_FWDARG;
        while !joined.is_char_boundary(end) {
            end -= 1;
        }
        joined.truncate(end);
    }
    parse_spec(&joined, env).map_err(|reason| {
        let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
        format!("Bad forwarding specification '{listen} {target}'{why}")
    })
}

/// Parses a local forward (`ssh -L SPEC`, or `LocalForward A B` as `A:B`), `env` for
/// `${VAR}`. `Err`: ssh's "Bad local forwarding specification".
pub fn parse_local_forward(
    spec: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<LocalForward, String> {
    parse_spec(spec, env).map_err(|_| format!("Bad local forwarding specification '{spec}'"))
}

/// `parse_forward()` for a local forward; `Err(Some(reason))` when `${VAR}` failed.
fn parse_spec(
    spec: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<LocalForward, Option<String>> {
    let bad = || None;
    let expanded = dollar_expand(spec, env).map_err(Some)?;
    let mut rest = expanded.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let mut fields = Vec::new();
    while fields.len() < 4 {
        match next_field(rest) {
            Some((field, after)) => {
                fields.push(field);
                rest = after;
            }
            None => break,
        }
    }
    // Trailing garbage: a fifth field, or a field that did not parse.
    if !rest.is_empty() {
        return Err(bad());
    }
    let port = |f: &Field| a2port(&f.arg).ok_or_else(bad);
    let host_port = |h: &Field, p: &Field| -> Result<Connect, Option<String>> {
        Ok(Connect::HostPort {
            host: h.arg.clone(),
            port: port(p)?,
        })
    };
    let forward = match fields.as_slice() {
        [l, c] if l.is_path && c.is_path => LocalForward {
            listen: Listen::Path(l.arg.clone()),
            connect: Connect::Path(c.arg.clone()),
        },
        [l, c] if c.is_path => LocalForward {
            listen: Listen::Port {
                bind: None,
                port: port(l)?,
            },
            connect: Connect::Path(c.arg.clone()),
        },
        [l, h, p] if l.is_path => LocalForward {
            listen: Listen::Path(l.arg.clone()),
            connect: host_port(h, p)?,
        },
        [b, l, c] if c.is_path => LocalForward {
            listen: Listen::Port {
                bind: Some(b.arg.clone()),
                port: port(l)?,
            },
            connect: Connect::Path(c.arg.clone()),
        },
        [l, h, p] => LocalForward {
            listen: Listen::Port {
                bind: None,
                port: port(l)?,
            },
            connect: host_port(h, p)?,
        },
        [b, l, h, p] => LocalForward {
            listen: Listen::Port {
                bind: Some(b.arg.clone()),
                port: port(l)?,
            },
            connect: host_port(h, p)?,
        },
        _ => return Err(bad()),
    };
    let too_long = match (&forward.listen, &forward.connect) {
        (Listen::Path(p), _) if p.len() >= MAX_SUN_PATH => true,
        (_, Connect::Path(p)) if p.len() >= MAX_SUN_PATH => true,
        (Listen::Port { bind: Some(b), .. }, _) if b.len() >= MAX_HOST => true,
        (_, Connect::HostPort { host, .. }) if host.len() >= MAX_HOST => true,
        _ => false,
    };
    if too_long {
        return Err(bad());
    }
    Ok(forward)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<String, String> {
        let env = |name: &str| (name == "PORT").then(|| "6432".to_string());
        parse_local_forward(s, &env).map(|f| f.openssh_format())
    }

    #[test]
    fn forms_as_ssh_prints_them() {
        for (spec, printed) in [
            ("63333:db.foo.com:5432", "63333 [db.foo.com]:5432"),
            ("localhost:63333:db:5432", "[localhost]:63333 [db]:5432"),
            ("[::1]:63333:[fd00::5]:5432", "[::1]:63333 [fd00::5]:5432"),
            ("63333:/run/pg/.s.PGSQL.5432", "63333 /run/pg/.s.PGSQL.5432"),
            ("/tmp/x.sock:db:5432", "/tmp/x.sock [db]:5432"),
            ("a\\:b:1:c:2", "[a:b]:1 [c]:2"),
            ("*:63333:db:5432", "[*]:63333 [db]:5432"),
            ("63333:db:${PORT}", "63333 [db]:6432"),
            ("  63333:db:5432", "63333 [db]:5432"),
        ] {
            assert_eq!(parse(spec).as_deref(), Ok(printed), "{spec}");
        }
    }

    #[test]
    fn display_is_l_syntax_that_reads_back() {
        let none = |_: &str| None;
        for (spec, shown) in [
            ("63333:db.foo.com:5432", "63333:db.foo.com:5432"),
            ("localhost:63333:db:5432", "localhost:63333:db:5432"),
            ("[::1]:63333:[fd00::5]:5432", "[::1]:63333:[fd00::5]:5432"),
            (":63333:db:5432", ":63333:db:5432"),
            ("*:63333:db:5432", "*:63333:db:5432"),
            ("63333:/run/pg/.s.PGSQL.5432", "63333:/run/pg/.s.PGSQL.5432"),
            ("/tmp/x.sock:db:5432", "/tmp/x.sock:db:5432"),
            ("/tmp/a.sock:/tmp/b.sock", "/tmp/a.sock:/tmp/b.sock"),
            ("a\\:b:1:c:2", "[a:b]:1:c:2"),
            ("a\\:b\\]:1:c:2", "a\\:b]:1:c:2"),
            ("\\[x:1:c:2", "\\[x:1:c:2"),
            ("b\\\\s:1:c:2", "b\\\\s:1:c:2"),
            ("63333:db:postgresql", "63333:db:5432"),
        ] {
            let forward = parse_local_forward(spec, &none).unwrap();
            assert_eq!(forward.to_string(), shown, "{spec}");
            assert_eq!(
                parse_local_forward(&forward.to_string(), &none),
                Ok(forward),
                "{spec}"
            );
        }
    }

    #[test]
    fn config_lines_are_joined_and_cut_as_ssh_does() {
        let env = |name: &str| (name == "PORT").then(|| "6432".to_string());
        let line = |a: &str, b: &str| parse_forward_line(a, b, &env).map(|f| f.openssh_format());
        assert_eq!(
            line("63333", "db:${PORT}").as_deref(),
            Ok("63333 [db]:6432")
        );
        assert_eq!(
            line("[::1]:63333", "[fd00::5]:5432").as_deref(),
            Ok("[::1]:63333 [fd00::5]:5432")
        );
        // `fwdarg[256]`: 255 bytes are parsed, so a long host name cuts the port.
        let host = "h".repeat(247);
        assert_eq!(
            line("1234", &format!("{host}:5432")),
            Ok(format!("1234 [{host}]:54"))
        );
        let err = line("63333", "db:${NOPE}").unwrap_err();
        assert_eq!(
            err,
            "Bad forwarding specification '63333 db:${NOPE}': environment variable `NOPE` is \
             not set"
        );
        assert_eq!(
            line("63333", "db").unwrap_err(),
            "Bad forwarding specification '63333 db'"
        );
    }

    #[test]
    fn bind_addresses_as_the_ssh_client_decides() {
        use BindPlan::*;
        for (bind, gateway_ports, plan) in [
            (None, false, Loopback),
            (None, true, Wildcard),
            (Some("localhost"), false, Loopback),
            // GatewayPorts only matters without a bind address.
            (Some("localhost"), true, Loopback),
            (Some("127.0.0.1"), true, Address("127.0.0.1".into())),
            (Some("*"), false, Wildcard),
            (Some(""), false, Wildcard),
            (Some("::1"), false, Address("::1".into())),
            (Some("0.0.0.0"), false, Address("0.0.0.0".into())),
            // Exactly `localhost`: another spelling is a name to resolve.
            (Some("LOCALHOST"), false, Address("LOCALHOST".into())),
            (Some("db.example"), true, Address("db.example".into())),
        ] {
            assert_eq!(
                bind_plan(bind, gateway_ports),
                plan,
                "{bind:?} {gateway_ports}"
            );
        }
    }

    #[test]
    fn loopback_and_wildcard_addresses_in_getaddrinfo_order() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let all = |plan: BindPlan, family| plan.addresses(family).unwrap();
        assert_eq!(
            all(BindPlan::Loopback, AddressFamily::Any),
            [ip("::1"), ip("127.0.0.1")]
        );
        assert_eq!(
            all(BindPlan::Wildcard, AddressFamily::Any),
            [ip("0.0.0.0"), ip("::")]
        );
        assert_eq!(
            all(BindPlan::Loopback, AddressFamily::Inet),
            [ip("127.0.0.1")]
        );
        assert_eq!(all(BindPlan::Wildcard, AddressFamily::Inet6), [ip("::")]);
        assert_eq!(
            BindPlan::Address("::1".into()).addresses(AddressFamily::Any),
            None
        );
    }

    #[test]
    fn refusals() {
        for spec in [
            "0:db:5432",
            "63333:db:0",
            "63333:db",
            "x:y:z:w:v",
            "63333:db:${NOPE}",
            "[::1:63333:db:5432",
            "[::1]x:63333:db:5432",
            "63333:db:5432\\",
        ] {
            assert!(
                parse(spec).is_err_and(|e| e.starts_with("Bad local forwarding")),
                "{spec}"
            );
        }
    }
}
