//! Request path normalisation before routing (RFC 3986 §6.2.2), shared by both HTTP
//! paths.
//!
//! `path_prefix` routes compare text, so `/public/../admin`, `/public/%2e%2e/admin` and
//! `/%61dmin` must be compared as what they mean, `/admin`: percent-encoded unreserved
//! characters are decoded (other escapes keep their meaning, with upper-case hex), dot
//! segments are removed (§5.2.4), and, when the listener asks for it, runs of `/` are
//! merged — what Envoy calls `normalize_path` and `merge_slashes`. An encoded slash
//! (`%2F`) stays encoded: it is data inside a segment, not a separator. A `%` that is
//! not followed by two hex digits makes the path malformed (400).
//!
//! Most paths are already normal; `needs_work` tells so in one pass without touching
//! memory, and only the rest are rewritten, into a buffer the caller reuses.

use super::authority::is_unreserved;

/// How a listener treats request paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathPolicy {
    /// Runs of `/` count as one.
    pub merge_slashes: bool,
    /// Backends receive the normalised path (else the bytes the client sent).
    pub forward_normalized: bool,
}

impl PathPolicy {
    pub fn from_listener(listener: &fulcrum_config::Listener) -> Self {
        PathPolicy {
            merge_slashes: listener.merge_slashes,
            forward_normalized: listener.forward_path == fulcrum_config::ForwardPath::Normalized,
        }
    }
}

/// A `%` not followed by two hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed percent-encoding in the request path")]
pub struct BadPath;

/// Writes the normal form of `path` (which starts with `/`, query excluded) into
/// `out` if it differs: `Ok(true)` then, `Ok(false)` when `path` is normal already
/// (and `out` is left alone).
pub fn normalize(path: &[u8], merge_slashes: bool, out: &mut Vec<u8>) -> Result<bool, BadPath> {
    if !needs_work(path, merge_slashes) {
        return Ok(false);
    }
    out.clear();
    let segments = path.strip_prefix(b"/").unwrap_or(path);
    let mut rest = Some(segments);
    while let Some(text) = rest {
        let (segment, after) = match text.iter().position(|&b| b == b'/') {
            Some(slash) => (&text[..slash], Some(&text[slash + 1..])),
            None => (text, None),
        };
        rest = after;
        push_segment(out, segment, after.is_none(), merge_slashes)?;
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(true)
}

/// Appends `/segment` (decoded) to `out`, then applies what a dot segment or an empty
/// one (merged slashes) means. `last`: no `/` follows, so a removed segment leaves
/// the trailing slash it stood behind.
fn push_segment(
    out: &mut Vec<u8>,
    segment: &[u8],
    last: bool,
    merge_slashes: bool,
) -> Result<(), BadPath> {
    let start = out.len();
    out.push(b'/');
    decode_into(out, segment)?;
    let decoded = out.get(start + 1..).unwrap_or_default();
    let dots = match decoded {
        b"." => 1,
        b".." => 2,
        [] if merge_slashes && !last => 0,
        _ => return Ok(()),
    };
    out.truncate(start);
    if dots == 2 {
        let parent = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
        out.truncate(parent);
    }
    if last {
        out.push(b'/');
    }
    Ok(())
}

/// Copies `segment`, decoding escapes of unreserved characters and upper-casing the
/// hex of the others.
fn decode_into(out: &mut Vec<u8>, segment: &[u8]) -> Result<(), BadPath> {
    let mut rest = segment;
    while let Some((&b, tail)) = rest.split_first() {
        rest = match (b, tail) {
            (b'%', [hi, lo, after @ ..]) => {
                let (Some(h), Some(l)) = (hex(*hi), hex(*lo)) else {
                    return Err(BadPath);
                };
                let byte = h << 4 | l;
                if is_unreserved(byte) {
                    out.push(byte);
                } else {
                    out.extend_from_slice(&[
                        b'%',
                        hi.to_ascii_uppercase(),
                        lo.to_ascii_uppercase(),
                    ]);
                }
                after
            }
            (b'%', _) => return Err(BadPath),
            _ => {
                out.push(b);
                tail
            }
        };
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Whether `path` has anything to normalise: an escape, a dot segment, or (when
/// merging) an empty segment.
fn needs_work(path: &[u8], merge_slashes: bool) -> bool {
    let mut previous = 0u8;
    for (i, &b) in path.iter().enumerate() {
        match b {
            b'%' => return true,
            b'/' if merge_slashes && previous == b'/' => return true,
            b'.' if previous == b'/' && is_dot_segment(path.get(i..).unwrap_or_default()) => {
                return true
            }
            _ => {}
        }
        previous = b;
    }
    false
}

/// `.` or `..` up to the next `/` or the end.
fn is_dot_segment(from_dot: &[u8]) -> bool {
    let segment = from_dot.split(|&b| b == b'/').next().unwrap_or_default();
    segment == b"." || segment == b".."
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str, merge: bool) -> Result<String, BadPath> {
        let mut out = Vec::new();
        Ok(if normalize(path.as_bytes(), merge, &mut out)? {
            String::from_utf8(out).unwrap()
        } else {
            path.to_string()
        })
    }

    #[test]
    fn dot_segments_are_removed() {
        for (raw, want) in [
            ("/public/../private", "/private"),
            ("/public/./x", "/public/x"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/..b/c", "/a/..b/c"),
            ("/a/.b", "/a/.b"),
            ("/a//../b", "/a/b"),
            ("/", "/"),
        ] {
            assert_eq!(norm(raw, false).unwrap(), want, "{raw}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept() {
        for (raw, want) in [
            ("/public/%2e%2e/private", "/private"),
            ("/public/%2E%2e/private", "/private"),
            ("/%61dmin", "/admin"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2F..%2Fb", "/a%2F..%2Fb"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/%7euser", "/~user"),
        ] {
            assert_eq!(norm(raw, false).unwrap(), want, "{raw}");
        }
        for bad in ["/%", "/%4", "/%zz", "/a%g1"] {
            assert_eq!(norm(bad, false), Err(BadPath), "{bad}");
        }
    }

    #[test]
    fn slashes_are_merged_only_when_asked() {
        assert_eq!(norm("//admin", false).unwrap(), "//admin");
        assert_eq!(norm("//admin", true).unwrap(), "/admin");
        assert_eq!(norm("/a///b//", true).unwrap(), "/a/b/");
        assert_eq!(norm("/a/b/", true).unwrap(), "/a/b/");
    }

    #[test]
    fn normal_paths_are_left_alone() {
        let mut out = b"untouched".to_vec();
        for path in ["/", "/api/v2/users", "/a.b/c..d/.e", "/x//y"] {
            assert_eq!(
                normalize(path.as_bytes(), false, &mut out),
                Ok(false),
                "{path}"
            );
        }
        assert_eq!(out, b"untouched");
    }
}
