//! Address management over rtnetlink: look up the interface, add or renew the VIP with a
//! kernel lifetime, delete it, ask whether it is there.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, CacheInfo,
};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::Handle;
use tokio::task::JoinHandle;

use crate::error::netlink_errno;
use crate::frames::Mac;
use crate::VipError;

/// Upper bound for one netlink request. The kernel answers in about a millisecond; the bound
/// only keeps the controller's task responsive (a release must not wait forever behind a
/// stuck add) if that ever fails to happen.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs one netlink request under `REQUEST_TIMEOUT`.
async fn bounded<T>(
    op: &'static str,
    fut: impl Future<Output = Result<T, VipError>>,
) -> Result<T, VipError> {
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| VipError::Timeout { op })?
}

/// What we need to know about the VIP's interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkInfo {
    pub index: u32,
    pub mac: Mac,
}

/// One rtnetlink connection. The socket belongs to the network namespace of the thread that
/// opened it, which is what lets tests run a controller inside a namespace.
pub(crate) struct Netlink {
    handle: Handle,
    conn: JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl Netlink {
    /// Opens the connection; must be called inside a tokio runtime.
    pub fn open() -> Result<Netlink, VipError> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(VipError::io("opening rtnetlink socket"))?;
        Ok(Netlink {
            handle,
            conn: tokio::spawn(conn),
        })
    }

    /// The rtnetlink handle, for requests this module has no helper for.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Index and MAC of `name`; `NoSuchInterface` when it does not exist, `NotEthernet` when
    /// it has no 6-byte hardware address.
    pub async fn link(&self, name: &str) -> Result<LinkInfo, VipError> {
        let msg = self.link_message(name).await?;
        let mac = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(bytes) => Mac::try_from(bytes.as_slice()).ok(),
            _ => None,
        });
        match mac {
            Some(mac) if mac != [0; 6] => Ok(LinkInfo {
                index: msg.header.index,
                mac,
            }),
            _ => Err(VipError::NotEthernet {
                interface: name.to_string(),
            }),
        }
    }

    /// Index of `name` (any link type).
    pub async fn link_index(&self, name: &str) -> Result<u32, VipError> {
        Ok(self.link_message(name).await?.header.index)
    }

    async fn link_message(
        &self,
        name: &str,
    ) -> Result<rtnetlink::packet_route::link::LinkMessage, VipError> {
        let no_such = || VipError::NoSuchInterface {
            interface: name.to_string(),
        };
        let mut request = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        let lookup = async { Ok(request.try_next().await) };
        match bounded("link lookup", lookup).await? {
            Ok(Some(msg)) => Ok(msg),
            Ok(None) => Err(no_such()),
            Err(e) if netlink_errno(&e) == Some(nix::libc::ENODEV) => Err(no_such()),
            Err(e) => Err(VipError::netlink("link lookup")(e)),
        }
    }

    /// Adds the address, or replaces it if present, with `lifetime_secs` as both valid and
    /// preferred lifetime. "Replace" is what makes renewal work: the kernel resets the
    /// address's timestamp and lifetime instead of answering EEXIST.
    pub async fn add_or_renew(
        &self,
        index: u32,
        address: IpAddr,
        prefix: u8,
        lifetime_secs: u32,
    ) -> Result<(), VipError> {
        let mut req = self.handle.address().add(index, address, prefix).replace();
        let msg = req.message_mut();
        let mut info = CacheInfo::default();
        info.ifa_valid = lifetime_secs;
        info.ifa_preferred = lifetime_secs;
        msg.attributes.push(AddressAttribute::CacheInfo(info));
        if address.is_ipv6() {
            // No duplicate address detection: DAD would keep the VIP tentative (unusable) for
            // about a second, and a transient overlap could leave it "dadfailed" for good.
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        let add = async {
            req.execute()
                .await
                .map_err(VipError::netlink("address add"))
        };
        bounded("address add", add).await
    }

    /// All address messages for `address` on link `index`.
    async fn find(&self, index: u32, address: IpAddr) -> Result<Vec<AddressMessage>, VipError> {
        let request = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(address)
            .execute();
        let dump = async {
            request
                .try_collect()
                .await
                .map_err(VipError::netlink("address dump"))
        };
        bounded("address dump", dump).await
    }

    /// Whether `address` is configured on link `index`.
    pub async fn present(&self, index: u32, address: IpAddr) -> Result<bool, VipError> {
        Ok(!self.find(index, address).await?.is_empty())
    }

    /// Deletes every instance of `address` on link `index` (whatever its prefix). Returns
    /// whether anything was deleted. A concurrent removal (kernel expiry) is not an error.
    pub async fn delete(&self, index: u32, address: IpAddr) -> Result<bool, VipError> {
        let mut deleted = false;
        for msg in self.find(index, address).await? {
            let request = self.handle.address().del(msg).execute();
            match bounded("address delete", async { Ok(request.await) }).await? {
                Ok(()) => deleted = true,
                Err(e) if netlink_errno(&e) == Some(nix::libc::EADDRNOTAVAIL) => {}
                Err(e) => return Err(VipError::netlink("address delete")(e)),
            }
        }
        Ok(deleted)
    }
}

/// Removes a VIP left on `interface` by an earlier run (e.g. after kill -9 with an infinite
/// lifetime, or by hand). Matches on the address alone; a different prefix than `prefix` is
/// logged, since it means the configuration changed since that run. Returns whether anything
/// was removed. Call inside a tokio runtime, in the namespace that owns the interface.
pub async fn remove_stale(address: IpAddr, prefix: u8, interface: &str) -> Result<bool, VipError> {
    let nl = Netlink::open()?;
    let index = nl.link_index(interface).await?;
    for msg in nl.find(index, address).await? {
        if msg.header.prefix_len != prefix {
            tracing::warn!(vip = %address, found = msg.header.prefix_len, configured = prefix,
                "stale VIP has a different prefix length; removing it anyway");
        }
    }
    let removed = nl.delete(index, address).await?;
    if removed {
        tracing::info!(vip = %address, interface, "removed a stale VIP left by an earlier run");
    }
    Ok(removed)
}

/// Whether `address` is configured on `interface` right now.
pub async fn is_present(address: IpAddr, interface: &str) -> Result<bool, VipError> {
    let nl = Netlink::open()?;
    let index = nl.link_index(interface).await?;
    nl.present(index, address).await
}
