//! `fulcrum`: one binary for the node, the config checker and the admin client.
//!
//! Layout of this crate:
//! - `cli`        — the command line (clap).
//! - `run`        — process lifecycle: runtime, logging, signals, graceful shutdown.
//! - `app`        — the running node: config application, listeners, health.
//! - `dataplane`, `snapshot`, `pool`, `router`, `balance`, `backend_state` — what a
//!   request needs, compiled per config version.
//! - `listener`, `proxy` — accepting connections and forwarding requests.
//! - `affinity`   — session stickiness.
//! - `health`     — active checks.
//! - `admin`, `metrics` — the operator's view; `ctl` is its client.

mod admin;
mod affinity;
mod app;
mod backend_state;
mod balance;
mod cli;
mod ctl;
mod dataplane;
mod health;
mod listener;
mod logging;
mod metrics;
mod pool;
mod proxy;
mod router;
mod run;
mod snapshot;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run { config, threads } => run::run(&config, threads),
        cli::Command::Check { config } => check(&config),
        cli::Command::Ctl(args) => ctl::main(args),
    }
}

/// `fulcrum check`: print the effective config or every error, exit 1 on errors.
fn check(path: &std::path::Path) -> ExitCode {
    match fulcrum_config::load(path) {
        Ok(config) => {
            println!("{}: OK", path.display());
            println!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}
