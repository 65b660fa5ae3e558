//! `Local`: the responses fulcrum makes itself (400, 404, 429, 502, 503, 504), with their status,
//! body text and metric label, the same on both HTTP paths.

use http::StatusCode;

/// Which circuit-breaking cap refused a request (`request::breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// `max_requests`: requests in flight to the backend.
    Requests,
    /// `max_pending`: connects in progress to the backend.
    Pending,
}

/// A response fulcrum makes itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Local {
    /// A request that is malformed: bad or missing authority, bad path escapes.
    BadRequest,
    /// The client broke its own request (its body ended early or was malformed).
    ClientError,
    NoRoute,
    /// The route's rate limit refused the request; `Retry-After` in seconds.
    RateLimited(u32),
    NoBackend,
    /// The chosen backend is at a circuit-breaking cap of its pool (`request::breaker`).
    Overloaded(Cap),
    BadGateway,
    GatewayTimeout,
}

impl Local {
    /// The status, the body text, and the metric label of this response.
    pub(crate) fn parts(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Local::BadRequest => (StatusCode::BAD_REQUEST, "bad request\n", "bad_request"),
            Local::ClientError => (StatusCode::BAD_REQUEST, "bad request\n", "client"),
            Local::NoRoute => (StatusCode::NOT_FOUND, "no route\n", "no_route"),
            Local::RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests\n",
                "rate_limited",
            ),
            Local::NoBackend => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no healthy backend\n",
                "no_backend",
            ),
            Local::Overloaded(Cap::Requests) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "backend at max_requests\n",
                "max_requests",
            ),
            Local::Overloaded(Cap::Pending) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "backend at max_pending\n",
                "max_pending",
            ),
            Local::BadGateway => (StatusCode::BAD_GATEWAY, "bad gateway\n", "bad_gateway"),
            Local::GatewayTimeout => (StatusCode::GATEWAY_TIMEOUT, "backend timeout\n", "timeout"),
        }
    }

    /// The `Retry-After` value (seconds) this response carries, if any.
    pub(crate) fn retry_after(self) -> Option<u32> {
        match self {
            Local::RateLimited(secs) => Some(secs),
            _ => None,
        }
    }
}
