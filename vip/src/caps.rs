//! Capability check at start: fail early with a clear message instead of at the first failover.

use crate::VipError;

const CAP_NET_ADMIN: u32 = 12;

/// Fails with `MissingCapability` if the effective set lacks CAP_NET_ADMIN (needed to add and
/// delete addresses). CAP_NET_RAW is checked by opening the packet socket itself. If
/// /proc/self/status cannot be read or parsed, the check is skipped: the first netlink add
/// will report the problem instead.
pub(crate) fn check_net_admin() -> Result<(), VipError> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Ok(());
    };
    match effective_caps(&status) {
        Some(caps) if caps & (1 << CAP_NET_ADMIN) == 0 => Err(VipError::MissingCapability {
            capability: "CAP_NET_ADMIN",
            needed_for: "add and remove the VIP address (netlink)",
        }),
        _ => Ok(()),
    }
}

/// The `CapEff:` bit mask from /proc/self/status text.
fn effective_caps(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_capeff() {
        let s = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000003000\n";
        assert_eq!(effective_caps(s), Some(0x3000));
        assert_eq!(effective_caps("Name: x\n"), None);
    }
}
