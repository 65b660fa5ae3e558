//! The typed balancer model: what a fulcrum config file means once parsed.
//!
//! Every struct mirrors one TOML table of the format in `DESIGN.md`. Serde does the
//! parsing (`deny_unknown_fields` everywhere, so a typo is an error, not a silently
//! ignored key); defaults live next to the field they belong to. Semantic checks that
//! need the whole file (names that must exist, weights in range) live in `validate.rs`.

use crate::traffic::{Outlier, RetryBudget};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A whole config file: the node-local sections plus the cluster-wide balancer config.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Local to one node. Optional so that `ctl apply` accepts a balancer-only file.
    pub node: Option<NodeSection>,
    /// Local to one node. Absent: the node runs as a one-node cluster.
    pub cluster: Option<ClusterSection>,
    /// The floating address(es): `[vip]` (the leader holds it) or `[[vip]]` (spread over
    /// the nodes); `interface` is local, the rest is fixed at start (see `scope`).
    pub vip: Option<crate::vips::VipTable>,
    /// Local to one node: announce the service addresses through BIRD (ECMP).
    pub bgp: Option<crate::bgp::BgpSection>,
    /// The authoritative DNS listener (`bind` local, the rest cluster-wide).
    pub dns: Option<crate::dns::DnsSection>,
    /// Where session affinity lives, and the key that signs affinity cookies.
    pub session: Option<SessionSection>,
    #[serde(default)]
    pub listener: Vec<Listener>,
    #[serde(default)]
    pub route: Vec<Route>,
    #[serde(default)]
    pub pool: Vec<Pool>,
}

/// `[node]`: identity and local resources of this process.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub id: u64,
    /// Admin API address (`/status`, `/metrics`, `/config`).
    pub admin: SocketAddr,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// A file holding the bearer token that mutating admin calls must present.
    pub admin_token_file: Option<PathBuf>,
    /// `stdout`, `off`, or a file path.
    #[serde(default = "default_access_log")]
    pub access_log: String,
    /// How long SIGTERM waits for in-flight requests before exiting anyway.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Local override of the IP every listener binds (ports stay as configured). Lets
    /// each node bind its own address, e.g. several nodes on one host in tests.
    pub listen_ip: Option<std::net::IpAddr>,
}

/// `[cluster]`: this node's Raft identity and its peers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// This node's Raft address.
    pub raft: SocketAddr,
    /// Static peer list, `"ID@HOST:PORT"`, this node included.
    pub peers: Vec<String>,
    /// Shared secret every peer must prove it knows.
    pub secret_file: PathBuf,
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat: Duration,
    #[serde(default = "default_election_min", with = "humantime_serde")]
    pub election_timeout_min: Duration,
    #[serde(default = "default_election_max", with = "humantime_serde")]
    pub election_timeout_max: Duration,
    /// A leader holds the VIP only while a quorum acknowledged it within this.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    #[serde(default)]
    pub health_policy: HealthPolicy,
    pub tls: Option<PeerTls>,
}

/// How per-node health observations combine into one effective health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HealthPolicy {
    /// Down when a majority of live nodes see it down.
    #[default]
    Majority,
    /// Down as soon as any node sees it down.
    Any,
    /// Down only when every live node sees it down.
    All,
}

/// Mutual TLS for peer traffic.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[session]`: the shared affinity store and the cookie signing keys.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    /// `redis://...`, `redis+sentinel://...` or `redis+cluster://...`.
    pub redis: Option<String>,
    #[serde(default)]
    pub sentinels: Vec<String>,
    pub master_name: Option<String>,
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Per-call Redis timeout.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// HMAC key for `affinity.mode = "cookie"`; must be the same on every node.
    pub cookie_secret: Option<String>,
    /// Name prefix of the signed fallback cookie that shared-affinity pools (`learn`,
    /// `header`, `source-ip`) give a new session (the pool name is appended); `""` turns the
    /// cookie off.
    #[serde(default = "default_fallback_cookie")]
    pub fallback_cookie: String,
    /// Files holding the fallback cookie's HMAC keys: the first signs, all verify (rotation).
    /// Empty: a key derived from the cluster secret (no cookie without `[cluster]`).
    #[serde(default)]
    pub fallback_keys: Vec<PathBuf>,
}

impl Default for SessionSection {
    fn default() -> Self {
        Self {
            redis: None,
            sentinels: Vec::new(),
            master_name: None,
            ttl: default_session_ttl(),
            timeout: default_redis_timeout(),
            cookie_secret: None,
            fallback_cookie: default_fallback_cookie(),
            fallback_keys: Vec::new(),
        }
    }
}

fn default_fallback_cookie() -> String {
    "fulcrum_pin".to_string()
}

/// Protocol a listener speaks to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    #[default]
    Http,
    Https,
    Tcp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Tcp => "tcp",
        }
    }
}

