//! The arithmetic of a shift (pure, no I/O): a pool's share of a split in percent, the
//! weights that give it a share while the other pools keep their proportions, the next
//! step, the 99th percentile of a step's latency buckets, the verdict on a step, and the
//! replicated state a start, a judged step and an abort lead to.
//!
//! Weights written by a shift always add up to 100, so they read as percentages in
//! `/status`; the file's weights may add up to anything.

use fulcrum_raft::{Phase, Shift, ShiftPlan, SplitState, Weights, Window};

/// `pool`'s share of `weights` in percent, rounded to the nearest (0 when all are 0).
pub fn share(weights: &Weights, pool: &str) -> u32 {
    let total: u64 = weights.values().map(|&w| u64::from(w)).sum();
    let mine = u64::from(weights.get(pool).copied().unwrap_or(0));
    if total == 0 {
        return 0;
    }
    ((mine * 100 + total / 2) / total) as u32
}

/// The weights (adding up to 100) that give `pool` `percent` and share the rest among
/// the other pools of `start` in `start`'s proportions (equally when they all had 0).
/// Remainders go to the largest fractions, ties to the first pool by name.
pub fn weights_at(start: &Weights, pool: &str, percent: u32) -> Weights {
    let percent = percent.min(100);
    let others: Vec<(&String, u64)> = (start.iter())
        .filter(|(name, _)| name.as_str() != pool)
        .map(|(name, &w)| (name, u64::from(w)))
        .collect();
    let total: u64 = others.iter().map(|(_, w)| w).sum();
    let rest = u64::from(100 - percent);
    let parts: Vec<(&String, u64, u64)> = others
        .iter()
        .map(|&(name, w)| {
            let (num, den) = if total == 0 {
                (rest, others.len() as u64)
            } else {
                (rest * w, total)
            };
            (name, num / den, num % den * 1_000_000 / den)
        })
        .collect();
    let given: u64 = parts.iter().map(|(_, whole, _)| whole).sum();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| parts[b].2.cmp(&parts[a].2).then(a.cmp(&b)));
    let extra: Vec<usize> = order.into_iter().take((rest - given) as usize).collect();
    let mut out: Weights = (parts.iter().enumerate())
        .map(|(i, (name, whole, _))| {
            (
                (*name).clone(),
                (whole + u64::from(extra.contains(&i))) as u32,
            )
        })
        .collect();
    out.insert(pool.to_string(), percent);
    out
}

/// The share after one more step from `now` toward `to`.
pub fn next_share(now: u32, to: u32, step: u32) -> u32 {
    if now < to {
        (now + step).min(to)
    } else {
        now.saturating_sub(step).max(to)
    }
}

/// The `q` quantile (0..1) of cumulative `(upper bound s, count)` buckets, interpolated
/// linearly inside its bucket as Prometheus' `histogram_quantile` does; a quantile in
/// the `+Inf` bucket is the last finite bound. `None` without observations.
pub fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(le, count) in buckets {
        if count as f64 >= rank {
            if !le.is_finite() {
                return Some(lower);
            }
            let inside = (count - below) as f64;
            let into = if inside > 0.0 {
                (rank - below as f64) / inside
            } else {
                1.0
            };
            return Some(lower + (le - lower) * into);
        }
        (lower, below) = (le, count);
    }
    Some(lower)
}

/// Why `window` breaks a bound of `shift`, if it does. A step in which the pool got no
/// request breaks nothing (there is nothing to judge).
pub fn breach(shift: &Shift, window: &Window) -> Option<String> {
    let plan = &shift.plan;
    if let Some(max) = plan.max_errors_ppm {
        let ppm = window.errors.saturating_mul(1_000_000) / window.requests.max(1);
        if window.requests > 0 && ppm > u64::from(max) {
            return Some(format!(
                "error rate {:.2}% ({} of {} requests) over the bound {:.2}%",
                ppm as f64 / 1e4,
                window.errors,
                window.requests,
                f64::from(max) / 1e4
            ));
        }
    }
    match (plan.max_p99_us, window.p99_us) {
        (Some(max), Some(p99)) if p99 > max => Some(format!(
            "p99 {:.1} ms over the bound {:.1} ms",
            p99 as f64 / 1e3,
            max as f64 / 1e3
        )),
        _ => None,
    }
}

/// The shortest step a shift may have.
pub const MIN_EVERY_MS: u64 = 200;

