//! A pool's running totals on one node, for judging a step of a shift
//! (`control::shift`): responses, 5xx responses and the pool's latency histogram, all
//! counters kept anyway (`metrics`: per backend by status class, per pool
//! `fulcrum_request_duration_seconds`). Read from the data plane for this node and
//! from `/status` for the others; the difference of two readings is one step's window.

use crate::pool::PoolRuntime;
use serde_json::Value;

/// Cumulative figures of one pool on one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolFigures {
    /// Responses from the pool's backends, every status class.
    pub responses: u64,
    /// Of them 5xx.
    pub errors: u64,
    /// The pool's latency histogram: cumulative `(upper bound s, count)`, `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
}

impl PoolFigures {
    /// This node's figures of `pool` now.
    pub fn of(pool: &PoolRuntime) -> PoolFigures {
        let counts = pool.backends.iter().map(|b| b.metrics.counts());
        let (responses, errors) = counts.fold((0, 0), |(all, bad), c| {
            (all + c.iter().sum::<u64>(), bad + c[4])
        });
        let buckets = (pool.backends.first())
            .map(|b| b.metrics.latency_buckets())
            .unwrap_or_default();
        PoolFigures {
            responses,
            errors,
            buckets,
        }
    }

    /// The figures of `pool` in another node's `/status` (its `pools[]` entry: the
    /// backends' `responses` by class and the pool's `latency_buckets`).
    pub fn from_status(status: &Value, pool: &str) -> Option<PoolFigures> {
        let entry = (status["pools"].as_array()?)
            .iter()
            .find(|p| p["name"] == pool)?;
        let mut figures = PoolFigures::default();
        for backend in entry["backends"].as_array()? {
            let classes = backend["responses"].as_object()?;
            figures.responses += classes.values().filter_map(Value::as_u64).sum::<u64>();
            figures.errors += classes.get("5xx").and_then(Value::as_u64).unwrap_or(0);
        }
        figures.buckets = (entry["latency_buckets"].as_array()?)
            .iter()
            .filter_map(|pair| {
                let le = pair.get(0)?.as_f64().unwrap_or(f64::INFINITY);
                Some((le, pair.get(1)?.as_u64()?))
            })
            .collect();
        Some(figures)
    }

    /// What happened between `earlier` and this reading (a counter that went back, a
    /// restarted node, counts from 0).
    pub fn since(&self, earlier: &PoolFigures) -> PoolFigures {
        let before = |i: usize| earlier.buckets.get(i).map_or(0, |b| b.1);
        let restarted = self.responses < earlier.responses;
        let minus = |now: u64, then: u64| {
            if restarted {
                now
            } else {
                now.saturating_sub(then)
            }
        };
        PoolFigures {
            responses: minus(self.responses, earlier.responses),
            errors: minus(self.errors, earlier.errors),
            buckets: (self.buckets.iter().enumerate())
                .map(|(i, &(le, n))| (le, minus(n, before(i))))
                .collect(),
        }
    }

    /// Adds another node's window to this one.
    pub fn add(&mut self, other: &PoolFigures) {
        self.responses += other.responses;
        self.errors += other.errors;
        if self.buckets.is_empty() {
            self.buckets = other.buckets.clone();
            return;
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.1 += theirs.1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn figures_read_from_a_status_document_and_subtract() {
        let status = |ok: u64, bad: u64, fast: u64| {
            json!({"pools": [
                {"name": "blue", "backends": [], "latency_buckets": []},
                {"name": "green", "backends": [
                    {"responses": {"1xx": 0, "2xx": ok, "3xx": 0, "4xx": 1, "5xx": bad}},
                    {"responses": {"1xx": 0, "2xx": ok, "3xx": 0, "4xx": 0, "5xx": 0}},
                ], "latency_buckets": [[0.001, fast], [0.002, fast + bad], [null, fast + bad]]},
            ]})
        };
        let before = PoolFigures::from_status(&status(10, 0, 21), "green").unwrap();
        assert_eq!((before.responses, before.errors), (21, 0));
        assert_eq!(before.buckets.last(), Some(&(f64::INFINITY, 21)));
        let after = PoolFigures::from_status(&status(15, 4, 31), "green").unwrap();
        let window = after.since(&before);
        assert_eq!((window.responses, window.errors), (14, 4));
        assert_eq!(
            window.buckets,
            [(0.001, 10), (0.002, 14), (f64::INFINITY, 14)]
        );
        let mut sum = window.clone();
        sum.add(&window);
        assert_eq!((sum.responses, sum.buckets[1].1), (28, 28));
        assert!(PoolFigures::from_status(&status(1, 1, 1), "teal").is_none());
        // A node that restarted counts from zero.
        assert_eq!(before.since(&after).responses, before.responses);
    }
}
