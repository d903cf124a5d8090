//! One test per [`AuthError`] variant (and per distinct way of reaching it), plus the pitfalls of
//! security-facts §3.6 that are not errors: the RFC 1123 `Date` fallback, an unsigned
//! `x-amz-content-sha256`, and `UNSIGNED-PAYLOAD` never standing in for the body hash.

mod common;

use common::Req;
use fleetrun_sigv4::{
    check_scope, check_time, parse_authorization_header, sign, signature_hex, signing_key,
    string_to_sign, verify_signature, AuthError, Credentials, MissingPart,
};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const NOW: i64 = 1_440_938_160; // 2015-08-30T12:36:00Z
const HOST: &str = "localhost:8443";

fn unsigned() -> Req {
    Req::new(
        "POST",
        "/",
        &[
            ("Host", HOST),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "AmazonSSM.ListCommands"),
        ],
        b"{}",
    )
}

fn signed_with(region: &str, service: &str, now: i64) -> Req {
    let mut r = unsigned();
    let creds = Credentials {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: SECRET,
        session_token: None,
    };
    for (n, v) in r.with(|q| sign(q, &creds, region, service, now)) {
        r.push(&n, &v);
    }
    r
}

fn signed() -> Req {
    signed_with("us-east-1", "ssm", NOW)
}

fn with_auth(value: &str) -> Req {
    let mut r = signed();
    r.set("Authorization", value);
    r
}

fn parse_err(r: &Req) -> AuthError {
    r.parse().expect_err("must not parse")
}

fn verify_err(r: &Req) -> AuthError {
    r.verify(SECRET, "us-east-1", "ssm", NOW, 300)
        .expect_err("must not verify")
}

const GOOD_CRED: &str = "Credential=AKIDEXAMPLE/20150830/us-east-1/ssm/aws4_request";
const SIG: &str = "Signature=0000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn baseline_verifies() {
    assert!(signed()
        .verify(SECRET, "us-east-1", "ssm", NOW, 300)
        .is_ok());
}

#[test]
fn missing_authentication() {
    assert_eq!(parse_err(&unsigned()), AuthError::MissingAuthentication);
    assert_eq!(
        parse_err(&with_auth("  ")),
        AuthError::MissingAuthentication
    );
}

#[test]
fn presigned_and_mixed_query_auth() {
    let mut r = unsigned();
    r.query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fssm%2Faws4_request".into();
    assert_eq!(parse_err(&r), AuthError::PresignedNotSupported);
    let mut r = signed();
    r.query = "x-amz-algorithm=AWS4-HMAC-SHA256".into();
    assert_eq!(parse_err(&r), AuthError::HeaderAndQueryAuth);
    r.query = "X%2DAmz-Algorithm=AWS4-HMAC-SHA256".into();
    assert_eq!(parse_err(&r), AuthError::HeaderAndQueryAuth);
}

#[test]
fn duplicate_authorization() {
    let mut r = signed();
    let v = String::from_utf8(r.header("authorization").expect("signed").to_vec()).expect("ASCII");
    r.push("AUTHORIZATION", &v);
    assert_eq!(
        parse_err(&r),
        AuthError::DuplicateAuthorization { count: 2 }
    );
}

#[test]
fn non_utf8_headers() {
    let mut r = signed();
    r.headers
        .push(("authorization".into(), b"AWS4-HMAC-SHA256 \xff".to_vec()));
    r.headers
        .retain(|(n, v)| n != "authorization" || v.ends_with(b"\xff"));
    let want = AuthError::NonUtf8Header {
        name: "authorization".into(),
    };
    assert_eq!(parse_err(&r), want);
    assert_eq!(parse_authorization_header(b"\xc3("), Err(want));

    let mut r = signed();
    r.headers
        .iter_mut()
        .find(|(n, _)| n == "X-Amz-Target")
        .expect("present")
        .1 = b"AmazonSSM.\xe9".to_vec();
    let want = AuthError::NonUtf8Header {
        name: "x-amz-target".into(),
    };
    assert_eq!(parse_err(&r), want);
}