/// The state that starts `req` on a route whose pools run `base` (the replicated
/// weights, or the file's), at wall-clock `now_ms`: the first step is taken at once.
/// `running`: a shift of the route is under way (refused: abort it first).
pub fn start(
    base: &Weights,
    req: &ShiftPlan,
    running: bool,
    now_ms: u64,
) -> Result<SplitState, String> {
    if running {
        return Err(
            "a shift of this route is running; abort it first (ctl shift ROUTE --abort)".into(),
        );
    }
    if !base.contains_key(&req.pool) {
        let pools: Vec<&str> = base.keys().map(String::as_str).collect();
        return Err(format!(
            "pool `{}` is not in this split ({})",
            req.pool,
            pools.join(", ")
        ));
    }
    if req.to > 100 || req.step == 0 || req.step > 100 {
        return Err("--to must be 0..=100 and --step 1..=100 (percent of the route)".into());
    }
    if req.every_ms < MIN_EVERY_MS {
        return Err(format!("--every must be at least {MIN_EVERY_MS} ms"));
    }
    let now = share(base, &req.pool);
    if now == req.to {
        return Err(format!(
            "pool `{}` already has {now}% of the route",
            req.pool
        ));
    }
    let shift = Shift {
        plan: req.clone(),
        start: base.clone(),
        steps: 1,
        phase: Phase::Running,
        last: None,
        started_ms: now_ms,
        changed_ms: now_ms,
    };
    Ok(SplitState {
        generation: 0,
        weights: weights_at(base, &req.pool, next_share(now, req.to, req.step)),
        shift: Some(shift),
    })
}

/// The state after the running step of `split` was judged on `window`; `fault` is a
/// reason to roll back found elsewhere (the pool has no healthy backend).
pub fn after_step(
    split: &SplitState,
    window: Window,
    fault: Option<String>,
    now_ms: u64,
) -> Option<SplitState> {
    let shift = split.shift.as_ref().filter(|s| s.phase == Phase::Running)?;
    let mut next = split.clone();
    let mut moved = shift.clone();
    moved.changed_ms = now_ms;
    let plan = &shift.plan;
    let reached = share(&split.weights, &plan.pool);
    if let Some(reason) = fault.or_else(|| breach(shift, &window)) {
        next.weights = shift.start.clone();
        moved.phase = Phase::RolledBack { reason };
    } else if reached == plan.to {
        moved.phase = Phase::Done;
    } else {
        next.weights = weights_at(
            &shift.start,
            &plan.pool,
            next_share(reached, plan.to, plan.step),
        );
        moved.steps += 1;
    }
    moved.last = Some(window);
    next.shift = Some(moved);
    Some(next)
}

