//! The hostile-request hammer: about 2,000 requests in twelve classes, each answered with a typed
//! awsJson 4xx of the expected code, and the server healthy afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::common::TestServer;
use super::raw::{self, read_answer, request, signed};

/// How a probe's bytes are sent.
#[derive(Clone, Copy)]
enum Then {
    /// Send everything, read the answer.
    Read,
    /// Send everything, close the write side (a body cut short), read the answer.
    HalfClose,
}

struct Probe {
    class: &'static str,
    bytes: Vec<u8>,
    then: Then,
    status: u16,
    codes: &'static [&'static str],
}

const SERIALIZATION: &[&str] = &["SerializationException"];
const UNKNOWN_OP: &[&str] = &["UnknownOperationException"];
const VALIDATION: &[&str] = &["ValidationException"];
const TIMEOUT: &[&str] = &["RequestTimeoutException"];

fn probe(
    class: &'static str,
    bytes: Vec<u8>,
    status: u16,
    codes: &'static [&'static str],
) -> Probe {
    Probe {
        class,
        bytes,
        then: Then::Read,
        status,
        codes,
    }
}

/// `n` probes cycling through `variants`.
fn cycle(n: usize, variants: &[Vec<u8>], mut make: impl FnMut(Vec<u8>) -> Probe) -> Vec<Probe> {
    (0..n)
        .map(|i| make(variants[i % variants.len()].clone()))
        .collect()
}

fn nested_yaml(bytes: usize) -> String {
    let head = "schemaVersion: '2.2'\ndescription: nested\nmainSteps: ";
    let unit = "{a: [";
    format!("{head}{}", unit.repeat((bytes - head.len()) / unit.len()))
}

