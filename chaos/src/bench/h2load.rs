//! Running `h2load` (Debian's `nghttp2-client`) for the HTTP/2 modes and reading its
//! report in wrk's terms (`WrkResult`), so the rest of the bench treats it like wrk.
//!
//! h2load prints totals but no percentiles; the per-request times come from its
//! `--log-file` (one line per request: start time, status, duration in µs), from
//! which p50 and p99 of the answered requests are taken (a failed one is logged with
//! status -1). A request that never completed is not in the log;
//! h2load counts it as failed or errored, and so does the result.

use super::process::Pin;
use super::wrk::{SocketErrors, WrkResult};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// How to run h2load.
#[derive(Debug, Clone)]
pub struct H2loadRun<'a> {
    pub h2load: &'a Path,
    pub url: &'a str,
    pub connections: u32,
    /// Concurrent streams per connection (`-m`).
    pub streams: u32,
    pub duration: Duration,
    pub pin: Pin,
    /// Where the per-request log goes (overwritten).
    pub log: &'a Path,
}

impl H2loadRun<'_> {
    /// Runs h2load with one thread; the child is killed if this is dropped.
    pub async fn run(&self) -> Result<WrkResult> {
        let secs = self.duration.as_secs().max(1);
        let args = [
            "-t1".to_string(),
            format!("-c{}", self.connections),
            format!("-m{}", self.streams),
            format!("-D{secs}"),
            // Time out a stuck connection instead of hanging the bench.
            "-T30".to_string(),
            format!("--log-file={}", self.log.display()),
            self.url.to_string(),
        ];
        let std_cmd = self.pin.command(self.h2load, &args);
        let output = tokio::process::Command::from(std_cmd)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("running h2load")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "h2load failed ({}): {}{}",
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let log = std::fs::read_to_string(self.log)
            .with_context(|| format!("reading {}", self.log.display()))?;
        parse(&stdout, &log).with_context(|| format!("parsing h2load output:\n{stdout}"))
    }
}

/// Totals from h2load's text, latencies from its request log.
pub fn parse(text: &str, log: &str) -> Result<WrkResult> {
    let mut totals = None;
    let mut rate = None;
    let mut non_2xx_3xx = 0;
    let mut protocol_ok = false;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("requests:") {
            totals = Some(parse_requests(rest)?);
        } else if let Some(rest) = line.strip_prefix("finished in") {
            // `finished in 10.00s, 75371.20 req/s, 2.63MB/s`
            let field = rest
                .split(',')
                .nth(1)
                .and_then(|f| f.split_whitespace().next())
                .ok_or_else(|| anyhow!("no req/s in {line:?}"))?;
            rate = Some(field.parse::<f64>().context("req/s")?);
        } else if let Some(rest) = line.strip_prefix("status codes:") {
            // `status codes: 753712 2xx, 0 3xx, 0 4xx, 0 5xx`
            for part in rest.split(',') {
                let mut words = part.split_whitespace();
                if let (Some(n), Some(class)) = (words.next(), words.next()) {
                    if class == "4xx" || class == "5xx" {
                        non_2xx_3xx += n.parse::<u64>().context("status count")?;
                    }
                }
            }
        } else if line.starts_with("Application protocol: h2") {
            protocol_ok = true;
        }
    }
    let t = totals.ok_or_else(|| anyhow!("no 'requests:' line"))?;
    if !protocol_ok && t.done > 0 {
        bail!("h2load did not speak h2 (no 'Application protocol: h2' line)");
    }
    let (p50, p99) = percentiles(log)?;
    Ok(WrkResult {
        requests: t.done,
        requests_per_sec: rate.ok_or_else(|| anyhow!("no 'finished in' line"))?,
        p50,
        p99,
        socket_errors: SocketErrors {
            // h2load's "errored" are requests lost to connection or stream errors.
            read: t.failed.max(t.errored),
            timeout: t.timeout,
            ..SocketErrors::default()
        },
        non_2xx_3xx,
    })
}

/// `requests: 753712 total, 753872 started, 753712 done, 753712 succeeded, 0 failed,
/// 0 errored, 0 timeout`.
#[derive(Debug, Default)]
struct Totals {
    done: u64,
    failed: u64,
    errored: u64,
    timeout: u64,
}

fn parse_requests(rest: &str) -> Result<Totals> {
    let mut t = Totals::default();
    let mut seen_done = false;
    for part in rest.split(',') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            bail!("requests part {part:?}");
        };
        let n: u64 = n.parse().with_context(|| format!("requests {part:?}"))?;
        match what {
            "done" => {
                t.done = n;
                seen_done = true;
            }
            "failed" => t.failed = n,
            "errored" => t.errored = n,
            "timeout" => t.timeout = n,
            _ => {}
        }
    }
    if !seen_done {
        bail!("no 'done' count in {rest:?}");
    }
    Ok(t)
}

/// p50 and p99 of the durations (third column, µs) of h2load's request log.
pub fn percentiles(log: &str) -> Result<(Duration, Duration)> {
    let mut micros = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace().skip(1);
        let (Some(status), Some(field)) = (fields.next(), fields.next()) else {
            bail!("request log line {line:?} has no duration");
        };
        // A request that failed (status -1) has no response time.
        if status.starts_with('-') {
            continue;
        }
        micros.push(
            field
                .parse::<u64>()
                .with_context(|| format!("request log line {line:?}"))?,
        );
    }
    if micros.is_empty() {
        bail!("the request log is empty");
    }
    micros.sort_unstable();
    let at = |q: f64| {
        let i = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
        Duration::from_micros(micros[i])
    };
    Ok((at(0.50), at(0.99)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = include_str!("fixtures/h2load_ok.txt");

    #[test]
    fn parses_a_clean_run() -> Result<()> {
        let log = (1..=100)
            .map(|i| format!("1700000000000000\t200\t{i}\n"))
            .collect::<String>();
        let r = parse(OK, &log)?;
        assert_eq!(r.requests, 753_712);
        assert!((r.requests_per_sec - 75_371.2).abs() < 1e-6);
        assert_eq!(r.p50, Duration::from_micros(50));
        assert_eq!(r.p99, Duration::from_micros(99));
        assert_eq!(r.errors(), 0);
        Ok(())
    }

    #[test]
    fn counts_failures_and_error_statuses() -> Result<()> {
        let text = OK
            .replace("0 failed, 0 errored", "12 failed, 12 errored")
            .replace("0 5xx", "7 5xx");
        let r = parse(&text, "1\t502\t10\n")?;
        assert_eq!(r.socket_errors.read, 12);
        assert_eq!(r.non_2xx_3xx, 7);
        assert_eq!(r.errors(), 19);
        Ok(())
    }

    #[test]
    fn refuses_a_run_that_fell_back_to_http11() {
        let text = OK.replace("Application protocol: h2", "Application protocol: http/1.1");
        assert!(parse(&text, "1\t200\t10\n").is_err());
    }

    #[test]
    fn an_empty_or_broken_log_is_an_error() {
        assert!(parse(OK, "").is_err());
        assert!(parse(OK, "1\t200\n").is_err());
        assert!(percentiles("1 200 x").is_err());
        assert!(percentiles("1 -1 5\n").is_err(), "no answered request");
    }

    #[test]
    fn percentiles_of_one_sample() -> Result<()> {
        let (p50, p99) = percentiles("1 200 7\n2 -1 900\n")?;
        assert_eq!(
            (p50, p99),
            (Duration::from_micros(7), Duration::from_micros(7))
        );
        Ok(())
    }
}
