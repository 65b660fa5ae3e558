//! Shared helpers for fulcrum's end-to-end tests.
//!
//! - `backend` — small real HTTP backends (tokio + hyper) that name themselves in an
//!   `x-backend` header and can be slowed, failed, toggled unhealthy or killed.
//! - `process` — starts a real `fulcrum` binary with a generated config and stops it by PID.
//! - `client`  — a plain HTTP client for the tests, plus raw-socket helpers.
//! - `tls`     — a test CA (rcgen), certificates on disk, an HTTPS client.
//! - `tcp_backend` — TCP echo backends (optionally reading PROXY v2) and redis-server.
//! - `wire`    — byte-exact HTTP/1.1 message reading (heads, chunked, close-delimited).
//! - `raw_backend` — a scripted raw-socket HTTP/1.1 backend that records what it saw.
//! - `hostile` — a corpus of attack requests, raw send-and-see, a backend answering early.
//! - `mitm`    — a forwarding man-in-the-middle that alters one frame on command.
//! - `choked_backend` — a backend whose accept queue the test fills, so SYNs get dropped.
//! - `keepalive` — one request at a time on a held HTTP/1.1 connection; a web + TLS node.

pub mod backend;
pub mod browser;
pub mod choked_backend;
pub mod client;
pub mod cluster;
pub mod config;
pub mod h2client;
pub mod h2raw;
pub mod hostile;
pub mod keepalive;
pub mod mitm;
pub mod netns;
pub mod process;
pub mod raw_backend;
pub mod redis;
pub mod tcp_backend;
pub mod tls;
pub mod vipbed;
pub mod wire;

/// A free TCP port on 127.0.0.1: bound then released, and never the same port twice
/// in one test process. The kernel may hand a just-released port out again, so two
/// calls in a row (a node's admin and listener addresses) could otherwise collide.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..1000 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if port == 0 {
            continue;
        }
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    0
}
