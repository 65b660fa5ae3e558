//! The open-loop load client: a fixed request rate to the target, whatever the answers.
//!
//! Request `k` is sent at `start + k / rate`, by simulated user `k % users`; each user has
//! its own cookie jar (the `JSESSIONID` its backend handed out). By default every request
//! opens a new connection, as a fresh client would after a failover; `keep_alive` reuses
//! pooled connections instead. Every request is bounded by `timeout` and the whole run by
//! `duration` (and a hard cap on the count).

use crate::httpc;
use crate::BedError;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most this many requests per run, whatever the rate and duration.
const MAX_REQUESTS: u64 = 200_000;

#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// `HOST:PORT`.
    pub target: String,
    pub rate: u32,
    pub users: usize,
    pub duration: Duration,
    pub timeout: Duration,
    pub keep_alive: bool,
}

/// One request's fate.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Send time, ms since the scenario epoch.
    pub t_ms: f64,
    pub user: usize,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: f64,
    pub backend: Option<String>,
    /// The request carried the user's session cookie.
    pub had_cookie: bool,
    /// The answer started a new session (`Set-Cookie: JSESSIONID=...`).
    pub new_session: bool,
}

impl Sample {
    pub fn ok(&self) -> bool {
        matches!(self.status, Some(s) if (200..400).contains(&s))
    }
}

/// Live counters for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

type Jar = Arc<Mutex<Option<String>>>;
type PooledClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Runs the load until `duration` is over or `stop` is set; returns every sample.
pub async fn run(
    spec: LoadSpec,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> Vec<Sample> {
    let rate = u64::from(spec.rate.max(1));
    let total = (spec.duration.as_secs_f64() * rate as f64).ceil() as u64;
    let total = total.min(MAX_REQUESTS);
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let jars: Vec<Jar> = (0..spec.users.max(1))
        .map(|_| Arc::new(Mutex::new(None)))
        .collect();
    let pooled = spec.keep_alive.then(|| {
        Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .build_http()
    });
    let spec = Arc::new(spec);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for k in 0..total {
        tokio::time::sleep_until(start + period * k as u32).await;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let user = (k as usize) % jars.len();
        let jar = jars[user].clone();
        let (spec, progress, pooled) = (spec.clone(), progress.clone(), pooled.clone());
        progress.sent.fetch_add(1, Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            let sample = one(&spec, epoch, user, &jar, pooled.as_ref()).await;
            let counter = if sample.ok() {
                &progress.ok
            } else {
                &progress.failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
            sample
        }));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(sample) = task.await {
            samples.push(sample);
        }
    }
    samples.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
    samples
}

async fn one(
    spec: &LoadSpec,
    epoch: Instant,
    user: usize,
    jar: &Jar,
    pooled: Option<&PooledClient>,
) -> Sample {
    let sent = Instant::now();
    let t_ms = sent.duration_since(epoch).as_secs_f64() * 1000.0;
    let cookie = jar.lock().ok().and_then(|j| j.clone());
    let mut headers = vec![("x-chaos-user", user.to_string())];
    if let Some(c) = &cookie {
        headers.push(("cookie", format!("JSESSIONID={c}")));
    }
    let result = match pooled {
        None => httpc::request(&spec.target, "GET", "/", &headers, None, spec.timeout).await,
        Some(client) => pooled_request(client, spec, &headers).await,
    };
    let latency_ms = sent.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(reply) => {
            let mut new_session = false;
            for sc in &reply.set_cookies {
                if let Some(v) = sc
                    .split(';')
                    .next()
                    .and_then(|kv| kv.trim().strip_prefix("JSESSIONID="))
                {
                    new_session = true;
                    if let Ok(mut j) = jar.lock() {
                        *j = Some(v.to_string());
                    }
                }
            }
            Sample {
                t_ms,
                user,
                status: Some(reply.status),
                error: None,
                latency_ms,
                backend: reply.backend,
                had_cookie: cookie.is_some(),
                new_session,
            }
        }
        Err(e) => Sample {
            t_ms,
            user,
            status: None,
            error: Some(e.to_string()),
            latency_ms,
            backend: None,
            had_cookie: cookie.is_some(),
            new_session: false,
        },
    }
}

async fn pooled_request(
    client: &PooledClient,
    spec: &LoadSpec,
    headers: &[(&str, String)],
) -> Result<httpc::Reply, BedError> {
    let mut builder = hyper::Request::builder()
        .method("GET")
        .uri(format!("http://{}/", spec.target));
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    let req = builder
        .body(Full::new(Bytes::new()))
        .map_err(|e| httpc::chained(&e))?;
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| httpc::chained(&e))?;
        let status = resp.status().as_u16();
        let header = |name: &str| -> Vec<String> {
            resp.headers()
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_string)
                .collect()
        };
        let backend = header("x-backend").into_iter().next();
        let set_cookies = header("set-cookie");
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| httpc::chained(&e))?
            .to_bytes();
        Ok::<_, BedError>(httpc::Reply {
            status,
            backend,
            set_cookies,
            body,
        })
    };
    tokio::time::timeout(spec.timeout, exchange)
        .await
        .map_err(|_| BedError::Http(format!("timeout after {} ms", spec.timeout.as_millis())))?
}
