//! Health checks by the gRPC health protocol (`health.kind = "grpc"`): one
//! `grpc.health.v1.Health/Check` call over HTTP/2 (h2c, or TLS with ALPN `h2` for a pool
//! with `tls`) per probe. The backend passes when the call ends with `grpc-status: 0`
//! and the answer says `SERVING`; `NOT_SERVING`, `UNKNOWN`, `SERVICE_UNKNOWN` or any
//! other status fail it.
//!
//! The two messages are tiny, so they are coded here by hand rather than with a
//! protobuf library: `HealthCheckRequest { string service = 1; }` and
//! `HealthCheckResponse { ServingStatus status = 1; }`, each in one gRPC frame
//! (1 byte "compressed" flag, 4 bytes big-endian length, the message).

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};

/// `grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;
/// The largest answer read (a health answer is a few bytes).
const MAX_ANSWER: usize = 4096;

/// One `Check` call for `service` over `stream`; `authority` becomes `:authority`.
pub(crate) async fn check<S>(
    stream: S,
    authority: &str,
    service: &str,
    tls: bool,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let verdict = call(&mut sender, authority, service, tls).await;
    driver.abort();
    verdict
}

async fn call(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    authority: &str,
    service: &str,
    tls: bool,
) -> Result<(), String> {
    let scheme = if tls { "https" } else { "http" };
    let req = http::Request::post(format!(
        "{scheme}://{authority}/grpc.health.v1.Health/Check"
    ))
    .version(http::Version::HTTP_2)
    .header(http::header::CONTENT_TYPE, "application/grpc")
    .header(http::header::TE, "trailers")
    .header(http::header::USER_AGENT, "fulcrum-health")
    .body(Full::new(request_frame(service)))
    .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    if resp.status() != http::StatusCode::OK {
        return Err(format!("HTTP status {}", resp.status()));
    }
    // Trailers-only: the status is in the head and there is no message.
    if let Some(status) = resp.headers().get("grpc-status") {
        return Err(format!("grpc-status {status:?}"));
    }
    let answer = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("answer: {e}"))?;
    let status = answer.trailers().and_then(|t| t.get("grpc-status"));
    if status.map(http::HeaderValue::as_bytes) != Some(b"0") {
        return Err(format!("grpc-status {status:?}"));
    }
    match serving_status(&answer.to_bytes())? {
        SERVING => Ok(()),
        other => Err(format!("serving status {}", status_name(other))),
    }
}

fn status_name(status: u64) -> &'static str {
    match status {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "unassigned",
    }
}

/// The request's gRPC frame: `HealthCheckRequest { service }` (empty for `""`).
fn request_frame(service: &str) -> Bytes {
    let mut message = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.extend_from_slice(&[0]);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    frame.freeze()
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint at `*at`, moving past it.
fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at).ok_or("truncated varint")?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".to_string())
}

/// The `status` of the one `HealthCheckResponse` frame in `body` (0, `UNKNOWN`, when
/// the field is absent, as protobuf reads a missing enum).
fn serving_status(body: &[u8]) -> Result<u64, String> {
    let (head, message) = body
        .split_at_checked(5)
        .ok_or("no gRPC frame in the answer")?;
    if head[0] != 0 {
        return Err("compressed answer".to_string());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let message = message.get(..len).ok_or("truncated gRPC frame")?;
    let (mut at, mut status) = (0, 0);
    while at < message.len() {
        let key = varint(message, &mut at)?;
        match key & 7 {
            0 => {
                let value = varint(message, &mut at)?;
                if key >> 3 == 1 {
                    status = value;
                }
            }
            2 => {
                let len = varint(message, &mut at)? as usize;
                at = at
                    .checked_add(len)
                    .filter(|end| *end <= message.len())
                    .ok_or("truncated field")?;
            }
            other => return Err(format!("unexpected wire type {other}")),
        }
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    #[test]
    fn the_request_names_the_service_or_is_empty() {
        assert_eq!(&request_frame("")[..], &[0, 0, 0, 0, 0]);
        let named = request_frame("test.Echo");
        assert_eq!(&named[..7], &[0, 0, 0, 0, 11, 0x0a, 9]);
        assert_eq!(&named[7..], b"test.Echo");
    }

    #[test]
    fn serving_and_not_serving_answers_are_read() {
        assert_eq!(serving_status(&frame(&[0x08, 1])), Ok(1));
        assert_eq!(serving_status(&frame(&[0x08, 2])), Ok(2));
        // An empty message is the default: UNKNOWN.
        assert_eq!(serving_status(&frame(&[])), Ok(0));
        // An unknown length-delimited field before the status is skipped.
        assert_eq!(
            serving_status(&frame(&[0x12, 2, b'h', b'i', 0x08, 1])),
            Ok(1)
        );
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        assert!(serving_status(&[]).is_err());
        assert!(serving_status(&[1, 0, 0, 0, 0]).is_err(), "compressed");
        assert!(
            serving_status(&[0, 0, 0, 0, 9, 0x08]).is_err(),
            "short frame"
        );
        assert!(serving_status(&frame(&[0x08])).is_err(), "truncated varint");
        assert!(
            serving_status(&frame(&[0x12, 5, 1])).is_err(),
            "field past the end"
        );
        assert!(
            serving_status(&frame(&[0x0d, 1, 2, 3, 4])).is_err(),
            "fixed32"
        );
        assert!(serving_status(&frame(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
        ]))
        .is_err());
    }
}
