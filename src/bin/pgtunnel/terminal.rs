//! The binary's answers to the library's questions: the terminal (`/dev/tty`, no echo for
//! secrets) or `SSH_ASKPASS`, chosen with OpenSSH's rules
//! ([`pgtunnel::ssh::prompt::askpass_choice`]). The spinners are hidden while a question is shown.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::sync::Mutex;

use indicatif::MultiProgress;
use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use pgtunnel::ssh::prompt::{
    Answer, Askpass, AskpassChoice, PromptError, PromptRequest, Prompter, Prompts, askpass_choice,
};
use zeroize::Zeroizing;

const TTY: &str = "/dev/tty";

/// The terminal's settings while echo is off, to restore them if the user interrupts.
static SAVED: Mutex<Option<(File, Termios)>> = Mutex::new(None);

/// Restores the terminal if a question was interrupted with echo off.
pub fn restore_terminal() {
    if let Ok(mut saved) = SAVED.lock()
        && let Some((tty, settings)) = saved.take()
    {
        let _ = termios::tcsetattr(&tty, SetArg::TCSANOW, &settings);
        let _ = (&tty).write_all(b"\n");
    }
}

/// Who answers, as OpenSSH decides it; `None` when nobody can.
pub fn prompts(bars: Option<MultiProgress>) -> Option<Prompts> {
    let has_tty = OpenOptions::new().read(true).write(true).open(TTY).is_ok();
    match askpass_choice(|name| std::env::var(name).ok(), has_tty) {
        AskpassChoice::Askpass(program) => Some(Prompts::new(Shown {
            bars,
            how: How::Askpass(Askpass::new(program)),
        })),
        AskpassChoice::Terminal => Some(Prompts::new(Shown {
            bars,
            how: How::Terminal,
        })),
        AskpassChoice::Nobody => None,
    }
}

enum How {
    Terminal,
    Askpass(Askpass),
}

struct Shown {
    bars: Option<MultiProgress>,
    how: How,
}

impl Prompter for Shown {
    fn prompt(&self, request: &PromptRequest) -> Result<Answer, PromptError> {
        let ask = || match &self.how {
            How::Terminal => ask_terminal(request),
            How::Askpass(a) => a.ask(request),
        };
        match &self.bars {
            Some(bars) => bars.suspend(ask),
            None => ask(),
        }
    }
}

/// OpenSSH's `readpassphrase()` on `/dev/tty`: echo off for secrets *before* the prompt is
/// shown (so nothing typed after the prompt appears can be echoed), the prompt at the start of
/// a line, one line read, the terminal restored.
fn ask_terminal(request: &PromptRequest) -> Result<Answer, PromptError> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open(TTY)
        .map_err(|_| PromptError::Unavailable)?;
    let failed = |e: std::io::Error| PromptError::Failed(format!("{TTY}: {e}"));
    let restore = if request.echo {
        None
    } else {
        let settings = termios::tcgetattr(&tty).map_err(|e| failed(e.into()))?;
        let mut quiet = settings.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        if let (Ok(mut saved), Ok(copy)) = (SAVED.lock(), tty.try_clone()) {
            *saved = Some((copy, settings.clone()));
        }
        termios::tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).map_err(|e| failed(e.into()))?;
        Some(settings)
    };
    let read = show_and_read(&tty, request);
    if let Some(settings) = restore {
        let _ = termios::tcsetattr(&tty, SetArg::TCSAFLUSH, &settings);
        if let Ok(mut saved) = SAVED.lock() {
            *saved = None;
        }
    }
    let mut line = read.map_err(failed)?;
    if line.is_empty() {
        return Err(PromptError::Cancelled);
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    let text = String::from_utf8_lossy(&line);
    Ok(Zeroizing::new(text.into_owned()))
}

/// Writes the preamble and the question, then reads one line (empty: end of input).
fn show_and_read(tty: &File, request: &PromptRequest) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut out = tty;
    let mut text = String::from("\r");
    for line in &request.preamble {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&request.question());
    out.write_all(text.as_bytes())?;
    out.flush()?;
    let mut line = Zeroizing::new(Vec::with_capacity(128));
    BufReader::new(tty).read_until(b'\n', &mut line)?;
    Ok(line)
}
