//! The transport-neutral request core: what both HTTP paths (the hand-written HTTP/1.1
//! codec in `h1` and hyper's in `proxy`) decide the same way, written once. Neither codec
//! imports the other; both import this.
//!
//! - `conn`       — what is known about the client connection (`ConnInfo`).
//! - `authority`, `path` — the request target checked and normalised (400 when malformed).
//! - `target`     — the same checks on an `http::Request` (hyper's and HTTP/2's codecs).
//! - `lookup`     — header lookup over either path's header representation.
//! - `split`      — the pool of a routed request: its route's pool, or a weighted draw
//!   over a split route's pools where a pinned session stays on its pool.
//! - `choice`     — backend choice: affinity cookie, Redis pin, then the pool's algorithm.
//! - `failure`    — why a raw backend exchange failed, and what that calls for.
//! - `retry`      — after a failed attempt: same backend, another one, or give up; eject?
//! - `stale`      — a pooled connection reused unchecked, sent again once if found closed.
//! - `course`     — one request through its attempts: the backend it is on, the next
//!   attempt after a failure (the retry rule, ejection, budget, overall timeout).
//! - `redispatch` — local ejection and the other backend (moving a pinned session).
//! - `answered`   — what a relaying codec records when a backend's final head arrives.
//! - `finish`     — accounting when a request is done (metrics, access log, load).
//! - `rate_limit` — per-route request rates per client key (429 beyond them);
//!   `cluster_limit` the count shared by all nodes in Redis (`scope = "cluster"`).
//! - `timeouts`   — how long a try waits: pool response timeout, route per-try and overall.
//! - `budget`     — a pool's retry budget (retries as a share of requests).
//! - `breaker`    — circuit breaking: per-backend caps on requests and pending connects.
//! - `outlier`    — ejection after consecutive 5xx or gateway errors (`pool.outlier`);
//!   `outlier_state` what it keeps per pool and per backend.
//! - `local`      — the responses fulcrum makes itself.

pub(crate) mod answered;
pub mod authority;
pub mod breaker;
pub mod budget;
pub mod choice;
pub mod cluster_limit;
pub mod conn;
pub(crate) mod course;
pub(crate) mod failure;
pub(crate) mod finish;
pub mod local;
pub mod lookup;
pub mod outlier;
pub mod outlier_state;
pub mod path;
pub mod rate_limit;
pub mod redispatch;
pub mod retry;
pub(crate) mod split;
pub(crate) mod stale;
pub(crate) mod target;
pub mod timeouts;