/// `[[listener]]`: a bound socket and how to talk on it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    pub bind: String,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub tls: Vec<CertPair>,
    /// Expect a PROXY protocol header from the peer.
    #[serde(default)]
    pub accept_proxy: bool,
    /// Networks allowed to send a PROXY header (`10.0.0.0/8`, ...).
    #[serde(default)]
    pub proxy_from: Vec<String>,
    /// Slowloris defence: time allowed for a client to send a full request head.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Idle keep-alive connections are closed after this.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Request heads larger than this are answered with 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Pool used by a `tcp` listener (TCP listeners have no routes).
    pub pool: Option<String>,
    /// Networks whose `X-Forwarded-For` / `Forwarded` / `X-Real-IP` are kept and appended
    /// to. From any other client these headers are replaced with what fulcrum saw.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Which path a backend receives: the normalised one routing matched (default) or
    /// the bytes the client sent.
    #[serde(default)]
    pub forward_path: ForwardPath,
    /// Routing also merges runs of `/` into one (`//admin` matches `/admin`).
    #[serde(default)]
    pub merge_slashes: bool,
    /// Open client connections at most; at the limit the listener stops accepting
    /// (new clients wait in the kernel's queue) until one closes, as HAProxy's maxconn.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open client connections from one source address at most (0: no limit); a
    /// connection over it is closed at once.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
}

/// The request path a backend receives. Routing always matches the normalised path
/// (percent-encoded unreserved characters decoded, dot segments removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardPath {
    /// The path routing matched, so backend and router agree on what was asked for.
    #[default]
    Normalized,
    /// The path exactly as the client sent it.
    AsReceived,
}

impl ForwardPath {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardPath::Normalized => "normalized",
            ForwardPath::AsReceived => "as-received",
        }
    }
}

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[[route]]`: which pool serves which requests of a listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The route's name in `ctl shift`, `/status` and the replicated split weights;
    /// required with `split`, unique among routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub listener: String,
    /// Exact host, or `*.example.com`.
    pub host: Option<String>,
    /// Longest matching prefix wins.
    pub path_prefix: Option<String>,
    /// Header name -> exact value that must all match.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The one pool the route leads to; or `split`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Blue-green / canary: traffic split between pools by weight (instead of `pool`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<crate::split::SplitEntry>,
    #[serde(default)]
    pub redirect_https: bool,
    /// Protocols a client may switch to on this route (`Upgrade` tokens, compared
    /// case-insensitively); other tokens are not forwarded. `h2c` is never allowed.
    #[serde(default = "default_upgrades")]
    pub upgrades: Vec<String>,
    /// Requests per second allowed to each client key of this route; beyond it, 429.
    pub rate_limit: Option<RateLimit>,
    /// The longest a request waits for its response head over all its tries, from when
    /// it was routed (504 beyond it). None: only the pool's `response_timeout` per try.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// The longest one try waits for its response head; a try that runs out is retried
    /// on another backend when the request is safe to replay (504 otherwise).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub per_try_timeout: Option<Duration>,
}

/// `rate_limit = { requests_per_second = 50, burst = 100, key = "source-ip" }` on a route:
/// a token bucket per key, local to each node.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained rate per key (may be below 1: `0.5` is one request every 2 s).
    pub requests_per_second: f64,
    /// Requests a key may make at once after being quiet (default: one second's worth,
    /// at least 1).
    pub burst: Option<u32>,
    /// What a request is counted by: `source-ip` (default), `path`, `header:NAME` or
    /// `cookie:NAME`. Requests without the header or cookie share one bucket.
    #[serde(default = "default_rate_key")]
    pub key: String,
    /// `node` (default): each node counts alone; `cluster`: one count for all nodes,
    /// kept in the `[session]` Redis (`traffic::RateScope`).
    #[serde(default, skip_serializing_if = "crate::traffic::RateScope::is_node")]
    pub scope: crate::traffic::RateScope,
}

/// How a pool picks a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    #[default]
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    LeastRequest,
    PeakEwma,
    Random,
    ConsistentHash,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round-robin",
            Algorithm::WeightedRoundRobin => "weighted-round-robin",
            Algorithm::LeastConnections => "least-connections",
            Algorithm::LeastRequest => "least-request",
            Algorithm::PeakEwma => "peak-ewma",
            Algorithm::Random => "random",
            Algorithm::ConsistentHash => "consistent-hash",
        }
    }
}

/// Session affinity mode of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AffinityMode {
    #[default]
    None,
    /// Stateless: a signed cookie names the backend.
    Cookie,
    /// Learn the application's session cookie from `Set-Cookie`.
    Learn,
    /// Pin by the value of a request header.
    Header,
    /// Pin by client address.
    SourceIp,
}

impl AffinityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AffinityMode::None => "none",
            AffinityMode::Cookie => "cookie",
            AffinityMode::Learn => "learn",
            AffinityMode::Header => "header",
            AffinityMode::SourceIp => "source-ip",
        }
    }
}

/// `affinity = { mode = ..., cookie = ..., header = ... }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Affinity {
    #[serde(default)]
    pub mode: AffinityMode,
    /// Cookie name: the inserted cookie (`cookie`) or the learned one (`learn`).
    pub cookie: Option<String>,
    /// Header name for `header` mode.
    pub header: Option<String>,
}

