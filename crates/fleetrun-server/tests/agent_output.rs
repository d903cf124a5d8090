//! Output of any size end to end, and the paths where a report or a delivery goes missing: a real
//! server, real agents, and (for the refusals) a small HTTP proxy between them that refuses every
//! result report or hides the work in poll answers, counting the polls that pass through it.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{TestAgent, TestServer};
use fleetrun_agent::AgentConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_megabytes_of_output_end_success_with_the_views_aws_shows() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let id = s
        .run(
            &[&a.instance_id],
            &["head -c 3000000 /dev/zero | tr '\\0' a"],
        )
        .await;
    let out = s.wait(&id, &a.instance_id).await;
    assert_eq!(out.status().map(|s| s.as_str()), Some("Success"));
    assert_eq!(out.response_code(), 0);
    let stdout = out.standard_output_content().unwrap_or_default();
    assert_eq!(stdout.chars().count(), 24_000);
    assert_eq!(
        stdout,
        format!("{}--output truncated--", "a".repeat(23_980))
    );
    assert_eq!(out.standard_error_content(), Some(""));

    let inv = s
        .client
        .list_command_invocations()
        .command_id(&id)
        .details(true)
        .send()
        .await
        .expect("list invocations");
    let output = inv.command_invocations()[0].command_plugins()[0]
        .output()
        .unwrap_or_default();
    assert_eq!(
        output,
        format!("{}\n---Output truncated---", "a".repeat(2_500 - 23))
    );
    // The whole output is on the node.
    let file = a.state_dir.join("work").join(&id).join("0").join("stdout");
    assert_eq!(
        std::fs::metadata(&file).expect("stdout file").len(),
        3_000_000
    );
    a.stop().await;
}

/// What the proxy does to the traffic it passes on.
#[derive(Default)]
struct Proxy {
    /// Answer every result report with a 400 the agent cannot cure by retrying.
    refuse_results: AtomicBool,
    /// Replace every poll answer that carries work with an empty one (a lost answer).
    hide_runs: AtomicBool,
    polls: AtomicUsize,
    results: AtomicUsize,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> (Arc<Self>, String) {
        let proxy = Arc::new(Self::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let p = Arc::clone(&proxy);
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let p = Arc::clone(&p);
                tokio::spawn(async move { p.serve(conn, upstream).await });
            }
        });
        (proxy, url)
    }

    /// One request per connection: the answer closes it (`connection: close`).
    async fn serve(&self, mut client: TcpStream, upstream: SocketAddr) {
        let Some((head, body)) = read_message(&mut client).await else {
            return;
        };
        let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
        let answer = if path.ends_with("/result") && self.refuse_results.load(Ordering::SeqCst) {
            self.results.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"__type":"ValidationException","Message":"refused by the test proxy"}"#;
            response(400, "application/x-amz-json-1.1", body.as_bytes())
        } else {
            if path.ends_with("/poll") {
                self.polls.fetch_add(1, Ordering::SeqCst);
            }
            if path.ends_with("/result") {
                self.results.fetch_add(1, Ordering::SeqCst);
            }
            let Some((status_line, headers, body)) = forward(upstream, &head, &body).await else {
                return;
            };
            let body = if path.ends_with("/poll")
                && self.hide_runs.load(Ordering::SeqCst)
                && String::from_utf8_lossy(&body).contains(r#""type":"run""#)
            {
                br#"{"messages":[]}"#.to_vec()
            } else {
                body
            };
            rebuild(&status_line, &headers, &body)
        };
        let _ = client.write_all(&answer).await;
        let _ = client.shutdown().await;
    }
}

/// Reads one HTTP/1.1 message with a `content-length` body: (head without the blank line, body).
async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = r.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = r.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

