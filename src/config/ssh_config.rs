//! ssh_config reading and resolution (to be written).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::spec::HopSpec;

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
}

/// Facts about the local machine that resolution needs (tokens, defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEnv {
    /// Local user name (`%u`, default `User`).
    pub local_user: String,
    /// Home directory (`~`, `%d`).
    pub home: PathBuf,
    /// Local host name (`%l`, `%L`).
    pub local_hostname: String,
}

/// `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// `yes`: refuse unknown keys.
    Yes,
    /// `accept-new`: add unknown keys, refuse changed ones.
    AcceptNew,
    /// `no` / `off`: accept unknown keys (changed and revoked are still refused by pgtunnel).
    No,
    /// `ask` (OpenSSH's default): prompt on a terminal, otherwise like `yes`.
    Ask,
}

/// `ProxyJump` after token expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyJump {
    /// `ProxyJump none`: stop the expansion.
    None,
    /// The jump hosts, in connection order.
    Hops(Vec<HopSpec>),
}

/// One host's resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// The host as typed (`%n`).
    pub original_host: String,
    /// `HostName` (tokens expanded), or the host as typed.
    pub host_name: String,
    /// User, after command-line override and default.
    pub user: String,
    /// Port, after command-line override and default (22).
    pub port: u16,
}

/// Parsed ssh_config files.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {}

#[allow(dead_code)]
fn _unused(_: &Path, _: BTreeMap<(), ()>, _: Duration) {}
