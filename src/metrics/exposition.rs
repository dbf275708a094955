//! Per-target series kept as plain numbers and written straight into the text format.
//!
//! The prometheus crate keeps every series with its own copy of the label pairs and of the
//! family's description, and a scrape first copies all of them into protobuf-like structs and
//! sorts them. At 10,000 targets (about 29 series each) that cost about 400 MiB and 450 ms a
//! scrape (BENCHMARKS.md). Here a target's label text is built once, its values are numbers
//! under one lock, and rendering writes lines directly, family by family, in batches of targets
//! so the lock is never held for long. The output is the same text format, labels in the same
//! (sorted) order as the crate writes them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use crate::incidents::{Health, TargetState};
use crate::probe::net::IpFamily;
use crate::probe::{Phase, Target};

use super::{DELIVERY_BUCKETS, DURATION_BUCKETS, unix_seconds};
use crate::load::MetricsSettings;

/// A histogram's buckets (not cumulative), sum and count.
#[derive(Clone, Copy)]
pub(super) struct Hist<const N: usize> {
    counts: [u64; N],
    sum: f64,
    count: u64,
}

impl<const N: usize> Default for Hist<N> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<const N: usize> Hist<N> {
    const EMPTY: Self = Hist {
        counts: [0; N],
        sum: 0.0,
        count: 0,
    };

    /// Counts `v` in the first bucket whose bound is at least `v`, as the crate does.
    pub(super) fn observe(&mut self, bounds: &[f64], v: f64) {
        if let Some(i) = bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }
}

/// Round-trip series.
pub(super) struct Roundtrip {
    /// Per-target delivery histogram: only with `[metrics] per_target_histograms`.
    pub(super) delivery: Hist<{ DELIVERY_BUCKETS.len() }>,
    pub(super) last_delivery: Option<f64>,
    pub(super) last_server_delivery: Option<f64>,
    pub(super) late: u64,
    pub(super) swept: u64,
}

impl Roundtrip {
    pub(super) fn new() -> Box<Roundtrip> {
        Box::new(Roundtrip {
            delivery: Hist::EMPTY,
            last_delivery: None,
            last_server_delivery: None,
            late: 0,
            swept: 0,
        })
    }
}

/// MX series: the domain's host count and each probed host's result, at most `max_hosts`.
#[derive(Default)]
pub(super) struct MxSeries {
    /// MX hosts the last lookup found (`None` when it failed).
    pub(super) found: Option<u64>,
    pub(super) hosts: Vec<MxHostSeries>,
}

/// One MX host's series.
#[derive(Clone)]
pub(super) struct MxHostSeries {
    /// `mx="…",`, the label sorted before `protocol`.
    pub(super) label: String,
    /// `None` until a probe of it ran (it was skipped for a prober fault).
    pub(super) success: Option<bool>,
    pub(super) cert: Option<crate::tls::CertCheck>,
    pub(super) cert_expiry: Option<f64>,
}

/// Everything exported about one target. `None` means the series does not exist (yet).
pub(super) struct TargetSeries {
    pub(super) protocol: &'static str,
    /// Its region, the key of its [`Group`] with the protocol.
    pub(super) region: Arc<str>,
    /// `protocol="…",region="…"`: the labels sorted before `result` and `target`.
    lead: String,
    /// `target="…"`.
    tail: String,
    pub(super) last_success: Option<SystemTime>,
    /// `(class, phase)` of the current failure, if the last probe failed.
    pub(super) failing: Option<(&'static str, &'static str)>,
    /// Set by the first outcome: success, slow, consecutive failures and last run exist.
    pub(super) last_run: Option<f64>,
    pub(super) last_duration: f64,
    pub(super) success: bool,
    pub(super) slow: bool,
    pub(super) consecutive_failures: u64,
    /// Failures by `(class, phase)`, every pair ever counted.
    pub(super) failures: BTreeMap<(&'static str, &'static str), u64>,
    /// Per-target duration histogram: only with `[metrics] per_target_histograms`.
    pub(super) duration: Hist<{ DURATION_BUCKETS.len() }>,
    /// Each phase the last probe reached, with its duration: only with `[metrics]
    /// phase_gauges` (empty otherwise). A phase not reached has no entry, so no series.
    pub(super) phases: BTreeMap<Phase, f64>,
    pub(super) cert_expiry: Option<f64>,
    pub(super) tls_version: Option<String>,
    /// Address family of the last connection established.
    pub(super) family: Option<IpFamily>,
    pub(super) http_status: Option<i64>,
    pub(super) roundtrip: Option<Box<Roundtrip>>,
    /// MX targets: per-host series, replaced by each outcome.
    pub(super) mx: Option<Box<MxSeries>>,
}

