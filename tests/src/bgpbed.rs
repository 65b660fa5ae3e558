//! The BGP / ECMP test bed (issue 18): three fulcrum nodes, each with its own BIRD 2, a
//! BIRD "router" namespace peering with the three (eBGP with BFD) and installing the
//! service prefix as a multipath route, a client behind the router on its own link,
//! two backends and a redis-server for shared affinity. Addresses in 10.77.70.0/24
//! (the bridge), 10.77.71.0/24 (router <-> client) and the service address 10.77.72.1;
//! nothing is routed anywhere else. Every process is ours, stopped by PID on drop; the
//! namespaces go with the `Testbed` (and the client's with this bed).

use crate::process::fulcrum_bin;
use fulcrum_testbed::netns::{exec, run};
use fulcrum_testbed::testbed::Testbed;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

pub struct BgpBed {
    pub bed: Testbed,
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Option<Child>>,
    birds: Vec<(String, Child)>,
    redis: Option<Child>,
    client_ns: String,
    backend_stops: Vec<tokio::sync::oneshot::Sender<()>>,
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
        std::fs::write(dir.path().join("secret"), "bgp-test-secret-0123456789").expect("secret");
        let client_ns = bed.ns("cl");
        let mut b = BgpBed {
            bed,
            dir,
            nodes: vec![None, None, None],
            birds: Vec::new(),
            redis: None,
            client_ns,
            backend_stops: Vec::new(),
        };
        b.wire_router_and_client();
        b.start_backends();
        b.start_redis();
        b.start_router_bird();
        for i in 0..3 {
            b.start_node_bird(i);
            std::fs::write(b.config_path(i), b.node_config(i)).expect("config");
            b.start_node(i);
        }
        b
    }

    /// The client's own link to the router; the router forwards with an L4 ECMP hash, the
    /// nodes answer the client through the router.
    fn wire_router_and_client(&mut self) {
        let rt = self.bed.ns("rt");
        let cl = self.client_ns.clone();
        let _ = Command::new("ip").args(["netns", "del", &cl]).output();
        ip(&["netns", "add", &cl]);
        ip(&["-n", &cl, "link", "set", "lo", "up"]);
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
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let addr: SocketAddr = addr.parse().expect("addr");
            self.bed.in_ns(host, move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("rt");
                rt.block_on(async move {
                    let _b = crate::backend::TestBackend::start_on(addr, host).await;
                    let _ = ready_tx.send(());
                    let _ = rx.await;
                });
            });
            ready_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("backend started");
            self.backend_stops.push(tx);
        }
    }

    fn start_redis(&mut self) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.bed.ns("rd"), "redis-server"])
            .args([
                "--bind",
                "10.77.70.31",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.redis = Some(child);
    }

    fn spawn_bird(&mut self, host: &str, conf: &str) {
        let conf_path = self.dir.path().join(format!("bird-{host}.conf"));
        std::fs::write(&conf_path, conf).expect("bird conf");
        let log = std::fs::File::create(self.dir.path().join(format!("bird-{host}.log")))
            .expect("bird log");
        let bird = bird_tool("bird").expect("bird is installed");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.bed.ns(host)])
            .arg(bird)
            .arg("-f")
            .arg("-c")
            .arg(&conf_path)
            .arg("-s")
            .arg(self.bird_socket(host))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start bird");
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
            let _ = c.kill();
            let _ = c.wait();
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

    fn config_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}.toml", i + 1))
    }

    pub fn node_config(&self, i: usize) -> String {
        let peers: Vec<String> = (0..3)
            .map(|j| format!("\"{}@{}:7946\"", j + 1, node_ip(j)))
            .collect();
        let birdc = bird_tool("birdc").expect("birdc is installed");
        format!(
            r#"[node]
id = {id}
admin = "{ip}:9901"
data_dir = "{data}"
access_log = "off"
shutdown_grace = "3s"

[cluster]
raft = "{ip}:7946"
peers = [{peers}]
secret_file = "{secret}"

[bgp]
prefixes = ["{SERVICE}/32"]
fragment = "{fragment}"
socket = "{socket}"
birdc = "{birdc}"
withdraw_wait = "1s"

[session]
redis = "redis://10.77.70.31:6379/0"
fallback_cookie = ""

[[listener]]
name = "web"
bind = "0.0.0.0:80"

[[route]]
listener = "web"
pool = "app"

[[pool]]
name = "app"
affinity = {{ mode = "header", header = "x-user" }}
backends = [{{ addr = "10.77.70.21:8080" }}, {{ addr = "10.77.70.22:8080" }}]
"#,
            id = i + 1,
            ip = node_ip(i),
            peers = peers.join(", "),
            data = self.dir.path().join(format!("data{}", i + 1)).display(),
            secret = self.dir.path().join("secret").display(),
            fragment = self.fragment_path(i).display(),
            socket = self.bird_socket(NODES[i]).display(),
            birdc = birdc.display(),
        )
    }

    /// Starts (or restarts) node `i`.
    pub fn start_node(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("n{}.log", i + 1)))
            .expect("log");
        let err = log.try_clone().expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.bed.ns(NODES[i])])
            .arg(fulcrum_bin())
            .arg("run")
            .arg("--config")
            .arg(self.config_path(i))
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start fulcrum");
        self.nodes[i] = Some(child);
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn sigterm(&self, i: usize) {
        if let Some(c) = &self.nodes[i] {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// Whether node `i`'s process is still running.
    pub fn running(&mut self, i: usize) -> bool {
        match self.nodes[i].as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
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
        let admin = format!("{}:9901", node_ip(i));
        let bin = fulcrum_bin();
        let mut cmd = vec![bin.to_str().unwrap_or("fulcrum"), "ctl", "--admin", &admin];
        cmd.extend_from_slice(args);
        exec(&self.bed.ns(NODES[i]), &cmd)
    }

    /// Node `i`'s `/status`.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let url = format!("http://{}:9901/status", node_ip(i));
        let (ok, out) = exec(&self.bed.ns(NODES[i]), &["curl", "-s", "-m", "1", &url]);
        if !ok {
            return None;
        }
        serde_json::from_str(&out).ok()
    }

    /// Node `i`'s `/metrics`.
    pub fn metrics(&self, i: usize) -> String {
        let url = format!("http://{}:9901/metrics", node_ip(i));
        exec(&self.bed.ns(NODES[i]), &["curl", "-s", "-m", "1", &url]).1
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
        let path = format!("/var/run/netns/{}", self.client_ns);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }
}

impl Drop for BgpBed {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
        let birds = self.birds.drain(..).map(|(_, c)| c);
        for mut c in birds.chain(self.redis.take()).collect::<Vec<_>>() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for tx in self.backend_stops.drain(..) {
            let _ = tx.send(());
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.client_ns])
            .output();
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
