//! [`Conn`]: one handle for the commands, whatever the deployment behind it.
//!
//! A single Redis (direct or found through Sentinel) is reached through an auto-reconnecting
//! `ConnectionManager`; a Redis Cluster through the redis crate's `cluster_async` connection,
//! which routes each command by its key's slot and follows `MOVED` / `ASK` redirections by
//! itself. Both are cheap to clone (a handle onto one multiplexed connection or one cluster
//! task), so every command takes its own clone.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A connection to wherever the pins live.
#[derive(Clone)]
pub enum Conn {
    /// One server (direct URL or the master named by Sentinel).
    Single(ConnectionManager),
    /// A Redis Cluster; keys are routed by slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
