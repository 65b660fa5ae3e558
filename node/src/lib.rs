//! The fulcrum node as a library: `fulcrum run` and the other commands of the binary are thin
//! calls into it (`main.rs` only parses the command line).
//!
//! Entry points:
//! - [`run`]: runs a node from a loaded config until a stop future resolves, then stops it
//!   gracefully (hand-off, drain); [`run_process`] is `fulcrum run` around it (runtimes,
//!   logging, signals).
//! - [`check`]: `fulcrum check`; [`load`]: the config loading both share.
//! - [`ctl`], [`demo`]: `fulcrum ctl`, `fulcrum demo`.
//!
//! Modules (every one; a request goes serve -> request -> plane, control beside them):
//! - `cli`        — the command line (clap).
//! - `load`       — reading, parsing and checking a config file.
//! - `run`        — process lifecycle: runtime, logging, signals, graceful shutdown;
//!   `huge_pages` — the heap in small pages (THP off for the process).
//! - `app`        — the running node: starts everything, takes operator changes.
//! - serve: `listener` (accept, limits, TLS, which codec), `conn_io` (a client
//!   connection's counted byte stream), `conn_limit` (connection limits per listener),
//!   `conn_watch` and `listener_sweep` (idle and slow-head accounting, one sweep per
//!   listener), `h1` (the hand-written HTTP/1.1 path), `http2` (HTTP/2 clients without
//!   hyper), `proxy` (hyper's, for everything else), `linger` (lingering close for
//!   hyper's connections), `h2_flood` (the HTTP/2 control-frame flood guard), `l4` (TCP
//!   listeners), `proxy_protocol`, `tls` (TLS termination), `upstream` (backend
//!   connections, their pools and backend TLS), `bufpool` (per-thread free lists of
//!   connection buffers: an idle connection holds none).
//! - request: `request` — the transport-neutral core every HTTP path calls; `affinity`
//!   — session stickiness.
//! - plane: `dataplane`, `snapshot`, `pool`, `router`, `split`, `balance`,
//!   `backend_state`, `discovered` (discovered backends merged into each snapshot),
//!   `latency` (per-backend latency buckets), `pool_load` and `pool_figures` (a pool's
//!   load and running totals) — what a request needs, compiled per config version.
//! - `health`, `health_grpc` — active checks by HTTP/TCP and by the gRPC health protocol
//!   (their verdicts go to `control`'s reporter -> Raft).
//! - `admin`, `metrics`, `logging` — the operator's view, with the metric families of
//!   `grpc_metrics`, `pool_metrics`, `discovery_metrics` and `bgp_metrics`; `ctl` is its
//!   client; `demo` a local cluster for a first look.
//! - `dns`        — the authoritative DNS listener answering with what is healthy now.
//! - `control`    — the control side: Raft (`control::cluster`), committed state -> node
//!   (`follow`), applying a config (`apply`), the control thread, VIP guard and fence;
//!   `bgp_inputs` — what its BGP announcer is told about this node.

mod admin;
mod affinity;
mod app;
mod backend_state;
mod balance;
mod bgp_inputs; // issue 18: what the BGP announcer is told about this node
mod bgp_metrics; // issue 18: BGP mode's gauges
mod bufpool; // per-thread free lists of connection buffers (issue 16)
pub mod cli;
mod conn_io; // a client connection's counted byte stream, shared by every codec
mod conn_limit; // issue 17: max_connections and max_connections_per_ip of a listener
mod conn_watch;
mod control; // control thread, VIP guard and fence, health reporter
mod ctl;
mod dataplane;
mod demo;
mod discovered; // issue 25: discovered backends merged into each snapshot
mod discovery_metrics; // issue 25: discovery lookups, members, failing sources
mod dns; // issue 25: the health-aware DNS listener
mod grpc_metrics; // issue 19: gRPC calls by grpc-status
mod grpc_watch; // issue 19: where a relayed call's grpc-status comes from
mod grpc_web; // issue 19: a gRPC-Web body's trailer frame
mod h1; // hand-written HTTP/1.1 fast path
mod h2_flood; // issue 17: closes HTTP/2 clients that flood control frames
mod health;
mod health_grpc; // issue 19: health checks by the gRPC health protocol
mod http2; // issue 24: HTTP/2 clients on the request core, without hyper
mod huge_pages; // issue 16: the heap in small pages (THP off for the process)
mod idle_park; // issue 16: idle HTTP/1.1 connections parked without a task
mod l4; // issue 7: TCP listeners
mod latency; // per-backend latency buckets beside the pool histogram
mod linger; // lingering close for connections hyper serves
mod listener;
mod listener_sweep; // issue 16: one idle/slow-head watch per listener, not per connection
mod load;
mod logging;
mod metrics;
mod pool;
mod pool_figures; // issue 25: a pool's running totals, for judging a shift's step
mod pool_load; // issue 25: a pool's in flight, queued and saturation
mod pool_metrics; // issue 25: the pool gauges and the scale hook's calls
mod proxy;
mod proxy_protocol; // issue 7: PROXY protocol v1/v2
mod request; // the request core both HTTP paths share (issue 14)
mod router;
mod run;
mod snapshot;
mod split; // issue 25: split routes' pools, weights and the weighted draw
mod tls; // issue 7: HTTPS listeners and backend TLS
mod upstream;

pub use load::{load, LoadError, Loaded};
pub use run::{run, run_process, RunError};

use std::process::ExitCode;

/// `fulcrum ctl`: one admin call.
pub fn ctl(args: cli::CtlArgs) -> ExitCode {
    ctl::main(args)
}

/// `fulcrum demo`: a local three-node cluster on loopback.
pub fn demo() -> ExitCode {
    demo::main()
}

/// `fulcrum check`: print the effective config or every error, exit 1 on errors.
pub fn check(path: &std::path::Path) -> ExitCode {
    let loaded = match load(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Certificates and keys are files too: refuse what apply would refuse.
    if let Err(e) = tls::check_config(&loaded.config) {
        eprintln!("{}: {e}", loaded.origin);
        return ExitCode::FAILURE;
    }
    println!("{}: OK", loaded.origin);
    println!("{}", loaded.config.summary());
    ExitCode::SUCCESS
}
