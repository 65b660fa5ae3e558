//! Lease elements: the messages that add one with a timeout, delete one, or ask the kernel
//! about one, and the reading of the kernel's answer.

use std::net::IpAddr;

use super::abi::{
    NFPROTO_NETDEV, NFTA_DATA_VALUE, NFTA_LIST_ELEM, NFTA_SET_ELEM_EXPIRATION, NFTA_SET_ELEM_KEY,
    NFTA_SET_ELEM_LIST_ELEMENTS, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_TABLE,
    NFTA_SET_ELEM_TIMEOUT, NFT_MSG_DELSETELEM, NFT_MSG_NEWSETELEM, NLM_F_CREATE,
};
use super::message::Writer;
use super::reply::{be_u64, Attrs, Reply};
use super::ruleset::{SetRef, TABLE};
use super::socket::Batch;

/// An element key: an address in network byte order, kept inline (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    bytes: [u8; 16],
    len: usize,
}

impl Key {
    pub fn of(addr: IpAddr) -> Key {
        let mut bytes = [0; 16];
        let len = match addr {
            IpAddr::V4(v4) => {
                bytes[..4].copy_from_slice(&v4.octets());
                4
            }
            IpAddr::V6(v6) => {
                bytes = v6.octets();
                16
            }
        };
        Key { bytes, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Adds the message that creates the element, or (without `NLM_F_EXCL`) refreshes an existing
/// one where the kernel supports timeout updates, expiring `timeout_ms` from now.
///
/// The expiration is sent explicitly, equal to the timeout: a kernel with in-place updates
/// restarts an existing element's clock only when the timeout differs from the one it has
/// (in jiffies) *or* an expiration is given, and a refresh usually repeats the same timeout.
pub(crate) fn add(batch: &mut Batch<'_>, set: SetRef, key: Key, timeout_ms: u64) {
    add_expiring(batch, set, key, timeout_ms, timeout_ms);
}

/// [`add`] with an expiration different from the timeout (`expires_ms <= timeout_ms`).
pub(crate) fn add_expiring(
    batch: &mut Batch<'_>,
    set: SetRef,
    key: Key,
    timeout_ms: u64,
    expires_ms: u64,
) {
    batch.add(NFT_MSG_NEWSETELEM, NLM_F_CREATE, NFPROTO_NETDEV, |w| {
        element(w, set, key, Some((timeout_ms, expires_ms)));
    });
}

/// Adds the message that creates (or refreshes) an element with key `key` (raw bytes, the
/// set's key length), expiring `timeout_ms` from now.
pub(crate) fn add_raw(batch: &mut Batch<'_>, set: SetRef, key: &[u8], timeout_ms: u64) {
    batch.add(NFT_MSG_NEWSETELEM, NLM_F_CREATE, NFPROTO_NETDEV, |w| {
        element_raw(w, set, key, Some((timeout_ms, timeout_ms)));
    });
}

/// Adds the message that deletes the element (`ENOENT` if it is absent).
pub(crate) fn delete(batch: &mut Batch<'_>, set: SetRef, key: Key) {
    batch.add(NFT_MSG_DELSETELEM, 0, NFPROTO_NETDEV, |w| {
        element(w, set, key, None);
    });
}

/// [`delete`] for a key given as raw bytes.
pub(crate) fn delete_raw(batch: &mut Batch<'_>, set: SetRef, key: &[u8]) {
    batch.add(NFT_MSG_DELSETELEM, 0, NFPROTO_NETDEV, |w| {
        element_raw(w, set, key, None);
    });
}

/// Writes the attributes naming one element of `set` (the body of a new/del/get message),
/// with its timeout and expiration in milliseconds when given.
pub(crate) fn element(w: &mut Writer, set: SetRef, key: Key, times_ms: Option<(u64, u64)>) {
    element_raw(w, set, key.as_bytes(), times_ms);
}

fn element_raw(w: &mut Writer, set: SetRef, key: &[u8], times_ms: Option<(u64, u64)>) {
    w.str_attr(NFTA_SET_ELEM_LIST_TABLE, TABLE);
    w.str_attr(NFTA_SET_ELEM_LIST_SET, set.name);
    w.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |w| {
        w.nest(NFTA_LIST_ELEM, |w| {
            w.nest(NFTA_SET_ELEM_KEY, |w| w.bytes_attr(NFTA_DATA_VALUE, key));
            if let Some((timeout, expires)) = times_ms {
                w.u64_attr(NFTA_SET_ELEM_TIMEOUT, timeout);
                w.u64_attr(NFTA_SET_ELEM_EXPIRATION, expires);
            }
        });
    });
}

/// What the kernel reports of an element (times in milliseconds, as the kernel counts them
/// in jiffies and converts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reported {
    pub timeout_ms: Option<u64>,
    pub expires_ms: Option<u64>,
}

/// Reads the first element of a `NFT_MSG_NEWSETELEM` reply to a get request.
pub(crate) fn reported(reply: &Reply<'_>) -> Reported {
    let elem = reply
        .nft_attrs()
        .get(NFTA_SET_ELEM_LIST_ELEMENTS)
        .and_then(|list| Attrs::new(list).get(NFTA_LIST_ELEM));
    let Some(elem) = elem else {
        return Reported::default();
    };
    let field = |ty| Attrs::new(elem).get(ty).and_then(be_u64);
    Reported {
        timeout_ms: field(NFTA_SET_ELEM_TIMEOUT),
        expires_ms: field(NFTA_SET_ELEM_EXPIRATION),
    }
}
