//! User authentication on one hop, as OpenSSH's `ssh` does it (sshconnect2.c):
//!
//! - a `none` request first, to learn the methods the server accepts;
//! - then, in OpenSSH's default order, `publickey`, `keyboard-interactive`, `password`, each
//!   only if the server lists it and the config enables it (`PubkeyAuthentication`,
//!   `KbdInteractiveAuthentication`, `PasswordAuthentication`); after a partial success
//!   (`AuthenticationMethods a,b` on the server) the methods start over;
//! - identities in `pubkey_prepare()`'s order: `CertificateFile` certificates, ssh-agent keys
//!   that are also configured, the other agent keys (not with `IdentitiesOnly yes`), then the
//!   configured (or default) identity files not in the agent, each followed by its
//!   `<file>-cert.pub` when no `CertificateFile` is set;
//! - every key is first offered without a signature; a key file's private half is read (and
//!   its passphrase asked for) only when the server would accept it;
//! - RSA signatures are rsa-sha2-512/256, never SHA-1 `ssh-rsa`.
//!
//! Questions go through [`crate::ssh::prompt::Prompts`]; without one, encrypted keys, passwords and
//! keyboard-interactive are skipped and the failure says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{self, AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::signature::Signer as _;
use russh::keys::ssh_encoding::Encode;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::private::KeypairData;
use russh::keys::{Certificate, HashAlg, PrivateKey, PublicKey};
use russh::{MethodKind, MethodSet};
use tokio::net::UnixStream;
use tracing::debug;

use crate::config::known_hosts;
use crate::error::{HopError, SshStage};
use crate::event::{Event, Observer};
use crate::plan::chain::Hop;
use crate::ssh::prompt::{PromptClock, PromptError, PromptKind, PromptRequest, Prompts};

/// Keyboard-interactive rounds (INFO_REQUESTs) accepted within one attempt.
const MAX_INFO_REQUESTS: usize = 16;
/// Authentication requests sent on one hop, all methods together.
const MAX_REQUESTS: usize = 256;

/// What authentication needs besides the hop.
pub(crate) struct AuthContext<'a> {
    pub observer: &'a Observer,
    pub prompts: Option<&'a Prompts>,
    pub clock: &'a PromptClock,
    pub agent: Option<PathBuf>,
}

/// What is offered: a plain key or a certificate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Offer {
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
pub(crate) enum SignWith {
    /// ssh-agent holds the private key.
    Agent,
    /// This private key file (read, and its passphrase asked for, when needed).
    File(PathBuf),
}

/// One identity to try, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Identity {
    /// What is offered; `None` for a key file whose public half cannot be read without its
    /// passphrase (it is then read before it is offered, as OpenSSH does).
    pub offer: Option<Offer>,
    pub sign: SignWith,
    /// For messages: the file, or the agent key's comment.
    pub name: String,
}

/// An identity file (or its certificate) from the configuration, with what could be read of it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FileIdentity {
    pub path: PathBuf,
    pub offer: Option<Offer>,
}

