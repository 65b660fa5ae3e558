//! The end of a proxied request: release the backend and write the access log line.
//!
//! `RequestDone` rides inside the response body (`TrackedBody`) and runs when that body
//! is dropped — after the last byte reached the client, or when the client went away —
//! so in-flight counts stay exact whatever happens to the stream.

use super::body::OnFinish;
use crate::dataplane::DataPlane;
use crate::pool::PoolRuntime;
use http::Method;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub struct RequestDone {
    dp: Arc<DataPlane>,
    pool: Arc<PoolRuntime>,
    index: usize,
    client: SocketAddr,
    method: Method,
    path: String,
    pub started: Instant,
    pub status: u16,
}

impl RequestDone {
    pub fn new(
        dp: Arc<DataPlane>,
        pool: Arc<PoolRuntime>,
        index: usize,
        client: SocketAddr,
        method: Method,
        path: String,
        started: Instant,
    ) -> Self {
        RequestDone {
            dp,
            pool,
            index,
            client,
            method,
            path,
            started,
            status: 0,
        }
    }
}

impl OnFinish for RequestDone {
    fn finish(&mut self, bytes: u64) {
        let backend = &self.pool.backends[self.index];
        backend.state.load.end_request();
        if self.dp.access_log_enabled() {
            tracing::info!(
                target: "access",
                client = %self.client,
                method = %self.method,
                path = %self.path,
                pool = %self.pool.name,
                backend = %backend.id,
                status = self.status,
                bytes,
                duration_ms = format_args!("{:.3}", self.started.elapsed().as_secs_f64() * 1000.0),
            );
        }
    }
}
