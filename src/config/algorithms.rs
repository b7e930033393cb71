//! OpenSSH's algorithm lists: `Ciphers`, `MACs`, `KexAlgorithms`, `HostKeyAlgorithms`,
//! `PubkeyAcceptedAlgorithms` and `CASignatureAlgorithms`, read and assembled as `ssh` does.
//!
//! A value is one comma-separated word. While reading (`readconf.c`), a value not starting
//! with `-` must name only algorithms OpenSSH knows (`ciphers_valid`, `mac_valid`,
//! `kex_names_valid`, `sshkey_names_valid2`: the key lists also take patterns that match some
//! key type), else the line is refused ("Bad SSH2 cipher spec '...'"). Then
//! `kex_assemble_names()` (`kex-names.c`) makes the list: a plain list replaces the default,
//! `+list` is appended to it, `^list` put in front of it, `-list` removes what its patterns
//! (`*`, `?`, `match_filter_denylist`) match; the names of a plain, `+` or `^` list are
//! patterns too, each replaced by the known algorithms it matches, and a name already in the
//! list is not added again. An empty result is an error.
//!
//! The defaults and the known algorithms are OpenSSH 10.5's (openssh-portable commit
//! 0ef0f5a839831c213f24e3f2ae434765c607fb50: `myproposal.h` `KEX_CLIENT_KEX`,
//! `KEX_CLIENT_ENCRYPT`, `KEX_CLIENT_MAC`, `KEX_DEFAULT_PK_ALG`, `SSH_ALLOWED_CA_SIGALGS`;
//! `cipher.c` `ciphers[]`, `mac.c` `macs[]`, `kex-names.c` `kexalgs[]`, `sshkey.c`
//! `keyimpls[]`, as a Linux build with OpenSSL and security keys has them). Which of them
//! russh implements is the session's business (`ssh::algorithms`). Pure.

use std::collections::BTreeMap;

use super::pattern::{ListMatch, match_pattern_list};

/// One of OpenSSH's algorithm-list keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlgorithmList {
    /// `Ciphers`.
    Ciphers,
    /// `MACs`.
    Macs,
    /// `KexAlgorithms`.
    KexAlgorithms,
    /// `HostKeyAlgorithms`.
    HostKeyAlgorithms,
    /// `PubkeyAcceptedAlgorithms`.
    PubkeyAcceptedAlgorithms,
    /// `CASignatureAlgorithms`.
    CaSignatureAlgorithms,
}

/// `KEX_CLIENT_KEX`.
const DEFAULT_KEX: &[&str] = &[
    "mlkem768x25519-sha256",
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
];

/// `kexalgs[]`.
const ALL_KEX: &[&str] = &[
    "diffie-hellman-group1-sha1",
    "diffie-hellman-group14-sha1",
    "diffie-hellman-group14-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group-exchange-sha1",
    "diffie-hellman-group-exchange-sha256",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "mlkem768nistp256-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
    "mlkem768x25519-sha256",
];

/// `KEX_CLIENT_ENCRYPT`.
const DEFAULT_CIPHERS: &[&str] = &[
    "chacha20-poly1305@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
];

/// `ciphers[]` without the internal `none`.
const ALL_CIPHERS: &[&str] = &[
    "3des-cbc",
    "aes128-cbc",
    "aes192-cbc",
    "aes256-cbc",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
];

/// `KEX_CLIENT_MAC`.
const DEFAULT_MACS: &[&str] = &[
    "umac-64-etm@openssh.com",
    "umac-128-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha1-etm@openssh.com",
    "umac-64@openssh.com",
    "umac-128@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
    "hmac-sha1",
];

/// `macs[]`.
const ALL_MACS: &[&str] = &[
    "hmac-sha1",
    "hmac-sha1-96",
    "hmac-sha2-256",
    "hmac-sha2-512",
    "hmac-md5",
    "hmac-md5-96",
    "umac-64@openssh.com",
    "umac-128@openssh.com",
    "hmac-sha1-etm@openssh.com",
    "hmac-sha1-96-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-md5-etm@openssh.com",
    "hmac-md5-96-etm@openssh.com",
    "umac-64-etm@openssh.com",
    "umac-128-etm@openssh.com",
];

/// `KEX_DEFAULT_PK_ALG` (the default of `HostKeyAlgorithms` and `PubkeyAcceptedAlgorithms`).
const DEFAULT_KEYS: &[&str] = &[
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "webauthn-sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "webauthn-sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
];

