//! Active health checks: every backend of every pool with a `health` table.
//!
//! One task per backend probes it every `interval` (HTTP GET of `path`, a TCP
//! connect, or a gRPC health `Check`: `health_grpc`), each probe bounded by `timeout`. `fall` failures in a row mark the backend
//! down, `rise` successes in a row mark it up again (hysteresis, as in HAProxy and
//! Pingora). A checker starts without a verdict: its first one (after `rise` successes
//! or `fall` failures in a row, whichever comes first) is reported, then every flip
//! (`on_verdict`); the cluster's health reporter turns them into Raft proposals. A
//! restarted node therefore reports what it really sees, never an assumed "healthy".
//! The tasks of a config version stop when the next one starts.

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

/// A probe's byte stream: plain TCP or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Largest health response body read when checking `expect_body`.
const MAX_CHECK_BODY: usize = 64 * 1024;

/// Called with a checker's first verdict on a backend and on every flip after it:
/// `(pool, backend, healthy)`.
pub type VerdictHook = Arc<dyn Fn(&str, &str, bool) + Send + Sync>;

/// Starts the checkers for the current snapshot; they stop when `stop` is cancelled.
pub fn spawn_all(dp: &Arc<DataPlane>, stop: &CancellationToken, on_verdict: VerdictHook) {
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
            Some(Ok(mut cfg)) => {
                // A gRPC check speaks HTTP/2, which TLS must agree on by ALPN.
                if check.kind == CheckKind::Grpc {
                    cfg.alpn_protocols = vec![b"h2".to_vec()];
                }
                Some(Arc::new(cfg))
            }
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
                authority: backend.id.clone(),
                addr: backend.addr,
                check: check.clone(),
                on_verdict: on_verdict.clone(),
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
    /// `Host` / `:authority` of a probe: the backend's address as configured.
    authority: String,
    check: HealthCheck,
    on_verdict: VerdictHook,
    /// For pools with `tls`: the client config and the name to verify.
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
}

impl Checker {
    async fn run(self) {
        let state = self.dp.registry.get(&self.pool, &self.backend);
        let mut hysteresis = Hysteresis::new(self.check.rise, self.check.fall);
        let mut ticker = tokio::time::interval(self.check.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let result = tokio::time::timeout(self.check.timeout, self.probe()).await;
            let ok = matches!(result, Ok(Ok(())));
            self.count(ok);
            if !ok {
                let reason = match result {
                    Ok(Err(reason)) => reason,
                    _ => "timeout".to_string(),
                };
                tracing::debug!(pool = %self.pool, backend = %self.backend, %reason, "health check failed");
            }
            let Some(healthy) = hysteresis.record(ok) else {
                continue;
            };
            if state.set_active_healthy(healthy) {
                tracing::info!(pool = %self.pool, backend = %self.backend, healthy, "backend health changed");
            } else {
                tracing::debug!(pool = %self.pool, backend = %self.backend, healthy, "health verdict");
            }
            (self.on_verdict)(&self.pool, &self.backend, healthy);
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
        let grpc = |stream: Box<dyn Stream>, tls: bool| {
            let service = self.check.service.as_deref().unwrap_or("");
            crate::health_grpc::check(stream, &self.authority, service, tls)
        };
        match (self.check.kind, &self.tls) {
            (CheckKind::Tcp, _) => Ok(()),
            (CheckKind::Grpc, None) => grpc(Box::new(stream), false).await,
            (CheckKind::Grpc, Some((cfg, name))) => {
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| format!("tls: {e}"))?;
                grpc(Box::new(tls), true).await
            }
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

/// Rise/fall hysteresis of one checker, starting without a verdict.
#[derive(Debug)]
struct Hysteresis {
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
    verdict: Option<bool>,
}

impl Hysteresis {
    fn new(rise: u32, fall: u32) -> Self {
        Hysteresis {
            rise,
            fall,
            successes: 0,
            failures: 0,
            verdict: None,
        }
    }

    /// Counts one probe; returns the verdict when it is first reached or flips.
    fn record(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        let reached = if self.successes >= self.rise {
            Some(true)
        } else if self.failures >= self.fall {
            Some(false)
        } else {
            None
        };
        match reached {
            Some(v) if self.verdict != Some(v) => {
                self.verdict = Some(v);
                Some(v)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Hysteresis;

    fn run(h: &mut Hysteresis, probes: &[bool]) -> Vec<Option<bool>> {
        probes.iter().map(|ok| h.record(*ok)).collect()
    }

    #[test]
    fn first_verdict_is_reported_even_when_it_is_healthy() {
        let mut h = Hysteresis::new(2, 3);
        assert_eq!(run(&mut h, &[true, true, true]), [None, Some(true), None]);
    }

    #[test]
    fn first_verdict_down_after_fall_failures() {
        let mut h = Hysteresis::new(2, 3);
        assert_eq!(
            run(&mut h, &[false, false, false, false]),
            [None, None, Some(false), None]
        );
    }

    #[test]
    fn flips_need_rise_or_fall_in_a_row() {
        let mut h = Hysteresis::new(2, 2);
        let probes = [
            true, true, false, true, false, false, true, false, true, true,
        ];
        let want = [
            None,
            Some(true),
            None,
            None,
            None,
            Some(false),
            None,
            None,
            None,
            Some(true),
        ];
        assert_eq!(run(&mut h, &probes), want);
    }
}
