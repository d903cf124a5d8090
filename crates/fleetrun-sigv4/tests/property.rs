//! Property-style tests with a fixed-seed PRNG (no extra dependencies): random requests signed by
//! `sign()` verify, any single-byte change to what the signature covers is refused, and `parse`
//! (and the steps after it) never panic on thousands of garbage requests.

mod common;

use common::{Req, Rng};
use fleetrun_sigv4::{
    check_scope, check_time, parse_authorization_header, sign, verify_signature, Credentials,
};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const NOW: i64 = 1_795_777_710;
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn random_request(rng: &mut Rng) -> Req {
    let methods = ["GET", "POST", "PUT", "DELETE"];
    let mut path = String::new();
    for _ in 0..rng.below(4) {
        path.push('/');
        path.push_str(&word(rng, 1, 8));
    }
    let mut query = Vec::new();
    for _ in 0..rng.below(3) {
        query.push(format!("{}={}", word(rng, 1, 5), word(rng, 0, 5)));
    }
    let body_len = rng.below(200);
    let body = rng.bytes(body_len);
    let mut r = Req::new(methods[rng.below(4)], &path, &[], &body);
    r.query = query.join("&");
    r.push(
        if rng.below(2) == 0 { "Host" } else { "host" },
        "127.0.0.1:8443",
    );
    for _ in 0..rng.below(6) {
        let name = format!("x-{}", word(rng, 1, 6));
        let value = {
            let n = 1 + rng.below(30);
            rng.text(n)
        };
        r.push(&name, &value);
        if rng.below(4) == 0 {
            // A repeated name, possibly in another case: joined in arrival order.
            let value = {
                let n = 1 + rng.below(10);
                rng.text(n)
            };
            r.push(&name.to_ascii_uppercase(), &value);
        }
    }
    r
}

/// A random word of `min..min + spread` letters.
fn word(rng: &mut Rng, min: usize, spread: usize) -> String {
    let len = min + rng.below(spread);
    (0..len)
        .map(|_| char::from(LETTERS[rng.below(LETTERS.len())]))
        .collect()
}

fn sign_into(r: &mut Req, token: Option<&str>) {
    let creds = Credentials {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: SECRET,
        session_token: token,
    };
    for (n, v) in r.with(|q| sign(q, &creds, "us-east-1", "ssm", NOW)) {
        r.push(&n, &v);
    }
}

fn verifies(r: &Req) -> bool {
    r.verify(SECRET, "us-east-1", "ssm", NOW, 300).is_ok()
}

/// Replaces `b` by a different byte of the same class, so the change survives canonicalisation:
/// letters by other letters (not merely another case), digits by digits, anything else by a letter.
fn other(rng: &mut Rng, b: u8) -> u8 {
    loop {
        let c = if b.is_ascii_digit() {
            b'0' + rng.below(10) as u8
        } else {
            LETTERS[rng.below(LETTERS.len())]
        };
        if !c.eq_ignore_ascii_case(&b) {
            return c;
        }
    }
}

fn non_ws_positions(v: &[u8]) -> Vec<usize> {
    (0..v.len())
        .filter(|&i| !v[i].is_ascii_whitespace())
        .collect()
}

