//! Extra config variants the convergence scenarios apply (`ClusterSpec::balancer_toml`
//! appends them to the deployed config):
//! - [`PORT_VARIANT`]: a second listener on [`EXTRA_PORT`] (port-busy squats that port on
//!   one node, so that node cannot apply it until the port is free);
//! - [`LARGE_BASE`] + k: [`LARGE_ROUTES`] routes with long path prefixes that match none of
//!   the load's requests, about 1 MiB of TOML each, each variant different (large-configs).

/// A second listener on this port.
pub const PORT_VARIANT: u32 = 2;
pub const EXTRA_PORT: u16 = 8081;
/// Variants from here on are large.
pub const LARGE_BASE: u32 = 100;
const LARGE_ROUTES: usize = 1000;
const PAD: usize = 960;

/// TOML to append to the balancer config of `variant` (empty for the plain ones).
pub fn extra(variant: u32) -> String {
    if variant == PORT_VARIANT {
        return format!(
            "\n[[listener]]\nname = \"web2\"\nbind = \"0.0.0.0:{EXTRA_PORT}\"\nprotocol = \"http\"\n\n[[route]]\nlistener = \"web2\"\npool = \"app\"\n"
        );
    }
    if variant < LARGE_BASE {
        return String::new();
    }
    let pad = "x".repeat(PAD);
    let mut out = String::with_capacity(LARGE_ROUTES * (PAD + 80));
    for i in 0..LARGE_ROUTES {
        out.push_str(&format!(
            "\n[[route]]\nlistener = \"web\"\npath_prefix = \"/pad/{variant}/{i}/{pad}\"\npool = \"app\"\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_variants_are_about_a_mebibyte_and_differ() {
        let a = extra(LARGE_BASE);
        assert!(a.len() > 1_000_000 && a.len() < 1_200_000, "{}", a.len());
        assert_ne!(a, extra(LARGE_BASE + 1));
        assert!(extra(PORT_VARIANT).contains("0.0.0.0:8081"));
        assert!(extra(1).is_empty());
    }
}
