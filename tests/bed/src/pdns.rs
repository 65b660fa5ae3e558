//! A real PowerDNS authoritative server (`pdns_server` with its bind backend) for one
//! test: one zone served from a file on 127.0.0.1 at a free port, with its own config
//! and control-socket directory, every cache off (a changed zone is answered at once),
//! the zone rewritten and reloaded with `pdns_control bind-reload-now`, stopped by PID.

use crate::process::{Output, Proc};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running `pdns_server` serving `zone`; dropping it kills it.
pub struct TestPowerDns {
    pub port: u16,
    zone: String,
    dir: tempfile::TempDir,
    proc: Proc,
    serial: u32,
}

impl TestPowerDns {
    /// Starts pdns_server for `zone` (e.g. `app.test`) whose records are `records` (zone
    /// file lines relative to the zone, after a generated SOA and NS); waits until it
    /// answers its control socket.
    pub async fn start(zone: &str, records: &str) -> TestPowerDns {
        let mut dns = TestPowerDns {
            port: crate::ports::free_port(),
            zone: zone.to_string(),
            dir: tempfile::tempdir().expect("tempdir"),
            proc: Proc::default(),
            serial: 0,
        };
        dns.write_zone(records);
        dns.write_config();
        dns.spawn().await;
        dns
    }

    /// `127.0.0.1:PORT`, for a pool's `resolvers`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Its log (stdout and stderr), for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("pdns.log")).unwrap_or_default()
    }

    fn write_zone(&mut self, records: &str) {
        self.serial += 1;
        let zone = &self.zone;
        let text = format!(
            "$ORIGIN {zone}.\n$TTL 1\n@ IN SOA ns.{zone}. admin.{zone}. {} 60 60 60 1\n\
             @ IN NS ns.{zone}.\nns IN A 127.0.0.1\n{records}\n",
            self.serial
        );
        std::fs::write(self.path("zone"), text).expect("write zone");
    }

    fn write_config(&self) {
        let dir = self.dir.path().display();
        let named = format!(
            "zone \"{}\" {{ type master; file \"{dir}/zone\"; }};\n",
            self.zone
        );
        std::fs::write(self.path("named.conf"), named).expect("write named.conf");
        let conf = format!(
            "launch=bind\nbind-config={dir}/named.conf\nlocal-address=127.0.0.1\n\
             local-port={}\nsocket-dir={dir}\ndaemon=no\nguardian=no\ndisable-syslog=yes\n\
             write-pid=no\ncache-ttl=0\nnegquery-cache-ttl=0\nquery-cache-ttl=0\n\
             zone-cache-refresh-interval=0\nloglevel=4\n",
            self.port
        );
        std::fs::write(self.path("pdns.conf"), conf).expect("write pdns.conf");
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new("pdns_server");
        cmd.arg(format!("--config-dir={}", self.dir.path().display()));
        let log = self.path("pdns.log");
        self.proc = match Proc::spawn(cmd, Output::Log(&log), false) {
            Ok(p) => p,
            Err(e) => panic!(
                "pdns_server must be installed (apt-get install pdns-server pdns-backend-bind): {e}"
            ),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .control(&["rping"])
                .is_ok_and(|out| out.contains("PONG"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pdns_server did not start within 10 s:\n{}", self.log());
    }

    /// Runs `pdns_control` against this server's socket; its stdout.
    fn control(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("pdns_control")
            .arg(format!("--socket-dir={}", self.dir.path().display()))
            .arg(format!("--config-dir={}", self.dir.path().display()))
            .args(args)
            .output()
            .map_err(|e| format!("pdns_control: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        match out.status.success() {
            true => Ok(text),
            false => Err(format!(
                "pdns_control {args:?}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }

    /// Replaces the zone's records and makes the server serve them now.
    pub fn set_records(&mut self, records: &str) {
        self.write_zone(records);
        let zone = self.zone.clone();
        if let Err(e) = self.control(&["bind-reload-now", &zone]) {
            panic!("zone reload failed: {e}\n{}", self.log());
        }
    }

    /// Stops the server (SIGKILL by PID): lookups then time out.
    pub fn stop(&mut self) {
        self.proc.kill();
    }

    /// The directory of its files (zone, config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
