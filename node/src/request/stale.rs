//! Reusing a pooled backend connection without asking the kernel first, for both
//! codecs that speak raw HTTP/1.1 to backends (`h1`, `http2`).
//!
//! A request that can be sent again (`retry::is_idempotent`, and no body, or all of it
//! still held) takes an idle connection on the reactor's word alone
//! (`upstream::Reuse::Optimistic`): no `MSG_PEEK` per request. Should the backend have
//! closed it meanwhile (its keep-alive timeout, unnoticed yet), the request's write
//! fails or its first read finds EOF or a reset before any response byte; the request
//! then goes once more, at once, over a new connection to the same backend. Nothing
//! the client sees, and not a retry in the sense of `retry`: no budget spent, no
//! backend judged, since the backend closed an idle connection it was free to close.
//! A request that cannot be sent again keeps the kernel's check (`Reuse::Checked`).

use crate::request::failure::ExchangeFailure;
use crate::upstream::Reuse;

/// How a request that is `replayable` (may be sent twice) takes a pooled connection.
pub(crate) fn reuse_for(replayable: bool) -> Reuse {
    match replayable {
        true => Reuse::Optimistic,
        false => Reuse::Checked,
    }
}

/// Whether `outcome`, an attempt over a connection taken as `reuse`, found a stale
/// pooled connection and goes again over a new one.
pub(crate) fn resend<T>(outcome: &Result<T, ExchangeFailure>, reuse: Reuse) -> bool {
    let stale = matches!(outcome, Err(ExchangeFailure::Broken { reused: true }));
    if stale && reuse == Reuse::Optimistic {
        tracing::debug!(
            "pooled backend connection closed before the request: sent again on a new one"
        );
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_replayable_request_on_a_reused_connection_goes_again() {
        let stale: Result<(), _> = Err(ExchangeFailure::Broken { reused: true });
        let fresh: Result<(), _> = Err(ExchangeFailure::Broken { reused: false });
        let aborted: Result<(), _> = Err(ExchangeFailure::Aborted);
        assert!(resend(&stale, reuse_for(true)));
        assert!(!resend(&stale, reuse_for(false)), "checked by the kernel");
        assert!(!resend(&fresh, reuse_for(true)), "a new connection broke");
        assert!(!resend(&aborted, reuse_for(true)));
        assert!(!resend(&Ok::<(), ExchangeFailure>(()), reuse_for(true)));
    }
}
