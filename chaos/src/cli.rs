//! Command-line options of `fulcrum-chaos local` and `fulcrum-chaos remote`.

use clap::Args;
use std::path::PathBuf;

/// Load shape and sampling, shared by `local` and `remote`.
#[derive(Debug, Clone, Args)]
pub struct LoadOpts {
    /// Scenarios to run (comma-separated or repeated): kill-leader, kill-follower,
    /// freeze-leader, partition-leader, netem, redis-down, backend-kill, backend-hang,
    /// backend-500, rolling-restart, config-change, crash-node-leader, cpu-hog, or `all`.
    #[arg(long, value_delimiter = ',')]
    pub scenario: Vec<String>,
    /// The CI subset: kill-leader, partition-leader, freeze-leader, redis-down,
    /// rolling-restart (about two minutes).
    #[arg(long)]
    pub short: bool,
    /// Run every selected scenario this many times (fresh cluster each time); the summary
    /// adds medians and worst cases.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Requests per second (open loop).
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// Simulated users, each with its own cookie jar.
    #[arg(long, default_value_t = 50)]
    pub users: usize,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Reuse connections instead of opening one per request.
    #[arg(long)]
    pub keep_alive: bool,
    /// VIP holder sampling period in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub poll_ms: u64,
    /// Sampling period around resume events (SIGCONT), in milliseconds.
    #[arg(long, default_value_t = 2)]
    pub dense_poll_ms: u64,
    /// How long to wait for the cluster to serve before a scenario, in seconds.
    #[arg(long, default_value_t = 25)]
    pub ready_secs: u64,
    /// cpu-hog: how long the CPU stays saturated, in seconds.
    #[arg(long, default_value_t = 60)]
    pub hog_secs: u64,
    /// cpu-hog: busy processes (0: three per core).
    #[arg(long, default_value_t = 0)]
    pub hog_procs: usize,
    /// Run every scenario's fault script under a CPU hog of this many busy processes
    /// (0: none): it starts with the script and stops when the script ends. A premise
    /// check says whether it saturated the machine. For failover figures under load; not
    /// with cpu-hog, which has its own hog.
    #[arg(long, default_value_t = 0)]
    pub under_hog: usize,
    /// Write every figure as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    #[command(flatten)]
    pub load: LoadOpts,
    /// Remove leftovers of an earlier run (fch-* namespaces and links) and exit.
    #[arg(long)]
    pub cleanup: bool,
    /// The fulcrum binary (default: next to this one, else `fulcrum` on PATH).
    #[arg(long)]
    pub fulcrum: Option<PathBuf>,
    /// The /24 inside 10.77.0.0/16 the test bed uses.
    #[arg(long, default_value = "10.77.60.0/24")]
    pub subnet: String,
    /// Number of backends.
    #[arg(long, default_value_t = 2)]
    pub backends: usize,
    /// VIP fencing mode in the generated configs: fast or strict.
    #[arg(long, default_value = "fast")]
    pub fencing: String,
    /// Send the load here (HOST:PORT) instead of the VIP, e.g. one node's address.
    #[arg(long)]
    pub target: Option<String>,
    /// Build the test bed, start a cluster, print where everything is, and keep it up for
    /// this many seconds (or until Ctrl-C) instead of running scenarios.
    #[arg(long, value_name = "SECS")]
    pub hold: Option<u64>,
    /// Keep configs and logs in this directory (default: a temporary one, removed).
    #[arg(long)]
    pub keep_logs: Option<PathBuf>,
    /// Run the scenarios with faults that do nothing (no process signalled, partition
    /// rules that match no packet): every fault scenario must then FAIL on its premises.
    /// For testing the checks themselves.
    #[arg(long, hide = true)]
    pub noop_fault: bool,
}

#[derive(Debug, Args)]
pub struct RemoteArgs {
    #[command(flatten)]
    pub load: LoadOpts,
    /// The inventory (see chaos/examples/hosts.toml).
    #[arg(long)]
    pub inventory: PathBuf,
}
