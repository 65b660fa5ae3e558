//! fulcrum-vip: the floating address. It knows nothing of Raft: it is told hold or release.
//!
//! Layout:
//! - `controller` — [`VipController`], the thread-safe hold/release handle.
//! - `task`       — the background task that owns the address: add with a kernel lifetime,
//!   renew every lifetime/4 (the kernel removes the VIP if the process dies or freezes),
//!   delete on release, announce on the schedule.
//! - `schedule`   — when announcements are due (bursts, then a slow refresh).
//! - `netlink`    — rtnetlink address add/renew/delete/lookup; [`remove_stale`], [`is_present`].
//! - `announcer`  — the AF_PACKET socket that sends the frames.
//! - `frames`     — gratuitous ARP and unsolicited IPv6 NA byte layouts.
//! - `options`    — [`VipOptions`] and its defaults.
//! - `caps`       — the CAP_NET_ADMIN check at start.
//! - `error`      — [`VipError`].
//!
//! Every socket is opened in the network namespace of the thread that calls `start` (or
//! `remove_stale` / `is_present`).

mod announcer;
mod caps;
mod controller;
mod deadline;
mod error;
pub mod frames;
mod netlink;
mod options;
mod schedule;
mod task;

pub use announcer::link_address;
pub use controller::VipController;
pub use error::VipError;
pub use netlink::{is_present, remove_stale};
pub use options::{parse_cidr, VipOptions};
