//! The one place where probe outcomes become long-lived Prometheus series.
//!
//! Probes return owned [`Outcome`]s and never touch the registry; the scheduler hands each
//! outcome to [`Metrics::observe`]. Every per-target series carries `target`, `region` and
//! `protocol`; `class` and `phase` appear where they apply. No username or address is ever a
//! label value. The README's metrics reference lists every series defined here.

mod exposition;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::Target;
use crate::probe::{Outcome, Phase, Protocol, expected_phases};

use exposition::{FAMILIES, Out, Roundtrip, TargetSeries};

/// Buckets for whole-probe durations: tens of milliseconds to the longest deadlines.
const DURATION_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Buckets for round-trip delivery: sub-second to the "forty minutes late" of a real outage.
const DELIVERY_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Buckets for scheduling delay: how late a probe started compared with its plan.
const DELAY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// The per-target series, by target name, and how many targets each protocol has.
#[derive(Default)]
struct State {
    targets: BTreeMap<String, TargetSeries>,
    per_protocol: [i64; Protocol::ALL.len()],
}

/// Targets rendered per hold of the state lock: probes finishing meanwhile wait microseconds.
const RENDER_BATCH: usize = 256;

/// The daemon's registry and every series it exports.
pub struct Metrics {
    registry: Registry,
    schedule_delay: Histogram,
    in_flight: IntGauge,
    targets: IntGaugeVec,
    reload_ok: IntGauge,
    reload_time: Gauge,
    /// Per-target series, kept compactly and rendered directly (see `exposition`).
    state: Mutex<State>,
    /// Size of the last rendering, to allocate the next one at once.
    last_size: AtomicUsize,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

impl Metrics {
    /// Creates and registers every series family (none for targets yet).
    pub fn new() -> Self {
        let m = Metrics {
            registry: Registry::new(),
            schedule_delay: Histogram::with_opts(
                HistogramOpts::new("mailprobe_schedule_delay_seconds", "How late probes start compared with their planned time (includes waiting for a concurrency slot).")
                    .buckets(DELAY_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            in_flight: IntGauge::with_opts(opts("mailprobe_probes_in_flight", "Probes running now."))
                .expect("valid metric"),
            targets: IntGaugeVec::new(opts("mailprobe_targets", "Configured targets by protocol."), &["protocol"])
                .expect("valid metric"),
            reload_ok: IntGauge::with_opts(opts("mailprobe_config_last_reload_successful", "1 if the last config (re)load succeeded, 0 if it was refused and the old config kept running."))
                .expect("valid metric"),
            reload_time: Gauge::with_opts(opts("mailprobe_config_last_reload_success_timestamp_seconds", "Unix time of the last successful config load."))
                .expect("valid metric"),
            state: Mutex::new(State::default()),
            last_size: AtomicUsize::new(0),
        };
        let build = IntGaugeVec::new(
            opts(
                "mailprobe_build_info",
                "Build of the running mailprobe (value always 1).",
            ),
            &["version", "rustc"],
        )
        .expect("valid metric");
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("MAILPROBE_RUSTC")])
            .set(1);
        let r = &m.registry;
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.schedule_delay.clone()),
            Box::new(m.in_flight.clone()),
            Box::new(m.targets.clone()),
            Box::new(m.reload_ok.clone()),
            Box::new(m.reload_time.clone()),
            Box::new(build),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for c in collectors {
            r.register(c).expect("metric names are unique");
        }
        m
    }

    /// Creates the series a target has from its first moment (counters at 0, phase gauges),
    /// so dashboards and `rate()` see it before its first probe finishes.
    pub fn register_target(&self, t: &Target) {
        let series = TargetSeries::new(t, expected_phases(&t.spec));
        let mut state = self.state.lock().expect("metrics state lock");
        if let Some(old) = state.targets.insert(t.name.clone(), series) {
            state.per_protocol[protocol_index(old.protocol)] -= 1;
        }
        state.per_protocol[protocol_index(t.protocol().as_str())] += 1;
        self.count_targets(&state);
    }

    /// Removes every series of the target named `name` (it left the config).
    pub fn unregister_target(&self, name: &str) {
        let mut state = self.state.lock().expect("metrics state lock");
        let Some(s) = state.targets.remove(name) else {
            return;
        };
        state.per_protocol[protocol_index(s.protocol)] -= 1;
        self.count_targets(&state);
    }

    fn count_targets(&self, state: &State) {
        for (p, n) in Protocol::ALL.iter().zip(state.per_protocol) {
            self.targets.with_label_values(&[p.as_str()]).set(n);
        }
    }

