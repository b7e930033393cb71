//! `known_hosts` matching and writing, with OpenSSH's semantics.
//!
//! A [`KnownHostsFile`] is parsed once; [`check`] (or [`HostKeyLookup::check`]) then decides
//! whether a server's host key or host certificate is [`Verdict::Known`], [`Verdict::Revoked`],
//! [`Verdict::Changed`] or [`Verdict::Unknown`], the way OpenSSH 9.x's `ssh` decides it
//! (`hostfile.c` and `check_host_key()` in `sshconnect.c`):
//!
//! - **Host field.** Either a hashed name `|1|base64(salt)|base64(HMAC-SHA1(salt, name))` or
//!   a comma-separated list of patterns with `*` and `?` wildcards; a pattern prefixed with `!`
//!   that matches rejects the whole line even if another pattern matches. Patterns match
//!   case-insensitively; the looked-up name is lowercased first (as `ssh` lowercases the host
//!   name and `HostKeyAlias`), and hashed entries hash the lowercased name. Non-default ports
//!   are looked up as `[host]:port`.
//! - **Lines.** Fields are separated by spaces or tabs; blank lines and `#` comments are
//!   skipped; a malformed line (bad marker, bad hash, missing or unparsable key) is skipped
//!   with a [`Warning`] naming the file and line — it never makes the file unusable.
//! - **Plain keys.** Lines without a marker for the name, in file order, user files before
//!   global files as the caller passes them. A line with the offered key makes it known. If no
//!   line has it but a line for the name holds *any* other key — even of another type — the
//!   key has changed: `ssh` reports "REMOTE HOST IDENTIFICATION HAS CHANGED" and names the
//!   other-type key as the offending one. That is why [`order_host_key_algorithms`] exists: like
//!   `ssh`'s `order_hostkeyalgs()`, it asks the server for an algorithm already known first.
//! - **Non-default ports.** When `[host]:port` has no line at all, `ssh` retries the bare
//!   `host` ("checking without port identifier") and accepts a key known there; a *different*
//!   key under the bare name is not "changed" (the retry is quiet), the key is just unknown.
//!   Not done with `HostKeyAlias`.
//! - **`@revoked`** lines for the name refuse the key (or a certificate whose key or CA is
//!   listed) whatever other lines say.
//! - **`@cert-authority`** lines only vouch for host *certificates*: the certificate must be
//!   signed by the listed CA key, be a host certificate, be valid now, carry no critical
//!   options, be signed with an algorithm in `CASignatureAlgorithms` (by default OpenSSH's: no
//!   `ssh-rsa`/SHA-1, no DSA), and list the host name — `HostName` (lowercased, without
//!   `[ ]:port`) or `HostKeyAlias` — among its principals, which are patterns
//!   (`*.example.com`); a certificate without principals is refused. Both as OpenSSH 10.3 does
//!   it (commit 5166b6cb, for CVE-2024-7594); 9.2 took an empty list as "any host" and
//!   compared principals exactly. A plain key listed only on a `@cert-authority` line is not
//!   known. A certificate that no trusted CA vouches for (or that fails those checks) is not
//!   refused outright: like `ssh`, the check falls back to the certificate's public key as a
//!   plain key; [`HostKeyLookup::certificate_refusal`] says why the certificate was not
//!   enough ([`CertRefusal`], with OpenSSH's reasons).
//!
//! Writing: [`format_entry`] produces the line `ssh` appends (`write_host_entry()`: the
//! lowercased name, or its hash with `HashKnownHosts yes`, then the key type and base64 blob,
//! no comment) and [`append_entry`] appends it.
//!
//! Known deviations from `ssh`, all on the side of refusing: an `@revoked` line found during
//! the port-less retry refuses the key (`ssh` reports it revoked and then treats the key as
//! unknown); lines whose key this crate cannot parse (certificates used as plain keys,
//! algorithms outside ssh-key's set) are skipped with a warning, as `ssh` skips lines it
//! cannot parse.

use std::fmt;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey, PublicKeyOrCertificate};
use sha1::Sha1;

use super::algorithms::AlgorithmList;
use super::pattern::{ListMatch, MAX_SUBPATTERN, match_pattern, match_pattern_list};

/// `|1|`: the prefix of a hashed host name.
const HASH_MAGIC: &str = "|1|";
/// Length of the HMAC-SHA1 salt and digest.
const SHA1_LEN: usize = 20;
/// The default SSH port: names on it are looked up without `[ ]:port`.
const DEFAULT_PORT: u16 = 22;

/// A marker at the start of a known_hosts line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// `@cert-authority`: the key is a CA trusted to sign host certificates for the names.
    CertAuthority,
    /// `@revoked`: the key must never be accepted for the names.
    Revoked,
}

/// The host field of a line.
#[derive(Debug, Clone)]
enum Hosts {
    /// `|1|salt|hash`, with the salt decoded.
    Hashed { field: String, salt: Vec<u8> },
    /// A comma-separated pattern list.
    Patterns(String),
}

/// One valid line of a known_hosts file.
#[derive(Debug, Clone)]
pub struct Entry {
    line: usize,
    marker: Option<Marker>,
    hosts: Hosts,
    key: PublicKey,
}

impl Entry {
    /// The line number, from 1.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The `@cert-authority` or `@revoked` marker, if any.
    pub fn marker(&self) -> Option<Marker> {
        self.marker
    }

    /// The key on the line.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The host field as written (patterns, or `|1|salt|hash`).
    pub fn hosts(&self) -> &str {
        match &self.hosts {
            Hosts::Hashed { field, .. } => field,
            Hosts::Patterns(p) => p,
        }
    }

    /// Whether the host field is hashed.
    pub fn is_hashed(&self) -> bool {
        matches!(self.hosts, Hosts::Hashed { .. })
    }

    /// Whether the line applies to `name`, as OpenSSH's `hostkeys_foreach()` (and so
    /// `ssh-keygen -F name`) decides: patterns match case-insensitively, a hashed field matches
    /// the HMAC of `name` exactly as given. [`check`] lowercases the name before calling this,
    /// as `ssh` does.
    pub fn matches(&self, name: &str) -> bool {
        match &self.hosts {
            Hosts::Hashed { field, salt } => hash_with_salt(name, salt) == *field,
            Hosts::Patterns(patterns) => {
                match_pattern_list(
                    name.to_ascii_lowercase().as_bytes(),
                    patterns.as_bytes(),
                    true,
                ) == ListMatch::Yes
            }
        }
    }
}

/// A line skipped because it is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file.
    pub path: PathBuf,
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}; line ignored",
            self.path.display(),
            self.line,
            self.message
        )
    }
}

