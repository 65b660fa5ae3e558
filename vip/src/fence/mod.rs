//! The kernel-enforced VIP fence: an nftables table, owned by fulcrum, that makes this node's
//! kernel ignore the VIP (ARP requests and neighbour solicitations for it, every packet to
//! it) unless the VIP's lease element is present in a set, and the element carries a timeout
//! in milliseconds. The holder refreshes the element each time a quorum confirms its lease,
//! with a timeout equal to what remains of the lease; if the process freezes or dies, the
//! element expires *in the kernel* and the node stops answering for the VIP within the lease,
//! with no help from the process. The table has no owner: it outlives the process (the
//! address may live on for seconds with its kernel lifetime, and must stay fenced).
//!
//! Layout:
//! - `ruleset`  — the table, sets, chain and rules, installed as one transaction.
//! - `elements` — lease element add / delete / get messages.
//! - `probe`    — how this kernel rounds and refreshes element timeouts.
//! - `handoff`  — a planned hand-over's forward of the VIP's packets to the successor.
//! - `takeover` — the successor accepting those forwarded packets before its claim.
//! - `expr`     — the nf_tables expressions the rules are made of.
//! - `socket`   — the NETLINK_NETFILTER socket: transactions and their acknowledgements.
//! - `message`, `reply` — writing and reading netlink bytes.
//! - `abi`      — the kernel's numbers.
//!
//! Costs: `install` is a handful of netlink round trips (no process is spawned, the `nft`
//! binary is not needed); `open_until` is one transaction on a reused buffer and socket, no
//! allocation. Every call is synchronous and runs in the network namespace the fence was
//! installed from (the socket's).

mod abi;
mod elements;
mod expr;
mod handoff;
mod message;
mod probe;
mod reply;
mod ruleset;
mod socket;
mod takeover;

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use nix::libc;

use crate::VipError;
use elements::Key;
pub use handoff::Forward;
use probe::KernelTimeouts;
pub use probe::RefreshMethod;
use ruleset::lease_set;
use socket::NfSocket;

/// fulcrum's fence in this network namespace. Dropping it leaves the table and its elements
/// in the kernel (a lapsing element still closes the fence); [`Fence::uninstall`] removes it.
pub struct Fence {
    socket: NfSocket,
    interface: String,
    ifindex: u32,
    vips: Vec<IpAddr>,
    kernel: KernelTimeouts,
    /// The kernel has a netdev egress hook and the chain for [`Fence::keep_outgoing`].
    egress: bool,
    /// The egress chain has a rule, to be removed when the fence is opened after then.
    egress_until: Option<Instant>,
    /// The node whose forwarded frames this one accepts (see `takeover`), until the fence
    /// is closed.
    accepting: Option<[u8; 6]>,
}

impl Fence {
    /// A refresh that took longer than this, from reading the clock to the kernel's
    /// acknowledgement, is redone with the time then remaining (see [`Fence::open_until`]).
    pub const SLOW_CALL: Duration = Duration::from_millis(1);

