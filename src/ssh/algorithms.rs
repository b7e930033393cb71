//! From a hop's resolved algorithm lists (`config::algorithms`, OpenSSH's names in `ssh`'s
//! order) to what russh offers: each list keeps its order and drops what russh does not
//! implement. What russh implements is read from russh's own lists
//! (`russh::kex::ALL_KEX_ALGORITHMS`, `russh::cipher::ALL_CIPHERS`,
//! `russh::mac::ALL_MAC_ALGORITHMS`, `russh::compression::ALL_COMPRESSION_ALGORITHMS` and the
//! host key algorithms of `russh::Preferred::DEFAULT`), so an algorithm added to russh is
//! offered as soon as the configuration allows it. A list of which russh implements nothing
//! is refused before connecting ([`HopError::NoImplementedAlgorithm`]).
//!
//! The protocol extensions russh announces in its key exchange list (`ext-info-c`, the strict
//! key exchange marker `kex-strict-c-v00@openssh.com`, both in `Preferred::DEFAULT.kex`) are
//! appended, as russh's default list has them.

use std::borrow::Cow;

use russh::keys::Algorithm;

use crate::config::{AlgorithmList, HostConfig};
use crate::error::HopError;

/// The names of `wanted` russh implements (from `implemented`), in `wanted`'s order; none is
/// an error naming the list and what russh lacks.
fn pick<N: AsRef<str> + Copy>(
    list: AlgorithmList,
    wanted: &[String],
    implemented: &[&N],
) -> Result<Vec<N>, HopError> {
    let kept: Vec<N> = wanted
        .iter()
        .filter_map(|w| implemented.iter().find(|n| n.as_ref() == w).map(|n| **n))
        .collect();
    if kept.is_empty() {
        return Err(HopError::NoImplementedAlgorithm {
            keyword: list.keyword(),
            wanted: wanted.join(","),
        });
    }
    Ok(kept)
}

/// The key exchange, cipher, MAC and compression preferences for a hop (host key
/// algorithms: [`host_key_algorithms`]).
pub(crate) fn preferred(c: &HostConfig) -> Result<russh::Preferred, HopError> {
    let a = &c.algorithms;
    let mut kex = pick(
        AlgorithmList::KexAlgorithms,
        a.get(AlgorithmList::KexAlgorithms),
        russh::kex::ALL_KEX_ALGORITHMS,
    )?;
    // russh's extension markers, which it announces through the kex list (they are in its
    // default list, not among its algorithms).
    kex.extend([
        russh::kex::EXTENSION_SUPPORT_AS_CLIENT,
        russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
    ]);
    let mut cipher = pick(
        AlgorithmList::Ciphers,
        a.get(AlgorithmList::Ciphers),
        russh::cipher::ALL_CIPHERS,
    )?;
    // The user's (or the system's) `Ciphers` wins; OpenSSH's default order is ours to tune.
    if a.written(AlgorithmList::Ciphers).is_none() {
        cipher = cipher_order(cipher, aes_in_hardware());
    }
    let mac = pick(
        AlgorithmList::Macs,
        a.get(AlgorithmList::Macs),
        russh::mac::ALL_MAC_ALGORITHMS,
    )?;
    Ok(russh::Preferred {
        kex: Cow::Owned(kex),
        cipher: Cow::Owned(cipher),
        mac: Cow::Owned(mac),
        compression: Cow::Owned(compression(c.compression)),
        ..russh::Preferred::DEFAULT
    })
}

