//! The command line: `run`, `check`, `ctl`, `demo`, `completions`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "fulcrum",
    version,
    about = "A highly available load-balancer cluster"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Validate a config file: print the effective config, or the errors (exit 1).
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Talk to a node's admin API.
    Ctl(CtlArgs),
    /// A local three-node cluster on loopback with demo backends, for a first look.
    Demo,
    /// Print a shell completion script (e.g. `fulcrum completions bash > /etc/bash_completion.d/fulcrum`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Admin address of any node, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin: String,
    /// File holding the admin bearer token (or set FULCRUM_ADMIN_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Show the cluster: every member's role, config version, apply error, VIP, backends.
    Status {
        /// The asked node's `/status` document with every member's under `nodes`.
        #[arg(long)]
        json: bool,
    },
    /// Validate and apply a config file (node-local sections are ignored), then wait
    /// until every voter runs it; exits 1 naming the nodes that do not.
    Apply {
        file: PathBuf,
        /// Return once the change is committed, without waiting for the nodes.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for every voter to run the new version.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Stop sending new sessions to a backend.
    Drain { pool: String, addr: String },
    /// Put a drained backend back in service.
    Undrain { pool: String, addr: String },
    /// Take the addressed node out: withdraw its BGP prefixes, move its `[[vip]]` addresses
    /// away, leave it out of DNS answers (it keeps serving what arrives).
    DrainNode,
    /// Undo `drain-node`.
    UndrainNode,
    /// List cluster members.
    Members,
    /// Blue-green / canary: move a split route's traffic to POOL step by step through
    /// Raft; rolls back to the starting weights when the pool's error rate or p99 over a
    /// step exceeds a bound. `--abort` rolls back a running shift now.
    Shift(ShiftArgs),
}

#[derive(Debug, Args)]
pub struct ShiftArgs {
    /// The split route's `name`.
    pub route: String,
    /// The pool whose share moves (not needed with --abort).
    #[arg(required_unless_present = "abort")]
    pub pool: Option<String>,
    /// Its share at the end, percent of the route.
    #[arg(long, default_value_t = 100)]
    pub to: u32,
    /// Percentage points per step.
    #[arg(long, default_value_t = 10)]
    pub step: u32,
    /// How long each step runs before it is judged.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub every: Duration,
    /// Roll back when the pool's 5xx responses over a step exceed this fraction (0.05 = 5%).
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    /// Roll back when the pool's p99 latency over a step exceeds this (e.g. 500ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_p99: Option<Duration>,
    /// Stop the running shift: back to the weights it started from.
    #[arg(long)]
    pub abort: bool,
    /// Follow the shift, one line per step, until it ends; exit 1 unless it completed.
    #[arg(long)]
    pub watch: bool,
}
