//! TLS towards backends: the connector behind every pool's keep-alive client.
//!
//! Every pool uses the same connector type, hyper-rustls' `HttpsConnector` in
//! `https_or_http` mode: a URI `http://ADDR` connects in clear, `https://ADDR` runs a
//! TLS handshake first. A pool with `tls = { ... }` gets `https://` backend URIs
//! (see `pool.rs`) and a client config that:
//! - trusts the CA bundle in `tls.ca`, or the system bundle when absent (read from the
//!   usual Debian / Red Hat / Alpine paths, no extra crate);
//! - verifies the name `tls.server_name` (also sent as SNI), or by default the
//!   backend's IP address (rustls then checks an IP subjectAltName and sends no SNI,
//!   since SNI cannot carry an address);
//! - presents `tls.cert` + `tls.key` as a client certificate (mutual TLS) when set.
//!
//! Pools without `tls` get a connector whose TLS half trusts nothing: it is never used
//! for their `http://` URIs, and costs one small allocation per pool.

use super::certs::{read_chain, read_key};
use super::TlsError;
use fulcrum_config::Pool;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::time::Duration;

/// The connector type of every pool's upstream client.
pub type UpstreamConnector = HttpsConnector<HttpConnector>;

/// Where distributions keep the system CA bundle.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Builds the connector of one pool (TCP settings from the pool, TLS from `pool.tls`).
pub fn build_upstream_connector(pool: &Pool) -> Result<UpstreamConnector, TlsError> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(pool.connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(30)));
    // The TLS wrapper hands `https://` URIs to the TCP connector too.
    http.enforce_http(false);
    let Some(tls) = &pool.tls else {
        let config = ClientConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        return Ok(HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http));
    };
    let config = client_config(pool)?;
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    let builder = match &tls.server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone()).map_err(|e| TlsError::Backend {
                pool: pool.name.clone(),
                reason: format!("server_name `{name}`: {e}"),
            })?;
            builder.with_server_name_resolver(FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    Ok(builder.enable_http1().wrap_connector(http))
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
