//! Just enough of the Prometheus text format to read figures back from `/metrics`.

/// One sample: metric name, raw label text (between the braces) and value.
pub struct Sample<'a> {
    /// Metric name.
    pub name: &'a str,
    /// Labels as written, e.g. `target="a",le="0.5"`.
    pub labels: &'a str,
    /// The value.
    pub value: f64,
}

/// Every sample of `text`, comments skipped.
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            Some(Sample {
                name,
                labels,
                value,
            })
        })
}

/// Sum of every sample named `name` whose labels contain `filter`.
pub fn sum(text: &str, name: &str, filter: &str) -> f64 {
    samples(text)
        .filter(|s| s.name == name && s.labels.contains(filter))
        .map(|s| s.value)
        .sum()
}

/// The value of a label in a label text.
pub fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let end = labels[start..].find('"')? + start;
    Some(&labels[start..end])
}

/// Cumulative buckets `(le, count)` of the unlabelled histogram `name`, in order.
pub fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut out: Vec<(f64, f64)> = samples(text)
        .filter(|s| s.name == bucket)
        .filter_map(|s| {
            let le = label(s.labels, "le")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, s.value))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Bucket counts observed between two scrapes (`after - before`).
pub fn bucket_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(le, n)| {
            let was = before.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
            (le, n - was)
        })
        .collect()
}

/// The q-quantile of cumulative buckets, interpolated linearly inside the bucket as
/// PromQL's `histogram_quantile` does; also the upper bound of that bucket.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<(f64, f64)> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, n) in buckets {
        if n >= rank {
            if le.is_infinite() {
                return Some((prev.0, le));
            }
            let inside = n - prev.1;
            let frac = if inside > 0.0 {
                (rank - prev.1) / inside
            } else {
                1.0
            };
            return Some((prev.0 + (le - prev.0) * frac, le));
        }
        prev = (le, n);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_histograms_and_quantiles() {
        let text = "# HELP x y\nd_bucket{le=\"0.001\"} 90\nd_bucket{le=\"0.01\"} 100\n\
                    d_bucket{le=\"+Inf\"} 100\nd_sum 0.1\nd_count 100\n";
        let b = buckets(text, "d");
        assert_eq!(b.len(), 3);
        let (p50, le) = quantile(0.5, &b).unwrap();
        assert_eq!(le, 0.001);
        assert!((p50 - 0.000_555).abs() < 1e-6, "{p50}");
        let (p99, le) = quantile(0.99, &b).unwrap();
        assert_eq!(le, 0.01);
        assert!(p99 > 0.001 && p99 < 0.01);
        assert_eq!(sum(text, "d_count", ""), 100.0);
    }
}
