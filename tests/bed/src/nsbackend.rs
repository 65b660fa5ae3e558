//! A [`TestBackend`] inside a network namespace: a thread of its own there with a
//! one-worker runtime, serving until the handle is dropped.

use crate::backend::{Options, TestBackend};
use crate::netns::spawn_in;
use crate::BedError;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a backend may take to bind.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A backend serving in a namespace; dropping this stops it.
#[derive(Debug)]
pub struct NsBackend {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl NsBackend {
    /// Starts backend `name` on `addr` inside namespace `ns`; returns once it listens.
    pub fn start(ns: &str, addr: SocketAddr, name: &str) -> Result<NsBackend, BedError> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let owned = name.to_string();
        spawn_in(ns, move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build();
            let rt = match rt {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                match TestBackend::serve(addr, &owned, Options::default()).await {
                    Ok(backend) => {
                        let _ = ready_tx.send(Ok(()));
                        let _ = stopped.await;
                        drop(backend);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                    }
                }
            });
        });
        match ready_rx.recv_timeout(READY_WITHIN) {
            Ok(Ok(())) => Ok(NsBackend { stop: Some(stop) }),
            Ok(Err(e)) => Err(BedError::Refused(format!("backend {name} in {ns}: {e}"))),
            Err(_) => Err(BedError::Refused(format!(
                "backend {name} in {ns} did not listen within {READY_WITHIN:?}"
            ))),
        }
    }
}

impl Drop for NsBackend {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
