//! Health-aware DNS answers (issue 25 item 2), asked with `dig` (bind9-dnsutils):
//!
//! - Three real fulcrum nodes in network namespaces, three `[[vip]]` and `[dns]` on each:
//!   every node answers `www` with the three VIPs and `nodes` with the three node
//!   addresses, the same on every node; NXDOMAIN, REFUSED, SOA and TCP behave. kill -9 of
//!   a follower takes its address out of every survivor's answer (time measured and
//!   printed), its VIP comes back once a survivor holds it; `ctl drain-node` takes a node
//!   out, `undrain-node` and a restart put nodes back; kill -9 of the leader takes its
//!   address out too. Needs root (skipped otherwise).
//! - One node on loopback takes thousands of malformed datagrams and TCP frames and still
//!   answers, without a panic.

use fulcrum_testbed::netns::{can_run, exec};
use fulcrum_tests::config::{single_node, Ports};
use fulcrum_tests::process::Fulcrum;
use fulcrum_tests::vipbed::{as_spread, VipCluster};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const SPREAD: [&str; 3] = ["10.77.70.101", "10.77.70.102", "10.77.70.103"];
const NODE_IPS: [&str; 3] = ["10.77.70.11", "10.77.70.12", "10.77.70.13"];
const ZONE: &str = "lb.test";

/// The bed's `[vip]` becomes three `[[vip]]`, and `[dns]` is added.
fn with_dns(text: String) -> String {
    let nodes: String = NODE_IPS
        .iter()
        .enumerate()
        .map(|(i, ip)| format!("{} = [\"{ip}\"]\n", i + 1))
        .collect();
    let dns = format!(
        "\n[dns]\nbind = \"0.0.0.0:5353\"\nzone = \"{ZONE}\"\nttl = \"5s\"\n\n\
         [dns.node_addresses]\n{nodes}\n\
         [[dns.name]]\nname = \"www\"\nanswer = \"vips\"\n\n\
         [[dns.name]]\nname = \"nodes\"\nanswer = \"nodes\"\n"
    );
    as_spread(text, &SPREAD) + &dns
}

/// `dig` from the client namespace at node `server`: its whole output, or `None` when
/// dig got no answer.
fn dig(c: &VipCluster, server: usize, args: &[&str]) -> Option<String> {
    let at = format!("@{}", NODE_IPS[server]);
    let mut cmd = vec!["dig", at.as_str(), "-p", "5353", "+time=1", "+tries=1"];
    cmd.extend_from_slice(args);
    let (ok, out) = exec(&c.bed.ns("cl"), &cmd);
    (ok && out.contains("status:")).then_some(out)
}

