//! The dashboard in a real browser (issue 15 item 4): three real nodes with a real VIP in
//! network namespaces, the page opened by headless Chromium from the client namespace,
//! and the checks made on the DOM the browser rendered after running the page's script:
//! three nodes up, the leader, the VIP holder, the backend, the holder's recorded "took
//! the VIP"; then the VIP holder is killed (-9) and the page must show it down, another
//! holder, and that holder's "took the VIP" within `DOWN_BOUND`.
//!
//! Chromium is Debian's `chromium` (`.ci/run` installs it); where it cannot be had the
//! test says so and skips (also in CI, where the skip is counted in the summary). A
//! screenshot of the page is saved under the target dir (`dashboard.png`, and
//! `dashboard-node-down.png` after the kill); `docs/dashboard.png` was taken by this test.
//!
//! A second test clicks: three real nodes on loopback with an admin token, the page
//! driven over the DevTools protocol (`fulcrum_tests::browser`). No drain buttons until
//! the token is typed in; then "drain" on a backend drains it on every node (no request
//! reaches it) and "undrain" brings it back; each backend row shows its p50/p99; a node
//! whose process is stopped shows DOWN with the config version it reported through Raft.

use fulcrum_testbed::netns::can_run;
use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::browser::{chromium, Page};
use fulcrum_tests::client::{fresh_client, get, get_status};
use fulcrum_tests::cluster::{LocalCluster, MemberPorts};
use fulcrum_tests::config::backend_list;
use fulcrum_tests::free_port;
use fulcrum_tests::vipbed::VipCluster;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Bound for the page to show a killed node down (a refresh is 1 s; a browser run ~1-2 s).
const DOWN_BOUND: Duration = Duration::from_secs(8);

fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
    if let Some(path) = std::env::var_os("FULCRUM_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{test}: {why}");
        }
    }
}

