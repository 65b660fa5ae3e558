//! Throwaway certificate authorities and node certificates for the peer TLS tests
//! (rcgen), written to a temp dir as the PEM files `[cluster] tls` names.

use std::path::Path;

use fulcrum_config::PeerTls;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// A test CA that signs node certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-sign CA");
        Ca { cert, key }
    }

    /// Writes `dir/NAME-ca.pem`, `dir/NAME.pem`, `dir/NAME.key` for a node certificate
    /// with subjectAltNames `sans` (IP literals become IP SANs). `expired` makes it
    /// valid only during 2020.
    pub fn node(&self, dir: &Path, name: &str, sans: &[&str], expired: bool) -> PeerTls {
        let key = KeyPair::generate().expect("node key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("node params");
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign node cert");
        let files = PeerTls {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.ca, self.cert.pem()).expect("write ca");
        std::fs::write(&files.cert, cert.pem()).expect("write cert");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }
}
