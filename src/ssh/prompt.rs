//! Asking the user something while a hop comes up: an unknown host key (`StrictHostKeyChecking
//! ask`), a key's passphrase, a password, a keyboard-interactive question (one-time codes).
//!
//! The library only words the questions, as OpenSSH words them, with the hop's name in front.
//! Who answers is a [`Prompter`] supplied by the caller: the `pgtunnel` binary reads from the
//! terminal (`/dev/tty`) or runs `SSH_ASKPASS` with OpenSSH's rules ([`askpass_choice`]); tests
//! answer with fixed strings. Without a prompter nothing is asked: an unknown host key is
//! refused, an encrypted key is skipped with a message saying how to add it to ssh-agent, and
//! password / keyboard-interactive are not tried.
//!
//! Answers are [`Answer`]s (zeroed when dropped) and are never logged.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use thiserror::Error;
use zeroize::Zeroizing;

use crate::error::HopLabel;

/// How long one question may wait for its answer. The SSH server gives up on an idle login
/// after its `LoginGraceTime` (two minutes by default) anyway.
pub const PROMPT_TIMEOUT: Duration = Duration::from_secs(300);

/// An answer; its memory is zeroed when dropped.
pub type Answer = Zeroizing<String>;

/// What is being asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    /// Unknown host key: yes / no / the fingerprint.
    HostKey,
    /// The passphrase of a key file.
    Passphrase,
    /// The `password` method.
    Password,
    /// A question of the `keyboard-interactive` method (one-time code, PAM password, ...).
    KeyboardInteractive,
}

impl PromptKind {
    /// Whether the answer is a secret (typed without echo, never logged).
    pub fn is_secret(self) -> bool {
        !matches!(self, PromptKind::HostKey)
    }
}

/// One question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRequest {
    /// The hop asking.
    pub hop: HopLabel,
    /// What is asked.
    pub kind: PromptKind,
    /// Lines to show before the question (the host key details; a keyboard-interactive
    /// request's name and instructions), already cleaned of control characters.
    pub preamble: Vec<String>,
    /// The question as OpenSSH words it, e.g. `Enter passphrase for key '/home/joe/.ssh/id_ed25519': `.
    pub prompt: String,
    /// Whether the answer may be shown while typed (`false` for secrets).
    pub echo: bool,
}

impl PromptRequest {
    /// The question with the hop's name in front: `hop 1 (shell.foo.com, ...): Password: `.
    pub fn question(&self) -> String {
        format!("{}: {}", self.hop, self.prompt)
    }

    /// Everything to show, preamble first, as one text (what `SSH_ASKPASS` gets as its argument).
    pub fn full_text(&self) -> String {
        let mut text = String::new();
        for line in &self.preamble {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&self.question());
        text
    }
}

/// Why a question got no answer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PromptError {
    /// Nobody can be asked (no terminal, no askpass).
    #[error("there is no terminal or SSH_ASKPASS to ask")]
    Unavailable,
    /// The user declined (end of input, askpass cancelled).
    #[error("no answer was given")]
    Cancelled,
    /// Asking failed.
    #[error("cannot ask: {0}")]
    Failed(String),
}

/// Answers questions. Called from a thread of its own, one question at a time.
pub trait Prompter: Send + Sync {
    /// Shows `request` and returns the answer (without its line end).
    fn prompt(&self, request: &PromptRequest) -> Result<Answer, PromptError>;
}

impl<F> Prompter for F
where
    F: Fn(&PromptRequest) -> Result<Answer, PromptError> + Send + Sync,
{
    fn prompt(&self, request: &PromptRequest) -> Result<Answer, PromptError> {
        self(request)
    }
}

/// A shared [`Prompter`] that asks one question at a time, each on a thread of its own and
/// within [`PROMPT_TIMEOUT`]. Cheap to clone.
#[derive(Clone)]
pub struct Prompts {
    prompter: Arc<dyn Prompter>,
    turn: Arc<tokio::sync::Mutex<()>>,
    timeout: Duration,
}

impl std::fmt::Debug for Prompts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prompts")
    }
}

impl Prompts {
    /// Wraps a prompter.
    pub fn new(prompter: impl Prompter + 'static) -> Self {
        Prompts::from_arc(Arc::new(prompter))
    }

    /// Wraps a shared prompter.
    pub fn from_arc(prompter: Arc<dyn Prompter>) -> Self {
        Prompts {
            prompter,
            turn: Arc::new(tokio::sync::Mutex::new(())),
            timeout: PROMPT_TIMEOUT,
        }
    }

