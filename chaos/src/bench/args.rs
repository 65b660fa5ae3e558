//! Command-line options of `fulcrum-chaos bench` and the settings derived from them.

use super::mode::Mode;
use super::protocol::ConnProtocol;
use super::targets::TargetKind;
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `fulcrum-chaos bench`: HTTP/1.1 and HTTPS throughput and TLS handshake rate of fulcrum
/// against HAProxy and nginx, round-robin over two plain-HTTP nginx backends.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Targets to measure, comma-separated, in round order.
    #[arg(long, value_delimiter = ',', default_value = "fulcrum,haproxy,nginx")]
    pub targets: Vec<TargetKind>,
    /// What to measure, comma-separated: `http` (keep-alive, wrk), `https` (keep-alive
    /// over TLS, wrk), `handshake` (a new TLS connection with a full handshake per
    /// request, no session resumption; the bench's own rustls client, `--connections` at
    /// once), `h2` (HTTP/2 over TLS, `h2load -c{--h2-connections} -m10`), `h2-m1` (the
    /// same with one stream per connection). Each round measures every mode of every
    /// target; the default, three modes of three targets, takes about 6 minutes
    /// (printed at the start).
    #[arg(long, value_delimiter = ',', default_value = "http,https,handshake")]
    pub modes: Vec<Mode>,
    /// Length of each measured window (whole seconds, e.g. `10s`, `1m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before each measured window.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Interleaved rounds (each target once per mode and round).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Concurrent connections of wrk and of the handshake client (keep at 64 or below
    /// when nginx is compared).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,
    /// Connections of h2load in the `h2` and `h2-m1` modes (`1000` with `h2-m1`: many
    /// HTTP/2 clients).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub h2_connections: u32,
    /// Measure memory per HTTP/2 connection (TLS, ALPN h2) instead of throughput: for
    /// each count N, idle (N connections that made one request each) and busy
    /// (`h2load -cN -m1` for `--duration`), against every target (`h2conns.rs`;
    /// `--modes`, `--rounds` and `--conns` do not apply).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub h2_conns: Vec<u32>,
    /// The fulcrum binary [default: target/release/fulcrum in the workspace].
    #[arg(long)]
    pub fulcrum: Option<PathBuf>,
    /// Another fulcrum binary measured as the `fulcrum-base` target in the same run
    /// (e.g. a build from before a change: `--targets fulcrum,fulcrum-base,haproxy`).
    #[arg(long)]
    pub fulcrum_base: Option<PathBuf>,
    /// Also write every figure to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the temp dir with every generated config and log.
    #[arg(long)]
    pub keep_temp: bool,
    /// Measure what connections cost instead of throughput: user memory per idle
    /// keep-alive connection at each `--idle` count, then CPU per request with each
    /// `--busy` count of keep-alive clients (plain HTTP; `--modes`, `--rounds` and
    /// `--connections` do not apply).
    #[arg(long)]
    pub conns: bool,
    /// With `--conns`: idle connection counts, comma-separated, each a number or `max`
    /// (as many as the open-file limit allows: (limit - 1000) / 2, in thousands).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,max")]
    pub idle: Vec<IdleCount>,
    /// With `--conns`: what the idle connections speak, comma-separated: `http`
    /// (HTTP/1.1 keep-alive), `https` (the same over TLS), `h2` (HTTP/2 over TLS),
    /// `tcp` (HTTP/1.1 through a TCP listener; not nginx). Each is measured at every
    /// `--idle` count against every target.
    #[arg(long, value_delimiter = ',', default_value = "http,https,h2,tcp")]
    pub idle_protocols: Vec<ConnProtocol>,
    /// With `--conns`: busy keep-alive client counts (`wrk -t1 -cN`), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,1000", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub busy: Vec<u32>,
}

/// One step of `--idle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleCount {
    Count(u32),
    /// As many as the open-file limit allows.
    Max,
}

