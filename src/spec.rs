//! What the user asked for, validated: the target, the jump hops and the listen address.
//!
//! These parsers take the strings exactly as typed on the command line and do no I/O, so
//! every rule lives in one place and is unit-tested here (a hop's grammar is OpenSSH's
//! `parse_jump()`, shared with `ProxyJump` in `config::jump`). Names are never resolved locally:
//! the target's host is sent as written to the last hop (like `ssh -W`).

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use thiserror::Error;

use crate::config::jump::{self, HopError};

/// The PostgreSQL port, used when TARGET has none.
pub const DEFAULT_TARGET_PORT: u16 = 5432;

/// A malformed TARGET, HOP or listen address.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// The string is empty.
    #[error("{what} is empty")]
    Empty {
        /// Which argument ("TARGET", "hop", "--listen").
        what: &'static str,
    },
    /// A port that is not a number in 1..=65535.
    #[error("{what} `{input}`: port `{port}` is not a number from 1 to 65535")]
    BadPort {
        /// Which argument.
        what: &'static str,
        /// The whole argument as typed.
        input: String,
        /// The port part as typed.
        port: String,
    },
    /// Arguments that do not go together.
    #[error("{what}: {reason}")]
    Usage {
        /// Which argument.
        what: &'static str,
        /// What is wrong.
        reason: Cow<'static, str>,
    },
    /// Anything else that does not fit the grammar.
    #[error("{what} `{input}`: {reason}")]
    Malformed {
        /// Which argument.
        what: &'static str,
        /// The whole argument as typed.
        input: String,
        /// What is wrong.
        reason: Cow<'static, str>,
    },
}

/// `host[:port]`: the service as seen from the last hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    /// Port, defaulting to 5432.
    pub port: u16,
    /// Whether the port was written (an alias's HostName only applies to the host).
    pub port_given: bool,
    /// A Unix socket on the last hop instead of `host:port` (ssh's `-L PORT:/path`): the
    /// channel is `direct-streamlocal@openssh.com`; `host` is then `localhost` and `port`
    /// the one in a PostgreSQL socket's name (`.s.PGSQL.5432`), else 0.
    pub socket: Option<String>,
}

impl Target {
    /// A Unix socket on the last hop.
    pub fn unix(path: &str) -> Target {
        let port = path
            .rsplit_once(".s.PGSQL.")
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(0);
        Target {
            host: "localhost".into(),
            port,
            port_given: true,
            socket: Some(path.to_string()),
        }
    }

    /// The host is no host name, only an ssh_config alias: `unix/db`, `[db]` (as `ssh`
    /// accepts them as its destination).
    pub fn alias_only(&self) -> bool {
        self.host.contains('/') || self.host.starts_with('[')
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.socket {
            Some(path) => write!(f, "{path}"),
            None => write!(f, "{}", HostPort(&self.host, self.port)),
        }
    }
}

/// Formats `host:port`, bracketing IPv6 literals.
#[derive(Debug, Clone, Copy)]
pub struct HostPort<'a>(pub &'a str, pub u16);

impl fmt::Display for HostPort<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains(':') {
            write!(f, "[{}]:{}", self.0, self.1)
        } else {
            write!(f, "{}:{}", self.0, self.1)
        }
    }
}

/// One `-J` element: an ssh_config alias, `[user@]host[:port]` or `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopSpec {
    /// `user@` as written; overrides the config's `User`.
    pub user: Option<String>,
    /// The host or alias, looked up in ssh_config.
    pub host: String,
    /// `:port` as written; overrides the config's `Port`.
    pub port: Option<u16>,
}

