//! The dual-holder check, from two views: the netlink one ("the address is configured in
//! that node's namespace") and, when the local wire probe ran, the client's one ("that
//! node answered ARP or a TCP SYN for the VIP"). Also the holder lookups the premises use.
//!
//! A failed probe is unknown: it never counts as "not holding". The check fails as "not
//! measured" when a view has too few samples, too many unknown ones, or nobody ever held
//! the VIP; it fails outright when an observer died.

use super::{AnswerKind, Check, HolderSample, Inputs, Probed, Recording, WireSample};

const NAME: &str = "dual VIP holders";

/// One sample reduced to what the overlap needs.
struct Point {
    t_ms: f64,
    /// Nodes known to hold (answer for) the VIP.
    holders: usize,
    /// Probe slots that failed.
    unknown: usize,
    slots: usize,
}

impl From<&HolderSample> for Point {
    fn from(s: &HolderSample) -> Point {
        Point {
            t_ms: s.t_ms,
            holders: s.holders.iter().filter(|h| **h == Some(true)).count(),
            unknown: s.holders.iter().filter(|h| h.is_none()).count(),
            slots: s.holders.len(),
        }
    }
}

impl From<&WireSample> for Point {
    fn from(s: &WireSample) -> Point {
        let arp = s.arp.iter().filter(|a| **a).count() + s.strangers as usize;
        let tcp = s.tcp.iter().filter(|a| **a).count();
        Point {
            t_ms: s.t_ms,
            holders: if s.failed { 0 } else { arp.max(tcp) },
            unknown: usize::from(s.failed),
            slots: 1,
        }
    }
}

/// What one view says.
struct View {
    samples: usize,
    unknown_share: f64,
    ever_held: bool,
    dual_samples: usize,
    longest_ms: f64,
    /// Dual samples after the "no dual from here" fence.
    after_fence: usize,
}

fn measure(points: &[Point], fence: f64, poll_ms: f64) -> View {
    let mut longest: f64 = 0.0;
    let mut start: Option<f64> = None;
    let mut last_dual = 0.0;
    let (mut dual, mut after, mut unknown, mut slots) = (0, 0, 0, 0);
    for p in points {
        unknown += p.unknown;
        slots += p.slots;
        if p.holders >= 2 {
            dual += 1;
            last_dual = p.t_ms;
            start.get_or_insert(p.t_ms);
            if p.t_ms > fence {
                after += 1;
            }
        } else if let Some(begin) = start.take() {
            // The overlap lasted until this sample showed it over.
            longest = longest.max(p.t_ms - begin);
        }
    }
    if let Some(begin) = start {
        longest = longest.max(last_dual - begin + poll_ms);
    }
    View {
        samples: points.len(),
        unknown_share: unknown as f64 / slots.max(1) as f64,
        ever_held: points.iter().any(|p| p.holders > 0),
        dual_samples: dual,
        longest_ms: longest,
        after_fence: after,
    }
}

/// Why a view cannot be trusted, if it cannot.
fn insufficient(view: &View, inp: &Inputs) -> Option<String> {
    let promised = inp.plan.load_ms as f64 / inp.poll_ms.max(1.0);
    let need = (promised * inp.plan.enough.holder_share).ceil() as usize;
    let max_unknown = inp.plan.enough.max_unknown_share;
    if view.samples < need {
        return Some(format!("{} samples (need {need})", view.samples));
    }
    if view.unknown_share > max_unknown {
        return Some(format!(
            "{:.1}% of probes failed (max {:.1}%)",
            view.unknown_share * 100.0,
            max_unknown * 100.0
        ));
    }
    if !view.ever_held {
        return Some(format!("nobody held the VIP in {} samples", view.samples));
    }
    None
}

/// `Ok(figure, longest, pass)` for a trustworthy view, `Err(check)` otherwise.
fn judge(
    label: &str,
    view: &View,
    inp: &Inputs,
    fence: f64,
    max: f64,
) -> Result<(String, f64, bool), Check> {
    if let Some(why) = insufficient(view, inp) {
        return Err(Check::not_measured(NAME, format!("{label}: {why}")));
    }
    let fence_text = if fence.is_finite() {
        format!(", {} after {fence:.0} ms (must be 0)", view.after_fence)
    } else {
        String::new()
    };
    let figure = format!(
        "{label}: {:.0} ms overlap, {}/{} samples{fence_text}",
        view.longest_ms, view.dual_samples, view.samples
    );
    let pass = view.longest_ms <= max && view.after_fence == 0;
    Ok((figure, view.longest_ms, pass))
}

