//! Writing nfnetlink messages: a byte buffer that is cleared and refilled for every request,
//! so a hot-path request allocates nothing once the buffer has grown to its working size.
//!
//! Layout (netlink(7), nfnetlink): each message is a 16-byte `nlmsghdr` (native byte order),
//! a 4-byte `nfgenmsg` (family, version, big-endian resource id), then attributes, each a
//! 4-byte header (length, type) and a payload padded to 4 bytes. nf_tables numbers inside
//! attributes are big-endian.

use super::abi::{
    nft_type, NFGENMSG_LEN, NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES,
    NLA_F_NESTED, NLA_HDRLEN, NLMSG_HDRLEN, NLM_F_REQUEST,
};

/// Rounds `len` up to netlink's 4-byte alignment.
pub(crate) const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// The request being built.
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer whose buffer starts with `capacity` bytes reserved.
    pub fn with_capacity(capacity: usize) -> Writer {
        Writer {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// Starts a new request, keeping the buffer's capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The bytes written so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The marker that opens an nf_tables transaction.
    pub fn batch_begin(&mut self, seq: u32) {
        self.control(NFNL_MSG_BATCH_BEGIN, seq);
    }

    /// The marker that commits the transaction opened by `batch_begin`.
    pub fn batch_end(&mut self, seq: u32) {
        self.control(NFNL_MSG_BATCH_END, seq);
    }

    fn control(&mut self, kind: u16, seq: u32) {
        self.message(kind, NLM_F_REQUEST, 0, seq, |_| {});
    }

    /// Writes one nf_tables message of type `msg` (e.g. `NFT_MSG_NEWSETELEM`) for protocol
    /// `family`; `attrs` writes its attributes.
    pub fn nft_message(
        &mut self,
        msg: u16,
        flags: u16,
        family: u8,
        seq: u32,
        attrs: impl FnOnce(&mut Writer),
    ) {
        self.message(nft_type(msg), flags, family, seq, attrs);
    }

    fn message(
        &mut self,
        kind: u16,
        flags: u16,
        family: u8,
        seq: u32,
        attrs: impl FnOnce(&mut Writer),
    ) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]); // length, patched below
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        let res_id = if kind >> 8 == NFNL_SUBSYS_NFTABLES {
            0
        } else {
            NFNL_SUBSYS_NFTABLES
        };
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        debug_assert_eq!(self.buf.len() - start, NLMSG_HDRLEN + NFGENMSG_LEN);
        attrs(self);
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// An attribute with raw bytes as payload.
    pub fn bytes_attr(&mut self, ty: u16, payload: &[u8]) {
        let len = NLA_HDRLEN + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    /// A NUL-terminated string attribute (names of tables, sets, chains, devices).
    pub fn str_attr(&mut self, ty: u16, value: &str) {
        let len = NLA_HDRLEN + value.len() + 1;
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    /// A big-endian 32-bit attribute.
    pub fn u32_attr(&mut self, ty: u16, value: u32) {
        self.bytes_attr(ty, &value.to_be_bytes());
    }

    /// A big-endian 64-bit attribute.
    pub fn u64_attr(&mut self, ty: u16, value: u64) {
        self.bytes_attr(ty, &value.to_be_bytes());
    }

    /// A nested attribute whose members `members` writes.
    pub fn nest(&mut self, ty: u16, members: impl FnOnce(&mut Writer)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 2]); // length, patched below
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        members(self);
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        let padded = align(self.buf.len());
        self.buf.resize(padded, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::abi::{NFT_MSG_NEWSETELEM, NLM_F_ACK};

    #[test]
    fn message_length_and_padding() {
        let mut w = Writer::with_capacity(64);
        w.nft_message(NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK, 5, 7, |w| {
            w.str_attr(1, "ab"); // 4 + 3 bytes, padded to 8
            w.nest(3, |w| w.u32_attr(1, 0x0102_0304));
        });
        let b = w.bytes();
        assert_eq!(b.len(), 16 + 4 + 8 + 4 + 8);
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()),
            b.len() as u32
        );
        assert_eq!(
            u16::from_ne_bytes(b[4..6].try_into().unwrap()),
            (10 << 8) | 12
        );
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 7);
        assert_eq!(&b[16..20], &[5, 0, 0, 0]);
        assert_eq!(&b[20..28], &[7, 0, 1, 0, b'a', b'b', 0, 0]);
        assert_eq!(u16::from_ne_bytes(b[28..30].try_into().unwrap()), 12);
        assert_eq!(
            u16::from_ne_bytes(b[30..32].try_into().unwrap()),
            3 | NLA_F_NESTED
        );
        assert_eq!(&b[36..40], &[1, 2, 3, 4]);
    }

    #[test]
    fn batch_markers_name_the_nftables_subsystem() {
        let mut w = Writer::with_capacity(64);
        w.batch_begin(1);
        let b = w.bytes();
        assert_eq!(b.len(), 20);
        assert_eq!(u16::from_ne_bytes(b[4..6].try_into().unwrap()), 16);
        assert_eq!(&b[16..20], &[0, 0, 0, 10]);
    }
}
