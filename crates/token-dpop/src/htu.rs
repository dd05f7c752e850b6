//! RFC 3986 normalization of the `htu` claim and the request URI (RFC 9449 section 4.3,
//! step 9: compared without query and fragment, after syntax-based (RFC 3986 6.2.2) and
//! scheme-based (6.2.3) normalization).
//!
//! [`normalize`] keeps `scheme "://" host [":" port] path` and:
//! - lowercases the scheme and the host, and accepts only `http` and `https`;
//! - drops the port when it is empty or the scheme's default (80, 443), and writes any other
//!   port without leading zeros;
//! - decodes percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) and uppercases the
//!   hex digits of every other percent-encoding;
//! - removes dot segments (RFC 3986 5.2.4) and writes an empty path as `/`;
//! - drops the query and the fragment.
//!
//! It refuses (returns `None`) anything that is not an absolute `http(s)` URI in RFC 3986
//! syntax: no authority, userinfo (`user@host`, deprecated for http(s) by RFC 9110 4.2.4),
//! an empty host, a bad port, bad percent-encodings, and characters outside the URI grammar
//! (spaces, non-ASCII, `\`, `"`, `<`, ...).
//!
//! Why hand-written: the `url` crate implements the WHATWG URL standard, not RFC 3986 (it
//! rewrites `\` to `/`, percent-encodes differently, applies IDNA), and pulls `idna` with the
//! ICU4X data crates, about twenty crates for a comparison that needs none of it. The rules
//! above fit in this module and are covered by unit tests and property tests
//! (`tests/dpop_property_tests.rs`).

/// Longest URI [`normalize`] accepts, in bytes.
pub const MAX_URI_BYTES: usize = 8192;

