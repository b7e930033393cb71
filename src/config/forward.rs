//! Local forwarding specifications as OpenSSH parses them (`parse_forward()` and
//! `parse_fwd_field()` in `readconf.c`, OpenSSH 9.2), for `ssh -L` and `LocalForward`:
//! `[bind_address:]port:host:hostport`, `[bind_address:]port:remote_socket`,
//! `local_socket:host:hostport`, `local_socket:remote_socket`; a field in `[ ]` is taken
//! literally (an IPv6 address), `\` escapes the next character, a field with `/` is a Unix
//! socket path, ports are numbers or service names, `${VAR}` is expanded first.
//!
//! Pure; [`LocalForward::openssh_format`] writes it as `ssh -G` prints it
//! (`localforward [bind]:port [host]:port`), which the differential test compares. Not yet
//! used by the tunnel (issue 12 opens these forwards).

use std::fmt::Write as _;

use super::lexer::a2port;

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
/// unclosed reference is an error.
fn dollar_expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}')?;
        out.push_str(&env(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Parses a local forward (`ssh -L SPEC`, or `LocalForward A B` as `A:B`), `env` for
/// `${VAR}`. `Err`: ssh's "Bad local forwarding specification".
pub fn parse_local_forward(
    spec: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<LocalForward, String> {
    let bad = || format!("Bad local forwarding specification '{spec}'");
    let expanded = dollar_expand(spec, env).ok_or_else(bad)?;
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
    let host_port = |h: &Field, p: &Field| -> Result<Connect, String> {
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
