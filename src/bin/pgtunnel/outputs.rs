//! Where a running pgtunnel's output goes: the human lines (stdout, or stderr with `--json`),
//! one JSON event per line on stdout (`--json`), and systemd's notify socket
//! (`NOTIFY_SOCKET`).

use std::sync::Arc;

use pgtunnel::fleet::monitor::Change;
use pgtunnel::forward::{ConnEvent, ConnObserver};
use pgtunnel::notify::Notifier;
use pgtunnel::plan::path::PathReport;
use pgtunnel::status::{EventWriter, JsonEvent};
use tracing::warn;

/// The outputs of a running pgtunnel.
pub struct Outputs {
    json: Option<Arc<EventWriter>>,
    notifier: Option<Arc<Notifier>>,
    stopping_sent: std::sync::atomic::AtomicBool,
}

impl Outputs {
    /// `--json` or not; systemd's socket from the environment.
    pub fn new(json: bool) -> Self {
        let notifier = match Notifier::from_env(&|k| std::env::var(k).ok()) {
            Ok(n) => n.map(Arc::new),
            Err(e) => {
                warn!("NOTIFY_SOCKET ignored: {e}");
                None
            }
        };
        Outputs {
            json: json.then(|| Arc::new(EventWriter::stdout())),
            notifier,
            stopping_sent: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A human line: stdout, or stderr when stdout carries JSON events.
    pub fn say(&self, line: &str) {
        match self.json {
            Some(_) => eprintln!("{line}"),
            None => println!("{line}"),
        }
    }

    /// A path report (after `heading`, if any); with `-q` only its warnings, as warnings on
    /// stderr (an exposed listener, a key exchange that is not post-quantum).
    pub fn report(&self, heading: Option<&str>, report: &PathReport, quiet: bool) {
        if !quiet {
            match heading {
                Some(heading) => self.say(&format!("{heading}:\n{report}")),
                None => self.say(&report.to_string()),
            }
            return;
        }
        for note in &report.notes {
            if let Some(warning) = note.strip_prefix("Warning: ") {
                match heading {
                    Some(heading) => warn!("{heading}: {warning}"),
                    None => warn!("{warning}"),
                }
            }
        }
    }

    /// A JSON event line (`--json` only).
    pub fn event(&self, event: &JsonEvent) {
        if let Some(json) = &self.json
            && let Err(e) = json.emit(event)
        {
            warn!("--json: cannot write an event: {e}");
        }
    }

    /// Connection events of `tunnel` as JSON lines (`None` without `--json`).
    pub fn connections(&self, tunnel: &str) -> Option<ConnObserver> {
        let json = self.json.clone()?;
        let tunnel = tunnel.to_string();
        Some(Arc::new(move |event| {
            let event = match event {
                ConnEvent::Opened { peer } => JsonEvent::ConnectionOpened {
                    tunnel: tunnel.clone(),
                    peer: peer.to_string(),
                },
                ConnEvent::Closed {
                    peer,
                    bytes_up,
                    bytes_down,
                    duration,
                    how,
                } => JsonEvent::ConnectionClosed {
                    tunnel: tunnel.clone(),
                    peer: peer.to_string(),
                    bytes_up,
                    bytes_down,
                    duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                    how,
                },
            };
            let _ = json.emit(&event);
        }))
    }

    /// Hop losses and recoveries: JSON lines, and systemd's `STATUS=`.
    pub fn on_change(&self) -> Arc<dyn Fn(Change) + Send + Sync> {
        let json = self.json.clone();
        let notifier = self.notifier.clone();
        Arc::new(move |change| {
            let (event, status) = match change {
                Change::Lost {
                    tunnel,
                    hop,
                    reason,
                } => (
                    JsonEvent::HopLost {
                        tunnel: tunnel.clone(),
                        hop: hop.clone(),
                        reason: reason.clone(),
                    },
                    format!("{tunnel}: {hop} lost ({reason}); reconnecting"),
                ),
                Change::Recovered {
                    tunnel,
                    hop,
                    attempts,
                } => (
                    JsonEvent::HopRecovered {
                        tunnel: tunnel.clone(),
                        hop: hop.clone(),
                        attempts,
                    },
                    format!("{tunnel}: {hop} back (attempt {attempts})"),
                ),
            };
            if let Some(json) = &json {
                let _ = json.emit(&event);
            }
            if let Some(n) = &notifier
                && let Err(e) = n.status(&status)
            {
                warn!("systemd notify: {e}");
            }
        })
    }

    /// Every tunnel is up: `READY=1` and the summary as `STATUS=`.
    pub fn notify_ready(&self, summary: &str) {
        if let Some(n) = &self.notifier
            && let Err(e) = n.status(summary).and_then(|()| n.ready())
        {
            warn!("systemd notify: {e}");
        }
    }

    /// The end: `STOPPING=1` (if not said yet) and the `stopped` event.
    pub fn stopped(&self, ended: &pgtunnel::forward::Ended) {
        self.notify_stopping();
        self.event(&JsonEvent::Stopped {
            reason: match ended {
                pgtunnel::forward::Ended::Shutdown { .. } => "shutdown".into(),
                pgtunnel::forward::Ended::Cut { cut } => {
                    format!("shutdown, cut short: {cut} open connection(s) closed at once")
                }
                pgtunnel::forward::Ended::ChainLost { hop, reason } => {
                    format!("lost the SSH session to {hop}: {reason}")
                }
                pgtunnel::forward::Ended::ReconnectRefused { error, .. } => {
                    format!("could not re-establish the chain: {error}")
                }
            },
            exit_code: crate::exit_number(ended),
        });
    }

    /// Stopping: `STOPPING=1`, once.
    pub fn notify_stopping(&self) {
        if self
            .stopping_sent
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        if let Some(n) = &self.notifier
            && let Err(e) = n.stopping()
        {
            warn!("systemd notify: {e}");
        }
    }
}
