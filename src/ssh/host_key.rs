//! The host key check, as `ssh`'s `check_host_key()` (sshconnect.c) makes it: what
//! known_hosts says about the offered key ([`KeyStatus`]), what `StrictHostKeyChecking`,
//! `BatchMode` and whether anyone can be asked make of it ([`decide`], pure, and
//! [`answered`] for the answer to the question), and the I/O around the decision
//! ([`HostKeyCheck`]: loading known_hosts, asking, recording an accepted key).
//!
//! Changed and revoked keys are always refused, whatever `StrictHostKeyChecking` says.
//! `CheckHostIP` is not implemented (OpenSSH's default is `no` since 8.5).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::{PublicKey, PublicKeyOrCertificate};
use tracing::{debug, warn};

use crate::config::known_hosts::{self, CertRefusal, KnownHostsFile, Verdict};
use crate::config::{AlgorithmList, StrictHostKeyChecking};
use crate::error::{HopError, HopLabel};
use crate::event::{Event, Observer};
use crate::plan::chain::Hop;
use crate::ssh::algorithms;
use crate::ssh::prompt::{
    Confirmation, PromptClock, PromptError, PromptKind, PromptRequest, Prompts, parse_confirmation,
};
use crate::ssh::session::ConnectOptions;

/// What known_hosts says about the offered key, without the details messages quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyStatus {
    /// A line vouches for it (the key, or the CA of its certificate).
    Known,
    /// A `@revoked` line lists it.
    Revoked,
    /// Lines for the host hold other keys.
    Changed,
    /// Nothing is known about the host.
    Unknown,
}

impl KeyStatus {
    fn of(verdict: &Verdict) -> Self {
        match verdict {
            Verdict::Known { .. } => KeyStatus::Known,
            Verdict::Revoked { .. } => KeyStatus::Revoked,
            Verdict::Changed { .. } => KeyStatus::Changed,
            Verdict::Unknown => KeyStatus::Unknown,
        }
    }
}

/// What to do with the offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// known_hosts vouches for it.
    Accept,
    /// Unknown, accepted with a warning and not recorded (`StrictHostKeyChecking no`).
    AcceptUnrecorded,
    /// Unknown, accepted and recorded (`accept-new`).
    Record,
    /// Unknown: ask the user (then [`answered`]).
    Ask,
    /// Unknown, the user said yes: accepted, recorded, and the user told so.
    RecordConfirmed,
    /// Revoked: refused.
    RefuseRevoked,
    /// Changed: refused.
    RefuseChanged,
    /// Unknown and refused; the text is the policy as the error states it.
    RefuseUnknown(String),
}

/// The policy text when there is nobody to ask.
const NOBODY_TO_ASK: &str = "ask and there is no terminal or SSH_ASKPASS to ask";

/// The decision for a key in `status` under `policy`; `batch_mode` is `BatchMode yes` (nothing
/// is asked, as `ssh`'s `confirm()`), `can_ask` whether anyone answers questions.
pub(crate) fn decide(
    status: KeyStatus,
    policy: StrictHostKeyChecking,
    batch_mode: bool,
    can_ask: bool,
) -> Decision {
    use StrictHostKeyChecking as P;
    match (status, policy) {
        (KeyStatus::Known, _) => Decision::Accept,
        (KeyStatus::Revoked, _) => Decision::RefuseRevoked,
        (KeyStatus::Changed, _) => Decision::RefuseChanged,
        (KeyStatus::Unknown, P::Yes) => Decision::RefuseUnknown("yes".into()),
        (KeyStatus::Unknown, P::Ask) if batch_mode => {
            Decision::RefuseUnknown("ask and BatchMode yes (nothing is asked)".into())
        }
        (KeyStatus::Unknown, P::Ask) if !can_ask => Decision::RefuseUnknown(NOBODY_TO_ASK.into()),
        (KeyStatus::Unknown, P::Ask) => Decision::Ask,
        (KeyStatus::Unknown, P::No) => Decision::AcceptUnrecorded,
        (KeyStatus::Unknown, P::AcceptNew) => Decision::Record,
    }
}

/// The decision after [`Decision::Ask`], from the answer (`Ok(true)`: yes).
pub(crate) fn answered(answer: Result<bool, PromptError>) -> Decision {
    match answer {
        Ok(true) => Decision::RecordConfirmed,
        Ok(false) => Decision::RefuseUnknown("ask and the answer was no".into()),
        Err(PromptError::Unavailable) => Decision::RefuseUnknown(NOBODY_TO_ASK.into()),
        Err(e) => Decision::RefuseUnknown(format!("ask and the question failed ({e})")),
    }
}

