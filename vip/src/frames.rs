//! Wire formats of the announcements: the gratuitous ARP frame keepalived sends for IPv4 and
//! the unsolicited neighbour advertisement for IPv6, built byte by byte.

use std::net::{Ipv4Addr, Ipv6Addr};

/// An Ethernet (MAC) address.
pub type Mac = [u8; 6];

pub(crate) const ETH_P_ARP: u16 = 0x0806;
pub(crate) const ETH_P_IPV6: u16 = 0x86dd;
const BROADCAST: Mac = [0xff; 6];
/// Ethernet multicast address for ff02::1 (33:33 + the low 32 bits of the group).
pub(crate) const ALL_NODES_MAC: Mac = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Length of the ARP frame (the NIC pads it to 60 bytes).
pub const GARP_LEN: usize = 42;
/// ICMPv6 NA: type/code/checksum (4) + flags (4) + target (16) + target link-layer option (8).
const NA_ICMP_LEN: usize = 32;
/// Length of the NA frame: Ethernet (14) + IPv6 (40) + ICMPv6 (32).
pub const NA_LEN: usize = 14 + 40 + NA_ICMP_LEN;

/// An RFC 5227 ARP announcement, keepalived style: a broadcast ARP *request* whose sender and
/// target IP are both the VIP and whose target MAC is broadcast. Linux peers update an existing
/// neighbour entry from it (they never create one from it unless `arp_accept=1`).
pub fn garp_frame(mac: Mac, vip: Ipv4Addr) -> [u8; GARP_LEN] {
    let mut f = [0u8; GARP_LEN];
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // htype: Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // ptype: IPv4
    f[18] = 6; // hlen
    f[19] = 4; // plen
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // op: request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&vip.octets());
    f[32..38].copy_from_slice(&BROADCAST);
    f[38..42].copy_from_slice(&vip.octets());
    f
}

/// An unsolicited neighbour advertisement for `vip` to all nodes (ff02::1) with the Override
/// flag, so receivers replace the link-layer address they have cached for the VIP. Hop limit
/// 255 is mandatory: receivers drop ND packets with any other value (RFC 4861 7.1.2).
pub fn unsolicited_na_frame(mac: Mac, vip: Ipv6Addr) -> [u8; NA_LEN] {
    let mut f = [0u8; NA_LEN];
    f[0..6].copy_from_slice(&ALL_NODES_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());

    let ip = &mut f[14..54];
    ip[0] = 0x60; // version 6, traffic class 0, flow label 0
    ip[4..6].copy_from_slice(&(NA_ICMP_LEN as u16).to_be_bytes());
    ip[6] = 58; // next header: ICMPv6
    ip[7] = 255; // hop limit
    ip[8..24].copy_from_slice(&vip.octets());
    ip[24..40].copy_from_slice(&ALL_NODES.octets());

    let icmp = &mut f[54..];
    icmp[0] = 136; // Neighbor Advertisement
    icmp[4] = 0x20; // flags: Router=0, Solicited=0, Override=1
    icmp[8..24].copy_from_slice(&vip.octets());
    icmp[24] = 2; // option: Target Link-Layer Address
    icmp[25] = 1; // length in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac);
    let sum = icmpv6_checksum(vip, ALL_NODES, icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The ICMPv6 checksum: one's complement of the one's complement sum over the IPv6
/// pseudo-header (source, destination, upper-layer length, next header) and the message.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    sum = add_words(sum, &src.octets());
    sum = add_words(sum, &dst.octets());
    sum = add_words(sum, &(icmp.len() as u32).to_be_bytes());
    sum = add_words(sum, &[0, 0, 0, 58]);
    sum = add_words(sum, icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Adds big-endian 16-bit words to a running sum (an odd trailing byte is padded with zero).
fn add_words(mut sum: u32, bytes: &[u8]) -> u32 {
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        let lo = pair.get(1).map_or(0, |b| u32::from(*b));
        sum += hi | lo;
        // Fold early so the sum can never overflow, whatever the input length.
        if sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

    #[test]
    fn garp_is_a_broadcast_request_with_sender_ip_equal_to_target_ip() {
        let vip = Ipv4Addr::new(10, 77, 50, 100);
        let f = garp_frame(MAC, vip);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[14..22], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&f[22..28], &MAC);
        assert_eq!(&f[28..32], &vip.octets());
        assert_eq!(&f[32..38], &[0xff; 6]);
        assert_eq!(&f[38..42], &vip.octets());
    }

    #[test]
    fn na_checksum_verifies_and_fields_are_in_place() {
        let vip: Ipv6Addr = "fd77:50::100".parse().unwrap();
        let f = unsolicited_na_frame(MAC, vip);
        assert_eq!(&f[0..6], &ALL_NODES_MAC);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(f[14 + 7], 255, "hop limit");
        assert_eq!(f[54], 136);
        assert_eq!(f[58] & 0xe0, 0x20, "override only");
        assert_eq!(&f[80..86], &MAC);
        // A receiver sums the message including the checksum field: the result must be 0.
        assert_eq!(icmpv6_checksum(vip, ALL_NODES, &f[54..]), 0);
        assert_ne!(&f[56..58], &[0, 0]);
    }

    #[test]
    fn checksum_matches_a_hand_computed_value() {
        // RFC 1071 example words 0001 f203 f4f5 f6f7 sum to ddf2 (before complement); here
        // wrapped in a zero pseudo-header whose only non-zero parts are length 8 and nh 58.
        let src = Ipv6Addr::UNSPECIFIED;
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let expected = !(0xddf2u32 + 8 + 58) as u16;
        assert_eq!(icmpv6_checksum(src, src, &data), expected);
    }
}