#[test]
fn not_a_key_value_pair() {
    // A space inside Credential=, the usual cause (security-facts §1 row 6a).
    let value = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2015 0830/us-east-1/ssm/aws4_request, SignedHeaders=host;x-amz-date, {SIG}"
    );
    assert_eq!(
        parse_err(&with_auth(&value)),
        AuthError::NotKeyValuePair {
            token: "0830/us-east-1/ssm/aws4_request".into(),
            header: value.clone(),
        }
    );
    // AWS reports this before looking at the algorithm.
    assert_eq!(
        parse_err(&with_auth("Bearer token")),
        AuthError::NotKeyValuePair {
            token: "token".into(),
            header: "Bearer token".into()
        }
    );
}

#[test]
fn duplicate_component() {
    let value =
        format!("AWS4-HMAC-SHA256 {GOOD_CRED}, {GOOD_CRED}, SignedHeaders=host;x-amz-date, {SIG}");
    assert_eq!(
        parse_err(&with_auth(&value)),
        AuthError::DuplicateComponent {
            name: "Credential".into(),
            header: value.clone()
        }
    );
}

#[test]
fn unsupported_algorithm() {
    let value = format!("AWS4-ECDSA-P256-SHA256 {GOOD_CRED}, SignedHeaders=host;x-amz-date, {SIG}");
    assert_eq!(
        parse_err(&with_auth(&value)),
        AuthError::UnsupportedAlgorithm {
            algorithm: "AWS4-ECDSA-P256-SHA256".into()
        }
    );
    assert_eq!(
        parse_err(&with_auth("AWS AKIDEXAMPLE=:frJIUN8DYpKDtOLCwo//yllqDzg=")),
        AuthError::UnsupportedAlgorithm {
            algorithm: "AWS".into()
        }
    );
}

#[test]
fn missing_parts_listed_in_aws_order() {
    let mut r =
        with_auth("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ssm/aws4_request");
    r.remove("x-amz-date");
    assert_eq!(
        parse_err(&r),
        AuthError::MissingParts {
            missing: vec![
                MissingPart::Signature,
                MissingPart::SignedHeaders,
                MissingPart::DateHeader
            ],
            header: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ssm/aws4_request"
                .into(),
        }
    );
    // An empty value counts as missing.
    assert_eq!(
        parse_err(&with_auth(
            "AWS4-HMAC-SHA256 Credential=, Signature=, SignedHeaders="
        )),
        AuthError::MissingParts {
            missing: vec![
                MissingPart::Credential,
                MissingPart::Signature,
                MissingPart::SignedHeaders
            ],
            header: "AWS4-HMAC-SHA256 Credential=, Signature=, SignedHeaders=".into(),
        }
    );
}

#[test]
fn credential_not_five_parts() {
    let value = format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ssm, SignedHeaders=host;x-amz-date, {SIG}");
    assert_eq!(
        parse_err(&with_auth(&value)),
        AuthError::CredentialParts {
            value: "AKIDEXAMPLE/20150830/us-east-1/ssm".into()
        }
    );
}

#[test]
fn bad_date_format() {
    let mut r = signed();
    r.set("X-Amz-Date", "2015-08-30T12:36:00Z");
    assert_eq!(
        parse_err(&r),
        AuthError::BadDateFormat {
            value: "2015-08-30T12:36:00Z".into()
        }
    );
    // Two X-Amz-Date headers join into one value that is no timestamp.
    let mut r = signed();
    r.push("x-amz-date", "20150830T123600Z");
    assert_eq!(
        parse_err(&r),
        AuthError::BadDateFormat {
            value: "20150830T123600Z,20150830T123600Z".into()
        }
    );
}