impl TargetSeries {
    /// The series a target has from its first moment (none until its first outcome, but for
    /// the counters of its group).
    pub(super) fn new(t: &Target, region: Arc<str>) -> TargetSeries {
        let protocol = t.protocol().as_str();
        TargetSeries {
            protocol,
            lead: format!(
                "protocol=\"{}\",region=\"{}\"",
                escape(protocol),
                escape(&t.region)
            ),
            region,
            tail: format!("target=\"{}\"", escape(&t.name)),
            last_success: None,
            failing: None,
            last_run: None,
            last_duration: 0.0,
            success: false,
            slow: false,
            consecutive_failures: 0,
            failures: BTreeMap::new(),
            duration: Hist::EMPTY,
            phases: BTreeMap::new(),
            cert_expiry: None,
            tls_version: None,
            family: None,
            http_status: None,
            roundtrip: (t.protocol() == crate::probe::Protocol::Roundtrip).then(Roundtrip::new),
            mx: None,
        }
    }
}

/// The series of one `region` × `protocol`, aggregated over its targets: where percentiles
/// mean something, and what costs the same at 10 targets as at 10,000.
pub(super) struct Group {
    /// `protocol="…",region="…"`.
    lead: String,
    /// Targets registered in it; the group goes with the last.
    pub(super) targets: usize,
    /// Probes by result: `[failure, success]`.
    pub(super) probes: [u64; 2],
    pub(super) skipped: u64,
    pub(super) duration: Hist<{ DURATION_BUCKETS.len() }>,
    /// Every phase its targets expect, observed only when a probe reached it.
    pub(super) phases: BTreeMap<Phase, Hist<{ DURATION_BUCKETS.len() }>>,
    /// Round trips only.
    pub(super) delivery: Option<Hist<{ DELIVERY_BUCKETS.len() }>>,
}

impl Group {
    pub(super) fn new(region: &str, protocol: crate::probe::Protocol) -> Group {
        Group {
            lead: format!(
                "protocol=\"{}\",region=\"{}\"",
                escape(protocol.as_str()),
                escape(region)
            ),
            targets: 0,
            probes: [0; 2],
            skipped: 0,
            duration: Hist::EMPTY,
            phases: BTreeMap::new(),
            delivery: (protocol == crate::probe::Protocol::Roundtrip).then_some(Hist::EMPTY),
        }
    }
}

/// A target's health, for `mailprobe_target_state`.
pub(super) struct HealthSeries {
    /// `protocol="…",region="…",state="`.
    lead: String,
    /// `",target="…"}`.
    tail: String,
    protocol: crate::probe::Protocol,
    region: Box<str>,
    pub(super) health: Health,
}

impl HealthSeries {
    pub(super) fn new(s: &TargetState) -> HealthSeries {
        HealthSeries {
            protocol: s.protocol,
            region: s.region.as_str().into(),
            lead: format!(
                "{{protocol=\"{}\",region=\"{}\",state=\"",
                escape(s.protocol.as_str()),
                escape(&s.region)
            ),
            tail: format!("\",target=\"{}\"}} ", escape(&s.name)),
            health: s.health,
        }
    }

    /// Whether `s` has the labels these series were made with.
    pub(super) fn matches(&self, s: &TargetState) -> bool {
        self.protocol == s.protocol && *self.region == *s.region
    }

