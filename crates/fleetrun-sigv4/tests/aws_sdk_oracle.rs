//! The AWS SDK's own signer (`aws-sigv4`, dev-dependency only) as a test oracle: random requests
//! it signs with its default settings (double path encoding, path normalisation, session token
//! signed) verify here, and our `sign()` produces the very same Authorization header for them.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use aws_sigv4::http_request::{sign as aws_sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use common::{Req, Rng};
use fleetrun_sigv4::{sign, AuthError, Credentials};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const NOW: i64 = 1_795_777_710;

/// Signs `r` with aws-sigv4 and returns the headers it adds.
fn aws_headers(r: &Req, token: Option<&str>) -> Vec<(String, String)> {
    let identity = aws_credential_types::Credentials::new(
        "AKIDEXAMPLE",
        SECRET,
        token.map(str::to_owned),
        None,
        "test",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("ssm")
        .time(UNIX_EPOCH + Duration::from_secs(NOW as u64))
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let host = std::str::from_utf8(r.header("host").expect("host")).expect("ascii");
    let query = if r.query.is_empty() {
        String::new()
    } else {
        format!("?{}", r.query)
    };
    let uri = format!("https://{host}{}{query}", r.path);
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), std::str::from_utf8(v).expect("ascii")))
        .collect();
    let signable = SignableRequest::new(
        &r.method,
        uri,
        headers.into_iter(),
        SignableBody::Bytes(&r.body),
    )
    .expect("signable");
    let (instructions, _) = aws_sign(signable, &params).expect("sign").into_parts();
    let (headers, _) = instructions.into_parts();
    headers
        .iter()
        .map(|h| (h.name().to_owned(), h.value().to_owned()))
        .collect()
}

fn segment(rng: &mut Rng) -> String {
    const PIECES: &[&str] = &[
        "a", "Bc", "x-y", "z_9", "~t", "%3A", "%20", "v.1", ".", "..", "",
    ];
    (0..1 + rng.below(3))
        .map(|_| PIECES[rng.below(PIECES.len())])
        .collect()
}

fn random_request(rng: &mut Rng) -> Req {
    let path: String = (0..rng.below(4))
        .map(|_| format!("/{}", segment(rng)))
        .collect();
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let body_len = rng.below(300);
    let body = rng.bytes(body_len);
    let mut r = Req::new(["GET", "POST"][rng.below(2)], &path, &[], &body);
    const Q: &[&str] = &["a=1", "B=x+y", "c=%2F", "a=0", "empty=", "k%20ey=v", "~=~"];
    r.query = (0..rng.below(4))
        .map(|_| Q[rng.below(Q.len())])
        .collect::<Vec<_>>()
        .join("&");
    r.push(
        "host",
        ["127.0.0.1:18777", "ssm.us-east-1.amazonaws.com"][rng.below(2)],
    );
    r.push("content-type", "application/x-amz-json-1.1");
    for _ in 0..rng.below(5) {
        let name = format!("x-h{}", rng.below(4));
        let len = 1 + rng.below(20);
        let value = rng.text(len).trim().to_owned();
        let value = if value.is_empty() {
            "v".to_owned()
        } else {
            value
        };
        r.push(&name, &format!(" {value}  "));
    }
    r
}

#[test]
fn aws_sdk_signatures_verify_and_match_ours() {
    let mut rng = Rng(0x0a75_5d4b_0c1e_0001);
    for round in 0..300 {
        let unsigned = random_request(&mut rng);
        let token = (rng.below(3) == 0).then_some("SESSIONTOKEN");
        let theirs = aws_headers(&unsigned, token);
        let mut r = unsigned.clone();
        for (n, v) in &theirs {
            r.push(n, v);
        }
        let verified = r.verify(SECRET, "us-east-1", "ssm", NOW, 300);
        assert!(verified.is_ok(), "round {round}: {verified:?}\n{r:?}");
        assert_eq!(verified.expect("verified").session_token.as_deref(), token);

        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: SECRET,
            session_token: token,
        };
        let ours = unsigned.with(|q| sign(q, &creds, "us-east-1", "ssm", NOW));
        let auth = |hs: &[(String, String)]| {
            hs.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(auth(&ours), auth(&theirs), "round {round}: {unsigned:?}");

        let mut t = r.clone();
        t.body.push(b'!');
        assert_eq!(
            t.verify(SECRET, "us-east-1", "ssm", NOW, 300).err(),
            Some(AuthError::SignatureMismatch)
        );
    }
}

#[test]
fn aws_sdk_excluded_headers_stay_unsigned_and_verify() {
    // aws-sigv4 never signs user-agent / x-amzn-trace-id / transfer-encoding; clients may change them.
    let mut r = Req::new(
        "POST",
        "/",
        &[
            ("host", "127.0.0.1:18777"),
            ("user-agent", "aws-sdk-rust/1.7.0"),
            ("x-amzn-trace-id", "Root=1-abc"),
            ("x-amz-target", "AmazonSSM.ListCommands"),
        ],
        b"{}",
    );
    for (n, v) in aws_headers(&r.clone(), None) {
        r.push(&n, &v);
    }
    let s = r
        .verify(SECRET, "us-east-1", "ssm", NOW, 300)
        .expect("verifies");
    assert_eq!(
        s.auth.signed_headers,
        ["host", "x-amz-date", "x-amz-target"]
    );
    r.set("user-agent", "changed");
    assert!(r.verify(SECRET, "us-east-1", "ssm", NOW, 300).is_ok());
}
