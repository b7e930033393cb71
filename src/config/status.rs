//! Every ssh_config keyword OpenSSH knows, and what pgtunnel does with it.
//!
//! The keywords pgtunnel applies are the `keywords!` table in `config/keyword.rs` (status
//! [`Status::Honoured`]); `Host`, `Match` and `Include` are read by `ssh_config.rs`. Every
//! other keyword is one entry of [`OTHER`] below, with its status:
//!
//! - [`Status::NotApplicable`]: accepted and ignored; it has no effect on a tunnel (what
//!   `ssh -N` does with it, or a session feature pgtunnel never uses).
//! - [`Status::IgnoredByOpenSsh`]: OpenSSH itself ignores it (`oIgnore`, `oDeprecated`: a
//!   debug message; `oUnsupported`: an error message, but the file is still accepted).
//! - [`Status::Unsupported`]: it changes security or the path and pgtunnel does not implement
//!   it: for a hop it applies to (the first value, as OpenSSH takes it), pgtunnel refuses to
//!   start unless the value is what pgtunnel does anyway (`CheckHostIP no`).
//!
//! A keyword no entry knows is refused, with file and line, unless an earlier `IgnoreUnknown`
//! pattern covers it, as OpenSSH does.
//!
//! The list is that of `keywords[]` in OpenSSH's `readconf.c` at openssh-portable commit
//! 0ef0f5a839831c213f24e3f2ae434765c607fb50 (OpenSSH 10.5, 2026-08-21), with the GSSAPI
//! keywords of Debian's and Red Hat's key-exchange patch (`GSSAPIKeyExchange`, ...; the
//! `ssh` of both distributions knows them) and Apple's `UseKeychain`.

use super::keyword::Keyword;
use super::lexer::convtime;

/// What pgtunnel does with a keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Read and applied.
    Honoured,
    /// Accepted and ignored: no effect on a tunnel.
    NotApplicable,
    /// Ignored by OpenSSH itself (deprecated or unsupported there).
    IgnoredByOpenSsh,
    /// Not implemented: refused for a hop it applies to, unless its value is what pgtunnel
    /// does anyway.
    Unsupported,
}

impl Status {
    /// How README and `pgtunnel explain` word the status.
    pub fn describe(self) -> &'static str {
        match self {
            Status::Honoured => "honoured",
            Status::NotApplicable => "not applicable",
            Status::IgnoredByOpenSsh => "ignored (by OpenSSH too)",
            Status::Unsupported => "not supported yet",
        }
    }
}

/// What a value of an [`Status::Unsupported`] keyword means for pgtunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The value is what pgtunnel does anyway.
    Fine,
    /// The value would make `ssh` behave differently from pgtunnel.
    Refuse,
}

/// A keyword outside the `keywords!` table.
#[derive(Debug)]
pub struct OtherKeyword {
    /// Names as the manual writes them: the keyword, then its aliases.
    pub names: &'static [&'static str],
    /// What pgtunnel does with it.
    pub status: Status,
    /// Why, in one line.
    pub reason: &'static str,
    /// For [`Status::Unsupported`]: the values that are accepted (README wording), if any.
    pub accepted: Option<&'static str>,
    /// Checks a line's arguments as OpenSSH does (`Err`: OpenSSH refuses the line) and says
    /// whether the value is one pgtunnel runs as configured.
    check: fn(&[String]) -> Result<Verdict, String>,
    /// Tolerated (explain says so) when it comes from the system-wide file: distributions
    /// enable it there for every host (Debian's `GSSAPIAuthentication yes`).
    pub system_default_tolerated: bool,
}

impl OtherKeyword {
    /// The name as the manual writes it.
    pub fn display_name(&self) -> &'static str {
        self.names[0]
    }

    /// Checks one line's arguments (`Err`: refused as OpenSSH refuses it).
    pub(crate) fn check(&self, words: &[String]) -> Result<Verdict, String> {
        (self.check)(words)
    }
}

const fn entry(
    names: &'static [&'static str],
    status: Status,
    reason: &'static str,
) -> OtherKeyword {
    OtherKeyword {
        names,
        status,
        reason,
        accepted: None,
        check: any,
        system_default_tolerated: false,
    }
}

/// Accepted, no effect on a tunnel.
const fn na(names: &'static [&'static str], reason: &'static str) -> OtherKeyword {
    entry(names, Status::NotApplicable, reason)
}

