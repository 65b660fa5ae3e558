//! The nf_tables expressions the fence's rules are made of, encoded as netlink attributes:
//! load a packet field into a register, compare it, look it up in a set, drop.

use super::abi::{
    NFTA_BITWISE_DREG, NFTA_BITWISE_LEN, NFTA_BITWISE_MASK, NFTA_BITWISE_SREG, NFTA_BITWISE_XOR,
    NFTA_CMP_DATA, NFTA_CMP_OP, NFTA_CMP_SREG, NFTA_DATA_VALUE, NFTA_DATA_VERDICT, NFTA_DYNSET_OP,
    NFTA_DYNSET_SET_ID, NFTA_DYNSET_SET_NAME, NFTA_DYNSET_SREG_KEY, NFTA_DYNSET_TIMEOUT,
    NFTA_EXPR_DATA, NFTA_EXPR_NAME, NFTA_FWD_SREG_DEV, NFTA_IMMEDIATE_DATA, NFTA_IMMEDIATE_DREG,
    NFTA_LIST_ELEM, NFTA_LOOKUP_FLAGS, NFTA_LOOKUP_SET, NFTA_LOOKUP_SET_ID, NFTA_LOOKUP_SREG,
    NFTA_META_DREG, NFTA_META_KEY, NFTA_PAYLOAD_BASE, NFTA_PAYLOAD_CSUM_TYPE, NFTA_PAYLOAD_DREG,
    NFTA_PAYLOAD_LEN, NFTA_PAYLOAD_OFFSET, NFTA_PAYLOAD_SREG, NFTA_VERDICT_CODE, NFT_CMP_EQ,
    NFT_CMP_NEQ, NFT_DYNSET_OP_UPDATE, NFT_LOOKUP_F_INV, NFT_PAYLOAD_CSUM_NONE,
    NFT_PAYLOAD_LL_HEADER, NFT_REG_1, NFT_REG_VERDICT, NF_ACCEPT, NF_DROP,
};
use super::message::Writer;

/// Where a rule reads a value from. Every load goes to register 1.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Load {
    /// A packet metadata key (`NFT_META_*`).
    Meta(u32),
    /// `len` bytes at `offset` from a header (`NFT_PAYLOAD_*_HEADER`).
    Payload { base: u32, offset: u32, len: u32 },
}

/// Writes one list element `{ name, data }` of a rule's expression list.
fn expression(w: &mut Writer, name: &str, data: impl FnOnce(&mut Writer)) {
    w.nest(NFTA_LIST_ELEM, |w| {
        w.str_attr(NFTA_EXPR_NAME, name);
        w.nest(NFTA_EXPR_DATA, data);
    });
}

/// Loads a field into register 1.
pub(crate) fn load(w: &mut Writer, from: Load) {
    match from {
        Load::Meta(key) => expression(w, "meta", |w| {
            w.u32_attr(NFTA_META_KEY, key);
            w.u32_attr(NFTA_META_DREG, NFT_REG_1);
        }),
        Load::Payload { base, offset, len } => expression(w, "payload", |w| {
            w.u32_attr(NFTA_PAYLOAD_DREG, NFT_REG_1);
            w.u32_attr(NFTA_PAYLOAD_BASE, base);
            w.u32_attr(NFTA_PAYLOAD_OFFSET, offset);
            w.u32_attr(NFTA_PAYLOAD_LEN, len);
        }),
    }
}

/// Stops the rule unless register 1 equals `value` (network byte order).
pub(crate) fn equals(w: &mut Writer, value: &[u8]) {
    compare(w, NFT_CMP_EQ, value);
}

/// Stops the rule if register 1 equals `value`.
pub(crate) fn differs(w: &mut Writer, value: &[u8]) {
    compare(w, NFT_CMP_NEQ, value);
}

/// Register 1 against `value` with comparison `op` (`NFT_CMP_*`): the rule goes on if it holds.
fn compare(w: &mut Writer, op: u32, value: &[u8]) {
    expression(w, "cmp", |w| {
        w.u32_attr(NFTA_CMP_SREG, NFT_REG_1);
        w.u32_attr(NFTA_CMP_OP, op);
        w.nest(NFTA_CMP_DATA, |w| w.bytes_attr(NFTA_DATA_VALUE, value));
    });
}

/// Register 1 becomes register 1 AND `mask` (as many bytes as `mask` has).
pub(crate) fn mask(w: &mut Writer, mask: &[u8]) {
    expression(w, "bitwise", |w| {
        w.u32_attr(NFTA_BITWISE_SREG, NFT_REG_1);
        w.u32_attr(NFTA_BITWISE_DREG, NFT_REG_1);
        w.u32_attr(NFTA_BITWISE_LEN, mask.len() as u32);
        w.nest(NFTA_BITWISE_MASK, |w| w.bytes_attr(NFTA_DATA_VALUE, mask));
        w.nest(NFTA_BITWISE_XOR, |w| {
            w.bytes_attr(NFTA_DATA_VALUE, &vec![0; mask.len()])
        });
    });
}

