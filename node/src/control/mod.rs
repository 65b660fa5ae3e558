//! The control side of the node: what decides who holds the VIP and what turns local
//! observations into replicated state, apart from the data plane that serves requests.
//!
//! - `thread`    — the control runtime on its own OS threads (real-time when allowed);
//!   Raft, the lease and the VIP guard run there.
//! - `vip_guard` — leadership -> kernel fence and address, and the synchronous step-down.
//! - `reporter`  — this node's health verdicts, committed through Raft until the
//!   replicated value matches them.
//! - `vip_agree` — one `[vip]` per cluster: changes refused at run time, peers compared
//!   at start.
//! - `events`    — this node's recent transitions (leader, VIP, backends, config).
//! - `gather`    — the cluster view: every member's own `/status`, asked by one node.

pub mod events;
pub mod gather;
pub mod reporter;
pub mod thread;
pub mod vip_agree;
pub mod vip_guard;
