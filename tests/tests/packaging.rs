//! What ships for operators keeps working (issue 15 item 5): the sample
//! `packaging/etc/fulcrum/fulcrum.toml` passes `fulcrum check` (with its secret and token
//! files in place), the systemd unit runs the binary with that file, and
//! `fulcrum completions SHELL` prints a script for bash, zsh and fish.

use fulcrum_tests::process::fulcrum_bin;
use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

#[test]
fn the_sample_etc_fulcrum_passes_check() {
    let text = std::fs::read_to_string(repo().join("packaging/etc/fulcrum/fulcrum.toml"))
        .expect("sample config");
    let dir = tempfile::tempdir().expect("tempdir");
    let local = text.replace("/etc/fulcrum/", &format!("{}/", dir.path().display()));
    std::fs::write(
        dir.path().join("cluster.secret"),
        "sample-secret-0123456789\n",
    )
    .expect("secret");
    std::fs::write(dir.path().join("admin.token"), "sample-token\n").expect("token");
    let (ok, stderr, path) = fulcrum_tests::process::check_config(&local, dir.path());
    assert!(ok, "{path}: {stderr}");
}

#[test]
fn the_systemd_unit_runs_the_sample_file() {
    let unit = std::fs::read_to_string(repo().join("packaging/fulcrum.service")).expect("unit");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/fulcrum run --config /etc/fulcrum/fulcrum.toml"),
        "{unit}"
    );
    assert!(
        unit.contains("ExecReload=/bin/kill -HUP $MAINPID"),
        "{unit}"
    );
    assert!(
        unit.contains("StateDirectory=fulcrum"),
        "data_dir /var/lib/fulcrum: {unit}"
    );
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "_fulcrum()"),
        ("zsh", "#compdef fulcrum"),
        ("fish", "complete -c fulcrum"),
    ] {
        let out = Command::new(fulcrum_bin())
            .args(["completions", shell])
            .output()
            .expect("run fulcrum completions");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}: {out:?}");
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(
            text.contains("no-wait"),
            "{shell} completes ctl apply --no-wait"
        );
    }
}
