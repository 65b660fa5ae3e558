//! The verdicts, computed from what a scenario recorded.
//!
//! Every scenario is judged in two steps. First its premises ([`premises`]): the fault hit
//! the node it had to hit, took effect, and the load ran through the whole fault window;
//! a premise that is not met fails the scenario as "premise not met", whatever the
//! figures say. Then its properties ([`load_checks`], [`holders`], [`end_state`]), each of
//! which also fails as "not measured" when it saw too little data to say anything.
//!
//! Inputs: the load samples, the VIP holder samples (netlink and, locally, on the wire),
//! the `/status` samples, the fault timeline and the nodes' state at the end, all recorded
//! by the runner. What a scenario requires is data in `scenarios/plan.rs`.

pub mod convergence;
mod effect;
mod end_state;
pub mod holders;
mod load_checks;
pub mod premises;
mod steady;
#[cfg(test)]
mod synth;
#[cfg(test)]
mod synth_heal;
#[cfg(test)]
mod tests;

use crate::faults::NodeStatus;
use crate::host_stalls::HostStall;
use fulcrum_testbed::load::Sample;
use serde::Serialize;

pub use premises::{Premise, Which};

/// What happened at a point of the timeline (a fault, its repair, or something the
/// harness saw, like a process exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Fault {
    Kill,
    Freeze,
    Resume,
    /// SIGTERM: a planned stop.
    Stop,
    /// The harness saw the stopped process exit.
    Exited,
    Start,
    Partition,
    Heal,
    NetemOn,
    NetemOff,
    RedisDown,
    RedisUp,
    BackendDown,
    BackendUp,
    ConfigPut,
    /// The node's link goes down (with a kill -9: the node "dies", peers hear silence).
    LinkDown,
    LinkUp,
    /// Busy-loop processes start (more than cores) / stop.
    HogOn,
    HogOff,
    /// Another process takes a port the next config needs on one node / lets it go.
    PortBusy,
    PortFree,
}

impl Fault {
    /// The event that ends this fault's window on the same target, if any.
    pub fn repair(self) -> Option<Fault> {
        match self {
            Fault::Kill | Fault::Stop | Fault::Exited => Some(Fault::Start),
            Fault::Freeze => Some(Fault::Resume),
            Fault::Partition => Some(Fault::Heal),
            Fault::NetemOn => Some(Fault::NetemOff),
            Fault::RedisDown => Some(Fault::RedisUp),
            Fault::BackendDown => Some(Fault::BackendUp),
            Fault::LinkDown => Some(Fault::LinkUp),
            Fault::HogOn => Some(Fault::HogOff),
            Fault::PortBusy => Some(Fault::PortFree),
            _ => None,
        }
    }
}

/// One fault (or repair) on the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub t_ms: f64,
    pub what: String,
    pub fault: Fault,
    /// The node the fault was aimed at (None for Redis and backend faults).
    pub target: Option<usize>,
    /// Failures sent within `[t - request timeout, t + allow_ms]` are expected.
    pub allow_ms: f64,
    /// The VIP has to move (or recover): measure the failover time from here.
    pub failover: bool,
    /// A backend went down (`Some((name, true))`) or came back (`false`).
    pub backend_down: Option<(String, bool)>,
    /// From here on no two nodes may hold the VIP whatever the fencing mode (a resumed
    /// zombie must not re-announce without a fresh lease).
    pub no_dual_after: bool,
    /// What a CPU hog measured over its window (set on its `HogOn` event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUse>,
}

/// CPU use over a hog's window, from `/proc`: evidence the machine was saturated.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuUse {
    pub procs: usize,
    pub cores: usize,
    /// CPU time the hog processes got, in % of every core over the window.
    pub hog_pct: f64,
    /// Idle time of the whole machine, in % of every core over the window.
    pub idle_pct: f64,
}

/// Bounds a scenario must stay within.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub min_availability_pct: f64,
    pub max_outage_ms: f64,
    pub max_failover_ms: f64,
    /// Longest time two nodes may hold the VIP at once (0 except fast fencing + SIGSTOP).
    pub max_dual_ms: f64,
    /// Longest a stopping holder may keep its address configured (fenced: it answers
    /// nothing new, and forwards to the successor) beside the new holder, so that the
    /// connections it accepted can finish. Counted in the netlink view only, and only
    /// when the wire view ran and saw no two nodes answering beyond `max_dual_ms`.
    pub kept_address_ms: f64,
}

/// How much data a verdict needs before it means anything.
#[derive(Debug, Clone, Copy)]
pub struct Enough {
    /// Requests sent before the first fault, between the first and the last event, and
    /// after the last event.
    pub load: [usize; 3],
    /// Longest pause between two sends around the fault window (the load must not stall).
    pub max_send_gap_ms: f64,
    /// Pinned requests the affinity check must see, in all and after the first fault.
    pub pinned: usize,
    pub pinned_after_fault: usize,
    /// Holder samples needed, as a share of what the sampling period promises.
    pub holder_share: f64,
    /// Largest share of probes that may fail (a failed probe is "unknown").
    pub max_unknown_share: f64,
}

/// Everything a scenario is judged against: bounds, data needs and premises.
#[derive(Debug, Clone)]
pub struct Plan {
    pub load_ms: u64,
    pub expect: Expect,
    pub enough: Enough,
    pub premises: Vec<Premise>,
    /// No leader change and no VIP move may happen between this fault and its repair.
    pub steady_during: Option<Fault>,
}

