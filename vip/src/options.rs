//! `VipOptions`: what address to hold where, how long the kernel keeps it without renewal, and
//! when to announce it.

use std::net::IpAddr;
use std::time::Duration;

use crate::VipError;

/// Longest kernel lifetime we accept. The lifetime is the dead man's switch: a longer one
/// means a frozen holder keeps the address longer, so anything beyond a minute is a mistake.
const MAX_LIFETIME: Duration = Duration::from_secs(60);

/// How long an address can stay on a Linux link after its lifetime ran out.
///
/// The kernel removes expired addresses from one periodic check (`check_lifetime`). A change
/// of any other address (a renewal by another holder, DHCP) runs that check at once and puts
/// the next run at least `ADDRCONF_TIMER_FUZZ_MAX` (1 s) later, so an address that expires in
/// between lingers until that run. Measured on kernel 6.18: an address with a 2 s lifetime was
/// gone 2.01-2.04 s after its last renewal on a quiet host, but up to 2.45 s with another
/// address renewed every 0.5 s and up to 2.78 s with one renewed every 0.93 s
/// (`tests/lifetime.rs` checks the bound).
pub const KERNEL_EXPIRY_SLACK: Duration = Duration::from_secs(1);

/// How to hold one floating address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipOptions {
    /// The VIP itself.
    pub address: IpAddr,
    /// Prefix length it is added with (`/24` also installs the connected route; `/32` does not).
    pub prefix: u8,
    /// Interface the address goes on and the announcements go out of.
    pub interface: String,
    /// Kernel `valid_lft`/`preferred_lft` (whole seconds, rounded up). Renewed every
    /// `lifetime / 4` while holding: if the process dies or freezes, the kernel removes the
    /// address by itself within this time.
    pub lifetime: Duration,
    /// Announcement bursts after taking the address: `(delay from the hold, frames)`. A peer
    /// that updated its neighbour entry less than `locktime` (1 s) earlier may ignore a
    /// burst, so bursts follow at 0.25 s and 0.6 s (a first burst lost or ignored costs a
    /// quarter of a second, not 1.5 s), and again after more than 1 s.
    pub bursts: Vec<(Duration, u32)>,
    /// One announcement every `refresh` after the bursts, while holding (`ZERO` disables it).
    pub refresh: Duration,
}

impl VipOptions {
    /// Options with the defaults: lifetime 2 s, bursts of 3 at 0 s, 2 at 0.25 s and 0.6 s,
    /// 3 at 1.5 s and 5 s, refresh 5 s.
    pub fn new(address: IpAddr, prefix: u8, interface: impl Into<String>) -> VipOptions {
        VipOptions {
            address,
            prefix,
            interface: interface.into(),
            lifetime: Duration::from_secs(2),
            bursts: vec![
                (Duration::ZERO, 3),
                (Duration::from_millis(250), 2),
                (Duration::from_millis(600), 2),
                (Duration::from_millis(1500), 3),
                (Duration::from_secs(5), 3),
            ],
            refresh: Duration::from_secs(5),
        }
    }

    /// Builds options from the config's `[vip]` section. `interface` is used when the section
    /// names none (e.g. the interface holding the node's own address).
    pub fn from_section(
        section: &fulcrum_config::VipSection,
        interface: Option<&str>,
    ) -> Result<VipOptions, VipError> {
        let (address, prefix) = parse_cidr(&section.address)?;
        let interface = section
            .interface
            .as_deref()
            .or(interface)
            .ok_or_else(|| VipError::InvalidOptions("[vip].interface is not set".into()))?;
        let mut opts = VipOptions::new(address, prefix, interface);
        opts.lifetime = section.lifetime;
        opts.validate()?;
        Ok(opts)
    }

