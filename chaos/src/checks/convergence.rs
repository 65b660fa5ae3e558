//! The convergence verdict: after the scenario's last event every node agreed with the
//! truth (config, backend health, one VIP holder) within the bound (`converge.rs`).

use super::Check;
use crate::converge::Convergence;

pub const NAME: &str = "converged after heal";

pub fn verdict(c: &Convergence) -> Check {
    match c.after_ms {
        Some(ms) => Check::new(
            NAME,
            format!(
                "{ms:.0} ms after the last event at {:.0} ms (bound {:.0} ms)",
                c.from_ms, c.bound_ms
            ),
            Some(ms),
            ms <= c.bound_ms,
        ),
        None => Check::new(
            NAME,
            format!(
                "not within {:.0} ms of the last event at {:.0} ms ({} rounds); last: {}",
                c.bound_ms, c.from_ms, c.rounds, c.last_miss
            ),
            None,
            false,
        ),
    }
}
