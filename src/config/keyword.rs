//! The ssh_config keywords pgtunnel reads: one `keywords!` entry per keyword.
//!
//! An entry names the keyword (canonical name first, then aliases), the function that parses
//! its arguments and the type it yields, the function that applies a parsed value to the
//! [`Options`] being gathered (`first`: first value wins, as OpenSSH does; others for the
//! keywords with quirks) and the slot it fills. An entry whose value reaches [`HostConfig`]
//! as is (with a default) declares the field after `=>`; the others are derived in
//! `ssh_config::finish` (token expansion, defaults that depend on other values). `show`
//! gives the value `pgtunnel explain` prints for it (the row is named after the keyword and
//! shows where the value came from); explain words a few rows itself (host name, port, user,
//! transport, identity files, host key name).
//!
//! From the table the macro generates [`Keyword`] (with [`Keyword::ALL`], names and the name
//! lookup), `Setting` (a parsed line), [`Options`] (a slot per keyword, with the line that
//! filled it), `Options::apply`, `Options::origins` and the resolved fields of [`HostConfig`].
//!
//! Adding a keyword: one entry here, its parser below if none fits, and tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::algorithms::{AlgorithmList, Algorithms};
use super::canonical::{Canonicalization, Canonicalize, PermittedCname, valid_domain};
pub use super::connection::{IpQos, RekeyLimit, Tos};
use super::connection::{RekeyLine, parse_rekey_limit, parse_tos, preferred_unusable};
use super::forward::{ConfiguredForward, parse_forward_line};
use super::jump::{Jump, parse_proxy_jump};
use super::lexer::{a2port, convtime, raw_value};
use super::ssh_config::{ConfigError, Origin, SeenKeyword};
use crate::spec::HopSpec;

/// OpenSSH's `RequiredRSASize` default (`SSH_RSA_MINIMUM_MODULUS_SIZE`).
pub const DEFAULT_REQUIRED_RSA_SIZE: u32 = 1024;
/// OpenSSH's `NumberOfPasswordPrompts` default.
pub const DEFAULT_PASSWORD_PROMPTS: u32 = 3;
/// OpenSSH's `SSH_MAX_IDENTITY_FILES` and `SSH_MAX_CERTIFICATE_FILES`.
const MAX_KEY_FILES: usize = 100;

