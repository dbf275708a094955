//! `[[maintenance]]`: planned work declared in the config, reloaded with it. Each table names
//! `targets` and/or `regions`, a `start` (a TOML date-time with its UTC offset), an `end` or a
//! `duration`, and a `reason` for the status page. Windows added at run time by `mailprobe
//! maintenance add` live in the incident database instead (see `incidents::maintenance`).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use toml::value::Datetime;

use crate::config::maintenance::{Source, Window, WindowError};
use crate::config::{ConfigError, KeyPath, Locator};

/// One `[[maintenance]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaintenance {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    regions: Vec<String>,
    start: Datetime,
    end: Option<Datetime>,
    #[serde(default, with = "humantime_serde")]
    duration: Option<Duration>,
    reason: String,
}

/// A TOML date-time with a UTC offset as a point in time; a local date-time (no offset) would
/// mean different moments on different probers, so it is refused.
pub fn instant(dt: &Datetime) -> Result<SystemTime, String> {
    if dt.date.is_none() || dt.time.is_none() || dt.offset.is_none() {
        return Err(format!(
            "{dt} is not a date and time with a UTC offset (e.g. 2026-12-01T22:00:00Z or \
             2026-12-01T23:00:00+01:00)"
        ));
    }
    let parsed =
        chrono::DateTime::parse_from_rfc3339(&dt.to_string()).map_err(|e| format!("{dt}: {e}"))?;
    let secs = parsed.timestamp();
    let nanos = parsed.timestamp_subsec_nanos();
    u64::try_from(secs)
        .map(|s| SystemTime::UNIX_EPOCH + Duration::new(s, nanos))
        .map_err(|_| format!("{dt} is before 1970"))
}

