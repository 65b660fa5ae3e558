//! The transport-neutral request core: decisions both HTTP paths (the hand-written HTTP/1.1
//! codec in `h1` and hyper's in `proxy`) make the same way, so a policy is written once.
//!
//! - `retry` — after a failed attempt: the same backend again, another one, or give up;
//!   and whether the failure is the backend's (eject it locally).

pub mod retry;
