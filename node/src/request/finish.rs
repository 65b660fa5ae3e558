//! The end of a proxied request: release the backend, return its connection to the
//! pool when the response was read whole, and write the access log line.
//!
//! `RequestDone` rides inside the response body (`TrackedBody`) and runs when that body
//! is dropped — after the last byte reached the client, or when the client went away —
//! so in-flight counts stay exact whatever happens to the stream. The codecs that relay
//! a response themselves (HTTP/1.1 in `h1`, HTTP/2 in `http2`) hold it in a `Pending`,
//! which runs it when the request ends or its task is dropped.

use crate::dataplane::DataPlane;
use crate::pool::PoolRuntime;
use crate::upstream::Lease;
use http::Method;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Called once when a response body is done; receives the byte count and whether the
/// body was read to its end (`false`: cut short by an error or a departed client).
pub trait OnFinish: Send + Sync + 'static {
    fn finish(&mut self, bytes: u64, complete: bool);
}

/// What the access log line says about the request itself.
pub struct RequestLog {
    pub method: Method,
    /// Empty when the access log is off (no copy made).
    pub path: String,
}

/// The bookkeeping that ends a proxied request, run once by `finish`.
pub struct RequestDone {
    dp: Arc<DataPlane>,
    pool: Arc<PoolRuntime>,
    index: usize,
    client: SocketAddr,
    log: RequestLog,
    pub started: Instant,
    pub status: u16,
    /// The backend connection the response is read from.
    lease: Option<Lease>,
}

impl RequestDone {
    pub fn new(
        dp: Arc<DataPlane>,
        pool: Arc<PoolRuntime>,
        index: usize,
        client: SocketAddr,
        log: RequestLog,
        started: Instant,
        lease: Option<Lease>,
    ) -> Self {
        RequestDone {
            dp,
            pool,
            index,
            client,
            log,
            started,
            status: 0,
            lease,
        }
    }
}

impl OnFinish for RequestDone {
    fn finish(&mut self, bytes: u64, complete: bool) {
        let backend = &self.pool.backends[self.index];
        backend.state.load.end_request();
        if self.pool.outlier.is_some() && self.status >= 100 {
            crate::request::outlier::observe_status(&self.pool, self.index, self.status);
        }
        // A response cut short leaves its connection mid-message: dropping the lease
        // closes it. A complete one can carry the next request.
        if let (true, Some(lease)) = (complete, self.lease.take()) {
            lease.release();
        }
        if self.dp.access_log_enabled() {
            tracing::info!(
                target: "access",
                client = %self.client,
                method = %self.log.method,
                path = %self.log.path,
                pool = %self.pool.name,
                backend = %backend.id,
                status = self.status,
                bytes,
                duration_ms = format_args!("{:.3}", self.started.elapsed().as_secs_f64() * 1000.0),
            );
        }
    }
}

/// A request in flight: ends its bookkeeping (in-flight count, access log) exactly
/// once, also when the connection task is dropped mid-response.
pub(crate) struct Pending {
    done: Option<RequestDone>,
    /// Response body bytes relayed so far.
    pub(crate) bytes: u64,
    complete: bool,
}

impl Pending {
    pub(crate) fn new(done: RequestDone) -> Self {
        Pending {
            done: Some(done),
            bytes: 0,
            complete: false,
        }
    }

    pub(crate) fn started(&self) -> Instant {
        self.done.as_ref().map_or_else(Instant::now, |d| d.started)
    }

    pub(crate) fn set_status(&mut self, status: u16) {
        if let Some(done) = &mut self.done {
            done.status = status;
        }
    }

    pub(crate) fn complete(&mut self) {
        self.complete = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut done) = self.done.take() {
            done.finish(self.bytes, self.complete);
        }
    }
}