/// Accepted, no effect on a tunnel; its value is checked as OpenSSH checks it.
const fn na_checked(
    names: &'static [&'static str],
    check: fn(&[String]) -> Result<Verdict, String>,
    reason: &'static str,
) -> OtherKeyword {
    OtherKeyword {
        check,
        ..entry(names, Status::NotApplicable, reason)
    }
}

/// Ignored by OpenSSH (`oIgnore`, `oDeprecated`, `oUnsupported`).
const fn openssh_ignores(names: &'static [&'static str], reason: &'static str) -> OtherKeyword {
    entry(names, Status::IgnoredByOpenSsh, reason)
}

/// Refused whatever its value.
const fn refused(names: &'static [&'static str], reason: &'static str) -> OtherKeyword {
    OtherKeyword {
        check: always_refused,
        ..entry(names, Status::Unsupported, reason)
    }
}

/// Refused unless `check` says the value is fine (`accepted` words those values).
const fn refused_unless(
    names: &'static [&'static str],
    accepted: &'static str,
    check: fn(&[String]) -> Result<Verdict, String>,
    reason: &'static str,
) -> OtherKeyword {
    OtherKeyword {
        accepted: Some(accepted),
        check,
        ..entry(names, Status::Unsupported, reason)
    }
}

/// [`refused_unless`], tolerated from the system-wide file.
const fn refused_unless_system(
    names: &'static [&'static str],
    accepted: &'static str,
    check: fn(&[String]) -> Result<Verdict, String>,
    reason: &'static str,
) -> OtherKeyword {
    OtherKeyword {
        system_default_tolerated: true,
        ..refused_unless(names, accepted, check, reason)
    }
}

