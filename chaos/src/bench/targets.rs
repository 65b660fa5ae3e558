//! The proxies under test: fulcrum, HAProxy and nginx, each given a round-robin,
//! keep-alive config in front of the same backends and started fresh per measurement.
//!
//! Only plain HTTP is generated today; an HTTPS variant would add certificate generation
//! here and a `Scheme::Https` endpoint, leaving the orchestration untouched.

use super::net::{free_port, free_ports, wait_ready};
use super::nginx;
use super::process::{ChildGuard, Pin};
use anyhow::{bail, Context, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// One kind of proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Fulcrum,
    Haproxy,
    Nginx,
}

impl TargetKind {
    pub const ALL: [TargetKind; 3] = [Self::Fulcrum, Self::Haproxy, Self::Nginx];

    /// The lower-case name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fulcrum => "fulcrum",
            Self::Haproxy => "haproxy",
            Self::Nginx => "nginx",
        }
    }

    /// The name shown in the table.
    pub fn label(self) -> &'static str {
        match self {
            Self::Fulcrum => "fulcrum",
            Self::Haproxy => "HAProxy",
            Self::Nginx => "nginx",
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
            .ok_or_else(|| format!("unknown target {s:?} (fulcrum, haproxy, nginx)"))
    }
}

/// How clients talk to a target. Only HTTP exists so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
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
            Scheme::Http => format!("http://127.0.0.1:{}/", self.port),
        }
    }
}

/// Paths of the programs a run uses.
#[derive(Debug, Clone)]
pub struct Programs {
    pub fulcrum: PathBuf,
    pub haproxy: Option<PathBuf>,
    pub nginx: PathBuf,
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

/// Writes the config for `kind` into `dir`, starts it pinned to `pin`, waits for a 200.
pub async fn start(
    kind: TargetKind,
    programs: &Programs,
    backends: &[String],
    pin: Pin,
    dir: &Path,
) -> Result<RunningTarget> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let port = free_port()?;
    let mut process = match kind {
        TargetKind::Fulcrum => start_fulcrum(&programs.fulcrum, port, backends, pin, dir)?,
        TargetKind::Haproxy => {
            let Some(haproxy) = &programs.haproxy else {
                bail!("haproxy is not installed");
            };
            start_haproxy(haproxy, port, backends, pin, dir)?
        }
        TargetKind::Nginx => nginx::spawn(
            "nginx proxy",
            &programs.nginx,
            pin,
            dir,
            &nginx_body(port, backends),
        )?,
    };
    wait_ready(port, &mut process, Duration::from_secs(15))
        .await
        .with_context(|| format!("{kind} did not become ready (files in {})", dir.display()))?;
    Ok(RunningTarget {
        endpoint: Endpoint {
            scheme: Scheme::Http,
            port,
        },
        process,
    })
}

fn start_fulcrum(
    program: &Path,
    port: u16,
    backends: &[String],
    pin: Pin,
    dir: &Path,
) -> Result<ChildGuard> {
    let admin = free_ports(2)?
        .into_iter()
        .find(|p| *p != port)
        .context("no free admin port")?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let conf = dir.join("fulcrum.toml");
    let text = fulcrum_toml(port, admin, &data, backends);
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

fn start_haproxy(
    program: &Path,
    port: u16,
    backends: &[String],
    pin: Pin,
    dir: &Path,
) -> Result<ChildGuard> {
    let conf = dir.join("haproxy.cfg");
    std::fs::write(&conf, haproxy_config(port, backends))
        .with_context(|| format!("writing {}", conf.display()))?;
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

/// fulcrum: one node, one HTTP listener, one round-robin pool, no health checks.
pub fn fulcrum_toml(port: u16, admin: u16, data_dir: &Path, backends: &[String]) -> String {
    let list = backends
        .iter()
        .map(|b| format!("{{ addr = {} }}", toml_str(b)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[node]\nid = 1\nadmin = \"127.0.0.1:{admin}\"\ndata_dir = {}\naccess_log = \"off\"\n\n\
         [[listener]]\nname = \"bench\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"http\"\n\n\
         [[route]]\nlistener = \"bench\"\npool = \"b\"\n\n\
         [[pool]]\nname = \"b\"\nalgorithm = \"round-robin\"\nbackends = [{list}]\n",
        toml_str(&data_dir.display().to_string())
    )
}

/// HAProxy: one thread, HTTP mode, keep-alive both sides, aggressive reuse, no logging.
pub fn haproxy_config(port: u16, backends: &[String]) -> String {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("    server s{} {b}\n", i + 1))
        .collect();
    format!(
        "global\n    nbthread 1\n    maxconn 4096\n\n\
         defaults\n    mode http\n    option http-keep-alive\n    http-reuse always\n    \
         timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\n\
         frontend bench\n    bind 127.0.0.1:{port}\n    default_backend b\n\n\
         backend b\n    balance roundrobin\n{servers}"
    )
}

/// nginx as proxy: upstream keepalive 64, HTTP/1.1 to the backends, no access log.
pub fn nginx_body(port: u16, backends: &[String]) -> String {
    let servers: String = backends
        .iter()
        .map(|b| format!("        server {b};\n"))
        .collect();
    format!(
        "    upstream b {{\n{servers}        keepalive 64;\n    }}\n    \
         server {{\n        listen 127.0.0.1:{port} backlog=4096;\n        \
         location / {{\n            proxy_pass http://b;\n            \
         proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n        \
         }}\n    }}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fulcrum_config_is_valid_for_the_real_parser() {
        let backends = vec!["127.0.0.1:8081".to_string(), "127.0.0.1:8082".to_string()];
        let text = fulcrum_toml(8080, 9901, Path::new("/tmp/x y"), &backends);
        let parsed = fulcrum_config::parse(&text, "bench.toml");
        assert!(parsed.is_ok(), "{text}\n{parsed:?}");
    }

    #[test]
    fn target_names_round_trip() {
        for kind in TargetKind::ALL {
            assert_eq!(kind.name().parse::<TargetKind>(), Ok(kind));
        }
        assert!("envoy".parse::<TargetKind>().is_err());
    }
}
