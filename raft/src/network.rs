//! Client side of the peer transport: one persistent, authenticated connection per
//! (peer, channel), reused across calls, re-dialled on the next call after any failure;
//! plus openraft's `RaftNetworkFactory` / `RaftNetwork` on top of it.
//!
//! A connection is plain TCP, or mutual TLS when peer TLS is configured (the peer's
//! certificate is verified against the cluster CA and the IP we dial); the
//! shared-secret handshake always runs on top, inside the TLS stream when there is one,
//! and every frame after it is sealed with the connection's keys (`sealed`).
//!
//! Separate channels per peer keep a slow forwarded write or a large AppendEntries from
//! delaying what must be fast: lease pings have their own stream (`Channel::Lease`),
//! pre-votes and hand-offs their own connection (`Channel::Control`).
//!
//! Votes carry fence reports both ways (see `lease`): a granted vote is recorded as a lease
//! acknowledgement with its report before openraft sees it, and any answer that reveals a
//! higher term closes this node's fence before openraft steps down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio::net::TcpStream;

use crate::auth::{self, AuthError};
use crate::frame::{FrameError, MAX_FRAME};
use crate::lease::time::now_us;
use crate::lease::Lease;
use crate::rpc::{PeerRequest, PeerResponse};
use crate::sealed::SealedConn;
use crate::tls::{PeerStream, PeerTlsContext};
use crate::types::{NodeId, PeerNode, TypeConfig};

/// Which connection to a peer a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// openraft's AppendEntries / Vote / InstallSnapshot.
    Raft,
    /// Forwarded writes, membership changes.
    App,
    /// The leader's lease pings (a stream, see `lease::pinger`).
    Lease,
    /// Pre-votes and leadership hand-offs.
    Control,
    /// `[[vip]]` grant renewals (`vip_grant`), kept off the pre-vote connection.
    Vip,
}

/// A call failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Could not connect or authenticate: back off.
    #[error("peer {addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The whole call exceeded its time budget.
    #[error("call timed out after {0:?}")]
    Timeout(Duration),
    /// The established connection failed mid-call.
    #[error("connection failed: {0}")]
    Io(#[from] FrameError),
}

/// Bound on the TCP connect plus both handshakes of a new connection (the call's own
/// budget usually cuts it shorter), so a silent peer cannot hold a caller forever.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// An AppendEntries frame above this many bytes is split (openraft retries with fewer
/// entries), so one large batch can never take longer than its budget forever.
pub const MAX_APPEND_BYTES: usize = 8 * 1024 * 1024;

/// One persistent connection to one peer address.
pub struct PeerClient {
    addr: String,
    secret: Arc<[u8]>,
    tls: Option<Arc<PeerTlsContext>>,
    // A tokio mutex: the connection is held across awaits for one request/response.
    conn: tokio::sync::Mutex<Option<SealedConn<PeerStream>>>,
}

impl PeerClient {
    /// A client over plain TCP.
    pub fn new(addr: String, secret: Arc<[u8]>) -> Self {
        Self::with_tls(addr, secret, None)
    }

    /// A client over mutual TLS when `tls` is set, plain TCP otherwise.
    pub fn with_tls(addr: String, secret: Arc<[u8]>, tls: Option<Arc<PeerTlsContext>>) -> Self {
        Self {
            addr,
            secret,
            tls,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn dial(&self) -> Result<SealedConn<PeerStream>, CallError> {
        match tokio::time::timeout(DIAL_TIMEOUT, self.dial_inner()).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Unreachable {
                addr: self.addr.clone(),
                reason: format!("connect and handshake took over {DIAL_TIMEOUT:?}"),
            }),
        }
    }

    async fn dial_inner(&self) -> Result<SealedConn<PeerStream>, CallError> {
        let unreachable = |reason: String| CallError::Unreachable {
            addr: self.addr.clone(),
            reason,
        };
        let s = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        s.set_nodelay(true)
            .map_err(|e| unreachable(e.to_string()))?;
        let mut s: PeerStream = match &self.tls {
            Some(tls) => tls.connect(&self.addr, s).await.map_err(|e| {
                tracing::warn!(peer = %self.addr, error = %e, "peer TLS handshake failed");
                unreachable(format!("TLS handshake failed: {e}"))
            })?,
            None => Box::new(s),
        };
        let keys = auth::client_handshake(&mut s, &self.secret)
            .await
            .map_err(|e: AuthError| {
                tracing::warn!(peer = %self.addr, error = %e, "peer authentication failed");
                unreachable(e.to_string())
            })?;
        Ok(SealedConn::new(s, keys))
    }

    /// A new authenticated connection of its own (for streams such as the lease).
    pub async fn open_stream(&self) -> Result<SealedConn<PeerStream>, CallError> {
        self.dial().await
    }

    /// Opens the persistent connection now if there is none, so that a later call (a vote
    /// during a failover) does not pay for connect and handshake. Never waits for a call
    /// in progress.
    pub async fn warm(&self) {
        let Ok(mut slot) = self.conn.try_lock() else {
            return;
        };
        if slot.is_none() {
            if let Ok(s) = self.dial().await {
                *slot = Some(s);
            }
        }
    }

    /// Send `req` and wait for its response, all within `ttl`.
    ///
    /// The stream is taken out of the slot for the duration of the exchange and put back
    /// only after a complete response: a timeout or error drops it, so a late reply can
    /// never be mistaken for the answer to the next request.
    pub async fn call(&self, req: &PeerRequest, ttl: Duration) -> Result<PeerResponse, CallError> {
        let body = crate::codec::encode(req).map_err(FrameError::from)?;
        self.call_encoded(&body, ttl).await
    }