/// Everything the check of one hop's host key needs: the known_hosts files and names, the
/// policy, who to ask and where to record.
pub(crate) struct HostKeyCheck {
    label: HopLabel,
    lookup: known_hosts::HostKeyLookup,
    files: Arc<Vec<KnownHostsFile>>,
    policy: StrictHostKeyChecking,
    write_file: Option<PathBuf>,
    /// `HashKnownHosts`: write new entries hashed, as `ssh` would.
    hash_known_hosts: bool,
    observer: Observer,
    /// Who answers `StrictHostKeyChecking ask`.
    prompts: Option<Prompts>,
    /// `BatchMode yes`: `ask` refuses without asking, as `ssh`'s `confirm()` does.
    batch_mode: bool,
    clock: PromptClock,
    /// `HostKeyAlgorithms`.
    algorithms: HostKeyAlgorithms,
    /// `RequiredRSASize`.
    required_rsa_size: u32,
}

impl HostKeyCheck {
    /// Loads the hop's known_hosts files.
    pub(crate) fn new(
        hop: &Hop,
        opts: &ConnectOptions,
        clock: &PromptClock,
    ) -> Result<Self, HopError> {
        let (plain, certificates, reorder) = algorithms::host_key_algorithms(&hop.config)?;
        Ok(HostKeyCheck {
            algorithms: HostKeyAlgorithms {
                plain,
                certificates,
                reorder,
            },
            required_rsa_size: hop.config.required_rsa_size,
            label: hop.label(),
            files: load_known_hosts(hop, &opts.observer)?,
            lookup: known_hosts::HostKeyLookup::new(
                &hop.config.host_name,
                hop.config.port,
                hop.config.host_key_alias.as_deref(),
            )
            .with_ca_signature_algorithms(
                hop.config
                    .algorithms
                    .get(AlgorithmList::CaSignatureAlgorithms),
            ),
            policy: hop.config.strict_host_key_checking,
            write_file: hop.config.user_known_hosts_files.first().cloned(),
            hash_known_hosts: hop.config.hash_known_hosts,
            observer: opts.observer.clone(),
            prompts: opts.prompts.clone(),
            batch_mode: hop.config.batch_mode,
            clock: clock.clone(),
        })
    }

    /// The host key algorithms to ask the server for (see [`host_key_preferences`]).
    pub(crate) fn preferences(&self) -> russh::Preferred {
        host_key_preferences(&self.files, &self.lookup, &self.algorithms)
    }

    /// Checks the key the server offered: `Ok` to go on, else the refusal.
    pub(crate) async fn verify(&self, key: &PublicKeyOrCertificate) -> Result<(), HopError> {
        let public = offered_key(key);
        let fingerprint = known_hosts::fingerprint(&public);
        // sshconnect.c `verify_host_key()`: `sshkey_check_rsa_length()` first.
        if let Some(bits) = public.key_data().rsa().map(|r| r.key_size())
            && bits < self.required_rsa_size
        {
            return Err(HopError::HostKeyRsaTooSmall {
                fingerprint,
                bits,
                required: self.required_rsa_size,
            });
        }
        let name = self.lookup.name().to_string();
        let verdict = self.lookup.check(&self.files, key);
        let cert = self.certificate_refusal(key, &verdict);
        let can_ask = self.prompts.is_some();
        let decision = match decide(
            KeyStatus::of(&verdict),
            self.policy,
            self.batch_mode,
            can_ask,
        ) {
            Decision::Ask => match &self.prompts {
                Some(prompts) => {
                    answered(self.confirm(prompts, &name, &public, &fingerprint).await)
                }
                None => Decision::RefuseUnknown(NOBODY_TO_ASK.into()),
            },
            other => other,
        };
        let refused = matches!(
            decision,
            Decision::RefuseUnknown(_) | Decision::RefuseChanged | Decision::RefuseRevoked
        );
        if let (Some(why), false) = (&cert, refused) {
            // ssh prints the reason at error level and goes on with the plain key.
            self.observer.emit(Event::Warning(format!(
                "{}: the host certificate for {name} was not accepted: {why}; checking its key \
                 as a plain key",
                self.label
            )));
        }
        let how = self.carry_out(decision, verdict, name, &fingerprint, &public, cert)?;
        debug!(hop = %self.label, %fingerprint, %how, "host key verified");
        self.observer.emit(Event::HostKeyVerified {
            hop: self.label.clone(),
            fingerprint,
            how,
        });
        Ok(())
    }

