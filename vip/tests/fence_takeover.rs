//! The two halves of a lossless planned hand-over, on the wire:
//! - the successor accepts the VIP's frames from the stopping holder's MAC (only that MAC,
//!   only until its lease ends, never ARP) before its own claim, and sends the packets of
//!   connections it does not know back to the old holder, but never a new connection's SYN
//!   and never one of its own;
//! - the stopping holder keeps every connection it sends a packet on once
//!   `keep_outgoing` is on, also one opened after it listed its connections, while a
//!   connection that stays silent and unlisted is handed over with the rest.

mod common;
mod fence_bed;
mod wire;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::in_netns;
use fence_bed::{install_in, ready, Asker, Bed, PORT, VIP4};
use fulcrum_vip::Forward;

#[test]
fn a_successor_accepts_forwarded_frames_from_that_mac_only_until_its_lease_ends() {
    let Some(_serial) = ready("a_successor_accepts_forwarded_frames") else {
        return;
    };
    let vip = IpAddr::V4(VIP4);
    let bed = Bed::new("takeo", &[vip]);
    let Some(mut fence) = install_in(&bed.node, &[vip]) else {
        return;
    };
    let wait = Duration::from_millis(200);
    in_netns(&bed.peer, || {
        let mut ask = Asker::new(&bed);
        assert!(!ask.tcp(VIP4, wait), "a closed fence let TCP through");
        let stranger = [0x02, 0x77, 0, 0, 0, 0x99];
        assert!(fence
            .take_over(
                stranger,
                bed.node_mac,
                Instant::now() + Duration::from_secs(5),
                3000
            )
            .expect("accept a stranger's frames"));
        assert!(
            !ask.tcp(VIP4, wait),
            "frames from another MAC than the forwarder's got through"
        );
        assert!(fence
            .take_over(
                bed.peer_mac,
                bed.node_mac,
                Instant::now() + Duration::from_millis(600),
                3000
            )
            .expect("accept the forwarder's frames"));
        assert!(ask.tcp(VIP4, wait), "the forwarder's frames were dropped");
        fence.close_all().expect("close");
        assert!(
            !ask.tcp(VIP4, wait),
            "closing the fence did not stop accepting forwarded frames"
        );
        let until = Instant::now() + Duration::from_millis(600);
        assert!(fence
            .take_over(bed.peer_mac, bed.node_mac, until, 3000)
            .expect("accept the forwarder's frames again"));
        assert!(
            ask.tcp(VIP4, wait),
            "the forwarder's frames were dropped again"
        );
        assert!(
            !ask.arp(VIP4, wait),
            "ARP for the VIP was answered before the claim"
        );
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            !ask.tcp(VIP4, wait),
            "the forwarder's frames still got through after the lease end"
        );
    });
    assert!(!fence.is_open(vip).expect("read the lease"));
}

#[test]
fn a_successor_sends_unknown_connections_back_and_keeps_its_own() {
    let Some(_serial) = ready("a_successor_sends_unknown_connections_back") else {
        return;
    };
    let Some(mut e) = EchoBed::open("takeb", PORT + 3) else {
        return;
    };
    let (bed, fence) = (&e.bed, &mut e.fence);
    let connect = || e_connect(bed, e.target);
    // Older than the take-over: this node does not know it as its own.
    let mut older = connect();
    assert!(round_trip(&mut older, b'a'), "no echo before the take-over");
    let old_holder = [0x02, 0x77, 0, 0, 0, 0x98];
    assert!(fence
        .take_over(
            old_holder,
            bed.node_mac,
            Instant::now() + Duration::from_secs(5),
            3000
        )
        .expect("take over"));
    // Opened after it: noted as this node's own by its SYN-ACK.
    let mut own = connect();
    assert!(
        round_trip(&mut own, b'b'),
        "a connection this node answered since the take-over was sent away"
    );
    assert!(
        !round_trip(&mut older, b'c'),
        "a connection this node does not know was not sent back to the old holder"
    );
    drop((older, own));
    e.finish();
}

