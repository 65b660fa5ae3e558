//! CPU saturation for the cpu-hog scenario: busy-loop processes (this binary's hidden
//! `hog` subcommand), more of them than cores, each bounded in time by itself and stopped
//! by PID by the harness; and the evidence that they saturated the machine, read from
//! `/proc` (the hogs' own CPU time, the machine's idle time).

use crate::checks::CpuUse;
use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{sysconf, Pid, SysconfVar};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A hog process ends by itself this long after the harness meant to stop it.
const SELF_LIMIT_SLACK: Duration = Duration::from_secs(10);
/// Hog processes per core when not told otherwise.
pub const PER_CORE: usize = 3;

/// `fulcrum-chaos hog --secs N`: spin until the time is up.
pub fn busy(secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut x: u64 = 1;
    while Instant::now() < deadline {
        for _ in 0..100_000 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
}

/// Total and idle jiffies of every CPU together, and the number of CPUs (`/proc/stat`).
fn machine_times() -> Result<(u64, u64, usize)> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let cores = text
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| anyhow!("no cpu line in /proc/stat"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>().context("a /proc/stat field"))
        .collect::<Result<_>>()?;
    if fields.len() < 5 {
        bail!("short cpu line in /proc/stat: {line:?}");
    }
    // user nice system idle iowait irq softirq steal (guest is already in user).
    let total = fields.iter().take(8).sum();
    let idle = fields[3] + fields[4];
    Ok((total, idle, cores.max(1)))
}

/// utime + stime of a process, in clock ticks (`/proc/PID/stat`).
fn process_ticks(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name is in parentheses and may contain spaces: count from the last ')'.
    let rest = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 (index 0 here), utime 14 (11), stime 15 (12).
    let get = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .ok_or_else(|| anyhow!("short /proc/{pid}/stat"))?
            .parse::<u64>()
            .with_context(|| format!("field {i} of /proc/{pid}/stat"))
    };
    Ok(get(11)? + get(12)?)
}

/// Running hog processes; dropping them kills them by PID.
pub struct Hog {
    children: Vec<Child>,
    started: Instant,
    machine_at_start: (u64, u64, usize),
}

impl Hog {
    /// Starts `procs` busy processes (0: [`PER_CORE`] per core) that end by themselves
    /// after `limit` (plus some slack) if nobody stops them.
    pub fn start(procs: usize, limit: Duration) -> Result<Hog> {
        let machine_at_start = machine_times()?;
        let procs = if procs == 0 {
            PER_CORE * machine_at_start.2
        } else {
            procs
        };
        let exe = std::env::current_exe().context("locating fulcrum-chaos for the hog")?;
        let secs = (limit + SELF_LIMIT_SLACK).as_secs().to_string();
        let mut hog = Hog {
            children: Vec::new(),
            started: Instant::now(),
            machine_at_start,
        };
        for _ in 0..procs {
            let child = Command::new(&exe)
                .args(["hog", "--secs", &secs])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting a hog process")?;
            hog.children.push(child);
        }
        Ok(hog)
    }

    /// Measures the machine without starting anything (`--noop-fault`).
    pub fn watch() -> Result<Hog> {
        Ok(Hog {
            children: Vec::new(),
            started: Instant::now(),
            machine_at_start: machine_times()?,
        })
    }

    /// Stops every hog and says how much CPU they got and how idle the machine was.
    pub fn stop(mut self) -> Result<CpuUse> {
        let wall = self.started.elapsed().as_secs_f64();
        let (total1, idle1, cores) = machine_times()?;
        let ticks_per_s = sysconf(SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|t| *t > 0)
            .unwrap_or(100) as f64;
        let mut hog_ticks = 0;
        for c in &self.children {
            // A hog that already ended (it should not have) counts for nothing.
            hog_ticks += process_ticks(c.id()).unwrap_or(0);
        }
        let procs = self.children.len();
        self.kill_all();
        let (total0, idle0, _) = self.machine_at_start;
        let dt = total1.saturating_sub(total0).max(1) as f64;
        Ok(CpuUse {
            procs,
            cores,
            hog_pct: 100.0 * hog_ticks as f64 / ticks_per_s / (wall.max(1e-3) * cores as f64),
            idle_pct: 100.0 * idle1.saturating_sub(idle0) as f64 / dt,
        })
    }

    /// Kills and reaps every hog (each PID once: a reaped PID may belong to another process).
    fn kill_all(&mut self) {
        for mut c in self.children.drain(..) {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.kill_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_machine_and_process_times() {
        let (total, idle, cores) = machine_times().expect("/proc/stat");
        assert!(total >= idle && cores >= 1);
        assert!(process_ticks(std::process::id()).is_ok());
    }
}
