//! Fleet-grade dispatch with real agents running real scripts: the MaxConcurrency ramp and bound,
//! MaxErrors → Terminated, percent forms, Delayed for a stopped agent then DeliveryTimedOut at
//! expiry, redelivery when an agent returns, and deregistration → Undeliverable.

mod common;

use std::path::Path;
use std::time::Duration;

use aws_sdk_ssm::types::{CommandFilter, CommandFilterKey};
use common::{code, SentId, TestAgent, TestServer};

async fn agents(s: &TestServer, n: usize) -> Vec<TestAgent> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(s.add_agent().await);
    }
    // Release order is by node id; the tests reason in that order.
    out.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    out
}

async fn send(
    s: &TestServer,
    nodes: &[&str],
    script: &str,
    concurrency: &str,
    errors: &str,
) -> String {
    s.client
        .send_command()
        .document_name("AWS-RunShellScript")
        .set_instance_ids(Some(nodes.iter().map(|n| n.to_string()).collect()))
        .parameters("commands", vec![script.to_string()])
        .max_concurrency(concurrency)
        .max_errors(errors)
        .send()
        .await
        .expect("send")
        .sent_id()
}

async fn wait_command(s: &TestServer, id: &str) -> aws_sdk_ssm::types::Command {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let out = s
            .client
            .list_commands()
            .command_id(id)
            .send()
            .await
            .expect("list");
        let c = out.commands()[0].clone();
        let status = c
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        if !matches!(status.as_str(), "Pending" | "InProgress" | "Cancelling") {
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "command still {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (start, end) nanosecond stamps each script wrote into `dir/<node>`.
fn intervals(dir: &Path) -> Vec<(u128, u128)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        let stamps: Vec<u128> = text
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        if let [start, end] = stamps[..] {
            out.push((start, end));
        }
    }
    out
}

