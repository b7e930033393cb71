//! ssh_config reading and resolution, faithful to OpenSSH 9.x (`ssh -G` is the reference).
//!
//! [`SshConfig`] holds the parsed files (the user's, then the system-wide one, with their
//! `Include`s read in place); [`SshConfig::resolve`] evaluates them for one host the way
//! `ssh` does and returns a [`HostConfig`] in which every value records the file and line
//! that set it ([`HostConfig::origins`], keyed by [`Keyword`]). The keywords themselves
//! (names, parsers, first-value-wins slots, defaults, explain rows) are one table in
//! `config/keyword.rs`; this module reads files, evaluates `Host`/`Match`/`Include` and
//! derives the values that need more than a default (tokens, key and known-hosts files,
//! ProxyJump/ProxyCommand).
//!
//! # Semantics (checked against `ssh -G` by `tests/ssh_config_vs_openssh.rs`)
//! - Lines: case-insensitive keywords; `key value`, `key=value`, `key = value`; `"` and `'`
//!   quotes; `#` comments at the start of a word. Every keyword OpenSSH knows has a status
//!   ([`crate::config::status`]); a keyword none knows is refused when a host is resolved
//!   ("Bad configuration option", with file and line, even in a block that does not apply)
//!   unless an earlier `IgnoreUnknown` in effect covers it, as in OpenSSH. A bad value for a
//!   keyword we use is a [`ConfigError::Line`], even in a block that does not apply, as in
//!   OpenSSH. An unsupported keyword whose (first) value would change behaviour, in a block
//!   that applies, is a [`ConfigError::Unsupported`].
//! - The first value obtained wins, across blocks and files. `IdentityFile`,
//!   `CertificateFile` and `LocalForward` accumulate (duplicates dropped); `UserKnownHostsFile`
//!   and `GlobalKnownHostsFile` are one list, set by the first line that applies.
//! - `LocalForward LISTEN TARGET` is read as ssh reads it (`LISTEN:TARGET`, cut to 255
//!   bytes, parsed like `-L`, `${VAR}` expanded) on every line, a block that does not apply
//!   included, and a bad one is a bad line; `%` tokens are expanded in its socket paths after
//!   reading. `GatewayPorts`, `ExitOnForwardFailure` and `ClearAllForwardings` are
//!   first-value-wins switches; [`HostConfig::effective_local_forwards`] combines the lines
//!   with the command line's `-L` as ssh does (the command line's first; none at all with
//!   `ClearAllForwardings yes`). `StreamLocalBindUnlink` is a first-value-wins switch;
//!   `StreamLocalBindMask` is set by every line, in a block that applies or not (9.2's
//!   readconf.c does not look at `activep` there): the last line read wins.
//! - `Host`: whitespace-separated `*`/`?` patterns matched case-sensitively against the host
//!   as typed; a matching `!pattern` disables the block. `Match`: `all`, `host` (against the
//!   `HostName` set so far, `%h` expanded), `originalhost`, `user` (the user set so far),
//!   `localuser`, `canonical`, `final`, each negatable, comma-separated pattern lists (host
//!   names compared ignoring case). `Match final` (even negated, as in 9.2) and enabled
//!   canonicalization trigger OpenSSH's second pass: the files are evaluated again against
//!   the final (canonical) host name with `final` and `canonical` both true; in the first
//!   pass both are false.
//! - `Match exec` (and criteria of later OpenSSH releases: `localnetwork`, `tagged`, ...)
//!   cannot be evaluated without running commands: when resolution reaches one whose result
//!   matters, it fails with "unsupported"; it is never guessed.
//! - `Include`: globs, relative to `~/.ssh` in user files and to the system file's directory
//!   (`/etc/ssh`) in system files, `~` expanded, read where they appear (an `Include` inside a
//!   `Host`/`Match` block applies only when the block does, and a `Match` inside an included
//!   file does not leak out), up to 16 levels deep, permissions checked as OpenSSH does.
//! - The host name ssh connects to (`HostName` with `%h` expanded, or the host as typed) is
//!   rewritten when it is a numeric address, as ssh's `resolve_addr()` does (`10.1` ->
//!   `10.0.0.1`, `::FFFF:102:304` -> `::ffff:1.2.3.4`; `AddressFamily` is the family hint),
//!   else lowercased (but not a name with `:` or `%`, which ssh takes for an address): that
//!   is `hostname`, `%h` in the other keywords and the known_hosts name (`HostKeyAlias` is
//!   kept as written).
//! - `CanonicalizeHostname` (`yes`: direct connections only; `always`), `CanonicalDomains`,
//!   `CanonicalizeMaxDots`, `CanonicalizeFallbackLocal`, `CanonicalizePermittedCNAMEs`: after
//!   the first pass the host name is canonicalized as ssh's `main()` does it
//!   (`config/canonical.rs`), asking the [`LocalEnv`]'s resolver (the caller's I/O: the
//!   system's `getaddrinfo` for pgtunnel, a fake in tests); when canonicalization is enabled
//!   the files are then read again with the new name, as for `Match final`. A host resolved
//!   with [`HostQuery::jump`] (a jump list's later hosts, `ssh -J`) is not direct.
//! - `ProxyJump` and `ProxyCommand`: whichever applies first wins; `none` clears.
//! - `AddressFamily` (`any`, `inet`, `inet6`; default `any`) filters the addresses hop 1's
//!   HostName resolves to ([`crate::config::AddressFamily::filter`]).
//! - Tokens (`%%`, `%C`, `%d`, `%h`, `%i`, `%j`, `%k`, `%L`, `%l`, `%n`, `%p`, `%r`, `%u`),
//!   `${VAR}` and `~` are expanded in `IdentityFile`, `CertificateFile`, `UserKnownHostsFile`
//!   and `IdentityAgent`; `HostName` takes `%h` and `%%`; `GlobalKnownHostsFile` only `~`;
//!   `LocalForward`'s socket paths the `%` tokens only.
//!   `ProxyCommand` is kept as written ([`HostConfig::expanded_proxy_command`] expands it).
//!
//! # Known differences from OpenSSH 9.2
//! - `%j` is accepted (OpenSSH 9.3+); `%C` hashes `%l%h%p%r` as 9.2 does (newer releases add
//!   `%j`).
//! - An `IdentityAgent ${VAR}` naming an unset variable fails only when that value is used,
//!   not while reading the file. `IdentityAgent $VAR` (the legacy form) is resolved to the
//!   variable's value, or `none` when unset, as `ssh` does before connecting.
//! - `ConnectTimeout 0` is reported as `None`. `ServerAliveInterval` not set is `None`, and
//!   pgtunnel then keeps alive by default (ssh does not); `ServerAliveInterval 0` is
//!   `Some(0)`: off, as in ssh.
//! - `ProxyJump []` (an empty host name) is refused.
//! - Apple's `UseKeychain` and the Debian/Red Hat GSSAPI keywords are known (not applicable,
//!   or refused when enabling GSSAPI), where an upstream `ssh` may call them bad options.
//!   `GSSAPIAuthentication yes` (and the other GSSAPI switches) in the system-wide file, which
//!   Debian and Fedora set for every host, is tolerated and shown by `explain`.
//! - Of the not-applicable keywords, only the yes/no switches and multistate values
//!   (`RequestTTY`, `ControlMaster`, `Tunnel`, ...) are checked (`RemoteForward`,
//!   `DynamicForward`, `ControlPath`, ... are taken as written).
//! - A `LocalForward` line longer than 255 bytes is cut at a character boundary (ssh cuts
//!   the bytes).
//! - Where OpenSSH reports every bad line of a file, we report the first.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};
use thiserror::Error;

use super::address::{canonical_address, is_addr_fast, ssh_host_name};
use super::algorithms::Algorithms;
use super::canonical::{Canonicalization, Canonicalize, Resolver, Rules, canonicalize};
use super::forward::{ConfiguredForward, LocalForward};
use super::glob::{glob, glob_tilde};
use super::jump::Jump;
use super::keyword::{Args, At, Derived, First, KeyFile, Keyword, Options, Setting, Valued};
// The resolved types, at their paths from before the keyword table.
pub use super::keyword::{
    DEFAULT_PASSWORD_PROMPTS, HostConfig, IdentityFile, ProxyJump, StrictHostKeyChecking,
};
use super::lexer::{Directive, argv_split, directive, strdelim};
use super::pattern::{ListMatch, host_line_matches, match_hostname, match_pattern_list};
use super::status::{OtherKeyword, Status, Verdict, other};
use super::tokens::{Expansion, expand, tilde_expand};
use crate::spec::HopSpec;

/// The system-wide client configuration, read after the user's by [`SshConfig::load_default`].
pub const SYSTEM_CONFIG: &str = "/etc/ssh/ssh_config";

/// OpenSSH's `READCONF_MAX_DEPTH`.
const MAX_INCLUDE_DEPTH: usize = 16;
/// What `ssh -G` lists when no `IdentityFile` is configured (OpenSSH 9.2).
const DEFAULT_IDENTITY_FILES: [&str; 7] = [
    "~/.ssh/id_rsa",
    "~/.ssh/id_ecdsa",
    "~/.ssh/id_ecdsa_sk",
    "~/.ssh/id_ed25519",
    "~/.ssh/id_ed25519_sk",
    "~/.ssh/id_xmss",
    "~/.ssh/id_dsa",
];
const DEFAULT_USER_KNOWN_HOSTS: [&str; 2] = ["~/.ssh/known_hosts", "~/.ssh/known_hosts2"];
const DEFAULT_GLOBAL_KNOWN_HOSTS: [&str; 2] =
    ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];
/// Match criteria of OpenSSH releases after 9.2 that need information we do not have.
const LATER_MATCH_CRITERIA: [&str; 5] = [
    "localnetwork",
    "tagged",
    "command",
    "version",
    "sessiontype",
];

/// An ssh_config file that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read ssh config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line that OpenSSH would refuse, or that we cannot honour.
    #[error("{}:{line}: {message}", file.display())]
    Line {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A `RefuseConnection` line applies to the host (ssh: a `fatal()` with its message).
    #[error("{}:{line}: RefuseConnection: {message}", file.display())]
    RefuseConnection {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line's message.
        message: String,
    },
    /// A keyword pgtunnel does not implement, with a value that would make `ssh` behave
    /// differently, in effect for the host being resolved.
    #[error(
        "{}:{line}: {keyword} is unsupported: {reason}; remove it for this host or use ssh",
        file.display()
    )]
    Unsupported {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The keyword, as the manual writes it.
        keyword: &'static str,
        /// Why (`pgtunnel does not implement Ciphers yet`).
        reason: String,
    },
    /// Several bad lines in one file: each is reported, then the file is refused, as OpenSSH
    /// does ("terminating, N bad configuration options"). The last error may be one that
    /// stopped the reading (an included file's, or pgtunnel's refusal of a keyword).
    #[error(
        "{}\n{}: terminating, {} bad configuration options",
        errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
        file.display(),
        errors.len()
    )]
    BadLines {
        /// The file.
        file: PathBuf,
        /// Its errors, in line order.
        errors: Vec<ConfigError>,
    },
    /// Canonicalization (`CanonicalizeHostname`, `CanonicalizePermittedCNAMEs`) could not
    /// resolve the host name, where ssh stops too.
    #[error(
        "{message} ({keyword}, {}:{line}; looked up {})",
        file.display(),
        if tried.is_empty() { "nothing".to_string() } else { tried.join(", ") }
    )]
    Unresolved {
        /// ssh's message: `Could not resolve host "db"`, or `Could not resolve hostname db:
        /// <the resolver's reason>`.
        message: String,
        /// The keyword that asked for the lookup.
        keyword: &'static str,
        /// Its file.
        file: PathBuf,
        /// Its line.
        line: usize,
        /// The names looked up, in order.
        tried: Vec<String>,
    },
    /// A config file others may write to, which OpenSSH refuses to read.
    #[error(
        "bad owner or permissions on {}: it must be owned by you or root and not writable by \
         group or others (chmod go-w)",
        path.display()
    )]
    BadPermissions {
        /// The file.
        path: PathBuf,
    },
}

/// Why an unsupported keyword in effect for a host did not stop pgtunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Its value is what pgtunnel does anyway (`Compression no`).
    ValueAsPgtunnelDoes,
    /// Set in the system-wide file, where distributions enable it for every host (Debian's
    /// `GSSAPIAuthentication yes`); `explain` shows it.
    ToleratedInSystemFile,
}

impl Allowance {
    /// How `explain` words it.
    pub fn describe(self) -> &'static str {
        match self {
            Allowance::ValueAsPgtunnelDoes => "its value is what pgtunnel does",
            Allowance::ToleratedInSystemFile => "not implemented; ignored in the system-wide file",
        }
    }
}

/// A keyword outside the `keywords!` table that was in effect for a host, and its first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenKeyword {
    /// The keyword as the manual writes it (an unknown one as written, lowercased).
    pub name: String,
    /// Its status (`None`: unknown to OpenSSH, let through by `IgnoreUnknown`).
    pub status: Option<Status>,
    /// For an unsupported keyword: why it did not stop pgtunnel.
    pub note: Option<Allowance>,
    /// Its first line.
    pub origin: Origin,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
}

/// What the command line says about a host before the config is consulted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostQuery {
    /// The host or alias as typed (`%n`).
    pub host: String,
    /// `user@` from the command line: overrides `User`.
    pub user: Option<String>,
    /// `:port` from the command line: overrides `Port`.
    pub port: Option<u16>,
    /// The host is reached through this jump host, as `ssh -J a,b` reaches `b` (its child
    /// `ssh -J a b`): it is the ProxyJump, from the command line, and the config's own
    /// ProxyJump and ProxyCommand do not apply. The "jumphost loop" check for it is
    /// [`crate::plan::chain::jumps_to_itself`]'s.
    pub jump: Option<HopSpec>,
}

