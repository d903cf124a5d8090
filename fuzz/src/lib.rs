//! Shared pieces of the fuzz targets: how a fuzz input is cut into the parts a decoder takes
//! ([`split_line`], [`RawRequest`]) and an in-process fleetrun server the end-to-end target sends
//! signed requests to ([`harness`]).
//!
//! Inputs are cut with total, lenient rules (every byte string is some request) so the seed
//! corpora can be real requests written as text: `Operation\n{json}` or a raw HTTP/1.1 request.

pub mod harness;

/// The first line of `data` (without `\r\n` / `\n`) and the rest.
pub fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => {
            let line = &data[..i];
            (line.strip_suffix(b"\r").unwrap_or(line), &data[i + 1..])
        }
        None => (data, &[]),
    }
}

/// A request cut from raw HTTP/1.1 text: `METHOD PATH?QUERY HTTP/1.1`, header lines
/// `Name: value`, an empty line, the body. Anything goes: a missing part is empty, a header line
/// without `:` is a name with an empty value, header names keep their bytes (lossy UTF-8).
#[derive(Debug, Clone, Default)]
pub struct RawRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn parse(data: &[u8]) -> Self {
        let (line, mut rest) = split_line(data);
        let line = String::from_utf8_lossy(line);
        let mut words = line.splitn(3, ' ');
        let method = words.next().unwrap_or_default().to_owned();
        let target = words.next().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers = Vec::new();
        while !rest.is_empty() {
            let (h, tail) = split_line(rest);
            rest = tail;
            if h.is_empty() {
                break;
            }
            let (name, value) = match h.iter().position(|b| *b == b':') {
                Some(i) => (&h[..i], &h[i + 1..]),
                None => (h, &[][..]),
            };
            // HTTP/1.1 allows optional whitespace after the colon; hyper strips it, so do we.
            let value = value.strip_prefix(b" ").unwrap_or(value);
            headers.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
        }
        Self {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
            body: rest.to_vec(),
        }
    }

    /// Header pairs in the form `fleetrun_sigv4::HttpRequest` takes.
    pub fn header_refs(&self) -> Vec<(&str, &[u8])> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect()
    }
}

/// True for a header name the HTTP stack would hand the server: a non-empty RFC 9110 token.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// True for a header value the HTTP stack would hand the server (visible ASCII, space, tab and
/// obs-text; no control characters).
pub fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_requests_split_into_parts() {
        let r = RawRequest::parse(
            b"POST /a/b?x=1&y HTTP/1.1\r\nHost: h\r\nX-Amz-Target:AmazonSSM.ListCommands\r\n\r\n{}",
        );
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/a/b"));
        assert_eq!(r.query, "x=1&y");
        assert_eq!(r.headers[0], ("Host".to_owned(), b"h".to_vec()));
        assert_eq!(r.headers[1].1, b"AmazonSSM.ListCommands".to_vec());
        assert_eq!(r.body, b"{}".to_vec());
        let empty = RawRequest::parse(b"");
        assert!(empty.method.is_empty() && empty.headers.is_empty());
    }
}
