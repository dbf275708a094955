//! What every part of the config checks the same way: durations and their bounds, label values
//! (target names, regions), host names, and the log format.

use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::locate::{KeyPath, Locator};

/// The shortest interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest interval, slow threshold or delivery timeout: a target probed less than daily is
/// not monitored, and larger values overflowed timers.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// How the daemon writes its log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (journald adds its own timestamps).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `interval`, `timeout` and `slow_threshold` of the table at `path`: within bounds, and a
/// timeout no longer than the interval (probes of one target never overlap).
pub fn check_timing(
    loc: &Locator<'_>,
    path: &KeyPath,
    interval: Duration,
    timeout: Duration,
    slow: Duration,
) -> Result<(), ConfigError> {
    if interval < MIN_INTERVAL {
        return Err(loc.error(&path.key("interval"), "must be at least 1s"));
    }
    if interval > MAX_INTERVAL {
        return Err(loc.error(&path.key("interval"), "must be at most 24h"));
    }
    if timeout.is_zero() {
        return Err(loc.error(&path.key("timeout"), "must be greater than zero"));
    }
    if timeout > interval {
        return Err(loc.error(
            &path.key("timeout"),
            format!(
                "timeout ({}) must not exceed the interval ({}): probes of one target never overlap",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            ),
        ));
    }
    if slow.is_zero() {
        return Err(loc.error(&path.key("slow_threshold"), "must be greater than zero"));
    }
    if slow > MAX_INTERVAL {
        return Err(loc.error(&path.key("slow_threshold"), "must be at most 24h"));
    }
    Ok(())
}

/// Label values (target names, regions) stay short, printable and safe on a command line.
pub fn check_label(s: &str) -> Result<(), String> {
    let ok_start = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if s.is_empty() || s.len() > 128 || !ok_start || !ok_chars {
        return Err(format!(
            "{s:?} must be 1-128 characters of letters, digits, '-', '_', '.', ':' and start with \
             a letter or digit"
        ));
    }
    Ok(())
}

/// A DNS name (labels of letters, digits, `-`, `_`) or an IP address.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if valid {
        Ok(())
    } else {
        Err(format!("{host:?} is not a host name or IP address"))
    }
}