/// Headless Chromium in namespace `ns`; `what` is `--dump-dom` or `--screenshot=PATH`.
/// Returns stdout (the DOM for `--dump-dom`).
fn browse(ns: &str, browser: &Path, profile: &Path, url: &str, what: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "40"])
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1400,1000",
            // Lets the page's script run (its first fetch, then a refresh) before the dump.
            "--virtual-time-budget=2500",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(what)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(node id, data-state)` of each node row of the rendered table.
fn node_rows(dom: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for (at, _) in dom.match_indices("data-node-id=\"") {
        let tag = &dom[at..dom[at..].find('>').map_or(dom.len(), |e| at + e)];
        let attr = |name: &str| {
            let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
            let end = tag[start..].find('"')? + start;
            Some(tag[start..end].to_string())
        };
        if let (Some(id), Some(state)) = (attr("data-node-id"), attr("data-state")) {
            if let Ok(id) = id.parse() {
                out.push((id, state));
            }
        }
    }
    out
}

/// The text of the element with `id` (no markup inside).
fn text_of(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let start = dom[at..].find('>')? + at + 1;
    let end = dom[start..].find('<')? + start;
    Some(dom[start..end].to_string())
}

#[test]
fn dashboard_shows_the_cluster_and_a_killed_node_in_a_real_browser() {
    let test = "dashboard_shows_the_cluster_and_a_killed_node_in_a_real_browser";
    if !can_run(test) {
        return;
    }
    let browser = match chromium() {
        Ok(b) => b,
        Err(why) => return skip(test, &why),
    };
    let mut c = VipCluster::start("db", "fast", "2s");
    let holder = c
        .wait_holder(Duration::from_secs(15))
        .expect("a leader holds the VIP");
    let asked = (holder + 1) % 3;
    let url = format!("http://10.77.70.{}:9901/", 11 + asked);
    let profile = tempfile::tempdir().expect("profile dir");
    let ns = c.bed.ns("cl");

    // The first load: three nodes up, the leader and VIP holder named, the backend shown.
    let holder_id = holder as u64 + 1;
    let mut dom = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        dom = browse(&ns, &browser, profile.path(), &url, "--dump-dom");
        let rows = node_rows(&dom);
        if rows.len() == 3
            && rows.iter().all(|(_, s)| s == "up")
            && dom.contains("data-healthy=\"true\"")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the script ran: {dom}"
    );
    let rows = node_rows(&dom);
    assert_eq!(
        rows,
        vec![(1, "up".into()), (2, "up".into()), (3, "up".into())],
        "{dom}"
    );
    assert_eq!(
        text_of(&dom, "leader").as_deref(),
        Some(format!("node {holder_id}").as_str()),
        "{dom}"
    );
    assert_eq!(
        text_of(&dom, "vip-holder").as_deref(),
        Some(format!("node {holder_id}").as_str()),
        "{dom}"
    );
    assert!(
        dom.contains("data-addr=\"10.77.70.21:8080\""),
        "the backend is listed: {dom}"
    );
    assert!(
        dom.contains("data-pool=\"app\""),
        "the pool is listed: {dom}"
    );
    assert!(
        dom.contains(&format!("node {holder_id}: took the VIP")),
        "the holder's recorded transition is listed: {dom}"
    );
    assert!(
        !dom.contains("class=\"drain-btn\""),
        "no drain buttons without a token: {dom}"
    );
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browse(
        &ns,
        &browser,
        profile.path(),
        &url,
        &format!("--screenshot={}", shot.display()),
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    eprintln!("screenshot: {}", shot.display());

    // Kill the VIP holder: the page shows it down and the VIP on another node.
    let killed = Instant::now();
    c.kill9(holder);
    let mut seen = None;
    while killed.elapsed() < DOWN_BOUND {
        dom = browse(&ns, &browser, profile.path(), &url, "--dump-dom");
        let down = node_rows(&dom).contains(&(holder_id, "down".to_string()));
        let moved = text_of(&dom, "vip-holder")
            .filter(|t| t.starts_with("node ") && *t != format!("node {holder_id}"));
        // The new holder's own record of the claim, merged into the page's transitions.
        let recorded = moved
            .as_ref()
            .is_some_and(|t| dom.contains(&format!("{t}: took the VIP")));
        if down && recorded {
            seen = Some(killed.elapsed());
            break;
        }
    }
    eprintln!("killed node {holder_id} shown down with the VIP moved after {seen:?}");
    assert!(
        seen.is_some(),
        "node {holder_id} not shown down with a new VIP holder (and its transition) within {DOWN_BOUND:?}: {dom}"
    );
    assert!(dom.contains("DOWN"), "{dom}");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-node-down.png");
    browse(
        &ns,
        &browser,
        profile.path(),
        &url,
        &format!("--screenshot={}", shot.display()),
    );
    eprintln!("screenshot with node {holder_id} down: {}", shot.display());
}

/// Requests through every node's listener; returns how many each backend got.
async fn spread(cluster: &LocalCluster, a: &TestBackend, b: &TestBackend) -> (u64, u64) {
    let (a0, b0) = (a.requests(), b.requests());
    let client = fresh_client();
    for m in &cluster.members {
        for _ in 0..10 {
            let r = get(&client, &m.url("/"), &[]).await;
            assert!(
                r.is_ok_and(|r| r.status == 200),
                "a request through node {}",
                m.id
            );
        }
    }
    (a.requests() - a0, b.requests() - b0)
}

/// Whether every node's `/status` says backend `addr` is drained (`want`).
async fn drained_everywhere(cluster: &LocalCluster, addr: &str, want: bool) -> bool {
    for m in &cluster.members {
        let Some(s) = get_status(&m.admin).await else {
            return false;
        };
        let b = s["pools"][0]["backends"]
            .as_array()
            .and_then(|bs| bs.iter().find(|b| b["addr"] == addr).cloned());
        if b.is_none_or(|b| b["drained"] != want) {
            return false;
        }
    }
    true
}

/// Evaluates `cond` in the page until true (10 s); fails with the page's text.
fn wait(page: &mut Page, cond: &str, what: &str) {
    let seen = page
        .wait_for(cond, Duration::from_secs(10))
        .expect("evaluate");
    let text = page.eval("document.body.innerText").unwrap_or_default();
    assert!(seen, "{what}: {text}");
}

/// Clicks the drain (`on`) or undrain button of backend `row` (a JS expression) and
/// waits until the page shows it and every node's `/status` says so.
async fn click_drain(page: &mut Page, cluster: &LocalCluster, row: &str, addr: &str, on: bool) {
    let (label, call) = if on {
        ("undrain", "drain")
    } else {
        ("drain", "undrain")
    };
    page.eval(&format!("{row}.querySelector('.drain-btn').click(); true"))
        .expect("click");
    wait(
        page,
        &format!(
            "{row}.dataset.drained === '{on}' && \
             {row}.querySelector('.drain-btn')?.textContent === '{label}' && \
             document.getElementById('action-result').textContent.startsWith('{call} {addr}: 200')"
        ),
        &format!("{call} of {addr} shown, the call answered 200"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !drained_everywhere(cluster, addr, on).await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        drained_everywhere(cluster, addr, on).await,
        "drained = {on} on every node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_undrain_buttons_work_in_a_real_browser() {
    let test = "drain_and_undrain_buttons_work_in_a_real_browser";
    let browser = match chromium() {
        Ok(b) => b,
        Err(why) => return skip(test, &why),
    };
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let secrets = tempfile::tempdir().expect("tempdir");
    let token = "dashboard-test-token-0123456789";
    let token_file = secrets.path().join("admin.token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token");
    let web = free_port();
    let members: Vec<MemberPorts> = (1..=3).map(|id| MemberPorts::new(id, web)).collect();
    let cluster = LocalCluster::start_members_with(
        members,
        web,
        &backend_list(&[&a, &b], &[]),
        &format!("admin_token_file = \"{}\"", token_file.display()),
        |_| String::new(),
    )
    .await;
    cluster.wait_settled().await;
    let (to_a, to_b) = spread(&cluster, &a, &b).await;
    assert!(to_a > 0 && to_b > 0, "both backends serve: {to_a} {to_b}");

    let url = format!("http://{}/", cluster.members[1].admin);
    let mut page = Page::open(&browser, &url).expect("browser");
    let addr = a.addr.to_string();
    let row = format!("document.querySelector('tr.backend[data-addr=\"{addr}\"]')");
    wait(
        &mut page,
        &format!("document.body.dataset.loaded === 'true' && !!{row}"),
        "the page shows backend a",
    );
    assert_eq!(
        page.eval("document.querySelectorAll('.drain-btn').length")
            .expect("evaluate"),
        0,
        "no buttons without a token"
    );
    // Each backend row has its own latency figures once it served requests.
    wait(
        &mut page,
        &format!("{row}.querySelector('td.p50').textContent.endsWith('s') && {row}.querySelector('td.p99').textContent.endsWith('s')"),
        "backend a's p50/p99",
    );

    // Type the token: the buttons appear; click "drain" on backend a.
    page.eval(&format!(
        "const t = document.getElementById('token'); t.value = '{token}'; \
         t.dispatchEvent(new Event('input')); true"
    ))
    .expect("type the token");
    wait(
        &mut page,
        &format!("{row}.querySelector('.drain-btn')?.textContent === 'drain'"),
        "a drain button with the token",
    );
    click_drain(&mut page, &cluster, &row, &addr, true).await;
    let (to_a, to_b) = spread(&cluster, &a, &b).await;
    assert_eq!(
        (to_a, to_b),
        (0, 30),
        "a drained backend gets no new request"
    );

    // "undrain": back in service everywhere.
    click_drain(&mut page, &cluster, &row, &addr, false).await;
    let (to_a, _) = spread(&cluster, &a, &b).await;
    assert!(to_a > 0, "backend a serves again");

    // A node whose admin API stops answering is DOWN, with the version it reported
    // through Raft.
    cluster.signal(2, nix::sys::signal::Signal::SIGSTOP);
    let n3 = "document.querySelector('tr[data-node-id=\"3\"]')";
    wait(
        &mut page,
        &format!("{n3}.dataset.state === 'down' && {n3}.querySelector('td.config').textContent === '1 (raft)'"),
        "node 3 down with its reported version",
    );
    cluster.signal(2, nix::sys::signal::Signal::SIGCONT);
}
