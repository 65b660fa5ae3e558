//! The control side of the node: everything that decides who holds the VIP, apart from
//! the data plane that serves requests.
//!
//! - `thread`    — the control runtime on its own OS threads (real-time when allowed);
//!   Raft, the lease and the VIP guard run there.
//! - `vip_guard` — leadership -> kernel fence and address, and the synchronous step-down.

pub mod thread;
pub mod vip_guard;
