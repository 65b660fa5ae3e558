//! The admin API calls of the chaos suite (`GET /status`, `PUT /config`) over the test
//! bed's one-request HTTP/1.1 client ([`fulcrum_testbed::httpc`]).

use anyhow::{bail, Context, Result};
use std::time::Duration;

pub use fulcrum_testbed::httpc::request;

/// `GET /status` on an admin address, parsed as JSON.
pub async fn status(admin: &str, timeout: Duration) -> Result<serde_json::Value> {
    let reply = request(admin, "GET", "/status", &[], None, timeout).await?;
    if reply.status != 200 {
        bail!("GET /status on {admin}: HTTP {}", reply.status);
    }
    serde_json::from_slice(&reply.body).with_context(|| format!("/status of {admin} is not JSON"))
}

/// `PUT /config` with a TOML body; returns the committed version when the node says it.
pub async fn put_config(admin: &str, toml: String, timeout: Duration) -> Result<Option<u64>> {
    let headers = [("content-type", "application/toml".to_string())];
    let reply = request(admin, "PUT", "/config", &headers, Some(toml), timeout).await?;
    if reply.status != 200 {
        bail!(
            "PUT /config on {admin}: HTTP {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body).trim()
        );
    }
    let value: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    Ok(value.get("version").and_then(|v| v.as_u64()))
}