/// The keywords OpenSSH (and the vendor patches above) know that the `keywords!` table does
/// not, in `readconf.c`'s order.
pub static OTHER: &[OtherKeyword] = &[
    // Read by ssh_config.rs.
    entry(&["Host"], Status::Honoured, "starts a block (patterns)"),
    entry(
        &["Match"],
        Status::Honoured,
        "starts a block (criteria; `exec` and later ones are refused)",
    ),
    entry(&["Include"], Status::Honoured, "reads more files in place"),
    // OpenSSH's deprecated and unsupported options.
    openssh_ignores(&["Protocol"], "silently ignored by OpenSSH (SSH-2 only)"),
    openssh_ignores(&["Cipher"], "deprecated in OpenSSH (SSH-1)"),
    openssh_ignores(&["FallBackToRsh"], "deprecated in OpenSSH"),
    openssh_ignores(&["GlobalKnownHostsFile2"], "deprecated in OpenSSH"),
    openssh_ignores(&["RhostsAuthentication"], "deprecated in OpenSSH"),
    openssh_ignores(&["UserKnownHostsFile2"], "deprecated in OpenSSH"),
    openssh_ignores(&["UseRoaming"], "deprecated in OpenSSH"),
    openssh_ignores(&["UseRsh"], "deprecated in OpenSSH"),
    openssh_ignores(&["UsePrivilegedPort"], "deprecated in OpenSSH"),
    openssh_ignores(
        &["AFSTokenPassing"],
        "unsupported by OpenSSH (it says so and goes on)",
    ),
    openssh_ignores(
        &["KerberosAuthentication"],
        "unsupported by OpenSSH (it says so and goes on)",
    ),
    openssh_ignores(
        &["KerberosTGTPassing"],
        "unsupported by OpenSSH (it says so and goes on)",
    ),
    openssh_ignores(
        &["RSAAuthentication"],
        "unsupported by OpenSSH (it says so and goes on)",
    ),
    openssh_ignores(
        &["RhostsRSAAuthentication"],
        "unsupported by OpenSSH (it says so and goes on)",
    ),
    openssh_ignores(
        &["CompressionLevel"],
        "unsupported by OpenSSH (it says so and goes on)",
    ),
    // GSSAPI (and the Debian/Red Hat key-exchange patch).
    refused_unless_system(
        &["GSSAPIAuthentication"],
        "no",
        flag_no,
        "pgtunnel does not implement GSSAPI authentication yet",
    ),
    refused_unless_system(
        &["GSSAPIDelegateCredentials"],
        "no",
        flag_no,
        "pgtunnel does not implement GSSAPI credential delegation yet",
    ),
    refused_unless_system(
        &["GSSAPIKeyExchange"],
        "no",
        flag_no,
        "pgtunnel does not implement GSSAPI key exchange yet",
    ),
    na(
        &["GSSAPIClientIdentity"],
        "used only by GSSAPI authentication (refused when enabled)",
    ),
    na(
        &["GSSAPIServerIdentity"],
        "used only by GSSAPI authentication (refused when enabled)",
    ),
    na(
        &["GSSAPIRenewalForcesRekey"],
        "used only by GSSAPI key exchange (refused when enabled)",
    ),
    na(
        &["GSSAPITrustDns"],
        "used only by GSSAPI authentication (refused when enabled)",
    ),
    na(
        &["GSSAPIKexAlgorithms"],
        "used only by GSSAPI key exchange (refused when enabled)",
    ),
    refused_unless(
        &["PKCS11Provider", "SmartcardDevice"],
        "none",
        word_none,
        "pgtunnel does not implement PKCS#11 keys yet",
    ),
    na(&["ForwardAgent"], "no session: pgtunnel forwards no agent"),
    na_checked(&["ForwardX11"], flag_any, "no session: no X11 forwarding"),
    na_checked(
        &["ForwardX11Trusted"],
        flag_any,
        "no session: no X11 forwarding",
    ),
    na_checked(
        &["ForwardX11Timeout"],
        time_value,
        "no session: no X11 forwarding",
    ),
    na(&["XAuthLocation"], "no session: no X11 forwarding"),
    refused(
        &["KbdInteractiveDevices"],
        "pgtunnel does not implement KbdInteractiveDevices yet",
    ),
    refused_unless(
        &["HostbasedAuthentication"],
        "no",
        flag_no,
        "pgtunnel does not implement host-based authentication yet",
    ),
    na_checked(
        &["AddKeysToAgent"],
        add_keys_to_agent,
        "pgtunnel adds no keys to the agent; the connection is the same",
    ),
    na(
        &["RemoteForward"],
        "not opened: pgtunnel opens local forwards only (`pgtunnel ALIAS` warns of each line \
         `ssh -N ALIAS` would open)",
    ),
    na(
        &["PermitRemoteOpen"],
        "only for remote forwards, which pgtunnel does not make",
    ),
    na(&["Tag"], "only for `Match tagged`, which pgtunnel refuses"),
    na_checked(
        &["EscapeChar"],
        escape_char,
        "no session: no terminal escapes",
    ),
    refused_unless(
        &["CheckHostIP"],
        "no",
        flag_no,
        "pgtunnel does not implement CheckHostIP yet",
    ),
    na_checked(
        &["SyslogFacility"],
        log_facility,
        "logging: pgtunnel logs to stderr",
    ),
    na_checked(
        &["LogLevel"],
        log_level,
        "logging: pgtunnel has -v and PGTUNNEL_LOG",
    ),
    na_checked(
        &["LogVerbose"],
        non_empty_words,
        "logging: pgtunnel has -v and PGTUNNEL_LOG",
    ),
    na(
        &["DynamicForward"],
        "not opened: pgtunnel opens local forwards only (`pgtunnel ALIAS` warns of each line \
         `ssh -N ALIAS` would open)",
    ),
    refused_unless(
        &["EnableSSHKeysign"],
        "no",
        flag_no,
        "pgtunnel does not implement host-based authentication (ssh-keysign) yet",
    ),
    refused_unless(
        &["VerifyHostKeyDNS"],
        "no",
        yes_no_ask_no,
        "pgtunnel does not implement VerifyHostKeyDNS yet",
    ),
    refused_unless(
        &["NoHostAuthenticationForLocalhost"],
        "no",
        flag_no,
        "pgtunnel does not implement NoHostAuthenticationForLocalhost yet",
    ),
    na_checked(&["SendEnv"], send_env, "no session: no environment is sent"),
    na_checked(&["SetEnv"], set_env, "no session: no environment is sent"),
    na(
        &["ControlPath"],
        "pgtunnel does not multiplex through a ControlMaster",
    ),
    na_checked(
        &["ControlMaster"],
        controlmaster_values,
        "pgtunnel does not multiplex through a ControlMaster",
    ),
    na_checked(
        &["ControlPersist"],
        control_persist,
        "pgtunnel does not multiplex through a ControlMaster",
    ),
    na_checked(
        &["Tunnel"],
        tunnel_values,
        "no tun/tap forwarding: pgtunnel's forward is its TARGET",
    ),
    na_checked(
        &["TunnelDevice"],
        tunnel_device,
        "no tun/tap forwarding: pgtunnel's forward is its TARGET",
    ),
    na(&["LocalCommand"], "no session: nothing is run locally"),
    na_checked(
        &["PermitLocalCommand"],
        flag_any,
        "no session: nothing is run locally",
    ),
    na(
        &["RemoteCommand"],
        "no session: no command is run (as with ssh -N)",
    ),
    na_checked(&["VisualHostKey"], flag_any, "display only"),
    na_checked(
        &["RequestTTY"],
        requesttty_values,
        "no session: no terminal (as with ssh -N)",
    ),
    na_checked(
        &["SessionType"],
        sessiontype_values,
        "no session (as with ssh -N)",
    ),
    na_checked(&["StdinNull"], flag_any, "no session: stdin is not read"),
    na_checked(
        &["ForkAfterAuthentication"],
        flag_any,
        "pgtunnel stays in the foreground",
    ),
    refused_unless(
        &["ProxyUseFdpass"],
        "no",
        flag_no,
        "pgtunnel does not implement ProxyUseFdpass yet",
    ),
    refused_unless(
        &["RevokedHostKeys"],
        "none",
        word_none,
        "pgtunnel does not implement RevokedHostKeys yet",
    ),
    refused_unless(
        &["FingerprintHash"],
        "sha256",
        sha256,
        "pgtunnel shows SHA256 fingerprints only",
    ),
    na_checked(
        &["UpdateHostKeys"],
        yes_no_ask_any,
        "pgtunnel does not learn new host keys from the server",
    ),
    na(
        &["HostbasedAcceptedAlgorithms", "HostbasedKeyTypes"],
        "used only by host-based authentication (refused when enabled)",
    ),
    refused_unless(
        &["SecurityKeyProvider"],
        "internal",
        internal,
        "pgtunnel does not implement SecurityKeyProvider yet",
    ),
    refused_unless(
        &["KnownHostsCommand"],
        "none",
        word_none,
        "pgtunnel does not implement KnownHostsCommand yet",
    ),
    na_checked(
        &["EnableEscapeCommandline"],
        flag_any,
        "no session: no terminal escapes",
    ),
    na_checked(
        &["ObscureKeystrokeTiming"],
        obscure_keystroke_timing,
        "no session: no keystrokes",
    ),
    refused_unless(
        &["ChannelTimeout"],
        "none",
        word_none,
        "pgtunnel does not implement ChannelTimeout yet (its channels never time out)",
    ),
    na(
        &["VersionAddendum"],
        "pgtunnel sends its own version string",
    ),
    entry(
        &["RefuseConnection"],
        Status::Honoured,
        "refuses the host with its message, as ssh does",
    ),
    na_checked(&["WarnWeakCrypto"], warn_weak_crypto, "a warning only"),
    // Apple's ssh.
    na_checked(
        &["UseKeychain"],
        flag_any,
        "Apple's macOS keychain for passphrases; pgtunnel asks itself",
    ),
];

