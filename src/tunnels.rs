//! The named-tunnels file (`tunnels.toml`): what `pgtunnel up [NAME...]` starts and
//! `pgtunnel list` shows.
//!
//! The file is TOML, read with a real TOML parser (`toml`), by default
//! `$XDG_CONFIG_HOME/pgtunnel/tunnels.toml` or `~/.config/pgtunnel/tunnels.toml`
//! ([`default_path`]). Every value is checked by the command line's own parsers
//! ([`spec::parse_hops`], [`spec::parse_target`], [`spec::parse_listen`], [`SslMode::parse`]),
//! so a tunnel in the file means what the same words mean on the command line.
//!
//! ```toml
//! # Optional, top level: which ssh_config to read (like -F; `none` reads none).
//! # Default ~/.ssh/config.
//! ssh_config = "~/.ssh/config"
//!
//! [tunnel.prod]
//! via = "joe@shell.foo.com,inner"     # or ["joe@shell.foo.com", "inner"]; optional (-J)
//! target = "db.foo.com:5432"          # TARGET as on the command line (an alias allowed)
//! listen = "127.0.0.1:6543"           # or 6543, "6543", "localhost:6543" (every loopback
//!                                     # address, as -L); optional (--listen; default a free
//!                                     # port on 127.0.0.1, or none when `socket` is given)
//! socket = "/run/user/1000/pgtunnel"  # optional: --socket DIR (DIR/.s.PGSQL.<target port>)
//! require_encrypted = true            # optional, default false
//! require_pq = false                  # optional, default false; implies require_encrypted
//! probe = true                        # optional, default true (false: --no-probe)
//! sslmode = "verify-full"             # optional: require | verify-ca | verify-full
//! pg = true                           # optional: true --pg, false --no-pg (default: by port)
//! ```
//!
//! A tunnel's name (`prod`) is what `up`, `list` and `status` call it: ASCII letters, digits,
//! `-`, `_` and `.` (quoted in TOML: `[tunnel."db.prod"]`), not starting with `-`. Paths
//! (`ssh_config`, `socket`) are absolute or start with `~/`.
//!
//! Every refusal is one [`TunnelsError`] naming the file, the line (of the tunnel's
//! `[tunnel.NAME]` header, or of the key at fault) and the tunnel: a TOML syntax error, an
//! unknown key, a value of the wrong type or one the command line would refuse, a tunnel
//! defined twice, a file with no tunnel, two tunnels that would listen on the same port or
//! the same socket.
//!
//! Pure but for [`load`], which reads the file and calls [`parse`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use thiserror::Error;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue, ValueDeserializer};

use crate::forward::socket::socket_name;
use crate::pg::client::SslMode;
use crate::spec::{self, HopSpec, SpecError, Target};
use crate::tunnel::ConfigSource;

/// The keys a tunnel table may have, in the order the documentation gives them.
pub const TUNNEL_KEYS: [&str; 9] = [
    "via",
    "target",
    "listen",
    "socket",
    "require_encrypted",
    "require_pq",
    "probe",
    "sslmode",
    "pg",
];

/// The keys the file may have at its top level.
pub const TOP_KEYS: [&str; 2] = ["ssh_config", "tunnel"];

/// A short example of the format, shown when a file defines no tunnel.
pub const EXAMPLE: &str = "[tunnel.prod]\n\
                           via = \"joe@shell.foo.com\"\n\
                           target = \"db.foo.com:5432\"\n\
                           listen = 6543";

/// A tunnels file, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelsFile {
    /// The file, as given (for messages).
    pub path: PathBuf,
    /// `ssh_config = ...`: which ssh_config to read, like `-F` (`None`: not set, the
    /// default `~/.ssh/config`).
    pub ssh_config: Option<ConfigSource>,
    /// The tunnels, in file order (at least one).
    pub tunnels: Vec<TunnelDef>,
}

/// One `[tunnel.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelDef {
    /// NAME.
    pub name: String,
    /// The 1-based line of its `[tunnel.NAME]` header (or its key).
    pub line: usize,
    /// `via`: the jump hops (`-J`), in connection order; `None` when not given.
    pub via: Option<Vec<HopSpec>>,
    /// `target`: TARGET.
    pub target: Target,
    /// `listen`: the local address (`--listen`); `None` when not given (see
    /// [`TunnelDef::tcp_listen`]).
    pub listen: Option<SocketAddr>,
    /// `listen`'s host name when it gives one (`"localhost:6543"`): the tunnel listens on
    /// every address the name stands for when binding, as with `-L NAME:PORT`; `listen` then
    /// holds the planned address (127.0.0.1 and the port).
    pub listen_host: Option<String>,
    /// `socket`: `--socket DIR`, `~/` expanded.
    pub socket: Option<PathBuf>,
    /// `require_encrypted` (true too when `require_pq` is, as on the command line).
    pub require_encrypted: bool,
    /// `require_pq`.
    pub require_pq: bool,
    /// `probe` (default true; false is `--no-probe`).
    pub probe: bool,
    /// `sslmode`.
    pub sslmode: Option<SslMode>,
    /// `pg`: `Some(true)` is `--pg`, `Some(false)` `--no-pg`, `None` decides by port.
    pub pg: Option<bool>,
}

impl TunnelDef {
    /// The TCP address to listen on, as the command line decides it: `listen`, or, when
    /// neither `listen` nor `socket` is given, a free port on 127.0.0.1
    /// ([`spec::DEFAULT_LISTEN`]); `None` for a socket-only tunnel.
    pub fn tcp_listen(&self) -> Option<SocketAddr> {
        match (self.listen, &self.socket) {
            (Some(addr), _) => Some(addr),
            (None, None) => Some(spec::DEFAULT_LISTEN),
            (None, Some(_)) => None,
        }
    }

    /// The Unix socket file, `DIR/.s.PGSQL.<target port>`, when `socket` is given.
    pub fn socket_path(&self) -> Option<PathBuf> {
        self.socket
            .as_ref()
            .map(|dir| dir.join(socket_name(self.target.port)))
    }
}

/// Where in the file something is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters), for TOML syntax errors.
    pub column: Option<usize>,
    /// The tunnel, when the place is inside one.
    pub tunnel: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)?;
        if let Some(column) = self.column {
            write!(f, ":{column}")?;
        }
        if let Some(tunnel) = &self.tunnel {
            write!(f, ": tunnel `{tunnel}`")?;
        }
        Ok(())
    }
}

/// A name `select` did not find, and the defined name closest to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// The name asked for.
    pub name: String,
    /// A defined name that looks like a typo's origin, if one does.
    pub closest: Option<String>,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.name)?;
        if let Some(closest) = &self.closest {
            write!(f, " (did you mean `{closest}`?)")?;
        }
        Ok(())
    }
}

/// A tunnel of a conflict: its name, line and what it listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The tunnel.
    pub tunnel: String,
    /// The line of its `listen` or `socket` key.
    pub line: usize,
    /// The address or socket file.
    pub endpoint: String,
}

