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
use std::time::{Duration, SystemTime};

use crate::probe::net::IpFamily;
use crate::probe::{Phase, Target};

use super::{DELIVERY_BUCKETS, DURATION_BUCKETS, unix_seconds};

/// A histogram's buckets (not cumulative), sum and count.
#[derive(Clone, Copy)]
pub(super) struct Hist<const N: usize> {
    counts: [u64; N],
    sum: f64,
    count: u64,
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

/// Everything exported about one target. `None` means the series does not exist (yet).
pub(super) struct TargetSeries {
    pub(super) protocol: &'static str,
    /// `protocol="…",region="…"`: the labels sorted before `result` and `target`.
    lead: String,
    /// `target="…"`.
    tail: String,
    /// When probing of this target began (for "seconds since success" before any success).
    pub(super) since: SystemTime,
    pub(super) last_success: Option<SystemTime>,
    /// `(class, phase)` of the current failure, if the last probe failed.
    pub(super) failing: Option<(&'static str, &'static str)>,
    /// Set by the first outcome: success, slow, consecutive failures and last run exist.
    pub(super) last_run: Option<f64>,
    pub(super) success: bool,
    pub(super) slow: bool,
    pub(super) consecutive_failures: u64,
    /// Probes by result: `[failure, success]`.
    pub(super) probes: [u64; 2],
    /// Failures by `(class, phase)`, every pair ever counted.
    pub(super) failures: BTreeMap<(&'static str, &'static str), u64>,
    pub(super) duration: Hist<{ DURATION_BUCKETS.len() }>,
    /// Last duration of each phase the target has (0 for phases the last probe did not reach).
    pub(super) phases: BTreeMap<Phase, f64>,
    pub(super) cert_expiry: Option<f64>,
    pub(super) tls_version: Option<String>,
    /// Address family of the last connection established.
    pub(super) family: Option<IpFamily>,
    pub(super) skipped: u64,
    pub(super) http_status: Option<i64>,
    pub(super) roundtrip: Option<Box<Roundtrip>>,
}

impl TargetSeries {
    /// The series a target has from its first moment: counters at 0 and its phase gauges.
    pub(super) fn new(t: &Target, phases: impl IntoIterator<Item = Phase>) -> TargetSeries {
        let protocol = t.protocol().as_str();
        TargetSeries {
            protocol,
            lead: format!(
                "protocol=\"{}\",region=\"{}\"",
                escape(protocol),
                escape(&t.region)
            ),
            tail: format!("target=\"{}\"", escape(&t.name)),
            since: SystemTime::now(),
            last_success: None,
            failing: None,
            last_run: None,
            success: false,
            slow: false,
            consecutive_failures: 0,
            probes: [0; 2],
            failures: BTreeMap::new(),
            duration: Hist::EMPTY,
            phases: phases.into_iter().map(|p| (p, 0.0)).collect(),
            cert_expiry: None,
            tls_version: None,
            family: None,
            skipped: 0,
            http_status: None,
            roundtrip: (t.protocol() == crate::probe::Protocol::Roundtrip).then(Roundtrip::new),
        }
    }
}

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

/// A per-target family: its name, help, type and how one target's samples are written.
pub(super) struct Family {
    pub(super) name: &'static str,
    help: &'static str,
    kind: &'static str,
    write: fn(&mut Out<'_>, &TargetSeries),
}

/// Where samples go while rendering one family; writes `# HELP`/`# TYPE` before the first
/// sample, so a family without series is left out as the crate does.
pub(super) struct Out<'a> {
    pub(super) buf: &'a mut String,
    family: &'static Family,
    header_due: bool,
    now: SystemTime,
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

impl<'a> Out<'a> {
    pub(super) fn new(buf: &'a mut String, family: &'static Family, now: SystemTime) -> Self {
        Out {
            buf,
            family,
            header_due: true,
            now,
        }
    }

    /// One sample: `name{suffix}{before lead mid tail after} value`.
    #[allow(clippy::too_many_arguments)]
    fn sample(
        &mut self,
        suffix: &str,
        before: &str,
        t: &TargetSeries,
        mid: &str,
        after: &str,
        value: &dyn Value,
    ) {
        let b = &mut *self.buf;
        if self.header_due {
            self.header_due = false;
            let f = self.family;
            for part in ["# HELP ", f.name, " ", f.help, "\n# TYPE ", f.name, " "] {
                b.push_str(part);
            }
            b.push_str(f.kind);
            b.push('\n');
        }
        for part in [self.family.name, suffix, "{", before, &t.lead, mid] {
            b.push_str(part);
        }
        for part in [t.tail.as_str(), after, "} "] {
            b.push_str(part);
        }
        value.put(b);
        b.push('\n');
    }

