//! fulcrum-config: the balancer's declarative model.
//!
//! Layout:
//! - `model`    — typed structs for every TOML table, with defaults.
//! - `error`    — `ConfigError` (one problem, with `file:line:column`) and `ConfigErrors`.
//! - `validate` — whole-file checks (names exist, no duplicates, addresses parse, ranges).
//!
//! Nothing here does I/O beyond reading the file it is asked to load.

mod error;
mod model;
mod validate;

pub use error::{ConfigError, ConfigErrors};
pub use model::*;

use std::path::Path;

/// Reads and validates a config file. Every error names `file:line:column`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(ConfigError::whole_file(
            path.display().to_string(),
            format!("cannot read: {e}"),
        ))
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates config text; `origin` names it in error messages.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    let config: Config = toml::from_str(text)
        .map_err(|e| ConfigErrors::single(ConfigError::from_toml(origin, text, &e)))?;
    validate::validate(&config, text, origin)?;
    Ok(config)
}
