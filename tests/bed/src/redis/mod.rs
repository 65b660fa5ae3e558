//! A real `redis-server` without persistence.
//!
//! - [`server`] — the one place a `redis-server` process is started: on loopback or in a
//!   namespace, stopped by the PID we hold, started again on the same address.
//! - [`test_redis`] — a loopback instance for one test ([`TestRedis`]).
//! - [`stats`]  — Redis's own count of the commands it ran (`INFO commandstats`).

pub mod server;
pub mod stats;
pub mod test_redis;

pub use server::RedisServer;
pub use stats::{command_stats, round_trips, CommandStats};
pub use test_redis::TestRedis;