/// OpenSSH's default cipher order with AES-GCM first when the CPU does AES and carry-less
/// multiplication in hardware: AES-256-GCM runs at about 1.4x ChaCha20-Poly1305's speed
/// there (AES-128-GCM 1.6x; `openssl speed`, 32 KB), and the CPU per byte of every hop
/// drops. AES-256-GCM comes first: the longer key, and the one every server pgtunnel meets
/// has (russh's own server has no AES-128-GCM). Without AES in hardware, OpenSSH's order
/// (chacha20-poly1305 first), which is faster in software. Only the order changes.
pub(crate) fn cipher_order(
    mut ciphers: Vec<russh::cipher::Name>,
    aes: bool,
) -> Vec<russh::cipher::Name> {
    if aes {
        let rank = |n: &russh::cipher::Name| match *n {
            russh::cipher::AES_256_GCM => 0,
            russh::cipher::AES_128_GCM => 1,
            _ => 2,
        };
        // A stable sort: the GCM pair first, then the rest as they were.
        ciphers.sort_by_key(rank);
    }
    ciphers
}

/// Whether this CPU has AES and carry-less multiplication instructions (what AES-GCM needs
/// to be fast).
pub fn aes_in_hardware() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// `ssh`'s `compression_alg_list()`: `zlib@openssh.com,none` for `Compression yes`,
/// `none,zlib@openssh.com` otherwise; what russh lacks is left out.
fn compression(yes: bool) -> Vec<russh::compression::Name> {
    let order = if yes {
        ["zlib@openssh.com", "none"]
    } else {
        ["none", "zlib@openssh.com"]
    };
    order
        .iter()
        .filter_map(|w| {
            russh::compression::ALL_COMPRESSION_ALGORITHMS
                .iter()
                .find(|n| n.as_ref() == *w)
                .map(|n| **n)
        })
        .collect()
}

/// The host key algorithms russh implements, as russh names them.
fn implemented_host_keys() -> &'static [Algorithm] {
    &russh::Preferred::DEFAULT.key
}

/// `names` (OpenSSH's host key or signature algorithm names) as russh's algorithms, in order:
/// plain algorithms and, separately, the plain algorithms of the certificate names.
pub(crate) fn key_algorithms(names: &[String]) -> (Vec<Algorithm>, Vec<Algorithm>) {
    let mut plain = Vec::new();
    let mut certificates = Vec::new();
    for name in names {
        for a in implemented_host_keys() {
            if a.to_string() == *name {
                plain.push(a.clone());
            } else if a.to_certificate_type() == *name {
                certificates.push(a.clone());
            }
        }
    }
    (plain, certificates)
}