/// Facts about the local machine that resolution needs (tokens, defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEnv {
    /// Local user name (`%u`, default `User`, `Match localuser`).
    pub local_user: String,
    /// Home directory (`~`, `%d`).
    pub home: PathBuf,
    /// Local host name (`%l`, `%L`).
    pub local_hostname: String,
    /// Local user id (`%i`).
    pub uid: u32,
    /// Environment variables for `${VAR}` (and `IdentityAgent $VAR`).
    pub env: BTreeMap<String, String>,
    /// The resolver `CanonicalizeHostname` asks (the system's, or a fake in tests).
    pub resolver: Resolver,
}

impl HostConfig {
    /// The name OpenSSH looks up in known_hosts: `HostKeyAlias` exactly as written (OpenSSH
    /// never adds the port to an alias: `ssh -o HostKeyAlias=x -p 2222` records `x`), else
    /// HostName, as `[host]:port` when the port is not 22.
    pub fn known_hosts_name(&self) -> String {
        if let Some(alias) = &self.host_key_alias {
            return alias.clone();
        }
        if self.port == 22 {
            self.host_name.clone()
        } else {
            format!("[{}]:{}", self.host_name, self.port)
        }
    }

    /// `ProxyCommand` with its tokens (`%h %k %n %p %r %%`) expanded, as `ssh` runs it.
    pub fn expanded_proxy_command(&self) -> Option<Result<String, String>> {
        let command = self.proxy_command.as_deref()?;
        let port = self.port.to_string();
        let alias = self
            .host_key_alias
            .as_deref()
            .unwrap_or(&self.original_host);
        let tokens = [
            ('h', self.host_name.as_str()),
            ('k', alias),
            ('n', self.original_host.as_str()),
            ('p', port.as_str()),
            ('r', self.user.as_str()),
        ];
        Some(expand(
            command,
            Expansion {
                tokens: &tokens,
                env: None,
            },
        ))
    }
}

impl HostConfig {
    /// The local forwards `ssh [-L SPEC]... HOST` opens: none with `ClearAllForwardings yes`
    /// (it clears the command line's too); else the command line's `command_line` (as
    /// [`parse_local_forward`](crate::config::forward::parse_local_forward) read them), then
    /// the `LocalForward` lines, a forward equal to an earlier one (as written) dropped, as
    /// `add_local_forward()` drops it; `%` tokens are expanded in the command line's socket
    /// paths as in the lines' (`env`: the machine, as for [`SshConfig::resolve`]). `Err`: an
    /// unknown `%` token in a command-line socket path (ssh stops on it too).
    pub fn effective_local_forwards(
        &self,
        command_line: &[LocalForward],
        env: &LocalEnv,
    ) -> Result<Vec<LocalForward>, ConfigError> {
        if self.clear_all_forwardings {
            return Ok(Vec::new());
        }
        let query = HostQuery {
            host: self.original_host.clone(),
            ..HostQuery::default()
        };
        let jump_host = match &self.proxy_jump {
            Some(ProxyJump::Hops(hops)) => hops.last().map(|h| h.host.as_str()),
            _ => None,
        };
        let values = token_values(
            env,
            &query,
            Host {
                name: &self.host_name,
                user: &self.user,
                port: self.port,
            },
            self.host_key_alias.as_deref(),
            jump_host.unwrap_or_default(),
        );
        let x = Expander {
            tokens: values.iter().map(|(k, v)| (*k, v.as_str())).collect(),
            env,
        };
        let mut written: Vec<&LocalForward> = Vec::new();
        let mut out = Vec::new();
        for f in command_line {
            if !written.contains(&f) {
                written.push(f);
                out.push(x.forward(f, &None)?);
            }
        }
        for f in &self.local_forwards {
            if !written.contains(&&f.written) {
                written.push(&f.written);
                out.push(f.forward.clone());
            }
        }
        Ok(out)
    }
}

impl LocalEnv {
    /// The same machine and user with another home directory (`~`, `%d`, `~/.ssh/config`):
    /// for a throw-away configuration such as the demo's.
    pub fn with_home(self, home: impl Into<PathBuf>) -> LocalEnv {
        LocalEnv {
            home: home.into(),
            ..self
        }
    }

    /// User `me` (uid 1000, home `/home/me`) on `laptop`, no environment: for tests.
    #[cfg(test)]
    pub(crate) fn fixture() -> LocalEnv {
        LocalEnv {
            local_user: "me".into(),
            home: "/home/me".into(),
            local_hostname: "laptop".into(),
            uid: 1000,
            env: Default::default(),
            resolver: Resolver::none(),
        }
    }
}

/// Parsed ssh_config files.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    /// Top-level files in reading order (user's, then system-wide).
    files: Vec<ConfigFile>,
}

/// One file and its directives.
#[derive(Debug, Clone)]
struct ConfigFile {
    path: PathBuf,
    /// Read as a user configuration (`SSHCONF_USERCONF`): `~` allowed in `Include`, relative
    /// includes under `~/.ssh`.
    user_config: bool,
    items: Vec<Item>,
}

#[derive(Debug, Clone)]
struct Item {
    line: usize,
    kind: ItemKind,
}

#[derive(Debug, Clone)]
enum ItemKind {
    Host(Vec<String>),
    Match(Vec<Criterion>),
    Include(Vec<ConfigFile>),
    Set(Setting),
    /// A keyword of [`crate::config::status::OTHER`], and what its value means.
    Other(&'static OtherKeyword, Verdict, String),
    /// A keyword OpenSSH does not know (lowercased).
    Unknown(String),
    /// A line OpenSSH refuses (its message): reported with the file's other bad lines.
    Bad(String),
}

#[derive(Debug, Clone)]
enum Criterion {
    All {
        negate: bool,
    },
    Canonical {
        negate: bool,
    },
    Final {
        negate: bool,
    },
    Host {
        negate: bool,
        list: String,
    },
    OriginalHost {
        negate: bool,
        list: String,
    },
    User {
        negate: bool,
        list: String,
    },
    LocalUser {
        negate: bool,
        list: String,
    },
    /// `exec` or a criterion of a later OpenSSH: cannot be evaluated here.
    Unsupported {
        name: String,
        arg: String,
    },
}

/// A line's keyword: a block, an include, or a setting.
#[derive(Debug, Clone, Copy)]
enum Word {
    Host,
    Match,
    Include,
    Set(Keyword),
    Other(&'static OtherKeyword),
    Unknown,
}

impl Word {
    fn from_lowercase(name: &str) -> Word {
        match name {
            "host" => Word::Host,
            "match" => Word::Match,
            "include" => Word::Include,
            _ => match Keyword::from_lowercase(name) {
                Some(keyword) => Word::Set(keyword),
                None => other(name).map_or(Word::Unknown, Word::Other),
            },
        }
    }
}

/// Reads files and their includes.
struct Loader {
    /// `~` in `Include` patterns (OpenSSH's `glob(GLOB_TILDE)` uses `$HOME`).
    home: PathBuf,
    /// Directory for relative includes in system files.
    system_dir: PathBuf,
    /// For the ownership check.
    uid: u32,
}

impl SshConfig {
    /// No config (`-F none`).
    pub fn empty() -> Self {
        SshConfig::default()
    }

    /// Reads only `path`, like `ssh -F path`: the file must exist, its permissions are not
    /// checked (those of its includes are), relative includes are under `$HOME/.ssh`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        SshConfig::load_explicit(path, &env_home())
    }

    /// Like [`SshConfig::load`], with `home` for `~` and relative paths in `Include`.
    pub fn load_explicit(path: &Path, home: &Path) -> Result<Self, ConfigError> {
        let loader = Loader::new(home, Path::new(SYSTEM_CONFIG));
        let file = loader
            .read(path, true, false, 0)?
            .ok_or_else(|| ConfigError::Read {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            })?;
        Ok(SshConfig { files: vec![file] })
    }

    /// Reads `~/.ssh/config` (if present, permissions checked) and then
    /// `/etc/ssh/ssh_config` (if present), like `ssh` without `-F`.
    pub fn load_default(home: &Path) -> Result<Self, ConfigError> {
        let user = home.join(".ssh").join("config");
        SshConfig::load_files(Some(&user), Some(Path::new(SYSTEM_CONFIG)), home)
    }

    /// [`SshConfig::load_default`] with the files named: the user's file (permissions checked)
    /// and a system-wide file, each skipped when missing. Relative includes in the system file
    /// are resolved in its directory; `home` is used for `~` and relative includes in the user
    /// file.
    pub fn load_files(
        user: Option<&Path>,
        system: Option<&Path>,
        home: &Path,
    ) -> Result<Self, ConfigError> {
        let loader = Loader::new(home, system.unwrap_or(Path::new(SYSTEM_CONFIG)));
        let mut files = Vec::new();
        if let Some(user) = user {
            files.extend(loader.read(user, true, true, 0)?);
        }
        if let Some(system) = system {
            files.extend(loader.read(system, false, false, 0)?);
        }
        Ok(SshConfig { files })
    }

    /// Parses `text` as the user's config file `file` (which is not read; includes are).
    pub fn parse_str(text: &str, file: &Path, home: &Path) -> Result<Self, ConfigError> {
        let loader = Loader::new(home, Path::new(SYSTEM_CONFIG));
        let file = loader.parse(text, file, true, 0)?;
        Ok(SshConfig { files: vec![file] })
    }

