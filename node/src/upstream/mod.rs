//! Keep-alive HTTP/1.1 connections from one pool to its backends.
//!
//! Each backend has its own stack of idle connections (`idle`); a request takes the
//! most recent one that is still open, or opens a new one (`connect`). The connection
//! goes back to the stack only when its response has been read to the end — the
//! `Lease` returned with every response carries it until then — so a pooled connection
//! is always free. A connection the backend closed while idle hands the request back
//! unsent (hyper's `try_send_request`), and the next connection is tried, so a stale
//! keep-alive never costs the client anything.
//!
//! This replaces a general-purpose pooled client: no URI-keyed pool map, no absolute
//! URIs to format and parse, one short lock per backend instead of one per client.
//!
//! A pool with `protocol = "h2"` speaks HTTP/2 instead (`h2`): one shared connection
//! per backend, a stream per request, nothing to lease back.

mod connect;
mod h2;
mod idle;
mod pending;
mod raw;
mod stop_sending;

use crate::request::retry::AttemptFailure;
use connect::ConnectSettings;
pub(crate) use connect::TlsSettings;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use idle::{IdleStack, Pooled};
use prometheus_client::metrics::counter::Counter;
pub use raw::BackendConn;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The sending half of one backend connection.
/// The body of a request sent over hyper's client and of the response it returns: boxed
/// and streaming, in both directions (the hyper path's `proxy::body` builds on it).
pub type ProxyBody = http_body_util::combinators::BoxBody<bytes::Bytes, BodyError>;

/// Why a `ProxyBody` failed: hyper's error, or fulcrum's own (a route timeout).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

type ProxySender = http1::SendRequest<ProxyBody>;

/// How an idle plain connection is checked before it carries a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Asked of the kernel (one `recv` with `MSG_PEEK`), for a request that cannot be
    /// sent again should the connection turn out closed (not idempotent, or its body
    /// not held): readiness can lag behind a FIN or bytes that just arrived.
    Checked,
    /// Only what the reactor has noticed, no system call, for a request that can be
    /// sent again: a connection found closed before any response byte costs a resend
    /// on a new one (`crate::request::stale`), as HAProxy and Envoy reuse theirs.
    Optimistic,
}

/// Why a request could not be sent to a backend or got no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP handshake: {0}")]
    Handshake(hyper::Error),
    /// The pool's `max_pending` connects to this backend are in progress already.
    #[error("{addr}: at max_pending connects")]
    Pending { addr: SocketAddr },
    #[error("{source}")]
    Request {
        source: hyper::Error,
        /// The connection had served earlier requests (a keep-alive connection).
        reused: bool,
    },
}

impl UpstreamError {
    /// The connection failed before any response arrived: refused, timed out, reset,
    /// or closed mid-request. An idempotent request without a body may go elsewhere.
    pub fn is_connection_failure(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Tls { .. } | Self::Handshake(_) => true,
            Self::Request { source, .. } => is_connection_level(source),
            Self::Pending { .. } => false,
        }
    }

    /// A connect that timed out (rather than refused): maybe one lost SYN.
    pub fn is_connect_timeout(&self) -> bool {
        matches!(self, Self::Connect { source, .. } if source.kind() == std::io::ErrorKind::TimedOut)
    }

    /// The failure as the retry decision sees it (`request::retry`), or `None` when it is
    /// not a connection failure (nothing to retry: a malformed response, for example).
    /// `had_body`: a request body was on its way.
    pub fn attempt_failure(&self, had_body: bool) -> Option<AttemptFailure> {
        if !self.is_connection_failure() {
            return None;
        }
        Some(match self {
            Self::Connect { .. } => AttemptFailure::Connect {
                timed_out: self.is_connect_timeout(),
            },
            Self::Tls { .. } | Self::Handshake(_) => AttemptFailure::Connect { timed_out: false },
            Self::Request { reused, .. } => AttemptFailure::Broken {
                reused: *reused,
                during_body: had_body,
            },
            Self::Pending { .. } => return None,
        })
    }
}

fn is_connection_level(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            );
        }
        source = err.source();
    }
    false
}

/// The connections of one pool, index-aligned with the pool's backends.
pub struct Upstream {
    inner: Arc<Inner>,
    /// `max_pending`, if the pool has it.
    connects: Option<pending::ConnectCap>,
    /// The shared HTTP/2 connection of each backend, for a pool with `protocol = "h2"`.
    h2: Option<Vec<h2::H2Slot>>,
}

struct Inner {
    addrs: Vec<SocketAddr>,
    idle: Vec<IdleStack<ProxySender>>,
    /// Idle plain connections of the hand-written HTTP/1.1 path.
    raw_idle: Vec<IdleStack<BackendConn>>,
    settings: ConnectSettings,
    idle_timeout: Duration,
    /// Plain connections dropped because the backend sent bytes nobody asked for.
    unsolicited: Counter,
}

