//! Maintenance windows as every part sees them: which targets or regions, from when to when,
//! and why. Here, below both the loader (`[[maintenance]]`) and the incident service (windows
//! stored by `mailprobe maintenance add`), so that neither imports the other.

use std::time::SystemTime;

use serde::Serialize;

/// RFC 3339 in UTC, to the second.
fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The longest window accepted: a forgotten `--duration 10y` would silence a target for good.
pub const MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(31 * 86_400);
/// The longest reason kept: a sentence or two for the status page.
pub const MAX_REASON: usize = 500;

/// Where a window was declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase", tag = "source", content = "id")]
pub enum Source {
    /// `[[maintenance]]` number `n` (1-based) of the config.
    Config(usize),
    /// Row `id` of the database, added by `mailprobe maintenance add`.
    Cli(i64),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Config(n) => write!(f, "config maintenance[{n}]"),
            Source::Cli(id) => write!(f, "#{id}"),
        }
    }
}

/// One maintenance window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Where it was declared.
    pub source: Source,
    /// Targets it covers by name.
    pub targets: Vec<String>,
    /// Regions it covers whole.
    pub regions: Vec<String>,
    /// When it starts (inclusive).
    pub start: SystemTime,
    /// When it ends (exclusive).
    pub end: SystemTime,
    /// Why, in words for the status page.
    pub reason: String,
}

/// Why a window cannot be accepted (the config loader and the CLI word the where).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Neither targets nor regions: it would cover nothing (or, read loosely, everything).
    #[error("names no targets and no regions: say which targets or regions are under maintenance")]
    Empty,
    /// End not after start.
    #[error("ends ({end}) before or when it starts ({start})")]
    Backwards {
        /// Start, RFC 3339.
        start: String,
        /// End, RFC 3339.
        end: String,
    },
    /// Longer than [`MAX_WINDOW`].
    #[error("lasts longer than 31 days; split long work into windows people can follow")]
    TooLong,
    /// No reason, or an overlong one.
    #[error("reason must be 1 to 500 characters (it is shown on the status page)")]
    Reason,
}

impl Window {
    /// Checks what every window must satisfy, wherever it was declared.
    pub fn check(&self) -> Result<(), WindowError> {
        if self.targets.is_empty() && self.regions.is_empty() {
            return Err(WindowError::Empty);
        }
        let Ok(len) = self.end.duration_since(self.start) else {
            return Err(self.backwards());
        };
        if len.is_zero() {
            return Err(self.backwards());
        }
        if len > MAX_WINDOW {
            return Err(WindowError::TooLong);
        }
        let n = self.reason.chars().count();
        if n == 0 || n > MAX_REASON || self.reason.trim().is_empty() {
            return Err(WindowError::Reason);
        }
        Ok(())
    }

    fn backwards(&self) -> WindowError {
        WindowError::Backwards {
            start: timestamp(self.start),
            end: timestamp(self.end),
        }
    }

    /// Whether it is in force at `at`.
    pub fn active(&self, at: SystemTime) -> bool {
        self.start <= at && at < self.end
    }

    /// Whether it covers the target `name` of `region` (at any time).
    pub fn covers(&self, name: &str, region: &str) -> bool {
        self.targets.iter().any(|t| t == name) || self.regions.iter().any(|r| r == region)
    }
}

/// The windows in force at `at` that cover the target `name` of `region`.
pub fn covering<'a>(
    windows: &'a [Window],
    name: &str,
    region: &str,
    at: SystemTime,
) -> impl Iterator<Item = &'a Window> {
    windows
        .iter()
        .filter(move |w| w.active(at) && w.covers(name, region))
}

/// Windows in force or still to come at `at`, soonest first: what the page announces.
pub fn current_and_upcoming(windows: &[Window], at: SystemTime) -> Vec<&Window> {
    let mut out: Vec<&Window> = windows.iter().filter(|w| w.end > at).collect();
    out.sort_by_key(|w| (w.start, w.end, w.source));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn window(targets: &[&str], regions: &[&str], start: u64, end: u64) -> Window {
        Window {
            source: Source::Cli(1),
            targets: targets.iter().map(|s| s.to_string()).collect(),
            regions: regions.iter().map(|s| s.to_string()).collect(),
            start: t(start),
            end: t(end),
            reason: "kernel update".into(),
        }
    }

    #[test]
    fn a_window_is_half_open() {
        let w = window(&["imap-eu"], &[], 100, 200);
        assert!(!w.active(t(99)));
        assert!(w.active(t(100)));
        assert!(w.active(t(199)));
        assert!(!w.active(t(200)), "the end is when probing counts again");
    }

    #[test]
    fn a_target_is_covered_by_name_or_by_its_region() {
        let w = window(&["smtp-us"], &["eu"], 0, 10);
        assert!(w.covers("imap-eu", "eu"));
        assert!(w.covers("smtp-us", "us"));
        assert!(!w.covers("imap-us", "us"));
        let all = [w.clone(), window(&["imap-us"], &[], 20, 30)];
        assert_eq!(covering(&all, "imap-us", "us", t(5)).count(), 0);
        assert_eq!(covering(&all, "imap-us", "us", t(25)).count(), 1);
    }

    #[test]
    fn bad_windows_are_refused_with_the_reason() {
        assert_eq!(window(&[], &[], 0, 10).check(), Err(WindowError::Empty));
        assert!(matches!(
            window(&["a"], &[], 10, 10).check(),
            Err(WindowError::Backwards { .. })
        ));
        assert!(matches!(
            window(&["a"], &[], 10, 5).check(),
            Err(WindowError::Backwards { .. })
        ));
        assert_eq!(
            window(&["a"], &[], 0, 32 * 86_400).check(),
            Err(WindowError::TooLong)
        );
        let mut w = window(&["a"], &[], 0, 10);
        w.reason = "  ".into();
        assert_eq!(w.check(), Err(WindowError::Reason));
        w.reason = "x".repeat(501);
        assert_eq!(w.check(), Err(WindowError::Reason));
        w.reason = "ok".into();
        assert_eq!(w.check(), Ok(()));
    }

    #[test]
    fn ended_windows_are_not_announced_and_the_rest_come_soonest_first() {
        let ws = [
            window(&["c"], &[], 500, 600),
            window(&["a"], &[], 0, 50),
            window(&["b"], &[], 90, 150),
        ];
        let shown: Vec<&str> = current_and_upcoming(&ws, t(100))
            .iter()
            .map(|w| w.targets[0].as_str())
            .collect();
        assert_eq!(shown, ["b", "c"]);
    }
}
