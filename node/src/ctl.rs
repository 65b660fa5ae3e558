//! `fulcrum ctl`: a small HTTP/1.1 client for the admin API.
//!
//! `status` reads the cluster view of the asked node (`GET /cluster`, every member's
//! own `/status`); `apply` waits after the commit until every voter runs the new
//! version (`wait`), unless `--no-wait`; `shift` starts, aborts or follows a shift of a
//! split route.

mod bgp_rows;
mod shift;
mod split_rows;
mod table;
mod vip_rows;
mod wait;

use crate::cli::{CtlArgs, CtlCommand};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::process::ExitCode;
use std::time::Duration;

/// Upper bound for one admin call (an apply waits for a Raft commit).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub(crate) enum CtlError {
    #[error("cannot reach {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("HTTP error talking to {0}: {1}")]
    Http(String, hyper::Error),
    #[error("{0}")]
    Other(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

pub fn main(args: CtlArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: CtlArgs) -> Result<ExitCode, CtlError> {
    let token = token(&args)?;
    let (method, path, body) = match &args.command {
        CtlCommand::Members => (Method::GET, "/members".to_string(), None),
        CtlCommand::Status { json } => return status(&args.admin, token.as_deref(), *json).await,
        CtlCommand::Shift(shift) => {
            return shift::shift(&args.admin, token.as_deref(), shift).await
        }
        CtlCommand::Apply { file, .. } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| CtlError::Other(format!("cannot read {}: {e}", file.display())))?;
            // Validate locally first so errors name the operator's own file.
            if let Err(errors) = fulcrum_config::parse(&text, &file.display().to_string()) {
                eprintln!("{errors}");
                return Ok(ExitCode::FAILURE);
            }
            (Method::PUT, "/config".to_string(), Some(text))
        }
        CtlCommand::Drain { pool, addr } => (
            Method::POST,
            format!("/drain?pool={}&addr={}", encode(pool), encode(addr)),
            None,
        ),
        CtlCommand::Undrain { pool, addr } => (
            Method::POST,
            format!("/undrain?pool={}&addr={}", encode(pool), encode(addr)),
            None,
        ),
        CtlCommand::DrainNode => (Method::POST, "/drain-node".to_string(), None),
        CtlCommand::UndrainNode => (Method::POST, "/undrain-node".to_string(), None),
    };
    let call = call(&args.admin, method, &path, body, token.as_deref());
    let (status, text) = tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| CtlError::Timeout(CALL_TIMEOUT))??;
    print_result(&args.command, status, &text);
    if !status.is_success() {
        return Ok(ExitCode::FAILURE);
    }
    match &args.command {
        CtlCommand::Apply { no_wait, wait, .. } => {
            apply_wait(&args.admin, token.as_deref(), &text, *no_wait, *wait).await
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// After a committed apply: wait for the voters, one line per node, exit 1 naming
/// those that do not run the new version.
async fn apply_wait(
    admin: &str,
    token: Option<&str>,
    answer: &str,
    no_wait: bool,
    within: Duration,
) -> Result<ExitCode, CtlError> {
    let Some(version) = serde_json::from_str::<serde_json::Value>(answer)
        .ok()
        .and_then(|v| v["version"].as_u64())
    else {
        return Ok(ExitCode::SUCCESS);
    };
    if no_wait {
        println!("committed: config version {version} (not waiting for the nodes)");
        return Ok(ExitCode::SUCCESS);
    }
    println!("committed: config version {version}");
    let lines = wait::wait(admin, token, version, within).await?;
    for line in &lines {
        println!("{}", line.render(version));
    }
    let failed = wait::pending(&lines);
    if failed.is_empty() {
        println!(
            "applied: config version {version} on every voter ({})",
            lines.iter().filter(|l| l.voter).count()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let names: Vec<String> = failed.iter().map(|i| format!("node {i}")).collect();
    let when = if wait::undecided(&lines).is_empty() {
        "(refused for good, not waiting longer)".to_string()
    } else {
        format!("within {within:?}")
    };
    eprintln!(
        "error: config version {version} is committed but {} did not run it {when}",
        names.join(", ")
    );
    Ok(ExitCode::FAILURE)
}

/// `ctl status`: the cluster table, then the asked node's own details; `--json`: the
/// asked node's `/status` with the gathered members under `nodes`.
async fn status(admin: &str, token: Option<&str>, json: bool) -> Result<ExitCode, CtlError> {
    let (code, own) = timed(call(admin, Method::GET, "/status", None, token)).await?;
    if !code.is_success() {
        eprintln!("{code}: {}", own.trim_end());
        return Ok(ExitCode::FAILURE);
    }
    let (code, cluster) = timed(call(admin, Method::GET, "/cluster", None, token)).await?;
    let cluster: Option<serde_json::Value> = code
        .is_success()
        .then(|| serde_json::from_str(&cluster).ok())
        .flatten();
    if json {
        let mut doc: serde_json::Value = serde_json::from_str(&own)
            .map_err(|e| CtlError::Other(format!("/status is not JSON: {e}")))?;
        if let (Some(obj), Some(c)) = (doc.as_object_mut(), &cluster) {
            for key in ["nodes", "divergent", "vip_holders"] {
                obj.insert(key.to_string(), c[key].clone());
            }
        }
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    match &cluster {
        Some(c) => print!("{}", table::render(c)),
        None => println!("(this node has no GET /cluster: an older fulcrum; its own status only)"),
    }
    println!("this node:");
    print_status(&own);
    Ok(ExitCode::SUCCESS)
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, CtlError>>,
) -> Result<T, CtlError> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .map_err(|_| CtlError::Timeout(CALL_TIMEOUT))?
}

fn print_result(command: &CtlCommand, status: StatusCode, text: &str) {
    if !status.is_success() {
        eprintln!("{status}: {}", text.trim_end());
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
            if let Some(errors) = v.get("errors").and_then(|e| e.as_array()) {
                for e in errors {
                    eprintln!("{}", e.as_str().unwrap_or_default());
                }
            }
        }
        return;
    }
    match command {
        CtlCommand::Apply { .. } => {
            let version = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("version").and_then(|v| v.as_u64()));
            if version.is_none() {
                println!("{}", text.trim_end());
            }
        }
        _ => println!("{}", text.trim_end()),
    }
}

fn print_status(text: &str) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        println!("{text}");
        return;
    };
    println!(
        "node {} role {} leader {} term {} config_version {} vip_held {}",
        v["node_id"],
        v["role"].as_str().unwrap_or("?"),
        v["leader_id"],
        v["term"],
        v["config_version"],
        v["vip_held"]
    );
    println!(
        "config running {} committed {}",
        v["config_version_running"], v["config_version_committed"]
    );
    let e = &v["config_apply_error"];
    if e.is_object() {
        println!(
            "config apply error: version {} failing since {} ({} attempts, {}): {}",
            e["version"],
            e["since"].as_str().unwrap_or("?"),
            e["attempts"],
            if e["retrying"] == true {
                "retrying"
            } else {
                "waiting for a newer version"
            },
            e["reason"].as_str().unwrap_or("?")
        );
    }
    print!("{}", split_rows::render(&v));
    for pool in v["pools"].as_array().into_iter().flatten() {
        println!("pool {}", pool["name"].as_str().unwrap_or("?"));
        for b in pool["backends"].as_array().into_iter().flatten() {
            println!(
                "  {:<24} healthy={:<5} drained={:<5} active={}",
                b["addr"].as_str().unwrap_or("?"),
                b["healthy"],
                b["drained"],
                b["active_connections"]
            );
        }
    }
}

fn token(args: &CtlArgs) -> Result<Option<String>, CtlError> {
    if let Some(path) = &args.token_file {
        let t = std::fs::read_to_string(path)
            .map_err(|e| CtlError::Other(format!("cannot read {}: {e}", path.display())))?;
        return Ok(Some(t.trim().to_string()));
    }
    Ok(std::env::var("FULCRUM_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty()))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One admin API call (also used by a node to read its peers' `/status`).
pub(crate) async fn call(
    admin: &str,
    method: Method,
    path: &str,
    body: Option<String>,
    token: Option<&str>,
) -> Result<(StatusCode, String), CtlError> {
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| CtlError::Connect(admin.to_string(), e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| CtlError::Http(admin.to_string(), e))?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, admin);
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| CtlError::Other(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| CtlError::Http(admin.to_string(), e))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| CtlError::Http(admin.to_string(), e))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
