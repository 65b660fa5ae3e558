//! The rule of the scale hook: a call when saturation stays above `above` (or below
//! `below`) for `for`, at most one call per `cooldown`. Pure: fed samples and instants.

use std::time::{Duration, Instant};

/// Which way the pool should be scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// The bounds of one hook.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub above: f64,
    pub below: f64,
    pub hold: Duration,
    pub cooldown: Duration,
}

/// Where one pool stands: since when it is past a bound, and the last call.
#[derive(Debug, Default)]
pub struct Decider {
    past: Option<(Direction, Instant)>,
    last_call: Option<Instant>,
}

impl Decider {
    /// Feeds one sample taken at `now`; returns the call to make, if any.
    pub fn sample(&mut self, bounds: &Bounds, saturation: f64, now: Instant) -> Option<Direction> {
        let side = if saturation > bounds.above {
            Some(Direction::Up)
        } else if saturation < bounds.below {
            Some(Direction::Down)
        } else {
            None
        };
        let since = match (side, self.past) {
            (None, _) => {
                self.past = None;
                return None;
            }
            (Some(d), Some((was, since))) if d == was => since,
            (Some(d), _) => {
                self.past = Some((d, now));
                now
            }
        };
        let held = now.saturating_duration_since(since) >= bounds.hold;
        let cooled = self
            .last_call
            .is_none_or(|at| now.saturating_duration_since(at) >= bounds.cooldown);
        if held && cooled {
            self.last_call = Some(now);
            return side;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds {
        above: 0.8,
        below: 0.3,
        hold: Duration::from_secs(3),
        cooldown: Duration::from_secs(10),
    };

    /// Feeds one sample a second from `start + from` s; returns the calls with their second.
    fn run(d: &mut Decider, start: Instant, from: u64, samples: &[f64]) -> Vec<(u64, Direction)> {
        let mut calls = Vec::new();
        for (i, s) in samples.iter().enumerate() {
            let t = from + i as u64;
            if let Some(dir) = d.sample(&B, *s, start + Duration::from_secs(t)) {
                calls.push((t, dir));
            }
        }
        calls
    }

    #[test]
    fn a_call_after_the_hold_then_none_within_the_cooldown() {
        let mut d = Decider::default();
        let t0 = Instant::now();
        let calls = run(&mut d, t0, 0, &[0.9; 12]);
        assert_eq!(calls, vec![(3, Direction::Up)]);
        // Still above after the cool-down: a second call, 10 s after the first.
        let calls = run(&mut d, t0, 12, &[0.9; 2]);
        assert_eq!(calls, vec![(13, Direction::Up)]);
    }

    #[test]
    fn a_dip_restarts_the_hold() {
        let mut d = Decider::default();
        let t0 = Instant::now();
        let calls = run(&mut d, t0, 0, &[0.9, 0.9, 0.5, 0.9, 0.9, 0.9, 0.9]);
        assert_eq!(calls, vec![(6, Direction::Up)]);
    }

    #[test]
    fn down_waits_for_the_cooldown_of_the_up_call() {
        let mut d = Decider::default();
        let t0 = Instant::now();
        let mut samples = vec![0.9; 4];
        samples.extend([0.1; 12]);
        let calls = run(&mut d, t0, 0, &samples);
        assert_eq!(calls, vec![(3, Direction::Up), (13, Direction::Down)]);
    }

    #[test]
    fn between_the_bounds_nothing_is_called() {
        let mut d = Decider::default();
        assert_eq!(run(&mut d, Instant::now(), 0, &[0.5; 30]), vec![]);
    }
}
