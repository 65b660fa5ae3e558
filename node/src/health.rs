//! Active health checks: every backend of every pool with a `health` table.
//!
//! One task per backend probes it every `interval` (HTTP GET of `path`, or a TCP
//! connect), each probe bounded by `timeout`. `fall` failures in a row mark the backend
//! down, `rise` successes in a row mark it up again (hysteresis, as in HAProxy and
//! Pingora). Only a flip is reported (`on_flip`), which is what the cluster layer turns
//! into a Raft proposal. The tasks of a config version stop when the next one starts.

use crate::dataplane::DataPlane;
use crate::metrics::CheckLabels;
use bytes::Bytes;
use fulcrum_config::{CheckKind, HealthCheck};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Largest health response body read when checking `expect_body`.
const MAX_CHECK_BODY: usize = 64 * 1024;

/// Called when this node's view of a backend flips: `(pool, backend, healthy)`.
pub type FlipHook = Arc<dyn Fn(&str, &str, bool) + Send + Sync>;

/// Starts the checkers for the current snapshot; they stop when `stop` is cancelled.
pub fn spawn_all(dp: &Arc<DataPlane>, stop: &CancellationToken, on_flip: FlipHook) {
    let snapshot = dp.snapshot();
    for pool_cfg in &snapshot.config.pool {
        let Some(check) = pool_cfg.health.clone() else {
            continue;
        };
        let Some(pool) = snapshot.pools.get(&pool_cfg.name) else {
            continue;
        };
        // TLS pools are checked over TLS, as their traffic is (same CA, name, client cert).
        let tls = match pool_cfg
            .tls
            .as_ref()
            .map(|_| crate::tls::backend::client_config(pool_cfg))
        {
            Some(Ok(cfg)) => Some(Arc::new(cfg)),
            Some(Err(e)) => {
                tracing::error!(pool = %pool_cfg.name, error = %e, "cannot build TLS for health checks");
                None
            }
            None => None,
        };
        let server_name = crate::tls::backend::configured_server_name(pool_cfg);
        for backend in &pool.backends {
            let task = Checker {
                tls: tls.clone().map(|cfg| {
                    (
                        cfg,
                        crate::tls::backend::server_name_for(server_name.as_ref(), backend.addr),
                    )
                }),
                dp: dp.clone(),
                pool: pool.name.clone(),
                backend: backend.id.clone(),
                addr: backend.addr,
                check: check.clone(),
                on_flip: on_flip.clone(),
            };
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = task.run() => {}
                }
            });
        }
    }
}

struct Checker {
    dp: Arc<DataPlane>,
    pool: String,
    backend: String,
    addr: SocketAddr,
    check: HealthCheck,
    on_flip: FlipHook,
    /// For pools with `tls`: the client config and the name to verify.
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
}

impl Checker {
    async fn run(self) {
        let state = self.dp.registry.get(&self.pool, &self.backend);
        let (mut successes, mut failures) = (0u32, 0u32);
        let mut ticker = tokio::time::interval(self.check.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let result = tokio::time::timeout(self.check.timeout, self.probe()).await;
            let ok = matches!(result, Ok(Ok(())));
            self.count(ok);
            if ok {
                successes += 1;
                failures = 0;
            } else {
                failures += 1;
                successes = 0;
                let reason = match result {
                    Ok(Err(reason)) => reason,
                    _ => "timeout".to_string(),
                };
                tracing::debug!(pool = %self.pool, backend = %self.backend, %reason, "health check failed");
            }
            let healthy = state.active_healthy();
            let flip_to = if !healthy && successes >= self.check.rise {
                Some(true)
            } else if healthy && failures >= self.check.fall {
                Some(false)
            } else {
                None
            };
            if let Some(now_healthy) = flip_to {
                state.set_active_healthy(now_healthy);
                tracing::info!(pool = %self.pool, backend = %self.backend, healthy = now_healthy, "backend health changed");
                (self.on_flip)(&self.pool, &self.backend, now_healthy);
            }
        }
    }

    fn count(&self, ok: bool) {
        let labels = CheckLabels {
            pool: self.pool.clone(),
            backend: self.backend.clone(),
            result: if ok { "ok" } else { "fail" }.to_string(),
        };
        self.dp.metrics.health_checks.get_or_create(&labels).inc();
    }

    async fn probe(&self) -> Result<(), String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match (self.check.kind, &self.tls) {
            (CheckKind::Tcp, _) => Ok(()),
            (CheckKind::Http, None) => self.http_probe(stream).await,
            (CheckKind::Http, Some((cfg, name))) => {
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| format!("tls: {e}"))?;
                self.http_probe(tls).await
            }
        }
    }

    async fn http_probe<S>(&self, stream: S) -> Result<(), String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        let driver = tokio::spawn(conn);
        let req = http::Request::get(self.check.path.as_str())
            .header(http::header::HOST, self.addr.to_string())
            .header(http::header::USER_AGENT, "fulcrum-health")
            .header(http::header::CONNECTION, "close")
            .body(Empty::new())
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status().as_u16();
        let (lo, hi) = self.check.status_range();
        let verdict = if !(lo..=hi).contains(&status) {
            Err(format!("status {status}"))
        } else if let Some(needle) = &self.check.expect_body {
            let body = Limited::new(resp.into_body(), MAX_CHECK_BODY)
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            if contains(&body, needle.as_bytes()) {
                Ok(())
            } else {
                Err("body does not contain the expected text".to_string())
            }
        } else {
            Ok(())
        };
        driver.abort();
        verdict
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
