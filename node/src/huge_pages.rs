//! Small pages for the proxy's heap (issue 16).
//!
//! mimalloc asks the kernel for transparent huge pages on its heap (`madvise`
//! `MADV_HUGEPAGE`, its `allow_thp` default), so with THP in `madvise` mode (the usual
//! distribution setting) the heap becomes resident in 2 MiB pieces: thousands of idle
//! connections, a kilobyte each and spread over the heap, kept whole 2 MiB pages
//! resident (the measured growth per idle connection moved in 2 MiB steps: 2,228 B each
//! at 1,000 connections, whatever the connection held). A proxy's heap is many small
//! objects that come and go; it gains little from huge pages and pays for them in
//! memory. So the node turns them off for itself at start (`PR_SET_THP_DISABLE`, through
//! nix's safe `prctl` wrapper; pages already faulted in stay as they are).

/// Turns transparent huge pages off for this process; `false` if the kernel refused.
pub(crate) fn disable() -> bool {
    nix::sys::prctl::set_thp_disable(true).is_ok()
}

/// Whether transparent huge pages are off for this process.
#[cfg(test)]
fn disabled() -> bool {
    matches!(nix::sys::prctl::get_thp_disable(), Ok(true))
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_pages_are_off_after_disable() {
        assert!(super::disable(), "prctl(PR_SET_THP_DISABLE) refused");
        assert!(super::disabled());
    }
}
