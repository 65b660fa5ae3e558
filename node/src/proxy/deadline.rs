//! A body on hyper's path that must end by the route's overall `timeout`
//! (`request::timeouts`): past the deadline it fails. A response body so bounded is cut
//! off (hyper closes the HTTP/1.1 connection, resets the HTTP/2 stream) instead of
//! ending as if it were complete. A request body so bounded stops the upload: hyper's
//! client, which sends it on after the backend's response head came, abandons the
//! backend request (closing its HTTP/1.1 connection, resetting its HTTP/2 stream), and
//! the client's unread rest makes hyper's server close the client connection or reset
//! the stream. Only routes with a `timeout` pay for the timer.

use super::body::{BodyError, ProxyBody};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// Which body a deadline bounds (for the error and the log).
#[derive(Debug, Clone, Copy)]
pub(super) enum Direction {
    /// The client's upload.
    Request,
    /// The backend's answer.
    Response,
}

/// Why a body was cut off.
#[derive(Debug, thiserror::Error)]
#[error("route timeout: the {0:?} body was still coming at the deadline")]
pub(super) struct BodyDeadline(Direction);

/// `body`, bounded by `deadline` when there is one.
pub(super) fn bound(body: ProxyBody, deadline: Option<Instant>, direction: Direction) -> ProxyBody {
    match deadline {
        None => body,
        Some(at) => DeadlineBody {
            inner: body,
            sleep: Box::pin(tokio::time::sleep_until(at.into())),
            direction,
        }
        .boxed(),
    }
}

struct DeadlineBody {
    inner: ProxyBody,
    sleep: Pin<Box<tokio::time::Sleep>>,
    direction: Direction,
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
                let direction = self.direction;
                tracing::warn!(?direction, "route timeout during the body: cut off");
                Poll::Ready(Some(Err(Box::new(BodyDeadline(direction)))))
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
