//! What to do after an attempt at a backend failed before any response byte arrived.
//!
//! One place decides, for both HTTP paths:
//! - **whether to try again**: only a request that can be replayed (idempotent, no body,
//!   nothing of it consumed); at most once on the same backend and once elsewhere;
//! - **where**: a kept-alive connection that broke as it was reused, or a connect that timed
//!   out (maybe one lost SYN, which the kernel resends only after a second), get one more
//!   try on the *same* backend: neither says the backend is unwell, and moving a pinned
//!   session off a healthy backend breaks affinity (HAProxy's `retries` before
//!   `redispatch`). Anything else goes to another backend;
//! - **whether to eject** the backend locally: a refused or failed connect, or a fresh
//!   connection that broke with no request body on its way, is the backend's fault; a try
//!   that ran out of its `per_try_timeout` goes to another backend and is not (slow is
//!   not gone, and the same slowness on every backend would eject them all); a reused
//!   connection that broke, or one that broke while a body was being sent (a backend may
//!   refuse a body and close, RFC 9112 §9.5, which any client can make it do), is not.

use http::Method;

/// Methods that may be sent twice without changing the outcome (RFC 9110 §9.2.2).
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// How one attempt failed, as far as the decision cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// No connection could be opened; `timed_out`: no answer to the SYN in time (rather
    /// than refused or unreachable).
    Connect { timed_out: bool },
    /// The connection broke before a response byte arrived. `reused`: it had served
    /// earlier requests; `during_body`: the request body was on its way.
    Broken { reused: bool, during_body: bool },
    /// No response head within the route's `per_try_timeout` (`request::timeouts`).
    TryTimeout,
}

/// Where the next attempt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextAttempt {
    /// The same backend, on a new connection.
    SameBackend,
    /// Another backend (a pinned session moves with it).
    OtherBackend,
    /// No further attempt: answer 502.
    GiveUp,
}

/// The decision after one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub next: NextAttempt,
    /// The failure is the backend's: eject it locally (passive health).
    pub eject: bool,
}

/// Whether `failure` says the backend is unwell (eject it locally), retried or not.
pub fn is_backends_fault(failure: AttemptFailure) -> bool {
    match failure {
        AttemptFailure::Connect { .. } => true,
        AttemptFailure::Broken {
            reused,
            during_body,
        } => !reused && !during_body,
        AttemptFailure::TryTimeout => false,
    }
}

/// The retries one request has used so far.
#[derive(Debug, Default)]
pub struct Retries {
    same_backend: bool,
    other_backend: bool,
}

impl Retries {
    /// Decides after `failure`; `replayable`: the request may be sent again.
    pub fn after(&mut self, failure: AttemptFailure, replayable: bool) -> Decision {
        let eject = is_backends_fault(failure);
        let same_first = matches!(
            failure,
            AttemptFailure::Connect { timed_out: true }
                | AttemptFailure::Broken { reused: true, .. }
        );
        if !replayable || self.other_backend {
            return Decision {
                next: NextAttempt::GiveUp,
                eject,
            };
        }
        if same_first && !self.same_backend {
            self.same_backend = true;
            // Not ejected yet: the same backend gets its second chance first.
            return Decision {
                next: NextAttempt::SameBackend,
                eject: false,
            };
        }
        self.other_backend = true;
        Decision {
            next: NextAttempt::OtherBackend,
            eject,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: AttemptFailure = AttemptFailure::Connect { timed_out: true };
    const REFUSED: AttemptFailure = AttemptFailure::Connect { timed_out: false };
    const REUSED: AttemptFailure = AttemptFailure::Broken {
        reused: true,
        during_body: false,
    };
    const FRESH: AttemptFailure = AttemptFailure::Broken {
        reused: false,
        during_body: false,
    };
    const BODY: AttemptFailure = AttemptFailure::Broken {
        reused: false,
        during_body: true,
    };
    const SLOW: AttemptFailure = AttemptFailure::TryTimeout;

    fn d(next: NextAttempt, eject: bool) -> Decision {
        Decision { next, eject }
    }

    #[test]
    fn a_timed_out_connect_tries_the_same_backend_then_another() {
        let mut r = Retries::default();
        assert_eq!(r.after(TIMEOUT, true), d(NextAttempt::SameBackend, false));
        assert_eq!(r.after(TIMEOUT, true), d(NextAttempt::OtherBackend, true));
        assert_eq!(r.after(TIMEOUT, true), d(NextAttempt::GiveUp, true));
    }

    #[test]
    fn a_refused_connect_goes_elsewhere_at_once_and_ejects() {
        let mut r = Retries::default();
        assert_eq!(r.after(REFUSED, true), d(NextAttempt::OtherBackend, true));
        assert_eq!(r.after(REFUSED, true), d(NextAttempt::GiveUp, true));
    }

    #[test]
    fn a_reused_connection_that_broke_is_retried_fresh_on_the_same_backend_without_ejecting() {
        let mut r = Retries::default();
        assert_eq!(r.after(REUSED, true), d(NextAttempt::SameBackend, false));
        assert_eq!(r.after(FRESH, true), d(NextAttempt::OtherBackend, true));
    }

    #[test]
    fn a_request_that_cannot_be_replayed_is_never_retried() {
        for failure in [TIMEOUT, REFUSED, REUSED, FRESH, BODY, SLOW] {
            let decision = Retries::default().after(failure, false);
            assert_eq!(decision.next, NextAttempt::GiveUp, "{failure:?}");
        }
        // Ejection still follows the failure.
        assert!(Retries::default().after(REFUSED, false).eject);
        assert!(!Retries::default().after(BODY, false).eject);
        assert!(!Retries::default().after(REUSED, false).eject);
    }

    #[test]
    fn a_try_that_timed_out_goes_to_another_backend_once_without_ejecting() {
        let mut r = Retries::default();
        assert_eq!(r.after(SLOW, true), d(NextAttempt::OtherBackend, false));
        assert_eq!(r.after(SLOW, true), d(NextAttempt::GiveUp, false));
    }

    #[test]
    fn at_most_one_retry_on_the_same_backend_and_one_elsewhere() {
        let mut r = Retries::default();
        assert_eq!(r.after(REUSED, true).next, NextAttempt::SameBackend);
        assert_eq!(r.after(TIMEOUT, true).next, NextAttempt::OtherBackend);
        assert_eq!(r.after(REUSED, true).next, NextAttempt::GiveUp);
    }
}
