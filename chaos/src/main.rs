//! fulcrum-chaos: chaos scenarios and the benchmark driver.
//!
//! `main` only parses the command line and dispatches; each subcommand lives in its own
//! module: `bench`, `local` (chaos on a namespace test bed), `remote` (chaos against an
//! inventory of real hosts) and the hidden `backend` used inside the test bed.

mod backend;
mod bench;
mod chain;
mod checks;
mod cli;
mod cluster;
mod config_variants;
mod converge;
mod faults;
mod hog;
mod host_stalls;
mod httpc;

mod local;
mod ops;
mod poller;
mod remote;
mod report;
mod scenarios;
mod squat;
mod status_poller;
mod testbed;
mod vip_poller;
mod wire_probe;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "fulcrum-chaos",
    version,
    about = "Chaos suite and benchmark driver for fulcrum"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Proxy throughput (HTTP, HTTPS) and TLS handshake cost: fulcrum against HAProxy and nginx.
    Bench(bench::BenchArgs),
    /// Chaos scenarios on a three-node cluster built in network namespaces on this machine.
    Local(cli::LocalArgs),
    /// Chaos scenarios against real hosts described by an inventory file.
    Remote(cli::RemoteArgs),
    /// A tiny HTTP backend for the test bed (used internally).
    #[command(hide = true)]
    Backend(backend::BackendArgs),
    /// A busy loop for the cpu-hog scenario (used internally).
    #[command(hide = true)]
    Hog {
        /// Spin this long, then exit.
        #[arg(long)]
        secs: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args).await,
        Command::Local(args) => local::run(args).await,
        Command::Remote(args) => remote::run(args).await,
        Command::Backend(args) => backend::run(args).await,
        Command::Hog { secs } => {
            hog::busy(secs);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
