//! TCP (L4) listeners end to end: a real redis-server behind fulcrum, PROXY v2 towards
//! backends, failover to another backend when one dies, and the idle timeout.

use fulcrum_testbed::redis::TestRedis;
use fulcrum_tests::config::Ports;
use fulcrum_tests::process::Fulcrum;
use fulcrum_tests::tcp_backend::{parse_v2_ipv4, resp_command, TcpEcho};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A one-node config with a TCP listener `db` in front of `backends`.
fn tcp_config(
    ports: &Ports,
    backends: &[SocketAddr],
    listener_extra: &str,
    pool_extra: &str,
) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|a| format!("{{ addr = \"{a}\" }}"))
        .collect();
    format!(
        r#"[node]
id = 1
admin = "{admin}"
data_dir = "/tmp"
access_log = "off"
shutdown_grace = "2s"

[[listener]]
name = "db"
bind = "{web}"
protocol = "tcp"
pool = "tcp"
{listener_extra}

[[pool]]
name = "tcp"
connect_timeout = "500ms"
backends = [{list}]
{pool_extra}
"#,
        admin = ports.admin,
        web = ports.web,
        list = list.join(", "),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_through_fulcrum() {
    let redis = TestRedis::start().await;
    let ports = Ports::new();
    let node = Fulcrum::start(&tcp_config(&ports, &[redis.addr()], "", ""), &ports.admin).await;
    let mut conn = TcpStream::connect(&ports.web).await.expect("connect");
    assert_eq!(
        resp_command(&mut conn, &["PING"]).await.expect("PING"),
        "+PONG\r\n",
        "{}",
        node.log()
    );
    assert_eq!(
        resp_command(&mut conn, &["SET", "fulcrum:k", "v1"])
            .await
            .expect("SET"),
        "+OK\r\n"
    );
    // A second connection sees what the first wrote: it is the same redis.
    let mut other = TcpStream::connect(&ports.web).await.expect("connect 2");
    assert_eq!(
        resp_command(&mut other, &["GET", "fulcrum:k"])
            .await
            .expect("GET"),
        "$2\r\nv1\r\n"
    );
}

/// Reads the greeting line (`NAME\n`) of a `TcpEcho` backend.
async fn greeting(stream: &mut TcpStream) -> Result<String, String> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .map_err(|_| "no greeting".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(line.trim_end().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_sees_proxy_v2_with_the_client_address() {
    let echo = TcpEcho::start("e1", true).await;
    let ports = Ports::new();
    let node = Fulcrum::start(
        &tcp_config(&ports, &[echo.addr], "", "send_proxy = \"v2\""),
        &ports.admin,
    )
    .await;
    let mut conn = TcpStream::connect(&ports.web).await.expect("connect");
    let client_addr = conn.local_addr().expect("local addr");
    assert_eq!(
        greeting(&mut conn).await.expect("greeting"),
        "e1",
        "{}",
        node.log()
    );
    conn.write_all(b"hello").await.expect("write");
    let mut buf = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(&buf, b"hello");
    let headers = echo.received_headers();
    assert_eq!(headers.len(), 1);
    let (src, dst) = parse_v2_ipv4(&headers[0]).expect("a PROXY v2 TCP4 header");
    assert_eq!(src, client_addr);
    assert_eq!(dst.to_string(), ports.web);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backend_sends_new_connections_to_the_other() {
    let one = TcpEcho::start("one", false).await;
    let two = TcpEcho::start("two", false).await;
    let ports = Ports::new();
    let node = Fulcrum::start(
        &tcp_config(&ports, &[one.addr, two.addr], "", ""),
        &ports.admin,
    )
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(&ports.web).await.expect("connect");
        seen.insert(greeting(&mut c).await.expect("greeting"));
    }
    assert_eq!(seen.len(), 2, "round-robin should reach both: {seen:?}");
    let dead = one.addr;
    one.kill();
    // The abort closes the listener asynchronously; a killed process's port refuses.
    for _ in 0..200 {
        if TcpStream::connect(dead).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every new connection reaches `two`: a refused connect is retried elsewhere at
    // once, and the dead backend is ejected for the next ones.
    for i in 0..10 {
        let mut c = TcpStream::connect(&ports.web).await.expect("connect");
        let name = greeting(&mut c).await;
        assert_eq!(
            name.as_deref(),
            Ok("two"),
            "connection {i}; log:\n{}",
            node.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let echo = TcpEcho::start("e", false).await;
    let ports = Ports::new();
    let _node = Fulcrum::start(
        &tcp_config(&ports, &[echo.addr], "idle_timeout = \"400ms\"", ""),
        &ports.admin,
    )
    .await;
    let mut c = TcpStream::connect(&ports.web).await.expect("connect");
    assert_eq!(greeting(&mut c).await.expect("greeting"), "e");
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("closed by the idle timeout");
    assert!(matches!(n, Ok(0) | Err(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_proxy_on_tcp_listener_refuses_untrusted_peers() {
    let echo = TcpEcho::start("e", false).await;
    let ports = Ports::new();
    let _node = Fulcrum::start(
        &tcp_config(
            &ports,
            &[echo.addr],
            "accept_proxy = true\nproxy_from = [\"192.0.2.0/24\"]",
            "",
        ),
        &ports.admin,
    )
    .await;
    let mut c = TcpStream::connect(&ports.web).await.expect("connect");
    let _ = c
        .write_all(b"PROXY TCP4 198.51.100.1 127.0.0.1 1 2\r\n")
        .await;
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("closed at once");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "untrusted peer reached a backend: {n:?}"
    );
}
