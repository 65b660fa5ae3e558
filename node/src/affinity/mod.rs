//! Session affinity: which backend a returning user belongs to.
//!
//! - `cookie`: stateless, a signed cookie names the backend (`cookie.rs`).
//! - `learn`, `header`, `source-ip`: pins shared through Redis (the session crate), with a
//!   signed fallback cookie for when Redis cannot answer (`fallback.rs`).

pub mod cookie;
pub mod fallback;
pub mod shared;