    /// One line per state, 1 for the current one: the set of series never changes.
    pub(super) fn write(&self, buf: &mut String) {
        for h in [Health::Up, Health::Degraded, Health::Down] {
            for part in [TARGET_STATE, &self.lead, h.as_str(), &self.tail] {
                buf.push_str(part);
            }
            buf.push(if h == self.health { '1' } else { '0' });
            buf.push('\n');
        }
    }
}

/// The family of target health: the incident engine sets it, on its own clock.
pub(super) const TARGET_STATE: &str = "mailprobe_target_state";
pub(super) const TARGET_STATE_HELP: &str = "The target's health after hysteresis, one series per state (up, degraded, down): 1 for the current state, 0 for the others. What the incident timeline sees.";

/// Escapes a label value as the text format (and the crate) does.
pub(super) fn escape(v: &str) -> Cow<'_, str> {
    if v.contains(['\\', '\n', '"']) {
        let mut out = String::with_capacity(v.len() + 8);
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '"' => out.push_str("\\\""),
                c => out.push(c),
            }
        }
        out.into()
    } else {
        v.into()
    }
}

/// A family: its name, help, type and how one target's (or group's) samples are written.
pub(super) struct Family<T: 'static> {
    pub(super) name: &'static str,
    help: &'static str,
    kind: &'static str,
    write: fn(&mut Out<'_>, &T),
}

/// Where samples go while rendering one family; writes `# HELP`/`# TYPE` before the first
/// sample, so a family without series is left out as the crate does.
pub(super) struct Out<'a> {
    pub(super) buf: &'a mut String,
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    header_due: bool,
    opts: MetricsSettings,
}

/// A number as the text format wants it (the same digits as the crate writes).
trait Value {
    fn put(&self, buf: &mut String);
}
impl Value for u64 {
    fn put(&self, buf: &mut String) {
        let _ = write!(buf, "{self}");
    }
}
impl Value for i64 {
    fn put(&self, buf: &mut String) {
        let _ = write!(buf, "{self}");
    }
}
impl Value for f64 {
    fn put(&self, buf: &mut String) {
        let _ = write!(buf, "{self}");
    }
}

/// The label text of one target or group: `lead` (`protocol="…",region="…"`) and `tail`
/// (`target="…"`, or empty for a group).
trait Labels {
    fn lead(&self) -> &str;
    fn tail(&self) -> &str;
}
impl Labels for TargetSeries {
    fn lead(&self) -> &str {
        &self.lead
    }
    fn tail(&self) -> &str {
        &self.tail
    }
}
impl Labels for Group {
    fn lead(&self) -> &str {
        &self.lead
    }
    fn tail(&self) -> &str {
        ""
    }
}

impl<'a> Out<'a> {
    pub(super) fn new<T>(
        buf: &'a mut String,
        family: &'static Family<T>,
        opts: MetricsSettings,
    ) -> Self {
        Out {
            buf,
            name: family.name,
            help: family.help,
            kind: family.kind,
            header_due: true,
            opts,
        }
    }

    /// One sample: `name{suffix}{before lead [,tail] after} value`.
    fn sample(
        &mut self,
        suffix: &str,
        before: &str,
        t: &dyn Labels,
        after: &str,
        value: &dyn Value,
    ) {
        let b = &mut *self.buf;
        if self.header_due {
            self.header_due = false;
            for part in [
                "# HELP ",
                self.name,
                " ",
                self.help,
                "\n# TYPE ",
                self.name,
                " ",
            ] {
                b.push_str(part);
            }
            b.push_str(self.kind);
            b.push('\n');
        }
        for part in [self.name, suffix, "{", before, t.lead()] {
            b.push_str(part);
        }
        let tail = t.tail();
        if !tail.is_empty() {
            b.push(',');
            b.push_str(tail);
        }
        b.push_str(after);
        b.push_str("} ");
        value.put(b);
        b.push('\n');
    }

