//! The provider status feeds' series: whether each feed can be read, the provider's open
//! issues, and how long after our detection the provider first posted.
//!
//! Cardinality stays bounded: `provider` is a configured `[[provider]]`, `service` one of the
//! services it watches (or a Statuspage's components), `classification` a short closed-ish
//! set per feed (incident/advisory, high/medium/low, none/minor/major/critical). The delay to
//! the provider's first post is a histogram per provider, not a gauge per incident: an
//! `incident` label would grow without end, and "how long does Microsoft take to admit an
//! outage" is a distribution over incidents.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

use super::unix_seconds;
use crate::provider::Issue;
use crate::provider::feed::FeedError;
use crate::sync::lock;

/// Buckets for the provider's first post after our detection: a minute to half a day.
const FIRST_POST_BUCKETS: &[f64] = &[
    60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
];

/// The provider series.
pub(super) struct ProviderSeries {
    feed_up: IntGaugeVec,
    feed_errors: IntCounterVec,
    feed_success: GaugeVec,
    feed_seconds: HistogramVec,
    issues_open: IntGaugeVec,
    first_post: HistogramVec,
    /// `(service, classification)` series of each provider exported so far.
    open_keys: std::sync::Mutex<BTreeMap<String, BTreeSet<(String, String)>>>,
}

impl ProviderSeries {
    pub(super) fn new() -> Self {
        ProviderSeries {
            feed_up: IntGaugeVec::new(
                Opts::new("mailprobe_provider_feed_up", "1 if the provider's status feed was read at the last poll, 0 if it could not be (a feed down is not a mail outage: no incident is opened for it)."),
                &["provider"],
            )
            .expect("valid metric"),
            feed_errors: IntCounterVec::new(
                Opts::new("mailprobe_provider_feed_errors_total", "Polls of a provider's status feed that failed, by reason (token, http_status, transport, timeout, too_large, bad_body)."),
                &["provider", "reason"],
            )
            .expect("valid metric"),
            feed_success: GaugeVec::new(
                Opts::new("mailprobe_provider_feed_last_success_timestamp_seconds", "Unix time of the last successful poll of a provider's status feed."),
                &["provider"],
            )
            .expect("valid metric"),
            feed_seconds: HistogramVec::new(
                HistogramOpts::new("mailprobe_provider_feed_duration_seconds", "Duration of polls of a provider's status feed (token, requests and bodies), successful or not.")
                    .buckets(super::DURATION_BUCKETS.to_vec()),
                &["provider"],
            )
            .expect("valid metric"),
            issues_open: IntGaugeVec::new(
                Opts::new("mailprobe_provider_issues_open", "Open issues the provider publishes about the services it is watched for, by service and classification, as of the last successful poll."),
                &["provider", "service", "classification"],
            )
            .expect("valid metric"),
            first_post: HistogramVec::new(
                HistogramOpts::new("mailprobe_provider_first_post_delay_seconds", "Per incident matched to a provider issue: seconds from our detection (the incident opening) to the provider's first post about it; a provider that posted first counts as 0.")
                    .buckets(FIRST_POST_BUCKETS.to_vec()),
                &["provider"],
            )
            .expect("valid metric"),
            open_keys: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    pub(super) fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.feed_up.clone()),
            Box::new(self.feed_errors.clone()),
            Box::new(self.feed_success.clone()),
            Box::new(self.feed_seconds.clone()),
            Box::new(self.issues_open.clone()),
            Box::new(self.first_post.clone()),
        ]
    }
}

impl super::Metrics {
    /// The providers configured: their error counters exist from the start, at 0, so that
    /// `increase()` sees the first failure; providers no longer configured are dropped.
    pub fn set_providers(&self, names: &[&str]) {
        let p = &self.provider;
        for name in names {
            for reason in FeedError::REASONS {
                p.feed_errors.with_label_values(&[name, reason]);
            }
        }
        let mut keys = lock(&p.open_keys);
        keys.retain(|name, series| {
            let keep = names.contains(&name.as_str());
            if !keep {
                for (service, class) in series.iter() {
                    let _ = p.issues_open.remove_label_values(&[name, service, class]);
                }
                let _ = p.feed_up.remove_label_values(&[name]);
                let _ = p.feed_success.remove_label_values(&[name]);
                let _ = p.feed_seconds.remove_label_values(&[name]);
                let _ = p.first_post.remove_label_values(&[name]);
                for reason in FeedError::REASONS {
                    let _ = p.feed_errors.remove_label_values(&[name, reason]);
                }
            }
            keep
        });
        for name in names {
            keys.entry(name.to_string()).or_default();
        }
    }

    /// One poll of `provider`'s feed: what it lists now, or why it could not be read.
    pub fn provider_polled(
        &self,
        provider: &str,
        result: Result<&[Issue], &FeedError>,
        took: Duration,
    ) {
        let p = &self.provider;
        p.feed_seconds
            .with_label_values(&[provider])
            .observe(took.as_secs_f64());
        let issues = match result {
            Err(e) => {
                p.feed_up.with_label_values(&[provider]).set(0);
                p.feed_errors
                    .with_label_values(&[provider, e.reason()])
                    .inc();
                // What the feed last said stands until it can be read again.
                return;
            }
            Ok(issues) => issues,
        };
        p.feed_up.with_label_values(&[provider]).set(1);
        p.feed_success
            .with_label_values(&[provider])
            .set(unix_seconds(SystemTime::now()));
        let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
        for i in issues.iter().filter(|i| i.is_open()) {
            *counts
                .entry((i.service.clone(), i.classification.clone()))
                .or_default() += 1;
        }
        let mut keys = lock(&p.open_keys);
        let known = keys.entry(provider.to_string()).or_default();
        for (service, class) in known.iter() {
            if !counts.contains_key(&(service.clone(), class.clone())) {
                let _ = p
                    .issues_open
                    .remove_label_values(&[provider, service, class]);
            }
        }
        known.clear();
        for ((service, class), n) in counts {
            p.issues_open
                .with_label_values(&[provider, &service, &class])
                .set(n);
            known.insert((service, class));
        }
    }

    /// An incident was matched to `provider`'s issue, first posted `delay` after the incident
    /// opened (`None`: before it).
    pub fn provider_first_post(&self, provider: &str, delay: Option<Duration>) {
        self.provider
            .first_post
            .with_label_values(&[provider])
            .observe(delay.map_or(0.0, |d| d.as_secs_f64()));
    }
}