impl IdleCount {
    /// The count, with `max` (and anything above it) being `max`.
    pub fn resolve(self, max: u32) -> u32 {
        match self {
            Self::Count(n) => n.min(max),
            Self::Max => max,
        }
    }
}

impl std::str::FromStr for IdleCount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("max") {
            return Ok(Self::Max);
        }
        match s.replace('_', "").parse::<u32>() {
            Ok(n) if n > 0 => Ok(Self::Count(n)),
            _ => Err(format!("{s:?}: expected a positive number or `max`")),
        }
    }
}

impl BenchArgs {
    /// The fulcrum binary to run.
    pub fn fulcrum_path(&self) -> PathBuf {
        self.fulcrum.clone().unwrap_or_else(|| {
            let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            let root = crate_dir.parent().unwrap_or(crate_dir);
            root.join("target/release/fulcrum")
        })
    }
}

/// What the run actually used, reported with the figures.
#[derive(Debug, Clone)]
pub struct Settings {
    pub targets: Vec<TargetKind>,
    pub modes: Vec<Mode>,
    pub rounds: usize,
    pub connections: u32,
    /// h2load's connections in the HTTP/2 modes.
    pub h2_connections: u32,
    pub duration: Duration,
    pub warmup: Duration,
    /// Whether the proxy, wrk and backends were pinned with taskset.
    pub pinned: bool,
    /// One-minute load average before the first and after the last measurement.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
}

/// Start-up, readiness probe and stop of one proxy, roughly, on top of wrk's time.
const OVERHEAD_PER_MEASUREMENT: Duration = Duration::from_secs(1);

impl Settings {
    /// How many measurements the run makes: every target in every mode, every round.
    pub fn measurement_count(&self) -> usize {
        self.rounds * self.modes.len() * self.targets.len()
    }

    /// About how long the run takes.
    pub fn expected_duration(&self) -> Duration {
        let each = self.warmup + self.duration + OVERHEAD_PER_MEASUREMENT;
        each * u32::try_from(self.measurement_count()).unwrap_or(u32::MAX)
    }

    /// Whether any mode talks TLS to the targets.
    pub fn uses_tls(&self) -> bool {
        self.modes.iter().any(|m| *m != Mode::Http)
    }
}

/// `10s`, `1500ms`, `2m` or a bare number of seconds; rounded to whole seconds (wrk's unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected e.g. 10s, 1500ms or 2m"))?;
    let millis = match unit {
        "" | "s" => n.saturating_mul(1000),
        "ms" => n,
        "m" => n.saturating_mul(60_000),
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m)")),
    };
    let secs = (millis + 500) / 1000;
    if secs == 0 {
        return Err(format!("{text:?}: must be at least 1s"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn idle_counts() {
        assert_eq!("max".parse::<IdleCount>(), Ok(IdleCount::Max));
        assert_eq!("5_000".parse::<IdleCount>(), Ok(IdleCount::Count(5000)));
        assert!("0".parse::<IdleCount>().is_err());
        assert_eq!(IdleCount::Count(20_000).resolve(9000), 9000);
        assert_eq!(IdleCount::Max.resolve(9000), 9000);
    }

    #[test]
    fn default_run_time_is_estimated() {
        let settings = Settings {
            // The three targets of a run without `--targets`.
            targets: vec![TargetKind::Fulcrum, TargetKind::Haproxy, TargetKind::Nginx],
            modes: vec![Mode::Http, Mode::Https, Mode::Handshake],
            rounds: 3,
            connections: 64,
            h2_connections: 16,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            pinned: true,
            load_before: None,
            load_after: None,
        };
        assert_eq!(settings.measurement_count(), 27);
        assert_eq!(settings.expected_duration(), Duration::from_secs(27 * 13));
        assert!(settings.uses_tls());
        let http_only = Settings {
            modes: vec![Mode::Http],
            ..settings
        };
        assert!(!http_only.uses_tls());
    }
}
