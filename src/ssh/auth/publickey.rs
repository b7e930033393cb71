//! The `publickey` method: the identities in `pubkey_prepare()`'s order (`CertificateFile`
//! certificates, ssh-agent keys that are also configured, the other agent keys unless
//! `IdentitiesOnly yes`, then the configured or default identity files not in the agent, each
//! followed by its `<file>-cert.pub` when no `CertificateFile` is set), each offered first
//! without a signature; a key file's private half is read (and its passphrase asked for) only
//! when the server would accept it. The one exception saves a round trip: when a hop has only
//! one identity and it signs without asking anyone, its request is signed at once (a query
//! could not lead to another key). RSA signatures are rsa-sha2-512/256, never SHA-1 `ssh-rsa`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{self, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::signature::Signer as _;
use russh::keys::ssh_encoding::Encode;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::private::KeypairData;
use russh::keys::{Algorithm, Certificate, HashAlg, PrivateKey, PublicKey};
use tokio::net::UnixStream;
use tracing::debug;

use super::{Attempts, AuthContext, Step};
use crate::config::{AlgorithmList, HostConfig, known_hosts};
use crate::event::Event;
use crate::plan::chain::Hop;
use crate::ssh::prompt::{PromptError, PromptKind, PromptRequest};

/// What is offered: a plain key or a certificate.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Offer {
    Key(PublicKey),
    Cert(Box<Certificate>),
}

impl Offer {
    fn public(&self) -> PublicKey {
        match self {
            Offer::Key(k) => k.clone(),
            Offer::Cert(c) => PublicKey::from(c.public_key().clone()),
        }
    }

    /// OpenSSH's `sshkey_equal`: same kind, same key (same certificate).
    fn same(&self, other: &Offer) -> bool {
        match (self, other) {
            (Offer::Key(a), Offer::Key(b)) => a.key_data() == b.key_data(),
            (Offer::Cert(a), Offer::Cert(b)) => a.to_bytes().ok() == b.to_bytes().ok(),
            _ => false,
        }
    }
}

/// Who signs for an identity.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SignWith {
    /// ssh-agent holds the private key.
    Agent,
    /// This private key file (read, and its passphrase asked for, when needed).
    File(PathBuf),
}

/// One identity to try, in order.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Identity {
    /// What is offered; `None` for a key file whose public half cannot be read without its
    /// passphrase (it is then read before it is offered, as OpenSSH does).
    pub offer: Option<Offer>,
    pub sign: SignWith,
    /// For messages: the file, or the agent key's comment.
    pub name: String,
}

/// An identity file (or its certificate) from the configuration, with what could be read of it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FileIdentity {
    pub path: PathBuf,
    pub offer: Option<Offer>,
}

/// OpenSSH's `pubkey_prepare()` order (pure): `certs` (CertificateFile, with the private key
/// file that goes with each), agent identities that are also in `files` (in the agent's
/// order), the other agent identities unless `identities_only`, then the rest of `files`.
pub(super) fn order_identities(
    certs: Vec<(Certificate, PathBuf, Option<PathBuf>)>,
    agent: Vec<(Offer, String)>,
    files: Vec<FileIdentity>,
    identities_only: bool,
) -> Vec<Identity> {
    let agent_publics: Vec<PublicKey> = agent.iter().map(|(o, _)| o.public()).collect();
    let mut out = Vec::new();
    for (cert, path, private) in certs {
        let public = PublicKey::from(cert.public_key().clone());
        let in_agent = agent_publics
            .iter()
            .any(|k| k.key_data() == public.key_data());
        let file_with_key = files
            .iter()
            .find(|f| matches!(&f.offer, Some(Offer::Key(k)) if k.key_data() == public.key_data()))
            .map(|f| f.path.clone());
        let sign = if in_agent {
            SignWith::Agent
        } else if let Some(p) = file_with_key.or(private) {
            SignWith::File(p)
        } else {
            continue;
        };
        out.push(Identity {
            offer: Some(Offer::Cert(Box::new(cert))),
            sign,
            name: path.display().to_string(),
        });
    }
    let mut files: Vec<Option<FileIdentity>> = files.into_iter().map(Some).collect();
    let mut others = Vec::new();
    for (offer, comment) in agent {
        let found = files.iter_mut().find(|f| {
            f.as_ref()
                .and_then(|f| f.offer.as_ref())
                .is_some_and(|o| o.same(&offer))
        });
        if let Some(slot) = found
            && let Some(f) = slot.take()
        {
            out.push(Identity {
                offer: Some(offer),
                sign: SignWith::Agent,
                name: f.path.display().to_string(),
            });
        } else if !identities_only {
            others.push(Identity {
                offer: Some(offer),
                sign: SignWith::Agent,
                name: comment,
            });
        }
    }
    out.extend(others);
    for f in files.into_iter().flatten() {
        // A certificate's signature comes from its key file: the path minus "-cert.pub".
        let sign = SignWith::File(f.path.clone());
        out.push(Identity {
            name: f.path.display().to_string(),
            offer: f.offer,
            sign,
        });
    }
    out
}

