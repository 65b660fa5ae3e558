//! Running `wrk` and reading its `--latency` report: totals, rate, p50/p99, errors.

use super::process::Pin;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// `Socket errors: connect N, read N, write N, timeout N`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketErrors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
}

impl SocketErrors {
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// The figures of one wrk run.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub socket_errors: SocketErrors,
    pub non_2xx_3xx: u64,
}

impl WrkResult {
    /// Failed requests: socket errors plus non-2xx/3xx responses.
    pub fn errors(&self) -> u64 {
        self.socket_errors.total() + self.non_2xx_3xx
    }

    /// Errors as a fraction of all attempts (requests + socket errors).
    pub fn error_ratio(&self) -> f64 {
        let attempts = self.requests + self.socket_errors.total();
        if attempts == 0 {
            return 1.0;
        }
        self.errors() as f64 / attempts as f64
    }
}

/// How to run wrk.
#[derive(Debug, Clone)]
pub struct WrkRun<'a> {
    pub wrk: &'a Path,
    pub url: &'a str,
    pub connections: u32,
    pub duration: Duration,
    pub pin: Pin,
}

impl WrkRun<'_> {
    /// Runs wrk with one thread and `--latency`; the child is killed if this is dropped.
    pub async fn run(&self) -> Result<WrkResult> {
        let secs = self.duration.as_secs().max(1);
        let args = [
            "-t1".to_string(),
            format!("-c{}", self.connections),
            format!("-d{secs}s"),
            "--latency".to_string(),
            self.url.to_string(),
        ];
        let std_cmd = self.pin.command(self.wrk, &args);
        let output = tokio::process::Command::from(std_cmd)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("running wrk")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "wrk failed ({}): {}{}",
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse(&stdout).with_context(|| format!("parsing wrk output:\n{stdout}"))
    }
}

/// Parses the text wrk prints with `--latency`.
pub fn parse(text: &str) -> Result<WrkResult> {
    let mut requests = None;
    let mut rate = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut socket_errors = SocketErrors::default();
    let mut non_2xx_3xx = 0;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rate = Some(rest.trim().parse::<f64>().context("Requests/sec")?);
        } else if line.contains(" requests in ") {
            let n = line.split_whitespace().next().unwrap_or_default();
            requests = Some(n.parse::<u64>().context("requests total")?);
        } else if let Some(rest) = line.strip_prefix("50%") {
            p50 = Some(parse_latency(rest.trim())?);
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99 = Some(parse_latency(rest.trim())?);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            socket_errors = parse_socket_errors(rest)?;
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx_3xx = rest.trim().parse().context("Non-2xx count")?;
        }
    }
    Ok(WrkResult {
        requests: requests.ok_or_else(|| anyhow!("no 'requests in' line"))?,
        requests_per_sec: rate.ok_or_else(|| anyhow!("no Requests/sec line"))?,
        p50: p50.ok_or_else(|| anyhow!("no 50% line (was --latency given?)"))?,
        p99: p99.ok_or_else(|| anyhow!("no 99% line (was --latency given?)"))?,
        socket_errors,
        non_2xx_3xx,
    })
}

/// `515.00us`, `2.42ms`, `1.10s`, `3.00m` as wrk prints them.
pub fn parse_latency(text: &str) -> Result<Duration> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| anyhow!("latency {text:?} has no unit"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .with_context(|| format!("latency {text:?}"))?;
    let micros = match unit {
        "us" => value,
        "ms" => value * 1e3,
        "s" => value * 1e6,
        "m" => value * 60e6,
        "h" => value * 3600e6,
        _ => bail!("latency {text:?}: unknown unit {unit:?}"),
    };
    Ok(Duration::from_nanos((micros * 1e3).round() as u64))
}

fn parse_socket_errors(text: &str) -> Result<SocketErrors> {
    let mut errors = SocketErrors::default();
    for part in text.split(',') {
        let mut words = part.split_whitespace();
        let (Some(kind), Some(count)) = (words.next(), words.next()) else {
            bail!("socket errors part {part:?}");
        };
        let count: u64 = count
            .parse()
            .with_context(|| format!("socket errors {part:?}"))?;
        match kind {
            "connect" => errors.connect = count,
            "read" => errors.read = count,
            "write" => errors.write = count,
            "timeout" => errors.timeout = count,
            _ => bail!("unknown socket error kind {kind:?}"),
        }
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = include_str!("fixtures/wrk_ok.txt");
    const ERRORS: &str = include_str!("fixtures/wrk_errors.txt");

    #[test]
    fn parses_a_clean_run() -> Result<()> {
        let r = parse(OK)?;
        assert_eq!(r.requests, 111_945);
        assert!((r.requests_per_sec - 111_571.01).abs() < 1e-6);
        assert_eq!(r.p50, Duration::from_micros(515));
        assert_eq!(r.p99, Duration::from_micros(2420));
        assert_eq!(r.errors(), 0);
        Ok(())
    }

    #[test]
    fn parses_socket_errors_and_non_2xx() -> Result<()> {
        let r = parse(ERRORS)?;
        assert_eq!(r.requests, 205);
        assert_eq!(r.p50, Duration::from_micros(1530));
        assert_eq!(r.socket_errors.read, 24_512);
        assert_eq!(r.non_2xx_3xx, 205);
        assert!(r.error_ratio() > 0.99);
        Ok(())
    }

    #[test]
    fn latency_units() -> Result<()> {
        assert_eq!(parse_latency("1.50s")?, Duration::from_millis(1500));
        assert_eq!(parse_latency("2.00m")?, Duration::from_secs(120));
        assert!(parse_latency("12").is_err());
        assert!(parse_latency("1.0xs").is_err());
        Ok(())
    }

    #[test]
    fn missing_latency_is_an_error() {
        let cut = OK
            .lines()
            .filter(|l| !l.contains("99%"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(parse(&cut).is_err());
    }
}
