//! `fulcrum-chaos bench --h2-conns N[,N...]`: what one HTTP/2 connection (TLS, ALPN
//! h2) costs in memory, idle and busy, per target, in the same run.
//!
//! Kept apart from `--conns` (plain HTTP/1.1 keep-alive connections, `conns.rs`): the
//! two measure different protocols, and either runs alone.
//!
//! For each count N each target is started twice, fresh each time, warmed with
//! `h2load -c16 -m10`, and its resident set read (the baseline):
//! - idle: N HTTP/2 connections are opened, each makes one `GET /` and then stays
//!   open and silent (its TLS session, HPACK tables and flow-control windows kept);
//!   the figure is (RSS − baseline) / N. Each then makes a second request, which must
//!   be answered.
//! - busy: `h2load -cN -m1` for `--duration`, the resident set sampled every 100 ms;
//!   the figure is (highest sample − baseline) / N, with the req/s of the window.
//!
//! User memory only: kernel socket buffers are not in the RSS (the same for every
//! target).

use super::h2load::H2loadRun;
use super::procstat;
use super::targets::{self, RunningTarget, Scheme, TargetKind};
use super::RunContext;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// How long the proxy is left alone before its resident set is read.
const SETTLE: Duration = Duration::from_secs(1);
/// Connections opened at once.
const PARALLEL: usize = 64;
/// One request and its answer, at most.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the resident set is read during the busy window.
const SAMPLE: Duration = Duration::from_millis(100);

/// The figures of one target at one connection count.
#[derive(Debug, Clone)]
pub struct H2ConnFigures {
    pub connections: u32,
    pub idle_baseline: u64,
    pub idle_rss: u64,
    /// Of the idle connections, how many answered a second request.
    pub answered: usize,
    pub busy_baseline: u64,
    pub busy_rss: u64,
    pub busy_rate: f64,
}

impl H2ConnFigures {
    pub fn idle_per_connection(&self) -> i64 {
        per(self.idle_rss, self.idle_baseline, self.connections)
    }

    pub fn busy_per_connection(&self) -> i64 {
        per(self.busy_rss, self.busy_baseline, self.connections)
    }
}

fn per(rss: u64, baseline: u64, n: u32) -> i64 {
    (rss as i64 - baseline as i64) / i64::from(n.max(1))
}

/// Measures every target at every count, in that order.
pub async fn measure_all(
    ctx: &RunContext,
    counts: &[u32],
) -> Vec<(TargetKind, u32, Result<H2ConnFigures, String>)> {
    let mut all = Vec::new();
    for n in counts {
        for kind in &ctx.settings.targets {
            let got = measure(ctx, *kind, *n).await.map_err(|e| format!("{e:#}"));
            match &got {
                Ok(f) => eprintln!(
                    "{kind}: {n} h2 connections: idle {} B/conn ({} answered), busy {} B/conn at {:.0} req/s",
                    f.idle_per_connection(),
                    f.answered,
                    f.busy_per_connection(),
                    f.busy_rate
                ),
                Err(e) => eprintln!("{kind}: {n} h2 connections failed: {e}"),
            }
            all.push((*kind, *n, got));
        }
    }
    all
}

async fn measure(ctx: &RunContext, kind: TargetKind, n: u32) -> Result<H2ConnFigures> {
    let (mut target, idle_baseline) = start_warm(ctx, kind, &format!("h2idle{n}")).await?;
    let addr = target.endpoint.addr();
    let tls = h2_client_config(&ctx.targets.tls_client);
    let clients = open(addr, tls, n as usize)
        .await
        .context("opening idle h2 connections")?;
    tokio::time::sleep(SETTLE).await;
    let idle_rss = procstat::rss_bytes(target.pid())?;
    let answered = reuse_all(&clients).await;
    drop(clients);
    target.ensure_running()?;
    drop(target);

    let (mut target, busy_baseline) = start_warm(ctx, kind, &format!("h2busy{n}")).await?;
    let pid = target.pid();
    let log = ctx.dir.join(format!("{kind}-h2busy{n}.log"));
    let url = target.endpoint.url();
    let run = h2load(ctx, &url, &log, n, 1, ctx.settings.duration)?;
    let window = run.run();
    tokio::pin!(window);
    let mut busy_rss = busy_baseline;
    let mut ticker = tokio::time::interval(SAMPLE);
    let result = loop {
        tokio::select! {
            done = &mut window => break done.context("busy window")?,
            _ = ticker.tick() => busy_rss = busy_rss.max(procstat::rss_bytes(pid)?),
        }
    };
    let _ = std::fs::remove_file(&log);
    target.ensure_running()?;
    Ok(H2ConnFigures {
        connections: n,
        idle_baseline,
        idle_rss,
        answered,
        busy_baseline,
        busy_rss,
        busy_rate: result.requests_per_sec,
    })
}

