//! The proxies under test: fulcrum, HAProxy and nginx, each given a round-robin,
//! keep-alive config in front of the same backends and started fresh per measurement.
//!
//! A target listens either on plain HTTP or on HTTPS with the run's certificate
//! (`tls.rs`); the backends stay plain HTTP. Only the listener differs between the two.

use super::handshake;
use super::net::{free_port, free_ports, wait_ready, wait_until};
use super::nginx;
use super::process::{ChildGuard, Pin};
use super::tls::TlsFiles;
use anyhow::{bail, Context, Result};
use rustls::ClientConfig;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// One kind of proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Fulcrum,
    Haproxy,
    Nginx,
    /// Another fulcrum build (`--fulcrum-base`), e.g. before a change, in the same run.
    FulcrumBase,
    /// The fulcrum under test with a route rate limit that never refuses (the limit's
    /// cost per request).
    FulcrumLimited,
}

impl TargetKind {
    pub const ALL: [TargetKind; 5] = [
        Self::Fulcrum,
        Self::Haproxy,
        Self::Nginx,
        Self::FulcrumBase,
        Self::FulcrumLimited,
    ];

    /// The lower-case name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fulcrum => "fulcrum",
            Self::Haproxy => "haproxy",
            Self::Nginx => "nginx",
            Self::FulcrumBase => "fulcrum-base",
            Self::FulcrumLimited => "fulcrum-limited",
        }
    }

    /// The name shown in the table.
    pub fn label(self) -> &'static str {
        match self {
            Self::Fulcrum => "fulcrum",
            Self::Haproxy => "HAProxy",
            Self::Nginx => "nginx",
            Self::FulcrumBase => "fulcrum base",
            Self::FulcrumLimited => "fulcrum+limit",
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown target {s:?} (fulcrum, haproxy, nginx, fulcrum-base, fulcrum-limited)"
                )
            })
    }
}

/// How clients talk to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    /// TLS with the run's certificate, terminated by the proxy.
    Https,
    /// TLS as `Https`, with HTTP/2 offered by ALPN (h2, then http/1.1).
    H2,
    /// A TCP (L4) listener relaying bytes to the backends (clients speak plain HTTP
    /// through it); not for nginx.
    Tcp,
}

/// Where a started target listens.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub scheme: Scheme,
    pub port: u16,
}

