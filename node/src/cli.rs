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
}
