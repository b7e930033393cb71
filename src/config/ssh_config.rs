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
    /// Identity files: configured ones, or OpenSSH's defaults.
    pub identity_files: Vec<IdentityFile>,
    /// `ProxyJump`, if set.
    pub proxy_jump: Option<ProxyJump>,
    /// `ProxyCommand`, if set (and not `none`).
    pub proxy_command: Option<String>,
    /// `ConnectTimeout`.
    pub connect_timeout: Option<Duration>,
    /// `UserKnownHostsFile`.
    pub user_known_hosts_files: Vec<PathBuf>,
    /// `GlobalKnownHostsFile`.
    pub global_known_hosts_files: Vec<PathBuf>,
    /// `StrictHostKeyChecking`.
    pub strict_host_key_checking: StrictHostKeyChecking,
    /// `HostKeyAlias`.
    pub host_key_alias: Option<String>,
    /// `ServerAliveInterval` (None = off).
    pub server_alive_interval: Option<Duration>,
    /// `ServerAliveCountMax`.
    pub server_alive_count_max: u32,
    /// `IdentitiesOnly`.
    pub identities_only: bool,
    /// `IdentityAgent`.
    pub identity_agent: Option<String>,
    /// Where each value came from.
    pub origins: BTreeMap<String, Origin>,
}

/// One identity file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFile {
    /// Path, expanded.
    pub path: PathBuf,
    /// Set in the config (not a default).
    pub explicit: bool,
}

impl HostConfig {
    /// The name OpenSSH looks up in known_hosts.
    pub fn known_hosts_name(&self) -> String {
        let name = self.host_key_alias.as_deref().unwrap_or(&self.host_name);
        if self.port == 22 {
            name.to_string()
        } else {
            format!("[{name}]:{}", self.port)
        }
    }
}

/// Parsed ssh_config files.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {}

impl SshConfig {
    /// No config (`-F none`).
    pub fn empty() -> Self {
        SshConfig {}
    }
    /// Stub.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let _ = path;
        Ok(SshConfig {})
    }
    /// Stub.
    pub fn load_default(home: &Path) -> Result<Self, ConfigError> {
        let _ = home;
        Ok(SshConfig {})
    }
    /// Stub.
    pub fn resolve(&self, query: &HostQuery, env: &LocalEnv) -> Result<HostConfig, ConfigError> {
        Ok(HostConfig {
            original_host: query.host.clone(),
            host_name: query.host.clone(),
            user: query.user.clone().unwrap_or_else(|| env.local_user.clone()),
            port: query.port.unwrap_or(22),
            identity_files: vec![],
            proxy_jump: None,
            proxy_command: None,
            connect_timeout: None,
            user_known_hosts_files: vec![env.home.join(".ssh/known_hosts")],
            global_known_hosts_files: vec![],
            strict_host_key_checking: StrictHostKeyChecking::Ask,
            host_key_alias: None,
            server_alive_interval: None,
            server_alive_count_max: 3,
            identities_only: false,
            identity_agent: None,
            origins: BTreeMap::new(),
        })
    }
}
