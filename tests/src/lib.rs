//! Shared helpers for fulcrum's end-to-end tests.
//!
//! - `backend` — small real HTTP backends (tokio + hyper) that name themselves in an
//!   `x-backend` header and can be slowed, failed, toggled unhealthy or killed.
//! - `process` — starts a real `fulcrum` binary with a generated config and stops it by PID.
//! - `client`  — a plain HTTP client for the tests, plus raw-socket helpers.

pub mod backend;
pub mod client;
pub mod config;
pub mod process;

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
