//! Loading a config file the way both `fulcrum run` and `fulcrum check` need it: read it,
//! parse it, and check the peer TLS files it names the way Raft will load them. Every error
//! names the file (and, where it can, the line and column).

use std::path::Path;

use fulcrum_config::{Config, ConfigErrors};

/// A parsed config with its source text and the name errors are reported under.
pub struct Loaded {
    pub config: Config,
    pub text: String,
    pub origin: String,
}

/// Why a config file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{origin}:1:1: cannot read: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
}

/// Reads, parses and checks the peer TLS files of the config at `path`.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        origin: origin.clone(),
        source,
    })?;
    let config = fulcrum_config::parse(&text, &origin)?;
    // Before anything is bound: a broken peer certificate is a config error.
    crate::control::cluster::check_peer_tls(&config, &text, &origin)?;
    Ok(Loaded {
        config,
        text,
        origin,
    })
}