/// A parsed known_hosts file: its valid lines, and a warning for each malformed one.
#[derive(Debug, Clone, Default)]
pub struct KnownHostsFile {
    path: PathBuf,
    entries: Vec<Entry>,
    warnings: Vec<Warning>,
}

impl KnownHostsFile {
    /// Parses known_hosts text; `path` is only used to name the file in verdicts and warnings.
    pub fn parse(text: &str, path: &Path) -> Self {
        let mut file = KnownHostsFile {
            path: path.to_path_buf(),
            ..Default::default()
        };
        // `lines()` also drops a '\r' before the '\n'; OpenSSH ignores it too (it ends up as
        // trailing whitespace after the base64 key).
        for (i, line) in text.lines().enumerate() {
            match parse_line(line, i + 1) {
                Ok(Some(entry)) => file.entries.push(entry),
                Ok(None) => {}
                Err(message) => file.warnings.push(Warning {
                    path: file.path.clone(),
                    line: i + 1,
                    message,
                }),
            }
        }
        file
    }

    /// Reads and parses a file. A missing file is an empty one, as for `ssh`; bytes that are
    /// not UTF-8 are replaced (they can only matter inside host patterns).
    pub fn load(path: &Path) -> io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Self::parse(&String::from_utf8_lossy(&bytes), path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::parse("", path)),
            Err(e) => Err(e),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The valid lines, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The malformed lines that were skipped.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The lines that apply to `name` (see [`Entry::matches`]), in file order: what
    /// `ssh-keygen -F name -f file` lists.
    pub fn matching<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.matches(name))
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Parses one line: `Ok(None)` for blank lines and comments, `Err` for malformed lines.
/// Mirrors `hostkeys_foreach_file()` and `check_markers()`.
fn parse_line(line: &str, number: usize) -> Result<Option<Entry>, String> {
    let mut rest = line.trim_start_matches(is_blank);
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(None);
    }
    let mut marker = None;
    while rest.starts_with('@') {
        if marker.is_some() {
            return Err("more than one marker".into());
        }
        // OpenSSH ends the marker at the first space of the line, or failing that the first
        // tab: "@revoked\thost key comment with spaces" is an invalid marker for it too.
        let end = rest.find(' ').or_else(|| rest.find('\t'));
        let Some(end) = end else {
            return Err("marker without anything after it".into());
        };
        let word = &rest[..end];
        marker = Some(match word {
            "@cert-authority" => Marker::CertAuthority,
            "@revoked" => Marker::Revoked,
            _ => return Err(format!("unknown marker {word:?}")),
        });
        rest = rest[end..].trim_start_matches(is_blank);
    }
    let (field, rest) = rest.split_once(is_blank).unwrap_or((rest, ""));
    let hosts = if field.starts_with('|') {
        let salt = extract_salt(field).map_err(|e| format!("bad hashed host name: {e}"))?;
        Hosts::Hashed {
            field: field.to_string(),
            salt,
        }
    } else {
        Hosts::Patterns(field.to_string())
    };
    let rest = rest.trim_start_matches(is_blank);
    if rest.is_empty() || rest.starts_with('#') {
        return Err("no key after the host names".into());
    }
    let (key_type, rest) = rest.split_once(is_blank).unwrap_or((rest, ""));
    let rest = rest.trim_start_matches(is_blank);
    let blob = rest.split(is_blank).next().unwrap_or("");
    if blob.is_empty() {
        return Err(format!("no key data after the key type {key_type:?}"));
    }
    let key = PublicKey::from_openssh(&format!("{key_type} {blob}"))
        .map_err(|e| format!("cannot parse the {key_type:?} key: {e}"))?;
    if matches!(key.algorithm(), Algorithm::Other(_)) {
        return Err(format!("unsupported key type {key_type:?}"));
    }
    Ok(Some(Entry {
        line: number,
        marker,
        hosts,
        key,
    }))
}

/// The salt of `|1|salt|hash`, as `extract_salt()` in OpenSSH's `hostfile.c` accepts it.
fn extract_salt(field: &str) -> Result<Vec<u8>, &'static str> {
    let Some(rest) = field.strip_prefix(HASH_MAGIC) else {
        return Err("it does not start with |1|");
    };
    let Some((b64, _)) = rest.split_once('|') else {
        return Err("no | after the salt");
    };
    if b64.is_empty() || b64.len() > 1024 {
        return Err("bad salt length");
    }
    let salt = BASE64.decode(b64).map_err(|_| "the salt is not base64")?;
    if salt.len() != SHA1_LEN {
        return Err("the salt is not 20 bytes");
    }
    Ok(salt)
}

fn hash_with_salt(name: &str, salt: &[u8]) -> String {
    let digest = match <Hmac<Sha1> as KeyInit>::new_from_slice(salt) {
        Ok(mut mac) => {
            mac.update(name.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => Vec::new(),
    };
    format!(
        "{HASH_MAGIC}{}|{}",
        BASE64.encode(salt),
        BASE64.encode(digest)
    )
}

/// The hashed form of `name` with the given salt: `|1|base64(salt)|base64(HMAC-SHA1(salt,
/// name))`, exactly as OpenSSH's `host_hash()` writes it. `name` is hashed as given (OpenSSH
/// lowercases before hashing; [`format_entry`] does).
///
/// ```
/// use pgtunnel::config::known_hosts::hash_host;
/// let h = hash_host("example.com", &[0u8; 20]);
/// assert!(h.starts_with("|1|AAAAAAAAAAAAAAAAAAAAAAAAAAA=|"));
/// ```
pub fn hash_host(name: &str, salt: &[u8; SHA1_LEN]) -> String {
    hash_with_salt(name, salt)
}

/// A key known for a host but different from the one offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownKey {
    /// The file.
    pub path: PathBuf,
    /// The line number, from 1.
    pub line: usize,
    /// The known key's SHA-256 fingerprint (`SHA256:...`).
    pub fingerprint_sha256: String,
    /// The known key's type (`ssh-ed25519`, `ssh-rsa`, ...).
    pub key_type: String,
}

/// The verdict on a key or certificate offered by a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Known: the key is on a line for the host, or the certificate is signed by a CA on a
    /// `@cert-authority` line for the host (`cert_authority` is then true) and is valid for it.
    Known {
        /// The file of the line that vouches for the key.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// The line is a `@cert-authority` line and the server presented a certificate.
        cert_authority: bool,
    },
    /// A `@revoked` line for the host lists the key (or the certificate's CA): always refused.
    Revoked {
        /// The file of the `@revoked` line.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
    },
    /// No line has the key, but lines for the host hold other keys (of any type).
    Changed {
        /// The keys on file for the host, in file order.
        known: Vec<KnownKey>,
    },
    /// Nothing is known about the host.
    Unknown,
}

