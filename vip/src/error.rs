//! `VipError`: every way the VIP crate can fail at its edge, with messages an operator can act on.

use std::io;
use std::net::IpAddr;

/// Errors returned by [`crate::VipController::start`], [`crate::remove_stale`] and
/// [`crate::is_present`]. Failures inside the running controller are logged, not returned:
/// the controller keeps trying and the kernel lifetime bounds the damage.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// The configured interface does not exist in this network namespace.
    #[error("VIP interface {interface:?} does not exist (check [vip].interface; `ip link` lists the interfaces)")]
    NoSuchInterface { interface: String },

    /// The interface has no Ethernet address, so gratuitous ARP / NA cannot be sent on it.
    #[error("VIP interface {interface:?} has no Ethernet (MAC) address; a VIP on it could not be announced")]
    NotEthernet { interface: String },

    /// The process lacks a capability the VIP needs.
    #[error("missing {capability}: needed to {needed_for} (run as root or grant it, e.g. systemd AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW)")]
    MissingCapability {
        capability: &'static str,
        needed_for: &'static str,
    },

    /// The options are inconsistent (prefix too long, lifetime out of range, bad address text).
    #[error("invalid VIP options: {0}")]
    InvalidOptions(String),

    /// A netlink request failed.
    #[error("netlink {op} failed: {source}")]
    Netlink {
        op: &'static str,
        #[source]
        source: rtnetlink::Error,
    },

    /// The kernel did not answer a netlink request in time.
    #[error("netlink {op} timed out")]
    Timeout { op: &'static str },

    /// The VIP fence cannot work here: the kernel lacks nf_tables (or its netdev family), or
    /// the process lacks CAP_NET_ADMIN. The node can run without it, fenced only by the
    /// address lifetime; it should say so with a warning.
    #[error("nftables not available for the VIP fence ({reason}): {source}; without it a frozen holder is fenced only by the VIP's address lifetime")]
    NftablesUnavailable {
        reason: &'static str,
        #[source]
        source: io::Error,
    },

    /// The kernel refused or failed an nftables request of the VIP fence.
    #[error("nftables: could not {op}: {source}")]
    Nftables {
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// The VIP fence was asked to open or close an address it was not installed for.
    #[error("the VIP fence does not guard {addr}; install it with every VIP it must guard")]
    FenceUnknownAddress { addr: IpAddr },

    /// Opening or using a socket failed.
    #[error("{op} failed: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl VipError {
    pub(crate) fn netlink(op: &'static str) -> impl FnOnce(rtnetlink::Error) -> VipError {
        move |source| VipError::Netlink { op, source }
    }

    pub(crate) fn io(op: &'static str) -> impl FnOnce(io::Error) -> VipError {
        move |source| VipError::Io { op, source }
    }
}

/// The errno carried by a netlink error, if any (positive, e.g. `libc::ENODEV`).
pub(crate) fn netlink_errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => Some(msg.raw_code().abs()),
        _ => None,
    }
}