/// The hop's `HostKeyAlgorithms` as russh's algorithms, and whether `ssh` would reorder them
/// by what known_hosts holds for the host (`sshconnect2.c` `ssh_kex2`: when the list is not
/// set, or only appended to (`+`) or taken from (`-`)). No plain algorithm russh implements
/// is an error.
pub(crate) fn host_key_algorithms(
    c: &HostConfig,
) -> Result<(Vec<Algorithm>, Vec<Algorithm>, bool), HopError> {
    let list = AlgorithmList::HostKeyAlgorithms;
    let names = c.algorithms.get(list);
    let (plain, certificates) = key_algorithms(names);
    if plain.is_empty() && certificates.is_empty() {
        return Err(HopError::NoImplementedAlgorithm {
            keyword: list.keyword(),
            wanted: names.join(","),
        });
    }
    let reorder = c
        .algorithms
        .written(list)
        .is_none_or(|w| w.starts_with('+') || w.starts_with('-'));
    Ok((plain, certificates, reorder))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_order_and_drops_what_russh_lacks() {
        let got = pick(
            AlgorithmList::Ciphers,
            &names(&[
                "aes128-cbc",
                "umac-64@openssh.com",
                "aes256-gcm@openssh.com",
                "3des-cbc",
            ]),
            russh::cipher::ALL_CIPHERS,
        )
        .unwrap();
        let got: Vec<&str> = got.iter().map(|n| n.as_ref()).collect();
        assert_eq!(got[0], "aes128-cbc");
        assert!(got.contains(&"aes256-gcm@openssh.com"));
        assert!(!got.contains(&"umac-64@openssh.com"));
    }

    #[test]
    fn nothing_implemented_is_an_error_naming_the_keyword() {
        let err = pick(
            AlgorithmList::Macs,
            &names(&["umac-64@openssh.com", "hmac-md5"]),
            russh::mac::ALL_MAC_ALGORITHMS,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("MACs") && text.contains("umac-64@openssh.com,hmac-md5"),
            "{text}"
        );
    }

    #[test]
    fn openssh_defaults_become_russh_preferences() {
        let config = crate::plan::chain::fixture::host("");
        let p = preferred(&config).unwrap();
        let kex: Vec<&str> = p.kex.iter().map(|k| k.as_ref()).collect();
        // OpenSSH's order (mlkem768x25519 first), russh's extension markers at the end.
        assert_eq!(kex.first(), Some(&"mlkem768x25519-sha256"));
        assert!(kex.contains(&"ext-info-c"), "{kex:?}");
        assert!(kex.contains(&"kex-strict-c-v00@openssh.com"), "{kex:?}");
        // The markers are those russh's own default list announces.
        for marker in ["ext-info-c", "kex-strict-c-v00@openssh.com"] {
            assert!(
                russh::Preferred::DEFAULT
                    .kex
                    .iter()
                    .any(|k| k.as_ref() == marker)
            );
        }
        assert!(!kex.contains(&"diffie-hellman-group1-sha1"));
        let ciphers: Vec<&str> = p.cipher.iter().map(|k| k.as_ref()).collect();
        let openssh = [
            "chacha20-poly1305@openssh.com",
            "aes128-gcm@openssh.com",
            "aes256-gcm@openssh.com",
            "aes128-ctr",
            "aes192-ctr",
            "aes256-ctr",
        ];
        let with_aes = [
            "aes256-gcm@openssh.com",
            "aes128-gcm@openssh.com",
            "chacha20-poly1305@openssh.com",
            "aes128-ctr",
            "aes192-ctr",
            "aes256-ctr",
        ];
        assert_eq!(ciphers, if aes_in_hardware() { with_aes } else { openssh });
        let names = |l: &[&str]| -> Vec<russh::cipher::Name> {
            l.iter()
                .map(|n| {
                    **russh::cipher::ALL_CIPHERS
                        .iter()
                        .find(|c| c.as_ref() == *n)
                        .unwrap()
                })
                .collect()
        };
        let order = |v: Vec<russh::cipher::Name>| -> Vec<String> {
            v.iter().map(|n| n.as_ref().to_string()).collect()
        };
        assert_eq!(order(cipher_order(names(&openssh), true)), with_aes);
        assert_eq!(order(cipher_order(names(&openssh), false)), openssh);
        // A list without GCM is left as it is.
        let ctr = ["aes256-ctr", "aes128-ctr"];
        assert_eq!(order(cipher_order(names(&ctr), true)), ctr);
        let macs: Vec<&str> = p.mac.iter().map(|k| k.as_ref()).collect();
        assert_eq!(
            macs,
            [
                "hmac-sha2-256-etm@openssh.com",
                "hmac-sha2-512-etm@openssh.com",
                "hmac-sha1-etm@openssh.com",
                "hmac-sha2-256",
                "hmac-sha2-512",
                "hmac-sha1"
            ]
        );
        let comp: Vec<&str> = p.compression.iter().map(|k| k.as_ref()).collect();
        assert_eq!(comp, ["none", "zlib@openssh.com"]);
        assert_eq!(
            compression(true)
                .iter()
                .map(|k| k.as_ref())
                .collect::<Vec<_>>(),
            ["zlib@openssh.com", "none"]
        );
        let (plain, certs, reorder) = host_key_algorithms(&config).unwrap();
        assert!(reorder);
        assert_eq!(plain[0], Algorithm::Ed25519);
        assert!(
            !plain.contains(&Algorithm::Rsa { hash: None }),
            "ssh-rsa is not a default"
        );
        assert_eq!(certs[0], Algorithm::Ed25519);
    }
}
