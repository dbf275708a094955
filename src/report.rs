//! Renders outcomes for people (`mailprobe probe` table) and for machines (`--json`).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::probe::{Outcome, ServerTime};

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn result_word(o: &Outcome) -> &'static str {
    match (o.success(), o.slow) {
        (true, false) => "ok",
        (true, true) => "slow",
        (false, _) => "FAIL",
    }
}

/// The table `mailprobe probe` prints: one row per target, then one detail line per target.
pub fn table(outcomes: &[Outcome]) -> String {
    let headers = [
        "TARGET",
        "REGION",
        "PROTOCOL",
        "RESULT",
        "CLASS",
        "PHASE",
        "TOTAL_MS",
        "PHASES_MS",
    ];
    let mut rows: Vec<[String; 8]> = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        let (class, phase) = o
            .failure
            .as_ref()
            .map_or(("-", "-"), |f| (f.class.as_str(), f.phase.as_str()));
        rows.push([
            o.target.name.clone(),
            o.target.region.clone(),
            o.target.protocol().as_str().to_string(),
            result_word(o).to_string(),
            class.to_string(),
            phase.to_string(),
            format!("{:.1}", ms(o.total)),
            phase_list(&o.phases),
        ]);
        // An MX target's hosts, one row each under the domain's.
        for h in o.mx.iter().flat_map(|m| &m.hosts) {
            let (class, phase) = h
                .failure
                .as_ref()
                .map_or(("-", "-"), |f| (f.class.as_str(), f.phase.as_str()));
            rows.push([
                format!("└ {} ({})", h.name, h.preference),
                String::new(),
                "mx host".into(),
                if h.failure.is_none() { "ok" } else { "FAIL" }.into(),
                class.to_string(),
                phase.to_string(),
                format!("{:.1}", ms(h.total)),
                phase_list(&h.phases),
            ]);
        }
    }
    let mut out = crate::table::render(&headers, &rows);
    out.push('\n');
    for o in outcomes {
        let _ = writeln!(out, "{}: {}", o.target.name, detail_line(o));
        for h in o.mx.iter().flat_map(|m| &m.hosts) {
            let parts = session_parts(h.failure.as_ref(), h.peer.as_ref(), h.tls.as_ref());
            let mut parts = parts;
            if let Some(b) = &h.banner {
                parts.push(format!("greeting {b:?}"));
            }
            if h.tls.is_none() && h.failure.is_none() {
                parts.push("STARTTLS not offered".into());
            }
            let _ = writeln!(
                out,
                "{} └ {} ({}): {}",
                o.target.name,
                h.name,
                h.preference,
                if parts.is_empty() {
                    "-".into()
                } else {
                    parts.join("; ")
                }
            );
        }
    }
    out
}

