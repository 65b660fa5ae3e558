//! fulcrum-raft: filled in by its own issue.
