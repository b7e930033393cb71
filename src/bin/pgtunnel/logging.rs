//! Log lines. At the default verbosity they read like the binary's own `pgtunnel:` lines
//! (`pgtunnel: warning: ...`, a field as `(open=1)` after the message); with `-v` they are
//! tracing's own format, with timestamps, levels and every field.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::args::Output;

/// Sets up logging to stderr: `-q` warnings and errors only, `-v`/`-vv` more detail (and
/// tracing's format); `PGTUNNEL_LOG` (an `EnvFilter`) overrides the levels.
pub fn init(args: Output) {
    let default = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (_, 0) => "warn,pgtunnel=info",
        (_, 1) => "info,pgtunnel=debug",
        _ => "debug,pgtunnel=trace",
    };
    let filter =
        EnvFilter::try_from_env("PGTUNNEL_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if args.verbose > 0 {
        // Timestamps help when debugging.
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    } else {
        builder.with_ansi(false).event_format(Human).init();
    }
}

/// `pgtunnel: [warning: |error: ]MESSAGE[ (field=value, ...)]`.
struct Human;

impl<S, N> FormatEvent<S, N> for Human
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        writeln!(
            writer,
            "{}",
            human_line(*event.metadata().level(), &fields.message, &fields.rest)
        )
    }
}

/// One log line in the binary's own format (pure).
fn human_line(level: Level, message: &str, fields: &[(String, String)]) -> String {
    let mut line = String::from(match level {
        Level::ERROR => "pgtunnel: error: ",
        Level::WARN => "pgtunnel: warning: ",
        _ => "pgtunnel: ",
    });
    line.push_str(message);
    if !fields.is_empty() {
        let list: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(line, " ({})", list.join(", "));
    }
    line
}

/// An event's message and its other fields, in order.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            name => self.rest.push((name.to_string(), value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_like_the_binarys_own() {
        assert_eq!(human_line(Level::INFO, "stopped", &[]), "pgtunnel: stopped");
        assert_eq!(
            human_line(
                Level::WARN,
                "accept failed",
                &[("cause".into(), "EMFILE".into())]
            ),
            "pgtunnel: warning: accept failed (cause=EMFILE)"
        );
        assert_eq!(
            human_line(
                Level::ERROR,
                "x",
                &[("a".into(), "1".into()), ("b".into(), "2".into())]
            ),
            "pgtunnel: error: x (a=1, b=2)"
        );
        assert_eq!(human_line(Level::DEBUG, "d", &[]), "pgtunnel: d");
    }
}
