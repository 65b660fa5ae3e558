//! `POST /shift` and `POST /shift/abort`: start or stop a blue-green / canary shift of a
//! split route (`ctl shift`); the work is `control::shift`'s.
//!
//! `POST /shift?route=R&pool=P&to=100&step=10&every=30s[&max_error_rate=0.05][&max_p99=500ms]`
//! answers the committed state of the route (`{generation, weights, shift}`).

use super::{json, param, query_params, text, AdminResponse};
use crate::app::Node;
use crate::control::shift::{self, ShiftError};
use fulcrum_raft::ShiftPlan;
use http::{Request, StatusCode};
use hyper::body::Incoming;

pub(super) async fn start(node: &Node, req: &Request<Incoming>) -> AdminResponse {
    let params = query_params(req);
    let Some(route) = param(&params, "route") else {
        return text(StatusCode::BAD_REQUEST, "need ?route=NAME\n");
    };
    let request = match request(&params) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
    };
    tracing::info!(%route, ?request, "shift asked for");
    answer(shift::start(node.cluster(), &node.dp, &route, &request).await)
}

pub(super) async fn abort(node: &Node, req: &Request<Incoming>) -> AdminResponse {
    let params = query_params(req);
    let Some(route) = param(&params, "route") else {
        return text(StatusCode::BAD_REQUEST, "need ?route=NAME\n");
    };
    tracing::info!(%route, "shift abort asked for");
    answer(shift::abort(node.cluster(), &node.dp, &route).await)
}

fn answer(result: Result<fulcrum_raft::SplitState, ShiftError>) -> AdminResponse {
    match result {
        Ok(state) => json(
            StatusCode::OK,
            &serde_json::to_value(state).unwrap_or_default(),
        ),
        Err(e @ (ShiftError::NotClustered | ShiftError::Refused(_) | ShiftError::Raced(_))) => {
            text(StatusCode::CONFLICT, &format!("{e}\n"))
        }
        Err(e @ ShiftError::UnknownRoute(_)) => text(StatusCode::NOT_FOUND, &format!("{e}\n")),
        Err(e @ ShiftError::Cluster(_)) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n")),
    }
}

/// The shift asked for by the query: `pool`, `to`, `step`, `every` (a duration),
/// optional `max_error_rate` (a fraction, 0.05 = 5%) and `max_p99` (a duration).
fn request(params: &[(String, String)]) -> Result<ShiftPlan, String> {
    let need = |name: &str| param(params, name).ok_or(format!("need {name}="));
    let number = |name: &str| -> Result<u32, String> {
        need(name)?
            .parse()
            .map_err(|_| format!("{name} must be a whole number of percent"))
    };
    let duration = |name: &str, text: String| {
        humantime::parse_duration(&text).map_err(|e| format!("{name}: {e}"))
    };
    let max_errors_ppm = match param(params, "max_error_rate") {
        None => None,
        Some(v) => match v.parse::<f64>() {
            Ok(rate) if (0.0..=1.0).contains(&rate) => Some((rate * 1e6).round() as u32),
            _ => return Err("max_error_rate must be a fraction 0..=1 (0.05 = 5%)".into()),
        },
    };
    let max_p99_us = match param(params, "max_p99") {
        None => None,
        Some(v) => Some(duration("max_p99", v)?.as_micros() as u64),
    };
    Ok(ShiftPlan {
        pool: need("pool")?,
        to: number("to")?,
        step: number("step")?,
        every_ms: duration("every", need("every")?)?.as_millis() as u64,
        max_errors_ppm,
        max_p99_us,
    })
}
