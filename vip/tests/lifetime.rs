//! The kernel lifetime as a dead man's switch: renewal keeps the VIP while the controller
//! runs; when the controller's task dies without releasing, the kernel removes the VIP.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{can_run, controller_in, ip, opts, present, wait_for, Lab};

const VIP: &str = "10.77.50.100";

#[test]
fn a_dead_controller_loses_the_vip_within_its_lifetime() {
    if can_run("a_dead_controller_loses_the_vip_within_its_lifetime") {
        dead_man(VIP, 24, "dm4");
    }
}

#[test]
fn a_dead_controller_loses_an_ipv6_vip_within_its_lifetime() {
    if can_run("a_dead_controller_loses_an_ipv6_vip_within_its_lifetime") {
        dead_man("fd77:50::100", 64, "dm6");
    }
}

/// Holds `addr` with a 1 s lifetime, kills the controller's runtime without a release, and
/// measures how long the kernel keeps the address.
fn dead_man(addr: &str, prefix: u8, tag: &str) {
    let lab = Lab::new(tag, &["a"]);
    let a = lab.ns("a");
    let vip: IpAddr = addr.parse().unwrap();
    let mut o = opts(addr, prefix);
    o.lifetime = Duration::from_secs(1);
    let (rt, ctrl) = controller_in(&a, o);
    ctrl.hold("test");
    wait_for(Duration::from_secs(2), Duration::from_millis(5), || {
        present(&a, vip)
    })
    .expect("present");
    // Let a few renewals happen so the test covers a renewed address, not just the first add.
    std::thread::sleep(Duration::from_millis(600));
    assert!(present(&a, vip));

    // The process "freezes": its runtime stops without any chance to release.
    let died = Instant::now();
    rt.shutdown_background();
    let gone = wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
        !present(&a, vip)
    });
    println!(
        "MEASURED dead man's switch ({addr}, lifetime 1 s): gone {gone:?} after the task died"
    );
    let gone = gone.expect("the kernel must remove the VIP by itself");
    assert!(gone <= Duration::from_millis(2500), "took {gone:?}");
    assert!(died.elapsed() < Duration::from_secs(6));
    // The handle notices that nobody holds the VIP any more.
    assert!(!ctrl.held());
}

#[test]
fn renewal_keeps_a_short_lifetime_vip_present() {
    if !can_run("renewal_keeps_a_short_lifetime_vip_present") {
        return;
    }
    let lab = Lab::new("rn", &["a"]);
    let a = lab.ns("a");
    let vip: IpAddr = VIP.parse().unwrap();
    let mut o = opts(VIP, 24);
    o.lifetime = Duration::from_secs(1);
    let (rt, ctrl) = controller_in(&a, o);
    ctrl.hold("test");
    wait_for(Duration::from_secs(2), Duration::from_millis(5), || {
        present(&a, vip)
    })
    .expect("present");

    let start = Instant::now();
    let mut polls = 0;
    let mut max_lft_seen = 0;
    while start.elapsed() < Duration::from_secs(4) {
        assert!(
            present(&a, vip),
            "VIP vanished after {:?} despite renewal",
            start.elapsed()
        );
        if polls % 10 == 0 {
            let lft = valid_lft(&lab.addr_lines("a", VIP))
                .unwrap_or_else(|why| panic!("the VIP's kernel lifetime: {why}"));
            max_lft_seen = max_lft_seen.max(lft);
        }
        polls += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "renewal: present in all {polls} polls over 4 s; valid_lft never above {max_lft_seen} s"
    );
    assert!(
        max_lft_seen <= 1,
        "the kernel lifetime must stay at the configured 1 s"
    );
    rt.block_on(ctrl.shutdown());
}

/// The largest `valid_lft Nsec` of `ip -o addr` lines; an error when no line has one or
/// a line says `forever` (an address without a lifetime is exactly what must not pass).
fn valid_lft(lines: &[String]) -> Result<u32, String> {
    let mut max = None;
    for l in lines {
        let Some(rest) = l.split("valid_lft ").nth(1) else {
            continue;
        };
        let word = rest.split_whitespace().next().unwrap_or("");
        if word == "forever" {
            return Err(format!("valid_lft forever in {l:?}"));
        }
        let secs: u32 = word
            .strip_suffix("sec")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("unreadable valid_lft {word:?} in {l:?}"))?;
        max = Some(max.map_or(secs, |m: u32| m.max(secs)));
    }
    max.ok_or_else(|| format!("no valid_lft in {lines:?}"))
}

#[test]
fn valid_lft_reads_seconds_and_refuses_forever() {
    let line = |lft: &str| {
        vec![format!(
            "2: eth0    inet 10.77.0.100/24 scope global eth0\\       valid_lft {lft} preferred_lft {lft}"
        )]
    };
    assert_eq!(valid_lft(&line("1sec")), Ok(1));
    assert!(valid_lft(&line("forever")).is_err());
    assert!(valid_lft(&[]).is_err());
    assert!(valid_lft(&["2: eth0 inet 10.77.0.100/24".to_string()]).is_err());
}

/// The kernel removes an expired address only at its next lifetime check, and a change of
/// any other address (here: one renewed every 0.93 s, as another holder or DHCP would) puts
/// that check up to a second out. `kernel_expiry_bound`, which a strict-mode claim waits
/// out, must cover that; the lifetime alone (what strict mode used to wait, plus 300 ms) does
/// not.
#[test]
fn an_expired_address_is_gone_within_the_kernel_expiry_bound() {
    if !can_run("an_expired_address_is_gone_within_the_kernel_expiry_bound") {
        return;
    }
    let lab = Lab::new("xb", &["a"]);
    let a = lab.ns("a");
    let mut o = opts("10.77.50.200", 24);
    o.lifetime = Duration::from_secs(1);
    let bound = o.kernel_expiry_bound();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewer = {
        let (a, stop) = (a.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                ip(&[
                    "-n",
                    &a,
                    "addr",
                    "replace",
                    "10.77.50.201/24",
                    "dev",
                    common::IFACE,
                    "valid_lft",
                    "5",
                    "preferred_lft",
                    "5",
                ]);
                std::thread::sleep(Duration::from_millis(930));
            }
        })
    };
    let vip: IpAddr = "10.77.50.200".parse().unwrap();
    let mut lived = Vec::new();
    for round in 0..4u64 {
        // Different phases against the renewer's period.
        std::thread::sleep(Duration::from_millis(170 * round));
        ip(&[
            "-n",
            &a,
            "addr",
            "replace",
            "10.77.50.200/24",
            "dev",
            common::IFACE,
            "valid_lft",
            "1",
            "preferred_lft",
            "1",
        ]);
        let gone = wait_for(
            bound + Duration::from_secs(1),
            Duration::from_millis(5),
            || !present(&a, vip),
        );
        lived.push(gone);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = renewer.join();
    println!("MEASURED address with a 1 s lifetime gone after {lived:?} (bound {bound:?})");
    for gone in lived {
        let gone = gone.expect("the kernel must remove an expired address");
        assert!(
            gone >= Duration::from_millis(950),
            "removed before its lifetime: {gone:?}"
        );
        assert!(
            gone <= bound + Duration::from_millis(50),
            "outlived the kernel expiry bound {bound:?}: {gone:?}"
        );
    }
}
