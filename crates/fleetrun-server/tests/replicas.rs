//! Several servers on one PostgreSQL database: any of them answers any call and serves any agent.
//! Needs `FLEETRUN_TEST_STORE=postgres` (the SQLite run says it skipped them).

mod common;

use std::time::{Duration, Instant};

use common::{on_postgres, SentId, TestServer};

/// On the SQLite run: says so past the harness's output capture, and the test does nothing.
fn skipped(name: &str) -> bool {
    if on_postgres() {
        return false;
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED {name}: replicas need FLEETRUN_TEST_STORE=postgres\n").as_bytes(),
    );
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sent_through_one_replica_wakes_an_agent_polling_another() {
    if skipped("a_command_sent_through_one_replica_wakes_an_agent_polling_another") {
        return;
    }
    let a = TestServer::start().await;
    let b = a.replica("replica-b").await;
    let activation = a.new_activation().await;
    let agent = b
        .start_agent(a.dir.path().join("agent-on-b"), Some(activation))
        .await;
    let node = agent.instance_id.clone();
    // The first command proves the agent is up and polling B.
    let first = a.run(&[&node], &["echo warm"]).await;
    assert_eq!(
        b.wait(&first, &node).await.standard_output_content(),
        Some("warm\n")
    );
    // Now the agent is parked in a 10 s long poll on B: only a wake-up from A can make the next
    // command start at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let second = a.run(&[&node], &["echo across"]).await;
    let out = b.wait(&second, &node).await;
    let took = t0.elapsed();
    assert_eq!(out.standard_output_content(), Some("across\n"));
    assert!(
        took < Duration::from_secs(4),
        "took {took:?}: the long poll on B was not woken by the send on A"
    );
    agent.stop().await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_token_from_one_replica_pages_on_another() {
    if skipped("a_next_token_from_one_replica_pages_on_another") {
        return;
    }
    let a = TestServer::start().await;
    let b = a.replica("replica-b").await;
    let node = a.register_node("Linux").await;
    let mut sent = Vec::new();
    for i in 0..3 {
        let id = a
            .client
            .send_command()
            .document_name("AWS-RunShellScript")
            .instance_ids(&node)
            .parameters("commands", vec![format!("echo {i}")])
            .send()
            .await
            .expect("send")
            .sent_id();
        sent.push(id);
    }
    let first = a
        .client
        .list_commands()
        .max_results(1)
        .send()
        .await
        .expect("first page on A");
    let token = first.next_token().expect("more pages").to_owned();
    let mut seen: Vec<String> = first
        .commands()
        .iter()
        .filter_map(|c| c.command_id().map(str::to_owned))
        .collect();
    let rest = b
        .client
        .list_commands()
        .next_token(token)
        .send()
        .await
        .expect("the rest on B, with A's token");
    seen.extend(
        rest.commands()
            .iter()
            .filter_map(|c| c.command_id().map(str::to_owned)),
    );
    sent.reverse();
    assert_eq!(
        seen, sent,
        "newest first, each once, across the two replicas"
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_replica_stops_carries_on_with_the_other() {
    if skipped("an_agent_whose_replica_stops_carries_on_with_the_other") {
        return;
    }
    let a = TestServer::start().await;
    let b = a.replica("replica-b").await;
    let activation = a.new_activation().await;
    let both = format!("{},{}", a.endpoint, b.endpoint);
    let agent = a
        .start_agent_with(a.dir.path().join("agent"), Some(activation), |cfg| {
            cfg.server_url = both;
        })
        .await
        .expect("register through A");
    let node = agent.instance_id.clone();
    let before = a.run(&[&node], &["echo before"]).await;
    assert_eq!(
        a.wait(&before, &node).await.standard_output_content(),
        Some("before\n")
    );
    let client_b = b.client.clone();
    a.stop().await;
    // The session credentials A issued are good on B (one key in the store).
    let after = b.run(&[&node], &["echo after"]).await;
    let out = b.wait(&after, &node).await;
    assert_eq!(out.standard_output_content(), Some("after\n"));
    let old = client_b
        .get_command_invocation()
        .command_id(&before)
        .instance_id(&node)
        .send()
        .await
        .expect("A's history through B");
    assert_eq!(old.standard_output_content(), Some("before\n"));
    agent.stop().await;
    b.stop().await;
}