/// The public half of a key file, as `sshkey_load_public()` finds it: from the file itself
/// (an OpenSSH-format private key carries its public key in the clear, even when encrypted;
/// or an unencrypted key of another format), else from `<file>.pub`.
pub(super) fn read_public(path: &Path) -> Option<PublicKey> {
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Ok(k) = PrivateKey::from_openssh(text.as_bytes()) {
            return Some(k.public_key().clone());
        }
        if let Ok(k) = PublicKey::from_openssh(text.trim()) {
            return Some(k);
        }
        if let Ok(k) = russh::keys::decode_secret_key(&text, None) {
            return Some(k.public_key().clone());
        }
    }
    let mut pubpath = path.as_os_str().to_owned();
    pubpath.push(".pub");
    russh::keys::load_public_key(PathBuf::from(pubpath)).ok()
}

/// A user certificate from `path` (`None` if absent, unreadable or not a user certificate).
pub(super) fn read_user_cert(path: &Path) -> Option<Certificate> {
    let text = std::fs::read_to_string(path).ok()?;
    let cert = Certificate::from_openssh(text.trim()).ok()?;
    (cert.cert_type() == CertType::User).then_some(cert)
}

/// `<key>-cert` or `<key>-cert.pub`, as ssh loads next to each identity file.
fn companion_cert(key: &Path) -> Option<(PathBuf, Certificate)> {
    for suffix in ["-cert", "-cert.pub"] {
        let mut p = key.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        if let Some(c) = read_user_cert(&p) {
            return Some((p, c));
        }
    }
    None
}

/// The key file that goes with a certificate file: `x-cert.pub` -> `x`, `x.pub` -> `x`.
fn key_for_cert(cert: &Path) -> Option<PathBuf> {
    let s = cert.to_str()?;
    let base = s
        .strip_suffix("-cert.pub")
        .or_else(|| s.strip_suffix("-cert"))
        .or_else(|| s.strip_suffix(".pub"))?;
    let p = PathBuf::from(base);
    p.exists().then_some(p)
}

/// Why a key file's private half could not be used.
enum LoadFailure {
    /// Encrypted and nobody to ask.
    Encrypted,
    /// Encrypted, and `BatchMode yes` asks nothing.
    Batch,
    /// Encrypted, and `NumberOfPasswordPrompts 0`.
    NoPrompts,
    /// The user gave no passphrase (empty answer, cancelled).
    NoPassphrase,
    /// Every passphrase tried was wrong (this many).
    WrongPassphrase(u32),
    /// Unreadable, or asking failed.
    Other(String),
}

/// A signer for one identity: ssh-agent, or a key file read on first use.
struct IdentitySigner<'a, 'c> {
    agent: Option<&'a mut AgentClient<UnixStream>>,
    file: Option<PathBuf>,
    loaded: Option<Arc<PrivateKey>>,
    hop: &'a Hop,
    ctx: &'a AuthContext<'c>,
    failure: Option<LoadFailure>,
}

#[derive(Debug)]
enum SignError {
    Send,
    Failed(String),
}

impl From<russh::SendError> for SignError {
    fn from(_: russh::SendError) -> Self {
        SignError::Send
    }
}