/// The names a host key is checked under, as `ssh` derives them from `HostName`, `Port` and
/// `HostKeyAlias`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyLookup {
    /// Looked up first: the alias, or `host` / `[host]:port`.
    name: String,
    /// Retried when nothing is known under `name`: `host` for a non-default port.
    fallback: Option<String>,
    /// What host certificates' principals must contain: the alias, or `host`.
    principal: String,
    /// The signature algorithms a CA may have signed a host certificate with
    /// (`CASignatureAlgorithms`; OpenSSH's default unless set).
    ca_signature_algorithms: Vec<String>,
}

impl HostKeyLookup {
    /// The lookup for `host` (the `HostName`) on `port`, or for `alias` when `HostKeyAlias` is
    /// set — then the port is not part of the name and there is no port-less retry, as in `ssh`.
    /// Names are lowercased.
    pub fn new(host: &str, port: u16, alias: Option<&str>) -> Self {
        if let Some(alias) = alias {
            let alias = alias.to_ascii_lowercase();
            return HostKeyLookup {
                name: alias.clone(),
                fallback: None,
                principal: alias,
                ca_signature_algorithms: default_ca_signature_algorithms(),
            };
        }
        let host = host.to_ascii_lowercase();
        if port == DEFAULT_PORT || port == 0 {
            HostKeyLookup {
                name: host.clone(),
                fallback: None,
                principal: host,
                ca_signature_algorithms: default_ca_signature_algorithms(),
            }
        } else {
            HostKeyLookup {
                name: format!("[{host}]:{port}"),
                fallback: Some(host.clone()),
                principal: host,
                ca_signature_algorithms: default_ca_signature_algorithms(),
            }
        }
    }

    /// The same lookup, host certificates judged by `CASignatureAlgorithms` `allowed` (OpenSSH's
    /// names: `ssh-ed25519`, `rsa-sha2-512`, ...).
    pub fn with_ca_signature_algorithms(mut self, allowed: &[String]) -> Self {
        self.ca_signature_algorithms = allowed.to_vec();
        self
    }

    /// The lookup for a name as `ssh` writes it to known_hosts: `[host]:port` is
    /// [`new`](Self::new)`(host, port, None)`; any other name is taken as is (a host on port
    /// 22, or an alias).
    pub fn from_name(name: &str) -> Self {
        if let Some((host, port)) = name
            .strip_prefix('[')
            .and_then(|rest| rest.rsplit_once("]:"))
            && let Ok(port) = port.parse::<u16>()
            && port != DEFAULT_PORT
            && port != 0
        {
            return Self::new(host, port, None);
        }
        Self::new(name, DEFAULT_PORT, None)
    }

    /// The name looked up first, and the one to record a new key under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port-less name retried when nothing is known under [`name`](Self::name).
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The name host certificates must list as a principal.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Checks an offered key or certificate against the files, in order (user files first).
    pub fn check(&self, files: &[KnownHostsFile], key: &PublicKeyOrCertificate) -> Verdict {
        self.check_at(files, key, SystemTime::now())
    }

    /// [`check`](Self::check), with certificate validity judged at `now`.
    pub fn check_at(
        &self,
        files: &[KnownHostsFile],
        key: &PublicKeyOrCertificate,
        now: SystemTime,
    ) -> Verdict {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let offered = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => Offered::Plain(key.clone()),
            PublicKeyOrCertificate::Certificate(cert) => Offered::Cert(Box::new(cert.clone())),
        };
        let ctx = Ctx {
            files,
            principal: &self.principal,
            now,
            ca_signature_algorithms: &self.ca_signature_algorithms,
        };
        match check_host_key(&ctx, &self.name, self.fallback.as_deref(), offered, false) {
            Some(v) => v,
            None => Verdict::Unknown,
        }
    }
}

impl HostKeyLookup {
    /// Why `cert` was not accepted as a host certificate for this host, if it was not: the
    /// first `@cert-authority` line whose CA signed it (under the name, then the port-less
    /// name, as [`check`](Self::check) looks) decides. Revocation is not a reason here
    /// ([`Verdict::Revoked`] says it).
    pub fn certificate_refusal(
        &self,
        files: &[KnownHostsFile],
        cert: &Certificate,
    ) -> Option<CertRefusal> {
        self.certificate_refusal_at(files, cert, SystemTime::now())
    }

    /// [`certificate_refusal`](Self::certificate_refusal), with validity judged at `now`.
    pub fn certificate_refusal_at(
        &self,
        files: &[KnownHostsFile],
        cert: &Certificate,
        now: SystemTime,
    ) -> Option<CertRefusal> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let names = std::iter::once(self.name.as_str()).chain(self.fallback.as_deref());
        for name in names {
            let ca = lines_for(files, name).into_iter().find(|(_, e)| {
                e.marker == Some(Marker::CertAuthority) && e.key.key_data() == cert.signature_key()
            });
            if let Some((path, entry)) = ca {
                return certificate_check(
                    cert,
                    &self.principal,
                    now,
                    &self.ca_signature_algorithms,
                )
                .err()
                .map(|reason| CertRefusal::Invalid {
                    reason,
                    ca_line: format!("{}:{}", path.display(), entry.line),
                });
            }
        }
        Some(CertRefusal::UntrustedCa {
            ca: fingerprint(&PublicKey::from(cert.signature_key().clone())),
        })
    }
}

/// What the server offered: `ssh` downgrades a certificate to its plain key when no CA
/// vouches for it.
#[derive(Clone)]
enum Offered {
    Plain(PublicKey),
    Cert(Box<Certificate>),
}

struct Ctx<'a> {
    files: &'a [KnownHostsFile],
    principal: &'a str,
    now: u64,
    ca_signature_algorithms: &'a [String],
}

/// `check_hostkeys_by_key_or_type()`'s result.
enum Status<'a> {
    Ok(&'a Path, &'a Entry),
    New,
    Changed(Vec<(&'a Path, &'a Entry)>),
    Revoked(&'a Path, &'a Entry),
}

/// The lines for `name` across the files, in order (`load_hostkeys()` for each file).
fn lines_for<'a>(files: &'a [KnownHostsFile], name: &'a str) -> Vec<(&'a Path, &'a Entry)> {
    files
        .iter()
        .flat_map(|f| f.matching(name).map(move |e| (f.path(), e)))
        .collect()
}

