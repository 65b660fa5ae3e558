//! `fulcrum-chaos local`: build the namespace test bed, run each scenario on a fresh
//! cluster, tear everything down (also on error and Ctrl-C), report.
//!
//! The driver runs on its own thread that enters the client namespace `fch-cl` and builds a
//! tokio runtime there, so the load, the admin calls and the backend control calls all
//! start from the client's side of the bridge. Processes are started through
//! `ip netns exec`, the VIP poller reads netlink sockets opened inside each node namespace.

use crate::checks::{CpuUse, HolderSample, WireSample};
use crate::cli::LocalArgs;
use crate::cluster::{ClusterSpec, LocalCluster, BACKEND_PORT, RAFT_PORT};
use crate::faults;
use crate::hog::Hog;
use crate::ops::{BackendAction, NodeAction, Ops};
use crate::poller::Probe;
use crate::report;
use crate::scenarios::{self, Outcome, Settings};
use crate::testbed::{self, Layout, Testbed};
use crate::vip_poller::NetlinkProbe;
use crate::wire_probe::WireProbe;
use anyhow::{anyhow, bail, Context, Result};
use fulcrum_testbed::netns;
use nix::sys::signal::Signal;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub async fn run(args: LocalArgs) -> Result<()> {
    if args.cleanup {
        let removed = testbed::cleanup();
        if removed.is_empty() {
            println!("nothing to clean up");
        }
        for r in removed {
            println!("removed {r}");
        }
        return Ok(());
    }
    let names = scenarios::select(&args.load.scenario, args.load.short, args.load.repeat)?;
    let fulcrum = resolve_fulcrum(args.fulcrum.clone())?;
    for tool in ["ip", "nft", "tc", "redis-server"] {
        if netns::run("sh", &["-c", &format!("command -v {tool}")]).is_err() {
            bail!("{tool} not found: install iproute2, nftables and redis-server");
        }
    }
    if args.fencing != "fast" && args.fencing != "strict" {
        bail!("--fencing is fast or strict");
    }
    let layout = Layout::new(&args.subnet, 3, args.backends)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping the load and tearing the test bed down (Ctrl-C again to force)");
            flag.store(true, Ordering::SeqCst);
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nforced exit: run `fulcrum-chaos local --cleanup` to remove what is left");
            std::process::exit(130);
        }
    });
    let driver = std::thread::Builder::new()
        .name("chaos-driver".into())
        .spawn(move || drive(args, names, layout, fulcrum, interrupted))
        .context("spawning the driver")?;
    let outcome = tokio::task::spawn_blocking(move || driver.join())
        .await
        .context("waiting for the driver")?
        .map_err(|_| anyhow!("the chaos driver panicked (test bed torn down)"))?;
    outcome
}

fn resolve_fulcrum(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return std::fs::canonicalize(&p)
            .with_context(|| format!("fulcrum binary {}", p.display()));
    }
    let exe = std::env::current_exe().context("locating fulcrum-chaos")?;
    if let Some(sibling) = exe.parent().map(|d| d.join("fulcrum")) {
        if sibling.exists() {
            return Ok(sibling);
        }
    }
    let found = netns::run("sh", &["-c", "command -v fulcrum"])
        .context("no fulcrum binary next to fulcrum-chaos nor on PATH; pass --fulcrum")?;
    Ok(PathBuf::from(found.trim()))
}

