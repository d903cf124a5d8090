//! An agent's life around its server, with the real server and real agents, checked through
//! aws-sdk-ssm: registering against a server that comes up late, a refused registration (not
//! retried), a deregistered agent stopping with its documented error, and the goodbye of a clean
//! stop (`ConnectionLost` at once, work sent meanwhile `Delayed`, running work left alone, `Online`
//! again with the next poll).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use fleetrun_agent::cli::exit;
use fleetrun_agent::signing::unix_now;
use fleetrun_agent::{AgentConfig, AgentError};
use fleetrun_wire::agent::{GOODBYE_PATH, POLL_PATH};
use serde_json::Value;

fn code(v: &Value) -> &str {
    v["__type"].as_str().unwrap_or("")
}

/// DescribeInstanceInformation's PingStatus of `node`.
async fn ping_status(s: &TestServer, node: &str) -> String {
    let out = s
        .client
        .describe_instance_information()
        .filters(
            aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
                .key("InstanceIds")
                .values(node)
                .build()
                .expect("filter"),
        )
        .send()
        .await
        .expect("describe");
    out.instance_information_list()
        .first()
        .and_then(|i| i.ping_status())
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default()
}

/// GetCommandInvocation's Status.
async fn status(s: &TestServer, cmd: &str, node: &str) -> String {
    s.client
        .get_command_invocation()
        .command_id(cmd)
        .instance_id(node)
        .send()
        .await
        .expect("get invocation")
        .status()
        .map(|x| x.as_str().to_owned())
        .unwrap_or_default()
}

