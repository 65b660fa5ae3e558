//! HTTP/2 clients (TLS with ALPN h2) served without hyper, over the same request core
//! and the same pooled backend connections as the hand-written HTTP/1.1 path.
//!
//! hyper served these before, at about 1.6x HAProxy's CPU per request (issue 24):
//! a task per stream whose large future was moved into the heap on every request, a
//! header map rebuilt and rewritten for the backend, hyper's HTTP/1.1 client with a
//! task and a channel per backend connection, and one TLS record and one system call
//! per frame written. Here one task serves the whole connection:
//!
//! - the h2 codec (the `h2` crate) decodes frames and HPACK; the streams it hands out
//!   are polled together in the connection's task (`FuturesUnordered`), never spawned;
//! - each stream asks the request core (`crate::request`: target checks, route, backend
//!   choice with affinity, retry and ejection decisions, accounting) exactly what the
//!   HTTP/1.1 path asks, and talks HTTP/1.1 to the backend over a pooled raw
//!   connection (`upstream::BackendConn`): the head is written straight from the h2
//!   header block (`encode`), the response head parsed in place (`exchange`);
//! - frames written while the streams that are ready run go out together: writes are
//!   gathered (`Coalesce`) and reach TLS and the socket once per flush of the codec.
//!
//! Served only where nothing needs hyper: a listener whose routes lead to a pool that
//! speaks TLS to its backends keeps hyper, and its pooled TLS client, for HTTP/2
//! (`eligible`). Should such a pool appear on a connection that started here (a
//! config change), its requests still go through, each over a TLS connection of its
//! own (`backend`). Trailers cross in both directions (`trailers`), informational
//! heads (`100 Continue`, `103 Early Hints`) are relayed, and `CONNECT` is answered
//! 404 (no route leads to a tunnel).
//! Idle connections close after the listener's idle timeout (`conn_watch`), and
//! shutdown lets the streams in progress finish (GOAWAY).

mod backend;
mod coalesce;
mod encode;
mod exchange;
mod stream;
mod trailers;

use crate::conn_io::{ActivityIo, OpenConnection};
use crate::conn_watch::{ConnActivity, Verdict, Watchdog};
use crate::dataplane::DataPlane;
use crate::h2_flood::FloodGuard;
use crate::request::conn::ConnInfo;
use crate::snapshot::Snapshot;
use coalesce::Coalesce;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// Streams one connection may have open at once (hyper's setting before).
const MAX_STREAMS: u32 = 256;
/// Streams whose frames are gathered at most before the codec gets its turn.
const BATCH: usize = 16;
/// Receive windows: a stream may send this much body before it must wait for us.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 2 * 1024 * 1024;

/// Limits of the listener a connection came in on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
}

/// Whether HTTP/2 connections of `listener` can be served here: every pool its routes
/// lead to talks plain HTTP/1.1 to its backends.
pub(crate) fn eligible(snapshot: &Snapshot, listener: &str) -> bool {
    let Some(table) = snapshot.routes.get(listener) else {
        return true;
    };
    table.pool_names().all(|name| {
        snapshot
            .pools
            .get(name)
            .is_none_or(|p| !p.upstream.needs_client())
    })
}

/// What every stream of one connection shares.
pub(super) struct Shared {
    pub dp: Arc<DataPlane>,
    pub conn: Arc<ConnInfo>,
}

/// Serves one HTTP/2 connection (after the TLS handshake chose h2) until the client
/// leaves, it idles out, or `stop` fires and its streams are done.
pub(crate) async fn serve<S>(
    stream: S,
    conn: Arc<ConnInfo>,
    dp: Arc<DataPlane>,
    stop: CancellationToken,
    limits: Limits,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _open = OpenConnection::count(&dp.metrics.client_connections);
    let activity = Arc::new(ConnActivity::default());
    // The flood guard charges the client's control frames (see `h2_flood`).
    let io = Coalesce::new(FloodGuard::new(ActivityIo::new(stream, activity.clone())));
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_pending_accept_reset_streams(64)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    // Boxed: the handshake's state is freed once it is done, not kept in this future.
    let handshake = Box::pin(tokio::time::timeout(
        limits.header_timeout,
        builder.handshake(io),
    ))
    .await;
    let mut connection = match handshake {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(client = %conn.client, error = %e, "HTTP/2 preface failed");
            return;
        }
        Err(_) => {
            tracing::debug!(client = %conn.client, "HTTP/2 preface timed out");
            return;
        }
    };
    let shared = Shared { dp, conn };
    let mut streams = FuturesUnordered::new();
    let mut watchdog = Watchdog::new(limits.idle_timeout, limits.header_timeout);
    let tick = watchdog.period();
    let mut ticker = tokio::time::interval(tick);
    let mut shutting_down = false;
    // Streams that finished one after another since the codec was last polled.
    let mut in_a_row = 0;
    loop {
        let stream_done = tokio::select! {
            // Streams first: the frames of every stream that is ready are written
            // before the codec flushes them, together. But at most `BATCH` in a row:
            // the codec writes and reads only while `accept` is polled, and with many
            // streams finishing one after another every answer would wait for them.
            biased;
            Some(()) = streams.next(), if !streams.is_empty() && in_a_row < BATCH => {
                activity.request_answered();
                true
            }
            accepted = connection.accept() => match accepted {
                Some(Ok((req, respond))) => {
                    activity.request_started(true);
                    streams.push(stream::serve(&shared, req, respond));
                    false
                }
                Some(Err(e)) => {
                    tracing::debug!(client = %shared.conn.client, error = %e, "HTTP/2 connection error");
                    break;
                }
                None => break,
            },
            _ = stop.cancelled(), if !shutting_down => {
                shutting_down = true;
                connection.graceful_shutdown();
                false
            }
            _ = ticker.tick(), if !shutting_down => {
                match watchdog.tick(&activity, tick) {
                    Verdict::Keep | Verdict::SlowHead => {}
                    Verdict::Idle => {
                        tracing::debug!(client = %shared.conn.client, "closing idle HTTP/2 connection");
                        shutting_down = true;
                        connection.graceful_shutdown();
                    }
                }
                false
            }
            // The codec had its turn and had nothing new: back to the streams.
            () = std::future::ready(()), if in_a_row >= BATCH => false,
        };
        in_a_row = match stream_done {
            true => in_a_row + 1,
            false => 0,
        };
    }
}
