//! TLS helpers for tests: a throwaway CA (rcgen), leaf certificates on disk, and an
//! HTTPS client built from tokio-rustls + hyper's connection API.
//!
//! The client either verifies the server against the test CA (real webpki checks:
//! chain and name) or, for "which certificate did the server pick for an unknown
//! name" questions, accepts anything and just records the certificate it was shown.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test certificate authority.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate and key, as PEM text and as the DER the server will present.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fulcrum test CA");
        let cert = params.self_signed(&key).expect("self-sign CA");
        TestCa { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for `names` (DNS names, wildcards allowed), valid now.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_valid(names, None)
    }

    /// A leaf whose validity ended on `expired_on` (year, month, day), if given.
    pub fn leaf_valid(&self, names: &[&str], expired_on: Option<(i32, u8, u8)>) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        if let Some((y, m, d)) = expired_on {
            params.not_before = rcgen::date_time_ymd(y - 1, m, d);
            params.not_after = rcgen::date_time_ymd(y, m, d);
        }
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// Writes the CA certificate to `dir/ca.pem`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.pem()).expect("write CA");
        path
    }
}

impl Leaf {
    /// Writes `dir/NAME.pem` and `dir/NAME.key`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        // Write to a temp name and rename, as an operator's deploy tool would, so the
        // server never reads half a file.
        for (path, text) in [(&cert, &self.cert_pem), (&key, &self.key_pem)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).expect("write pem");
            std::fs::rename(&tmp, path).expect("rename pem");
        }
        (cert, key)
    }
}

/// A client config that verifies servers against `ca_pem` and offers `alpn`.
pub fn verifying_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA pem")).expect("add CA");
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

use rustls::pki_types::pem::PemObject;

/// Accepts any server certificate and remembers the last one shown.
#[derive(Debug, Default)]
pub struct Recorder {
    pub seen: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client config that accepts any certificate and records it in `recorder`.
pub fn recording_config(recorder: Arc<Recorder>) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(recorder)
        .with_no_client_auth();
    Arc::new(config)
}

/// Connects and completes a TLS handshake with SNI `sni`. 5 s bound.
pub async fn connect(
    addr: &str,
    sni: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, String> {
    let fut = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| "TLS connect timed out".to_string())?
}

/// The certificate the server presented on `stream` (DER).
pub fn peer_cert(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    let (_, session) = stream.get_ref();
    session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
}

/// The ALPN protocol the server chose.
pub fn alpn(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(|p| p.to_vec())
}

/// A request sender over one TLS connection: HTTP/1.1 or HTTP/2 by the negotiated ALPN.
pub enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// Starts HTTP on an established TLS stream (h2 if ALPN chose it).
pub async fn http_over(stream: TlsStream<TcpStream>) -> Result<Sender, String> {
    let h2 = alpn(&stream).as_deref() == Some(b"h2");
    let io = TokioIo::new(stream);
    if h2 {
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Sender::H1(sender))
    }
}

/// GET `path` on `host` over `sender`; returns (status, body). 10 s bound.
pub async fn get(
    sender: &mut Sender,
    host: &str,
    path: &str,
) -> Result<(StatusCode, String), String> {
    let fut = async {
        let req = match sender {
            Sender::H1(_) => Request::get(path).header("host", host),
            Sender::H2(_) => Request::get(format!("https://{host}{path}")),
        }
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
        let resp = match sender {
            Sender::H1(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
        }
        .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = crate::client::body_text(resp.into_body()).await?;
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| "request timed out".to_string())?
}

/// An HTTPS backend for tests: terminates TLS with the CA's `backend.test`
/// certificate on a new port of 127.0.0.1 and relays the plaintext to `target`.
pub async fn tls_front(ca: &TestCa, target: std::net::SocketAddr) -> std::net::SocketAddr {
    let leaf = ca.leaf(&["backend.test"]);
    let certs = vec![CertificateDer::from(leaf.der.clone())];
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}