/// OpenSSH's `pubkey_prepare()` order (pure): `certs` (CertificateFile, with the private key
/// file that goes with each), agent identities that are also in `files` (in the agent's
/// order), the other agent identities unless `identities_only`, then the rest of `files`.
pub(crate) fn order_identities(
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
pub(crate) fn read_public(path: &Path) -> Option<PublicKey> {
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
pub(crate) fn read_user_cert(path: &Path) -> Option<Certificate> {
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

/// The server's methods as the error lists them.
fn method_names(methods: &MethodSet) -> String {
    methods
        .iter()
        .map(|m| match m {
            MethodKind::None => "none",
            MethodKind::Password => "password",
            MethodKind::PublicKey => "publickey",
            MethodKind::HostBased => "hostbased",
            MethodKind::KeyboardInteractive => "keyboard-interactive",
            _ => "other",
        })
        .collect::<Vec<_>>()
        .join(",")
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

/// Collects what was tried, for the error.
struct Attempts {
    tried: Vec<String>,
    /// The methods the server last said it accepts.
    server_methods: Option<MethodSet>,
}

impl Attempts {
    /// Notes a refused attempt (`partial`: accepted, but more is required).
    fn refused(&mut self, what: String, partial: bool, remaining: &MethodSet) {
        self.server_methods = Some(remaining.clone());
        if partial {
            self.tried
                .push(format!("{what} (accepted; more is required)"));
        } else {
            self.tried.push(what);
        }
    }
}

/// One authentication method: an entry of OpenSSH's `authmethods[]` (sshconnect2.c).
struct Method {
    kind: MethodKind,
    name: &'static str,
    /// The option that turns it off, for the error.
    option: &'static str,
    /// Whether the config enables it.
    enabled: fn(&Hop) -> bool,
    /// It asks the user (OpenSSH's `batch_flag`): not used with `BatchMode yes`,
    /// `NumberOfPasswordPrompts 0`, or nobody to ask.
    asks: bool,
}

/// The methods in `PreferredAuthentications` order: OpenSSH's default (pgtunnel does not
/// read the option; gssapi-with-mic and hostbased are not implemented).
const METHODS: [Method; 3] = [
    Method {
        kind: MethodKind::PublicKey,
        name: "publickey",
        option: "PubkeyAuthentication",
        enabled: |hop| hop.config.pubkey_authentication,
        asks: false,
    },
    Method {
        kind: MethodKind::KeyboardInteractive,
        name: "keyboard-interactive",
        option: "KbdInteractiveAuthentication",
        enabled: |hop| hop.config.kbd_interactive_authentication,
        asks: true,
    },
    Method {
        kind: MethodKind::Password,
        name: "password",
        option: "PasswordAuthentication",
        enabled: |hop| hop.config.password_authentication,
        asks: true,
    },
];

/// What one try of a method came to.
enum Step {
    /// The server answered a request: what was tried, and the answer.
    Answered(String, AuthResult),
    /// Nothing came of it (nothing sent, or nobody answered): a note for the error.
    Skipped(String),
}

/// The state of `publickey`: the identities in order, the next one to try.
struct PublicKeyState {
    identities: Vec<Identity>,
    next: usize,
    /// What `server-sig-algs` says about RSA, asked for the first RSA key.
    server_rsa: Option<ServerRsa>,
}

/// The state of a method that asks (`keyboard-interactive`, `password`): attempts made (at
/// most NumberOfPasswordPrompts, as `attempt_kbdint` / `attempt_passwd`), and whether it is
/// over (no answer, or nothing more to gain).
#[derive(Default)]
struct Tries {
    attempts: usize,
    done: bool,
}

/// The methods of one hop with their state (OpenSSH's `Authctxt`).
struct Methods<'a, 'c> {
    hop: &'a Hop,
    ctx: &'a AuthContext<'c>,
    user: String,
    agent: Option<AgentClient<UnixStream>>,
    publickey: PublicKeyState,
    kbd: Tries,
    password: Tries,
}

impl Methods<'_, '_> {
    /// Why `m` is not used at all on this hop, if it is not ([`unused_because`]).
    fn unused(&self, m: &Method) -> Option<String> {
        let asking = Asking {
            batch_mode: self.hop.config.batch_mode,
            prompts: self.hop.config.number_of_password_prompts,
            can_ask: self.ctx.prompts.is_some(),
        };
        unused_because(m, (m.enabled)(self.hop), &asking)
    }

    /// Whether `kind` has something left to try.
    fn has_more(&self, kind: MethodKind) -> bool {
        let prompts = self.hop.config.number_of_password_prompts as usize;
        match kind {
            MethodKind::PublicKey => self.publickey.next < self.publickey.identities.len(),
            MethodKind::KeyboardInteractive => !self.kbd.done && self.kbd.attempts < prompts,
            MethodKind::Password => !self.password.done && self.password.attempts < prompts,
            _ => false,
        }
    }

    /// The next method to try: usable on this hop and with something left to try.
    fn next(&self, allowed: &MethodSet) -> Option<&'static Method> {
        pick(allowed, |m| {
            self.unused(m).is_none() && self.has_more(m.kind)
        })
    }

    /// `pubkey_reset()` and friends: after a partial success every method starts over.
    fn reset(&mut self) {
        self.publickey.next = 0;
        self.kbd = Tries::default();
        self.password = Tries::default();
    }

    /// One try of `m`.
    async fn attempt<H: client::Handler>(
        &mut self,
        handle: &mut Handle<H>,
        m: &Method,
    ) -> Result<Step, HopError> {
        match m.kind {
            MethodKind::PublicKey => Ok(self.next_identity(handle).await),
            MethodKind::KeyboardInteractive => {
                self.kbd.attempts += 1;
                let (what, result) =
                    match keyboard_interactive(handle, &self.user, self.hop, self.ctx).await? {
                        Kbd::Result(result) => ("keyboard-interactive", result),
                        Kbd::NoQuestions(result) => {
                            // OpenSSH does not try again after an attempt without questions.
                            self.kbd.done = true;
                            ("keyboard-interactive", result)
                        }
                        Kbd::Unanswered(result) => {
                            self.kbd.done = true;
                            ("keyboard-interactive (unanswered)", result)
                        }
                    };
                Ok(Step::Answered(what.to_string(), result))
            }
            MethodKind::Password => {
                self.password.attempts += 1;
                let attempt = self.password.attempts;
                let step = match password_attempt(handle, &self.user, attempt, self.hop, self.ctx)
                    .await?
                {
                    Password::Result(result) => Step::Answered("password".into(), result),
                    Password::NoAnswer => Step::Skipped("password (no answer)".into()),
                    Password::ChangeRequired(message) => Step::Skipped(change_required(&message)),
                };
                self.password.done = matches!(step, Step::Skipped(_));
                Ok(step)
            }
            _ => Ok(Step::Skipped(m.name.to_string())),
        }
    }

    /// The next identity of `publickey`.
    async fn next_identity<H: client::Handler>(&mut self, handle: &mut Handle<H>) -> Step {
        let next = self.publickey.next;
        self.publickey.next += 1;
        let Some(id) = self.publickey.identities.get(next) else {
            return Step::Skipped("publickey".into());
        };
        let (agent, server_rsa) = (self.agent.as_mut(), &mut self.publickey.server_rsa);
        try_identity(
            handle, &self.user, id, agent, self.hop, self.ctx, server_rsa,
        )
        .await
    }

    /// The methods the server accepts that were not used at all, and why.
    fn not_tried(&self, allowed: &MethodSet) -> Option<String> {
        let reasons: Vec<String> = METHODS
            .iter()
            .filter(|m| allowed.contains(&m.kind))
            .filter_map(|m| Some(format!("{} ({})", m.name, self.unused(m)?)))
            .collect();
        (!reasons.is_empty()).then(|| format!("not tried: {}", reasons.join(", ")))
    }
}

/// What decides whether methods that ask can be used.
struct Asking {
    batch_mode: bool,
    /// NumberOfPasswordPrompts.
    prompts: u32,
    /// Someone answers questions.
    can_ask: bool,
}

/// Why `m`, which the config enables or not (`enabled`), is not used at all, if it is not:
/// the option that turns it off, or for a method that asks, `BatchMode`,
/// `NumberOfPasswordPrompts 0` or nobody to ask (in that order of precedence).
fn unused_because(m: &Method, enabled: bool, asking: &Asking) -> Option<String> {
    if !enabled {
        Some(format!("{} no", m.option))
    } else if !m.asks {
        None
    } else if asking.batch_mode {
        Some("BatchMode yes".into())
    } else if asking.prompts == 0 {
        Some("NumberOfPasswordPrompts 0".into())
    } else if !asking.can_ask {
        Some("no terminal or SSH_ASKPASS to ask".into())
    } else {
        None
    }
}

/// OpenSSH's `authmethod_get()`: the first method of [`METHODS`], in that order (not the
/// server's), that the server allows and `ready` accepts.
fn pick(allowed: &MethodSet, ready: impl Fn(&Method) -> bool) -> Option<&'static Method> {
    METHODS
        .iter()
        .find(|m| allowed.contains(&m.kind) && ready(m))
}

/// The note for a password change request: the server waits for the old and a new password
/// (OpenSSH asks for them); pgtunnel does not change passwords and goes on with other methods.
fn change_required(message: &str) -> String {
    format!(
        "password (the server requires a new password{}; pgtunnel does not change passwords: \
         change it with `ssh` first)",
        if message.is_empty() {
            String::new()
        } else {
            format!(
                ": \"{}\"",
                crate::ssh::prompt::clean_server_text(message.trim_end())
            )
        }
    )
}

/// ssh-agent, when there is one to talk to.
async fn connect_agent(hop: &Hop, ctx: &AuthContext<'_>) -> Option<AgentClient<UnixStream>> {
    let sock = ctx.agent.as_ref()?;
    match AgentClient::connect_uds(sock).await {
        Ok(a) => Some(a),
        Err(e) => {
            debug!(hop = %hop.label(), "no ssh-agent at {}: {e}", sock.display());
            None
        }
    }
}

/// Authenticates on `handle`; returns how ("joe (publickey /home/joe/.ssh/id_ed25519)").
///
/// As `ssh_userauth2()`: a `none` request learns the methods the server allows; then, up to
/// [`MAX_REQUESTS`] times, the next method ([`Methods::next`]) is tried, and the server's
/// answer says which methods remain.
pub(crate) async fn authenticate<H: client::Handler>(
    handle: &mut Handle<H>,
    hop: &Hop,
    ctx: &AuthContext<'_>,
) -> Result<String, HopError> {
    let user = hop.config.user.clone();
    let mut allowed = match handle.authenticate_none(&user).await {
        Ok(AuthResult::Success) => return Ok(format!("{user} (no authentication required)")),
        Ok(AuthResult::Failure {
            remaining_methods, ..
        }) => remaining_methods,
        Err(source) => {
            return Err(HopError::Ssh {
                stage: SshStage::Authentication,
                source,
            });
        }
    };
    let mut log = Attempts {
        tried: Vec::new(),
        server_methods: Some(allowed.clone()),
    };
    let mut agent = connect_agent(hop, ctx).await;
    let identities = if hop.config.pubkey_authentication {
        prepare_identities(hop, agent.as_mut(), ctx, &mut log).await
    } else {
        Vec::new()
    };
    let mut methods = Methods {
        hop,
        ctx,
        user: user.clone(),
        agent,
        publickey: PublicKeyState {
            identities,
            next: 0,
            server_rsa: None,
        },
        kbd: Tries::default(),
        password: Tries::default(),
    };
    let mut accepted: Vec<String> = Vec::new();
    for _ in 0..MAX_REQUESTS {
        let Some(method) = methods.next(&allowed) else {
            break;
        };
        let (what, result) = match methods.attempt(handle, method).await? {
            Step::Answered(what, result) => (what, result),
            Step::Skipped(note) => {
                log.tried.push(note);
                continue;
            }
        };
        let AuthResult::Failure {
            remaining_methods,
            partial_success,
        } = result
        else {
            accepted.push(what);
            return Ok(format!("{user} ({})", accepted.join(" + ")));
        };
        log.refused(what.clone(), partial_success, &remaining_methods);
        allowed = remaining_methods;
        if partial_success {
            accepted.push(what);
            methods.reset();
        }
    }
    log.tried.extend(methods.not_tried(&allowed));
    Err(HopError::Auth {
        user,
        tried: if log.tried.is_empty() {
            "nothing: no ssh-agent keys, no identity files".into()
        } else {
            log.tried.join(", ")
        },
        server_methods: log.server_methods.as_ref().map(method_names),
    })
}

async fn prepare_identities(
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

async fn try_identity<H: client::Handler>(
    handle: &mut Handle<H>,
    user: &str,
    id: &Identity,
    agent: Option<&mut AgentClient<UnixStream>>,
    hop: &Hop,
    ctx: &AuthContext<'_>,
    server_rsa: &mut Option<ServerRsa>,
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
    let hash = match signature_hash(handle, &public, server_rsa).await {
        Ok(hash) => hash,
        Err(why) => return Step::Skipped(format!("{} (RSA: {why})", id.name)),
    };
    let what = describe_offer(&offer, id);
    let result = match offer {
        Offer::Key(key) => {
            handle
                .authenticate_publickey_with(user, key, hash, &mut signer)
                .await
        }
        Offer::Cert(cert) => {
            handle
                .authenticate_certificate_with(user, *cert, hash, &mut signer)
                .await
        }
    };
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

/// The hash of the signature for `public`: none but the key's own for non-RSA keys; for RSA,
/// what [`rsa_signature`] makes of the server's `server-sig-algs` (asked once per hop).
async fn signature_hash<H: client::Handler>(
    handle: &Handle<H>,
    public: &PublicKey,
    server_rsa: &mut Option<ServerRsa>,
) -> Result<Option<HashAlg>, &'static str> {
    if !public.algorithm().is_rsa() {
        return Ok(None);
    }
    let server = match server_rsa {
        Some(known) => *known,
        None => *server_rsa.insert(ServerRsa::of(handle).await),
    };
    rsa_signature(server).map(Some)
}

/// What the server's `server-sig-algs` extension says about RSA signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerRsa {
    /// The server sent no `server-sig-algs`.
    NotSaid,
    /// It lists no rsa-sha2 algorithm.
    Sha1Only,
    /// Its best rsa-sha2 algorithm.
    Sha2(HashAlg),
}

impl ServerRsa {
    /// Asks the session what the server said (russh waits briefly for the extension).
    async fn of<H: client::Handler>(handle: &Handle<H>) -> Self {
        match handle.best_supported_rsa_hash().await {
            Ok(Some(Some(hash))) => ServerRsa::Sha2(hash),
            Ok(Some(None)) => ServerRsa::Sha1Only,
            Ok(None) | Err(_) => ServerRsa::NotSaid,
        }
    }
}

/// OpenSSH 9.2's `key_sig_algorithm()` for an RSA key or certificate, with the default
/// `PubkeyAcceptedAlgorithms` (rsa-sha2-512, rsa-sha2-256; not ssh-rsa since 8.8). Without
/// `server-sig-algs` ssh falls back to the key's own name, `ssh-rsa`, which it no longer
/// accepts: the key is not used (`no mutual signature algorithm`), and neither is it here.
fn rsa_signature(server: ServerRsa) -> Result<HashAlg, &'static str> {
    match server {
        ServerRsa::Sha2(hash) => Ok(hash),
        ServerRsa::Sha1Only => Err("the server accepts only ssh-rsa SHA-1 signatures"),
        ServerRsa::NotSaid => Err(
            "the server does not say which signature algorithms it accepts (no \
             server-sig-algs), so, as with ssh 8.8 and later, only SHA-1 ssh-rsa would be left, \
             which is not used",
        ),
    }
}

enum Kbd {
    Result(AuthResult),
    NoQuestions(AuthResult),
    Unanswered(AuthResult),
}

fn host_for_prompts(hop: &Hop) -> String {
    hop.config
        .host_key_alias
        .clone()
        .unwrap_or_else(|| hop.config.host_name.clone())
}

async fn keyboard_interactive<H: client::Handler>(
    handle: &mut Handle<H>,
    user: &str,
    hop: &Hop,
    ctx: &AuthContext<'_>,
) -> Result<Kbd, HopError> {
    let Some(prompts) = ctx.prompts else {
        return Ok(Kbd::Unanswered(AuthResult::Failure {
            remaining_methods: russh::MethodSet::empty(),
            partial_success: false,
        }));
    };
    let ssh = |source| HopError::Ssh {
        stage: SshStage::KeyboardInteractive,
        source,
    };
    let mut reply = handle
        .authenticate_keyboard_interactive_start(user, None)
        .await
        .map_err(ssh)?;
    let mut seen = false;
    let mut unanswered = false;
    for _ in 0..MAX_INFO_REQUESTS {
        match reply {
            KeyboardInteractiveAuthResponse::Success => {
                return Ok(Kbd::Result(AuthResult::Success));
            }
            KeyboardInteractiveAuthResponse::Failure {
                remaining_methods,
                partial_success,
            } => {
                let r = AuthResult::Failure {
                    remaining_methods,
                    partial_success,
                };
                return Ok(if unanswered {
                    Kbd::Unanswered(r)
                } else if seen {
                    Kbd::Result(r)
                } else {
                    Kbd::NoQuestions(r)
                });
            }
            KeyboardInteractiveAuthResponse::InfoRequest {
                name,
                instructions,
                prompts: questions,
            } => {
                seen = true;
                let request = InfoRequest {
                    name: &name,
                    instructions: &instructions,
                    questions: &questions,
                };
                let responses =
                    answer_info_request(&request, prompts, user, hop, ctx, &mut unanswered).await;
                // The session waits for exactly this many answers before anything else.
                reply = handle
                    .authenticate_keyboard_interactive_respond(responses)
                    .await
                    .map_err(ssh)?;
            }
        }
    }
    Err(HopError::TooManyQuestions {
        rounds: MAX_INFO_REQUESTS,
    })
}

/// A keyboard-interactive INFO_REQUEST, as the server sent it.
struct InfoRequest<'a> {
    name: &'a str,
    instructions: &'a str,
    questions: &'a [russh::client::Prompt],
}

