//! Accept side of the peer transport: authenticate every connection, then serve
//! request/response frames in order, dispatching into the local Raft.
//!
//! With peer TLS configured, every connection first completes a mutual TLS handshake
//! (client certificate signed by the cluster CA), and the shared-secret handshake then
//! runs inside the TLS stream; without it, both run over plain TCP. Both handshakes
//! together must finish within `HANDSHAKE_TIMEOUT`.
//!
//! A peer that fails either handshake (no or a foreign certificate, plain TCP to a TLS
//! port, garbage, the wrong secret, silence) is logged with `warn!` and dropped; nothing
//! it sent reaches Raft. An oversized or undecodable frame closes that connection only,
//! and so does a frame whose seal does not verify (`sealed`: altered or injected).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::auth;
use crate::frame::{FrameError, MAX_FRAME};
use crate::ops;
use crate::rpc::{PeerRequest, PeerResponse};
use crate::sealed::SealedConn;
use crate::tls::{PeerStream, PeerTlsContext};
use crate::types::Raft;

/// Time an unauthenticated connection may take to prove itself (TLS + secret).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Concurrent peer connections accepted (a cluster has a handful of peers).
const MAX_CONNECTIONS: usize = 256;
/// Budget for a write forwarded by a follower (the follower's own budget is ~3 s).
const FORWARDED_WRITE_TTL: Duration = Duration::from_millis(2500);
/// Budget for a forwarded membership change (adding a learner waits for catch-up).
const FORWARDED_MEMBERSHIP_TTL: Duration = Duration::from_secs(10);

/// Shared context of one server.
#[derive(Clone)]
pub struct ServerCtx {
    pub raft: Raft,
    pub secret: Arc<[u8]>,
    /// Mutual TLS under the secret handshake; `None` = plain TCP.
    pub tls: Option<Arc<PeerTlsContext>>,
    pub shutdown: watch::Receiver<bool>,
}

/// Accept connections until `shutdown` flips to true. Dropping the listener on return
/// frees the port for a restart.
pub async fn serve(listener: TcpListener, ctx: ServerCtx) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many peer connections; refusing");
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut stop = ctx.shutdown.clone();
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {}
                _ = handle_conn(stream, peer, ctx) => {}
            }
        });
    }
    tracing::debug!("peer server stopped");
}

/// Why a connection was refused before it reached Raft.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("{0}")]
    Auth(#[from] auth::AuthError),
}

/// TLS (when configured), then the shared-secret handshake inside it.
async fn secure(stream: TcpStream, ctx: &ServerCtx) -> Result<SealedConn<PeerStream>, Refusal> {
    let mut stream: PeerStream = match &ctx.tls {
        Some(tls) => tls.accept(stream).await.map_err(Refusal::Tls)?,
        None => Box::new(stream),
    };
    let keys = auth::server_handshake(&mut stream, &ctx.secret).await?;
    Ok(SealedConn::new(stream, keys))
}

async fn handle_conn(stream: TcpStream, peer: std::net::SocketAddr, ctx: ServerCtx) {
    // Best effort: if nodelay fails the connection still works, only slower.
    let _ = stream.set_nodelay(true);
    let mut stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, secure(stream, &ctx)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, tls = ctx.tls.is_some(), "refused unauthenticated peer");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, tls = ctx.tls.is_some(), "refused peer: handshake timed out");
            return;
        }
    };
    loop {
        let req: PeerRequest = match stream.recv(MAX_FRAME).await {
            Ok(r) => r,
            Err(FrameError::Io(_)) => return, // peer hung up
            Err(e) => {
                tracing::warn!(%peer, error = %e, "bad frame from peer; closing");
                return;
            }
        };
        let resp = dispatch(&ctx.raft, req).await;
        if let Err(e) = stream.send(&resp).await {
            tracing::debug!(%peer, error = %e, "peer write failed");
            return;
        }
    }
}

async fn dispatch(raft: &Raft, req: PeerRequest) -> PeerResponse {
    match req {
        PeerRequest::AppendEntries(r) => PeerResponse::AppendEntries(raft.append_entries(r).await),
        PeerRequest::Vote(r) => PeerResponse::Vote(raft.vote(r).await),
        PeerRequest::InstallSnapshot(r) => {
            PeerResponse::InstallSnapshot(raft.install_snapshot(r).await)
        }
        PeerRequest::ForwardWrite(cmd) => {
            PeerResponse::App(ops::local_write(raft, cmd, FORWARDED_WRITE_TTL).await)
        }
        PeerRequest::Membership(op) => {
            PeerResponse::App(ops::local_membership(raft, op, FORWARDED_MEMBERSHIP_TTL).await)
        }
        PeerRequest::Elect => PeerResponse::App(ops::trigger_elect(raft).await),
    }
}
