//! Reading what the kernel sends back: the netlink messages in one datagram, the error code
//! of an acknowledgement, and the attributes of a reply. Nothing here allocates; every view
//! borrows the receive buffer.

use super::abi::{NFGENMSG_LEN, NLA_F_NESTED, NLA_HDRLEN, NLMSG_ERROR, NLMSG_HDRLEN};
use super::message::align;

/// One netlink message of a received datagram.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reply<'a> {
    pub kind: u16,
    pub seq: u32,
    /// Everything after the 16-byte header.
    pub payload: &'a [u8],
}

impl<'a> Reply<'a> {
    /// For an `NLMSG_ERROR` message: the errno it carries (0 for a plain acknowledgement,
    /// positive otherwise). `None` for any other message or a truncated one.
    pub fn ack_errno(&self) -> Option<i32> {
        if self.kind != NLMSG_ERROR {
            return None;
        }
        let code = self.payload.get(..4)?;
        let code = i32::from_ne_bytes(code.try_into().ok()?);
        Some(code.saturating_neg())
    }

    /// The attributes of an nf_tables reply (after its `nfgenmsg`).
    pub fn nft_attrs(&self) -> Attrs<'a> {
        Attrs::new(self.payload.get(NFGENMSG_LEN..).unwrap_or(&[]))
    }
}

/// The messages of one datagram, in order; stops at the first malformed header.
pub(crate) struct Replies<'a> {
    rest: &'a [u8],
}

impl<'a> Replies<'a> {
    pub fn new(datagram: &'a [u8]) -> Replies<'a> {
        Replies { rest: datagram }
    }
}

impl<'a> Iterator for Replies<'a> {
    type Item = Reply<'a>;

    fn next(&mut self) -> Option<Reply<'a>> {
        let header = self.rest.get(..NLMSG_HDRLEN)?;
        let len = u32::from_ne_bytes(header[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let reply = Reply {
            kind: u16::from_ne_bytes(header[4..6].try_into().ok()?),
            seq: u32::from_ne_bytes(header[8..12].try_into().ok()?),
            payload: &self.rest[NLMSG_HDRLEN..len],
        };
        self.rest = self.rest.get(align(len)..).unwrap_or(&[]);
        Some(reply)
    }
}

/// The attributes in a byte range: `(type, payload)` pairs, the nested flag removed.
pub(crate) struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(bytes: &'a [u8]) -> Attrs<'a> {
        Attrs { rest: bytes }
    }

    /// The payload of the first attribute of type `ty`.
    pub fn get(mut self, ty: u16) -> Option<&'a [u8]> {
        self.find_map(|(t, payload)| (t == ty).then_some(payload))
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        let header = self.rest.get(..NLA_HDRLEN)?;
        let len = u16::from_ne_bytes(header[0..2].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(header[2..4].try_into().ok()?) & !NLA_F_NESTED;
        if len < NLA_HDRLEN || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let payload = &self.rest[NLA_HDRLEN..len];
        self.rest = self.rest.get(align(len)..).unwrap_or(&[]);
        Some((ty, payload))
    }
}

/// A big-endian u64 attribute payload.
pub(crate) fn be_u64(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::message::Writer;

    #[test]
    fn reads_back_what_the_writer_wrote() {
        let mut w = Writer::with_capacity(128);
        w.nft_message(12, 0, 5, 42, |w| {
            w.str_attr(1, "fulcrum");
            w.nest(3, |w| w.nest(1, |w| w.u64_attr(5, 1234)));
        });
        w.nft_message(12, 0, 5, 43, |_| {});
        let mut replies = Replies::new(w.bytes());
        let first = replies.next().unwrap();
        assert_eq!(first.seq, 42);
        assert_eq!(first.nft_attrs().get(1), Some(&b"fulcrum\0"[..]));
        let elems = first.nft_attrs().get(3).unwrap();
        let elem = Attrs::new(elems).get(1).unwrap();
        assert_eq!(be_u64(Attrs::new(elem).get(5).unwrap()), Some(1234));
        assert_eq!(replies.next().unwrap().seq, 43);
        assert!(replies.next().is_none());
    }

    #[test]
    fn ack_errno_is_positive() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&36u32.to_ne_bytes());
        bytes.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        bytes.extend_from_slice(&[0; 2]);
        bytes.extend_from_slice(&9u32.to_ne_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&(-2i32).to_ne_bytes());
        bytes.extend_from_slice(&[0; 16]);
        let reply = Replies::new(&bytes).next().unwrap();
        assert_eq!((reply.seq, reply.ack_errno()), (9, Some(2)));
    }

    #[test]
    fn malformed_lengths_end_the_iteration() {
        let mut bytes = vec![0u8; 20];
        bytes[0..4].copy_from_slice(&200u32.to_ne_bytes());
        assert!(Replies::new(&bytes).next().is_none());
        let attr = [3u8, 0, 1, 0];
        assert!(Attrs::new(&attr).next().is_none());
    }
}