/// The entry named `name` (any case), aliases included.
pub(crate) fn other(name: &str) -> Option<&'static OtherKeyword> {
    OTHER
        .iter()
        .find(|k| k.names.iter().any(|n| n.eq_ignore_ascii_case(name)))
}

/// Every keyword and alias with its status, the `keywords!` table first: (names, status,
/// accepted values for an unsupported one).
pub fn all() -> Vec<(&'static [&'static str], Status, Option<&'static str>)> {
    let honoured = Keyword::ALL
        .iter()
        .map(|&k| (k.names(), Status::Honoured, None));
    honoured
        .chain(OTHER.iter().map(|k| (k.names, k.status, k.accepted)))
        .collect()
}

/// The README's "Why" of a keyword of the `keywords!` table.
#[cfg(test)]
fn honoured_reason(k: Keyword) -> &'static str {
    match k {
        Keyword::LocalForward => {
            "opened by `pgtunnel ALIAS` (no TARGET), as `ssh -N ALIAS` opens them; every line \
             in effect, duplicates dropped"
        }
        Keyword::GatewayPorts => {
            "where a forward without a bind address listens (loopback, or every address)"
        }
        Keyword::ExitOnForwardFailure => "stop when a forward cannot listen, as `ssh` does",
        Keyword::ClearAllForwardings => "`yes` opens no forward, not even `-L`, as in `ssh`",
        Keyword::StreamLocalBindMask => "the mode of a local forward's Unix socket (0177: 0600)",
        Keyword::StreamLocalBindUnlink => {
            "a local forward's socket file that exists is removed first (`yes`) or refused"
        }
        _ => "applied as `ssh` applies it",
    }
}

