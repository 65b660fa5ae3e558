//! Small pages for the proxy's heap (issue 16).
//!
//! mimalloc asks the kernel for transparent huge pages on its heap (`madvise`
//! `MADV_HUGEPAGE`, its `allow_thp` default), so with THP in `madvise` mode (the usual
//! distribution setting) the heap becomes resident in 2 MiB pieces: thousands of idle
//! connections, a kilobyte each and spread over the heap, kept whole 2 MiB pages
//! resident (the measured growth per idle connection moved in 2 MiB steps: 2,228 B each
//! at 1,000 connections, whatever the connection held). A proxy's heap is many small
//! objects that come and go; it gains little from huge pages and pays for them in
//! memory. So the node turns them off for itself at start (`PR_SET_THP_DISABLE`; pages
//! already faulted in stay as they are).

/// Turns transparent huge pages off for this process; `false` if the kernel refused.
pub(crate) fn disable() -> bool {
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and three zero arguments, touches
    // no memory of ours, and only sets a flag on this process's memory map.
    #[allow(unsafe_code)]
    // one of the workspace's documented unsafe blocks (see the root Cargo.toml)
    let set = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    set == 0
}

/// Whether transparent huge pages are off for this process.
#[cfg(test)]
fn disabled() -> bool {
    // SAFETY: PR_GET_THP_DISABLE reads a flag of this process; no pointer is passed.
    #[allow(unsafe_code)]
    // one of the workspace's documented unsafe blocks (see the root Cargo.toml)
    let got = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
    got == 1
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_pages_are_off_after_disable() {
        assert!(super::disable(), "prctl(PR_SET_THP_DISABLE) refused");
        assert!(super::disabled());
    }
}
