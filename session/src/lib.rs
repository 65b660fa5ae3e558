//! fulcrum-session: filled in by its own issue.