    /// A sample with the target's own labels only.
    fn plain(&mut self, t: &TargetSeries, value: &dyn Value) {
        self.sample("", "", t, ",", "", value);
    }

    fn histogram<const N: usize>(&mut self, t: &TargetSeries, h: &Hist<N>, le: &[&str; N]) {
        let mut cumulative = 0;
        let mut label = String::with_capacity(16);
        for (count, le) in h.counts.iter().zip(le) {
            cumulative += count;
            label.clear();
            label.push_str(",le=\"");
            label.push_str(le);
            label.push('"');
            self.sample("_bucket", "", t, ",", &label, &cumulative);
        }
        self.sample("_bucket", "", t, ",", ",le=\"+Inf\"", &h.count);
        self.sample("_sum", "", t, ",", "", &h.sum);
        self.sample("_count", "", t, ",", "", &h.count);
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

/// The per-target families, sorted by name (the registry's families are merged in by name).
pub(super) static FAMILIES: &[Family] = &[
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
        help: "Duration of whole probes, successful or not.",
        kind: "histogram",
        write: |o, t| o.histogram(t, &t.duration, &DURATION_LE),
    },
    Family {
        name: "mailprobe_probe_failure_info",
        help: "1 for the class and phase of the last probe's failure; absent while the target succeeds.",
        kind: "gauge",
        write: |o, t| {
            if let Some((class, phase)) = t.failing {
                let before = format!("class=\"{class}\",phase=\"{phase}\",");
                o.sample("", &before, t, ",", "", &1u64);
            }
        },
    },
    Family {
        name: "mailprobe_probe_failures_total",
        help: "Failed probes by failure class and the phase that failed.",
        kind: "counter",
        write: |o, t| {
            for ((class, phase), n) in &t.failures {
                let before = format!("class=\"{class}\",phase=\"{phase}\",");
                o.sample("", &before, t, ",", "", n);
            }
        },
    },
    Family {
        name: "mailprobe_probe_ip_family_info",
        help: "Address family (ipv4 or ipv6) of the last connection a probe of the target established (value always 1).",
        kind: "gauge",
        write: |o, t| {
            if let Some(f) = t.family {
                let before = format!("family=\"{}\",", f.as_str());
                o.sample("", &before, t, ",", "", &1u64);
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
        help: "Duration of each phase in the last probe; 0 for phases that probe did not reach.",
        kind: "gauge",
        write: |o, t| {
            let mut before = String::with_capacity(24);
            for (phase, secs) in &t.phases {
                before.clear();
                before.push_str("phase=\"");
                before.push_str(phase.as_str());
                before.push_str("\",");
                o.sample("", &before, t, ",", "", secs);
            }
        },
    },
    Family {
        name: "mailprobe_probe_seconds_since_success",
        help: "Seconds since the last successful probe (or since probing began, if none yet), at scrape time.",
        kind: "gauge",
        write: |o, t| {
            let since = o
                .now
                .duration_since(t.last_success.unwrap_or(t.since))
                .unwrap_or(Duration::ZERO);
            o.plain(t, &since.as_secs_f64());
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
        name: "mailprobe_probes_skipped_total",
        help: "Scheduled probes skipped because the previous one had not finished in time (overruns).",
        kind: "counter",
        write: |o, t| o.plain(t, &t.skipped),
    },
    Family {
        name: "mailprobe_probes_total",
        help: "Probes run, by result (success or failure).",
        kind: "counter",
        write: |o, t| {
            o.sample("", "", t, ",result=\"failure\",", "", &t.probes[0]);
            o.sample("", "", t, ",result=\"success\",", "", &t.probes[1]);
        },
    },
    Family {
        name: "mailprobe_roundtrip_delivery_seconds",
        help: "Round trip: from acceptance (250 after DATA) to the message seen in the mailbox; late messages are observed when they turn up.",
        kind: "histogram",
        write: |o, t| {
            if let Some(r) = &t.roundtrip {
                o.histogram(t, &r.delivery, &DELIVERY_LE);
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
    Family {
        name: "mailprobe_tls_version_info",
        help: "TLS version negotiated by the last successful handshake (value always 1).",
        kind: "gauge",
        write: |o, t| {
            if let Some(v) = &t.tls_version {
                let after = format!(",version=\"{}\"", escape(v));
                o.sample("", "", t, ",", &after, &1u64);
            }
        },
    },
];

impl Family {
    /// Writes this family's samples of `t`.
    pub(super) fn write(&'static self, out: &mut Out<'_>, t: &TargetSeries) {
        (self.write)(out, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_sorted_and_bucket_labels_match_the_bounds() {
        assert!(FAMILIES.windows(2).all(|w| w[0].name < w[1].name));
        for (b, le) in DURATION_BUCKETS.iter().zip(DURATION_LE) {
            assert_eq!(b.to_string(), le);
        }
        for (b, le) in DELIVERY_BUCKETS.iter().zip(DELIVERY_LE) {
            assert_eq!(b.to_string(), le);
        }
    }

    /// The lines the prometheus crate wrote for the same outcomes (checked against it when this
    /// renderer replaced it), families contiguous and in name order, and nothing left behind.
    #[test]
    fn renders_what_the_crate_rendered() {
        use crate::metrics::Metrics;
        use crate::probe::classify::FailureClass;
        use crate::probe::{Failure, Outcome, PhaseTiming};

        let dir = std::env::temp_dir().join(format!("mp-expo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("p"), "pw\n").expect("password file");
        let text = "[[target]]\nname = \"im\"\nregion = \"eu\"\nprotocol = \"imap\"\n\
                    host = \"127.0.0.1\"\ntls = \"none\"\nallow_plaintext = true\n\
                    username = \"u\"\npassword_file = \"p\"\n";
        let cfg = crate::load::parse(&dir.join("c.toml"), text).expect("config");
        let t = &cfg.targets[0];
        let m = Metrics::new();
        m.register_target(t);
        let outcome = |fail: bool| Outcome {
            target: t.clone(),
            started_at: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_000_000_250_000),
            total: Duration::from_millis(300),
            phases: vec![PhaseTiming {
                phase: Phase::Connect,
                duration: Duration::from_micros(1500),
            }],
            failure: fail.then(|| Failure {
                class: FailureClass::AuthRejected,
                fault: None,
                phase: Phase::Login,
                detail: String::new(),
            }),
            slow: false,
            tls: None,
            banner: None,
            delivery: None,
            http: None,
            token: None,
            peer: (!fail).then(|| "[::1]:993".parse().unwrap()),
        };
        m.observe(&outcome(false));
        m.observe(&outcome(true));
        let r = m.render();
        for line in [
            "# TYPE mailprobe_probe_failures_total counter",
            "mailprobe_probe_failures_total{class=\"auth_rejected\",phase=\"login\",protocol=\"imap\",region=\"eu\",target=\"im\"} 1",
            "mailprobe_probe_failure_info{class=\"auth_rejected\",phase=\"login\",protocol=\"imap\",region=\"eu\",target=\"im\"} 1",
            "mailprobe_probes_total{protocol=\"imap\",region=\"eu\",result=\"success\",target=\"im\"} 1",
            "mailprobe_probe_duration_seconds_bucket{protocol=\"imap\",region=\"eu\",target=\"im\",le=\"0.5\"} 2",
            "mailprobe_probe_duration_seconds_sum{protocol=\"imap\",region=\"eu\",target=\"im\"} 0.6",
            "mailprobe_probe_phase_duration_seconds{phase=\"connect\",protocol=\"imap\",region=\"eu\",target=\"im\"} 0.0015",
            "mailprobe_probe_phase_duration_seconds{phase=\"login\",protocol=\"imap\",region=\"eu\",target=\"im\"} 0",
            "mailprobe_probe_last_run_timestamp_seconds{protocol=\"imap\",region=\"eu\",target=\"im\"} 1764000000.55",
            "mailprobe_probe_consecutive_failures{protocol=\"imap\",region=\"eu\",target=\"im\"} 1",
            "mailprobe_targets{protocol=\"imap\"} 1",
            "mailprobe_probe_ip_family_info{family=\"ipv6\",protocol=\"imap\",region=\"eu\",target=\"im\"} 1",
        ] {
            assert!(r.lines().any(|l| l == line), "{line}\n{r}");
        }
        let types: Vec<&str> = r
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        let mut sorted = types.clone();
        sorted.sort();
        assert_eq!(types, sorted, "families in name order, each once");
        m.unregister_target("im");
        let r = m.render();
        assert!(!r.contains("target="), "{r}");
        assert!(r.contains("mailprobe_targets{protocol=\"imap\"} 0"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape("plain"), "plain");
    }
}
