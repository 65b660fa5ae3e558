//! The AF_PACKET socket that puts gratuitous ARP / unsolicited NA frames on the wire.

use std::io;
use std::mem::size_of;
use std::net::IpAddr;

use nix::libc;
use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};

use crate::frames::{self, Mac};
use crate::netlink::LinkInfo;
use crate::VipError;

/// A raw packet socket used only for sending. It is opened with protocol 0, so the kernel
/// delivers no incoming frames to it and its receive queue can never fill up.
pub(crate) struct Announcer {
    socket: Socket,
}

impl Announcer {
    /// Opens the socket. Fails with `MissingCapability` without CAP_NET_RAW.
    pub fn open() -> Result<Announcer, VipError> {
        let socket = Socket::new(Domain::PACKET, Type::RAW, None).map_err(|e| {
            if e.kind() == io::ErrorKind::PermissionDenied {
                VipError::MissingCapability {
                    capability: "CAP_NET_RAW",
                    needed_for: "send gratuitous ARP / neighbour advertisements (AF_PACKET socket)",
                }
            } else {
                VipError::io("opening AF_PACKET socket")(e)
            }
        })?;
        // A full device queue must not stall the controller's task: drop the frame instead.
        socket
            .set_nonblocking(true)
            .map_err(VipError::io("setting AF_PACKET socket non-blocking"))?;
        Ok(Announcer { socket })
    }

    /// Sends one announcement of `vip` out of `link`.
    pub fn announce(&self, link: LinkInfo, vip: IpAddr) -> io::Result<()> {
        match vip {
            IpAddr::V4(v4) => self.send(
                link.index,
                frames::ETH_P_ARP,
                [0xff; 6],
                &frames::garp_frame(link.mac, v4),
            ),
            IpAddr::V6(v6) => self.send(
                link.index,
                frames::ETH_P_IPV6,
                frames::ALL_NODES_MAC,
                &frames::unsolicited_na_frame(link.mac, v6),
            ),
        }
    }

    fn send(&self, ifindex: u32, ethertype: u16, dst: Mac, frame: &[u8]) -> io::Result<()> {
        let addr = link_address(ifindex, ethertype, dst)?;
        let sent = self.socket.send_to(frame, &addr)?;
        if sent != frame.len() {
            return Err(io::Error::other(format!(
                "short send: {sent} of {} bytes",
                frame.len()
            )));
        }
        Ok(())
    }
}

/// A `sockaddr_ll` naming the outgoing interface, ethertype and destination MAC (also
/// used by the chaos suite's wire probe to put its own frames on a test bed's wire).
#[allow(unsafe_code)] // one of the workspace's documented unsafe blocks (see the root Cargo.toml)
pub fn link_address(ifindex: u32, ethertype: u16, dst: Mac) -> io::Result<SockAddr> {
    let ifindex =
        i32::try_from(ifindex).map_err(|_| io::Error::other("interface index out of range"))?;
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is one of this platform's sockaddr types and fits in the storage
    // (view_as asserts the size).
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as libc::sa_family_t;
    ll.sll_protocol = ethertype.to_be();
    ll.sll_ifindex = ifindex;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&dst);
    let len = size_of::<libc::sockaddr_ll>() as socket2::socklen_t;
    // SAFETY: the family is AF_PACKET and the storage holds an initialised sockaddr_ll of `len`.
    Ok(unsafe { SockAddr::new(storage, len) })
}