async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn agent_config(endpoint: &str, state_dir: std::path::PathBuf) -> AgentConfig {
    let mut cfg = AgentConfig::new(endpoint, state_dir, None, "us-east-1");
    cfg.poll_wait = Duration::from_secs(10);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_before_its_server_registers_once_it_is_up() {
    // The activation comes from the server's API, so the server runs once, stops, and comes back
    // on the same address over the same data after the agent has started waiting.
    let s = TestServer::start().await;
    let activation = s.new_activation().await;
    let endpoint = s.endpoint.clone();
    let addr = s.addr();
    let dir = s.stop().await;

    let state_dir = dir.path().join("late-agent");
    let mut cfg = agent_config(&endpoint, state_dir.clone());
    cfg.activation = Some(activation);
    let registering = tokio::spawn({
        let cfg = cfg.clone();
        async move { fleetrun_agent::register_or_load(&cfg).await }
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!registering.is_finished(), "no server: still retrying");

    let s = TestServer::start_in(Arc::clone(&dir), Some(addr)).await;
    let identity = tokio::time::timeout(Duration::from_secs(30), registering)
        .await
        .expect("registered once the server is up")
        .expect("join")
        .expect("registered");
    // It runs commands like any agent.
    let node = identity.instance_id.clone();
    let run = tokio::spawn(fleetrun_agent::run(cfg, identity, std::future::pending()));
    let cmd = s.run(&[&node], &["echo late"]).await;
    let out = s.wait(&cmd, &node).await;
    assert_eq!(out.standard_output_content(), Some("late\n"));
    run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_registration_is_not_retried() {
    let s = TestServer::start().await;
    let mut activation = s.new_activation().await;
    let dir = s.dir.path().join("refused");
    let good_code = activation.code.clone();
    activation.code = "not-the-code-not-the-code".into();
    let mut cfg = agent_config(&s.endpoint, dir.clone());
    cfg.activation = Some(activation.clone());
    let t0 = Instant::now();
    let err = fleetrun_agent::register_or_load(&cfg)
        .await
        .expect_err("a wrong code is refused");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    match &err {
        AgentError::RegistrationRefused { code, message, .. } => {
            assert_eq!(code, "InvalidActivation");
            assert!(message.contains("code"), "{message}");
        }
        other => panic!("expected RegistrationRefused, got {other:?}"),
    }
    assert_eq!(err.exit_code(), exit::REGISTRATION_REFUSED);

    // A used-up activation (limit 1) is refused the same way.
    activation.code = good_code;
    cfg.activation = Some(activation);
    fleetrun_agent::register_or_load(&cfg)
        .await
        .expect("the right code registers");
    let mut second = agent_config(&s.endpoint, s.dir.path().join("second"));
    second.activation = cfg.activation.clone();
    let t0 = Instant::now();
    match fleetrun_agent::register_or_load(&second).await {
        Err(e @ AgentError::RegistrationRefused { .. }) => {
            assert!(e.to_string().contains("registration limit"), "{e}");
        }
        other => panic!("expected RegistrationRefused, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deregistered_agent_stops_with_its_documented_error() {
    let s = TestServer::start().await;
    let mut cfg = agent_config(&s.endpoint, s.dir.path().join("doomed"));
    cfg.activation = Some(s.new_activation().await);
    let identity = fleetrun_agent::register_or_load(&cfg)
        .await
        .expect("register");
    let node = identity.instance_id.clone();
    let run = tokio::spawn(fleetrun_agent::run(cfg, identity, std::future::pending()));
    let cmd = s.run(&[&node], &["echo alive"]).await;
    assert_eq!(
        s.wait(&cmd, &node).await.status().map(|x| x.as_str()),
        Some("Success")
    );

    s.client
        .deregister_managed_instance()
        .instance_id(&node)
        .send()
        .await
        .expect("deregister");
    // Its parked long poll is answered at once: the agent stops well before the poll wait (10 s).
    let ended = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the agent stops by itself")
        .expect("join");
    let err = ended.expect_err("deregistered");
    assert!(
        matches!(&err, AgentError::Deregistered { instance_id, .. } if *instance_id == node),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), exit::DEREGISTERED);
    let text = err.to_string();
    assert!(
        text.contains(&node)
            && text.contains("deregistered on the server; register again with a new activation")
            && text.contains("doomed"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_is_connection_lost_at_once_and_online_again_after_a_restart() {
    // The default ping timeout (60 s): only the goodbye can make the node ConnectionLost here.
    let s = TestServer::start().await;
    let agent = s.add_agent().await;
    let node = agent.instance_id.clone();
    let state_dir = agent.state_dir.clone();
    let cmd = s.run(&[&node], &["echo before"]).await;
    assert_eq!(
        s.wait(&cmd, &node).await.status().map(|x| x.as_str()),
        Some("Success")
    );
    assert_eq!(ping_status(&s, &node).await, "Online");

    agent.stop().await;
    assert_eq!(ping_status(&s, &node).await, "ConnectionLost");
    // Work sent to it now waits as Delayed (the ping-timeout rule, applied at once).
    let waiting = s.run(&[&node], &["echo after"]).await;
    eventually(
        "the command to be Delayed",
        Duration::from_secs(3),
        || async { status(&s, &waiting, &node).await == "Delayed" },
    )
    .await;
    let filtered = s
        .client
        .describe_instance_information()
        .filters(
            aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
                .key("PingStatus")
                .values("ConnectionLost")
                .build()
                .expect("filter"),
        )
        .send()
        .await
        .expect("describe");
    assert!(filtered
        .instance_information_list()
        .iter()
        .any(|i| i.instance_id() == Some(node.as_str())));

    // Restarted: Online with its first poll, and the Delayed command runs.
    let again = s.start_agent(state_dir, None).await;
    assert_eq!(again.instance_id, node);
    eventually("the node Online again", Duration::from_secs(5), || async {
        ping_status(&s, &node).await == "Online"
    })
    .await;
    let out = s.wait(&waiting, &node).await;
    assert_eq!(out.standard_output_content(), Some("after\n"));
    again.stop().await;
}

/// The goodbye over the raw protocol: released Pending work becomes Delayed at once, the command
/// the node is running stays InProgress (a restarted agent may still report it), and the next
/// poll of the node makes it Online and delivers the Delayed work.
#[tokio::test]
async fn a_goodbye_delays_waiting_work_and_leaves_running_work_alone() {
    let s = TestServer::start().await;
    let n = s.fake_node("Linux").await;
    let creds = n.credentials().await;
    let running = s.run(&[&n.instance_id], &["sleep 100"]).await;
    let poll = |known: Vec<String>| {
        serde_json::json!({"sessionId": "s1", "knownCommands": known, "waitMs": 0})
            .to_string()
            .into_bytes()
    };
    let (st, v) = n
        .send(&n.session_request(POLL_PATH, poll(vec![]), &creds, unix_now()))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["messages"][0]["commandId"], running.as_str());
    assert_eq!(status(&s, &running, &n.instance_id).await, "InProgress");
    let waiting = s.run(&[&n.instance_id], &["echo later"]).await;
    assert_eq!(status(&s, &waiting, &n.instance_id).await, "Pending");

    let (st, v) = n
        .send(&n.session_request(GOODBYE_PATH, b"{}".to_vec(), &creds, unix_now()))
        .await;
    assert_eq!((st, &v), (200, &serde_json::json!({})), "{v}");
    assert_eq!(ping_status(&s, &n.instance_id).await, "ConnectionLost");
    assert_eq!(status(&s, &waiting, &n.instance_id).await, "Delayed");
    assert_eq!(status(&s, &running, &n.instance_id).await, "InProgress");

    // An unsigned goodbye changes nothing.
    let (st, v) = n.send(&n.unsigned(GOODBYE_PATH, b"{}".to_vec())).await;
    assert_eq!(st, 400, "{v}");
    assert!(!code(&v).is_empty(), "{v}");

    let (st, v) = n
        .send(&n.session_request(POLL_PATH, poll(vec![running.clone()]), &creds, unix_now()))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["messages"][0]["commandId"], waiting.as_str());
    assert_eq!(ping_status(&s, &n.instance_id).await, "Online");
    assert_eq!(status(&s, &running, &n.instance_id).await, "InProgress");
    assert_eq!(status(&s, &waiting, &n.instance_id).await, "InProgress");
}
