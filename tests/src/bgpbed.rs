//! The BGP / ECMP test bed (issue 18): three fulcrum nodes, each with its own BIRD 2, a
//! BIRD "router" namespace peering with the three (eBGP with BFD) and installing the
//! service prefix as a multipath route, a client behind the router on its own link,
//! two backends and a redis-server for shared affinity. Addresses in 10.77.70.0/24
//! (the bridge), 10.77.71.0/24 (router <-> client) and the service address 10.77.72.1;
//! nothing is routed anywhere else. Every process is ours, stopped by PID on drop; the
//! namespaces go with the `Testbed` (and the client's with this bed).

use fulcrum_testbed::cluster::{web_to_app, Cluster};
use fulcrum_testbed::netns::{command_in, exec, run, spawn_in, Namespace};
use fulcrum_testbed::nsbackend::NsBackend;
use fulcrum_testbed::process::{Launched, Output, Proc};
use fulcrum_testbed::redis::RedisServer;
use fulcrum_testbed::testbed::Testbed;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The anycast service address every node announces.
pub const SERVICE: &str = "10.77.72.1";
pub const ROUTER: &str = "10.77.70.1";
const NODES: [&str; 3] = ["n1", "n2", "n3"];

pub fn node_ip(i: usize) -> String {
    format!("10.77.70.{}", 11 + i)
}

/// Runs `ip ARGS`; panics with its stderr on failure (bed set-up and fault injection).
pub fn ip(args: &[&str]) -> String {
    run("ip", args).unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")))
}

/// `birdc`/`bird` as installed (Debian puts them in /usr/sbin, which a test's PATH may lack).
pub fn bird_tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// The bed: nodes (a test-bed [`Cluster`], files in `dir`), BIRDs, Redis, backends.
pub struct BgpBed {
    pub nodes: Cluster,
    birds: Vec<(String, Proc)>,
    redis: RedisServer,
    /// The client behind the router (its own namespace, not on the bridge).
    client: Option<Namespace>,
    pub bed: Testbed,
    pub dir: tempfile::TempDir,
    client_ns: String,
    backends: Vec<NsBackend>,
}

impl BgpBed {
    pub fn start(tag: &str) -> BgpBed {
        let bed = Testbed::new(
            tag,
            &[
                ("rt", 1),
                ("n1", 11),
                ("n2", 12),
                ("n3", 13),
                ("b1", 21),
                ("b2", 22),
                ("rd", 31),
            ],
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes =
            Cluster::on_testbed(&bed, &NODES, dir.path(), "3s", "bgp-test-secret-0123456789")
                .expect("cluster files");
        let client_ns = bed.ns("cl");
        let redis = RedisServer::new("10.77.70.31", 6379, dir.path()).in_namespace(&bed.ns("rd"));
        let mut b = BgpBed {
            nodes,
            birds: Vec::new(),
            redis,
            client: None,
            bed,
            dir,
            client_ns,
            backends: Vec::new(),
        };
        b.wire_router_and_client();
        b.start_backends();
        b.start_redis();
        b.start_router_bird();
        for i in 0..3 {
            b.start_node_bird(i);
            b.nodes.write_config(i, &b.node_config(i)).expect("config");
            b.start_node(i);
        }
        b
    }

    /// The client's own link to the router; the router forwards with an L4 ECMP hash, the
    /// nodes answer the client through the router.
    fn wire_router_and_client(&mut self) {
        let rt = self.bed.ns("rt");
        let cl = self.client_ns.clone();
        let client = Namespace::add(&cl, true).expect("the client's namespace");
        self.client = Some(client);
        ip(&[
            "-n", &rt, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", &cl,
        ]);
        ip(&["-n", &rt, "addr", "add", "10.77.71.1/24", "dev", "eth1"]);
        ip(&["-n", &rt, "link", "set", "eth1", "up"]);
        ip(&["-n", &cl, "addr", "add", "10.77.71.2/24", "dev", "eth0"]);
        ip(&["-n", &cl, "link", "set", "eth0", "up"]);
        ip(&[
            "-n",
            &cl,
            "route",
            "add",
            "10.77.72.0/24",
            "via",
            "10.77.71.1",
        ]);
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.fib_multipath_hash_policy", "1"),
            ("net.ipv4.conf.all.send_redirects", "0"),
        ] {
            let (ok, out) = exec(&rt, &["sysctl", "-qw", &format!("{key}={value}")]);
            assert!(ok, "sysctl {key}: {out}");
        }
        for n in NODES {
            ip(&[
                "-n",
                &self.bed.ns(n),
                "route",
                "add",
                "10.77.71.0/24",
                "via",
                ROUTER,
            ]);
        }
    }

