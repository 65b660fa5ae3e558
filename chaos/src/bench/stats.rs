//! What one measurement yields, and the per-target medians over all rounds.

use super::targets::TargetKind;
use super::wrk::WrkResult;
use std::time::Duration;

/// A round whose error ratio exceeds this is flagged in the report.
pub const ERROR_FLAG_RATIO: f64 = 0.001;

/// The figures of one measured window of one target.
#[derive(Debug, Clone)]
pub struct Sample {
    pub wrk: WrkResult,
    /// Proxy CPU time (user + system) spent during the window.
    pub cpu: Duration,
    /// Proxy `VmHWM` at the end of the window, in bytes.
    pub peak_rss: u64,
}

impl Sample {
    pub fn cpu_us_per_request(&self) -> f64 {
        if self.wrk.requests == 0 {
            return f64::NAN;
        }
        self.cpu.as_secs_f64() * 1e6 / self.wrk.requests as f64
    }

    pub fn peak_rss_mb(&self) -> f64 {
        self.peak_rss as f64 / (1024.0 * 1024.0)
    }

    /// More than 0.1% of the attempts failed.
    pub fn flagged(&self) -> bool {
        self.wrk.error_ratio() > ERROR_FLAG_RATIO
    }
}

/// One target in one round: its figures, or why it could not be measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub kind: TargetKind,
    pub round: usize,
    pub outcome: Result<Sample, String>,
}

/// Medians over the successful rounds of one target.
#[derive(Debug, Clone)]
pub struct Summary {
    pub kind: TargetKind,
    pub rounds_ok: usize,
    pub rounds_failed: usize,
    pub rounds_flagged: usize,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub cpu_us_per_request: f64,
    pub peak_rss_mb: f64,
    /// Socket errors plus non-2xx/3xx responses, summed over all rounds.
    pub errors: u64,
}

/// Median of the values (NaN when empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// One summary per kind, in the given order.
pub fn summarize(kinds: &[TargetKind], measurements: &[Measurement]) -> Vec<Summary> {
    kinds
        .iter()
        .map(|kind| summarize_one(*kind, measurements))
        .collect()
}

fn summarize_one(kind: TargetKind, measurements: &[Measurement]) -> Summary {
    let mine = measurements.iter().filter(|m| m.kind == kind);
    let samples: Vec<&Sample> = mine
        .clone()
        .filter_map(|m| m.outcome.as_ref().ok())
        .collect();
    let of = |f: fn(&Sample) -> f64| median(samples.iter().map(|s| f(s)).collect());
    Summary {
        kind,
        rounds_ok: samples.len(),
        rounds_failed: mine.filter(|m| m.outcome.is_err()).count(),
        rounds_flagged: samples.iter().filter(|s| s.flagged()).count(),
        requests_per_sec: of(|s| s.wrk.requests_per_sec),
        p50_ms: of(|s| s.wrk.p50.as_secs_f64() * 1e3),
        p99_ms: of(|s| s.wrk.p99.as_secs_f64() * 1e3),
        cpu_us_per_request: of(Sample::cpu_us_per_request),
        peak_rss_mb: of(Sample::peak_rss_mb),
        errors: samples.iter().map(|s| s.wrk.errors()).sum(),
    }
}

/// fulcrum's figures divided by another target's.
#[derive(Debug, Clone)]
pub struct Ratio {
    pub other: TargetKind,
    /// Higher is better.
    pub requests_per_sec: f64,
    /// Lower is better.
    pub cpu_us_per_request: f64,
    /// Lower is better.
    pub p99: f64,
}

/// fulcrum against every other summarized target that has figures.
pub fn ratios(summaries: &[Summary]) -> Vec<Ratio> {
    let Some(ours) = summaries
        .iter()
        .find(|s| s.kind == TargetKind::Fulcrum && s.rounds_ok > 0)
    else {
        return Vec::new();
    };
    summaries
        .iter()
        .filter(|s| s.kind != TargetKind::Fulcrum && s.rounds_ok > 0)
        .map(|other| Ratio {
            other: other.kind,
            requests_per_sec: ours.requests_per_sec / other.requests_per_sec,
            cpu_us_per_request: ours.cpu_us_per_request / other.cpu_us_per_request,
            p99: ours.p99_ms / other.p99_ms,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }
}