    /// A sample with the target's (or group's) own labels only.
    fn plain(&mut self, t: &dyn Labels, value: &dyn Value) {
        self.sample("", "", t, "", value);
    }

    fn histogram<const N: usize>(
        &mut self,
        before: &str,
        t: &dyn Labels,
        h: &Hist<N>,
        le: &[&str; N],
    ) {
        let mut cumulative = 0;
        let mut label = String::with_capacity(16);
        for (count, le) in h.counts.iter().zip(le) {
            cumulative += count;
            label.clear();
            label.push_str(",le=\"");
            label.push_str(le);
            label.push('"');
            self.sample("_bucket", before, t, &label, &cumulative);
        }
        self.sample("_bucket", before, t, ",le=\"+Inf\"", &h.count);
        self.sample("_sum", before, t, "", &h.sum);
        self.sample("_count", before, t, "", &h.count);
    }
}

/// `le` label values of the duration buckets, as the crate prints them.
const DURATION_LE: [&str; DURATION_BUCKETS.len()] = [
    "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30",
];
/// `le` label values of the delivery buckets.
const DELIVERY_LE: [&str; DELIVERY_BUCKETS.len()] = [
    "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "300", "600", "1800", "3600",
];

/// `phase="…",`, the label sorted before `protocol`.
fn phase_label(phase: Phase) -> String {
    format!("phase=\"{}\",", phase.as_str())
}

