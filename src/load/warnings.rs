//! What `check` warns about: a timeout that leaves too little time for the login, so a
//! rejected password would read as a timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigWarning, KeyPath, Locator};
use crate::probe::{Phase, Target};

/// What login needs of a probe's deadline: Courier waits about 5 s before rejecting a wrong
/// password, Cyrus about 3 s.
const LOGIN_TIME: Duration = Duration::from_secs(5);
/// What one network round trip before login is allowed, for the warning: a slow
/// intercontinental path.
const ROUND_TRIP: Duration = Duration::from_millis(250);

/// Where a target's timeout came from.
#[derive(Clone, Copy, Debug)]
pub(super) enum TimeoutFrom {
    /// Its own `timeout`.
    Target,
    /// `[global] timeout`.
    Global,
    /// Its `interval`, shorter than the global timeout.
    Interval,
}

/// A warning for each target whose timeout, minus what the phases before login take on a slow
/// path, leaves under [`LOGIN_TIME`] for the login: servers that delay rejecting a wrong
/// password (Cyrus about 3 s, Courier about 5 s; Dovecot's `auth_failure_delay` is 2 s) would
/// then make a rejected password read as a timeout. Round trips log in with their legs'
/// timeouts, so a leg's warning names them.
pub(super) fn login_time(
    loc: &Locator<'_>,
    targets: &[Arc<Target>],
    timeouts: &HashMap<String, (usize, TimeoutFrom)>,
) -> Vec<ConfigWarning> {
    let mut warnings = Vec::new();
    // Round trips by the legs they log in through.
    let mut rounds_of: HashMap<&str, Vec<String>> = HashMap::new();
    for r in targets {
        for leg in r.spec.get().legs() {
            rounds_of
                .entry(leg)
                .or_default()
                .push(format!("{:?}", r.name));
        }
    }
    for t in targets {
        let Some((login, before)) = phases_before_login(t) else {
            continue;
        };
        let trips: u32 = before.iter().map(|(_, n)| n).sum();
        let spent = ROUND_TRIP * trips;
        let left = t.timeout.saturating_sub(spent);
        if left >= LOGIN_TIME {
            continue;
        }
        let Some(&(i, from)) = timeouts.get(&t.name) else {
            continue;
        };
        let names: Vec<&str> = before.iter().map(|(p, _)| p.as_str()).collect();
        let names = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => names.join(""),
        };
        let from = match from {
            TimeoutFrom::Target => "",
            TimeoutFrom::Global => " (from [global])",
            TimeoutFrom::Interval => " (from its interval)",
        };
        let rounds = match rounds_of.get(t.name.as_str()).map(Vec::as_slice) {
            None | Some([]) => String::new(),
            Some([one]) => format!(" (round trip {one} logs in with it too)"),
            Some(many) => format!(" (round trips {} log in with it too)", many.join(", ")),
        };
        let path = KeyPath::target(i).key("timeout");
        let (line, column) = loc.position(&path);
        warnings.push(ConfigWarning {
            file: loc.file.to_path_buf(),
            line,
            column,
            key: loc.key_text(&path),
            message: format!(
                "{}{from} leaves about {} for {} after {names} ({trips} round trips, {} each): \
                 Cyrus waits about 3s and Courier about 5s before rejecting a wrong password, \
                 so a rejection would read as a timeout, not auth_rejected; give it at least \
                 {}{rounds}",
                humantime::format_duration(t.timeout),
                humantime::format_duration(left),
                login.as_str(),
                humantime::format_duration(ROUND_TRIP),
                humantime::format_duration(spent + LOGIN_TIME),
            ),
        });
    }
    warnings
}

/// The phase that sends a target's credentials and the phases before it, each with the network
/// round trips it waits for (a full TLS handshake two, a token fetch five, DNS none for an IP
/// address, any other one); `None` for targets that do not log in.
fn phases_before_login(t: &Target) -> Option<(Phase, Vec<(Phase, u32)>)> {
    let spec = t.spec.get();
    let login = spec.login_phase()?;
    let ip = spec
        .endpoint()
        .is_some_and(|e| e.host.parse::<std::net::IpAddr>().is_ok());
    let mut before = Vec::new();
    for p in spec.phases() {
        let trips = match p {
            p if p == login => return Some((login, before)),
            Phase::Dns if ip => continue,
            Phase::Tls => 2,
            Phase::Token => 5,
            _ => 1,
        };
        before.push((p, trips));
    }
    None
}
