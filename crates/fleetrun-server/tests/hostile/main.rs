//! Hard limits seen from outside: hostile requests, bodies over their limit, idle connections
//! under a small open-file limit, and CPU-heavy document content while ListCommands is timed.
//! Raw requests go over TCP (`raw`); ordinary calls use the harness's signed SDK client.

#[path = "../common/mod.rs"]
mod common;
mod files;
mod hammer;
mod parsing;
mod raw;

use std::time::Duration;

use common::TestServer;
use raw::{read_answer, request, signed};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn a_body_over_the_limit_gets_a_typed_413_and_the_connection_stays_usable() {
    let server = TestServer::start().await;
    let addr = server.addr();
    let host = addr.to_string();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    for size in [(1 << 20) + 1, 3 << 20] {
        let body = vec![b' '; size];
        s.write_all(&signed(
            &host,
            &server.admin,
            Some(b"AmazonSSM.ListCommands"),
            &body,
        ))
        .await
        .expect("write");
        let a = read_answer(&mut s, Duration::from_secs(10), false)
            .await
            .expect("an answer on the same connection");
        assert_eq!(a.status, 413);
        assert_eq!(
            a.typed_code().as_deref(),
            Some("ValidationException"),
            "{a:?}"
        );
        assert_ne!(a.header("connection"), Some("close"));
    }
    // The same connection, kept alive, serves an ordinary signed call.
    s.write_all(&signed(
        &host,
        &server.admin,
        Some(b"AmazonSSM.ListCommands"),
        b"{}",
    ))
    .await
    .expect("write");
    let a = read_answer(&mut s, Duration::from_secs(10), false)
        .await
        .expect("an answer after the 413s");
    assert_eq!(a.status, 200, "{a:?}");
    // Exactly at the limit is not refused for its size.
    let prefix = "{\"CommandId\":\"x\"}";
    let body = format!("{prefix}{}", " ".repeat((1 << 20) - prefix.len()));
    assert_eq!(body.len(), 1 << 20);
    s.write_all(&signed(
        &host,
        &server.admin,
        Some(b"AmazonSSM.ListCommands"),
        body.as_bytes(),
    ))
    .await
    .expect("write");
    let a = read_answer(&mut s, Duration::from_secs(10), false)
        .await
        .expect("answer");
    assert_ne!(a.status, 413, "{a:?}");
    server.stop().await;
}

#[tokio::test]
async fn agent_reports_have_their_own_larger_cap() {
    let server = TestServer::start().await;
    let path = fleetrun_wire::agent::RESULT_PATH.as_bytes();
    let over_api = request("POST", path, &[], &vec![b' '; 3 << 20]);
    let a = raw::exchange(server.addr(), &over_api, Duration::from_secs(10))
        .await
        .expect("answer");
    assert_ne!(a.status, 413, "3 MiB is within the agent cap: {a:?}");
    assert!(a.typed_code().is_some(), "{a:?}");
    let over_agent = request("POST", path, &[], &vec![b' '; 5 << 20]);
    let a = raw::exchange(server.addr(), &over_agent, Duration::from_secs(10))
        .await
        .expect("answer");
    assert_eq!(a.status, 413);
    assert_eq!(a.typed_code().as_deref(), Some("ValidationException"));
    server.stop().await;
}