/// Normalizes an absolute `http` or `https` URI for `htu` comparison (see the module docs);
/// `None` when it is not one. Two URIs are equivalent for DPoP when their normalized forms
/// are equal.
pub fn normalize(uri: &str) -> Option<String> {
    if uri.len() > MAX_URI_BYTES {
        return None;
    }
    let end = uri.find(['?', '#']).unwrap_or(uri.len());
    let uri = uri.get(..end)?;

    let (scheme, rest) = uri.split_once(':')?;
    let first = scheme.bytes().next()?;
    if !first.is_ascii_alphabetic()
        || !scheme
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let (scheme, default_port) = if scheme.eq_ignore_ascii_case("http") {
        ("http", 80)
    } else if scheme.eq_ignore_ascii_case("https") {
        ("https", 443)
    } else {
        return None;
    };

    let rest = rest.strip_prefix("//")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return None;
    }

    let mut out = String::with_capacity(uri.len() + 1);
    out.push_str(scheme);
    out.push_str("://");

    // host and port
    let port = if let Some(literal) = authority.strip_prefix('[') {
        let (inner, after) = literal.split_once(']')?;
        // IPv6 literal: hex digits, ':' and '.' only (no zone identifiers, no IPvFuture).
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.'))
        {
            return None;
        }
        out.push('[');
        out.push_str(&inner.to_ascii_lowercase());
        out.push(']');
        match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        }
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty() {
            return None;
        }
        push_normalized(host, Component::Host, &mut out)?;
        port
    };
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        if !port.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let digits = port.trim_start_matches('0');
        if digits.len() > 5 {
            return None;
        }
        let n: u32 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        if n > u32::from(u16::MAX) {
            return None;
        }
        if n != default_port {
            out.push(':');
            out.push_str(&n.to_string());
        }
    }

    // path
    if path.is_empty() {
        out.push('/');
    } else {
        let mut normalized = String::with_capacity(path.len());
        push_normalized(path, Component::Path, &mut normalized)?;
        remove_dot_segments(&normalized, &mut out);
    }
    Some(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Component {
    Host,
    Path,
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(c: u8) -> bool {
    matches!(
        c,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `text` with percent-encodings normalized (unreserved decoded, the rest with
/// uppercase hex) and, for a host, letters lowercased. `None` on a character outside the
/// component's grammar or a bad percent-encoding.
fn push_normalized(text: &str, component: Component, out: &mut String) -> Option<()> {
    let mut bytes = text.bytes();
    while let Some(c) = bytes.next() {
        if c == b'%' {
            let hi = hex_value(bytes.next()?)?;
            let lo = hex_value(bytes.next()?)?;
            let v = (hi << 4) | lo;
            if is_unreserved(v) {
                out.push(char::from(if component == Component::Host {
                    v.to_ascii_lowercase()
                } else {
                    v
                }));
            } else {
                out.push('%');
                out.push(char::from(*HEX_UPPER.get(usize::from(hi))?));
                out.push(char::from(*HEX_UPPER.get(usize::from(lo))?));
            }
            continue;
        }
        let allowed = is_unreserved(c)
            || is_sub_delim(c)
            || (component == Component::Path && matches!(c, b':' | b'@' | b'/'));
        if !allowed {
            return None;
        }
        out.push(char::from(if component == Component::Host {
            c.to_ascii_lowercase()
        } else {
            c
        }));
    }
    Some(())
}

/// RFC 3986 5.2.4 for an absolute path (starts with `/`), appended to `out`.
fn remove_dot_segments(path: &str, out: &mut String) {
    let Some(rest) = path.strip_prefix('/') else {
        out.push_str(path);
        return;
    };
    let mut segments: Vec<&str> = Vec::new();
    let mut iter = rest.split('/').peekable();
    while let Some(segment) = iter.next() {
        let last = iter.peek().is_none();
        match segment {
            "." => {
                if last {
                    segments.push("");
                }
            }
            ".." => {
                segments.pop();
                if last {
                    segments.push("");
                }
            }
            s => segments.push(s),
        }
    }
    out.push('/');
    let mut first = true;
    for s in segments {
        if !first {
            out.push('/');
        }
        first = false;
        out.push_str(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Option<String> {
        normalize(s)
    }

    #[test]
    fn identity_on_normal_form() {
        for s in [
            "https://server.example.com/token",
            "http://example.com/",
            "https://example.com:8443/a/b",
            "https://[2001:db8::1]/x",
            "https://[2001:db8::1]:8443/x",
            "https://example.com/a%2Fb",
            "https://example.com/%C3%A9",
            "https://example.com/a//b/",
            "https://192.0.2.1/p;x=1,y",
        ] {
            assert_eq!(n(s).as_deref(), Some(s), "{s}");
        }
    }

    #[test]
    fn scheme_and_host_case() {
        assert_eq!(
            n("HTTPS://Server.EXAMPLE.com/Token").as_deref(),
            Some("https://server.example.com/Token")
        );
        assert_eq!(
            n("HtTp://[2001:DB8::A]/").as_deref(),
            Some("http://[2001:db8::a]/")
        );
    }

    #[test]
    fn default_and_empty_ports() {
        assert_eq!(n("https://h:443/").as_deref(), Some("https://h/"));
        assert_eq!(n("http://h:80/").as_deref(), Some("http://h/"));
        assert_eq!(n("http://h:/").as_deref(), Some("http://h/"));
        assert_eq!(n("https://h:00443/").as_deref(), Some("https://h/"));
        assert_eq!(n("https://h:80/").as_deref(), Some("https://h:80/"));
        assert_eq!(n("http://h:443/").as_deref(), Some("http://h:443/"));
        assert_eq!(n("http://h:08080/").as_deref(), Some("http://h:8080/"));
        assert_eq!(n("http://h:0/").as_deref(), Some("http://h:0/"));
        assert_eq!(n("http://[::1]:443").as_deref(), Some("http://[::1]:443/"));
        assert_eq!(n("https://[::1]:443").as_deref(), Some("https://[::1]/"));
        assert_eq!(n("http://h:65536/"), None);
        assert_eq!(n("http://h:99999999999999999999/"), None);
        assert_eq!(n("http://h:8a/"), None);
        assert_eq!(n("http://h:-1/"), None);
        assert_eq!(n("http://h:+80/"), None);
        assert_eq!(n("http://[::1]x/"), None);
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(
            n("https://h/%7euser/%2fx%c3%a9").as_deref(),
            Some("https://h/~user/%2Fx%C3%A9")
        );
        assert_eq!(n("https://h/%41%42c").as_deref(), Some("https://h/ABc"));
        assert_eq!(n("https://%45X.com/").as_deref(), Some("https://ex.com/"));
        assert_eq!(n("https://h/%2").as_deref(), None);
        assert_eq!(n("https://h/%zz").as_deref(), None);
        assert_eq!(n("https://h/%").as_deref(), None);
    }

    #[test]
    fn empty_path_query_and_fragment() {
        for s in [
            "https://h",
            "https://h/",
            "https://h?x=1",
            "https://h#f",
            "https://h/?x#y",
            "https://h:443",
        ] {
            assert_eq!(n(s).as_deref(), Some("https://h/"), "{s}");
        }
        assert_eq!(
            n("https://h/a#frag?notquery").as_deref(),
            Some("https://h/a")
        );
    }

    #[test]
    fn dot_segments() {
        for (input, expected) in [
            ("https://h/a/b/c/./../../g", "https://h/a/g"),
            ("https://h/mid/content=5/../6", "https://h/mid/6"),
            ("https://h/a/b/..", "https://h/a/"),
            ("https://h/a/.", "https://h/a/"),
            ("https://h/..", "https://h/"),
            ("https://h/../../x", "https://h/x"),
            ("https://h/./a", "https://h/a"),
            ("https://h/a/..b/.c", "https://h/a/..b/.c"),
            ("https://h/a/%2E%2E/b", "https://h/b"),
            ("https://h/a//../b", "https://h/a/b"),
        ] {
            assert_eq!(n(input).as_deref(), Some(expected), "{input}");
        }
    }

    #[test]
    fn refusals() {
        for s in [
            "",
            "/token",
            "server.example.com/token",
            "ftp://h/",
            "https:/h/",
            "https:h",
            "https://",
            "https:///path",
            "https://:443/",
            "https://user@h/",
            "https://user:pw@h/",
            "https://h/a b",
            "https://h/a\\b",
            "https://h/é",
            "https://h/<x>",
            "https://h/\"",
            "https://h^/",
            "https://h h/",
            "https://[]/",
            "https://[fe80::1%25eth0]/",
            "https://[::1/",
            "1https://h/",
            "ht_tp://h/",
        ] {
            assert_eq!(n(s), None, "{s:?}");
        }
        assert_eq!(n(&format!("https://h/{}", "a".repeat(MAX_URI_BYTES))), None);
    }

    #[test]
    fn sub_delims_and_path_characters_are_kept() {
        assert_eq!(
            n("https://h/a:b@c!$&'()*+,;=d").as_deref(),
            Some("https://h/a:b@c!$&'()*+,;=d")
        );
        assert_eq!(n("https://a!b/").as_deref(), Some("https://a!b/"));
    }
}
