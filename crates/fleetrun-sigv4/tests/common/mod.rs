//! Test helpers shared by the integration tests: an owned request (so tests can tamper with it),
//! a reader for the AWS suite's `*.txt` request files, and a small deterministic PRNG.

#![allow(dead_code)]

use fleetrun_sigv4::{
    check_scope, check_time, parse, verify_signature, AuthError, HttpRequest, SignedRequest,
};

/// A request owning its parts; `with` lends it out as the crate's borrowed [`HttpRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn new(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Self {
        Req {
            method: method.to_owned(),
            path: path.to_owned(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
                .collect(),
            body: body.to_vec(),
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&HttpRequest) -> R) -> R {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let req = HttpRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &headers,
            body: &self.body,
        };
        f(&req)
    }

    pub fn parse(&self) -> Result<SignedRequest, AuthError> {
        self.with(parse)
    }

    /// All four verification steps, as a server runs them.
    pub fn verify(
        &self,
        secret: &str,
        region: &str,
        service: &str,
        now: i64,
        window: i64,
    ) -> Result<SignedRequest, AuthError> {
        let signed = self.parse()?;
        check_scope(&signed, region, service)?;
        check_time(&signed, now, window)?;
        verify_signature(&signed, secret)?;
        Ok(signed)
    }

    pub fn push(&mut self, name: &str, value: &str) {
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
    }

    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.push(name, value);
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Reads a suite request file: `METHOD PATH[?QUERY][ HTTP/1.1]`, `Name:value` lines (a line
/// starting with whitespace continues the previous value, kept with its newline), a blank line,
/// then the body. Paths may contain spaces (`get-space-*`), so the version is cut off the end.
pub fn read_request(text: &str) -> Req {
    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h, b),
        None => (text.trim_end_matches('\n'), ""),
    };
    let mut lines = head.split('\n');
    let request_line = lines.next().unwrap_or_default();
    let (method, target) = request_line.split_once(' ').expect("request line");
    let target = target.strip_suffix(" HTTP/1.1").unwrap_or(target);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut().expect("continuation after a header");
            last.1.push(b'\n');
            last.1.extend_from_slice(line.as_bytes());
        } else {
            let (n, v) = line.split_once(':').expect("header line");
            headers.push((n.to_owned(), v.as_bytes().to_vec()));
        }
    }
    Req {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// xorshift64*: deterministic, dependency-free randomness for property-style tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    /// Printable ASCII, sometimes with spaces (exercising trim/collapse).
    pub fn text(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b' ' + (self.below(95) as u8)))
            .collect()
    }
}