/// Stops the rule if the key starting at register `reg` is an element of set `name`.
pub(crate) fn absent_from_reg(w: &mut Writer, name: &str, set_id: u32, reg: u32) {
    lookup(w, name, set_id, reg, true);
}

/// Stops the rule if register 1 is an element of set `name` (created in the same transaction
/// with id `set_id`): the rule goes on only for values *absent* from the set.
pub(crate) fn absent_from(w: &mut Writer, name: &str, set_id: u32) {
    absent_from_reg(w, name, set_id, NFT_REG_1);
}

/// Stops the rule unless register 1 is an element of set `name`.
pub(crate) fn present_in(w: &mut Writer, name: &str, set_id: u32) {
    present_in_from(w, name, set_id, NFT_REG_1);
}

/// Puts `value` (bytes as they go into the register) in register 1.
pub(crate) fn immediate(w: &mut Writer, value: &[u8]) {
    expression(w, "immediate", |w| {
        w.u32_attr(NFTA_IMMEDIATE_DREG, NFT_REG_1);
        w.nest(NFTA_IMMEDIATE_DATA, |w| {
            w.bytes_attr(NFTA_DATA_VALUE, value)
        });
    });
}

/// Writes `len` bytes of register 1 into the link-layer header at `offset` (no checksum
/// to fix: the Ethernet header has none).
pub(crate) fn write_link_header(w: &mut Writer, offset: u32, len: u32) {
    expression(w, "payload", |w| {
        w.u32_attr(NFTA_PAYLOAD_SREG, NFT_REG_1);
        w.u32_attr(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_LL_HEADER);
        w.u32_attr(NFTA_PAYLOAD_OFFSET, offset);
        w.u32_attr(NFTA_PAYLOAD_LEN, len);
        w.u32_attr(NFTA_PAYLOAD_CSUM_TYPE, NFT_PAYLOAD_CSUM_NONE);
    });
}

/// Sends the frame, as it now is, out of the interface whose index is in register 1 (the
/// packet is stolen: no later rule or chain sees it).
pub(crate) fn forward_to_device(w: &mut Writer) {
    expression(w, "fwd", |w| w.u32_attr(NFTA_FWD_SREG_DEV, NFT_REG_1));
}

/// The verdict: drop the packet.
pub(crate) fn drop_packet(w: &mut Writer) {
    verdict(w, NF_DROP);
}

/// The verdict: accept the packet (this chain is done with it).
pub(crate) fn accept_packet(w: &mut Writer) {
    verdict(w, NF_ACCEPT);
}

fn verdict(w: &mut Writer, code: u32) {
    expression(w, "immediate", |w| {
        w.u32_attr(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
        w.nest(NFTA_IMMEDIATE_DATA, |w| {
            w.nest(NFTA_DATA_VERDICT, |w| w.u32_attr(NFTA_VERDICT_CODE, code));
        });
    });
}

/// Loads a payload field into 32-bit register `reg` (`NFT_REG32_*`; a short field is
/// padded with zeros to whole registers).
pub(crate) fn load_into(w: &mut Writer, base: u32, offset: u32, len: u32, reg: u32) {
    expression(w, "payload", |w| {
        w.u32_attr(NFTA_PAYLOAD_DREG, reg);
        w.u32_attr(NFTA_PAYLOAD_BASE, base);
        w.u32_attr(NFTA_PAYLOAD_OFFSET, offset);
        w.u32_attr(NFTA_PAYLOAD_LEN, len);
    });
}

/// Stops the rule unless the key starting at register `reg` is an element of set `name`.
pub(crate) fn present_in_from(w: &mut Writer, name: &str, set_id: u32, reg: u32) {
    lookup(w, name, set_id, reg, false);
}

/// A set lookup of the key starting at register `reg`; `inverted`: the rule goes on only
/// for keys *absent* from the set.
fn lookup(w: &mut Writer, name: &str, set_id: u32, reg: u32, inverted: bool) {
    expression(w, "lookup", |w| {
        w.str_attr(NFTA_LOOKUP_SET, name);
        w.u32_attr(NFTA_LOOKUP_SET_ID, set_id);
        w.u32_attr(NFTA_LOOKUP_SREG, reg);
        if inverted {
            w.u32_attr(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
        }
    });
}

/// Adds the key starting at register `reg` to set `name`, or restarts its timeout, with a
/// timeout of `timeout_ms` (the set must be `dynamic`): the packet path keeps the set.
pub(crate) fn update_set_from(w: &mut Writer, name: &str, set_id: u32, reg: u32, timeout_ms: u64) {
    expression(w, "dynset", |w| {
        w.str_attr(NFTA_DYNSET_SET_NAME, name);
        w.u32_attr(NFTA_DYNSET_SET_ID, set_id);
        w.u32_attr(NFTA_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
        w.u32_attr(NFTA_DYNSET_SREG_KEY, reg);
        w.u64_attr(NFTA_DYNSET_TIMEOUT, timeout_ms);
    });
}
