//! Checks of a pool's active health check (`health = { ... }`).

use super::local::human;
use super::Report;
use crate::accessors::parse_status_range;
use crate::model::{CheckKind, HealthCheck};
use crate::span::Seg::{I, K};
use std::time::Duration;

/// Checks faster than this would load backends more than they tell us.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

pub(super) fn check(i: usize, h: &HealthCheck, r: &mut Report<'_>) {
    let at = |key| [K("pool"), I(i), K("health"), K(key)];
    if h.rise < 1 {
        r.error(&at("rise"), "rise must be at least 1");
    }
    if h.fall < 1 {
        r.error(&at("fall"), "fall must be at least 1");
    }
    if h.interval < MIN_INTERVAL {
        r.error(
            &at("interval"),
            format!(
                "interval {} must be at least {}",
                human(h.interval),
                human(MIN_INTERVAL)
            ),
        );
    }
    if h.timeout.is_zero() {
        r.error(&at("timeout"), "timeout must be greater than 0");
    } else if h.timeout > h.interval {
        r.error(
            &at("timeout"),
            format!(
                "timeout {} must not exceed interval {}",
                human(h.timeout),
                human(h.interval)
            ),
        );
    }
    if let Err(e) = parse_status_range(&h.expect_status) {
        r.error(&at("expect_status"), e);
    }
    if h.service.is_some() && h.kind != CheckKind::Grpc {
        r.error(
            &at("service"),
            "service names a gRPC service: it needs kind = \"grpc\"",
        );
    }
    if h.kind == CheckKind::Http && !h.path.starts_with('/') {
        r.error(
            &at("path"),
            format!("health path `{}` must start with '/'", h.path),
        );
    }
}