    /// Creates fulcrum's table guarding `vips` on `interface`, atomically replacing any table
    /// of that name (from an earlier process or an earlier install), with no lease element:
    /// the fence starts closed. Then probes how the kernel handles element timeouts.
    ///
    /// Errors: `NftablesUnavailable` when the kernel has no nf_tables (or no netdev family)
    /// or the process lacks CAP_NET_ADMIN — the node can run without the fence, with a
    /// warning; `NoSuchInterface`; `InvalidOptions` for no or unusable addresses.
    pub fn install(interface: &str, vips: &[IpAddr]) -> Result<Fence, VipError> {
        let span = tracing::info_span!("vip_fence_install", interface, ?vips);
        let _enter = span.enter();
        check_vips(vips)?;
        let ifindex = check_interface(interface)?;
        let mut socket = NfSocket::open().map_err(unavailable_or("open netfilter netlink"))?;
        socket
            .transact(|b| ruleset::replace_table(b, interface, vips))
            .map_err(unavailable_or("install the fence table"))?;
        let kernel = probe::probe(&mut socket).map_err(nft_error("probe element timeouts"))?;
        let egress = match socket.transact(|b| ruleset::add_egress_chain(b, interface)) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "no netdev egress hook (Linux 5.16+): a connection \
                    accepted while a planned hand-over switches can be cut");
                false
            }
        };
        tracing::info!(
            tick_ms = kernel.tick.as_millis() as u64,
            refresh = ?kernel.refresh,
            egress,
            "VIP fence installed, closed"
        );
        Ok(Fence {
            socket,
            interface: interface.to_string(),
            ifindex,
            vips: vips.to_vec(),
            kernel,
            egress,
            egress_until: None,
            accepting: None,
        })
    }

    /// Opens the fence for `vip` until `deadline`: adds or refreshes its lease element with
    /// a timeout of `deadline - now`, rounded down to whole milliseconds. Returns the timeout
    /// the kernel was given; zero means the fence was closed instead, because the deadline is
    /// less than one kernel tick away (or past) and the kernel cannot keep a shorter timeout
    /// without stretching it.
    ///
    /// The kernel rounds the timeout down to jiffies and counts it from the jiffy in which it
    /// commits the request, so the element lapses up to two ticks (plus the millisecond
    /// rounding) *before* the deadline and never after it, except by however long this thread
    /// is held up between reading the clock and the kernel's commit. A call that took longer
    /// than [`Fence::SLOW_CALL`] is therefore issued once more with the time then remaining, so a
    /// stall inside the call stretches the lease by at most the second call's duration (a few
    /// microseconds on a real-time thread); if that one is slow too, the fence is closed.
    pub fn open_until(&mut self, vip: IpAddr, deadline: Instant) -> Result<Duration, VipError> {
        self.key(vip)?;
        self.open(Some(vip), deadline)
    }

    /// [`Fence::open_until`] for every guarded VIP in one transaction.
    pub fn open_all_until(&mut self, deadline: Instant) -> Result<Duration, VipError> {
        self.open(None, deadline)
    }

    /// Opens `vip` (or every VIP), redoing a slow call once and closing after two.
    fn open(&mut self, vip: Option<IpAddr>, deadline: Instant) -> Result<Duration, VipError> {
        for _ in 0..2 {
            let asked = Instant::now();
            let Some(ms) = timeout_until(asked, deadline, self.kernel.tick) else {
                break;
            };
            self.add_leases(vip, ms)?;
            if asked.elapsed() <= Fence::SLOW_CALL {
                return Ok(Duration::from_millis(ms));
            }
        }
        match vip {
            Some(vip) => self.close(vip)?,
            None => self.close_all()?,
        }
        Ok(Duration::ZERO)
    }

    /// One transaction adding or refreshing the lease elements of `vip` (or of every VIP).
    fn add_leases(&mut self, vip: Option<IpAddr>, ms: u64) -> Result<(), VipError> {
        let vips = match vip {
            Some(ref one) => std::slice::from_ref(one),
            None => &self.vips[..],
        };
        let refresh = self.kernel.refresh;
        let stop_keeping = self.egress_until.is_some_and(|t| t <= Instant::now());
        if stop_keeping {
            self.egress_until = None;
        }
        self.socket
            .transact(|b| {
                if stop_keeping {
                    handoff::stop_keeping_outgoing(b);
                }
                for &vip in vips {
                    let (set, key) = (lease_set(vip), Key::of(vip));
                    elements::add(b, set, key, ms);
                    if refresh == RefreshMethod::Replace {
                        elements::delete(b, set, key);
                        elements::add(b, set, key, ms);
                    }
                }
            })
            .map_err(nft_error("open the fence"))
    }

    /// Closes the fence for `vip` now: deletes its lease element (an absent or lapsed element
    /// is fine). When this returns, the kernel drops the VIP's traffic.
    pub fn close(&mut self, vip: IpAddr) -> Result<(), VipError> {
        self.key(vip)?;
        tracing::debug!(%vip, "VIP fence closing");
        let tick = self.tick_ms();
        let accepting = self.accepting.take();
        self.socket
            .transact(|b| close_in(b, std::slice::from_ref(&vip), tick, accepting))
            .map_err(nft_error("close the fence"))
    }

    /// Closes the fence for every guarded VIP in one transaction.
    pub fn close_all(&mut self) -> Result<(), VipError> {
        tracing::debug!(vips = ?self.vips, "VIP fence closing");
        let (vips, tick) = (&self.vips, self.tick_ms());
        let accepting = self.accepting.take();
        self.socket
            .transact(|b| close_in(b, vips, tick, accepting))
            .map_err(nft_error("close the fence"))
    }

    /// A planned hand-over: closes the fence for every guarded VIP and, in the same
    /// transaction, starts forwarding their IPv4 packets to the successor for
    /// `fwd.for_ms` (see `handoff`). When this returns, this node's kernel answers for no
    /// VIP; packets still sent to it go on to the successor, whose own fence decides.
    ///
    /// At most [`Fence::KEEP_IN_SWITCH`] kept connections go into the switching
    /// transaction (a netlink batch is bounded); call [`Fence::keep`] first with the rest.
    pub fn hand_over(&mut self, fwd: Forward) -> Result<(), VipError> {
        let accepting = self.accepting.take();
        self.hand_over_in(&self.vips.clone(), fwd, accepting)
    }

    /// [`Fence::hand_over`] for some of the guarded VIPs only (`[[vip]]`: one address moves
    /// to another node while this one keeps answering for the others, and keeps accepting
    /// what it was staged for). The hand-over chain holds one hand-over or take-over at a
    /// time: a later one replaces the earlier one's rules.
    pub fn hand_over_some(&mut self, vips: &[IpAddr], fwd: Forward) -> Result<(), VipError> {
        for &vip in vips {
            self.key(vip)?;
        }
        self.hand_over_in(vips, fwd, None)
    }

    fn hand_over_in(
        &mut self,
        vips: &[IpAddr],
        fwd: Forward,
        accepting: Option<[u8; 6]>,
    ) -> Result<(), VipError> {
        tracing::debug!(?vips, to = ?fwd.to, for_ms = fwd.for_ms, "VIP fence closing, forwarding to the successor");
        let mut fwd = fwd;
        fwd.keep.truncate(Fence::KEEP_IN_SWITCH);
        let (tick, ifindex) = (self.tick_ms(), self.ifindex);
        self.socket
            .transact(|b| {
                close_in(b, vips, tick, accepting);
                handoff::start(b, vips, ifindex, &fwd);
            })
            .map_err(nft_error("hand the fence over"))
    }

    /// The first step of a planned hand-over, before the connections are listed: from now
    /// on (for `keep_ms`), every connection to a VIP this node sends a packet on is kept
    /// (see `handoff`). Returns false when the kernel cannot (no netdev egress hook).
    pub fn keep_outgoing(&mut self, keep_ms: u64) -> Result<bool, VipError> {
        if !self.egress {
            return Ok(false);
        }
        let vips = &self.vips;
        self.socket
            .transact(|b| handoff::note_outgoing(b, vips, ruleset::KEEP4, keep_ms))
            .map_err(nft_error("keep outgoing connections"))?;
        // Removed when this node opens its fence again (it leads again).
        self.egress_until = Some(Instant::now());
        Ok(true)
    }

    /// The successor's side of a planned hand-over, before it asks the old holder (MAC
    /// `old`) for the traffic (see `takeover`): accept the VIP's frames it forwards until
    /// `until` (this node's lease end), note this node's own connections and send the
    /// packets of others back to it for `return_ms`. Returns false (nothing done) when less
    /// than a kernel tick of the lease remains.
    pub fn take_over(
        &mut self,
        old: [u8; 6],
        me: [u8; 6],
        until: Instant,
        return_ms: u64,
    ) -> Result<bool, VipError> {
        self.take_over_some(&self.vips.clone(), old, me, until, return_ms)
    }

    /// [`Fence::take_over`] for some of the guarded VIPs only (`[[vip]]`): the packets of
    /// unknown connections go back to the old holder for these addresses alone, not for
    /// those this node already answers for.
    pub fn take_over_some(
        &mut self,
        vips: &[IpAddr],
        old: [u8; 6],
        me: [u8; 6],
        until: Instant,
        return_ms: u64,
    ) -> Result<bool, VipError> {
        for &vip in vips {
            self.key(vip)?;
        }
        let Some(accept_ms) = timeout_until(Instant::now(), until, self.kernel.tick) else {
            return Ok(false);
        };
        let t = takeover::TakeOver {
            old,
            me,
            ifindex: self.ifindex,
            accept_ms,
            return_ms,
        };
        self.socket
            .transact(|b| takeover::start(b, vips, &t))
            .map_err(nft_error("take over"))?;
        self.accepting = Some(old);
        self.egress_until = Some(Instant::now() + Duration::from_millis(return_ms));
        Ok(true)
    }

    /// Most kept connections one transaction carries.
    pub const KEEP_IN_SWITCH: usize = 256;

    /// Lets the packets of these connections (client address, port) through to this
    /// node's stack for `keep_ms` whatever the fence says (see `handoff`), in transactions
    /// of at most [`Fence::KEEP_IN_SWITCH`]: a hand-over with many connections puts most
    /// of them in place before it switches.
    pub fn keep(
        &mut self,
        conns: &[(std::net::Ipv4Addr, u16)],
        keep_ms: u64,
    ) -> Result<(), VipError> {
        for chunk in conns.chunks(Fence::KEEP_IN_SWITCH) {
            self.socket
                .transact(|b| handoff::keep(b, chunk, keep_ms))
                .map_err(nft_error("keep connections"))?;
        }
        Ok(())
    }

    /// How long the kernel will still keep `vip`'s lease element (in its jiffies, as
    /// milliseconds), `None` when it has none: the fence is closed for it. For status and tests.
    pub fn expires_in(&mut self, vip: IpAddr) -> Result<Option<Duration>, VipError> {
        let key = self.key(vip)?;
        match probe::report(&mut self.socket, lease_set(vip), key) {
            // An element without an expiration never lapses; the fence never adds one.
            Ok(seen) => Ok(Some(
                seen.expires_ms.map_or(Duration::MAX, Duration::from_millis),
            )),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(nft_error("read the lease element")(e)),
        }
    }

    /// Whether the fence is open for `vip` (its lease element is present and not lapsed).
    pub fn is_open(&mut self, vip: IpAddr) -> Result<bool, VipError> {
        Ok(self.expires_in(vip)?.is_some())
    }

    /// Removes fulcrum's table (the fence and its elements) from the kernel.
    pub fn uninstall(mut self) -> Result<(), VipError> {
        tracing::info!(interface = %self.interface, "VIP fence uninstalling");
        self.socket
            .transact(ruleset::delete_table)
            .map_err(nft_error("remove the fence table"))
    }

    /// The interface whose ingress the fence filters.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The VIPs the fence guards.
    pub fn vips(&self) -> &[IpAddr] {
        &self.vips
    }

    /// The shortest timeout the kernel keeps exactly (one jiffy, e.g. 4 ms with HZ=250); a
    /// lease with less left closes the fence.
    pub fn kernel_tick(&self) -> Duration {
        self.kernel.tick
    }

    /// How a refresh reaches the kernel (found at install).
    pub fn refresh_method(&self) -> RefreshMethod {
        self.kernel.refresh
    }

    /// Overrides the refresh method found at install: `Replace` works on every kernel, and
    /// tests use it to exercise the path older kernels take.
    pub fn set_refresh_method(&mut self, method: RefreshMethod) {
        self.kernel.refresh = method;
    }

    fn key(&self, vip: IpAddr) -> Result<Key, VipError> {
        if self.vips.contains(&vip) {
            Ok(Key::of(vip))
        } else {
            Err(VipError::FenceUnknownAddress { addr: vip })
        }
    }

    fn tick_ms(&self) -> u64 {
        self.kernel.tick.as_millis() as u64
    }
}