fn probes(host: &str, key: &(String, String)) -> Vec<Probe> {
    let mut all = Vec::new();
    let list = Some(&b"AmazonSSM.ListCommands"[..]);

    let paths: Vec<Vec<u8>> = [
        "/foo",
        "/agent",
        "/agent/v9/poll",
        "//",
        "/healthz/x",
        "/%2e%2e/",
        "/index.html",
    ]
    .iter()
    .map(|p| p.as_bytes().to_vec())
    .chain([format!("/{}", "a/".repeat(2000)).into_bytes()])
    .collect();
    let mut i = 0;
    all.extend(cycle(250, &paths, |p| {
        i += 1;
        let method = if i % 2 == 0 { "GET" } else { "POST" };
        probe(
            "wrong path",
            request(method, &p, &[], b"{}"),
            404,
            UNKNOWN_OP,
        )
    }));

    let methods: Vec<Vec<u8>> = [
        "GET /",
        "PUT /",
        "DELETE /",
        "PATCH /",
        "OPTIONS /",
        "HEAD /",
        "FOO /",
        "POST /healthz",
        "DELETE /healthz",
    ]
    .iter()
    .map(|m| m.as_bytes().to_vec())
    .collect();
    all.extend(cycle(250, &methods, |m| {
        let text = String::from_utf8_lossy(&m).into_owned();
        let (method, path) = text.split_once(' ').unwrap_or(("GET", "/"));
        probe(
            "wrong method",
            request(method, path.as_bytes(), &[], b""),
            405,
            UNKNOWN_OP,
        )
    }));

    let targets: Vec<Option<Vec<u8>>> = vec![
        None,
        Some(b"".to_vec()),
        Some(b"AmazonSSM.Nope".to_vec()),
        Some(b"Foo.ListCommands".to_vec()),
        Some(b"AmazonSSM.".to_vec()),
        Some(b"amazonssm.listcommands".to_vec()),
        Some(b"AmazonSSM.ListCommands.Extra".to_vec()),
        Some(vec![b'x'; 1024]),
    ];
    for i in 0..200 {
        let t = targets[i % targets.len()].as_deref();
        all.push(probe(
            "no or unknown target",
            signed(host, key, t, b"{}"),
            400,
            UNKNOWN_OP,
        ));
    }

    let bad_json: Vec<Vec<u8>> = [
        "{",
        "nope",
        "[1,2]",
        "{\"MaxResults\": \"x\"}",
        "\"s\"",
        "{\"MaxResults\":1}}",
        "{'a': 1}",
        "{\"CommandId\": [}",
        "\u{0}",
    ]
    .iter()
    .map(|b| b.as_bytes().to_vec())
    .collect();
    all.extend(cycle(200, &bad_json, |b| {
        probe(
            "invalid JSON",
            signed(host, key, list, &b),
            400,
            SERIALIZATION,
        )
    }));

    // Up to 1,000,000 bytes: within the body limit, so the JSON decoder sees them.
    let nested: Vec<Vec<u8>> = [129usize, 1_000, 10_000, 100_000, 200_000]
        .iter()
        .flat_map(|&n| {
            [
                "{\"a\":".repeat(n).into_bytes(),
                "[".repeat(n * 5).into_bytes(),
                format!("{{\"Filters\":{}", "[".repeat(n * 4)).into_bytes(),
            ]
        })
        .collect();
    all.extend(cycle(150, &nested, |b| {
        probe(
            "deeply nested JSON",
            signed(host, key, list, &b),
            400,
            SERIALIZATION,
        )
    }));

    for i in 0..50 {
        let body = serde_json::json!({
            "Name": format!("nested-{i}"),
            "Content": nested_yaml(64 * 1000),
            "DocumentType": "Command",
            "DocumentFormat": "YAML",
        });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let req = signed(host, key, Some(b"AmazonSSM.CreateDocument"), &bytes);
        all.push(probe(
            "nested YAML document",
            req,
            400,
            &["InvalidDocumentContent"],
        ));
    }

    for i in 0..40 {
        let body = vec![b' '; (1 << 20) + 1 + i * 50_000];
        all.push(probe(
            "huge body",
            request("POST", b"/", &[], &body),
            413,
            VALIDATION,
        ));
    }
    for _ in 0..5 {
        let body = vec![b' '; 5 << 20];
        all.push(probe(
            "huge body",
            request("POST", b"/agent/v1/result", &[], &body),
            413,
            VALIDATION,
        ));
    }
    for _ in 0..10 {
        let mut req =
            b"POST / HTTP/1.1\r\nhost: fleetrun\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..32 {
            req.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
            req.extend_from_slice(&[b' '; 64 * 1024]);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        all.push(probe("huge body", req, 413, VALIDATION));
    }
    for _ in 0..10 {
        // Declared far past what the server drains: answered at once, the rest never sent.
        let mut req =
            b"POST / HTTP/1.1\r\nhost: fleetrun\r\ncontent-length: 104857600\r\n\r\n".to_vec();
        req.extend_from_slice(&[b' '; 64 * 1024]);
        all.push(probe("huge body", req, 413, VALIDATION));
    }

    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge_headers: Vec<Vec<u8>> = vec![
        format!(
            "POST / HTTP/1.1\r\nhost: f\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
            "a".repeat(70_000)
        )
        .into_bytes(),
        format!("POST / HTTP/1.1\r\nhost: f\r\n{many}content-length: 0\r\n\r\n").into_bytes(),
        format!(
            "POST /{} HTTP/1.1\r\nhost: f\r\ncontent-length: 0\r\n\r\n",
            "a".repeat(70_000)
        )
        .into_bytes(),
    ];
    all.extend(cycle(150, &huge_headers, |b| {
        probe("huge headers", b, 431, VALIDATION)
    }));

    for i in 0..150 {
        let bytes = if i % 3 == 0 {
            b"POST / HTTP/1.1\r\nhost: f\r\ntransfer-encoding: chunked\r\n\r\n400\r\n{\"Max"
                .to_vec()
        } else {
            b"POST / HTTP/1.1\r\nhost: f\r\ncontent-length: 1000\r\n\r\n{\"MaxResults\"".to_vec()
        };
        all.push(Probe {
            then: Then::HalfClose,
            ..probe("truncated body", bytes, 400, SERIALIZATION)
        });
    }

    for i in 0..100 {
        // Nothing more is sent: the server's header (1 s) or body (2 s) timeout answers.
        let bytes = if i % 5 < 3 {
            b"POST / HTTP/1.1\r\nhost: f\r\nx-amz-target: Amaz".to_vec()
        } else {
            b"POST / HTTP/1.1\r\nhost: f\r\ncontent-length: 100\r\n\r\n{\"Max".to_vec()
        };
        all.push(probe("slowloris", bytes, 408, TIMEOUT));
    }

    let bad_utf8_bodies: Vec<Vec<u8>> = vec![
        b"{\"NextToken\": \"\xff\xfe\"}".to_vec(),
        b"\xff\xff\xff".to_vec(),
        b"{\"CommandId\": \"\xc3\x28\"}".to_vec(),
    ];
    for i in 0..250 {
        all.push(match i % 5 {
            0..=2 => probe(
                "non-UTF-8",
                signed(host, key, list, &bad_utf8_bodies[i % 3]),
                400,
                SERIALIZATION,
            ),
            3 => probe(
                "non-UTF-8",
                request("POST", b"/\xff\xfe", &[], b"{}"),
                400,
                SERIALIZATION,
            ),
            _ => probe(
                "non-UTF-8",
                b"POST / HTTP/1.1\r\nx-\xffname: v\r\ncontent-length: 0\r\n\r\n".to_vec(),
                400,
                SERIALIZATION,
            ),
        });
    }

    let garbage: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        b"\x00\x01\x02\x03\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nhost: f\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n12345"
            .to_vec(),
        b"POST / HTTP/1.1\r\nhost: f\r\ncontent-length: -1\r\n\r\n".to_vec(),
        b" / HTTP/1.1\r\n\r\n".to_vec(),
    ];
    all.extend(cycle(100, &garbage, |b| {
        probe("garbage", b, 400, SERIALIZATION)
    }));
    all
}

