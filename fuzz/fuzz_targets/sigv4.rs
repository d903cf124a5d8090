//! The `Authorization` header and SigV4 verification on an arbitrary request: the header grammar
//! (`parse_authorization_header`, and the server's logging parser), `parse` on the whole request,
//! then `check_scope`, `check_time` and `verify_signature`. Then the promise real clients rely on:
//! a request that `sign` signed verifies, whatever its method, path, query, headers and body.
//!
//! Input: a raw HTTP/1.1 request (`fleetrun_fuzz::RawRequest`).
#![no_main]

use fleetrun_fuzz::{is_field_value, is_token, RawRequest};
use fleetrun_sigv4::{
    check_scope, check_time, parse, parse_authorization_header, sign, verify_signature,
    Credentials, HttpRequest,
};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn received(raw: &RawRequest) {
    for (name, value) in &raw.headers {
        if name.eq_ignore_ascii_case("authorization") {
            let _ = parse_authorization_header(value);
            if let Ok(text) = std::str::from_utf8(value) {
                let _ = fleetrun_server::sigv4::parse_authorization(text);
            }
        }
    }
    let headers = raw.header_refs();
    let req = HttpRequest {
        method: &raw.method,
        path: &raw.path,
        query: &raw.query,
        headers: &headers,
        body: &raw.body,
    };
    let Ok(signed) = parse(&req) else {
        return;
    };
    // What `parse` promises its callers.
    assert_eq!(signed.timestamp.len(), 16, "{signed:?}");
    assert!(
        signed.auth.signed_headers.windows(2).all(|w| w[0] < w[1]),
        "{signed:?}"
    );
    assert!(
        signed.auth.signed_headers.iter().any(|h| h == "host"),
        "{signed:?}"
    );
    assert!(check_time(&signed, signed.timestamp_unix, 0).is_ok());
    let _ = check_scope(&signed, "us-east-1", "ssm");
    let _ = check_time(&signed, 1_700_000_000, 300);
    let _ = verify_signature(&signed, SECRET);
}

/// Signs the request as a client would, then verifies it as the server does.
fn round_trip(raw: &RawRequest, now: i64) {
    let signable = is_token(&raw.method)
        && !raw.query.contains("X-Amz-Algorithm")
        && raw
            .headers
            .iter()
            .all(|(n, v)| is_token(n) && is_field_value(v) && std::str::from_utf8(v).is_ok());
    if !signable {
        return;
    }
    let mut headers: Vec<(String, Vec<u8>)> = raw
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    if !headers.iter().any(|(n, _)| n == "host") {
        headers.push(("host".into(), b"ssm.us-east-1.amazonaws.com".to_vec()));
    }
    let refs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let req = HttpRequest {
        method: &raw.method,
        path: &raw.path,
        query: &raw.query,
        headers: &refs,
        body: &raw.body,
    };
    let creds = Credentials {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: SECRET,
        session_token: None,
    };
    let added = sign(&req, &creds, "us-east-1", "ssm", now);
    // What the server receives: the request without the headers `sign` replaces, plus its headers.
    let replaced = ["authorization", "x-amz-date", "x-amz-security-token"];
    let mut sent: Vec<(&str, &[u8])> = refs
        .iter()
        .filter(|(n, _)| !replaced.contains(n))
        .copied()
        .collect();
    sent.extend(added.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    let req = HttpRequest {
        headers: &sent,
        ..req
    };
    let signed = parse(&req).unwrap_or_else(|e| panic!("a signed request does not parse: {e:?}"));
    check_scope(&signed, "us-east-1", "ssm").expect("scope of a signed request");
    check_time(&signed, now, 300).expect("time of a signed request");
    verify_signature(&signed, SECRET).expect("signature of a signed request");
    assert!(verify_signature(&signed, "another secret").is_err());
}

fuzz_target!(|data: &[u8]| {
    let raw = RawRequest::parse(data);
    received(&raw);
    // An instant between 2001 and 2102, picked by the body length.
    let now = 1_000_000_000 + (raw.body.len() as i64 % 4096) * 777_777;
    round_trip(&raw, now);
});