    fn start_backends(&mut self) {
        for (host, addr) in [("b1", "10.77.70.21:8080"), ("b2", "10.77.70.22:8080")] {
            let addr: SocketAddr = addr.parse().expect("addr");
            let backend = NsBackend::start(&self.bed.ns(host), addr, host).expect("backend");
            self.backends.push(backend);
        }
    }

    fn start_redis(&mut self) {
        self.redis.start().expect("start redis-server");
    }

    fn spawn_bird(&mut self, host: &str, conf: &str) {
        let conf_path = self.dir.path().join(format!("bird-{host}.conf"));
        std::fs::write(&conf_path, conf).expect("bird conf");
        let log = self.dir.path().join(format!("bird-{host}.log"));
        let bird = bird_tool("bird").expect("bird is installed");
        let mut cmd = command_in(&self.bed.ns(host), &bird.display().to_string());
        cmd.arg("-f")
            .arg("-c")
            .arg(&conf_path)
            .arg("-s")
            .arg(self.bird_socket(host));
        let child = Proc::spawn(cmd, Output::Log(&log), false).expect("start bird");
        self.birds.push((host.to_string(), child));
    }

    pub fn bird_socket(&self, host: &str) -> PathBuf {
        self.dir.path().join(format!("bird-{host}.ctl"))
    }

    fn start_router_bird(&mut self) {
        let mut conf = format!(
            "router id {ROUTER};\nprotocol device {{ scan time 10; }}\n\
protocol kernel {{ ipv4 {{ export all; }}; merge paths on; }}\n\
protocol bfd {{ interface \"eth0\" {{ interval 100 ms; multiplier 3; }}; }}\n"
        );
        for i in 0..3 {
            conf.push_str(&format!(
                "protocol bgp node{n} {{ local {ROUTER} as 65000; neighbor {ip} as 65001; \
hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 2; bfd on; \
ipv4 {{ import where net = {SERVICE}/32; export none; }}; }}\n",
                n = i + 1,
                ip = node_ip(i)
            ));
        }
        self.spawn_bird("rt", &conf);
    }

    /// Stops node `i`'s BIRD (kill -9; its BGP session with the router goes).
    pub fn stop_node_bird(&mut self, i: usize) {
        let host = NODES[i];
        if let Some(pos) = self.birds.iter().position(|(h, _)| h == host) {
            let (_, mut c) = self.birds.remove(pos);
            c.kill();
        }
        let _ = std::fs::remove_file(self.bird_socket(host));
    }

    /// Starts node `i`'s BIRD with an empty fragment (as a fresh install would).
    pub fn start_node_bird(&mut self, i: usize) {
        let fragment = self.fragment_path(i);
        std::fs::write(&fragment, "").expect("empty fragment");
        let conf = format!(
            "router id {ip};\nprotocol device {{ scan time 10; }}\ninclude \"{frag}\";\n\
protocol bfd {{ interface \"eth0\" {{ interval 100 ms; multiplier 3; }}; }}\n\
protocol bgp uplink {{ local {ip} as 65001; neighbor {ROUTER} as 65000; \
hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 2; bfd on; \
ipv4 {{ import none; export where proto ~ \"fulcrum*\"; }}; }}\n",
            ip = node_ip(i),
            frag = fragment.display()
        );
        self.spawn_bird(NODES[i], &conf);
    }

