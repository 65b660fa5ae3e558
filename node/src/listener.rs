//! Listeners: bind, accept, and serve each connection (`crate::h1`, else hyper).
//!
//! Each `[[listener]]` gets an accept loop. Sockets are bound with `SO_REUSEADDR` and
//! `IP_FREEBIND`, so a listener on the VIP works before this node holds the VIP and keeps
//! working after the VIP moves (no listener restart on failover). Each connection runs
//! in a task tracked by the listener set; on shutdown every connection is asked to
//! finish gracefully (in-flight requests complete, idle keep-alives close at once).
//!
//! A listener with `accept_proxy = true` reads the PROXY header first (see
//! `proxy_protocol`); `serve_connection` is generic over the byte stream so HTTPS
//! (`tls::serve_https`) serves its TLS streams with the same code. A plain HTTP
//! listener parks its idle keep-alive connections without a task (`idle_park`) and
//! serves each again when its client sends.

use crate::conn_io::{ActivityIo, OpenConnection};
use crate::conn_limit::{Admitted, ConnLimits};
use crate::conn_watch::{ConnActivity, Verdict, Watchdog};
use crate::dataplane::DataPlane;
use crate::h1::Left;
use crate::h2_flood::FloodGuard;
use crate::idle_park::{Parked, ParkingLot, Resume};
use crate::linger::Linger;
use crate::listener_sweep::Sweep;
use crate::proxy::{self, ConnInfo};
use bytes::Bytes;
use futures_util::future::OptionFuture;
use futures_util::FutureExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Binds a TCP listener that survives VIP moves.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv4() {
        // Allows binding the VIP while another node holds it.
        socket.set_freebind_v4(true)?;
    } else {
        socket.set_freebind_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

/// Settings of one HTTP listener that the accept loop needs.
#[derive(Debug, Clone)]
pub struct HttpListenerSpec {
    pub name: Arc<str>,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
}

impl HttpListenerSpec {
    /// The largest request head the hand-written HTTP/1.1 path reads: the same floor
    /// as hyper's buffer (see `http_builder`).
    pub(crate) fn h1_max_header_bytes(&self) -> usize {
        self.max_header_bytes.max(8192)
    }
}

/// What every connection of an HTTP or HTTPS listener shares: its settings, hyper's
/// builder (for what the HTTP/1.1 path hands over) and the watchdog sweep of its
/// HTTP/1.1 connections (`listener_sweep`).
pub(crate) struct HttpShared {
    pub spec: HttpListenerSpec,
    pub builder: Arc<auto::Builder<TokioExecutor>>,
    pub sweep: Arc<Sweep>,
    /// The listener's stop, for the connections the HTTP/1.1 path hands to hyper.
    pub stop: CancellationToken,
    /// Where idle connections wait without a task (plain HTTP listeners only).
    pub lot: Option<Arc<ParkingLot>>,
}

impl HttpShared {
    /// Builds the shared parts and starts the sweep, which runs until `stop`.
    pub(crate) fn new(
        spec: HttpListenerSpec,
        stop: CancellationToken,
        lot: Option<Arc<ParkingLot>>,
    ) -> Arc<Self> {
        Arc::new(HttpShared {
            builder: Arc::new(http_builder(&spec)),
            sweep: Sweep::start(spec.idle_timeout, spec.header_read_timeout, stop.clone()),
            spec,
            stop,
            lot,
        })
    }
}

/// How long a stopping listener waits for one more queued connection.
const DRAIN_IDLE: Duration = Duration::from_millis(10);
/// The longest a stopping listener drains its accept queue.
const DRAIN_MAX: Duration = Duration::from_millis(100);

/// Accepts connections until `stop` fires and hands each one (with TCP_NODELAY set)
/// to `serve`, whose future runs in `tracker`, within the listener's connection
/// `limits` (see `conn_limit`): the future holds the connection's `Admitted` share
/// (most wrap it with `connection_task`). Shared by the HTTP, HTTPS and TCP listeners.
pub(crate) async fn accept_loop<F, Fut>(
    socket: TcpListener,
    name: &str,
    limits: ConnLimits,
    stop: CancellationToken,
    tracker: TaskTracker,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, Admitted) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // What each connection's task holds at least, idle or not.
    let task_bytes = std::mem::size_of::<Fut>();
    tracing::debug!(listener = %name, task_bytes, "accepting connections");
    let mut start = |stream: TcpStream, peer: SocketAddr, room| {
        let Some(admitted) = limits.admit(room, peer.ip()) else {
            tracing::debug!(listener = %name, client = %peer, "over max_connections_per_ip; closed");
            return;
        };
        let _ = stream.set_nodelay(true);
        tracker.spawn(serve(stream, peer, admitted));
    };
    loop {
        // Room first: at `max_connections` the listener stops accepting.
        let room = tokio::select! {
            _ = stop.cancelled() => break,
            room = limits.room() => room,
        };
        let Some(room) = room else { break };
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = socket.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => start(stream, peer, room),
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // Closing the socket would reset the connections the kernel already completed and
    // queued (after a planned hand-over, the last ones accepted here): serve those, and
    // any that completes its handshake within `DRAIN_IDLE`, for at most `DRAIN_MAX`.
    let drain_until = tokio::time::Instant::now() + DRAIN_MAX;
    let mut drained = 0u32;
    while let Ok(Some(room)) = tokio::time::timeout_at(drain_until, limits.room()).await {
        match tokio::time::timeout(DRAIN_IDLE, socket.accept()).await {
            Ok(Ok((stream, peer))) => {
                drained += 1;
                start(stream, peer, room);
            }
            _ => break,
        }
    }
    if drained > 0 {
        tracing::info!(listener = %name, drained, "served the connections queued at the stop");
    }
    tracing::info!(listener = %name, "listener stopped accepting");
}

/// One connection's task: its future, then its share of the limits given back.
/// `map`, not an `async move` block awaiting it: such a block would hold the
/// connection's future twice (once captured, once being awaited), and every
/// connection's task would be twice the size.
pub(crate) fn connection_task<Fut>(
    serve: Fut,
    admitted: Admitted,
) -> impl std::future::Future<Output = ()>
where
    Fut: std::future::Future<Output = ()>,
{
    serve.map(move |()| drop(admitted))
}

/// Accepts plain-HTTP connections until `stop` fires; connection tasks go into `tracker`.
pub async fn serve_http(
    listener: TcpListener,
    spec: HttpListenerSpec,
    limits: ConnLimits,
    dp: Arc<DataPlane>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let name = spec.name.clone();
    let metrics = &dp.metrics;
    let open = metrics.client_connections.clone();
    let lot = ParkingLot::new(
        spec.idle_timeout,
        open,
        metrics.client_connections_parked.clone(),
    )
    .inspect_err(
        |e| tracing::warn!(listener = %name, error = %e, "idle connections will not be parked"),
    )
    .ok();
    let http = HttpShared::new(spec, stop.clone(), lot.clone());
    if let Some(lot) = lot {
        let (http, dp, connections) = (http.clone(), dp.clone(), tracker.clone());
        let resume: Resume = Box::new(move |p: Parked| {
            connections.spawn(serve_parkable(p, http.clone(), dp.clone()));
        });
        tracker.spawn(lot.run(stop.clone(), resume));
    }
    accept_loop(
        listener,
        &name,
        limits,
        stop.clone(),
        tracker,
        |stream, peer, admitted| serve_plain(stream, peer, admitted, http.clone(), dp.clone()),
    )
    .await;
}

/// One plain-HTTP connection: the client address (from a PROXY header when the
/// listener has `accept_proxy`; an untrusted or malformed one closes it), then HTTP.
/// Two stages chained with `then` rather than one `async fn`: nothing of the first
/// stage is kept in the task while the connection is served (one allocation per
/// connection, freed once the client is known).
fn serve_plain(
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    http: Arc<HttpShared>,
    dp: Arc<DataPlane>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    // Boxed: reading a PROXY header needs a few hundred bytes of state, only at first.
    Box::pin(plain_origin(stream, peer, http.clone(), dp.clone())).then(move |origin| {
        let served = origin.map(|(stream, conn)| {
            let conn = Parked {
                stream,
                conn,
                admitted,
            };
            serve_parkable(conn, http, dp)
        });
        OptionFuture::from(served).map(drop)
    })
}

/// Serves a plain connection (just accepted, or back from the parking lot) until it
/// ends or idles long enough to be parked again.
fn serve_parkable(
    conn: Parked,
    http: Arc<HttpShared>,
    dp: Arc<DataPlane>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let Parked {
        stream,
        conn,
        admitted,
    } = conn;
    serve_h1(stream, conn, dp, http.clone()).map(move |idle| {
        if let (Some((stream, conn)), Some(lot)) = (idle, &http.lot) {
            let conn = Parked {
                stream,
                conn,
                admitted,
            };
            lot.park(conn, http.sweep.period());
        }
    })
}

/// The first stage of `serve_plain`: who the client is.
async fn plain_origin(
    mut stream: TcpStream,
    peer: SocketAddr,
    http: Arc<HttpShared>,
    dp: Arc<DataPlane>,
) -> Option<(TcpStream, Arc<ConnInfo>)> {
    let spec = &http.spec;
    let snapshot = dp.snapshot();
    let config = snapshot
        .config
        .listener
        .iter()
        .find(|l| *l.name == *spec.name);
    let origin = match crate::proxy_protocol::origin_of(config, &mut stream, peer).await {
        Ok(origin) => origin,
        Err(e) => {
            tracing::debug!(listener = %spec.name, error = %e, "connection refused");
            return None;
        }
    };
    let trusted = config.is_some_and(|l| l.trusts_proxy(origin.client.ip()));
    let conn = ConnInfo::new(spec.name.clone(), origin.client, false, trusted);
    Some((stream, Arc::new(conn)))
}

/// Serves a connection on the hand-written HTTP/1.1 path, and with hyper from the
/// request on that the path hands over (HTTP/2 prior knowledge, upgrades, ...); a
/// connection idle long enough on a listener with a parking lot is returned, to park.
pub(crate) fn serve_h1<S>(
    stream: S,
    conn: Arc<ConnInfo>,
    dp: Arc<DataPlane>,
    http: Arc<HttpShared>,
) -> impl std::future::Future<Output = Option<(S, Arc<ConnInfo>)>> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max_header_bytes = http.spec.h1_max_header_bytes();
    let parkable = http.lot.is_some();
    let h1 = crate::h1::serve(stream, conn, dp, max_header_bytes, &http.sweep, parkable);
    h1.then(move |left| {
        let (handoff, idle) = match left {
            Some(Left::Handoff(h)) => (Some(h), None),
            Some(Left::Idle { stream, conn }) => (None, Some((stream, conn))),
            None => (None, None),
        };
        let hyper = handoff.map(|h| {
            let timeouts = (http.spec.idle_timeout, http.spec.header_read_timeout);
            let builder = http.builder.clone();
            let stop = http.stop.clone();
            // Boxed: hyper's connection state is large, and inline it would make every
            // connection's task that large, handed over or not.
            Box::pin(serve_connection(
                h.stream, h.prefix, h.conn, builder, h.dp, stop, timeouts,
            ))
        });
        OptionFuture::from(hyper).map(move |_| idle)
    })
}

