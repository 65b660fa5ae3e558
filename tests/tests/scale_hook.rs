//! The signal to scale (issue 25 item 4), end to end: a real fulcrum node in front of two
//! real backends that answer slowly, a pool with `capacity` and a `scale_hook` pointed at
//! a receiver in this test. Bounded load holds saturation above `above`: one "up" call
//! arrives with the pool's figures, and no second one within the cool-down; the gauges
//! show the load. The load stops: a "down" call arrives once the cool-down is over.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::hostile::metric;
use fulcrum_tests::process::Fulcrum;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CAPACITY: u64 = 10;
/// Clients in a loop of slow requests: in flight stays about 12, saturation about 1.2.
const CLIENTS: usize = 12;
const HOLD: Duration = Duration::from_secs(1);
const COOLDOWN: Duration = Duration::from_secs(6);

/// Calls received: when, and the JSON body.
type Calls = Arc<Mutex<Vec<(Instant, Value)>>>;

/// A receiver that records each POST and answers 200.
async fn receiver() -> (String, Calls) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("addr").to_string();
    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                let body = loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    let text = String::from_utf8_lossy(&got).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_string)
                        })
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        assert!(head.starts_with("POST /scale HTTP/1.1"), "{head}");
                        break body.to_string();
                    }
                };
                let value: Value = serde_json::from_str(&body).expect("JSON body");
                recorded
                    .lock()
                    .expect("calls")
                    .push((Instant::now(), value));
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, calls)
}

/// `CLIENTS` loops of `/slow?ms=400` on new connections until `stop` (or 30 s at most).
fn load(web: &str, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<u32>> {
    (0..CLIENTS)
        .map(|_| {
            let (web, stop) = (web.to_string(), stop.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut ok = 0;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let Ok(mut s) = TcpStream::connect(&web).await else {
                        continue;
                    };
                    let req = "GET /slow?ms=400 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
                    if s.write_all(req.as_bytes()).await.is_err() {
                        continue;
                    }
                    let mut got = Vec::new();
                    let read =
                        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got));
                    if matches!(read.await, Ok(Ok(_))) && got.starts_with(b"HTTP/1.1 200") {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect()
}

async fn wait_for_calls(calls: &Calls, n: usize, within: Duration) -> Vec<(Instant, Value)> {
    let deadline = Instant::now() + within;
    loop {
        let now = calls.lock().expect("calls").clone();
        if now.len() >= n || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_calls_its_hook_once_per_cooldown_then_calls_down() {
    let b0 = TestBackend::start("b0").await;
    let b1 = TestBackend::start("b1").await;
    let (hook_addr, calls) = receiver().await;
    let ports = Ports::new();
    let pool_extra = format!(
        "capacity = {CAPACITY}\nscale_hook = {{ url = \"http://{hook_addr}/scale\", above = 0.8, below = 0.3, for = \"{}s\", cooldown = \"{}s\" }}",
        HOLD.as_secs(),
        COOLDOWN.as_secs()
    );
    let cfg = single_node(&ports, &backend_list(&[&b0, &b1], &[]), &pool_extra, "");
    let node = Fulcrum::start(&cfg, &ports.admin).await;

    // Idle from the start, the pool is below `below`: a "down" call may come before the
    // load (a real signal: the pool is over-provisioned); the cool-down then counts from it.
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers = load(&ports.web, &stop);
    let first_up = loop {
        let got = wait_for_calls(&calls, 1, Duration::from_millis(200)).await;
        if let Some(up) = got.iter().find(|(_, v)| v["direction"] == "up") {
            break up.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no up call under load: {got:?}"
        );
    };
    let (up_at, up) = first_up;
    let saturation = up["saturation"].as_f64().expect("saturation");
    let in_flight = up["in_flight"].as_u64().expect("in_flight");
    assert_eq!(up["pool"], "app", "{up}");
    assert_eq!(up["node"], 1, "{up}");
    assert_eq!(up["capacity"], CAPACITY, "{up}");
    assert!(up["queued"].is_u64(), "{up}");
    assert!(saturation > 0.8, "{up}");
    assert_eq!(saturation, in_flight as f64 / CAPACITY as f64, "{up}");
    assert!(
        up_at.duration_since(started) >= HOLD,
        "called only after saturation held for {HOLD:?}: {:?}",
        up_at.duration_since(started)
    );
    // While loaded the gauges show it.
    let gauge_in_flight = metric(&node.admin, "fulcrum_pool_in_flight", "pool=\"app\"").await;
    let gauge_saturation = metric(&node.admin, "fulcrum_pool_saturation", "pool=\"app\"").await;
    assert!(
        gauge_in_flight > 8.0,
        "fulcrum_pool_in_flight {gauge_in_flight}"
    );
    assert!(
        gauge_saturation > 0.8,
        "fulcrum_pool_saturation {gauge_saturation}"
    );

    // Still saturated, but within the cool-down: no second up call.
    tokio::time::sleep_until((up_at + COOLDOWN - Duration::from_secs(2)).into()).await;
    let ups =
        |calls: &[(Instant, Value)]| calls.iter().filter(|(_, v)| v["direction"] == "up").count();
    let now = calls.lock().expect("calls").clone();
    assert_eq!(ups(&now), 1, "one up call within the cool-down: {now:?}");
    stop.store(true, Ordering::SeqCst);
    let mut served = 0;
    for w in workers {
        served += w.await.expect("load task");
    }
    assert!(served > 0, "the load was served");

    // Load gone: saturation 0, below `below`; the down call comes once the cool-down ends.
    let down = loop {
        let got = calls.lock().expect("calls").clone();
        if let Some(down) = got
            .iter()
            .find(|(at, v)| *at > up_at && v["direction"] == "down")
        {
            break down.clone();
        }
        assert!(
            up_at.elapsed() < COOLDOWN + Duration::from_secs(10),
            "no down call after the load: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (down_at, down) = down;
    assert_eq!(down["pool"], "app", "{down}");
    assert_eq!(down["in_flight"], 0, "{down}");
    assert_eq!(down["saturation"], 0.0, "{down}");
    assert!(
        down_at.duration_since(up_at) >= COOLDOWN - Duration::from_millis(300),
        "the down call waited for the cool-down: {:?}",
        down_at.duration_since(up_at)
    );
    let all = calls.lock().expect("calls").clone();
    assert_eq!(ups(&all), 1, "{all:?}");
    for pair in all.windows(2) {
        let gap = pair[1].0.duration_since(pair[0].0);
        assert!(
            gap >= COOLDOWN - Duration::from_millis(300),
            "at most one call per cool-down, got two {gap:?} apart: {all:?}"
        );
    }
    let ok = metric(
        &node.admin,
        "fulcrum_scale_hook_calls_total",
        "result=\"ok\"",
    )
    .await;
    assert_eq!(ok as usize, all.len(), "every call counted as ok");
    println!(
        "up call {:?} after load began ({up}); down call {:?} after it ({down}); {served} requests served",
        up_at.duration_since(started),
        down_at.duration_since(up_at)
    );
}