    /// Like `call`, with the request already encoded (its size is known beforehand).
    pub async fn call_encoded(
        &self,
        body: &[u8],
        ttl: Duration,
    ) -> Result<PeerResponse, CallError> {
        let exchange = async {
            let mut slot = self.conn.lock().await;
            let mut stream = match slot.take() {
                Some(s) => s,
                None => self.dial().await?,
            };
            stream.send_encoded(body.to_vec()).await?;
            let resp: PeerResponse = stream.recv(MAX_FRAME).await?;
            *slot = Some(stream);
            Ok(resp)
        };
        tokio::time::timeout(ttl, exchange)
            .await
            .unwrap_or(Err(CallError::Timeout(ttl)))
    }
}

type ClientMap = HashMap<(NodeId, Channel), Arc<PeerClient>>;

/// Shared registry of peer connections, keyed by (peer id, channel).
#[derive(Clone)]
pub struct PeerPool {
    secret: Arc<[u8]>,
    tls: Option<Arc<PeerTlsContext>>,
    clients: Arc<Mutex<ClientMap>>,
}

impl PeerPool {
    /// `tls`: mutual TLS for every connection of the pool; `None` = plain TCP.
    pub fn new(secret: &[u8], tls: Option<Arc<PeerTlsContext>>) -> Self {
        Self {
            secret: secret.into(),
            tls,
            clients: Arc::default(),
        }
    }

    fn client(&self, addr: &str) -> Arc<PeerClient> {
        Arc::new(PeerClient::with_tls(
            addr.to_string(),
            self.secret.clone(),
            self.tls.clone(),
        ))
    }

    /// The client for `id` on `channel`; replaced if the peer's address changed.
    pub fn get(&self, id: NodeId, addr: &str, channel: Channel) -> Arc<PeerClient> {
        let mut map = match self.clients.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = map
            .entry((id, channel))
            .or_insert_with(|| self.client(addr));
        if entry.addr() != addr {
            *entry = self.client(addr);
        }
        entry.clone()
    }

    /// Forget every connection (used at shutdown so sockets close promptly).
    pub fn clear(&self) {
        match self.clients.lock() {
            Ok(mut m) => m.clear(),
            Err(poisoned) => poisoned.into_inner().clear(),
        }
    }
}

/// openraft's network factory: hands out cheap per-target handles over the pool.
pub struct NetworkFactory {
    pub(crate) self_id: NodeId,
    pub(crate) pool: PeerPool,
    pub(crate) lease: Arc<Lease>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> Self::Network {
        PeerNetwork {
            self_id: self.self_id,
            target,
            client: self.pool.get(target, &node.raft_addr, Channel::Raft),
            lease: self.lease.clone(),
        }
    }
}

/// openraft's view of one peer.
pub struct PeerNetwork {
    self_id: NodeId,
    target: NodeId,
    client: Arc<PeerClient>,
    lease: Arc<Lease>,
}

impl PeerNetwork {
    fn map_err<E: std::error::Error>(
        &self,
        e: CallError,
        action: RPCTypes,
    ) -> RPCError<NodeId, PeerNode, E> {
        match e {
            CallError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id: self.self_id,
                target: self.target,
                timeout,
            }),
            CallError::Io(_) => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, PeerNode, E> {
        let e = std::io::Error::other("peer answered with the wrong response type");
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        let entries = rpc.entries.len() as u64;
        let req = PeerRequest::AppendEntries(rpc);
        // Entries may be MiBs (whole configs): encoded off the lease's runtime.
        let size_hint = if entries > 0 {
            crate::offload::OFFLOAD_AT
        } else {
            0
        };
        let body = crate::offload::cpu(size_hint, move || crate::codec::encode(&req))
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if body.len() > MAX_APPEND_BYTES && entries > 1 {
            // openraft retries with at most this many entries for a while.
            let hint = (entries / 2).max(1);
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        let resp = self.client.call_encoded(&body, option.hard_ttl()).await;
        match resp.map_err(|e| self.map_err(e, RPCTypes::AppendEntries))? {
            PeerResponse::AppendEntries(r) => {
                if let Ok(AppendEntriesResponse::HigherVote(v)) = &r {
                    self.lease
                        .observe_term(v.leader_id().term, "a follower has a newer term");
                }
                r.map_err(|e| RemoteError::new(self.target, e).into())
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, PeerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let req = PeerRequest::InstallSnapshot(rpc);
        let resp = self.client.call(&req, option.hard_ttl()).await;
        match resp.map_err(|e| self.map_err(e, RPCTypes::InstallSnapshot))? {
            PeerResponse::InstallSnapshot(r) => {
                r.map_err(|e| RemoteError::new(self.target, e).into())
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        let term = rpc.vote.leader_id().term;
        let req = PeerRequest::Vote(rpc);
        let sent = now_us();
        let resp = self.client.call(&req, option.hard_ttl()).await;
        match resp.map_err(|e| self.map_err(e, RPCTypes::Vote))? {
            PeerResponse::Vote(r, report) => {
                if let Ok(v) = &r {
                    let received = now_us();
                    if v.vote_granted {
                        self.lease
                            .with(|s| s.on_vote_reply(term, self.target, sent, &report, received));
                    }
                    self.lease
                        .observe_term(v.vote.leader_id().term, "a voter has a newer term");
                }
                r.map_err(|e| RemoteError::new(self.target, e).into())
            }
            _ => Err(self.unexpected()),
        }
    }
}