/// Whole milliseconds from `now` to `deadline`, or `None` when less than `tick` remains.
fn timeout_until(now: Instant, deadline: Instant, tick: Duration) -> Option<u64> {
    let remaining = deadline.saturating_duration_since(now);
    (remaining >= tick).then_some(remaining.as_millis() as u64)
}

/// Whether fulcrum's fence table exists in this network namespace (left by any process).
pub fn fence_installed() -> Result<bool, VipError> {
    let mut socket = NfSocket::open().map_err(unavailable_or("open netfilter netlink"))?;
    match socket.query(
        abi::NFT_MSG_GETTABLE,
        abi::NFPROTO_NETDEV,
        |w| w.str_attr(abi::NFTA_TABLE_NAME, ruleset::TABLE),
        |_| {},
    ) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(unavailable_or("look up the fence table")(e)),
    }
}

/// Removes fulcrum's fence table from this network namespace if it exists (explicit
/// uninstall, or cleanup by a process that no longer owns a [`Fence`]). Returns whether
/// there was one.
pub fn remove_fence() -> Result<bool, VipError> {
    if !fence_installed()? {
        return Ok(false);
    }
    let mut socket = NfSocket::open().map_err(unavailable_or("open netfilter netlink"))?;
    match socket.transact(ruleset::delete_table) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(nft_error("remove the fence table")(e)),
    }
}