/// Signs `data` with `key` and appends the signature blob as an SSH string, as an agent's
/// answer is appended.
fn sign_appended(
    key: &PrivateKey,
    hash: Option<HashAlg>,
    mut data: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let signature = match key.key_data() {
        KeypairData::Rsa(rsa) => (rsa, Some(hash.unwrap_or(HashAlg::Sha512))).try_sign(&data),
        other => other.try_sign(&data),
    }
    .map_err(|e| format!("signing failed: {e}"))?;
    let blob = signature
        .encode_vec()
        .map_err(|e| format!("signing failed: {e}"))?;
    blob.as_slice()
        .encode(&mut data)
        .map_err(|e| format!("signing failed: {e}"))?;
    Ok(data)
}

impl IdentitySigner<'_, '_> {
    /// Whether it signs without asking anyone: ssh-agent (which may still ask for a
    /// confirmation of its own, for a key added with `ssh-add -c`), or a key file already read
    /// or not encrypted (read here, so that signing needs nothing more). An encrypted key
    /// file is offered first: its passphrase is asked for only if the server takes the key.
    fn signs_unasked(&mut self) -> bool {
        if self.agent.is_some() || self.loaded.is_some() {
            return true;
        }
        let Some(path) = &self.file else {
            return false;
        };
        let Ok(text) = std::fs::read_to_string(path).map(zeroize::Zeroizing::new) else {
            return false;
        };
        match russh::keys::decode_secret_key(&text, None) {
            Ok(k) => {
                self.loaded = Some(Arc::new(k));
                true
            }
            Err(_) => false,
        }
    }

    async fn private_key(&mut self) -> Result<Arc<PrivateKey>, SignError> {
        if let Some(k) = &self.loaded {
            return Ok(k.clone());
        }
        let Some(path) = self.file.clone() else {
            return Err(SignError::Failed("no private key".into()));
        };
        match load_private(&path, self.hop, self.ctx).await {
            Ok(k) => {
                let k = Arc::new(k);
                self.loaded = Some(k.clone());
                Ok(k)
            }
            Err(f) => {
                self.failure = Some(f);
                Err(SignError::Failed("key not loaded".into()))
            }
        }
    }
}

impl russh::Signer for IdentitySigner<'_, '_> {
    type Error = SignError;

    #[allow(clippy::manual_async_fn)]
    fn auth_sign(
        &mut self,
        identity: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, Self::Error>> + Send {
        let public = match identity {
            AgentIdentity::PublicKey { key, .. } => key.clone(),
            AgentIdentity::Certificate { certificate, .. } => {
                PublicKey::from(certificate.public_key().clone())
            }
        };
        async move {
            if let Some(agent) = self.agent.as_deref_mut() {
                // Ask for the plain key: the agent holds it for a certificate too.
                let id = AgentIdentity::PublicKey {
                    key: public,
                    comment: String::new(),
                };
                return agent
                    .sign_request(&id, hash_alg, to_sign)
                    .await
                    .map_err(|e| SignError::Failed(format!("ssh-agent: {e}")));
            }
            let key = self.private_key().await?;
            if key.public_key().key_data() != public.key_data() {
                return Err(SignError::Failed(
                    "the private key does not match the public key".into(),
                ));
            }
            sign_appended(&key, hash_alg, to_sign).map_err(SignError::Failed)
        }
    }
}

/// OpenSSH's `load_identity_file()`: the key as is, else up to `NumberOfPasswordPrompts`
/// passphrases (`Enter passphrase for key '<path>': `); an empty answer skips the key.
/// With `BatchMode yes` an encrypted key is skipped without asking.
async fn load_private(
    path: &Path,
    hop: &Hop,
    ctx: &AuthContext<'_>,
) -> Result<PrivateKey, LoadFailure> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| LoadFailure::Other(e.to_string()))?,
    );
    match russh::keys::decode_secret_key(&text, None) {
        Ok(k) => return Ok(k),
        Err(russh::keys::Error::KeyIsEncrypted) => {}
        Err(e) => {
            // OpenSSH-format keys say whether they are encrypted without a passphrase.
            let encrypted = PrivateKey::from_openssh(text.as_bytes())
                .map(|k| k.is_encrypted())
                .unwrap_or(false);
            if !encrypted {
                return Err(LoadFailure::Other(e.to_string()));
            }
        }
    }
    if hop.config.batch_mode {
        return Err(LoadFailure::Batch);
    }
    let tries = hop.config.number_of_password_prompts;
    if tries == 0 {
        return Err(LoadFailure::NoPrompts);
    }
    let Some(prompts) = ctx.prompts else {
        return Err(LoadFailure::Encrypted);
    };
    for _ in 0..tries {
        let request = PromptRequest {
            hop: hop.label(),
            kind: PromptKind::Passphrase,
            preamble: Vec::new(),
            prompt: format!("Enter passphrase for key '{}': ", path.display()),
            echo: false,
        };
        let answer = match prompts.ask(request, ctx.clock).await {
            Ok(a) => a,
            Err(PromptError::Unavailable) => return Err(LoadFailure::Encrypted),
            Err(PromptError::Cancelled) => return Err(LoadFailure::NoPassphrase),
            Err(PromptError::Failed(e)) => return Err(LoadFailure::Other(e)),
        };
        if answer.is_empty() {
            return Err(LoadFailure::NoPassphrase);
        }
        if let Ok(k) = russh::keys::decode_secret_key(&text, Some(answer.as_str())) {
            return Ok(k);
        }
        debug!(hop = %hop.label(), "bad passphrase for {}", path.display());
    }
    Err(LoadFailure::WrongPassphrase(tries))
}