macro_rules! keywords {
    (
        $(#[$hc_meta:meta])*
        pub struct HostConfig {
            $( $(#[$hf_meta:meta])* pub $hf:ident: $hf_ty:ty, )*
        }
        $(#[$o_meta:meta])*
        pub(crate) struct Options {
            $( $(#[$of_meta:meta])* $of:ident: $of_ty:ty, )*
        }
        $(
            $(#[$meta:meta])*
            $kw:ident [$($name:literal),+]
                $parse:ident -> $parsed:ty,
                $apply:ident -> $field:ident: $slot:ty
                $(=> $(#[$out_meta:meta])* $out:ident: $out_ty:ty = $resolve:expr)?
                $(, show $show:expr)?;
        )*
    ) => {
        /// An ssh_config keyword that sets a value (its aliases map to it).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Keyword {
            $( $(#[$meta])* $kw, )*
        }

        impl Keyword {
            /// Every keyword, in table order (the order `pgtunnel explain` shows them in).
            pub const ALL: &'static [Keyword] = &[$(Keyword::$kw),*];

            /// The name as the manual writes it (`HostName`).
            pub fn display_name(self) -> &'static str {
                match self {
                    $( Keyword::$kw => stringify!($kw), )*
                }
            }

            /// Every name, lowercase: the canonical one, then the aliases.
            pub fn names(self) -> &'static [&'static str] {
                match self {
                    $( Keyword::$kw => &[$($name),+], )*
                }
            }

            /// The canonical name, lowercase (as `ssh -G` prints it).
            pub fn name(self) -> &'static str {
                match self {
                    $( Keyword::$kw => [$($name),+][0], )*
                }
            }

            /// The keyword named `name` (lowercase), aliases included.
            pub(crate) fn from_lowercase(name: &str) -> Option<Keyword> {
                match name {
                    $( $($name)|+ => Some(Keyword::$kw), )*
                    _ => None,
                }
            }

            /// Parses one line's arguments.
            pub(crate) fn parse(self, args: &Args<'_>) -> Result<Setting, String> {
                match self {
                    $( Keyword::$kw => $parse(args).map(Setting::$kw), )*
                }
            }

            /// The value `pgtunnel explain` shows for this keyword, if it shows one in its
            /// generic form (a row named after the keyword, with the value's origin).
            pub fn explain_value(self, c: &HostConfig) -> Option<String> {
                match self {
                    $( Keyword::$kw => {
                        let _ = c;
                        Option::<String>::None $( .or(($show)(c)) )?
                    } )*
                }
            }
        }

        /// One parsed setting line.
        #[derive(Debug, Clone)]
        pub(crate) enum Setting {
            $( $kw($parsed), )*
        }

        $(#[$o_meta])*
        #[derive(Debug, Default)]
        pub(crate) struct Options {
            $( pub(crate) $field: $slot, )*
            $( $(#[$of_meta])* pub(crate) $of: $of_ty, )*
        }

        impl Options {
            /// Applies one line that is in effect.
            pub(crate) fn apply(&mut self, setting: &Setting, at: &At<'_>) -> Result<(), ConfigError> {
                match setting {
                    $( Setting::$kw(v) => $apply(self, |o: &mut Options| &mut o.$field, v, at), )*
                }
            }

            /// Where each value set from a file came from.
            pub(crate) fn origins(&self) -> BTreeMap<Keyword, Origin> {
                let mut out = BTreeMap::new();
                $(
                    if let Some(origin) = Slot::origin(&self.$field) {
                        out.insert(Keyword::$kw, origin.clone());
                    }
                )*
                out
            }
        }

        $(#[$hc_meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct HostConfig {
            $( $(#[$hf_meta])* pub $hf: $hf_ty, )*
            $( $( $(#[$out_meta])* pub $out: $out_ty, )? )*
        }

        /// The [`HostConfig`] fields `finish` derives by hand.
        pub(crate) struct Derived {
            $( pub(crate) $hf: $hf_ty, )*
        }

        impl HostConfig {
            /// The derived fields, and the others from their slots (or their defaults).
            pub(crate) fn build(o: &Options, d: Derived) -> HostConfig {
                HostConfig {
                    $( $hf: d.$hf, )*
                    $( $( $out: ($resolve)(&o.$field), )? )*
                }
            }
        }
    };
}

keywords! {
    /// One host's resolved configuration.
    pub struct HostConfig {
        /// The host as typed (`%n`).
        pub original_host: String,
        /// `HostName` (tokens expanded), or the host as typed; lowercased like OpenSSH does.
        pub host_name: String,
        /// User, after command-line override and default.
        pub user: String,
        /// Port, after command-line override and default (22).
        pub port: u16,
        /// Identity files: configured ones (`IdentityFile none` removed), or OpenSSH's defaults.
        pub identity_files: Vec<IdentityFile>,
        /// `CertificateFile`s, expanded.
        pub certificate_files: Vec<PathBuf>,
        /// `ProxyJump`, if set.
        pub proxy_jump: Option<ProxyJump>,
        /// `ProxyCommand` as written (like `ssh -G`), if set and not `none`; see
        /// [`HostConfig::expanded_proxy_command`].
        pub proxy_command: Option<String>,
        /// `UserKnownHostsFile` (empty for `none`).
        pub user_known_hosts_files: Vec<PathBuf>,
        /// `GlobalKnownHostsFile` (empty for `none`).
        pub global_known_hosts_files: Vec<PathBuf>,
        /// `HostKeyAlias`, lowercased.
        pub host_key_alias: Option<String>,
        /// `IdentityAgent`: a socket path, `none` or `SSH_AUTH_SOCK`.
        pub identity_agent: Option<String>,
        /// Where each value came from: keyword (`IdentityFile` for the first identity file,
        /// ...) to the line that set it. Command-line values and defaults have no entry.
        pub origins: BTreeMap<Keyword, Origin>,
        /// The algorithm lists (`Ciphers`, `MACs`, `KexAlgorithms`, `HostKeyAlgorithms`,
        /// `PubkeyAcceptedAlgorithms`, `CASignatureAlgorithms`), resolved as `ssh` does.
        pub algorithms: Algorithms,
        /// The keywords outside the `keywords!` table seen in blocks that apply (the first
        /// line of each), and unknown ones `IgnoreUnknown` let through, in reading order.
        pub other_keywords: Vec<SeenKeyword>,
        /// What `CanonicalizeHostname` (or a CNAME rule) did to `host_name`.
        pub canonicalization: Canonicalization,
        /// `LocalForward`: every line in effect, in `ssh`'s order (they accumulate across
        /// blocks and files; a line equal to an earlier one, as written, is dropped, as
        /// `add_local_forward()` does), each with its line; `%` tokens expanded in socket
        /// paths. Kept as configured when `ClearAllForwardings yes` drops them: what `ssh`
        /// opens, with the command line's `-L`, is [`HostConfig::effective_local_forwards`].
        pub local_forwards: Vec<ConfiguredForward>,
    }

    /// OpenSSH's `Options` while reading: an empty slot is "not set yet".
    pub(crate) struct Options {
        /// `host_name` is the final, expanded name (after a `Match final` pass).
        host_name_final: bool,
        /// A `Match final` was seen: evaluate again with the final host name.
        want_final: bool,
        /// The first line of each other keyword in effect (see [`HostConfig::other_keywords`]).
        other_keywords: Vec<SeenKeyword>,
    }

    /// `HostName`.
    HostName ["hostname"] one -> String, first -> host_name: First<String>;
    /// `Port`.
    Port ["port"] port -> u16, first -> port: First<u16>;
    /// `User`.
    User ["user"] one -> String, first -> user: First<String>;
    /// `ProxyCommand` (kept as written). Also set to `none` by a `ProxyJump` with hosts.
    ProxyCommand ["proxycommand"] command -> String, first -> proxy_command: First<String>;
    /// `ProxyJump`: whichever of it and `ProxyCommand` applies first wins.
    ProxyJump ["proxyjump"] jump -> Jump, proxy_jump -> proxy_jump: First<Jump>,
        show show_proxy_jump;
    /// `IdentityFile`: accumulates (duplicates dropped).
    IdentityFile ["identityfile", "identityfile2"] one -> String,
        identity_file -> identity_files: Vec<KeyFile>;
    /// `CertificateFile`: accumulates (duplicates dropped).
    CertificateFile ["certificatefile"] one -> String,
        certificate_file -> certificate_files: Vec<KeyFile>,
        show show_certificate_files;
    /// `IdentitiesOnly`.
    IdentitiesOnly ["identitiesonly"] flag -> bool, first -> identities_only: First<bool>
        => /// `IdentitiesOnly`.
           identities_only: bool = value_or(false),
        show |c: &HostConfig| Some(yes_no(c.identities_only));
    /// `IdentityAgent`.
    IdentityAgent ["identityagent"] agent -> String, first -> identity_agent: First<String>,
        show |c: &HostConfig| Some(c.identity_agent.clone().unwrap_or_else(|| "SSH_AUTH_SOCK".into()));
    /// `UserKnownHostsFile`: one list, set by the first line that applies.
    UserKnownHostsFile ["userknownhostsfile"] list -> Option<Vec<String>>,
        first_set -> user_known_hosts: First<Vec<String>>,
        show |c: &HostConfig| Some(paths(&c.user_known_hosts_files));
    /// `GlobalKnownHostsFile`: one list, set by the first line that applies.
    GlobalKnownHostsFile ["globalknownhostsfile"] list -> Option<Vec<String>>,
        first_set -> global_known_hosts: First<Vec<String>>,
        show |c: &HostConfig| Some(paths(&c.global_known_hosts_files));
    /// `HostKeyAlias`.
    HostKeyAlias ["hostkeyalias"] one -> String, first -> host_key_alias: First<String>;
    /// `StrictHostKeyChecking`.
    StrictHostKeyChecking ["stricthostkeychecking"] strict -> StrictHostKeyChecking,
        first -> strict_host_key_checking: First<StrictHostKeyChecking>
        => /// `StrictHostKeyChecking`.
           strict_host_key_checking: StrictHostKeyChecking = value_or(StrictHostKeyChecking::Ask),
        show show_strict_host_key_checking;
    /// `BatchMode`.
    BatchMode ["batchmode"] flag -> bool, first -> batch_mode: First<bool>
        => /// `BatchMode`: never ask anything (an unknown host key under `ask` is refused; no
           /// passphrase, password or keyboard-interactive questions).
           batch_mode: bool = value_or(false),
        show show_batch_mode;
    /// `NumberOfPasswordPrompts`.
    NumberOfPasswordPrompts ["numberofpasswordprompts"] int -> u32,
        first -> number_of_password_prompts: First<u32>
        => /// `NumberOfPasswordPrompts` (default 3): passphrase questions per key, password
           /// attempts and keyboard-interactive attempts.
           number_of_password_prompts: u32 = value_or(DEFAULT_PASSWORD_PROMPTS),
        show |c: &HostConfig| Some(c.number_of_password_prompts.to_string());
    /// `ServerAliveInterval` (`none` leaves it unset).
    ServerAliveInterval ["serveraliveinterval"] time -> Option<u32>,
        first_set -> server_alive_interval: First<u32>
        => /// `ServerAliveInterval`: `None` when not set (pgtunnel's default keepalive
           /// applies), `Some(Duration::ZERO)` for `ServerAliveInterval 0` (off, as in ssh).
           server_alive_interval: Option<Duration> = seconds_as_set,
        show show_server_alive_interval;
    /// `ServerAliveCountMax`.
    ServerAliveCountMax ["serveralivecountmax"] int -> u32,
        first -> server_alive_count_max: First<u32>
        => /// `ServerAliveCountMax`.
           server_alive_count_max: u32 = value_or(3),
        show |c: &HostConfig| Some(c.server_alive_count_max.to_string());
    /// `ConnectTimeout` (`none` leaves it unset).
    ConnectTimeout ["connecttimeout"] time -> Option<u32>, first_set -> connect_timeout: First<u32>
        => /// `ConnectTimeout` (`None`: not set; `Some(Duration::ZERO)` for
           /// `ConnectTimeout 0`: no time limit, as in ssh, where 0 is `timeout_connect`'s and
           /// `kex_exchange_identification`'s "wait for ever").
           connect_timeout: Option<Duration> = seconds_as_set,
        show show_connect_timeout;
    /// `AddressFamily`.
    AddressFamily ["addressfamily"] address_family -> AddressFamily,
        first -> address_family: First<AddressFamily>
        => /// `AddressFamily`: which addresses of `HostName` a TCP connection may use.
           address_family: AddressFamily = value_or(AddressFamily::Any),
        show |c: &HostConfig| c.address_family.configured().map(str::to_string);
    /// `HashKnownHosts`.
    HashKnownHosts ["hashknownhosts"] flag -> bool, first -> hash_known_hosts: First<bool>
        => /// `HashKnownHosts`.
           hash_known_hosts: bool = value_or(false);
    /// `PubkeyAuthentication`.
    PubkeyAuthentication ["pubkeyauthentication", "dsaauthentication"] pubkey -> bool,
        first -> pubkey_authentication: First<bool>
        => /// `PubkeyAuthentication` (`unbound` and `host-bound` count as yes).
           pubkey_authentication: bool = value_or(true);
    /// `PasswordAuthentication`.
    PasswordAuthentication ["passwordauthentication"] flag -> bool,
        first -> password_authentication: First<bool>
        => /// `PasswordAuthentication`.
           password_authentication: bool = value_or(true);
    /// `KbdInteractiveAuthentication` and its aliases.
    KbdInteractiveAuthentication [
        "kbdinteractiveauthentication",
        "challengeresponseauthentication",
        "skeyauthentication",
        "tisauthentication"
    ] flag -> bool, first -> kbd_interactive_authentication: First<bool>
        => /// `KbdInteractiveAuthentication` (or its alias `ChallengeResponseAuthentication`).
           kbd_interactive_authentication: bool = value_or(true);
    /// `TCPKeepAlive` (and its obsolete alias `KeepAlive`): `SO_KEEPALIVE` on hop 1's TCP
    /// connection.
    TCPKeepAlive ["tcpkeepalive", "keepalive"] flag -> bool, first -> tcp_keep_alive: First<bool>
        => /// `TCPKeepAlive` (default yes): `SO_KEEPALIVE` on a direct TCP connection.
           tcp_keep_alive: bool = value_or(true);
    /// `Ciphers`.
    Ciphers ["ciphers"] ciphers -> String, first -> ciphers: First<String>,
        show |c: &HostConfig| c.algorithms.shown(AlgorithmList::Ciphers);
    /// `MACs`.
    MACs ["macs"] macs -> String, first -> macs: First<String>,
        show |c: &HostConfig| c.algorithms.shown(AlgorithmList::Macs);
    /// `KexAlgorithms`.
    KexAlgorithms ["kexalgorithms"] kex_algorithms -> String,
        first -> kex_algorithms: First<String>,
        show |c: &HostConfig| c.algorithms.shown(AlgorithmList::KexAlgorithms);
    /// `HostKeyAlgorithms`.
    HostKeyAlgorithms ["hostkeyalgorithms"] host_key_algorithms -> String,
        first -> host_key_algorithms: First<String>,
        show |c: &HostConfig| c.algorithms.shown(AlgorithmList::HostKeyAlgorithms);
    /// `PubkeyAcceptedAlgorithms` (and its old name `PubkeyAcceptedKeyTypes`).
    PubkeyAcceptedAlgorithms ["pubkeyacceptedalgorithms", "pubkeyacceptedkeytypes"]
        pubkey_accepted_algorithms -> String,
        first -> pubkey_accepted_algorithms: First<String>,
        show |c: &HostConfig| c.algorithms.shown(AlgorithmList::PubkeyAcceptedAlgorithms);
    /// `CASignatureAlgorithms`.
    CASignatureAlgorithms ["casignaturealgorithms"] ca_signature_algorithms -> String,
        first -> ca_signature_algorithms: First<String>,
        show |c: &HostConfig| c.algorithms.shown(AlgorithmList::CaSignatureAlgorithms);
    /// `Compression` (`yes` or `no`).
    Compression ["compression"] compression -> bool, first -> compression: First<bool>
        => /// `Compression`: offer `zlib@openssh.com` first (`yes`) or last (`no`, the default),
           /// as `ssh`'s `compression_alg_list()`.
           compression: bool = value_or(false),
        show |c: &HostConfig| c.compression.then(|| "yes (zlib@openssh.com, after authentication)".to_string());
    /// `RequiredRSASize`.
    RequiredRSASize ["requiredrsasize"] int -> u32, first -> required_rsa_size: First<u32>
        => /// `RequiredRSASize` (default 1024): RSA host keys and identities smaller than this
           /// many bits are refused.
           required_rsa_size: u32 = value_or(DEFAULT_REQUIRED_RSA_SIZE),
        show |c: &HostConfig| (c.required_rsa_size != DEFAULT_REQUIRED_RSA_SIZE).then(|| format!("{} bits", c.required_rsa_size));
    /// `CanonicalizeHostname`.
    CanonicalizeHostname ["canonicalizehostname"] canonicalize -> Canonicalize,
        first -> canonicalize_hostname: First<Canonicalize>
        => /// `CanonicalizeHostname` (default `no`).
           canonicalize_hostname: Canonicalize = value_or(Canonicalize::No),
        show show_canonicalize_hostname;
    /// `CanonicalDomains`: the suffixes canonicalization tries.
    CanonicalDomains ["canonicaldomains"] domains -> Vec<String>,
        first -> canonical_domains: First<Vec<String>>
        => /// `CanonicalDomains`, lowercased (empty: not set).
           canonical_domains: Vec<String> = value_or(Vec::new()),
        show |c: &HostConfig| set(c, Keyword::CanonicalDomains).then(|| c.canonical_domains.join(" "));
    /// `CanonicalizeMaxDots`.
    CanonicalizeMaxDots ["canonicalizemaxdots"] int -> u32,
        first -> canonicalize_max_dots: First<u32>
        => /// `CanonicalizeMaxDots` (default 1).
           canonicalize_max_dots: u32 = value_or(1),
        show |c: &HostConfig| set(c, Keyword::CanonicalizeMaxDots).then(|| c.canonicalize_max_dots.to_string());
    /// `CanonicalizeFallbackLocal`.
    CanonicalizeFallbackLocal ["canonicalizefallbacklocal"] flag -> bool,
        first -> canonicalize_fallback_local: First<bool>
        => /// `CanonicalizeFallbackLocal` (default yes).
           canonicalize_fallback_local: bool = value_or(true),
        show |c: &HostConfig| set(c, Keyword::CanonicalizeFallbackLocal).then(|| yes_no(c.canonicalize_fallback_local));
    /// `CanonicalizePermittedCNAMEs`.
    CanonicalizePermittedCNAMEs ["canonicalizepermittedcnames"] cnames -> Vec<PermittedCname>,
        first -> canonicalize_permitted_cnames: First<Vec<PermittedCname>>
        => /// `CanonicalizePermittedCNAMEs` (empty: not set, or `none`).
           canonicalize_permitted_cnames: Vec<PermittedCname> = permitted_cnames,
        show show_permitted_cnames;
    /// `BindAddress`: the local address of hop 1's TCP connection.
    BindAddress ["bindaddress"] one -> String, first -> bind_address: First<String>
        => /// `BindAddress`: the local address (or name) hop 1's TCP connection is made
           /// from; it wins over `BindInterface`, as in ssh.
           bind_address: Option<String> = value_opt,
        show |c: &HostConfig| c.bind_address.clone();
    /// `BindInterface`: hop 1's TCP connection is made from this interface's address.
    BindInterface ["bindinterface"] one -> String, first -> bind_interface: First<String>
        => /// `BindInterface`: the interface whose address (of the destination's family)
           /// hop 1's TCP connection is made from, unless `BindAddress` is set.
           bind_interface: Option<String> = value_opt,
        show |c: &HostConfig| c.bind_interface.clone();
    /// `ConnectionAttempts` (0 is refused when it applies, as ssh refuses it).
    ConnectionAttempts ["connectionattempts"] int -> u32,
        connection_attempts -> connection_attempts: First<u32>
        => /// `ConnectionAttempts` (default 1): TCP connection attempts, one second apart.
           connection_attempts: u32 = value_or(1),
        show |c: &HostConfig| (c.connection_attempts != 1).then(|| c.connection_attempts.to_string());
    /// `IPQoS interactive [bulk]`.
    IPQoS ["ipqos"] ipqos -> IpQos, first -> ip_qos: First<IpQos>
        => /// `IPQoS` (default `af21 cs1`, OpenSSH 9.2's): hop 1's TCP socket is marked with
           /// the interactive value, as `ssh -N` marks its connection.
           ip_qos: IpQos = value_or(IpQos::DEFAULT),
        show show_ip_qos;
    /// `RekeyLimit data [time]`: the data limit and the time limit are each first-value-wins.
    RekeyLimit ["rekeylimit"] rekey -> RekeyLine, rekey_limit -> rekey_limit: RekeySlot
        => /// `RekeyLimit` (`0 0` when unset: russh's own limits apply).
           rekey_limit: RekeyLimit = RekeySlot::resolve,
        show show_rekey_limit;
    /// `PreferredAuthentications`: a list naming none of the methods pgtunnel implements is
    /// refused when it applies.
    PreferredAuthentications ["preferredauthentications"] one -> String,
        preferred_authentications -> preferred_authentications: First<String>
        => /// `PreferredAuthentications`: the methods in the user's order (`None`: ssh's
           /// default order, publickey, keyboard-interactive, password).
           preferred_authentications: Option<Vec<String>> = preferred_list,
        show |c: &HostConfig| c.preferred_authentications.as_ref().map(|l| l.join(","));
    /// `LocalForward LISTEN TARGET`: accumulates (duplicates dropped); checked, `${VAR}`
    /// expanded, in every block, as ssh reads it.
    LocalForward ["localforward"] forward_args -> ForwardArgs,
        local_forward -> local_forwards: Vec<ConfiguredForward>;
    /// `GatewayPorts`: where a forward without a bind address listens.
    GatewayPorts ["gatewayports"] flag -> bool, first -> gateway_ports: First<bool>
        => /// `GatewayPorts` (default no): a forward without a bind address listens on every
           /// address (`yes`) or on loopback (see [`crate::config::forward::bind_plan`]).
           gateway_ports: bool = value_or(false),
        show show_gateway_ports;
    /// `ExitOnForwardFailure`.
    ExitOnForwardFailure ["exitonforwardfailure"] flag -> bool,
        first -> exit_on_forward_failure: First<bool>
        => /// `ExitOnForwardFailure` (default no): stop when a forward cannot be set up
           /// (ssh: when a local forward cannot listen), instead of going on without it.
           exit_on_forward_failure: bool = value_or(false),
        show |c: &HostConfig| forwarding_shown(c, Keyword::ExitOnForwardFailure).then(|| {
            if c.exit_on_forward_failure {
                "yes (stop when a forward cannot listen)".to_string()
            } else {
                "no (a forward that cannot listen is left out)".to_string()
            }
        });
    /// `StreamLocalBindMask`: the mode mask of a local forward's Unix socket.
    /// Unlike every other keyword, the last line read wins, in any block
    /// (`Setting::applies_when_inactive`), as in OpenSSH 9.2.
    StreamLocalBindMask ["streamlocalbindmask"] octal_mask -> u32,
        last -> stream_local_bind_mask: First<u32>
        => /// `StreamLocalBindMask` (default 0177, a socket file 0600): the mask applied to
           /// the mode of a local forward's Unix socket (`-L /path:host:port`); the last
           /// line of the files read, wherever it is.
           stream_local_bind_mask: u32 = value_or(0o177),
        show |c: &HostConfig| forwarding_shown(c, Keyword::StreamLocalBindMask)
            .then(|| format!("0{:o}", c.stream_local_bind_mask));
    /// `StreamLocalBindUnlink`: remove an existing local socket file before listening.
    StreamLocalBindUnlink ["streamlocalbindunlink"] flag -> bool,
        first -> stream_local_bind_unlink: First<bool>
        => /// `StreamLocalBindUnlink` (default no): a local forward's socket path that
           /// exists is removed first (`yes`) or the forward fails (`no`).
           stream_local_bind_unlink: bool = value_or(false),
        show |c: &HostConfig| forwarding_shown(c, Keyword::StreamLocalBindUnlink)
            .then(|| if c.stream_local_bind_unlink { "yes" } else { "no" }.to_string());
    /// `ClearAllForwardings`.
    ClearAllForwardings ["clearallforwardings"] flag -> bool,
        first -> clear_all_forwardings: First<bool>
        => /// `ClearAllForwardings` (default no): with `yes`, no forward is opened, neither
           /// `LocalForward` nor the command line's `-L` (see
           /// [`HostConfig::effective_local_forwards`]).
           clear_all_forwardings: bool = value_or(false),
        show |c: &HostConfig| forwarding_shown(c, Keyword::ClearAllForwardings).then(|| {
            if c.clear_all_forwardings {
                "yes (no forward is opened, not even -L)".to_string()
            } else {
                "no".to_string()
            }
        });
    /// `IgnoreUnknown`: a pattern list of unknown keywords not to refuse on later lines
    /// (first value wins, only in a block that applies, as in OpenSSH).
    IgnoreUnknown ["ignoreunknown"] one -> String, first -> ignore_unknown: First<String>;
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

/// `AddressFamily`: which of a host name's addresses a TCP connection may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressFamily {
    /// `any` (the default): IPv4 and IPv6.
    #[default]
    Any,
    /// `inet`: IPv4 only.
    Inet,
    /// `inet6`: IPv6 only.
    Inet6,
}

impl AddressFamily {
    /// The value as written in ssh_config (and printed by `ssh -G`).
    pub fn as_str(self) -> &'static str {
        match self {
            AddressFamily::Any => "any",
            AddressFamily::Inet => "inet",
            AddressFamily::Inet6 => "inet6",
        }
    }

    /// The name unless it is the default, `any`.
    fn configured(self) -> Option<&'static str> {
        (self != AddressFamily::Any).then_some(self.as_str())
    }

    /// Whether a connection to `addr` is allowed.
    pub fn accepts(self, addr: &SocketAddr) -> bool {
        match self {
            AddressFamily::Any => true,
            AddressFamily::Inet => addr.is_ipv4(),
            AddressFamily::Inet6 => addr.is_ipv6(),
        }
    }

    /// The addresses `host` resolved to that this family allows, in order; none is an error
    /// like `ssh`'s (`getaddrinfo` refusing the name for that family).
    pub fn filter(
        self,
        host: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> std::io::Result<Vec<SocketAddr>> {
        let kept: Vec<SocketAddr> = addrs.into_iter().filter(|a| self.accepts(a)).collect();
        if kept.is_empty() {
            let family = if self == AddressFamily::Inet6 {
                "IPv6"
            } else {
                "IPv4"
            };
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!(
                    "could not resolve hostname {host}: no {family} address (AddressFamily {})",
                    self.as_str()
                ),
            ));
        }
        Ok(kept)
    }
}

/// `ProxyJump` after token expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyJump {
    /// `ProxyJump none`: stop the expansion.
    None,
    /// The jump hosts, in connection order.
    Hops(Vec<HopSpec>),
}

/// One identity file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFile {
    /// Path, expanded.
    pub path: PathBuf,
    /// Set in the config (not a default).
    pub explicit: bool,
}

/// The slot of `RekeyLimit`: its data and time limits are set independently (OpenSSH keeps
/// `rekey_limit` and `rekey_interval` apart: `RekeyLimit 1G` then `RekeyLimit 2G 1h` gives
/// `1G 1h`).
#[derive(Debug, Clone, Default)]
pub(crate) struct RekeySlot {
    data: First<u64>,
    time: First<u32>,
}

impl RekeySlot {
    fn resolve(&self) -> RekeyLimit {
        RekeyLimit {
            data: self.data.get().copied().unwrap_or(0),
            time: self.time.get().copied().unwrap_or(0),
        }
    }
}

/// A value and the line that set it (`None`: command line or derived).
#[derive(Debug, Clone)]
pub(crate) struct Valued<T> {
    pub(crate) value: T,
    pub(crate) origin: Option<Origin>,
}

/// The slot of a first-value-wins keyword.
#[derive(Debug, Clone)]
pub(crate) struct First<T>(pub(crate) Option<Valued<T>>);

impl<T> Default for First<T> {
    fn default() -> Self {
        First(None)
    }
}

impl<T> First<T> {
    /// A value from the command line (no origin).
    pub(crate) fn command_line(value: T) -> Self {
        First(Some(Valued {
            value,
            origin: None,
        }))
    }

    /// The value, if set.
    pub(crate) fn get(&self) -> Option<&T> {
        self.0.as_ref().map(|v| &v.value)
    }
}

/// One key file line: as written, from a user config, where.
#[derive(Debug, Clone)]
pub(crate) struct KeyFile {
    pub(crate) raw: String,
    pub(crate) user_config: bool,
    pub(crate) origin: Origin,
}

/// A `LocalForward` line's arguments: checked (and `${VAR}` expanded) when the line is
/// evaluated, since that needs the environment.
#[derive(Debug, Clone)]
pub(crate) struct ForwardArgs {
    listen: String,
    target: String,
    /// More words followed (ssh reports it after checking the forward).
    extra: bool,
}

impl ForwardArgs {
    /// The forward, as `readconf.c` reads the line; its error names the line.
    fn forward(&self, at: &At<'_>) -> Result<ConfiguredForward, ConfigError> {
        let env = |name: &str| at.env.get(name).cloned();
        let line_error = |message: String| ConfigError::Line {
            file: at.origin.file.clone(),
            line: at.origin.line,
            message,
        };
        let forward = parse_forward_line(&self.listen, &self.target, &env).map_err(line_error)?;
        if self.extra {
            return Err(line_error(
                "keyword localforward: extra arguments at end of line".into(),
            ));
        }
        Ok(ConfiguredForward {
            forward: forward.clone(),
            origin: at.origin.clone(),
            written: forward,
        })
    }
}

impl Setting {
    /// Whether the line takes effect even in a block that does not apply: OpenSSH 9.2's
    /// `oStreamLocalBindMask` sets the mask without looking at `*activep`, so the last line
    /// of the files read wins, wherever it is.
    pub(crate) fn applies_when_inactive(&self) -> bool {
        matches!(self, Setting::StreamLocalBindMask(_))
    }

    /// Checks a line that does not apply, as OpenSSH checks it anyway (the values the
    /// parser could not check without the environment: `LocalForward`).
    pub(crate) fn check_unapplied(&self, at: &At<'_>) -> Result<(), ConfigError> {
        match self {
            Setting::LocalForward(args) => args.forward(at).map(drop),
            _ => Ok(()),
        }
    }
}

/// A slot's origin, for [`Options::origins`].
trait Slot {
    fn origin(&self) -> Option<&Origin>;
}

impl<T> Slot for First<T> {
    fn origin(&self) -> Option<&Origin> {
        self.0.as_ref().and_then(|v| v.origin.as_ref())
    }
}

/// The line that set the data limit (or else the time limit).
impl Slot for RekeySlot {
    fn origin(&self) -> Option<&Origin> {
        self.data.origin().or_else(|| self.time.origin())
    }
}

/// The first key file's line.
impl Slot for Vec<KeyFile> {
    fn origin(&self) -> Option<&Origin> {
        self.first().map(|f| &f.origin)
    }
}

/// The first forward's line.
impl Slot for Vec<ConfiguredForward> {
    fn origin(&self) -> Option<&Origin> {
        self.first().map(|f| &f.origin)
    }
}

/// Where a line in effect is: its origin, whether its file is a user configuration, and the
/// environment (`${VAR}` in `LocalForward`).
pub(crate) struct At<'a> {
    pub(crate) origin: &'a Origin,
    pub(crate) user_config: bool,
    pub(crate) env: &'a BTreeMap<String, String>,
}

/// One line's arguments: the keyword as written (lowercased), the raw rest of the line, and
/// the words `argv_split` made of it.
pub(crate) struct Args<'a> {
    pub(crate) name: &'a str,
    pub(crate) rest: &'a str,
    pub(crate) words: &'a [String],
}

// Appliers: `slot` picks the keyword's field out of the options.

/// First value wins.
fn first<T: Clone>(
    o: &mut Options,
    slot: impl FnOnce(&mut Options) -> &mut First<T>,
    value: &T,
    at: &At<'_>,
) -> Result<(), ConfigError> {
    let slot = slot(o);
    if slot.0.is_none() {
        slot.0 = Some(Valued {
            value: value.clone(),
            origin: Some(at.origin.clone()),
        });
    }
    Ok(())
}

/// First value wins; `None` (`none`, an empty list) leaves the option unset.
/// A value that every line replaces (`StreamLocalBindMask`).
fn last<T: Clone>(
    o: &mut Options,
    slot: impl FnOnce(&mut Options) -> &mut First<T>,
    value: &T,
    at: &At<'_>,
) -> Result<(), ConfigError> {
    slot(o).0 = Some(Valued {
        value: value.clone(),
        origin: Some(at.origin.clone()),
    });
    Ok(())
}

fn first_set<T: Clone>(
    o: &mut Options,
    slot: impl FnOnce(&mut Options) -> &mut First<T>,
    value: &Option<T>,
    at: &At<'_>,
) -> Result<(), ConfigError> {
    match value {
        Some(value) => first(o, slot, value, at),
        None => Ok(()),
    }
}

/// `ProxyJump` applies only if neither it nor `ProxyCommand` did; with hosts, it sets
/// `ProxyCommand none`, as OpenSSH does.
fn proxy_jump(
    o: &mut Options,
    slot: impl FnOnce(&mut Options) -> &mut First<Jump>,
    jump: &Jump,
    at: &At<'_>,
) -> Result<(), ConfigError> {
    if o.proxy_command.0.is_some() || o.proxy_jump.0.is_some() {
        return Ok(());
    }
    if matches!(jump, Jump::Hops(_)) {
        first(o, |o| &mut o.proxy_command, &"none".to_string(), at)?;
    }
    first(o, slot, jump, at)
}

/// First value wins; OpenSSH refuses `ConnectionAttempts 0` (`ssh.c`: "Invalid number of
/// ConnectionAttempts") once the options are read, i.e. when 0 is the value that applies.
fn connection_attempts(
    o: &mut Options,
    slot: impl FnOnce(&mut Options) -> &mut First<u32>,
    value: &u32,
    at: &At<'_>,
) -> Result<(), ConfigError> {
    let slot = slot(o);
    if slot.0.is_none() && *value == 0 {
        return Err(ConfigError::Line {
            file: at.origin.file.clone(),
            line: at.origin.line,
            message: "Invalid number of ConnectionAttempts".into(),
        });
    }
    if slot.0.is_none() {
        slot.0 = Some(Valued {
            value: *value,
            origin: Some(at.origin.clone()),
        });
    }
    Ok(())
}

/// The data and the time limit, each first value wins.
fn rekey_limit(
    o: &mut Options,
    slot: impl FnOnce(&mut Options) -> &mut RekeySlot,
    line: &RekeyLine,
    at: &At<'_>,
) -> Result<(), ConfigError> {
    let slot = slot(o);
    if slot.data.0.is_none() {
        slot.data.0 = Some(Valued {
            value: line.data,
            origin: Some(at.origin.clone()),
        });
    }
    if let Some(time) = line.time
        && slot.time.0.is_none()
    {
        slot.time.0 = Some(Valued {
            value: time,
            origin: Some(at.origin.clone()),
        });
    }
    Ok(())
}

/// First value wins; a list that names no method pgtunnel implements is refused when it is
/// the one that applies (`ssh` would use GSSAPI, host-based or nothing at all).
fn preferred_authentications(
    o: &mut Options,
    slot: impl FnOnce(&mut Options) -> &mut First<String>,
    value: &str,
    at: &At<'_>,
) -> Result<(), ConfigError> {
    let slot = slot(o);
    if slot.0.is_some() {
        return Ok(());
    }
    if let Some(reason) = preferred_unusable(value) {
        return Err(ConfigError::Unsupported {
            file: at.origin.file.clone(),
            line: at.origin.line,
            keyword: "PreferredAuthentications",
            reason,
        });
    }
    slot.0 = Some(Valued {
        value: value.to_string(),
        origin: Some(at.origin.clone()),
    });
    Ok(())
}

/// OpenSSH's `add_local_forward()`: a forward equal to an earlier one (as read) is dropped.
fn local_forward(
    o: &mut Options,
    slot: impl FnOnce(&mut Options) -> &mut Vec<ConfiguredForward>,
    args: &ForwardArgs,
    at: &At<'_>,
) -> Result<(), ConfigError> {
    let forward = args.forward(at)?;
    let list = slot(o);
    if !list.iter().any(|f| f.written == forward.written) {
        list.push(forward);
    }
    Ok(())
}

fn identity_file(
    o: &mut Options,
    slot: impl FnOnce(&mut Options) -> &mut Vec<KeyFile>,
    raw: &str,
    at: &At<'_>,
) -> Result<(), ConfigError> {
    add_key_file(slot(o), raw, at, "identity")
}

fn certificate_file(
    o: &mut Options,
    slot: impl FnOnce(&mut Options) -> &mut Vec<KeyFile>,
    raw: &str,
    at: &At<'_>,
) -> Result<(), ConfigError> {
    add_key_file(slot(o), raw, at, "certificate")
}

/// OpenSSH `add_identity_file` / `add_certificate_file`: duplicates (same text, same kind of
/// file) are dropped; at most 100.
fn add_key_file(
    files: &mut Vec<KeyFile>,
    raw: &str,
    at: &At<'_>,
    what: &str,
) -> Result<(), ConfigError> {
    if files.len() >= MAX_KEY_FILES {
        return Err(ConfigError::Line {
            file: at.origin.file.clone(),
            line: at.origin.line,
            message: format!("too many {what} files specified (max {MAX_KEY_FILES})"),
        });
    }
    if !files
        .iter()
        .any(|f| f.raw == raw && f.user_config == at.user_config)
    {
        files.push(KeyFile {
            raw: raw.to_string(),
            user_config: at.user_config,
            origin: at.origin.clone(),
        });
    }
    Ok(())
}

// Resolvers: a slot to its HostConfig value.

fn value_opt<T: Clone>(slot: &First<T>) -> Option<T> {
    slot.get().cloned()
}

/// `PreferredAuthentications` as its comma-separated names.
fn preferred_list(slot: &First<String>) -> Option<Vec<String>> {
    slot.get()
        .map(|list| list.split(',').map(str::to_string).collect())
}

fn value_or<T: Clone>(default: T) -> impl Fn(&First<T>) -> T {
    move |slot| slot.get().cloned().unwrap_or_else(|| default.clone())
}

/// `CanonicalizePermittedCNAMEs`; `none` (alone) is no rule, as `fill_default_options` leaves it.
pub(crate) fn permitted_cnames(slot: &First<Vec<PermittedCname>>) -> Vec<PermittedCname> {
    match slot.get() {
        Some(rules)
            if !(rules.len() == 1 && rules[0].source == "none" && rules[0].target.is_empty()) =>
        {
            rules.clone()
        }
        _ => Vec::new(),
    }
}

/// Seconds as set (0 included).
fn seconds_as_set(slot: &First<u32>) -> Option<Duration> {
    slot.get().map(|&s| Duration::from_secs(u64::from(s)))
}

// Parsers, after OpenSSH's `process_config_line`.

/// Exactly one non-empty argument.
fn one(a: &Args<'_>) -> Result<String, String> {
    match a.words {
        [] => Err(format!("{}: missing argument", a.name)),
        [w] if w.is_empty() => Err(format!("{}: missing argument", a.name)),
        [w] => Ok(w.clone()),
        _ => Err(format!(
            "keyword {}: extra arguments at end of line",
            a.name
        )),
    }
}

/// `LocalForward LISTEN TARGET` (`readconf.c`: "Missing argument.", "Missing target
/// argument."); the forward itself is read when the line is evaluated.
fn forward_args(a: &Args<'_>) -> Result<ForwardArgs, String> {
    match a.words {
        [] => Err(format!("{}: missing argument", a.name)),
        [listen, ..] if listen.is_empty() => Err(format!("{}: missing argument", a.name)),
        [_] => Err(format!("{}: missing target argument", a.name)),
        [_, target, ..] if target.is_empty() => Err(format!("{}: missing target argument", a.name)),
        [listen, target, rest @ ..] => Ok(ForwardArgs {
            listen: listen.clone(),
            target: target.clone(),
            extra: !rest.is_empty(),
        }),
    }
}

/// One of `choices` (ignoring case), or an error listing `expected`.
fn choice<T: Copy>(a: &Args<'_>, choices: &[(&str, T)], expected: &str) -> Result<T, String> {
    let w = one(a)?;
    let lower = w.to_ascii_lowercase();
    choices
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|&(_, v)| v)
        .ok_or_else(|| {
            format!(
                "{}: unsupported value \"{w}\" (expected {expected})",
                a.name
            )
        })
}

/// `oStreamLocalBindMask`: `strtol(arg, 8)` that reads a number from 0 to 0777 (what follows
/// the digits is not checked, as in OpenSSH).
fn octal_mask(a: &Args<'_>) -> Result<u32, String> {
    let w = one(a)?;
    let (negative, digits) = match w.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        rest => (false, rest),
    };
    let octal: Vec<u8> = digits
        .iter()
        .copied()
        .take_while(|c| (b'0'..=b'7').contains(c))
        .collect();
    let value = octal.iter().try_fold(0u32, |v, c| {
        v.checked_mul(8).map(|v| v + u32::from(c - b'0'))
    });
    match value {
        Some(v) if !octal.is_empty() && (v == 0 || !negative) && v <= 0o777 => Ok(v),
        _ => Err("Bad mask".into()),
    }
}

fn flag(a: &Args<'_>) -> Result<bool, String> {
    choice(
        a,
        &[
            ("yes", true),
            ("true", true),
            ("no", false),
            ("false", false),
        ],
        "yes or no",
    )
}

fn pubkey(a: &Args<'_>) -> Result<bool, String> {
    choice(
        a,
        &[
            ("yes", true),
            ("true", true),
            ("unbound", true),
            ("host-bound", true),
            ("no", false),
            ("false", false),
        ],
        "yes, no, unbound or host-bound",
    )
}

fn strict(a: &Args<'_>) -> Result<StrictHostKeyChecking, String> {
    use StrictHostKeyChecking as S;
    choice(
        a,
        &[
            ("yes", S::Yes),
            ("true", S::Yes),
            ("no", S::No),
            ("false", S::No),
            ("off", S::No),
            ("ask", S::Ask),
            ("accept-new", S::AcceptNew),
        ],
        "yes, accept-new, no, off or ask",
    )
}

/// OpenSSH's `multistate_addressfamily`.
fn address_family(a: &Args<'_>) -> Result<AddressFamily, String> {
    choice(
        a,
        &[
            ("inet", AddressFamily::Inet),
            ("inet6", AddressFamily::Inet6),
            ("any", AddressFamily::Any),
        ],
        "any, inet or inet6",
    )
}

/// OpenSSH's `multistate_compression`: `yes` (delayed zlib) or `no`.
fn compression(a: &Args<'_>) -> Result<bool, String> {
    choice(a, &[("yes", true), ("no", false)], "yes or no")
}

/// An algorithm list: one word, checked as `readconf.c` checks it (unknown names refused).
fn algorithm_list(a: &Args<'_>, list: AlgorithmList) -> Result<String, String> {
    let w = one(a)?;
    list.check(&w)?;
    Ok(w)
}

fn ciphers(a: &Args<'_>) -> Result<String, String> {
    algorithm_list(a, AlgorithmList::Ciphers)
}

fn macs(a: &Args<'_>) -> Result<String, String> {
    algorithm_list(a, AlgorithmList::Macs)
}

fn kex_algorithms(a: &Args<'_>) -> Result<String, String> {
    algorithm_list(a, AlgorithmList::KexAlgorithms)
}

fn host_key_algorithms(a: &Args<'_>) -> Result<String, String> {
    algorithm_list(a, AlgorithmList::HostKeyAlgorithms)
}

fn pubkey_accepted_algorithms(a: &Args<'_>) -> Result<String, String> {
    algorithm_list(a, AlgorithmList::PubkeyAcceptedAlgorithms)
}

fn ca_signature_algorithms(a: &Args<'_>) -> Result<String, String> {
    algorithm_list(a, AlgorithmList::CaSignatureAlgorithms)
}

/// OpenSSH's `multistate_canonicalizehostname`.
fn canonicalize(a: &Args<'_>) -> Result<Canonicalize, String> {
    choice(
        a,
        &[
            ("true", Canonicalize::Yes),
            ("false", Canonicalize::No),
            ("yes", Canonicalize::Yes),
            ("no", Canonicalize::No),
            ("always", Canonicalize::Always),
        ],
        "yes, no or always",
    )
}

/// `none` only alone (OpenSSH 9.2 checks this before anything else of the argument).
fn none_alone(a: &Args<'_>, i: usize, w: &str) -> Result<(), String> {
    if w.eq_ignore_ascii_case("none") && (i > 0 || a.words.len() > 1) {
        return Err(format!(
            "keyword {} \"none\" argument must appear alone.",
            a.name
        ));
    }
    Ok(())
}

/// `CanonicalDomains`: each a valid domain name, lowercased, its trailing dot dropped (kept
/// as a list: `none` stops canonicalization where it stands).
fn domains(a: &Args<'_>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, w) in a.words.iter().enumerate() {
        if w.is_empty() {
            return Err(format!("keyword {} empty argument", a.name));
        }
        none_alone(a, i, w)?;
        let lower = w.to_ascii_lowercase();
        out.push(valid_domain(&lower)?.to_string());
    }
    Ok(out)
}

/// `CanonicalizePermittedCNAMEs`: `none` (alone), `*`, or `source:target` (lowercased; at
/// the first `:`, which must have something after it).
fn cnames(a: &Args<'_>) -> Result<Vec<PermittedCname>, String> {
    let mut out = Vec::new();
    for (i, w) in a.words.iter().enumerate() {
        none_alone(a, i, w)?;
        let rule = if w.eq_ignore_ascii_case("none") {
            PermittedCname {
                source: w.clone(),
                target: String::new(),
            }
        } else if w == "*" {
            PermittedCname {
                source: "*".into(),
                target: "*".into(),
            }
        } else {
            let lower = w.to_ascii_lowercase();
            match lower.split_once(':') {
                Some((source, target)) if !target.is_empty() => PermittedCname {
                    source: source.to_string(),
                    target: target.to_string(),
                },
                _ => return Err(format!("Invalid permitted CNAME \"{lower}\"")),
            }
        };
        out.push(rule);
    }
    Ok(out)
}

/// OpenSSH 9.2's `IPQoS` parsing: one or two values (`parse_ipqos`), the second defaulting
/// to the first.
fn ipqos(a: &Args<'_>) -> Result<IpQos, String> {
    let bad = |w: &str| format!("Bad IPQoS value: {w}");
    let Some(first) = a.words.first() else {
        return Err(format!("{}: missing argument", a.name));
    };
    let interactive = parse_tos(first).ok_or_else(|| bad(first))?;
    let bulk = match a.words.get(1) {
        None => interactive,
        Some(w) => parse_tos(w).ok_or_else(|| bad(w))?,
    };
    if a.words.len() > 2 {
        return Err(format!(
            "keyword {}: extra arguments at end of line",
            a.name
        ));
    }
    Ok(IpQos { interactive, bulk })
}

fn rekey(a: &Args<'_>) -> Result<RekeyLine, String> {
    parse_rekey_limit(a.name, a.words, convtime)
}

/// A `convtime` value, or `None` for `none`.
fn time(a: &Args<'_>) -> Result<Option<u32>, String> {
    let w = one(a)?;
    if w == "none" {
        return Ok(None);
    }
    convtime(&w)
        .map(Some)
        .ok_or_else(|| format!("{}: invalid time value \"{w}\"", a.name))
}

/// OpenSSH's `parse_int` (`atoi_err`: `strtonum(nptr, 0, INT_MAX)`, i.e. base-10
/// `strtoll` read to the end): 0 to INT_MAX, a sign allowed (`+7`, `-0`).
fn int(a: &Args<'_>) -> Result<u32, String> {
    let w = one(a)?;
    let digits = w.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, digits) = match digits.as_bytes().first() {
        Some(b'-') => (true, &digits[1..]),
        Some(b'+') => (false, &digits[1..]),
        _ => (false, digits),
    };
    digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse::<u32>().ok())
        .flatten()
        .filter(|&n| n <= i32::MAX as u32 && (!negative || n == 0))
        .ok_or_else(|| format!("{}: integer value \"{w}\" is invalid", a.name))
}

fn port(a: &Args<'_>) -> Result<u16, String> {
    let w = one(a)?;
    a2port(&w).ok_or_else(|| format!("bad port '{w}'"))
}

/// A file list; `none` must be alone. `None` when the line has no word (it sets nothing).
fn list(a: &Args<'_>) -> Result<Option<Vec<String>>, String> {
    for (i, w) in a.words.iter().enumerate() {
        if w.is_empty() {
            return Err(format!("keyword {}: empty argument", a.name));
        }
        if w.eq_ignore_ascii_case("none") && (i > 0 || a.words.len() > 1) {
            return Err(format!(
                "keyword {}: \"none\" argument must appear alone",
                a.name
            ));
        }
    }
    Ok((!a.words.is_empty()).then(|| a.words.to_vec()))
}

/// The rest of the line as written.
fn command(a: &Args<'_>) -> Result<String, String> {
    Ok(raw_value(a.rest).to_string())
}

fn jump(a: &Args<'_>) -> Result<Jump, String> {
    parse_proxy_jump(raw_value(a.rest))
}

/// OpenSSH's checks on an `IdentityAgent` value while reading the file.
fn agent(a: &Args<'_>) -> Result<String, String> {
    let w = one(a)?;
    let mut rest = w.as_str();
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(0) | None => return Err(format!("invalid environment expansion {w}")),
            Some(end) => rest = &after[end + 1..],
        }
    }
    if let Some(name) = w.strip_prefix('$')
        && !name.starts_with('{')
        && !valid_env_name(name)
    {
        return Err(format!("invalid environment name {w}"));
    }
    Ok(w)
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

// How `pgtunnel explain` shows values.

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

fn paths(v: &[PathBuf]) -> String {
    v.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether the keyword was set in a file.
fn set(c: &HostConfig, keyword: Keyword) -> bool {
    c.origins.contains_key(&keyword)
}

/// A forwarding switch is shown when it is set, or when the host has forwards.
fn forwarding_shown(c: &HostConfig, keyword: Keyword) -> bool {
    set(c, keyword) || !c.local_forwards.is_empty()
}

fn show_gateway_ports(c: &HostConfig) -> Option<String> {
    forwarding_shown(c, Keyword::GatewayPorts).then(|| {
        if c.gateway_ports {
            "yes (a forward without a bind address listens on every address)".to_string()
        } else {
            "no (a forward without a bind address listens on loopback)".to_string()
        }
    })
}

fn show_canonicalize_hostname(c: &HostConfig) -> Option<String> {
    let value = match c.canonicalize_hostname {
        Canonicalize::No => "no",
        Canonicalize::Yes => "yes",
        Canonicalize::Always => "always",
    };
    let outcome = match &c.canonicalization {
        Canonicalization::Off | Canonicalization::Address
            if !set(c, Keyword::CanonicalizeHostname) =>
        {
            return None;
        }
        Canonicalization::Off => String::new(),
        Canonicalization::Address => " (not applied: a numeric address)".into(),
        Canonicalization::Proxied => {
            " (not applied: reached through a ProxyCommand or jump host; `always` would)".into()
        }
        Canonicalization::TooManyDots { max } => {
            format!(" (not applied: more dots than CanonicalizeMaxDots {max})")
        }
        Canonicalization::NotFound { tried } => format!(
            " (no domain resolved, tried {}; kept as written: CanonicalizeFallbackLocal)",
            tried.join(" ")
        ),
        Canonicalization::Renamed { from, by_cname } => format!(
            " ({from} -> {}{})",
            c.host_name,
            if *by_cname {
                ", CNAME permitted by CanonicalizePermittedCNAMEs"
            } else {
                ""
            }
        ),
    };
    Some(format!("{value}{outcome}"))
}

fn show_permitted_cnames(c: &HostConfig) -> Option<String> {
    if !set(c, Keyword::CanonicalizePermittedCNAMEs) {
        return None;
    }
    if c.canonicalize_permitted_cnames.is_empty() {
        return Some("none".into());
    }
    let rules: Vec<String> = c
        .canonicalize_permitted_cnames
        .iter()
        .map(|r| format!("{}:{}", r.source, r.target))
        .collect();
    Some(rules.join(" "))
}

fn show_proxy_jump(c: &HostConfig) -> Option<String> {
    match &c.proxy_jump {
        Some(ProxyJump::Hops(list)) => {
            let list: Vec<String> = list.iter().map(|h| h.to_string()).collect();
            Some(list.join(","))
        }
        _ => None,
    }
}

fn show_certificate_files(c: &HostConfig) -> Option<String> {
    (!c.certificate_files.is_empty()).then(|| paths(&c.certificate_files))
}

fn show_strict_host_key_checking(c: &HostConfig) -> Option<String> {
    Some(
        match c.strict_host_key_checking {
            StrictHostKeyChecking::Yes => "yes",
            StrictHostKeyChecking::AcceptNew => "accept-new",
            StrictHostKeyChecking::No => "no",
            StrictHostKeyChecking::Ask if c.batch_mode => "ask (yes: BatchMode)",
            StrictHostKeyChecking::Ask => "ask (yes without a terminal)",
        }
        .into(),
    )
}

fn show_batch_mode(c: &HostConfig) -> Option<String> {
    Some(if c.batch_mode {
        "yes (nothing is asked)".into()
    } else {
        "no".into()
    })
}

fn show_server_alive_interval(c: &HostConfig) -> Option<String> {
    Some(match c.server_alive_interval {
        Some(Duration::ZERO) => "0 (off: no keepalives)".into(),
        Some(d) => secs(d),
        None => "unset (pgtunnel keeps alive every 30s)".into(),
    })
}

fn show_ip_qos(c: &HostConfig) -> Option<String> {
    c.origins.contains_key(&Keyword::IPQoS).then(|| {
        let applied = c.ip_qos.applied().name();
        format!(
            "{} (a direct TCP connection is marked {applied})",
            c.ip_qos.describe()
        )
    })
}

fn show_rekey_limit(c: &HostConfig) -> Option<String> {
    c.origins.contains_key(&Keyword::RekeyLimit).then(|| {
        let r = c.rekey_limit;
        let data = match r.data {
            0 => "default".to_string(),
            n => format!("{n} bytes"),
        };
        let time = match r.time {
            0 => "no time limit".to_string(),
            s => format!("{s}s"),
        };
        format!("{data}, {time}")
    })
}

fn show_connect_timeout(c: &HostConfig) -> Option<String> {
    Some(match c.connect_timeout {
        Some(Duration::ZERO) => "0 (no time limit, as in ssh)".into(),
        Some(d) => secs(d),
        None => "unset (pgtunnel gives up after 30s)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases() {
        assert_eq!(Keyword::from_lowercase("hostname"), Some(Keyword::HostName));
        assert_eq!(
            Keyword::from_lowercase("identityfile2"),
            Some(Keyword::IdentityFile)
        );
        assert_eq!(
            Keyword::from_lowercase("tisauthentication"),
            Some(Keyword::KbdInteractiveAuthentication)
        );
        assert_eq!(Keyword::from_lowercase("host"), None);
        assert_eq!(Keyword::from_lowercase("HostName"), None);
        for &k in Keyword::ALL {
            assert_eq!(Keyword::from_lowercase(k.name()), Some(k));
        }
        assert_eq!(Keyword::AddressFamily.name(), "addressfamily");
    }

    #[test]
    fn integers_as_strtonum_reads_them() {
        let parse = |w: &str| {
            let words = [w.to_string()];
            int(&Args {
                name: "connectionattempts",
                rest: w,
                words: &words,
            })
        };
        assert_eq!(parse("+7"), Ok(7));
        assert_eq!(parse("-0"), Ok(0));
        assert_eq!(parse("2147483647"), Ok(2147483647));
        for bad in ["-1", "2147483648", "7x", "", "+", "--1", "0x10"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn address_family_values() {
        let parse = |w: &str| {
            let words = [w.to_string()];
            address_family(&Args {
                name: "addressfamily",
                rest: w,
                words: &words,
            })
        };
        assert_eq!(parse("inet"), Ok(AddressFamily::Inet));
        assert_eq!(parse("INET6"), Ok(AddressFamily::Inet6));
        assert_eq!(parse("any"), Ok(AddressFamily::Any));
        let err = parse("ipv4").unwrap_err();
        assert!(err.contains("unsupported value \"ipv4\""), "{err}");
    }

    #[test]
    fn address_family_filters_addresses() {
        let v4: SocketAddr = "192.0.2.1:22".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:22".parse().unwrap();
        assert!(AddressFamily::Any.accepts(&v4) && AddressFamily::Any.accepts(&v6));
        assert!(AddressFamily::Inet.accepts(&v4) && !AddressFamily::Inet.accepts(&v6));
        assert!(!AddressFamily::Inet6.accepts(&v4) && AddressFamily::Inet6.accepts(&v6));
        assert_eq!(
            AddressFamily::Inet6.filter("h", [v4, v6, v4]).unwrap(),
            [v6]
        );
        assert_eq!(AddressFamily::Any.filter("h", [v6, v4]).unwrap(), [v6, v4]);
        let err = AddressFamily::Inet.filter("gw.example", [v6]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrNotAvailable);
        let text = err.to_string();
        assert!(
            text.contains("gw.example") && text.contains("IPv4") && text.contains("inet"),
            "{text}"
        );
        assert!(AddressFamily::Inet6.filter("h", []).is_err());
    }
}