    /// Asks `request`; the time spent waiting is recorded in `clock` so that connection
    /// limits do not run while the user reads and types.
    pub(crate) async fn ask(
        &self,
        request: PromptRequest,
        clock: &PromptClock,
    ) -> Result<Answer, PromptError> {
        let _turn = self.turn.lock().await;
        let _paused = clock.pause();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let prompter = self.prompter.clone();
        // A thread of our own rather than spawn_blocking: a question nobody answers must not
        // keep the runtime from shutting down.
        std::thread::Builder::new()
            .name("pgtunnel-prompt".into())
            .spawn(move || {
                let _ = tx.send(prompter.prompt(&request));
            })
            .map_err(|e| PromptError::Failed(format!("cannot start the prompt thread: {e}")))?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(PromptError::Failed("the prompt thread ended".into())),
            Err(_) => Err(PromptError::Failed(format!(
                "no answer within {} s",
                self.timeout.as_secs()
            ))),
        }
    }
}

/// Time spent waiting for answers on one hop, so that ConnectTimeout and the authentication
/// limit only count the time the network takes.
#[derive(Debug, Clone, Default)]
pub(crate) struct PromptClock(Arc<Mutex<ClockState>>);

#[derive(Debug, Default)]
struct ClockState {
    total: Duration,
    since: Option<Instant>,
    depth: usize,
}

pub(crate) struct Paused<'a>(&'a PromptClock);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.0.lock() {
            s.depth = s.depth.saturating_sub(1);
            if s.depth == 0
                && let Some(since) = s.since.take()
            {
                s.total += since.elapsed();
            }
        }
    }
}

impl PromptClock {
    fn pause(&self) -> Paused<'_> {
        if let Ok(mut s) = self.0.lock() {
            if s.depth == 0 {
                s.since = Some(Instant::now());
            }
            s.depth += 1;
        }
        Paused(self)
    }

    /// Time spent in questions so far, and whether one is open now.
    fn read(&self) -> (Duration, bool) {
        match self.0.lock() {
            Ok(s) => (s.total, s.since.is_some()),
            Err(_) => (Duration::ZERO, false),
        }
    }

    /// Runs `fut` for at most `limit`, not counting the time spent in questions. `None` when
    /// the limit is reached.
    pub(crate) async fn limit<T>(
        &self,
        limit: Duration,
        fut: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let start = Instant::now();
        tokio::pin!(fut);
        // Each round ends with the future, the limit, or a second of an open question; the
        // questions themselves are bounded (PROMPT_TIMEOUT each, a few per hop).
        for _ in 0..100_000 {
            let (asked, open) = self.read();
            let wake = if open {
                Instant::now() + Duration::from_secs(1)
            } else {
                let deadline = start + limit + asked;
                if Instant::now() >= deadline {
                    return None;
                }
                deadline
            };
            tokio::select! {
                out = &mut fut => return Some(out),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        None
    }
}

/// The answer to "Are you sure you want to continue connecting (yes/no/\[fingerprint\])?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// `yes` (any case) or the fingerprint itself.
    Yes,
    /// `no` (any case) or nothing.
    No,
    /// Anything else: OpenSSH asks again.
    Again,
}

/// OpenSSH's `confirm()` (sshconnect.c): leading blanks are skipped; empty or `no` (any case)
/// declines; `yes` (any case) or exactly the SHA256 fingerprint accepts; anything else asks
/// again.
pub fn parse_confirmation(answer: &str, fingerprint: &str) -> Confirmation {
    let line = answer.split('\n').next().unwrap_or("");
    let p = line.trim_start_matches([' ', '\t']);
    if p.is_empty() || p.eq_ignore_ascii_case("no") {
        Confirmation::No
    } else if p.eq_ignore_ascii_case("yes") || p == fingerprint {
        Confirmation::Yes
    } else {
        Confirmation::Again
    }
}

/// Text from the server (keyboard-interactive name, instructions, prompts) made safe to show:
/// control characters other than newline and tab become `?` (OpenSSH shows them escaped), so
/// a server cannot move the cursor or rewrite what the terminal shows.
pub fn clean_server_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// Server text that ends up inside one line (a disconnect message, a channel-open failure's
/// description): [`clean_server_text`], and line breaks and tabs become spaces, so it cannot
/// pass for a line of its own in the log.
pub fn clean_server_line(text: &str) -> String {
    clean_server_text(text)
        .chars()
        .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
        .collect()
}

