//! The TLS side of the HTTPS measurements: one self-signed ECDSA P-256 certificate made
//! for the run (rcgen), written as the files each proxy wants, and the rustls client
//! config of the new-handshake load, pinned to the same TLS settings every target gets.
//!
//! The settings are chosen by the clients, so they are equal for all proxies without
//! per-proxy tuning: wrk (OpenSSL 3 defaults) and the handshake client both end up on
//! TLS 1.3 with X25519 and TLS_AES_256_GCM_SHA384 against fulcrum (rustls follows the
//! client's order), HAProxy and nginx (OpenSSL's own order starts with that suite).

use anyhow::{Context, Result};
use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use rustls::client::Resumption;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The TLS settings of every HTTPS measurement, printed with the figures.
pub const SETTINGS: &str = "TLS 1.3, ECDSA P-256 self-signed certificate, X25519, \
     TLS_AES_256_GCM_SHA384; ALPN http/1.1 from the handshake client (wrk sends none); \
     handshake mode never resumes a session, each proxy keeps its default ticket settings";

/// The run's certificate on disk, and its DER for the client's trust store.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate (fulcrum, nginx).
    pub cert: PathBuf,
    /// PEM PKCS#8 private key (fulcrum, nginx).
    pub key: PathBuf,
    /// Certificate followed by key in one PEM file (HAProxy's `crt`).
    pub combined: PathBuf,
    cert_der: CertificateDer<'static>,
}

impl TlsFiles {
    /// Generates a self-signed certificate for `localhost` and 127.0.0.1 into `dir`.
    pub fn generate(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (cert_pem, key_pem, cert_der) = self_signed()?;
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            combined: dir.join("haproxy.pem"),
            cert_der,
        };
        for (path, text) in [
            (&files.cert, cert_pem.clone()),
            (&files.key, key_pem.clone()),
            (&files.combined, format!("{cert_pem}{key_pem}")),
        ] {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(files)
    }

    /// A client that verifies the proxies against the run's certificate and offers only
    /// the settings of [`SETTINGS`], with session resumption disabled.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .context("trusting the bench certificate")?;
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384],
            kx_groups: vec![rustls::crypto::ring::kx_group::X25519],
            ..rustls::crypto::ring::default_provider()
        };
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("client TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = Resumption::disabled();
        Ok(Arc::new(config))
    }
}

/// (certificate PEM, key PEM, certificate DER) of a fresh P-256 self-signed certificate.
fn self_signed() -> Result<(String, String, CertificateDer<'static>)> {
    let key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating a P-256 key")?;
    let mut params =
        CertificateParams::new(vec!["localhost".to_string()]).context("certificate parameters")?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params
        .distinguished_name
        .push(DnType::CommonName, "fulcrum bench");
    let cert = params
        .self_signed(&key)
        .context("self-signing the certificate")?;
    Ok((cert.pem(), key.serialize_pem(), cert.der().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pem_files_and_a_combined_one() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let files = TlsFiles::generate(dir.path())?;
        let cert = std::fs::read_to_string(&files.cert)?;
        let key = std::fs::read_to_string(&files.key)?;
        let combined = std::fs::read_to_string(&files.combined)?;
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        assert!(key.contains("-----BEGIN PRIVATE KEY-----"), "{key}");
        assert_eq!(combined, format!("{cert}{key}"));
        files.client_config()?;
        Ok(())
    }
}
