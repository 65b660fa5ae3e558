//! The idle keep-alive connections of one backend.
//!
//! A stack, so the most recently used connection goes out first: it is the one least
//! likely to have been closed by the backend's own keep-alive timeout, and the ones at
//! the bottom age out together (`reap`). A connection is only put back once its
//! response was read to the end, so every connection here is free for a new request.
//! The lock is per backend and held for a push or a pop, never across an await.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many idle connections one backend keeps at most; more are closed on return.
const MAX_IDLE: usize = 1024;

/// A connection that can wait in an idle stack.
pub(super) trait Pooled {
    /// The backend closed it (or it is otherwise unusable) as far as is known
    /// without blocking.
    fn is_closed(&self) -> bool;
}

struct Idle<C> {
    sender: C,
    since: Instant,
}

/// The idle connections of one backend.
pub(super) struct IdleStack<C> {
    conns: Mutex<Vec<Idle<C>>>,
}

impl<C> Default for IdleStack<C> {
    fn default() -> Self {
        IdleStack {
            conns: Mutex::new(Vec::new()),
        }
    }
}

impl<C: Pooled> IdleStack<C> {
    /// The most recently returned connection that is still open and younger than
    /// `max_idle`. Older ones are dropped, which closes them.
    pub(super) fn take(&self, max_idle: Duration) -> Option<C> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(idle) = conns.pop() {
            if idle.since.elapsed() >= max_idle {
                // Everything below is older still.
                conns.clear();
                return None;
            }
            if !idle.sender.is_closed() {
                return Some(idle.sender);
            }
        }
        None
    }

    /// Returns a connection whose last response was read completely.
    pub(super) fn put(&self, sender: C) {
        if sender.is_closed() {
            return;
        }
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if conns.len() < MAX_IDLE {
            conns.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Closes connections idle for `max_idle` or longer and those the backend closed.
    pub(super) fn reap(&self, max_idle: Duration) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|idle| idle.since.elapsed() < max_idle && !idle.sender.is_closed());
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }
}
