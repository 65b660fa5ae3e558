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
//! - `service_link` — [`ServiceLink`]: a TUN link that carries the BGP-announced service
//!   addresses and vanishes with the process (BIRD then withdraws their routes).
//! - `fence`      — [`Fence`], the nftables fence: the node's kernel drops ARP / neighbour
//!   solicitations for the VIP and packets to it unless a lease element with a millisecond
//!   timeout is present, so a frozen or dead holder stops answering when its lease lapses.
//! - `error`      — [`VipError`].
//!
//! Every socket is opened in the network namespace of the thread that calls `start` (or
//! `remove_stale` / `is_present` / `Fence::install`).

mod announcer;
mod caps;
mod conns;
mod controller;
mod deadline;
mod error;
mod fence;
pub mod frames;
mod netlink;
mod options;
mod schedule;
mod service_link;
mod task;

pub use announcer::link_address;
pub use conns::tcp_peers_of;
pub use controller::{AddressDropper, VipController};
pub use error::VipError;
pub use fence::{fence_installed, remove_fence, Fence, Forward, RefreshMethod};
pub use netlink::{is_present, remove_stale};
pub use options::{parse_cidr, VipOptions, KERNEL_EXPIRY_SLACK};
pub use service_link::ServiceLink;
pub use task::AnnounceHook;