/// Where OpenSSH's `read_passphrase()` would ask, given the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AskpassChoice {
    /// Run this askpass program.
    Askpass(PathBuf),
    /// Ask on the terminal (`/dev/tty`).
    Terminal,
    /// Nobody can be asked.
    Nobody,
}

/// OpenSSH's default askpass program (`_PATH_SSH_ASKPASS_DEFAULT` on Debian).
pub const DEFAULT_ASKPASS: &str = "/usr/bin/ssh-askpass";

/// OpenSSH's rules (readpass.c, `read_passphrase`): askpass is allowed when `DISPLAY` or
/// `WAYLAND_DISPLAY` is set and non-empty; `SSH_ASKPASS_REQUIRE=force` uses it always,
/// `prefer` uses it when allowed, `never` never; otherwise the terminal is used when there is
/// one, and askpass (if allowed) when there is none. `SSH_ASKPASS` names the program
/// (default [`DEFAULT_ASKPASS`]). `var` reads the environment; `has_tty` says whether
/// `/dev/tty` can be opened.
pub fn askpass_choice(var: impl Fn(&str) -> Option<String>, has_tty: bool) -> AskpassChoice {
    let set = |name: &str| var(name).is_some_and(|v| !v.is_empty());
    let mut allow = set("DISPLAY") || set("WAYLAND_DISPLAY");
    let mut use_askpass = false;
    if let Some(require) = var("SSH_ASKPASS_REQUIRE") {
        if require.eq_ignore_ascii_case("force") {
            use_askpass = true;
            allow = true;
        } else if require.eq_ignore_ascii_case("prefer") {
            use_askpass = allow;
        } else if require.eq_ignore_ascii_case("never") {
            allow = false;
        }
    }
    if !use_askpass && !has_tty {
        use_askpass = true;
    }
    if use_askpass && allow {
        let program = var("SSH_ASKPASS")
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_ASKPASS.to_string());
        AskpassChoice::Askpass(PathBuf::from(program))
    } else if has_tty {
        AskpassChoice::Terminal
    } else {
        AskpassChoice::Nobody
    }
}

/// Asks through an askpass program, as OpenSSH's `ssh_askpass()` does: the question is its
/// only argument, the answer its standard output up to the first line end; a non-zero exit
/// status means "cancelled".
#[derive(Debug, Clone)]
pub struct Askpass {
    program: PathBuf,
}

impl Askpass {
    /// Uses `program`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Askpass {
            program: program.into(),
        }
    }

    /// Runs the program for `request`.
    pub fn ask(&self, request: &PromptRequest) -> Result<Answer, PromptError> {
        let out = std::process::Command::new(&self.program)
            .arg(request.full_text())
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| {
                PromptError::Failed(format!("cannot run {}: {e}", self.program.display()))
            })?;
        let stdout = Zeroizing::new(out.stdout);
        if !out.status.success() {
            return Err(PromptError::Cancelled);
        }
        let text = String::from_utf8_lossy(&stdout);
        let line = text.split(['\r', '\n']).next().unwrap_or("");
        Ok(Zeroizing::new(line.to_string()))
    }
}