fn max_overlap(iv: &[(u128, u128)]) -> usize {
    let mut events: Vec<(u128, i32)> = iv.iter().flat_map(|(s, e)| [(*s, 1), (*e, -1)]).collect();
    // Ends sort before starts at the same instant.
    events.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in events {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

async fn invocation_states(s: &TestServer, id: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = s
            .client
            .list_command_invocations()
            .command_id(id)
            .set_next_token(token)
            .send()
            .await
            .expect("invocations");
        for i in page.command_invocations() {
            out.push((
                i.instance_id().unwrap_or_default().to_string(),
                i.status_details().unwrap_or_default().to_string(),
            ));
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_agents_max_concurrency_bounds_what_runs_at_once() {
    let s = TestServer::start().await;
    let fleet = agents(&s, 20).await;
    let ids: Vec<&str> = fleet.iter().map(|a| a.instance_id.as_str()).collect();
    let dir = s.dir.path().join("stamps");
    std::fs::create_dir_all(&dir).expect("dir");
    let script = format!(
        "f={}/$AWS_SSM_INSTANCE_ID; date +%s%N > $f; sleep 0.5; date +%s%N >> $f",
        dir.display()
    );
    let id = send(&s, &ids, &script, "5", "0").await;
    // Right after sending, at most MaxConcurrency invocations have left Pending (the ramp itself,
    // 1 then 3 then 5, completes within milliseconds; its exact steps are checked by the store
    // conformance test `check_ramp`).
    let first = s
        .client
        .list_command_invocations()
        .command_id(&id)
        .send()
        .await
        .expect("list");
    let released_now = first
        .command_invocations()
        .iter()
        .filter(|i| i.status_details() != Some("Pending"))
        .count();
    assert!(released_now <= 5, "{released_now} left Pending immediately");
    let c = wait_command(&s, &id).await;
    assert_eq!(c.status_details(), Some("Success"));
    assert_eq!(
        (c.target_count(), c.completed_count(), c.error_count()),
        (20, 20, 0)
    );
    let iv = intervals(&dir);
    assert_eq!(iv.len(), 20);
    let overlap = max_overlap(&iv);
    assert!(
        overlap <= 5,
        "{overlap} scripts ran at once with MaxConcurrency 5"
    );
    assert!(
        overlap >= 3,
        "the rollout never got past the ramp ({overlap})"
    );
    for a in fleet {
        a.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_errors_stops_the_rollout_and_terminates_the_rest() {
    let s = TestServer::start().await;
    let fleet = agents(&s, 20).await;
    let ids: Vec<&str> = fleet.iter().map(|a| a.instance_id.as_str()).collect();
    // Four failing nodes at sorted positions 2, 5, 9, 14; one at a time, in node order.
    let failing: Vec<&str> = [2, 5, 9, 14].iter().map(|i| ids[*i]).collect();
    let script = format!(
        "case $AWS_SSM_INSTANCE_ID in {}) exit 1;; esac; echo ok",
        failing.join("|")
    );
    let id = send(&s, &ids, &script, "1", "1").await;
    let c = wait_command(&s, &id).await;
    // Errors at positions 2 and 5: the second exceeds MaxErrors 1. 0,1,3,4 succeeded; 6.. never sent.
    assert_eq!(c.status().map(|s| s.as_str()), Some("Failed"));
    assert_eq!(c.status_details(), Some("Failed"));
    assert_eq!(
        (c.target_count(), c.completed_count(), c.error_count()),
        (20, 20, 2)
    );
    let states = invocation_states(&s, &id).await;
    let count = |d: &str| states.iter().filter(|(_, s)| s == d).count();
    assert_eq!(
        (count("Success"), count("Failed"), count("Terminated")),
        (4, 2, 14)
    );
    for (pos, node) in ids.iter().enumerate() {
        let want = match pos {
            2 | 5 => "Failed",
            p if p < 6 => "Success",
            _ => "Terminated",
        };
        let got = states
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, s)| s.as_str());
        assert_eq!(got, Some(want), "position {pos}");
    }
    // A Terminated invocation reads as Cancelled (coarse) with ResponseCode -1.
    let t = s.wait(&id, ids[19]).await;
    assert_eq!(t.status_details(), Some("Terminated"));
    assert_eq!(t.response_code(), -1);
    // ListCommands sees it under Status=Failed.
    let failed = s
        .client
        .list_commands()
        .filters(
            CommandFilter::builder()
                .key(CommandFilterKey::Status)
                .value("Failed")
                .build()
                .expect("f"),
        )
        .send()
        .await
        .expect("list");
    assert!(failed
        .commands()
        .iter()
        .any(|c| c.command_id() == Some(id.as_str())));
    for a in fleet {
        a.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_forms_resolve_against_the_target_count() {
    let s = TestServer::start().await;
    let fleet = agents(&s, 20).await;
    let ids: Vec<&str> = fleet.iter().map(|a| a.instance_id.as_str()).collect();
    // 5% of 20 → 1 at a time; 10% of 20 → 2 errors tolerated, the 3rd stops the rollout.
    let failing: Vec<&str> = [1, 3, 6, 10].iter().map(|i| ids[*i]).collect();
    let script = format!(
        "case $AWS_SSM_INSTANCE_ID in {}) exit 2;; esac",
        failing.join("|")
    );
    let id = send(&s, &ids, &script, "5%", "10%").await;
    let c = wait_command(&s, &id).await;
    assert_eq!(c.max_concurrency(), Some("5%"));
    assert_eq!(c.max_errors(), Some("10%"));
    assert_eq!(c.status_details(), Some("Failed"));
    assert_eq!(c.error_count(), 3);
    let states = invocation_states(&s, &id).await;
    let count = |d: &str| states.iter().filter(|(_, s)| s == d).count();
    assert_eq!(
        (count("Success"), count("Failed"), count("Terminated")),
        (4, 3, 13)
    );
    for a in fleet {
        a.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_agent_is_delayed_then_delivery_times_out() {
    let s = TestServer::start_with(|c| c.ping_timeout = Duration::from_secs(1)).await;
    let node = s.stopped_node().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let info = s
        .client
        .describe_instance_information()
        .send()
        .await
        .expect("info");
    assert_eq!(
        info.instance_information_list()[0]
            .ping_status()
            .map(|p| p.as_str()),
        Some("ConnectionLost")
    );
    let id = s
        .client
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(&node)
        .timeout_seconds(30)
        .parameters("commands", vec!["echo never".into()])
        .parameters("executionTimeout", vec!["5".into()])
        .send()
        .await
        .expect("send")
        .sent_id();
    // Delayed once the timekeeper sees the node is unreachable.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let inv = s
            .client
            .get_command_invocation()
            .command_id(&id)
            .instance_id(&node)
            .send()
            .await
            .expect("get");
        if inv.status_details() == Some("Delayed") {
            assert_eq!(inv.status().map(|s| s.as_str()), Some("Delayed"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never Delayed: {:?}",
            inv.status_details()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // At ExpiresAfter (30 s + 5 s) the server, not the agent, times the delivery out.
    let out = s.wait(&id, &node).await;
    assert_eq!(out.status().map(|s| s.as_str()), Some("TimedOut"));
    assert_eq!(out.status_details(), Some("DeliveryTimedOut"));
    assert_eq!(out.response_code(), -1);
    let c = wait_command(&s, &id).await;
    assert_eq!(c.status().map(|s| s.as_str()), Some("TimedOut"));
    assert_eq!(c.status_details(), Some("DeliveryTimedOut"));
    assert_eq!(
        (
            c.delivery_timed_out_count(),
            c.completed_count(),
            c.error_count()
        ),
        (1, 1, 0)
    );
    let timed_out = s
        .client
        .list_commands()
        .filters(
            CommandFilter::builder()
                .key(CommandFilterKey::Status)
                .value("DeliveryTimedOut")
                .build()
                .expect("f"),
        )
        .send()
        .await
        .expect("list");
    assert_eq!(timed_out.commands().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_work_is_delivered_when_the_agent_returns() {
    let s = TestServer::start_with(|c| c.ping_timeout = Duration::from_secs(1)).await;
    let a = s.add_agent().await;
    let (node, dir) = (a.instance_id.clone(), a.state_dir.clone());
    a.stop().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let id = s.run(&[&node], &["echo back"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let inv = s
            .client
            .get_command_invocation()
            .command_id(&id)
            .instance_id(&node)
            .send()
            .await
            .expect("get");
        if inv.status_details() == Some("Delayed") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never Delayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = s.start_agent(dir, None).await;
    let out = s.wait(&id, &node).await;
    assert_eq!(out.status_details(), Some("Success"));
    assert_eq!(out.standard_output_content(), Some("back\n"));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistered_node_is_undeliverable() {
    let s = TestServer::start().await;
    let node = s.stopped_node().await;
    let id = s.run(&[&node], &["echo never"]).await;
    s.client
        .deregister_managed_instance()
        .instance_id(&node)
        .send()
        .await
        .expect("deregister");
    let out = s.wait(&id, &node).await;
    assert_eq!(out.status().map(|s| s.as_str()), Some("Failed"));
    assert_eq!(out.status_details(), Some("Undeliverable"));
    let c = wait_command(&s, &id).await;
    assert_eq!(c.status_details(), Some("Failed"));
    assert_eq!(c.completed_count(), 1);
    let e = s
        .client
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(&node)
        .parameters("commands", vec!["true".into()])
        .send()
        .await
        .expect_err("gone");
    assert_eq!(code(&e), "InvalidInstanceId");
    let e = s
        .client
        .deregister_managed_instance()
        .instance_id(&node)
        .send()
        .await
        .expect_err("twice");
    assert_eq!(code(&e), "InvalidInstanceId");
    let info = s
        .client
        .describe_instance_information()
        .send()
        .await
        .expect("info");
    assert!(info.instance_information_list().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_runs_at_most_five_commands_at_once() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let dir = s.dir.path().join("capacity");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut ids = Vec::new();
    for i in 0..7 {
        let script = format!(
            "f={}/{i}; date +%s%N > $f; sleep 0.7; date +%s%N >> $f",
            dir.display()
        );
        ids.push(s.run(&[&a.instance_id], &[&script]).await);
    }
    for id in &ids {
        assert_eq!(
            s.wait(id, &a.instance_id).await.status_details(),
            Some("Success")
        );
    }
    let iv = intervals(&dir);
    assert_eq!(iv.len(), 7);
    assert_eq!(max_overlap(&iv), 5, "the agent's default capacity is 5");
    a.stop().await;
}