    /// Every file read, includes included, in reading order.
    pub fn files(&self) -> Vec<&Path> {
        fn walk<'a>(file: &'a ConfigFile, out: &mut Vec<&'a Path>) {
            out.push(&file.path);
            for item in &file.items {
                if let ItemKind::Include(files) = &item.kind {
                    for f in files {
                        walk(f, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for f in &self.files {
            walk(f, &mut out);
        }
        out
    }

    /// The names `Host` lines give literally (no `*` or `?`, not negated), includes
    /// included, in reading order and each once: the aliases a user can type. For messages
    /// about a name that is none of them.
    pub fn aliases(&self) -> Vec<String> {
        fn walk(file: &ConfigFile, out: &mut Vec<String>) {
            for item in &file.items {
                match &item.kind {
                    ItemKind::Host(patterns) => {
                        let literal = patterns.iter().filter(|p| {
                            !p.starts_with('!') && !p.contains(['*', '?']) && !out.contains(p)
                        });
                        let literal: Vec<String> = literal.cloned().collect();
                        out.extend(literal);
                    }
                    ItemKind::Include(files) => files.iter().for_each(|f| walk(f, out)),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        for f in &self.files {
            walk(f, &mut out);
        }
        out
    }

    /// Resolves the configuration of one host, as `ssh -G [-l user] [-p port] host` would.
    pub fn resolve(&self, query: &HostQuery, env: &LocalEnv) -> Result<HostConfig, ConfigError> {
        let mut o = Options::default();
        if let Some(user) = &query.user {
            o.user = First::command_line(user.clone());
        }
        if let Some(port) = query.port {
            o.port = First::command_line(port);
        }
        if let Some(via) = &query.jump {
            // `ssh -J`'s `parse_jump()`: the jump host, and `ProxyCommand none`.
            o.proxy_jump = First::command_line(Jump::Hops(vec![via.clone()]));
            o.proxy_command = First::command_line("none".to_string());
        }
        let mut pass = Pass {
            host: query.host.clone(),
            original_host: &query.host,
            final_pass: false,
            env,
        };
        self.run(&mut o, &pass)?;
        let (host, canonicalization) = canonical_host(&o, query, env)?;
        // Canonicalization enabled (whether it renamed the host or not) also means a second
        // pass, as a `Match final` does.
        if o.want_final
            || o.canonicalize_hostname
                .get()
                .is_some_and(|&c| c != Canonicalize::No)
        {
            // OpenSSH re-reads the files against the final host name, keeping what is set.
            let origin = o.host_name.0.take().and_then(|v| v.origin);
            o.host_name = First(Some(Valued {
                value: host.clone(),
                origin,
            }));
            o.host_name_final = true;
            pass.host = host;
            pass.final_pass = true;
            self.run(&mut o, &pass)?;
        }
        finish(o, query, env, canonicalization)
    }

    fn run(&self, o: &mut Options, pass: &Pass<'_>) -> Result<(), ConfigError> {
        for file in &self.files {
            let mut active = true;
            eval_file(file, &mut active, false, o, pass)?;
        }
        Ok(())
    }
}

fn env_home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(dirs::home_dir)
        .unwrap_or_else(|| PathBuf::from("/"))
}

impl Loader {
    fn new(home: &Path, system_file: &Path) -> Loader {
        Loader {
            home: home.to_path_buf(),
            system_dir: system_file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("/etc/ssh"))
                .to_path_buf(),
            uid: nix::unistd::getuid().as_raw(),
        }
    }

    /// Reads and parses a file; `None` if it does not exist.
    fn read(
        &self,
        path: &Path,
        user_config: bool,
        check_perm: bool,
        depth: usize,
    ) -> Result<Option<ConfigFile>, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_error(e)),
        };
        if check_perm && ((meta.uid() != 0 && meta.uid() != self.uid) || meta.mode() & 0o022 != 0) {
            return Err(ConfigError::BadPermissions {
                path: path.to_path_buf(),
            });
        }
        // OpenSSH reads a directory as an empty file.
        let text = if meta.is_dir() {
            String::new()
        } else {
            let bytes = std::fs::read(path).map_err(read_error)?;
            String::from_utf8_lossy(&bytes).into_owned()
        };
        self.parse(&text, path, user_config, depth).map(Some)
    }

    fn parse(
        &self,
        text: &str,
        path: &Path,
        user_config: bool,
        depth: usize,
    ) -> Result<ConfigFile, ConfigError> {
        let mut items = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            let Some(d) = directive(raw) else { continue };
            let kind = match self.parse_line(&d, path, line, user_config, depth) {
                Ok(kind) => kind,
                // A bad line is reported when the file is evaluated, with the file's other
                // bad lines (`eval_file`), as OpenSSH reads a file in one pass; an included
                // file that cannot be read stops at once.
                Err(ConfigError::Line { message, .. })
                    if !matches!(Word::from_lowercase(&d.keyword), Word::Include) =>
                {
                    ItemKind::Bad(message)
                }
                Err(e) => return Err(e),
            };
            items.push(Item { line, kind });
        }
        Ok(ConfigFile {
            path: path.to_path_buf(),
            user_config,
            items,
        })
    }

    /// One line of [`parse`](Self::parse).
    fn parse_line(
        &self,
        d: &Directive,
        path: &Path,
        line: usize,
        user_config: bool,
        depth: usize,
    ) -> Result<ItemKind, ConfigError> {
        let at = |message: String| ConfigError::Line {
            file: path.to_path_buf(),
            line,
            message,
        };
        let word = Word::from_lowercase(&d.keyword);
        if d.rest.is_empty() {
            return Err(at(format!(
                "no argument after keyword \"{}\"",
                octal_escaped(&d.keyword)
            )));
        }
        let args = argv_split(d.rest).map_err(|()| at("invalid quotes".into()))?;
        Ok(match word {
            Word::Host => {
                if args.iter().any(String::is_empty) {
                    return Err(at("keyword host: empty argument".into()));
                }
                ItemKind::Host(args)
            }
            Word::Match => ItemKind::Match(parse_match(d.rest).map_err(at)?),
            Word::Include => {
                ItemKind::Include(self.include(&args, path, line, user_config, depth)?)
            }
            Word::Set(keyword) => {
                let args = Args {
                    name: &d.keyword,
                    rest: d.rest,
                    words: &args,
                };
                ItemKind::Set(keyword.parse(&args).map_err(at)?)
            }
            Word::Other(keyword) => {
                let verdict = keyword
                    .check(&args)
                    .map_err(|e| at(format!("{}: {e}", d.keyword)))?;
                ItemKind::Other(keyword, verdict, raw_value_of(d.rest))
            }
            Word::Unknown => ItemKind::Unknown(d.keyword.clone()),
        })
    }

    fn include(
        &self,
        args: &[String],
        path: &Path,
        line: usize,
        user_config: bool,
        depth: usize,
    ) -> Result<Vec<ConfigFile>, ConfigError> {
        let at = |message: String| ConfigError::Line {
            file: path.to_path_buf(),
            line,
            message,
        };
        let mut files = Vec::new();
        for arg in args {
            if arg.is_empty() {
                return Err(at("keyword include: empty argument".into()));
            }
            if arg.starts_with('~') && !user_config {
                return Err(at(format!(
                    "bad include path {arg}: `~` is not allowed in the system-wide file"
                )));
            }
            let pattern = if arg.starts_with('/') || arg.starts_with('~') {
                arg.clone()
            } else if user_config {
                format!("~/.ssh/{arg}")
            } else {
                format!("{}/{arg}", self.system_dir.display())
            };
            for found in glob(&glob_tilde(&pattern, &self.home)) {
                if depth + 1 > MAX_INCLUDE_DEPTH {
                    return Err(at(format!(
                        "too many recursive configuration includes (more than {MAX_INCLUDE_DEPTH} levels) reading {}",
                        found.display()
                    )));
                }
                files.extend(self.read(&found, user_config, true, depth + 1)?);
            }
        }
        Ok(files)
    }
}

/// Parses a `Match` line's criteria the way `match_cfg_line` reads them (with `strdelim`).
fn parse_match(rest: &str) -> Result<Vec<Criterion>, String> {
    fn next(cp: Option<&str>) -> Option<(String, Option<&str>)> {
        strdelim(cp?).ok()
    }
    let mut cp = Some(rest);
    let mut out = Vec::new();
    let mut attributes = 0;
    while let Some((attrib, after)) = next(cp) {
        if attrib.is_empty() {
            break;
        }
        cp = after;
        if attrib.starts_with('#') {
            break;
        }
        let (negate, name) = match attrib.strip_prefix('!') {
            Some(name) => (true, name),
            None => (false, attrib.as_str()),
        };
        let lname = name.to_ascii_lowercase();
        if lname == "all" {
            let trailing = next(cp).is_some_and(|(a, _)| !a.is_empty() && !a.starts_with('#'));
            if attributes > 1 || trailing {
                return Err(format!(
                    "'{attrib}' cannot be combined with other Match attributes"
                ));
            }
            out.push(Criterion::All { negate });
            return Ok(out);
        }
        attributes += 1;
        if lname == "canonical" {
            out.push(Criterion::Canonical { negate });
            continue;
        }
        if lname == "final" {
            out.push(Criterion::Final { negate });
            continue;
        }
        let Some((arg, after)) = next(cp).filter(|(a, _)| !a.is_empty() && !a.starts_with('#'))
        else {
            return Err(format!("missing Match criteria for {name}"));
        };
        cp = after;
        let list = arg.clone();
        out.push(match lname.as_str() {
            "host" => Criterion::Host { negate, list },
            "originalhost" => Criterion::OriginalHost { negate, list },
            "user" => Criterion::User { negate, list },
            "localuser" => Criterion::LocalUser { negate, list },
            "exec" => Criterion::Unsupported { name: lname, arg },
            n if LATER_MATCH_CRITERIA.contains(&n) => Criterion::Unsupported { name: lname, arg },
            _ => return Err(format!("unsupported Match attribute {name}")),
        });
    }
    if attributes == 0 {
        return Err("one or more attributes required for Match".into());
    }
    Ok(out)
}

/// What one evaluation pass matches against.
struct Pass<'a> {
    /// `Host` patterns are matched against this: the host as typed, or in the final pass the
    /// final host name.
    host: String,
    /// The host as typed (`Match originalhost`).
    original_host: &'a str,
    /// The `Match final` pass.
    final_pass: bool,
    env: &'a LocalEnv,
}

/// Evaluates a file's items; `active` is shared with the including file, as in OpenSSH.
/// Like OpenSSH's `read_config_file_depth()`, a bad line does not stop the file: every bad
/// line is reported, then the file is refused ([`bad_lines`]). What stops at once: an
/// included file's failure (ssh stops inside it) and pgtunnel's own refusals.
fn eval_file(
    file: &ConfigFile,
    active: &mut bool,
    never_match: bool,
    o: &mut Options,
    pass: &Pass<'_>,
) -> Result<(), ConfigError> {
    let mut bad = Vec::new();
    for item in &file.items {
        match eval_item(file, item, active, never_match, o, pass) {
            Ok(()) => {}
            Err(e @ ConfigError::Line { .. }) if !stops_the_file(&item.kind) => bad.push(e),
            Err(e) => {
                bad.push(e);
                break;
            }
        }
    }
    bad_lines(&file.path, bad)
}

/// Whether an error on this item ends the file at once, as in OpenSSH: an included file's
/// (ssh stops inside it). (`RefuseConnection`, a `fatal()` in ssh, is its own error kind,
/// which stops the file as every error but a bad line does.)
fn stops_the_file(kind: &ItemKind) -> bool {
    matches!(kind, ItemKind::Include(_))
}

/// The outcome of a file with these bad lines: none is fine, one is that line's error, more
/// are [`ConfigError::BadLines`] ("terminating, N bad configuration options").
fn bad_lines(file: &Path, mut bad: Vec<ConfigError>) -> Result<(), ConfigError> {
    match bad.len() {
        0 => Ok(()),
        1 => Err(bad.remove(0)),
        _ => Err(ConfigError::BadLines {
            file: file.to_path_buf(),
            errors: bad,
        }),
    }
}

/// One item of [`eval_file`].
fn eval_item(
    file: &ConfigFile,
    item: &Item,
    active: &mut bool,
    never_match: bool,
    o: &mut Options,
    pass: &Pass<'_>,
) -> Result<(), ConfigError> {
    let origin = || Origin {
        file: file.path.clone(),
        line: item.line,
    };
    match &item.kind {
        ItemKind::Host(patterns) => {
            *active = !never_match && host_line_matches(&pass.host, patterns);
        }
        ItemKind::Match(criteria) => {
            let matched = eval_match(criteria, o, pass, never_match, &origin())?;
            *active = !never_match && matched;
        }
        ItemKind::Include(files) => {
            let was_active = *active;
            for included in files {
                eval_file(included, active, never_match || !was_active, o, pass)?;
                // A Match in an included file does not change the includer's state.
                *active = was_active;
            }
        }
        ItemKind::Set(setting) => {
            let origin = origin();
            let at = At {
                origin: &origin,
                user_config: file.user_config,
                env: &pass.env.env,
            };
            if *active || setting.applies_when_inactive() {
                o.apply(setting, &at)?;
            } else {
                setting.check_unapplied(&at)?;
            }
        }
        ItemKind::Other(keyword, verdict, value) => {
            if *active {
                see_other(o, keyword, *verdict, value, file.user_config, origin())?;
            }
        }
        ItemKind::Bad(message) => {
            return Err(ConfigError::Line {
                file: file.path.clone(),
                line: item.line,
                message: message.clone(),
            });
        }
        ItemKind::Unknown(name) => {
            // OpenSSH's `parse_token`: refused wherever it is, unless covered by the
            // `IgnoreUnknown` list in effect (set by an earlier line that applied).
            let ignored = o.ignore_unknown.get().is_some_and(|list| {
                match_pattern_list(name.as_bytes(), list.as_bytes(), true) == ListMatch::Yes
            });
            if !ignored {
                return Err(ConfigError::Line {
                    file: file.path.clone(),
                    line: item.line,
                    message: format!("Bad configuration option: {}", octal_escaped(name)),
                });
            }
            if *active && !o.other_keywords.iter().any(|s| &s.name == name) {
                o.other_keywords.push(SeenKeyword {
                    name: name.clone(),
                    status: None,
                    note: None,
                    origin: origin(),
                });
            }
        }
    }
    Ok(())
}

/// A line of a keyword outside the table, in effect: the first one of each keyword counts
/// (OpenSSH's first value wins); an unsupported keyword with a value that changes behaviour
/// is refused.
fn see_other(
    o: &mut Options,
    keyword: &'static OtherKeyword,
    verdict: Verdict,
    value: &str,
    user_config: bool,
    origin: Origin,
) -> Result<(), ConfigError> {
    let name = keyword.display_name();
    if o.other_keywords.iter().any(|s| s.name == name) {
        return Ok(());
    }
    if name == "RefuseConnection" {
        // OpenSSH: fatal "RefuseConnection: <message>" when a line applies.
        return Err(ConfigError::RefuseConnection {
            file: origin.file,
            line: origin.line,
            message: value.to_string(),
        });
    }
    let mut note = None;
    if keyword.status == Status::Unsupported {
        if verdict == Verdict::Fine {
            note = Some(Allowance::ValueAsPgtunnelDoes);
        } else if keyword.system_default_tolerated && !user_config {
            note = Some(Allowance::ToleratedInSystemFile);
        } else {
            return Err(ConfigError::Unsupported {
                file: origin.file,
                line: origin.line,
                keyword: name,
                reason: keyword.reason.to_string(),
            });
        }
    }
    o.other_keywords.push(SeenKeyword {
        name: name.to_string(),
        status: Some(keyword.status),
        note,
        origin,
    });
    Ok(())
}

/// A keyword as OpenSSH shows it in an error (`strvis` with `VIS_OCTAL`): bytes outside
/// printable ASCII as `\ooo`, so a no-break space (`\302\240`) or a control character that
/// broke the line is visible instead of looking like a blank.
fn octal_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_graphic() || b == b' ' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
    out
}

/// A line's value as written (for `RefuseConnection`'s message).
fn raw_value_of(rest: &str) -> String {
    super::lexer::raw_value(rest).to_string()
}

/// OpenSSH `match_cfg_line`, evaluated against the options read so far.
fn eval_match(
    criteria: &[Criterion],
    o: &mut Options,
    pass: &Pass<'_>,
    never_match: bool,
    origin: &Origin,
) -> Result<bool, ConfigError> {
    let user = o
        .user
        .get()
        .map_or(pass.env.local_user.as_str(), String::as_str)
        .to_string();
    let host = if o.host_name_final {
        o.host_name
            .get()
            .map_or_else(|| pass.host.clone(), Clone::clone)
    } else {
        match &o.host_name.0 {
            Some(h) => expand_host_name(h, &pass.host)?,
            None => pass.host.clone(),
        }
    };
    let mut result = true;
    for criterion in criteria {
        let (negate, matched) = match criterion {
            Criterion::All { negate } => {
                if result {
                    result = !negate;
                }
                break;
            }
            Criterion::Canonical { negate } => (*negate, pass.final_pass),
            Criterion::Final { negate } => {
                o.want_final = true;
                (*negate, pass.final_pass)
            }
            Criterion::Host { negate, list } => {
                (*negate, match_hostname(&host, list) == ListMatch::Yes)
            }
            Criterion::OriginalHost { negate, list } => (
                *negate,
                match_hostname(pass.original_host, list) == ListMatch::Yes,
            ),
            Criterion::User { negate, list } => (
                *negate,
                match_pattern_list(user.as_bytes(), list.as_bytes(), false) == ListMatch::Yes,
            ),
            Criterion::LocalUser { negate, list } => (
                *negate,
                match_pattern_list(pass.env.local_user.as_bytes(), list.as_bytes(), false)
                    == ListMatch::Yes,
            ),
            Criterion::Unsupported { name, arg } => {
                // OpenSSH skips `exec` once an earlier criterion failed; in a block that can
                // never apply, the outcome does not matter either.
                if !result || never_match {
                    continue;
                }
                return Err(ConfigError::Line {
                    file: origin.file.clone(),
                    line: origin.line,
                    message: format!(
                        "`Match {name} {arg}` is unsupported: pgtunnel does not run commands or \
                         evaluate `{name}` from ssh_config; put the settings in a Host block"
                    ),
                });
            }
        };
        if matched == negate {
            result = false;
        }
    }
    Ok(result)
}