    /// Checks ranges the kernel or the announcement logic cannot cope with.
    pub fn validate(&self) -> Result<(), VipError> {
        let max_prefix = if self.address.is_ipv4() { 32 } else { 128 };
        if self.prefix > max_prefix {
            return Err(invalid(format!(
                "prefix /{} is longer than /{max_prefix}",
                self.prefix
            )));
        }
        if self.lifetime < Duration::from_secs(1) || self.lifetime > MAX_LIFETIME {
            return Err(invalid(format!(
                "lifetime {:?} must be between 1 s and {MAX_LIFETIME:?} (the kernel counts whole seconds)",
                self.lifetime
            )));
        }
        if self.interface.is_empty() || self.interface.len() > 15 {
            return Err(invalid(format!(
                "interface name {:?} must be 1-15 characters",
                self.interface
            )));
        }
        if self.address.is_unspecified()
            || self.address.is_multicast()
            || self.address.is_loopback()
        {
            return Err(invalid(format!("{} cannot be a VIP", self.address)));
        }
        Ok(())
    }

    /// The lifetime in whole kernel seconds, rounded up.
    pub fn kernel_lifetime_secs(&self) -> u32 {
        let secs = self.lifetime.as_secs() + u64::from(self.lifetime.subsec_nanos() > 0);
        u32::try_from(secs).unwrap_or(u32::MAX - 1).max(1)
    }

    /// The longest the address can outlive its last renewal on a Linux kernel: the lifetime
    /// as the kernel got it plus `KERNEL_EXPIRY_SLACK`. A strict-mode claim waits this long.
    pub fn kernel_expiry_bound(&self) -> Duration {
        Duration::from_secs(u64::from(self.kernel_lifetime_secs())) + KERNEL_EXPIRY_SLACK
    }

    /// How often the address is re-added to push its expiry out.
    pub(crate) fn renew_period(&self) -> Duration {
        self.lifetime / 4
    }
}

fn invalid(msg: String) -> VipError {
    VipError::InvalidOptions(msg)
}

/// Parses `ADDRESS/PREFIX`; a bare address gets a host prefix (/32 or /128).
pub fn parse_cidr(text: &str) -> Result<(IpAddr, u8), VipError> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let address: IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| invalid(format!("{text:?} is not an IP address")))?;
    let prefix = match prefix {
        Some(p) => p
            .trim()
            .parse::<u8>()
            .map_err(|_| invalid(format!("{text:?} has a bad prefix length")))?,
        None if address.is_ipv4() => 32,
        None => 128,
    };
    Ok((address, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let o = VipOptions::new("10.0.0.100".parse().unwrap(), 24, "eth0");
        assert_eq!(o.kernel_lifetime_secs(), 2);
        assert_eq!(o.renew_period(), Duration::from_millis(500));
        assert_eq!(o.bursts.len(), 5);
        o.validate().unwrap();
    }

    #[test]
    fn lifetime_rounds_up_to_whole_seconds() {
        let mut o = VipOptions::new("10.0.0.100".parse().unwrap(), 24, "eth0");
        o.lifetime = Duration::from_millis(1500);
        assert_eq!(o.kernel_lifetime_secs(), 2);
        o.lifetime = Duration::from_millis(500);
        assert!(o.validate().is_err());
    }

    #[test]
    fn bad_options_are_refused() {
        let mut o = VipOptions::new("10.0.0.100".parse().unwrap(), 33, "eth0");
        assert!(o.validate().is_err());
        o.prefix = 24;
        o.interface = "a-very-long-interface-name".into();
        assert!(o.validate().is_err());
        let o = VipOptions::new("0.0.0.0".parse().unwrap(), 24, "eth0");
        assert!(o.validate().is_err());
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            parse_cidr("10.0.0.100/24").unwrap(),
            ("10.0.0.100".parse().unwrap(), 24)
        );
        assert_eq!(
            parse_cidr("fd00::1").unwrap(),
            ("fd00::1".parse().unwrap(), 128)
        );
        assert!(parse_cidr("10.0.0/24").is_err());
        assert!(parse_cidr("10.0.0.1/x").is_err());
    }
}
