//! The one place where probe outcomes become long-lived Prometheus series.
//!
//! Probes return owned [`Outcome`]s and never touch the registry; the scheduler hands each
//! outcome to [`Metrics::observe`]. Every per-target series carries `target`, `region` and
//! `protocol`; `class` and `phase` appear where they apply. No username or address is ever a
//! label value. The README's metrics reference lists every series defined here.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::Target;
use crate::probe::{Outcome, Phase, expected_phases};

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

/// What we remember per target so its series can be updated, aged and removed.
struct TargetSeries {
    region: String,
    protocol: &'static str,
    /// When probing of this target began (for "seconds since success" before any success).
    since: SystemTime,
    last_success: Option<SystemTime>,
    /// `(class, phase)` of the current failure, if the last probe failed.
    failing: Option<(&'static str, &'static str)>,
    /// Every `(class, phase)` ever counted, so removal can find them.
    failure_labels: BTreeSet<(&'static str, &'static str)>,
    phases: BTreeSet<Phase>,
    tls_version: Option<String>,
}

/// The daemon's registry and every series it exports.
pub struct Metrics {
    registry: Registry,
    success: IntGaugeVec,
    consecutive_failures: IntGaugeVec,
    slow: IntGaugeVec,
    probes: IntCounterVec,
    failures: IntCounterVec,
    failure_info: IntGaugeVec,
    duration: HistogramVec,
    phase_seconds: GaugeVec,
    last_run: GaugeVec,
    last_success: GaugeVec,
    since_success: GaugeVec,
    cert_expiry: GaugeVec,
    tls_info: IntGaugeVec,
    skipped: IntCounterVec,
    http_status: IntGaugeVec,
    token_fetches: IntCounterVec,
    token_fetch_seconds: HistogramVec,
    token_expiry: GaugeVec,
    token_remaining: GaugeVec,
    delivery: HistogramVec,
    last_delivery: GaugeVec,
    late: IntCounterVec,
    swept: IntCounterVec,
    schedule_delay: Histogram,
    in_flight: IntGauge,
    targets: IntGaugeVec,
    reload_ok: IntGauge,
    reload_time: Gauge,
    target_state: IntGaugeVec,
    incidents_open: IntGaugeVec,
    state: Mutex<HashMap<String, TargetSeries>>,
    /// Each target's health label set as last exported, and the incident count keys.
    health: Mutex<HealthSeries>,
    /// Expiry of the token in use, per credential set (for the remaining-lifetime gauge).
    token_expiries: Mutex<HashMap<String, SystemTime>>,
}

/// The health series exported so far, so that stale label sets can be removed.
#[derive(Default)]
struct HealthSeries {
    /// Target → `[target, region, protocol, state]`.
    targets: HashMap<String, [String; 4]>,
    /// `(scope, region)` keys of `mailprobe_incidents_open`.
    incidents: BTreeSet<(String, String)>,
}

