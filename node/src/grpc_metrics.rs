//! `fulcrum_grpc_responses_total{pool,backend,code}`: gRPC calls relayed from each
//! backend, by the status they ended with (`grpc-status`, from the trailers or from a
//! trailers-only response's head), named as in the gRPC spec (`OK`, `UNAVAILABLE`, ...).
//!
//! A backend's series appear with its first gRPC answer of that code: a pool that never
//! speaks gRPC adds nothing to `/metrics`. Counting is one atomic add once a code's
//! counter exists (its label set is looked up once per backend and config version).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub pool: String,
    pub backend: String,
    pub code: String,
}

/// The status codes of the gRPC spec, by number.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// `UNKNOWN`: what a client makes of a status it cannot read.
const UNKNOWN: usize = 2;

/// The code a `grpc-status` value stands for (an unreadable or unassigned number is
/// `UNKNOWN`, as a gRPC client would take it).
pub fn code_index(value: &[u8]) -> usize {
    let number = std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    match number {
        Some(n) if n < CODE_NAMES.len() => n,
        _ => UNKNOWN,
    }
}

/// One backend's counters, made on first use.
#[derive(Clone, Debug)]
pub struct GrpcCodes {
    family: Family<GrpcLabels, Counter>,
    pool: Arc<str>,
    backend: Arc<str>,
    by_code: Arc<[OnceLock<Counter>; 17]>,
}

impl GrpcCodes {
    pub fn new(family: Family<GrpcLabels, Counter>, pool: &str, backend: &str) -> Self {
        GrpcCodes {
            family,
            pool: pool.into(),
            backend: backend.into(),
            by_code: Arc::new(Default::default()),
        }
    }

    /// Counts one call that ended with the `grpc-status` value `value`.
    pub fn count(&self, value: &[u8]) {
        let index = code_index(value);
        let counter = self.by_code[index].get_or_init(|| {
            self.family
                .get_or_create(&GrpcLabels {
                    pool: self.pool.to_string(),
                    backend: self.backend.to_string(),
                    code: CODE_NAMES[index].to_string(),
                })
                .clone()
        });
        counter.inc();
    }

    /// Calls counted so far with code `name`.
    #[cfg(test)]
    pub fn get(&self, name: &str) -> u64 {
        CODE_NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| self.by_code[i].get())
            .map_or(0, Counter::get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_values_map_to_the_spec_names_and_odd_ones_to_unknown() {
        assert_eq!(CODE_NAMES[code_index(b"0")], "OK");
        assert_eq!(CODE_NAMES[code_index(b"14")], "UNAVAILABLE");
        assert_eq!(CODE_NAMES[code_index(b"16")], "UNAUTHENTICATED");
        assert_eq!(CODE_NAMES[code_index(b"17")], "UNKNOWN");
        assert_eq!(CODE_NAMES[code_index(b"x")], "UNKNOWN");
        assert_eq!(CODE_NAMES[code_index(b"")], "UNKNOWN");
    }

    #[test]
    fn counters_are_per_code_and_shared_by_clones() {
        let family = Family::<GrpcLabels, Counter>::default();
        let codes = GrpcCodes::new(family.clone(), "p", "b");
        let clone = codes.clone();
        codes.count(b"0");
        clone.count(b"0");
        codes.count(b"15");
        assert_eq!(codes.get("OK"), 2);
        assert_eq!(codes.get("DATA_LOSS"), 1);
        assert_eq!(codes.get("INTERNAL"), 0);
        let labels = GrpcLabels {
            pool: "p".into(),
            backend: "b".into(),
            code: "OK".into(),
        };
        assert_eq!(family.get_or_create(&labels).get(), 2);
    }
}
