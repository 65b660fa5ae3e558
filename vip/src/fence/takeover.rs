//! The successor's side of a planned hand-over: before it asks the stopping holder for the
//! traffic, it accepts the VIP's frames that holder will forward to it, matched by their
//! source MAC (the forward rewrites it to the holder's own), for as long as its own lease
//! lasts. In `nft` syntax (the old holder 02:00:00:00:00:01):
//!
//! ```text
//! add element netdev fulcrum forwarders { 02:00:00:00:00:01 timeout 18ms }
//! # the fence chain's rule: ip daddr 10.77.0.100 ether saddr @forwarders accept
//! ```
//!
//! Why this is safe: the old holder forwards only while its own lease element is absent,
//! that is while its kernel answers nothing new for the VIP, and the successor accepts
//! only while it leads with a lease, so no other node may open its fence meanwhile. ARP
//! requests are not accepted: the successor announces nothing before its claim. Without
//! this, a SYN forwarded in the instant between the old holder's switch and the successor's
//! claim met a closed fence and was dropped, and its client tried again only a second later.

use super::elements;
use super::ruleset::FORWARDERS;
use super::socket::Batch;

/// Adds the message that accepts frames from `mac` for `for_ms`.
pub(crate) fn accept_from(batch: &mut Batch<'_>, mac: [u8; 6], for_ms: u64) {
    elements::add_raw(batch, FORWARDERS, &mac, for_ms);
}
