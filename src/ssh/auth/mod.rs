//! User authentication on one hop, as OpenSSH's `ssh` does it (sshconnect2.c):
//!
//! - a `none` request first, to learn the methods the server accepts;
//! - then the methods of a table ([`METHODS`], as `authmethods[]`), in `PreferredAuthentications`
//!   order (OpenSSH's default: `publickey`, `keyboard-interactive`, `password`),
//!   each only if the server lists it, the config enables it (`PubkeyAuthentication`,
//!   `KbdInteractiveAuthentication`, `PasswordAuthentication`) and, for a method that asks,
//!   neither `BatchMode yes`, `NumberOfPasswordPrompts 0` nor the lack of anyone to ask rules
//!   it out; each method keeps its own state; after a partial success (`AuthenticationMethods
//!   a,b` on the server) the methods start over;
//! - `publickey` is in [`publickey`] (identities in `pubkey_prepare()`'s order, signatures);
//! - keyboard-interactive and password attempts are each limited by NumberOfPasswordPrompts;
//!   a password change request is reported, not carried out.
//!
//! Questions go through [`crate::ssh::prompt::Prompts`]; without one, encrypted keys, passwords and
//! keyboard-interactive are skipped and the failure says so.

use std::path::PathBuf;

use russh::client::{self, AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::agent::client::AgentClient;
use russh::{MethodKind, MethodSet};
use tokio::net::UnixStream;
use tracing::debug;

use crate::error::{HopError, SshStage};
use crate::event::Observer;
use crate::plan::chain::Hop;
use crate::ssh::prompt::{PromptClock, PromptKind, PromptRequest, Prompts};

mod publickey;

use publickey::{Identity, KeyRound, prepare_identities, try_identity};

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

/// Collects what was tried, for the error.
struct Attempts {
    tried: Vec<String>,
    /// The methods the server last said it accepts.
    server_methods: Option<MethodSet>,
}

impl Attempts {
    /// The failure, with everything tried.
    fn into_error(self, user: String) -> HopError {
        HopError::Auth {
            user,
            tried: if self.tried.is_empty() {
                "nothing: no ssh-agent keys, no identity files".into()
            } else {
                self.tried.join(", ")
            },
            server_methods: self.server_methods.as_ref().map(method_names),
        }
    }

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

/// The methods pgtunnel implements, in OpenSSH's default `PreferredAuthentications` order
/// (gssapi-with-mic and hostbased, which come first there, are not implemented; they are
/// off by default in ssh, and refused by pgtunnel when switched on).
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
    /// What the attempts share (`server-sig-algs`, whether there is only one key).
    round: KeyRound,
}

/// The state of a method that asks (`keyboard-interactive`, `password`): attempts made (at
/// most NumberOfPasswordPrompts, as `attempt_kbdint` / `attempt_passwd`), and whether it is
/// over (no answer, or nothing more to gain).
#[derive(Default)]
struct Tries {
    attempts: usize,
    done: bool,
}

/// The methods to try, in order: `PreferredAuthentications` as `authmethod_get()` walks it
/// (the names pgtunnel implements, each once, in the user's order; `gssapi-with-mic`,
/// `hostbased`, `none` and names ssh does not know either are skipped, as ssh skips a
/// disabled or unknown method), or [`METHODS`]' order when it is not set. (The config
/// refuses a list that names none of pgtunnel's methods.)
fn method_order(preferred: Option<&[String]>) -> Vec<&'static Method> {
    let Some(names) = preferred else {
        return METHODS.iter().collect();
    };
    let mut order: Vec<&'static Method> = Vec::new();
    for name in names {
        if let Some(m) = METHODS.iter().find(|m| m.name == name.as_str())
            && !order.iter().any(|o| o.kind == m.kind)
        {
            order.push(m);
        }
    }
    order
}