/// The answers to one INFO_REQUEST, asked one question at a time (the name and instructions,
/// cleaned of control characters, before the first). Once a question gets no answer
/// (`unanswered`), the others, in this round and later ones, get empty answers.
async fn answer_info_request(
    request: &InfoRequest<'_>,
    prompts: &Prompts,
    user: &str,
    hop: &Hop,
    ctx: &AuthContext<'_>,
    unanswered: &mut bool,
) -> Vec<String> {
    let host = host_for_prompts(hop);
    let mut preamble = Vec::new();
    for text in [request.name, request.instructions] {
        let t = crate::ssh::prompt::clean_server_text(text.trim_end());
        if !t.is_empty() {
            preamble.push(t);
        }
    }
    let mut responses = Vec::with_capacity(request.questions.len());
    for (i, q) in request.questions.iter().enumerate() {
        if *unanswered {
            responses.push(String::new());
            continue;
        }
        let question = PromptRequest {
            hop: hop.label(),
            kind: PromptKind::KeyboardInteractive,
            preamble: if i == 0 { preamble.clone() } else { Vec::new() },
            prompt: format!(
                "({user}@{host}) {}",
                crate::ssh::prompt::clean_server_text(&q.prompt)
            ),
            echo: q.echo,
        };
        match prompts.ask(question, ctx.clock).await {
            Ok(a) => responses.push(a.to_string()),
            Err(e) => {
                debug!(hop = %hop.label(), "keyboard-interactive: {e}");
                *unanswered = true;
                responses.push(String::new());
            }
        }
    }
    responses
}

