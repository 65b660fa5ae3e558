//! fulcrum-vip: filled in by its own issue.
