//! Shared helpers for fulcrum's end-to-end tests.
