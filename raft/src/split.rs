//! The replicated weights of split routes (blue-green and canary, issue 25 item 3) and the
//! shift that moves them: what `ctl shift` started, how far it got, and how it ended.
//!
//! A route's entry replaces the file's weights while it names the same pools (the node
//! checks that). Every write names the generation it read (`Command::SetSplit`): a write
//! that raced with another (an operator's abort and the leader's next step) is ignored
//! when it commits second, so the shifter never overwrites what it did not see.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Pool -> weight.
pub type Weights = BTreeMap<String, u32>;

/// One split route's replicated weights and its shift.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitState {
    /// Bumped by every accepted write.
    pub generation: u64,
    /// What the route runs now.
    pub weights: Weights,
    /// The shift that runs, or the last one that ran.
    pub shift: Option<Shift>,
}

/// What an operator asks for (`ctl shift`): which pool's share moves where, how fast,
/// and the bounds that roll it back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftPlan {
    /// The pool whose share moves (the new version: green, the canary).
    pub pool: String,
    /// Its share at the end, in percent of the route's traffic.
    pub to: u32,
    /// Percentage points per step.
    pub step: u32,
    /// How long each step runs before it is judged.
    pub every_ms: u64,
    /// Rollback when the pool's error rate over a step exceeds this (per million).
    pub max_errors_ppm: Option<u32>,
    /// Rollback when the pool's p99 over a step exceeds this (microseconds).
    pub max_p99_us: Option<u64>,
}

/// A gradual move of one pool's share: its plan and how far it got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shift {
    pub plan: ShiftPlan,
    /// The weights before the shift: where a rollback returns to.
    pub start: Weights,
    /// Steps taken so far.
    pub steps: u32,
    pub phase: Phase,
    /// The figures of the last judged step, all nodes together.
    pub last: Option<Window>,
    /// Wall-clock milliseconds (the leader's) of the start and of the last change.
    pub started_ms: u64,
    pub changed_ms: u64,
}

/// Where a shift stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Steps go on (the last one is being watched).
    #[default]
    Running,
    /// The pool reached `to` and its last step passed.
    Done,
    /// A step broke a bound; the weights went back to `start`.
    RolledBack { reason: String },
    /// The operator stopped it; the weights went back to `start`.
    Aborted,
}

/// One step's figures for the shifted pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Responses and failed requests of the pool during the step.
    pub requests: u64,
    /// 5xx responses and requests fulcrum failed for the pool (502, 503, 504).
    pub errors: u64,
    /// Estimated 99th percentile of response-head latency (none without responses).
    pub p99_us: Option<u64>,
}

impl SplitState {
    /// Applies a write that read generation `expect`: ignored unless that is still the
    /// current one.
    pub fn write(&mut self, expect: u64, next: &SplitState) {
        if self.generation != expect {
            return;
        }
        *self = SplitState {
            generation: expect + 1,
            ..next.clone()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(blue: u32, green: u32) -> Weights {
        [("blue".to_string(), blue), ("green".to_string(), green)].into()
    }

    #[test]
    fn a_write_that_read_an_old_generation_is_ignored() {
        let mut st = SplitState::default();
        let step = SplitState {
            weights: weights(80, 20),
            ..Default::default()
        };
        st.write(0, &step);
        assert_eq!((st.generation, st.weights.clone()), (1, weights(80, 20)));
        // The leader's next step read generation 0 too, and commits after: ignored.
        let stale = SplitState {
            weights: weights(70, 30),
            ..Default::default()
        };
        st.write(0, &stale);
        assert_eq!((st.generation, st.weights.clone()), (1, weights(80, 20)));
        st.write(1, &stale);
        assert_eq!((st.generation, st.weights), (2, weights(70, 30)));
    }
}