/// The connection a response is being read from. `release` puts it back for the next
/// request; dropping it instead closes the connection (the response was cut short).
/// An HTTP/2 stream has no connection of its own to return (`sender` is `None`).
pub struct Lease {
    sender: Option<ProxySender>,
    inner: Arc<Inner>,
    index: usize,
}

impl Lease {
    /// The response was read completely: the connection may serve another request.
    pub fn release(self) {
        if let Some(sender) = self.sender {
            self.inner.idle[self.index].put(sender);
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("backend", &self.index)
            .finish()
    }
}

impl Upstream {
    /// Connections to `addrs`; idle ones are closed after `idle_timeout`. Connections
    /// dropped for unsolicited bytes are counted in `unsolicited`.
    pub fn new(
        addrs: Vec<SocketAddr>,
        connect_timeout: Duration,
        idle_timeout: Duration,
        tls: Option<TlsSettings>,
        unsolicited: Counter,
    ) -> Self {
        let inner = Arc::new(Inner {
            idle: addrs.iter().map(|_| IdleStack::default()).collect(),
            raw_idle: addrs.iter().map(|_| IdleStack::default()).collect(),
            addrs,
            settings: ConnectSettings {
                connect_timeout,
                tls,
            },
            idle_timeout,
            unsolicited,
        });
        spawn_reaper(Arc::downgrade(&inner), idle_timeout);
        Upstream {
            inner,
            connects: None,
            h2: None,
        }
    }

    /// Speaks `protocol` to the backends: for HTTP/2, one shared connection each.
    pub fn with_protocol(mut self, protocol: fulcrum_config::BackendProtocol) -> Self {
        self.h2 = (!protocol.is_http1()).then(|| {
            self.inner
                .addrs
                .iter()
                .map(|_| h2::H2Slot::default())
                .collect()
        });
        self
    }

    /// Whether this pool speaks HTTP/2 to its backends.
    pub fn is_h2(&self) -> bool {
        self.h2.is_some()
    }

    /// Whether requests to this pool must go through hyper's client (`send`): the
    /// hand-written HTTP/1.1 paths speak neither TLS nor HTTP/2 to backends.
    pub fn needs_client(&self) -> bool {
        self.is_tls() || self.h2.is_some()
    }

    /// Caps connects in progress per backend at `max` (none: no cap), counted in
    /// `counters` (one per backend, index-aligned; kept across config versions).
    pub fn with_max_pending(mut self, max: Option<u32>, counters: Vec<Arc<AtomicU64>>) -> Self {
        self.connects = max.map(|m| pending::ConnectCap::new(m, counters));
        self
    }

    /// Connects in progress to the pool's backends (0 when nothing counts them: neither
    /// `max_pending` nor the signal to scale is configured).
    pub fn pending(&self) -> u64 {
        self.connects.as_ref().map_or(0, pending::ConnectCap::total)
    }

    /// A connect to backend `index` may start: within `max_pending`, if any.
    fn begin_connect(
        &self,
        index: usize,
    ) -> Result<Option<pending::PendingConnect<'_>>, UpstreamError> {
        match &self.connects {
            None => Ok(None),
            Some(cap) => cap.begin(index).map(Some).ok_or(UpstreamError::Pending {
                addr: self.inner.addrs[index],
            }),
        }
    }