fn describe_load_failure(path: &Path, f: &LoadFailure) -> String {
    match f {
        LoadFailure::Encrypted => format!(
            "{} (encrypted, and there is no terminal or SSH_ASKPASS to ask for its passphrase; \
             add it to ssh-agent with `ssh-add {}`)",
            path.display(),
            path.display()
        ),
        LoadFailure::Batch => format!(
            "{} (encrypted, and BatchMode yes does not ask for its passphrase; add it to \
             ssh-agent with `ssh-add {}`)",
            path.display(),
            path.display()
        ),
        LoadFailure::NoPrompts => format!(
            "{} (encrypted, and NumberOfPasswordPrompts 0 does not ask for its passphrase; add \
             it to ssh-agent with `ssh-add {}`)",
            path.display(),
            path.display()
        ),
        LoadFailure::NoPassphrase => format!("{} (encrypted; no passphrase given)", path.display()),
        LoadFailure::WrongPassphrase(n) => {
            format!("{} (encrypted; wrong passphrase {n} times)", path.display())
        }
        LoadFailure::Other(e) => format!("{} (unusable: {e})", path.display()),
    }
}

pub(super) async fn prepare_identities(
    hop: &Hop,
    agent: Option<&mut AgentClient<UnixStream>>,
    ctx: &AuthContext<'_>,
    log: &mut Attempts,
) -> Vec<Identity> {
    let label = hop.label();
    let mut files = Vec::new();
    for f in &hop.config.identity_files {
        if !f.path.exists() {
            if f.explicit {
                let msg = format!("{} (no such file)", f.path.display());
                ctx.observer
                    .emit(Event::Warning(format!("{label}: identity file {msg}")));
                log.tried.push(msg);
            }
            continue;
        }
        files.push(FileIdentity {
            path: f.path.clone(),
            offer: read_public(&f.path).map(Offer::Key),
        });
        if hop.config.certificate_files.is_empty()
            && let Some((_, cert)) = companion_cert(&f.path)
        {
            files.push(FileIdentity {
                path: f.path.clone(),
                offer: Some(Offer::Cert(Box::new(cert))),
            });
        }
    }
    let mut certs = Vec::new();
    for path in &hop.config.certificate_files {
        match read_user_cert(path) {
            Some(cert) => {
                let private = key_for_cert(path);
                certs.push((cert, path.clone(), private));
            }
            None => {
                let msg = format!("{} (not a readable user certificate)", path.display());
                ctx.observer
                    .emit(Event::Warning(format!("{label}: certificate file {msg}")));
                log.tried.push(msg);
            }
        }
    }
    let mut agent_ids = Vec::new();
    if let Some(agent) = agent {
        match agent.request_identities().await {
            Ok(ids) => {
                for id in ids {
                    match id {
                        AgentIdentity::PublicKey { key, comment } => {
                            agent_ids.push((Offer::Key(key), comment))
                        }
                        AgentIdentity::Certificate {
                            certificate,
                            comment,
                        } => {
                            if certificate.cert_type() == CertType::User {
                                agent_ids.push((Offer::Cert(Box::new(certificate)), comment))
                            }
                        }
                    }
                }
            }
            Err(e) => ctx.observer.emit(Event::Warning(format!(
                "{label}: ssh-agent did not list its keys: {e}"
            ))),
        }
    }
    order_identities(certs, agent_ids, files, hop.config.identities_only)
}

