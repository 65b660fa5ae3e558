//! Who has the VIP configured, per node: the probes the holder poller runs.
//!
//! Locally, one NETLINK_ROUTE socket per node namespace (created by a thread that entered
//! the namespace) is asked for its IPv4 addresses (RTM_GETADDR dump): about 0.1 ms per
//! namespace, so even a 2 ms period keeps up. Remotely, an inventory's `vip_check`
//! command per node (exit 0 = holds, 1 = does not) is run in parallel. A probe that fails
//! reports `None` (unknown), never "not holding".

use crate::checks::HolderSample;
use crate::poller::Probe;
use anyhow::{bail, Context, Result};
use fulcrum_testbed::netns;
use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::{TimeVal, TimeValLike};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};

const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

/// Netlink sockets, one per node namespace.
pub struct NetlinkProbe {
    sockets: Vec<OwnedFd>,
    vip: [u8; 4],
    seq: u32,
}

impl NetlinkProbe {
    pub fn new(namespaces: &[String], vip: Ipv4Addr) -> Result<NetlinkProbe> {
        let mut sockets = Vec::new();
        for ns in namespaces {
            let fd = netns::in_thread(ns, || {
                let fd = socket(
                    AddressFamily::Netlink,
                    SockType::Raw,
                    SockFlag::SOCK_CLOEXEC,
                    SockProtocol::NetlinkRoute,
                )
                .context("netlink socket")?;
                setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::milliseconds(200))
                    .context("netlink receive timeout")?;
                Ok::<_, anyhow::Error>(fd)
            })?;
            sockets.push(fd);
        }
        Ok(NetlinkProbe {
            sockets,
            vip: vip.octets(),
            seq: 1,
        })
    }

    fn holds(&mut self, idx: usize) -> Result<bool> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let fd = self.sockets[idx].as_raw_fd();
        let mut req = Vec::with_capacity(24);
        req.extend_from_slice(&24u32.to_ne_bytes());
        req.extend_from_slice(&RTM_GETADDR.to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req.extend_from_slice(&seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(&[2, 0, 0, 0]); // ifaddrmsg: AF_INET, prefixlen, flags, scope
        req.extend_from_slice(&0u32.to_ne_bytes()); // any interface
        sendto(fd, &req, &NetlinkAddr::new(0, 0), MsgFlags::empty()).context("netlink send")?;
        let mut buf = vec![0u8; 32 * 1024];
        let mut found = false;
        loop {
            let n = recv(fd, &mut buf, MsgFlags::empty()).context("netlink recv")?;
            if n == 0 {
                bail!("netlink socket closed");
            }
            match parse(&buf[..n], seq, self.vip)? {
                Parsed::More(hit) => found |= hit,
                Parsed::Done(hit) => return Ok(found || hit),
            }
        }
    }
}

enum Parsed {
    More(bool),
    Done(bool),
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Walks one datagram of a dump; messages of another sequence number are skipped.
fn parse(buf: &[u8], seq: u32, vip: [u8; 4]) -> Result<Parsed> {
    let mut off = 0;
    let mut hit = false;
    while off + 16 <= buf.len() {
        let len = u32_at(buf, off) as usize;
        if len < 16 || off + len > buf.len() {
            bail!("malformed netlink message");
        }
        let kind = u16_at(buf, off + 4);
        let msg_seq = u32_at(buf, off + 8);
        if msg_seq == seq {
            match kind {
                NLMSG_DONE => return Ok(Parsed::Done(hit)),
                NLMSG_ERROR => bail!("netlink error reply"),
                RTM_NEWADDR if len >= 24 => {
                    let mut a = off + 24;
                    while a + 4 <= off + len {
                        let rta_len = u16_at(buf, a) as usize;
                        let rta_type = u16_at(buf, a + 2);
                        if rta_len < 4 || a + rta_len > off + len {
                            break;
                        }
                        if (rta_type == IFA_LOCAL || rta_type == IFA_ADDRESS)
                            && rta_len == 8
                            && buf[a + 4..a + 8] == vip
                        {
                            hit = true;
                        }
                        a += align4(rta_len);
                    }
                }
                _ => {}
            }
        }
        off += align4(len);
    }
    Ok(Parsed::More(hit))
}

impl Probe for NetlinkProbe {
    type Sample = HolderSample;
    fn probe(&mut self, t_ms: f64, _period: std::time::Duration) -> HolderSample {
        let holders = (0..self.sockets.len())
            .map(|i| self.holds(i).ok())
            .collect();
        HolderSample { t_ms, holders }
    }
}

/// Shell commands, one per node; exit status 0 means the node holds the VIP.
pub struct CommandProbe {
    pub commands: Vec<String>,
}

impl Probe for CommandProbe {
    type Sample = HolderSample;
    fn probe(&mut self, t_ms: f64, _period: std::time::Duration) -> HolderSample {
        let handles: Vec<_> = self
            .commands
            .iter()
            .map(|cmd| {
                let cmd = cmd.clone();
                std::thread::spawn(move || {
                    Command::new("sh")
                        .args(["-c", &cmd])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .ok()
                        .and_then(|s| match s.code() {
                            Some(0) => Some(true),
                            Some(1) => Some(false),
                            _ => None,
                        })
                })
            })
            .collect();
        let holders = handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect();
        HolderSample { t_ms, holders }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, seq: u32, addr: Option<[u8; 4]>) -> Vec<u8> {
        let mut body = vec![2u8, 24, 0, 0, 2, 0, 0, 0]; // ifaddrmsg
        if let Some(a) = addr {
            body.extend_from_slice(&8u16.to_ne_bytes());
            body.extend_from_slice(&IFA_LOCAL.to_ne_bytes());
            body.extend_from_slice(&a);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn finds_the_vip_in_a_dump() {
        let vip = [10, 77, 60, 100];
        let mut buf = msg(RTM_NEWADDR, 7, Some([10, 77, 60, 11]));
        buf.extend(msg(RTM_NEWADDR, 7, Some(vip)));
        assert!(matches!(parse(&buf, 7, vip), Ok(Parsed::More(true))));
        // A stale reply of another request does not count.
        assert!(matches!(parse(&buf, 8, vip), Ok(Parsed::More(false))));
        let done = msg(NLMSG_DONE, 7, None);
        assert!(matches!(parse(&done, 7, vip), Ok(Parsed::Done(false))));
        assert!(parse(&buf[..20], 7, vip).is_err());
    }
}
