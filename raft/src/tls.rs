//! Optional mutual TLS for peer traffic (`[cluster] tls = { ca, cert, key }`).
//!
//! TLS is a layer *under* the shared-secret handshake (`auth`), never instead of it: a
//! peer must present a certificate signed by the cluster CA **and** then prove it knows
//! the cluster secret inside the encrypted stream.
//!
//! Identity rules (what an operator must put in the certificates):
//! - Every node has one certificate, used both as TLS server (peers dial it) and as TLS
//!   client (it dials peers). It must chain to the cluster CA (`ca`, a PEM file with one
//!   or more CA certificates; use a CA dedicated to this cluster, not a public one and not
//!   the one that signs listener certificates).
//! - Peers are addressed by IP (`peers = ["ID@IP:PORT", ...]`), so the dialling side
//!   verifies the server certificate against the **IP address it dialled**: each node's
//!   certificate must carry its peer IP as an `IP:` subjectAltName (a DNS name or the
//!   subject CN is not enough).
//! - The accepting side checks the client certificate's chain to the CA and its validity
//!   only, not its names: a client's source address says little (wildcard binds, NAT).
//!   Any holder of a CA-signed certificate *and* the cluster secret is a peer.
//!
//! [`PeerTlsContext::load`] reads and checks the files once, at start-up (and for
//! `fulcrum check`): readable PEM, key matching the certificate, certificate signed by
//! the CA and valid now, and — given this node's peer IP — valid for that IP. Every
//! error names the file and which of `ca` / `cert` / `key` it came from, so callers can
//! point at the config key. Certificates are not reloaded: rotate them with a restart.
//!
//! Protocols: TLS 1.3 and 1.2 (rustls safe defaults), ring provider.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fulcrum_config::PeerTls;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Which of the three configured files a problem is about (`cluster.tls.<key>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Ca,
    Cert,
    Key,
}

impl TlsFile {
    /// The config key naming this file.
    pub fn key(self) -> &'static str {
        match self {
            TlsFile::Ca => "ca",
            TlsFile::Cert => "cert",
            TlsFile::Key => "key",
        }
    }
}

/// Why the peer TLS files cannot be used. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum PeerTlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        file: TlsFile,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Pem {
        file: TlsFile,
        path: PathBuf,
        reason: String,
    },
    #[error("key {} does not match certificate {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("certificate {} is not accepted by the cluster CA {}: {reason}", cert.display(), ca.display())]
    Untrusted {
        cert: PathBuf,
        ca: PathBuf,
        reason: String,
    },
    #[error("certificate {} is not valid for this node's peer address {ip} (it needs an IP subjectAltName {ip}): {reason}", cert.display())]
    WrongAddress {
        cert: PathBuf,
        ip: IpAddr,
        reason: String,
    },
}

impl PeerTlsError {
    /// The config key (`ca`, `cert` or `key`) the problem belongs to.
    pub fn file(&self) -> TlsFile {
        match self {
            PeerTlsError::Read { file, .. } | PeerTlsError::Pem { file, .. } => *file,
            PeerTlsError::Mismatch { .. } => TlsFile::Key,
            PeerTlsError::Untrusted { .. } | PeerTlsError::WrongAddress { .. } => TlsFile::Cert,
        }
    }
}

/// Any stream the peer protocol runs over: plain TCP or TLS over TCP.
pub trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}

/// A boxed peer stream, so framing and authentication code is shared by both transports.
pub type PeerStream = Box<dyn PeerIo>;

/// Loaded peer TLS: the acceptor and connector configurations of this node.
#[derive(Debug)]
pub struct PeerTlsContext {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path, file: TlsFile) -> Result<Vec<CertificateDer<'static>>, PeerTlsError> {
    let pem_err = |e: rustls::pki_types::pem::Error| match e {
        rustls::pki_types::pem::Error::Io(source) => PeerTlsError::Read {
            file,
            path: path.to_path_buf(),
            source,
        },
        other => PeerTlsError::Pem {
            file,
            path: path.to_path_buf(),
            reason: format!("not a valid PEM certificate file ({other})"),
        },
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(PeerTlsError::Pem {
            file,
            path: path.to_path_buf(),
            reason: "no `BEGIN CERTIFICATE` block found".to_string(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, PeerTlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::Io(source) => PeerTlsError::Read {
            file: TlsFile::Key,
            path: path.to_path_buf(),
            source,
        },
        rustls::pki_types::pem::Error::NoItemsFound => PeerTlsError::Pem {
            file: TlsFile::Key,
            path: path.to_path_buf(),
            reason: "no private key block found".to_string(),
        },
        other => PeerTlsError::Pem {
            file: TlsFile::Key,
            path: path.to_path_buf(),
            reason: format!("not a valid PEM key file ({other})"),
        },
    })
}

fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, PeerTlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, TlsFile::Ca)? {
        roots.add(cert).map_err(|e| PeerTlsError::Pem {
            file: TlsFile::Ca,
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate ({e})"),
        })?;
    }
    Ok(Arc::new(roots))
}

