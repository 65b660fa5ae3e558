//! nginx as a single foreground process (one worker, no master) whose every file lives
//! in a temp dir; used both for the backends and for nginx as a proxy under test.

use super::process::{ChildGuard, Pin};
use anyhow::{Context, Result};
use std::path::Path;

/// Connections one nginx process accepts unless told otherwise.
pub const CONNECTIONS: u32 = 4096;

/// A whole nginx.conf around the given `http { ... }` body, all paths under `dir`, for
/// at most `connections` connections (client and upstream together).
pub fn config(dir: &Path, http_body: &str, connections: u32) -> String {
    let d = dir.display();
    let files = connections + 64;
    format!(
        "worker_processes 1;\n\
         daemon off;\n\
         master_process off;\n\
         pid {d}/nginx.pid;\n\
         worker_rlimit_nofile {files};\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections {connections}; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         {http_body}\
         }}\n"
    )
}

/// Writes `nginx.conf` into `dir` and starts nginx on it in the foreground.
pub fn spawn(
    name: &str,
    nginx: &Path,
    pin: Pin,
    dir: &Path,
    http_body: &str,
    connections: u32,
) -> Result<ChildGuard> {
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, http_body, connections))
        .with_context(|| format!("writing {}", conf.display()))?;
    let args = [
        "-p".to_string(),
        dir.display().to_string(),
        "-e".to_string(),
        dir.join("startup-error.log").display().to_string(),
        "-c".to_string(),
        conf.display().to_string(),
    ];
    ChildGuard::spawn(name, pin, nginx, &args, &dir.join("stdout.log"))
}
