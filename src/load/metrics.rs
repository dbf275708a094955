//! `[metrics]`: which per-target series are exported beyond the lean default set.

/// `[metrics]`: the per-target detail that costs series, off by default (README, Metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Per-target duration histograms: 14 more series per target, 31 per round trip.
    pub per_target_histograms: bool,
    /// Per-target gauges of each phase the last probe reached: one series per phase.
    pub phase_gauges: bool,
}
