//! The `[vip]` section is fixed at run time and the same on every node (issue 23 item 4):
//! `ctl apply` refuses a file that changes it, naming the section, and a node started with
//! another `[vip]` than its running peers refuses to join. Three real fulcrum nodes in
//! network namespaces; needs root, skipped (with a message) otherwise.

use fulcrum_testbed::netns::can_run;
use fulcrum_tests::vipbed::{VipCluster, VIP};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(20);

/// Waits until every node follows node `leader` (index) with its config applied.
fn all_follow(c: &VipCluster, leader: usize, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        let settled = (0..3).all(|i| {
            c.status(i).is_some_and(|s| {
                s["leader_id"].as_u64() == Some(leader as u64 + 1)
                    && s["config_version"].as_u64().unwrap_or(0) > 0
            })
        });
        if settled {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn versions(c: &VipCluster) -> Vec<u64> {
    (0..3)
        .map(|i| {
            c.status(i)
                .and_then(|s| s["config_version"].as_u64())
                .unwrap_or(0)
        })
        .collect()
}

#[test]
fn ctl_apply_refuses_a_changed_vip_section_and_applies_the_rest() {
    if !can_run("ctl_apply_refuses_a_changed_vip_section_and_applies_the_rest") {
        return;
    }
    let c = VipCluster::start("va", "fast", "2s");
    let holder = c.wait_holder(SETTLE).expect("a VIP holder");
    // The seed config reaches every node a little after the first leader.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut before = versions(&c);
    while !(before.iter().all(|v| *v == before[0] && *v > 0))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
        before = versions(&c);
    }
    assert!(
        before.iter().all(|v| *v == before[0] && *v > 0),
        "{before:?}"
    );

    // fencing, lifetime and address changes (and the same file with all three) are refused.
    let changes = [
        ("strict", "2s", format!("{VIP}/24"), "fencing strict"),
        ("fast", "3s", format!("{VIP}/24"), "lifetime 3s"),
        (
            "fast",
            "2s",
            "10.77.70.101/24".to_string(),
            "address 10.77.70.101/24",
        ),
    ];
    for (fencing, lifetime, address, names) in &changes {
        let file = c.write_config(0, fencing, lifetime, address);
        let file = file.to_str().expect("path");
        let (ok, out) = c.ctl(holder, &["apply", file]);
        assert!(
            !ok,
            "ctl apply of a changed [vip] ({names}) succeeded: {out}"
        );
        assert!(
            out.contains("[vip] cannot be changed at run time") && out.contains(names),
            "the refusal does not name [vip] and the change ({names}): {out}"
        );
        assert_eq!(versions(&c), before, "a refused apply changed a version");
    }
    // The file as deployed (same [vip]) still applies everywhere.
    let file = c.write_config(0, "fast", "2s", &format!("{VIP}/24"));
    let (ok, out) = c.ctl(holder, &["apply", file.to_str().expect("path")]);
    assert!(ok, "ctl apply of the deployed file failed: {out}");
    let want = before[0] + 1;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while versions(&c) != vec![want; 3] && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        versions(&c),
        vec![want; 3],
        "the same-[vip] file did not apply everywhere"
    );
    for i in 0..3 {
        let s = c.status(i).expect("status");
        assert_eq!(s["vip"]["fencing"], "fast", "node {}: {s}", i + 1);
        assert_eq!(s["vip"]["address"], format!("{VIP}/24"), "node {}", i + 1);
    }
    assert_eq!(
        c.holders_now(),
        vec![holder],
        "one holder after the applies"
    );
}

#[test]
fn a_node_started_with_another_vip_section_refuses_to_join() {
    if !can_run("a_node_started_with_another_vip_section_refuses_to_join") {
        return;
    }
    let mut c = VipCluster::start("vj", "fast", "2s");
    let holder = c.wait_holder(SETTLE).expect("a VIP holder");
    // All three in the cluster first: killing a member of a two-node quorum before the
    // third has joined would take the leader's quorum (and the VIP) away, rightly.
    assert!(
        all_follow(&c, holder, SETTLE),
        "the three nodes never agreed on leader {}",
        holder + 1
    );
    let other = (holder + 1) % 3;
    c.kill9(other);
    c.write_config(other, "strict", "2s", &format!("{VIP}/24"));
    c.start_node(other);
    assert!(
        c.wait_exit(other, Duration::from_secs(40)),
        "node {} with fencing strict kept running in a fast cluster; log:\n{}",
        other + 1,
        c.log(other)
    );
    let log = c.log(other);
    assert!(
        log.contains("[vip] differs from node") && log.contains("fencing strict"),
        "the refusal does not name [vip]: {log}"
    );
    let holders = c.holders_now();
    if holders != vec![holder] {
        let logs: Vec<String> = (0..3)
            .map(|j| format!("--- node {} ---\n{}", j + 1, c.log(j)))
            .collect();
        panic!(
            "one holder while the node was refused: holders {holders:?}, before {holder}\n{}",
            logs.join("\n")
        );
    }
    // The running nodes stay, even when their own start-up check still ran when the
    // refused node came up (it started after them).
    for j in (0..3).filter(|j| *j != other) {
        assert!(
            !c.wait_exit(j, Duration::from_millis(100)),
            "node {} exited; log:\n{}",
            j + 1,
            c.log(j)
        );
    }
    // With the cluster's [vip] back in its file, the same node joins.
    c.write_config(other, "fast", "2s", &format!("{VIP}/24"));
    c.start_node(other);
    assert!(
        !c.wait_exit(other, Duration::from_secs(8)),
        "node {} exited with the cluster's [vip]; log:\n{}",
        other + 1,
        c.log(other)
    );
    let s = c.status(other).expect("status of the rejoined node");
    assert_eq!(s["vip"]["fencing"], "fast", "{s}");
    assert_eq!(c.holders_now(), vec![holder], "one holder after the rejoin");
}