fn drive(
    args: LocalArgs,
    names: Vec<String>,
    layout: Layout,
    fulcrum: PathBuf,
    interrupted: Arc<AtomicBool>,
) -> Result<()> {
    let temp = tempfile::Builder::new()
        .prefix("fulcrum-chaos-")
        .tempdir()
        .context("temp dir")?;
    let dir = args
        .keep_logs
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir)?;
    eprintln!(
        "building the test bed in {} (logs in {})",
        args.subnet,
        dir.display()
    );
    let bed = Testbed::build(&layout)?;
    netns::enter(Layout::CLIENT_NS)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("client runtime")?;
    let settings = Settings {
        rate: args.load.rate,
        users: args.load.users,
        timeout: Duration::from_millis(args.load.timeout_ms),
        keep_alive: args.load.keep_alive,
        strict: args.fencing == "strict",
        poll_interval: Duration::from_millis(args.load.poll_ms.max(2)),
        dense_poll_interval: Duration::from_millis(args.load.dense_poll_ms.max(1)),
        ready_limit: Duration::from_secs(args.load.ready_secs),
        interrupted: interrupted.clone(),
        noop: args.noop_fault,
        hog: Duration::from_secs(args.load.hog_secs),
        hog_procs: args.load.hog_procs,
        under_hog: args.load.under_hog,
        same_clock: true,
    };
    if args.noop_fault {
        eprintln!("--noop-fault: faults do nothing; every fault scenario must fail its premises");
    }
    if let Some(secs) = args.hold {
        return hold(&layout, &fulcrum, &dir, &args.fencing, secs, &interrupted);
    }
    let node_ns: Vec<String> = (0..layout.nodes).map(|i| layout.node_ns(i)).collect();
    let mut outcomes: Vec<Outcome> = Vec::new();
    for (run, name) in names.iter().enumerate() {
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        eprintln!("[{name}] starting a fresh cluster");
        // A directory per run: with --repeat, a scenario's second cluster must not start
        // from the first one's Raft state.
        let run_dir = dir.join(format!("{:02}-{name}", run + 1));
        let spec = ClusterSpec {
            fulcrum: fulcrum.clone(),
            dir: run_dir.clone(),
            layout: layout.clone(),
            fencing: args.fencing.clone(),
        };
        let cluster = LocalCluster::start(spec)?;
        let ops = LocalOps {
            cluster,
            target: args
                .target
                .clone()
                .unwrap_or_else(|| format!("{}:80", layout.vip())),
            noop: args.noop_fault,
            hog: Mutex::new(None),
            squatter: crate::squat::Squatter::default(),
        };
        let holders = NetlinkProbe::new(&node_ns, layout.vip())?;
        let holders: Box<dyn Probe<Sample = HolderSample>> = Box::new(holders);
        let wire = wire_probe(&layout)?;
        let outcome = rt.block_on(scenarios::run(name, &ops, Ok(holders), Ok(wire), &settings));
        report::print_outcome(&outcome);
        if args.keep_logs.is_some() {
            let path = run_dir.join("requests.jsonl");
            if let Err(e) = report::write_samples(&path, &outcome) {
                eprintln!("warning: {e:#}");
            }
        }
        drop(ops);
        reset_nodes(&layout);
        outcomes.push(outcome);
    }
    drop(rt);
    drop(bed);
    report::print_summary(&outcomes);
    crate::checks::convergence::print_times(&outcomes);
    if let Some(path) = &args.load.report {
        let settings = json!({
            "subnet": args.subnet, "rate": args.load.rate, "users": args.load.users,
            "timeout_ms": args.load.timeout_ms, "keep_alive": args.load.keep_alive,
            "poll_ms": args.load.poll_ms, "fencing": args.fencing,
            "target": args.target, "fulcrum": fulcrum,
        });
        report::write_json(path, "local", &outcomes, settings)?;
        eprintln!("report written to {}", path.display());
    }
    if args.keep_logs.is_some() {
        eprintln!("configs and logs kept in {}", dir.display());
    }
    if interrupted.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    if failed > 0 {
        bail!("{failed} of {} scenario(s) failed", outcomes.len());
    }
    Ok(())
}

