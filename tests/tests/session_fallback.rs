//! Sessions begun while Redis is down, through two real fulcrum nodes sharing a real
//! redis-server: each keeps its backend on both nodes at once (the signed fallback cookie
//! routes it on the node that did not begin it, the held pin on the node that did), and the
//! held pins reach Redis once it is back, so the sessions stay put without the cookie too.

use fulcrum_session::fallback_pick;
use fulcrum_testbed::redis::TestRedis;
use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{fresh_client, get, get_status, Reply};
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::process::Fulcrum;
use std::time::{Duration, Instant};

const SESSIONS: usize = 20;
const LEARN: &str = r#"affinity = { mode = "learn", cookie = "JSESSIONID" }"#;
const FALLBACK: &str = "fulcrum_pin_app";

fn session_table(redis: &TestRedis, key_file: &std::path::Path) -> String {
    format!(
        "[session]\nredis = \"{}\"\ntimeout = \"100ms\"\nfallback_keys = [\"{}\"]",
        redis.url(),
        key_file.display()
    )
}

/// `name=value` of the fallback cookie a response sets, if any.
fn fallback_cookie(reply: &Reply) -> Option<String> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with(&format!("{FALLBACK}=")))
        .map(str::to_string)
}

async fn wait_status(admin: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if get_status(admin)
            .await
            .is_some_and(|s| s["session_store"] == want)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("session store never {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_begun_while_redis_is_down_keep_their_backend_on_every_node() {
    let mut redis = TestRedis::start().await;
    let backends = [
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    ];
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let list = backend_list(&refs, &[]);
    let addrs: Vec<String> = refs.iter().map(|b| b.addr.to_string()).collect();
    let ids: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("pin.key");
    std::fs::write(&key, "fallback-key-0123456789abcdef\n").expect("write key");
    let session = session_table(&redis, &key);
    let (p1, p2) = (Ports::new(), Ports::new());
    let _n1 = Fulcrum::start(&single_node(&p1, &list, LEARN, &session), &p1.admin).await;
    let _n2 = Fulcrum::start(&single_node(&p2, &list, LEARN, &session), &p2.admin).await;
    wait_status(&p1.admin, "connected").await;

    redis.kill();
    wait_status(&p1.admin, "degraded").await;
    let client = fresh_client();
    // Logins through node 1 while Redis cannot take a pin; each login is followed at once by
    // a request through node 1 and one through node 2.
    let mut begun = Vec::new();
    let (mut moved, mut moved_without_cookie) = (Vec::new(), 0);
    for i in 0..SESSIONS {
        let login = get(&client, &p1.url(&format!("/setcookie?c=s{i}")), &[])
            .await
            .expect("login");
        let backend = login.backend.clone().expect("x-backend");
        let pin = fallback_cookie(&login).expect("no fallback cookie on a new session");
        let cookies = format!("JSESSIONID=s{i}; {pin}");
        for ports in [&p1, &p2] {
            let r = get(&client, &ports.url("/"), &[("cookie", cookies.as_str())])
                .await
                .expect("request");
            if r.backend.as_deref() != Some(backend.as_str()) {
                moved.push(format!("s{i} on {}", ports.admin));
            }
        }
        // Control: without the cookie node 2 could only hash, which often disagrees.
        let hashed = fallback_pick(&format!("s{i}"), &ids).map(|j| refs[j].name());
        if hashed != Some(backend.as_str()) {
            moved_without_cookie += 1;
        }
        begun.push((format!("s{i}"), backend));
    }
    assert!(
        moved.is_empty(),
        "sessions moved while Redis was down: {moved:?}"
    );
    assert!(
        moved_without_cookie > 0,
        "the hash agreed with every login: the test cannot tell the cookie works"
    );

    // Redis back (empty: no persistence): node 1 writes its held pins; then node 2 finds
    // every session in Redis, without the fallback cookie.
    redis.restart().await;
    wait_status(&p1.admin, "connected").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut missing = begun.len();
    while missing > 0 && Instant::now() < deadline {
        let mut m = 0;
        for (s, _) in &begun {
            let key = format!("fulcrum:aff:app:{s}");
            // A raw RESP reply: `$-1` is a missing key.
            let reply = redis.command(&["GET", &key]).await;
            if reply.is_none_or(|v| v.starts_with("$-1")) {
                m += 1;
            }
        }
        missing = m;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(missing, 0, "held pins never reached Redis");
    let mut moved_after = Vec::new();
    for (s, backend) in &begun {
        let bare = format!("JSESSIONID={s}");
        let r = get(&client, &p2.url("/"), &[("cookie", bare.as_str())])
            .await
            .expect("request");
        if r.backend.as_deref() != Some(backend.as_str()) {
            moved_after.push(s.clone());
        }
    }
    eprintln!(
        "{SESSIONS} sessions begun with Redis down: {} moved with the cookie, {moved_without_cookie} \
         would have moved without it, {} moved after Redis came back",
        moved.len(),
        moved_after.len()
    );
    assert!(
        moved_after.is_empty(),
        "moved after Redis came back: {moved_after:?}"
    );
}