    /// Does what `decision` says (records, warns, or makes the refusal); returns how the key
    /// was verified, for the progress report.
    fn carry_out(
        &self,
        decision: Decision,
        verdict: Verdict,
        name: String,
        fingerprint: &str,
        public: &PublicKey,
        cert: Option<CertRefusal>,
    ) -> Result<String, HopError> {
        match decision {
            Decision::Accept | Decision::RefuseRevoked | Decision::RefuseChanged => {
                self.as_on_file(verdict, name, fingerprint, cert)
            }
            Decision::RecordConfirmed => {
                let file = self.add_known_host(&name, public)?;
                self.observer.emit(Event::Warning(format!(
                    "{}: permanently added '{name}' ({}) to the list of known hosts ({})",
                    self.label,
                    key_type_name(public),
                    file.display()
                )));
                Ok(format!(
                    "accepted at the prompt; added to {}",
                    file.display()
                ))
            }
            Decision::AcceptUnrecorded => {
                self.observer.emit(Event::Warning(format!(
                    "{}: host key {fingerprint} for {name} is not known; accepted because \
                     StrictHostKeyChecking is no",
                    self.label
                )));
                Ok("accepted unknown key (StrictHostKeyChecking no)".to_string())
            }
            Decision::Record => {
                let file = self.add_known_host(&name, public)?;
                Ok(format!("new key added to {}", file.display()))
            }
            Decision::RefuseUnknown(policy) => {
                Err(self.unknown(name, fingerprint.into(), policy, cert))
            }
            // Resolved by asking before this is called.
            Decision::Ask => {
                Err(self.unknown(name, fingerprint.into(), NOBODY_TO_ASK.into(), cert))
            }
        }
    }

    /// The outcome known_hosts alone decides: known (how), revoked or changed (the refusal).
    fn as_on_file(
        &self,
        verdict: Verdict,
        name: String,
        fingerprint: &str,
        cert: Option<CertRefusal>,
    ) -> Result<String, HopError> {
        let fingerprint = fingerprint.to_string();
        match verdict {
            Verdict::Known {
                path,
                line,
                cert_authority: false,
            } => Ok(format!("known_hosts {}:{line}", path.display())),
            Verdict::Known {
                path,
                line,
                cert_authority: true,
            } => Ok(format!(
                "host certificate signed by the @cert-authority key at known_hosts {}:{line}",
                path.display()
            )),
            Verdict::Revoked { path, line } => Err(HopError::HostKeyRevoked {
                name,
                fingerprint,
                at: format!("{}:{line}", path.display()),
            }),
            Verdict::Changed { known } => Err(HopError::HostKeyChanged {
                name,
                fingerprint,
                known: known
                    .iter()
                    .map(|k| format!("{}:{} ({})", k.path.display(), k.line, k.fingerprint_sha256))
                    .collect::<Vec<_>>()
                    .join(", "),
                certificate: cert.map(Box::new),
            }),
            // `decide` refuses unknown keys under `yes`, the strictest reading.
            Verdict::Unknown => Err(self.unknown(name, fingerprint, "yes".into(), cert)),
        }
    }
}

/// Every known_hosts file of the hop, user files first; malformed lines are reported.
fn load_known_hosts(hop: &Hop, observer: &Observer) -> Result<Arc<Vec<KnownHostsFile>>, HopError> {
    let mut files = Vec::new();
    for path in hop
        .config
        .user_known_hosts_files
        .iter()
        .chain(&hop.config.global_known_hosts_files)
    {
        let file = KnownHostsFile::load(path).map_err(|source| HopError::KnownHosts {
            path: path.clone(),
            source,
        })?;
        for warning in file.warnings() {
            warn!(%warning, "malformed known_hosts line");
            observer.emit(Event::Warning(warning.to_string()));
        }
        files.push(file);
    }
    Ok(Arc::new(files))
}