#[test]
fn signed_headers_not_canonical() {
    for list in [
        "x-amz-date;host",
        "host;host;x-amz-date",
        "Host;x-amz-date",
        "host;;x-amz-date",
    ] {
        let value = format!("AWS4-HMAC-SHA256 {GOOD_CRED}, SignedHeaders={list}, {SIG}");
        assert_eq!(
            parse_err(&with_auth(&value)),
            AuthError::SignedHeadersNotCanonical { value: list.into() },
            "{list}"
        );
    }
}

#[test]
fn host_and_date_must_be_signed() {
    let value =
        format!("AWS4-HMAC-SHA256 {GOOD_CRED}, SignedHeaders=content-type;x-amz-date, {SIG}");
    assert_eq!(parse_err(&with_auth(&value)), AuthError::HostNotSigned);
    let value = format!("AWS4-HMAC-SHA256 {GOOD_CRED}, SignedHeaders=content-type;host, {SIG}");
    assert_eq!(
        parse_err(&with_auth(&value)),
        AuthError::DateNotSigned {
            name: "x-amz-date".into()
        }
    );
}

#[test]
fn signed_header_absent() {
    let value = format!("AWS4-HMAC-SHA256 {GOOD_CRED}, SignedHeaders=host;x-amz-date;x-foo, {SIG}");
    assert_eq!(
        parse_err(&with_auth(&value)),
        AuthError::SignedHeaderAbsent {
            name: "x-foo".into()
        }
    );
    let mut r = signed();
    r.remove("host");
    assert_eq!(
        parse_err(&r),
        AuthError::SignedHeaderAbsent {
            name: "host".into()
        }
    );
}

#[test]
fn malformed_signature_is_found_by_verify() {
    for sig in ["abc", &"g".repeat(64), &"0".repeat(65)] {
        let value = format!("AWS4-HMAC-SHA256 {GOOD_CRED}, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={sig}");
        let r = with_auth(&value);
        // parse accepts it: a caller may verify a non-hex (asymmetric) signature itself.
        assert_eq!(r.parse().expect("parses").auth.signature, sig);
        assert_eq!(
            verify_err(&r),
            AuthError::MalformedSignature { value: sig.into() }
        );
    }
}

#[test]
fn scope_errors_in_order() {
    let r = signed_with("eu-west-1", "ssm", NOW);
    assert_eq!(
        verify_err(&r),
        AuthError::WrongRegion {
            region: "eu-west-1".into()
        }
    );
    let r = signed_with("us-east-1", "ec2", NOW);
    assert_eq!(
        verify_err(&r),
        AuthError::WrongService {
            expected: "ssm".into()
        }
    );
    let mut r = signed();
    let v = String::from_utf8(r.header("authorization").expect("signed").to_vec()).expect("ASCII");
    r.set("authorization", &v.replace("/20150830/", "/20150831/"));
    assert_eq!(
        verify_err(&r),
        AuthError::ScopeDateMismatch {
            scope: "20150831".into(),
            date: "20150830".into(),
            timestamp: "20150830T123600Z".into()
        }
    );
    r.set("authorization", &v.replace("aws4_request", "aws5_request"));
    assert_eq!(
        verify_err(&r),
        AuthError::BadTerminator {
            terminator: "aws5_request".into()
        }
    );
}

#[test]
fn clock_window_errors_carry_aws_timestamps() {
    // The SSM capture of security-facts §1 row 4.
    let signed_at = 1_699_031_476; // 20231103T171116Z
    let r = signed_with("us-east-1", "ssm", signed_at);
    let s = r.parse().expect("parses");
    let now = 1_699_031_844; // 20231103T171724Z
    assert_eq!(
        check_time(&s, now, 300),
        Err(AuthError::Expired {
            timestamp: "20231103T171116Z".into(),
            earliest: "20231103T171224Z".into(),
            now: "20231103T171724Z".into(),
            window_mins: 5
        })
    );
    assert_eq!(
        check_time(&s, signed_at - 301, 300),
        Err(AuthError::NotYetCurrent {
            timestamp: "20231103T171116Z".into(),
            latest: "20231103T171115Z".into(),
            now: "20231103T170615Z".into(),
            window_mins: 5
        })
    );
    assert_eq!(check_time(&s, signed_at, i64::MAX), Ok(()));
    assert!(check_time(&s, i64::MIN, 300).is_err());
    assert!(check_scope(&s, "us-east-1", "ssm").is_ok());
}