    fn fragment_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("fulcrum-n{}.conf", i + 1))
    }

    pub fn node_config(&self, i: usize) -> String {
        let birdc = bird_tool("birdc").expect("birdc is installed");
        let local = format!(
            r#"[bgp]
prefixes = ["{SERVICE}/32"]
fragment = "{fragment}"
socket = "{socket}"
birdc = "{birdc}"
withdraw_wait = "1s"

[session]
redis = "redis://10.77.70.31:6379/0"
fallback_cookie = ""

"#,
            fragment = self.fragment_path(i).display(),
            socket = self.bird_socket(NODES[i]).display(),
            birdc = birdc.display(),
        );
        let pool = r#"affinity = { mode = "header", header = "x-user" }
backends = [{ addr = "10.77.70.21:8080" }, { addr = "10.77.70.22:8080" }]"#;
        self.nodes
            .node_file(i)
            .render(&(local + &web_to_app("0.0.0.0:80", "", pool)))
    }

    /// Starts (or restarts) node `i`.
    pub fn start_node(&mut self, i: usize) {
        self.nodes.start(i).expect("start fulcrum");
    }

    pub fn kill9(&mut self, i: usize) {
        self.nodes.node(i).kill();
    }

    pub fn sigterm(&self, i: usize) {
        let _ = self.nodes.node(i).signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// Whether node `i`'s process is still running.
    pub fn running(&mut self, i: usize) -> bool {
        self.nodes.node(i).running()
    }

    /// The next hops of the router's kernel route to the service address, sorted.
    pub fn next_hops(&self) -> Vec<String> {
        let (_, out) = exec(
            &self.bed.ns("rt"),
            &["ip", "route", "show", &format!("{SERVICE}/32")],
        );
        let mut hops: Vec<String> = out
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_string())
            .collect();
        hops.sort();
        hops
    }

    /// Polls the router's route every 5 ms until its next hops are `want`; the time it took.
    pub fn wait_hops(&self, want: &[String], within: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.next_hops() == want {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// `fulcrum ctl --admin <node i> ARGS...` from the node's own namespace.
    pub fn ctl(&self, i: usize, args: &[&str]) -> (bool, String) {
        self.nodes.ctl(&self.bed.ns(NODES[i]), i, args)
    }

    /// Node `i`'s `/status`.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        self.nodes.status(&self.bed.ns(NODES[i]), i)
    }

    /// Node `i`'s `/metrics`.
    pub fn metrics(&self, i: usize) -> String {
        self.nodes
            .admin_get(&self.bed.ns(NODES[i]), i, "/metrics")
            .1
    }

    /// `GET /` to the service address from inside node `i`'s own namespace (the node
    /// answers locally, whatever the router does): whether it got 200.
    pub fn node_serves_locally(&self, i: usize) -> bool {
        let (ok, out) = exec(
            &self.bed.ns(NODES[i]),
            &[
                "curl",
                "-s",
                "-m",
                "1",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{SERVICE}/"),
            ],
        );
        ok && out.trim() == "200"
    }

    /// `birdc ARGS` against `host`'s BIRD (diagnostics).
    pub fn birdc(&self, host: &str, args: &[&str]) -> String {
        let Some(birdc) = bird_tool("birdc") else {
            return "no birdc".into();
        };
        let out = Command::new(birdc)
            .arg("-s")
            .arg(self.bird_socket(host))
            .args(args)
            .output();
        match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
            Err(e) => e.to_string(),
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Runs `f` in the client's namespace (behind the router).
    pub fn in_client<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        spawn_in(&self.client_ns, f)
    }

    /// The client's namespace (behind the router).
    pub fn client_ns(&self) -> &str {
        &self.client_ns
    }
}

impl Drop for BgpBed {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
        self.birds.drain(..).for_each(|(_, mut c)| c.kill());
        self.redis.kill();
        self.backends.clear();
        self.client = None;
    }
}

/// One HTTP/1.1 request to the service address on a new connection, as user `user`:
/// the backend that answered (`x-backend`), or None on any failure within `budget`.
pub fn request_as(user: &str, budget: Duration) -> Option<String> {
    let addr: SocketAddr = format!("{SERVICE}:80").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, budget).ok()?;
    s.set_read_timeout(Some(budget)).ok()?;
    s.set_write_timeout(Some(budget)).ok()?;
    let req =
        format!("GET /u HTTP/1.1\r\nHost: svc\r\nx-user: {user}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("x-backend")
            .then(|| v.trim().to_string())
    })
}
