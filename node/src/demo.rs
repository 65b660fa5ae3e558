//! `fulcrum demo`: a three-node cluster on loopback, for a first look.
//!
//! Starts two demo backends inside this process, a `redis-server` for shared session
//! affinity when one is on PATH, and three real `fulcrum run` child processes that form
//! a Raft cluster. Each node serves the same listener on its own loopback address
//! (`127.0.0.11..13:8080`, via `[node].listen_ip`). There is no floating VIP on loopback
//! (that needs a real interface or network namespaces): point clients at any node.
//! Ctrl-C stops everything this command started.
//!
//! The `redis-server` start here (`start_redis`) is the demo's own, on purpose: the
//! test bed's one starter (`fulcrum_testbed::redis`) lives in a test crate that this
//! shipped binary must not depend on, and the bed depends on no fulcrum crate, so it
//! cannot take this one either. It is one `Command` with fixed flags and no waiting.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WEB_PORT: u16 = 8080;
const BACKENDS: [&str; 2] = ["127.0.0.1:18081", "127.0.0.1:18082"];
const REDIS_PORT: u16 = 16379;
/// How long the demo waits for its nodes to answer and elect a leader.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// Children killed (by PID) when the demo ends, whatever the reason.
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    for (i, addr) in BACKENDS.iter().enumerate() {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("demo backend {addr}: {e}"))?;
        tokio::spawn(demo_backend(listener, format!("backend-{}", i + 1)));
    }
    let mut children = Children(Vec::new());
    let session = start_redis(dir.path(), &mut children);
    let secret = dir.path().join("cluster.secret");
    std::fs::write(
        &secret,
        format!("demo-{}-{}", std::process::id(), rand::random::<u64>()),
    )
    .map_err(|e| e.to_string())?;
    for id in 1..=3u64 {
        let cfg = node_config(id, dir.path(), &secret, &session);
        let path = dir.path().join(format!("node{id}.toml"));
        std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.path().join(format!("node{id}.log")))
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&exe)
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("start node {id}: {e}"))?;
        children.0.push((format!("node {id}"), child));
    }
    let leader = wait_ready().await;
    print_guide(&children, dir.path(), session.is_some(), leader);
    wait_for_stop().await;
    println!("\nstopping the demo");
    Ok(())
}

