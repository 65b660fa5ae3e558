//! HTTPS listeners: rustls in front of the same hyper service as plain HTTP.
//!
//! Per connection: optional PROXY header (`accept_proxy`), then the TLS handshake
//! (bounded by the listener's `header_read_timeout`, so a client that stalls mid-hello
//! is dropped), then the same serving as plain HTTP, with `ConnInfo.tls = true` so
//! requests carry `X-Forwarded-Proto: https`. ALPN offers h2 and http/1.1: an h2
//! connection goes to `crate::http2` (to hyper where a route's pool speaks TLS to its
//! backends), an HTTP/1.1 one to the hand-written path (`crate::h1`), which hands it
//! to hyper should a request need that.
//!
//! Reload: a watcher task re-reads the listener's certificates when a new config
//! version is applied (checked every 250 ms) and when any certificate or key file
//! changes on disk (modification time or size, checked every 2 s). A reload that fails
//! (say the key was not rewritten yet) keeps the previous certificates and is retried.
//! Swapping only affects new handshakes: open connections are never touched.

use super::certs::load_listener_certs;
use super::resolver::SniResolver;
use super::TlsError;
use crate::conn_limit::ConnLimits;
use crate::dataplane::DataPlane;
use crate::listener::{self, HttpListenerSpec, HttpShared};
use crate::proxy_protocol;
use crate::request::conn::ConnInfo;
use bytes::Bytes;
use fulcrum_config::Listener;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the watcher looks for a new config version.
const VERSION_POLL: Duration = Duration::from_millis(250);
/// Certificate files are stat'ed every this many version polls (2 s).
const FILE_POLL_EVERY: u32 = 8;

/// The TLS side of one HTTPS listener.
pub struct TlsServer {
    name: String,
    resolver: Arc<SniResolver>,
    acceptor: TlsAcceptor,
}

impl TlsServer {
    /// Loads and checks the listener's certificates and builds its rustls config.
    pub fn new(listener: &Listener) -> Result<Arc<TlsServer>, TlsError> {
        let resolver = Arc::new(SniResolver::new(load_listener_certs(listener)?));
        let mut config = ServerConfig::builder_with_provider(super::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(TlsServer {
            name: listener.name.clone(),
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }))
    }

    /// Re-reads the certificates of `listener`; on error the current ones stay.
    pub fn reload(&self, listener: &Listener) -> Result<(), TlsError> {
        let set = load_listener_certs(listener)?;
        for cert in &set.certs {
            tracing::info!(listener = %self.name, file = %cert.cert_path.display(), names = ?cert.names, "certificate loaded");
        }
        self.resolver.swap(set);
        Ok(())
    }
}

/// Accepts HTTPS connections until `stop` fires; connection tasks go into `tracker`.
pub async fn serve_https(
    socket: TcpListener,
    spec: HttpListenerSpec,
    limits: ConnLimits,
    tls: Arc<TlsServer>,
    dp: Arc<DataPlane>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let name = spec.name.clone();
    let http = HttpShared::new(spec, stop.clone(), None);
    tokio::spawn(watch(tls.clone(), dp.clone(), stop.clone()));
    listener::accept_loop(
        socket,
        &name,
        limits,
        stop.clone(),
        tracker,
        |stream, peer, admitted| {
            let served = handshake_and_serve(
                stream,
                peer,
                http.clone(),
                tls.clone(),
                dp.clone(),
                stop.clone(),
            );
            listener::connection_task(served, admitted)
        },
    )
    .await;
}

/// One connection's task. It holds little itself: the handshake runs in a box freed
/// when it ends, the TLS stream lives in a box of its own, and the protocol's serving
/// future in another, so a connection costs what its protocol needs and no more (the
/// task once held all three inline, each at its largest: about 20 KB per connection).
async fn handshake_and_serve(
    stream: TcpStream,
    peer: SocketAddr,
    http: Arc<HttpShared>,
    tls: Arc<TlsServer>,
    dp: Arc<DataPlane>,
    stop: CancellationToken,
) {
    let spec = &http.spec;
    let Some((tls_stream, conn)) = Box::pin(handshake(stream, peer, spec, &tls, &dp)).await else {
        return;
    };
    let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 && crate::http2::eligible(&dp.snapshot(), &spec.name) {
        let limits = crate::http2::Limits {
            idle_timeout: spec.idle_timeout,
            header_timeout: spec.header_read_timeout,
            max_header_bytes: spec.max_header_bytes,
        };
        Box::pin(crate::http2::serve(tls_stream, conn, dp, stop, limits)).await;
    } else if h2 {
        let timeouts = (spec.idle_timeout, spec.header_read_timeout);
        let builder = http.builder.clone();
        Box::pin(listener::serve_connection(
            tls_stream,
            Bytes::new(),
            conn,
            builder,
            dp,
            stop,
            timeouts,
        ))
        .await;
    } else {
        Box::pin(listener::serve_h1(tls_stream, conn, dp, http.clone())).await;
    }
}

/// The PROXY header (when the listener accepts one) and the TLS handshake.
async fn handshake(
    mut stream: TcpStream,
    peer: SocketAddr,
    spec: &HttpListenerSpec,
    tls: &TlsServer,
    dp: &DataPlane,
) -> Option<(Box<TlsStream<TcpStream>>, Arc<ConnInfo>)> {
    let snapshot = dp.snapshot();
    let config = snapshot.config.listener.iter().find(|l| l.name == tls.name);
    let origin = match proxy_protocol::origin_of(config, &mut stream, peer).await {
        Ok(origin) => origin,
        Err(e) => {
            tracing::debug!(listener = %spec.name, error = %e, "connection refused");
            return None;
        }
    };
    let trusted = config.is_some_and(|l| l.trusts_proxy(origin.client.ip()));
    drop(snapshot);
    let handshake = tokio::time::timeout(spec.header_read_timeout, tls.acceptor.accept(stream));
    let tls_stream = match handshake.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(listener = %spec.name, client = %origin.client, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(listener = %spec.name, client = %origin.client, "TLS handshake timed out");
            return None;
        }
    };
    let conn = Arc::new(ConnInfo::new(
        spec.name.clone(),
        origin.client,
        true,
        trusted,
    ));
    Some((Box::new(tls_stream), conn))
}

/// Reloads certificates on a new config version or changed files, until `stop`.
async fn watch(tls: Arc<TlsServer>, dp: Arc<DataPlane>, stop: CancellationToken) {
    let mut version = dp.snapshot().version;
    let mut ticker = tokio::time::interval(VERSION_POLL);
    let mut until_file_check = FILE_POLL_EVERY;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        until_file_check -= 1;
        let check_files = until_file_check == 0;
        if check_files {
            until_file_check = FILE_POLL_EVERY;
        }
        let snapshot = dp.snapshot();
        let new_version = snapshot.version != version;
        let files_changed = check_files && tls.resolver.current().files_changed();
        if !new_version && !files_changed {
            continue;
        }
        version = snapshot.version;
        let Some(config) = snapshot.config.listener.iter().find(|l| l.name == tls.name) else {
            continue;
        };
        if let Err(e) = tls.reload(config) {
            tracing::warn!(listener = %tls.name, error = %e, "certificate reload failed; the previous certificates stay");
        }
    }
}
