//! fulcrum-raft: openraft 0.9 type config, durable redb log/vote store, the replicated
//! `ClusterState` state machine, and an authenticated TCP peer transport (optionally
//! over mutual TLS with a cluster CA).
//!
//! Use: `start(RaftOptions)` -> `RaftHandle`. Watch `status()` (role, leader, term),
//! `lease().leadership()` (until when this node may hold the VIP, and from when) and
//! `cluster_state()` (config TOML + version, node
//! registry, health observations, drains, VIP holder); change things with `propose`
//! (works on any node: followers forward to the leader; `NoQuorum` after <= 3 s).
//! Effective backend health: `ClusterState::backend_healthy(pool, backend, live, policy)`.
//!
//! Layout: `types` (openraft type config, `Command`), `state` (`ClusterState`, policy),
//! `db` + `log_store` + `state_machine` (redb storage), `codec` + `frame` + `auth` +
//! `sealed` (every frame MACed with per-connection keys) + `rpc` (wire), `tls` (optional
//! mutual TLS under the secret check), `network` (client side) + `server` (accept side) + `admission` (connection slots), `ops` + `propose`
//! (leader routing), `lease` (leases, fence protocol, pings), `detector` (failure
//! detection, pre-vote), `events` (the failover chain), `status`, `bootstrap` + `node`
//! (the facade), `vip_plan` (where each `[[vip]]` should live) + `vip_grant` (who may hold
//! one now: the leader's short grants), `liveness` (which members the leader judges live, for
//! the replicated record DNS answers read), `split` (split routes' replicated weights and
//! their shift).
//! Never wipe the data dir of a node that is still a member (Raft would lose votes).

pub mod admission;
pub mod auth;
mod bootstrap;
pub mod codec;
pub mod db;
pub mod detector;
pub mod discovered;
pub mod events;
pub mod frame;
mod handover;
pub mod lease;
pub mod liveness;
pub mod log_store;
pub mod network;
pub mod node;
mod offload;
pub mod ops;
pub mod propose;
pub mod rpc;
pub mod sealed;
pub mod server;
pub mod split;
pub mod start;
pub mod state;
pub mod state_machine;
pub mod status;
pub mod successor;
pub mod tls;
pub mod types;
pub mod vip_grant;
pub mod vip_plan;

pub use discovered::{DiscoveredMember, DiscoveredSet};
pub use events::{EventLog, FailoverEvent};
pub use lease::{HookSlot, Leadership, Lease, LeaseTiming, StepDownHook};
pub use node::{HandOff, MemberInfo, RaftError, RaftHandle, RaftOptions};
pub use ops::WriteCheck;
pub use propose::ProposeError;
pub use split::{Phase, Shift, ShiftPlan, SplitState, Weights, Window};
pub use start::{own_peer_ip, start};
pub use state::{ClusterState, Policy};
pub use status::{RaftStatus, Role};
pub use tls::{PeerTlsContext, PeerTlsError, TlsFile};
pub use types::{ApplyReport, Command, NodeId, PeerNode, Response, TypeConfig};