/// Kind of active health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    #[default]
    Http,
    Tcp,
    /// The gRPC health protocol (`grpc.health.v1.Health/Check`) over HTTP/2.
    Grpc,
}

/// `health = { ... }`: active checks against every backend of a pool.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default)]
    pub kind: CheckKind,
    #[serde(default = "default_health_path")]
    pub path: String,
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_health_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_rise")]
    pub rise: u32,
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Accepted status range, `"200-399"` or `"200"`.
    #[serde(default = "default_expect_status")]
    pub expect_status: String,
    /// Optional substring the body must contain.
    pub expect_body: Option<String>,
    /// `kind = "grpc"`: the service asked about (none: the server as a whole, `""`).
    pub service: Option<String>,
}

/// PROXY protocol version sent to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyVersion {
    V1,
    V2,
}

/// TLS from fulcrum to the backends of a pool.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTls {
    /// CA bundle to verify backends; system roots when absent.
    pub ca: Option<PathBuf>,
    /// SNI / verification name.
    pub server_name: Option<String>,
    /// Client certificate for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// `[[pool]]`: a set of backends and how to pick among them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub name: String,
    #[serde(default)]
    pub algorithm: Algorithm,
    /// `source-ip`, `header:NAME`, `cookie:NAME` or `path` (consistent-hash only).
    pub hash_key: Option<String>,
    #[serde(default)]
    pub affinity: Affinity,
    pub health: Option<HealthCheck>,
    /// Fixed backends; empty when `discover` finds them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
    /// Backends found through DNS (`discover::Discover`) instead of `backends`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discover: Option<crate::Discover>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for the backend's response head.
    #[serde(default = "default_response_timeout", with = "humantime_serde")]
    pub response_timeout: Duration,
    /// Idle pooled upstream connections are closed after this.
    #[serde(default = "default_upstream_idle", with = "humantime_serde")]
    pub upstream_idle_timeout: Duration,
    pub send_proxy: Option<ProxyVersion>,
    pub tls: Option<BackendTls>,
    /// Retries allowed as a share of requests (`traffic::RetryBudget`); none: no limit.
    pub retry_budget: Option<RetryBudget>,
    /// Circuit breaking: requests in flight to one backend at most (503 beyond it).
    pub max_requests: Option<u32>,
    /// Circuit breaking: connects in progress to one backend at most (503 beyond it).
    pub max_pending: Option<u32>,
    /// Outlier detection: ejection after consecutive 5xx or gateway errors.
    pub outlier: Option<Outlier>,
    /// A backend that joins or comes back ramps from 10% of its share to all of it
    /// over this window.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub slow_start: Option<Duration>,
    /// The HTTP version spoken to the backends (`traffic::BackendProtocol`).
    #[serde(
        default,
        skip_serializing_if = "crate::traffic::BackendProtocol::is_http1"
    )]
    pub protocol: crate::traffic::BackendProtocol,
    /// Requests in flight the pool is sized for (saturation 1.0); none: the sum of the
    /// backends' `max_requests`, if that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    /// Webhook told when saturation stays past a bound (`scale::ScaleHook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_hook: Option<crate::ScaleHook>,
}

/// One backend of a pool.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub addr: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/fulcrum")
}
fn default_access_log() -> String {
    "stdout".to_string()
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}
// Failover timing (see README "Failover"): a lease ping every 5 ms, a fence that a
// quorum's acknowledgement keeps open for 20 ms, an election after 25 ms of silence
// (50 ms for a node that is not the designated successor).
fn default_heartbeat() -> Duration {
    Duration::from_millis(5)
}
fn default_election_min() -> Duration {
    Duration::from_millis(25)
}
fn default_election_max() -> Duration {
    Duration::from_millis(50)
}
fn default_lease() -> Duration {
    Duration::from_millis(20)
}
fn default_session_ttl() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_redis_timeout() -> Duration {
    Duration::from_millis(50)
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_connections() -> usize {
    100_000
}
fn default_max_connections_per_ip() -> usize {
    10_000
}
fn default_max_header_bytes() -> usize {
    16 * 1024
}
fn default_health_path() -> String {
    "/".to_string()
}
fn default_health_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}
fn default_expect_status() -> String {
    "200-399".to_string()
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_response_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_upstream_idle() -> Duration {
    Duration::from_secs(60)
}
fn default_rate_key() -> String {
    "source-ip".to_string()
}
fn default_upgrades() -> Vec<String> {
    vec!["websocket".to_string()]
}
fn default_weight() -> u32 {
    1
}