fn phase_list(phases: &[crate::probe::PhaseTiming]) -> String {
    phases
        .iter()
        .map(|p| format!("{}={:.1}", p.phase.as_str(), ms(p.duration)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What one session showed: its failure, where it connected, what TLS established.
fn session_parts(
    failure: Option<&crate::probe::Failure>,
    peer: Option<&std::net::SocketAddr>,
    tls: Option<&crate::tls::TlsFacts>,
) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(f) = failure {
        parts.push(format!("{} at {}: {}", f.class, f.phase.as_str(), f.detail));
    }
    if let Some(peer) = peer {
        parts.push(format!(
            "connected to {peer} ({})",
            crate::probe::net::IpFamily::of(peer).name()
        ));
    }
    if let Some(tls) = tls {
        let mut s = String::new();
        if let Some(v) = &tls.version {
            let _ = write!(s, "{v}");
            if let Some(c) = &tls.cipher {
                let _ = write!(s, " {c}");
            }
        } else {
            s.push_str("TLS not established");
        }
        if let Some(cert) = &tls.cert {
            let _ = write!(
                s,
                "; certificate {} expires {}",
                cert.subject,
                expiry(cert.not_after)
            );
        }
        if let Some(check) = tls.cert_check {
            let _ = write!(
                s,
                "; certificate check: {} (reported, not failed)",
                check.as_str()
            );
        }
        parts.push(s);
    }
    parts
}

fn detail_line(o: &Outcome) -> String {
    let mut parts = session_parts(o.failure.as_ref(), o.peer.as_ref(), o.tls.as_ref());
    if let Some(mx) = &o.mx {
        use crate::probe::mx::MxKind;
        let hosts = match mx.kind {
            MxKind::Published if mx.found > mx.hosts.len() => {
                format!("{} MX hosts, the first {} probed", mx.found, mx.hosts.len())
            }
            MxKind::Published => format!("{} MX host(s)", mx.found),
            MxKind::Implicit => "no MX record: the domain's own address is the MX".into(),
            MxKind::Null => "null MX: the domain accepts no mail".into(),
            MxKind::Unknown => "MX hosts unknown".into(),
        };
        let decided = mx
            .deciding
            .and_then(|i| mx.hosts.get(i))
            .map(|h| format!(", the domain's result is {}'s", h.name))
            .unwrap_or_default();
        parts.push(format!("{}: {hosts}{decided}", mx.domain));
    }
    if let Some(b) = &o.banner {
        parts.push(format!("greeting {b:?}"));
    }
    if let Some(t) = &o.token {
        let mut s = format!("OAuth2 token for {}", t.credential);
        match t.fetched {
            Some((took, true)) => {
                let _ = write!(s, " fetched in {:.1} ms", ms(took));
            }
            Some((took, false)) => {
                let _ = write!(s, ": token endpoint failed after {:.1} ms", ms(took));
            }
            None => s.push_str(" from the cache"),
        }
        if let Some(exp) = t.expires {
            let _ = write!(s, ", expires {}", humantime::format_rfc3339_seconds(exp));
        }
        parts.push(s);
    }
    if let Some(h) = &o.http {
        let mut s = format!("{} {} from {}", h.version, h.status, h.url);
        if h.redirects > 0 {
            let _ = write!(s, " after {} redirect(s)", h.redirects);
        }
        parts.push(s);
    }
    if let Some(d) = &o.delivery {
        if let Some(l) = d.latency {
            let mut s = format!("delivered in {:.3} s", l.as_secs_f64());
            // Seen is when mailprobe noticed; the server's stamp says when the mail system was
            // done (a server silent in IDLE makes the two differ by up to poll_interval).
            match &d.server {
                Some(ServerTime::Stamped { took, source }) => {
                    let _ = write!(
                        s,
                        " (seen), {} says within {:.3} s",
                        source.as_str(),
                        took.as_secs_f64()
                    );
                }
                Some(ServerTime::Unknown(why)) => {
                    let _ = write!(s, " (seen), server's own time unknown: {why}");
                }
                None => {}
            }
            parts.push(s);
        }
        if !d.late.is_empty() {
            let worst = d.late.iter().max().copied().unwrap_or_default();
            parts.push(format!(
                "{} late message(s) from earlier runs found and deleted (slowest took {})",
                d.late.len(),
                humantime::format_duration(Duration::from_secs(worst.as_secs()))
            ));
        }
        if d.swept > 0 {
            parts.push(format!("{} old probe message(s) swept", d.swept));
        }
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

fn expiry(not_after: i64) -> String {
    let Ok(secs) = u64::try_from(not_after) else {
        return format!("at {not_after}");
    };
    let when = UNIX_EPOCH + Duration::from_secs(secs);
    let date = humantime::format_rfc3339_seconds(when);
    match when.duration_since(SystemTime::now()) {
        Ok(left) => format!("{date} (in {} days)", left.as_secs() / 86_400),
        Err(e) => format!(
            "{date} (EXPIRED {} days ago)",
            e.duration().as_secs() / 86_400
        ),
    }
}

/// One JSON object per outcome, for `mailprobe probe --json`.
pub fn json(o: &Outcome) -> Value {
    json!({
        "target": o.target.name,
        "region": o.target.region,
        "protocol": o.target.protocol(),
        "started_at": humantime::format_rfc3339_millis(o.started_at).to_string(),
        "success": o.success(),
        "slow": o.slow,
        "class": o.failure.as_ref().map(|f| f.class),
        "phase": o.failure.as_ref().map(|f| f.phase),
        "prober_fault": o.failure.as_ref().and_then(|f| f.fault),
        "detail": o.failure.as_ref().map(|f| f.detail.clone()),
        "total_ms": ms(o.total),
        "phases": o.phases.iter().map(|p| json!({"phase": p.phase, "ms": ms(p.duration)})).collect::<Vec<_>>(),
        "tls": o.tls,
        "banner": o.banner,
        "peer": o.peer.map(|p| json!({
            "address": p.to_string(),
            "family": crate::probe::net::IpFamily::of(&p),
        })),
        "http": o.http,
        "token": o.token.as_ref().map(|t| json!({
            "credential": t.credential,
            "fetched_ms": t.fetched.map(|(d, _)| ms(d)),
            "fetch_ok": t.fetched.map(|(_, ok)| ok),
            "expires": t.expires.map(|e| humantime::format_rfc3339_seconds(e).to_string()),
        })),
        "mx": o.mx.as_ref().map(|m| json!({
            "domain": m.domain,
            "kind": m.kind.as_str(),
            "found": m.found,
            "deciding": m.deciding.and_then(|i| m.hosts.get(i)).map(|h| h.name.as_str()),
            "hosts": m.hosts.iter().map(|h| json!({
                "name": h.name,
                "preference": h.preference,
                "success": h.failure.is_none(),
                "class": h.failure.as_ref().map(|f| f.class),
                "phase": h.failure.as_ref().map(|f| f.phase),
                "prober_fault": h.failure.as_ref().and_then(|f| f.fault),
                "detail": h.failure.as_ref().map(|f| f.detail.clone()),
                "total_ms": ms(h.total),
                "phases": h.phases.iter().map(|p| json!({"phase": p.phase, "ms": ms(p.duration)})).collect::<Vec<_>>(),
                "tls": h.tls,
                "banner": h.banner,
                "peer": h.peer.map(|p| p.to_string()),
            })).collect::<Vec<_>>(),
        })),
        "delivery": o.delivery.as_ref().map(|d| json!({
            "latency_ms": d.latency.map(ms),
            "server_ms": match &d.server {
                Some(ServerTime::Stamped { took, .. }) => Some(ms(*took)),
                _ => None,
            },
            "server_source": match &d.server {
                Some(ServerTime::Stamped { source, .. }) => Some(*source),
                _ => None,
            },
            "server_unknown": match &d.server {
                Some(ServerTime::Unknown(why)) => Some(why.as_str()),
                _ => None,
            },
            "late_ms": d.late.iter().copied().map(ms).collect::<Vec<_>>(),
            "swept": d.swept,
        })),
    })
}
