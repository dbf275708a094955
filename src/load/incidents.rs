//! `[incidents]`: where the incident history lives, the hysteresis of target health, and how
//! long resolved incidents are kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, KeyPath, LoadState, Locator};

/// Where incident history lives when neither `state_dir` nor systemd's `STATE_DIRECTORY` says.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/mailprobe";
const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86_400);
/// 100 years of 365.25 days (humantime's `100y`).
const MAX_RETENTION: Duration = Duration::from_secs(100 * 31_557_600);

/// Where and how the incident timeline is kept, from `[incidents]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentSettings {
    /// The directory holding the SQLite database.
    pub state_dir: PathBuf,
    /// Hysteresis: results in a row before a target's health changes.
    pub policy: Policy,
    /// Closed incidents older than this are deleted.
    pub retention: Duration,
}

/// How many results in a row change a target's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Failures (or slow successes) in a row before `down` (or `degraded`).
    pub down_after: u32,
    /// Successes in a row before a target is back.
    pub up_after: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            down_after: 3,
            up_after: 2,
        }
    }
}

/// `[incidents]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIncidents {
    state_dir: Option<String>,
    down_after: Option<u32>,
    up_after: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    retention: Option<Duration>,
}

/// Checks `[incidents]` and fills in its defaults.
pub(super) fn incidents(
    loc: &Locator<'_>,
    load: &LoadState,
    raw: RawIncidents,
) -> Result<IncidentSettings, ConfigError> {
    let path = KeyPath::table("incidents");
    let state_dir = match &raw.state_dir {
        Some(d) => load.resolve_path(d),
        None => std::env::var_os("STATE_DIRECTORY")
            .map(|d| {
                // systemd may pass several, colon-separated; the first is ours.
                let d = d.to_string_lossy().into_owned();
                PathBuf::from(d.split(':').next().unwrap_or(&d))
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
    };
    let defaults = Policy::default();
    let policy = Policy {
        down_after: raw.down_after.unwrap_or(defaults.down_after),
        up_after: raw.up_after.unwrap_or(defaults.up_after),
    };
    for (key, v) in [
        ("down_after", policy.down_after),
        ("up_after", policy.up_after),
    ] {
        if !(1..=100).contains(&v) {
            return Err(loc.error(&path.key(key), "must be between 1 and 100"));
        }
    }
    let retention = raw.retention.unwrap_or(DEFAULT_RETENTION);
    if retention < Duration::from_secs(3600) {
        return Err(loc.error(&path.key("retention"), "must be at least 1h"));
    }
    if retention > MAX_RETENTION {
        return Err(loc.error(&path.key("retention"), "must be at most 100y"));
    }
    // `run` creates the directory; a path that cannot become one fails here, at `check`.
    if let Some(m) = not_a_directory(&state_dir) {
        let whence = match (&raw.state_dir, std::env::var_os("STATE_DIRECTORY")) {
            (Some(_), _) => "",
            (None, Some(_)) => " (from $STATE_DIRECTORY)",
            (None, None) => " (the default)",
        };
        return Err(loc.error(
            &path.key("state_dir"),
            format!("{}{whence}: {m}", state_dir.display()),
        ));
    }
    Ok(IncidentSettings {
        state_dir,
        policy,
        retention,
    })
}

/// Why `dir` cannot be (or become) a directory: it, or the nearest part of it that exists, is
/// something else (a regular file, say). `None` when it is a directory or can be created.
fn not_a_directory(dir: &Path) -> Option<String> {
    let mut p = dir;
    loop {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => return None,
            Ok(_) if p == dir => return Some("exists and is not a directory".into()),
            Ok(_) => return Some(format!("{} is not a directory", p.display())),
            Err(_) => match p.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => p = parent,
                _ => return None,
            },
        }
    }
}
