//! Reading request headers without caring how they are stored.
//!
//! Routing, affinity and consistent hashing only ever ask "what is the value of header
//! X". Requests served by hyper keep their headers in an `http::HeaderMap`; requests on
//! the hand-written HTTP/1.1 path (`crate::h1`) keep them as byte ranges into the read
//! buffer and never build a map. `HeaderLookup` lets the same decision code read both.

use http::HeaderMap;

/// Case-insensitive header access by lower-case name.
pub trait HeaderLookup {
    /// The values of header `name` (lower case), in the order they arrived.
    type Values<'a, 'n>: Iterator<Item = &'a [u8]>
    where
        Self: 'a;

    fn values<'a, 'n>(&'a self, name: &'n str) -> Self::Values<'a, 'n>;

    /// The first value of header `name` (lower case).
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.values(name).next()
    }

    /// The first value of `name` as text, if it is visible ASCII.
    fn first_str(&self, name: &str) -> Option<&str> {
        self.first(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

impl HeaderLookup for HeaderMap {
    type Values<'a, 'n> = std::iter::Map<
        http::header::ValueIter<'a, http::HeaderValue>,
        fn(&'a http::HeaderValue) -> &'a [u8],
    >;

    fn values<'a, 'n>(&'a self, name: &'n str) -> Self::Values<'a, 'n> {
        self.get_all(name).iter().map(http::HeaderValue::as_bytes)
    }
}