/// The wire probe on the client's `eth0` (this thread is in `fch-cl`).
fn wire_probe(layout: &Layout) -> Result<Box<dyn Probe<Sample = WireSample>>> {
    let macs = (0..layout.nodes)
        .map(|i| testbed::mac_of(&layout.node_ns(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let probe = WireProbe::new("eth0", layout.probe_ip(), layout.vip(), macs)?;
    Ok(Box::new(probe))
}

/// `--hold`: a cluster to look at by hand, torn down after `secs` or Ctrl-C.
fn hold(
    layout: &Layout,
    fulcrum: &std::path::Path,
    dir: &std::path::Path,
    fencing: &str,
    secs: u64,
    interrupted: &AtomicBool,
) -> Result<()> {
    let spec = ClusterSpec {
        fulcrum: fulcrum.to_path_buf(),
        dir: dir.join("hold"),
        layout: layout.clone(),
        fencing: fencing.to_string(),
    };
    let cluster = LocalCluster::start(spec)?;
    println!(
        "cluster up for {secs} s (Ctrl-C ends it); configs and logs in {}",
        dir.join("hold").display()
    );
    println!(
        "  VIP        http://{}/  (from fch-cl: ip netns exec fch-cl curl -s http://{}/)",
        layout.vip(),
        layout.vip()
    );
    for i in 0..layout.nodes {
        println!(
            "  node n{}    {} in {}, admin {}",
            i + 1,
            layout.node_ip(i),
            layout.node_ns(i),
            cluster.spec.admin_addr(i)
        );
    }
    for b in 0..layout.backends {
        println!(
            "  backend {}  {}:{BACKEND_PORT} in {}",
            layout.backend_name(b),
            layout.backend_ip(b),
            layout.backend_ns(b)
        );
    }
    println!(
        "  redis      {}:6379 in {}",
        layout.redis_ip(),
        Layout::REDIS_NS
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline && !interrupted.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(cluster);
    Ok(())
}

/// Between scenarios: no VIP, partition, netem or downed link may outlive the cluster
/// that caused it.
fn reset_nodes(layout: &Layout) {
    let vip = format!("{}/24", layout.vip());
    for i in 0..layout.nodes {
        let ns = layout.node_ns(i);
        if let Err(e) = testbed::set_link(layout, i, true) {
            eprintln!("warning: link up of {ns}: {e:#}");
        }
        let _ = netns::run_in(&ns, "ip", &["addr", "del", &vip, "dev", "eth0"]);
        let _ = faults::nft_heal(&ns);
        let _ = faults::tc_netem(&ns, false);
    }
}

/// [`Ops`] on the local test bed.
struct LocalOps {
    cluster: LocalCluster,
    target: String,
    /// `--noop-fault`: signals reach no process, partition rules match no packet, and
    /// link, Redis and backend faults are skipped (and a hog starts no process).
    noop: bool,
    /// The running CPU hog, if any (dropping it kills its processes).
    hog: Mutex<Option<Hog>>,
    /// What occupies a port on a node (port-busy), if anything.
    squatter: crate::squat::Squatter,
}

impl LocalOps {
    fn layout(&self) -> &Layout {
        &self.cluster.spec.layout
    }

    /// Switches a chaos backend's mode through its control path.
    fn backend_mode(&self, b: usize, mode: &str) -> Result<()> {
        let addr = SocketAddr::from((self.layout().backend_ip(b), BACKEND_PORT));
        let timeout = Duration::from_secs(1);
        let mut stream = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connecting to backend {addr}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let req = format!(
            "POST /__chaos/mode?m={mode} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(req.as_bytes())?;
        let mut head = [0u8; 12];
        stream
            .read_exact(&mut head)
            .context("backend control reply")?;
        if !head.starts_with(b"HTTP/1.1 200") {
            bail!("backend refused mode {mode}");
        }
        Ok(())
    }
}

impl Ops for LocalOps {
    fn nodes(&self) -> usize {
        self.layout().nodes
    }
    fn node_name(&self, i: usize) -> String {
        format!("n{}", i + 1)
    }
    fn admin(&self, i: usize) -> String {
        self.cluster.spec.admin_addr(i)
    }
    fn target(&self) -> String {
        self.target.clone()
    }
    fn node(&self, i: usize, action: NodeAction) -> Result<()> {
        if self.noop {
            return Ok(());
        }
        let signal = match action {
            NodeAction::Kill => Signal::SIGKILL,
            NodeAction::Freeze => Signal::SIGSTOP,
            NodeAction::Resume => Signal::SIGCONT,
            NodeAction::Stop => Signal::SIGTERM,
        };
        self.cluster.signal_node(i, signal)
    }
    fn start(&self, i: usize) -> Result<()> {
        if self.noop {
            return Ok(());
        }
        self.cluster.start_node(i)
    }
    fn wait_exit(&self, i: usize, limit: Duration) -> bool {
        self.cluster.wait_node_exit(i, limit)
    }
    fn running(&self, i: usize) -> Option<bool> {
        Some(self.cluster.node_running(i))
    }
    fn partition(&self, i: usize) -> Result<()> {
        let l = self.layout();
        let peers: Vec<_> = if self.noop {
            // Rules that match nothing: the probe address never speaks Raft.
            vec![l.probe_ip()]
        } else {
            (0..l.nodes)
                .filter(|p| *p != i)
                .map(|p| l.node_ip(p))
                .collect()
        };
        faults::nft_partition(&l.node_ns(i), &peers, RAFT_PORT)
    }
    fn heal(&self, i: usize) -> Result<()> {
        faults::nft_heal(&self.layout().node_ns(i))
    }
    fn netem(&self, i: usize, on: bool) -> Result<String> {
        if self.noop {
            return Ok("no-op".into());
        }
        faults::tc_netem(&self.layout().node_ns(i), on)
    }
    fn redis(&self, up: bool) -> Result<()> {
        if self.noop {
            return Ok(());
        }
        if up {
            self.cluster.start_redis()
        } else {
            self.cluster.kill_redis()
        }
    }
    fn backend_names(&self) -> Vec<String> {
        (0..self.layout().backends)
            .map(|b| self.layout().backend_name(b))
            .collect()
    }
    fn backend(&self, b: usize, action: BackendAction) -> Result<()> {
        if self.noop {
            return Ok(());
        }
        match action {
            BackendAction::Kill => self.cluster.kill_backend(b),
            BackendAction::Start => self.cluster.start_backend(b),
            BackendAction::Hang => self.backend_mode(b, "hang"),
            BackendAction::Fail => self.backend_mode(b, "500"),
            BackendAction::Ok => self.backend_mode(b, "ok"),
        }
    }
    fn config_toml(&self, variant: u32) -> Option<String> {
        Some(self.cluster.spec.node_toml(0, variant))
    }
    fn squat(&self, i: usize, port: u16, on: bool) -> Result<()> {
        if self.noop {
            return Ok(());
        }
        if on {
            let l = self.layout();
            self.squatter.start(&l.node_ns(i), l.node_ip(i), port)
        } else {
            self.squatter.stop()
        }
    }
    fn link(&self, i: usize, up: bool) -> Result<()> {
        if self.noop {
            return Ok(());
        }
        testbed::set_link(self.layout(), i, up)
    }
    fn hog_start(&self, procs: usize, limit: Duration) -> Result<()> {
        let hog = if self.noop {
            Hog::watch()?
        } else {
            Hog::start(procs, limit)?
        };
        let mut slot = self.hog.lock().map_err(|_| anyhow!("hog lock poisoned"))?;
        *slot = Some(hog);
        Ok(())
    }
    fn hog_stop(&self) -> Result<CpuUse> {
        let hog = self
            .hog
            .lock()
            .map_err(|_| anyhow!("hog lock poisoned"))?
            .take();
        hog.ok_or_else(|| anyhow!("no cpu hog running"))?.stop()
    }
}
