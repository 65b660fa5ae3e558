//! What this kernel does with element timeouts, found out at install on a scratch set that
//! no rule reads (`probe`), so the lease sets stay empty:
//!
//! - **tick**: the kernel keeps timeouts in jiffies, rounding the milliseconds it is given
//!   *down*. A timeout shorter than one jiffy is rounded up to one jiffy by kernels since
//!   the 2023 fix "nf_tables: set element timeout to the minimum value" and to *zero* before
//!   it, and a zero timeout means an element that never expires: a fence open for ever. So
//!   the smallest timeout the fence ever asks for is the tick measured here, and a shorter
//!   remaining lease closes the fence instead. The tick is what the kernel reports for the
//!   smallest timeout it keeps (4 ms with HZ=250).
//! - **refresh**: kernels since 6.10 ("set element timeout update support") restart an
//!   existing element's clock in place when it is added again without `NLM_F_EXCL` with an
//!   explicit expiration (or a different timeout); older ones answer success and change
//!   nothing. The probe adds an element expiring in 1 s (timeout 60 s), then re-adds it with
//!   the same timeout and a 60 s expiration, as a refresh does, and reads back which
//!   expiration the kernel kept. Without in-place updates a refresh is add + delete + add in
//!   one transaction (the first add makes the delete valid when the element had lapsed; the
//!   packet path sees the old element, then the new one).

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::abi::{NFPROTO_NETDEV, NFT_MSG_GETSETELEM};
use super::elements::{self, Key, Reported};
use super::ruleset::{SetRef, PROBE};
use super::socket::NfSocket;

/// How an element's timeout is refreshed on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshMethod {
    /// One add message; the kernel updates the existing element's timeout in place.
    InPlace,
    /// Add + delete + add in one transaction (kernels before 6.10).
    Replace,
}

/// The kernel's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KernelTimeouts {
    pub tick: Duration,
    pub refresh: RefreshMethod,
}

/// Longest jiffy looked for (HZ=100 gives 10 ms).
const MAX_TICK_MS: u64 = 20;
const PROBE_KEY: IpAddr = IpAddr::V4(Ipv4Addr::new(0, 0, 0, 1));

/// Runs both probes; leaves the probe set empty.
pub(crate) fn probe(socket: &mut NfSocket) -> io::Result<KernelTimeouts> {
    let tick = tick(socket)?;
    let refresh = refresh_method(socket)?;
    Ok(KernelTimeouts { tick, refresh })
}

fn tick(socket: &mut NfSocket) -> io::Result<Duration> {
    for asked in 1..=MAX_TICK_MS {
        let kept = match add_and_report(socket, asked, asked) {
            Ok(seen) => seen.timeout_ms.unwrap_or(0),
            // A timeout of a tick or two can lapse before the read-back on a busy machine:
            // the element is simply gone, as if the kernel had kept none.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => 0,
            Err(e) => return Err(e),
        };
        remove(socket)?;
        // The first timeout the kernel keeps (not zero = never) and does not stretch.
        if kept > 0 && kept <= asked {
            return Ok(Duration::from_millis(asked));
        }
    }
    Err(io::Error::other(format!(
        "the kernel keeps no set element timeout of {MAX_TICK_MS} ms or less"
    )))
}

fn refresh_method(socket: &mut NfSocket) -> io::Result<RefreshMethod> {
    add_and_report(socket, 60_000, 1_000)?;
    let after = add_and_report(socket, 60_000, 60_000)?;
    remove(socket)?;
    Ok(match after.expires_ms {
        Some(ms) if ms > 1_000 => RefreshMethod::InPlace,
        _ => RefreshMethod::Replace,
    })
}

/// Adds (or re-adds) the probe element and reads back what the kernel kept.
fn add_and_report(socket: &mut NfSocket, timeout_ms: u64, expires_ms: u64) -> io::Result<Reported> {
    let key = Key::of(PROBE_KEY);
    socket.transact(|b| elements::add_expiring(b, PROBE, key, timeout_ms, expires_ms))?;
    report(socket, PROBE, key)
}

/// What the kernel reports of element `key` of `set`; `ENOENT` when it is absent.
pub(crate) fn report(socket: &mut NfSocket, set: SetRef, key: Key) -> io::Result<Reported> {
    let mut seen = Reported::default();
    socket.query(
        NFT_MSG_GETSETELEM,
        NFPROTO_NETDEV,
        |w| elements::element(w, set, key, None),
        |reply| seen = elements::reported(reply),
    )?;
    Ok(seen)
}

fn remove(socket: &mut NfSocket) -> io::Result<()> {
    let key = Key::of(PROBE_KEY);
    socket.transact(|b| {
        elements::add(b, PROBE, key, 1_000);
        elements::delete(b, PROBE, key);
    })
}
