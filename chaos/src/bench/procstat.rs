//! Resource use of a process from `/proc`: CPU time (utime + stime of `/proc/PID/stat`)
//! and resident set size, peak and current (`VmHWM`, `VmRSS` of `/proc/PID/status`).

use anyhow::{anyhow, bail, Context, Result};
use nix::unistd::{sysconf, SysconfVar};
use std::time::Duration;

/// Clock ticks per second, the unit of utime and stime.
pub fn clock_ticks() -> Result<u64> {
    let ticks = sysconf(SysconfVar::CLK_TCK)
        .context("sysconf(CLK_TCK)")?
        .ok_or_else(|| anyhow!("sysconf(CLK_TCK) has no value"))?;
    u64::try_from(ticks)
        .ok()
        .filter(|t| *t > 0)
        .ok_or_else(|| anyhow!("sysconf(CLK_TCK) returned {ticks}"))
}

/// utime + stime, in clock ticks, from the text of `/proc/PID/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Result<u64> {
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| anyhow!("no ')' in /proc stat line"))?;
    // After the name: field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .ok_or_else(|| anyhow!("/proc stat line too short"))?
            .parse::<u64>()
            .with_context(|| format!("field {} of /proc stat", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// The kB value of line `key` (e.g. `VmRSS`) of `/proc/PID/status`.
fn parse_status_kb(status: &str, key: &str) -> Result<u64> {
    let line = status
        .lines()
        .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))
        .ok_or_else(|| anyhow!("no {key} in /proc status"))?;
    let mut parts = line[key.len() + 1..].split_whitespace();
    let value = parts.next().ok_or_else(|| anyhow!("empty {key} line"))?;
    if parts.next() != Some("kB") {
        bail!("unexpected {key} unit in {line:?}");
    }
    value
        .parse()
        .with_context(|| format!("{key} value {value:?}"))
}

/// The one-minute load average of the machine, when readable.
pub fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// CPU time (user + system) the process has used so far.
pub fn cpu_time(pid: u32, ticks_per_sec: u64) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_cpu_ticks(&text)?;
    Ok(Duration::from_micros(ticks * 1_000_000 / ticks_per_sec))
}

/// Peak resident set size in bytes.
pub fn peak_rss_bytes(pid: u32) -> Result<u64> {
    status_bytes(pid, "VmHWM")
}

/// Resident set size right now, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    status_bytes(pid, "VmRSS")
}

fn status_bytes(pid: u32, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(parse_status_kb(&text, key)? * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_names_with_spaces_and_parens() {
        let stat = "4242 (we ird) (x)) S 1 4242 4242 0 -1 4194560 120 0 0 0 37 5 0 0 20 0 1 0 \
                    100 1000 200 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat).ok(), Some(42));
    }

    #[test]
    fn peak_rss_reads_vmhwm() {
        let status = "Name:\tnginx\nVmPeak:\t  12000 kB\nVmHWM:\t    8204 kB\nVmRSS:\t 8000 kB\n";
        assert_eq!(parse_status_kb(status, "VmHWM").ok(), Some(8204));
        assert_eq!(parse_status_kb(status, "VmRSS").ok(), Some(8000));
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        let ticks = clock_ticks().unwrap_or(100);
        assert!(cpu_time(pid, ticks).is_ok());
        assert!(peak_rss_bytes(pid).map(|b| b > 0).unwrap_or(false));
        assert!(rss_bytes(pid).map(|b| b > 0).unwrap_or(false));
    }
}
