//! `fulcrum-chaos backend`: the test bed's HTTP backend ([`fulcrum_testbed::backend`]) run
//! as a process of its own in a backend namespace.
//!
//! Every response carries `x-backend: NAME`. A request without a `JSESSIONID` cookie gets
//! `Set-Cookie: JSESSIONID=<random>` (the application session fulcrum learns for affinity).
//! Modes: `ok` (200), `hang` (accept and never answer), `500` (every answer is a 500,
//! health checks included). `POST /__chaos/mode?m=ok|hang|500` switches the mode at run
//! time, whatever the current mode, so faults need no restart.

use anyhow::{Context, Result};
use clap::Args;
use fulcrum_testbed::backend::{Mode, Options, TestBackend};
use std::net::SocketAddr;

#[derive(Debug, Args)]
pub struct BackendArgs {
    /// Name put in the `x-backend` header.
    #[arg(long)]
    name: String,
    /// Listen address.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: String,
    /// Initial mode: ok, hang or 500.
    #[arg(long, default_value = "ok")]
    mode: String,
}

/// Runs the backend until killed.
pub async fn run(args: BackendArgs) -> Result<()> {
    let options = Options {
        mode: Mode::parse(&args.mode)?,
        hand_out_sessions: true,
        line_body: true,
    };
    let addr: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("listen address {:?}", args.listen))?;
    let backend = TestBackend::serve(addr, &args.name, options).await?;
    backend.run_forever().await;
    Ok(())
}
