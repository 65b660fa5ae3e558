//! Whole-file checks that serde cannot express: names that must exist, no duplicates,
//! addresses that must parse, ranges, and options that need other options.
//!
//! Every check reports through [`Report`], which turns a TOML path into `file:line:column`
//! of the offending key or value, so one run lists every problem in file order.
//!
//! Choices made here (documented for operators):
//! - An http/https listener with `pool` set is refused: those listeners pick pools by
//!   `[[route]]`; only tcp listeners name a pool directly (and must).
//! - `hash_key` is only required for `consistent-hash`, but its syntax is checked wherever
//!   it is set.
//! - Hosts are IP literals; names that need DNS are refused.

mod bgp;
mod discover;
mod dns;
mod health;
mod listeners;
mod local;
mod pools;
mod routes;
mod scale;
mod splits;
mod vips;

use crate::error::ConfigError;
use crate::span::{Locator, Seg};
use crate::{Config, ConfigErrors};
use std::time::Duration;

/// Collects errors, each located at a TOML path.
pub(crate) struct Report<'t> {
    locator: Locator<'t>,
    text: &'t str,
    origin: &'t str,
    errors: Vec<(usize, ConfigError)>,
}

impl<'t> Report<'t> {
    fn new(text: &'t str, origin: &'t str) -> Self {
        Report {
            locator: Locator::new(text),
            text,
            origin,
            errors: Vec::new(),
        }
    }

    /// Records `message` at the key or value `path` names (or its closest existing parent).
    pub(crate) fn error(&mut self, path: &[Seg<'_>], message: impl Into<String>) {
        let offset = self.locator.offset(path);
        let err = ConfigError::at_offset(self.origin, self.text, offset, message);
        self.errors.push((offset, err));
    }

    /// Refuses a zero duration: a zero timeout or interval would spin or fail at once.
    pub(crate) fn positive(&mut self, path: &[Seg<'_>], what: &str, d: Duration) {
        if d.is_zero() {
            self.error(path, format!("{what} must be greater than 0"));
        }
    }

    /// Listener and pool names appear in metrics labels, logs and `ctl drain POOL`.
    pub(crate) fn name(&mut self, path: &[Seg<'_>], kind: &str, name: &str) {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            self.error(
                path,
                format!("{kind} name `{name}` must be non-empty and use only letters, digits, `-`, `_` and `.`"),
            );
        }
    }

    fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        // Stable sort: errors at one spot keep the order the checks found them in.
        self.errors.sort_by_key(|(offset, _)| *offset);
        Err(ConfigErrors(
            self.errors.into_iter().map(|(_, e)| e).collect(),
        ))
    }
}

/// Runs every check on a parsed `config` whose source is `text`.
pub(crate) fn validate(config: &Config, text: &str, origin: &str) -> Result<(), ConfigErrors> {
    let mut report = Report::new(text, origin);
    local::check(config, &mut report);
    if let Some(b) = &config.bgp {
        bgp::check(b, &mut report);
    }
    if let Some(d) = &config.dns {
        dns::check(config, d, &mut report);
    }
    listeners::check(config, &mut report);
    routes::check(config, &mut report);
    splits::check(config, &mut report);
    pools::check(config, &mut report);
    report.finish()
}
