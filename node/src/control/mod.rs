//! The control side of a node: what turns local observations into replicated state and
//! replicated state into the node's behaviour, apart from the data plane.
//!
//! - `reporter` — this node's health verdicts, committed through Raft until the
//!   replicated value matches them.

pub mod reporter;