/// The A records node `server` answers for `name` (`None`: no answer).
fn a_records(c: &VipCluster, server: usize, name: &str) -> Option<BTreeSet<String>> {
    let full = format!("{name}.{ZONE}");
    let out = dig(
        c,
        server,
        &[full.as_str(), "A", "+noall", "+answer", "+comments"],
    )?;
    if !out.contains("status: NOERROR") || !out.contains(" aa") {
        return None;
    }
    Some(
        out.lines()
            .filter(|l| !l.starts_with(';') && l.contains("\tA\t"))
            .filter_map(|l| l.split_whitespace().last().map(str::to_string))
            .collect(),
    )
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Polls every 20 ms until every node in `servers` answers `name` with `want`; returns
/// the time it took, or panics after `within`.
fn until_answers(
    c: &VipCluster,
    servers: &[usize],
    name: &str,
    want: &BTreeSet<String>,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let got: Vec<Option<BTreeSet<String>>> =
            servers.iter().map(|&s| a_records(c, s, name)).collect();
        if got.iter().all(|g| g.as_ref() == Some(want)) {
            return start.elapsed();
        }
        if start.elapsed() > within {
            let logs: String = servers.iter().map(|&s| tail(&c.log(s))).collect();
            panic!("{name}: want {want:?} from {servers:?}, got {got:?}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().rev().take(20).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n") + "\n---\n"
}

#[test]
fn dig_sees_live_vips_and_nodes_and_a_killed_or_drained_node_leaves() {
    if !can_run("dig_sees_live_vips_and_nodes_and_a_killed_or_drained_node_leaves") {
        return;
    }
    let mut c = VipCluster::start_with("dn", "fast", "2s", with_dns);
    let all = [0, 1, 2];
    let (vips, nodes) = (set(&SPREAD), set(&NODE_IPS));
    let t = until_answers(&c, &all, "www", &vips, Duration::from_secs(30));
    eprintln!(
        "all three VIPs answered by all three nodes {} ms after start",
        t.as_millis()
    );
    until_answers(&c, &all, "nodes", &nodes, Duration::from_secs(10));
    check_the_zone_edges(&c);

    // kill -9 a follower: its address leaves every survivor's answer.
    let leader = (0..3)
        .find(|&i| c.status(i).is_some_and(|s| s["role"] == "leader"))
        .expect("a leader");
    let victim = (0..3).find(|&i| i != leader).expect("a follower");
    let alive: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
    let survivors: Vec<&str> = alive.iter().map(|&i| NODE_IPS[i]).collect();
    c.kill9(victim);
    let left = until_answers(
        &c,
        &alive,
        "nodes",
        &set(&survivors),
        Duration::from_secs(5),
    );
    eprintln!(
        "kill -9 of node {} (follower): its address left both survivors' answers after {} ms",
        victim + 1,
        left.as_millis()
    );
    let back = until_answers(&c, &alive, "www", &vips, Duration::from_secs(5));
    eprintln!(
        "all three VIPs answered again (one moved to a survivor) {} ms later",
        back.as_millis()
    );

    // drain a survivor: it leaves; undrain: it comes back.
    let drained = alive[1];
    let (ok, out) = c.ctl(drained, &["drain-node"]);
    assert!(ok, "drain-node failed: {out}");
    let rest: Vec<&str> = alive
        .iter()
        .filter(|&&i| i != drained)
        .map(|&i| NODE_IPS[i])
        .collect();
    let gone = until_answers(&c, &alive, "nodes", &set(&rest), Duration::from_secs(5));
    eprintln!(
        "drain-node of node {}: left the answers after {} ms",
        drained + 1,
        gone.as_millis()
    );
    let (ok, out) = c.ctl(drained, &["undrain-node"]);
    assert!(ok, "undrain-node failed: {out}");
    until_answers(
        &c,
        &alive,
        "nodes",
        &set(&survivors),
        Duration::from_secs(5),
    );

    // The killed node returns: all three again, on every node.
    c.start_node(victim);
    let t = until_answers(&c, &all, "nodes", &nodes, Duration::from_secs(30));
    eprintln!(
        "restarted node {} back in every answer after {} ms",
        victim + 1,
        t.as_millis()
    );
    until_answers(&c, &all, "www", &vips, Duration::from_secs(30));

    // kill -9 the leader: a new one must first judge for a while before it commits.
    let leader = (0..3)
        .find(|&i| c.status(i).is_some_and(|s| s["role"] == "leader"))
        .expect("a leader");
    let alive: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let rest: Vec<&str> = alive.iter().map(|&i| NODE_IPS[i]).collect();
    c.kill9(leader);
    let left = until_answers(&c, &alive, "nodes", &set(&rest), Duration::from_secs(5));
    eprintln!(
        "kill -9 of node {} (leader): its address left both survivors' answers after {} ms",
        leader + 1,
        left.as_millis()
    );
    until_answers(&c, &alive, "www", &vips, Duration::from_secs(5));
}

/// NXDOMAIN with the SOA for an unknown name, REFUSED outside the zone, SOA and NS at
/// the apex, AAAA without data, the TTL, and the same answer over TCP.
fn check_the_zone_edges(c: &VipCluster) {
    let ask = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["+noall", "+answer", "+authority", "+comments"]);
        dig(c, 0, &all).unwrap_or_else(|| panic!("no answer to {args:?}"))
    };
    let records = |out: &str, kind: &str| -> Vec<String> {
        out.lines()
            .filter(|l| !l.starts_with(';') && l.split_whitespace().nth(3) == Some(kind))
            .map(str::to_string)
            .collect()
    };
    let nx = ask(&["nope.lb.test", "A"]);
    assert!(
        nx.contains("status: NXDOMAIN") && records(&nx, "SOA").len() == 1,
        "{nx}"
    );
    let refused = ask(&["www.example.org", "A"]);
    assert!(refused.contains("status: REFUSED"), "{refused}");
    let soa = ask(&["lb.test", "SOA"]);
    let soa = records(&soa, "SOA");
    assert!(
        soa.len() == 1 && soa[0].contains("ns.lb.test. hostmaster.lb.test."),
        "{soa:?}"
    );
    let ns = ask(&["lb.test", "NS"]);
    let ns = records(&ns, "NS");
    assert!(ns.len() == 1 && ns[0].ends_with("ns.lb.test."), "{ns:?}");
    let aaaa = ask(&["www.lb.test", "AAAA"]);
    assert!(
        aaaa.contains("status: NOERROR") && records(&aaaa, "AAAA").is_empty(),
        "{aaaa}"
    );
    let udp = ask(&["www.lb.test", "A"]);
    let a = records(&udp, "A");
    assert_eq!(a.len(), 3, "{udp}");
    assert!(
        a.iter().all(|l| l.split_whitespace().nth(1) == Some("5")),
        "TTL: {a:?}"
    );
    let tcp = ask(&["www.lb.test", "A", "+tcp"]);
    assert_eq!(records(&tcp, "A"), a, "TCP answers as UDP does");
}

/// A seeded generator (no dependency) for the hostile bytes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The bytes `dig` sends for `name` (captured from dig itself, so no DNS code is written
/// here): the base of the mutated datagrams.
fn captured_query() -> Vec<u8> {
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("sink");
    sink.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let sink_port = sink.local_addr().expect("addr").port().to_string();
    let child = std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &sink_port,
            "+time=1",
            "+tries=1",
            "www.lb.test",
            "A",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("dig (bind9-dnsutils) must be installed");
    let mut buf = [0u8; 512];
    let (n, _) = sink.recv_from(&mut buf).expect("dig's query");
    let mut child = child;
    let _ = child.wait();
    buf[..n].to_vec()
}