pub fn dual_holders(inp: &Inputs) -> Check {
    let rec = inp.rec;
    let fence = rec
        .events
        .iter()
        .filter(|e| e.no_dual_after)
        .map(|e| e.t_ms)
        .fold(f64::INFINITY, f64::min);
    let netlink: Vec<Point> = match &rec.holders {
        Probed::Samples(s) => s.iter().map(Point::from).collect(),
        Probed::Unavailable(why) => return Check::not_measured(NAME, format!("netlink: {why}")),
        Probed::Died(why) => return Check::failed(NAME, format!("netlink poller died: {why}")),
    };
    let expect = inp.expect();
    let wire = match &rec.wire {
        Probed::Samples(s) => {
            let points: Vec<Point> = s.iter().map(Point::from).collect();
            let view = measure(&points, fence, inp.poll_ms);
            match judge("wire", &view, inp, fence, expect.max_dual_ms) {
                Ok((figure, longest, pass)) => {
                    let first = s.iter().zip(&points).find(|(_, p)| p.holders >= 2);
                    let figure = match first {
                        Some((sample, _)) => format!("{figure}, first {}", describe(sample)),
                        None => figure,
                    };
                    Some((figure, longest, pass))
                }
                Err(check) => return check,
            }
        }
        Probed::Unavailable(_) => None,
        Probed::Died(why) => return Check::failed(NAME, format!("wire probe died: {why}")),
    };
    // A kept, fenced address only counts as harmless when the wire showed it answering
    // nothing; without the wire view the netlink one is held to `max_dual_ms`.
    let netlink_max = match &wire {
        Some((_, _, true)) => expect.max_dual_ms.max(expect.kept_address_ms),
        _ => expect.max_dual_ms,
    };
    let netlink_view = measure(&netlink, fence, inp.poll_ms);
    let nl = match judge("netlink", &netlink_view, inp, fence, netlink_max) {
        Ok(v) => v,
        Err(check) => return check,
    };
    let (mut figure, mut longest, mut pass) = nl;
    match wire {
        Some((w_figure, w_longest, w_pass)) => {
            figure = format!("{figure}; {w_figure}");
            longest = longest.max(w_longest);
            pass &= w_pass;
        }
        None => figure.push_str("; wire: not sampled"),
    }
    Check::new(
        NAME,
        format!(
            "{figure} (max {netlink_max:.0} netlink, {:.0} wire)",
            expect.max_dual_ms
        ),
        Some(longest),
        pass,
    )
}

/// One wire sample's answers in arrival order, e.g. `at 7305 ms: n1 syn-ack +0.31 ms,
/// n2 rst +2.90 ms`, so a dual sample says which kernels answered what, and how far apart.
fn describe(sample: &WireSample) -> String {
    let answers: Vec<String> = sample
        .answers
        .iter()
        .map(|a| {
            let who = match a.node {
                usize::MAX => "stranger".to_string(),
                i => format!("n{}", i + 1),
            };
            let kind = match a.kind {
                AnswerKind::Arp => "arp",
                AnswerKind::SynAck => "syn-ack",
                AnswerKind::Rst => "rst",
            };
            format!("{who} {kind} +{:.2} ms", f64::from(a.after_us) / 1000.0)
        })
        .collect();
    let sent: Vec<String> = sample
        .syn_sent_us
        .iter()
        .enumerate()
        .map(|(i, us)| format!("n{} +{:.2}", i + 1, f64::from(*us) / 1000.0))
        .collect();
    format!(
        "at {:.0} ms: {} (SYNs sent {} ms)",
        sample.t_ms,
        answers.join(", "),
        sent.join(", ")
    )
}

/// Who holds the VIP per sample, as `(t_ms, per-node Option<bool>)`: the netlink samples,
/// else the nodes' own word from `/status`.
pub fn holder_view(rec: &Recording) -> Vec<(f64, Vec<Option<bool>>)> {
    match &rec.holders {
        Probed::Samples(s) => s.iter().map(|h| (h.t_ms, h.holders.clone())).collect(),
        _ => rec
            .statuses
            .iter()
            .map(|s| {
                let held = s
                    .nodes
                    .iter()
                    .map(|n| n.as_ref().and_then(|n| n.vip_held))
                    .collect();
                (s.t_ms, held)
            })
            .collect(),
    }
}

/// The wire samples, if the wire probe ran.
pub fn wire_view(rec: &Recording) -> Option<&[WireSample]> {
    rec.wire.samples()
}