pub(super) async fn try_identity<H: client::Handler>(
    handle: &mut Handle<H>,
    user: &str,
    id: &Identity,
    agent: Option<&mut AgentClient<UnixStream>>,
    hop: &Hop,
    ctx: &AuthContext<'_>,
    round: &mut KeyRound,
) -> Step {
    let (agent, file) = match &id.sign {
        SignWith::Agent => match agent {
            Some(a) => (Some(a), None),
            None => return Step::Skipped(format!("{} (ssh-agent gone)", id.name)),
        },
        SignWith::File(p) => (None, Some(p.clone())),
    };
    let mut signer = IdentitySigner {
        agent,
        file,
        loaded: None,
        hop,
        ctx,
        failure: None,
    };
    // A key file whose public half needs the passphrase: read it first.
    let offer = match &id.offer {
        Some(o) => o.clone(),
        None => match signer.private_key().await {
            Ok(k) => Offer::Key(k.public_key().clone()),
            Err(_) => {
                let f = signer
                    .failure
                    .take()
                    .unwrap_or(LoadFailure::Other("?".into()));
                return Step::Skipped(describe_load_failure(Path::new(&id.name), &f));
            }
        },
    };
    let public = offer.public();
    if let Err(why) = allowed_by_config(&offer, &hop.config) {
        return Step::Skipped(format!("{} ({why})", id.name));
    }
    let accepted = hop
        .config
        .algorithms
        .get(AlgorithmList::PubkeyAcceptedAlgorithms);
    let certificate = matches!(offer, Offer::Cert(_));
    let server_rsa = &mut round.server_rsa;
    let hash = match signature_hash(handle, &public, certificate, accepted, server_rsa).await {
        Ok(hash) => hash,
        Err(why) => return Step::Skipped(format!("{} (RSA: {why})", id.name)),
    };
    let what = describe_offer(&offer, id);
    let at_once = sign_at_once(round.only_key, &public) && signer.signs_unasked();
    if at_once {
        debug!(hop = %hop.label(), "{what}: the only key, signed at once");
    }
    let result = offer_identity(handle, user, offer, hash, &mut signer, at_once).await;
    match result {
        Ok(r) => Step::Answered(what, r),
        Err(SignError::Send) => Step::Skipped(format!("{what} (the session ended)")),
        Err(SignError::Failed(e)) => match signer.failure.take() {
            Some(f) => Step::Skipped(describe_load_failure(
                signer.file.as_deref().unwrap_or(Path::new(&id.name)),
                &f,
            )),
            None => Step::Skipped(format!("{what} ({e})")),
        },
    }
}

/// Sends the request for `offer`: a query first, the signature after the server's PK_OK
/// (OpenSSH's order), or, `at_once`, the signed request straight away.
async fn offer_identity<H: client::Handler>(
    handle: &mut Handle<H>,
    user: &str,
    offer: Offer,
    hash: Option<HashAlg>,
    signer: &mut IdentitySigner<'_, '_>,
    at_once: bool,
) -> Result<client::AuthResult, SignError> {
    match (offer, at_once) {
        (Offer::Key(key), false) => {
            handle
                .authenticate_publickey_with(user, key, hash, signer)
                .await
        }
        (Offer::Key(key), true) => {
            handle
                .authenticate_publickey_signed_with(user, key, hash, signer)
                .await
        }
        (Offer::Cert(cert), false) => {
            handle
                .authenticate_certificate_with(user, *cert, hash, signer)
                .await
        }
        (Offer::Cert(cert), true) => {
            handle
                .authenticate_certificate_signed_with(user, *cert, hash, signer)
                .await
        }
    }
}

/// What one hop's `publickey` attempts share.
#[derive(Debug)]
pub(super) struct KeyRound {
    /// What `server-sig-algs` says about RSA, asked for the first RSA key.
    pub server_rsa: Option<ServerRsa>,
    /// Only one identity will be offered on this hop.
    pub only_key: bool,
}

