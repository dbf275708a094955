//! Log setup: human lines or JSON, filtered by `RUST_LOG` or the config's `log_level`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber writing to stderr.
///
/// Colours only on a terminal; under systemd (`JOURNAL_STREAM` set) text lines leave the
/// timestamp to journald.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = match (format, journald) {
        (LogFormat::Text, false) => builder.try_init(),
        (LogFormat::Text, true) => builder.without_time().try_init(),
        (LogFormat::Json, _) => builder.json().flatten_event(true).try_init(),
    };
}
