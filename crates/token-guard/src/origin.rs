//! The absolute URI a client used, which a DPoP proof's `htu` must name.
//!
//! A server sees only the path of a request; the scheme and authority the client reached it at
//! come from configuration: the external base URL (`https://api.example`, with a path prefix if
//! a proxy strips one). Behind proxies that serve several names or schemes, the guard can take
//! them from the `Forwarded` (RFC 7239) or `X-Forwarded-Proto`/`X-Forwarded-Host` headers, but
//! only when told to, and only the value written by the proxy the configuration names: a client
//! sends whatever headers it likes, and a proof made for another URL must not pass.
//!
//! The parser is hand-written (RFC 7239's grammar is a few lines; no crate in the tree parses
//! it) and strict: a malformed header, such as an unterminated quoted string that would
//! swallow the values a proxy appended, makes the whole header unusable, and the base URL is
//! used instead.

use std::fmt;

use crate::error::Error;

/// Which proxy headers carry the scheme and host clients used. Pick the one your proxy writes:
/// the other is passed through from the client untouched, and trusting it would let a client
/// choose the URI its proof is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyHeaders {
    /// RFC 7239 `Forwarded`, its `proto` and `host` parameters.
    Forwarded,
    /// `X-Forwarded-Proto` and `X-Forwarded-Host` (comma-separated lists when several proxies
    /// append to them).
    XForwarded,
}

/// The external base URL, and which proxy headers (if any) may override its scheme and host.
#[derive(Clone)]
pub(crate) struct Origin {
    /// `https` or `http`.
    scheme: String,
    /// `host[:port]` as configured.
    authority: String,
    /// A path prefix without a trailing `/` (empty for none).
    prefix: String,
    /// Trusted proxy headers and how many trusted proxies stand in front (the value used is the
    /// `hops`-th from the right: the one the outermost trusted proxy wrote).
    proxy: Option<(ProxyHeaders, usize)>,
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origin")
            .field(
                "base",
                &format_args!("{}://{}{}", self.scheme, self.authority, self.prefix),
            )
            .field("proxy", &self.proxy)
            .finish()
    }
}

