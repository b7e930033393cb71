//! Turning a failed or stalled handshake into what the server said: not SSH, an SSH version
//! russh does not speak, an endless line, an enormous banner, closed during the key exchange,
//! or silent. russh's errors do not carry the bytes, so the hop's stream records the first
//! ones ([`Recording`] into [`Heard`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{HopError, ProxyCommandError, SshStage};
use crate::ssh::transport::CommandWatch;

/// russh's error in words for a handshake or a session end.
pub(crate) fn describe_ssh_error(e: &russh::Error) -> String {
    match e {
        russh::Error::Disconnect => "the server closed the connection".into(),
        russh::Error::HUP => "the connection was closed during the handshake".into(),
        russh::Error::KeepaliveTimeout => {
            "no answer to keepalives (ServerAliveInterval x ServerAliveCountMax)".into()
        }
        _ if is_closed(e) => "the connection was closed during the handshake".into(),
        other => other.to_string(),
    }
}

/// Why a session that was up (`up_for`: since it authenticated) ended with `e`, or, when it
/// was not up yet, what [`describe_ssh_error`] says: "after 12 s up: the other end closed
/// the connection (EOF)".
pub(crate) fn describe_loss(e: &russh::Error, up_for: Option<Duration>) -> String {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let Some(up_for) = up_for else {
        return describe_ssh_error(e);
    };
    let why = match e {
        russh::Error::HUP => "the other end closed the connection (EOF)".to_string(),
        russh::Error::IO(io) if io.kind() == UnexpectedEof => {
            "the other end closed the connection (EOF)".to_string()
        }
        russh::Error::IO(io) if io.kind() == ConnectionReset => {
            "the connection was reset (by the server or something on the way)".to_string()
        }
        russh::Error::IO(io) if matches!(io.kind(), BrokenPipe | ConnectionAborted) => {
            format!("the connection broke ({io})")
        }
        russh::Error::KeepaliveTimeout => {
            "no answer to keepalives (ServerAliveInterval x ServerAliveCountMax)".to_string()
        }
        russh::Error::Disconnect => "the server closed the connection".to_string(),
        other => other.to_string(),
    };
    format!("after {} up: {why}", up_time(up_for))
}

