//! What a request that arrives as an `http::Request` (hyper's codec, HTTP/2) asks for,
//! checked before it is routed: the authority and the path.
//!
//! The authority is the target's when it has one — an absolute-form target (RFC 9112
//! §3.2.2: it wins over `Host`, which is then replaced) or HTTP/2's `:authority`
//! (RFC 9113 §8.3.1: a `Host` that names something else makes the request malformed)
//! — and otherwise the one `Host` header, which HTTP/1.1 requires (RFC 9112 §3.2).
//! Any of them must be `uri-host[:port]` (`authority`), without userinfo. The path
//! is normalised (`path`) for routing and, unless the listener says otherwise, for
//! the backend. Each violation is a 400 (`Local::BadRequest`).

use crate::request::authority;
use crate::request::local::Local;
use crate::request::path::{self, PathPolicy};
use http::uri::PathAndQuery;
use http::{HeaderMap, Request, Uri, Version};

/// A request's authority and path, validated.
#[derive(Debug)]
pub(crate) struct Target {
    /// What routing matches on and the backend gets as `Host`; `None` for an
    /// HTTP/1.0 (or HTTP/2) request that names no authority at all.
    pub authority: Option<String>,
    /// The normalised path, for routing.
    pub path: String,
    /// The origin-form target for the backend.
    pub uri: Uri,
}

impl Target {
    /// Reads and checks the authority and path of `req`.
    pub(crate) fn read<B>(req: &Request<B>, paths: PathPolicy) -> Result<Target, Local> {
        let authority = authority_of(req)?;
        let uri = req.uri();
        let sent_path = uri.path();
        let mut normal = Vec::new();
        let changed = sent_path.starts_with('/')
            && path::normalize(sent_path.as_bytes(), paths.merge_slashes, &mut normal)
                .map_err(|_| Local::BadRequest)?;
        // Only unreserved characters were decoded, so the text stays ASCII.
        let path = match changed {
            true => String::from_utf8(normal).map_err(|_| Local::BadRequest)?,
            false => sent_path.to_string(),
        };
        let uri = match changed && paths.forward_normalized {
            true => with_path(uri, &path)?,
            false => origin_form(uri),
        };
        Ok(Target {
            authority,
            path,
            uri,
        })
    }

    /// The host part routing compares (`authority::host_part`); empty without one.
    pub(crate) fn host(&self) -> &[u8] {
        authority::host_part(self.authority.as_deref().unwrap_or_default().as_bytes())
    }
}

/// The authority of `req`, per the rules in the module comment.
fn authority_of<B>(req: &Request<B>) -> Result<Option<String>, Local> {
    let host = single_host(req.headers())?;
    let Some(target) = req.uri().authority() else {
        return match host {
            Some(value) if authority::is_valid(value) => Ok(Some(text(value)?)),
            Some(_) => Err(Local::BadRequest),
            None if req.version() == Version::HTTP_11 => Err(Local::BadRequest),
            None => Ok(None),
        };
    };
    let target = target.as_str().as_bytes();
    if !authority::is_valid(target) {
        return Err(Local::BadRequest);
    }
    if req.version() == Version::HTTP_2 {
        if let Some(host) = host {
            if !authority::is_valid(host) || !authority::same(host, target) {
                return Err(Local::BadRequest);
            }
        }
    }
    Ok(Some(text(target)?))
}

/// The one `Host` value; two or more are a 400 whatever else the request says.
fn single_host(headers: &HeaderMap) -> Result<Option<&[u8]>, Local> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => Ok(None),
        (Some(host), None) => Ok(Some(host.as_bytes())),
        (Some(_), Some(_)) => Err(Local::BadRequest),
    }
}

/// A validated authority is ASCII.
fn text(value: &[u8]) -> Result<String, Local> {
    std::str::from_utf8(value)
        .map(str::to_string)
        .map_err(|_| Local::BadRequest)
}

/// `uri` in origin form with `path` instead of its own (query kept).
fn with_path(uri: &Uri, path: &str) -> Result<Uri, Local> {
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    PathAndQuery::try_from(target)
        .map(Uri::from)
        .map_err(|_| Local::BadRequest)
}

/// The request target as a backend expects it: origin form (`/path?query`). HTTP/2
/// and absolute-form requests arrive with a scheme and authority.
pub(crate) fn origin_form(uri: &Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri.clone();
    }
    uri.path_and_query()
        .map(|pq| Uri::from(pq.clone()))
        .unwrap_or_else(|| Uri::from_static("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut req = Request::builder().version(version).uri(uri);
        for host in hosts {
            req = req.header("host", *host);
        }
        req.body(()).unwrap()
    }

    fn read(req: &Request<()>) -> Result<Target, Local> {
        let paths = PathPolicy {
            merge_slashes: false,
            forward_normalized: true,
        };
        Target::read(req, paths)
    }

    fn authority(req: Request<()>) -> Option<Option<String>> {
        read(&req).ok().map(|t| t.authority)
    }

    #[test]
    fn http11_needs_one_valid_host() {
        let v11 = Version::HTTP_11;
        assert_eq!(
            authority(request(v11, "/", &["a.example"])),
            Some(Some("a.example".into()))
        );
        assert_eq!(authority(request(v11, "/", &[])), None);
        assert_eq!(authority(request(v11, "/", &["a", "b"])), None);
        assert_eq!(authority(request(v11, "/", &["a b"])), None);
        assert_eq!(authority(request(Version::HTTP_10, "/", &[])), Some(None));
    }

    #[test]
    fn an_absolute_target_wins_over_host() {
        let req = request(
            Version::HTTP_11,
            "http://admin.example/x",
            &["public.example"],
        );
        assert_eq!(authority(req), Some(Some("admin.example".into())));
        let with_user = request(Version::HTTP_11, "http://u@admin.example/x", &["a"]);
        assert_eq!(authority(with_user), None);
    }

    #[test]
    fn http2_host_must_agree_with_authority() {
        let v2 = Version::HTTP_2;
        let agree = request(v2, "https://Shop.Example/", &["shop.example"]);
        assert_eq!(authority(agree), Some(Some("Shop.Example".into())));
        assert_eq!(
            authority(request(v2, "https://shop.example/", &["admin.example"])),
            None
        );
        assert_eq!(
            authority(request(v2, "https://shop.example/", &[])),
            Some(Some("shop.example".into()))
        );
    }

    #[test]
    fn paths_are_normalised_for_routing_and_forwarding() {
        let req = request(Version::HTTP_11, "/public/%2e%2e/private?q=1", &["a"]);
        let target = read(&req).unwrap();
        assert_eq!(target.path, "/private");
        assert_eq!(target.uri, "/private?q=1");
        let as_sent = Target::read(&req, PathPolicy::default()).unwrap();
        assert_eq!(as_sent.path, "/private");
        assert_eq!(as_sent.uri, "/public/%2e%2e/private?q=1");
        let bad = request(Version::HTTP_11, "/a%zz", &["a"]);
        assert!(matches!(read(&bad), Err(Local::BadRequest)));
    }
}
