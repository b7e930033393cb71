//! OpenSSH client configuration: `ssh_config` resolution and `known_hosts` matching.
//!
//! [`ssh_config`] turns config files into a resolved [`HostConfig`] per host, with OpenSSH's
//! semantics (first value wins, `%` tokens, `ProxyJump` parsing) and the file and line that
//! set each value. [`known_hosts`] decides whether a server's host key is known, changed,
//! revoked or unknown. Both are pure: they take text and return values; reading files is a
//! thin wrapper. `keyword` is the table of the ssh_config keywords read (one entry each),
//! [`status`] the status of every other keyword OpenSSH knows;
//! [`algorithms`] the algorithm lists (`Ciphers`, ...: syntax and OpenSSH's defaults);
//! `pattern` is OpenSSH's `match.c`, shared by both; `address` rewrites a numeric HostName as
//! ssh does; [`canonical`] is `CanonicalizeHostname` (pure, over a [`NameResolver`]);
//! [`connection`] holds the values of `IPQoS`, `RekeyLimit` and `PreferredAuthentications`.

mod address;
pub mod algorithms;
pub mod canonical;
pub mod connection;
pub mod forward;
#[cfg(test)]
mod fuzz;
mod glob;
pub(crate) mod jump;
mod keyword;
pub mod known_hosts;
mod lexer;
mod pattern;
pub mod ssh_config;
pub mod status;
mod tokens;

pub use algorithms::{AlgorithmList, Algorithms};
pub use canonical::{Canonicalization, Canonicalize, NameResolver, PermittedCname, Resolver};
pub use keyword::{
    AddressFamily, DEFAULT_PASSWORD_PROMPTS, DEFAULT_REQUIRED_RSA_SIZE, HostConfig, IdentityFile,
    IpQos, Keyword, ProxyJump, RekeyLimit, StrictHostKeyChecking, Tos,
};
pub use ssh_config::{
    Allowance, ConfigError, HostQuery, LocalEnv, Origin, SYSTEM_CONFIG, SeenKeyword, SshConfig,
};
pub use status::Status;
