//! Announcements seen from a peer: gratuitous ARP rewrites a peer's stale neighbour entry, a
//! moved VIP is followed, a released holder stops announcing, and IPv6 NA does the same.

mod common;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{can_run, controller_in, ip, opts, present, wait_for, Lab, IFACE};

const FAKE_MAC: &str = "02:00:00:00:00:99";

/// Gives `host` a STALE entry for `addr` pointing at a MAC nobody has, then waits out the
/// neighbour `locktime` (1 s) so the next announcement may replace it.
fn plant_stale_entry(lab: &Lab, host: &str, addr: &str) {
    let ns = lab.ns(host);
    ip(&[
        "-n", &ns, "neigh", "replace", addr, "lladdr", FAKE_MAC, "dev", IFACE, "nud", "stale",
    ]);
    assert_eq!(lab.neigh(host, addr).as_deref(), Some(FAKE_MAC));
    std::thread::sleep(Duration::from_millis(1100));
}

#[test]
fn garp_moves_a_peer_to_the_holder_and_follows_a_move() {
    if !can_run("garp_moves_a_peer_to_the_holder_and_follows_a_move") {
        return;
    }
    const VIP: &str = "10.77.50.100";
    let lab = Lab::new("ga", &["a", "b", "c"]);
    let (mac_a, mac_c) = (lab.mac("a"), lab.mac("c"));
    plant_stale_entry(&lab, "b", VIP);

    let (rt_a, ctrl_a) = controller_in(&lab.ns("a"), opts(VIP, 24));
    let (rt_c, ctrl_c) = controller_in(&lab.ns("c"), opts(VIP, 24));
    let held_a = Instant::now();
    ctrl_a.hold("a is leader");
    // The first burst goes out right after the add; the second only at +1.5 s, so seeing the
    // update before 1.4 s proves the first burst did it.
    let t_a = wait_for(
        Duration::from_millis(1400),
        Duration::from_millis(5),
        || lab.neigh("b", VIP).as_deref() == Some(mac_a.as_str()),
    );
    println!("MEASURED b's entry -> a's MAC {t_a:?} after hold (first burst)");
    assert!(t_a.is_some(), "b still has {:?}", lab.neigh("b", VIP));

    // Move: a releases, c takes over. c's first burst comes within b's 1 s locktime after
    // a's update; kernels that let an ARP announcement override locktime follow at once
    // (seen here), others at c's second burst (+1.5 s). Both fit the 4 s limit.
    ctrl_a.release("a lost its lease");
    let moved = Instant::now();
    ctrl_c.hold("c is leader");
    let t_c = wait_for(Duration::from_secs(4), Duration::from_millis(10), || {
        lab.neigh("b", VIP).as_deref() == Some(mac_c.as_str())
    });
    println!(
        "MEASURED b's entry -> c's MAC {t_c:?} after the move (a held {:?} before)",
        moved - held_a
    );
    assert!(t_c.is_some(), "b still has {:?}", lab.neigh("b", VIP));
    assert!(!present(&lab.ns("a"), VIP.parse().unwrap()));

    // a's pending bursts (+1.5 s, +5 s after its hold) must have been cancelled by the
    // release: b stays on c while a's +5 s burst would have been due.
    let until = held_a + Duration::from_millis(6500);
    while Instant::now() < until {
        assert_eq!(
            lab.neigh("b", VIP).as_deref(),
            Some(mac_c.as_str()),
            "a announced after release"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    rt_c.block_on(ctrl_c.shutdown());
    rt_a.block_on(ctrl_a.shutdown());
}

#[test]
fn unsolicited_na_updates_an_ipv6_peer() {
    if !can_run("unsolicited_na_updates_an_ipv6_peer") {
        return;
    }
    const VIP6: &str = "fd77:50::100";
    let lab = Lab::new("na", &["a", "b"]);
    let mac_a = lab.mac("a");
    plant_stale_entry(&lab, "b", VIP6);

    let (rt, ctrl) = controller_in(&lab.ns("a"), opts(VIP6, 64));
    ctrl.hold("test");
    let vip: IpAddr = VIP6.parse().unwrap();
    wait_for(Duration::from_secs(2), Duration::from_millis(2), || {
        present(&lab.ns("a"), vip)
    })
    .expect("VIP6 present");
    let lines = lab.addr_lines("a", VIP6);
    println!("ip addr: {}", lines.join(" | "));
    assert!(
        lines.iter().any(|l| l.contains("nodad")),
        "added without DAD: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("tentative")),
        "usable at once: {lines:?}"
    );

    let t = wait_for(
        Duration::from_millis(1400),
        Duration::from_millis(5),
        || lab.neigh("b", VIP6).as_deref() == Some(mac_a.as_str()),
    );
    println!("MEASURED b's IPv6 entry -> a's MAC {t:?} after hold (first burst)");
    assert!(t.is_some(), "b still has {:?}", lab.neigh("b", VIP6));

    rt.block_on(ctrl.shutdown());
    assert!(!present(&lab.ns("a"), vip));
}

#[test]
fn reannounce_starts_a_fresh_burst_and_hold_after_release_works() {
    if !can_run("reannounce_starts_a_fresh_burst_and_hold_after_release_works") {
        return;
    }
    const VIP: &str = "10.77.50.100";
    let lab = Lab::new("re", &["a", "b"]);
    let (a, mac_a) = (lab.ns("a"), lab.mac("a"));
    let vip: IpAddr = VIP.parse().unwrap();
    let mut o = opts(VIP, 24);
    o.bursts = vec![(Duration::ZERO, 3)];
    o.refresh = Duration::ZERO; // one burst, then silence: only reannounce can fix b
    let (rt, ctrl) = controller_in(&a, o);
    // The failover chain's `garp`: one call per holding period or re-announce, after the
    // address is in place.
    let firsts: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let seen = firsts.clone();
    ctrl.on_first_announcement(Arc::new(move |what| {
        seen.lock().unwrap_or_else(|p| p.into_inner()).push(what)
    }));
    let got = || firsts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    ctrl.hold("test");
    wait_for(Duration::from_secs(2), Duration::from_millis(2), || {
        present(&a, vip)
    })
    .expect("present");
    std::thread::sleep(Duration::from_millis(200)); // let the only burst finish
    assert_eq!(
        got(),
        ["hold"],
        "one first announcement for a 3-frame burst"
    );

    plant_stale_entry(&lab, "b", VIP);
    assert_eq!(
        lab.neigh("b", VIP).as_deref(),
        Some(FAKE_MAC),
        "nothing announced after the plan ended"
    );
    ctrl.reannounce("term changed");
    let t = wait_for(
        Duration::from_millis(1000),
        Duration::from_millis(5),
        || lab.neigh("b", VIP).as_deref() == Some(mac_a.as_str()),
    );
    println!("MEASURED reannounce -> b's entry on a's MAC: {t:?}");
    assert!(t.is_some(), "b still has {:?}", lab.neigh("b", VIP));
    assert_eq!(got(), ["hold", "reannounce"]);

    ctrl.release("test");
    ctrl.reannounce("ignored while released");
    wait_for(Duration::from_secs(1), Duration::from_millis(2), || {
        !present(&a, vip)
    })
    .expect("released");
    ctrl.hold("again");
    wait_for(Duration::from_secs(2), Duration::from_millis(2), || {
        present(&a, vip)
    })
    .expect("held again");
    wait_for(Duration::from_secs(1), Duration::from_millis(2), || {
        got().len() == 3
    })
    .expect("a first announcement after holding again");
    assert_eq!(
        got(),
        ["hold", "reannounce", "hold"],
        "nothing reported while released"
    );
    assert_eq!(ctrl.transitions(), 3);
    rt.block_on(ctrl.shutdown());
}

#[test]
fn refresh_keeps_announcing_while_holding() {
    if !can_run("refresh_keeps_announcing_while_holding") {
        return;
    }
    const VIP: &str = "10.77.50.100";
    let lab = Lab::new("rf", &["a", "b"]);
    let (a, mac_a) = (lab.ns("a"), lab.mac("a"));
    let mut o = opts(VIP, 24);
    o.bursts = vec![(Duration::ZERO, 1)];
    o.refresh = Duration::from_millis(300);
    let (rt, ctrl) = controller_in(&a, o);
    ctrl.hold("test");
    wait_for(Duration::from_secs(2), Duration::from_millis(2), || {
        present(&a, VIP.parse().unwrap())
    })
    .expect("present");
    // Plant the wrong MAC twice: each time a refresh frame must put a's MAC back.
    for round in 0..2 {
        plant_stale_entry(&lab, "b", VIP);
        let t = wait_for(Duration::from_secs(2), Duration::from_millis(10), || {
            lab.neigh("b", VIP).as_deref() == Some(mac_a.as_str())
        });
        println!("refresh round {round}: b back on a's MAC after {t:?} (+1.1 s locktime wait)");
        assert!(t.is_some(), "b still has {:?}", lab.neigh("b", VIP));
    }
    rt.block_on(ctrl.shutdown());
}