/// Whether to sign at once instead of asking first whether the server would take the key
/// (pure): only for the one key of the hop, where the query cannot lead to another key and
/// its answer costs a round trip, and never for a security key (`sk-*`), whose signature
/// needs a touch. The signer must also sign without asking (see
/// [`IdentitySigner::signs_unasked`]).
fn sign_at_once(only_key: bool, public: &PublicKey) -> bool {
    only_key
        && !matches!(
            public.algorithm(),
            Algorithm::SkEcdsaSha2NistP256 | Algorithm::SkEd25519
        )
}

/// What an attempt with `offer` is called in messages.
fn describe_offer(offer: &Offer, id: &Identity) -> String {
    match (offer, &id.sign) {
        (Offer::Cert(_), SignWith::Agent) => {
            format!("publickey certificate {} via ssh-agent", id.name)
        }
        (Offer::Cert(_), SignWith::File(_)) => format!("publickey certificate {}", id.name),
        (Offer::Key(k), SignWith::Agent) => format!(
            "publickey {} from ssh-agent ({})",
            known_hosts::fingerprint(k),
            id.name
        ),
        (Offer::Key(_), SignWith::File(p)) => format!("publickey {}", p.display()),
    }
}

/// Whether `PubkeyAcceptedAlgorithms` and `RequiredRSASize` let `offer` be used (`Err`: why
/// not, for the list of what was tried). OpenSSH's `key_type_allowed_by_config()`: the key's
/// type is in the list, or for RSA one of its rsa-sha2 signature names is; and
/// `sshkey_check_rsa_length()`.
pub(super) fn allowed_by_config(offer: &Offer, c: &HostConfig) -> Result<(), String> {
    let accepted = c.algorithms.get(AlgorithmList::PubkeyAcceptedAlgorithms);
    let public = offer.public();
    let (name, rsa_names) = match offer {
        Offer::Key(k) => (
            k.algorithm().as_str().to_string(),
            ["rsa-sha2-512", "rsa-sha2-256"].map(str::to_string),
        ),
        Offer::Cert(cert) => (
            cert.algorithm().to_certificate_type(),
            [
                "rsa-sha2-512-cert-v01@openssh.com",
                "rsa-sha2-256-cert-v01@openssh.com",
            ]
            .map(str::to_string),
        ),
    };
    let is_rsa = public.algorithm().is_rsa();
    let allowed =
        accepted.contains(&name) || (is_rsa && rsa_names.iter().any(|n| accepted.contains(n)));
    if !allowed {
        return Err(format!(
            "its type {name} is not in PubkeyAcceptedAlgorithms"
        ));
    }
    if let Some(bits) = public.key_data().rsa().map(|r| r.key_size())
        && bits < c.required_rsa_size
    {
        return Err(format!(
            "RSA key of {bits} bits, smaller than RequiredRSASize {}",
            c.required_rsa_size
        ));
    }
    Ok(())
}

/// The hash of the signature for `public`: none but the key's own for non-RSA keys; for RSA,
/// what [`rsa_signature`] makes of the server's `server-sig-algs` (asked once per hop) and
/// of `accepted` (`PubkeyAcceptedAlgorithms`).
async fn signature_hash<H: client::Handler>(
    handle: &Handle<H>,
    public: &PublicKey,
    certificate: bool,
    accepted: &[String],
    server_rsa: &mut Option<ServerRsa>,
) -> Result<Option<HashAlg>, &'static str> {
    if !public.algorithm().is_rsa() {
        return Ok(None);
    }
    let server = match server_rsa {
        Some(known) => *known,
        None => *server_rsa.insert(ServerRsa::of(handle).await),
    };
    rsa_signature(server, &rsa_hashes_allowed(accepted, certificate)).map(Some)
}

/// The rsa-sha2 hashes `accepted` allows, in its order.
fn rsa_hashes_allowed(accepted: &[String], certificate: bool) -> Vec<HashAlg> {
    let suffix = if certificate {
        "-cert-v01@openssh.com"
    } else {
        ""
    };
    accepted
        .iter()
        .filter_map(|a| {
            if *a == format!("rsa-sha2-512{suffix}") {
                Some(HashAlg::Sha512)
            } else if *a == format!("rsa-sha2-256{suffix}") {
                Some(HashAlg::Sha256)
            } else {
                None
            }
        })
        .collect()
}