/// `HostName` with `%h` (the host as typed) and `%%` expanded.
fn expand_host_name(h: &Valued<String>, host_arg: &str) -> Result<String, ConfigError> {
    expand(
        &h.value,
        Expansion {
            tokens: &[('h', host_arg)],
            env: None,
        },
    )
    .map_err(|e| origin_error(&h.origin, format!("HostName `{}`: {e}", h.value)))
}

fn origin_error(origin: &Option<Origin>, message: String) -> ConfigError {
    match origin {
        Some(o) => ConfigError::Line {
            file: o.file.clone(),
            line: o.line,
            message,
        },
        None => ConfigError::Line {
            file: PathBuf::from("(command line)"),
            line: 0,
            message,
        },
    }
}

/// The host name ssh connects to: `HostName` expanded (or the host as typed), rewritten as
/// ssh does when it is a numeric address (`10.1` -> `10.0.0.1`), else lowercased (unless it
/// looks like an address: see `ssh_host_name`).
fn final_host_name(o: &Options, host_arg: &str) -> Result<String, ConfigError> {
    let host = match &o.host_name.0 {
        // Already final: ssh does not rewrite it again after its final pass.
        Some(h) if o.host_name_final => return Ok(h.value.clone()),
        Some(h) => expand_host_name(h, host_arg)?,
        None => host_arg.to_string(),
    };
    let family = o.address_family.get().copied().unwrap_or_default();
    Ok(ssh_host_name(&host, family))
}

/// The host name after the first pass, as ssh's `main()` has it before the second:
/// [`final_host_name`], then canonicalized (see `canonical.rs`).
fn canonical_host(
    o: &Options,
    query: &HostQuery,
    env: &LocalEnv,
) -> Result<(String, Canonicalization), ConfigError> {
    let host = final_host_name(o, &query.host)?;
    let family = o.address_family.get().copied().unwrap_or_default();
    let mode = o.canonicalize_hostname.get().copied().unwrap_or_default();
    let cnames = super::keyword::permitted_cnames(&o.canonicalize_permitted_cnames);
    // ssh's `direct` (OpenSSH 9.2): no ProxyCommand (or `none`), no jump host (not even
    // `ProxyJump none`), no `-J`.
    let direct = o
        .proxy_command
        .get()
        .is_none_or(|c| c.eq_ignore_ascii_case("none"))
        && o.proxy_jump.0.is_none()
        && query.jump.is_none();
    let rules = Rules {
        mode,
        max_dots: o.canonicalize_max_dots.get().copied().unwrap_or(1),
        domains: o.canonical_domains.get().map_or(&[], Vec::as_slice),
        fallback_local: o.canonicalize_fallback_local.get().copied().unwrap_or(true),
        cnames: &cnames,
        family,
        direct,
    };
    let numeric = canonical_address(&host, family).is_some();
    canonicalize(&host, numeric, is_addr_fast(&host), &rules, &env.resolver).map_err(|e| {
        // The keyword that asked for the lookups: CanonicalizeHostname, or (`no`) the CNAME
        // rules.
        let (keyword, slot) = if mode == Canonicalize::No {
            (
                "CanonicalizePermittedCNAMEs",
                o.canonicalize_permitted_cnames
                    .0
                    .as_ref()
                    .and_then(|v| v.origin.clone()),
            )
        } else {
            (
                "CanonicalizeHostname",
                o.canonicalize_hostname
                    .0
                    .as_ref()
                    .and_then(|v| v.origin.clone()),
            )
        };
        let origin = slot.unwrap_or(Origin {
            file: PathBuf::from("(command line)"),
            line: 0,
        });
        ConfigError::Unresolved {
            message: e.message,
            keyword,
            file: origin.file,
            line: origin.line,
            tried: e.tried,
        }
    })
}

/// Fills defaults and expands tokens, like the end of OpenSSH's `main()` before `-G` prints.
fn finish(
    o: Options,
    query: &HostQuery,
    env: &LocalEnv,
    canonicalization: Canonicalization,
) -> Result<HostConfig, ConfigError> {
    let mut origins = o.origins();
    let host_name = final_host_name(&o, &query.host)?;
    let user = o
        .user
        .get()
        .cloned()
        .unwrap_or_else(|| env.local_user.clone());
    let port = o.port.get().copied().unwrap_or(22);
    let (proxy_jump, proxy_command) = proxy(&o, &host_name, &user, port)?;
    // Only the one of ProxyJump/ProxyCommand in use has an origin.
    if proxy_command.is_none() {
        origins.remove(&Keyword::ProxyCommand);
    }
    if proxy_jump.is_none() {
        origins.remove(&Keyword::ProxyJump);
    }
    let host_key_alias = o.host_key_alias.get().map(|a| a.to_ascii_lowercase());
    let jump_host = match &proxy_jump {
        Some(ProxyJump::Hops(hops)) => hops.last().map(|h| h.host.as_str()),
        _ => None,
    };
    let values = token_values(
        env,
        query,
        Host {
            name: &host_name,
            user: &user,
            port,
        },
        host_key_alias.as_deref(),
        jump_host.unwrap_or_default(),
    );
    let x = Expander {
        tokens: values.iter().map(|(k, v)| (*k, v.as_str())).collect(),
        env,
    };
    let clear_all_forwardings = o.clear_all_forwardings.get().copied().unwrap_or(false);
    let derived = Derived {
        local_forwards: local_forwards(&o.local_forwards, &x, clear_all_forwardings)?,
        original_host: query.host.clone(),
        identity_files: identity_files(&o, &x)?,
        certificate_files: o
            .certificate_files
            .iter()
            .map(|f| x.path_buf(&f.raw, "CertificateFile", &Some(f.origin.clone())))
            .collect::<Result<_, _>>()?,
        user_known_hosts_files: user_known_hosts_files(&o, &x)?,
        global_known_hosts_files: global_known_hosts_files(&o, env)?,
        identity_agent: identity_agent(&o, &x)?,
        algorithms: algorithms(&o)?,
        host_name,
        user,
        port,
        proxy_jump,
        proxy_command,
        host_key_alias,
        origins,
        other_keywords: o.other_keywords.clone(),
        canonicalization,
    };
    Ok(HostConfig::build(&o, derived))
}

/// The algorithm lists, assembled as `ssh`'s `fill_default_options()` does; a list that ends
/// up empty is refused, naming the line that set it.
fn algorithms(o: &Options) -> Result<Algorithms, ConfigError> {
    use super::algorithms::AlgorithmList as L;
    let slot = |list: L| match list {
        L::Ciphers => &o.ciphers,
        L::Macs => &o.macs,
        L::KexAlgorithms => &o.kex_algorithms,
        L::HostKeyAlgorithms => &o.host_key_algorithms,
        L::PubkeyAcceptedAlgorithms => &o.pubkey_accepted_algorithms,
        L::CaSignatureAlgorithms => &o.ca_signature_algorithms,
    };
    Algorithms::resolve(|list| slot(list).get().cloned()).map_err(|(list, message)| {
        origin_error(
            &slot(list).0.as_ref().and_then(|v| v.origin.clone()),
            message,
        )
    })
}

/// `ProxyJump` and `ProxyCommand` as OpenSSH uses them: the command unless `none`; the jump
/// list (refused if it leads back to this very host), or `none` when no command follows it.
fn proxy(
    o: &Options,
    host_name: &str,
    user: &str,
    port: u16,
) -> Result<(Option<ProxyJump>, Option<String>), ConfigError> {
    let proxy_command = o
        .proxy_command
        .get()
        .filter(|c| !c.eq_ignore_ascii_case("none"))
        .cloned();
    let proxy_jump = match &o.proxy_jump.0 {
        Some(Valued {
            value: Jump::Hops(hops),
            origin,
        }) => {
            // The command line's jump host (`HostQuery::jump`) is checked by the chain.
            if let (Some(last), Some(_)) = (hops.last(), origin) {
                let jump_user = last.user.as_deref().unwrap_or(user);
                if last.host == host_name && last.port.unwrap_or(22) == port && jump_user == user {
                    return Err(origin_error(
                        origin,
                        format!(
                            "jumphost loop via {}: ProxyJump leads back to this host",
                            last.host
                        ),
                    ));
                }
            }
            Some(ProxyJump::Hops(hops.clone()))
        }
        // `ProxyJump none` followed by a ProxyCommand: OpenSSH uses the command.
        Some(Valued {
            value: Jump::None, ..
        }) if proxy_command.is_none() => Some(ProxyJump::None),
        _ => None,
    };
    Ok((proxy_jump, proxy_command))
}

/// Where ssh connects: the final host name, user and port.
struct Host<'a> {
    name: &'a str,
    user: &'a str,
    port: u16,
}

/// The values of OpenSSH's `DEFAULT_CLIENT_PERCENT_EXPAND_ARGS` tokens.
fn token_values(
    env: &LocalEnv,
    query: &HostQuery,
    host: Host<'_>,
    host_key_alias: Option<&str>,
    jump_host: &str,
) -> Vec<(char, String)> {
    let port = host.port.to_string();
    let short_host = env.local_hostname.split('.').next().unwrap_or_default();
    vec![
        (
            'C',
            connection_hash(&env.local_hostname, host.name, &port, host.user),
        ),
        ('L', short_host.to_string()),
        ('i', env.uid.to_string()),
        ('k', host_key_alias.unwrap_or(&query.host).to_string()),
        ('l', env.local_hostname.clone()),
        ('n', query.host.clone()),
        ('p', port),
        ('d', env.home.to_string_lossy().into_owned()),
        ('h', host.name.to_string()),
        ('r', host.user.to_string()),
        ('u', env.local_user.clone()),
        ('j', jump_host.to_string()),
    ]
}

/// Expands `~`, `%` tokens and `${VAR}` in path-like values, naming the line on error.
struct Expander<'a> {
    tokens: Vec<(char, &'a str)>,
    env: &'a LocalEnv,
}

impl Expander<'_> {
    fn path(
        &self,
        raw: &str,
        keyword: &str,
        origin: &Option<Origin>,
    ) -> Result<String, ConfigError> {
        let fail = |e: String| origin_error(origin, format!("{keyword} `{raw}`: {e}"));
        let tilde = tilde_expand(raw, &self.env.home, &self.env.local_user).map_err(fail)?;
        let full = Expansion {
            tokens: &self.tokens,
            env: Some(&self.env.env),
        };
        expand(&tilde, full).map_err(fail)
    }

    /// `%` tokens expanded in a forward's socket paths (`default_client_percent_expand`).
    fn forward(
        &self,
        written: &LocalForward,
        origin: &Option<Origin>,
    ) -> Result<LocalForward, ConfigError> {
        let percent = Expansion {
            tokens: &self.tokens,
            env: None,
        };
        written
            .map_paths(|p| {
                expand(p, percent).map_err(|e| format!("LocalForward socket path `{p}`: {e}"))
            })
            .map_err(|e| origin_error(origin, e))
    }

    fn path_buf(
        &self,
        raw: &str,
        keyword: &str,
        origin: &Option<Origin>,
    ) -> Result<PathBuf, ConfigError> {
        self.path(raw, keyword, origin).map(PathBuf::from)
    }
}

/// The `LocalForward`s with `%` tokens expanded in their socket paths (not `~`, and `${VAR}`
/// was expanded while reading), as `ssh`'s `main()` does after reading the files: an unknown
/// token is an error naming the line, unless `ClearAllForwardings yes` dropped the forwards
/// before (then a path keeps its tokens).
fn local_forwards(
    lines: &[ConfiguredForward],
    x: &Expander<'_>,
    cleared: bool,
) -> Result<Vec<ConfiguredForward>, ConfigError> {
    lines
        .iter()
        .map(|f| match x.forward(&f.written, &Some(f.origin.clone())) {
            Ok(forward) => Ok(ConfiguredForward {
                forward,
                ..f.clone()
            }),
            Err(_) if cleared => Ok(f.clone()),
            Err(e) => Err(e),
        })
        .collect()
}

/// The configured identity files (without `none`), or OpenSSH's defaults.
fn identity_files(o: &Options, x: &Expander<'_>) -> Result<Vec<IdentityFile>, ConfigError> {
    if o.identity_files.is_empty() {
        return DEFAULT_IDENTITY_FILES
            .iter()
            .map(|raw| {
                Ok(IdentityFile {
                    path: x.path_buf(raw, "IdentityFile", &None)?,
                    explicit: false,
                })
            })
            .collect();
    }
    o.identity_files
        .iter()
        .filter(|f| !f.raw.eq_ignore_ascii_case("none"))
        .map(|f: &KeyFile| {
            Ok(IdentityFile {
                path: x.path_buf(&f.raw, "IdentityFile", &Some(f.origin.clone()))?,
                explicit: true,
            })
        })
        .collect()
}

/// A known-hosts list as configured (with its line), or the default.
fn known_hosts_setting(
    slot: &First<Vec<String>>,
    default: [&str; 2],
) -> (Vec<String>, Option<Origin>) {
    match &slot.0 {
        Some(v) => (v.value.clone(), v.origin.clone()),
        None => (default.map(String::from).to_vec(), None),
    }
}