/// `keyimpls[]` (`sshkey_alg_list(0, 0, 1)`: certificates and signature-only names too).
const ALL_KEYS: &[&str] = &[
    "ssh-ed25519",
    "ssh-ed25519-cert-v01@openssh.com",
    "sk-ssh-ed25519@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "ssh-mldsa44-ed25519@openssh.com",
    "ssh-mldsa44-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "webauthn-sk-ecdsa-sha2-nistp256@openssh.com",
    "webauthn-sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ssh-rsa",
    "ssh-rsa-cert-v01@openssh.com",
    "rsa-sha2-256",
    "rsa-sha2-512",
    "rsa-sha2-256-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
];

/// `SSH_ALLOWED_CA_SIGALGS`.
const DEFAULT_CA_SIGNATURES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "webauthn-sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
];

impl AlgorithmList {
    /// Every list keyword.
    pub const ALL: [AlgorithmList; 6] = [
        AlgorithmList::Ciphers,
        AlgorithmList::Macs,
        AlgorithmList::KexAlgorithms,
        AlgorithmList::HostKeyAlgorithms,
        AlgorithmList::PubkeyAcceptedAlgorithms,
        AlgorithmList::CaSignatureAlgorithms,
    ];

    /// The keyword as the manual writes it.
    pub fn keyword(self) -> &'static str {
        match self {
            AlgorithmList::Ciphers => "Ciphers",
            AlgorithmList::Macs => "MACs",
            AlgorithmList::KexAlgorithms => "KexAlgorithms",
            AlgorithmList::HostKeyAlgorithms => "HostKeyAlgorithms",
            AlgorithmList::PubkeyAcceptedAlgorithms => "PubkeyAcceptedAlgorithms",
            AlgorithmList::CaSignatureAlgorithms => "CASignatureAlgorithms",
        }
    }

    /// OpenSSH's default list.
    pub fn openssh_default(self) -> &'static [&'static str] {
        match self {
            AlgorithmList::Ciphers => DEFAULT_CIPHERS,
            AlgorithmList::Macs => DEFAULT_MACS,
            AlgorithmList::KexAlgorithms => DEFAULT_KEX,
            AlgorithmList::HostKeyAlgorithms | AlgorithmList::PubkeyAcceptedAlgorithms => {
                DEFAULT_KEYS
            }
            AlgorithmList::CaSignatureAlgorithms => DEFAULT_CA_SIGNATURES,
        }
    }

    /// Every algorithm OpenSSH knows for this list (what a pattern can match).
    pub fn openssh_known(self) -> Vec<&'static str> {
        match self {
            AlgorithmList::Ciphers => ALL_CIPHERS.to_vec(),
            AlgorithmList::Macs => ALL_MACS.to_vec(),
            AlgorithmList::KexAlgorithms => ALL_KEX.to_vec(),
            AlgorithmList::HostKeyAlgorithms | AlgorithmList::PubkeyAcceptedAlgorithms => {
                ALL_KEYS.to_vec()
            }
            AlgorithmList::CaSignatureAlgorithms => ALL_KEYS
                .iter()
                .copied()
                .filter(|k| !is_certificate(k))
                .collect(),
        }
    }

    /// `readconf.c`'s check of a value as read: `Err` is ssh's message for the line.
    pub(crate) fn check(self, value: &str) -> Result<(), String> {
        if value.starts_with('-') {
            return Ok(());
        }
        let names = value
            .strip_prefix('+')
            .or_else(|| value.strip_prefix('^'))
            .unwrap_or(value);
        if self.names_valid(names) {
            return Ok(());
        }
        Err(match self {
            AlgorithmList::Ciphers => format!("Bad SSH2 cipher spec '{value}'."),
            AlgorithmList::Macs => format!("Bad SSH2 MAC spec '{value}'."),
            AlgorithmList::KexAlgorithms => format!("Bad SSH2 KexAlgorithms '{value}'."),
            _ => format!("Bad key types '{value}'."),
        })
    }

    /// `ciphers_valid`, `mac_valid`, `kex_names_valid`, `sshkey_names_valid2`: each name up
    /// to the first empty one must be known (key lists: or a pattern matching a key type;
    /// `CASignatureAlgorithms`: no certificate). Ciphers and MACs need at least one name.
    fn names_valid(self, names: &str) -> bool {
        if names.is_empty() {
            return false;
        }
        let known = self.openssh_known();
        let all_keys = ALL_KEYS;
        let mut found = false;
        for name in names.split(',').take_while(|n| !n.is_empty()) {
            found = true;
            let ok = match self {
                AlgorithmList::Ciphers | AlgorithmList::Macs | AlgorithmList::KexAlgorithms => {
                    known.contains(&name)
                }
                AlgorithmList::HostKeyAlgorithms
                | AlgorithmList::PubkeyAcceptedAlgorithms
                | AlgorithmList::CaSignatureAlgorithms => {
                    if all_keys.contains(&name) {
                        self != AlgorithmList::CaSignatureAlgorithms || !is_certificate(name)
                    } else {
                        all_keys.iter().any(|k| {
                            match_pattern_list(k.as_bytes(), name.as_bytes(), false)
                                != ListMatch::No
                        })
                    }
                }
            };
            if !ok {
                return false;
            }
        }
        found || self == AlgorithmList::KexAlgorithms
    }

    /// The list `ssh` uses for `value` (or the default when `None`), OpenSSH's defaults and
    /// known algorithms.
    pub fn resolve(self, value: Option<&str>) -> Result<Vec<String>, String> {
        assemble(value, self.openssh_default(), &self.openssh_known())
            .map_err(|e| format!("{}: {e}", self.keyword()))
    }
}