/// Sends the request on unchanged (plus `connection: close`, which no signature covers) and
/// returns the answer's status line, headers and body.
async fn forward(
    upstream: SocketAddr,
    head: &str,
    body: &[u8],
) -> Option<(String, Vec<String>, Vec<u8>)> {
    let mut server = TcpStream::connect(upstream).await.ok()?;
    let request = format!("{head}\r\nconnection: close\r\n\r\n");
    server.write_all(request.as_bytes()).await.ok()?;
    server.write_all(body).await.ok()?;
    let (head, body) = read_message(&mut server).await?;
    let mut lines = head.split("\r\n").map(str::to_owned);
    let status_line = lines.next()?;
    Some((status_line, lines.collect(), body))
}

fn rebuild(status_line: &str, headers: &[String], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{status_line}\r\n");
    for h in headers {
        let name = h.split(':').next().unwrap_or_default().trim();
        if !["content-length", "connection", "transfer-encoding"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    rebuild(
        &format!("HTTP/1.1 {status} Refused"),
        &[format!("content-type: {content_type}")],
        body,
    )
}

/// A registered node's agent, restarted to talk to the server through `url`, polling every `wait`.
async fn agent_through(
    node: TestAgent,
    url: &str,
    wait: Duration,
) -> (String, watch::Sender<bool>) {
    let (instance_id, state_dir) = (node.instance_id.clone(), node.state_dir.clone());
    node.stop().await;
    let mut cfg = AgentConfig::new(url, state_dir, None, "us-east-1");
    cfg.poll_wait = wait;
    let identity = fleetrun_agent::register_or_load(&cfg)
        .await
        .expect("the saved identity");
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(fleetrun_agent::run(cfg, identity, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    (instance_id, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_report_ends_the_invocation_without_a_poll_loop() {
    let s = TestServer::start().await;
    let (proxy, url) = Proxy::start(s.addr()).await;
    proxy.refuse_results.store(true, Ordering::SeqCst);
    let node = s.add_agent().await;
    let state_dir = node.state_dir.clone();
    let (node, stop) = agent_through(node, &url, Duration::from_secs(2)).await;

    let id = s.run(&[&node], &["echo hello"]).await;
    let out = s.wait(&id, &node).await;
    // Report and fallback both refused: the agent's next poll said it holds nothing for the
    // command, and the server ended it.
    assert_eq!(out.status().map(|s| s.as_str()), Some("Failed"));
    assert_eq!(out.response_code(), -1);
    assert_eq!(
        proxy.results.load(Ordering::SeqCst),
        2,
        "the report, then the fallback"
    );
    assert!(state_dir
        .join("outbox/rejected")
        .join(format!("{id}.json"))
        .exists());

    // No loop: polls go on at the long-poll pace (one per 2 s), nothing is handed out again.
    let before = proxy.polls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let polls = proxy.polls.load(Ordering::SeqCst) - before;
    assert!(polls <= 4, "{polls} polls in 4 s");
    assert_eq!(
        proxy.results.load(Ordering::SeqCst),
        2,
        "nothing was run again"
    );
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_an_agent_does_not_see_is_handed_out_again_at_the_long_poll_pace() {
    let s = TestServer::start().await;
    let (proxy, url) = Proxy::start(s.addr()).await;
    proxy.hide_runs.store(true, Ordering::SeqCst);
    let node = s.add_agent().await;
    let (node, stop) = agent_through(node, &url, Duration::from_secs(2)).await;

    let id = s.run(&[&node], &["echo found"]).await;
    // Every answer carrying the Run is lost: the agent polls on without listing it, and the server
    // hands it out again — but never answers with only that at once, so no loop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = proxy.polls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let polls = proxy.polls.load(Ordering::SeqCst) - before;
    assert!(polls <= 4, "{polls} polls in 4 s");

    // Once an answer gets through, the work runs: a lost answer costs one long poll.
    proxy.hide_runs.store(false, Ordering::SeqCst);
    let out = s.wait(&id, &node).await;
    assert_eq!(out.status().map(|s| s.as_str()), Some("Success"));
    assert_eq!(out.standard_output_content(), Some("found\n"));
    let _ = stop.send(true);
}
