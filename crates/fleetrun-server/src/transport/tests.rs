//! The accept loop over real sockets: typed answers where hyper would answer alone, panics,
//! timeouts, shedding at the cap, and the drain at shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::limits::Limits;

struct Running {
    addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    /// `/slow` requests that have reached their handler (are in flight).
    slow_started: Arc<std::sync::atomic::AtomicUsize>,
}

impl Running {
    /// Waits until `n` `/slow` requests are in their handler, so a test never races the server.
    async fn wait_slow_in_flight(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.slow_started.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} /slow requests in flight"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn start(limits: Limits) -> Running {
    let slow_started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = slow_started.clone();
    let router = Router::new()
        .route(
            "/ok",
            post(|| async { ([("content-type", "application/x-amz-json-1.1")], "{}") }),
        )
        .route(
            "/boom",
            post(|| async {
                if std::hint::black_box(true) {
                    panic!("boom");
                }
                "unreachable"
            }),
        )
        .route(
            "/slow",
            post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    "slow"
                }
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, mut rx) = watch::channel(false);
    let task = tokio::spawn(super::serve(listener, None, router, limits, async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    Running {
        addr,
        stop,
        task,
        slow_started,
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn typed(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        let ok = self
            .head
            .contains("content-type: application/x-amz-json-1.1")
            && self.head.contains("x-amzn-requestid: ");
        ok.then(|| v["__type"].as_str().map(str::to_string))
            .flatten()
    }
}

/// Reads one response (Content-Length framed); `None` when the connection closes first.
async fn read_answer(s: &mut TcpStream) -> Option<Answer> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    Some(Answer { status, head, body })
}

fn post_to(path: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{{}}").into_bytes()
}

async fn ask(s: &mut TcpStream, req: &[u8]) -> Option<Answer> {
    s.write_all(req).await.ok()?;
    read_answer(s).await
}

/// True when the server has closed `s` (reads EOF or a reset).
async fn closed(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(within, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn a_panicking_handler_answers_a_typed_500_on_a_live_connection() {
    let srv = start(Limits::default()).await;
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    let a = ask(&mut s, &post_to("/boom")).await.expect("an answer");
    assert_eq!(a.status, 500);
    assert_eq!(a.typed().as_deref(), Some("InternalServerError"));
    let again = ask(&mut s, &post_to("/ok")).await.expect("same connection");
    assert_eq!(again.status, 200);
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_typed_answers() {
    let limits = Limits {
        max_header_bytes: 8 * 1024,
        ..Limits::default()
    };
    let srv = start(limits).await;
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "garbage",
            b"GARBAGE\r\n\r\n".to_vec(),
            400,
            "SerializationException",
        ),
        (
            "bad header",
            b"POST /ok HTTP/1.1\r\nbad header: x\r\n\r\n".to_vec(),
            400,
            "SerializationException",
        ),
        (
            "bad length",
            b"POST /ok HTTP/1.1\r\ncontent-length: abc\r\n\r\n".to_vec(),
            400,
            "SerializationException",
        ),
        (
            "non-UTF-8 path",
            b"POST /\xff\xfe HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
            400,
            "SerializationException",
        ),
        (
            "huge header",
            format!("POST /ok HTTP/1.1\r\nx-big: {}\r\n\r\n", "a".repeat(20_000)).into_bytes(),
            431,
            "ValidationException",
        ),
        (
            "many headers",
            format!("POST /ok HTTP/1.1\r\n{many}\r\n").into_bytes(),
            431,
            "ValidationException",
        ),
    ];
    for (name, req, status, code) in cases {
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        let a = ask(&mut s, &req)
            .await
            .unwrap_or_else(|| panic!("{name}: no answer"));
        assert_eq!(a.status, status, "{name}");
        assert_eq!(a.typed().as_deref(), Some(code), "{name}: {a:?}");
    }
    // A good request after a good one is never mistaken for one of hyper's answers.
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    for _ in 0..3 {
        assert_eq!(ask(&mut s, &post_to("/ok")).await.expect("ok").status, 200);
    }
}

#[tokio::test]
async fn a_head_that_never_finishes_gets_a_typed_408() {
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let srv = start(limits).await;
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    s.write_all(b"POST /ok HTTP/1.1\r\nhost: x\r\nx-amz-")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let a = read_answer(&mut s).await.expect("an answer");
    assert_eq!(a.status, 408);
    assert_eq!(a.typed().as_deref(), Some("RequestTimeoutException"));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(closed(&mut s, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed_quietly() {
    let limits = Limits {
        header_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(600),
        ..Limits::default()
    };
    let srv = start(limits).await;
    let mut silent = TcpStream::connect(srv.addr).await.expect("connect");
    let mut kept = TcpStream::connect(srv.addr).await.expect("connect");
    assert_eq!(
        ask(&mut kept, &post_to("/ok")).await.expect("ok").status,
        200
    );
    assert!(
        closed(&mut silent, Duration::from_secs(2)).await,
        "silent past the header timeout"
    );
    assert!(
        !closed(&mut kept, Duration::from_millis(100)).await,
        "kept alive within the idle timeout"
    );
    assert!(
        closed(&mut kept, Duration::from_secs(2)).await,
        "idle past the idle timeout"
    );
}

#[tokio::test]
async fn at_the_cap_the_oldest_idle_connection_makes_room() {
    let limits = Limits {
        max_connections: Some(4),
        ..Limits::default()
    };
    let srv = start(limits).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let s = TcpStream::connect(srv.addr).await.expect("connect");
        idle.push(s);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    let mut fresh = TcpStream::connect(srv.addr).await.expect("connect");
    assert_eq!(
        ask(&mut fresh, &post_to("/ok"))
            .await
            .expect("answered")
            .status,
        200
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        closed(&mut idle[0], Duration::from_secs(2)).await,
        "the oldest was shed"
    );
    for s in &mut idle[1..] {
        assert!(
            !closed(s, Duration::from_millis(50)).await,
            "younger ones stay"
        );
    }
}

#[tokio::test]
async fn requests_in_flight_are_never_shed() {
    let limits = Limits {
        max_connections: Some(2),
        ..Limits::default()
    };
    let srv = Arc::new(start(limits).await);
    let slow = |srv: Arc<Running>| async move {
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        ask(&mut s, &post_to("/slow")).await.map(|a| a.status)
    };
    let a = tokio::spawn(slow(srv.clone()));
    let b = tokio::spawn(slow(srv.clone()));
    srv.wait_slow_in_flight(2).await;
    let mut third = TcpStream::connect(srv.addr)
        .await
        .expect("connect (backlog)");
    let answer = ask(&mut third, &post_to("/ok"))
        .await
        .expect("answered once a slot frees");
    assert_eq!(answer.status, 200);
    assert_eq!(a.await.expect("join"), Some(200));
    assert_eq!(b.await.expect("join"), Some(200));
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_then_returns() {
    let srv = start(Limits::default()).await;
    let mut idle = TcpStream::connect(srv.addr).await.expect("connect");
    let mut busy = TcpStream::connect(srv.addr).await.expect("connect");
    busy.write_all(&post_to("/slow")).await.expect("write");
    srv.wait_slow_in_flight(1).await;
    let _ = srv.stop.send(true);
    let a = read_answer(&mut busy)
        .await
        .expect("the slow request finishes");
    assert_eq!(a.status, 200);
    assert!(closed(&mut idle, Duration::from_secs(2)).await);
    let result = tokio::time::timeout(Duration::from_secs(5), srv.task)
        .await
        .expect("serve returns");
    result.expect("join").expect("serve");
}