pub(crate) fn http_builder(spec: &HttpListenerSpec) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Slow heads are cut off by the connection watchdog (`conn_watch`): hyper's
        // own timer would be armed for every request, at about a fifth of its CPU.
        .header_read_timeout(None)
        // hyper answers 431 when a request head does not fit; it refuses values < 8 KiB.
        .max_buf_size(spec.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(spec.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_concurrent_streams(256)
        .max_pending_accept_reset_streams(64)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// Serves one client connection: HTTP/1.1 or h2c (sniffed), with upgrades. `prefix`
/// holds bytes already read from `stream` (a request the HTTP/1.1 fast path handed
/// over); hyper reads them first.
pub(crate) async fn serve_connection<S>(
    stream: S,
    prefix: Bytes,
    conn: Arc<ConnInfo>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    dp: Arc<DataPlane>,
    stop: CancellationToken,
    (idle_timeout, header_timeout): (Duration, Duration),
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _open = OpenConnection::count(&dp.metrics.client_connections);
    let activity = Arc::new(ConnActivity::default());
    // The flood guard watches what the client sends (HTTP/2 only; see `h2_flood`).
    // Closing lingers (see `linger`): an early answer is read, not reset away.
    let io = TokioIo::new(Linger::new(FloodGuard::new(ActivityIo::with_prefix(
        stream,
        prefix,
        activity.clone(),
    ))));
    let service_dp = dp.clone();
    let service_conn = conn.clone();
    let service_activity = activity.clone();
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let activity = service_activity.clone();
        activity.request_started(req.version() == http::Version::HTTP_2);
        let handled = proxy::handle(service_dp.clone(), service_conn.clone(), req);
        async move {
            let response = handled.await;
            activity.request_answered();
            response
        }
    });
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut watchdog = Watchdog::new(idle_timeout, header_timeout);
    let tick = watchdog.period();
    let mut ticker = tokio::time::interval(tick);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(client = %conn.client, error = %e, "connection ended with error");
                }
                break;
            }
            _ = stop.cancelled(), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = ticker.tick(), if !shutting_down => match watchdog.tick(&activity, tick) {
                Verdict::Keep => {}
                Verdict::Idle => {
                    tracing::debug!(client = %conn.client, "closing idle connection");
                    shutting_down = true;
                    connection.as_mut().graceful_shutdown();
                }
                Verdict::SlowHead => {
                    // A head still arriving has no request to finish: just close.
                    tracing::debug!(client = %conn.client, "request head too slow; closing");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size_of_val<F>(_: &F) -> usize {
        std::mem::size_of::<F>()
    }

    /// tokio's task cell around a spawned future (tokio 1.54, 64-bit): a 32-byte header,
    /// the scheduler handle and task id (16), the stage's tag (8) and a 48-byte trailer;
    /// the whole is aligned to 128 bytes. `TaskTracker` adds its token (8).
    const TASK_CELL_OVERHEAD: usize = 32 + 16 + 8 + 48 + 8;

    /// The whole of an idle plain HTTP/1.1 connection's task (issue 16). Its future was
    /// 1,712 bytes in a debug build, and the task twice that (an `async move` wrapper
    /// held it twice), with the per-request state inline, two timers, and the PROXY
    /// header reader's state kept for the connection's life; then 328 bytes, a
    /// 512-byte task; now under 272 (256 with the parking lot's hand-back), so the task
    /// is 384 bytes. An idle connection parked (`idle_park`) has no task at all; this
    /// is what a connection costs while it is served or for its first second of quiet.
    #[tokio::test]
    async fn a_plain_connections_task_is_small() {
        let text = include_str!("../../config/examples/single-node.toml");
        let config = Arc::new(fulcrum_config::parse(text, "t.toml").expect("example config"));
        let dp = DataPlane::new(config, Arc::from(text), 1, crate::metrics::Metrics::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).await;
        let (stream, peer) = listener.accept().await.expect("accept");
        let spec = HttpListenerSpec {
            name: Arc::from("web"),
            header_read_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 8192,
        };
        let limits = ConnLimits::new(10, 0, Default::default());
        let room = limits.room().await.expect("room");
        let admitted = limits.admit(room, peer.ip()).expect("admitted");
        let lot = ParkingLot::new(spec.idle_timeout, Default::default(), Default::default());
        let http = HttpShared::new(spec, CancellationToken::new(), lot.ok());
        let task = serve_plain(stream, peer, admitted, http, dp);
        let bytes = size_of_val(&task);
        let cell = (TASK_CELL_OVERHEAD + bytes).next_multiple_of(128);
        eprintln!("plain connection task: future {bytes} bytes, task {cell} bytes");
        assert!(
            cell <= 384,
            "{bytes} bytes per connection future, a {cell}-byte task"
        );
        drop(client);
    }

    /// A listener stopped while connections wait in its accept queue serves them: closing
    /// the socket would reset them (the last connections before a planned hand-over).
    #[tokio::test]
    async fn a_stopped_listener_serves_what_its_queue_holds() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut clients = Vec::new();
        for _ in 0..5 {
            clients.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let stop = CancellationToken::new();
        stop.cancel();
        let limits = ConnLimits::new(100, 0, Default::default());
        let tracker = TaskTracker::new();
        accept_loop(
            listener,
            "t",
            limits,
            stop,
            tracker.clone(),
            |mut s, _, admitted| async move {
                let _ = s.write_all(b"served").await;
                drop(admitted);
            },
        )
        .await;
        tracker.close();
        tracker.wait().await;
        for mut c in clients {
            let mut got = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut got)).await;
            assert!(
                matches!(read, Ok(Ok(_))) && got == b"served",
                "a queued connection was not served: {read:?} {got:?}"
            );
        }
    }
}