/// A pass/fail verdict with its figure.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub figure: String,
    pub value: Option<f64>,
    pub pass: bool,
}

impl Check {
    fn new(name: &str, figure: String, value: Option<f64>, pass: bool) -> Check {
        Check {
            name: name.to_string(),
            figure,
            value,
            pass,
        }
    }
    pub fn failed(name: &str, why: String) -> Check {
        Check::new(name, why, None, false)
    }
    pub fn passed(name: &str, figure: String) -> Check {
        Check::new(name, figure, None, true)
    }
    /// The check could not be judged: too little data.
    fn not_measured(name: &str, why: String) -> Check {
        Check::new(name, format!("not measured: {why}"), None, false)
    }
}

/// What the nodes looked like at the end of the scenario.
#[derive(Debug, Clone, Serialize)]
pub struct NodeEnd {
    pub name: String,
    /// Process state when known (local runs).
    pub running: Option<bool>,
    pub config_version: Option<u64>,
    pub role: Option<String>,
}

/// One look at every node: `holders[i]` is whether node `i` has the VIP configured,
/// `None` when the probe failed (unknown, never "not holding").
#[derive(Debug, Clone, Serialize)]
pub struct HolderSample {
    pub t_ms: f64,
    pub holders: Vec<Option<bool>>,
}

/// One look at the wire from the client's side: which nodes answered an ARP request for
/// the VIP, and which answered a TCP SYN to the VIP sent to their MAC.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WireSample {
    pub t_ms: f64,
    pub arp: Vec<bool>,
    pub tcp: Vec<bool>,
    /// ARP replies for the VIP from a MAC that is no node's.
    pub strangers: u32,
    /// The probe could not send: this sample says nothing.
    pub failed: bool,
    /// Each answer as it came in (for reading a dual sample: who answered what, when).
    pub answers: Vec<WireAnswer>,
    /// When each node's SYN left, µs after the sample's first frame.
    pub syn_sent_us: Vec<u32>,
}

/// One answer to a wire sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WireAnswer {
    /// The node's index (`usize::MAX`: a stranger's ARP reply).
    pub node: usize,
    pub kind: AnswerKind,
    /// When it came in, µs after the sample's first frame was sent.
    pub after_us: u32,
}

/// What a node sent back to the wire probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AnswerKind {
    Arp,
    SynAck,
    Rst,
}

/// One round of `/status` calls; `None` where a node did not answer.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSample {
    /// When the round started (every call was sent then).
    pub t_ms: f64,
    /// When its last answer came in (or its last call gave up): an answer seen in this
    /// round was given somewhere between the two.
    pub done_ms: f64,
    pub nodes: Vec<Option<NodeStatus>>,
}

/// Samples of one observer, or why there are none.
#[derive(Debug, Clone)]
pub enum Probed<T> {
    Samples(Vec<T>),
    /// Nothing could sample this (e.g. no `vip_check` in a remote inventory).
    Unavailable(String),
    /// The observer died mid-run: its samples cannot be trusted.
    Died(String),
}

impl<T> Probed<T> {
    pub fn samples(&self) -> Option<&[T]> {
        match self {
            Probed::Samples(s) => Some(s),
            _ => None,
        }
    }
}

/// Everything one scenario run recorded.
#[derive(Debug, Clone)]
pub struct Recording {
    pub samples: Vec<Sample>,
    pub holders: Probed<HolderSample>,
    pub wire: Probed<WireSample>,
    pub statuses: Vec<StatusSample>,
    pub events: Vec<Event>,
    pub nodes_end: Vec<NodeEnd>,
    pub min_config_version: Option<u64>,
    /// Moments a CPU of the machine ran nothing (see `host_stalls`).
    pub host_stalls: Vec<HostStall>,
}

/// What the evaluation needs besides the recording.
pub struct Inputs<'a> {
    pub rec: &'a Recording,
    pub plan: &'a Plan,
    /// The holder sampling period (slack for "within" premises and overlap lengths).
    pub poll_ms: f64,
    pub timeout_ms: f64,
}

impl Inputs<'_> {
    fn expect(&self) -> &Expect {
        &self.plan.expect
    }
}

/// Premises first, then the properties.
pub fn evaluate(inp: &Inputs) -> Vec<Check> {
    let mut out = premises::evaluate(inp);
    out.push(load_checks::coverage(inp));
    out.extend([
        load_checks::availability(inp),
        load_checks::longest_outage(inp),
        load_checks::failover(inp),
        holders::dual_holders(inp),
        load_checks::affinity(inp),
        load_checks::lost(inp),
        end_state::converged(inp),
        end_state::crashes(inp),
    ]);
    if let Some(fault) = inp.plan.steady_during {
        out.push(steady::steady(inp, fault));
    }
    out
}

/// Sample counts behind the verdicts, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub load_before: usize,
    pub load_during: usize,
    pub load_after: usize,
    pub holder_samples: usize,
    pub wire_samples: usize,
    pub status_samples: usize,
    pub pinned: usize,
}

pub fn counts(rec: &Recording) -> Counts {
    let [before, during, after] = load_checks::phase_counts(rec);
    Counts {
        load_before: before,
        load_during: during,
        load_after: after,
        holder_samples: rec.holders.samples().map_or(0, |s| s.len()),
        wire_samples: rec.wire.samples().map_or(0, |s| s.len()),
        status_samples: rec.statuses.len(),
        pinned: load_checks::pinned_requests(rec, 0.0),
    }
}
