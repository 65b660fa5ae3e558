//! Counting a relayed gRPC call's status (`grpc_metrics`) on hyper's path, which serves
//! every pool with `protocol = "h2"` for clients of either protocol.
//!
//! A trailers-only answer carries `grpc-status` in its head and is counted at once;
//! any other gRPC answer (`content-type: application/grpc...`) carries it in its
//! trailers, read as they pass by `GrpcStatusBody`. Responses that are not gRPC are not
//! wrapped at all.

use crate::grpc_metrics::GrpcCodes;
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

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

/// A gRPC response body whose trailers' `grpc-status` is counted as it passes.
pub(super) struct GrpcStatusBody<B> {
    inner: B,
    codes: GrpcCodes,
}

impl<B> GrpcStatusBody<B> {
    pub(super) fn new(inner: B, codes: GrpcCodes) -> Self {
        GrpcStatusBody { inner, codes }
    }
}

impl<B> Body for GrpcStatusBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(status) = frame.trailers_ref().and_then(|t| t.get(GRPC_STATUS)) {
                self.codes.count(status.as_bytes());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
