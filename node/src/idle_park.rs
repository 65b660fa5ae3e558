//! The parking lot of a plain HTTP listener: idle keep-alive connections kept outside
//! tokio, with no task and no reactor registration, until their client sends again.
//!
//! An idle HTTP/1.1 connection served by its own task costs that task (384 bytes), its
//! registration in tokio's reactor (256, cache-line aligned), its I/O counters and its
//! slot in the listener's sweep, although all it waits for is readability. A connection
//! that has been quiet for a sweep tick between requests, holding no unread byte, is
//! told so by the sweep (`listener_sweep::event::PARK`); its task then ends and hands the
//! socket here (`park`): the socket leaves tokio's reactor and joins this lot's own
//! epoll set, and the lot keeps only what serving it again needs (the socket, the
//! connection's `ConnInfo`, its admission under the listener's limits). When the client
//! sends (or closes), the lot's task takes the socket out and starts a new connection
//! task for it (`Resume`), which reads the request as any other.
//!
//! The lot closes a parked connection when its idle timeout runs out (measured from its
//! last activity, to within a sweep tick, as for a served connection) and every parked
//! connection when the listener stops.

use crate::conn_io::OpenConnection;
use crate::conn_limit::Admitted;
use crate::request::conn::ConnInfo;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use prometheus_client::metrics::gauge::Gauge;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// How often the lot looks for parked connections past their idle timeout.
const EXPIRY_TICK: Duration = Duration::from_secs(1);
/// Readiness events taken from the epoll set per call.
const EVENTS_PER_WAIT: usize = 256;

/// A parked connection, and what it is served with again.
pub(crate) struct Parked {
    pub stream: TcpStream,
    pub conn: Arc<ConnInfo>,
    pub admitted: Admitted,
}

/// Starts serving a connection that left the lot.
pub(crate) type Resume = Box<dyn FnMut(Parked) + Send>;

/// One parked connection as the lot keeps it (56 bytes).
struct Slot {
    stream: std::net::TcpStream,
    conn: Arc<ConnInfo>,
    admitted: Admitted,
    /// Keeps the connection in `client_connections` while it has no task.
    _open: OpenConnection,
    /// When its idle timeout runs out.
    deadline: Instant,
}

/// Parked connections in a slab (the epoll event carries the index).
#[derive(Default)]
struct Slots {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    count: usize,
    /// The listener stopped: nothing is parked any more.
    stopped: bool,
}

/// The epoll file descriptor, for tokio's `AsyncFd`.
struct EpollSet(Epoll);

impl AsRawFd for EpollSet {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

/// The idle connections of one plain HTTP listener (see the module comment).
pub(crate) struct ParkingLot {
    epoll: AsyncFd<EpollSet>,
    parked: Mutex<Slots>,
    idle_timeout: Duration,
    open_gauge: Gauge,
    parked_gauge: Gauge,
}

impl ParkingLot {
    /// An empty lot closing connections idle for `idle_timeout`; `open_gauge` counts
    /// open client connections, `parked_gauge` the parked ones. Needs a tokio runtime.
    pub(crate) fn new(
        idle_timeout: Duration,
        open_gauge: Gauge,
        parked_gauge: Gauge,
    ) -> io::Result<Arc<Self>> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        // SAFETY: `EpollSet` owns the descriptor (an `OwnedFd`), which stays open and the
        // same until the `AsyncFd` holding it is dropped; nothing else closes it.
        #[allow(unsafe_code)]
        let epoll = unsafe { AsyncFd::register_with_interest(EpollSet(epoll), Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Arc::new(ParkingLot {
            epoll,
            parked: Mutex::new(Slots::default()),
            idle_timeout,
            open_gauge,
            parked_gauge,
        }))
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        // A panic elsewhere while it was held leaves the slab consistent.
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks `conn`, quiet for `quiet` already; a connection that cannot be parked (the
    /// listener stopped, the socket refused) is closed, as an idle one would be.
    pub(crate) fn park(&self, conn: Parked, quiet: Duration) {
        let Parked {
            stream,
            conn,
            admitted,
        } = conn;
        let client = conn.client;
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%client, error = %e, "could not park an idle connection; closed");
                return;
            }
        };
        let deadline = Instant::now() + self.idle_timeout.saturating_sub(quiet);
        let mut slots = self.slots();
        if slots.stopped {
            return;
        }
        let index = slots.free.pop().unwrap_or(slots.slots.len());
        let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
        if let Err(e) = self
            .epoll
            .get_ref()
            .0
            .add(stream.as_fd(), EpollEvent::new(interest, index as u64))
        {
            slots.free.push(index);
            tracing::debug!(%client, error = %e, "could not park an idle connection; closed");
            return;
        }
        let slot = Some(Slot {
            stream,
            conn,
            admitted,
            _open: OpenConnection::count(&self.open_gauge),
            deadline,
        });
        if index == slots.slots.len() {
            slots.slots.push(slot);
        } else {
            slots.slots[index] = slot;
        }
        slots.count += 1;
        self.parked_gauge.inc();
    }