impl fmt::Display for HopSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            // A user name from a URL-decoded ssh:// hop may not read back as `user@host`.
            if user.contains([',', '#']) || user.starts_with("ssh://") {
                write!(f, "ssh://")?;
                for b in user.bytes() {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        write!(f, "{}", char::from(b))?;
                    } else {
                        write!(f, "%{b:02X}")?;
                    }
                }
                write!(f, "@")?;
            } else {
                write!(f, "{user}@")?;
            }
        }
        match self.port {
            Some(port) => write!(f, "{}", HostPort(&self.host, port)),
            // An IPv6 literal keeps its brackets without a port too: `parse_hop` needs them.
            None if self.host.contains(':') => write!(f, "[{}]", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

/// Parses TARGET: `host[:port]`, `[v6addr][:port]`; the port defaults to 5432.
///
/// ```
/// let t = pgtunnel::spec::parse_target("db.foo.com").unwrap();
/// assert_eq!((t.host.as_str(), t.port), ("db.foo.com", 5432));
/// let t = pgtunnel::spec::parse_target("[fd00::5]:6432").unwrap();
/// assert_eq!((t.host.as_str(), t.port), ("fd00::5", 6432));
/// ```
///
/// As `ssh` takes its destination, a TARGET may also be an ssh_config alias that is no host
/// name: `unix/db` (a `Host unix/*` block) or `[db]` (`Host [db]`, brackets and all); such a
/// name is only good as an alias ([`Target::alias_only`]).
pub fn parse_target(input: &str) -> Result<Target, SpecError> {
    const WHAT: &str = "TARGET";
    let (host, port) = split_host_port(WHAT, input)?;
    if host.contains('@') {
        return Err(malformed(
            WHAT,
            input,
            "a target has no user; put `user@` on the hop (--via)",
        ));
    }
    check_host(WHAT, input, &host)?;
    Ok(Target {
        host,
        port: port.unwrap_or(DEFAULT_TARGET_PORT),
        port_given: port.is_some(),
        socket: None,
    })
}

/// Parses one hop of `-J/--via` (the list is split on commas by [`parse_hops`]) as `ssh -J`
/// does: OpenSSH's jump-host grammar (`config::jump`, shared with `ProxyJump`) and the
/// user and host name checks `ssh -J` adds. A few hops `ssh -J` would silently cut short (a
/// blank, `#`, `none`) are refused instead, as are users with a blank or control character.
pub fn parse_hop(input: &str) -> Result<HopSpec, SpecError> {
    const WHAT: &str = "hop";
    if let Some(reason) = cut_short(input) {
        return Err(malformed(WHAT, input, reason));
    }
    let hop = jump::parse_element(input).map_err(|e| hop_error(input, e))?;
    if let Some(user) = &hop.user
        && user.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(malformed(
            WHAT,
            input,
            "the user name holds a blank or a control character",
        ));
    }
    check_host(WHAT, input, &hop.host)?;
    jump::check_command_line(&hop).map_err(|e| hop_error(input, e))?;
    Ok(hop)
}

/// Why `ssh -J` would take less than `input` says, if it would.
fn cut_short(input: &str) -> Option<&'static str> {
    if input.contains(char::is_whitespace) {
        Some("ssh -J reads its value only up to the first blank: write the hop without blanks")
    } else if input.contains('#') {
        Some("ssh -J ignores everything from `#` (a comment): write the hop without it")
    } else if input.eq_ignore_ascii_case("none") {
        Some("to ssh -J, `none` means no jump host, not a host called none")
    } else {
        None
    }
}

