use super::*;
use crate::incidents::{Health, TargetState};

/// A prober fault is counted on its own and changes nothing the target's series say.
#[test]
fn a_prober_fault_counts_apart_and_leaves_the_target_series_alone() {
    use crate::probe::classify::{FailureClass, ProberFault};
    use crate::probe::{Failure, PhaseTiming};
    let dir = std::env::temp_dir().join(format!("mp-fault-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("p"), "pw\n").expect("password file");
    let text = "[[target]]\nname = \"im\"\nregion = \"eu\"\nprotocol = \"imap\"\n\
                    host = \"127.0.0.1\"\ntls = \"none\"\nallow_plaintext = true\n\
                    username = \"u\"\npassword_file = \"p\"\n";
    let cfg = crate::load::parse(&dir.join("c.toml"), text).expect("config");
    let t = &cfg.targets[0];
    let m = Metrics::new();
    m.register_target(t);
    let outcome = |failure: Option<Failure>| Outcome {
        target: t.clone(),
        started_at: SystemTime::now(),
        total: Duration::from_millis(3),
        phases: vec![PhaseTiming {
            phase: Phase::Connect,
            duration: Duration::from_millis(1),
        }],
        failure,
        slow: false,
        tls: None,
        banner: None,
        delivery: None,
        http: None,
        token: None,
        peer: None,
        mx: None,
        retry_after: None,
    };
    m.observe(&outcome(None));
    let target_lines = |r: &str| -> Vec<String> {
        r.lines()
            .filter(|l| l.contains("target=\"im\"") || l.contains("region=\"eu\""))
            .map(str::to_string)
            .collect()
    };
    let before = target_lines(&m.render());
    let fault = Failure {
        class: FailureClass::ProberError,
        fault: Some(ProberFault::FileDescriptors),
        phase: Phase::Connect,
        detail: "connect to 127.0.0.1:143: Too many open files (os error 24)".into(),
    };
    for _ in 0..3 {
        m.observe(&outcome(Some(fault.clone())));
    }
    let r = m.render();
    assert_eq!(target_lines(&r), before);
    let line = "mailprobe_prober_errors_total{protocol=\"imap\",reason=\"file_descriptors\"} 3";
    assert!(r.lines().any(|l| l == line), "{r}");
    let zero = "mailprobe_prober_errors_total{protocol=\"smtp\",reason=\"panic\"} 0";
    assert!(
        r.lines().any(|l| l == zero),
        "every reason exists from the start: {r}"
    );
    assert_eq!(m.failing(), 0);
}

/// Health and incident series sit among the others in name order, and go when told.
#[test]
fn health_and_incident_series_render_in_order() {
    let m = Metrics::new();
    let mut s = TargetState::new("a\"b", "eu", Protocol::Imap, None, SystemTime::now());
    m.target_health(&s);
    s.health = Health::Down;
    m.target_health(&s);
    let counts = BTreeMap::from([(("region".to_string(), "eu".to_string()), 2)]);
    m.open_incidents(&counts);
    let r = m.render();
    for (state, v) in [("up", 0), ("degraded", 0), ("down", 1)] {
        let line = format!(
            "mailprobe_target_state{{protocol=\"imap\",region=\"eu\",state=\"{state}\",target=\"a\\\"b\"}} {v}"
        );
        assert!(r.lines().any(|l| l == line), "{line}\n{r}");
    }
    assert_eq!(r.matches("mailprobe_target_state{").count(), 3, "{r}");
    assert!(r.contains("mailprobe_incidents_open{region=\"eu\",scope=\"region\"} 2"));
    let types: Vec<&str> = r
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    let mut sorted = types.clone();
    sorted.sort();
    assert_eq!(types, sorted, "families in name order, each once");

    m.open_incidents(&BTreeMap::new());
    m.forget_target_health("a\"b");
    let r = m.render();
    assert!(!r.contains("mailprobe_target_state"), "{r}");
    assert!(r.contains("mailprobe_incidents_open{region=\"eu\",scope=\"region\"} 0"));
}

/// A panic while a metrics lock is held (a bug, caught as a prober fault) leaves the
/// metrics working: later probes are still written and `/metrics` still renders.
#[test]
fn a_lock_poisoned_by_a_panic_leaves_the_metrics_working() {
    let m = std::sync::Arc::new(Metrics::new());
    let m2 = m.clone();
    let _ = std::thread::spawn(move || {
        let _state = m2.state.lock();
        let _health = m2.health.lock();
        panic!("a bug while the metrics are locked (deliberate, in the test)");
    })
    .join();
    assert!(m.state.is_poisoned() && m.health.is_poisoned());
    let s = TargetState::new("a", "eu", Protocol::Imap, None, SystemTime::now());
    m.target_health(&s);
    assert_eq!(m.failing(), 0);
    assert!(m.render().contains("mailprobe_target_state{"));
}
