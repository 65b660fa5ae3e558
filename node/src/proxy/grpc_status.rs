//! Counting a relayed gRPC call's status (`grpc_metrics`) on hyper's path, which serves
//! every pool with `protocol = "h2"` for clients of either protocol.
//!
//! A trailers-only answer carries `grpc-status` in its head and is counted at once;
//! any other gRPC answer (`content-type: application/grpc...`) carries it in its
//! trailers, counted as they pass through the response's `TrackedBody`. Responses that
//! are not gRPC are not looked at past their head.

use crate::grpc_metrics::GrpcCodes;
use http::HeaderMap;

const GRPC_STATUS: &str = "grpc-status";

/// What a response head says about the call's status.
pub(super) enum GrpcHead {
    /// Not a gRPC answer.
    NotGrpc,
    /// Trailers-only: the status is in the head (counted).
    Counted,
    /// The status will come in the trailers.
    InTrailers,
}

/// Counts a trailers-only answer's status; says whether the trailers need watching.
pub(super) fn read_head(headers: &HeaderMap, codes: &GrpcCodes) -> GrpcHead {
    if let Some(status) = headers.get(GRPC_STATUS) {
        codes.count(status.as_bytes());
        return GrpcHead::Counted;
    }
    let grpc = headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        GrpcHead::InTrailers
    } else {
        GrpcHead::NotGrpc
    }
}

/// Counts the `grpc-status` of a gRPC answer's trailers, if they have one.
pub(super) fn count_trailers(trailers: &HeaderMap, codes: &GrpcCodes) {
    if let Some(status) = trailers.get(GRPC_STATUS) {
        codes.count(status.as_bytes());
    }
}