/// What the server's `server-sig-algs` extension says about RSA signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServerRsa {
    /// The server sent no `server-sig-algs`.
    NotSaid,
    /// It lists no rsa-sha2 algorithm.
    Sha1Only,
    /// Its best rsa-sha2 algorithm.
    Sha2(HashAlg),
}

impl ServerRsa {
    /// Asks the session what the server said (russh waits briefly for the extension).
    pub(super) async fn of<H: client::Handler>(handle: &Handle<H>) -> Self {
        match handle.best_supported_rsa_hash().await {
            Ok(Some(Some(hash))) => ServerRsa::Sha2(hash),
            Ok(Some(None)) => ServerRsa::Sha1Only,
            Ok(None) | Err(_) => ServerRsa::NotSaid,
        }
    }
}

/// OpenSSH's `key_sig_algorithm()` for an RSA key or certificate: the server's best rsa-sha2
/// hash if `allowed` (from `PubkeyAcceptedAlgorithms`) has it, else the first `allowed` one
/// (a server that offers rsa-sha2-512 takes rsa-sha2-256 too). Without `server-sig-algs` ssh
/// falls back to the key's own name, `ssh-rsa` (SHA-1), which pgtunnel never signs with: the
/// key is not used (`no mutual signature algorithm`).
fn rsa_signature(server: ServerRsa, allowed: &[HashAlg]) -> Result<HashAlg, &'static str> {
    match server {
        ServerRsa::Sha2(hash) if allowed.contains(&hash) => Ok(hash),
        ServerRsa::Sha2(HashAlg::Sha512) if !allowed.is_empty() => Ok(allowed[0]),
        ServerRsa::Sha2(_) => {
            Err("PubkeyAcceptedAlgorithms allows no rsa-sha2 signature the server accepts")
        }
        ServerRsa::Sha1Only => Err("the server accepts only ssh-rsa SHA-1 signatures"),
        ServerRsa::NotSaid => Err(
            "the server does not say which signature algorithms it accepts (no \
             server-sig-algs), so, as with ssh 8.8 and later, only SHA-1 ssh-rsa would be left, \
             which is not used",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::Algorithm;

    fn key() -> PublicKey {
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .expect("key")
            .public_key()
            .clone()
    }

    fn file(path: &str, k: Option<&PublicKey>) -> FileIdentity {
        FileIdentity {
            path: PathBuf::from(path),
            offer: k.cloned().map(Offer::Key),
        }
    }

    fn names(ids: &[Identity]) -> Vec<(String, bool)> {
        ids.iter()
            .map(|i| (i.name.clone(), i.sign == SignWith::Agent))
            .collect()
    }

    #[test]
    fn order_is_pubkey_prepare() {
        let (a, b, c, d) = (key(), key(), key(), key());
        // Agent holds d (not configured) and b (configured, second file).
        let agent = vec![
            (Offer::Key(d.clone()), "d@agent".to_string()),
            (Offer::Key(b.clone()), "b@agent".to_string()),
        ];
        let files = vec![
            file("/k/a", Some(&a)),
            file("/k/b", Some(&b)),
            file("/k/c", Some(&c)),
            file("/k/enc", None),
        ];
        let ids = order_identities(Vec::new(), agent.clone(), files.clone(), false);
        assert_eq!(
            names(&ids),
            [
                ("/k/b".to_string(), true),
                ("d@agent".to_string(), true),
                ("/k/a".to_string(), false),
                ("/k/c".to_string(), false),
                ("/k/enc".to_string(), false),
            ]
        );
        // IdentitiesOnly: the agent's other keys are left out, configured ones still signed
        // by the agent.
        let ids = order_identities(Vec::new(), agent, files, true);
        assert_eq!(
            names(&ids),
            [
                ("/k/b".to_string(), true),
                ("/k/a".to_string(), false),
                ("/k/c".to_string(), false),
                ("/k/enc".to_string(), false),
            ]
        );
    }

    #[test]
    fn rsa_signatures_are_sha2() {
        let k = PrivateKey::random(&mut rand::rng(), Algorithm::Rsa { hash: None }).expect("rsa");
        for (hash, name) in [
            (None, "rsa-sha2-512"),
            (Some(HashAlg::Sha256), "rsa-sha2-256"),
            (Some(HashAlg::Sha512), "rsa-sha2-512"),
        ] {
            let out = sign_appended(&k, hash, b"data".to_vec()).expect("sign");
            assert!(out.starts_with(b"data"));
            let blob = &out[4 + 4..];
            let alg_len = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
            assert_eq!(&blob[4..4 + alg_len], name.as_bytes());
        }
    }

    const BOTH: [HashAlg; 2] = [HashAlg::Sha512, HashAlg::Sha256];

    use crate::plan::chain::fixture::host;

    #[test]
    fn pubkey_accepted_algorithms_and_required_rsa_size_filter_identities() {
        let ed = Offer::Key(key());
        let rsa = Offer::Key(
            PrivateKey::random(&mut rand::rng(), Algorithm::Rsa { hash: None })
                .map(|k| k.public_key().clone())
                .expect("rsa"),
        );
        assert!(allowed_by_config(&ed, &host("")).is_ok());
        let c = host("PubkeyAcceptedAlgorithms rsa-sha2-512\n");
        let err = allowed_by_config(&ed, &c).unwrap_err();
        assert_eq!(
            err,
            "its type ssh-ed25519 is not in PubkeyAcceptedAlgorithms"
        );
        // RSA keys are allowed by their rsa-sha2 names (the key's own is ssh-rsa).
        assert_eq!(allowed_by_config(&rsa, &c), Ok(()));
        let err = allowed_by_config(&rsa, &host("RequiredRSASize 16384\n")).unwrap_err();
        assert!(err.contains("smaller than RequiredRSASize 16384"), "{err}");
        let err = allowed_by_config(&rsa, &host("PubkeyAcceptedAlgorithms -rsa-*\n")).unwrap_err();
        assert!(
            err.contains("ssh-rsa is not in PubkeyAcceptedAlgorithms"),
            "{err}"
        );
    }

    #[test]
    fn rsa_signature_as_key_sig_algorithm() {
        assert_eq!(
            rsa_signature(ServerRsa::Sha2(HashAlg::Sha512), &BOTH),
            Ok(HashAlg::Sha512)
        );
        assert_eq!(
            rsa_signature(ServerRsa::Sha2(HashAlg::Sha256), &BOTH),
            Ok(HashAlg::Sha256)
        );
        assert!(
            rsa_signature(ServerRsa::Sha1Only, &BOTH).is_err_and(|e| e.contains("only ssh-rsa"))
        );
        assert!(
            rsa_signature(ServerRsa::NotSaid, &BOTH)
                .is_err_and(|e| e.contains("no server-sig-algs"))
        );
        // PubkeyAcceptedAlgorithms rsa-sha2-256: used with a server that prefers 512.
        assert_eq!(
            rsa_signature(ServerRsa::Sha2(HashAlg::Sha512), &[HashAlg::Sha256]),
            Ok(HashAlg::Sha256)
        );
        assert!(rsa_signature(ServerRsa::Sha2(HashAlg::Sha256), &[HashAlg::Sha512]).is_err());
        assert!(rsa_signature(ServerRsa::Sha2(HashAlg::Sha512), &[]).is_err());
        let accepted: Vec<String> = [
            "ssh-ed25519",
            "rsa-sha2-256",
            "rsa-sha2-512-cert-v01@openssh.com",
        ]
        .map(str::to_string)
        .to_vec();
        assert_eq!(rsa_hashes_allowed(&accepted, false), [HashAlg::Sha256]);
        assert_eq!(rsa_hashes_allowed(&accepted, true), [HashAlg::Sha512]);
    }

    #[test]
    fn cert_files_go_with_their_keys() {
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("id");
        std::fs::write(&key, "x").expect("write");
        assert_eq!(
            key_for_cert(&dir.path().join("id-cert.pub")),
            Some(key.clone())
        );
        assert_eq!(key_for_cert(&dir.path().join("id.pub")), Some(key));
        assert_eq!(key_for_cert(&dir.path().join("other-cert.pub")), None);
    }
}