/// Starts `kind` fresh for h2, warms it with `h2load -c16 -m10`, lets it settle, and
/// returns it with its resident set then.
async fn start_warm(
    ctx: &RunContext,
    kind: TargetKind,
    what: &str,
) -> Result<(RunningTarget, u64)> {
    let dir = ctx.dir.join(format!("{kind}-{what}"));
    let target = targets::start(kind, Scheme::H2, &ctx.targets, &dir).await?;
    let log = dir.join("h2load-warm.log");
    let url = target.endpoint.url();
    h2load(ctx, &url, &log, 16, 10, ctx.settings.warmup)?
        .run()
        .await
        .context("warm-up")?;
    let _ = std::fs::remove_file(&log);
    tokio::time::sleep(SETTLE).await;
    let rss = procstat::rss_bytes(target.pid())?;
    Ok((target, rss))
}

pub(super) fn h2load<'a>(
    ctx: &'a RunContext,
    url: &'a str,
    log: &'a Path,
    connections: u32,
    streams: u32,
    duration: Duration,
) -> Result<H2loadRun<'a>> {
    Ok(H2loadRun {
        h2load: ctx.h2load.as_deref().context("h2load was not found")?,
        url,
        connections,
        streams,
        duration,
        pin: ctx.load_pin,
        log,
    })
}

/// The run's client config offering only h2.
pub(super) fn h2_client_config(base: &Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    let mut config = (**base).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Opens `count` HTTP/2 connections to `addr`, each making one request.
async fn open(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    count: usize,
) -> Result<Vec<h2::client::SendRequest<Bytes>>> {
    let mut clients = Vec::with_capacity(count);
    while clients.len() < count {
        let batch = (count - clients.len()).min(PARALLEL);
        let mut set = JoinSet::new();
        for _ in 0..batch {
            let tls = tls.clone();
            set.spawn(async move {
                let mut client = connect(addr, tls).await?;
                get(&mut client).await?;
                anyhow::Ok(client)
            });
        }
        while let Some(joined) = set.join_next().await {
            clients.push(joined.context("client task")??);
        }
    }
    Ok(clients)
}

pub(super) async fn connect(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> Result<h2::client::SendRequest<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .context("connecting")?;
    tcp.set_nodelay(true).context("TCP_NODELAY")?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .context("TLS handshake")?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        bail!("ALPN did not choose h2");
    }
    let (sender, connection) = h2::client::handshake(stream)
        .await
        .context("h2 handshake")?;
    // Ends when the client is dropped and the server closes the connection.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One `GET /` on the connection; fails unless a whole 200 response comes back.
pub(super) async fn get(client: &mut h2::client::SendRequest<Bytes>) -> Result<()> {
    let exchange = async {
        let request = http::Request::get("https://localhost/").body(())?;
        let mut ready = client.clone().ready().await.context("connection ready")?;
        let (response, _) = ready.send_request(request, true).context("sending")?;
        let response = response.await.context("response")?;
        if response.status() != http::StatusCode::OK {
            bail!("status {}", response.status());
        }
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.context("body")?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .context("no response within 10 s")?
}

/// A second request on every connection (in batches); how many were answered.
async fn reuse_all(clients: &[h2::client::SendRequest<Bytes>]) -> usize {
    let mut ok = 0;
    for batch in clients.chunks(PARALLEL) {
        let mut set = JoinSet::new();
        for client in batch {
            let mut client = client.clone();
            set.spawn(async move { get(&mut client).await.is_ok() });
        }
        while let Some(joined) = set.join_next().await {
            ok += usize::from(joined.unwrap_or(false));
        }
    }
    ok
}

/// Prints the table (Markdown).
pub fn print(all: &[(TargetKind, u32, Result<H2ConnFigures, String>)], duration: Duration) {
    let kb = |b: i64| format!("{:.1}", b as f64 / 1024.0);
    println!("\n### Memory per HTTP/2 connection (TLS, ALPN h2; user memory, RSS growth / N)\n");
    println!(
        "| target | connections | idle KB/conn | answered again | busy KB/conn (h2load -cN -m1, {} s) | busy req/s |",
        duration.as_secs()
    );
    println!("|---|---|---|---|---|---|");
    for (kind, n, got) in all {
        match got {
            Ok(f) => println!(
                "| {kind} | {n} | {} | {}/{n} | {} | {:.0} |",
                kb(f.idle_per_connection()),
                f.answered,
                kb(f.busy_per_connection()),
                f.busy_rate
            ),
            Err(e) => println!("| {kind} | {n} | failed: {e} | | | |"),
        }
    }
}
