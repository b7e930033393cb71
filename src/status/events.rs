//! JSON event lines: with `--json`, a running tunnel writes one JSON object per line on
//! stdout, for supervisors and scripts (the human output goes to stderr then).
//!
//! Each line is an object with `"time"` (unix seconds as a number, millisecond precision,
//! e.g. `1767225600.123`), `"event"` (the kind, snake case) and the kind's fields:
//!
//! ```json
//! {"time":1767225600.123,"event":"ready","tunnel":"staging","listen":["127.0.0.1:6543"],"target":"db:5432","path_report":"..."}
//! {"time":1767225601.5,"event":"connection_opened","tunnel":"staging","peer":"127.0.0.1:50312"}
//! {"time":1767225609.25,"event":"connection_closed","tunnel":"staging","peer":"127.0.0.1:50312","bytes_up":120,"bytes_down":4096,"duration_ms":7750,"how":"closed"}
//! {"time":1767225700.0,"event":"hop_lost","tunnel":"staging","hop":"bastion","reason":"keepalive timeout"}
//! {"time":1767225703.0,"event":"hop_recovered","tunnel":"staging","hop":"bastion","attempts":2}
//! {"time":1767225800.0,"event":"stopped","reason":"interrupted","exit_code":0}
//! ```
//!
//! Strings never contain a raw newline (JSON escapes it), so a line is always one event.
//! Kinds and fields may be added; none are renamed or removed. Consumers should ignore kinds
//! and fields they do not know.

use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One event of a running tunnel (see the module docs for the line format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JsonEvent {
    /// The tunnel is up and accepting.
    Ready {
        /// The tunnel's name.
        tunnel: String,
        /// Where it listens (`"127.0.0.1:6543"`, a socket path).
        listen: Vec<String>,
        /// The target, `host:port`.
        target: String,
        /// The path report as printed (several lines in one string).
        path_report: String,
    },
    /// A local client connected.
    ConnectionOpened {
        /// The tunnel's name.
        tunnel: String,
        /// The client's address (`"127.0.0.1:50312"`, or the socket path for a Unix socket).
        peer: String,
    },
    /// A local client's connection ended.
    ConnectionClosed {
        /// The tunnel's name.
        tunnel: String,
        /// The client's address.
        peer: String,
        /// Bytes from the client to the target.
        bytes_up: u64,
        /// Bytes from the target to the client.
        bytes_down: u64,
        /// How long it was open, milliseconds.
        duration_ms: u64,
        /// `"closed"` (both sides finished), `"reset: WHY"` (the chain was lost, or an error),
        /// `"refused: WHY"` (the last hop refused the channel, or the connection was turned
        /// away).
        how: String,
    },
    /// A hop's session was lost.
    HopLost {
        /// The tunnel's name.
        tunnel: String,
        /// The hop's name.
        hop: String,
        /// Why.
        reason: String,
    },
    /// A lost hop's session is up again.
    HopRecovered {
        /// The tunnel's name.
        tunnel: String,
        /// The hop's name.
        hop: String,
        /// Attempts it took.
        attempts: u32,
    },
    /// The process is stopping; the last event.
    Stopped {
        /// Why (`"interrupted"`, the error).
        reason: String,
        /// The exit code it exits with.
        exit_code: i32,
    },
    /// A non-fatal problem.
    Warning {
        /// What.
        message: String,
    },
    /// An error (a `stopped` event follows when it is fatal).
    Error {
        /// What.
        message: String,
    },
}

/// A parsed event line: its time and the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    /// Unix seconds.
    pub time: f64,
    /// The event.
    #[serde(flatten)]
    pub event: JsonEvent,
}

#[derive(Serialize)]
struct LineRef<'a> {
    time: f64,
    #[serde(flatten)]
    event: &'a JsonEvent,
}

/// The event as one line of JSON (no newline in it, none at the end), stamped with `time`
/// (unix seconds, rounded to the millisecond). Pure.
///
/// ```
/// use pgtunnel::status::{JsonEvent, to_line};
/// let e = JsonEvent::Warning { message: "a\nb".into() };
/// assert_eq!(to_line(&e, 2.5), r#"{"time":2.5,"event":"warning","message":"a\nb"}"#);
/// ```
pub fn to_line(event: &JsonEvent, time: f64) -> String {
    let time = (time * 1000.0).round() / 1000.0;
    serde_json::to_string(&LineRef { time, event }).unwrap_or_else(|e| {
        // Cannot happen (no maps, no non-string keys); still one valid line.
        let message = serde_json::Value::String(format!("cannot serialize an event: {e}"));
        format!(r#"{{"time":{time},"event":"error","message":{message}}}"#)
    })
}

/// Parses one event line (for consumers and tests).
pub fn parse_line(line: &str) -> Result<EventLine, serde_json::Error> {
    serde_json::from_str(line)
}

/// Writes event lines to stdout (or any writer): each line whole (one `write_all` under a
/// lock, so lines from several tasks never interleave) and flushed at once.
pub struct EventWriter {
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter").finish_non_exhaustive()
    }
}