fn status<'a>(lines: &[(&'a Path, &'a Entry)], offered: &Offered) -> Status<'a> {
    let mut others = Vec::new();
    let mut found = None;
    for &(path, entry) in lines {
        match offered {
            Offered::Cert(cert) => {
                if entry.marker == Some(Marker::CertAuthority)
                    && entry.key.key_data() == cert.signature_key()
                {
                    found = Some((path, entry));
                    break;
                }
            }
            Offered::Plain(key) => {
                if entry.marker.is_some() {
                    continue;
                }
                if entry.key.key_data() == key.key_data() {
                    found = Some((path, entry));
                    break;
                }
                others.push((path, entry));
            }
        }
    }
    // `check_key_not_revoked()`: the key itself, or a certificate's key or CA.
    let revoked = lines.iter().find(|(_, e)| {
        e.marker == Some(Marker::Revoked)
            && match offered {
                Offered::Plain(key) => e.key.key_data() == key.key_data(),
                Offered::Cert(cert) => {
                    e.key.key_data() == cert.public_key()
                        || e.key.key_data() == cert.signature_key()
                }
            }
    });
    if let Some(&(path, entry)) = revoked {
        return Status::Revoked(path, entry);
    }
    match found {
        Some((path, entry)) => Status::Ok(path, entry),
        None if others.is_empty() => Status::New,
        None => Status::Changed(others),
    }
}

/// Whether a line found for the offered key vouches for it: always for a plain key; for a
/// certificate, when it is valid for the host now (else ssh retries it as a plain key).
fn vouches(ctx: &Ctx<'_>, offered: &Offered, path: &Path, entry: &Entry) -> bool {
    let Offered::Cert(cert) = offered else {
        return true;
    };
    match certificate_check(cert, ctx.principal, ctx.now, ctx.ca_signature_algorithms) {
        Ok(()) => true,
        Err(reason) => {
            // ssh says this at error level, then retries the plain key
            // (`HostKeyLookup::certificate_refusal` tells the caller why).
            tracing::debug!(
                %reason,
                ca = %format!("{}:{}", path.display(), entry.line),
                "host certificate not valid; checking its key as a plain key"
            );
            false
        }
    }
}

/// `check_host_key()` from `sshconnect.c`, reduced to its verdict. `quiet` is its ROQUIET
/// retry without the port: only a known key counts there (`None` otherwise), except that a
/// revocation is reported (see the module docs).
fn check_host_key(
    ctx: &Ctx<'_>,
    name: &str,
    fallback: Option<&str>,
    mut offered: Offered,
    quiet: bool,
) -> Option<Verdict> {
    let lines = lines_for(ctx.files, name);
    loop {
        let is_cert = matches!(offered, Offered::Cert(_));
        match status(&lines, &offered) {
            Status::Ok(path, entry) => {
                let usable = vouches(ctx, &offered, path, entry);
                if usable {
                    return Some(Verdict::Known {
                        path: path.to_path_buf(),
                        line: entry.line,
                        cert_authority: is_cert,
                    });
                }
            }
            Status::Revoked(path, entry) => {
                return Some(Verdict::Revoked {
                    path: path.to_path_buf(),
                    line: entry.line,
                });
            }
            Status::New => {
                if let Some(bare) = fallback
                    && let Some(v @ (Verdict::Known { .. } | Verdict::Revoked { .. })) =
                        check_host_key(ctx, bare, None, offered.clone(), true)
                {
                    return Some(v);
                }
                if !quiet && !is_cert {
                    return Some(Verdict::Unknown);
                }
            }
            Status::Changed(others) => {
                // Only plain keys get here: a CA that does not match is not a "change".
                if !quiet {
                    return Some(Verdict::Changed {
                        known: others
                            .into_iter()
                            .map(|(path, e)| KnownKey {
                                path: path.to_path_buf(),
                                line: e.line,
                                fingerprint_sha256: fingerprint(&e.key),
                                key_type: e.key.algorithm().as_str().to_string(),
                            })
                            .collect(),
                    });
                }
            }
        }
        // `fail:` — a certificate no CA vouches for is retried as its plain key.
        match offered {
            Offered::Cert(cert) => {
                offered = Offered::Plain(PublicKey::from(cert.public_key().clone()))
            }
            Offered::Plain(_) => return None,
        }
    }
}

/// Why a host certificate was not accepted: OpenSSH's reason (`sshkey_cert_check_host()`'s
/// `fail_reason`, which `ssh` prints at error level), or that no `@cert-authority` line for
/// the host trusts its CA (`ssh`: "No matching CA found").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertRefusal {
    /// No `@cert-authority` line for the host lists the certificate's CA.
    UntrustedCa {
        /// SHA256 fingerprint of the CA key that signed the certificate.
        ca: String,
    },
    /// A trusted CA signed it, but the certificate is not valid for this host now.
    Invalid {
        /// OpenSSH's reason, e.g. `Certificate invalid: expired`.
        reason: CertProblem,
        /// The `@cert-authority` line (`file:line`) that trusts its CA.
        ca_line: String,
    },
}

impl fmt::Display for CertRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertRefusal::UntrustedCa { ca } => write!(
                f,
                "its CA ({ca}) is not trusted for this host: no @cert-authority line for it \
                 lists that key"
            ),
            CertRefusal::Invalid { reason, ca_line } => {
                write!(f, "{reason} (CA trusted at known_hosts {ca_line})")
            }
        }
    }
}

/// What is wrong with a certificate signed by a trusted CA (`sshkey_cert_check_host()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertProblem {
    /// A user certificate offered as a host certificate.
    NotHost,
    /// Its validity starts later.
    NotYetValid,
    /// Its validity ended.
    Expired,
    /// It lists no principals (OpenSSH 10.3 refuses these: CVE-2024-7594).
    NoPrincipals,
    /// The host name is not among its principals.
    NotAPrincipal {
        /// The name that had to be listed (`HostName` or `HostKeyAlias`).
        name: String,
        /// The principals it lists.
        principals: Vec<String>,
    },
    /// It carries critical options (none are defined for host certificates).
    CriticalOptions,
    /// The CA signed it with an algorithm `CASignatureAlgorithms` does not allow.
    DisallowedSignature(String),
    /// The CA's signature does not verify.
    BadSignature,
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertProblem::NotHost => f.write_str("Certificate invalid: not a host certificate"),
            CertProblem::NotYetValid => f.write_str("Certificate invalid: not yet valid"),
            CertProblem::Expired => f.write_str("Certificate invalid: expired"),
            CertProblem::NoPrincipals => f.write_str("Certificate lacks principal list"),
            CertProblem::NotAPrincipal { name, principals } => write!(
                f,
                "Certificate invalid: name is not a listed principal ({name} is not among {})",
                principals.join(", ")
            ),
            CertProblem::CriticalOptions => {
                f.write_str("Certificate contains unsupported critical options")
            }
            CertProblem::DisallowedSignature(alg) => write!(
                f,
                "Certificate signed with disallowed algorithm {alg} (CASignatureAlgorithms)"
            ),
            CertProblem::BadSignature => f.write_str("Certificate signature does not verify"),
        }
    }
}

