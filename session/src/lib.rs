//! fulcrum-session: where session affinity lives.
//!
//! The data plane asks [`AffinityStore::lookup`] which backend a session is pinned to,
//! [`AffinityStore::pin`]s new sessions (first writer wins across nodes) and
//! [`AffinityStore::repin`]s a session whose backend died (compare-and-set, so all nodes follow
//! one new pin). Pins live in Redis (one server, a Sentinel-managed master, or a Redis
//! Cluster) so every balancer node, and the node that takes the VIP after a failover, sees the
//! same pins. The store never fails a request: Redis trouble turns into `Unavailable` / `None`,
//! and the caller uses [`fallback_pick`], which gives the same answer on every node. A pin
//! Redis cannot take is held by the node ([`Pinned::Held`]) and written when Redis is back.
//!
//! Layout:
//! * `store`: [`AffinityStore`], [`Lookup`], [`Pinned`], [`StoreState`]: the facade.
//! * `inner`: the shared state and `call` (one command through the breaker, with metrics).
//! * `options`: [`StoreOptions`], parsing of direct, Sentinel and Cluster targets.
//! * `cache`: sharded local cache with freshness window and TTL-refresh bookkeeping.
//! * `pending`: the pins held while Redis could not take them; `flush` writes them.
//! * `breaker`: circuit breaker that skips Redis while it is failing or frozen.
//! * `owners`: Redis Cluster slot map and one breaker per master.
//! * `link`: the connection (and Sentinel resolution), per-call deadline; `conn`: one handle
//!   for a single server or a cluster.
//! * `cluster_watch`: keeps a cluster's slot map and breakers current, rebuilds a wedged
//!   connection.
//! * `sentinel_watch`: follows the sentinels' `+switch-master` announcements.
//! * `master`: [`MasterInfo`], which server is written to and since when.
//! * `commands`: key layout, GET/GETEX/EXPIRE and the Lua pin / re-pin scripts.
//! * `monitor`: background probe / health ping / Sentinel follower / held-pin writer.
//! * `metrics`: counters and the [`StoreMetrics`] snapshot.
//! * `fallback`: [`fallback_pick`] (rendezvous hashing).
//! * `window`: cluster-wide request counts for rate limits
//!   ([`AffinityStore::take_from_window`]).
//! * `error`: [`SessionError`], only returned by construction.
//!
//! Needs Redis 6.2 or newer (GETEX).
//!
//! How the data plane is meant to use it (`healthy` and `pick` stand for the pool's own
//! health view and balancing algorithm):
//!
//! ```no_run
//! use fulcrum_session::{fallback_pick, AffinityStore, Lookup};
//!
//! async fn choose(
//!     store: &AffinityStore,
//!     pool: &str,
//!     key: &str,
//!     healthy: &[&str],
//!     pick: impl Fn() -> String,
//! ) -> Option<String> {
//!     match store.lookup(pool, key).await {
//!         Lookup::Pinned(b) if healthy.contains(&b.as_str()) => Some(b),
//!         // Pinned to a dead backend: re-pin once; every node follows the winner.
//!         Lookup::Pinned(dead) => store.repin(pool, key, &dead, &pick()).await.or_else(|| {
//!             store.note_fallback();
//!             fallback_pick(key, healthy).map(|i| healthy[i].to_string())
//!         }),
//!         // New session: first writer wins, so two nodes seeing it at once agree; if Redis
//!         // cannot take the pin now, this node holds it and writes it later.
//!         Lookup::Absent => store.pin(pool, key, &pick()).await.map(|p| p.backend().to_string()),
//!         // Redis away: the same answer on every node, without talking to anyone.
//!         Lookup::Unavailable => {
//!             store.note_fallback();
//!             fallback_pick(key, healthy).map(|i| healthy[i].to_string())
//!         }
//!     }
//! }
//! ```

mod breaker;
mod cache;
mod cluster_watch;
mod commands;
mod conn;
mod error;
mod fallback;
mod flush;
mod inner;
mod link;
mod master;
mod metrics;
mod monitor;
mod options;
mod owners;
mod pending;
mod sentinel_watch;
mod store;
mod window;

pub use error::SessionError;
pub use fallback::fallback_pick;
pub use master::MasterInfo;
pub use metrics::StoreMetrics;
pub use options::{StoreOptions, DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL, DEFAULT_HELD_CAPACITY};
pub use store::{AffinityStore, Lookup, Pinned, StoreState};
