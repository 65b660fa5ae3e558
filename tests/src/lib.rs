//! Helpers for fulcrum's end-to-end tests. Namespaces, process handling and
//! redis-server come from the shared test bed (`tests/bed`, crate `fulcrum-testbed`).
//!
//! - `bgpbed`  — BGP / ECMP bed: three nodes with their own BIRD, a BIRD router, a client.
//! - `backend` — the test bed's real HTTP backends (tokio + hyper) that name themselves in
//!   an `x-backend` header and can be slowed, failed, toggled unhealthy or killed.
//! - `process` — starts a real `fulcrum` binary with a generated config and stops it by PID.
//! - `cluster` — `LocalCluster`: the test bed's cluster of real `fulcrum` processes on
//!   loopback (free ports, `listen_ip` per node), with waits for a leader and a version.
//! - `client`  — a plain HTTP client for the tests, plus raw-socket helpers.
//! - `tls`     — a test CA (rcgen), certificates on disk, an HTTPS client.
//! - `tcp_backend` — TCP echo backends (optionally reading PROXY v2), raw RESP commands.
//! - `wire`    — byte-exact HTTP/1.1 message reading (heads, chunked, close-delimited).
//! - `raw_backend` — a scripted raw-socket HTTP/1.1 backend that records what it saw.
//! - `hostile` — a corpus of attack requests, raw send-and-see, a backend answering early.
//! - `mitm`    — a forwarding man-in-the-middle that alters one frame on command.
//! - `choked_backend` — a backend whose accept queue the test fills, so SYNs get dropped.
//! - `keepalive` — one request at a time on a held HTTP/1.1 connection; a web + TLS node.
//! - `grpc`    — a real gRPC backend (h2c) and client (tonic, raw-bytes codec).
//! - `vipbed`  — three nodes with a VIP in namespaces; probers and holder pollers.
//! - `spreadbed` — that bed with three `[[vip]]` addresses; who holds each.
//! - `arp_watch` — "who has" each spread address every ~20 ms from the client.

/// The real HTTP backends: the shared test bed's.
pub use fulcrum_testbed::backend;
pub mod arp_watch;
pub mod bgpbed;
pub mod browser;
pub mod choked_backend;
pub mod client;
pub mod cluster;
pub mod config;
pub mod grpc;
pub mod h2client;
pub mod h2raw;
pub mod hostile;
pub mod keepalive;
pub mod mitm;
pub mod process;
pub mod raw_backend;
pub mod spreadbed;
pub mod tcp_backend;
pub mod tls;
pub mod vipbed;
pub mod wire;

/// A free loopback port (the shared test bed's, re-exported for the tests).
pub use fulcrum_testbed::ports::free_port;
