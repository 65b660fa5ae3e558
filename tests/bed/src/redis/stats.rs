//! Redis's own count of the commands it ran (`INFO commandstats`), and the round trips
//! fulcrum's session store made between two such counts.

use std::time::{Duration, Instant};

/// `INFO commandstats`: command name -> (calls, failed or rejected calls).
pub type CommandStats = std::collections::BTreeMap<String, (u64, u64)>;

/// The commands fulcrum's session store sent between two snapshots, by name: its round trips
/// to Redis. `INFO commandstats` also counts the commands a Lua script runs, so the pin
/// scripts' inner `GET` (one per script run) and `SET` are taken out; the store never sends a
/// `SET` itself. Monitoring (INFO, PING, CLUSTER ...) and connection setup are left out.
pub fn round_trips(
    before: &CommandStats,
    after: &CommandStats,
) -> std::collections::BTreeMap<String, u64> {
    let d = |name: &str| -> (u64, u64) {
        let (c1, f1) = after.get(name).copied().unwrap_or((0, 0));
        let (c0, f0) = before.get(name).copied().unwrap_or((0, 0));
        (c1.saturating_sub(c0), f1.saturating_sub(f0))
    };
    let script_runs: u64 = ["evalsha", "eval", "evalsha_ro", "eval_ro"]
        .iter()
        .map(|n| {
            let (calls, failed) = d(n);
            calls - failed.min(calls)
        })
        .sum();
    let mut out = std::collections::BTreeMap::new();
    for name in after.keys() {
        let (calls, _) = d(name);
        let sent = match name.as_str() {
            "info" | "ping" | "config|resetstat" | "client|setinfo" | "client|setname"
            | "hello" | "select" | "set" => 0,
            n if n.starts_with("cluster|") => 0,
            "get" => calls.saturating_sub(script_runs),
            _ => calls,
        };
        if sent > 0 {
            out.insert(name.clone(), sent);
        }
    }
    out
}

/// Per command since the last `CONFIG RESETSTAT`, from `INFO commandstats`: (calls,
/// failed or rejected calls), by name (`get`, `getex`, `evalsha`, ...; subcommands as
/// `config|resetstat`). Redis's own count, independent of fulcrum's metrics. Commands a
/// Lua script runs are counted too; [`round_trips`] takes them out.
pub async fn command_stats(port: u16) -> CommandStats {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut out = std::collections::BTreeMap::new();
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return out;
    };
    if s.write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        .await
        .is_err()
    {
        return out;
    }
    // One bulk reply: `$LEN\r\n` + LEN bytes + `\r\n`; read until it is all in.
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let text = String::from_utf8_lossy(&buf);
        let complete = text.split_once("\r\n").is_some_and(|(head, rest)| {
            head.trim_start_matches('$')
                .parse::<usize>()
                .is_ok_and(|len| rest.len() >= len)
        });
        if complete || Instant::now() >= deadline {
            break;
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    for line in String::from_utf8_lossy(&buf).lines() {
        // cmdstat_getex:calls=3,usec=25,...
        let Some((name, fields)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |key: &str| -> u64 {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(key))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0)
        };
        let failed = field("failed_calls=") + field("rejected_calls=");
        out.insert(name.to_string(), (field("calls="), failed));
    }
    out
}
