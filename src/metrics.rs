//! The one place where probe outcomes become long-lived Prometheus series.
//!
//! Probes return owned [`Outcome`]s and never touch the registry; the scheduler hands each
//! outcome to [`Metrics::observe`]. Every per-target series carries `target`, `region` and
//! `protocol`; `class` and `phase` appear where they apply. No username or address is ever a
//! label value. The README's metrics reference lists every series defined here.

mod exposition;
mod maintenance;
mod provider;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::load::MetricsSettings;
use crate::probe::classify::{FailureClass, ProberFault};
use crate::probe::{Outcome, Phase, Protocol, ServerTime, Target, expected_phases};
use crate::sync::lock;

use crate::probe::mx::{MxFacts, MxKind};
use exposition::{
    FAMILIES, GROUP_FAMILIES, Group, HealthSeries, MxHostSeries, MxSeries, Out, Roundtrip,
    TARGET_STATE, TARGET_STATE_HELP, TargetSeries,
};

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

/// The per-target series, by target name, the series of each region × protocol, and how many
/// targets each protocol has.
#[derive(Default)]
struct State {
    targets: BTreeMap<String, TargetSeries>,
    groups: BTreeMap<(Arc<str>, &'static str), Group>,
    per_protocol: [i64; Protocol::ALL.len()],
    options: MetricsSettings,
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
    token_fetches: IntCounterVec,
    token_fetch_seconds: HistogramVec,
    token_expiry: GaugeVec,
    token_remaining: GaugeVec,
    incidents_open: IntGaugeVec,
    prober_errors: IntCounterVec,
    /// The provider status feeds' series.
    provider: provider::ProviderSeries,
    throttled: IntCounterVec,
    /// `mailprobe_maintenance`, for the targets under a maintenance window.
    maintenance: maintenance::Maintenance,
    /// Per-target series, kept compactly and rendered directly (see `exposition`).
    state: Mutex<State>,
    /// Each target's health sample, and the incident count keys exported so far.
    health: Mutex<Healths>,
    /// Expiry of the token in use, per credential set (for the remaining-lifetime gauge).
    token_expiries: Mutex<HashMap<String, SystemTime>>,
    /// Size of the last rendering, to allocate the next one at once.
    last_size: AtomicUsize,
}

/// The health series exported so far.
#[derive(Default)]
struct Healths {
    /// Target name → its `mailprobe_target_state` series.
    targets: BTreeMap<String, HealthSeries>,
    /// `(scope, region)` keys of `mailprobe_incidents_open`.
    incidents: BTreeSet<(String, String)>,
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
            incidents_open: IntGaugeVec::new(
                opts("mailprobe_incidents_open", "Open incidents by scope (target, region, global) and region they touch."),
                &["scope", "region"],
            )
            .expect("valid metric"),
            prober_errors: IntCounterVec::new(
                opts("mailprobe_prober_errors_total", "Probes mailprobe could not run because of itself (class prober_error: no file descriptors, memory or local port, a local firewall, a panic, the token cache, an internal fault), by protocol and reason; never counted as a failure of the target."),
                &["protocol", "reason"],
            )
            .expect("valid metric"),
            provider: provider::ProviderSeries::new(),
            throttled: IntCounterVec::new(
                opts("mailprobe_probes_throttled_total", "Probes a mail API (Graph, Gmail) rate-limited (class throttled: HTTP 429), by protocol; the target was not observed, so nothing else counts them. The next probe of that target waits at least the Retry-After given."),
                &["protocol"],
            )
            .expect("valid metric"),
            maintenance: maintenance::Maintenance::new(),
            state: Mutex::new(State::default()),
            health: Mutex::new(Healths::default()),
            token_expiries: Mutex::new(HashMap::new()),
            last_size: AtomicUsize::new(0),
        };
        let build = IntGaugeVec::new(
            opts(
                "mailprobe_build_info",
                "Build of the running mailprobe: version, git revision and compiler (value always 1).",
            ),
            &["version", "revision", "rustc"],
        )
        .expect("valid metric");
        build
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                env!("MAILPROBE_REVISION"),
                env!("MAILPROBE_RUSTC"),
            ])
            .set(1);
        let r = &m.registry;
        let mut collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.schedule_delay.clone()),
            Box::new(m.in_flight.clone()),
            Box::new(m.targets.clone()),
            Box::new(m.reload_ok.clone()),
            Box::new(m.reload_time.clone()),
            Box::new(m.token_fetches.clone()),
            Box::new(m.token_fetch_seconds.clone()),
            Box::new(m.token_expiry.clone()),
            Box::new(m.token_remaining.clone()),
            Box::new(m.incidents_open.clone()),
            Box::new(m.prober_errors.clone()),
            Box::new(m.throttled.clone()),
            Box::new(m.maintenance.gauge.clone()),
            Box::new(build),
            Box::new(crate::logging::dropped_lines()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        collectors.extend(m.provider.collectors());
        for c in collectors {
            r.register(c).expect("metric names are unique");
        }
        // Every protocol and reason from the start, at 0, so increase() sees the first fault.
        for p in Protocol::ALL {
            for f in ProberFault::ALL {
                m.prober_errors.with_label_values(&[p.as_str(), f.as_str()]);
            }
            m.throttled.with_label_values(&[p.as_str()]);
        }
        m
    }

    /// Sets which optional per-target series are exported (at start and on every reload).
    /// Turning one off drops what it held; turning it on starts from the next probe.
    pub fn set_options(&self, options: MetricsSettings) {
        let mut state = lock(&self.state);
        if state.options == options {
            return;
        }
        for s in state.targets.values_mut() {
            if !options.phase_gauges {
                s.phases = BTreeMap::new();
            }
            if !options.per_target_histograms {
                s.duration = Default::default();
                if let Some(r) = &mut s.roundtrip {
                    r.delivery = Default::default();
                }
            }
        }
        state.options = options;
    }

    /// Makes a target known: its group (region × protocol) has its counters and histograms at
    /// 0 from then on, so `rate()` sees the first probe; the target's own series come with its
    /// first outcome.
    pub fn register_target(&self, t: &Target) {
        let mut state = lock(&self.state);
        let state = &mut *state;
        if let Some(old) = state.targets.remove(&t.name) {
            Self::leave_group(state, &old);
        }
        let protocol = t.protocol();
        let key = match state
            .groups
            .keys()
            .find(|(r, p)| **r == *t.region && *p == protocol.as_str())
        {
            Some(k) => k.clone(),
            None => (Arc::<str>::from(t.region.as_str()), protocol.as_str()),
        };
        let group = state
            .groups
            .entry(key.clone())
            .or_insert_with(|| Group::new(&t.region, protocol));
        group.targets += 1;
        for phase in expected_phases(&t.spec) {
            group.phases.entry(phase).or_default();
        }
        state
            .targets
            .insert(t.name.clone(), TargetSeries::new(t, key.0));
        state.per_protocol[protocol_index(protocol.as_str())] += 1;
        self.count_targets(state);
    }

    /// Removes every series of the target named `name` (it left the config), and its group's
    /// once it was the last of it.
    pub fn unregister_target(&self, name: &str) {
        let mut state = lock(&self.state);
        let state = &mut *state;
        let Some(s) = state.targets.remove(name) else {
            return;
        };
        Self::leave_group(state, &s);
        self.count_targets(state);
    }

    fn leave_group(state: &mut State, s: &TargetSeries) {
        state.per_protocol[protocol_index(s.protocol)] -= 1;
        let key = (s.region.clone(), s.protocol);
        if let Some(g) = state.groups.get_mut(&key) {
            g.targets -= 1;
            if g.targets == 0 {
                state.groups.remove(&key);
            }
        }
    }

    fn count_targets(&self, state: &State) {
        for (p, n) in Protocol::ALL.iter().zip(state.per_protocol) {
            self.targets.with_label_values(&[p.as_str()]).set(n);
        }
    }

    /// Writes one outcome into the series of its target and of its group.
    ///
    /// A prober fault (class `prober_error`: mailprobe could not run the probe) is counted in
    /// `mailprobe_prober_errors_total` only, a probe a mail API rate-limited (class
    /// `throttled`) in `mailprobe_probes_throttled_total` only. Every per-target series stays as the last real probe
    /// left it (success, failure streak and info, counters, last run, durations, TLS, token
    /// fetches), and so do the group's: the target was not observed, so nothing is said about
    /// it, and its last-run and last-success times stand still, so a target mailprobe cannot
    /// probe goes stale rather than down.
    pub fn observe(&self, o: &Outcome) {
        let t = &o.target;
        if let Some(f) = o.failure.as_ref()
            && f.class == FailureClass::ProberError
        {
            self.prober_fault(t.protocol(), f.fault.unwrap_or(ProberFault::Internal));
            return;
        }
        // Rate-limited by a mail API: the target was not observed either; counted on its own.
        if let Some(f) = o.failure.as_ref()
            && f.class == FailureClass::Throttled
        {
            self.throttled
                .with_label_values(&[t.protocol().as_str()])
                .inc();
            return;
        }
        let finished = o.started_at + o.total;
        let total = o.total.as_secs_f64();
        // A phase that ran more than once (an HTTP redirect to another host) counts in total.
        let mut totals: BTreeMap<Phase, f64> = BTreeMap::new();
        for timing in &o.phases {
            *totals.entry(timing.phase).or_default() += timing.duration.as_secs_f64();
        }

        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let options = state.options;
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
        s.last_duration = total;
        s.last_run = Some(unix_seconds(finished));
        if options.per_target_histograms {
            s.duration.observe(DURATION_BUCKETS, total);
        }
        if options.phase_gauges {
            s.phases.clone_from(&totals);
        }
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
        let delivered = Self::observe_details(s, o, options);

        if let Some(g) = state.groups.get_mut(&(s.region.clone(), s.protocol)) {
            g.probes[usize::from(o.success())] += 1;
            g.duration.observe(DURATION_BUCKETS, total);
            for (phase, secs) in &totals {
                g.phases
                    .entry(*phase)
                    .or_default()
                    .observe(DURATION_BUCKETS, *secs);
            }
            if let Some(h) = &mut g.delivery {
                for latency in delivered {
                    h.observe(DELIVERY_BUCKETS, latency);
                }
            }
        }
        drop(guard);

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
                lock(&self.token_expiries).insert(c.to_string(), expires);
            }
        }
    }

    /// Writes the round-trip, TLS and address facts of an outcome (under the state lock), and
    /// returns the delivery latencies it saw (in time, then late), for the group's histogram.
    fn observe_details(s: &mut TargetSeries, o: &Outcome, options: MetricsSettings) -> Vec<f64> {
        if let Some(peer) = &o.peer {
            s.family = Some(crate::probe::net::IpFamily::of(peer));
        }
        let mut delivered = Vec::new();
        if let Some(d) = &o.delivery {
            let r = s.roundtrip.get_or_insert_with(Roundtrip::new);
            if let Some(latency) = d.latency {
                delivered.push(latency.as_secs_f64());
                r.last_delivery = Some(latency.as_secs_f64());
                // Always about the same message as last_delivery: absent when it had no
                // believable stamp.
                r.last_server_delivery = match &d.server {
                    Some(ServerTime::Stamped { took, .. }) => Some(took.as_secs_f64()),
                    Some(ServerTime::Unknown(_)) | None => None,
                };
            }
            for late in &d.late {
                r.late += 1;
                delivered.push(late.as_secs_f64());
            }
            if options.per_target_histograms {
                for v in &delivered {
                    r.delivery.observe(DELIVERY_BUCKETS, *v);
                }
            }
            r.swept += u64::from(d.swept);
        }

        if let Some(mx) = &o.mx {
            Self::observe_mx(s, mx);
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
        delivered
    }

    /// Replaces an MX target's per-host series with what this outcome found: hosts no longer
    /// probed go; a host mailprobe could not probe keeps what it had; a certificate not seen
    /// this time (the host failed before TLS) stays as last seen.
    fn observe_mx(s: &mut TargetSeries, mx: &MxFacts) {
        let old = s.mx.take().unwrap_or_default();
        let hosts = mx
            .hosts
            .iter()
            .map(|h| {
                let label = format!("mx=\"{}\",", exposition::escape(&h.name));
                let prev = old.hosts.iter().find(|p| p.label == label);
                let fault = h
                    .failure
                    .as_ref()
                    .is_some_and(|f| f.class == FailureClass::ProberError);
                if fault {
                    return prev.cloned().unwrap_or(MxHostSeries {
                        label,
                        success: None,
                        cert: None,
                        cert_expiry: None,
                    });
                }
                let (cert, cert_expiry) = match (&h.tls, &h.failure) {
                    (Some(tls), _) => (
                        // The info series says the handshake completed.
                        tls.cert_check.filter(|_| tls.version.is_some()),
                        tls.cert.as_ref().map(|c| c.not_after as f64),
                    ),
                    // Accepted without TLS: STARTTLS is not offered (any more).
                    (None, None) => (None, None),
                    (None, Some(_)) => prev.map_or((None, None), |p| (p.cert, p.cert_expiry)),
                };
                MxHostSeries {
                    label,
                    success: Some(h.failure.is_none()),
                    cert,
                    cert_expiry,
                }
            })
            .collect();
        let found = (mx.kind != MxKind::Unknown).then_some(mx.found as u64);
        s.mx = Some(Box::new(MxSeries { found, hosts }));
    }

    /// Counts a probe mailprobe could not run (or whose outcome it lost) because of itself.
    pub fn prober_fault(&self, protocol: Protocol, fault: ProberFault) {
        self.prober_errors
            .with_label_values(&[protocol.as_str(), fault.as_str()])
            .inc();
    }

    /// Exports a target's health: 1 for its state, 0 for the others.
    pub fn target_health(&self, s: &crate::incidents::TargetState) {
        let mut health = lock(&self.health);
        match health.targets.get_mut(&s.name) {
            Some(h) if h.matches(s) => h.health = s.health,
            _ => {
                health.targets.insert(s.name.clone(), HealthSeries::new(s));
            }
        }
    }

    /// Drops the health series of a target that left the config.
    pub fn forget_target_health(&self, name: &str) {
        let mut health = lock(&self.health);
        health.targets.remove(name);
    }

    /// Sets the open-incident counts by `(scope, region)`; keys no longer present go to 0.
    pub fn open_incidents(&self, counts: &BTreeMap<(String, String), i64>) {
        let mut health = lock(&self.health);
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
        let state = lock(&self.state);
        state
            .targets
            .values()
            .filter(|s| s.failing.is_some())
            .count()
    }

    /// Counts `n` probes of `t` skipped because the previous one overran.
    pub fn skipped(&self, t: &Target, n: u64) {
        let mut state = lock(&self.state);
        let state = &mut *state;
        if let Some(s) = state.targets.get(&t.name)
            && let Some(g) = state.groups.get_mut(&(s.region.clone(), s.protocol))
        {
            g.skipped += n;
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
        self.refresh_token_lifetimes(now);
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
        let options = lock(&self.state).options;
        // Every family of ours, in name order, with the registry's merged in between.
        let mut ours: Vec<(&'static str, Source)> = FAMILIES
            .iter()
            .map(|f| (f.name, Source::Targets(f)))
            .chain(GROUP_FAMILIES.iter().map(|f| (f.name, Source::Groups(f))))
            .chain([(TARGET_STATE, Source::Health)])
            .collect();
        ours.sort_by_key(|(name, _)| *name);
        for (name, source) in ours {
            while let Some(mf) = registry.next_if(|mf| mf.name() < name) {
                if let Err(e) = encoder.encode_utf8(std::slice::from_ref(mf), &mut buf) {
                    tracing::error!(error = %e, "cannot encode metrics");
                }
            }
            match source {
                Source::Health => self.render_health(&mut buf),
                Source::Groups(family) => {
                    let state = lock(&self.state);
                    let mut out = Out::new(&mut buf, family, options);
                    for g in state.groups.values() {
                        family.write(&mut out, g);
                    }
                }
                Source::Targets(family) => {
                    let mut after: Option<String> = None;
                    let mut out = Out::new(&mut buf, family, options);
                    loop {
                        let state = lock(&self.state);
                        let range = match &after {
                            None => state.targets.range::<str, _>(..),
                            Some(last) => state.targets.range::<str, _>((
                                Bound::Excluded(last.as_str()),
                                Bound::Unbounded,
                            )),
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
            }
            if !flush(&mut buf, false) {
                return;
            }
        }
        for mf in registry {
            if let Err(e) = encoder.encode_utf8(std::slice::from_ref(mf), &mut buf) {
                tracing::error!(error = %e, "cannot encode metrics");
            }
        }
        flush(&mut buf, true);
    }

    /// Writes `mailprobe_target_state`: three series per target.
    fn render_health(&self, buf: &mut String) {
        let health = lock(&self.health);
        if health.targets.is_empty() {
            return;
        }
        for part in [
            "# HELP ",
            TARGET_STATE,
            " ",
            TARGET_STATE_HELP,
            "\n# TYPE ",
            TARGET_STATE,
            " gauge\n",
        ] {
            buf.push_str(part);
        }
        for h in health.targets.values() {
            h.write(buf);
        }
    }

    /// Sets each token's remaining lifetime as of `now`.
    fn refresh_token_lifetimes(&self, now: SystemTime) {
        let expiries = lock(&self.token_expiries);
        for (credential, expires) in expiries.iter() {
            let remaining = match expires.duration_since(now) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            self.token_remaining
                .with_label_values(&[credential.as_str()])
                .set(remaining);
        }
    }
}

/// Where the samples of one of our families come from.
#[derive(Clone, Copy)]
enum Source {
    Targets(&'static exposition::Family<TargetSeries>),
    Groups(&'static exposition::Family<Group>),
    Health,
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

#[cfg(test)]
mod tests;
