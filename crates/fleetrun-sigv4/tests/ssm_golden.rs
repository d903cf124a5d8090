//! SSM golden vectors from security-facts.md: the three botocore `SigV4Auth` vectors of §3.4
//! (botocore's header set, clock 2015-08-30T12:36:00Z) and the two aws-sdk-rust wire captures of
//! §2.2 (headers exactly as captured, clock 2026-11-27T11:08:30Z). Each must verify as a server
//! would (region `us-east-1`, service `ssm`, 5-minute window), and stop verifying when its secret,
//! body or a signed header changes; unsigned headers may change freely.

mod common;

use common::Req;
use fleetrun_sigv4::{sign, AuthError, Credentials};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const T2015: i64 = 1_440_938_160; // 2015-08-30T12:36:00Z
const T2026: i64 = 1_795_777_710; // 2026-11-27T11:08:30Z

struct Vector {
    host: &'static str,
    body: &'static str,
    target: &'static str,
    token: Option<&'static str>,
    signed_headers: &'static str,
    payload_hash: &'static str,
    signature: &'static str,
    creq_hash: &'static str,
}

const BOTOCORE: [Vector; 3] = [
    Vector {
        host: "ssm.us-east-1.amazonaws.com",
        body: "{}",
        target: "AmazonSSM.ListCommands",
        token: None,
        signed_headers: "content-type;host;x-amz-date;x-amz-target",
        payload_hash: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        signature: "515da5d1138a52d8f9bc5d0a77229062e383da85b743eb396f13864a03df82c7",
        creq_hash: "440a90c14fe3fa69ba449f2c536438ffbc0c08333bd65166ef7768268bd71ae8",
    },
    Vector {
        host: "ssm.us-east-1.amazonaws.com",
        body: "{}",
        target: "AmazonSSM.ListCommands",
        token: Some("SESSIONTOKENEXAMPLE"),
        signed_headers: "content-type;host;x-amz-date;x-amz-security-token;x-amz-target",
        payload_hash: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        signature: "107867d3d3bd2c4cafe5ecc7d80fa2d13c760118be710b729bb18493e40ceb9c",
        creq_hash: "ae980f74baa196aff9f8e6e6775bb0d197237cd2e074cc9f10f4a72a0eaeda0a",
    },
    Vector {
        host: "localhost:8443",
        body: r#"{"CommandId":"11111111-2222-3333-4444-555555555555","InstanceId":"mi-0123456789abcdef0"}"#,
        target: "AmazonSSM.GetCommandInvocation",
        token: None,
        signed_headers: "content-type;host;x-amz-date;x-amz-target",
        payload_hash: "5a76db1039e98638ace948049a38de0d587c6b3fecaf7ba6c57fa5fe1351c6b3",
        signature: "2c47f843e1d8fb031f116f10d3d567cd27d7f4c6c59fde0df534f222f1d56ac7",
        creq_hash: "225f444ec1ed58dcc599e4381d46abf2e3033291be7d567666d74d453849df51",
    },
];

/// The request botocore sends (§2.1 header order), with its unsigned extras.
fn botocore_request(v: &Vector) -> Req {
    let mut r = Req::new("POST", "/", &[], v.body.as_bytes());
    r.push("Host", v.host);
    r.push("Accept-Encoding", "identity");
    r.push("X-Amz-Target", v.target);
    r.push("Content-Type", "application/x-amz-json-1.1");
    r.push(
        "User-Agent",
        "Botocore/1.44.8 ua/2.1 os/linux md/arch#x86_64 lang/python#3.11.7",
    );
    r.push("X-Amz-Date", "20150830T123600Z");
    if let Some(t) = v.token {
        r.push("X-Amz-Security-Token", t);
    }
    r.push(
        "Authorization",
        &format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ssm/aws4_request, SignedHeaders={}, Signature={}",
            v.signed_headers, v.signature
        ),
    );
    r.push(
        "amz-sdk-invocation-id",
        "2d4c3a1e-0000-4000-8000-000000000000",
    );
    r.push("amz-sdk-request", "attempt=1; max=3");
    r.push("Content-Length", &v.body.len().to_string());
    r
}

fn assert_integrity(r: &Req, now: i64, signed: &[&str]) {
    assert!(r.verify(SECRET, "us-east-1", "ssm", now, 300).is_ok());
    assert_eq!(
        r.verify("wrongsecret", "us-east-1", "ssm", now, 300).err(),
        Some(AuthError::SignatureMismatch)
    );
    let mut t = r.clone();
    t.body.push(b' ');
    assert_eq!(
        t.verify(SECRET, "us-east-1", "ssm", now, 300).err(),
        Some(AuthError::SignatureMismatch),
        "body"
    );
    for name in signed {
        let mut t = r.clone();
        let v = t.header(name).expect("signed header").to_vec();
        let mut changed = v.clone();
        changed.push(b'x');
        t.set(name, std::str::from_utf8(&changed).expect("utf8"));
        assert!(
            t.verify(SECRET, "us-east-1", "ssm", now, 300).is_err(),
            "changed {name}"
        );
    }
    let mut t = r.clone();
    t.set("amz-sdk-request", "attempt=2; max=3");
    t.set("User-Agent", "something else");
    assert!(
        t.verify(SECRET, "us-east-1", "ssm", now, 300).is_ok(),
        "unsigned headers are not covered"
    );
}

