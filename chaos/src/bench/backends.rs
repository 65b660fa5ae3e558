//! The two backends every proxy balances over: one nginx process (one worker) with two
//! server blocks on two free loopback ports, each answering `200 ok\n`.

use super::net::{free_ports, wait_ready};
use super::nginx;
use super::process::{ChildGuard, Pin};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

/// The running backend process and its two ports.
pub struct Backends {
    pub ports: Vec<u16>,
    _process: ChildGuard,
}

/// Connections the backends take: through a TCP (L4) proxy every idle client of
/// `bench --conns` holds one (9,000 with a hard open-file limit of 20,000).
const BACKEND_CONNECTIONS: u32 = 10_000;

impl Backends {
    /// Starts the backends under `dir` and waits until both answer.
    pub async fn start(nginx: &Path, pin: Pin, dir: &Path) -> Result<Self> {
        let ports = free_ports(2)?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut process = nginx::spawn(
            "backend nginx",
            nginx,
            pin,
            dir,
            &servers(&ports),
            BACKEND_CONNECTIONS,
        )?;
        for port in &ports {
            wait_ready(*port, &mut process, Duration::from_secs(10)).await?;
        }
        Ok(Self {
            ports,
            _process: process,
        })
    }

    /// `127.0.0.1:PORT` of every backend.
    pub fn addrs(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }
}

fn servers(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| {
            format!(
                "    server {{\n        listen 127.0.0.1:{p} backlog=4096;\n        \
                 default_type text/plain;\n        return 200 \"ok\\n\";\n    }}\n"
            )
        })
        .collect()
}