/// Adds the messages that close the fence for `vips`: their lease elements go and, with
/// them, the forwarder this node accepted frames from (`accepting`): a node that stops
/// answering for the VIP stops answering forwarded frames too.
fn close_in(b: &mut socket::Batch<'_>, vips: &[IpAddr], tick_ms: u64, accepting: Option<[u8; 6]>) {
    for &vip in vips {
        ensure_then_delete(b, vip, Key::of(vip), tick_ms);
    }
    if let Some(mac) = accepting {
        takeover::stop_accepting(b, mac, tick_ms);
    }
}

/// Adds messages that delete `vip`'s lease element whether or not it is present: a short
/// add first makes the delete valid, and both commit together.
fn ensure_then_delete(b: &mut socket::Batch<'_>, vip: IpAddr, key: Key, tick_ms: u64) {
    let set = lease_set(vip);
    elements::add(b, set, key, tick_ms);
    elements::delete(b, set, key);
}

fn check_vips(vips: &[IpAddr]) -> Result<(), VipError> {
    if vips.is_empty() {
        return Err(VipError::InvalidOptions(
            "the VIP fence needs at least one address".to_string(),
        ));
    }
    match vips.iter().find(|a| a.is_unspecified() || a.is_multicast()) {
        Some(bad) => Err(VipError::InvalidOptions(format!(
            "{bad} cannot be a VIP (unspecified or multicast)"
        ))),
        None => Ok(()),
    }
}