    /// Takes the connection at `index` out of the lot and the epoll set.
    fn take(&self, slots: &mut Slots, index: usize) -> Option<Slot> {
        let slot = slots.slots.get_mut(index)?.take()?;
        slots.free.push(index);
        slots.count -= 1;
        self.parked_gauge.dec();
        // Closing would remove it too; it may be served (and parked) again instead.
        let _ = self.epoll.get_ref().0.delete(slot.stream.as_fd());
        Some(slot)
    }

    /// How many connections are parked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots().count
    }

    /// The connections whose clients sent or closed, out of the lot; `false` once the
    /// epoll set has nothing more to report.
    fn take_ready(&self, ready: &mut Vec<Slot>) -> io::Result<bool> {
        let mut events = [EpollEvent::empty(); EVENTS_PER_WAIT];
        let n = self
            .epoll
            .get_ref()
            .0
            .wait(&mut events, EpollTimeout::ZERO)
            .map_err(io::Error::from)?;
        let mut slots = self.slots();
        for event in &events[..n] {
            let index = usize::try_from(event.data()).unwrap_or(usize::MAX);
            if let Some(slot) = self.take(&mut slots, index) {
                ready.push(slot);
            }
        }
        Ok(n == EVENTS_PER_WAIT)
    }

    /// Closes the connections past their idle timeout.
    fn expire(&self, now: Instant) {
        let mut slots = self.slots();
        let due: Vec<usize> = (slots.slots.iter().enumerate())
            .filter(|(_, s)| s.as_ref().is_some_and(|s| s.deadline <= now))
            .map(|(i, _)| i)
            .collect();
        for index in due {
            if let Some(slot) = self.take(&mut slots, index) {
                tracing::debug!(client = %slot.conn.client, "parked connection idle; closing");
            }
        }
    }

    /// Closes every parked connection; later ones are closed instead of parked.
    fn stop(&self) {
        let mut slots = self.slots();
        slots.stopped = true;
        for index in 0..slots.slots.len() {
            drop(self.take(&mut slots, index));
        }
    }

    /// The lot's task: hands each connection whose client sent to `resume`, closes
    /// those that idled out, and all of them once `stop` fires.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken, mut resume: Resume) {
        let mut expiry = tokio::time::interval(EXPIRY_TICK);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ready = Vec::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = expiry.tick() => self.expire(Instant::now()),
                guard = self.epoll.readable() => {
                    let Ok(mut guard) = guard else { break };
                    match self.take_ready(&mut ready) {
                        Ok(true) => {}
                        Ok(false) => guard.clear_ready(),
                        Err(e) => tracing::warn!(error = %e, "parked connections: epoll_wait failed"),
                    }
                    for slot in ready.drain(..) {
                        self.wake(slot, &mut resume);
                    }
                }
            }
        }
        self.stop();
    }

    /// Serves a connection whose client sent again.
    fn wake(&self, slot: Slot, resume: &mut Resume) {
        let Slot {
            stream,
            conn,
            admitted,
            ..
        } = slot;
        match TcpStream::from_std(stream) {
            Ok(stream) => resume(Parked {
                stream,
                conn,
                admitted,
            }),
            Err(e) => {
                tracing::debug!(client = %conn.client, error = %e, "could not serve a parked connection again; closed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn_limit::ConnLimits;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair over loopback: (client, server side).
    async fn pair() -> (TcpStream, TcpStream, ConnLimits) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server, ConnLimits::new(10, 0, Default::default()))
    }

    async fn parked(server: TcpStream, limits: &ConnLimits) -> Parked {
        let peer = server.peer_addr().expect("peer");
        let room = limits.room().await.expect("room");
        Parked {
            stream: server,
            conn: Arc::new(ConnInfo::new(Arc::from("web"), peer, false, false)),
            admitted: limits.admit(room, peer.ip()).expect("admitted"),
        }
    }

    fn lot(idle: Duration) -> (Arc<ParkingLot>, Gauge, Gauge) {
        let (open, count) = (Gauge::default(), Gauge::default());
        let lot = ParkingLot::new(idle, open.clone(), count.clone()).expect("epoll");
        (lot, open, count)
    }

    type Running = (
        tokio::sync::mpsc::UnboundedReceiver<Parked>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    );

    /// Runs `lot`'s task: what it resumes comes out of the receiver.
    fn running(lot: &Arc<ParkingLot>) -> Running {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let resume: Resume = Box::new(move |p: Parked| {
            let _ = tx.send(p);
        });
        let task = tokio::spawn(lot.clone().run(stop.clone(), resume));
        (rx, stop, task)
    }

    /// A parked socket comes back, bytes unread, once its client sends; it is counted as
    /// open and parked meanwhile, and can be parked again.
    #[tokio::test]
    async fn a_parked_connection_is_resumed_when_its_client_sends() {
        let (mut client, server, limits) = pair().await;
        let (lot, open, count) = lot(Duration::from_secs(60));
        let (mut rx, stop, task) = running(&lot);
        lot.park(parked(server, &limits).await, Duration::ZERO);
        assert_eq!((lot.len(), open.get(), count.get()), (1, 1, 1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err(), "resumed with nothing sent");
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("send");
        let mut back = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("resumed in time")
            .expect("resumed");
        assert_eq!((lot.len(), open.get(), count.get()), (0, 0, 0));
        let mut got = [0u8; 18];
        back.stream.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"GET / HTTP/1.1\r\n\r\n");
        lot.park(back, Duration::ZERO);
        assert_eq!(lot.len(), 1, "parked again");
        stop.cancel();
        task.await.expect("lot task");
        assert_eq!(
            (lot.len(), open.get()),
            (0, 0),
            "stop closes parked connections"
        );
        let mut rest = Vec::new();
        let read = client.read_to_end(&mut rest).await;
        assert!(matches!(read, Ok(0)), "closed at stop: {read:?}");
        assert_eq!(
            limits.room().await.map(|_| ()),
            Some(()),
            "admission given back"
        );
    }

    /// A parked connection is closed when its idle timeout (less what it was quiet
    /// before parking) runs out; a client that closes is resumed to see its end.
    #[tokio::test]
    async fn parked_connections_idle_out_and_closed_ones_are_resumed() {
        let (mut idle_client, idle_server, limits) = pair().await;
        let (closing_client, closing_server, _) = pair().await;
        let (lot, _, count) = lot(Duration::from_millis(1500));
        let (mut rx, stop, task) = running(&lot);
        lot.park(
            parked(idle_server, &limits).await,
            Duration::from_millis(500),
        );
        lot.park(parked(closing_server, &limits).await, Duration::ZERO);
        drop(closing_client);
        let mut closed = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("resumed in time")
            .expect("resumed");
        let mut buf = [0u8; 8];
        assert_eq!(closed.stream.read(&mut buf).await.expect("read"), 0);
        let started = Instant::now();
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), idle_client.read_to_end(&mut rest))
                .await
                .expect("closed within 10 s");
        assert!(matches!(read, Ok(0)), "{read:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "closed too early"
        );
        assert_eq!(count.get(), 0);
        stop.cancel();
        task.await.expect("lot task");
    }
}
