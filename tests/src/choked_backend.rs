//! A backend whose accept queue the test can fill, so that the kernel drops new SYNs: the
//! way a lost SYN (a lossy link) looks to a proxy, made on loopback and on command.
//!
//! The listener has a backlog of 0: one connection that was not accepted yet fills the
//! queue, and the kernel then drops every SYN until it is accepted. `choke` pauses the
//! accept loop and parks such a connection there; `unchoke_after` accepts it later. Every
//! request is answered `200` with `x-backend: NAME` and `Connection: close` (so the proxy
//! never reuses a connection and every request needs a connect).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the test process keeps serving at most (a bound on the accept thread).
const LIFETIME: Duration = Duration::from_secs(120);

pub struct ChokedBackend {
    addr: SocketAddr,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    filler: Option<TcpStream>,
}

impl ChokedBackend {
    /// Starts serving on 127.0.0.1 (a free port) as `name`.
    pub fn start(name: &'static str) -> std::io::Result<ChokedBackend> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
        socket.listen(0)?;
        let listener: TcpListener = socket.into();
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let paused = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (p, s, n) = (paused.clone(), stop.clone(), served.clone());
        std::thread::spawn(move || accept_loop(listener, name, p, s, n));
        Ok(ChokedBackend {
            addr,
            paused,
            stop,
            served,
            filler: None,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Stops accepting and fills the accept queue: from now on the kernel drops SYNs.
    pub fn choke(&mut self) -> std::io::Result<()> {
        self.paused.store(true, Ordering::SeqCst);
        // Let an accept in progress finish before the queue is filled.
        std::thread::sleep(Duration::from_millis(20));
        self.filler = Some(TcpStream::connect(self.addr)?);
        Ok(())
    }

    /// Whether a connect would get through now (`false` while choked).
    pub fn connect_gets_through(&self, within: Duration) -> bool {
        TcpStream::connect_timeout(&self.addr, within).is_ok()
    }

    /// Accepts again after `delay` (the parked connection is accepted and dropped).
    pub fn unchoke_after(&mut self, delay: Duration) {
        let paused = self.paused.clone();
        let filler = self.filler.take();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            paused.store(false, Ordering::SeqCst);
            // Keep the filler open until the loop accepted it, then let it go.
            std::thread::sleep(Duration::from_millis(50));
            drop(filler);
        });
    }
}

impl Drop for ChokedBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn accept_loop(
    listener: TcpListener,
    name: &'static str,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
) {
    let started = Instant::now();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < LIFETIME {
        if paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        match listener.accept() {
            Ok((conn, _)) => {
                let served = served.clone();
                std::thread::spawn(move || answer(conn, name, &served));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Reads one request head and answers it; a connection that sends nothing (the queue
/// filler) is closed when the test drops its end.
fn answer(mut conn: TcpStream, name: &str, served: &AtomicUsize) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let reply = format!(
        "HTTP/1.1 200 OK\r\nx-backend: {name}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    );
    if conn.write_all(reply.as_bytes()).is_ok() {
        served.fetch_add(1, Ordering::SeqCst);
    }
}
