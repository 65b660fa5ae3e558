//! SNI certificate selection with hot swapping.
//!
//! rustls asks a `ResolvesServerCert` for a certificate once per handshake, passing the
//! client's SNI name. Ours looks the name up in the current `CertSet` (an `ArcSwap`, so
//! a reload is one pointer store and never blocks a handshake). Connections already
//! established keep the keys they negotiated: swapping affects new handshakes only.

use super::certs::CertSet;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

#[derive(Debug)]
pub struct SniResolver {
    current: ArcSwap<CertSet>,
}

impl SniResolver {
    pub fn new(set: CertSet) -> Self {
        SniResolver {
            current: ArcSwap::from_pointee(set),
        }
    }

    /// Makes `set` the certificates of every later handshake.
    pub fn swap(&self, set: CertSet) {
        self.current.store(Arc::new(set));
    }

    pub fn current(&self) -> Arc<CertSet> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.current.load();
        Some(set.pick(hello.server_name()).key.clone())
    }
}
