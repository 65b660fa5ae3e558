//! Loading and checking certificate/key pairs, and the per-listener certificate set.
//!
//! A pair is accepted only if: both files can be read; the certificate file holds at
//! least one PEM certificate (leaf first, then intermediates); the key file holds a
//! PKCS#8, PKCS#1 or SEC1 key that ring can use; the key's public half equals the
//! leaf's (rustls `CertifiedKey::keys_match`, a comparison of SubjectPublicKeyInfo);
//! and the leaf is inside its validity period now.
//!
//! The leaf is parsed once more with `x509-parser` for what rustls does not expose: its
//! validity dates and its DNS names (subjectAltName, or the subject CN when there are
//! none), which the SNI resolver indexes.

use super::TlsError;
use fulcrum_config::{CertPair, Config, Listener, Protocol};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use x509_parser::extensions::GeneralName;

/// One usable certificate with the names it serves.
#[derive(Debug)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// Lowercase DNS names, wildcards kept as `*.example.com`.
    pub names: Vec<String>,
    pub cert_path: PathBuf,
}

/// A listener's certificates, indexed for SNI lookups. The first one is the default.
#[derive(Debug)]
pub struct CertSet {
    pub certs: Vec<LoadedCert>,
    exact: HashMap<String, usize>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, usize>,
    /// (file, modification time, length) of every file read, to notice rewrites.
    pub stamps: Vec<FileStamp>,
}

/// What a file looked like when it was read.
pub type FileStamp = (PathBuf, Option<(SystemTime, u64)>);

impl CertSet {
    /// The certificate for `sni`: an exact name, else a wildcard one label up, else the
    /// default (first) certificate. A wildcard covers exactly one label, as in RFC 6125.
    pub fn pick(&self, sni: Option<&str>) -> &LoadedCert {
        let index = sni
            .map(|s| s.trim_end_matches('.').to_ascii_lowercase())
            .and_then(|name| {
                self.exact.get(&name).copied().or_else(|| {
                    let (_, parent) = name.split_once('.')?;
                    self.wildcard.get(parent).copied()
                })
            })
            .unwrap_or(0);
        &self.certs[index]
    }

    /// True when any file changed since it was read (or vanished/appeared).
    pub fn files_changed(&self) -> bool {
        self.stamps.iter().any(|(path, seen)| stamp(path) != *seen)
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reads and checks every certificate of an HTTPS listener.
pub fn load_listener_certs(listener: &Listener) -> Result<CertSet, TlsError> {
    let mut certs = Vec::with_capacity(listener.tls.len());
    let mut stamps = Vec::new();
    for pair in &listener.tls {
        stamps.push((pair.cert.clone(), stamp(&pair.cert)));
        stamps.push((pair.key.clone(), stamp(&pair.key)));
        certs.push(load_pair(pair, now_unix())?);
    }
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(listener.name.clone()));
    }
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    for (i, cert) in certs.iter().enumerate() {
        for name in &cert.names {
            // The first certificate to claim a name keeps it (config order decides).
            match name.strip_prefix("*.") {
                Some(parent) => wildcard.entry(parent.to_string()).or_insert(i),
                None => exact.entry(name.clone()).or_insert(i),
            };
        }
    }
    Ok(CertSet {
        certs,
        exact,
        wildcard,
        stamps,
    })
}

/// Checks every TLS file a config refers to (listener certificates and backend TLS).
/// `fulcrum check` and config apply call this; the first problem is returned.
pub fn check_config(config: &Config) -> Result<(), TlsError> {
    for l in config
        .listener
        .iter()
        .filter(|l| l.protocol == Protocol::Https)
    {
        load_listener_certs(l)?;
    }
    for p in config.pool.iter().filter(|p| p.tls.is_some()) {
        super::backend::client_config(p)?;
    }
    Ok(())
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Reads a PEM certificate chain (leaf first).
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |e: rustls::pki_types::pem::Error| match e {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Read {
            path: path.to_path_buf(),
            source,
        },
        other => TlsError::Pem {
            path: path.to_path_buf(),
            reason: format!("not a valid PEM certificate file ({other})"),
        },
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            reason: "no `BEGIN CERTIFICATE` block found".to_string(),
        });
    }
    Ok(chain)
}

/// Reads a PEM private key (PKCS#8, PKCS#1/RSA or SEC1/EC).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Read {
            path: path.to_path_buf(),
            source,
        },
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Pem {
            path: path.to_path_buf(),
            reason: "no private key block found".to_string(),
        },
        other => TlsError::Pem {
            path: path.to_path_buf(),
            reason: format!("not a valid PEM key file ({other})"),
        },
    })
}

/// Loads one pair and checks it as of `now` (Unix seconds).
fn load_pair(pair: &CertPair, now: i64) -> Result<LoadedCert, TlsError> {
    let chain = read_chain(&pair.cert)?;
    let key = read_key(&pair.key)?;
    let (names, not_before, not_after) = inspect_leaf(&pair.cert, &chain[0])?;
    if now > not_after {
        return Err(TlsError::Expired {
            path: pair.cert.clone(),
            date: civil_date(not_after),
        });
    }
    if now < not_before {
        return Err(TlsError::NotYetValid {
            path: pair.cert.clone(),
            date: civil_date(not_before),
        });
    }
    let certified =
        CertifiedKey::from_der(chain, key, &super::provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
                cert: pair.cert.clone(),
                key: pair.key.clone(),
            },
            other => TlsError::BadKey {
                path: pair.key.clone(),
                reason: other.to_string(),
            },
        })?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        cert_path: pair.cert.clone(),
    })
}

