//! fulcrum-raft: openraft 0.9 type config, durable redb log/vote store, the replicated
//! `ClusterState` state machine, and an authenticated TCP peer transport.

pub mod codec;
pub mod db;
pub mod log_store;
pub mod state;
pub mod state_machine;
pub mod types;

pub use state::{ClusterState, Policy};
pub use types::{Command, NodeId, PeerNode, Response, TypeConfig};