/// A tunnels file that cannot be used. Every message names the file, and the line and
/// tunnel when there are some.
#[derive(Debug, Error)]
pub enum TunnelsError {
    /// The file cannot be read.
    #[error("cannot read tunnels file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML (the parser's message).
    #[error("{at}: {message}")]
    Syntax {
        /// Where (with the column).
        at: Box<Location>,
        /// What the TOML parser says.
        message: String,
    },
    /// A key the format does not have.
    #[error(
        "{at}: unknown key `{key}`{}; valid keys: {}{}",
        did_you_mean(*closest), valid.join(", "), top_note(valid)
    )]
    UnknownKey {
        /// Where the key is.
        at: Box<Location>,
        /// The key.
        key: String,
        /// The keys allowed there.
        valid: &'static [&'static str],
        /// The valid key closest to it, if one is close.
        closest: Option<&'static str>,
    },
    /// A tunnel without a required key.
    #[error("{at}: missing key `{key}` ({hint})")]
    MissingKey {
        /// The tunnel's header.
        at: Box<Location>,
        /// The key.
        key: &'static str,
        /// What it holds.
        hint: &'static str,
    },
    /// A value of the wrong type (`probe = "yes"`).
    #[error("{at}: {}{message}", key.as_ref().map_or_else(String::new, |k| format!("{k}: ")))]
    WrongType {
        /// Where the value is.
        at: Box<Location>,
        /// Its key (`None`: the tunnel's table itself).
        key: Option<String>,
        /// What was expected and found.
        message: String,
    },
    /// A `via`, `target` or `listen` the command line would refuse too.
    #[error("{at}: {source}")]
    BadValue {
        /// Where the value is.
        at: Box<Location>,
        /// The command line parser's refusal.
        #[source]
        source: SpecError,
    },
    /// An `sslmode` libpq does not have, or that needs no option.
    #[error("{at}: sslmode {message}")]
    BadSslMode {
        /// Where the value is.
        at: Box<Location>,
        /// [`SslMode::parse`]'s message.
        message: String,
    },
    /// A path (`ssh_config`, `socket`) that cannot be used as written.
    #[error("{at}: {key} `{value}`: {reason}")]
    BadPath {
        /// Where the value is.
        at: Box<Location>,
        /// `ssh_config` or `socket`.
        key: &'static str,
        /// The value as written.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// `sslmode` on a tunnel with only a Unix socket, where libpq uses no TLS.
    #[error(
        "{at}: sslmode needs a TCP listener (libpq uses no TLS over a Unix socket): add \
         `listen`, or remove `sslmode`"
    )]
    TlsWithoutTcp {
        /// Where `sslmode` is.
        at: Box<Location>,
    },
    /// A tunnel name with characters `up`, `list` and `status` cannot show plainly.
    #[error(
        "{at}: bad name: a tunnel's name has ASCII letters, digits, `-`, `_` and `.` only, \
         and does not start with `-`"
    )]
    BadName {
        /// The tunnel's header.
        at: Box<Location>,
        /// The name.
        name: String,
    },
    /// Two tunnels with one name.
    #[error("{at}: defined twice{}", first_note(*first_line))]
    DuplicateName {
        /// The second definition.
        at: Box<Location>,
        /// The name.
        name: String,
        /// The line of the first definition, when it could be found.
        first_line: Option<usize>,
    },
    /// A file without any tunnel.
    #[error("{}: defines no tunnels; define one like this:\n\n{EXAMPLE}", path.display())]
    NoTunnels {
        /// The file.
        path: PathBuf,
    },
    /// Two tunnels that would listen on the same TCP port of overlapping addresses.
    #[error(
        "{}:{}: tunnel `{}` listens on {}, which conflicts with tunnel `{}` on {} (line {}){}: \
         give one of them another port",
        path.display(), second.line, second.tunnel, second.endpoint, first.tunnel,
        first.endpoint, first.line, overlap_note(&first.endpoint, &second.endpoint)
    )]
    ListenConflict {
        /// The file.
        path: PathBuf,
        /// The tunnel defined first.
        first: Box<Claim>,
        /// The one after it.
        second: Box<Claim>,
    },
    /// Two tunnels with the same socket file (same `socket` DIR, same target port).
    #[error(
        "{}:{}: tunnel `{}` would serve {}, as tunnel `{}` does (line {}): give one of them \
         another socket directory",
        path.display(), second.line, second.tunnel, second.endpoint, first.tunnel, first.line
    )]
    SocketConflict {
        /// The file.
        path: PathBuf,
        /// The tunnel defined first.
        first: Box<Claim>,
        /// The one after it.
        second: Box<Claim>,
    },
    /// `up NAME` with a NAME the file does not define.
    #[error(
        "{}: no tunnel named {}; the file defines: {}",
        path.display(),
        unknown.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        defined.join(", ")
    )]
    UnknownTunnel {
        /// The file.
        path: PathBuf,
        /// The names not found, in the order given.
        unknown: Vec<UnknownName>,
        /// The names the file defines, in file order.
        defined: Vec<String>,
    },
}

impl TunnelsError {
    /// Where in the file, when the error is about one place.
    pub fn location(&self) -> Option<&Location> {
        match self {
            TunnelsError::Syntax { at, .. }
            | TunnelsError::UnknownKey { at, .. }
            | TunnelsError::MissingKey { at, .. }
            | TunnelsError::WrongType { at, .. }
            | TunnelsError::BadValue { at, .. }
            | TunnelsError::BadSslMode { at, .. }
            | TunnelsError::BadPath { at, .. }
            | TunnelsError::TlsWithoutTcp { at }
            | TunnelsError::BadName { at, .. }
            | TunnelsError::DuplicateName { at, .. } => Some(at.as_ref()),
            TunnelsError::Read { .. }
            | TunnelsError::NoTunnels { .. }
            | TunnelsError::ListenConflict { .. }
            | TunnelsError::SocketConflict { .. }
            | TunnelsError::UnknownTunnel { .. } => None,
        }
    }
}

fn did_you_mean(closest: Option<&str>) -> String {
    closest.map_or_else(String::new, |c| format!(" (did you mean `{c}`?)"))
}

fn top_note(valid: &[&str]) -> &'static str {
    if valid == TOP_KEYS {
        " (a tunnel is a [tunnel.NAME] table)"
    } else {
        ""
    }
}

fn first_note(first_line: Option<usize>) -> String {
    first_line.map_or_else(String::new, |l| format!(" (first at line {l})"))
}

/// Why two different addresses conflict, when one is the unspecified address.
fn overlap_note(first: &str, second: &str) -> &'static str {
    let unspecified = |e: &str| e.starts_with("0.0.0.0:") || e.starts_with("[::]:");
    let localhost = |e: &str| e.starts_with("localhost:");
    if first != second && (unspecified(first) || unspecified(second)) {
        ", as 0.0.0.0 takes the port on every IPv4 address and [::] on every address"
    } else if first != second && (localhost(first) || localhost(second)) {
        ", as localhost listens on 127.0.0.1 and ::1"
    } else {
        ""
    }
}

/// The default tunnels file: `$XDG_CONFIG_HOME/pgtunnel/tunnels.toml` when that variable is
/// an absolute path (the XDG spec ignores relative ones), else
/// `HOME/.config/pgtunnel/tunnels.toml`.
pub fn default_path(home: &Path, env: &impl Fn(&str) -> Option<String>) -> PathBuf {
    let config = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home.join(".config"));
    config.join("pgtunnel").join("tunnels.toml")
}

/// Reads the file at `path` and [`parse`]s it.
pub fn load(path: &Path, home: &Path) -> Result<TunnelsFile, TunnelsError> {
    let text = std::fs::read_to_string(path).map_err(|source| TunnelsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text, home)
}

/// Parses and checks a tunnels file's `text`; `path` names it in messages and `home`
/// expands `~/` in its paths. No I/O.
pub fn parse(path: &Path, text: &str, home: &Path) -> Result<TunnelsFile, TunnelsError> {
    let doc = Doc { path, text };
    let root = match DeTable::parse(text) {
        Ok(root) => root.into_inner(),
        Err(first) => {
            // The parser reports errors in its own order: show the one earliest in the file.
            let (_, errors) = DeTable::parse_recoverable(text);
            let earliest = errors
                .iter()
                .min_by_key(|e| e.span().map_or(usize::MAX, |s| s.start))
                .unwrap_or(&first);
            return Err(syntax_error(&doc, earliest));
        }
    };
    let mut entries: Vec<_> = root.into_iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut ssh_config = None;
    let mut tunnels = Vec::new();
    for (key, value) in entries {
        match key.get_ref().as_ref() {
            "ssh_config" => ssh_config = Some(parse_ssh_config(&doc, value, home)?),
            "tunnel" => tunnels = parse_tunnels(&doc, &key, value, home)?,
            other => {
                return Err(TunnelsError::UnknownKey {
                    at: doc.at(key.span().start, None),
                    key: other.to_string(),
                    valid: &TOP_KEYS,
                    closest: closest(other, TOP_KEYS),
                });
            }
        }
    }
    if tunnels.is_empty() {
        return Err(TunnelsError::NoTunnels {
            path: path.to_path_buf(),
        });
    }
    check_conflicts(path, &tunnels)?;
    Ok(TunnelsFile {
        path: path.to_path_buf(),
        ssh_config,
        tunnels: tunnels.into_iter().map(|p| p.def).collect(),
    })
}

impl TunnelsFile {
    /// The tunnel called `name`.
    pub fn get(&self, name: &str) -> Option<&TunnelDef> {
        self.tunnels.iter().find(|t| t.name == name)
    }