impl Origin {
    /// Parses the external base URL: `http(s)://authority[/prefix]`, no query or fragment.
    pub(crate) fn parse(base: &str) -> Result<Self, Error> {
        let invalid = Error::InvalidExternalUrl;
        let (scheme, rest) = base.split_once("://").ok_or(invalid("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return Err(invalid("the scheme must be https or http"));
        }
        if rest.contains(['?', '#']) {
            return Err(invalid("a query or fragment is not part of a base URL"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if !is_authority(authority.as_bytes()) {
            return Err(invalid("the host is missing or not a valid authority"));
        }
        if !path.bytes().all(is_path_char) {
            return Err(invalid("the path has characters a URI cannot have"));
        }
        Ok(Origin {
            scheme,
            authority: authority.to_owned(),
            prefix: path.trim_end_matches('/').to_owned(),
            proxy: None,
        })
    }

    pub(crate) fn trust(mut self, headers: ProxyHeaders, hops: usize) -> Self {
        self.proxy = Some((headers, hops.max(1)));
        self
    }

    /// The base URL, without a trailing `/`.
    pub(crate) fn base(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.prefix)
    }

    /// The absolute URI the client used for a request with this `path` and these headers.
    pub(crate) fn request_uri(&self, headers: &http::HeaderMap, path: &str) -> String {
        let (scheme, authority) = match self.proxy {
            Some((which, hops)) => forwarded(which, headers, hops),
            None => (None, None),
        };
        let scheme = scheme.unwrap_or(Scheme::from_str(&self.scheme));
        let authority = authority.unwrap_or(&self.authority);
        let mut uri = String::with_capacity(
            scheme.as_str().len() + 3 + authority.len() + self.prefix.len() + path.len(),
        );
        uri.push_str(scheme.as_str());
        uri.push_str("://");
        uri.push_str(authority);
        uri.push_str(&self.prefix);
        uri.push_str(path);
        uri
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn from_str(s: &str) -> Self {
        if s.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else {
            Scheme::Https
        }
    }

    fn parse(s: &[u8]) -> Option<Self> {
        if s.eq_ignore_ascii_case(b"https") {
            Some(Scheme::Https)
        } else if s.eq_ignore_ascii_case(b"http") {
            Some(Scheme::Http)
        } else {
            None
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The scheme and authority the trusted proxy headers name, each `None` when absent or
/// unusable (then the base URL's own applies).
fn forwarded(
    which: ProxyHeaders,
    headers: &http::HeaderMap,
    hops: usize,
) -> (Option<Scheme>, Option<&str>) {
    match which {
        ProxyHeaders::Forwarded => {
            let values = headers
                .get_all(http::header::FORWARDED)
                .iter()
                .map(http::HeaderValue::as_bytes);
            let Some(elements) = parse_forwarded(values) else {
                return (None, None);
            };
            let Some(element) = elements
                .len()
                .checked_sub(hops)
                .and_then(|i| elements.get(i))
            else {
                return (None, None);
            };
            (element.proto, element.host)
        }
        ProxyHeaders::XForwarded => {
            let proto = nth_from_right(headers, "x-forwarded-proto", hops).and_then(Scheme::parse);
            let host = nth_from_right(headers, "x-forwarded-host", hops)
                .filter(|h| is_authority(h))
                .and_then(|h| std::str::from_utf8(h).ok());
            (proto, host)
        }
    }
}

/// The `hops`-th value from the right of a comma-separated header (all its fields joined).
fn nth_from_right<'a>(headers: &'a http::HeaderMap, name: &str, hops: usize) -> Option<&'a [u8]> {
    let values: Vec<&[u8]> = headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(trim_ows)
        .collect();
    values
        .len()
        .checked_sub(hops)
        .and_then(|i| values.get(i).copied())
}

/// One `forwarded-element` of RFC 7239: the parameters the guard uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Element<'a> {
    proto: Option<Scheme>,
    host: Option<&'a str>,
}

/// Parses every `Forwarded` field value, in order, into its elements (RFC 7239 section 4):
///
/// ```text
/// Forwarded         = 1#forwarded-element
/// forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
/// forwarded-pair    = token "=" value
/// value             = token / quoted-string
/// ```
///
/// `None` when any of it is malformed: an unterminated quoted string, a pair without `=`, a
/// name that is not a token, a parameter given twice in one element, a `proto` that is not
/// `http` or `https`, or a `host` that is not a URI authority. Quoted strings with escapes are
/// accepted for any parameter; the guard's two never need them, so an escaped `host` or
/// `proto` counts as malformed.
pub(crate) fn parse_forwarded<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Option<Vec<Element<'a>>> {
    let mut elements = Vec::new();
    for value in values {
        let mut rest = value;
        loop {
            let (element, next) = parse_element(rest)?;
            elements.push(element);
            match next {
                Some(after_comma) => rest = after_comma,
                None => break,
            }
        }
    }
    Some(elements)
}

/// One element up to the next top-level `,` (returning what follows it), or to the end.
fn parse_element(input: &[u8]) -> Option<(Element<'_>, Option<&[u8]>)> {
    let mut element = Element::default();
    let mut rest = input;
    loop {
        rest = trim_start_ows(rest);
        // An empty pair (`;;`, a trailing `;`) or an empty element (`a=b, , c=d`) is allowed.
        match rest.first() {
            None => return Some((element, None)),
            Some(b',') => return Some((element, Some(rest.get(1..)?))),
            Some(b';') => {
                rest = rest.get(1..)?;
                continue;
            }
            Some(_) => {}
        }
        let eq = rest.iter().position(|b| *b == b'=')?;
        let (name, after) = rest.split_at(eq);
        let name = trim_ows(name);
        if name.is_empty() || !name.iter().copied().all(is_tchar) {
            return None;
        }
        let after = after.get(1..)?;
        let (value, escaped, next) = parse_value(after)?;
        if name.eq_ignore_ascii_case(b"proto") {
            if element.proto.is_some() || escaped {
                return None;
            }
            element.proto = Some(Scheme::parse(value)?);
        } else if name.eq_ignore_ascii_case(b"host") {
            if element.host.is_some() || escaped || !is_authority(value) {
                return None;
            }
            element.host = Some(std::str::from_utf8(value).ok()?);
        }
        rest = trim_start_ows(next);
        match rest.first() {
            None | Some(b',' | b';') => {}
            Some(_) => return None,
        }
    }
}

/// A token (or any run of visible ASCII but `,`, `;` and `"`) or a quoted-string: its content (between the quotes, escapes left in), whether it
/// had escapes, and the input after it.
fn parse_value(input: &[u8]) -> Option<(&[u8], bool, &[u8])> {
    if let Some(quoted) = input.strip_prefix(b"\"") {
        let mut i = 0;
        let mut escaped = false;
        loop {
            match quoted.get(i)? {
                b'"' => return Some((quoted.get(..i)?, escaped, quoted.get(i + 1..)?)),
                b'\\' => {
                    escaped = true;
                    // The escaped octet must exist (an escaped closing quote does not close).
                    quoted.get(i + 1)?;
                    i += 2;
                }
                b'\t' | b' '..=b'~' | 0x80..=0xff => i += 1,
                _ => return None,
            }
        }
    }
    // RFC 7239 wants a `host` with a port, or an IPv6 literal, quoted (`:` and `[` are not
    // token characters); proxies write them unquoted too, so any visible ASCII but the
    // delimiters is taken here and each parameter's value is checked on its own.
    let end = input
        .iter()
        .position(|b| !b.is_ascii_graphic() || b",;\"".contains(b))
        .unwrap_or(input.len());
    if end == 0 {
        return None;
    }
    let (token, rest) = input.split_at(end);
    Some((token, false, rest))
}

/// `tchar` of RFC 9110 section 5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_start_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let mut bytes = trim_start_ows(bytes);
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// `host [ ":" port ]` of RFC 3986 section 3.2.2 in the characters it can have: a reg-name or
/// IPv4 address (unreserved, sub-delims, `%`), or an IP literal in brackets, then an optional
/// port of digits. No userinfo, no path, no whitespace; at most 262 bytes (a 255-byte DNS name
/// and a port).
fn is_authority(bytes: &[u8]) -> bool {
    if bytes.is_empty() || bytes.len() > 262 {
        return false;
    }
    let (host, port) = if let Some(literal) = bytes.strip_prefix(b"[") {
        let Some(close) = literal.iter().position(|b| *b == b']') else {
            return false;
        };
        let (inside, after) = literal.split_at(close);
        if inside.is_empty()
            || !inside
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(b) || b.is_ascii_alphanumeric())
        {
            return false;
        }
        (&b"x"[..], after.get(1..).unwrap_or_default())
    } else {
        match bytes.iter().position(|b| *b == b':') {
            Some(i) => {
                let (host, port) = bytes.split_at(i);
                (host, port)
            }
            None => (bytes, &[][..]),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(b));
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    host_ok && port_ok
}

/// Path characters of RFC 3986 (`pchar` and `/`).
fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn the_base_url_is_checked_and_keeps_its_prefix() {
        let o = Origin::parse("https://API.example:8443/v1/").unwrap();
        assert_eq!(o.base(), "https://API.example:8443/v1");
        assert_eq!(
            o.request_uri(&http::HeaderMap::new(), "/items"),
            "https://API.example:8443/v1/items"
        );
        for bad in [
            "api.example",
            "ftp://api.example",
            "https://",
            "https://user@api.example",
            "https://api.example?x=1",
            "https://api.example/#f",
            "https://api.example:port",
            "https://api example",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
        assert!(Origin::parse("http://[::1]:8080").is_ok());
    }

    #[test]
    fn proxy_headers_are_ignored_unless_trusted() {
        let o = Origin::parse("https://api.example").unwrap();
        let h = headers(&[
            ("forwarded", "proto=http;host=evil.example"),
            ("x-forwarded-host", "evil.example"),
        ]);
        assert_eq!(o.request_uri(&h, "/a"), "https://api.example/a");
    }

    #[test]
    fn the_value_of_the_outermost_trusted_proxy_counts() {
        let o = Origin::parse("https://api.example/base").unwrap();
        // A client sent its own element first; the trusted proxy appended the real one.
        let h = headers(&[(
            "forwarded",
            r#"host=evil.example;proto=https, for=192.0.2.1;proto=http;host="api.example:8080""#,
        )]);
        let one = o.clone().trust(ProxyHeaders::Forwarded, 1);
        assert_eq!(one.request_uri(&h, "/a"), "http://api.example:8080/base/a");
        // Two trusted proxies: the element of the first one (second from the right).
        let two = o.clone().trust(ProxyHeaders::Forwarded, 2);
        assert_eq!(two.request_uri(&h, "/a"), "https://evil.example/base/a");
        // More hops than elements: the base URL.
        let three = o.clone().trust(ProxyHeaders::Forwarded, 3);
        assert_eq!(three.request_uri(&h, "/a"), "https://api.example/base/a");
        // Several fields form one list, in order.
        let h = headers(&[("forwarded", "host=a.example"), ("forwarded", "proto=http")]);
        assert_eq!(one.request_uri(&h, "/"), "http://api.example/base/");
        assert_eq!(two.request_uri(&h, "/"), "https://a.example/base/");
    }

    #[test]
    fn x_forwarded_headers_count_from_the_right() {
        let o = Origin::parse("https://api.example")
            .unwrap()
            .trust(ProxyHeaders::XForwarded, 1);
        let h = headers(&[
            ("x-forwarded-proto", "https, http"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-host", "api2.example"),
        ]);
        assert_eq!(o.request_uri(&h, "/x"), "http://api2.example/x");
        // The Forwarded header is not what this proxy writes: ignored.
        let h = headers(&[("forwarded", "host=evil.example")]);
        assert_eq!(o.request_uri(&h, "/x"), "https://api.example/x");
        // Unusable values fall back to the base URL's.
        let h = headers(&[("x-forwarded-proto", "ftp"), ("x-forwarded-host", "a/b")]);
        assert_eq!(o.request_uri(&h, "/x"), "https://api.example/x");
    }

    #[test]
    fn a_malformed_forwarded_header_is_not_used_at_all() {
        let o = Origin::parse("https://api.example")
            .unwrap()
            .trust(ProxyHeaders::Forwarded, 1);
        for bad in [
            // An unterminated quote would swallow the proxy's element.
            r#"host="evil.example, host=api2.example"#,
            "host",
            "host=a.example;host=b.example",
            "proto=ftp",
            "host=a/b",
            r#"host="a\.example""#,
            "host=a.example x",
            "=x",
        ] {
            let h = headers(&[("forwarded", bad)]);
            assert_eq!(o.request_uri(&h, "/"), "https://api.example/", "{bad}");
        }
    }

    proptest::proptest! {
        /// Any header bytes: no panic, and the URI stays the base's or one with a checked
        /// scheme and authority.
        #[test]
        fn any_proxy_header_yields_an_http_uri(
            values in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..4),
            hops in 1usize..4,
        ) {
            let _ = parse_forwarded(values.iter().map(Vec::as_slice));
            let mut headers = http::HeaderMap::new();
            for v in &values {
                if let Ok(value) = http::HeaderValue::from_bytes(v) {
                    headers.append(http::header::FORWARDED, value.clone());
                    headers.append("x-forwarded-host", value);
                }
            }
            for which in [ProxyHeaders::Forwarded, ProxyHeaders::XForwarded] {
                let o = Origin::parse("https://api.example").unwrap().trust(which, hops);
                let uri = o.request_uri(&headers, "/p");
                proptest::prop_assert!(uri.starts_with("http://") || uri.starts_with("https://"));
                proptest::prop_assert!(uri.ends_with("/p") && !uri.contains(['?', '#', ' ', '@']));
            }
        }
    }

    #[test]
    fn forwarded_elements_parse_as_rfc_7239_writes_them() {
        let parsed = parse_forwarded([&br#"for="_gazonk""#[..]]).unwrap();
        assert_eq!(parsed, [Element::default()]);
        let parsed = parse_forwarded([
            &br#"For="[2001:db8:cafe::17]:4711";Proto=HTTPS ; by=203.0.113.43, ,for=192.0.2.43;host=[::1]:80"#[..],
        ])
        .unwrap();
        assert_eq!(
            parsed,
            [
                Element {
                    proto: Some(Scheme::Https),
                    host: None
                },
                Element::default(),
                Element {
                    proto: None,
                    host: Some("[::1]:80")
                },
            ]
        );
        assert_eq!(parse_forwarded([&b""[..]]).unwrap(), [Element::default()]);
    }
}