/// The state after the operator stopped the running shift: back to where it started.
pub fn abort(split: &SplitState, now_ms: u64) -> Result<SplitState, String> {
    let Some(shift) = split.shift.as_ref().filter(|s| s.phase == Phase::Running) else {
        return Err("no shift of this route is running".into());
    };
    let mut next = split.clone();
    next.weights = shift.start.clone();
    next.shift = Some(Shift {
        phase: Phase::Aborted,
        changed_ms: now_ms,
        ..shift.clone()
    });
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(pairs: &[(&str, u32)]) -> Weights {
        pairs.iter().map(|(p, w)| (p.to_string(), *w)).collect()
    }

    #[test]
    fn shares_round_to_the_nearest_percent() {
        assert_eq!(share(&w(&[("blue", 90), ("green", 10)]), "green"), 10);
        assert_eq!(share(&w(&[("blue", 2), ("green", 1)]), "green"), 33);
        assert_eq!(share(&w(&[("blue", 1), ("green", 2)]), "green"), 67);
        assert_eq!(share(&w(&[("blue", 0), ("green", 0)]), "green"), 0);
    }

    #[test]
    fn weights_keep_the_other_pools_proportions_and_add_up_to_100() {
        let start = w(&[("blue", 90), ("green", 10)]);
        assert_eq!(
            weights_at(&start, "green", 30),
            w(&[("blue", 70), ("green", 30)])
        );
        assert_eq!(
            weights_at(&start, "green", 100),
            w(&[("blue", 0), ("green", 100)])
        );
        let three = w(&[("a", 1), ("b", 2), ("green", 0)]);
        let got = weights_at(&three, "green", 50);
        assert_eq!(got, w(&[("a", 17), ("b", 33), ("green", 50)]));
        let none = w(&[("a", 0), ("b", 0), ("green", 10)]);
        assert_eq!(
            weights_at(&none, "green", 0),
            w(&[("a", 50), ("b", 50), ("green", 0)])
        );
        for p in 0..=100 {
            let got = weights_at(&w(&[("a", 7), ("b", 3), ("c", 5), ("g", 1)]), "g", p);
            assert_eq!(got.values().sum::<u32>(), 100, "{p}: {got:?}");
            assert_eq!(got["g"], p);
        }
    }

    #[test]
    fn steps_go_toward_the_target_and_stop_there() {
        assert_eq!(next_share(10, 100, 20), 30);
        assert_eq!(next_share(90, 100, 20), 100);
        assert_eq!(next_share(50, 0, 20), 30);
        assert_eq!(next_share(10, 0, 20), 0);
        assert_eq!(next_share(100, 100, 20), 100);
    }

    #[test]
    fn p99_is_interpolated_inside_its_bucket() {
        // 100 observations: 98 up to 1 ms, 2 between 256 and 512 ms.
        let buckets = [(0.001, 98), (0.256, 98), (0.512, 100), (f64::INFINITY, 100)];
        let p99 = quantile(&buckets, 0.99).unwrap();
        assert!((p99 - 0.384).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(&[(0.001, 0), (f64::INFINITY, 0)], 0.99), None);
        let slow = [(0.001, 0), (16.0, 0), (f64::INFINITY, 5)];
        assert_eq!(quantile(&slow, 0.99), Some(16.0), "beyond the last bound");
    }

    #[test]
    fn a_step_breaks_a_bound_only_with_requests_past_it() {
        let shift = Shift {
            plan: ShiftPlan {
                max_errors_ppm: Some(50_000),
                max_p99_us: Some(500_000),
                ..Default::default()
            },
            ..Default::default()
        };
        let window = |requests, errors, p99_us| Window {
            requests,
            errors,
            p99_us,
        };
        assert_eq!(
            breach(&shift, &window(100, 5, Some(1_000))),
            None,
            "5% is the bound"
        );
        let why = breach(&shift, &window(100, 6, Some(1_000))).unwrap();
        assert!(why.contains("error rate 6.00%"), "{why}");
        let why = breach(&shift, &window(100, 0, Some(600_000))).unwrap();
        assert!(why.contains("p99 600.0 ms"), "{why}");
        assert_eq!(
            breach(&shift, &window(0, 0, None)),
            None,
            "nothing to judge"
        );
    }

    fn request() -> ShiftPlan {
        ShiftPlan {
            pool: "green".into(),
            to: 100,
            step: 40,
            every_ms: 1000,
            max_errors_ppm: Some(50_000),
            max_p99_us: None,
        }
    }

    fn window(requests: u64, errors: u64) -> Window {
        Window {
            requests,
            errors,
            p99_us: Some(1_000),
        }
    }

    #[test]
    fn a_shift_steps_to_its_target_then_is_done() {
        let base = w(&[("blue", 90), ("green", 10)]);
        let st = start(&base, &request(), false, 7).unwrap();
        assert_eq!(
            st.weights,
            w(&[("blue", 50), ("green", 50)]),
            "first step at once"
        );
        let st = after_step(&st, window(100, 1), None, 8).unwrap();
        assert_eq!(st.weights, w(&[("blue", 10), ("green", 90)]));
        let st = after_step(&st, window(100, 0), None, 9).unwrap();
        assert_eq!(st.weights, w(&[("blue", 0), ("green", 100)]));
        let shift = st.shift.clone().unwrap();
        assert_eq!(
            (shift.steps, shift.phase),
            (3, Phase::Running),
            "the last step is watched too"
        );
        let st = after_step(&st, window(100, 0), None, 10).unwrap();
        assert_eq!(st.shift.as_ref().unwrap().phase, Phase::Done);
        assert_eq!(st.weights, w(&[("blue", 0), ("green", 100)]));
        assert!(
            after_step(&st, window(1, 1), None, 11).is_none(),
            "nothing runs"
        );
    }

    #[test]
    fn a_bad_step_or_a_fault_rolls_back_to_the_start() {
        let base = w(&[("blue", 90), ("green", 10)]);
        let st = start(&base, &request(), false, 0).unwrap();
        let back = after_step(&st, window(100, 6), None, 1).unwrap();
        assert_eq!(back.weights, base);
        let shift = back.shift.unwrap();
        assert!(matches!(&shift.phase, Phase::RolledBack { reason } if reason.contains("6.00%")));
        assert_eq!(shift.last, Some(window(100, 6)));
        let fault = Some("no backend of green is healthy".to_string());
        let back = after_step(&st, window(0, 0), fault, 1).unwrap();
        assert_eq!(back.weights, base);
        let aborted = abort(&st, 2).unwrap();
        assert_eq!(
            (aborted.weights.clone(), aborted.shift.unwrap().phase),
            (base, Phase::Aborted)
        );
    }

    #[test]
    fn start_refuses_what_cannot_run() {
        let base = w(&[("blue", 90), ("green", 10)]);
        let refused = |req: ShiftPlan, running| start(&base, &req, running, 0).unwrap_err();
        assert!(refused(request(), true).contains("abort it first"));
        let teal = ShiftPlan {
            pool: "teal".into(),
            ..request()
        };
        assert!(refused(teal, false).contains("not in this split (blue, green)"));
        let same = ShiftPlan {
            to: 10,
            ..request()
        };
        assert!(refused(same, false).contains("already has 10%"));
        let fast = ShiftPlan {
            every_ms: 10,
            ..request()
        };
        assert!(refused(fast, false).contains("at least 200 ms"));
        assert!(abort(&SplitState::default(), 0).is_err());
    }
}