/// Checks each `[[maintenance]]` against the target names and regions, and builds its window.
pub(super) fn windows(
    loc: &Locator<'_>,
    raw: Vec<RawMaintenance>,
    names: &BTreeSet<String>,
    regions: &BTreeSet<String>,
) -> Result<Vec<Window>, ConfigError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, m) in raw.into_iter().enumerate() {
        let path = KeyPath::table("maintenance").index(i);
        let at = |key: &str| path.key(key);
        for t in &m.targets {
            if !names.contains(t) {
                return Err(loc.error(&at("targets"), format!("no target named {t:?}")));
            }
        }
        for r in &m.regions {
            if !regions.contains(r) {
                return Err(loc.error(
                    &at("regions"),
                    format!("no target is in region {r:?}, so the window would cover nothing"),
                ));
            }
        }
        let start = instant(&m.start).map_err(|e| loc.error(&at("start"), e))?;
        let (end, end_key) = match (&m.end, m.duration) {
            (Some(end), None) => (instant(end).map_err(|e| loc.error(&at("end"), e))?, "end"),
            (None, Some(d)) => (start + d, "duration"),
            (Some(_), Some(_)) => {
                return Err(loc.error(&at("duration"), "give either end or duration, not both"));
            }
            (None, None) => {
                return Err(loc.error(&path, "needs an end or a duration"));
            }
        };
        let window = Window {
            source: Source::Config(i + 1),
            targets: m.targets,
            regions: m.regions,
            start,
            end,
            reason: m.reason.trim().to_string(),
        };
        window.check().map_err(|e| {
            let key = match e {
                WindowError::Empty => path.clone(),
                WindowError::Backwards { .. } | WindowError::TooLong => at(end_key),
                WindowError::Reason => at("reason"),
            };
            loc.error(&key, e.to_string())
        })?;
        out.push(window);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const TARGETS: &str = "[[target]]\nname = \"imap-eu\"\nregion = \"eu\"\nprotocol = \"imap\"\n\
        host = \"h\"\nusername = \"u\"\npassword_env = \"HOME\"\n";

    fn load(maintenance: &str) -> Result<Vec<Window>, String> {
        crate::load::parse(Path::new("p.toml"), &format!("{TARGETS}{maintenance}"))
            .map(|c| c.maintenance)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_window_by_end_or_by_duration() {
        let ws = load(
            "[[maintenance]]\ntargets = [\"imap-eu\"]\nstart = 2026-12-01T22:00:00Z\n\
             end = 2026-12-02T01:00:00+01:00\nreason = \"disk swap\"\n\
             [[maintenance]]\nregions = [\"eu\"]\nstart = 2026-12-03T22:00:00Z\n\
             duration = \"2h\"\nreason = \"network work\"\n",
        )
        .unwrap();
        assert_eq!(ws.len(), 2);
        assert_eq!(ws[0].source, Source::Config(1));
        assert_eq!(
            ws[0].end.duration_since(ws[0].start).unwrap().as_secs(),
            7200
        );
        assert_eq!(ws[1].regions, ["eu"]);
        assert_eq!(
            ws[1].end.duration_since(ws[1].start).unwrap().as_secs(),
            7200
        );
    }

    #[test]
    fn errors_name_file_line_column_and_key() {
        let cases = [
            (
                "[[maintenance]]\ntargets = [\"imap-us\"]\nstart = 2026-12-01T22:00:00Z\nduration = \"1h\"\nreason = \"r\"\n",
                "p.toml:9:1: maintenance[1].targets: no target named \"imap-us\"",
            ),
            (
                "[[maintenance]]\nregions = [\"us\"]\nstart = 2026-12-01T22:00:00Z\nduration = \"1h\"\nreason = \"r\"\n",
                "p.toml:9:1: maintenance[1].regions: no target is in region \"us\"",
            ),
            (
                "[[maintenance]]\ntargets = [\"imap-eu\"]\nstart = 2026-12-01T22:00:00\nduration = \"1h\"\nreason = \"r\"\n",
                "p.toml:10:1: maintenance[1].start: 2026-12-01T22:00:00 is not a date and time with a UTC offset",
            ),
            (
                "[[maintenance]]\ntargets = [\"imap-eu\"]\nstart = 2026-12-01T22:00:00Z\nend = 2026-12-01T21:00:00Z\nreason = \"r\"\n",
                "p.toml:11:1: maintenance[1].end: ends (2026-12-01T21:00:00Z) before or when it starts",
            ),
            (
                "[[maintenance]]\ntargets = [\"imap-eu\"]\nstart = 2026-12-01T22:00:00Z\nreason = \"r\"\n",
                "maintenance[1]: needs an end or a duration",
            ),
            (
                "[[maintenance]]\ntargets = [\"imap-eu\"]\nstart = 2026-12-01T22:00:00Z\nduration = \"1h\"\nend = 2026-12-01T23:00:00Z\nreason = \"r\"\n",
                "maintenance[1].duration: give either end or duration, not both",
            ),
            (
                "[[maintenance]]\nstart = 2026-12-01T22:00:00Z\nduration = \"1h\"\nreason = \"r\"\n",
                "maintenance[1]: names no targets and no regions",
            ),
            (
                "[[maintenance]]\ntargets = [\"imap-eu\"]\nstart = 2026-12-01T22:00:00Z\nduration = \"40d\"\nreason = \"r\"\n",
                "maintenance[1].duration: lasts longer than 31 days",
            ),
            (
                "[[maintenance]]\ntargets = [\"imap-eu\"]\nstart = 2026-12-01T22:00:00Z\nduration = \"1h\"\nreason = \"\"\n",
                "maintenance[1].reason: reason must be 1 to 500 characters",
            ),
            (
                "[[maintenance]]\ntargets = [\"imap-eu\"]\nstart = 2026-12-01T22:00:00Z\nduration = \"1h\"\nreason = \"r\"\nwhy = \"r\"\n",
                "maintenance[1]",
            ),
        ];
        for (text, want) in cases {
            let e = load(text).unwrap_err();
            assert!(e.contains(want), "{text}\n got: {e}\nwant: {want}");
            assert!(e.starts_with("p.toml:"), "{e}");
        }
    }
}
