//! The dashboard: one self-contained HTML page (its own small script and styles, nothing
//! fetched from elsewhere) that reads `GET /cluster` every second and draws the cluster,
//! the pools and the recent transitions. Drain and undrain buttons appear only once an
//! admin token is typed in; the token stays in the browser tab and is sent as a bearer
//! header, exactly as `ctl drain` does.

use super::AdminResponse;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// The page itself, built into the binary.
const PAGE: &str = include_str!("dashboard.html");

/// `GET /` and `GET /dashboard`.
pub fn page() -> AdminResponse {
    let mut resp = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    // The page loads nothing from elsewhere; say so to the browser too.
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
        ),
    );
    resp
}
