//! fulcrum-chaos: chaos scenarios and the benchmark driver.
//!
//! `main` only parses the command line and dispatches; each subcommand lives in its own
//! module (`bench` today).

mod bench;

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
    /// Proxy throughput: fulcrum against HAProxy and nginx, measured with wrk.
    Bench(bench::BenchArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
