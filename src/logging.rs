//! Log setup: human lines or JSON, filtered by `RUST_LOG` or the config's `log_level`.
//!
//! Other crates log at most at `warn`, whatever `RUST_LOG` asks for: at debug and trace they
//! print protocol traffic (async-imap every IMAP command, LOGIN passwords and AUTHENTICATE
//! blobs included; h2 and hyper headers such as Authorization; rustls handshakes).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Target prefix of mailprobe's own events (the library and the binary): the only ones allowed
/// below `warn`.
const OWN_TARGET: &str = "mailprobe";

/// Installs the global subscriber writing to stderr.
///
/// Colours only on a terminal; under systemd (`JOURNAL_STREAM` set) text lines leave the
/// timestamp to journald. `default_level` applies unless `RUST_LOG` is set; either way other
/// crates stay at `warn` or quieter (see the module doc).
pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let registry = tracing_subscriber::registry()
        .with(quiet_libraries())
        .with(filter);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = match (format, journald) {
        (LogFormat::Text, false) => registry.with(layer).try_init(),
        (LogFormat::Text, true) => registry.with(layer.without_time()).try_init(),
        (LogFormat::Json, _) => registry.with(layer.json().flatten_event(true)).try_init(),
    };
}

/// Mailprobe's own events at any level; every other crate's at `warn` and above only. A filter
/// of its own, so `RUST_LOG` (the other filter) can narrow it but never widen it.
fn quiet_libraries() -> Targets {
    Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target(OWN_TARGET, LevelFilter::TRACE)
}