/// `UserKnownHostsFile`: all expansions.
fn user_known_hosts_files(o: &Options, x: &Expander<'_>) -> Result<Vec<PathBuf>, ConfigError> {
    let (raw, origin) = known_hosts_setting(&o.user_known_hosts, DEFAULT_USER_KNOWN_HOSTS);
    known_hosts_list(&raw, |r| x.path(r, "UserKnownHostsFile", &origin))
}

/// `GlobalKnownHostsFile`: only `~`.
fn global_known_hosts_files(o: &Options, env: &LocalEnv) -> Result<Vec<PathBuf>, ConfigError> {
    let (raw, origin) = known_hosts_setting(&o.global_known_hosts, DEFAULT_GLOBAL_KNOWN_HOSTS);
    known_hosts_list(&raw, |r| {
        tilde_expand(r, &env.home, &env.local_user)
            .map_err(|e| origin_error(&origin, format!("GlobalKnownHostsFile `{r}`: {e}")))
    })
}

/// `IdentityAgent`, expanded; the legacy `$VAR` form is the variable's value, or no agent.
fn identity_agent(o: &Options, x: &Expander<'_>) -> Result<Option<String>, ConfigError> {
    let Some(a) = &o.identity_agent.0 else {
        return Ok(None);
    };
    let expanded = x.path(&a.value, "IdentityAgent", &a.origin)?;
    Ok(Some(match expanded.strip_prefix('$') {
        Some(name) if !name.starts_with('{') => x
            .env
            .env
            .get(name)
            .cloned()
            .unwrap_or_else(|| "none".to_string()),
        _ => expanded,
    }))
}

