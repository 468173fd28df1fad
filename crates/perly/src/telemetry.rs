//! Structured logs with `tracing`; the filter comes from `RUST_LOG` or the
//! `log` setting, the format from `log_format` (`PERLY_LOG_FORMAT`): `text`
//! (human-readable, the default) or `json` (one JSON object per line, the
//! event's fields at the top level beside `timestamp`, `level`, `message`
//! and the current `span`). Text has ANSI colours only when standard output
//! is a terminal (and `NO_COLOR` is unset), so logs sent to a file or a pipe
//! hold no escape codes. Secrets never reach a log line: they are
//! `SecretString`s.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub use crate::config::LogFormat;

/// Whether text logs may use colours: stdout is a terminal and `NO_COLOR`
/// (<https://no-color.org>) is unset or empty.
pub fn colours() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber (once per process; later calls do nothing).
pub fn init(default_filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colours()).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