fn check_interface(interface: &str) -> Result<u32, VipError> {
    match nix::net::if_::if_nametoindex(interface) {
        Ok(index) => Ok(index),
        Err(_) => Err(VipError::NoSuchInterface {
            interface: interface.to_string(),
        }),
    }
}

/// Maps an error at install or lookup: the kernel lacking nf_tables (or its netdev family,
/// or an expression) and a missing CAP_NET_ADMIN make the fence unavailable; anything else is
/// a failed request.
fn unavailable_or(op: &'static str) -> impl FnOnce(io::Error) -> VipError {
    move |source| {
        let reason = match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => "no CAP_NET_ADMIN",
            Some(libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT | libc::EOPNOTSUPP | libc::ENOENT) => {
                "the kernel lacks nf_tables or its netdev family"
            }
            _ => return VipError::Nftables { op, source },
        };
        VipError::NftablesUnavailable { reason, source }
    }
}

fn nft_error(op: &'static str) -> impl FnOnce(io::Error) -> VipError {
    move |source| VipError::Nftables { op, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_rounds_down_and_refuses_less_than_a_tick() {
        let now = Instant::now();
        let tick = Duration::from_millis(4);
        let at = |us| timeout_until(now, now + Duration::from_micros(us), tick);
        assert_eq!(at(20_999), Some(20));
        assert_eq!(at(4_000), Some(4));
        assert_eq!(at(3_999), None);
        assert_eq!(timeout_until(now + tick * 3, now, tick), None);
    }
}
