//! Holding and releasing a VIP inside a namespace: the kernel has it with a finite lifetime,
//! a peer can reach it, release removes it; plus start errors and `remove_stale`.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{can_run, controller_in, in_netns, ip, opts, present, wait_for, Lab, IFACE};
use fulcrum_vip::{VipController, VipError};

const VIP: &str = "10.77.50.100";

#[test]
fn hold_makes_the_vip_reachable_and_release_removes_it() {
    if !can_run("hold_makes_the_vip_reachable_and_release_removes_it") {
        return;
    }
    let lab = Lab::new("hr", &["a", "b"]);
    let (a, b) = (lab.ns("a"), lab.ns("b"));
    let vip: IpAddr = VIP.parse().unwrap();
    let (rt, ctrl) = controller_in(&a, opts(VIP, 24));
    assert!(!present(&a, vip));

    ctrl.hold("test");
    let to_present = wait_for(Duration::from_secs(2), Duration::from_millis(1), || {
        present(&a, vip)
    })
    .expect("VIP present after hold");
    println!(
        "MEASURED hold -> present: {:?} (poll call itself included)",
        to_present
    );
    assert!(ctrl.held());
    assert_eq!(ctrl.transitions(), 1);
    ctrl.hold("again"); // idempotent
    assert_eq!(ctrl.transitions(), 1);

    let lines = lab.addr_lines("a", VIP);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("valid_lft") && !lines[0].contains("valid_lft forever"),
        "finite lifetime: {}",
        lines[0]
    );
    println!("ip addr: {}", lines[0].trim());

    // A TCP listener in a (wildcard bind), reached from b through the VIP.
    let listener = in_netns(&a, || TcpListener::bind("0.0.0.0:7000").expect("bind"));
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.write_all(b"hello from a").expect("write");
    });
    let reply = in_netns(&b, || {
        let target: SocketAddr = format!("{VIP}:7000").parse().unwrap();
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))
            .expect("connect to VIP from b");
        let mut buf = String::new();
        s.read_to_string(&mut buf).expect("read");
        buf
    });
    server.join().unwrap();
    assert_eq!(reply, "hello from a");

    ctrl.release("test");
    let to_absent = wait_for(Duration::from_secs(1), Duration::from_millis(1), || {
        !present(&a, vip)
    })
    .expect("VIP gone after release");
    println!("MEASURED release -> absent: {:?}", to_absent);
    assert!(!ctrl.held());
    assert_eq!(ctrl.transitions(), 2);
    assert!(lab.addr_lines("a", VIP).is_empty());

    rt.block_on(ctrl.shutdown());
}

#[test]
fn shutdown_releases_a_held_vip() {
    if !can_run("shutdown_releases_a_held_vip") {
        return;
    }
    let lab = Lab::new("sd", &["a"]);
    let a = lab.ns("a");
    let vip: IpAddr = VIP.parse().unwrap();
    let (rt, ctrl) = controller_in(&a, opts(VIP, 32));
    ctrl.hold("test");
    wait_for(Duration::from_secs(2), Duration::from_millis(5), || {
        present(&a, vip)
    })
    .expect("present");
    rt.block_on(ctrl.shutdown());
    assert!(
        !present(&a, vip),
        "shutdown must delete the VIP before returning"
    );
}

#[test]
fn start_on_a_missing_interface_is_a_clear_error() {
    if !can_run("start_on_a_missing_interface_is_a_clear_error") {
        return;
    }
    let lab = Lab::new("ne", &["a"]);
    let mut o = opts(VIP, 24);
    o.interface = "nosuchif0".into();
    let err = in_netns(&lab.ns("a"), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(VipController::start(o))
            .err()
            .expect("start must fail")
    });
    let msg = err.to_string();
    println!("error: {msg}");
    assert!(
        matches!(err, VipError::NoSuchInterface { ref interface } if interface == "nosuchif0"),
        "{err:?}"
    );
    assert!(msg.contains("nosuchif0") && msg.contains("does not exist"));
}

#[test]
fn remove_stale_removes_a_leftover_vip() {
    if !can_run("remove_stale_removes_a_leftover_vip") {
        return;
    }
    let lab = Lab::new("rs", &["a"]);
    let a = lab.ns("a");
    let vip: IpAddr = VIP.parse().unwrap();
    ip(&["-n", &a, "addr", "add", &format!("{VIP}/24"), "dev", IFACE]);
    assert!(present(&a, vip));
    let (first, second) = in_netns(&a, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let first = fulcrum_vip::remove_stale(vip, 24, IFACE)
                .await
                .expect("remove_stale");
            let second = fulcrum_vip::remove_stale(vip, 24, IFACE)
                .await
                .expect("remove_stale");
            (first, second)
        })
    });
    assert!(first, "the leftover was removed");
    assert!(!second, "nothing left the second time");
    assert!(!present(&a, vip));
    // The host's own address is untouched.
    assert!(present(&a, "10.77.50.1".parse().unwrap()));
}