/// The README's table of every keyword (checked by a test: README lists exactly these).
#[cfg(test)]
fn readme_table() -> String {
    let mut rows: Vec<(String, String, String)> = Keyword::ALL
        .iter()
        .map(|&k| {
            let aliases: Vec<String> = k.names()[1..].iter().map(|a| format!("`{a}`")).collect();
            let names = std::iter::once(format!("`{}`", k.display_name()))
                .chain(aliases)
                .collect::<Vec<_>>()
                .join(", ");
            (
                names,
                Status::Honoured.describe().to_string(),
                honoured_reason(k).to_string(),
            )
        })
        .chain(OTHER.iter().map(|k| {
            let names = k
                .names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let status = match k.accepted {
                Some(v) => format!("{} (unless `{v}`)", k.status.describe()),
                None => k.status.describe().to_string(),
            };
            let mut reason = k.reason.to_string();
            if k.system_default_tolerated {
                reason.push_str("; tolerated in the system-wide file");
            }
            (names, status, reason)
        }))
        .collect();
    rows.sort_by_key(|(names, _, _)| names.to_ascii_lowercase());
    let mut out = String::from("| Keyword | Status | Why |\n|---|---|---|\n");
    for (names, status, reason) in rows {
        out.push_str(&format!("| {names} | {status} | {reason} |\n"));
    }
    out
}

// Value checks, after OpenSSH's parsers.

/// No argument left after the one(s) a keyword takes (`process_config_line_depth()`'s
/// "extra arguments at end of line").
fn single(words: &[String]) -> Result<&str, String> {
    let w = first(words)?;
    if words.len() > 1 {
        return Err("extra arguments at end of line".into());
    }
    Ok(w)
}

/// `parse_time`: `none` or a time (`convtime()`).
fn time_value(words: &[String]) -> Result<Verdict, String> {
    let w = single(words)?;
    if w == "none" || convtime(w).is_some() {
        Ok(Verdict::Fine)
    } else {
        Err("invalid time value".into())
    }
}

/// `oEscapeChar`: `none`, one byte, or `^` and a byte from 64 to 127.
fn escape_char(words: &[String]) -> Result<Verdict, String> {
    let w = single(words)?;
    match w.as_bytes() {
        _ if w == "none" => Ok(Verdict::Fine),
        [_] => Ok(Verdict::Fine),
        [b'^', c] if (64..128).contains(c) => Ok(Verdict::Fine),
        _ => Err("Bad escape character".into()),
    }
}

/// `log_level_number()`, case-insensitively.
fn log_level(words: &[String]) -> Result<Verdict, String> {
    const LEVELS: &[&str] = &[
        "QUIET", "FATAL", "ERROR", "INFO", "VERBOSE", "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3",
    ];
    let w = single(words)?;
    if LEVELS.iter().any(|l| l.eq_ignore_ascii_case(w)) {
        Ok(Verdict::Fine)
    } else {
        Err(format!("unsupported log level '{w}'"))
    }
}

/// `log_facility_number()`, case-insensitively (Linux has AUTHPRIV).
fn log_facility(words: &[String]) -> Result<Verdict, String> {
    const FACILITIES: &[&str] = &[
        "DAEMON", "USER", "AUTH", "AUTHPRIV", "LOCAL0", "LOCAL1", "LOCAL2", "LOCAL3", "LOCAL4",
        "LOCAL5", "LOCAL6", "LOCAL7",
    ];
    let w = single(words)?;
    if FACILITIES.iter().any(|f| f.eq_ignore_ascii_case(w)) {
        Ok(Verdict::Fine)
    } else {
        Err(format!("unsupported log facility '{w}'"))
    }
}

/// A list whose words may not be empty (`LogVerbose`).
fn non_empty_words(words: &[String]) -> Result<Verdict, String> {
    if words.iter().any(String::is_empty) {
        return Err("empty argument".into());
    }
    Ok(Verdict::Fine)
}

/// `oSendEnv`: names (patterns, `-name` removes), never empty nor with `=`.
fn send_env(words: &[String]) -> Result<Verdict, String> {
    if words.iter().any(|w| w.is_empty() || w.contains('=')) {
        return Err("Invalid environment name".into());
    }
    Ok(Verdict::Fine)
}

/// `oSetEnv`: `NAME=VALUE` words.
fn set_env(words: &[String]) -> Result<Verdict, String> {
    if words.iter().any(|w| !w.contains('=')) {
        return Err("Invalid SetEnv".into());
    }
    Ok(Verdict::Fine)
}