/// Sends one probe on a fresh connection; the typed code, or what was wrong.
async fn run(addr: std::net::SocketAddr, p: &Probe) -> Result<String, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.write_all(&p.bytes)
        .await
        .map_err(|e| format!("write: {e}"))?;
    if let Then::HalfClose = p.then {
        s.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
    }
    let head_only = p.bytes.starts_with(b"HEAD ");
    let a = read_answer(&mut s, Duration::from_secs(20), head_only)
        .await
        .ok_or("no answer (connection closed or timed out)")?;
    let code = a.typed_code().ok_or_else(|| {
        format!(
            "untyped {}: {}",
            a.status,
            a.head.lines().next().unwrap_or("")
        )
    })?;
    if a.status != p.status || !p.codes.contains(&code.as_str()) {
        return Err(format!(
            "{} {code} (expected {} {:?})",
            a.status, p.status, p.codes
        ));
    }
    Ok(code)
}

#[derive(Default)]
struct Tally {
    sent: usize,
    typed: usize,
    codes: BTreeMap<String, usize>,
    failures: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_hostile_request_gets_a_typed_aws_json_4xx_and_the_server_stays_healthy() {
    let server = TestServer::start_with(|c| {
        c.limits.header_timeout = Duration::from_secs(1);
        c.limits.body_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = server.addr();
    let probes = probes(&addr.to_string(), &server.admin);
    let total = probes.len();
    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(48));
    let mut handles = Vec::new();
    for p in probes {
        let permit = slots.clone().acquire_owned().await.expect("semaphore");
        handles.push(tokio::spawn(async move {
            let _permit = permit;
            let result = run(addr, &p).await;
            (p.class, result)
        }));
    }
    let mut tally: BTreeMap<&str, Tally> = BTreeMap::new();
    for h in handles {
        let (class, result) = h.await.expect("probe task");
        let t = tally.entry(class).or_default();
        t.sent += 1;
        match result {
            Ok(code) => {
                t.typed += 1;
                *t.codes.entry(code).or_default() += 1;
            }
            Err(e) => t.failures.push(e),
        }
    }
    println!(
        "hostile requests: {total} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("{:<22} {:>5} {:>9}  codes", "class", "sent", "typed 4xx");
    for (class, t) in &tally {
        println!("{class:<22} {:>5} {:>9}  {:?}", t.sent, t.typed, t.codes);
    }
    let failures: Vec<String> = tally
        .iter()
        .flat_map(|(c, t)| t.failures.iter().take(3).map(move |f| format!("{c}: {f}")))
        .collect();
    assert!(
        failures.is_empty(),
        "answers that were not the typed error expected:\n{}",
        failures.join("\n")
    );
    assert!(total >= 1900, "about 2,000 requests ({total})");

    // Healthy after: an ordinary SDK call, and a signed raw call on a fresh connection.
    server
        .client
        .list_commands()
        .send()
        .await
        .expect("ListCommands after the hammer");
    let ok = raw::exchange(
        addr,
        &signed(
            &addr.to_string(),
            &server.admin,
            Some(b"AmazonSSM.ListCommands"),
            b"{}",
        ),
        Duration::from_secs(10),
    )
    .await
    .expect("an answer");
    assert_eq!(ok.status, 200, "{ok:?}");
    server.stop().await;
}