const TARGET: &[&str] = &["target", "region", "protocol"];

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
        let labels = |extra: &[&'static str]| -> Vec<&'static str> {
            let mut v = TARGET.to_vec();
            v.extend_from_slice(extra);
            v
        };
        let m = Metrics {
            registry: Registry::new(),
            success: IntGaugeVec::new(
                opts("mailprobe_probe_success", "1 if the last probe of the target succeeded, 0 if it failed."),
                TARGET,
            )
            .expect("valid metric"),
            consecutive_failures: IntGaugeVec::new(
                opts("mailprobe_probe_consecutive_failures", "Probes of the target that failed in a row, up to now (0 after a success)."),
                TARGET,
            )
            .expect("valid metric"),
            slow: IntGaugeVec::new(
                opts("mailprobe_probe_slow", "1 if the last probe succeeded but took longer than the target's slow threshold (degraded)."),
                TARGET,
            )
            .expect("valid metric"),
            probes: IntCounterVec::new(
                opts("mailprobe_probes_total", "Probes run, by result (success or failure)."),
                &labels(&["result"]),
            )
            .expect("valid metric"),
            failures: IntCounterVec::new(
                opts("mailprobe_probe_failures_total", "Failed probes by failure class and the phase that failed."),
                &labels(&["class", "phase"]),
            )
            .expect("valid metric"),
            failure_info: IntGaugeVec::new(
                opts("mailprobe_probe_failure_info", "1 for the class and phase of the last probe's failure; absent while the target succeeds."),
                &labels(&["class", "phase"]),
            )
            .expect("valid metric"),
            duration: HistogramVec::new(
                HistogramOpts::new("mailprobe_probe_duration_seconds", "Duration of whole probes, successful or not.")
                    .buckets(DURATION_BUCKETS.to_vec()),
                TARGET,
            )
            .expect("valid metric"),
            phase_seconds: GaugeVec::new(
                opts("mailprobe_probe_phase_duration_seconds", "Duration of each phase in the last probe; 0 for phases that probe did not reach."),
                &labels(&["phase"]),
            )
            .expect("valid metric"),
            last_run: GaugeVec::new(
                opts("mailprobe_probe_last_run_timestamp_seconds", "Unix time the last probe of the target finished."),
                TARGET,
            )
            .expect("valid metric"),
            last_success: GaugeVec::new(
                opts("mailprobe_probe_last_success_timestamp_seconds", "Unix time of the last successful probe of the target."),
                TARGET,
            )
            .expect("valid metric"),
            since_success: GaugeVec::new(
                opts("mailprobe_probe_seconds_since_success", "Seconds since the last successful probe (or since probing began, if none yet), at scrape time."),
                TARGET,
            )
            .expect("valid metric"),
            cert_expiry: GaugeVec::new(
                opts("mailprobe_tls_cert_expiry_timestamp_seconds", "notAfter of the server's certificate as Unix time, from the last probe that saw it."),
                TARGET,
            )
            .expect("valid metric"),
            tls_info: IntGaugeVec::new(
                opts("mailprobe_tls_version_info", "TLS version negotiated by the last successful handshake (value always 1)."),
                &labels(&["version"]),
            )
            .expect("valid metric"),
            skipped: IntCounterVec::new(
                opts("mailprobe_probes_skipped_total", "Scheduled probes skipped because the previous one had not finished in time (overruns)."),
                TARGET,
            )
            .expect("valid metric"),
            http_status: IntGaugeVec::new(
                opts("mailprobe_http_status_code", "HTTPS: status code of the last response (after redirects); absent until one arrived."),
                TARGET,
            )
            .expect("valid metric"),
            token_fetches: IntCounterVec::new(
                opts("mailprobe_oauth2_token_fetches_total", "OAuth2 token requests to the token endpoint per credential set, by result (success or failure)."),
                &["credential", "result"],
            )
            .expect("valid metric"),
            token_fetch_seconds: HistogramVec::new(
                HistogramOpts::new("mailprobe_oauth2_token_fetch_duration_seconds", "Duration of OAuth2 token requests per credential set.")
                    .buckets(DURATION_BUCKETS.to_vec()),
                &["credential"],
            )
            .expect("valid metric"),
            token_expiry: GaugeVec::new(
                opts("mailprobe_oauth2_token_expiry_timestamp_seconds", "When the OAuth2 token in use expires, per credential set."),
                &["credential"],
            )
            .expect("valid metric"),
            token_remaining: GaugeVec::new(
                opts("mailprobe_oauth2_token_lifetime_remaining_seconds", "Seconds until the OAuth2 token in use expires, at scrape time (negative once expired)."),
                &["credential"],
            )
            .expect("valid metric"),
            delivery: HistogramVec::new(
                HistogramOpts::new("mailprobe_roundtrip_delivery_seconds", "Round trip: from acceptance (250 after DATA) to the message seen in the mailbox; late messages are observed when they turn up.")
                    .buckets(DELIVERY_BUCKETS.to_vec()),
                TARGET,
            )
            .expect("valid metric"),
            last_delivery: GaugeVec::new(
                opts("mailprobe_roundtrip_last_delivery_seconds", "Round trip: delivery latency of the last message seen in time."),
                TARGET,
            )
            .expect("valid metric"),
            late: IntCounterVec::new(
                opts("mailprobe_roundtrip_late_total", "Round trip: probe messages that arrived after their deadline (counted and deleted when found)."),
                TARGET,
            )
            .expect("valid metric"),
            swept: IntCounterVec::new(
                opts("mailprobe_roundtrip_swept_total", "Round trip: probe messages older than cleanup_age removed from the mailbox."),
                TARGET,
            )
            .expect("valid metric"),
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
            target_state: IntGaugeVec::new(
                opts("mailprobe_target_state", "1 for the target's health after hysteresis (state is up, degraded or down): what the incident timeline sees."),
                &labels(&["state"]),
            )
            .expect("valid metric"),
            incidents_open: IntGaugeVec::new(
                opts("mailprobe_incidents_open", "Open incidents by scope (target, region, global) and region they touch."),
                &["scope", "region"],
            )
            .expect("valid metric"),
            state: Mutex::new(HashMap::new()),
            health: Mutex::new(HealthSeries::default()),
            token_expiries: Mutex::new(HashMap::new()),
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
            Box::new(m.success.clone()),
            Box::new(m.consecutive_failures.clone()),
            Box::new(m.slow.clone()),
            Box::new(m.probes.clone()),
            Box::new(m.failures.clone()),
            Box::new(m.failure_info.clone()),
            Box::new(m.duration.clone()),
            Box::new(m.phase_seconds.clone()),
            Box::new(m.last_run.clone()),
            Box::new(m.last_success.clone()),
            Box::new(m.since_success.clone()),
            Box::new(m.cert_expiry.clone()),
            Box::new(m.tls_info.clone()),
            Box::new(m.skipped.clone()),
            Box::new(m.http_status.clone()),
            Box::new(m.token_fetches.clone()),
            Box::new(m.token_fetch_seconds.clone()),
            Box::new(m.token_expiry.clone()),
            Box::new(m.token_remaining.clone()),
            Box::new(m.delivery.clone()),
            Box::new(m.last_delivery.clone()),
            Box::new(m.late.clone()),
            Box::new(m.swept.clone()),
            Box::new(m.schedule_delay.clone()),
            Box::new(m.in_flight.clone()),
            Box::new(m.targets.clone()),
            Box::new(m.reload_ok.clone()),
            Box::new(m.reload_time.clone()),
            Box::new(m.target_state.clone()),
            Box::new(m.incidents_open.clone()),
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
        let protocol = t.protocol().as_str();
        let l = [t.name.as_str(), t.region.as_str(), protocol];
        for result in ["success", "failure"] {
            self.probes
                .with_label_values(&[l[0], l[1], l[2], result])
                .inc_by(0);
        }
        self.skipped.with_label_values(&l).inc_by(0);
        let _ = self.duration.with_label_values(&l);
        if t.protocol() == crate::probe::Protocol::Roundtrip {
            self.late.with_label_values(&l).inc_by(0);
            self.swept.with_label_values(&l).inc_by(0);
            let _ = self.delivery.with_label_values(&l);
        }
        let phases: BTreeSet<Phase> = expected_phases(&t.spec).into_iter().collect();
        for p in &phases {
            self.phase_seconds
                .with_label_values(&[l[0], l[1], l[2], p.as_str()])
                .set(0.0);
        }
        let mut state = self.state.lock().expect("metrics state lock");
        state.insert(
            t.name.clone(),
            TargetSeries {
                region: t.region.clone(),
                protocol,
                since: SystemTime::now(),
                last_success: None,
                failing: None,
                failure_labels: BTreeSet::new(),
                phases,
                tls_version: None,
            },
        );
        self.count_targets(&state);
    }

    /// Removes every series of the target named `name` (it left the config).
    pub fn unregister_target(&self, name: &str) {
        let mut state = self.state.lock().expect("metrics state lock");
        let Some(s) = state.remove(name) else { return };
        let l = [name, s.region.as_str(), s.protocol];
        fn with<'a>(l: &[&'a str; 3], extra: &'a str) -> [&'a str; 4] {
            [l[0], l[1], l[2], extra]
        }
        // Removal of a series that does not exist is not an error worth reporting.
        for v in [&self.success, &self.slow, &self.consecutive_failures] {
            let _ = v.remove_label_values(&l);
        }
        for v in [
            &self.last_run,
            &self.last_success,
            &self.since_success,
            &self.cert_expiry,
        ] {
            let _ = v.remove_label_values(&l);
        }
        let _ = self.duration.remove_label_values(&l);
        let _ = self.skipped.remove_label_values(&l);
        let _ = self.http_status.remove_label_values(&l);
        let _ = self.delivery.remove_label_values(&l);
        let _ = self.last_delivery.remove_label_values(&l);
        let _ = self.late.remove_label_values(&l);
        let _ = self.swept.remove_label_values(&l);
        for result in ["success", "failure"] {
            let _ = self.probes.remove_label_values(&with(&l, result));
        }
        for (class, phase) in &s.failure_labels {
            let _ = self
                .failures
                .remove_label_values(&[l[0], l[1], l[2], class, phase]);
            let _ = self
                .failure_info
                .remove_label_values(&[l[0], l[1], l[2], class, phase]);
        }
        for p in &s.phases {
            let _ = self
                .phase_seconds
                .remove_label_values(&with(&l, p.as_str()));
        }
        if let Some(v) = &s.tls_version {
            let _ = self.tls_info.remove_label_values(&with(&l, v));
        }
        self.count_targets(&state);
    }

    fn count_targets(&self, state: &HashMap<String, TargetSeries>) {
        for p in crate::probe::Protocol::ALL {
            let n = state.values().filter(|s| s.protocol == p.as_str()).count();
            self.targets.with_label_values(&[p.as_str()]).set(n as i64);
        }
    }

    /// Writes one outcome into the series of its target.
    pub fn observe(&self, o: &Outcome) {
        let t = &o.target;
        let protocol = t.protocol().as_str();
        let l = [t.name.as_str(), t.region.as_str(), protocol];
        let with = |extra: &'static str| [l[0], l[1], l[2], extra];
        let finished = o.started_at + o.total;

        let mut state = self.state.lock().expect("metrics state lock");
        let Some(s) = state.get_mut(&t.name) else {
            // An outcome for a target removed while its probe ran: drop it.
            return;
        };

        self.success
            .with_label_values(&l)
            .set(i64::from(o.success()));
        let streak = self.consecutive_failures.with_label_values(&l);
        if o.success() {
            streak.set(0);
        } else {
            streak.inc();
        }
        self.slow.with_label_values(&l).set(i64::from(o.slow));
        self.probes
            .with_label_values(&with(if o.success() { "success" } else { "failure" }))
            .inc();
        self.duration
            .with_label_values(&l)
            .observe(o.total.as_secs_f64());
        self.last_run
            .with_label_values(&l)
            .set(unix_seconds(finished));

        for p in &s.phases {
            self.phase_seconds
                .with_label_values(&with(p.as_str()))
                .set(0.0);
        }
        // A phase that ran more than once (an HTTP redirect to another host) counts in total.
        let mut totals: std::collections::BTreeMap<Phase, f64> = Default::default();
        for timing in &o.phases {
            *totals.entry(timing.phase).or_default() += timing.duration.as_secs_f64();
        }
        for (phase, secs) in totals {
            s.phases.insert(phase);
            self.phase_seconds
                .with_label_values(&with(phase.as_str()))
                .set(secs);
        }
        if let Some(http) = &o.http {
            self.http_status
                .with_label_values(&l)
                .set(i64::from(http.status));
        }

        let now_failing = o
            .failure
            .as_ref()
            .map(|f| (f.class.as_str(), f.phase.as_str()));
        if let Some(prev) = s.failing
            && Some(prev) != now_failing
        {
            let _ = self
                .failure_info
                .remove_label_values(&[l[0], l[1], l[2], prev.0, prev.1]);
        }
        if let Some((class, phase)) = now_failing {
            let fl = [l[0], l[1], l[2], class, phase];
            self.failures.with_label_values(&fl).inc();
            self.failure_info.with_label_values(&fl).set(1);
            s.failure_labels.insert((class, phase));
        } else {
            s.last_success = Some(finished);
            self.last_success
                .with_label_values(&l)
                .set(unix_seconds(finished));
        }
        s.failing = now_failing;

        if let Some(t) = &o.token {
            let c = t.credential.as_str();
            if let Some((took, ok)) = t.fetched {
                let result = if ok { "success" } else { "failure" };
                self.token_fetches.with_label_values(&[c, result]).inc();
                self.token_fetch_seconds
                    .with_label_values(&[c])
                    .observe(took.as_secs_f64());
            }
            if let Some(expires) = t.expires {
                self.token_expiry
                    .with_label_values(&[c])
                    .set(unix_seconds(expires));
                self.token_expiries
                    .lock()
                    .expect("token expiries lock")
                    .insert(c.to_string(), expires);
            }
        }

        if let Some(d) = &o.delivery {
            if let Some(latency) = d.latency {
                self.delivery
                    .with_label_values(&l)
                    .observe(latency.as_secs_f64());
                self.last_delivery
                    .with_label_values(&l)
                    .set(latency.as_secs_f64());
            }
            for late in &d.late {
                self.late.with_label_values(&l).inc();
                self.delivery
                    .with_label_values(&l)
                    .observe(late.as_secs_f64());
            }
            self.swept.with_label_values(&l).inc_by(u64::from(d.swept));
        }

        if let Some(tls) = &o.tls {
            if let Some(cert) = &tls.cert {
                self.cert_expiry
                    .with_label_values(&l)
                    .set(cert.not_after as f64);
            }
            if let Some(version) = &tls.version
                && s.tls_version.as_deref() != Some(version)
            {
                if let Some(old) = s.tls_version.take() {
                    let _ = self.tls_info.remove_label_values(&[l[0], l[1], l[2], &old]);
                }
                self.tls_info
                    .with_label_values(&[l[0], l[1], l[2], version])
                    .set(1);
                s.tls_version = Some(version.clone());
            }
        }
    }

    /// Exports a target's health (replacing its previous state series).
    pub fn target_health(&self, s: &crate::incidents::TargetState) {
        let labels = [
            s.name.clone(),
            s.region.clone(),
            s.protocol.as_str().to_string(),
            s.health.as_str().to_string(),
        ];
        let mut health = self.health.lock().expect("health lock");
        if let Some(old) = health.targets.get(&s.name)
            && old != &labels
        {
            let old: Vec<&str> = old.iter().map(String::as_str).collect();
            let _ = self.target_state.remove_label_values(&old);
        }
        let l: Vec<&str> = labels.iter().map(String::as_str).collect();
        self.target_state.with_label_values(&l).set(1);
        health.targets.insert(s.name.clone(), labels);
    }

    /// Drops the health series of a target that left the config.
    pub fn forget_target_health(&self, name: &str) {
        let mut health = self.health.lock().expect("health lock");
        if let Some(old) = health.targets.remove(name) {
            let old: Vec<&str> = old.iter().map(String::as_str).collect();
            let _ = self.target_state.remove_label_values(&old);
        }
    }

    /// Sets the open-incident counts by `(scope, region)`; keys no longer present go to 0.
    pub fn open_incidents(&self, counts: &std::collections::BTreeMap<(String, String), i64>) {
        let mut health = self.health.lock().expect("health lock");
        for key in &health.incidents {
            if !counts.contains_key(key) {
                self.incidents_open
                    .with_label_values(&[key.0.as_str(), key.1.as_str()])
                    .set(0);
            }
        }
        for ((scope, region), n) in counts {
            self.incidents_open
                .with_label_values(&[scope.as_str(), region.as_str()])
                .set(*n);
            health.incidents.insert((scope.clone(), region.clone()));
        }
    }

    /// How many targets failed their last probe.
    pub fn failing(&self) -> usize {
        let state = self.state.lock().expect("metrics state lock");
        state.values().filter(|s| s.failing.is_some()).count()
    }

    /// Counts `n` probes of `t` skipped because the previous one overran.
    pub fn skipped(&self, t: &Target, n: u64) {
        self.skipped
            .with_label_values(&[&t.name, &t.region, t.protocol().as_str()])
            .inc_by(n);
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
        let now = SystemTime::now();
        {
            let state = self.state.lock().expect("metrics state lock");
            for (name, s) in state.iter() {
                let since = now
                    .duration_since(s.last_success.unwrap_or(s.since))
                    .unwrap_or(Duration::ZERO);
                self.since_success
                    .with_label_values(&[name.as_str(), s.region.as_str(), s.protocol])
                    .set(since.as_secs_f64());
            }
        }
        for (credential, expires) in self
            .token_expiries
            .lock()
            .expect("token expiries lock")
            .iter()
        {
            let remaining = match expires.duration_since(now) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            self.token_remaining
                .with_label_values(&[credential.as_str()])
                .set(remaining);
        }
        let mut out = Vec::with_capacity(64 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