/// What one `password` attempt came to.
enum Password {
    /// The server's answer.
    Result(AuthResult),
    /// Nobody answered the question.
    NoAnswer,
    /// SSH_MSG_USERAUTH_PASSWD_CHANGEREQ, with the server's message: the password expired.
    ChangeRequired(String),
}

async fn password_attempt<H: client::Handler>(
    handle: &mut Handle<H>,
    user: &str,
    attempt: usize,
    hop: &Hop,
    ctx: &AuthContext<'_>,
) -> Result<Password, HopError> {
    let Some(prompts) = ctx.prompts else {
        return Ok(Password::NoAnswer);
    };
    let request = PromptRequest {
        hop: hop.label(),
        kind: PromptKind::Password,
        preamble: if attempt > 1 {
            vec!["Permission denied, please try again.".into()]
        } else {
            Vec::new()
        },
        prompt: format!("{user}@{}'s password: ", host_for_prompts(hop)),
        echo: false,
    };
    let answer = match prompts.ask(request, ctx.clock).await {
        Ok(a) => a,
        Err(e) => {
            debug!(hop = %hop.label(), "password: {e}");
            return Ok(Password::NoAnswer);
        }
    };
    match handle.authenticate_password(user, answer.as_str()).await {
        Ok(result) => Ok(Password::Result(result)),
        Err(russh::Error::PasswordChangeRequired(message)) => Ok(Password::ChangeRequired(message)),
        Err(source) => Err(HopError::Ssh {
            stage: SshStage::Password,
            source,
        }),
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

    #[test]
    fn rsa_signature_as_key_sig_algorithm() {
        assert_eq!(
            rsa_signature(ServerRsa::Sha2(HashAlg::Sha512)),
            Ok(HashAlg::Sha512)
        );
        assert_eq!(
            rsa_signature(ServerRsa::Sha2(HashAlg::Sha256)),
            Ok(HashAlg::Sha256)
        );
        assert!(rsa_signature(ServerRsa::Sha1Only).is_err_and(|e| e.contains("only ssh-rsa")));
        assert!(rsa_signature(ServerRsa::NotSaid).is_err_and(|e| e.contains("no server-sig-algs")));
    }

    fn set(kinds: &[MethodKind]) -> MethodSet {
        MethodSet::from(kinds)
    }

    #[test]
    fn methods_in_preferred_order_among_the_allowed() {
        use MethodKind::{KeyboardInteractive as Kbd, Password, PublicKey};
        let any = |_: &Method| true;
        // The table's order, not the server's.
        let allowed = set(&[Password, Kbd, PublicKey]);
        assert_eq!(pick(&allowed, any).map(|m| m.kind), Some(PublicKey));
        let no_keys = |m: &Method| m.kind != PublicKey;
        assert_eq!(pick(&allowed, no_keys).map(|m| m.kind), Some(Kbd));
        assert_eq!(pick(&set(&[Password]), any).map(|m| m.kind), Some(Password));
        // Only what the server allows.
        assert_eq!(
            pick(&set(&[MethodKind::HostBased]), any).map(|m| m.kind),
            None
        );
        assert_eq!(pick(&set(&[]), any).map(|m| m.kind), None);
    }

    #[test]
    fn why_methods_are_not_used() {
        let [publickey, kbd, password] = &METHODS;
        let asking = |batch_mode, prompts, can_ask| Asking {
            batch_mode,
            prompts,
            can_ask,
        };
        let why = |m, enabled, a: Asking| unused_because(m, enabled, &a);
        // (method, enabled, BatchMode, NumberOfPasswordPrompts, can ask) -> why not.
        let table = [
            (publickey, true, true, 0, false, None),
            (
                publickey,
                false,
                false,
                3,
                true,
                Some("PubkeyAuthentication no"),
            ),
            (kbd, true, false, 3, true, None),
            (
                kbd,
                false,
                true,
                0,
                false,
                Some("KbdInteractiveAuthentication no"),
            ),
            (kbd, true, true, 0, false, Some("BatchMode yes")),
            (
                kbd,
                true,
                false,
                0,
                false,
                Some("NumberOfPasswordPrompts 0"),
            ),
            (
                kbd,
                true,
                false,
                3,
                false,
                Some("no terminal or SSH_ASKPASS to ask"),
            ),
            (password, true, false, 1, true, None),
            (
                password,
                false,
                false,
                3,
                true,
                Some("PasswordAuthentication no"),
            ),
            (password, true, true, 3, true, Some("BatchMode yes")),
            (
                password,
                true,
                false,
                0,
                true,
                Some("NumberOfPasswordPrompts 0"),
            ),
            (
                password,
                true,
                false,
                3,
                false,
                Some("no terminal or SSH_ASKPASS to ask"),
            ),
        ];
        for (m, enabled, batch, prompts, can_ask, expected) in table {
            assert_eq!(
                why(m, enabled, asking(batch, prompts, can_ask)).as_deref(),
                expected,
                "{} enabled={enabled} batch={batch} prompts={prompts} ask={can_ask}",
                m.name
            );
        }
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