#[test]
fn signed_random_requests_verify_and_every_single_byte_change_fails() {
    let mut rng = Rng(0x5167_7634_a11c_e5ed);
    let mut mutations = 0;
    for round in 0..400 {
        let mut r = random_request(&mut rng);
        let token = (rng.below(3) == 0).then(|| rng.text(20).replace(' ', "t"));
        sign_into(&mut r, token.as_deref());
        assert!(verifies(&r), "round {round}: {r:?}");

        // Body: any change of any byte.
        if !r.body.is_empty() {
            let mut t = r.clone();
            let i = rng.below(t.body.len());
            t.body[i] ^= 1 + rng.below(255) as u8;
            assert!(!verifies(&t), "round {round}: body byte {i}");
            mutations += 1;
        }
        // Every header is signed (sign() signs them all): change one byte of each value, the
        // Authorization header's signature digits included.
        for h in 0..r.headers.len() {
            let mut t = r.clone();
            let is_auth = t.headers[h].0.eq_ignore_ascii_case("authorization");
            let v = &mut t.headers[h].1;
            let i = if is_auth {
                v.len() - 1 - rng.below(64)
            } else {
                match non_ws_positions(v).as_slice() {
                    [] => rng.below(v.len()), // all blank: any letter makes it non-empty
                    pos => pos[rng.below(pos.len())],
                }
            };
            v[i] = if is_auth {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let digit = HEX.iter().position(|&c| c == v[i]).expect("hex digit");
                HEX[(digit + 1 + rng.below(15)) % 16]
            } else {
                other(&mut rng, v[i])
            };
            assert!(!verifies(&t), "round {round}: header {h} byte {i}: {t:?}");
            mutations += 1;
        }
        // A header name: the signed name is then absent.
        let mut t = r.clone();
        let h = rng.below(t.headers.len());
        let name = mutate_name(&mut rng, &t.headers[h].0);
        t.headers[h].0 = name;
        assert!(!verifies(&t), "round {round}: header name {h}");
        // Path, query, method.
        let mut t = r.clone();
        if t.path.is_empty() {
            t.path.push('/');
            t.path.push(char::from(LETTERS[rng.below(52)]));
        } else {
            let mut b = t.path.clone().into_bytes();
            let pos: Vec<usize> = (0..b.len()).filter(|&i| b[i] != b'/').collect();
            let i = pos[rng.below(pos.len())];
            b[i] = other(&mut rng, b[i]);
            t.path = String::from_utf8(b).expect("ASCII");
        }
        assert!(
            !verifies(&t),
            "round {round}: path {:?} -> {:?}",
            r.path,
            t.path
        );
        if !r.query.is_empty() {
            let mut t = r.clone();
            let mut b = t.query.clone().into_bytes();
            let pos: Vec<usize> = (0..b.len())
                .filter(|&i| b[i].is_ascii_alphabetic())
                .collect();
            let i = pos[rng.below(pos.len())];
            b[i] = other(&mut rng, b[i]);
            t.query = String::from_utf8(b).expect("ASCII");
            assert!(
                !verifies(&t),
                "round {round}: query {:?} -> {:?}",
                r.query,
                t.query
            );
        }
        let mut t = r.clone();
        t.method = if t.method == "GET" {
            "HEAD".into()
        } else {
            "GET".into()
        };
        assert!(!verifies(&t), "round {round}: method");
        mutations += 4;
    }
    println!("{mutations} single-byte mutations, all refused");
}

fn mutate_name(rng: &mut Rng, name: &str) -> String {
    let mut b = name.as_bytes().to_vec();
    let pos: Vec<usize> = (0..b.len())
        .filter(|&i| b[i].is_ascii_alphabetic())
        .collect();
    let i = pos[rng.below(pos.len())];
    b[i] = other(rng, b[i]);
    String::from_utf8(b).expect("ASCII")
}

/// Pieces that make garbage look almost like an Authorization header.
const FRAGMENTS: &[&[u8]] = &[
    b"AWS4-HMAC-SHA256",
    b" ",
    b", ",
    b",",
    b"=",
    b"/",
    b";",
    b"Credential=",
    b"SignedHeaders=",
    b"Signature=",
    b"AKIDEXAMPLE/20261127/us-east-1/ssm/aws4_request",
    b"host;x-amz-date",
    b"host",
    b"x-amz-date",
    b"aws4_request",
    b"20261127",
    b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "\u{e9}".as_bytes(),
    "\u{1234}".as_bytes(),
    "\u{1F600}".as_bytes(),
    b"\xff",
    b"\xc3",
    b"\t",
    b"\r\n",
    b"%",
    b"%E1%88",
    b"..",
];

fn garbage(rng: &mut Rng) -> Vec<u8> {
    if rng.below(4) == 0 {
        let n = rng.below(80);
        return rng.bytes(n);
    }
    let mut out = Vec::new();
    for _ in 0..rng.below(14) {
        out.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())]);
    }
    out
}

fn garbage_str(rng: &mut Rng) -> String {
    String::from_utf8_lossy(&garbage(rng)).into_owned()
}

