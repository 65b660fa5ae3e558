//! HTTP/2 abuse (issue 17 item 2), spoken with raw frames through a real fulcrum
//! process: rapid reset (CVE-2023-44487), a CONTINUATION flood (CVE-2024-27316
//! class), SETTINGS and PING floods, a huge HPACK header list, a window-update
//! overflow, more streams than `max_concurrent_streams`, and a stream that never
//! sends its body.
//!
//! For each: the attacking connection is refused (GOAWAY or closed, or for the
//! per-stream attacks the stream reset or answered) within a bounded time, the node's
//! memory stays bounded, and a well-behaved HTTP/2 client on another connection keeps
//! getting answers all along.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::h2raw::{self, frame, get_block, header_block, H2Raw, Seen};
use fulcrum_tests::process::Fulcrum;
use fulcrum_tests::raw_backend::RawBackend;
use fulcrum_tests::tls::{connect, verifying_config, TestCa};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an attack may take to be refused.
const REFUSE_WITHIN: Duration = Duration::from_secs(10);
/// Growth of the node's resident memory an attack may cause.
const RSS_BOUND_KB: u64 = 64 * 1024;

/// Resident memory of process `pid`, in KiB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A well-behaved HTTP/2 client on its own connection: one GET every 20 ms until
/// stopped (at most 2,000). Counts answers and failures.
struct GoodClient {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl GoodClient {
    async fn start(io: Box<dyn h2raw::Stream>) -> GoodClient {
        let (client, conn) = h2::client::handshake(io).await.expect("handshake");
        tokio::spawn(conn);
        let (stop, ok, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let task = tokio::spawn(async move {
            for _ in 0..2000 {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let answered = async {
                    let mut c = client.clone().ready().await.ok()?;
                    let req = http::Request::get("http://localhost/good").body(()).ok()?;
                    let (resp, _) = c.send_request(req, true).ok()?;
                    let resp = resp.await.ok()?;
                    Some(resp.status() == 200)
                };
                match tokio::time::timeout(Duration::from_secs(2), answered).await {
                    Ok(Some(true)) => o.fetch_add(1, Ordering::SeqCst),
                    _ => f.fetch_add(1, Ordering::SeqCst),
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        GoodClient {
            stop,
            ok,
            failed,
            task,
        }
    }

    /// Stops; returns (answered, failed).
    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

/// What an attack must end in.
enum Expect {
    /// GOAWAY or a closed connection.
    Refused,
    /// Every stream opened past the limit is reset (REFUSED_STREAM or similar) or the
    /// connection refused; never more concurrent requests than the limit.
    StreamsBounded,
    /// The stream is answered (a timeout from fulcrum) or reset within the bound.
    StreamEnded(u32),
}

/// Runs `attack` against a fresh node with a good client beside it (h2c).
async fn run<F, Fut>(name: &str, expect: Expect, attack: F)
where
    F: FnOnce(H2Raw) -> Fut,
    Fut: std::future::Future<Output = H2Raw>,
{
    run_via(name, expect, false, attack).await
}

/// Runs `attack` over h2c, or (`tls`) over TLS with ALPN h2, which the node serves on its
/// own HTTP/2 path (`node/src/http2`); the good client uses the same transport.
async fn run_via<F, Fut>(name: &str, expect: Expect, tls: bool, attack: F)
where
    F: FnOnce(H2Raw) -> Fut,
    Fut: std::future::Future<Output = H2Raw>,
{
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = ca.leaf(&["localhost"]).write(dir.path(), "web");
    let client_tls = verifying_config(&ca.pem(), &[b"h2"]);
    let backend = TestBackend::start("b0").await;
    // `/upload` goes to a backend that reads a request's whole body before answering.
    let reader = RawBackend::echo_path().await;
    let ports = Ports::new();
    let cfg = format!(
        "{}\n[[route]]\nlistener = \"web\"\npath_prefix = \"/upload\"\npool = \"reader\"\n\n\
         [[pool]]\nname = \"reader\"\nresponse_timeout = \"3s\"\nbackends = {}\n",
        single_node(
            &ports,
            &backend_list(&[&backend], &[]),
            "response_timeout = \"3s\"",
            "",
        ),
        reader.backend_list()
    );
    let cfg = if tls {
        cfg.replace(
            "header_read_timeout = \"2s\"\n",
            &format!(
                "header_read_timeout = \"2s\"\nprotocol = \"https\"\ntls = [{{ cert = \"{}\", key = \"{}\" }}]\n",
                cert.display(),
                key.display()
            ),
        )
    } else {
        cfg
    };
    let node = Fulcrum::start(&cfg, &ports.admin).await;
    let pid = node.pid().expect("pid");
    let open = |addr: String, config: Arc<rustls::ClientConfig>| async move {
        let stream: Box<dyn h2raw::Stream> = if tls {
            Box::new(
                connect(&addr, "localhost", config)
                    .await
                    .expect("tls connect"),
            )
        } else {
            Box::new(
                tokio::net::TcpStream::connect(&addr)
                    .await
                    .expect("connect"),
            )
        };
        stream
    };
    let good = GoodClient::start(open(ports.web.clone(), client_tls.clone()).await).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = rss_kb(pid);
    let started = Instant::now();
    let raw = H2Raw::over(open(ports.web.clone(), client_tls).await)
        .await
        .expect("attacker connects");
    let raw = attack(raw).await;
    let seen: Seen = match expect {
        Expect::Refused => {
            let seen = raw.wait_refused(REFUSE_WITHIN).await;
            assert!(
                seen.goaway.is_some() || seen.closed.is_some(),
                "{name}: not refused within {REFUSE_WITHIN:?}: {seen:?}"
            );
            seen
        }
        Expect::StreamsBounded => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            raw.seen()
        }
        Expect::StreamEnded(stream) => {
            let deadline = Instant::now() + REFUSE_WITHIN;
            loop {
                let seen = raw.seen();
                let ended = seen.responses.contains(&stream)
                    || seen.resets.iter().any(|(s, _)| *s == stream)
                    || seen.goaway.is_some()
                    || seen.closed.is_some();
                if ended {
                    break seen;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name}: stream {stream} neither answered nor reset: {seen:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let took = started.elapsed();
    let rss_after = rss_kb(pid);
    drop(raw);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed) = good.finish().await;
    eprintln!(
        "{name}: ended after {took:?}; goaway {:?}; {} resets; RSS {rss_before} -> {rss_after} KiB; good client {ok} answered, {failed} failed; backend saw {} requests",
        seen.goaway.map(|(code, _)| code),
        seen.resets.len(),
        backend.requests()
    );
    assert!(
        rss_after.saturating_sub(rss_before) < RSS_BOUND_KB,
        "{name}: RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert_eq!(
        failed, 0,
        "{name}: the good client lost requests ({ok} answered)"
    );
    assert!(ok >= 5, "{name}: the good client got only {ok} answers");
    assert!(
        rss_kb(pid) > 0,
        "{name}: the node died (no /proc/{pid}/status)"
    );
}

/// Writes `frames` in batches until `count` are sent or the server stops reading.
async fn flood(raw: &mut H2Raw, count: usize, make: impl Fn(usize) -> Vec<u8>) -> usize {
    let started = Instant::now();
    let mut sent = 0;
    while sent < count && started.elapsed() < REFUSE_WITHIN {
        let mut batch = Vec::new();
        for i in sent..(sent + 100).min(count) {
            batch.extend(make(i));
        }
        let n = (sent + 100).min(count) - sent;
        match tokio::time::timeout(Duration::from_secs(2), raw.send(&batch)).await {
            Ok(Ok(())) => sent += n,
            _ => break,
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_refused() {
    run("rapid reset", Expect::Refused, rapid_reset).await;
}

/// Opens slow streams and resets each at once, as fast as the node reads them.
async fn rapid_reset(mut raw: H2Raw) -> H2Raw {
    let sent = flood(&mut raw, 100_000, |i| {
        let stream = 1 + 2 * i as u32;
        let mut f = frame(
            h2raw::HEADERS,
            h2raw::END_HEADERS | h2raw::END_STREAM,
            stream,
            &get_block("/slow?ms=500"),
        );
        f.extend(frame(
            h2raw::RST_STREAM,
            0,
            stream,
            &h2raw::CANCEL.to_be_bytes(),
        ));
        f
    })
    .await;
    eprintln!("rapid reset: {sent} streams opened and reset");
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_is_refused() {
    run(
        "continuation flood",
        Expect::Refused,
        |mut raw| async move {
            // A request head that never ends: HEADERS without END_HEADERS, then
            // CONTINUATION frames each carrying complete, valid small fields.
            let _ = raw
                .send(&frame(h2raw::HEADERS, 0, 1, &get_block("/never-ends")))
                .await;
            let piece = header_block(&[("x-a", "a"); 100]);
            let sent = flood(&mut raw, 100_000, |_| {
                frame(h2raw::CONTINUATION, 0, 1, &piece)
            })
            .await;
            eprintln!("continuation flood: {sent} frames of {} bytes", piece.len());
            raw
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_value_announced_as_a_gigabyte_is_refused() {
    run(
        "gigabyte header value",
        Expect::Refused,
        |mut raw| async move {
            // A literal whose value is announced as 1 GiB, spread over endless
            // CONTINUATION frames.
            let mut block = vec![0x00, 0x01, b'x', 0x7f];
            let mut rest = (1usize << 30) - 127;
            while rest >= 128 {
                block.push((rest % 128) as u8 | 0x80);
                rest /= 128;
            }
            block.push(rest as u8);
            let _ = raw.send(&frame(h2raw::HEADERS, 0, 1, &block)).await;
            let sent = flood(&mut raw, 20_000, |_| {
                frame(h2raw::CONTINUATION, 0, 1, &vec![b'a'; 16_000])
            })
            .await;
            eprintln!("gigabyte header value: {sent} frames of 16 kB");
            raw
        },
    )
    .await;
}

/// `frame_of(i)`, with a real GET every 200 frames: the flood rides on a connection
/// that is busy with requests, so no idle or slow-head timer closes it by accident.
fn with_requests(i: usize, frame_of: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    if i.is_multiple_of(200) {
        let stream = 1 + 2 * (i / 200) as u32;
        out.extend(frame(
            h2raw::HEADERS,
            h2raw::END_HEADERS | h2raw::END_STREAM,
            stream,
            &get_block("/busy"),
        ));
    }
    out.extend(frame_of);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_flood_is_refused() {
    run("settings flood", Expect::Refused, |mut raw| async move {
        let sent = flood(&mut raw, 200_000, |i| {
            with_requests(i, frame(h2raw::SETTINGS, 0, 0, &[]))
        })
        .await;
        eprintln!("settings flood: {sent} frames");
        raw
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_refused() {
    run("ping flood", Expect::Refused, ping_flood).await;
}

/// PING frames without end, with a real request every 200 of them.
async fn ping_flood(mut raw: H2Raw) -> H2Raw {
    let sent = flood(&mut raw, 200_000, |i| {
        with_requests(i, frame(h2raw::PING, 0, 0, &(i as u64).to_be_bytes()))
    })
    .await;
    eprintln!("ping flood: {sent} frames");
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_header_list_is_refused() {
    run(
        "huge header list",
        Expect::StreamEnded(1),
        |mut raw| async move {
            let value = "v".repeat(4000);
            let mut fields = vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "localhost"),
                (":path", "/huge"),
            ];
            for _ in 0..200 {
                fields.push(("x-big", value.as_str()));
            }
            let block = header_block(&fields);
            // 800 kB of headers: one HEADERS frame and CONTINUATIONs of 16 kB.
            let mut chunks = block.chunks(16_000).peekable();
            let mut bytes = frame(
                h2raw::HEADERS,
                h2raw::END_STREAM,
                1,
                chunks.next().unwrap_or(&[]),
            );
            while let Some(chunk) = chunks.next() {
                let flags = if chunks.peek().is_none() {
                    h2raw::END_HEADERS
                } else {
                    0
                };
                bytes.extend(frame(h2raw::CONTINUATION, flags, 1, chunk));
            }
            let _ = raw.send(&bytes).await;
            raw
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_update_overflow_is_refused() {
    run("window overflow", Expect::Refused, |mut raw| async move {
        // The connection window starts at 65,535; two maximal increments overflow it.
        let inc = 0x7fff_ffffu32.to_be_bytes();
        let mut bytes = frame(h2raw::WINDOW_UPDATE, 0, 0, &inc);
        bytes.extend(frame(h2raw::WINDOW_UPDATE, 0, 0, &inc));
        let _ = raw.send(&bytes).await;
        raw
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_concurrency_limit_are_refused() {
    run("too many streams", Expect::StreamsBounded, |mut raw| async move {
        // 600 slow requests at once; fulcrum allows 256 concurrent streams.
        let mut bytes = Vec::new();
        for i in 0..600u32 {
            bytes.extend(frame(
                h2raw::HEADERS,
                h2raw::END_HEADERS | h2raw::END_STREAM,
                1 + 2 * i,
                &get_block("/slow?ms=2000"),
            ));
        }
        let _ = raw.send(&bytes).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let seen = raw.seen();
        let refused = seen.resets.len();
        let answered = seen.responses.len();
        assert!(
            refused >= 600 - 256 || seen.goaway.is_some() || seen.closed.is_some(),
            "too many streams: only {refused} of the 344 streams over the limit refused ({answered} answered): {seen:?}"
        );
        raw
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_never_sends_its_body_ends() {
    run(
        "body never sent",
        Expect::StreamEnded(1),
        |mut raw| async move {
            let block = header_block(&[
                (":method", "POST"),
                (":scheme", "http"),
                (":authority", "localhost"),
                (":path", "/upload"),
                ("content-length", "1000"),
            ]);
            let _ = raw
                .send(&frame(h2raw::HEADERS, h2raw::END_HEADERS, 1, &block))
                .await;
            raw
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_over_tls_is_refused() {
    run_via("ping flood (TLS)", Expect::Refused, true, ping_flood).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_over_tls_is_refused() {
    run_via("rapid reset (TLS)", Expect::Refused, true, rapid_reset).await;
}