/// The per-target families, sorted by name (the registry's families are merged in by name).
pub(super) static FAMILIES: &[Family<TargetSeries>] = &[
    Family {
        name: "mailprobe_http_status_code",
        help: "HTTPS: status code of the last response (after redirects); absent until one arrived.",
        kind: "gauge",
        write: |o, t| {
            if let Some(v) = t.http_status {
                o.plain(t, &v);
            }
        },
    },
    Family {
        name: "mailprobe_mx_host_success",
        help: "MX targets: 1 if the MX host accepted an SMTP session (greeting, EHLO, STARTTLS when offered, QUIT) in the last probe, 0 if not; one series per probed host (at most max_hosts, best preference first).",
        kind: "gauge",
        write: |o, t| {
            for h in t.mx.iter().flat_map(|m| &m.hosts) {
                if let Some(ok) = h.success {
                    o.sample("", &h.label, t, "", &u64::from(ok));
                }
            }
        },
    },
    Family {
        name: "mailprobe_mx_host_tls_cert_expiry_timestamp_seconds",
        help: "MX targets: notAfter of the MX host's STARTTLS certificate as Unix time, from the last probe that saw it.",
        kind: "gauge",
        write: |o, t| {
            for h in t.mx.iter().flat_map(|m| &m.hosts) {
                if let Some(v) = h.cert_expiry {
                    o.sample("", &h.label, t, "", &v);
                }
            }
        },
    },
    Family {
        name: "mailprobe_mx_host_tls_info",
        help: "MX targets: the MX host's last completed STARTTLS handshake (value always 1); cert is what checking its certificate found (valid, name_mismatch, expired, not_yet_valid, untrusted, invalid), reported, never failed. Absent while the host accepts without offering STARTTLS.",
        kind: "gauge",
        write: |o, t| {
            for h in t.mx.iter().flat_map(|m| &m.hosts) {
                if let Some(c) = h.cert {
                    let before = format!("cert=\"{}\",{}", c.as_str(), h.label);
                    o.sample("", &before, t, "", &1u64);
                }
            }
        },
    },
    Family {
        name: "mailprobe_mx_hosts",
        help: "MX targets: MX hosts the domain's last lookup found, probed or not (1 for the implicit MX of a domain without MX records, 0 for a null MX); absent when the lookup failed.",
        kind: "gauge",
        write: |o, t| {
            if let Some(n) = t.mx.as_ref().and_then(|m| m.found) {
                o.plain(t, &n);
            }
        },
    },
    Family {
        name: "mailprobe_probe_connection_info",
        help: "Address family (ipv4 or ipv6) of the last connection a probe of the target established, and TLS version of its last successful handshake (value always 1).",
        kind: "gauge",
        write: |o, t| {
            if t.family.is_none() && t.tls_version.is_none() {
                return;
            }
            let before = t
                .family
                .map(|f| format!("family=\"{}\",", f.as_str()))
                .unwrap_or_default();
            let after = t
                .tls_version
                .as_ref()
                .map(|v| format!(",tls_version=\"{}\"", escape(v)))
                .unwrap_or_default();
            o.sample("", &before, t, &after, &1u64);
        },
    },
    Family {
        name: "mailprobe_probe_consecutive_failures",
        help: "Probes of the target that failed in a row, up to now (0 after a success).",
        kind: "gauge",
        write: |o, t| {
            if t.last_run.is_some() {
                o.plain(t, &t.consecutive_failures);
            }
        },
    },
    Family {
        name: "mailprobe_probe_duration_seconds",
        help: "Duration of whole probes of the target, successful or not (only with [metrics] per_target_histograms; mailprobe_region_probe_duration_seconds has them per region and protocol).",
        kind: "histogram",
        write: |o, t| {
            if o.opts.per_target_histograms {
                o.histogram("", t, &t.duration, &DURATION_LE);
            }
        },
    },
    Family {
        name: "mailprobe_probe_failure_info",
        help: "1 for the class and phase of the last probe's failure; absent while the target succeeds.",
        kind: "gauge",
        write: |o, t| {
            if let Some((class, phase)) = t.failing {
                let before = format!("class=\"{class}\",phase=\"{phase}\",");
                o.sample("", &before, t, "", &1u64);
            }
        },
    },
    Family {
        name: "mailprobe_probe_failures_total",
        help: "Failed probes of the target by failure class and the phase that failed; a pair appears at its first failure.",
        kind: "counter",
        write: |o, t| {
            for ((class, phase), n) in &t.failures {
                let before = format!("class=\"{class}\",phase=\"{phase}\",");
                o.sample("", &before, t, "", n);
            }
        },
    },
    Family {
        name: "mailprobe_probe_last_duration_seconds",
        help: "Duration of the target's last probe, successful or not: topk() over it finds the targets behind a slow region.",
        kind: "gauge",
        write: |o, t| {
            if t.last_run.is_some() {
                o.plain(t, &t.last_duration);
            }
        },
    },
    Family {
        name: "mailprobe_probe_last_run_timestamp_seconds",
        help: "Unix time the last probe of the target finished.",
        kind: "gauge",
        write: |o, t| {
            if let Some(v) = t.last_run {
                o.plain(t, &v);
            }
        },
    },
    Family {
        name: "mailprobe_probe_last_success_timestamp_seconds",
        help: "Unix time of the last successful probe of the target.",
        kind: "gauge",
        write: |o, t| {
            if let Some(v) = t.last_success {
                o.plain(t, &unix_seconds(v));
            }
        },
    },
    Family {
        name: "mailprobe_probe_phase_duration_seconds",
        help: "Duration of each phase the target's last probe reached; phases it did not reach have no series (only with [metrics] phase_gauges).",
        kind: "gauge",
        write: |o, t| {
            if !o.opts.phase_gauges {
                return;
            }
            for (phase, secs) in &t.phases {
                o.sample("", &phase_label(*phase), t, "", secs);
            }
        },
    },
    Family {
        name: "mailprobe_probe_slow",
        help: "1 if the last probe succeeded but took longer than the target's slow threshold (degraded).",
        kind: "gauge",
        write: |o, t| {
            if t.last_run.is_some() {
                o.plain(t, &u64::from(t.slow));
            }
        },
    },
    Family {
        name: "mailprobe_probe_success",
        help: "1 if the last probe of the target succeeded, 0 if it failed.",
        kind: "gauge",
        write: |o, t| {
            if t.last_run.is_some() {
                o.plain(t, &u64::from(t.success));
            }
        },
    },
    Family {
        name: "mailprobe_roundtrip_delivery_seconds",
        help: "Round trip: from acceptance (250 after DATA) to the message seen in the mailbox, per target; late messages are observed when they turn up (only with [metrics] per_target_histograms).",
        kind: "histogram",
        write: |o, t| {
            if o.opts.per_target_histograms
                && let Some(r) = &t.roundtrip
            {
                o.histogram("", t, &r.delivery, &DELIVERY_LE);
            }
        },
    },
    Family {
        name: "mailprobe_roundtrip_last_delivery_seconds",
        help: "Round trip: delivery latency of the last message seen in time.",
        kind: "gauge",
        write: |o, t| {
            if let Some(v) = t.roundtrip.as_ref().and_then(|r| r.last_delivery) {
                o.plain(t, &v);
            }
        },
    },
    Family {
        name: "mailprobe_roundtrip_last_server_delivery_seconds",
        help: "Round trip: the server's own delivery time of the last message seen in time (acceptance to the end of the second of its INTERNALDATE, or topmost Received date), at most the seen latency.",
        kind: "gauge",
        write: |o, t| {
            if let Some(v) = t.roundtrip.as_ref().and_then(|r| r.last_server_delivery) {
                o.plain(t, &v);
            }
        },
    },
    Family {
        name: "mailprobe_roundtrip_late_total",
        help: "Round trip: probe messages that arrived after their deadline (counted and deleted when found).",
        kind: "counter",
        write: |o, t| {
            if let Some(r) = &t.roundtrip {
                o.plain(t, &r.late);
            }
        },
    },
    Family {
        name: "mailprobe_roundtrip_swept_total",
        help: "Round trip: probe messages older than cleanup_age removed from the mailbox.",
        kind: "counter",
        write: |o, t| {
            if let Some(r) = &t.roundtrip {
                o.plain(t, &r.swept);
            }
        },
    },
    Family {
        name: "mailprobe_tls_cert_expiry_timestamp_seconds",
        help: "notAfter of the server's certificate as Unix time, from the last probe that saw it.",
        kind: "gauge",
        write: |o, t| {
            if let Some(v) = t.cert_expiry {
                o.plain(t, &v);
            }
        },
    },
];