/// `oControlPersist`: `yes`/`true`/`no`/`false` (exactly so) or a time.
fn control_persist(words: &[String]) -> Result<Verdict, String> {
    let w = single(words)?;
    if matches!(w, "yes" | "true" | "no" | "false") || convtime(w).is_some() {
        Ok(Verdict::Fine)
    } else {
        Err("Bad ControlPersist argument".into())
    }
}

/// `oAddKeysToAgent`: yes/no/ask/confirm (`confirm TIME` too), or a time alone (yes, with a
/// lifetime).
fn add_keys_to_agent(words: &[String]) -> Result<Verdict, String> {
    let w = first(words)?;
    let choice = ["yes", "true", "no", "false", "ask", "confirm"]
        .iter()
        .find(|c| c.eq_ignore_ascii_case(w));
    match (choice, words.get(1)) {
        (Some(&"confirm"), Some(t)) if convtime(t).is_none() => Err("invalid time value".into()),
        (Some(&"confirm"), Some(_)) | (Some(_), None) => Ok(Verdict::Fine),
        (None, None) if convtime(w).is_some() => Ok(Verdict::Fine),
        _ => Err("unsupported option".into()),
    }
    .and_then(|v| {
        if words.len() > 2 {
            Err("extra arguments at end of line".into())
        } else {
            Ok(v)
        }
    })
}

/// `a2tun()`: `any` or 0 to 2^31-3, once or `local:remote`.
fn tunnel_device(words: &[String]) -> Result<Verdict, String> {
    fn tun(s: &str) -> bool {
        s.eq_ignore_ascii_case("any")
            || s.parse::<i64>()
                .is_ok_and(|n| (0..=0x7fff_fffd).contains(&n))
    }
    let w = single(words)?;
    let ok = match w.split_once(':') {
        Some((local, remote)) => tun(local) && tun(remote),
        None => tun(w),
    };
    if ok {
        Ok(Verdict::Fine)
    } else {
        Err("Bad tun device".into())
    }
}

/// `oObscureKeystrokeTiming` (OpenSSH 9.5, readconf.c at 0ef0f5a): `yes`/`true`/`no`/`false`
/// or `interval:N` (1 to 1000), exactly one.
fn obscure_keystroke_timing(words: &[String]) -> Result<Verdict, String> {
    let w = first(words)?;
    if words.len() > 1 {
        return Err("invalid arguments".into());
    }
    if matches!(w, "yes" | "true" | "no" | "false") {
        return Ok(Verdict::Fine);
    }
    match w.strip_prefix("interval:") {
        Some(n) => match n.parse::<i64>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(Verdict::Fine),
            Ok(_) => Err("value out of range".into()),
            Err(_) => Err(format!("integer value {n} is invalid")),
        },
        None => Err(format!("unsupported argument \"{w}\"")),
    }
}

/// `oWarnWeakCrypto` (OpenSSH 10.1, readconf.c at 0ef0f5a: `multistate_warnweakcrypto`).
fn warn_weak_crypto(words: &[String]) -> Result<Verdict, String> {
    valid(words, &["true", "false", "yes", "no", "no-pq-kex"])
}

fn any(_: &[String]) -> Result<Verdict, String> {
    Ok(Verdict::Fine)
}

fn always_refused(_: &[String]) -> Result<Verdict, String> {
    Ok(Verdict::Refuse)
}

fn first(words: &[String]) -> Result<&str, String> {
    match words.first() {
        Some(w) if !w.is_empty() => Ok(w),
        _ => Err("missing argument".into()),
    }
}

/// One of `choices` (ignoring case; the bool: is it pgtunnel's behaviour), alone on the line.
fn multistate(words: &[String], choices: &[(&str, bool)]) -> Result<Verdict, String> {
    let w = first(words)?;
    if words.len() > 1 {
        return Err("extra arguments at end of line".into());
    }
    match choices.iter().find(|(c, _)| c.eq_ignore_ascii_case(w)) {
        Some((_, true)) => Ok(Verdict::Fine),
        Some((_, false)) => Ok(Verdict::Refuse),
        None => Err(format!("unsupported option \"{w}\"")),
    }
}

/// A yes/no flag: fine when no.
fn flag_no(words: &[String]) -> Result<Verdict, String> {
    multistate(
        words,
        &[
            ("yes", false),
            ("true", false),
            ("no", true),
            ("false", true),
        ],
    )
}