#[test]
fn botocore_ssm_vectors_verify() {
    for v in &BOTOCORE {
        let r = botocore_request(v);
        let signed = r
            .verify(SECRET, "us-east-1", "ssm", T2015, 300)
            .expect(v.target);
        let creq_lines: Vec<&str> = signed.canonical_request.lines().collect();
        assert_eq!(creq_lines.last(), Some(&v.payload_hash));
        assert_eq!(
            signed.string_to_sign.lines().nth(3),
            Some(v.creq_hash),
            "{}",
            v.host
        );
        assert_eq!(signed.session_token.as_deref(), v.token);
        let names: Vec<&str> = v.signed_headers.split(';').collect();
        assert_integrity(&r, T2015, &names);
    }
}

#[test]
fn our_signer_reproduces_the_botocore_vectors() {
    for v in &BOTOCORE {
        // botocore's signed set only: host, content-type, x-amz-target (+ the added ones).
        let r = Req::new(
            "POST",
            "/",
            &[
                ("Host", v.host),
                ("X-Amz-Target", v.target),
                ("Content-Type", "application/x-amz-json-1.1"),
            ],
            v.body.as_bytes(),
        );
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: SECRET,
            session_token: v.token,
        };
        let added = r.with(|req| sign(req, &creds, "us-east-1", "ssm", T2015));
        let auth = &added.last().expect("authorization").1;
        assert!(auth.ends_with(v.signature), "{auth}");
        assert!(auth.contains(&format!("SignedHeaders={},", v.signed_headers)));
    }
}

/// aws-sdk-ssm 1.133.0 `list_commands()`, headers in wire order (§2.2).
fn sdk_rust_request(token: bool) -> Req {
    let ua = "aws-sdk-rust/1.7.0 ua/2.1 api/ssm/1.133.0 os/linux lang/rust/1.95.0 m/E,N md/http#hyper-1.x";
    let mut r = Req::new("POST", "/", &[], b"{}");
    r.push("content-type", "application/x-amz-json-1.1");
    r.push("content-length", "2");
    r.push("x-amz-target", "AmazonSSM.ListCommands");
    r.push("user-agent", ua);
    r.push("x-amz-user-agent", ua);
    r.push("x-amz-date", "20261127T110830Z");
    let (signed, sig) = if token {
        (
            "content-length;content-type;host;x-amz-date;x-amz-security-token;x-amz-target;x-amz-user-agent",
            "f3224bac7fcfd1f93d27d91cc12f306d5bef81ab55909af0435d4e67c11b8352",
        )
    } else {
        (
            "content-length;content-type;host;x-amz-date;x-amz-target;x-amz-user-agent",
            "7a40c415ef25de309d5da5ad5f0ae95052450439898c07c01fe74df392be1e5e",
        )
    };
    r.push(
        "authorization",
        &format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/ssm/aws4_request, SignedHeaders={signed}, Signature={sig}"),
    );
    if token {
        r.push("x-amz-security-token", "SESSIONTOKEN");
    }
    r.push("amz-sdk-request", "attempt=1; max=3");
    r.push(
        "amz-sdk-invocation-id",
        "0b6f7e4c-1111-4222-8333-444455556666",
    );
    r.push("host", "127.0.0.1:18777");
    r
}

#[test]
fn aws_sdk_rust_captures_verify() {
    for token in [false, true] {
        let r = sdk_rust_request(token);
        let signed = r
            .verify(SECRET, "us-east-1", "ssm", T2026, 300)
            .unwrap_or_else(|e| panic!("token={token}: {e:?}"));
        assert_eq!(signed.timestamp, "20261127T110830Z");
        assert_eq!(signed.session_token.is_some(), token);
        let names: Vec<String> = signed.auth.signed_headers.clone();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_integrity(&r, T2026, &names);
        // The host the client signed includes the port: another port is another signature.
        let mut t = r.clone();
        t.set("host", "127.0.0.1:18778");
        assert_eq!(
            t.verify(SECRET, "us-east-1", "ssm", T2026, 300).err(),
            Some(AuthError::SignatureMismatch)
        );
    }
}

#[test]
fn the_five_minute_window_holds_at_its_edges() {
    let r = sdk_rust_request(false);
    for (now, ok) in [
        (T2026 + 299, true),
        (T2026 + 300, true),
        (T2026 + 301, false),
        (T2026 - 300, true),
        (T2026 - 301, false),
    ] {
        let res = r.verify(SECRET, "us-east-1", "ssm", now, 300);
        assert_eq!(res.is_ok(), ok, "now = T + {}: {res:?}", now - T2026);
    }
}
