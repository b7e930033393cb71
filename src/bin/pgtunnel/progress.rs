//! How the library's progress events are shown: a spinner per hop on a terminal, plain log
//! lines otherwise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pgtunnel::event::{Event, Observer};
use tracing::{debug, info, warn};

/// Spinners per hop on a terminal, plain lines otherwise.
pub struct Progress {
    bars: Option<MultiProgress>,
    state: Arc<Mutex<HashMap<String, ProgressBar>>>,
    quiet: bool,
}

impl Progress {
    /// Spinners when `spinners` (a terminal) and not `quiet`; log lines otherwise.
    pub fn new(quiet: bool, spinners: bool) -> Self {
        let bars = (!quiet && spinners).then(MultiProgress::new);
        Progress {
            bars,
            state: Arc::new(Mutex::new(HashMap::new())),
            quiet,
        }
    }

    /// The spinners, if drawn (hidden while a question is asked).
    pub fn bars(&self) -> Option<MultiProgress> {
        self.bars.clone()
    }

    /// Where the library sends its events.
    pub fn observer(&self) -> Observer {
        let bars = self.bars.clone();
        let state = self.state.clone();
        let quiet = self.quiet;
        Observer::new(move |event| match &bars {
            None => log(event, quiet),
            Some(bars) => {
                if let Ok(mut state) = state.lock() {
                    draw(bars, &mut state, &event);
                }
            }
        })
    }

    /// Ends the spinners (the chain is up, or connecting stopped).
    pub fn finish(&self) {
        if let Ok(mut state) = self.state.lock() {
            let drawn = !state.is_empty();
            for (_, bar) in state.drain() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            // indicatif leaves the cursor at the end of the last bar's line: end that line,
            // or the next output (the ready line) would continue it.
            if drawn && self.bars.is_some() {
                eprintln!();
            }
        }
    }
}

/// An event as a log line.
fn log(event: Event, quiet: bool) {
    match event {
        Event::Warning(w) => warn!("{w}"),
        Event::HopFailed { .. } => {}
        // Where each hop stands is for the spinners, or -v.
        Event::Waiting { .. } => debug!("{}", describe(&event)),
        other if !quiet => info!("{}", describe(&other)),
        _ => {}
    }
}

/// An event on the hops' spinners.
fn draw(bars: &MultiProgress, state: &mut HashMap<String, ProgressBar>, event: &Event) {
    match event {
        Event::Connecting { hop, .. } => {
            let bar = bars.add(ProgressBar::new_spinner());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            bar.set_message(describe(event));
            state.insert(hop.to_string(), bar);
        }
        Event::Waiting { hop, .. } | Event::HostKeyVerified { hop, .. } => {
            if let Some(bar) = state.get(&hop.to_string()) {
                bar.set_message(describe(event));
            }
        }
        Event::Authenticated { hop, .. } => {
            if let Some(bar) = state.get(&hop.to_string()) {
                bar.finish_with_message(format!("✓ {}", describe(event)));
            }
        }
        Event::Shared { hop } => {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.finish_with_message(format!("✓ {}", describe(event)));
            state.insert(hop.to_string(), bar);
        }
        Event::HopFailed { hop } => {
            if let Some(bar) = state.get(&hop.to_string()) {
                bar.abandon_with_message(format!("✗ {hop}: failed"));
            }
        }
        Event::Warning(w) => {
            let _ = bars.println(format!("warning: {w}"));
        }
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::Connecting { hop, how } => format!("{hop}: connecting ({how})"),
        Event::Waiting { hop, stage } => format!("{hop}: waiting for {stage}"),
        Event::HostKeyVerified {
            hop,
            fingerprint,
            how,
        } => format!("{hop}: host key {fingerprint} verified ({how})"),
        Event::Authenticated { hop, how } => format!("{hop}: authenticated as {how}"),
        Event::Shared { hop } => format!("{hop}: session already up, shared"),
        Event::HopFailed { hop } => format!("{hop}: failed"),
        Event::Warning(w) => format!("warning: {w}"),
    }
}
