//! `ctl shift`: starts (or aborts) a shift of a split route, and with `--watch` follows
//! it through the asked node's `/status` until it ends.

use super::{call, encode, timed, CtlError};
use crate::cli::ShiftArgs;
use http::Method;
use serde_json::Value;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How often `--watch` reads `/status`.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// How long `--watch` tolerates a node that does not answer.
const WATCH_UNREACHABLE: Duration = Duration::from_secs(30);

pub(crate) async fn shift(
    admin: &str,
    token: Option<&str>,
    args: &ShiftArgs,
) -> Result<ExitCode, CtlError> {
    let path = path(args);
    let (status, text) = timed(call(admin, Method::POST, &path, None, token)).await?;
    if !status.is_success() {
        eprintln!("{status}: {}", text.trim_end());
        return Ok(ExitCode::FAILURE);
    }
    let state: Value = serde_json::from_str(&text).unwrap_or_default();
    println!(
        "route {}: {}",
        args.route,
        super::split_rows::weights(&state["weights"])
    );
    if let Some(line) = super::split_rows::shift_line(&state["shift"]) {
        println!("  {line}");
    }
    if !args.watch || args.abort {
        return Ok(ExitCode::SUCCESS);
    }
    watch(admin, token, &args.route, &state["shift"]).await
}

fn path(args: &ShiftArgs) -> String {
    let route = encode(&args.route);
    if args.abort {
        return format!("/shift/abort?route={route}");
    }
    let mut path = format!(
        "/shift?route={route}&pool={}&to={}&step={}&every={}ms",
        encode(args.pool.as_deref().unwrap_or_default()),
        args.to,
        args.step,
        args.every.as_millis()
    );
    if let Some(rate) = args.max_error_rate {
        path += &format!("&max_error_rate={rate}");
    }
    if let Some(p99) = args.max_p99 {
        path += &format!("&max_p99={}us", p99.as_micros());
    }
    path
}

/// Prints each change of the shift started as `started` until it ends.
async fn watch(
    admin: &str,
    token: Option<&str>,
    route: &str,
    started: &Value,
) -> Result<ExitCode, CtlError> {
    let mut last = started.clone();
    let mut answered = Instant::now();
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(shift) = read_shift(admin, token, route).await else {
            if answered.elapsed() > WATCH_UNREACHABLE {
                return Err(CtlError::Other(format!(
                    "{admin} did not answer for {WATCH_UNREACHABLE:?}"
                )));
            }
            continue;
        };
        answered = Instant::now();
        if shift["started_ms"] != started["started_ms"] {
            eprintln!("another shift of route {route} replaced this one");
            return Ok(ExitCode::FAILURE);
        }
        if shift != last {
            if let Some(line) = super::split_rows::shift_line(&shift) {
                println!("  {line}");
            }
            last = shift.clone();
        }
        match &shift["phase"] {
            Value::String(p) if p == "Running" => continue,
            Value::String(p) if p == "Done" => return Ok(ExitCode::SUCCESS),
            _ => return Ok(ExitCode::FAILURE),
        }
    }
}

async fn read_shift(admin: &str, token: Option<&str>, route: &str) -> Option<Value> {
    let (status, text) = timed(call(admin, Method::GET, "/status", None, token))
        .await
        .ok()?;
    let doc: Value = serde_json::from_str(&text)
        .ok()
        .filter(|_| status.is_success())?;
    let split = (doc["splits"].as_array()?)
        .iter()
        .find(|s| s["route"] == route)?;
    Some(split["shift"].clone()).filter(|s| !s.is_null())
}
