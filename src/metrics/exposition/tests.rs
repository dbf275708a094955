use super::*;

#[test]
fn families_are_sorted_and_bucket_labels_match_the_bounds() {
    assert!(FAMILIES.windows(2).all(|w| w[0].name < w[1].name));
    assert!(GROUP_FAMILIES.windows(2).all(|w| w[0].name < w[1].name));
    for (b, le) in DURATION_BUCKETS.iter().zip(DURATION_LE) {
        assert_eq!(b.to_string(), le);
    }
    for (b, le) in DELIVERY_BUCKETS.iter().zip(DELIVERY_LE) {
        assert_eq!(b.to_string(), le);
    }
}

/// One IMAP target, probed once with success over IPv6 and once failing at login: the
/// lean set, in the crate's text format (the first renderer was checked line by line
/// against the crate), families contiguous and in name order, and nothing left behind.
fn render_one_target(options: MetricsSettings) -> (crate::metrics::Metrics, String) {
    use crate::metrics::Metrics;
    use crate::probe::classify::FailureClass;
    use crate::probe::{Failure, Outcome, PhaseTiming};
    use std::time::Duration;

    let dir = std::env::temp_dir().join(format!("mp-expo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("p"), "pw\n").expect("password file");
    let text = "[[target]]\nname = \"im\"\nregion = \"eu\"\nprotocol = \"imap\"\n\
                    host = \"127.0.0.1\"\ntls = \"none\"\nallow_plaintext = true\n\
                    username = \"u\"\npassword_file = \"p\"\n";
    let cfg = crate::load::parse(&dir.join("c.toml"), text).expect("config");
    let t = &cfg.targets[0];
    let m = Metrics::new();
    m.set_options(options);
    m.register_target(t);
    let outcome = |fail: bool| Outcome {
        target: t.clone(),
        started_at: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_000_000_250_000),
        total: Duration::from_millis(300),
        phases: if fail {
            vec![PhaseTiming {
                phase: Phase::Connect,
                duration: Duration::from_micros(1500),
            }]
        } else {
            vec![
                PhaseTiming {
                    phase: Phase::Connect,
                    duration: Duration::from_micros(1500),
                },
                PhaseTiming {
                    phase: Phase::Login,
                    duration: Duration::from_millis(20),
                },
            ]
        },
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
        mx: None,
        retry_after: None,
    };
    m.observe(&outcome(false));
    m.observe(&outcome(true));
    let r = m.render();
    let types: Vec<&str> = r
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    let mut sorted = types.clone();
    sorted.sort();
    assert_eq!(types, sorted, "families in name order, each once");
    (m, r)
}

#[test]
fn the_default_set_is_lean_and_aggregates_latency_per_region() {
    let (m, r) = render_one_target(MetricsSettings::default());
    for line in [
        "# TYPE mailprobe_probe_failures_total counter",
        "mailprobe_probe_failures_total{class=\"auth_rejected\",phase=\"login\",protocol=\"imap\",region=\"eu\",target=\"im\"} 1",
        "mailprobe_probe_failure_info{class=\"auth_rejected\",phase=\"login\",protocol=\"imap\",region=\"eu\",target=\"im\"} 1",
        "mailprobe_probe_last_duration_seconds{protocol=\"imap\",region=\"eu\",target=\"im\"} 0.3",
        "mailprobe_probe_last_run_timestamp_seconds{protocol=\"imap\",region=\"eu\",target=\"im\"} 1764000000.55",
        "mailprobe_probe_consecutive_failures{protocol=\"imap\",region=\"eu\",target=\"im\"} 1",
        "mailprobe_probe_connection_info{family=\"ipv6\",protocol=\"imap\",region=\"eu\",target=\"im\"} 1",
        "mailprobe_targets{protocol=\"imap\"} 1",
        // Per region and protocol, not per target.
        "mailprobe_probes_total{protocol=\"imap\",region=\"eu\",result=\"success\"} 1",
        "mailprobe_probes_total{protocol=\"imap\",region=\"eu\",result=\"failure\"} 1",
        "mailprobe_probes_skipped_total{protocol=\"imap\",region=\"eu\"} 0",
        "mailprobe_region_probe_duration_seconds_bucket{protocol=\"imap\",region=\"eu\",le=\"0.5\"} 2",
        "mailprobe_region_probe_duration_seconds_sum{protocol=\"imap\",region=\"eu\"} 0.6",
        "mailprobe_region_phase_duration_seconds_count{phase=\"connect\",protocol=\"imap\",region=\"eu\"} 2",
        // Login was reached once (the failure at login has no timing): one observation.
        "mailprobe_region_phase_duration_seconds_count{phase=\"login\",protocol=\"imap\",region=\"eu\"} 1",
        // Expected but never reached: a histogram at 0, which no quantile reads as 0 s.
        "mailprobe_region_phase_duration_seconds_count{phase=\"select\",protocol=\"imap\",region=\"eu\"} 0",
    ] {
        assert!(r.lines().any(|l| l == line), "{line}\n{r}");
    }
    for gone in [
        "mailprobe_probe_duration_seconds",
        "mailprobe_probe_phase_duration_seconds",
        "mailprobe_probe_seconds_since_success",
        "result=\"success\",target=",
    ] {
        assert!(!r.contains(gone), "{gone}\n{r}");
    }
    m.unregister_target("im");
    let r = m.render();
    assert!(!r.contains("target="), "{r}");
    assert!(
        !r.contains("region=\"eu\""),
        "the group goes with its last target: {r}"
    );
    assert!(r.contains("mailprobe_targets{protocol=\"imap\"} 0"));
}

#[test]
fn per_target_histograms_and_phase_gauges_are_opt_in_and_skip_phases_not_reached() {
    let opts = MetricsSettings {
        per_target_histograms: true,
        phase_gauges: true,
    };
    let (m, r) = render_one_target(opts);
    for line in [
        "mailprobe_probe_duration_seconds_bucket{protocol=\"imap\",region=\"eu\",target=\"im\",le=\"0.5\"} 2",
        "mailprobe_probe_duration_seconds_count{protocol=\"imap\",region=\"eu\",target=\"im\"} 2",
        "mailprobe_probe_phase_duration_seconds{phase=\"connect\",protocol=\"imap\",region=\"eu\",target=\"im\"} 0.0015",
    ] {
        assert!(r.lines().any(|l| l == line), "{line}\n{r}");
    }
    // The last probe failed at login, untimed: no login gauge, rather than a 0 s one.
    assert!(
        !r.contains("mailprobe_probe_phase_duration_seconds{phase=\"login\""),
        "{r}"
    );
    // Off again: gone at once.
    m.set_options(MetricsSettings::default());
    let r = m.render();
    assert!(!r.contains("mailprobe_probe_duration_seconds"), "{r}");
    assert!(!r.contains("mailprobe_probe_phase_duration_seconds"), "{r}");
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    assert_eq!(escape("plain"), "plain");
}
