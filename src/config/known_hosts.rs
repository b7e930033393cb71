//! known_hosts matching (temporary minimal version; replaced by the full matcher).

use std::path::{Path, PathBuf};

use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};

/// A parsed known_hosts file.
#[derive(Debug, Clone, Default)]
pub struct KnownHostsFile {
    path: PathBuf,
    entries: Vec<(usize, Vec<String>, PublicKey)>,
}

/// A key known for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownKey {
    /// File.
    pub path: PathBuf,
    /// Line.
    pub line: usize,
    /// Fingerprint.
    pub fingerprint_sha256: String,
}

/// The verdict on an offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Known.
    Known {
        /// File.
        path: PathBuf,
        /// Line.
        line: usize,
    },
    /// Revoked.
    Revoked {
        /// File.
        path: PathBuf,
        /// Line.
        line: usize,
    },
    /// Changed.
    Changed {
        /// Keys on file.
        known: Vec<KnownKey>,
    },
    /// Unknown.
    Unknown,
}

impl KnownHostsFile {
    /// Parses.
    pub fn parse(text: &str, path: &Path) -> Self {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let mut f = line.split_whitespace();
            let (Some(hosts), Some(kt), Some(b64)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if let Ok(k) = PublicKey::from_openssh(&format!("{kt} {b64}")) {
                entries.push((i + 1, hosts.split(',').map(str::to_string).collect(), k));
            }
        }
        KnownHostsFile {
            path: path.to_path_buf(),
            entries,
        }
    }
    /// Loads; missing = empty.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(t) => Ok(Self::parse(&t, path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::parse("", path)),
            Err(e) => Err(e),
        }
    }
}

/// SHA256 fingerprint.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Checks a key.
pub fn check(files: &[KnownHostsFile], name: &str, key: &PublicKeyOrCertificate) -> Verdict {
    let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
        return Verdict::Unknown;
    };
    let mut known = Vec::new();
    for f in files {
        for (line, hosts, k) in &f.entries {
            if hosts.iter().any(|h| h == name) {
                if k.key_data() == key.key_data() {
                    return Verdict::Known {
                        path: f.path.clone(),
                        line: *line,
                    };
                }
                if k.algorithm() == key.algorithm() {
                    known.push(KnownKey {
                        path: f.path.clone(),
                        line: *line,
                        fingerprint_sha256: fingerprint(k),
                    });
                }
            }
        }
    }
    if known.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Changed { known }
    }
}