/// The six lists of a host, resolved: each as `ssh` uses it, and the value as written when the
/// configuration set it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Algorithms {
    written: BTreeMap<AlgorithmList, String>,
    resolved: BTreeMap<AlgorithmList, Vec<String>>,
}

impl Algorithms {
    /// Resolves each list from its value as written (`written(list)`: `None` when not set).
    pub fn resolve(
        written: impl Fn(AlgorithmList) -> Option<String>,
    ) -> Result<Algorithms, (AlgorithmList, String)> {
        let mut out = Algorithms::default();
        for list in AlgorithmList::ALL {
            let value = written(list);
            let names = list.resolve(value.as_deref()).map_err(|e| (list, e))?;
            out.resolved.insert(list, names);
            if let Some(value) = value {
                out.written.insert(list, value);
            }
        }
        Ok(out)
    }

    /// The list `ssh` would use (OpenSSH's names, in its order).
    pub fn get(&self, list: AlgorithmList) -> &[String] {
        self.resolved.get(&list).map_or(&[], Vec::as_slice)
    }

    /// The value as written in the configuration, if it set one.
    pub fn written(&self, list: AlgorithmList) -> Option<&str> {
        self.written.get(&list).map(String::as_str)
    }

    /// How `explain` shows a list the configuration set (`None`: not set).
    pub(crate) fn shown(&self, list: AlgorithmList) -> Option<String> {
        self.written(list).map(|_| self.get(list).join(","))
    }
}

/// Whether a key algorithm name is a certificate's.
pub fn is_certificate(name: &str) -> bool {
    name.contains("-cert-v01@openssh.com")
}

/// `kex_assemble_names(value, default, all)`: the list for a value as written (`None` or
/// empty: the default). `Err` when nothing is left or a name is a negated pattern.
pub fn assemble(
    value: Option<&str>,
    default: &[&str],
    all: &[&str],
) -> Result<Vec<String>, String> {
    let value = match value {
        None | Some("") => return Ok(default.iter().map(|s| s.to_string()).collect()),
        Some(v) => v,
    };
    if let Some(patterns) = value.strip_prefix('-') {
        return Ok(default
            .iter()
            .filter(|d| {
                match_pattern_list(d.as_bytes(), patterns.as_bytes(), false) != ListMatch::Yes
            })
            .map(|s| s.to_string())
            .collect());
    }
    let list: Vec<String> = if let Some(added) = value.strip_prefix('+') {
        names_cat(
            &default.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            added,
        )
    } else if let Some(first) = value.strip_prefix('^') {
        names_cat(&split(first), &default.join(","))
    } else {
        value.split(',').map(str::to_string).collect()
    };
    let mut out: Vec<String> = Vec::new();
    for pattern in &list {
        if pattern.starts_with('!') {
            return Err(format!("negated pattern '{pattern}' in an algorithm list"));
        }
        let matching: Vec<String> = all
            .iter()
            .filter(|a| {
                match_pattern_list(a.as_bytes(), pattern.as_bytes(), false) == ListMatch::Yes
            })
            .map(|s| s.to_string())
            .collect();
        out = names_cat(&out, &matching.join(","));
    }
    if out.is_empty() {
        return Err(format!("no algorithm left in '{value}'"));
    }
    Ok(out)
}

