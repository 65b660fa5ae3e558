//! A response body on hyper's path that must end by the route's overall `timeout`
//! (`request::timeouts`): past the deadline it fails, so hyper cuts the response off
//! (closes the HTTP/1.1 connection, resets the HTTP/2 stream) instead of ending it as if
//! it were complete. Only routes with a `timeout` pay for the timer.

use super::body::{BodyError, ProxyBody};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// Why a body was cut off.
#[derive(Debug, thiserror::Error)]
#[error("route timeout: the response body was still coming at the deadline")]
pub(super) struct BodyDeadline;

/// `body`, bounded by `deadline` when there is one.
pub(super) fn bound(body: ProxyBody, deadline: Option<Instant>) -> ProxyBody {
    match deadline {
        None => body,
        Some(at) => DeadlineBody {
            inner: body,
            sleep: Box::pin(tokio::time::sleep_until(at.into())),
        }
        .boxed(),
    }
}

struct DeadlineBody {
    inner: ProxyBody,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::warn!("route timeout during the response body: cut off");
                Poll::Ready(Some(Err(Box::new(BodyDeadline))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