#[test]
fn signature_mismatch() {
    assert_eq!(
        signed().verify("other", "us-east-1", "ssm", NOW, 300).err(),
        Some(AuthError::SignatureMismatch)
    );
}

/// Builds the Authorization for a hand-written canonical request (the client's view).
fn hand_signed(creq: &str, signed_headers: &str) -> String {
    let sts = string_to_sign(
        "20150830T123600Z",
        "20150830",
        "us-east-1",
        "ssm",
        creq.as_bytes(),
    );
    let sig = signature_hex(&signing_key(SECRET, "20150830", "us-east-1", "ssm"), &sts);
    format!("AWS4-HMAC-SHA256 {GOOD_CRED}, SignedHeaders={signed_headers}, Signature={sig}")
}

#[test]
fn unsigned_payload_never_replaces_the_body_hash() {
    let mut r = unsigned();
    r.push("X-Amz-Date", "20150830T123600Z");
    r.push("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    let creq = |payload: &str| {
        format!(
            "POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:{HOST}\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-content-sha256;x-amz-date\n{payload}"
        )
    };
    let list = "content-type;host;x-amz-content-sha256;x-amz-date";
    // Control: the hand-built canonical request with the real hash is what we rebuild.
    r.set(
        "Authorization",
        &hand_signed(&creq(&fleetrun_sigv4::sha256_hex(b"{}")), list),
    );
    assert!(r.verify(SECRET, "us-east-1", "ssm", NOW, 300).is_ok());
    // A client that skipped the body hash is refused: the body is not covered.
    r.set(
        "Authorization",
        &hand_signed(&creq("UNSIGNED-PAYLOAD"), list),
    );
    assert_eq!(verify_err(&r), AuthError::SignatureMismatch);
}

#[test]
fn unsigned_content_sha256_is_tolerated() {
    // The SSM agent adds it after fixing SignedHeaders (security-facts §2.3).
    let mut r = signed();
    r.push("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD");
    assert!(r.verify(SECRET, "us-east-1", "ssm", NOW, 300).is_ok());
}

#[test]
fn rfc1123_date_header_fallback() {
    let date = "Sun, 30 Aug 2015 12:36:00 GMT";
    let mut r = unsigned();
    r.push("Date", date);
    let creq = format!(
        "POST\n/\n\ncontent-type:application/x-amz-json-1.1\ndate:{date}\nhost:{HOST}\n\ncontent-type;date;host\n{}",
        fleetrun_sigv4::sha256_hex(b"{}")
    );
    r.set(
        "Authorization",
        &hand_signed(&creq, "content-type;date;host"),
    );
    let s = r
        .verify(SECRET, "us-east-1", "ssm", NOW, 300)
        .expect("verifies");
    assert_eq!(s.canonical_request, creq);
    assert_eq!(s.timestamp, "20150830T123600Z");
    assert_eq!(s.timestamp_unix, NOW);
    // With both, X-Amz-Date wins and Date is just another header.
    let mut r = signed();
    r.push("Date", "garbage");
    assert!(r.verify(SECRET, "us-east-1", "ssm", NOW, 300).is_ok());
}

#[test]
fn session_token_reported_signed_or_not() {
    let mut r = signed();
    assert_eq!(r.parse().expect("parses").session_token, None);
    r.push("X-Amz-Security-Token", "TOKEN");
    let s = r
        .verify(SECRET, "us-east-1", "ssm", NOW, 300)
        .expect("unsigned token is the caller's to check");
    assert_eq!(s.session_token.as_deref(), Some("TOKEN"));
    assert!(
        !format!("{s:?}").contains("TOKEN"),
        "Debug redacts the token"
    );
    assert!(verify_signature(&s, SECRET).is_ok());
}