/// Waits (up to `READY_WITHIN`) until the three nodes answer, agree on a leader and run
/// the seed config, printing progress every second; returns the leader's id when known.
async fn wait_ready() -> Option<u64> {
    let start = std::time::Instant::now();
    let mut next_progress = start + Duration::from_secs(1);
    loop {
        let mut answering = 0;
        let mut leaders = std::collections::BTreeSet::new();
        let mut running = 0;
        for id in 1..=3u64 {
            let admin = format!("127.0.0.1:990{id}");
            let call = crate::ctl::call(&admin, http::Method::GET, "/status", None, None);
            let Ok(Ok((code, body))) = tokio::time::timeout(Duration::from_millis(500), call).await
            else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
                continue;
            };
            if code.is_success() {
                answering += 1;
                leaders.insert(v["leader_id"].as_u64());
                if v["config_version_running"].as_u64() >= Some(1) {
                    running += 1;
                }
            }
        }
        let leader = match (leaders.len(), leaders.first()) {
            (1, Some(Some(id))) => Some(*id),
            _ => None,
        };
        if answering == 3 && running == 3 && leader.is_some() {
            return leader;
        }
        let now = std::time::Instant::now();
        if now.duration_since(start) > READY_WITHIN {
            eprintln!("the cluster is not fully up after {READY_WITHIN:?}; see the node logs");
            return leader;
        }
        if now >= next_progress {
            eprintln!(
                "starting: {answering}/3 nodes answer, {running}/3 run the config, leader {} ({:.0}s)",
                leader.map_or("not elected yet".to_string(), |l| format!("node {l}")),
                now.duration_since(start).as_secs_f64()
            );
            next_progress = now + Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Ctrl-C or SIGTERM.
async fn wait_for_stop() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn start_redis(dir: &Path, children: &mut Children) -> Option<String> {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &REDIS_PORT.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    children.0.push(("redis-server".to_string(), child));
    Some(format!(
        "[session]\nredis = \"redis://127.0.0.1:{REDIS_PORT}/0\"\nttl = \"30m\"\n"
    ))
}

fn node_config(id: u64, dir: &Path, secret: &Path, session: &Option<String>) -> String {
    let affinity = if session.is_some() {
        r#"affinity = { mode = "learn", cookie = "JSESSIONID" }"#
    } else {
        ""
    };
    format!(
        r#"[node]
id = {id}
admin = "127.0.0.1:990{id}"
data_dir = "{data}"
access_log = "off"
listen_ip = "127.0.0.1{id}"

[cluster]
raft = "127.0.0.1:794{id}"
peers = ["1@127.0.0.1:7941", "2@127.0.0.1:7942", "3@127.0.0.1:7943"]
secret_file = "{secret}"

{session}
[[listener]]
name = "web"
bind = "127.0.0.1:{WEB_PORT}"

[[route]]
listener = "web"
pool = "demo"

[[pool]]
name = "demo"
algorithm = "round-robin"
{affinity}
health = {{ path = "/", interval = "1s", timeout = "500ms", rise = 2, fall = 2 }}
backends = [{{ addr = "{b1}" }}, {{ addr = "{b2}" }}]
"#,
        data = dir.join(format!("data{id}")).display(),
        secret = secret.display(),
        session = session.clone().unwrap_or_default(),
        b1 = BACKENDS[0],
        b2 = BACKENDS[1],
    )
}

fn print_guide(children: &Children, dir: &Path, redis: bool, leader: Option<u64>) {
    println!("fulcrum demo: a three-node Raft cluster on loopback\n");
    for (name, child) in &children.0 {
        let lead = match leader {
            Some(l) if *name == format!("node {l}") => "  (leader)",
            _ => "",
        };
        println!("  {name:<13} pid {}{lead}", child.id());
    }
    // Served by every node; show one that is not the leader, so the page stays up
    // while the leader is killed.
    let page = (1..=3u64).find(|id| Some(*id) != leader).unwrap_or(1);
    println!("\nDashboard (any node's admin address; it refreshes every second):");
    println!("  http://127.0.0.1:990{page}/");
    println!("  Try: kill -9 the leader's pid above and watch it turn DOWN and another node lead;");
    println!(
        "  drain buttons appear once a token is typed in (this demo sets none, so any works)."
    );
    println!("\nSend traffic (any node; each serves 127.0.0.1X:{WEB_PORT}):");
    println!("  curl -i http://127.0.0.11:{WEB_PORT}/");
    println!("Cluster status and who leads:");
    println!("  fulcrum ctl --admin 127.0.0.1:9901 status");
    println!("  fulcrum ctl --admin 127.0.0.1:9901 members");
    println!("Watch a failover: kill -9 the leader's pid above, then run `status` on another node");
    println!("  (admin ports 9901-9903); a new leader is elected within about a second.");
    println!(
        "Change the config everywhere: fulcrum ctl --admin 127.0.0.1:9902 apply {}",
        dir.join("node1.toml").display()
    );
    if redis {
        println!(
            "Session affinity: pool 'demo' learns JSESSIONID in Redis (127.0.0.1:{REDIS_PORT})."
        );
    } else {
        println!("redis-server is not on PATH: session affinity in Redis is off in this demo (install redis-server to see it).");
    }
    println!("No floating VIP on loopback: see README (VIP on bare metal) and tests/tests/vip.rs.");
    println!(
        "Logs: {}/node*.log   Ctrl-C stops everything.",
        dir.display()
    );
}

/// A tiny backend: names itself, and hands out a JSESSIONID on first sight.
async fn demo_backend(listener: tokio::net::TcpListener, name: String) {
    let counter = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (name, counter) = (name.clone(), counter.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (name, counter) = (name.clone(), counter.clone());
                async move {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let mut resp = hyper::Response::new(Full::new(Bytes::from(format!(
                        "hello from {name} (request {n})\n"
                    ))));
                    if let Ok(v) = name.parse() {
                        resp.headers_mut().insert("x-backend", v);
                    }
                    let has_session = req
                        .headers()
                        .get(http::header::COOKIE)
                        .and_then(|c| c.to_str().ok())
                        .is_some_and(|c| c.contains("JSESSIONID="));
                    if !has_session {
                        if let Ok(v) = format!("JSESSIONID={name}-{n}; Path=/").parse() {
                            resp.headers_mut().insert(http::header::SET_COOKIE, v);
                        }
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