/// Why a certificate signed by a trusted CA is still not valid for `principal` at `now`
/// (`sshkey_cert_check_host()` with `CASignatureAlgorithms` `ca_signatures`), if it is not.
/// Principals are patterns (`*.example.com`) and an empty list is refused, as OpenSSH 10.3
/// does (commit 5166b6cb: 9.2 took an empty list as "any host" and matched no wildcards).
fn certificate_check(
    cert: &Certificate,
    principal: &str,
    now: u64,
    ca_signatures: &[String],
) -> Result<(), CertProblem> {
    if cert.cert_type() != CertType::Host {
        return Err(CertProblem::NotHost);
    }
    if now < cert.valid_after() {
        return Err(CertProblem::NotYetValid);
    }
    if now >= cert.valid_before() {
        return Err(CertProblem::Expired);
    }
    let principals = cert.valid_principals();
    if principals.is_empty() {
        return Err(CertProblem::NoPrincipals);
    }
    if !principals
        .iter()
        .any(|p| match_pattern(principal.as_bytes(), p.as_bytes()))
    {
        return Err(CertProblem::NotAPrincipal {
            name: principal.to_string(),
            principals: principals.to_vec(),
        });
    }
    if !cert.critical_options().is_empty() {
        return Err(CertProblem::CriticalOptions);
    }
    let sig_alg = cert.signature().algorithm();
    if !ca_signatures.iter().any(|a| a == sig_alg.as_str()) {
        return Err(CertProblem::DisallowedSignature(
            sig_alg.as_str().to_string(),
        ));
    }
    cert.verify_signature()
        .map_err(|_| CertProblem::BadSignature)
}

/// OpenSSH's default `CASignatureAlgorithms` (`SSH_ALLOWED_CA_SIGALGS`): no `ssh-rsa`
/// (SHA-1), no DSA.
fn default_ca_signature_algorithms() -> Vec<String> {
    AlgorithmList::CaSignatureAlgorithms
        .openssh_default()
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Checks a key offered for `name`, the name `ssh` looks up: `HostKeyAlias` or `HostName`,
/// written `[host]:port` when the port is not 22 (see [`HostKeyLookup::from_name`]).
pub fn check(files: &[KnownHostsFile], name: &str, key: &PublicKeyOrCertificate) -> Verdict {
    HostKeyLookup::from_name(name).check(files, key)
}

/// Checks a key offered by `host` (the `HostName`) on `port`, without `HostKeyAlias`.
pub fn check_host(
    files: &[KnownHostsFile],
    host: &str,
    port: u16,
    key: &PublicKeyOrCertificate,
) -> Verdict {
    HostKeyLookup::new(host, port, None).check(files, key)
}

/// A key's SHA-256 fingerprint, `SHA256:base64`, as `ssh` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Whether two algorithms are the same key type for known_hosts purposes: RSA regardless of
/// the signature hash (a known `ssh-rsa` key serves `rsa-sha2-512`), ECDSA per curve.
fn same_key_type(a: &Algorithm, b: &Algorithm) -> bool {
    match (a, b) {
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        _ => a == b,
    }
}

/// The host key algorithms to offer, as `ssh`'s `order_hostkeyalgs()` orders them: if a
/// key of the type of the first (most preferred) algorithm is known for `name`, the list is
/// unchanged; otherwise the algorithms whose key type is known for `name` (plain lines, not
/// `@cert-authority` or `@revoked`) come first, each group keeping its order. An RSA key on
/// file brings forward every RSA algorithm (`rsa-sha2-512`, `rsa-sha2-256`, `ssh-rsa`).
///
/// Without this, a server known by its RSA key but preferring Ed25519 would present the
/// Ed25519 key, which is reported as changed (as `ssh` would report it).
pub fn order_host_key_algorithms(
    files: &[KnownHostsFile],
    name: &str,
    client_supported: &[Algorithm],
) -> Vec<Algorithm> {
    let name = name.to_ascii_lowercase();
    let known: Vec<Algorithm> = lines_for(files, &name)
        .into_iter()
        .filter(|(_, e)| e.marker.is_none())
        .map(|(_, e)| e.key.algorithm())
        .collect();
    let is_known = |alg: &Algorithm| known.iter().any(|k| same_key_type(k, alg));
    match client_supported.first() {
        None => return Vec::new(),
        Some(best) if is_known(best) => return client_supported.to_vec(),
        Some(_) => {}
    }
    let (mut first, last): (Vec<Algorithm>, Vec<Algorithm>) =
        client_supported.iter().cloned().partition(is_known);
    first.extend(last);
    first
}

/// Whether a `@cert-authority` line applies to `name`: `ssh` then prefers host certificate
/// algorithms.
pub fn has_cert_authority(files: &[KnownHostsFile], name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    lines_for(files, &name)
        .iter()
        .any(|(_, e)| e.marker == Some(Marker::CertAuthority))
}

/// The line `ssh` appends for a newly accepted key (without the newline): the lowercased
/// `name` — hashed as `|1|salt|hash` with a fresh random salt when `hashed`
/// (`HashKnownHosts yes`) — then the key type and base64 key, without the comment.
///
/// A name that cannot be written as itself is refused (`InvalidInput`) rather than written as
/// something else: empty, or, unhashed, one with blanks or control characters (the line would
/// not parse back), pattern characters `* ? ! ,` (it would vouch for the key for other hosts:
/// a name `*` trusts it for every host), 1023 bytes or more (OpenSSH's matcher gives up on a
/// pattern that long: never found again) or a leading `#`, `|` or `@` (a comment, a hashed
/// field, a marker). Hashing writes any name safely.
pub fn format_entry(name: &str, key: &PublicKey, hashed: bool) -> io::Result<String> {
    let name = name.to_ascii_lowercase();
    let refuse = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the host name {name:?} cannot be recorded in known_hosts{why} \
                 (HashKnownHosts yes records any name; or set a HostKeyAlias)"
            ),
        ))
    };
    if name.is_empty() {
        return refuse(": it is empty");
    }
    if !hashed {
        if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return refuse(" as it is: it holds blanks or control characters");
        }
        if name.contains(['*', '?', '!', ',']) {
            return refuse(" as it is: it holds pattern characters and would match other hosts");
        }
        if name.len() >= MAX_SUBPATTERN {
            return refuse(
                " as it is: it is too long to be matched (ssh gives up on such patterns)",
            );
        }
        if name.starts_with(['#', '|', '@']) {
            return refuse(" as it is: it starts with a comment, hash or marker character");
        }
    }
    let host = if hashed {
        let mut salt = [0u8; SHA1_LEN];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut salt);
        hash_host(&name, &salt)
    } else {
        name
    };
    let blob = key.to_bytes().map_err(io::Error::other)?;
    Ok(format!(
        "{host} {} {}",
        key.algorithm().as_str(),
        BASE64.encode(blob)
    ))
}

