//! The CI chaos run: `fulcrum-chaos local --short` (kill -9 of the leader, leader
//! partition, Redis down; about a minute) against real fulcrum binaries in network
//! namespaces. Needs root, iproute2, nftables, redis-server and a built `fulcrum` next to
//! `fulcrum-chaos` (`cargo build --workspace --bins`); without them the test says why and
//! passes. `FULCRUM_CHAOS_SKIP=1` skips it explicitly.

use std::path::PathBuf;
use std::process::Command;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn short_chaos_suite_passes() {
    if std::env::var_os("FULCRUM_CHAOS_SKIP").is_some() {
        eprintln!("skipped: FULCRUM_CHAOS_SKIP is set");
        return;
    }
    if !nix_is_root() {
        eprintln!("skipped: the chaos suite needs root for network namespaces");
        return;
    }
    for tool in ["ip", "nft", "tc", "redis-server"] {
        if !have(tool) {
            eprintln!("skipped: {tool} is not installed");
            return;
        }
    }
    let busy = std::fs::read_dir("/var/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("fch-"))
        })
        .unwrap_or(false);
    if busy {
        eprintln!("skipped: fch-* namespaces exist (another chaos run, or `fulcrum-chaos local --cleanup` needed)");
        return;
    }
    let chaos = PathBuf::from(env!("CARGO_BIN_EXE_fulcrum-chaos"));
    let Some(fulcrum) = chaos.parent().map(|d| d.join("fulcrum")) else {
        panic!("no directory for {}", chaos.display());
    };
    assert!(
        fulcrum.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        fulcrum.display()
    );
    let report = chaos
        .parent()
        .map(|d| d.join("chaos-short-report.json"))
        .unwrap_or_else(|| PathBuf::from("chaos-short-report.json"));
    let status = Command::new(&chaos)
        .args(["local", "--short", "--report"])
        .arg(&report)
        .arg("--fulcrum")
        .arg(&fulcrum)
        .status()
        .expect("running fulcrum-chaos");
    assert!(
        status.success(),
        "the short chaos suite failed (table above, figures in {})",
        report.display()
    );
}

fn nix_is_root() -> bool {
    // /proc/self/status lists real, effective, saved and fs uids on the `Uid:` line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