/// `kex_names_cat(a, b)`: `a`, then the names of `b` (up to its first empty one) that `a`
/// does not hold yet.
fn names_cat(a: &[String], b: &str) -> Vec<String> {
    let mut out = a.to_vec();
    if a.is_empty() {
        return split(b);
    }
    for name in b.split(',').take_while(|n| !n.is_empty()) {
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// A comma-separated list, as `strdup` keeps it (empty names too; an empty string is none).
fn split(s: &str) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(',').map(str::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asm(value: &str) -> Vec<String> {
        assemble(
            Some(value),
            &["a1", "b2", "c3"],
            &["a1", "b2", "c3", "d4", "dx"],
        )
        .unwrap()
    }

    #[test]
    fn plain_plus_minus_caret() {
        assert_eq!(asm("c3,a1"), ["c3", "a1"]);
        assert_eq!(asm("+d4"), ["a1", "b2", "c3", "d4"]);
        assert_eq!(asm("+a1,d4"), ["a1", "b2", "c3", "d4"], "no duplicates");
        assert_eq!(asm("^d4,c3"), ["d4", "c3", "a1", "b2"]);
        assert_eq!(asm("-b2"), ["a1", "c3"]);
        assert_eq!(asm("-?2,c*"), ["a1"]);
        assert_eq!(
            assemble(None, &["a1"], &["a1"]).unwrap(),
            ["a1"],
            "unset: the default"
        );
    }

    #[test]
    fn patterns_expand_to_known_names() {
        assert_eq!(asm("d*"), ["d4", "dx"]);
        assert_eq!(asm("+d*"), ["a1", "b2", "c3", "d4", "dx"]);
        assert_eq!(asm("^?x"), ["dx", "a1", "b2", "c3"]);
        assert_eq!(asm("a1,zz,b2"), ["a1", "b2"], "unknown names match nothing");
        // A `-` pattern matching a name that is not in the default changes nothing.
        assert_eq!(asm("-d4"), ["a1", "b2", "c3"]);
        // `-*` leaves nothing, which `kex_assemble_names` does not check.
        assert!(asm("-*").is_empty());
    }

    #[test]
    fn errors() {
        let e = assemble(Some("zz"), &["a1"], &["a1"]).unwrap_err();
        assert!(e.contains("no algorithm left"), "{e}");
        let e = assemble(Some("a1,!b2"), &["a1"], &["a1", "b2"]).unwrap_err();
        assert!(e.contains("negated"), "{e}");
    }

    #[test]
    fn readconf_checks() {
        use AlgorithmList as L;
        assert!(
            L::Ciphers
                .check("aes128-ctr,aes256-gcm@openssh.com")
                .is_ok()
        );
        assert!(L::Ciphers.check("+aes128-cbc").is_ok());
        assert!(
            L::Ciphers.check("-whatever*").is_ok(),
            "- lists are not checked"
        );
        assert_eq!(
            L::Ciphers.check("aes*").unwrap_err(),
            "Bad SSH2 cipher spec 'aes*'."
        );
        assert!(L::Ciphers.check("none").is_err(), "none is internal");
        assert!(L::Ciphers.check("+").is_err());
        assert_eq!(
            L::Macs.check("^hmac-md4").unwrap_err(),
            "Bad SSH2 MAC spec '^hmac-md4'."
        );
        assert_eq!(
            L::KexAlgorithms.check("curve25519").unwrap_err(),
            "Bad SSH2 KexAlgorithms 'curve25519'."
        );
        assert!(L::KexAlgorithms.check("mlkem768x25519-sha256").is_ok());
        assert!(
            L::HostKeyAlgorithms
                .check("ssh-ed25519*,rsa-sha2-512")
                .is_ok()
        );
        assert_eq!(
            L::HostKeyAlgorithms.check("ssh-foo*").unwrap_err(),
            "Bad key types 'ssh-foo*'."
        );
        assert!(
            L::HostKeyAlgorithms.check("ssh-dss").is_err(),
            "DSA is gone in 10.x"
        );
        assert!(L::CaSignatureAlgorithms.check("ssh-ed25519").is_ok());
        assert!(
            L::CaSignatureAlgorithms
                .check("ssh-ed25519-cert-v01@openssh.com")
                .is_err()
        );
        // Names after an empty one are not checked (the loops stop there).
        assert!(L::Ciphers.check("aes128-ctr,,bogus").is_ok());
    }

    #[test]
    fn defaults_are_openssh_10() {
        use AlgorithmList as L;
        assert_eq!(
            L::KexAlgorithms.resolve(None).unwrap()[0],
            "mlkem768x25519-sha256"
        );
        assert_eq!(
            L::Ciphers.resolve(None).unwrap()[..2],
            ["chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com"]
        );
        assert_eq!(
            L::Ciphers.resolve(Some("-chacha*")).unwrap()[0],
            "aes128-gcm@openssh.com"
        );
        assert_eq!(
            L::CaSignatureAlgorithms
                .resolve(Some("+ssh-rsa"))
                .unwrap()
                .last()
                .unwrap(),
            "ssh-rsa"
        );
        for list in L::ALL {
            let known = list.openssh_known();
            for d in list.openssh_default() {
                assert!(known.contains(d), "{list:?}: default {d} is known");
            }
        }
    }
}