/// A [`HopError`] in `--via`'s words.
fn hop_error(input: &str, e: HopError) -> SpecError {
    const WHAT: &str = "hop";
    let reason = match e {
        HopError::Empty => return SpecError::Empty { what: WHAT },
        HopError::BadPort(p) if p.contains(':') && !input.starts_with("ssh://") => {
            "write an IPv6 address in brackets, e.g. [fd00::5]:22"
        }
        HopError::BadPort(port) => {
            return SpecError::BadPort {
                what: WHAT,
                input: input.to_string(),
                port,
            };
        }
        HopError::UriIpv6(plain) => {
            return malformed(
                WHAT,
                input,
                format!("ssh -J refuses an IPv6 address in an ssh:// hop: write {plain}"),
            );
        }
        HopError::EmptyUser => "empty user before `@`",
        HopError::NoHost => "no host name",
        HopError::UnclosedBracket => "missing `]` after the IPv6 address",
        HopError::AfterHost => "expected `:PORT` after the host",
        HopError::UriPath => "an ssh:// hop has no path",
        HopError::UriUser => "the ssh:// user has a bad `%` escape or is not UTF-8",
        HopError::UriHost => "the host of an ssh:// hop must be a domain name or an IPv4 address",
        HopError::HostChars => {
            "ssh -J refuses a host name with a shell metacharacter, a blank, a control character or a leading `-`"
        }
        HopError::UserChars => {
            "ssh -J refuses a user name with a shell metacharacter, a control character, a leading `-`, `-` after a blank or a trailing `\\`"
        }
    };
    malformed(WHAT, input, reason)
}

/// Parses a `-J` value: comma-separated hops, in connection order.
pub fn parse_hops(input: &str) -> Result<Vec<HopSpec>, SpecError> {
    if input.is_empty() {
        return Err(SpecError::Empty { what: "--via" });
    }
    input.split(',').map(parse_hop).collect()
}

/// Default listen address: loopback, port chosen by the OS.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Parses `-L/--listen [ADDR:]PORT`. The address must be a literal IP (we never resolve names
/// to decide where to listen); it defaults to 127.0.0.1. Port 0 asks the OS for a free port.
pub fn parse_listen(input: &str) -> Result<SocketAddr, SpecError> {
    const WHAT: &str = "--listen";
    if input.is_empty() {
        return Err(SpecError::Empty { what: WHAT });
    }
    let (addr, port) = if input.bytes().all(|b| b.is_ascii_digit()) {
        (None, input)
    } else if let Some(rest) = input.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| malformed(WHAT, input, "missing `]`"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| malformed(WHAT, input, "expected `[ADDR]:PORT`"))?;
        (Some(addr), port)
    } else {
        let (addr, port) = input
            .rsplit_once(':')
            .ok_or_else(|| malformed(WHAT, input, "expected `[ADDR:]PORT`"))?;
        if addr.contains(':') {
            return Err(malformed(
                WHAT,
                input,
                "write an IPv6 address in brackets: `[::1]:PORT`",
            ));
        }
        (Some(addr), port)
    };
    let port: u16 = port.parse().map_err(|_| SpecError::BadPort {
        what: WHAT,
        input: input.to_string(),
        port: port.to_string(),
    })?;
    let ip = match addr {
        None => DEFAULT_LISTEN.ip(),
        Some(a) => a.parse::<IpAddr>().map_err(|_| {
            malformed(
                WHAT,
                input,
                "the address must be an IP address such as 127.0.0.1 or [::1]",
            )
        })?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// One `-L` argument: today's listen address for TARGET (`PORT`, `ADDR:PORT`), or one of
/// ssh's local forwards (`[bind:]port:host:hostport`, a Unix socket on either side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DashL {
    /// `-L [ADDR:]PORT`: where TARGET's tunnel listens.
    Listen(SocketAddr),
    /// `-L NAME:PORT`: where TARGET's tunnel listens, a host name (`localhost`) resolved when
    /// binding, as ssh does: every address it stands for (see
    /// [`crate::config::forward::bind_plan`]).
    ListenName {
        /// The name as typed.
        host: String,
        /// The port (0: a free one).
        port: u16,
    },
    /// An ssh-style forward: the positional argument is then ssh's destination.
    Forward(crate::config::forward::LocalForward),
}