/// Appends `line` (from [`format_entry`]) to a known_hosts file. A missing parent directory
/// is created with mode 0700 and a missing file with mode 0600; if the file does not end with
/// a newline, one is added first so the entry starts on its own line.
pub fn append_entry(path: &Path, line: &str) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let mut text = String::new();
    let len = file.seek(io::SeekFrom::End(0))?;
    if len > 0 {
        file.seek(io::SeekFrom::End(-1))?;
        let mut last = [0u8; 1];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(line.trim_end_matches('\n'));
    text.push('\n');
    // One write in append mode: concurrent writers cannot interleave inside the line.
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::PrivateKey;
    use russh::keys::ssh_key::certificate::Builder;
    use std::time::Duration;

    fn key() -> PrivateKey {
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("key")
    }

    fn line_key(k: &PrivateKey) -> String {
        let mut p = k.public_key().clone();
        p.set_comment("");
        p.to_openssh().expect("encode")
    }

    fn plain(k: &PrivateKey) -> PublicKeyOrCertificate {
        PublicKeyOrCertificate::PublicKey {
            key: k.public_key().clone(),
            hash_alg: None,
        }
    }

    fn file(text: &str) -> KnownHostsFile {
        KnownHostsFile::parse(text, Path::new("/kh"))
    }

    fn known(line: usize) -> Verdict {
        Verdict::Known {
            path: PathBuf::from("/kh"),
            line,
            cert_authority: false,
        }
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    }

    fn cert(
        host: &PrivateKey,
        ca: &PrivateKey,
        principals: &[&str],
        valid: (u64, u64),
    ) -> Certificate {
        let mut b = Builder::new_with_random_nonce(
            &mut rand::rng(),
            host.public_key().key_data().clone(),
            valid.0,
            valid.1,
        )
        .expect("builder");
        b.cert_type(CertType::Host).expect("type");
        b.key_id("test").expect("id");
        if principals.is_empty() {
            b.all_principals_valid().expect("all");
        }
        for p in principals {
            b.valid_principal(*p).expect("principal");
        }
        b.sign(ca).expect("sign")
    }

    #[test]
    fn parses_lines_and_warns_about_malformed_ones() {
        let k = line_key(&key());
        let text = format!(
            "# comment\n\n   \t\nhost {k}\n\t host2\t{k} comment here\n@revoked * {k}\n\
             @cert-authority *.x {k}\n@bogus h {k}\nh\nh ssh-ed25519\nh ssh-ed25519 !!!\n\
             |2|abc|def {k}\n|1|c2FsdA==|x {k}\n@revoked @revoked h {k}\nh foo-bar AAAA\n\
             hostcr {k}\r\n"
        );
        let f = file(&text);
        let lines: Vec<usize> = f.entries().iter().map(Entry::line).collect();
        assert_eq!(lines, vec![4, 5, 6, 7, 16]);
        assert_eq!(f.entries()[2].marker(), Some(Marker::Revoked));
        assert_eq!(f.entries()[3].marker(), Some(Marker::CertAuthority));
        let warned: Vec<usize> = f.warnings().iter().map(|w| w.line).collect();
        assert_eq!(warned, vec![8, 9, 10, 11, 12, 13, 14, 15]);
        let shown = f.warnings()[0].to_string();
        assert!(shown.starts_with("/kh:8: unknown marker"), "{shown}");
    }

    #[test]
    fn hashed_names_use_hmac_sha1_with_the_salt() {
        // Produced by `ssh-keygen -H` for "upper.example.com".
        let field = "|1|xIG1xIJYOz5gkKyNCqB6zzHYIAw=|HQiCErTBh4Zb3392a029E6rc3vQ=";
        let salt = extract_salt(field).expect("salt");
        assert_eq!(hash_with_salt("upper.example.com", &salt), field);
        let k = line_key(&key());
        let f = file(&format!("{field} {k}\n"));
        let e = &f.entries()[0];
        assert!(e.is_hashed());
        assert!(e.matches("upper.example.com"));
        // Hashes are of the name as given; `check` lowercases first, as ssh does.
        assert!(!e.matches("Upper.Example.com"));
        assert!(!e.matches("other"));
        let key = PublicKey::from_openssh(&k).expect("key");
        let offered = PublicKeyOrCertificate::PublicKey {
            key,
            hash_alg: None,
        };
        assert_eq!(check(&[f], "Upper.Example.COM", &offered), known(1));
    }

    #[test]
    fn several_lines_changed_and_other_types() {
        let (a, b, c) = (key(), key(), key());
        let f = file(&format!(
            "h {}\nh,other {}\n*.x,!bad.x {}\n",
            line_key(&a),
            line_key(&b),
            line_key(&a)
        ));
        assert_eq!(check(std::slice::from_ref(&f), "h", &plain(&b)), known(2));
        assert_eq!(check(std::slice::from_ref(&f), "H", &plain(&a)), known(1));
        let Verdict::Changed { known: on_file } = check(std::slice::from_ref(&f), "h", &plain(&c))
        else {
            panic!("expected changed")
        };
        assert_eq!(
            on_file.iter().map(|k| k.line).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(on_file[0].fingerprint_sha256, fingerprint(a.public_key()));
        assert_eq!(
            check(std::slice::from_ref(&f), "bad.x", &plain(&a)),
            Verdict::Unknown
        );
        assert_eq!(
            check(std::slice::from_ref(&f), "good.x", &plain(&a)),
            known(3)
        );
        assert_eq!(
            check(std::slice::from_ref(&f), "nobody", &plain(&a)),
            Verdict::Unknown
        );

        // Known only by an RSA key: an Ed25519 key is "changed", as for ssh.
        let rsa = PrivateKey::random(&mut rand::rng(), Algorithm::Rsa { hash: None }).expect("rsa");
        let f = file(&format!("h {}\n", line_key(&rsa)));
        let Verdict::Changed { known: on_file } = check(&[f], "h", &plain(&a)) else {
            panic!("expected changed")
        };
        assert_eq!(on_file[0].key_type, "ssh-rsa");
    }

    #[test]
    fn revoked_wins_everywhere() {
        let (a, b) = (key(), key());
        let f1 = file(&format!("h {}\n", line_key(&a)));
        let f2 = KnownHostsFile::parse(
            &format!("@revoked * {}\n", line_key(&a)),
            Path::new("/global"),
        );
        let v = check(&[f1.clone(), f2.clone()], "h", &plain(&a));
        assert_eq!(
            v,
            Verdict::Revoked {
                path: PathBuf::from("/global"),
                line: 1
            }
        );
        assert_eq!(check(&[f1, f2], "h", &plain(&b)).clone(), {
            Verdict::Changed {
                known: vec![KnownKey {
                    path: PathBuf::from("/kh"),
                    line: 1,
                    fingerprint_sha256: fingerprint(a.public_key()),
                    key_type: "ssh-ed25519".into(),
                }],
            }
        });
        // A @revoked line for another host does not apply.
        let f = file(&format!(
            "h {}\n@revoked other {}\n",
            line_key(&a),
            line_key(&a)
        ));
        assert_eq!(check(&[f], "h", &plain(&a)), known(1));
    }

    #[test]
    fn ports_and_the_portless_retry() {
        let (a, b) = (key(), key());
        let f = file(&format!(
            "[h]:2222 {}\nplain {}\n",
            line_key(&a),
            line_key(&a)
        ));
        let files = std::slice::from_ref(&f);
        assert_eq!(check_host(files, "h", 2222, &plain(&a)), known(1));
        assert_eq!(check(files, "[h]:2222", &plain(&a)), known(1));
        assert_eq!(check_host(files, "h", 22, &plain(&a)), Verdict::Unknown);
        // Known without the port: accepted on any port.
        assert_eq!(check_host(files, "plain", 2200, &plain(&a)), known(2));
        // A different key without the port is not "changed", just unknown.
        assert_eq!(
            check_host(files, "plain", 2200, &plain(&b)),
            Verdict::Unknown
        );
        // But a different key under [h]:2222 is changed (no retry then).
        assert!(matches!(
            check_host(files, "h", 2222, &plain(&b)),
            Verdict::Changed { .. }
        ));
        // HostKeyAlias: no port, no retry.
        let l = HostKeyLookup::new("ignored", 2200, Some("Plain"));
        assert_eq!(l.name(), "plain");
        assert_eq!(l.check(files, &plain(&a)), known(2));
        assert_eq!(HostKeyLookup::from_name("[::1]:2200").name(), "[::1]:2200");
        assert_eq!(HostKeyLookup::from_name("[::1]:2200").principal(), "::1");
        assert_eq!(HostKeyLookup::from_name("[h]:22").name(), "[h]:22");
    }

    #[test]
    fn certificate_refusals_give_openssh_reasons() {
        let (host, ca, other_ca) = (key(), key(), key());
        let t = now();
        let window = (t - 60, t + 3600);
        let f = file(&format!("# ca\n@cert-authority *.x {}\n", line_key(&ca)));
        let files = std::slice::from_ref(&f);
        let refusal = |name: &str, c: &Certificate| {
            HostKeyLookup::from_name(name)
                .certificate_refusal(files, c)
                .map(|r| r.to_string())
        };
        let good = cert(&host, &ca, &["h.x"], window);
        assert_eq!(refusal("h.x", &good), None);
        assert_eq!(
            refusal("h.x", &cert(&host, &ca, &["h.x"], (t - 7200, t - 3600))).as_deref(),
            Some("Certificate invalid: expired (CA trusted at known_hosts /kh:2)")
        );
        assert_eq!(
            refusal("h.x", &cert(&host, &ca, &["h.x"], (t + 3600, t + 7200))).as_deref(),
            Some("Certificate invalid: not yet valid (CA trusted at known_hosts /kh:2)")
        );
        assert_eq!(
            refusal("z.x", &good).as_deref(),
            Some(
                "Certificate invalid: name is not a listed principal (z.x is not among h.x) \
                 (CA trusted at known_hosts /kh:2)"
            )
        );
        assert_eq!(
            refusal("h.x", &cert(&host, &ca, &[], window)).as_deref(),
            Some("Certificate lacks principal list (CA trusted at known_hosts /kh:2)")
        );
        let untrusted = cert(&host, &other_ca, &["h.x"], window);
        let ca_fp = fingerprint(&other_ca.public_key().clone());
        assert_eq!(
            refusal("h.x", &untrusted),
            Some(format!(
                "its CA ({ca_fp}) is not trusted for this host: no @cert-authority line for it \
                 lists that key"
            ))
        );
        // A CA trusted only for other hosts is not trusted for this one.
        assert!(matches!(
            HostKeyLookup::from_name("h.y").certificate_refusal(files, &good),
            Some(CertRefusal::UntrustedCa { .. })
        ));
        // The port-less name's CA line counts, as in `check`.
        assert_eq!(
            HostKeyLookup::new("h.x", 2222, None).certificate_refusal(files, &good),
            None
        );
        // CASignatureAlgorithms without the CA's algorithm (Ed25519 here) refuses it, in
        // `check` too.
        let ecdsa_only = HostKeyLookup::from_name("h.x")
            .with_ca_signature_algorithms(&["ecdsa-sha2-nistp256".to_string()]);
        assert_eq!(
            ecdsa_only
                .certificate_refusal(files, &good)
                .map(|r| r.to_string())
                .as_deref(),
            Some(
                "Certificate signed with disallowed algorithm ssh-ed25519 \
                 (CASignatureAlgorithms) (CA trusted at known_hosts /kh:2)"
            )
        );
        let offered = PublicKeyOrCertificate::Certificate(good.clone());
        assert!(matches!(
            HostKeyLookup::from_name("h.x").check(files, &offered),
            Verdict::Known { .. }
        ));
        assert!(!matches!(
            ecdsa_only.check(files, &offered),
            Verdict::Known { .. }
        ));
    }

    #[test]
    fn certificates_and_cert_authorities() {
        let (host, ca, other_ca) = (key(), key(), key());
        let t = now();
        let window = (t - 60, t + 3600);
        let good = cert(&host, &ca, &["h.x", "alias"], window);
        let offered = |c: &Certificate| PublicKeyOrCertificate::Certificate(c.clone());
        let f = file(&format!("@cert-authority *.x {}\n", line_key(&ca)));
        let files = std::slice::from_ref(&f);
        let ca_known = Verdict::Known {
            path: PathBuf::from("/kh"),
            line: 1,
            cert_authority: true,
        };
        assert_eq!(check(files, "h.x", &offered(&good)), ca_known);
        assert_eq!(check(files, "H.X", &offered(&good)), ca_known);
        // Principal is the host without the port.
        let f_port = file(&format!("@cert-authority [h.x]:2222 {}\n", line_key(&ca)));
        assert_eq!(
            check_host(std::slice::from_ref(&f_port), "h.x", 2222, &offered(&good)),
            ca_known
        );
        // Name not a principal: falls back to the plain key, unknown.
        assert_eq!(check(files, "z.x", &offered(&good)), Verdict::Unknown);
        // ... which is known when its plain key is.
        let f2 = file(&format!(
            "@cert-authority *.x {}\nz.x {}\n",
            line_key(&ca),
            line_key(&host)
        ));
        assert_eq!(
            check(std::slice::from_ref(&f2), "z.x", &offered(&good)),
            known(2)
        );
        // Untrusted CA, expired, not yet valid: the plain key decides.
        let wrong_ca = cert(&host, &other_ca, &["h.x"], window);
        assert_eq!(check(files, "h.x", &offered(&wrong_ca)), Verdict::Unknown);
        let expired = cert(&host, &ca, &["h.x"], (t - 7200, t - 3600));
        assert_eq!(check(files, "h.x", &offered(&expired)), Verdict::Unknown);
        let future = cert(&host, &ca, &["h.x"], (t + 3600, t + 7200));
        assert_eq!(check(files, "h.x", &offered(&future)), Verdict::Unknown);
        // No principals: refused (OpenSSH 10.3), the plain key decides.
        let any = cert(&host, &ca, &[], window);
        assert_eq!(check(files, "q.x", &offered(&any)), Verdict::Unknown);
        // Principals are patterns.
        let wild = cert(&host, &ca, &["*.x"], window);
        assert_eq!(check(files, "q.x", &offered(&wild)), ca_known);
        // Alias is the principal.
        assert_eq!(
            HostKeyLookup::new("h.x", 22, Some("alias")).check(
                &[file(&format!("@cert-authority alias {}\n", line_key(&ca)))],
                &offered(&good)
            ),
            ca_known
        );
        // The plain key on a @cert-authority line is not a known host key.
        let f3 = file(&format!("@cert-authority h.x {}\n", line_key(&host)));
        assert_eq!(check(&[f3], "h.x", &plain(&host)), Verdict::Unknown);
        // Revoked CA or revoked certified key.
        let f4 = file(&format!(
            "@cert-authority *.x {}\n@revoked * {}\n",
            line_key(&ca),
            line_key(&ca)
        ));
        assert!(matches!(
            check(&[f4], "h.x", &offered(&good)),
            Verdict::Revoked { line: 2, .. }
        ));
        let f5 = file(&format!(
            "@cert-authority *.x {}\n@revoked * {}\n",
            line_key(&ca),
            line_key(&host)
        ));
        assert!(matches!(
            check(&[f5], "h.x", &offered(&good)),
            Verdict::Revoked { line: 2, .. }
        ));
        // check_at: the same certificate, judged later.
        let later = SystemTime::now() + Duration::from_secs(7200);
        assert_eq!(
            HostKeyLookup::from_name("h.x").check_at(files, &offered(&good), later),
            Verdict::Unknown
        );
    }

    #[test]
    fn format_entry_round_trips() {
        let a = key();
        let line = format_entry("Host.Example", a.public_key(), false).expect("format");
        assert_eq!(line, format!("host.example {}", line_key(&a)));
        let hashed = format_entry("[Host.Example]:2222", a.public_key(), true).expect("format");
        assert!(hashed.starts_with("|1|"), "{hashed}");
        let f = file(&format!("{line}\n{hashed}\n"));
        assert!(f.warnings().is_empty());
        assert_eq!(
            check(std::slice::from_ref(&f), "host.example", &plain(&a)),
            known(1)
        );
        assert_eq!(
            check_host(std::slice::from_ref(&f), "HOST.example", 2222, &plain(&a)),
            known(2)
        );
        let (h1, h2) = (
            format_entry("x", a.public_key(), true).expect("format"),
            format_entry("x", a.public_key(), true).expect("format"),
        );
        assert_ne!(h1, h2, "fresh salt each time");
    }

    #[test]
    fn append_entry_creates_and_fixes_newlines() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ssh/known_hosts");
        append_entry(&path, "a key1").expect("append");
        append_entry(&path, "b key2\n").expect("append");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "a key1\nb key2\n"
        );
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("ssh")), 0o700);
        let other = dir.path().join("kh");
        std::fs::write(&other, "x k").expect("write");
        append_entry(&other, "y k").expect("append");
        assert_eq!(std::fs::read_to_string(&other).expect("read"), "x k\ny k\n");
    }

    #[test]
    fn host_key_algorithms_prefer_known_types() {
        let rsa = PrivateKey::random(&mut rand::rng(), Algorithm::Rsa { hash: None }).expect("rsa");
        let ed = key();
        let prefs = russh::Preferred::DEFAULT.key.to_vec();
        let f = file(&format!("h {}\n", line_key(&rsa)));
        let order = order_host_key_algorithms(std::slice::from_ref(&f), "H", &prefs);
        assert_eq!(
            &order[..3],
            &[
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512)
                },
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256)
                },
                Algorithm::Rsa { hash: None },
            ]
        );
        assert_eq!(order[3], Algorithm::Ed25519);
        assert_eq!(order.len(), prefs.len());
        // Unknown host, or the best type known: unchanged.
        assert_eq!(
            order_host_key_algorithms(std::slice::from_ref(&f), "other", &prefs),
            prefs
        );
        let f = file(&format!("h {}\nh {}\n", line_key(&rsa), line_key(&ed)));
        assert_eq!(
            order_host_key_algorithms(std::slice::from_ref(&f), "h", &prefs),
            prefs
        );
        // A CA line does not count as a known key type, but is reported.
        let f = file(&format!("@cert-authority h {}\n", line_key(&rsa)));
        assert_eq!(
            order_host_key_algorithms(std::slice::from_ref(&f), "h", &prefs),
            prefs
        );
        assert!(has_cert_authority(std::slice::from_ref(&f), "h"));
        assert!(!has_cert_authority(std::slice::from_ref(&f), "g"));
    }
}
