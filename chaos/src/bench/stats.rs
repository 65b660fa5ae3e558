//! What one measurement yields, and the medians per (mode, target) over all rounds.

use super::mode::Mode;
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

/// One target in one mode and round: its figures, or why it could not be measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub kind: TargetKind,
    pub mode: Mode,
    pub round: usize,
    pub outcome: Result<Sample, String>,
}

/// Medians over the successful rounds of one target in one mode.
#[derive(Debug, Clone)]
pub struct Summary {
    pub kind: TargetKind,
    pub mode: Mode,
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

/// One summary per (mode, kind), modes outermost, both in the given order.
pub fn summarize(
    modes: &[Mode],
    kinds: &[TargetKind],
    measurements: &[Measurement],
) -> Vec<Summary> {
    modes
        .iter()
        .flat_map(|mode| {
            kinds
                .iter()
                .map(move |kind| summarize_one(*kind, *mode, measurements))
        })
        .collect()
}

fn summarize_one(kind: TargetKind, mode: Mode, measurements: &[Measurement]) -> Summary {
    let mine = measurements
        .iter()
        .filter(|m| m.kind == kind && m.mode == mode);
    let samples: Vec<&Sample> = mine
        .clone()
        .filter_map(|m| m.outcome.as_ref().ok())
        .collect();
    let of = |f: fn(&Sample) -> f64| median(samples.iter().map(|s| f(s)).collect());
    Summary {
        kind,
        mode,
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

/// fulcrum's figures divided by another target's, in one mode.
#[derive(Debug, Clone)]
pub struct Ratio {
    pub other: TargetKind,
    pub mode: Mode,
    /// Higher is better.
    pub requests_per_sec: f64,
    /// Lower is better.
    pub cpu_us_per_request: f64,
    /// Lower is better.
    pub p99: f64,
}

/// fulcrum against every other summarized target that has figures in the same mode.
pub fn ratios(summaries: &[Summary]) -> Vec<Ratio> {
    summaries
        .iter()
        .filter(|s| s.kind != TargetKind::Fulcrum && s.rounds_ok > 0)
        .filter_map(|other| {
            let ours = summaries.iter().find(|s| {
                s.kind == TargetKind::Fulcrum && s.mode == other.mode && s.rounds_ok > 0
            })?;
            Some((ours, other))
        })
        .map(|(ours, other)| Ratio {
            other: other.kind,
            mode: other.mode,
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

    fn measurement(kind: TargetKind, mode: Mode, rate: f64, cpu_ms: u64) -> Measurement {
        let wrk = WrkResult {
            requests: 1000,
            requests_per_sec: rate,
            p50: Duration::from_millis(1),
            p99: Duration::from_millis(2),
            socket_errors: Default::default(),
            non_2xx_3xx: 0,
        };
        Measurement {
            kind,
            mode,
            round: 1,
            outcome: Ok(Sample {
                wrk,
                cpu: Duration::from_millis(cpu_ms),
                peak_rss: 0,
            }),
        }
    }

    #[test]
    fn summaries_and_ratios_stay_within_their_mode() {
        use Mode::{Handshake, Http};
        use TargetKind::{Fulcrum, Haproxy};
        let ms = vec![
            measurement(Fulcrum, Http, 100.0, 30),
            measurement(Haproxy, Http, 200.0, 20),
            measurement(Fulcrum, Handshake, 300.0, 100),
            measurement(Haproxy, Handshake, 100.0, 400),
        ];
        let sums = summarize(&[Http, Handshake], &[Fulcrum, Haproxy], &ms);
        let order: Vec<_> = sums.iter().map(|s| (s.mode, s.kind)).collect();
        assert_eq!(
            order,
            [
                (Http, Fulcrum),
                (Http, Haproxy),
                (Handshake, Fulcrum),
                (Handshake, Haproxy)
            ]
        );
        let r = ratios(&sums);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].mode, r[0].other), (Http, Haproxy));
        assert!((r[0].requests_per_sec - 0.5).abs() < 1e-9);
        assert!((r[0].cpu_us_per_request - 1.5).abs() < 1e-9);
        assert_eq!(r[1].mode, Handshake);
        assert!((r[1].requests_per_sec - 3.0).abs() < 1e-9);
        assert!((r[1].cpu_us_per_request - 0.25).abs() < 1e-9);
    }

    #[test]
    fn no_ratio_without_fulcrum_figures_in_that_mode() {
        let ms = vec![measurement(TargetKind::Haproxy, Mode::Https, 1.0, 1)];
        let sums = summarize(
            &[Mode::Https],
            &[TargetKind::Fulcrum, TargetKind::Haproxy],
            &ms,
        );
        assert!(ratios(&sums).is_empty());
    }
}