    /// Sends `req` to backend `index` over a pooled connection or a new one.
    pub async fn send(
        &self,
        index: usize,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        let inner = &self.inner;
        if let Some(slots) = &self.h2 {
            return self.send_h2(&slots[index], index, req).await;
        }
        while let Some(mut sender) = inner.idle[index].take(inner.idle_timeout) {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, self.lease(index, sender))),
                Err(mut e) => match e.take_message() {
                    // Closed before a byte was written: try the next connection.
                    Some(unsent) => req = unsent,
                    None => {
                        return Err(UpstreamError::Request {
                            source: e.into_error(),
                            reused: true,
                        })
                    }
                },
            }
        }
        let connecting = self.begin_connect(index)?;
        let mut sender = connect::open(&inner.settings, inner.addrs[index], false).await?;
        drop(connecting);
        match sender.send_request(req).await {
            Ok(resp) => Ok((resp, self.lease(index, sender))),
            Err(source) => Err(UpstreamError::Request {
                source,
                reused: false,
            }),
        }
    }

    /// Sends `req` as a stream on backend `index`'s shared HTTP/2 connection, opened
    /// first if there is none. The `Host` header becomes the `:authority`.
    async fn send_h2(
        &self,
        slot: &h2::H2Slot,
        index: usize,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        let addr = self.inner.addrs[index];
        let (mut sender, reused) = match slot.current() {
            Some(sender) => (sender, true),
            None => {
                // Waiting for the backend's connection, opened by this request or a
                // concurrent one, counts against `max_pending` as a connect would.
                let _pending = self.begin_connect(index)?;
                slot.connect(&self.inner.settings, addr).await?
            }
        };
        h2_target(&mut req, addr, self.is_tls());
        let lease = Lease {
            sender: None,
            inner: self.inner.clone(),
            index,
        };
        if let Err(source) = sender.ready().await {
            return Err(UpstreamError::Request { source, reused });
        }
        match sender.send_request(req).await {
            Ok(resp) => Ok((resp, lease)),
            Err(source) => Err(UpstreamError::Request { source, reused }),
        }
    }

    /// Sends a protocol-upgrade request on a connection of its own, which can switch
    /// protocols after a 101 and is never pooled.
    pub async fn send_upgrade(
        &self,
        index: usize,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let inner = &self.inner;
        let connecting = self.begin_connect(index)?;
        let mut sender = connect::open(&inner.settings, inner.addrs[index], true).await?;
        drop(connecting);
        sender
            .send_request(req)
            .await
            .map_err(|source| UpstreamError::Request {
                source,
                reused: false,
            })
    }

    /// Whether this pool speaks TLS to its backends (not served by `raw` connections).
    pub fn is_tls(&self) -> bool {
        self.inner.settings.tls.is_some()
    }

    /// An idle plain connection to backend `index`, if one is open, checked as `reuse`
    /// says (`Reuse`).
    pub fn take_raw(&self, index: usize, reuse: Reuse) -> Option<BackendConn> {
        let stack = &self.inner.raw_idle[index];
        while let Some(mut conn) = stack.take(self.inner.idle_timeout) {
            let quiet = match reuse {
                // `take` looked at the reactor's readiness already.
                Reuse::Optimistic => true,
                Reuse::Checked => conn.probe_now() == raw::Idle::Quiet,
            };
            if quiet {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// A new plain connection to backend `index`.
    pub async fn open_raw(&self, index: usize) -> Result<BackendConn, UpstreamError> {
        let inner = &self.inner;
        let timeout = inner.settings.connect_timeout;
        let _connecting = self.begin_connect(index)?;
        BackendConn::open(inner.addrs[index], timeout, inner.unsolicited.clone()).await
    }

    /// A new TLS connection to backend `index`, for a path that speaks HTTP/1.1 over
    /// it itself (`crate::http2`); refused for a pool without `tls`.
    pub async fn open_tls(
        &self,
        index: usize,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, UpstreamError> {
        let inner = &self.inner;
        let addr = inner.addrs[index];
        let Some(tls) = &inner.settings.tls else {
            return Err(UpstreamError::Tls {
                addr,
                source: std::io::Error::other("the pool does not speak TLS to its backends"),
            });
        };
        let timeout = inner.settings.connect_timeout;
        let _connecting = self.begin_connect(index)?;
        let tcp = connect::tcp(addr, timeout).await?;
        connect::tls_over(timeout, tls, tcp, addr).await
    }

    /// Returns a connection whose last response was relayed completely; one with
    /// bytes past that response is dropped (and counted) instead.
    pub fn put_raw(&self, index: usize, mut conn: BackendConn) {
        conn.park();
        self.inner.raw_idle[index].put(conn);
    }

    fn lease(&self, index: usize, sender: ProxySender) -> Lease {
        Lease {
            sender: Some(sender),
            inner: self.inner.clone(),
            index,
        }
    }
}

/// An HTTP/2 request needs `:scheme` and `:authority`: the URI becomes absolute, with
/// the `Host` header (or the backend's address) as its authority, and `Host` goes.
fn h2_target(req: &mut Request<ProxyBody>, addr: SocketAddr, tls: bool) {
    let host = req.headers_mut().remove(http::header::HOST);
    let authority = host
        .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
        .or_else(|| http::uri::Authority::try_from(addr.to_string()).ok());
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(if tls {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    });
    parts.authority = authority;
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = http::Version::HTTP_2;
}

impl Pooled for ProxySender {
    fn is_closed(&self) -> bool {
        http1::SendRequest::is_closed(self)
    }
}

/// Closes idle connections that outlived `idle_timeout`, until the pool is dropped
/// (a config change builds a new one). Needs a runtime; without one (unit tests that
/// only build a pool) idle connections are still aged out when taken.
fn spawn_reaper(inner: Weak<Inner>, idle_timeout: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let period = (idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
    runtime.spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            for stack in &inner.idle {
                stack.reap(inner.idle_timeout);
            }
            for stack in &inner.raw_idle {
                stack.reap(inner.idle_timeout);
            }
        }
    });
}

#[cfg(test)]
mod tests;