/// The methods of one hop with their state (OpenSSH's `Authctxt`).
struct Methods<'a, 'c> {
    hop: &'a Hop,
    /// The methods in the order they are tried ([`method_order`]).
    order: Vec<&'static Method>,
    ctx: &'a AuthContext<'c>,
    user: String,
    agent: Option<AgentClient<UnixStream>>,
    publickey: PublicKeyState,
    kbd: Tries,
    password: Tries,
}

impl<'a, 'c> Methods<'a, 'c> {
    /// The methods' initial state: ssh-agent connected (when there is one), identities listed
    /// (when `PubkeyAuthentication` is on; what cannot be used goes to `log`).
    async fn new(hop: &'a Hop, ctx: &'a AuthContext<'c>, user: String, log: &mut Attempts) -> Self {
        let mut agent = connect_agent(hop, ctx).await;
        let order = method_order(hop.config.preferred_authentications.as_deref());
        let identities = if hop.config.pubkey_authentication
            && order.iter().any(|m| m.kind == MethodKind::PublicKey)
        {
            prepare_identities(hop, agent.as_mut(), ctx, log).await
        } else {
            Vec::new()
        };
        Methods {
            hop,
            order,
            ctx,
            user,
            agent,
            publickey: PublicKeyState {
                round: KeyRound {
                    server_rsa: None,
                    only_key: identities.len() == 1,
                },
                identities,
                next: 0,
            },
            kbd: Tries::default(),
            password: Tries::default(),
        }
    }