impl Endpoint {
    pub fn url(&self) -> String {
        match self.scheme {
            Scheme::Http | Scheme::Tcp => format!("http://127.0.0.1:{}/", self.port),
            Scheme::Https | Scheme::H2 => format!("https://127.0.0.1:{}/", self.port),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// Paths of the programs a run uses.
#[derive(Debug, Clone)]
pub struct Programs {
    pub fulcrum: PathBuf,
    /// `--fulcrum-base`, for the `fulcrum-base` target.
    pub fulcrum_base: Option<PathBuf>,
    pub haproxy: Option<PathBuf>,
    pub nginx: PathBuf,
}

/// What every target of a run is started with.
pub struct TargetEnv {
    pub programs: Programs,
    /// `127.0.0.1:PORT` of each backend.
    pub backends: Vec<String>,
    /// The CPU the proxy runs on.
    pub pin: Pin,
    /// The certificate HTTPS listeners serve.
    pub tls_files: TlsFiles,
    /// The client that probes HTTPS listeners (and drives the handshake load).
    pub tls_client: Arc<ClientConfig>,
    /// Client connections each proxy must accept at once (HAProxy `maxconn`, nginx
    /// `worker_connections`; fulcrum has no such limit).
    pub max_conns: u32,
}

/// A started, answering proxy; stopped when dropped.
pub struct RunningTarget {
    pub endpoint: Endpoint,
    process: ChildGuard,
}

impl RunningTarget {
    /// PID of the proxy process whose CPU and memory are measured.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Fails if the proxy died (e.g. during the measured window).
    pub fn ensure_running(&mut self) -> Result<()> {
        self.process.ensure_running()
    }
}

/// Writes the config for `kind` into `dir`, starts it pinned, waits for a 200 over `scheme`.
pub async fn start(
    kind: TargetKind,
    scheme: Scheme,
    env: &TargetEnv,
    dir: &Path,
) -> Result<RunningTarget> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let port = free_port()?;
    let tls = matches!(scheme, Scheme::Https | Scheme::H2).then_some(&env.tls_files);
    let h2 = scheme == Scheme::H2;
    let tcp = scheme == Scheme::Tcp;
    if tcp && kind == TargetKind::Nginx {
        bail!("nginx is not measured as a TCP proxy");
    }
    let (backends, pin) = (&env.backends, env.pin);
    let mut process = match kind {
        TargetKind::Fulcrum => {
            let program = &env.programs.fulcrum;
            start_fulcrum(program, port, backends, tls, pin, dir, tcp_or(tcp, ""))?
        }
        TargetKind::FulcrumLimited => {
            let program = &env.programs.fulcrum;
            let extra = tcp_or(tcp, NEVER_REFUSING_LIMIT);
            start_fulcrum(program, port, backends, tls, pin, dir, extra)?
        }
        TargetKind::FulcrumBase => {
            let Some(program) = &env.programs.fulcrum_base else {
                bail!("the fulcrum-base target needs --fulcrum-base PATH");
            };
            start_fulcrum(program, port, backends, tls, pin, dir, tcp_or(tcp, ""))?
        }
        TargetKind::Haproxy => {
            let Some(haproxy) = &env.programs.haproxy else {
                bail!("haproxy is not installed");
            };
            let conf = haproxy_config(port, backends, tls, h2, env.max_conns);
            let conf = if tcp { haproxy_tcp(&conf) } else { conf };
            start_haproxy(haproxy, &conf, pin, dir)?
        }
        TargetKind::Nginx => nginx::spawn(
            "nginx proxy",
            &env.programs.nginx,
            pin,
            dir,
            &nginx_body(port, backends, tls, h2),
            // Each client connection may hold an upstream one too.
            env.max_conns.saturating_mul(2).max(nginx::CONNECTIONS),
        )?,
    };
    let endpoint = Endpoint { scheme, port };
    let limit = Duration::from_secs(15);
    let ready = match scheme {
        Scheme::Http | Scheme::Tcp => wait_ready(port, &mut process, limit).await,
        Scheme::Https | Scheme::H2 => {
            let client = &env.tls_client;
            let addr = endpoint.addr();
            wait_until(addr, &mut process, limit, || handshake::probe(client, addr)).await
        }
    };
    ready.with_context(|| format!("{kind} did not become ready (files in {})", dir.display()))?;
    Ok(RunningTarget { endpoint, process })
}

/// What marks fulcrum's config as a TCP listener (see `fulcrum_toml`).
const TCP_LISTENER: &str = "#tcp";

/// `TCP_LISTENER` for a TCP target, else the route's `extra`.
fn tcp_or(tcp: bool, extra: &str) -> &str {
    if tcp {
        TCP_LISTENER
    } else {
        extra
    }
}

/// HAProxy's HTTP config as a TCP (L4) proxy: the same frontend and backend in
/// `mode tcp`.
fn haproxy_tcp(http: &str) -> String {
    http.replace("    mode http\n", "    mode tcp\n")
        .replace("    option http-keep-alive\n    http-reuse always\n", "")
}

/// A route rate limit no bench load reaches (a million requests per second per client
/// address, as many in a burst): every request pays for the check, none is refused.
const NEVER_REFUSING_LIMIT: &str =
    "rate_limit = { requests_per_second = 1000000, burst = 1000000, key = \"source-ip\" }\n";

fn start_fulcrum(
    program: &Path,
    port: u16,
    backends: &[String],
    tls: Option<&TlsFiles>,
    pin: Pin,
    dir: &Path,
    route_extra: &str,
) -> Result<ChildGuard> {
    let admin = free_ports(2)?
        .into_iter()
        .find(|p| *p != port)
        .context("no free admin port")?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let conf = dir.join("fulcrum.toml");
    let text = fulcrum_toml(port, admin, &data, backends, tls, route_extra);
    std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
    let args = [
        "run".to_string(),
        "--config".to_string(),
        conf.display().to_string(),
        "--threads".to_string(),
        "1".to_string(),
    ];
    ChildGuard::spawn("fulcrum", pin, program, &args, &dir.join("fulcrum.log"))
}

fn start_haproxy(program: &Path, config: &str, pin: Pin, dir: &Path) -> Result<ChildGuard> {
    let conf = dir.join("haproxy.cfg");
    std::fs::write(&conf, config).with_context(|| format!("writing {}", conf.display()))?;
    let args = [
        "-f".to_string(),
        conf.display().to_string(),
        "-db".to_string(),
    ];
    ChildGuard::spawn("haproxy", pin, program, &args, &dir.join("haproxy.log"))
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// fulcrum: one node, one HTTP or HTTPS listener, one round-robin pool, no health checks;
/// `route_extra` is added to the route (TOML lines), or is `TCP_LISTENER` for a TCP
/// listener straight to the pool (no route).
pub fn fulcrum_toml(
    port: u16,
    admin: u16,
    data_dir: &Path,
    backends: &[String],
    tls: Option<&TlsFiles>,
    route_extra: &str,
) -> String {
    let list = backends
        .iter()
        .map(|b| format!("{{ addr = {} }}", toml_str(b)))
        .collect::<Vec<_>>()
        .join(", ");
    let protocol = match tls {
        None => "protocol = \"http\"\n".to_string(),
        Some(files) => format!(
            "protocol = \"https\"\ntls = [{{ cert = {}, key = {} }}]\n",
            toml_str(&files.cert.display().to_string()),
            toml_str(&files.key.display().to_string())
        ),
    };
    let (protocol, route) = match route_extra {
        TCP_LISTENER => (
            "protocol = \"tcp\"\npool = \"b\"\n".to_string(),
            String::new(),
        ),
        extra => (
            protocol,
            format!("[[route]]\nlistener = \"bench\"\npool = \"b\"\n{extra}\n"),
        ),
    };
    format!(
        "[node]\nid = 1\nadmin = \"127.0.0.1:{admin}\"\ndata_dir = {}\naccess_log = \"off\"\n\n\
         [[listener]]\nname = \"bench\"\nbind = \"127.0.0.1:{port}\"\n{protocol}\n{route}\
         [[pool]]\nname = \"b\"\nalgorithm = \"round-robin\"\nbackends = [{list}]\n",
        toml_str(&data_dir.display().to_string())
    )
}

/// HAProxy: one thread, HTTP mode, keep-alive both sides, aggressive reuse, no logging,
/// `maxconn` client connections, idle ones kept 5 minutes (long enough for the idle
/// connection count of `bench --conns`); with `tls`, the bind terminates TLS
/// (certificate and key in one PEM, ALPN http/1.1, or h2 first with `h2`).
pub fn haproxy_config(
    port: u16,
    backends: &[String],
    tls: Option<&TlsFiles>,
    h2: bool,
    maxconn: u32,
) -> String {
    let alpn = if h2 { "h2,http/1.1" } else { "http/1.1" };
    let ssl = tls.map_or(String::new(), |files| {
        format!(" ssl crt {} alpn {alpn}", files.combined.display())
    });
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("    server s{} {b}\n", i + 1))
        .collect();
    format!(
        "global\n    nbthread 1\n    maxconn {maxconn}\n\n\
         defaults\n    mode http\n    option http-keep-alive\n    http-reuse always\n    \
         timeout connect 5s\n    timeout client 5m\n    timeout server 30s\n\n\
         frontend bench\n    bind 127.0.0.1:{port}{ssl}\n    default_backend b\n\n\
         backend b\n    balance roundrobin\n{servers}"
    )
}

/// nginx as proxy: upstream keepalive 64, HTTP/1.1 to the backends, no access log;
/// with `tls`, the listener is `ssl` with the run's certificate and TLS 1.2 + 1.3 like
/// the other two (nginx 1.22's default list stops at TLS 1.2); with `h2` the listener
/// also speaks HTTP/2 (`http2`), with no limit on requests per connection.
pub fn nginx_body(port: u16, backends: &[String], tls: Option<&TlsFiles>, h2: bool) -> String {
    let servers: String = backends
        .iter()
        .map(|b| format!("        server {b};\n"))
        .collect();
    let (ssl, certs) = tls.map_or((String::new(), String::new()), |files| {
        let (listen, limits) = match h2 {
            true => (
                " ssl http2",
                "        keepalive_requests 1000000;\n        http2_max_requests 1000000;\n",
            ),
            false => (" ssl", ""),
        };
        (
            listen.to_string(),
            format!(
                "        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_certificate {};\n        \
                 ssl_certificate_key {};\n{limits}",
                files.cert.display(),
                files.key.display()
            ),
        )
    });
    format!(
        "    upstream b {{\n{servers}        keepalive 64;\n    }}\n    \
         server {{\n        listen 127.0.0.1:{port}{ssl} backlog=4096;\n{certs}        \
         location / {{\n            proxy_pass http://b;\n            \
         proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n        \
         }}\n    }}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TCP targets: fulcrum with a TCP listener straight to the pool, HAProxy with
    /// the same frontend and backend in `mode tcp`.
    #[test]
    fn tcp_configs_are_l4_listeners() {
        let backends = vec!["127.0.0.1:8081".to_string(), "127.0.0.1:8082".to_string()];
        let text = fulcrum_toml(8080, 9901, Path::new("/tmp"), &backends, None, TCP_LISTENER);
        let parsed = fulcrum_config::parse(&text, "bench.toml");
        let listener = parsed
            .as_ref()
            .ok()
            .map(|c| (c.listener.len(), c.route.len()));
        assert_eq!(listener, Some((1, 0)), "{text}\n{parsed:?}");
        assert!(text.contains("protocol = \"tcp\"\npool = \"b\""), "{text}");
        let tcp = haproxy_tcp(&haproxy_config(8080, &backends, None, false, 4096));
        assert!(tcp.contains("    mode tcp\n"), "{tcp}");
        assert!(!tcp.contains("http"), "{tcp}");
    }

    #[test]
    fn fulcrum_config_is_valid_for_the_real_parser() {
        let backends = vec!["127.0.0.1:8081".to_string(), "127.0.0.1:8082".to_string()];
        let text = fulcrum_toml(8080, 9901, Path::new("/tmp/x y"), &backends, None, "");
        let parsed = fulcrum_config::parse(&text, "bench.toml");
        assert!(parsed.is_ok(), "{text}\n{parsed:?}");
        let limited = fulcrum_toml(
            8080,
            9901,
            Path::new("/tmp"),
            &backends,
            None,
            NEVER_REFUSING_LIMIT,
        );
        let parsed = fulcrum_config::parse(&limited, "bench.toml");
        let limit = parsed
            .as_ref()
            .ok()
            .and_then(|c| c.route[0].rate_limit.as_ref());
        assert!(limit.is_some(), "{limited}\n{parsed:?}");
    }

    fn backends() -> Vec<String> {
        vec!["127.0.0.1:8081".to_string(), "127.0.0.1:8082".to_string()]
    }

    #[test]
    fn fulcrum_https_listener_is_valid_for_the_real_parser() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let files = TlsFiles::generate(dir.path())?;
        let text = fulcrum_toml(8443, 9901, dir.path(), &backends(), Some(&files), "");
        assert!(text.contains("protocol = \"https\""), "{text}");
        let config = fulcrum_config::parse(&text, "bench.toml")
            .map_err(|e| anyhow::anyhow!("{e:?}\n{text}"))?;
        let listener = config.listener.first().context("no listener")?;
        assert_eq!(listener.tls.len(), 1, "{text}");
        assert_eq!(listener.tls[0].cert, files.cert);
        assert_eq!(listener.tls[0].key, files.key);
        Ok(())
    }

    #[test]
    fn haproxy_binds_ssl_only_for_https() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let files = TlsFiles::generate(dir.path())?;
        let plain = haproxy_config(8080, &backends(), None, false, 4096);
        assert!(plain.contains("    bind 127.0.0.1:8080\n"), "{plain}");
        assert!(!plain.contains("ssl"), "{plain}");
        let https = haproxy_config(8443, &backends(), Some(&files), false, 4096);
        let bind = format!(
            "    bind 127.0.0.1:8443 ssl crt {} alpn http/1.1\n",
            files.combined.display()
        );
        assert!(https.contains(&bind), "{https}");
        let h2 = haproxy_config(8443, &backends(), Some(&files), true, 4096);
        let bind = format!(
            "    bind 127.0.0.1:8443 ssl crt {} alpn h2,http/1.1\n",
            files.combined.display()
        );
        assert!(h2.contains(&bind), "{h2}");
        Ok(())
    }

    #[test]
    fn nginx_listens_ssl_only_for_https() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let files = TlsFiles::generate(dir.path())?;
        let plain = nginx_body(8080, &backends(), None, false);
        assert!(
            plain.contains("listen 127.0.0.1:8080 backlog=4096;"),
            "{plain}"
        );
        assert!(!plain.contains("ssl"), "{plain}");
        let https = nginx_body(8443, &backends(), Some(&files), false);
        assert!(
            https.contains("listen 127.0.0.1:8443 ssl backlog=4096;"),
            "{https}"
        );
        let cert = format!("ssl_certificate {};", files.cert.display());
        let key = format!("ssl_certificate_key {};", files.key.display());
        assert!(https.contains(&cert) && https.contains(&key), "{https}");
        assert!(https.contains("ssl_protocols TLSv1.2 TLSv1.3;"), "{https}");
        assert!(!https.contains("http2"), "{https}");
        let h2 = nginx_body(8443, &backends(), Some(&files), true);
        assert!(
            h2.contains("listen 127.0.0.1:8443 ssl http2 backlog=4096;"),
            "{h2}"
        );
        assert!(h2.contains("http2_max_requests 1000000;"), "{h2}");
        Ok(())
    }

    #[test]
    fn endpoint_urls() {
        let http = Endpoint {
            scheme: Scheme::Http,
            port: 80,
        };
        let https = Endpoint {
            scheme: Scheme::Https,
            port: 443,
        };
        assert_eq!(http.url(), "http://127.0.0.1:80/");
        assert_eq!(https.url(), "https://127.0.0.1:443/");
    }

    #[test]
    fn target_names_round_trip() {
        for kind in TargetKind::ALL {
            assert_eq!(kind.name().parse::<TargetKind>(), Ok(kind));
        }
        assert!("envoy".parse::<TargetKind>().is_err());
    }
}