/// `dig +short nodes.lb.test A` at the loopback node, with `extra` options.
fn dig_loopback(port: u16, extra: &[&str]) -> String {
    let p = port.to_string();
    let mut args = vec![
        "@127.0.0.1",
        "-p",
        p.as_str(),
        "+time=2",
        "+tries=1",
        "+short",
        "nodes.lb.test",
        "A",
    ];
    args.extend_from_slice(extra);
    let out = std::process::Command::new("dig")
        .args(&args)
        .output()
        .expect("dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_and_frames_never_stop_the_answers() {
    let ports = Ports::new();
    let port = fulcrum_tests::free_port();
    let dns = format!(
        "[dns]\nbind = \"127.0.0.1:{port}\"\nzone = \"lb.test\"\n\
         [[dns.name]]\nname = \"www\"\nanswer = \"vips\"\n\
         [[dns.name]]\nname = \"nodes\"\nanswer = \"nodes\"\n\
         [dns.node_addresses]\n1 = [\"127.0.0.1\"]\n"
    );
    let cfg = single_node(&ports, "[{ addr = \"127.0.0.1:9\" }]", "", "") + "\n" + &dns;
    let t0 = Instant::now();
    let node = Fulcrum::start(&cfg, &ports.admin).await;
    eprintln!("node up after {} ms", t0.elapsed().as_millis());
    let before = tokio::task::spawn_blocking(move || dig_loopback(port, &[]))
        .await
        .expect("join");
    assert_eq!(
        before.trim(),
        "127.0.0.1",
        "the node answers before the garbage"
    );
    eprintln!("first answer after {} ms", t0.elapsed().as_millis());
    let base = tokio::task::spawn_blocking(captured_query)
        .await
        .expect("join");
    let sent = tokio::task::spawn_blocking(move || hostile_udp(port, &base))
        .await
        .expect("join");
    let frames = tokio::task::spawn_blocking(move || hostile_tcp(port))
        .await
        .expect("join");
    eprintln!(
        "sent {sent} malformed datagrams and {frames} malformed TCP frames ({} ms)",
        t0.elapsed().as_millis()
    );
    assert!(node.pid().is_some(), "the node is gone:\n{}", node.log());
    let (udp, tcp) = tokio::task::spawn_blocking(move || {
        (dig_loopback(port, &[]), dig_loopback(port, &["+tcp"]))
    })
    .await
    .expect("join");
    assert_eq!(
        udp.trim(),
        "127.0.0.1",
        "UDP still answered after the garbage"
    );
    assert_eq!(
        tcp.trim(),
        "127.0.0.1",
        "TCP still answered after the garbage"
    );
    assert!(!node.log().contains("panicked"), "a panic:\n{}", node.log());
}

/// Random datagrams, and dig's own query with every byte flipped in turn and with random
/// cuts: 3,000 in all, paced so few are lost to a full socket buffer.
fn hostile_udp(port: u16, base: &[u8]) -> usize {
    let mut rng = Lcg(0x000d_1525);
    let mut datagrams: Vec<Vec<u8>> = Vec::new();
    for _ in 0..1_000 {
        let n = (rng.next() % 600) as usize;
        datagrams.push(rng.bytes(n));
    }
    for i in 0..base.len() {
        for flip in [0xffu8, 0x80, 0x01] {
            let mut d = base.to_vec();
            d[i] ^= flip;
            datagrams.push(d);
        }
    }
    while datagrams.len() < 3_000 {
        let cut = (rng.next() as usize) % base.len();
        let extra = (rng.next() % 8) as usize;
        let mut d = base[..cut].to_vec();
        d.extend(rng.bytes(extra));
        datagrams.push(d);
    }
    // A name made of a compression pointer that points at itself.
    let mut lo = base[..12].to_vec();
    lo.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    datagrams.push(lo);
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
    s.connect(("127.0.0.1", port)).expect("connect");
    let mut sent = 0;
    for (i, d) in datagrams.iter().enumerate() {
        if s.send(d).is_ok() {
            sent += 1;
        }
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    sent
}

/// Frames over TCP: a length with no body, a huge length and a short body, garbage
/// bodies; each on its own connection, closed by us or by the server.
fn hostile_tcp(port: u16) -> usize {
    let mut rng = Lcg(0x7c9);
    let mut frames = 0;
    for i in 0..50 {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
        let frame = match i % 3 {
            0 => vec![0x00],
            1 => vec![0xff, 0xff, 1, 2, 3],
            _ => {
                let n = (rng.next() % 300) as usize;
                let mut f = (n as u16).to_be_bytes().to_vec();
                f.extend(rng.bytes(n));
                f
            }
        };
        if s.write_all(&frame).is_ok() {
            frames += 1;
        }
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
    }
    frames
}
