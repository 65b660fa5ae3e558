//! The command line: `run`, `check`, `ctl` (and `demo` once the cluster exists).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    /// Show the node's status.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Validate and apply a config file (node-local sections are ignored).
    Apply { file: PathBuf },
    /// Stop sending new sessions to a backend.
    Drain { pool: String, addr: String },
    /// Put a drained backend back in service.
    Undrain { pool: String, addr: String },
    /// List cluster members.
    Members,
}
