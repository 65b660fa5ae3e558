//! TLS towards backends: the client side of pools with `tls = { ... }`.
//!
//! A pool with `tls` gets a rustls client config that:
//! - trusts the CA bundle in `tls.ca`, or the system bundle when absent (read from the
//!   usual Debian / Red Hat / Alpine paths, no extra crate);
//! - verifies the name `tls.server_name` (also sent as SNI), or by default the
//!   backend's IP address (rustls then checks an IP subjectAltName and sends no SNI,
//!   since SNI cannot carry an address);
//! - presents `tls.cert` + `tls.key` as a client certificate (mutual TLS) when set.
//!
//! The data plane (`upstream`) and the health checker both use it.

use super::certs::{read_chain, read_key};
use super::TlsError;
use crate::upstream::TlsSettings;
use fulcrum_config::Pool;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Where distributions keep the system CA bundle.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The TLS settings of a pool's upstream connections: `None` for a pool without
/// `tls`. Config apply checks backend TLS first (`check_config`), so an error here
/// means a CA or key file broke in between; the pool then gets a config that trusts
/// nothing, and TLS connects fail (502) instead of the whole config being lost.
pub fn upstream_settings(pool: &Pool) -> Option<TlsSettings> {
    pool.tls.as_ref()?;
    let config = client_config(pool).or_else(|e| {
        tracing::error!(pool = %pool.name, error = %e, "backend TLS unusable; TLS connects will fail");
        trust_nothing()
    });
    // A pool with `protocol = "h2"` asks for HTTP/2 by ALPN (and checks it got it).
    let config = config.map(|mut c| {
        if !pool.protocol.is_http1() {
            c.alpn_protocols = vec![b"h2".to_vec()];
        }
        c
    });
    // Even then the pool stays a TLS pool: without any config its connects fail.
    Some(TlsSettings::new(
        config.ok().map(Arc::new),
        configured_server_name(pool),
    ))
}

/// The pool's `tls.server_name`, parsed (`check_config` has refused invalid ones).
pub fn configured_server_name(pool: &Pool) -> Option<ServerName<'static>> {
    let name = pool.tls.as_ref()?.server_name.as_deref()?;
    ServerName::try_from(name.to_string()).ok()
}

/// The name to verify on a backend: `server_name` when configured, else its IP address.
pub fn server_name_for(
    configured: Option<&ServerName<'static>>,
    addr: SocketAddr,
) -> ServerName<'static> {
    configured
        .cloned()
        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
}

/// A client config whose handshakes always fail verification.
fn trust_nothing() -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth())
}

/// The rustls client config of a pool with `tls = { ... }`.
pub fn client_config(pool: &Pool) -> Result<ClientConfig, TlsError> {
    let backend_err = |reason: String| TlsError::Backend {
        pool: pool.name.clone(),
        reason,
    };
    let Some(tls) = &pool.tls else {
        return Err(backend_err("no tls section".to_string()));
    };
    let roots = match &tls.ca {
        Some(ca) => roots_from(ca)?,
        None => system_roots().map_err(backend_err)?,
    };
    if let Some(name) = &tls.server_name {
        ServerName::try_from(name.clone())
            .map_err(|e| backend_err(format!("server_name `{name}`: {e}")))?;
    }
    let builder = ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots);
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = read_chain(cert)?;
            let private = read_key(key)?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
                        cert: cert.clone(),
                        key: key.clone(),
                    },
                    other => TlsError::BadKey {
                        path: key.clone(),
                        reason: other.to_string(),
                    },
                })
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Every certificate of a PEM bundle as a trust anchor.
fn roots_from(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_chain(path)? {
        roots.add(cert).map_err(|e| TlsError::BadCert {
            path: path.to_path_buf(),
            reason: format!("not usable as a CA: {e}"),
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, String> {
    for bundle in SYSTEM_BUNDLES {
        let path = Path::new(bundle);
        if !path.exists() {
            continue;
        }
        let mut roots = RootCertStore::empty();
        let chain = read_chain(path).map_err(|e| e.to_string())?;
        // Bundles carry a few odd certificates; keep every one webpki can use.
        let (added, _ignored) = roots.add_parsable_certificates(chain);
        if added > 0 {
            return Ok(roots);
        }
    }
    Err(format!(
        "no system CA bundle found (looked in {}); set tls.ca",
        SYSTEM_BUNDLES.join(", ")
    ))
}