impl EventWriter {
    /// Writes to stdout.
    pub fn stdout() -> Self {
        Self::new(std::io::stdout())
    }

    /// Writes to `out`.
    pub fn new(out: impl Write + Send + 'static) -> Self {
        EventWriter {
            out: Mutex::new(Box::new(out)),
        }
    }

    /// Writes the event stamped with the current time. An error (stdout closed: `EPIPE`) is
    /// returned; the caller decides whether it matters.
    pub fn emit(&self, event: &JsonEvent) -> std::io::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.emit_at(event, now)
    }

    /// Writes the event stamped with `time` (unix seconds).
    pub fn emit_at(&self, event: &JsonEvent, time: f64) -> std::io::Result<()> {
        let mut line = to_line(event, time);
        line.push('\n');
        // A panic elsewhere while holding the lock leaves no half line: write_all is the only
        // thing done under it. Keep writing.
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(line.as_bytes())?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            // Short writes, to show that lines stay whole anyway.
            let n = buf.len().min(7);
            self.0.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn every_kind() -> Vec<JsonEvent> {
        let t = || "staging".to_string();
        vec![
            JsonEvent::Ready {
                tunnel: t(),
                listen: vec!["127.0.0.1:6543".into()],
                target: "db:5432".into(),
                path_report: "you -> bastion: ssh\nbastion -> db: plain TCP\n".into(),
            },
            JsonEvent::ConnectionOpened {
                tunnel: t(),
                peer: "127.0.0.1:50312".into(),
            },
            JsonEvent::ConnectionClosed {
                tunnel: t(),
                peer: "127.0.0.1:50312".into(),
                bytes_up: 120,
                bytes_down: 4096,
                duration_ms: 7750,
                how: "reset: hop 2 lost".into(),
            },
            JsonEvent::HopLost {
                tunnel: t(),
                hop: "bastion".into(),
                reason: "keepalive timeout".into(),
            },
            JsonEvent::HopRecovered {
                tunnel: t(),
                hop: "bastion".into(),
                attempts: 2,
            },
            JsonEvent::Stopped {
                reason: "interrupted".into(),
                exit_code: 130,
            },
            JsonEvent::Warning {
                message: "w".into(),
            },
            JsonEvent::Error {
                message: "e".into(),
            },
        ]
    }

    #[test]
    fn one_line_each_tagged_snake_case_and_round_trips() {
        let kinds = [
            "ready",
            "connection_opened",
            "connection_closed",
            "hop_lost",
            "hop_recovered",
            "stopped",
            "warning",
            "error",
        ];
        for (event, kind) in every_kind().into_iter().zip(kinds) {
            let line = to_line(&event, 1_767_225_600.123_456);
            assert!(!line.contains('\n'), "{line}");
            assert!(
                line.starts_with(&format!(r#"{{"time":1767225600.123,"event":"{kind}""#)),
                "{line}"
            );
            let back = parse_line(&line).unwrap();
            assert_eq!(back.event, event);
            assert_eq!(back.time, 1_767_225_600.123);
        }
    }

    #[test]
    fn pinned_lines() {
        let events = every_kind();
        assert_eq!(
            to_line(&events[0], 10.0),
            r#"{"time":10.0,"event":"ready","tunnel":"staging","listen":["127.0.0.1:6543"],"target":"db:5432","path_report":"you -> bastion: ssh\nbastion -> db: plain TCP\n"}"#
        );
        assert_eq!(
            to_line(&events[2], 10.5),
            r#"{"time":10.5,"event":"connection_closed","tunnel":"staging","peer":"127.0.0.1:50312","bytes_up":120,"bytes_down":4096,"duration_ms":7750,"how":"reset: hop 2 lost"}"#
        );
    }

    #[test]
    fn unknown_fields_are_ignored_unknown_kinds_are_errors() {
        let newer = r#"{"time":1,"event":"warning","message":"m","extra":true}"#;
        assert_eq!(
            parse_line(newer).unwrap().event,
            JsonEvent::Warning {
                message: "m".into()
            }
        );
        assert!(parse_line(r#"{"time":1,"event":"later_kind"}"#).is_err());
    }

    #[test]
    fn writer_keeps_lines_whole_across_threads() {
        let buf = Shared::default();
        let writer = Arc::new(EventWriter::new(buf.clone()));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for j in 0..50 {
                        let message = format!("thread {i} line {j} {}", "x".repeat(100));
                        writer.emit(&JsonEvent::Warning { message }).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 400);
        for line in lines {
            let parsed = parse_line(line).unwrap();
            assert!(parsed.time > 1.0e9, "{line}");
        }
        assert!(text.ends_with('\n'));
    }
}
