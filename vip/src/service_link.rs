//! The service link: a TUN interface that lives exactly as long as this process and carries
//! the service addresses a node announces through BGP (ECMP / anycast mode).
//!
//! The kernel deletes a non-persistent TUN interface when the last descriptor on it closes,
//! so the link, its addresses, and every BIRD static route that points at it vanish the
//! instant the process dies (kill -9 included): the routing daemon withdraws the prefixes by
//! itself, with no help from the dead process. Nothing is ever read from or written to the
//! descriptor; packets for the service addresses are delivered locally like any other.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use nix::libc;
use rtnetlink::LinkUnspec;

use crate::netlink::Netlink;
use crate::VipError;

/// `TUNSETIFF` (`_IOW('T', 202, int)`).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: i16 = 0x0001;
const IFF_NO_PI: i16 = 0x1000;
/// `struct ifreq` is 40 bytes on 64-bit Linux: a 16-byte name, then a union whose first
/// member, for this request, is the `short` flags.
const IFREQ_LEN: usize = 40;
const IFNAMSIZ: usize = 16;

/// Address lifetime meaning "forever" to the kernel (`INFINITY_LIFE_TIME`).
const FOREVER: u32 = u32::MAX;

/// A live service link; dropping it (or the process ending) deletes the interface.
#[derive(Debug)]
pub struct ServiceLink {
    name: String,
    index: u32,
    _tun: File,
}

impl ServiceLink {
    /// Creates the TUN link `name` in the calling thread's network namespace, brings it up,
    /// and puts each `(address, prefix)` on it. Must run inside a tokio runtime.
    pub async fn create(name: &str, addresses: &[(IpAddr, u8)]) -> Result<ServiceLink, VipError> {
        let tun = open_tun(name)?;
        let nl = Netlink::open()?;
        let index = nl.link_index(name).await?;
        nl.set_up(index).await?;
        for (address, prefix) in addresses {
            nl.add_or_renew(index, *address, *prefix, FOREVER).await?;
        }
        Ok(ServiceLink {
            name: name.to_string(),
            index,
            _tun: tun,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn index(&self) -> u32 {
        self.index
    }
}

/// Opens `/dev/net/tun` and attaches it to a new (non-persistent) TUN interface `name`.
fn open_tun(name: &str) -> Result<File, VipError> {
    if name.is_empty() || name.len() >= IFNAMSIZ {
        return Err(VipError::InvalidOptions(format!(
            "service link name {name:?} must be 1..{} bytes",
            IFNAMSIZ - 1
        )));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(VipError::io("opening /dev/net/tun"))?;
    let mut ifreq = [0u8; IFREQ_LEN];
    ifreq[..name.len()].copy_from_slice(name.as_bytes());
    ifreq[IFNAMSIZ..IFNAMSIZ + 2].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
    #[allow(unsafe_code)]
    // one of the workspace's documented unsafe blocks (see the root Cargo.toml)
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `ifreq` is a live, writable
    // buffer of its full size (NUL-terminated name, flags at offset 16), and the descriptor
    // is open for the whole call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, ifreq.as_mut_ptr()) };
    if rc < 0 {
        return Err(VipError::Io {
            op: "creating the service link (TUNSETIFF)",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(file)
}

impl Netlink {
    /// Sets link `index` administratively up.
    pub(crate) async fn set_up(&self, index: u32) -> Result<(), VipError> {
        let request = self
            .handle()
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute();
        request.await.map_err(VipError::netlink("link set up"))
    }
}