impl Prompter for Askpass {
    fn prompt(&self, request: &PromptRequest) -> Result<Answer, PromptError> {
        self.ask(request)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_lines_cannot_move_the_cursor_or_break_the_line() {
        assert_eq!(
            clean_server_line("bye\x1b[2J\r\nFAKE: ok\tnow"),
            "bye?[2J? FAKE: ok now"
        );
        assert_eq!(clean_server_line("plain words"), "plain words");
    }

    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn confirmation_as_openssh() {
        let fp = "SHA256:abc";
        assert_eq!(parse_confirmation("yes", fp), Confirmation::Yes);
        assert_eq!(parse_confirmation("YES", fp), Confirmation::Yes);
        assert_eq!(parse_confirmation("  \tyes\n", fp), Confirmation::Yes);
        assert_eq!(parse_confirmation("SHA256:abc", fp), Confirmation::Yes);
        assert_eq!(parse_confirmation("sha256:abc", fp), Confirmation::Again);
        assert_eq!(parse_confirmation("no", fp), Confirmation::No);
        assert_eq!(parse_confirmation("No", fp), Confirmation::No);
        assert_eq!(parse_confirmation("", fp), Confirmation::No);
        assert_eq!(parse_confirmation("   ", fp), Confirmation::No);
        assert_eq!(parse_confirmation("y", fp), Confirmation::Again);
        // Trailing blanks are not skipped by OpenSSH either.
        assert_eq!(parse_confirmation("yes ", fp), Confirmation::Again);
    }

    #[test]
    fn askpass_rules_as_openssh() {
        let p = |s: &str| AskpassChoice::Askpass(PathBuf::from(s));
        // A terminal and no askpass settings: the terminal.
        assert_eq!(askpass_choice(env(&[]), true), AskpassChoice::Terminal);
        // No terminal: askpass only with a display.
        assert_eq!(askpass_choice(env(&[]), false), AskpassChoice::Nobody);
        assert_eq!(
            askpass_choice(env(&[("DISPLAY", ":0")]), false),
            p(DEFAULT_ASKPASS)
        );
        assert_eq!(
            askpass_choice(
                env(&[("WAYLAND_DISPLAY", "w"), ("SSH_ASKPASS", "/a")]),
                false
            ),
            p("/a")
        );
        assert_eq!(
            askpass_choice(env(&[("DISPLAY", ""), ("SSH_ASKPASS", "/a")]), false),
            AskpassChoice::Nobody
        );
        // A display alone does not beat the terminal.
        assert_eq!(
            askpass_choice(env(&[("DISPLAY", ":0"), ("SSH_ASKPASS", "/a")]), true),
            AskpassChoice::Terminal
        );
        // prefer: askpass when a display allows it.
        let prefer = [
            ("DISPLAY", ":0"),
            ("SSH_ASKPASS", "/a"),
            ("SSH_ASKPASS_REQUIRE", "prefer"),
        ];
        assert_eq!(askpass_choice(env(&prefer), true), p("/a"));
        assert_eq!(
            askpass_choice(
                env(&[("SSH_ASKPASS", "/a"), ("SSH_ASKPASS_REQUIRE", "prefer")]),
                true
            ),
            AskpassChoice::Terminal
        );
        // force: askpass even without a display or with a terminal.
        let force = [("SSH_ASKPASS", "/a"), ("SSH_ASKPASS_REQUIRE", "Force")];
        assert_eq!(askpass_choice(env(&force), true), p("/a"));
        assert_eq!(askpass_choice(env(&force), false), p("/a"));
        // never: not even with a display and no terminal.
        let never = [
            ("DISPLAY", ":0"),
            ("SSH_ASKPASS", "/a"),
            ("SSH_ASKPASS_REQUIRE", "never"),
        ];
        assert_eq!(askpass_choice(env(&never), false), AskpassChoice::Nobody);
        assert_eq!(askpass_choice(env(&never), true), AskpassChoice::Terminal);
    }

    #[test]
    fn server_text_cannot_drive_the_terminal() {
        assert_eq!(
            clean_server_text("Code\x1b[2J:\r\n\tnext"),
            "Code?[2J:?\n\tnext"
        );
    }

    #[test]
    fn question_names_the_hop() {
        let request = PromptRequest {
            hop: HopLabel {
                index: 2,
                name: "db".into(),
                addr: "10.0.0.5:22".into(),
            },
            kind: PromptKind::Password,
            preamble: vec!["Welcome".into()],
            prompt: "joe@db's password: ".into(),
            echo: false,
        };
        assert_eq!(
            request.question(),
            "hop 2 (db, 10.0.0.5:22): joe@db's password: "
        );
        assert_eq!(
            request.full_text(),
            "Welcome\nhop 2 (db, 10.0.0.5:22): joe@db's password: "
        );
        assert!(request.kind.is_secret());
        assert!(!PromptKind::HostKey.is_secret());
    }

    #[tokio::test(start_paused = true)]
    async fn limits_do_not_count_time_spent_asking() {
        let clock = PromptClock::default();
        // Without questions the limit applies.
        let out = clock
            .limit(
                Duration::from_secs(5),
                tokio::time::sleep(Duration::from_secs(10)),
            )
            .await;
        assert_eq!(out, None);
        // A question of 20 s inside a 5 s limit: the work after it still finishes.
        let c = clock.clone();
        let work = async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            {
                let _p = c.pause();
                tokio::time::sleep(Duration::from_secs(20)).await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            7
        };
        assert_eq!(clock.limit(Duration::from_secs(5), work).await, Some(7));
    }
}