#[test]
fn keep_outgoing_keeps_a_connection_opened_after_the_listing() {
    let Some(_serial) = ready("keep_outgoing_keeps_a_connection_opened_after_the_listing") else {
        return;
    };
    let vip = IpAddr::V4(VIP4);
    let Some(mut e) = EchoBed::open("keepo", PORT + 2) else {
        return;
    };
    let (bed, fence) = (&e.bed, &mut e.fence);
    let connect = || e_connect(bed, e.target);
    // Silent from before the listing, and not listed: handed over like a stranger.
    let mut silent = connect();
    assert!(
        round_trip(&mut silent, b'a'),
        "no echo before the hand-over"
    );
    match fence.keep_outgoing(3000) {
        Ok(true) => {}
        Ok(false) => {
            assert!(!fence_bed::ci(), "CI=true: no netdev egress hook");
            eprintln!("SKIPPED: this kernel has no netdev egress hook");
            return;
        }
        Err(e) => panic!("keep_outgoing: {e}"),
    }
    // Opened after the (here empty) listing, before the switch: kept by its SYN-ACK.
    let mut late = connect();
    fence
        .hand_over(Forward {
            to: bed.peer_mac,
            from: bed.node_mac,
            for_ms: 3000,
            keep: Vec::new(),
            keep_ms: 3000,
        })
        .expect("hand over");
    assert!(
        round_trip(&mut late, b'b'),
        "a connection accepted between the listing and the switch was cut"
    );
    assert!(
        !round_trip(&mut silent, b'c'),
        "an unlisted connection silent since before keep_outgoing was kept: \
         keep4 lets more through than it should"
    );
    fence
        .open_until(vip, Instant::now() + Duration::from_secs(1))
        .expect("open again");
    let listing = fence_bed_nft(&bed.node);
    if let Some(out) = listing {
        assert!(
            !out.contains("update @keep4"),
            "opening the fence again left the egress rule:\n{out}"
        );
    }
    drop((silent, late));
    e.finish();
}

/// A node with its fence installed and open, and an echo server on the VIP (two
/// connections), in a fresh bed.
struct EchoBed {
    bed: Bed,
    fence: fulcrum_vip::Fence,
    target: SocketAddr,
    echo: std::thread::JoinHandle<()>,
}

impl EchoBed {
    fn open(tag: &str, port: u16) -> Option<EchoBed> {
        let vip = IpAddr::V4(VIP4);
        let bed = Bed::new(tag, &[vip]);
        let mut fence = install_in(&bed.node, &[vip])?;
        fence
            .open_until(vip, Instant::now() + Duration::from_secs(10))
            .expect("open");
        let listener = in_netns(&bed.node, || TcpListener::bind(SocketAddr::new(vip, port)))
            .expect("listen on the VIP");
        let echo = std::thread::spawn(move || echo_two(listener));
        Some(EchoBed {
            bed,
            fence,
            target: SocketAddr::new(vip, port),
            echo,
        })
    }

    fn finish(self) {
        let _ = self.echo.join();
    }
}

/// A connection from the peer to `target`, with a short read timeout.
fn e_connect(bed: &Bed, target: SocketAddr) -> TcpStream {
    let s = in_netns(&bed.peer, || {
        TcpStream::connect_timeout(&target, Duration::from_secs(1))
    })
    .expect("connect (a new connection's SYN is never sent back)");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    s
}

fn round_trip(s: &mut TcpStream, byte: u8) -> bool {
    let mut got = [0u8; 1];
    s.write_all(&[byte]).is_ok() && s.read_exact(&mut got).is_ok() && got[0] == byte
}

/// Echoes on the first two connections until each closes.
fn echo_two(listener: TcpListener) {
    let mut handles = Vec::new();
    for _ in 0..2 {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        handles.push(std::thread::spawn(move || {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 16];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
}

/// `nft list table netdev fulcrum` in `ns` (`None` without the `nft` tool).
fn fence_bed_nft(ns: &str) -> Option<String> {
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "list", "table", "netdev", "fulcrum",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