/// A valid value of one of OpenSSH's multistate tables, any of them fine.
fn valid(words: &[String], choices: &[&str]) -> Result<Verdict, String> {
    let all: Vec<(&str, bool)> = choices.iter().map(|&c| (c, true)).collect();
    multistate(words, &all)
}

fn flag_any(words: &[String]) -> Result<Verdict, String> {
    valid(words, &["yes", "true", "no", "false"])
}

fn yes_no_ask_any(words: &[String]) -> Result<Verdict, String> {
    valid(words, &["yes", "true", "no", "false", "ask"])
}

fn requesttty_values(words: &[String]) -> Result<Verdict, String> {
    valid(words, &["yes", "true", "no", "false", "force", "auto"])
}

fn controlmaster_values(words: &[String]) -> Result<Verdict, String> {
    valid(
        words,
        &["yes", "true", "no", "false", "auto", "ask", "autoask"],
    )
}

fn tunnel_values(words: &[String]) -> Result<Verdict, String> {
    valid(
        words,
        &["yes", "true", "no", "false", "ethernet", "point-to-point"],
    )
}

fn sessiontype_values(words: &[String]) -> Result<Verdict, String> {
    valid(words, &["none", "subsystem", "default"])
}

fn yes_no_ask_no(words: &[String]) -> Result<Verdict, String> {
    multistate(
        words,
        &[
            ("yes", false),
            ("true", false),
            ("ask", false),
            ("no", true),
            ("false", true),
        ],
    )
}

fn is(words: &[String], value: &str) -> Result<Verdict, String> {
    let w = first(words)?;
    Ok(if w.eq_ignore_ascii_case(value) {
        Verdict::Fine
    } else {
        Verdict::Refuse
    })
}

fn word_none(words: &[String]) -> Result<Verdict, String> {
    is(words, "none")
}

fn internal(words: &[String]) -> Result<Verdict, String> {
    is(words, "internal")
}