/// The families aggregated per region and protocol, sorted by name.
pub(super) static GROUP_FAMILIES: &[Family<Group>] = &[
    Family {
        name: "mailprobe_probes_skipped_total",
        help: "Scheduled probes skipped because the previous one had not finished in time (overruns), per region and protocol; the log names the target.",
        kind: "counter",
        write: |o, g| o.plain(g, &g.skipped),
    },
    Family {
        name: "mailprobe_probes_total",
        help: "Probes run per region and protocol, by result (success or failure).",
        kind: "counter",
        write: |o, g| {
            o.sample("", "", g, ",result=\"failure\"", &g.probes[0]);
            o.sample("", "", g, ",result=\"success\"", &g.probes[1]);
        },
    },
    Family {
        name: "mailprobe_region_phase_duration_seconds",
        help: "Duration of each phase, per region and protocol, over every probe of their targets that reached it.",
        kind: "histogram",
        write: |o, g| {
            for (phase, h) in &g.phases {
                o.histogram(&phase_label(*phase), g, h, &DURATION_LE);
            }
        },
    },
    Family {
        name: "mailprobe_region_probe_duration_seconds",
        help: "Duration of whole probes, successful or not, per region and protocol.",
        kind: "histogram",
        write: |o, g| o.histogram("", g, &g.duration, &DURATION_LE),
    },
    Family {
        name: "mailprobe_region_roundtrip_delivery_seconds",
        help: "Round trip: from acceptance (250 after DATA) to the message seen in the mailbox, per region; late messages are observed when they turn up.",
        kind: "histogram",
        write: |o, g| {
            if let Some(h) = &g.delivery {
                o.histogram("", g, h, &DELIVERY_LE);
            }
        },
    },
];

impl<T> Family<T> {
    /// Writes this family's samples of `t`.
    pub(super) fn write(&'static self, out: &mut Out<'_>, t: &T) {
        (self.write)(out, t);
    }
}

#[cfg(test)]
mod tests;
