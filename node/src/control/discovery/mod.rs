//! Backends found through service discovery (issue 25 items 1 and 5).
//!
//! - `source` — the interface every source meets (`Source::next` -> `Word`): today DNS,
//!   tomorrow a Kubernetes endpoints watch as one more arm.
//! - `dns`    — the DNS source (hickory-resolver against the pool's resolvers, TTL-paced).
//! - `driver` — one task per `discover` pool on the leader (or a node alone): words ->
//!   the pool's next set (joins, drains, kept on failure), published through `sink`.
//! - `sink`   — Raft (the leader proposes, every node runs the committed set) or, alone,
//!   this node's data plane.
//!
//! The plane's side (sets merged into each snapshot, drain flags) is `crate::discovered`.

mod dns;
mod driver;
mod sink;
mod source;

pub use driver::spawn;
pub use sink::Sink;