/// "12 s", "3 min 4 s", "2 h 5 min": how long a session was up.
fn up_time(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// Whether `e` says the peer went away (closed or reset the connection).
fn is_closed(e: &russh::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    match e {
        russh::Error::Disconnect | russh::Error::HUP => true,
        russh::Error::IO(io) => matches!(
            io.kind(),
            UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted
        ),
        _ => false,
    }
}

/// How much of what a server sends first is kept, to say what answered when the handshake
/// fails or stalls (russh's errors do not carry it).
const HEARD_LIMIT: usize = 512;
/// How much of a line an error message quotes.
const QUOTE_LIMIT: usize = 60;
/// The longest identification line russh accepts (RFC 4253: 255 bytes with CR LF).
const MAX_ID_LINE: usize = 255;

/// What a hop's server sent before its session was up, shared by the stream that records it
/// and the code that reports a failed or stalled handshake (also after a timeout dropped the
/// handshake).
#[derive(Debug, Clone, Default)]
pub(crate) struct Heard(Arc<Mutex<HeardState>>);

#[derive(Debug, Default)]
struct HeardState {
    /// The byte stream to the server exists (TCP connected, channel opened, command run).
    connected: bool,
    /// The first [`HEARD_LIMIT`] bytes it sent.
    bytes: Vec<u8>,
    /// The stream is a `ProxyCommand`'s (as run), and where its end is published.
    command: Option<(String, CommandWatch)>,
}

/// How long a failed handshake waits for a `ProxyCommand` whose output closed to end (its
/// exit status and stderr follow its stdout at once; a command that lives on is not
/// waited for longer).
const COMMAND_END_WAIT: Duration = Duration::from_secs(2);

/// What the recorded bytes show.
enum Said<'a> {
    Nothing,
    /// An SSH identification line (`SSH-2.0-...`).
    Banner(&'a [u8]),
    /// Something else: the server is not an SSH server (or not one russh speaks to).
    NotSsh(String),
}

impl Heard {
    /// The byte stream to the server exists.
    pub(crate) fn connected(&self) {
        if let Ok(mut state) = self.0.lock() {
            state.connected = true;
        }
    }

    /// The stream is the `ProxyCommand` `command`'s; its end is published on `watch`.
    pub(crate) fn command(&self, command: &str, watch: CommandWatch) {
        if let Ok(mut state) = self.0.lock() {
            state.command = Some((command.to_string(), watch));
        }
    }

    /// [`Heard::failure`], but a `ProxyCommand` that ended before the server said anything
    /// is the failure: its exit status and the last line of its stderr (`exec: nc: not
    /// found`, status 127), rather than "the server closed the connection".
    pub(crate) async fn failure_after_command(&self, e: russh::Error) -> HopError {
        let (_, bytes) = self.snapshot();
        let command = self.0.lock().ok().and_then(|s| s.command.clone());
        let silent = matches!(said(&bytes), Said::Nothing) && is_closed(&e);
        if let (true, Some((command, mut watch))) = (silent, command) {
            let waited = tokio::time::timeout(COMMAND_END_WAIT, watch.wait_for(Option::is_some));
            if let Ok(Ok(end)) = waited.await
                && let Some(end) = end.clone()
            {
                return HopError::ProxyCommand {
                    command,
                    source: ProxyCommandError::Ended {
                        status: end.status,
                        last_line: end.last_line,
                    },
                };
            }
        }
        self.failure(e)
    }

    /// Records `bytes`; false once the limit is reached (recording can stop).
    fn record(&self, bytes: &[u8]) -> bool {
        let Ok(mut state) = self.0.lock() else {
            return false;
        };
        let room = HEARD_LIMIT.saturating_sub(state.bytes.len());
        state
            .bytes
            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
        state.bytes.len() < HEARD_LIMIT
    }

    fn snapshot(&self) -> (bool, Vec<u8>) {
        self.0
            .lock()
            .map(|s| (s.connected, s.bytes.clone()))
            .unwrap_or_default()
    }

    /// The handshake failed with `e`.
    pub(crate) fn failure(&self, e: russh::Error) -> HopError {
        let (_, bytes) = self.snapshot();
        match said(&bytes) {
            Said::NotSsh(what) => HopError::Handshake { what, cause: e },
            Said::Nothing if is_closed(&e) => HopError::Handshake {
                what: "the server closed the connection without sending anything (no SSH server \
                       there?)"
                    .into(),
                cause: e,
            },
            // Not closed: russh's own words say it.
            Said::Nothing => HopError::Ssh {
                stage: SshStage::Handshake,
                source: e,
            },
            Said::Banner(banner) if is_closed(&e) => HopError::Handshake {
                what: format!(
                    "the server ({}) closed the connection during the key exchange",
                    quote(banner)
                ),
                cause: e,
            },
            Said::Banner(banner) => HopError::Ssh {
                stage: SshStage::KeyExchange {
                    banner: quote(banner),
                },
                source: e,
            },
        }
    }

    /// ConnectTimeout passed: where the handshake stood.
    pub(crate) fn timeout(&self, after: Duration) -> HopError {
        let (connected, bytes) = self.snapshot();
        let stage = match said(&bytes) {
            Said::Nothing if !connected => {
                "the connection to the server was not established".into()
            }
            Said::Nothing => "the server accepted the connection but sent nothing".into(),
            Said::NotSsh(what) => what,
            Said::Banner(banner) => format!(
                "the server ({}) stopped answering during the key exchange",
                quote(banner)
            ),
        };
        HopError::Timeout { after, stage }
    }
}

/// The lines OpenSSH's sshd sends instead of its identification when its policy turns a
/// connection away (`sshd.c`, `drop_connection`), and what they mean.
const REFUSALS: &[(&str, &str)] = &[
    (
        "Exceeded MaxStartups",
        "its MaxStartups limit: too many connections are waiting to log in; try again in a \
         moment, or ask its admin to raise MaxStartups",
    ),
    (
        "Not allowed at this time",
        "its PerSourcePenalties: this address is penalised for earlier failures; try again \
         later",
    ),
];

/// Reads the first bytes a server sent the way russh does (`ssh_read.rs`): lines before the
/// `SSH-2.0-`/`SSH-1.99-` line are allowed, a line may not exceed 255 bytes.
fn said(bytes: &[u8]) -> Said<'_> {
    if bytes.is_empty() {
        return Said::Nothing;
    }
    let mut rest = bytes;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = rest.get(..end).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() < MAX_ID_LINE
            && (line.starts_with(b"SSH-2.0-") || line.starts_with(b"SSH-1.99-"))
        {
            return Said::Banner(line);
        }
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    // No identification line: describe the first line.
    let first_end = bytes.iter().position(|&b| b == b'\n');
    let first = bytes
        .get(..first_end.unwrap_or(bytes.len()))
        .unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let quoted = quote(first);
    let after_line = first_end.map_or(bytes.len(), |e| e + 1);
    let quoted = if bytes.len() > after_line && !quoted.ends_with("...") {
        quoted + "..."
    } else {
        quoted
    };
    let too_long = first_end.map_or(bytes.len() >= MAX_ID_LINE, |e| e > MAX_ID_LINE);
    if let Some((said, why)) = REFUSALS
        .iter()
        .find(|(line, _)| first.eq_ignore_ascii_case(line.as_bytes()))
    {
        return Said::NotSsh(format!(
            "the SSH server refused the connection: it said \"{said}\" ({why})"
        ));
    }
    Said::NotSsh(if first.starts_with(b"SSH-") && too_long {
        format!(
            "the server's SSH identification line is longer than {MAX_ID_LINE} bytes (it sent \
             {quoted})"
        )
    } else if first.starts_with(b"SSH-") {
        format!("the server speaks an SSH version pgtunnel does not (it sent {quoted})")
    } else if too_long {
        format!(
            "the server did not speak SSH (it sent more than {MAX_ID_LINE} bytes without a line \
             end: {quoted})"
        )
    } else {
        format!("the server did not speak SSH (it sent {quoted})")
    })
}