    /// The tunnels `up NAME...` starts: all of them (file order) when `names` is empty, else
    /// those named, in the order given, each once. A name the file does not define is an
    /// error that lists the defined names (and the closest to it).
    pub fn select(&self, names: &[String]) -> Result<Vec<&TunnelDef>, TunnelsError> {
        if names.is_empty() {
            return Ok(self.tunnels.iter().collect());
        }
        let defined: Vec<&str> = self.tunnels.iter().map(|t| t.name.as_str()).collect();
        let mut picked: Vec<&TunnelDef> = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            match self.get(name) {
                Some(t) if picked.iter().any(|p| p.name == t.name) => {}
                Some(t) => picked.push(t),
                None if unknown.iter().any(|u: &UnknownName| &u.name == name) => {}
                None => unknown.push(UnknownName {
                    name: name.clone(),
                    closest: closest(name, defined.iter().copied()).map(str::to_string),
                }),
            }
        }
        if unknown.is_empty() {
            Ok(picked)
        } else {
            Err(TunnelsError::UnknownTunnel {
                path: self.path.clone(),
                unknown,
                defined: defined.into_iter().map(str::to_string).collect(),
            })
        }
    }

    /// What `pgtunnel list` prints: one line per tunnel, in file order, in aligned columns:
    /// the name, where it listens (address, socket file, or "a free port"), the chain
    /// (`via` hops, then the target) and the options that differ from the defaults.
    pub fn list(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .tunnels
            .iter()
            .map(|t| {
                [
                    t.name.clone(),
                    listen_text(t),
                    route_text(t),
                    options_text(t),
                ]
            })
            .collect();
        let mut widths = [0; 3];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in rows {
            let mut line = String::new();
            for (cell, width) in row[..3].iter().zip(widths) {
                line.push_str(&format!("{cell:<width$}  "));
            }
            line.push_str(&row[3]);
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn listen_text(t: &TunnelDef) -> String {
    let socket = t.socket_path().map(|p| p.display().to_string());
    match (tcp_text(t), socket) {
        (Some(tcp), Some(socket)) => format!("{tcp} and {socket}"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => String::new(),
    }
}

/// Where the tunnel listens on TCP, in words (`None`: on a socket only).
fn tcp_text(t: &TunnelDef) -> Option<String> {
    t.tcp_listen()
        .map(|addr| match (addr.port(), &t.listen_host) {
            (0, Some(host)) => format!("a free port on {host}"),
            (port, Some(host)) => format!("{host}:{port}"),
            (0, None) if addr.ip() == spec::DEFAULT_LISTEN.ip() => "a free port".to_string(),
            (0, None) => format!("a free port on {}", addr.ip()),
            (_, None) => addr.to_string(),
        })
}

fn route_text(t: &TunnelDef) -> String {
    let mut parts: Vec<String> = t.via.iter().flatten().map(ToString::to_string).collect();
    parts.push(t.target.to_string());
    parts.join(" -> ")
}

fn options_text(t: &TunnelDef) -> String {
    let mut options = Vec::new();
    if t.require_pq {
        options.push("require_pq".to_string());
    } else if t.require_encrypted {
        options.push("require_encrypted".to_string());
    }
    if !t.probe {
        options.push("no probe".to_string());
    }
    if let Some(mode) = t.sslmode {
        options.push(format!("sslmode={}", mode.as_str()));
    }
    match t.pg {
        Some(true) => options.push("pg".to_string()),
        Some(false) => options.push("not pg".to_string()),
        None => {}
    }
    options.join(", ")
}

/// The file being parsed: turns byte offsets into [`Location`]s.
struct Doc<'a> {
    path: &'a Path,
    text: &'a str,
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let bytes = text.as_bytes();
    let before = &bytes[..offset.min(bytes.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    // Count characters, not bytes: skip UTF-8 continuation bytes.
    let column = 1 + before[line_start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count();
    (line, column)
}

impl Doc<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(self.text, offset)
    }

    fn line(&self, offset: usize) -> usize {
        line_col(self.text, offset).0
    }

    fn at(&self, offset: usize, tunnel: Option<&str>) -> Box<Location> {
        Box::new(Location {
            path: self.path.to_path_buf(),
            line: self.line(offset),
            column: None,
            tunnel: tunnel.map(str::to_string),
        })
    }
}

/// One tunnel and the lines of its `listen` and `socket` keys, for conflict messages.
struct Parsed {
    def: TunnelDef,
    listen_line: usize,
    socket_line: usize,
}

fn parse_ssh_config(
    doc: &Doc<'_>,
    value: Spanned<DeValue<'_>>,
    home: &Path,
) -> Result<ConfigSource, TunnelsError> {
    let start = value.span().start;
    let text = String::deserialize(ValueDeserializer::from(value)).map_err(|e| {
        TunnelsError::WrongType {
            at: doc.at(start, None),
            key: Some("ssh_config".into()),
            message: e.message().to_string(),
        }
    })?;
    if text == "none" {
        return Ok(ConfigSource::None);
    }
    expand_path(&text, home)
        .map(ConfigSource::File)
        .map_err(|reason| TunnelsError::BadPath {
            at: doc.at(start, None),
            key: "ssh_config",
            value: text,
            reason,
        })
}

/// The `tunnel` table's entries, in file order.
fn parse_tunnels(
    doc: &Doc<'_>,
    key: &Spanned<DeString<'_>>,
    value: Spanned<DeValue<'_>>,
    home: &Path,
) -> Result<Vec<Parsed>, TunnelsError> {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        return Err(TunnelsError::WrongType {
            at: doc.at(key.span().start.min(span.start), None),
            key: Some("tunnel".into()),
            message: "expected tables: one [tunnel.NAME] per tunnel".into(),
        });
    };
    let mut entries: Vec<_> = table.into_iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
        .into_iter()
        .map(|(key, value)| parse_tunnel(doc, &key, value, home))
        .collect()
}

/// A tunnel's body as TOML types; the values are checked by [`convert`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTunnel {
    via: Option<Spanned<Via>>,
    target: Spanned<String>,
    listen: Option<Spanned<Listen>>,
    socket: Option<Spanned<String>>,
    #[serde(default)]
    require_encrypted: bool,
    #[serde(default)]
    require_pq: bool,
    #[serde(default = "yes")]
    probe: bool,
    sslmode: Option<Spanned<String>>,
    pg: Option<bool>,
}

fn yes() -> bool {
    true
}

/// `via = "a,b"` or `via = ["a", "b"]`.
enum Via {
    Text(String),
    Hops(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for Via {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Via;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"hops as a string "a,b" or an array ["a", "b"]"#)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Via, E> {
                Ok(Via::Text(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Via, A::Error> {
                let mut hops = Vec::new();
                while let Some(hop) = seq.next_element()? {
                    hops.push(hop);
                }
                Ok(Via::Hops(hops))
            }
        }
        d.deserialize_any(V)
    }
}

/// `listen = 6543` or `listen = "127.0.0.1:6543"`.
enum Listen {
    Port(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Listen;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a port number or a string "[ADDR:]PORT""#)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Listen, E> {
                Ok(Listen::Port(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Listen, E> {
                Ok(Listen::Port(i64::try_from(n).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Listen, E> {
                Ok(Listen::Text(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

fn parse_tunnel(
    doc: &Doc<'_>,
    key: &Spanned<DeString<'_>>,
    value: Spanned<DeValue<'_>>,
    home: &Path,
) -> Result<Parsed, TunnelsError> {
    let name = key.get_ref().to_string();
    let at = doc.at(key.span().start, Some(&name));
    if !good_name(&name) {
        return Err(TunnelsError::BadName { at, name });
    }
    let DeValue::Table(table) = value.get_ref() else {
        let message = if TUNNEL_KEYS.contains(&name.as_str()) {
            // `[tunnel]` then `target = ...`: the name was left out.
            format!("`{name}` is a tunnel's key: put it under a [tunnel.NAME] header")
        } else {
            format!(
                "expected a table ([tunnel.{name}]), found {}",
                value.get_ref().type_str()
            )
        };
        return Err(TunnelsError::WrongType {
            at,
            key: None,
            message,
        });
    };
    // Keys in file order, with the span of each key and value (to place serde's errors).
    let mut keys: Vec<(String, Range<usize>, Range<usize>)> = table
        .iter()
        .map(|(k, v)| (k.get_ref().to_string(), k.span(), v.span()))
        .collect();
    keys.sort_by_key(|(_, k, _)| k.start);
    if let Some((key, span, _)) = keys
        .iter()
        .find(|(k, ..)| !TUNNEL_KEYS.contains(&k.as_str()))
    {
        return Err(TunnelsError::UnknownKey {
            at: doc.at(span.start, Some(&name)),
            key: key.clone(),
            valid: &TUNNEL_KEYS,
            closest: closest(key, TUNNEL_KEYS),
        });
    }
    if !keys.iter().any(|(k, ..)| k == "target") {
        return Err(TunnelsError::MissingKey {
            at,
            key: "target",
            hint: r#"the service as seen from the last hop, e.g. target = "db.foo.com:5432""#,
        });
    }
    let raw = RawTunnel::deserialize(ValueDeserializer::from(value)).map_err(|e| {
        let start = e.span().map_or(key.span().start, |s| s.start);
        let key = keys
            .iter()
            .find(|(_, k, v)| k.contains(&start) || v.contains(&start))
            .map(|(k, ..)| k.clone());
        TunnelsError::WrongType {
            at: doc.at(start, Some(&name)),
            key,
            message: e.message().to_string(),
        }
    })?;
    convert(doc, name, at.line, raw, home)
}

/// A raw tunnel checked by the command line's parsers.
fn convert(
    doc: &Doc<'_>,
    name: String,
    line: usize,
    raw: RawTunnel,
    home: &Path,
) -> Result<Parsed, TunnelsError> {
    let at = |offset: usize| doc.at(offset, Some(&name));
    let bad = |offset: usize, source: SpecError| TunnelsError::BadValue {
        at: at(offset),
        source,
    };
    let via = raw.via.map(|via| parse_via(via, &bad)).transpose()?;
    let target = spec::parse_target(raw.target.get_ref())
        .map_err(|e| bad(raw.target.span().start, in_file_words(e, "target")))?;
    let line_of = |value: Option<Range<usize>>| value.map_or(line, |span| doc.line(span.start));
    let listen_line = line_of(raw.listen.as_ref().map(Spanned::span));
    let (listen, listen_host) = match raw.listen {
        None => (None, None),
        Some(l) => {
            let text = match l.get_ref() {
                Listen::Port(n) => n.to_string(),
                Listen::Text(s) => s.clone(),
            };
            let (addr, host) = spec::parse_listen_or_name(&text)
                .map_err(|e| bad(l.span().start, in_file_words(e, "listen")))?;
            (Some(addr), host)
        }
    };
    let socket_line = line_of(raw.socket.as_ref().map(Spanned::span));
    let socket = raw
        .socket
        .map(|s| {
            expand_path(s.get_ref(), home).map_err(|reason| TunnelsError::BadPath {
                at: at(s.span().start),
                key: "socket",
                value: s.get_ref().clone(),
                reason,
            })
        })
        .transpose()?;
    let tcp = listen.is_some() || socket.is_none();
    let sslmode = raw
        .sslmode
        .map(|s| parse_sslmode(s, tcp, &at))
        .transpose()?;
    let def = TunnelDef {
        name,
        line,
        via,
        target,
        listen,
        listen_host,
        socket,
        require_encrypted: raw.require_encrypted || raw.require_pq,
        require_pq: raw.require_pq,
        probe: raw.probe,
        sslmode,
        pg: raw.pg,
    };
    Ok(Parsed {
        def,
        listen_line,
        socket_line,
    })
}

/// `sslmode`, on a tunnel with (`tcp`) or without a TCP listener.
fn parse_sslmode(
    value: Spanned<String>,
    tcp: bool,
    at: &impl Fn(usize) -> Box<Location>,
) -> Result<SslMode, TunnelsError> {
    let at = at(value.span().start);
    if !tcp {
        return Err(TunnelsError::TlsWithoutTcp { at });
    }
    SslMode::parse(value.get_ref()).map_err(|message| TunnelsError::BadSslMode { at, message })
}

/// `via`, a string as `-J` takes it or an array of hops.
fn parse_via(
    via: Spanned<Via>,
    bad: &impl Fn(usize, SpecError) -> TunnelsError,
) -> Result<Vec<HopSpec>, TunnelsError> {
    let start = via.span().start;
    match via.into_inner() {
        Via::Text(text) => spec::parse_hops(&text).map_err(|e| bad(start, in_file_words(e, "via"))),
        Via::Hops(hops) if hops.is_empty() => Err(bad(start, SpecError::Empty { what: "via" })),
        Via::Hops(hops) => hops
            .iter()
            .map(|hop| {
                spec::parse_hop(hop.get_ref())
                    .map_err(|e| bad(hop.span().start, in_file_words(e, "via")))
            })
            .collect(),
    }
}

/// A [`SpecError`] that names the file's key instead of the command line's argument
/// (`listen` for `--listen`); a hop stays "hop" (`via hop ...`).
fn in_file_words(e: SpecError, key: &'static str) -> SpecError {
    let word = |what: &'static str| match (what, key) {
        ("hop", "via") => "via hop",
        _ => key,
    };
    match e {
        SpecError::Empty { what } => SpecError::Empty { what: word(what) },
        SpecError::BadPort { what, input, port } => SpecError::BadPort {
            what: word(what),
            input,
            port,
        },
        SpecError::Malformed {
            what,
            input,
            reason,
        } => SpecError::Malformed {
            what: word(what),
            input,
            reason,
        },
        SpecError::Usage { what, reason } => SpecError::Usage {
            what: word(what),
            reason,
        },
    }
}

/// `~` and `~/...` against `home`; other paths must be absolute.
fn expand_path(value: &str, home: &Path) -> Result<PathBuf, &'static str> {
    if value == "~" {
        Ok(home.to_path_buf())
    } else if let Some(rest) = value.strip_prefix("~/") {
        Ok(home.join(rest))
    } else if value.starts_with('~') {
        Err("`~user` is not expanded: write the path in full")
    } else if value.is_empty() {
        Err("the path is empty")
    } else if Path::new(value).is_absolute() {
        Ok(PathBuf::from(value))
    } else {
        Err("write an absolute path, or one starting with `~/`")
    }
}

/// Letters, digits, `-`, `_`, `.`; not empty, not starting with `-` (it would read as an
/// option in `up NAME`).
fn good_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Two tunnels on the same TCP port of overlapping addresses, or on the same socket file.
fn check_conflicts(path: &Path, tunnels: &[Parsed]) -> Result<(), TunnelsError> {
    for (i, second) in tunnels.iter().enumerate() {
        for first in &tunnels[..i] {
            let (a, b) = (&first.def, &second.def);
            if let (Some(x), Some(y)) = (a.listen, b.listen)
                && x.port() != 0
                && x.port() == y.port()
                && listen_ips(a)
                    .iter()
                    .any(|&i| listen_ips(b).iter().any(|&j| overlaps(i, j)))
            {
                return Err(TunnelsError::ListenConflict {
                    path: path.to_path_buf(),
                    first: claim(a, first.listen_line, tcp_text(a).unwrap_or_default()),
                    second: claim(b, second.listen_line, tcp_text(b).unwrap_or_default()),
                });
            }
            if let (Some(x), Some(y)) = (a.socket_path(), b.socket_path())
                && x == y
            {
                return Err(TunnelsError::SocketConflict {
                    path: path.to_path_buf(),
                    first: claim(a, first.socket_line, x.display().to_string()),
                    second: claim(b, second.socket_line, y.display().to_string()),
                });
            }
        }
    }
    Ok(())
}

/// The addresses a tunnel's `listen` stands for as far as the file tells: its address, or
/// for `localhost` both loopback addresses; another name is resolved only when binding, and
/// a clash of it is reported then.
fn listen_ips(t: &TunnelDef) -> Vec<IpAddr> {
    match (t.listen, t.listen_host.as_deref()) {
        (Some(addr), None) => vec![addr.ip()],
        (Some(_), Some(host)) => crate::config::forward::bind_plan(Some(host), false)
            .addresses(crate::config::AddressFamily::Any)
            .unwrap_or_default(),
        (None, _) => Vec::new(),
    }
}

fn claim(t: &TunnelDef, line: usize, endpoint: String) -> Box<Claim> {
    Box::new(Claim {
        tunnel: t.name.clone(),
        line,
        endpoint,
    })
}

/// Whether listening on `a` and on `b` (same port) collide, with Linux's defaults: the same
/// address; 0.0.0.0 and any IPv4 address; `::` (dual-stack) and any address. An
/// IPv4-mapped IPv6 address is its IPv4 address.
fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (a, b) = (canonical(a), canonical(b));
    let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    a == b || a == any6 || b == any6 || (a == any4 && b.is_ipv4()) || (b == any4 && a.is_ipv4())
}

/// The candidate closest to `word` by edit distance (a swap of two neighbours counts one),
/// if it is close enough to be a typo: at most one edit per three characters, at least one.
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j].
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    rows[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

/// A TOML syntax error, placed: file, line, column and, inside a `[tunnel.NAME]` section,
/// the tunnel. A `duplicate key` that is a tunnel's name is [`TunnelsError::DuplicateName`],
/// with the line of the first definition when it can be found.
fn syntax_error(doc: &Doc<'_>, e: &toml::de::Error) -> TunnelsError {
    let span = e.span().unwrap_or(0..0);
    let (line, column) = doc.line_col(span.start);
    let section = section_at(doc.text, span.start);
    let tunnel = section.as_ref().and_then(|s| match s.path.as_slice() {
        [t, name, ..] if t == "tunnel" => Some(name.clone()),
        _ => None,
    });
    let mut message = e.message().to_string();
    if message == "duplicate key"
        && let Some(key) = doc.text.get(span.clone()).and_then(decode_key)
    {
        // The table holding the key: the section, or the header's parent on its own line.
        let parent: Vec<String> = match &section {
            Some(s) if s.on_error_line => s.path[..s.path.len().saturating_sub(1)].to_vec(),
            Some(s) => s.path.clone(),
            None => Vec::new(),
        };
        let first_line = first_definition(doc.text, span.start, &parent, &key);
        if parent == ["tunnel"] {
            return TunnelsError::DuplicateName {
                at: doc.at(span.start, Some(&key)),
                name: key,
                first_line,
            };
        }
        message = format!("`{key}` is given twice{}", first_note(first_line));
    }
    TunnelsError::Syntax {
        at: Box::new(Location {
            path: doc.path.to_path_buf(),
            line,
            column: Some(column),
            tunnel,
        }),
        message,
    }
}

/// The `[table]` header a position is under.
struct Section {
    /// The header's keys (`["tunnel", "prod"]`).
    path: Vec<String>,
    /// The header is on the line of the position.
    on_error_line: bool,
}

/// The header of the section holding byte `offset`: the nearest line above it (or its own)
/// that is a `[table]` header. `None` at the top level, or when the line of `offset` looks
/// like a header but is not one (it is the error).
fn section_at(text: &str, offset: usize) -> Option<Section> {
    let offset = offset.min(text.len());
    let end = text.as_bytes()[offset..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(text.len(), |i| offset + i);
    let mut lines = text.get(..end)?.rsplit('\n');
    let own = lines.next()?;
    if own.trim_start().starts_with('[') {
        return header_path(own).map(|path| Section {
            path,
            on_error_line: true,
        });
    }
    lines
        .filter(|l| l.trim_start().starts_with('['))
        .find_map(header_path)
        .map(|path| Section {
            path,
            on_error_line: false,
        })
}

/// The keys of a `[a.b.c]` header line (not of `[[array]]` headers).
fn header_path(line: &str) -> Option<Vec<String>> {
    let root = DeTable::parse(line.trim_end_matches('\r'))
        .ok()?
        .into_inner();
    let mut path = Vec::new();
    let mut table = &root;
    loop {
        let mut entries = table.iter();
        match (entries.next(), entries.next()) {
            (None, _) if !path.is_empty() => return Some(path),
            (Some((key, value)), None) => {
                let DeValue::Table(inner) = value.get_ref() else {
                    return None;
                };
                path.push(key.get_ref().to_string());
                table = inner;
            }
            _ => return None,
        }
    }
}

/// A key as written (bare or quoted), decoded.
fn decode_key(raw: &str) -> Option<String> {
    if raw.starts_with(['"', '\'']) {
        let value = toml::de::DeValue::parse(raw).ok()?;
        value.get_ref().as_str().map(str::to_string)
    } else {
        Some(raw.to_string())
    }
}

/// The line where `key` was first defined in table `parent`, from what comes before the
/// line of `offset` (the second definition).
fn first_definition(text: &str, offset: usize, parent: &[String], key: &str) -> Option<usize> {
    let offset = offset.min(text.len());
    let line_start = text.as_bytes()[..offset]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let before = text.get(..line_start)?;
    let (root, _) = DeTable::parse_recoverable(before);
    let mut table = root.get_ref();
    for name in parent {
        let (_, value) = table.iter().find(|(k, _)| k.get_ref() == name)?;
        table = value.get_ref().as_table()?;
    }
    let (found, _) = table.iter().find(|(k, _)| k.get_ref() == key)?;
    Some(line_col(text, found.span().start).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = "/home/joe";

    fn parse_ok(text: &str) -> TunnelsFile {
        match parse(Path::new("tunnels.toml"), text, Path::new(HOME)) {
            Ok(file) => file,
            Err(e) => panic!("{e}"),
        }
    }

    fn parse_err(text: &str) -> TunnelsError {
        match parse(Path::new("tunnels.toml"), text, Path::new(HOME)) {
            Ok(file) => panic!("accepted: {file:?}"),
            Err(e) => e,
        }
    }

    fn message(text: &str) -> String {
        parse_err(text).to_string()
    }

    fn hop(user: Option<&str>, host: &str) -> HopSpec {
        HopSpec {
            user: user.map(str::to_string),
            host: host.into(),
            port: None,
        }
    }

    fn def(name: &str, line: usize, target: &str) -> TunnelDef {
        TunnelDef {
            name: name.into(),
            line,
            via: None,
            target: spec::parse_target(target).unwrap(),
            listen: None,
            listen_host: None,
            socket: None,
            require_encrypted: false,
            require_pq: false,
            probe: true,
            sslmode: None,
            pg: None,
        }
    }

    const REALISTIC: &str = r#"
# Two databases behind the bastion, one through an ssh_config alias.
ssh_config = "~/.ssh/config"

[tunnel.prod]
via = "joe@shell.foo.com"
target = "db.foo.com:5432"
listen = 6543
require_encrypted = true
sslmode = "verify-full"

[tunnel.replica]
via = ["joe@shell.foo.com", "inner"]
target = "replica.foo.com"
listen = "127.0.0.1:6544"
probe = false

[tunnel."metrics-v2.eu"]
target = "metrics"            # an ssh_config alias with its own ProxyJump
socket = "/run/user/1000/pgtunnel"
pg = false
"#;

    #[test]
    fn a_realistic_file() {
        let file = parse_ok(REALISTIC);
        assert_eq!(file.path, Path::new("tunnels.toml"));
        assert_eq!(
            file.ssh_config,
            Some(ConfigSource::File("/home/joe/.ssh/config".into()))
        );
        let bastion = hop(Some("joe"), "shell.foo.com");
        let prod = TunnelDef {
            via: Some(vec![bastion.clone()]),
            listen: Some("127.0.0.1:6543".parse().unwrap()),
            require_encrypted: true,
            sslmode: Some(SslMode::VerifyFull),
            ..def("prod", 5, "db.foo.com:5432")
        };
        let replica = TunnelDef {
            via: Some(vec![bastion, hop(None, "inner")]),
            listen: Some("127.0.0.1:6544".parse().unwrap()),
            probe: false,
            ..def("replica", 12, "replica.foo.com")
        };
        let metrics = TunnelDef {
            socket: Some("/run/user/1000/pgtunnel".into()),
            pg: Some(false),
            ..def("metrics-v2.eu", 18, "metrics")
        };
        assert_eq!(file.tunnels, vec![prod, replica, metrics]);
        assert_eq!(file.tunnels[1].target.port, 5432);
        assert_eq!(file.tunnels[2].tcp_listen(), None);
        assert_eq!(
            file.tunnels[2].socket_path(),
            Some("/run/user/1000/pgtunnel/.s.PGSQL.5432".into())
        );
        assert_eq!(
            file.tunnels[0].tcp_listen(),
            Some("127.0.0.1:6543".parse().unwrap())
        );
    }

    #[test]
    fn list_shows_each_tunnel_on_one_line() {
        let file = parse_ok(REALISTIC);
        assert_eq!(
            file.list(),
            "\
prod           127.0.0.1:6543                         joe@shell.foo.com -> db.foo.com:5432                require_encrypted, sslmode=verify-full
replica        127.0.0.1:6544                         joe@shell.foo.com -> inner -> replica.foo.com:5432  no probe
metrics-v2.eu  /run/user/1000/pgtunnel/.s.PGSQL.5432  metrics:5432                                        not pg
"
        );
    }

    #[test]
    fn the_sample_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tunnels/tunnels.toml");
        let file = load(&path, Path::new(HOME)).unwrap();
        let names: Vec<&str> = file.tunnels.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["prod", "replica", "cache"]);
        // All three behind the same bastion; two through `inner` after it.
        for t in &file.tunnels {
            assert_eq!(
                t.via.as_ref().unwrap()[0],
                hop(Some("joe"), "shell.foo.com")
            );
        }
        assert_eq!(file.tunnels[0].via, file.tunnels[1].via);
        assert_eq!(
            file.tunnels[1].socket_path(),
            Some("/home/joe/.pgtunnel/.s.PGSQL.5432".into())
        );
        assert_eq!(file.tunnels[2].pg, Some(false));
    }

    #[test]
    fn load_names_a_file_it_cannot_read() {
        let err = load(
            Path::new("/nonexistent/pgtunnel/tunnels.toml"),
            Path::new(HOME),
        )
        .unwrap_err();
        assert!(matches!(err, TunnelsError::Read { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("cannot read tunnels file /nonexistent/pgtunnel/tunnels.toml: "),
            "{err}"
        );
    }

    /// `listen = "localhost:6543"` is taken as `-L localhost:6543` is: every loopback address.
    #[test]
    fn listen_may_name_localhost() {
        let file = parse_ok(
            "[tunnel.a]\ntarget = 'db'\nlisten = 'localhost:6543'\n\
             [tunnel.b]\ntarget = 'db'\nlisten = 'localhost:0'\n",
        );
        let a = &file.tunnels[0];
        assert_eq!(a.listen, Some("127.0.0.1:6543".parse().unwrap()));
        assert_eq!(a.listen_host.as_deref(), Some("localhost"));
        assert_eq!(listen_text(a), "localhost:6543");
        assert_eq!(listen_text(&file.tunnels[1]), "a free port on localhost");
        assert_eq!(listen_ips(a).len(), 2);
        // What neither reading takes is still refused, with the address's reason.
        let err = message("[tunnel.a]\ntarget = 'db'\nlisten = 'local host:1'\n");
        assert!(
            err.starts_with("tunnels.toml:3: tunnel `a`: ") && err.contains("IP address"),
            "{err}"
        );
    }

    #[test]
    fn via_listen_and_ssh_config_forms() {
        let file = parse_ok(
            r#"
ssh_config = "none"
[tunnel.a]
target = "db"
via = "joe@gw:2222,inner"
listen = 6543
[tunnel.b]
target = "db"
via = ["joe@gw:2222", "inner"]
listen = "6544"
[tunnel.c]
target = "[fd00::5]:6432"
listen = "[::1]:0"
[tunnel.d]
target = "db"
listen = "0.0.0.0:6545"
socket = "~"
"#,
        );
        assert_eq!(file.ssh_config, Some(ConfigSource::None));
        let t = &file.tunnels;
        assert_eq!(t[0].via, t[1].via);
        assert_eq!(t[0].via.as_ref().unwrap()[0].port, Some(2222));
        let listen: Vec<_> = t.iter().map(|t| t.listen.unwrap().to_string()).collect();
        assert_eq!(
            listen,
            [
                "127.0.0.1:6543",
                "127.0.0.1:6544",
                "[::1]:0",
                "0.0.0.0:6545"
            ]
        );
        assert_eq!(
            (t[2].target.host.as_str(), t[2].target.port),
            ("fd00::5", 6432)
        );
        assert_eq!(t[3].socket.as_deref(), Some(Path::new(HOME)));
        assert_eq!(t[3].tcp_listen(), t[3].listen);
        let none = parse_ok("[tunnel.a]\ntarget = 'db'\n");
        assert_eq!(none.ssh_config, None);
        assert_eq!(none.tunnels[0].tcp_listen(), Some(spec::DEFAULT_LISTEN));
        // Other ways TOML writes the same tables.
        let inline = parse_ok("[tunnel]\na = { target = 'db', probe = false }\n");
        let dotted = parse_ok("tunnel.a.target = 'db'\ntunnel.a.probe = false\n");
        assert_eq!(
            inline.tunnels,
            vec![TunnelDef {
                probe: false,
                ..def("a", 2, "db")
            }]
        );
        assert_eq!(
            dotted.tunnels,
            vec![TunnelDef {
                probe: false,
                ..def("a", 1, "db")
            }]
        );
    }

    #[test]
    fn require_pq_implies_require_encrypted() {
        let file = parse_ok("[tunnel.a]\ntarget = 'db'\nrequire_pq = true\n");
        assert!(file.tunnels[0].require_encrypted && file.tunnels[0].require_pq);
        let file = parse_ok("[tunnel.a]\ntarget = 'db'\nrequire_encrypted = true\n");
        assert!(file.tunnels[0].require_encrypted && !file.tunnels[0].require_pq);
    }

    #[test]
    fn a_syntax_error_names_file_line_column_and_tunnel() {
        let err =
            parse_err("[tunnel.a]\ntarget = 'db'\n\n[tunnel.b]\ntarget = \"db\nprobe = true\n");
        assert_eq!(
            err.location(),
            Some(&Location {
                path: "tunnels.toml".into(),
                line: 5,
                column: Some(13),
                tunnel: Some("b".into()),
            })
        );
        assert_eq!(
            err.to_string(),
            "tunnels.toml:5:13: tunnel `b`: invalid basic string, expected `\"`"
        );
        // At the top level, or in a header that does not parse, no tunnel is named.
        assert_eq!(
            message("ssh_config = \n[tunnel.a]\ntarget = 'db'\n"),
            "tunnels.toml:1:14: string values must be quoted, expected literal string"
        );
        assert_eq!(
            message("[tunnel.a]\ntarget = 'db'\n[tunnel.b\ntarget = 'x'\n"),
            "tunnels.toml:3:10: unclosed table, expected `]`"
        );
        // In a sub-table of a tunnel, and with CRLF line ends.
        assert_eq!(
            message("[tunnel.a]\r\ntarget = 'db'\r\n[tunnel.a.x]\r\ny = \r\n"),
            "tunnels.toml:4:5: tunnel `a`: string values must be quoted, expected literal string"
        );
        // Columns count characters.
        assert_eq!(
            message("[tunnel.a]\ntarget = 'db' # café\nprobe = yes\n").as_str(),
            "tunnels.toml:3:9: tunnel `a`: string values must be quoted, expected literal string"
        );
        assert_eq!(line_col("é\nxé!", 6), (2, 3));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn an_unknown_key_is_named_with_the_valid_ones() {
        let err = parse_err("[tunnel.prod]\ntarget = 'db'\nsslmdoe = 'require'\nbar = 1\n");
        assert_eq!(
            err.to_string(),
            "tunnels.toml:3: tunnel `prod`: unknown key `sslmdoe` (did you mean `sslmode`?); \
             valid keys: via, target, listen, socket, require_encrypted, require_pq, probe, \
             sslmode, pg"
        );
        // The first in file order, not in the parser's.
        assert_eq!(
            message("[tunnel.prod]\ntarget = 'db'\nzz = 1\naa = 1\n"),
            "tunnels.toml:3: tunnel `prod`: unknown key `zz`; valid keys: via, target, listen, \
             socket, require_encrypted, require_pq, probe, sslmode, pg"
        );
        // A sub-table is a key too.
        assert!(
            message("[tunnel.a]\ntarget = 'db'\n[tunnel.a.options]\nprobe = false\n")
                .starts_with("tunnels.toml:3: tunnel `a`: unknown key `options`;")
        );
        assert_eq!(
            message("tunnels.prod.target = 'db'\n"),
            "tunnels.toml:1: unknown key `tunnels` (did you mean `tunnel`?); valid keys: \
             ssh_config, tunnel (a tunnel is a [tunnel.NAME] table)"
        );
        assert_eq!(
            message("ssh_config = 'none'\n\n[prod]\ntarget = 'db'\n"),
            "tunnels.toml:3: unknown key `prod`; valid keys: ssh_config, tunnel (a tunnel is a \
             [tunnel.NAME] table)"
        );
    }

    #[test]
    fn a_missing_target() {
        assert_eq!(
            message("[tunnel.a]\ntarget = 'db'\n\n[tunnel.b]\nlisten = 5\n"),
            "tunnels.toml:4: tunnel `b`: missing key `target` (the service as seen from the \
             last hop, e.g. target = \"db.foo.com:5432\")"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type() {
        for (body, want) in [
            (
                "probe = \"yes\"",
                "probe: invalid type: string \"yes\", expected a boolean",
            ),
            (
                "require_encrypted = 1",
                "require_encrypted: invalid type: integer `1`, expected a boolean",
            ),
            (
                "listen = true",
                "listen: invalid type: boolean `true`, expected a port number or a string \
                 \"[ADDR:]PORT\"",
            ),
            (
                "via = 3",
                "via: invalid type: integer `3`, expected hops as a string \"a,b\" or an array \
                 [\"a\", \"b\"]",
            ),
            (
                "via = [\"gw\", 2]",
                "via: invalid type: integer `2`, expected a string",
            ),
            (
                "socket = []",
                "socket: invalid type: sequence, expected a string",
            ),
        ] {
            let text = format!("[tunnel.prod]\ntarget = 'db'\n{body}\n");
            assert_eq!(
                message(&text),
                format!("tunnels.toml:3: tunnel `prod`: {want}"),
                "{body}"
            );
        }
        assert_eq!(
            message("[tunnel.prod]\ntarget = 5432\n"),
            "tunnels.toml:2: tunnel `prod`: target: invalid type: integer `5432`, expected a \
             string"
        );
        assert_eq!(
            message("ssh_config = 3\n[tunnel.a]\ntarget = 'db'\n"),
            "tunnels.toml:1: ssh_config: invalid type: integer `3`, expected a string"
        );
        for text in ["tunnel = 3\n", "[[tunnel]]\ntarget = 'db'\n"] {
            assert_eq!(
                message(text),
                "tunnels.toml:1: tunnel: expected tables: one [tunnel.NAME] per tunnel",
                "{text}"
            );
        }
        assert_eq!(
            message("[tunnel]\nprod = 'db'\n"),
            "tunnels.toml:2: tunnel `prod`: expected a table ([tunnel.prod]), found string"
        );
        assert_eq!(
            message("[tunnel]\ntarget = 'db'\n"),
            "tunnels.toml:2: tunnel `target`: `target` is a tunnel's key: put it under a \
             [tunnel.NAME] header"
        );
    }

    #[test]
    fn a_value_the_command_line_refuses_carries_its_message() {
        for (body, want) in [
            (
                "via = 'gw, inner'",
                "via hop ` inner`: ssh -J reads its value only up to the first blank: write the \
                 hop without blanks",
            ),
            ("via = ['gw', 'joe@']", "via hop `joe@`: no host name"),
            ("via = []", "via is empty"),
            ("via = ''", "via is empty"),
            (
                "target = 'joe@db'",
                "target `joe@db`: a target has no user; put `user@` on the hop (--via)",
            ),
            (
                "target = 'db:0'",
                "target `db:0`: port `0` is not a number from 1 to 65535",
            ),
            (
                "listen = 70000",
                "listen `70000`: port `70000` is not a number from 1 to 65535",
            ),
            ("listen = -1", "listen `-1`: expected `[ADDR:]PORT`"),
            (
                "listen = '10.0.0.300:5432'",
                "listen `10.0.0.300:5432`: the address must be an IP address such as \
                 127.0.0.1 or [::1]",
            ),
            (
                "sslmode = 'prefer'",
                "sslmode `prefer`: one of require, verify-ca, verify-full (weaker modes need no \
                 option)",
            ),
            (
                "socket = 'run/pgtunnel'",
                "socket `run/pgtunnel`: write an absolute path, or one starting with `~/`",
            ),
            (
                "socket = '~bob/pgtunnel'",
                "socket `~bob/pgtunnel`: `~user` is not expanded: write the path in full",
            ),
            (
                "socket = '/run/pgt'\nsslmode = 'require'",
                "sslmode needs a TCP listener (libpq uses no TLS over a Unix socket): add \
                 `listen`, or remove `sslmode`",
            ),
        ] {
            let text = format!("[tunnel.prod]\ntarget = 'db'\n{body}\n");
            let text = text.replacen("target = 'db'\ntarget", "target", 1);
            let err = parse_err(&text);
            let line = if body.starts_with("target") { 2 } else { 3 };
            let line = line + body.matches('\n').count();
            assert_eq!(
                err.to_string(),
                format!("tunnels.toml:{line}: tunnel `prod`: {want}"),
                "{body}"
            );
        }
        assert_eq!(
            message("ssh_config = 'ssh/config'\n[tunnel.a]\ntarget = 'db'\n"),
            "tunnels.toml:1: ssh_config `ssh/config`: write an absolute path, or one starting \
             with `~/`"
        );
        // The error is the command line's, in the file's words.
        assert!(matches!(
            parse_err("[tunnel.a]\ntarget = 'db:x'\n"),
            TunnelsError::BadValue {
                source: SpecError::BadPort { what: "target", .. },
                ..
            }
        ));
    }

    #[test]
    fn a_tunnel_defined_twice() {
        let text = "[tunnel.prod]\ntarget = 'db'\n\n[tunnel.staging]\ntarget = 's'\n\n\
                    [tunnel.prod]\ntarget = 'db2'\n";
        let err = parse_err(text);
        assert!(
            matches!(&err, TunnelsError::DuplicateName { name, first_line: Some(1), .. } if name == "prod"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "tunnels.toml:7: tunnel `prod`: defined twice (first at line 1)"
        );
        // However the name is written.
        assert_eq!(
            message("[tunnel.prod]\ntarget = 'db'\n[tunnel.\"prod\"]\ntarget = 'x'\n"),
            "tunnels.toml:3: tunnel `prod`: defined twice (first at line 1)"
        );
        assert_eq!(
            message("[tunnel]\nprod = { target = 'db' }\nprod = { target = 'x' }\n"),
            "tunnels.toml:3: tunnel `prod`: defined twice (first at line 2)"
        );
        // A key given twice in one tunnel.
        assert_eq!(
            message("[tunnel.prod]\ntarget = 'db'\nprobe = false\ntarget = 'x'\n"),
            "tunnels.toml:4:1: tunnel `prod`: `target` is given twice (first at line 2)"
        );
    }

    #[test]
    fn a_file_without_tunnels_shows_the_format() {
        for text in ["", "# nothing yet\n", "ssh_config = 'none'\n", "[tunnel]\n"] {
            let err = parse_err(text);
            assert!(matches!(err, TunnelsError::NoTunnels { .. }), "{text:?}");
            assert_eq!(
                err.to_string(),
                "tunnels.toml: defines no tunnels; define one like this:\n\n\
                 [tunnel.prod]\n\
                 via = \"joe@shell.foo.com\"\n\
                 target = \"db.foo.com:5432\"\n\
                 listen = 6543"
            );
        }
        // The example is a good file.
        parse_ok(EXAMPLE);
    }

    #[test]
    fn tunnel_names() {
        for good in ["prod", "db-1", "db_2", "eu.prod", "_x", "7"] {
            let file = parse_ok(&format!("[tunnel.\"{good}\"]\ntarget = 'db'\n"));
            assert_eq!(file.tunnels[0].name, good);
        }
        for bad in ["a b", "-x", "", "prod/1", "é", "a:b", "x\\u0007"] {
            let err = parse_err(&format!("target = 1\n[tunnel.\"{bad}\"]\ntarget = 'db'\n"));
            let err = match err {
                TunnelsError::UnknownKey { .. } => {
                    parse_err(&format!("[tunnel.\"{bad}\"]\ntarget = 'db'\n"))
                }
                err => err,
            };
            assert!(
                matches!(err, TunnelsError::BadName { .. }),
                "{bad}: {err:?}"
            );
            assert!(
                err.to_string().ends_with(
                    ": bad name: a tunnel's name has ASCII letters, digits, `-`, `_` and `.` \
                     only, and does not start with `-`"
                ),
                "{err}"
            );
        }
        assert!(
            message("[tunnel.\"a b\"]\ntarget = 'db'\n")
                .starts_with("tunnels.toml:1: tunnel `a b`: bad name")
        );
    }

    fn listen_pair(a: &str, b: &str) -> Result<TunnelsFile, TunnelsError> {
        let text = format!(
            "[tunnel.one]\ntarget = 'db'\nlisten = '{a}'\n\n[tunnel.two]\ntarget = 'db2'\n\
             listen = '{b}'\n"
        );
        parse(Path::new("tunnels.toml"), &text, Path::new(HOME))
    }

    #[test]
    fn two_tunnels_on_one_port() {
        for (a, b) in [
            ("6543", "127.0.0.1:6543"),
            ("0.0.0.0:6543", "127.0.0.2:6543"),
            ("10.0.0.1:6543", "0.0.0.0:6543"),
            ("[::]:6543", "127.0.0.1:6543"),
            ("[::1]:6543", "[::]:6543"),
            ("[::]:6543", "[::]:6543"),
            ("[::ffff:127.0.0.1]:6543", "6543"),
            ("localhost:6543", "[::1]:6543"),
            ("6543", "localhost:6543"),
            ("localhost:6543", "localhost:6543"),
            ("[::]:6543", "localhost:6543"),
        ] {
            let err = listen_pair(a, b).unwrap_err();
            assert!(
                matches!(err, TunnelsError::ListenConflict { .. }),
                "{a} {b}: {err:?}"
            );
        }
        for (a, b) in [
            ("6543", "6544"),
            ("127.0.0.1:6543", "127.0.0.2:6543"),
            ("[::1]:6543", "127.0.0.1:6543"),
            ("0.0.0.0:6543", "[::1]:6543"),
            ("0", "0"),
            ("0.0.0.0:0", "127.0.0.1:0"),
            ("localhost:6543", "127.0.0.2:6543"),
            ("localhost:0", "localhost:0"),
            // Another name is resolved when binding; a clash is reported then.
            ("db.local:6543", "127.0.0.1:6543"),
        ] {
            assert!(listen_pair(a, b).is_ok(), "{a} {b}");
        }
        assert_eq!(
            listen_pair("6543", "6543").unwrap_err().to_string(),
            "tunnels.toml:7: tunnel `two` listens on 127.0.0.1:6543, which conflicts with \
             tunnel `one` on 127.0.0.1:6543 (line 3): give one of them another port"
        );
        assert_eq!(
            listen_pair("6543", "0.0.0.0:6543").unwrap_err().to_string(),
            "tunnels.toml:7: tunnel `two` listens on 0.0.0.0:6543, which conflicts with \
             tunnel `one` on 127.0.0.1:6543 (line 3), as 0.0.0.0 takes the port on every IPv4 \
             address and [::] on every address: give one of them another port"
        );
        assert_eq!(
            listen_pair("localhost:6543", "[::1]:6543")
                .unwrap_err()
                .to_string(),
            "tunnels.toml:7: tunnel `two` listens on [::1]:6543, which conflicts with \
             tunnel `one` on localhost:6543 (line 3), as localhost listens on 127.0.0.1 and \
             ::1: give one of them another port"
        );
        // A tunnel with no `listen` takes a free port: no conflict.
        parse_ok("[tunnel.a]\ntarget = 'db'\n[tunnel.b]\ntarget = 'db'\n");
    }

    #[test]
    fn two_tunnels_on_one_socket_file() {
        let text = "[tunnel.one]\ntarget = 'db'\nsocket = '/run/pgt'\n\n[tunnel.two]\n\
                    target = 'db2:5432'\nsocket = '/run/pgt/'\n";
        assert_eq!(
            message(text),
            "tunnels.toml:7: tunnel `two` would serve /run/pgt/.s.PGSQL.5432, as tunnel `one` \
             does (line 3): give one of them another socket directory"
        );
        // Another target port is another socket file.
        parse_ok(&text.replace("db2:5432", "db2:5433"));
        // `~/` is expanded before comparing.
        assert!(matches!(
            parse_err(
                &text
                    .replace("'/run/pgt/'", "'~/s'")
                    .replace("'/run/pgt'", "'/home/joe/s'")
            ),
            TunnelsError::SocketConflict { .. }
        ));
    }

    fn three() -> TunnelsFile {
        parse_ok(
            "[tunnel.prod]\ntarget = 'db'\n[tunnel.staging]\ntarget = 'db'\n\
             [tunnel.replica]\ntarget = 'db'\n",
        )
    }

    fn names(picked: &[&TunnelDef]) -> Vec<String> {
        picked.iter().map(|t| t.name.clone()).collect()
    }

    #[test]
    fn select_by_name() {
        let file = three();
        assert_eq!(
            names(&file.select(&[]).unwrap()),
            ["prod", "staging", "replica"]
        );
        let asked = ["replica".to_string(), "prod".into(), "replica".into()];
        assert_eq!(names(&file.select(&asked).unwrap()), ["replica", "prod"]);
        assert_eq!(file.get("staging").map(|t| t.line), Some(3));
        let err = file
            .select(&[
                "prdo".to_string(),
                "prod".into(),
                "qa".into(),
                "prdo".into(),
            ])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tunnels.toml: no tunnel named `prdo` (did you mean `prod`?), `qa`; the file \
             defines: prod, staging, replica"
        );
        let TunnelsError::UnknownTunnel { unknown, .. } = err else {
            panic!("{err:?}");
        };
        assert_eq!(unknown[0].closest.as_deref(), Some("prod"));
    }

    #[test]
    fn list_says_where_each_tunnel_listens() {
        let file = parse_ok(
            r#"
[tunnel.a]
target = "db"
[tunnel.b]
target = "db:6432"
listen = "0.0.0.0:0"
socket = "/run/pgt"
require_pq = true
pg = true
[tunnel.c]
target = "[fd00::5]"
via = ["ssh://joe@gw:2222", "[fd00::1]"]
listen = "[::1]:6543"
"#,
        );
        assert_eq!(
            file.list(),
            "\
a  a free port                                        db:5432
b  a free port on 0.0.0.0 and /run/pgt/.s.PGSQL.6432  db:6432                                     require_pq, pg
c  [::1]:6543                                         joe@gw:2222 -> [fd00::1] -> [fd00::5]:5432
"
        );
    }

    #[test]
    fn default_path_follows_xdg() {
        let home = Path::new(HOME);
        let none = |_: &str| None;
        assert_eq!(
            default_path(home, &none),
            Path::new("/home/joe/.config/pgtunnel/tunnels.toml")
        );
        let xdg = |k: &str| (k == "XDG_CONFIG_HOME").then(|| "/xdg".to_string());
        assert_eq!(
            default_path(home, &xdg),
            Path::new("/xdg/pgtunnel/tunnels.toml")
        );
        for ignored in ["", "relative/dir"] {
            let env = |k: &str| (k == "XDG_CONFIG_HOME").then(|| ignored.to_string());
            assert_eq!(
                default_path(home, &env),
                Path::new("/home/joe/.config/pgtunnel/tunnels.toml"),
                "{ignored:?}"
            );
        }
    }

    #[test]
    fn closest_names() {
        assert_eq!(edit_distance("prdo", "prod"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(closest("sslmdoe", TUNNEL_KEYS), Some("sslmode"));
        assert_eq!(closest("requre_pq", TUNNEL_KEYS), Some("require_pq"));
        assert_eq!(closest("socks", TUNNEL_KEYS), None);
        assert_eq!(closest("x", ["y", "xy"]), Some("y"));
        assert_eq!(closest("abc", ["xyz"]), None);
    }

    #[test]
    fn overlapping_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(overlaps(ip("127.0.0.1"), ip("127.0.0.1")));
        assert!(overlaps(ip("0.0.0.0"), ip("192.168.1.5")));
        assert!(overlaps(ip("::"), ip("10.0.0.1")));
        assert!(overlaps(ip("fd00::1"), ip("::")));
        assert!(overlaps(ip("::ffff:10.0.0.1"), ip("0.0.0.0")));
        assert!(!overlaps(ip("0.0.0.0"), ip("::1")));
        assert!(!overlaps(ip("::1"), ip("127.0.0.1")));
        assert!(!overlaps(ip("fd00::1"), ip("fd00::2")));
    }

    mod mutated {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::{Config, RngSeed};

        /// Edits of the realistic file: a byte offset (taken modulo its length) and what to
        /// put there (or remove).
        fn edit() -> impl Strategy<Value = (usize, Option<String>)> {
            let piece = prop_oneof![
                Just("[".to_string()),
                Just("]".to_string()),
                Just("\"".to_string()),
                Just("'".to_string()),
                Just("\n".to_string()),
                Just("\r".to_string()),
                Just("=".to_string()),
                Just(".".to_string()),
                Just("é".to_string()),
                Just("[tunnel.prod]\n".to_string()),
                Just("listen = 6543\n".to_string()),
                "[a-z_ :,@0-9]{1,8}",
            ];
            (any::<usize>(), proptest::option::of(piece))
        }

        fn mutate(text: &str, edits: &[(usize, Option<String>)]) -> String {
            let mut text = text.to_string();
            for (at, what) in edits {
                let mut at = at % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match what {
                    Some(piece) => text.insert_str(at, piece),
                    None if at < text.len() => {
                        text.remove(at);
                    }
                    None => {}
                }
            }
            text
        }

        proptest! {
            #![proptest_config(Config {
                cases: 2000,
                rng_seed: RngSeed::Fixed(0x0074_756e_6e65_6c73),
                ..Config::default()
            })]

            /// Whatever the file holds, parsing returns, and every error's line is in the file.
            #[test]
            fn never_panics_and_places_errors_in_the_file(
                edits in proptest::collection::vec(edit(), 1..6)
            ) {
                let text = mutate(REALISTIC, &edits);
                let lines = text.split('\n').count();
                match parse(Path::new("t.toml"), &text, Path::new(HOME)) {
                    Ok(file) => {
                        prop_assert!(!file.tunnels.is_empty());
                        for t in &file.tunnels {
                            prop_assert!(t.line >= 1 && t.line <= lines);
                        }
                        let _ = file.list();
                    }
                    Err(e) => {
                        if let Some(at) = e.location() {
                            prop_assert!(at.line >= 1 && at.line <= lines, "{e} in {text:?}");
                        }
                        prop_assert!(e.to_string().starts_with("t.toml"), "{e}");
                    }
                }
            }
        }
    }
}
