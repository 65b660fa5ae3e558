//! Accept side of the peer transport: admit, authenticate every connection, then serve
//! request/response frames in order, dispatching into the local Raft and lease.
//!
//! With peer TLS configured, every connection first completes a mutual TLS handshake
//! (client certificate signed by the cluster CA), and the shared-secret handshake then
//! runs inside the TLS stream; without it, both run over plain TCP. Both handshakes
//! together must finish within `HANDSHAKE_TIMEOUT` (LAN scale), and a connection needs a
//! slot first (`admission`: peers' addresses have their own pool).
//!
//! A peer that fails either handshake (no or a foreign certificate, plain TCP to a TLS
//! port, garbage, the wrong secret, silence) is logged and dropped; nothing it sent
//! reaches Raft. An oversized or undecodable frame closes that connection only, and so
//! does a frame whose seal does not verify (`sealed`: altered or injected).
//!
//! Votes: a granted vote closes this node's fence before the answer leaves, and the answer
//! carries the fence report (see `lease`). Any request of a newer term than the one this
//! node leads closes the fence before openraft steps down.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::admission::Admission;
use crate::auth;
use crate::detector;
use crate::frame::{FrameError, MAX_FRAME};
use crate::lease::wire::FenceReport;
use crate::lease::{stream, Lease};
use crate::log_store::LastLog;
use crate::network::PeerPool;
use crate::ops;
use crate::rpc::{PeerRequest, PeerResponse};
use crate::sealed::SealedConn;
use crate::tls::{PeerStream, PeerTlsContext};
use crate::types::Raft;

/// Time an unauthenticated connection may take to prove itself (TLS + secret).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);
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
    pub lease: Arc<Lease>,
    pub admission: Arc<Admission>,
    pub shutdown: watch::Receiver<bool>,
    /// openraft's vote lease, which a take-over campaign waits out (see `detector`).
    pub raft_vote_lease: Duration,
    /// This node's last log entry, which a pre-vote answer compares.
    pub last_log: LastLog,
    /// The leader's check of a forwarded write (`ops::WriteCheck`).
    pub write_check: Option<crate::ops::WriteCheck>,
    /// Outgoing calls (a successor asks the old holder for the traffic: `handover`).
    pub pool: PeerPool,
    /// `[[vip]]` grants this node gives while it leads, and the committed state they follow.
    pub vip_grants: Arc<crate::vip_grant::VipGrants>,
    pub state: watch::Receiver<Arc<crate::state::ClusterState>>,
}

/// Accept connections until `shutdown` flips to true. Dropping the listener on return
/// frees the port for a restart.
pub async fn serve(listener: TcpListener, ctx: ServerCtx) {
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
        let Some(slot) = ctx.admission.admit(peer.ip()) else {
            tracing::warn!(%peer, "too many peer connections from this address; refusing");
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _slot = slot;
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

impl Refusal {
    /// A connect that closes without a byte (a liveness probe) is not worth a warning.
    fn is_silent_close(&self) -> bool {
        match self {
            Refusal::Auth(auth::AuthError::Frame(FrameError::Io(e))) => {
                e.kind() == std::io::ErrorKind::UnexpectedEof
            }
            _ => false,
        }
    }
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
        Ok(Err(e)) if e.is_silent_close() => {
            tracing::debug!(%peer, "peer connection closed before the handshake");
            return;
        }
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
        if matches!(req, PeerRequest::OpenLease) {
            if stream.send(&PeerResponse::LeaseOpened).await.is_ok() {
                stream::serve(stream, ctx.lease.clone(), ctx.raft.clone()).await;
            }
            return;
        }
        let resp = dispatch(&ctx, req).await;
        if let Err(e) = stream.send(&resp).await {
            tracing::debug!(%peer, error = %e, "peer write failed");
            return;
        }
    }
}

async fn dispatch(ctx: &ServerCtx, req: PeerRequest) -> PeerResponse {
    let raft = &ctx.raft;
    match req {
        PeerRequest::AppendEntries(r) => {
            ctx.lease
                .observe_term(r.vote.leader_id().term, "append entries of a newer term");
            let resp = raft.append_entries(r).await;
            ctx.lease.appended();
            PeerResponse::AppendEntries(resp)
        }
        PeerRequest::Vote(r) => {
            let term = r.vote.leader_id().term;
            let candidate = r.vote.leader_id().voted_for();
            let resp = raft.vote(r).await;
            let report = match (&resp, candidate) {
                (Ok(v), Some(c)) if v.vote_granted => ctx.lease.grant(term, c),
                _ => FenceReport::default(),
            };
            PeerResponse::Vote(resp, report)
        }
        PeerRequest::InstallSnapshot(r) => {
            ctx.lease
                .observe_term(r.vote.leader_id().term, "snapshot of a newer term");
            PeerResponse::InstallSnapshot(raft.install_snapshot(r).await)
        }
        PeerRequest::ForwardWrite(cmd) => PeerResponse::App(
            ops::local_write(raft, ctx.write_check.as_ref(), cmd, FORWARDED_WRITE_TTL).await,
        ),
        PeerRequest::Membership(op) => {
            PeerResponse::App(ops::local_membership(raft, op, FORWARDED_MEMBERSHIP_TTL).await)
        }
        PeerRequest::TakeOver { term } => {
            detector::take_over(&ctx.lease, raft, &ctx.pool, term, ctx.raft_vote_lease).await
        }
        PeerRequest::HandOver { term, from, mac } => {
            crate::handover::answer(&ctx.lease, term, from, mac)
        }
        PeerRequest::PreVote(p) => PeerResponse::PreVote(
            detector::answer_prevote(&ctx.lease, raft, &ctx.last_log, p).await,
        ),
        PeerRequest::VipLease(ask) => {
            let state = ctx.state.borrow().clone();
            PeerResponse::VipLease(crate::vip_grant::answer_here(
                &ctx.vip_grants,
                &ctx.lease,
                &state,
                &ask,
            ))
        }
        // Handled by `handle_conn` (the connection changes mode).
        PeerRequest::OpenLease => PeerResponse::LeaseOpened,
    }
}