#[test]
fn parse_is_total_over_garbage() {
    let mut rng = Rng(0xdead_beef_f00d_cafe);
    let names = [
        "authorization",
        "Authorization",
        "x-amz-date",
        "X-Amz-Date",
        "date",
        "host",
        "x-amz-security-token",
        "x-amz-content-sha256",
        "\u{e9}t\u{e9}",
        "",
    ];
    let dates: [&[u8]; 5] = [
        b"20261127T110830Z",
        b"Fri, 27 Nov 2026 11:08:30 GMT",
        b"99999999T999999Z",
        b"2026112\xffT110830Z",
        "Fri, 27 Nov 2026 11:08:3\u{e9} GMT".as_bytes(),
    ];
    let mut parsed_ok = 0;
    // Valid signed requests with garbage poured over their headers: these get past the parse.
    let mut base = Req::new("POST", "/", &[("host", "h"), ("x-a", "1")], b"{}");
    sign_into(&mut base, Some("token"));
    for _ in 0..3000 {
        let mut r = base.clone();
        for _ in 0..1 + rng.below(3) {
            let h = rng.below(r.headers.len());
            if r.headers[h].0 == "authorization" && rng.below(2) == 0 {
                continue;
            }
            r.headers[h].1 = match r.headers[h].0.as_str() {
                "x-amz-date" if rng.below(2) == 0 => dates[rng.below(dates.len())].to_vec(),
                _ => garbage(&mut rng),
            };
        }
        if rng.below(4) == 0 {
            r.path = garbage_str(&mut rng);
            r.query = garbage_str(&mut rng);
        }
        if let Ok(s) = r.parse() {
            parsed_ok += 1;
            let _ = check_scope(&s, "us-east-1", "ssm");
            let _ = check_time(&s, NOW, 300);
            let _ = verify_signature(&s, SECRET);
        }
    }
    for _ in 0..5000 {
        let path = garbage_str(&mut rng);
        let body = garbage(&mut rng);
        let mut r = Req::new("POST", &path, &[], &body);
        r.query = garbage_str(&mut rng);
        for _ in 0..rng.below(6) {
            let name = names[rng.below(names.len())];
            let value = match name {
                "x-amz-date" | "X-Amz-Date" | "date" if rng.below(2) == 0 => {
                    dates[rng.below(dates.len())].to_vec()
                }
                _ => garbage(&mut rng),
            };
            r.headers.push((name.to_owned(), value));
        }
        let _ = parse_authorization_header(&garbage(&mut rng));
        if let Ok(s) = r.parse() {
            parsed_ok += 1;
            let _ = check_scope(&s, "us-east-1", "ssm");
            for (now, window) in [(NOW, 300), (i64::MIN, i64::MAX), (i64::MAX, 300), (0, -5)] {
                let _ = check_time(&s, now, window);
            }
            let _ = verify_signature(&s, SECRET);
        }
    }
    println!("8000 garbage requests, {parsed_ok} parsed");
    assert!(
        parsed_ok > 100,
        "the garbage never reached the canonicalisation"
    );
}

#[test]
fn near_valid_requests_never_panic() {
    // Truncate or corrupt a valid signed request's Authorization header at every byte.
    let mut r = Req::new("POST", "/", &[("host", "h")], b"{}");
    sign_into(&mut r, Some("tok\u{e9}n"));
    let auth = r.header("authorization").expect("signed").to_vec();
    let mut rng = Rng(7);
    for i in 0..=auth.len() {
        for mutation in 0..3 {
            let mut v = auth.clone();
            match mutation {
                0 => v.truncate(i),
                1 if i < v.len() => v[i] = rng.next() as u8,
                _ => v.insert(i, FRAGMENTS[rng.below(FRAGMENTS.len())][0]),
            }
            let mut t = r.clone();
            t.headers
                .iter_mut()
                .find(|(n, _)| n == "authorization")
                .expect("present")
                .1 = v;
            if let Ok(s) = t.parse() {
                let _ = check_scope(&s, "us-east-1", "ssm");
                let _ = check_time(&s, NOW, 300);
                let _ = verify_signature(&s, SECRET);
            }
        }
    }
}