/// Parses `-L`: as a listen address when it is one (`5555`, `127.0.0.1:5555`,
/// `[::1]:5555`), else as ssh parses `-L` (`${VAR}` looked up with `env`). An argument
/// neither takes is refused with both readings' reasons.
pub fn parse_dash_l(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<DashL, SpecError> {
    let listen = match parse_listen_or_name(input) {
        Ok((addr, None)) => return Ok(DashL::Listen(addr)),
        Ok((addr, Some(host))) => {
            let port = addr.port();
            return Ok(DashL::ListenName { host, port });
        }
        Err(e) => e,
    };
    match crate::config::forward::parse_local_forward(input, env) {
        Ok(forward) => Ok(DashL::Forward(forward)),
        // Something that looks like a listen address: its own reason is the clearer one.
        Err(_) if input.matches(':').count() <= 1 && !input.contains('/') => Err(listen),
        Err(_) => Err(malformed(
            "-L",
            input,
            "expected [ADDR:]PORT (where TARGET's tunnel listens) or ssh's \
             [bind_address:]port:host:hostport, port:remote_socket, local_socket:host:hostport",
        )),
    }
}

/// Where a tunnel listens, as `-L` and a tunnels file's `listen` take it: an address
/// ([`parse_listen`]), or `NAME:PORT` as its planned address (127.0.0.1 and the port) and
/// the name, resolved when binding; else the address's reason.
pub fn parse_listen_or_name(input: &str) -> Result<(SocketAddr, Option<String>), SpecError> {
    let refused = match parse_listen(input) {
        Ok(addr) => return Ok((addr, None)),
        Err(e) => e,
    };
    parse_listen_name(input)
        .map(|(host, port)| (SocketAddr::new(DEFAULT_LISTEN.ip(), port), Some(host)))
        .ok_or(refused)
}

/// `NAME:PORT` with a host name (letters, digits, `-`, `.`, `_`; not all digits and dots,
/// which would be a mistyped IPv4 address) and a port: a listen address to resolve when
/// binding.
fn parse_listen_name(input: &str) -> Option<(String, u16)> {
    let (host, port) = input.split_once(':')?;
    let name_chars = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    let numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if host.is_empty() || host.starts_with('-') || !name_chars || numeric {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

fn malformed(what: &'static str, input: &str, reason: impl Into<Cow<'static, str>>) -> SpecError {
    SpecError::Malformed {
        what,
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// A host name and what follows it, split the way OpenSSH's `hpdelim2()` and
/// `cleanhostname()` do: the host is in `[...]` (brackets removed) or runs up to the first
/// `:` (or `/`, with `slash`). Shared by TARGET, `--via` and `ProxyJump`, which each decide
/// which hosts, delimiters and ports they accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delimited<'a> {
    /// The host, without brackets.
    pub host: &'a str,
    /// The host was in brackets.
    pub bracketed: bool,
    /// The character after the host (after `]` when bracketed: any character), if any.
    pub delim: Option<char>,
    /// What follows `delim`.
    pub after: &'a str,
}

/// Splits `s` into host, delimiter and rest (see [`Delimited`]); `None` for a `[` without
/// its `]`.
pub(crate) fn hpdelim(s: &str, slash: bool) -> Option<Delimited<'_>> {
    let (host, bracketed, rest) = match s.strip_prefix('[') {
        Some(inner) => {
            let (host, rest) = inner.split_once(']')?;
            (host, true, rest)
        }
        None => {
            let end = s
                .find(|c| c == ':' || (slash && c == '/'))
                .unwrap_or(s.len());
            (&s[..end], false, &s[end..])
        }
    };
    let mut chars = rest.chars();
    let delim = chars.next();
    Some(Delimited {
        host,
        bracketed,
        delim,
        after: chars.as_str(),
    })
}

/// Splits `host[:port]` / `[v6][:port]`; a bare IPv6 literal without brackets is refused
/// because `fd00::5432` is ambiguous.
fn split_host_port(what: &'static str, input: &str) -> Result<(String, Option<u16>), SpecError> {
    if input.is_empty() {
        return Err(SpecError::Empty { what });
    }
    let d = hpdelim(input, false)
        .ok_or_else(|| malformed(what, input, "missing `]` after the IPv6 address"))?;
    let alias_brackets = d.bracketed && d.host.parse::<std::net::Ipv6Addr>().is_err();
    if alias_brackets && (d.host.is_empty() || d.host.contains(':')) {
        return Err(malformed(
            what,
            input,
            "brackets must hold an IPv6 address, e.g. [fd00::5]:5432",
        ));
    }
    let port = match d.delim {
        None => None,
        Some(':') if !d.bracketed && d.after.contains(':') => {
            return Err(malformed(what, input, colons(what, input)));
        }
        Some(':') => Some(d.after),
        Some(_) => return Err(malformed(what, input, "expected `:PORT` after `]`")),
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && !p.starts_with('+') => Some(n),
            _ => {
                return Err(SpecError::BadPort {
                    what,
                    input: input.to_string(),
                    port: p.to_string(),
                });
            }
        },
    };
    if alias_brackets {
        // `[db]`: an alias name, as ssh takes `ssh '[db]'` (it matches `Host [db]`).
        return Ok((format!("[{}]", d.host), port));
    }
    Ok((d.host.to_string(), port))
}

/// What is wrong with `host:port:more`: an IPv6 address without its brackets, or something
/// after the port (ssh's forward syntax, `port:host:hostport`, is `-L`'s).
fn colons(what: &'static str, input: &str) -> Cow<'static, str> {
    // fd00::5, fe80::1%eth0, fd00:0:0:0:0:0:0:5; not `63333:db:5432` (hex digits too).
    let hex = input
        .chars()
        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
    let ipv6ish = input.contains("::") || (hex && input.matches(':').count() >= 3);
    if ipv6ish || input.parse::<std::net::Ipv6Addr>().is_ok() {
        return "write an IPv6 address in brackets, e.g. [fd00::5]:5432".into();
    }
    let mut parts = input.splitn(3, ':');
    let (host, port, rest) = (parts.next(), parts.next(), parts.next());
    let forward = match what {
        "TARGET" => {
            "; ssh's forwards, PORT:HOST:HOSTPORT, go with -L: pgtunnel -L \
                     63333:db:5432 SSH_SERVER"
        }
        _ => "",
    };
    match (host, port, rest) {
        (Some(host), Some(port), Some(rest)) if port.parse::<u16>().is_ok() => {
            format!("`:{rest}` follows the port: {what} is host[:port] ({host}:{port}){forward}")
                .into()
        }
        _ => format!("{what} is host[:port], with one `:`{forward}").into(),
    }
}

fn check_host(what: &'static str, input: &str, host: &str) -> Result<(), SpecError> {
    if host.is_empty() {
        return Err(malformed(what, input, "no host name"));
    }
    // A TARGET may be an alias like `unix/db` (see `parse_target`); a hop may not, as in
    // `ssh -J` ("Invalid -J argument").
    let slash_ok = what == "TARGET";
    if host.chars().any(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, ',' | '\'' | '"')
            || (c == '/' && !slash_ok)
    }) {
        return Err(malformed(
            what,
            input,
            "the host name holds a character no host name has",
        ));
    }
    if host.starts_with('-') {
        return Err(malformed(what, input, "a host name cannot start with `-`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_l_is_a_listen_address_or_an_ssh_forward() {
        let env = |_: &str| None;
        assert_eq!(
            parse_dash_l("5555", &env),
            Ok(DashL::Listen("127.0.0.1:5555".parse().unwrap()))
        );
        assert_eq!(
            parse_dash_l("[::1]:5555", &env),
            Ok(DashL::Listen("[::1]:5555".parse().unwrap()))
        );
        assert!(matches!(
            parse_dash_l("63333:db.foo.com:5432", &env),
            Ok(DashL::Forward(_))
        ));
        assert!(matches!(
            parse_dash_l("localhost:6000:db:5432", &env),
            Ok(DashL::Forward(_))
        ));
        let e = parse_dash_l("1.2.3.4.5:6000", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be an IP address"), "{e}");
        let e = parse_dash_l("a:b:c", &env).unwrap_err().to_string();
        assert!(e.contains("port:host:hostport"), "{e}");
    }

    /// Issue 14: `-L localhost:5555` was refused ("must be an IP address"); ssh takes it.
    #[test]
    fn dash_l_takes_a_host_name_to_listen_on() {
        let env = |_: &str| None;
        let name = |host: &str, port| {
            Ok(DashL::ListenName {
                host: host.into(),
                port,
            })
        };
        assert_eq!(
            parse_dash_l("localhost:5555", &env),
            name("localhost", 5555)
        );
        assert_eq!(parse_dash_l("my-host.lan:0", &env), name("my-host.lan", 0));
        // Not names: a bad port, a mistyped IPv4 address, an option-like name.
        for bad in [
            "localhost:99999",
            "localhost:",
            "1.2.3.4.5:6000",
            "-x:5555",
            "a b:1",
        ] {
            assert!(parse_dash_l(bad, &env).is_err(), "{bad}");
        }
    }

    #[test]
    fn target_defaults_to_postgres_port() {
        let t = parse_target("db.foo.com").unwrap();
        assert_eq!(t.host, "db.foo.com");
        assert_eq!(t.port, 5432);
        assert!(!t.port_given);
        assert_eq!(t.to_string(), "db.foo.com:5432");
    }

    #[test]
    fn target_with_port_and_ipv6() {
        let t = parse_target("localhost:6432").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.port_given),
            ("localhost", 6432, true)
        );
        let t = parse_target("[fd00::5]:5432").unwrap();
        assert_eq!(t.host, "fd00::5");
        assert_eq!(t.to_string(), "[fd00::5]:5432");
        let t = parse_target("[::1]").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 5432));
    }

    #[test]
    fn target_may_be_an_alias_that_is_no_host_name() {
        let t = parse_target("unix/db").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("unix/db", 5432));
        assert!(t.alias_only());
        let t = parse_target("[db]:6432").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.port_given),
            ("[db]", 6432, true)
        );
        assert!(t.alias_only());
        assert_eq!(t.to_string(), "[db]:6432");
        assert!(!parse_target("[::1]").unwrap().alias_only());
        assert!(!parse_target("db.foo.com").unwrap().alias_only());
        // Not as hops: ssh -J refuses them ("Invalid -J argument").
        assert!(parse_hop("unix/db").is_err());
    }

    #[test]
    fn target_rejects_bad_ports() {
        for bad in [
            "db:0", "db:65536", "db:-1", "db:", "db:abc", "db:+5", "[::1]:0",
        ] {
            let err = parse_target(bad).unwrap_err();
            assert!(matches!(err, SpecError::BadPort { .. }), "{bad}: {err:?}");
            assert!(err.to_string().contains("1 to 65535"), "{err}");
        }
    }

    #[test]
    fn target_rejects_malformed() {
        for bad in [
            "", "fd00::5", "[fd00::5", "[]", "[a:b]x", "[::1]x", "a b", "joe@db", ":5432",
            "-oProxy", "a,b",
        ] {
            assert!(parse_target(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn target_with_more_than_one_colon_says_what_is_wrong() {
        let reason = |input: &str| match parse_target(input) {
            Err(SpecError::Malformed { reason, .. }) => reason.into_owned(),
            other => panic!("{input}: {other:?}"),
        };
        for ipv6 in ["fd00::5", "fd00:0:0:0:0:0:0:5", "::1:5432", "fe80::1%eth0"] {
            assert!(reason(ipv6).contains("IPv6 address in brackets"), "{ipv6}");
        }
        let extra = reason("db:5432:extra");
        assert!(extra.starts_with("`:extra` follows the port: TARGET is host[:port] (db:5432)"));
        assert!(extra.contains("go with -L"), "{extra}");
        assert!(!extra.contains("IPv6"), "{extra}");
        for forward in ["63333:db.foo.com:5432", "63333:db:5432"] {
            let reason = reason(forward);
            assert!(reason.contains("go with -L"), "{reason}");
            assert!(!reason.contains("IPv6"), "{reason}");
        }
    }

    #[test]
    fn hop_forms() {
        assert_eq!(
            parse_hop("shell.foo.com").unwrap(),
            HopSpec {
                user: None,
                host: "shell.foo.com".into(),
                port: None
            }
        );
        assert_eq!(
            parse_hop("joe@shell.foo.com:2222").unwrap(),
            HopSpec {
                user: Some("joe".into()),
                host: "shell.foo.com".into(),
                port: Some(2222)
            }
        );
        // `ssh -J` refuses an IPv6 address in an ssh:// hop (see `hop_follows_ssh_j`).
        assert_eq!(
            parse_hop("joe@[fd00::1]:22").unwrap(),
            HopSpec {
                user: Some("joe".into()),
                host: "fd00::1".into(),
                port: Some(22)
            }
        );
        assert_eq!(parse_hop("ssh://bastion").unwrap().host, "bastion");
        // A user name may hold '@' (OpenSSH splits at the last one).
        assert_eq!(
            parse_hop("joe@corp@gw").unwrap().user.as_deref(),
            Some("joe@corp")
        );
        assert_eq!(
            parse_hop("joe@shell.foo.com:2222").unwrap().to_string(),
            "joe@shell.foo.com:2222"
        );
    }

    #[test]
    fn hop_errors_name_the_input() {
        let err = parse_hop("joe@gw:99999").unwrap_err();
        assert_eq!(
            err.to_string(),
            "hop `joe@gw:99999`: port `99999` is not a number from 1 to 65535"
        );
        for bad in ["", "@gw", "joe@", "ssh://gw/db", "gw:0", "a,b"] {
            assert!(parse_hop(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn hop_list() {
        let hops = parse_hops("a,joe@b:2200,c").unwrap();
        assert_eq!(hops.len(), 3);
        assert_eq!(hops[1].port, Some(2200));
        // `ssh -J` refuses a blank after a comma.
        assert!(parse_hops("a, joe@b:2200,c").is_err());
        assert!(parse_hops("a,,b").is_err());
        assert!(parse_hops("").is_err());
    }

    fn hop(user: Option<&str>, host: &str, port: Option<u16>) -> HopSpec {
        HopSpec {
            user: user.map(str::to_string),
            host: host.into(),
            port,
        }
    }

    /// Inputs `--via` took differently from `ssh -J` before they shared one parser.
    #[test]
    fn hop_follows_ssh_j() {
        for (input, want) in [
            ("joe@h:ssh", hop(Some("joe"), "h", Some(22))),
            ("h:", hop(None, "h", None)),
            ("h:+5", hop(None, "h", Some(5))),
            ("[db]", hop(None, "db", None)),
            ("ssh://u%40v@j", hop(Some("u@v"), "j", None)),
            ("ssh://u;x=1@j", hop(Some("u"), "j", None)),
            ("ssh://h.", hop(None, "h", None)),
            ("ssh://h:ssh/", hop(None, "h", Some(22))),
            ("ssh://[h]", hop(None, "h", None)),
        ] {
            assert_eq!(parse_hop(input), Ok(want), "{input}");
        }
        for (input, reason) in [
            (
                "ssh://joe@[fd00::1]:22/",
                "ssh -J refuses an IPv6 address in an ssh:// hop: write joe@[fd00::1]:22",
            ),
            (
                "ssh://[::1]",
                "ssh -J refuses an IPv6 address in an ssh:// hop: write [::1]",
            ),
            (
                "ssh://a@b@c",
                "the host of an ssh:// hop must be a domain name or an IPv4 address",
            ),
            (
                "ssh://u%zz@h",
                "the ssh:// user has a bad `%` escape or is not UTF-8",
            ),
            ("h/x", "expected `:PORT` after the host"),
            (
                "a;b",
                "ssh -J refuses a host name with a shell metacharacter, a blank, a control character or a leading `-`",
            ),
            (
                "u;x@h",
                "ssh -J refuses a user name with a shell metacharacter, a control character, a leading `-`, `-` after a blank or a trailing `\\`",
            ),
            (
                "-u@h",
                "ssh -J refuses a user name with a shell metacharacter, a control character, a leading `-`, `-` after a blank or a trailing `\\`",
            ),
            (
                "a#b",
                "ssh -J ignores everything from `#` (a comment): write the hop without it",
            ),
            (
                "NONE",
                "to ssh -J, `none` means no jump host, not a host called none",
            ),
            (
                "fd00::1",
                "write an IPv6 address in brackets, e.g. [fd00::5]:22",
            ),
            (
                "u@fd00::1",
                "write an IPv6 address in brackets, e.g. [fd00::5]:22",
            ),
            (
                "ssh://h:22:33",
                "port `22:33` is not a number from 1 to 65535",
            ),
        ] {
            let err = parse_hop(input).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("hop `{input}`: {reason}"),
                "{input}"
            );
        }
    }

    #[test]
    fn hop_reasons_in_via_words() {
        for (input, reason) in [
            ("@gw", "empty user before `@`"),
            ("ssh://@gw", "empty user before `@`"),
            ("joe@", "no host name"),
            ("[]", "no host name"),
            ("ssh://gw/db", "an ssh:// hop has no path"),
            ("[fd00::1", "missing `]` after the IPv6 address"),
            ("-oProxyCommand=x", "a host name cannot start with `-`"),
            (
                "ssh://a+b@h",
                "the user name holds a blank or a control character",
            ),
        ] {
            let err = parse_hop(input).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("hop `{input}`: {reason}"),
                "{input}"
            );
        }
        assert_eq!(parse_hop(""), Err(SpecError::Empty { what: "hop" }));
        for (input, port) in [
            ("h:0", "0"),
            ("h:nosuchservice", "nosuchservice"),
            ("ssh://h:/", ""),
        ] {
            assert!(
                matches!(parse_hop(input), Err(SpecError::BadPort { port: p, .. }) if p == port),
                "{input}"
            );
        }
    }

    /// A user name that `user@host` cannot carry prints as an ssh:// URI, which reads back.
    #[test]
    fn hop_display_reads_back() {
        for input in [
            "ssh://a%2Cb@h:22",
            "ssh://a%23b@h",
            "ssh://ssh%3A%2F%2Fx@h",
            "u@v@h",
            "[::1]",
        ] {
            let h = parse_hop(input).unwrap();
            assert_eq!(parse_hop(&h.to_string()), Ok(h.clone()), "{input} -> {h}");
            assert_eq!(
                parse_hops(&format!("{h},{h}")),
                Ok(vec![h.clone(), h]),
                "{input}"
            );
        }
        assert_eq!(
            parse_hop("ssh://a%2Cb@h:22").unwrap().to_string(),
            "ssh://a%2Cb@h:22"
        );
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("63333").unwrap(),
            "127.0.0.1:63333".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0:5000").unwrap(),
            "0.0.0.0:5000".parse().unwrap()
        );
        assert_eq!(parse_listen("[::1]:0").unwrap(), "[::1]:0".parse().unwrap());
        for bad in [
            "",
            "localhost:5",
            "::1:5",
            "127.0.0.1:70000",
            "127.0.0.1",
            "x",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad} accepted");
        }
    }
}