/// Host key algorithms in `ssh`'s order for this host: `HostKeyAlgorithms` (russh's
/// algorithms of it, see `ssh::algorithms`), reordered as `order_hostkeyalgs()` does when
/// `ssh` would (the list not set, or only appended to or taken from): types already in
/// known_hosts first, so a host known by its RSA key is not reported as changed because the
/// server prefers Ed25519. Host certificates (those the list allows) are asked for when a
/// `@cert-authority` line applies to the host.
fn host_key_preferences(
    files: &[KnownHostsFile],
    lookup: &known_hosts::HostKeyLookup,
    algorithms: &HostKeyAlgorithms,
) -> russh::Preferred {
    let name = lookup.name();
    let key = if algorithms.reorder {
        known_hosts::order_host_key_algorithms(files, name, &algorithms.plain)
    } else {
        algorithms.plain.clone()
    };
    // A CA line for the port-less name vouches too (ssh retries certificates under it), and
    // ssh asks for certificates first by default.
    let ca = known_hosts::has_cert_authority(files, name)
        || lookup
            .fallback()
            .is_some_and(|f| known_hosts::has_cert_authority(files, f));
    let certificates: Vec<russh::keys::Algorithm> = if ca {
        algorithms
            .certificates
            .iter()
            .filter(|a| !matches!(a, russh::keys::Algorithm::Rsa { hash: None }))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    russh::Preferred {
        key: key.into(),
        host_key_certificates: certificates.into(),
        ..russh::Preferred::default()
    }
}

/// A hop's `HostKeyAlgorithms` as russh's algorithms.
#[derive(Debug, Clone)]
pub(crate) struct HostKeyAlgorithms {
    /// Plain key algorithms, in order.
    pub(crate) plain: Vec<russh::keys::Algorithm>,
    /// The algorithms whose certificates may be asked for, in order.
    pub(crate) certificates: Vec<russh::keys::Algorithm>,
    /// Whether known_hosts reorders them (`ssh_kex2`).
    pub(crate) reorder: bool,
}

fn offered_key(key: &PublicKeyOrCertificate) -> PublicKey {
    match key {
        PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
        PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
    }
}

impl HostKeyCheck {
    fn unknown(
        &self,
        name: String,
        fingerprint: String,
        policy: String,
        certificate: Option<CertRefusal>,
    ) -> HopError {
        HopError::HostKeyUnknown {
            name,
            fingerprint,
            policy,
            certificate: certificate.map(Box::new),
            file: self
                .write_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "~/.ssh/known_hosts".into()),
        }
    }

    /// Why the host certificate the server presented did not vouch for it (`None`: no
    /// certificate, or it vouched, or it is revoked, which the verdict says).
    fn certificate_refusal(
        &self,
        key: &PublicKeyOrCertificate,
        verdict: &Verdict,
    ) -> Option<CertRefusal> {
        match (key, verdict) {
            (
                _,
                Verdict::Revoked { .. }
                | Verdict::Known {
                    cert_authority: true,
                    ..
                },
            ) => None,
            (PublicKeyOrCertificate::Certificate(cert), _) => {
                self.lookup.certificate_refusal(&self.files, cert)
            }
            (PublicKeyOrCertificate::PublicKey { .. }, _) => None,
        }
    }

    /// Writes the entry `ssh` would write for a newly accepted key (accept-new, or `yes` at
    /// the prompt): to the first UserKnownHostsFile, hashed when HashKnownHosts is yes.
    fn add_known_host(&self, name: &str, public: &PublicKey) -> Result<PathBuf, HopError> {
        let Some(file) = &self.write_file else {
            return Err(HopError::NoKnownHostsFile);
        };
        append_known_host(file, name, public, self.hash_known_hosts).map_err(|source| {
            HopError::KnownHostsWrite {
                path: file.clone(),
                source,
            }
        })?;
        Ok(file.clone())
    }

    /// OpenSSH's question for an unknown host key (sshconnect.c), asked until the answer is
    /// yes, no or the fingerprint (at most [`HOST_KEY_QUESTIONS`] times).
    async fn confirm(
        &self,
        prompts: &Prompts,
        name: &str,
        public: &PublicKey,
        fingerprint: &str,
    ) -> Result<bool, PromptError> {
        let preamble = vec![
            format!(
                "The authenticity of host '{name}' ({}) can't be established.",
                self.label.addr
            ),
            format!(
                "{} key fingerprint is {fingerprint}.",
                key_type_name(public)
            ),
        ];
        let mut prompt =
            "Are you sure you want to continue connecting (yes/no/[fingerprint])? ".to_string();
        for round in 0..HOST_KEY_QUESTIONS {
            let request = PromptRequest {
                hop: self.label.clone(),
                kind: PromptKind::HostKey,
                preamble: if round == 0 {
                    preamble.clone()
                } else {
                    Vec::new()
                },
                prompt: prompt.clone(),
                echo: true,
            };
            let answer = prompts.ask(request, &self.clock).await?;
            match parse_confirmation(&answer, fingerprint) {
                Confirmation::Yes => return Ok(true),
                Confirmation::No => return Ok(false),
                Confirmation::Again => {
                    prompt = "Please type 'yes', 'no' or the fingerprint: ".into();
                }
            }
        }
        Ok(false)
    }
}

/// How often the host key question is repeated after answers that are neither yes nor no.
const HOST_KEY_QUESTIONS: usize = 5;