    /// Writes one outcome into the series of its target.
    pub fn observe(&self, o: &Outcome) {
        let t = &o.target;
        let finished = o.started_at + o.total;
        // A phase that ran more than once (an HTTP redirect to another host) counts in total.
        let mut totals: BTreeMap<Phase, f64> = BTreeMap::new();
        for timing in &o.phases {
            *totals.entry(timing.phase).or_default() += timing.duration.as_secs_f64();
        }

        let mut state = self.state.lock().expect("metrics state lock");
        let Some(s) = state.targets.get_mut(&t.name) else {
            // An outcome for a target removed while its probe ran: drop it.
            return;
        };

        s.success = o.success();
        if o.success() {
            s.consecutive_failures = 0;
        } else {
            s.consecutive_failures += 1;
        }
        s.slow = o.slow;
        s.probes[usize::from(o.success())] += 1;
        s.duration.observe(DURATION_BUCKETS, o.total.as_secs_f64());
        s.last_run = Some(unix_seconds(finished));

        for secs in s.phases.values_mut() {
            *secs = 0.0;
        }
        s.phases.extend(totals);
        if let Some(http) = &o.http {
            s.http_status = Some(i64::from(http.status));
        }

        let now_failing = o
            .failure
            .as_ref()
            .map(|f| (f.class.as_str(), f.phase.as_str()));
        if let Some(key) = now_failing {
            *s.failures.entry(key).or_default() += 1;
        } else {
            s.last_success = Some(finished);
        }
        s.failing = now_failing;

        if let Some(d) = &o.delivery {
            let r = s.roundtrip.get_or_insert_with(Roundtrip::new);
            if let Some(latency) = d.latency {
                r.delivery.observe(DELIVERY_BUCKETS, latency.as_secs_f64());
                r.last_delivery = Some(latency.as_secs_f64());
            }
            for late in &d.late {
                r.late += 1;
                r.delivery.observe(DELIVERY_BUCKETS, late.as_secs_f64());
            }
            r.swept += u64::from(d.swept);
        }

        if let Some(tls) = &o.tls {
            if let Some(cert) = &tls.cert {
                s.cert_expiry = Some(cert.not_after as f64);
            }
            if let Some(version) = &tls.version
                && s.tls_version.as_deref() != Some(version)
            {
                s.tls_version = Some(version.clone());
            }
        }
    }

    /// How many targets failed their last probe.
    pub fn failing(&self) -> usize {
        let state = self.state.lock().expect("metrics state lock");
        state
            .targets
            .values()
            .filter(|s| s.failing.is_some())
            .count()
    }

    /// Counts `n` probes of `t` skipped because the previous one overran.
    pub fn skipped(&self, t: &Target, n: u64) {
        let mut state = self.state.lock().expect("metrics state lock");
        if let Some(s) = state.targets.get_mut(&t.name) {
            s.skipped += n;
        }
    }

    /// Records how late a probe started.
    pub fn schedule_delay(&self, d: Duration) {
        self.schedule_delay.observe(d.as_secs_f64());
    }

    /// The gauge of probes in flight (the scheduler increments and decrements it).
    pub fn in_flight(&self) -> &IntGauge {
        &self.in_flight
    }

    /// Records the result of a config (re)load.
    pub fn config_loaded(&self, ok: bool) {
        self.reload_ok.set(i64::from(ok));
        if ok {
            self.reload_time.set(unix_seconds(SystemTime::now()));
        }
    }

    /// Renders the text exposition format, refreshing time-relative gauges first.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.last_size.load(Ordering::Relaxed) + 64 * 1024);
        self.render_chunks(usize::MAX, &mut |chunk| {
            out.push_str(&chunk);
            true
        });
        self.last_size.store(out.len(), Ordering::Relaxed);
        out
    }

    /// Renders the text exposition format in pieces of about `chunk` bytes, handing each to
    /// `emit` (which returns `false` to stop: the client has gone), so a large `/metrics` can be
    /// streamed without holding all of it in memory. Families come in name order; per-target
    /// families are written in batches of targets, releasing the lock in between.
    pub fn render_chunks(&self, chunk: usize, emit: &mut dyn FnMut(String) -> bool) {
        let now = SystemTime::now();
        let registry = self.registry.gather();
        let mut registry = registry.iter().peekable();
        let capacity = chunk.min(self.last_size.load(Ordering::Relaxed)) + 64 * 1024;
        let mut buf = String::with_capacity(capacity);
        let encoder = TextEncoder::new();
        let mut flush = |buf: &mut String, force: bool| -> bool {
            if buf.is_empty() || (!force && buf.len() < chunk) {
                return true;
            }
            emit(std::mem::replace(buf, String::with_capacity(capacity)))
        };
        for family in FAMILIES {
            while let Some(mf) = registry.next_if(|mf| mf.name() < family.name) {
                if let Err(e) = encoder.encode_utf8(std::slice::from_ref(mf), &mut buf) {
                    tracing::error!(error = %e, "cannot encode metrics");
                }
            }
            let mut out = Out::new(&mut buf, family, now);
            let mut after: Option<String> = None;
            loop {
                let state = self.state.lock().expect("metrics state lock");
                let range = match &after {
                    None => state.targets.range::<str, _>(..),
                    Some(last) => state
                        .targets
                        .range::<str, _>((Bound::Excluded(last.as_str()), Bound::Unbounded)),
                };
                let mut n = 0;
                let mut last = None;
                for (name, s) in range.take(RENDER_BATCH) {
                    family.write(&mut out, s);
                    last = Some(name);
                    n += 1;
                }
                after = last.cloned();
                drop(state);
                if !flush(out.buf, false) {
                    return;
                }
                if n < RENDER_BATCH {
                    break;
                }
            }
        }
        for mf in registry {
            if let Err(e) = encoder.encode_utf8(std::slice::from_ref(mf), &mut buf) {
                tracing::error!(error = %e, "cannot encode metrics");
            }
        }
        flush(&mut buf, true);
    }
}

/// Index of a protocol label in [`Protocol::ALL`].
fn protocol_index(protocol: &str) -> usize {
    Protocol::ALL
        .iter()
        .position(|p| p.as_str() == protocol)
        .unwrap_or(0)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
