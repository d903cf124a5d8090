//! The canonical request and the string to sign (security-facts §3.2, §3.3): canonical URI
//! (dot-segment removal, `//` collapsed, every byte outside the unreserved set encoded once more:
//! the non-S3 "double encoding"), canonical query (decoded, re-encoded, sorted), canonical headers
//! (trimmed, whitespace runs collapsed, repeats joined with `,` in arrival order) and the payload
//! hash of the raw body. Shared by the verifier and the signer so both sides canonicalise alike.
//!
//! Everything works on bytes: header values may hold any octet and the hash covers exactly the
//! bytes the client hashed. Callers that need UTF-8 (the verifier) check it first.

use sha2::{Digest, Sha256};

/// The only algorithm this crate signs and verifies.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The credential scope terminator.
pub const TERMINATOR: &str = "aws4_request";

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// RFC 3986 unreserved: the bytes SigV4 never percent-encodes.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes every byte outside the unreserved set (and outside `keep`), hex upper case.
fn encode_into(out: &mut String, bytes: &[u8], keep: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if is_unreserved(b) || b == keep {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// The canonical URI of a non-S3 service: the path as received, dot segments removed and empty
/// segments dropped (RFC 3986 §5.2.4, as aws-sigv4 and aws-c-auth do), then encoded once more, so
/// `%3A` on the wire becomes `%253A` (suite cases `double-url-encode`, `double-encode-path`).
pub fn canonical_uri(path: &str) -> String {
    let normalized = normalize_path(path);
    let mut out = String::with_capacity(normalized.len() + 8);
    encode_into(&mut out, normalized.as_bytes(), b'/');
    out
}

fn normalize_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    // A path ending in a slash (or in `/.` or `/..`, which RFC 3986 resolves to one) keeps it.
    let trailing = ["/", "/.", "/.."].iter().any(|s| path.ends_with(s));
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

/// The canonical query string: pairs split on `&` (empty ones skipped) and at the first `=`,
/// form-decoded (`+` is a space, bad `%` escapes stay literal), re-encoded with the unreserved set,
/// sorted by encoded name then encoded value, `name=` kept for empty values.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let mut n = String::new();
            encode_into(&mut n, &form_decode(name), 0);
            let mut v = String::new();
            encode_into(&mut v, &form_decode(value), 0);
            (n, v)
        })
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(query.len() + 16);
    for (i, (n, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(n);
        out.push('=');
        out.push_str(v);
    }
    out
}

fn form_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Trims a header value and collapses every run of whitespace (space, tab, CR, LF) to one space:
/// the SigV4 "trimall", which also unfolds obsolete line folding (suite case
/// `get-header-value-multiline`). botocore collapses all whitespace, aws-sigv4 only spaces; the
/// two agree on every value real SDK traffic carries.
pub fn trim_all(value: &[u8], out: &mut Vec<u8>) {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let mut pending_space = false;
    let mut any = false;
    for c in value {
        if ws(c) {
            pending_space = any;
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(*c);
            any = true;
        }
    }
}

/// The canonical value of header `name` (lower case): every header of that name in arrival order,
/// each trimmed, joined with `,`. `None` when the request has no such header.
pub fn header_value(headers: &[(&str, &[u8])], name: &str) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for (n, v) in headers {
        if n.eq_ignore_ascii_case(name) {
            let buf = match &mut out {
                Some(buf) => {
                    buf.push(b',');
                    buf
                }
                None => out.insert(Vec::with_capacity(v.len())),
            };
            trim_all(v, buf);
        }
    }
    out
}

/// Builds the canonical request bytes. `headers` are (lower-case name, canonical value) in
/// `SignedHeaders` order; `signed_headers` is the `;`-joined list.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &[u8])],
    signed_headers: &str,
    payload_hash: &str,
) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(256 + headers.iter().map(|(_, v)| v.len() + 32).sum::<usize>());
    out.extend_from_slice(method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(query).as_bytes());
    out.push(b'\n');
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    out
}

/// `AWS4-HMAC-SHA256\n<timestamp>\n<date>/<region>/<service>/aws4_request\n<hex sha256(creq)>`.
pub fn string_to_sign(
    timestamp: &str,
    scope_date: &str,
    region: &str,
    service: &str,
    canonical_request: &[u8],
) -> String {
    format!(
        "{ALGORITHM}\n{timestamp}\n{scope_date}/{region}/{service}/{TERMINATOR}\n{}",
        sha256_hex(canonical_request)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_normalises_and_double_encodes() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("//example//"), "/example/");
        assert_eq!(canonical_uri("/example1/example2/../.."), "/");
        assert_eq!(canonical_uri("/./example"), "/example");
        assert_eq!(canonical_uri("/../foo"), "/foo");
        assert_eq!(canonical_uri("/foo/bar/."), "/foo/bar/");
        assert_eq!(canonical_uri("foo"), "/foo");
        assert_eq!(canonical_uri("/example space/"), "/example%20space/");
        assert_eq!(canonical_uri("/a%3Ab"), "/a%253Ab");
        assert_eq!(canonical_uri("/\u{1234}"), "/%E1%88%B4");
    }

    #[test]
    fn query_decodes_reencodes_and_sorts() {
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("Param1"), "Param1=");
        assert_eq!(canonical_query("a=x+y&&c=%7e%2a"), "a=x%20y&c=~%2A");
        assert_eq!(canonical_query("bad=%zz&end=%4"), "bad=%25zz&end=%254");
        assert_eq!(canonical_query("\u{1234}=bar"), "%E1%88%B4=bar");
    }

    #[test]
    fn trim_all_collapses_and_unfolds() {
        let t = |v: &[u8]| {
            let mut out = Vec::new();
            trim_all(v, &mut out);
            out
        };
        assert_eq!(t(b"  a   b  "), b"a b");
        assert_eq!(t(b"value1\n  value2\r\n\tvalue3"), b"value1 value2 value3");
        assert_eq!(t(b"   "), b"");
        assert_eq!(t(b"\xff x"), b"\xff x");
    }

    #[test]
    fn repeated_headers_join_in_arrival_order() {
        let headers: &[(&str, &[u8])] = &[("My-H", b"b "), ("x", b"1"), ("my-h", b" a")];
        assert_eq!(header_value(headers, "my-h"), Some(b"b,a".to_vec()));
        assert_eq!(header_value(headers, "nope"), None);
    }
}
