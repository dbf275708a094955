//! `mailprobe_maintenance`: 1 for each target under a maintenance window, absent otherwise, so
//! that alert rules can hold back what planned work breaks (`unless on (target)
//! mailprobe_maintenance == 1`). Absent rather than 0 outside windows: a fleet of 10,000
//! targets pays for the targets under maintenance, not for every target all the time.

use std::collections::BTreeSet;
use std::sync::Mutex;

use prometheus::{IntGaugeVec, Opts};

use super::Metrics;
use crate::incidents::TargetState;
use crate::sync::lock;

/// The gauge and the label sets it exports now.
pub(super) struct Maintenance {
    pub(super) gauge: IntGaugeVec,
    exported: Mutex<BTreeSet<[String; 3]>>,
}

impl Maintenance {
    pub(super) fn new() -> Self {
        Maintenance {
            gauge: IntGaugeVec::new(
                Opts::new(
                    "mailprobe_maintenance",
                    "1 while the target is under a maintenance window (config [[maintenance]] or `mailprobe maintenance add`); absent otherwise.",
                ),
                &["target", "region", "protocol"],
            )
            .expect("valid metric"),
            exported: Mutex::new(BTreeSet::new()),
        }
    }
}

impl Metrics {
    /// Exports 1 for exactly these targets; the others' series go.
    pub fn set_maintenance(&self, targets: &[&TargetState]) {
        let m = &self.maintenance;
        let now: BTreeSet<[String; 3]> = targets
            .iter()
            .map(|s| {
                [
                    s.name.clone(),
                    s.region.clone(),
                    s.protocol.as_str().to_string(),
                ]
            })
            .collect();
        let mut exported = lock(&m.exported);
        for gone in exported.difference(&now) {
            let labels: Vec<&str> = gone.iter().map(String::as_str).collect();
            let _ = m.gauge.remove_label_values(&labels);
        }
        for key in &now {
            let labels: Vec<&str> = key.iter().map(String::as_str).collect();
            m.gauge.with_label_values(&labels).set(1);
        }
        *exported = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Protocol;

    #[test]
    fn only_targets_under_maintenance_have_the_series() {
        let m = Metrics::new();
        let now = std::time::SystemTime::now();
        let a = TargetState::new("imap-eu", "eu", Protocol::Imap, None, now);
        let b = TargetState::new("smtp-eu", "eu", Protocol::Smtp, None, now);
        m.set_maintenance(&[&a, &b]);
        let r = m.render();
        assert!(
            r.contains(
                "mailprobe_maintenance{protocol=\"imap\",region=\"eu\",target=\"imap-eu\"} 1"
            ),
            "{r}"
        );
        assert!(r.contains("target=\"smtp-eu\"} 1"));
        m.set_maintenance(&[&b]);
        let r = m.render();
        assert!(!r.contains("target=\"imap-eu\"} 1"), "{r}");
        assert!(r.contains("target=\"smtp-eu\"} 1"));
        m.set_maintenance(&[]);
        assert!(!m.render().contains("mailprobe_maintenance{"));
    }
}
