//! `Local`: the responses fulcrum makes itself (400, 404, 429, 502, 503, 504), with their status,
//! body text and metric label, the same on both HTTP paths.

use http::StatusCode;

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
