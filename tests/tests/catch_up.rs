//! A follower that was away while large configs were committed catches up (issue 23
//! item 3): three real fulcrum nodes in network namespaces, every node's link limited to
//! 1 Gbit/s with `tc netem rate` (a `tbf` token bucket at the same rate where the kernel
//! has no `sch_netem`, as on the machine it was written on), a follower killed, eight configs of about 3.7 MiB
//! (30 MiB of log) committed, the follower started again: it must run the last version
//! within [`BOUND`]. Needs root; skipped (with a message) otherwise.

use fulcrum_testbed::netns::{can_run, exec};
use fulcrum_tests::vipbed::VipCluster;
use std::time::{Duration, Instant};

const CONFIGS: usize = 8;
/// Routes of about 1,000 bytes each: about 3.7 MiB per config (the admin API takes 4 MiB).
const ROUTES: usize = 3900;
const BOUND: Duration = Duration::from_secs(20);

fn version(c: &VipCluster, i: usize) -> Option<u64> {
    c.status(i).and_then(|s| s["config_version"].as_u64())
}

fn large_config(base: &str, k: usize) -> String {
    let pad = "x".repeat(940);
    let mut text = String::with_capacity(base.len() + ROUTES * 1000);
    text.push_str(base);
    for i in 0..ROUTES {
        text.push_str(&format!(
            "\n[[route]]\nlistener = \"web\"\npath_prefix = \"/pad/{k}/{i}/{pad}\"\npool = \"app\"\n"
        ));
    }
    text
}

#[test]
fn a_follower_catches_up_on_large_configs_over_a_1gbit_link() {
    if !can_run("a_follower_catches_up_on_large_configs_over_a_1gbit_link") {
        return;
    }
    let mut c = VipCluster::start("cu", "fast", "2s");
    let holder = c
        .wait_holder(Duration::from_secs(20))
        .expect("a VIP holder");
    // netem's rate where the kernel has sch_netem; else a token bucket at the same rate.
    let mut applied = String::new();
    for n in ["n1", "n2", "n3"] {
        let ns = c.bed.ns(n);
        let netem = [
            "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "rate", "1gbit",
        ];
        let (ok, out) = exec(&ns, &netem);
        if !ok {
            assert!(
                out.contains("qdisc kind is unknown"),
                "tc netem on {n}: {out}"
            );
            let tbf = [
                "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "1gbit", "burst",
                "256kb", "latency", "50ms",
            ];
            let (ok, out) = exec(&ns, &tbf);
            assert!(ok, "tc tbf on {n}: {out}");
        }
        let (_, shown) = exec(&ns, &["tc", "qdisc", "show", "dev", "eth0"]);
        assert!(shown.contains("rate 1Gbit"), "{n}: {shown}");
        applied = shown.trim().to_string();
    }
    eprintln!("links limited: {applied}");
    let away = (holder + 1) % 3;
    c.kill9(away);
    let base = c.node_config(holder, "fast", "2s");
    let started = Instant::now();
    let mut last = 0;
    let mut bytes = 0;
    for k in 0..CONFIGS {
        let text = large_config(&base, k);
        bytes += text.len();
        let file = c.dir.path().join(format!("large{k}.toml"));
        std::fs::write(&file, &text).expect("write config");
        // --no-wait: a node is away on purpose; `apply` would wait for it and name it.
        let (ok, out) = c.ctl(
            holder,
            &["apply", "--no-wait", file.to_str().expect("path")],
        );
        assert!(ok, "ctl apply of large config {k} failed: {out}");
        last = out
            .split("committed: config version ")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no version in {out:?}"));
    }
    eprintln!(
        "{CONFIGS} configs, {} KiB in all, committed in {} ms while node {} was away",
        bytes / 1024,
        started.elapsed().as_millis(),
        away + 1
    );
    c.start_node(away);
    let restarted = Instant::now();
    let mut caught_up = None;
    while restarted.elapsed() < BOUND + Duration::from_secs(10) {
        if version(&c, away) == Some(last) {
            caught_up = Some(restarted.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(took) = caught_up else {
        panic!(
            "node {} never reached version {last} (it runs {:?}); log:\n{}",
            away + 1,
            version(&c, away),
            c.log(away)
        );
    };
    eprintln!(
        "node {} ran version {last} {} ms after its start",
        away + 1,
        took.as_millis()
    );
    assert!(took <= BOUND, "caught up after {took:?}, bound {BOUND:?}");
    for i in 0..3 {
        assert_eq!(version(&c, i), Some(last), "node {}", i + 1);
    }
}
