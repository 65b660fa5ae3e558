//! The one test bed of `tests/` (end-to-end tests) and `chaos/` (the chaos suite):
//! the real parts both of them start, and tear down again even after a failure.
//!
//! - [`backend`] — a real HTTP backend (in the test's process, or as `fulcrum-chaos
//!   backend`): names itself, can be slowed, failed, hung, made unhealthy or killed.
//! - [`load`]   — the open-loop load client (a fixed rate, cookie jars per simulated
//!   user, every request's fate); [`httpc`] — one request on a fresh connection.
//! - [`cluster`] — a cluster of real `fulcrum` processes: the node file (node-local and
//!   cluster-wide parts), one node's start/signal/kill/wait/log, nodes in namespaces or
//!   on loopback ports with admin calls and `fulcrum ctl`.
//! - [`netns`]  — the one way a bed adds a namespace ([`netns::Namespace`], deleted on
//!   drop), commands and threads inside a named namespace, the root check.
//! - [`bridge`] — a bridge in its own namespace and one namespace per host, joined by veth
//!   pairs, addresses inside 10.77.0.0/16 only (IPv6 when asked: fd77::/16), no route
//!   out; deleted on drop.
//! - [`nsbackend`] — a [`backend::TestBackend`] serving inside a namespace until dropped.
//! - [`pdns`]   — a real PowerDNS server (bind backend) serving one zone on loopback, its
//!   zone rewritten and reloaded by the test, stopped by PID.
//! - [`periodic`] — a probe run every so often inside a namespace, every call's result kept.
//! - [`ports`]  — free loopback ports, never the same twice in one process.
//! - [`process`] — a child process we started (log file, own process group), signalled
//!   and stopped by its PID; the `fulcrum` binary under test.
//! - [`redis`]  — a real `redis-server` without persistence: the one process starter (on
//!   loopback or in a namespace, a Sentinel or replica too, killed and restarted by PID),
//!   a loopback instance for tests, `INFO commandstats`.
//! - [`testbed`] — one test's bed: short host names in 10.77.70.0/24, unique per process.
//! - [`error`]  — the crate's one error type.

pub mod backend;
pub mod bridge;
pub mod cluster;
pub mod error;
pub mod httpc;
pub mod load;
pub mod netns;
pub mod nsbackend;
pub mod pdns;
pub mod periodic;
pub mod ports;
pub mod process;
pub mod redis;
pub mod testbed;

pub use error::BedError;
