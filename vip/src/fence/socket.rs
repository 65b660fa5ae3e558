//! The NETLINK_NETFILTER socket and its request/acknowledgement protocol: an nf_tables
//! transaction (a batch of messages between BEGIN and END markers, each asking for an
//! acknowledgement) or a single query. The kernel handles a request inside the `send` call,
//! so its answers are queued before `recv` is called; the read timeout only bounds the wait
//! if that ever fails to happen.
//!
//! Answers are matched by sequence number: an answer left over from an earlier request that
//! returned at its first error is skipped by the next one.

use std::io::{self, Read};
use std::time::Duration;

use nix::libc;
use socket2::{Domain, Protocol, Socket, Type};

use super::abi::{NETLINK_NETFILTER, NLM_F_ACK, NLM_F_REQUEST};
use super::message::Writer;
use super::reply::{Replies, Reply};

/// Upper bound for the kernel's answer; it normally is there when `send` returns.
const REPLY_TIMEOUT: Duration = Duration::from_millis(500);
/// Receive buffer: an error acknowledgement echoes the failed message (a few hundred bytes at
/// most here), a set element reply is under 200 bytes.
const RX_LEN: usize = 16 * 1024;
/// Send buffer reserved up front: the install batch is about 2 KiB; a refresh about 100 B.
const TX_CAPACITY: usize = 4 * 1024;

/// One netlink socket in the network namespace of the thread that opened it.
pub(crate) struct NfSocket {
    socket: Socket,
    writer: Writer,
    rx: Vec<u8>,
    next_seq: u32,
}

/// The messages of one transaction being written; each gets its own sequence number and asks
/// for an acknowledgement.
pub(crate) struct Batch<'a> {
    writer: &'a mut Writer,
    next_seq: u32,
}

impl Batch<'_> {
    /// Adds nf_tables message `msg` (e.g. `NFT_MSG_NEWSETELEM`) for protocol `family`.
    pub fn add(&mut self, msg: u16, flags: u16, family: u8, attrs: impl FnOnce(&mut Writer)) {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let flags = flags | NLM_F_REQUEST | NLM_F_ACK;
        self.writer.nft_message(msg, flags, family, seq, attrs);
    }
}

impl NfSocket {
    /// Opens the socket. Fails with the OS error when netfilter netlink is missing
    /// (`EPROTONOSUPPORT`) or the socket cannot be created.
    pub fn open() -> io::Result<NfSocket> {
        let socket = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(NETLINK_NETFILTER)),
        )?;
        socket.set_read_timeout(Some(REPLY_TIMEOUT))?;
        Ok(NfSocket {
            socket,
            writer: Writer::with_capacity(TX_CAPACITY),
            rx: vec![0; RX_LEN],
            next_seq: 1,
        })
    }

    /// Sends the messages `build` adds as one nf_tables transaction and waits until the kernel
    /// has acknowledged each of them. The first error the kernel reports is returned (the
    /// kernel then has applied none of the transaction).
    pub fn transact(&mut self, build: impl FnOnce(&mut Batch)) -> io::Result<()> {
        let begin = self.next_seq;
        self.writer.clear();
        self.writer.batch_begin(begin);
        let mut batch = Batch {
            writer: &mut self.writer,
            next_seq: begin.wrapping_add(1),
        };
        build(&mut batch);
        let end = batch.next_seq;
        self.writer.batch_end(end);
        self.next_seq = end.wrapping_add(1);
        self.send()?;
        self.await_acks(begin, end)
    }

    /// Waits for one acknowledgement for each sequence number strictly between `begin` and
    /// `end`. An error acknowledging `begin` itself means the kernel refused the whole batch
    /// (e.g. `EPERM` without CAP_NET_ADMIN).
    fn await_acks(&mut self, begin: u32, end: u32) -> io::Result<()> {
        let first = begin.wrapping_add(1);
        let count = end.wrapping_sub(first);
        let mut pending = count;
        while pending > 0 {
            let len = self.recv()?;
            for reply in Replies::new(&self.rx[..len]) {
                let Some(errno) = reply.ack_errno() else {
                    continue;
                };
                let ours = reply.seq.wrapping_sub(first) < count;
                if (ours || reply.seq == begin) && errno != 0 {
                    return Err(io::Error::from_raw_os_error(errno));
                }
                if ours {
                    pending -= 1;
                }
            }
        }
        Ok(())
    }

    /// Sends one query (outside any transaction) and hands each reply message to `on_reply`
    /// until the kernel's acknowledgement; returns the error that acknowledgement carries.
    pub fn query(
        &mut self,
        msg: u16,
        family: u8,
        attrs: impl FnOnce(&mut Writer),
        mut on_reply: impl FnMut(&Reply<'_>),
    ) -> io::Result<()> {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        self.writer.clear();
        self.writer
            .nft_message(msg, NLM_F_REQUEST | NLM_F_ACK, family, seq, attrs);
        self.send()?;
        loop {
            let len = self.recv()?;
            for reply in Replies::new(&self.rx[..len]).filter(|r| r.seq == seq) {
                match reply.ack_errno() {
                    Some(0) => return Ok(()),
                    Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                    None => on_reply(&reply),
                }
            }
        }
    }

    fn send(&self) -> io::Result<()> {
        let bytes = self.writer.bytes();
        let sent = self.socket.send(bytes)?;
        if sent != bytes.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short send on the netfilter netlink socket",
            ));
        }
        Ok(())
    }

    /// Reads one datagram into `rx`; a datagram that fills the whole buffer may have been cut.
    fn recv(&mut self) -> io::Result<usize> {
        let len = match (&self.socket).read(&mut self.rx) {
            Ok(len) => len,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from nf_tables within 500 ms",
                ))
            }
            Err(e) => return Err(e),
        };
        if len >= self.rx.len() {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        Ok(len)
    }
}
