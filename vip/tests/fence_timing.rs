//! What the fence costs and how precisely the kernel keeps its deadline, measured in a network
//! namespace: the time per `open_until` (the call the node makes every few milliseconds from
//! its control thread) and that it allocates nothing; and how long after the deadline a lease
//! element is really gone. Figures are printed (`--nocapture`).

mod common;
mod fence_bed;
mod wire;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{in_netns, Lab};
use fence_bed::{install_in, ready, try_realtime, VIP4};
use fulcrum_vip::{Fence, RefreshMethod};

/// Counts the allocations each thread makes, so a test can check that a loop makes none.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn count_one() {
    // `try_with`: the counter may be gone while the thread is being torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to the system allocator with the caller's arguments
// unchanged; counting touches only a thread-local Cell, which does not allocate.
#[allow(unsafe_code)] // test-only: a counting allocator that forwards to the system one
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded as received; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through `alloc`/`realloc` above with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const CALLS: usize = 10_000;

fn v4() -> IpAddr {
    IpAddr::V4(VIP4)
}

/// Runs `CALLS` refreshes; returns (mean, median, 99th percentile, worst) and the number of
/// allocations they made.
fn time_refreshes(fence: &mut Fence) -> ([Duration; 4], u64) {
    let mut each = Vec::with_capacity(CALLS);
    for _ in 0..100 {
        fence
            .open_until(v4(), Instant::now() + Duration::from_millis(50))
            .unwrap();
    }
    let before = allocations();
    let start = Instant::now();
    for _ in 0..CALLS {
        let t = Instant::now();
        fence
            .open_until(v4(), t + Duration::from_millis(50))
            .unwrap();
        each.push(t.elapsed());
    }
    let total = start.elapsed();
    let allocated = allocations() - before;
    each.sort();
    let at = |q: f64| each[((each.len() - 1) as f64 * q) as usize];
    (
        [total / CALLS as u32, at(0.5), at(0.99), at(1.0)],
        allocated,
    )
}

#[test]
fn open_until_is_cheap_and_allocates_nothing() {
    let Some(_serial) = ready("open_until_is_cheap_and_allocates_nothing") else {
        return;
    };
    let lab = Lab::new("cost", &["node"]);
    let node = lab.ns("node");
    let Some(mut fence) = install_in(&node, &[v4()]) else {
        return;
    };
    for method in [RefreshMethod::InPlace, RefreshMethod::Replace] {
        fence.set_refresh_method(method);
        let ([mean, p50, p99, worst], allocated) = time_refreshes(&mut fence);
        eprintln!(
            "{method:?}: {CALLS} open_until calls, mean {mean:?}, median {p50:?}, p99 {p99:?}, worst {worst:?}, {allocated} allocations"
        );
        assert_eq!(allocated, 0, "{method:?}: open_until allocated");
        assert!(mean < Duration::from_millis(1), "{method:?}: mean {mean:?}");
    }
    let before = allocations();
    fence.close(v4()).unwrap();
    assert_eq!(allocations() - before, 0, "close allocated");
}

/// One lease, watched with back-to-back lookups.
struct Expiry {
    /// How long `open_until` took (the kernel may hold the element that much longer).
    call_ms: f64,
    /// Relative to the deadline: the start of the last lookup that still found the element
    /// (it was present at some time after that).
    last_present_ms: f64,
    /// The end of the first lookup that did not (it was gone before that).
    gone_ms: f64,
}

fn watch_one_expiry(fence: &mut Fence, lease: Duration) -> Expiry {
    let called = Instant::now();
    let deadline = called + lease;
    fence.open_until(v4(), deadline).unwrap();
    let call_ms = called.elapsed().as_secs_f64() * 1e3;
    let mut last_present = Instant::now();
    loop {
        let asked = Instant::now();
        if fence.expires_in(v4()).unwrap().is_none() {
            return Expiry {
                call_ms,
                last_present_ms: ms_from(deadline, last_present),
                gone_ms: ms_from(deadline, Instant::now()),
            };
        }
        last_present = asked;
        assert!(asked < deadline + Duration::from_secs(1), "never expired");
    }
}

fn ms_from(deadline: Instant, t: Instant) -> f64 {
    if t >= deadline {
        (t - deadline).as_secs_f64() * 1e3
    } else {
        -(deadline - t).as_secs_f64() * 1e3
    }
}

#[test]
fn the_kernel_never_keeps_an_element_past_its_deadline() {
    let Some(_serial) = ready("the_kernel_never_keeps_an_element_past_its_deadline") else {
        return;
    };
    let lab = Lab::new("expiry", &["node"]);
    let node = lab.ns("node");
    let Some(mut fence) = install_in(&node, &[v4()]) else {
        return;
    };
    let tick = fence.kernel_tick().as_secs_f64() * 1e3;
    let (mut present, mut gone) = (Vec::new(), Vec::new());
    in_netns(&node, || {
        let realtime = try_realtime();
        for round in 0..20u32 {
            // Spread the deadlines over the phase of the kernel's tick.
            let lease = Duration::from_micros(30_000 + u64::from(round) * 370);
            let seen = watch_one_expiry(&mut fence, lease);
            // Never kept past the deadline: the remaining time is rounded down to whole ms,
            // then to jiffies; the kernel counts from its commit, so only the call's own
            // duration (and 0.3 ms for reading the clock around it) may be added.
            assert!(
                seen.last_present_ms <= seen.call_ms + 0.3,
                "round {round}: element seen {:.2} ms after its deadline (call took {:.3} ms)",
                seen.last_present_ms,
                seen.call_ms
            );
            present.push(seen.last_present_ms);
            gone.push(seen.gone_ms);
        }
        eprintln!("watcher on a real-time thread: {realtime}");
    });
    present.sort_by(f64::total_cmp);
    gone.sort_by(f64::total_cmp);
    eprintln!(
        "tick {tick} ms; element last seen {:+.2} .. {:+.2} ms (median {:+.2}), gone by {:+.2} .. {:+.2} ms (median {:+.2}) from the deadline, 20 leases of ~30 ms",
        present[0], present[19], present[10], gone[0], gone[19], gone[10]
    );
    // Never dropped more than two ticks (plus the ms rounding) early.
    assert!(
        gone[0] >= -(2.0 * tick + 1.0),
        "element gone {:.2} ms early",
        -gone[0]
    );
}