/// The leaf's DNS names and validity (Unix seconds).
fn inspect_leaf(
    path: &Path,
    der: &CertificateDer<'_>,
) -> Result<(Vec<String>, i64, i64), TlsError> {
    let bad = |reason: String| TlsError::BadCert {
        path: path.to_path_buf(),
        reason,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| bad(format!("cannot parse X.509: {e}")))?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(bad(format!("bad subjectAltName: {e}"))),
    };
    if names.is_empty() {
        // Legacy certificates without SAN: fall back to the subject's common name.
        names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_ascii_lowercase)
            .collect();
    }
    let validity = cert.validity();
    Ok((
        names,
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

/// `YYYY-MM-DD` (UTC) of a Unix timestamp (Howard Hinnant's days-to-civil algorithm).
fn civil_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(1_767_225_600), "2026-01-01");
        assert_eq!(civil_date(951_782_400), "2000-02-29");
    }

    fn pair(dir: &Path, name: &str, cert: &str, key: &str) -> CertPair {
        let c = dir.join(format!("{name}.pem"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, cert).expect("write cert");
        std::fs::write(&k, key).expect("write key");
        CertPair { cert: c, key: k }
    }

    #[test]
    fn missing_and_garbage_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = CertPair {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
        };
        let err = load_pair(&missing, 0).expect_err("missing");
        assert!(err.to_string().contains("nope.pem"), "{err}");
        let junk = pair(dir.path(), "junk", "hello", "world");
        let err = load_pair(&junk, 0).expect_err("junk");
        assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
    }
}

#[cfg(test)]
mod real_cert_tests {
    //! With certificates generated on the spot (rcgen): SNI choice, key mismatch, expiry.
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    struct Generated {
        cert: String,
        key: String,
    }

    fn generate(names: &[&str], valid: Option<(i32, i32)>) -> Generated {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        if let Some((from, to)) = valid {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let cert = params.self_signed(&key).expect("self-sign");
        Generated {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn write(dir: &Path, name: &str, cert: &str, key: &str) -> CertPair {
        let pair = CertPair {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&pair.cert, cert).expect("write cert");
        std::fs::write(&pair.key, key).expect("write key");
        pair
    }

    fn listener(pairs: Vec<CertPair>) -> Listener {
        let mut l: Listener =
            toml::from_str("name = \"web\"\nbind = \"127.0.0.1:1\"\nprotocol = \"https\"\n")
                .expect("listener");
        l.tls = pairs;
        l
    }

    #[test]
    fn sni_exact_wildcard_and_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = generate(&["a.test", "www.a.test"], None);
        let b = generate(&["*.b.test"], None);
        let set = load_listener_certs(&listener(vec![
            write(dir.path(), "a", &a.cert, &a.key),
            write(dir.path(), "b", &b.cert, &b.key),
        ]))
        .expect("load");
        let which = |sni: Option<&str>| {
            set.pick(sni)
                .cert_path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
        };
        assert_eq!(which(Some("a.test")).as_deref(), Some("a.pem"));
        assert_eq!(which(Some("WWW.A.Test.")).as_deref(), Some("a.pem"));
        assert_eq!(which(Some("x.b.test")).as_deref(), Some("b.pem"));
        // One label only, and the bare parent is not covered by the wildcard.
        assert_eq!(which(Some("y.x.b.test")).as_deref(), Some("a.pem"));
        assert_eq!(which(Some("b.test")).as_deref(), Some("a.pem"));
        assert_eq!(which(None).as_deref(), Some("a.pem"));
        assert!(!set.files_changed());
        std::fs::write(dir.path().join("b.pem"), format!("{}\n", b.cert)).expect("rewrite");
        assert!(set.files_changed());
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = generate(&["a.test"], None);
        let b = generate(&["b.test"], None);
        let pair = write(dir.path(), "mixed", &a.cert, &b.key);
        let err = load_listener_certs(&listener(vec![pair])).expect_err("mismatch");
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
        assert!(
            err.to_string().contains("does not match certificate"),
            "{err}"
        );
    }

    #[test]
    fn expired_and_future_certificates_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = generate(&["old.test"], Some((2020, 2024)));
        let err = load_listener_certs(&listener(vec![write(
            dir.path(),
            "old",
            &old.cert,
            &old.key,
        )]))
        .expect_err("expired");
        assert!(err.to_string().ends_with("expired on 2024-01-01"), "{err}");
        let future = generate(&["new.test"], Some((2999, 3000)));
        let pair = write(dir.path(), "future", &future.cert, &future.key);
        let err = load_listener_certs(&listener(vec![pair])).expect_err("not yet valid");
        assert!(matches!(err, TlsError::NotYetValid { .. }), "{err}");
    }

    #[test]
    fn key_file_with_a_certificate_only_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = generate(&["a.test"], None);
        let pair = write(dir.path(), "nokey", &a.cert, &a.cert);
        let err = load_listener_certs(&listener(vec![pair])).expect_err("no key");
        assert!(err.to_string().contains("no private key"), "{err}");
    }
}
