//! `fulcrum`: one binary for the node, the config checker and the admin client.
//!
//! Layout of this crate:
//! - `cli`        — the command line (clap).
//! - `run`        — process lifecycle: runtime, logging, signals, graceful shutdown.
//! - `app`        — the running node: config application, listeners, health.
//! - `dataplane`, `snapshot`, `pool`, `router`, `balance`, `backend_state` — what a
//!   request needs, compiled per config version.
//! - `listener`, `h1`, `proxy` — accepting connections and forwarding requests
//!   (`h1`: the hand-written HTTP/1.1 path; `proxy`: hyper's, for everything else).
//! - `affinity`   — session stickiness.
//! - `health`     — active checks; `control` — the health reporter (verdicts -> Raft).
//! - `admin`, `metrics` — the operator's view; `ctl` is its client.
//! - `control`    — the control thread: Raft, lease, VIP guard and kernel fence.

mod admin;
mod affinity;
mod app;
mod backend_state;
mod balance;
mod bufpool; // read buffers lent per thread (issue 16)
mod cli;
mod cluster;
mod conn_watch;
mod control; // control thread, VIP guard and fence, health reporter
mod ctl;
mod dataplane;
mod demo;
mod h1; // hand-written HTTP/1.1 fast path
mod health;
mod l4; // issue 7: TCP listeners
mod listener;
mod logging;
mod metrics;
mod pool;
mod proxy;
mod proxy_protocol; // issue 7: PROXY protocol v1/v2
mod router;
mod run;
mod snapshot;
mod tls; // issue 7: HTTPS listeners and backend TLS
mod upstream;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc: the proxy allocates small, short-lived buffers per request; glibc malloc
/// showed up as ~14% of CPU in a profile under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run { config, threads } => run::run(&config, threads),
        cli::Command::Check { config } => check(&config),
        cli::Command::Ctl(args) => ctl::main(args),
        cli::Command::Demo => demo::main(),
    }
}

/// `fulcrum check`: print the effective config or every error, exit 1 on errors.
fn check(path: &std::path::Path) -> ExitCode {
    let origin = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{origin}:1:1: cannot read: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match fulcrum_config::parse(&text, &origin) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    // Peer TLS files are checked the way Raft will load them, located in the file.
    if let Err(errors) = cluster::check_peer_tls(&config, &text, &origin) {
        eprintln!("{errors}");
        return ExitCode::FAILURE;
    }
    // Certificates and keys are files too: refuse what apply would refuse.
    if let Err(e) = tls::check_config(&config) {
        eprintln!("{origin}: {e}");
        return ExitCode::FAILURE;
    }
    println!("{origin}: OK");
    println!("{}", config.summary());
    ExitCode::SUCCESS
}