impl PeerTlsContext {
    /// Reads and checks `files`. With `own_ip` (this node's address in the peer list),
    /// also checks that peers dialling that IP will accept this node's certificate.
    pub fn load(files: &PeerTls, own_ip: Option<IpAddr>) -> Result<Self, PeerTlsError> {
        let provider = provider();
        let roots = read_roots(&files.ca)?;
        let chain = read_certs(&files.cert, TlsFile::Cert)?;
        let key = read_key(&files.key)?;
        let certified =
            CertifiedKey::from_der(chain.clone(), key, &provider).map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => PeerTlsError::Mismatch {
                    cert: files.cert.clone(),
                    key: files.key.clone(),
                },
                other => PeerTlsError::Pem {
                    file: TlsFile::Key,
                    path: files.key.clone(),
                    reason: format!("unusable private key ({other})"),
                },
            })?;
        // `NoRootAnchors` cannot happen (read_certs refuses an empty file), but stay typed.
        let setup = |e: rustls::server::VerifierBuilderError| PeerTlsError::Pem {
            file: TlsFile::Ca,
            path: files.ca.clone(),
            reason: format!("cannot build a verifier ({e})"),
        };
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(setup)?;
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(setup)?;

        // Check our own certificate the way peers will: chain to the CA, validity now,
        // and (as a server) the IP peers dial. A failure here would otherwise only show
        // up as refused handshakes on the other nodes.
        let now = UnixTime::now();
        let (leaf, intermediates) = (&chain[0], &chain[1..]);
        client_verifier
            .verify_client_cert(leaf, intermediates, now)
            .map_err(|e| PeerTlsError::Untrusted {
                cert: files.cert.clone(),
                ca: files.ca.clone(),
                reason: e.to_string(),
            })?;
        if let Some(ip) = own_ip {
            let name = ServerName::IpAddress(ip.into());
            server_verifier
                .verify_server_cert(leaf, intermediates, &name, &[], now)
                .map_err(|e| PeerTlsError::WrongAddress {
                    cert: files.cert.clone(),
                    ip,
                    reason: e.to_string(),
                })?;
        }

        let certified = Arc::new(certified);
        let versions = |e: rustls::Error| PeerTlsError::Pem {
            file: TlsFile::Cert,
            path: files.cert.clone(),
            reason: format!("TLS setup failed ({e})"),
        };
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(versions)?
            .with_client_cert_verifier(client_verifier)
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified.clone())));
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(versions)?
            .with_webpki_verifier(server_verifier)
            .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        Ok(PeerTlsContext {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// Server side: TLS handshake on an accepted connection; the peer must present a
    /// certificate signed by the cluster CA. The caller bounds it with a timeout.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<PeerStream> {
        let tls = TlsAcceptor::from(self.server.clone()).accept(tcp).await?;
        Ok(Box::new(tls))
    }

    /// Client side: TLS handshake to the peer at `addr` (`IP:PORT`), verifying its
    /// certificate against the CA and the dialled IP. The caller bounds it with a timeout.
    pub async fn connect(&self, addr: &str, tcp: TcpStream) -> io::Result<PeerStream> {
        let name = server_name(addr)?;
        let tls = TlsConnector::from(self.client.clone())
            .connect(name, tcp)
            .await?;
        Ok(Box::new(tls))
    }
}

/// The name a peer's certificate is verified against: the IP of `IP:PORT`, or the host
/// part as a DNS name if the address is not an IP literal (the config refuses those).
pub fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(ServerName::IpAddress(sa.ip().into()));
    }
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))
}
