//! `fulcrum demo` (issue 15 item 5): it starts three real nodes, waits until they answer
//! and agree on a leader, then prints where the dashboard is and what to try; the page
//! and the cluster view it reads answer at that address with the three nodes. The demo
//! is stopped with SIGTERM by its PID and takes its children with it.
//!
//! The demo uses fixed loopback ports (admin 9901-9903, raft 7941-7943, web
//! 127.0.0.11-13:8080, backends 18081-18082, Redis 16379): the test checks them first
//! and fails naming a busy one rather than reading another program's answers.

use fulcrum_tests::client::admin_call;
use fulcrum_tests::process::fulcrum_bin;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the demo by PID if the test ends early.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_the_dashboard_and_serves_it() {
    for port in [9901, 9902, 9903, 7941, 7942, 7943, 18081, 18082] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is busy: the demo needs it"
        );
    }
    let mut child = Command::new(fulcrum_bin())
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fulcrum demo");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let demo = Demo(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(format!("stderr: {line}"));
        }
    });
    let started = Instant::now();
    let mut out = Vec::new();
    while started.elapsed() < Duration::from_secs(40) {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let done = line.contains("Ctrl-C stops everything");
                out.push(line);
                if done {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    let text = out.join("\n");
    eprintln!("{text}\n(guide after {:?})", started.elapsed());
    assert!(text.contains("Ctrl-C stops everything"), "{text}");
    // "  node 2        pid 1234  (leader)"
    let leader: u64 = text
        .lines()
        .find(|l| l.trim_end().ends_with("(leader)"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("the leader is named: {text}"));
    let page = (1..=3).find(|id| *id != leader).expect("a follower");
    assert!(
        text.contains(&format!("http://127.0.0.1:990{page}/")),
        "the dashboard of a follower (node {page}) is shown: {text}"
    );
    assert!(text.contains("kill -9 the leader's pid"), "{text}");

    let page = admin_call(&format!("127.0.0.1:990{page}"), "GET", "/", "", None)
        .await
        .expect("dashboard");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<title>fulcrum cluster</title>"),
        "{}",
        page.body
    );
    // The view gathers each node's /status; a node that only just registered its admin
    // address may miss one gathering, so look again for up to 5 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (v, up) = loop {
        let cluster = admin_call("127.0.0.1:9902", "GET", "/cluster", "", None)
            .await
            .expect("cluster view");
        let v: serde_json::Value = serde_json::from_str(&cluster.body).expect("json");
        let up = v["nodes"]
            .as_array()
            .map(|n| n.iter().filter(|n| n["reachable"] == true).count());
        if up == Some(3) || std::time::Instant::now() >= deadline {
            break (v, up);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(up, Some(3), "{v:#}");
    assert_eq!(v["divergent"], serde_json::json!([]), "{v:#}");
    drop(demo);
    // The nodes went with the demo.
    let gone = admin_call("127.0.0.1:9901", "GET", "/status", "", None).await;
    assert!(gone.is_err(), "node 1 still answers after the demo stopped");
}