/// The key type as `ssh` names it in messages (`ED25519`, `RSA`, `ECDSA`).
fn key_type_name(key: &PublicKey) -> String {
    use russh::keys::Algorithm;
    match key.algorithm() {
        Algorithm::Ed25519 => "ED25519".into(),
        Algorithm::Rsa { .. } => "RSA".into(),
        Algorithm::Ecdsa { .. } => "ECDSA".into(),
        Algorithm::Dsa => "DSA".into(),
        other => other.as_str().to_uppercase(),
    }
}

/// Appends the line `ssh` writes for a new key (hashed when `HashKnownHosts yes`),
/// creating the file (0600, parent 0700) if needed.
fn append_known_host(
    file: &Path,
    name: &str,
    key: &PublicKey,
    hashed: bool,
) -> std::io::Result<()> {
    let line = known_hosts::format_entry(name, key, hashed)?;
    known_hosts::append_entry(file, &line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use StrictHostKeyChecking as P;

    const STATUSES: [KeyStatus; 4] = [
        KeyStatus::Known,
        KeyStatus::Revoked,
        KeyStatus::Changed,
        KeyStatus::Unknown,
    ];
    const POLICIES: [P; 4] = [P::Yes, P::AcceptNew, P::No, P::Ask];

    /// Every combination of status x StrictHostKeyChecking x BatchMode x can-ask: each row is
    /// (status, policy, BatchMode, can ask, decision), `None` meaning any value; every
    /// combination must match exactly one row.
    #[allow(clippy::type_complexity)]
    fn table() -> Vec<(
        Option<KeyStatus>,
        Option<P>,
        Option<bool>,
        Option<bool>,
        Decision,
    )> {
        let refuse = |s: &str| Decision::RefuseUnknown(s.into());
        let (any_p, any_b) = (None, None);
        vec![
            // What known_hosts vouches for or refuses does not depend on the policy.
            (
                Some(KeyStatus::Known),
                any_p,
                any_b,
                any_b,
                Decision::Accept,
            ),
            (
                Some(KeyStatus::Revoked),
                any_p,
                any_b,
                any_b,
                Decision::RefuseRevoked,
            ),
            (
                Some(KeyStatus::Changed),
                any_p,
                any_b,
                any_b,
                Decision::RefuseChanged,
            ),
            // Unknown keys.
            (
                Some(KeyStatus::Unknown),
                Some(P::Yes),
                any_b,
                any_b,
                refuse("yes"),
            ),
            (
                Some(KeyStatus::Unknown),
                Some(P::No),
                any_b,
                any_b,
                Decision::AcceptUnrecorded,
            ),
            (
                Some(KeyStatus::Unknown),
                Some(P::AcceptNew),
                any_b,
                any_b,
                Decision::Record,
            ),
            (
                Some(KeyStatus::Unknown),
                Some(P::Ask),
                Some(true),
                any_b,
                refuse("ask and BatchMode yes (nothing is asked)"),
            ),
            (
                Some(KeyStatus::Unknown),
                Some(P::Ask),
                Some(false),
                Some(false),
                refuse("ask and there is no terminal or SSH_ASKPASS to ask"),
            ),
            (
                Some(KeyStatus::Unknown),
                Some(P::Ask),
                Some(false),
                Some(true),
                Decision::Ask,
            ),
        ]
    }

    #[test]
    fn decision_table() {
        let rows = table();
        for status in STATUSES {
            for policy in POLICIES {
                for batch in [false, true] {
                    for can_ask in [false, true] {
                        let matching: Vec<_> = rows
                            .iter()
                            .filter(|(s, p, b, a, _)| {
                                s.is_none_or(|s| s == status)
                                    && p.is_none_or(|p| p == policy)
                                    && b.is_none_or(|b| b == batch)
                                    && a.is_none_or(|a| a == can_ask)
                            })
                            .collect();
                        let case = format!("{status:?} {policy:?} batch={batch} ask={can_ask}");
                        assert_eq!(matching.len(), 1, "{case}: rows {matching:?}");
                        assert_eq!(
                            decide(status, policy, batch, can_ask),
                            matching[0].4,
                            "{case}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_answer_decides() {
        assert_eq!(answered(Ok(true)), Decision::RecordConfirmed);
        assert_eq!(
            answered(Ok(false)),
            Decision::RefuseUnknown("ask and the answer was no".into())
        );
        assert_eq!(
            answered(Err(PromptError::Unavailable)),
            Decision::RefuseUnknown("ask and there is no terminal or SSH_ASKPASS to ask".into())
        );
        assert_eq!(
            answered(Err(PromptError::Cancelled)),
            Decision::RefuseUnknown(format!(
                "ask and the question failed ({})",
                PromptError::Cancelled
            ))
        );
    }
}