fn sha256(words: &[String]) -> Result<Verdict, String> {
    let w = first(words)?;
    match w.to_ascii_lowercase().as_str() {
        "sha256" => Ok(Verdict::Fine),
        "md5" => Ok(Verdict::Refuse),
        _ => Err(format!("Invalid hash algorithm \"{w}\"")),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn newer_keywords_values_checked_as_openssh_does() {
        let w = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        let ok = |f: fn(&[String]) -> Result<Verdict, String>, v: &str| f(&w(v)).is_ok();
        for good in ["yes", "no", "true", "false", "interval:1", "interval:1000"] {
            assert!(ok(obscure_keystroke_timing, good), "{good}");
        }
        for bad in [
            "Yes",
            "interval:0",
            "interval:1001",
            "interval:x",
            "yes no",
            "maybe",
        ] {
            assert!(!ok(obscure_keystroke_timing, bad), "{bad}");
        }
        assert!(ok(warn_weak_crypto, "no-pq-kex") && !ok(warn_weak_crypto, "pq"));
        assert!(ok(escape_char, "~") && !ok(escape_char, "^~~"));
    }
    use super::*;
    use std::collections::BTreeSet;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn every_name_once() {
        let mut seen = BTreeSet::new();
        for (names, _, _) in all() {
            for n in names {
                assert!(seen.insert(n.to_ascii_lowercase()), "{n} twice");
            }
        }
    }

    /// The OpenSSH 10.5 `keywords[]` table, every name of it (see the module comment).
    #[test]
    fn covers_openssh_keywords() {
        const OPENSSH: &str = "protocol cipher fallbacktorsh globalknownhostsfile2 \
            rhostsauthentication userknownhostsfile2 useroaming usersh useprivilegedport \
            afstokenpassing kerberosauthentication kerberostgtpassing rsaauthentication \
            rhostsrsaauthentication compressionlevel gssapiauthentication \
            gssapidelegatecredentials pkcs11provider smartcarddevice forwardagent forwardx11 \
            forwardx11trusted forwardx11timeout exitonforwardfailure xauthlocation gatewayports \
            passwordauthentication kbdinteractiveauthentication kbdinteractivedevices \
            challengeresponseauthentication skeyauthentication tisauthentication \
            pubkeyauthentication dsaauthentication hostbasedauthentication identityfile \
            identityfile2 identitiesonly certificatefile addkeystoagent identityagent hostname \
            hostkeyalias proxycommand port ciphers macs remoteforward localforward \
            permitremoteopen user host match tag escapechar globalknownhostsfile \
            userknownhostsfile connectionattempts batchmode checkhostip stricthostkeychecking \
            compression tcpkeepalive keepalive numberofpasswordprompts syslogfacility loglevel \
            logverbose dynamicforward preferredauthentications hostkeyalgorithms \
            casignaturealgorithms bindaddress bindinterface clearallforwardings \
            enablesshkeysign verifyhostkeydns nohostauthenticationforlocalhost rekeylimit \
            connecttimeout addressfamily serveraliveinterval serveralivecountmax sendenv setenv \
            controlpath controlmaster controlpersist hashknownhosts include tunnel tunneldevice \
            localcommand permitlocalcommand remotecommand visualhostkey kexalgorithms ipqos \
            requesttty sessiontype stdinnull forkafterauthentication proxyusefdpass \
            canonicaldomains canonicalizefallbacklocal canonicalizehostname canonicalizemaxdots \
            canonicalizepermittedcnames streamlocalbindmask streamlocalbindunlink \
            revokedhostkeys fingerprinthash updatehostkeys hostbasedacceptedalgorithms \
            hostbasedkeytypes pubkeyacceptedalgorithms pubkeyacceptedkeytypes ignoreunknown \
            proxyjump securitykeyprovider knownhostscommand requiredrsasize \
            enableescapecommandline obscurekeystroketiming channeltimeout versionaddendum \
            refuseconnection warnweakcrypto";
        let ours: BTreeSet<String> = all()
            .iter()
            .flat_map(|(names, _, _)| names.iter().map(|n| n.to_ascii_lowercase()))
            .collect();
        for name in OPENSSH.split_whitespace() {
            assert!(ours.contains(name), "{name} has no status");
        }
        assert!(ours.contains("usekeychain"));
    }

    /// README's "ssh_config keywords" table is this table (regenerate it from the message).
    #[test]
    fn readme_lists_every_keyword() {
        let readme = include_str!("../../README.md");
        let table = readme_table();
        assert!(
            readme.contains(&table),
            "README.md's keyword table differs; it should be:\n{table}"
        );
        let section = readme
            .split("\n## ssh_config keywords\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has a section \"ssh_config keywords\"");
        let rows = section.lines().filter(|l| l.starts_with("| `")).count();
        assert_eq!(
            rows,
            table.lines().count() - 2,
            "README has other keyword rows"
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(other("requesttty").unwrap().status, Status::NotApplicable);
        assert_eq!(other("CHECKHOSTIP").unwrap().status, Status::Unsupported);
        assert!(other("ciphers").is_none(), "in the keywords! table");
        assert_eq!(
            other("useroaming").unwrap().status,
            Status::IgnoredByOpenSsh
        );
        assert_eq!(other("host").unwrap().status, Status::Honoured);
        assert!(other("frobnicate").is_none());
        assert!(other("hostname").is_none(), "in the keywords! table");
        assert!(
            other("canonicalizehostname").is_none(),
            "in the keywords! table"
        );
    }

    #[test]
    fn value_dependent_verdicts() {
        let check = |k: &str, v: &str| other(k).unwrap().check(&words(v));
        assert_eq!(check("hostbasedauthentication", "no"), Ok(Verdict::Fine));
        assert_eq!(check("hostbasedauthentication", "YES"), Ok(Verdict::Refuse));
        assert!(check("hostbasedauthentication", "maybe").is_err());
        assert_eq!(check("verifyhostkeydns", "ask"), Ok(Verdict::Refuse));
        assert_eq!(check("kbdinteractivedevices", "pam"), Ok(Verdict::Refuse));
        assert_eq!(check("pkcs11provider", "none"), Ok(Verdict::Fine));
        assert_eq!(check("smartcarddevice", "/lib/p11.so"), Ok(Verdict::Refuse));
        assert_eq!(check("fingerprinthash", "md5"), Ok(Verdict::Refuse));
        assert!(check("fingerprinthash", "sha1").is_err());
        assert_eq!(check("addkeystoagent", "1h"), Ok(Verdict::Fine));
        assert_eq!(check("requesttty", "force"), Ok(Verdict::Fine));
        // Values of not-applicable switches are checked as OpenSSH checks them.
        assert!(check("requesttty", "maybe").is_err());
        assert!(check("forwardx11", "yes please").is_err());
        assert_eq!(check("controlmaster", "AUTOASK"), Ok(Verdict::Fine));
        assert!(check("sessiontype", "shell").is_err());
        assert!(
            other("gssapiauthentication")
                .unwrap()
                .system_default_tolerated
        );
        assert!(!other("checkhostip").unwrap().system_default_tolerated);
    }
}
