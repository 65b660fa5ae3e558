//! fulcrum-raft: openraft 0.9 type config, durable redb log/vote store, the replicated
//! `ClusterState` state machine, and an authenticated TCP peer transport.

pub mod auth;
mod bootstrap;
pub mod codec;
pub mod db;
pub mod frame;
pub mod log_store;
pub mod network;
pub mod node;
pub mod ops;
pub mod propose;
pub mod rpc;
pub mod server;
pub mod state;
pub mod state_machine;
pub mod status;
pub mod types;

pub use node::{start, MemberInfo, RaftError, RaftHandle, RaftOptions};
pub use propose::ProposeError;
pub use state::{ClusterState, Policy};
pub use status::{RaftStatus, Role};
pub use types::{Command, NodeId, PeerNode, Response, TypeConfig};
