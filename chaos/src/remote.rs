//! `fulcrum-chaos remote`: the same scenarios against real hosts, driven by the shell
//! commands of an inventory file (usually ssh). See `chaos/examples/hosts.toml`.
//!
//! Without a `vip_check` command on every node there is no VIP poller: the dual-holder
//! check then says "not sampled" and leader finding relies on `/status` alone.

use crate::checks::{CpuUse, HolderSample, WireSample};
use crate::cli::RemoteArgs;
use crate::ops::{BackendAction, NodeAction, Ops};
use crate::report;
use crate::scenarios::Observer;
use crate::scenarios::{self, Outcome, Settings};
use crate::vip_poller::CommandProbe;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::json;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Where clients reach the cluster, `http://HOST[:PORT]/`.
    pub vip_url: String,
    /// A config file to `PUT /config` in the config-change scenario.
    pub config_file: Option<String>,
    #[serde(rename = "node")]
    pub nodes: Vec<NodeCommands>,
    pub redis: Option<RedisCommands>,
    #[serde(default, rename = "backend")]
    pub backends: Vec<BackendCommands>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCommands {
    pub name: String,
    /// Admin API, `HOST:PORT`.
    pub admin: String,
    pub kill: String,
    pub freeze: String,
    pub resume: String,
    /// A planned stop (SIGTERM).
    pub stop: String,
    pub start: String,
    pub partition: String,
    pub heal: String,
    pub netem_on: Option<String>,
    pub netem_off: Option<String>,
    /// Take the node's link down / up (crash-node-leader: the node dies in silence).
    pub link_down: Option<String>,
    pub link_up: Option<String>,
    /// Exit status 0 when this node has the VIP on its interface.
    pub vip_check: Option<String>,
    /// Exit status 0 while the fulcrum process runs.
    pub running: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisCommands {
    pub kill: String,
    pub start: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendCommands {
    /// The name the backend puts in `x-backend`.
    pub name: String,
    pub kill: Option<String>,
    pub start: Option<String>,
    pub hang: Option<String>,
    pub fail: Option<String>,
    pub ok: Option<String>,
}

/// Runs `cmd` with `sh -c`, bounded by 30 s: `Ok(true)` on exit 0, `Ok(false)` otherwise.
fn shell(cmd: &str) -> Result<bool> {
    Ok(shell_output(cmd)?.0)
}

/// Like [`shell`], also returning the end of stderr. Called from the scenario's async
/// code: the wait (an ssh round trip) must not stall the load generator's worker.
fn shell_output(cmd: &str) -> Result<(bool, String)> {
    tokio::task::block_in_place(|| run_shell(cmd))
}

fn run_shell(cmd: &str) -> Result<(bool, String)> {
    let mut child = Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
            }
            let tail: String = err
                .trim()
                .lines()
                .last()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect();
            return Ok((status.success(), tail));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} took longer than 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn must(cmd: &str) -> Result<()> {
    let (ok, err) = shell_output(cmd)?;
    if !ok {
        bail!("command failed: {cmd}: {err}");
    }
    Ok(())
}

fn optional(cmd: &Option<String>, what: &str) -> Result<()> {
    match cmd {
        Some(c) => must(c),
        None => bail!("the inventory has no `{what}` command"),
    }
}

struct RemoteOps {
    inv: Inventory,
    target: String,
}

impl Ops for RemoteOps {
    fn nodes(&self) -> usize {
        self.inv.nodes.len()
    }
    fn node_name(&self, i: usize) -> String {
        self.inv.nodes[i].name.clone()
    }
    fn admin(&self, i: usize) -> String {
        self.inv.nodes[i].admin.clone()
    }
    fn target(&self) -> String {
        self.target.clone()
    }
    fn node(&self, i: usize, action: NodeAction) -> Result<()> {
        let n = &self.inv.nodes[i];
        must(match action {
            NodeAction::Kill => &n.kill,
            NodeAction::Freeze => &n.freeze,
            NodeAction::Resume => &n.resume,
            NodeAction::Stop => &n.stop,
        })
    }
    fn start(&self, i: usize) -> Result<()> {
        must(&self.inv.nodes[i].start)
    }
    fn wait_exit(&self, _i: usize, _limit: Duration) -> bool {
        true // the stop command (e.g. systemctl stop) returns once the unit stopped
    }
    fn running(&self, i: usize) -> Option<bool> {
        self.inv.nodes[i]
            .running
            .as_deref()
            .and_then(|c| shell(c).ok())
    }
    fn partition(&self, i: usize) -> Result<()> {
        must(&self.inv.nodes[i].partition)
    }
    fn heal(&self, i: usize) -> Result<()> {
        must(&self.inv.nodes[i].heal)
    }
    fn netem(&self, i: usize, on: bool) -> Result<String> {
        let n = &self.inv.nodes[i];
        if on {
            optional(&n.netem_on, "netem_on")?;
            Ok(n.netem_on.clone().unwrap_or_default())
        } else {
            optional(&n.netem_off, "netem_off")?;
            Ok("removed".into())
        }
    }
    fn redis(&self, up: bool) -> Result<()> {
        let r = self
            .inv
            .redis
            .as_ref()
            .ok_or_else(|| anyhow!("the inventory has no [redis]"))?;
        must(if up { &r.start } else { &r.kill })
    }
    fn backend_names(&self) -> Vec<String> {
        self.inv.backends.iter().map(|b| b.name.clone()).collect()
    }
    fn backend(&self, b: usize, action: BackendAction) -> Result<()> {
        let be = self
            .inv
            .backends
            .get(b)
            .ok_or_else(|| anyhow!("the inventory has no backend #{}", b + 1))?;
        match action {
            BackendAction::Kill => optional(&be.kill, "kill"),
            BackendAction::Start => optional(&be.start, "start"),
            BackendAction::Hang => optional(&be.hang, "hang"),
            BackendAction::Fail => optional(&be.fail, "fail"),
            BackendAction::Ok => optional(&be.ok, "ok"),
        }
    }
    fn config_toml(&self, _variant: u32) -> Option<String> {
        self.inv
            .config_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
    }
    fn link(&self, i: usize, up: bool) -> Result<()> {
        let n = &self.inv.nodes[i];
        if up {
            optional(&n.link_up, "link_up")
        } else {
            optional(&n.link_down, "link_down")
        }
    }
    fn hog_start(&self, _procs: usize, _limit: Duration) -> Result<()> {
        bail!("cpu-hog runs on the local test bed only (it measures this machine's CPU)")
    }
    fn hog_stop(&self) -> Result<CpuUse> {
        bail!("no cpu hog on remote hosts")
    }
}

/// `http://HOST[:PORT][/...]` -> `HOST:PORT`.
fn target_of(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("vip_url must start with http:// (got {url:?})"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    if host.is_empty() {
        bail!("vip_url {url:?} has no host");
    }
    Ok(if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    })
}

pub async fn run(args: RemoteArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.inventory)
        .with_context(|| format!("reading {}", args.inventory.display()))?;
    let inv: Inventory =
        toml::from_str(&text).with_context(|| format!("parsing {}", args.inventory.display()))?;
    if inv.nodes.is_empty() {
        bail!("the inventory lists no [[node]]");
    }
    let names = scenarios::select(&args.load.scenario, args.load.short, args.load.repeat)?;
    let checks: Option<Vec<String>> = inv.nodes.iter().map(|n| n.vip_check.clone()).collect();
    let ops = RemoteOps {
        target: target_of(&inv.vip_url)?,
        inv,
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping after this step (Ctrl-C again to force)");
            flag.store(true, Ordering::SeqCst);
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    let settings = Settings {
        rate: args.load.rate,
        users: args.load.users,
        timeout: Duration::from_millis(args.load.timeout_ms),
        keep_alive: args.load.keep_alive,
        strict: false,
        // Remote checks go over ssh: sample no faster than every 100 ms.
        poll_interval: Duration::from_millis(args.load.poll_ms.max(100)),
        dense_poll_interval: Duration::from_millis(args.load.poll_ms.max(100)),
        ready_limit: Duration::from_secs(args.load.ready_secs),
        interrupted: interrupted.clone(),
        noop: false,
        hog: Duration::from_secs(args.load.hog_secs),
        hog_procs: args.load.hog_procs,
        under_hog: args.load.under_hog,
        // Each host has its own CLOCK_MONOTONIC: the nodes' steps do not line up.
        same_clock: false,
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    for name in &names {
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        let holders: Observer<HolderSample> = match checks.clone() {
            Some(commands) => Ok(Box::new(CommandProbe { commands })),
            None => Err("no vip_check command on every node of the inventory".into()),
        };
        let wire: Observer<WireSample> = Err("remote runs have no wire probe".into());
        let outcome = scenarios::run(name, &ops, holders, wire, &settings).await;
        report::print_outcome(&outcome);
        outcomes.push(outcome);
    }
    report::print_summary(&outcomes);
    crate::checks::convergence::print_times(&outcomes);
    if let Some(path) = &args.load.report {
        let settings = json!({
            "inventory": args.inventory, "rate": args.load.rate, "users": args.load.users,
            "timeout_ms": args.load.timeout_ms, "keep_alive": args.load.keep_alive,
        });
        report::write_json(path, "remote", &outcomes, settings)?;
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    if failed > 0 || interrupted.load(Ordering::SeqCst) {
        bail!("{failed} of {} scenario(s) failed", outcomes.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_inventory_parses() {
        let inv: Inventory =
            toml::from_str(include_str!("../examples/hosts.toml")).expect("example parses");
        assert_eq!(inv.nodes.len(), 3);
        assert!(inv.nodes.iter().all(|n| n.vip_check.is_some()));
        assert_eq!(inv.backends.len(), 2);
        assert_eq!(target_of(&inv.vip_url).expect("url"), "10.0.0.100:80");
    }

    #[test]
    fn testbed_inventory_parses() {
        let inv: Inventory = toml::from_str(include_str!("../examples/testbed-inventory.toml"))
            .expect("testbed inventory parses");
        assert_eq!(inv.nodes.len(), 3);
        assert_eq!(target_of(&inv.vip_url).expect("url"), "10.77.60.100:80");
    }

    #[test]
    fn vip_url_forms() {
        assert_eq!(
            target_of("http://10.0.0.1:8080/x").expect("url"),
            "10.0.0.1:8080"
        );
        assert!(target_of("https://10.0.0.1/").is_err());
        assert!(target_of("http:///").is_err());
    }
}
