//! The control side of the node: what decides who holds the VIP and what turns local
//! observations into replicated state, apart from the data plane that serves requests.
//!
//! - `cluster`   — the node's Raft member: start, proposals out, the health reporter.
//! - `apply`     — the one place a parsed config becomes the running one (listeners bound,
//!   snapshot swapped, checkers restarted), and the record of a version that failed.
//! - `follow`    — committed Raft state -> this node (config versions, health, drains).
//! - `thread`    — the control runtime on its own OS threads (real-time when allowed);
//!   Raft, the lease and the VIP guard run there.
//! - `vip_guard` — leadership -> kernel fence and address, and the synchronous step-down.
//! - `reporter`  — this node's health verdicts, committed through Raft until the
//!   replicated value matches them.
//! - `vip_spread` — several VIPs (`[[vip]]`): each node holds what the assignment gives it
//!   under the leader's short grants; the leader places and commits the assignment.
//! - `vip_agree` — one `[vip]` per cluster: changes refused at run time, peers compared
//!   at start.
//! - `events`    — this node's recent transitions (leader, VIP, backends, config).
//! - `gather`    — the cluster view: every member's own `/status`, asked by one node.
//! - `bgp`       — BGP mode: announce or withdraw the service prefixes through BIRD.
//! - `bird`      — the BIRD 2 driver (`birdc`, the config fragment).
//! - `live_nodes` — the leader's committed record of live members (for DNS answers).
//! - `shift`     — blue-green and canary: `ctl shift`'s start and abort, and the leader's
//!   shifter that steps a split route's weights or rolls them back (`shift_plan`: the
//!   arithmetic and the state each step leads to).
//! - `discovery` — backends from DNS: the leader resolves each `discover` pool and
//!   proposes its set; a joining backend waits for its health check, a vanished one drains.
//! - `scale_hook` — the signal to scale: samples pool saturation, calls the webhook
//!   (`scale_decide` is the rule: how long past a bound, the cool-down).

pub mod apply;
pub mod bgp;
pub mod bird;
pub mod cluster;
pub mod discovery;
pub mod events;
pub mod follow;
pub mod gather;
pub mod live_nodes;
pub mod reporter;
pub mod scale_decide;
pub mod scale_hook;
pub mod shift;
pub mod shift_plan;
pub mod steal;
pub mod thread;
pub mod vip_agree;
pub mod vip_guard;
pub mod vip_spread;