/// The start of `line` in quotes (`...` after it when cut), with control characters and
/// quotes escaped: a hostile peer chooses these bytes, they must not reach the terminal as
/// they are.
fn quote(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let shown: String = text.chars().take(QUOTE_LIMIT).collect();
    let cut = if shown.len() < text.len() { "..." } else { "" };
    format!("\"{}\"{cut}", shown.escape_debug())
}

/// A hop's byte stream that records what the server sends first into [`Heard`] (then stops
/// recording: one `Option` check per read afterwards).
pub(crate) struct Recording<S> {
    inner: S,
    heard: Option<Heard>,
}

impl<S> Recording<S> {
    /// `inner`, recording into `heard`.
    pub(crate) fn new(inner: S, heard: &Heard) -> Self {
        Recording {
            inner,
            heard: Some(heard.clone()),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (std::task::Poll::Ready(Ok(())), Some(heard)) = (&poll, &this.heard) {
            let new = buf.filled().get(before..).unwrap_or_default();
            if !heard.record(new) {
                this.heard = None;
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_ssh(bytes: &[u8]) -> String {
        match said(bytes) {
            Said::NotSsh(text) => text,
            Said::Nothing => "nothing".into(),
            Said::Banner(b) => format!("banner {}", quote(b)),
        }
    }

    #[test]
    fn what_the_server_said() {
        assert_eq!(not_ssh(b""), "nothing");
        // Lines before the identification line are allowed (RFC 4253 4.2).
        assert_eq!(
            not_ssh(b"hello\r\nSSH-2.0-OpenSSH_9.2\r\n\0\0"),
            "banner \"SSH-2.0-OpenSSH_9.2\""
        );
        assert_eq!(
            not_ssh(b"SSH-1.5-old\n"),
            "the server speaks an SSH version pgtunnel does not (it sent \"SSH-1.5-old\")"
        );
        assert_eq!(
            not_ssh("caf\u{e9} \u{202e}\n".as_bytes()),
            "the server did not speak SSH (it sent \"caf\u{e9} \\u{202e}\")"
        );
        assert_eq!(
            not_ssh(b"\xff\xfe\n"),
            "the server did not speak SSH (it sent \"\u{fffd}\u{fffd}\")"
        );
        // Issue 14: sshd's policy turning the connection away is not "not SSH".
        assert_eq!(
            not_ssh(b"Exceeded MaxStartups\r\n"),
            "the SSH server refused the connection: it said \"Exceeded MaxStartups\" (its \
             MaxStartups limit: too many connections are waiting to log in; try again in a \
             moment, or ask its admin to raise MaxStartups)"
        );
        // A partial first line (the server is still sending, or stalled).
        assert_eq!(
            not_ssh(b"220 smtp.example ESMTP"),
            "the server did not speak SSH (it sent \"220 smtp.example ESMTP\")"
        );
    }

    fn heard(connected: bool, bytes: &[u8]) -> Heard {
        let heard = Heard::default();
        if connected {
            heard.connected();
        }
        heard.record(bytes);
        heard
    }

    #[test]
    fn failed_handshakes_say_what_the_server_did() {
        let reset = || russh::Error::IO(std::io::ErrorKind::ConnectionReset.into());
        let kex_closed = "the server (\"SSH-2.0-x\") closed the connection during the key exchange";
        let silent =
            "the server closed the connection without sending anything (no SSH server there?)";
        let failed = "SSH session failed: Key exchange init failed";
        let kex_failed =
            "SSH session failed: key exchange with \"SSH-2.0-x\" failed: Key exchange init failed";
        let smtp = "the server did not speak SSH (it sent \"220 smtp.example ESMTP\")";
        let id = b"SSH-2.0-x\r\n";
        let table: Vec<(&[u8], russh::Error, &str)> = vec![
            (b"", russh::Error::HUP, silent),
            (b"", russh::Error::KexInit, failed),
            (id, russh::Error::Disconnect, kex_closed),
            (id, reset(), kex_closed),
            (id, russh::Error::KexInit, kex_failed),
            (b"220 smtp.example ESMTP\r\n", russh::Error::Version, smtp),
        ];
        for (bytes, e, expected) in table {
            let what = format!("{bytes:?} {e:?}");
            assert_eq!(
                heard(true, bytes).failure(e).to_string(),
                expected,
                "{what}"
            );
        }
    }

    /// Issue 14: a session that was up is "lost after N s up", with why; one that was not is
    /// still a handshake that failed.
    #[test]
    fn a_lost_session_says_how_long_it_was_up_and_why() {
        let up = Some(Duration::from_secs(12));
        let io = |kind: std::io::ErrorKind| russh::Error::IO(kind.into());
        assert_eq!(
            describe_loss(&russh::Error::HUP, up),
            "after 12 s up: the other end closed the connection (EOF)"
        );
        assert_eq!(
            describe_loss(&io(std::io::ErrorKind::UnexpectedEof), up),
            "after 12 s up: the other end closed the connection (EOF)"
        );
        assert_eq!(
            describe_loss(
                &io(std::io::ErrorKind::ConnectionReset),
                Some(Duration::from_secs(200))
            ),
            "after 3 min 20 s up: the connection was reset (by the server or something on the way)"
        );
        assert_eq!(
            describe_loss(
                &russh::Error::KeepaliveTimeout,
                Some(Duration::from_secs(7300))
            ),
            "after 2 h 1 min up: no answer to keepalives (ServerAliveInterval x \
             ServerAliveCountMax)"
        );
        assert_eq!(
            describe_loss(&russh::Error::HUP, None),
            "the connection was closed during the handshake"
        );
    }

    #[test]
    fn timeouts_say_where_the_handshake_stood() {
        let after = Duration::from_secs(5);
        let stage = |connected, bytes: &[u8]| heard(connected, bytes).timeout(after).to_string();
        let prefix = "no SSH session within 5s (ConnectTimeout): ";
        assert_eq!(
            stage(false, b""),
            format!("{prefix}the connection to the server was not established")
        );
        assert_eq!(
            stage(true, b""),
            format!("{prefix}the server accepted the connection but sent nothing")
        );
        assert_eq!(
            stage(true, b"SSH-2.0-x\r\n"),
            format!("{prefix}the server (\"SSH-2.0-x\") stopped answering during the key exchange")
        );
        assert_eq!(
            stage(true, &[b'x'; 300]),
            format!(
                "{prefix}the server did not speak SSH (it sent more than 255 bytes without a line \
                 end: {})",
                quote(&[b'x'; 300])
            )
        );
    }
}
