//! This network namespace's TCP connections to an address, read from
//! `/proc/thread-self/net/tcp`
//! (the namespace of the calling thread): what a handed-over node keeps finishing itself.

use std::io;
use std::net::Ipv4Addr;

/// Client (address, port) of every TCP connection to local address `local` in any state
/// but listening or closed (a half-open one included: its client's ACK is on its way).
pub fn tcp_peers_of(local: Ipv4Addr) -> io::Result<Vec<(Ipv4Addr, u16)>> {
    let text = std::fs::read_to_string("/proc/thread-self/net/tcp")?;
    Ok(peers_in(&text, local))
}

fn peers_in(table: &str, local: Ipv4Addr) -> Vec<(Ipv4Addr, u16)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace().skip(1);
            let (ours, theirs, state) = (cols.next()?, cols.next()?, cols.next()?);
            // 0A: listening, 07: closed.
            if state == "0A" || state == "07" || endpoint(ours)?.0 != local {
                return None;
            }
            endpoint(theirs)
        })
        .collect()
}

/// `0100007F:1F90` -> 127.0.0.1:8080: the kernel prints the address's bytes as a u32 in
/// the host's order, and the port as a number.
fn endpoint(hex: &str) -> Option<(Ipv4Addr, u16)> {
    let (addr, port) = hex.split_once(':')?;
    let addr = u32::from_str_radix(addr, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some((Ipv4Addr::from(addr.to_ne_bytes()), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_connections_to_the_address_and_skips_listeners() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 644D4D0A:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
   1: 644D4D0A:0050 0A4D4D0A:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n\
   2: 644D4D0A:0050 0B4D4D0A:0101 03 00000000:00000000 00:00000000 00000000     0        0 3 1\n\
   3: 0100007F:0050 0A4D4D0A:A1B3 01 00000000:00000000 00:00000000 00000000     0        0 4 1\n";
        let vip = Ipv4Addr::new(10, 77, 77, 100);
        assert_eq!(
            peers_in(table, vip),
            vec![
                (Ipv4Addr::new(10, 77, 77, 10), 0xA1B2),
                (Ipv4Addr::new(10, 77, 77, 11), 0x0101)
            ]
        );
    }
}
