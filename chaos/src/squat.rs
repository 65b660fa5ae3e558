//! A process that occupies a TCP port inside a node's namespace (port-busy scenario):
//! the chaos backend itself, listening on `0.0.0.0:PORT`, stopped by the PID we hold.
//! Dropping the [`Squatter`] kills what is left (its [`Proc`] does).

use anyhow::{bail, Context, Result};
use fulcrum_testbed::netns;
use fulcrum_testbed::process::{Output, Proc};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Squatter {
    child: Mutex<Option<Proc>>,
}

impl Squatter {
    /// Starts the squatter in `ns` on `port` and waits until the port is taken.
    pub fn start(&self, ns: &str, ip: std::net::Ipv4Addr, port: u16) -> Result<()> {
        let mut slot = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            bail!("a port squatter already runs");
        }
        let exe = format!("/proc/{}/exe", std::process::id());
        let mut cmd = netns::command_in(ns, &exe);
        cmd.args(["backend", "--name", "squatter", "--listen"])
            .arg(format!("0.0.0.0:{port}"));
        let child = Proc::spawn(cmd, Output::Null, true).context("starting the port squatter")?;
        *slot = Some(child);
        // Taken once it accepts a connection on the node's address.
        let addr = std::net::SocketAddr::from((ip, port));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the port squatter never listened on {addr}")
    }

    /// Kills the squatter (by its PID) and reaps it: the port is free afterwards.
    pub fn stop(&self) -> Result<()> {
        let mut slot = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut child) = slot.take() else {
            bail!("no port squatter runs");
        };
        child.kill();
        Ok(())
    }
}