    /// Why `m` is not used at all on this hop, if it is not ([`unused_because`]).
    fn unused(&self, m: &Method) -> Option<String> {
        if !self.order.iter().any(|o| o.kind == m.kind) {
            return Some("not in PreferredAuthentications".into());
        }
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

    /// Whether a key is what would be tried first, whatever the server allows: the first
    /// usable method in the user's order is `publickey`, with a key to offer.
    fn key_first(&self) -> bool {
        self.order
            .iter()
            .find(|m| self.unused(m).is_none() && self.has_more(m.kind))
            .is_some_and(|m| m.kind == MethodKind::PublicKey)
    }

    /// The next method to try: usable on this hop and with something left to try.
    fn next(&self, allowed: &MethodSet) -> Option<&'static Method> {
        pick(allowed, &self.order, |m| {
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
        let (agent, round) = (self.agent.as_mut(), &mut self.publickey.round);
        try_identity(handle, &self.user, id, agent, self.hop, self.ctx, round).await
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

/// OpenSSH's `authmethod_get()`: the first method of `order` (the client's, not the
/// server's), that the server allows and `ready` accepts.
fn pick(
    allowed: &MethodSet,
    order: &[&'static Method],
    ready: impl Fn(&Method) -> bool,
) -> Option<&'static Method> {
    order
        .iter()
        .copied()
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
/// As `ssh_userauth2()`: up to [`MAX_REQUESTS`] times, the next method ([`Methods::next`])
/// is tried, and the server's answer says which methods remain. ssh first sends a `none`
/// request to learn the methods the server allows; pgtunnel skips it when a key would be
/// tried first whatever the server allows (the first usable method in the user's order is
/// `publickey`): the key's answer lists the methods as well, and the `none` round trip
/// (which sshd answers only after its delay for failed attempts, a second for russh's
/// servers) is saved. The `none` request is still sent when nothing is left to try before
/// the server's methods are known.
pub(crate) async fn authenticate<H: client::Handler>(
    handle: &mut Handle<H>,
    hop: &Hop,
    ctx: &AuthContext<'_>,
) -> Result<String, HopError> {
    let user = hop.config.user.clone();
    let mut log = Attempts {
        tried: Vec::new(),
        server_methods: None,
    };
    let mut methods = Methods::new(hop, ctx, user.clone(), &mut log).await;
    // `None`: not asked yet; keys are tried as if the server allowed them.
    let mut allowed = if methods.key_first() {
        None
    } else {
        match ask_none(handle, &user).await? {
            Some(methods) => Some(methods),
            None => return Ok(format!("{user} (no authentication required)")),
        }
    };
    log.server_methods = allowed.clone();
    let keys_only = MethodSet::from(&[MethodKind::PublicKey][..]);
    let mut accepted: Vec<String> = Vec::new();
    for _ in 0..MAX_REQUESTS {
        let Some(method) = methods.next(allowed.as_ref().unwrap_or(&keys_only)) else {
            if allowed.is_some() {
                break;
            }
            // The keys were all skipped before one was asked: ask what the server allows.
            match ask_none(handle, &user).await? {
                Some(methods) => {
                    log.server_methods = Some(methods.clone());
                    allowed = Some(methods);
                    continue;
                }
                None => return Ok(format!("{user} (no authentication required)")),
            }
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
        allowed = Some(remaining_methods);
        if partial_success {
            accepted.push(what);
            methods.reset();
        }
    }
    log.tried
        .extend(methods.not_tried(allowed.as_ref().unwrap_or(&keys_only)));
    Err(log.into_error(user))
}

/// A `none` request: the methods the server allows, or `None` when it lets `user` in
/// without authentication.
async fn ask_none<H: client::Handler>(
    handle: &mut Handle<H>,
    user: &str,
) -> Result<Option<MethodSet>, HopError> {
    match handle.authenticate_none(user).await {
        Ok(AuthResult::Success) => Ok(None),
        Ok(AuthResult::Failure {
            remaining_methods, ..
        }) => Ok(Some(remaining_methods)),
        Err(source) => Err(HopError::Ssh {
            stage: SshStage::Authentication,
            source,
        }),
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

    fn set(kinds: &[MethodKind]) -> MethodSet {
        MethodSet::from(kinds)
    }

    #[test]
    fn methods_in_preferred_order_among_the_allowed() {
        use MethodKind::{KeyboardInteractive as Kbd, Password, PublicKey};
        let any = |_: &Method| true;
        let default = method_order(None);
        // The table's order, not the server's.
        let allowed = set(&[Password, Kbd, PublicKey]);
        assert_eq!(
            pick(&allowed, &default, any).map(|m| m.kind),
            Some(PublicKey)
        );
        let no_keys = |m: &Method| m.kind != PublicKey;
        assert_eq!(pick(&allowed, &default, no_keys).map(|m| m.kind), Some(Kbd));
        assert_eq!(
            pick(&set(&[Password]), &default, any).map(|m| m.kind),
            Some(Password)
        );
        // Only what the server allows.
        assert_eq!(
            pick(&set(&[MethodKind::HostBased]), &default, any).map(|m| m.kind),
            None
        );
        assert_eq!(pick(&set(&[]), &default, any).map(|m| m.kind), None);
        // PreferredAuthentications: the user's order.
        let names = |l: &str| l.split(',').map(String::from).collect::<Vec<_>>();
        let users = method_order(Some(&names("password,publickey")));
        assert_eq!(pick(&allowed, &users, any).map(|m| m.kind), Some(Password));
        assert_eq!(pick(&set(&[Kbd]), &users, any).map(|m| m.kind), None);
    }

    #[test]
    fn preferred_authentications_order() {
        let names = |l: &str| l.split(',').map(String::from).collect::<Vec<_>>();
        let order = |l: &str| {
            method_order(Some(&names(l)))
                .iter()
                .map(|m| m.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            order("keyboard-interactive,password,publickey"),
            ["keyboard-interactive", "password", "publickey"]
        );
        // Methods pgtunnel lacks, unknown names (ssh skips them) and repeats are left out.
        assert_eq!(
            order("gssapi-with-mic,hostbased,password,frob,none,password,Publickey"),
            ["password"]
        );
        assert_eq!(
            method_order(None)
                .iter()
                .map(|m| m.name)
                .collect::<Vec<_>>(),
            ["publickey", "keyboard-interactive", "password"]
        );
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
}