/// OpenSSH 9.2 `ssh_connection_hash`: SHA-1 of `%l%h%p%r`, in hex (`%C`).
fn connection_hash(local_host: &str, host: &str, port: &str, user: &str) -> String {
    let mut sha = Sha1::new();
    for part in [local_host, host, port, user] {
        sha.update(part.as_bytes());
    }
    let mut hex = String::with_capacity(40);
    for b in sha.finalize() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// A known-hosts file list: `none` alone means no file.
fn known_hosts_list(
    raw: &[String],
    mut expand_one: impl FnMut(&str) -> Result<String, ConfigError>,
) -> Result<Vec<PathBuf>, ConfigError> {
    if let [only] = raw
        && only.eq_ignore_ascii_case("none")
    {
        return Ok(Vec::new());
    }
    raw.iter()
        .map(|r| expand_one(r).map(PathBuf::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;
    use crate::config::keyword::{AddressFamily, IpQos};
    use crate::spec::HopSpec;

    const FILE: &str = "/cfg/config";

    fn env() -> LocalEnv {
        LocalEnv {
            local_user: "me".into(),
            home: "/home/me".into(),
            local_hostname: "laptop.example.com".into(),
            uid: 1000,
            env: BTreeMap::from([
                ("HOME".to_string(), "/env/home".to_string()),
                ("SOCK".to_string(), "/run/agent.sock".to_string()),
            ]),
            resolver: Resolver::none(),
        }
    }

    fn parse(text: &str) -> SshConfig {
        SshConfig::parse_str(text, Path::new(FILE), Path::new("/nonexistent-home")).unwrap()
    }

    /// The error of a bad file: its lines are reported when a host is resolved (any host: a
    /// bad line is bad in every block).
    fn parse_err(text: &str) -> String {
        SshConfig::parse_str(text, Path::new(FILE), Path::new("/nonexistent-home"))
            .and_then(|c| c.resolve(&q("parse-err-host"), &env()).map(|_| c))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    }

    fn q(host: &str) -> HostQuery {
        HostQuery {
            host: host.into(),
            ..HostQuery::default()
        }
    }

    fn resolve(text: &str, host: &str) -> HostConfig {
        parse(text).resolve(&q(host), &env()).unwrap()
    }

    fn resolve_err(text: &str, host: &str) -> String {
        parse(text)
            .resolve(&q(host), &env())
            .unwrap_err()
            .to_string()
    }

    fn at(line: usize) -> Origin {
        Origin {
            file: FILE.into(),
            line,
        }
    }

    fn paths(files: &[IdentityFile]) -> Vec<String> {
        files
            .iter()
            .map(|f| f.path.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn defaults_without_config() {
        let c = SshConfig::empty()
            .resolve(&q("Db.Example"), &env())
            .unwrap();
        assert_eq!(c.original_host, "Db.Example");
        assert_eq!(c.host_name, "db.example");
        assert_eq!((c.user.as_str(), c.port), ("me", 22));
        assert_eq!(c.identity_files.len(), 7);
        assert_eq!(c.identity_files[0].path, Path::new("/home/me/.ssh/id_rsa"));
        assert!(c.identity_files.iter().all(|f| !f.explicit));
        assert_eq!(
            c.user_known_hosts_files,
            [
                PathBuf::from("/home/me/.ssh/known_hosts"),
                PathBuf::from("/home/me/.ssh/known_hosts2")
            ]
        );
        assert_eq!(c.global_known_hosts_files.len(), 2);
        assert_eq!(c.strict_host_key_checking, StrictHostKeyChecking::Ask);
        assert_eq!(c.server_alive_count_max, 3);
        assert_eq!((c.server_alive_interval, c.connect_timeout), (None, None));
        assert!(c.pubkey_authentication && c.password_authentication);
        assert!(c.kbd_interactive_authentication && !c.identities_only && !c.hash_known_hosts);
        assert_eq!((c.proxy_jump, c.proxy_command), (None, None));
        assert!(c.origins.is_empty());
    }

    #[test]
    fn first_value_wins_and_origins_point_at_it() {
        let text = "\
Host db
  HostName db1.internal
  User alice
  HostName ignored.internal
Host *
  User bob
  Port 2200
  ConnectTimeout 1m30s
";
        let c = resolve(text, "db");
        assert_eq!(c.host_name, "db1.internal");
        assert_eq!((c.user.as_str(), c.port), ("alice", 2200));
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(90)));
        assert_eq!(c.origins[&Keyword::HostName], at(2));
        assert_eq!(c.origins[&Keyword::User], at(3));
        assert_eq!(c.origins[&Keyword::Port], at(7));
        assert_eq!(c.known_hosts_name(), "[db1.internal]:2200");
        // The command line wins over the file, and has no origin.
        let c = parse(text)
            .resolve(
                &HostQuery {
                    host: "db".into(),
                    user: Some("joe".into()),
                    port: Some(2222),
                    jump: None,
                },
                &env(),
            )
            .unwrap();
        assert_eq!((c.user.as_str(), c.port), ("joe", 2222));
        assert!(!c.origins.contains_key(&Keyword::User) && !c.origins.contains_key(&Keyword::Port));
    }

    #[test]
    fn line_syntax() {
        let text =
            "HOST=db\n\tuser = \"al ice\"\n  Port=2200 # comment\n# Port 1\n\nHostName 'x'y\n";
        let c = resolve(text, "db");
        assert_eq!(
            (c.user.as_str(), c.port, c.host_name.as_str()),
            ("al ice", 2200, "xy")
        );
        assert!(parse_err("Host db\n  HostName a b\n").contains("config:2: keyword hostname"));
        assert!(parse_err("Host db\n  User \"open\n").contains("invalid quotes"));
        assert!(parse_err("Port\n").contains("no argument"));
        // A keyword without argument is refused, known or not, as OpenSSH does.
        assert!(parse_err("NoSuchThing\n").contains("no argument"));
        assert!(parse_err("Host x\n  RequestTTY\n").contains("config:2: no argument"));
    }

    fn resolve_error(text: &str, host: &str) -> ConfigError {
        parse(text).resolve(&q(host), &env()).unwrap_err()
    }

    #[test]
    fn unknown_keywords_are_refused_even_in_blocks_that_do_not_apply() {
        let err = resolve_error("Host other\n  Frobnicate yes\n", "x");
        assert_eq!(
            err.to_string(),
            "/cfg/config:2: Bad configuration option: frobnicate"
        );
        // Unless an earlier IgnoreUnknown in effect covers them.
        let c = resolve(
            "IgnoreUnknown frob*,usekeychain\nHost other\n  Frobnicate yes\n",
            "x",
        );
        assert!(c.other_keywords.is_empty(), "{:?}", c.other_keywords);
        let c = resolve("IgnoreUnknown Frob*\nHost x\n  FROBNICATE yes\n", "x");
        assert_eq!(c.other_keywords[0].name, "frobnicate");
        assert_eq!(c.other_keywords[0].status, None);
        // IgnoreUnknown applies to later lines only, in blocks that apply, first value wins.
        assert!(
            resolve_error("Frob yes\nIgnoreUnknown frob\n", "x")
                .to_string()
                .contains("config:1: Bad configuration option: frob")
        );
        assert!(
            resolve_error(
                "Host other\n  IgnoreUnknown frob\nHost *\n  Frob yes\n",
                "x"
            )
            .to_string()
            .contains("config:4:")
        );
        assert!(
            resolve_error("IgnoreUnknown a\nIgnoreUnknown frob\nFrob yes\n", "x")
                .to_string()
                .contains("config:3:")
        );
        // Apple's UseKeychain is known (accepted, not applicable).
        let c = resolve("Host *\n  UseKeychain yes\n  AddKeysToAgent yes\n", "x");
        let names: Vec<&str> = c.other_keywords.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["UseKeychain", "AddKeysToAgent"]);
    }

    #[test]
    fn not_applicable_and_deprecated_keywords_are_accepted() {
        let text = "Host x\n  RequestTTY yes\n  SendEnv LANG LC_*\n  requesttty no\n  \
                    RemoteForward 5432 db:5432\n  Protocol 2\n  UseRoaming no\n  \
                    RSAAuthentication yes\n";
        let c = resolve(text, "x");
        let seen: Vec<(&str, Option<Status>, usize)> = c
            .other_keywords
            .iter()
            .map(|s| (s.name.as_str(), s.status, s.origin.line))
            .collect();
        assert_eq!(
            seen,
            [
                ("RequestTTY", Some(Status::NotApplicable), 2),
                ("SendEnv", Some(Status::NotApplicable), 3),
                ("RemoteForward", Some(Status::NotApplicable), 5),
                ("Protocol", Some(Status::IgnoredByOpenSsh), 6),
                ("UseRoaming", Some(Status::IgnoredByOpenSsh), 7),
                ("RSAAuthentication", Some(Status::IgnoredByOpenSsh), 8),
            ]
        );
        // Only blocks that apply are listed.
        assert!(
            resolve("Host other\n  RequestTTY yes\n", "x")
                .other_keywords
                .is_empty()
        );
    }

    #[test]
    fn unsupported_keywords_refuse_when_they_apply() {
        let err = resolve_error("Host db\n  KbdInteractiveDevices pam\n", "db");
        assert!(
            matches!(
                &err,
                ConfigError::Unsupported {
                    line: 2,
                    keyword: "KbdInteractiveDevices",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "/cfg/config:2: KbdInteractiveDevices is unsupported: pgtunnel does not implement \
             KbdInteractiveDevices yet; remove it for this host or use ssh"
        );
        // Not for another host.
        assert!(
            resolve("Host db\n  KbdInteractiveDevices pam\n", "x")
                .other_keywords
                .is_empty()
        );
        // A value equal to what pgtunnel does is fine; the first value wins.
        let c = resolve(
            "Host x\n  HostbasedAuthentication no\nHost *\n  HostbasedAuthentication yes\n",
            "x",
        );
        assert_eq!(
            c.other_keywords[0].note.map(Allowance::describe),
            Some("its value is what pgtunnel does")
        );
        let err = resolve_error(
            "Host *\n  HostbasedAuthentication yes\n  HostbasedAuthentication no\n",
            "x",
        );
        assert!(
            err.to_string()
                .contains("config:2: HostbasedAuthentication is unsupported"),
            "{err}"
        );
        for (text, keyword) in [
            ("VerifyHostKeyDNS ask\n", "VerifyHostKeyDNS"),
            ("CheckHostIP yes\n", "CheckHostIP"),
            ("GSSAPIAuthentication yes\n", "GSSAPIAuthentication"),
            (
                "PreferredAuthentications hostbased\n",
                "PreferredAuthentications",
            ),
        ] {
            match resolve_error(text, "x") {
                ConfigError::Unsupported { keyword: k, .. } => assert_eq!(k, keyword),
                e => panic!("{text}: {e}"),
            }
        }
        for ok in [
            "CanonicalizeHostname no\n",
            "IPQoS none\n",
            "KnownHostsCommand none\n",
            "PreferredAuthentications hostbased,password\n",
        ] {
            resolve(ok, "x");
        }
        let err = resolve_error("Host x\n  RefuseConnection do not use x\n", "x");
        assert_eq!(
            err.to_string(),
            "/cfg/config:2: RefuseConnection: do not use x"
        );
        // A bad value is refused like OpenSSH does, wherever it is.
        assert!(parse_err("Host other\n  HostbasedAuthentication maybe\n").contains("config:2:"));
    }

    #[test]
    fn gssapi_is_tolerated_in_the_system_wide_file() {
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("ssh_config");
        std::fs::write(&system, "Host *\n  GSSAPIAuthentication yes\n").unwrap();
        let config = SshConfig::load_files(None, Some(&system), dir.path()).unwrap();
        let c = config.resolve(&q("x"), &env()).unwrap();
        assert_eq!(
            c.other_keywords[0].note.map(Allowance::describe),
            Some("not implemented; ignored in the system-wide file")
        );
        // Refused in the user's own file.
        let user = dir.path().join("config");
        std::fs::write(&user, "Host *\n  GSSAPIAuthentication yes\n").unwrap();
        let config = SshConfig::load_files(Some(&user), Some(&system), dir.path()).unwrap();
        let err = config.resolve(&q("x"), &env()).unwrap_err();
        assert!(matches!(err, ConfigError::Unsupported { .. }), "{err}");
        // Only a distribution's defaults are tolerated: refused even system-wide.
        std::fs::write(&system, "Host *\n  CheckHostIP yes\n").unwrap();
        let config = SshConfig::load_files(None, Some(&system), dir.path()).unwrap();
        assert!(config.resolve(&q("x"), &env()).is_err());
    }

    /// A file indented with no-break spaces: OpenSSH's tokenizer splits only at ASCII
    /// blanks, so the keyword holds them and is refused; the message shows them as ssh does.
    #[test]
    fn no_break_spaces_are_refused_and_shown_as_ssh_shows_them() {
        let err = resolve_err("Host a\n\u{a0}\u{a0}HostName 10.0.0.5\n", "a");
        assert_eq!(
            err,
            "/cfg/config:2: Bad configuration option: \\302\\240\\302\\240hostname"
        );
        let err = parse_err("Host\u{a0}a\n  HostName 10.0.0.5\n");
        assert_eq!(
            err,
            "/cfg/config:1: no argument after keyword \"host\\302\\240a\""
        );
    }

    #[test]
    fn bad_values_fail_even_in_blocks_that_do_not_apply() {
        for (text, what) in [
            ("Host other\n  Port 0\n", "bad port"),
            ("Host other\n  Port 65536\n", "bad port"),
            ("Host other\n  StrictHostKeyChecking maybe\n", "maybe"),
            ("Host other\n  IdentitiesOnly 1\n", "IdentitiesOnly"),
            ("Host other\n  ConnectTimeout soon\n", "invalid time"),
            ("Host other\n  ProxyJump a,,b\n", "ProxyJump"),
            ("Host other\n  UserKnownHostsFile a none\n", "alone"),
            ("Host other\n  IdentityAgent ${X\n", "environment"),
            ("Host other\n  ServerAliveCountMax -1\n", "integer"),
        ] {
            let err = parse_err(text);
            assert!(err.starts_with("/cfg/config:2:"), "{text}: {err}");
            assert!(
                err.to_lowercase().contains(&what.to_lowercase()),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn host_patterns() {
        let text = "\
Host *.prod !db.prod
  User prod
Host db?
  User db
Host a,b
  User comma
Host UPPER
  User upper
";
        assert_eq!(resolve(text, "web.prod").user, "prod");
        assert_eq!(resolve(text, "db.prod").user, "me");
        assert_eq!(resolve(text, "db1").user, "db");
        assert_eq!(resolve(text, "db12").user, "me");
        assert_eq!(resolve(text, "a").user, "me");
        assert_eq!(resolve(text, "UPPER").user, "upper");
        assert_eq!(resolve(text, "upper").user, "me");
        // Only negations never match.
        assert_eq!(resolve("Host !x\n  User n\n", "y").user, "me");
    }

    #[test]
    fn match_criteria() {
        let text = "\
Host alias
  HostName Real.Example.COM
Match host real.example.com
  Port 1
Match originalhost ALIAS
  User orig
Match user orig localuser me
  ConnectTimeout 5
Match !host other,nope
  IdentitiesOnly yes
Match all
  HashKnownHosts yes
";
        let c = resolve(text, "alias");
        assert_eq!((c.port, c.user.as_str()), (1, "orig"));
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(5)));
        assert!(c.identities_only && c.hash_known_hosts);
        assert_eq!(c.origins[&Keyword::Port], at(4));
        // `Match user` sees the command-line user.
        let c = parse("Match user joe\n  Port 7\n")
            .resolve(
                &HostQuery {
                    host: "x".into(),
                    user: Some("joe".into()),
                    port: None,
                    jump: None,
                },
                &env(),
            )
            .unwrap();
        assert_eq!(c.port, 7);
        // Host patterns in a Match list: a matching negation wins.
        assert_eq!(resolve("Match host *,!x\n  Port 7\n", "x").port, 22);
        assert_eq!(resolve("Match host !y\n  Port 7\n", "x").port, 22);
        assert_eq!(resolve("Match host=x\n  Port 7\n", "x").port, 7);
    }

    #[test]
    fn match_syntax_errors() {
        assert!(parse_err("Match all host x\n").contains("cannot be combined"));
        assert!(parse_err("Match host\n").contains("missing Match criteria"));
        assert!(parse_err("Match # nothing\n").contains("one or more"));
        assert!(parse_err("Match frobnicate x\n").contains("unsupported Match attribute"));
        // `all` after one other criterion is allowed (`Match canonical all`).
        assert_eq!(resolve("Match canonical all\n  Port 7\n", "x").port, 22);
        assert_eq!(resolve("Match !canonical all\n  Port 7\n", "x").port, 7);
    }

    #[test]
    fn match_exec_is_refused_only_when_it_would_run() {
        let text = "Host a\n  User ua\nMatch host b exec \"test -f /x\"\n  Port 7\n";
        assert_eq!(resolve(text, "a").user, "ua");
        let err = resolve_err(text, "b");
        assert!(err.starts_with("/cfg/config:3:"), "{err}");
        assert!(err.contains("unsupported") && err.contains("exec"), "{err}");
        assert!(
            resolve_err("Match localnetwork 10.0.0.0/8\n  Port 2\n", "x").contains("unsupported")
        );
    }

    #[test]
    fn match_final_reads_the_files_again() {
        let text = "\
Host alias
  HostName Real.Example
Host real.example
  User fromreal
Match final
  Port 4444
Match !final
  ServerAliveInterval 9
";
        let c = resolve(text, "alias");
        assert_eq!((c.user.as_str(), c.port), ("fromreal", 4444));
        assert_eq!(c.server_alive_interval, Some(Duration::from_secs(9)));
        assert_eq!(c.host_name, "real.example");
        assert_eq!(c.origins[&Keyword::HostName], at(2));
        // Without `Match final` there is no second pass.
        assert_eq!(
            resolve("Host alias\n HostName r\nHost r\n User x\n", "alias").user,
            "me"
        );
    }

    #[test]
    fn tokens_and_environment() {
        let text = "\
Host db
  HostName %h.example.com
  User dba
  Port 2222
  IdentityFile ~/.ssh/%r@%h:%p
  IdentityFile ${HOME}/k_%u_%i_%L_%l_%n_%d_%%
  CertificateFile %d/certs/%k
  UserKnownHostsFile ~/.ssh/kh_%h /abs/kh_%C
  IdentityAgent ${SOCK}
  GlobalKnownHostsFile ~/global %h
";
        let c = resolve(text, "db");
        assert_eq!(c.host_name, "db.example.com");
        assert_eq!(
            paths(&c.identity_files),
            [
                "/home/me/.ssh/dba@db.example.com:2222",
                "/env/home/k_me_1000_laptop_laptop.example.com_db_/home/me_%"
            ]
        );
        assert!(c.identity_files.iter().all(|f| f.explicit));
        assert_eq!(c.certificate_files, [PathBuf::from("/home/me/certs/db")]);
        let hash = connection_hash("laptop.example.com", "db.example.com", "2222", "dba");
        assert_eq!(
            c.user_known_hosts_files,
            [
                PathBuf::from("/home/me/.ssh/kh_db.example.com"),
                PathBuf::from(format!("/abs/kh_{hash}"))
            ]
        );
        assert_eq!(c.identity_agent.as_deref(), Some("/run/agent.sock"));
        // GlobalKnownHostsFile: `~` only.
        assert_eq!(
            c.global_known_hosts_files,
            [PathBuf::from("/home/me/global"), PathBuf::from("%h")]
        );
        assert_eq!(c.origins[&Keyword::IdentityFile], at(5));
        // Same vector as `ssh -G` printed for %C on OpenSSH 9.2.
        assert_eq!(
            connection_hash("vm", "b.example", "99", "U"),
            "0421933784fe23694cbf4326eebe71d6b3b52303"
        );
    }

    #[test]
    fn token_errors_name_the_line() {
        let err = resolve_err("Host x\n  HostName %h.%p\n", "x");
        assert!(
            err.starts_with("/cfg/config:2:") && err.contains("%p"),
            "{err}"
        );
        let err = resolve_err("IdentityFile ~/%T\n", "x");
        assert!(
            err.starts_with("/cfg/config:1:") && err.contains("%T"),
            "{err}"
        );
        let err = resolve_err("UserKnownHostsFile ${NOPE}/kh\n", "x");
        assert!(err.contains("NOPE"), "{err}");
        // A Match host sees HostName expanded, so a bad token fails there too.
        assert!(resolve_err("HostName %x\nMatch host y\n", "x").contains("%x"));
    }

    #[test]
    fn key_files_accumulate_without_duplicates() {
        let text = "\
Host db
  IdentityFile ~/.ssh/a
  IdentityFile ~/.ssh/a
  IdentityFile none
Host *
  IdentityFile ~/.ssh/b
  CertificateFile ~/c
  CertificateFile ~/c
";
        let c = resolve(text, "db");
        assert_eq!(
            paths(&c.identity_files),
            ["/home/me/.ssh/a", "/home/me/.ssh/b"]
        );
        assert_eq!(c.certificate_files.len(), 1);
        // `IdentityFile none` alone: no keys, and no defaults either.
        assert!(
            resolve("IdentityFile none\n", "x")
                .identity_files
                .is_empty()
        );
        assert!(
            resolve("UserKnownHostsFile none\n", "x")
                .user_known_hosts_files
                .is_empty()
        );
    }

    #[test]
    fn proxy_jump_and_proxy_command() {
        let hop = |user: Option<&str>, host: &str, port: Option<u16>| HopSpec {
            user: user.map(str::to_string),
            host: host.into(),
            port,
        };
        let c = resolve(
            "Host x\n  ProxyJump j1,u@j2:2200\n  ProxyCommand nc %h %p\n",
            "x",
        );
        assert_eq!(
            c.proxy_jump,
            Some(ProxyJump::Hops(vec![
                hop(None, "j1", None),
                hop(Some("u"), "j2", Some(2200))
            ]))
        );
        assert_eq!(c.proxy_command, None);
        assert_eq!(c.origins[&Keyword::ProxyJump], at(2));

        let c = resolve(
            "Host x\n  ProxyCommand nc %h %p # as is\n  ProxyJump j1\n",
            "x",
        );
        assert_eq!(c.proxy_jump, None);
        assert_eq!(c.proxy_command.as_deref(), Some("nc %h %p # as is"));
        assert_eq!(
            c.expanded_proxy_command(),
            Some(Ok("nc x 22 # as is".to_string()))
        );

        let c = resolve("Host x\n  ProxyJump none\nHost *\n  ProxyJump j1\n", "x");
        assert_eq!(c.proxy_jump, Some(ProxyJump::None));
        // OpenSSH 9.2: `ProxyJump none` does not stop a later ProxyCommand.
        let c = resolve("ProxyJump none\nProxyCommand nc\n", "x");
        assert_eq!(
            (c.proxy_jump, c.proxy_command.as_deref()),
            (None, Some("nc"))
        );
        let c = resolve("ProxyCommand none\nProxyJump j\n", "x");
        assert_eq!((c.proxy_jump, c.proxy_command), (None, None));

        let c = resolve("ProxyJump ssh://joe@gw:2022/\n", "x");
        assert_eq!(
            c.proxy_jump,
            Some(ProxyJump::Hops(vec![hop(Some("joe"), "gw", Some(2022))]))
        );
    }

    #[test]
    fn a_numeric_host_name_is_rewritten_as_ssh_does() {
        let text = "Host a\n  HostName 10.1\nHost k\n  HostName 10.1\n  HostKeyAlias 10.2\n\
                    Match final host 10.0.0.1\n  User f\n\
                    Host *\n  UserKnownHostsFile ~/kh_%h\n  Port 2222\n";
        let c = resolve(text, "a");
        assert_eq!(c.host_name, "10.0.0.1");
        assert_eq!(c.user, "f", "the final pass sees the rewritten name");
        assert_eq!(c.known_hosts_name(), "[10.0.0.1]:2222");
        assert_eq!(
            c.user_known_hosts_files,
            [PathBuf::from("/home/me/kh_10.0.0.1")]
        );
        assert_eq!(
            resolve(text, "k").known_hosts_name(),
            "10.2",
            "HostKeyAlias as written"
        );
        assert_eq!(resolve(text, "192.168.001.010").host_name, "192.168.1.8");
        assert_eq!(resolve(text, "::FFFF:102:304").host_name, "::ffff:1.2.3.4");
        // Canonical but for case: ssh keeps it as written.
        assert_eq!(resolve(text, "::FFFF:1.2.3.4").host_name, "::FFFF:1.2.3.4");
        assert_eq!(resolve(text, "Not.An.Addr").host_name, "not.an.addr");
        // The loop check compares the rewritten name.
        let err = resolve_err("Host a\n  HostName 127.1\n  ProxyJump 127.0.0.1\n", "a");
        assert!(err.contains("jumphost loop"), "{err}");
    }

    /// Resolves `host` with a fake resolver that knows `names` (as asked, trailing dot and
    /// all, to their canonical names).
    fn resolve_dns(
        text: &str,
        query: HostQuery,
        names: &[(&str, Option<&str>)],
    ) -> Result<HostConfig, ConfigError> {
        let env = LocalEnv {
            resolver: Resolver::new(super::super::canonical::tests::Table::new(names)),
            ..env()
        };
        parse(text).resolve(&query, &env)
    }

    #[test]
    fn canonicalization_renames_the_host_and_reads_the_files_again() {
        let text = "Host db\n  CanonicalizeHostname yes\n  CanonicalDomains A.Example b.example.\n\
                    Host db.b.example\n  User canon\nMatch canonical host db.b.example\n  Port 2200\n\
                    Match canonical host db\n  ServerAliveCountMax 7\n\
                    Match !canonical\n  IdentitiesOnly yes\n\
                    Host *\n  UserKnownHostsFile ~/kh_%h\n  IdentityFile ~/id_%h_%n\n";
        let c = resolve_dns(text, q("db"), &[("db.b.example.", None)]).unwrap();
        assert_eq!(c.host_name, "db.b.example");
        assert_eq!(c.original_host, "db");
        assert_eq!((c.user.as_str(), c.port), ("canon", 2200));
        // The first pass's `Match !canonical` applied too (first value wins, kept).
        assert!(c.identities_only);
        assert_eq!(c.known_hosts_name(), "[db.b.example]:2200");
        assert_eq!(
            c.user_known_hosts_files,
            [PathBuf::from("/home/me/kh_db.b.example")]
        );
        assert_eq!(paths(&c.identity_files), ["/home/me/id_db.b.example_db"]);
        assert_eq!(c.canonical_domains, ["a.example", "b.example"]);
        assert_eq!(
            c.canonicalization,
            Canonicalization::Renamed {
                from: "db".into(),
                by_cname: false
            }
        );
        // Nothing found: kept, but the second pass still happens (`Match canonical`).
        let c = resolve_dns(text, q("db"), &[]).unwrap();
        assert_eq!((c.host_name.as_str(), c.server_alive_count_max), ("db", 7));
        assert!(matches!(
            c.canonicalization,
            Canonicalization::NotFound { .. }
        ));
        // Not enabled: no lookup, no second pass.
        let c = resolve_dns(text, q("other"), &[("other.b.example.", None)]).unwrap();
        assert_eq!((c.host_name.as_str(), c.identities_only), ("other", true));
        assert_eq!(c.server_alive_count_max, 3);
    }

    #[test]
    fn canonicalization_follows_how_the_host_is_reached() {
        let text = "Host always\n  CanonicalizeHostname always\n  ProxyJump gw\n\
                    Host *\n  CanonicalizeHostname yes\n  CanonicalDomains example\n\
                    Host viajump\n  ProxyJump gw\nHost jumpnone\n  ProxyJump none\n\
                    Host cmd\n  ProxyCommand nc %h %p\nHost cmdnone\n  ProxyCommand none\n";
        let names: Vec<String> = [
            "viajump", "jumpnone", "cmd", "cmdnone", "always", "hop", "gw",
        ]
        .iter()
        .map(|n| format!("{n}.example."))
        .collect();
        let names: Vec<(&str, Option<&str>)> = names.iter().map(|n| (n.as_str(), None)).collect();
        let host = |h: &str| resolve_dns(text, q(h), &names).unwrap().host_name;
        assert_eq!(host("viajump"), "viajump");
        // OpenSSH 9.2: `ProxyJump none` is a jump host still (9.4 and later canonicalize).
        assert_eq!(host("jumpnone"), "jumpnone");
        assert_eq!(host("cmd"), "cmd");
        assert_eq!(host("cmdnone"), "cmdnone.example");
        assert_eq!(host("always"), "always.example");
        // A host of a jump list after the first is reached with `ssh -J`: not direct.
        let proxied = HostQuery {
            jump: Some(HopSpec {
                user: None,
                host: "gw".into(),
                port: None,
            }),
            ..q("hop")
        };
        let c = resolve_dns(text, proxied, &names).unwrap();
        assert_eq!(
            (c.host_name.as_str(), &c.canonicalization),
            ("hop", &Canonicalization::Proxied)
        );
        assert_eq!(host("hop"), "hop.example");
        // The ProxyJump loop check compares the canonical name.
        let err = resolve_dns(
            "CanonicalizeHostname always\nCanonicalDomains example\nProxyJump loop.example\n",
            q("loop"),
            &[("loop.example.", None)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("jumphost loop"), "{err}");
    }

    #[test]
    fn canonicalization_failures_are_ssh_s() {
        let text = "Host db\n  CanonicalizeHostname yes\n  CanonicalDomains a.example\n  \
                    CanonicalizeFallbackLocal no\n\
                    Host web\n  CanonicalizePermittedCNAMEs *.example:*.cdn\n";
        let err = resolve_dns(text, q("db"), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Could not resolve host \"db\" (CanonicalizeHostname, /cfg/config:2; \
             looked up db.a.example.)"
        );
        // CNAME rules alone: ssh looks the name up even without CanonicalizeHostname, and
        // a direct connection to a name that does not resolve stops there.
        let err = resolve_dns(text, q("web"), &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("Could not resolve hostname web: ")
                && err.contains("CanonicalizePermittedCNAMEs, /cfg/config:6"),
            "{err}"
        );
        let c = resolve_dns(text, q("web"), &[("web", Some("x.cdn"))]).unwrap();
        assert_eq!(c.host_name, "web");
    }

    #[test]
    fn canonicalization_keywords_are_parsed_as_openssh_does() {
        // (The CNAME rules make ssh look the name up as it is.)
        let c = resolve_dns(
            "CanonicalizeHostname TRUE\nCanonicalizeMaxDots 3\nCanonicalizeFallbackLocal no\n\
             CanonicalizePermittedCNAMEs *.A.example:*.b.example,*.c *\n\
             CanonicalizeHostname no\n",
            q("a.b.c.d.e"),
            &[("a.b.c.d.e", None)],
        )
        .unwrap();
        assert_eq!(c.canonicalize_hostname, Canonicalize::Yes);
        assert_eq!(c.canonicalize_max_dots, 3);
        assert!(!c.canonicalize_fallback_local);
        let rules: Vec<(&str, &str)> = c
            .canonicalize_permitted_cnames
            .iter()
            .map(|r| (r.source.as_str(), r.target.as_str()))
            .collect();
        assert_eq!(rules, [("*.a.example", "*.b.example,*.c"), ("*", "*")]);
        let c = resolve("CanonicalizePermittedCNAMEs none\n", "x");
        assert!(c.canonicalize_permitted_cnames.is_empty());
        for (line, want) in [
            ("CanonicalizeHostname none", "unsupported value"),
            ("CanonicalizeHostname yes no", "extra arguments"),
            ("CanonicalDomains a..b", "consecutive separators"),
            ("CanonicalDomains -a", "starts with invalid character"),
            ("CanonicalDomains a none", "must appear alone"),
            ("CanonicalDomains a/b", "invalid characters"),
            (
                "CanonicalizePermittedCNAMEs a",
                "Invalid permitted CNAME \"a\"",
            ),
            (
                "CanonicalizePermittedCNAMEs A:",
                "Invalid permitted CNAME \"a:\"",
            ),
            ("CanonicalizePermittedCNAMEs none *", "must appear alone"),
            ("CanonicalizeMaxDots -1", "integer value"),
            ("CanonicalizeFallbackLocal maybe", "unsupported value"),
        ] {
            let err = parse_err(&format!("Host other\n  {line}\n"));
            assert!(
                err.starts_with("/cfg/config:2:") && err.contains(want),
                "{line}: {err}"
            );
        }
    }

    #[test]
    fn a_jump_back_to_the_same_host_is_a_loop() {
        let err = resolve_err("Host a\n  HostName b\n  ProxyJump b\n", "a");
        assert!(
            err.starts_with("/cfg/config:3:") && err.contains("loop"),
            "{err}"
        );
        // A different port or user is not a loop.
        resolve("Host a\n  ProxyJump a:2222\n", "a");
        resolve("Host a\n  ProxyJump x@a\n", "a");
    }

    #[test]
    fn batch_mode_and_password_prompts() {
        let c = resolve(
            "Host x\n  NumberOfPasswordPrompts 1\n  BatchMode yes\n",
            "x",
        );
        assert!(c.batch_mode);
        assert_eq!(c.number_of_password_prompts, 1);
        assert_eq!(c.origins[&Keyword::NumberOfPasswordPrompts], at(2));
        assert_eq!(c.origins[&Keyword::BatchMode], at(3));
        let c = resolve(
            "BatchMode no\nBatchMode yes\nNumberOfPasswordPrompts 0\n",
            "x",
        );
        assert!(!c.batch_mode);
        assert_eq!(c.number_of_password_prompts, 0);
        let c = resolve("", "x");
        assert!(!c.batch_mode);
        assert_eq!(c.number_of_password_prompts, DEFAULT_PASSWORD_PROMPTS);
        assert!(!c.origins.contains_key(&Keyword::BatchMode));
        assert!(parse_err("NumberOfPasswordPrompts -1\n").contains("integer value"));
        assert!(parse_err("NumberOfPasswordPrompts 2147483648\n").contains("integer value"));
        assert!(parse_err("BatchMode maybe\n").contains("unsupported value"));
    }

    #[test]
    fn address_family_first_value_wins() {
        let text = "Host x\n  AddressFamily INET6\nHost *\n  AddressFamily inet\n";
        let c = resolve(text, "x");
        assert_eq!(c.address_family, AddressFamily::Inet6);
        assert_eq!(c.origins[&Keyword::AddressFamily], at(2));
        assert_eq!(resolve(text, "y").address_family, AddressFamily::Inet);
        let c = resolve("", "x");
        assert_eq!(c.address_family, AddressFamily::Any);
        assert!(!c.origins.contains_key(&Keyword::AddressFamily));
        let err = parse_err("Host other\n  AddressFamily ipv4\n");
        assert!(
            err.starts_with("/cfg/config:2:") && err.contains("ipv4"),
            "{err}"
        );
        assert!(parse_err("AddressFamily inet inet6\n").contains("extra arguments"));
    }

    #[test]
    fn connect_timeout_0_is_a_value_without_limit() {
        let c = resolve("ConnectTimeout 0\nConnectTimeout 5\n", "x");
        assert_eq!(c.connect_timeout, Some(Duration::ZERO));
        assert_eq!(c.origins[&Keyword::ConnectTimeout], at(1));
    }

    #[test]
    fn bind_and_attempts_first_value_wins() {
        let text = "Host x\n  BindAddress 127.0.0.2\n  ConnectionAttempts 3\n\
                    Host *\n  BindAddress 10.0.0.1\n  BindInterface lo\n  ConnectionAttempts 0\n";
        let c = resolve(text, "x");
        assert_eq!(c.bind_address.as_deref(), Some("127.0.0.2"));
        assert_eq!(c.bind_interface.as_deref(), Some("lo"));
        assert_eq!(c.connection_attempts, 3);
        assert_eq!(c.origins[&Keyword::ConnectionAttempts], at(3));
        let c = resolve("", "x");
        assert_eq!((c.bind_address, c.bind_interface), (None, None));
        assert_eq!(c.connection_attempts, 1);
        // 0 is refused only when it is the value that applies (ssh: a fatal error).
        let err = resolve_err(text, "y");
        assert_eq!(err, "/cfg/config:7: Invalid number of ConnectionAttempts");
        assert!(parse_err("BindAddress a b\n").contains("extra arguments"));
        assert!(parse_err("ConnectionAttempts -1\n").contains("integer value"));
    }

    #[test]
    fn ipqos_and_rekey_limit() {
        let c = resolve("Host x\n  IPQoS ef\nHost *\n  IPQoS cs1 cs2\n", "x");
        assert_eq!(c.ip_qos.describe(), "ef ef");
        assert_eq!(resolve("", "x").ip_qos, IpQos::DEFAULT);
        assert_eq!(
            resolve("IPQoS none af11\n", "x").ip_qos.applied(),
            crate::config::Tos::None
        );
        assert!(parse_err("Host o\n  IPQoS af99\n").contains("Bad IPQoS value: af99"));
        assert!(parse_err("IPQoS af11 af12 af13\n").contains("extra arguments"));
        // The data and time limits are each first-value-wins, apart.
        let c = resolve("RekeyLimit 1G\nRekeyLimit 2G 1h\nRekeyLimit 3G 2h\n", "x");
        assert_eq!(c.rekey_limit.describe(), "1073741824 3600");
        assert_eq!(c.origins[&Keyword::RekeyLimit], at(1));
        let c = resolve("RekeyLimit default none\nRekeyLimit 32K 5m\n", "x");
        assert_eq!(c.rekey_limit.describe(), "0 300");
        assert_eq!(resolve("", "x").rekey_limit.describe(), "0 0");
        assert!(parse_err("Host o\n  RekeyLimit 8\n").contains("config:2: RekeyLimit too small"));
    }

    #[test]
    fn preferred_authentications() {
        let c = resolve(
            "Host x\n  PreferredAuthentications password,frob,publickey\n\
             Host *\n  PreferredAuthentications hostbased\n",
            "x",
        );
        assert_eq!(
            c.preferred_authentications.unwrap(),
            ["password", "frob", "publickey"]
        );
        assert_eq!(resolve("", "x").preferred_authentications, None);
        // A list without a method pgtunnel has is refused where it applies, with its line.
        let err = resolve_err(
            "Host x\n  PreferredAuthentications password,frob,publickey\n\
             Host *\n  PreferredAuthentications hostbased\n",
            "y",
        );
        assert!(
            err.starts_with("/cfg/config:4: PreferredAuthentications is unsupported")
                && err.contains("names no method pgtunnel implements"),
            "{err}"
        );
    }

    #[test]
    fn timeouts_and_agents() {
        let c = resolve(
            "ConnectTimeout none\nConnectTimeout 7\nServerAliveInterval 0\n",
            "x",
        );
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(7)));
        // 0 is a value (off, as in ssh), not "unset": it wins over later lines.
        assert_eq!(c.server_alive_interval, Some(Duration::ZERO));
        assert_eq!(c.origins[&Keyword::ServerAliveInterval], at(3));
        let c = resolve("ServerAliveInterval 0\nServerAliveInterval 5\n", "x");
        assert_eq!(c.server_alive_interval, Some(Duration::ZERO));
        let c = resolve("ServerAliveInterval none\nServerAliveInterval 5\n", "x");
        assert_eq!(c.server_alive_interval, Some(Duration::from_secs(5)));
        let c = resolve("ServerAliveInterval none\n", "x");
        assert_eq!(c.server_alive_interval, None);
        let agent = |v: &str| resolve(&format!("IdentityAgent {v}\n"), "x").identity_agent;
        assert_eq!(agent("none").as_deref(), Some("none"));
        assert_eq!(agent("SSH_AUTH_SOCK").as_deref(), Some("SSH_AUTH_SOCK"));
        assert_eq!(agent("$SOCK").as_deref(), Some("/run/agent.sock"));
        assert_eq!(agent("$UNSET").as_deref(), Some("none"));
        assert_eq!(agent("~/a.sock").as_deref(), Some("/home/me/a.sock"));
        assert!(parse_err("IdentityAgent $BAD-NAME\n").contains("environment name"));
    }

    #[test]
    fn literal_host_names_are_the_aliases() {
        let env = LocalEnv::fixture();
        let text =
            "Host db-prod db-*\n  Port 2\nHost !bad bastion\nMatch host x\nHost db-prod ?q\n";
        let config = SshConfig::parse_str(text, Path::new("/cfg"), &env.home).unwrap();
        assert_eq!(config.aliases(), ["db-prod", "bastion"]);
        assert!(SshConfig::empty().aliases().is_empty());
    }

    #[test]
    fn flags_and_aliases() {
        let c = resolve(
            "StrictHostKeyChecking accept-new\nPubkeyAuthentication host-bound\n\
             ChallengeResponseAuthentication no\nPasswordAuthentication NO\nHostKeyAlias DB\n",
            "x",
        );
        assert_eq!(c.strict_host_key_checking, StrictHostKeyChecking::AcceptNew);
        assert!(c.pubkey_authentication);
        assert!(!c.kbd_interactive_authentication && !c.password_authentication);
        assert_eq!(c.host_key_alias.as_deref(), Some("db"));
        assert_eq!(c.origins[&Keyword::KbdInteractiveAuthentication], at(3));
        assert_eq!(c.known_hosts_name(), "db");
        for (v, want) in [
            ("yes", StrictHostKeyChecking::Yes),
            ("off", StrictHostKeyChecking::No),
            ("false", StrictHostKeyChecking::No),
            ("ask", StrictHostKeyChecking::Ask),
        ] {
            let c = resolve(&format!("StrictHostKeyChecking {v}\n"), "x");
            assert_eq!(c.strict_host_key_checking, want, "{v}");
        }
    }

    /// The forwards as `ssh -G` prints them, with their lines.
    fn forwards(c: &HostConfig) -> Vec<(String, usize)> {
        c.local_forwards
            .iter()
            .map(|f| (f.forward.openssh_format(), f.origin.line))
            .collect()
    }

    #[test]
    fn local_forwards_accumulate_in_order_without_duplicates() {
        let text = "Host db\n  LocalForward 63333 db.internal:5432\n  \
                    LocalForward localhost:63334 [fd00::5]:5432\n  \
                    LocalForward 63333 db.internal:5432\n  GatewayPorts yes\n\
                    Host other\n  LocalForward 1 elsewhere:1\n\
                    Host *\n  LocalForward 63333 db.internal:5432\n  \
                    LocalForward [::1]:63335 /run/pg/.s.PGSQL.5432\n  GatewayPorts no\n\
                    Host db\n  ExitOnForwardFailure yes\n";
        let c = resolve(text, "db");
        assert_eq!(
            forwards(&c),
            [
                ("63333 [db.internal]:5432".to_string(), 2),
                ("[localhost]:63334 [fd00::5]:5432".to_string(), 3),
                ("[::1]:63335 /run/pg/.s.PGSQL.5432".to_string(), 10),
            ]
        );
        // First value wins for the switches, as everywhere.
        assert!(c.gateway_ports && c.exit_on_forward_failure && !c.clear_all_forwardings);
        assert_eq!(
            (c.stream_local_bind_mask, c.stream_local_bind_unlink),
            (0o177, false)
        );
        let masked = resolve(
            "Host *\n  StreamLocalBindMask 0-7\n  StreamLocalBindUnlink yes\n",
            "x",
        );
        assert_eq!(
            (
                masked.stream_local_bind_mask,
                masked.stream_local_bind_unlink
            ),
            (0, true)
        );
        assert_eq!(c.origins[&Keyword::LocalForward], at(2));
        assert_eq!(c.origins[&Keyword::GatewayPorts], at(5));
        let other = resolve(text, "x");
        assert_eq!(forwards(&other).len(), 2);
        assert!(!other.gateway_ports && !other.exit_on_forward_failure);
        assert_eq!(other.origins[&Keyword::GatewayPorts], at(11));
        let none = resolve("Host a\n  User u\n", "x");
        assert!(none.local_forwards.is_empty());
        assert!(!none.gateway_ports && !none.exit_on_forward_failure);
    }

    #[test]
    fn local_forward_lines_are_checked_as_ssh_reads_them() {
        // A bad forward is refused even in a block that does not apply (ssh parses it before
        // it looks at the block), `${VAR}` included, every bad line named.
        let err = parse_err(
            "Host nomatch\n  LocalForward 63333 db\n  LocalForward 0 db:5432\n  \
             LocalForward 1 db:${NOPE}\n  LocalForward 1 ${SOCK}\n",
        );
        for want in [
            "/cfg/config:2: Bad forwarding specification '63333 db'\n",
            "/cfg/config:3: Bad forwarding specification '0 db:5432'\n",
            "/cfg/config:4: Bad forwarding specification '1 db:${NOPE}': environment variable \
             `NOPE` is not set\n",
            "terminating, 3 bad configuration options",
        ] {
            assert!(err.contains(want), "{err}");
        }
        // `${SOCK}` is a path: a fine remote socket.
        assert!(!err.contains("config:5"), "{err}");
        for (line, want) in [
            ("LocalForward 63333", "missing target argument"),
            ("LocalForward \"\" db:1", "missing argument"),
            ("LocalForward 63333 \"\"", "missing target argument"),
            (
                "LocalForward 1 db:2 extra",
                "extra arguments at end of line",
            ),
            ("LocalForward 1 db extra", "Bad forwarding specification"),
            ("GatewayPorts maybe", "unsupported value"),
            ("StreamLocalBindMask x", "Bad mask"),
            ("StreamLocalBindMask -1", "Bad mask"),
        ] {
            let err = parse_err(&format!("Host nomatch\n  {line}\n"));
            assert!(
                err.starts_with("/cfg/config:2:") && err.contains(want),
                "{line}: {err}"
            );
        }
    }

    #[test]
    fn local_forward_variables_then_tokens() {
        // `${VAR}` is expanded when the line is read; `%` tokens in socket paths afterwards
        // (not in host names), with the final host name.
        let c = resolve(
            "Host db\n  HostName db.example\n  LocalForward ${SOCK}.%h %h:5432\n  \
             LocalForward 1 /run/%r/%%.sock\n",
            "db",
        );
        assert_eq!(
            forwards(&c),
            [
                ("/run/agent.sock.db.example [%h]:5432".to_string(), 3),
                ("1 /run/me/%.sock".to_string(), 4),
            ]
        );
        let err = resolve_err("Host db\n  LocalForward /tmp/%q.sock db:1\n", "db");
        assert!(
            err.starts_with("/cfg/config:2:") && err.contains("%q"),
            "{err}"
        );
        // ... unless ClearAllForwardings dropped them first (ssh never expands them then).
        let c = resolve(
            "Host db\n  LocalForward /tmp/%q.sock db:1\n  ClearAllForwardings yes\n",
            "db",
        );
        assert_eq!(forwards(&c), [("/tmp/%q.sock [db]:1".to_string(), 2)]);
    }

    #[test]
    fn effective_local_forwards_are_the_command_line_s_then_the_config_s() {
        let env = env();
        let parse_l = |spec: &str| {
            crate::config::forward::parse_local_forward(spec, &|_: &str| None).unwrap()
        };
        let shown = |list: Vec<LocalForward>| -> Vec<String> {
            list.iter().map(LocalForward::openssh_format).collect()
        };
        let text = "Host db\n  LocalForward 63333 db:5432\n  LocalForward /tmp/%h.s db:1\n  \
                    LocalForward 7 x:7\n";
        let c = resolve(text, "db");
        let cli = [
            parse_l("9:x:9"),
            parse_l("63333:db:5432"),
            parse_l("9:x:9"),
            parse_l("/tmp/db.s:db:1"),
            parse_l("/tmp/%n-%p.s:db:1"),
        ];
        // Duplicates are dropped as written (`/tmp/%h.s` and `/tmp/db.s` are two forwards
        // to ssh, which compares before it expands).
        assert_eq!(
            shown(c.effective_local_forwards(&cli, &env).unwrap()),
            [
                "9 [x]:9",
                "63333 [db]:5432",
                "/tmp/db.s [db]:1",
                "/tmp/db-22.s [db]:1",
                "/tmp/db.s [db]:1",
                "7 [x]:7",
            ]
        );
        assert_eq!(
            shown(c.effective_local_forwards(&[], &env).unwrap()),
            ["63333 [db]:5432", "/tmp/db.s [db]:1", "7 [x]:7"]
        );
        let err = c
            .effective_local_forwards(&[parse_l("/tmp/%q:db:1")], &env)
            .unwrap_err();
        assert!(err.to_string().contains("%q"), "{err}");
        // ClearAllForwardings yes: nothing, not even the command line's.
        let c = resolve(&format!("{text}  ClearAllForwardings yes\n"), "db");
        assert!(c.clear_all_forwardings);
        assert_eq!(c.local_forwards.len(), 3, "kept as configured");
        assert!(c.effective_local_forwards(&cli, &env).unwrap().is_empty());
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    #[test]
    fn includes() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        write(
            &h.join(".ssh/conf.d/10-a.conf"),
            "User from-a\nHost other\n  Port 7\n",
        );
        write(&h.join(".ssh/conf.d/20-b.conf"), "User from-b\nPort 8\n");
        write(&h.join(".ssh/conf.d/.hidden.conf"), "Port 9\n");
        write(&h.join(".ssh/rel.conf"), "Host x\n  HostName rel.example\n");
        let main = h.join(".ssh/config");
        write(
            &main,
            "Include rel.conf\nHost x\n  Include ~/.ssh/conf.d/*.conf\n  IdentitiesOnly yes\n\
             Host y\n  Include conf.d/*.conf missing.conf\n",
        );
        let cfg = SshConfig::load_explicit(&main, h).unwrap();
        assert_eq!(cfg.files().len(), 6);
        let c = cfg.resolve(&q("x"), &env()).unwrap();
        assert_eq!(c.host_name, "rel.example");
        assert_eq!((c.user.as_str(), c.port), ("from-a", 8));
        // The `Host other` inside the included file does not turn off the includer's block.
        assert!(c.identities_only);
        assert_eq!(
            c.origins[&Keyword::User],
            Origin {
                file: h.join(".ssh/conf.d/10-a.conf"),
                line: 1
            }
        );
        // An include inside a block that does not apply applies nothing.
        let c = cfg.resolve(&q("other"), &env()).unwrap();
        assert_eq!((c.user.as_str(), c.port), ("me", 22));

        // Includes are permission-checked, even from an explicit (-F) file.
        let loose = h.join(".ssh/conf.d/20-b.conf");
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(
            SshConfig::load_explicit(&main, h),
            Err(ConfigError::BadPermissions { path }) if path == loose
        ));
    }

    #[test]
    fn recursive_includes_stop() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("self.conf");
        write(&f, &format!("Include {}\n", f.display()));
        let err = SshConfig::load_explicit(&f, dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("too many recursive"), "{err}");
    }

    #[test]
    fn default_files_user_then_system() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let user = h.join(".ssh/config");
        let etc = h.join("etc");
        let system = etc.join("ssh_config");
        write(&user, "Host x\n  User from-user\n");
        write(
            &system,
            "Include sys.d/*.conf\nHost *\n  User from-system\n  Port 2\n",
        );
        write(&etc.join("sys.d/a.conf"), "Port 3\n");
        let cfg = SshConfig::load_files(Some(&user), Some(&system), h).unwrap();
        let c = cfg.resolve(&q("x"), &env()).unwrap();
        assert_eq!((c.user.as_str(), c.port), ("from-user", 3));
        // Missing files are fine.
        let none = SshConfig::load_files(Some(&h.join("nope")), Some(&h.join("nope2")), h);
        assert!(none.unwrap().files().is_empty());
        // `~` is refused in the system-wide file.
        write(&system, "Include ~/x.conf\n");
        let err = SshConfig::load_files(None, Some(&system), h).unwrap_err();
        assert!(err.to_string().contains("bad include path"), "{err}");
        // The user's file must not be writable by others (an explicit -F file may be).
        write(&user, "User u\n");
        std::fs::set_permissions(&user, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert!(matches!(
            SshConfig::load_default(h),
            Err(ConfigError::BadPermissions { .. })
        ));
        assert!(SshConfig::load_explicit(&user, h).is_ok());
        // An explicit file must exist.
        assert!(matches!(
            SshConfig::load_explicit(&h.join("nope"), h),
            Err(ConfigError::Read { .. })
        ));
    }
}
