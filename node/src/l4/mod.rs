//! Layer-4 (TCP) listeners: raw byte balancing for `protocol = "tcp"`.
//!
//! Per accepted connection:
//! 1. the origin: the peer, or the client carried by a PROXY header when the listener
//!    has `accept_proxy = true` (untrusted peers are closed, see `proxy_protocol`);
//! 2. the listener's pool from the *current* snapshot (a config apply that changes the
//!    pool or the idle timeout affects the next connection without rebinding);
//! 3. a backend via the pool's algorithm, connected within the pool's `connect_timeout`,
//!    with one retry elsewhere on failure (`connect.rs`);
//! 4. a PROXY v1/v2 header to the backend when the pool has `send_proxy`;
//! 5. bytes copied both ways until both sides close or `idle_timeout` passes with no
//!    traffic (`pipe.rs`).
//!
//! The backend's `connections` load figure counts the connection while it lasts (for
//! `least-connections` and `/status`). On shutdown the accept loop stops at once; open
//! connections keep running in the node's `TaskTracker` until they end or the shutdown
//! grace period runs out, like in-flight HTTP requests.

mod connect;
mod pipe;

use crate::balance::BackendLoad;
use crate::dataplane::DataPlane;
use crate::proxy_protocol;
use pipe::PipeEnd;
use prometheus_client::metrics::gauge::Gauge;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts TCP connections for listener `name` until `stop` fires.
pub async fn serve_tcp(
    socket: TcpListener,
    name: Arc<str>,
    limits: crate::conn_limit::ConnLimits,
    dp: Arc<DataPlane>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    crate::listener::accept_loop(
        socket,
        &name,
        limits,
        stop,
        tracker,
        |stream, peer, admitted| {
            let served = serve_one(stream, peer, name.clone(), dp.clone());
            crate::listener::connection_task(served, admitted)
        },
    )
    .await;
}

/// Decrements a gauge or counter when dropped, however the connection ends.
struct Held<F: Fn()>(F);

impl<F: Fn()> Drop for Held<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

fn hold_gauge(g: &Gauge) -> Held<impl Fn()> {
    g.inc();
    let g = g.clone();
    Held(move || {
        g.dec();
    })
}

/// Counts the connection in the backend's load figures while it lasts.
fn hold_connection(load: &Arc<BackendLoad>) -> Held<impl Fn()> {
    load.connections.fetch_add(1, Ordering::Relaxed);
    let load = load.clone();
    Held(move || {
        load.connections.fetch_sub(1, Ordering::Relaxed);
    })
}

async fn serve_one(mut stream: TcpStream, peer: SocketAddr, name: Arc<str>, dp: Arc<DataPlane>) {
    let _open = hold_gauge(&dp.metrics.client_connections);
    let snapshot = dp.snapshot();
    let Some(listener) = snapshot.config.listener.iter().find(|l| *l.name == *name) else {
        return;
    };
    let origin = match proxy_protocol::origin_of(Some(listener), &mut stream, peer).await {
        Ok(origin) => origin,
        Err(e) => {
            tracing::debug!(listener = %name, error = %e, "connection refused");
            return;
        }
    };
    let pool_name = listener.pool.as_deref().unwrap_or_default();
    let (Some(pool), Some(pool_config)) = (
        snapshot.pools.get(pool_name),
        snapshot.config.pool.iter().find(|p| p.name == pool_name),
    ) else {
        tracing::warn!(listener = %name, pool = pool_name, "listener has no pool; closing");
        return;
    };
    let idle_timeout = listener.idle_timeout;
    let send_proxy = pool_config.send_proxy;
    let upstream = match connect::connect(
        pool,
        pool_config.connect_timeout,
        origin.client,
        &dp.metrics,
    )
    .await
    {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(listener = %name, client = %origin.client, error = %e, "no backend; closing");
            return;
        }
    };
    let backend = &pool.backends[upstream.backend];
    let _counted = hold_connection(&backend.state.load);
    let backend_addr = backend.addr;
    let mut upstream = upstream.stream;
    if let Some(version) = send_proxy {
        // The destination the client meant: from its own PROXY header, else our socket.
        let destination = origin
            .destination
            .or_else(|| stream.local_addr().ok())
            .unwrap_or(peer);
        let header = proxy_protocol::encode(version, origin.client, destination);
        if let Err(e) = upstream.write_all(&header).await {
            tracing::debug!(backend = %backend_addr, error = %e, "sending the PROXY header failed");
            return;
        }
    }
    // A long-lived connection must not keep an old config version alive: what it still
    // needs (the backend's load counter) is held by its own `Arc`.
    drop(snapshot);
    let end = pipe::pipe(stream, upstream, idle_timeout).await;
    match end {
        PipeEnd::Closed { up, down } => {
            tracing::debug!(listener = %name, client = %origin.client, backend = %backend_addr, up, down, "L4 connection closed")
        }
        PipeEnd::Idle => {
            tracing::debug!(listener = %name, client = %origin.client, backend = %backend_addr, "L4 connection idle; closed")
        }
        PipeEnd::Error(e) => {
            tracing::debug!(listener = %name, client = %origin.client, backend = %backend_addr, error = %e, "L4 connection ended with error")
        }
    }
}
