//! Node authentication over real HTTP (agent protocol v2): a node presenting another node's id,
//! stale credentials, replayed, tampered or unsigned requests each get nothing and change nothing
//! (the invocation's state is checked through the SSM API afterwards); a deregistered node is
//! refused on its next request with `InvalidInstanceId` (a parked poll at once); credentials rotate under a running agent; an old v1 agent gets a
//! clear error; wrong activation codes are throttled.

mod common;

use std::time::Duration;

use common::node::{poll_body, register_raw, registration, FakeNode};
use common::TestServer;
use fleetrun_agent::signing::{unix_now, NodeKey, SessionCredentials};
use fleetrun_server::node_auth::{
    REGISTRATION_FAILURES_GLOBAL, REGISTRATION_FAILURES_PER_ACTIVATION,
};
use fleetrun_wire::agent::{POLL_PATH, RESULT_PATH, TOKEN_PATH};
use serde_json::Value;

fn code(v: &Value) -> &str {
    v["__type"].as_str().unwrap_or("")
}

fn message(v: &Value) -> &str {
    v["message"]
        .as_str()
        .or_else(|| v["Message"].as_str())
        .unwrap_or("")
}

async fn status(s: &TestServer, cmd: &str, node: &str) -> String {
    s.client
        .get_command_invocation()
        .command_id(cmd)
        .instance_id(node)
        .send()
        .await
        .expect("get invocation")
        .status()
        .map(|x| x.as_str().to_string())
        .unwrap_or_default()
}

fn messages(v: &Value) -> usize {
    v["messages"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_node_presenting_another_nodes_id_gets_nothing_and_changes_nothing() {
    let s = TestServer::start().await;
    let a = s.fake_node("Linux").await;
    let b = s.fake_node("Linux").await;
    let cmd = s.run(&[&b.instance_id], &["echo b"]).await;

    // A asks for B's credentials, signing with its own key or a made-up one.
    for key in [a.key.clone(), NodeKey::generate()] {
        let (st, v) = a
            .send(&a.token_request(&b.instance_id, &key, unix_now()))
            .await;
        assert_eq!((st, code(&v)), (400, "InvalidSignatureException"), "{v}");
    }
    // With its own credentials A sees none of B's work, and its report for B's command lands nowhere.
    let creds = a.credentials().await;
    let (st, v) = a.poll(&creds).await;
    assert_eq!((st, messages(&v)), (200, 0), "{v}");
    let (st, v) = a.result(&creds, &cmd, "Success").await;
    assert!(st != 200 || v["applied"] == false, "{st} {v}");
    // A's session token presented under another access key id.
    let forged = SessionCredentials {
        access_key_id: "ASIAAAAAAAAAAAAAAAAA".into(),
        ..creds.clone()
    };
    let (st, v) = a.poll(&forged).await;
    assert_eq!((st, code(&v)), (400, "UnrecognizedClientException"), "{v}");
    assert_eq!(status(&s, &cmd, &b.instance_id).await, "Pending");

    // B itself gets its command.
    let bc = b.credentials().await;
    let (st, v) = b.poll(&bc).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["messages"][0]["commandId"], cmd.as_str());
    assert_eq!(status(&s, &cmd, &b.instance_id).await, "InProgress");
}

#[tokio::test]
async fn stale_credentials_and_signatures_are_refused() {
    let s = TestServer::start_with(|c| c.node_credentials_lifetime = Duration::from_secs(2)).await;
    let n = s.fake_node("Linux").await;
    let creds = n.credentials().await;
    assert_eq!(creds.lifetime, Duration::from_secs(2));
    let cmd = s.run(&[&n.instance_id], &["true"]).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (st, v) = n.poll(&creds).await;
    assert_eq!((st, code(&v)), (400, "ExpiredTokenException"), "{v}");
    assert_eq!(
        message(&v),
        "The security token included in the request is expired"
    );
    let (st, v) = n.result(&creds, &cmd, "Success").await;
    assert_eq!((st, code(&v)), (400, "ExpiredTokenException"), "{v}");

    // Fresh credentials, but a request signed more than 5 minutes ago or ahead.
    let fresh = n.credentials().await;
    for (skew, start) in [
        (-400, "Signature expired: "),
        (400, "Signature not yet current: "),
    ] {
        let p = n.session_request(POLL_PATH, poll_body("s"), &fresh, unix_now() + skew);
        let (st, v) = n.send(&p).await;
        assert_eq!((st, code(&v)), (400, "InvalidSignatureException"), "{v}");
        assert!(message(&v).starts_with(start), "{v}");
        let t = n.token_request(&n.instance_id, &n.key, unix_now() + skew);
        let (st, v) = n.send(&t).await;
        assert_eq!((st, code(&v)), (400, "InvalidSignatureException"), "{v}");
    }
    assert_eq!(status(&s, &cmd, &n.instance_id).await, "Pending");
}

#[tokio::test]
async fn a_replayed_request_is_refused_and_changes_nothing() {
    let s = TestServer::start().await;
    let n = s.fake_node("Linux").await;
    let creds = n.credentials().await;
    let captured = n.session_request(POLL_PATH, poll_body("s1"), &creds, unix_now());
    let (st, v) = n.send(&captured).await;
    assert_eq!((st, messages(&v)), (200, 0), "{v}");

    // Work arrives; the captured poll sent again would collect it, but is refused.
    let cmd = s.run(&[&n.instance_id], &["true"]).await;
    let (st, v) = n.send(&captured).await;
    assert_eq!((st, code(&v)), (400, "InvalidSignatureException"), "{v}");
    assert!(message(&v).contains("already been used"), "{v}");
    assert_eq!(status(&s, &cmd, &n.instance_id).await, "Pending");

    // Token requests are single-use too.
    let t = n.token_request(&n.instance_id, &n.key, unix_now());
    assert_eq!(n.send(&t).await.0, 200);
    let (st, v) = n.send(&t).await;
    assert_eq!((st, code(&v)), (400, "InvalidSignatureException"), "{v}");

    // A replayed result cannot finish a command twice either.
    let (_, v) = n.poll(&creds).await;
    assert_eq!(v["messages"][0]["commandId"], cmd.as_str());
    let r = n.session_request(
        RESULT_PATH,
        FakeNode::result_body(&cmd, "Success"),
        &creds,
        unix_now(),
    );
    assert_eq!(n.send(&r).await.0, 200);
    let (st, v) = n.send(&r).await;
    assert_eq!((st, code(&v)), (400, "InvalidSignatureException"), "{v}");
}

#[tokio::test]
async fn a_tampered_body_is_refused_and_changes_nothing() {
    let s = TestServer::start().await;
    let n = s.fake_node("Linux").await;
    let creds = n.credentials().await;
    let cmd = s.run(&[&n.instance_id], &["true"]).await;
    let (_, v) = n.poll(&creds).await;
    assert_eq!(v["messages"][0]["commandId"], cmd.as_str());
    assert_eq!(status(&s, &cmd, &n.instance_id).await, "InProgress");

    let signed = n.session_request(
        RESULT_PATH,
        FakeNode::result_body(&cmd, "Success"),
        &creds,
        unix_now(),
    );
    let mut tampered = signed.clone();
    tampered.body = FakeNode::result_body(&cmd, "Failed");
    let (st, v) = n.send(&tampered).await;
    assert_eq!((st, code(&v)), (400, "InvalidSignatureException"), "{v}");
    assert_eq!(status(&s, &cmd, &n.instance_id).await, "InProgress");

    // A signed header changed after signing.
    let mut header = signed.clone();
    for (name, value) in &mut header.headers {
        if name == "x-fleetrun-agent-protocol" {
            *value = "3".into();
        }
    }
    let (st, v) = n.send(&header).await;
    assert_eq!((st, code(&v)), (400, "InvalidSignatureException"), "{v}");
    assert_eq!(status(&s, &cmd, &n.instance_id).await, "InProgress");

    // The request as signed goes through.
    let (st, v) = n.send(&signed).await;
    assert_eq!((st, &v["applied"]), (200, &Value::Bool(true)), "{v}");
    assert_eq!(status(&s, &cmd, &n.instance_id).await, "Success");
}

#[tokio::test]
async fn no_credential_gets_nothing_and_changes_nothing() {
    let s = TestServer::start().await;
    let n = s.fake_node("Linux").await;
    let cmd = s.run(&[&n.instance_id], &["true"]).await;
    for (path, body) in [
        (POLL_PATH, poll_body("s")),
        (RESULT_PATH, FakeNode::result_body(&cmd, "Success")),
        (TOKEN_PATH, b"{}".to_vec()),
    ] {
        let (st, v) = n.send(&n.unsigned(path, body.clone())).await;
        assert_eq!(
            (st, code(&v)),
            (400, "MissingAuthenticationTokenException"),
            "{path}: {v}"
        );
        assert_eq!(message(&v), "Request is missing Authentication Token");
        // The protocol v1 header, or a bare secret, is no credential either.
        let mut old = n.unsigned(path, body);
        old.headers.push((
            "authorization".into(),
            format!("FleetrunNode {}:secret", n.instance_id),
        ));
        let (st, v) = n.send(&old).await;
        assert_eq!(
            (st, code(&v)),
            (400, "IncompleteSignatureException"),
            "{path}: {v}"
        );
    }
    // Signed, but without the session token the credentials belong to.
    let creds = n.credentials().await;
    let mut p = n.session_request(POLL_PATH, poll_body("s"), &creds, unix_now());
    p.headers.retain(|(name, _)| name != "x-amz-security-token");
    let (st, v) = n.send(&p).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        matches!(
            code(&v),
            "IncompleteSignatureException" | "UnrecognizedClientException"
        ),
        "{v}"
    );
    assert_eq!(status(&s, &cmd, &n.instance_id).await, "Pending");
}

#[tokio::test]
async fn a_deregistered_node_is_refused_on_its_next_request() {
    let s = TestServer::start().await;
    let n = s.fake_node("Linux").await;
    let creds = n.credentials().await;
    assert_eq!(n.poll(&creds).await.0, 200);
    s.client
        .deregister_managed_instance()
        .instance_id(&n.instance_id)
        .send()
        .await
        .expect("deregister");
    // Its credentials are still within their lifetime, but the node is gone: every signed
    // request says so with one distinct code (the agent stops instead of retrying), as AWS
    // answers a deregistered hybrid node ("InvalidInstanceId: Not existing InstanceId").
    let (st, v) = n.poll(&creds).await;
    assert_eq!((st, code(&v)), (400, "InvalidInstanceId"), "{v}");
    assert!(
        message(&v).contains(&n.instance_id) && message(&v).contains("deregistered"),
        "{v}"
    );
    let (st, v) = n
        .result(&creds, "00000000-0000-0000-0000-000000000000", "Success")
        .await;
    assert_eq!((st, code(&v)), (400, "InvalidInstanceId"), "{v}");
    let (st, v) = n
        .send(&n.token_request(&n.instance_id, &n.key, unix_now()))
        .await;
    assert_eq!((st, code(&v)), (400, "InvalidInstanceId"), "{v}");
    let (st, v) = n
        .send(&n.session_request(
            fleetrun_wire::agent::GOODBYE_PATH,
            b"{}".to_vec(),
            &creds,
            unix_now(),
        ))
        .await;
    assert_eq!((st, code(&v)), (400, "InvalidInstanceId"), "{v}");
    // A clock-skewed request is refused for its time first, with the code the agent retries.
    let (st, v) = n
        .send(&n.token_request(&n.instance_id, &n.key, unix_now() - 400))
        .await;
    assert_eq!((st, code(&v)), (400, "InvalidSignatureException"), "{v}");
    assert!(message(&v).starts_with("Signature expired"), "{v}");
}

/// A node's long poll parked on the server answers at once when the node is deregistered,
/// instead of at the end of its wait.
#[tokio::test]
async fn deregistering_ends_the_nodes_parked_poll_at_once() {
    let s = TestServer::start().await;
    let n = s.fake_node("Linux").await;
    let creds = n.credentials().await;
    let body = serde_json::json!({"sessionId": "s", "knownCommands": [], "waitMs": 20_000})
        .to_string()
        .into_bytes();
    let parked = n.session_request(POLL_PATH, body, &creds, unix_now());
    let id = n.instance_id.clone();
    let poll = tokio::spawn(async move { n.send(&parked).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = std::time::Instant::now();
    s.client
        .deregister_managed_instance()
        .instance_id(id)
        .send()
        .await
        .expect("deregister");
    let (st, v) = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the poll answers at once")
        .expect("join");
    assert_eq!((st, code(&v)), (400, "InvalidInstanceId"), "{v}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

/// Credentials that last 3 s: a real agent keeps running commands across several rotations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_rotate_while_the_agent_keeps_running_commands() {
    let s = TestServer::start_with(|c| c.node_credentials_lifetime = Duration::from_secs(3)).await;
    let agent = s.add_agent().await;
    for i in 0..3 {
        let cmd = s
            .run(&[&agent.instance_id], &[&format!("echo round-{i}")])
            .await;
        let out = s.wait(&cmd, &agent.instance_id).await;
        assert_eq!(out.status().map(|x| x.as_str()), Some("Success"));
        assert_eq!(
            out.standard_output_content(),
            Some(format!("round-{i}\n").as_str())
        );
        tokio::time::sleep(Duration::from_millis(3500)).await;
    }
    let issued = s.node_auth.credentials_issued();
    assert!(
        issued >= 3,
        "only {issued} credentials issued over ~11 s of 3 s credentials"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_protocol_v1_agent_gets_a_clear_error() {
    let s = TestServer::start().await;
    let act = s.new_activation().await;
    let http = common::node::http();
    for (path, body) in [
        (
            "/agent/v1/register",
            serde_json::json!({"activationId": act.id, "activationCode": act.code,
                "machine": common::node::machine("Linux")}),
        ),
        (
            "/agent/v1/poll",
            serde_json::json!({"sessionId": "s", "knownCommands": [], "waitMs": 0}),
        ),
        ("/agent/v1/result", serde_json::json!({})),
    ] {
        let resp = http
            .post(format!("{}{path}", s.endpoint))
            .header("authorization", "FleetrunNode mi-0123456789abcdef0:secret")
            .header("x-fleetrun-agent-protocol", "1")
            .json(&body)
            .send()
            .await
            .expect("http");
        assert_eq!(resp.status().as_u16(), 426, "{path}");
        let v: Value = resp.json().await.expect("json");
        assert_eq!(code(&v), "UnsupportedAgentProtocolException", "{path}");
        assert_eq!(
            message(&v),
            "this server speaks agent protocol v2; upgrade fleetrun-agent and register it again"
        );
    }
    // The v1 registration did not use the activation up.
    FakeNode::register(&s.endpoint, (&act.id, &act.code), "Linux").await;
}

#[tokio::test]
async fn wrong_activation_codes_are_throttled_per_activation() {
    let s = TestServer::start().await;
    let act = s.new_activation().await;
    let other = s.new_activation().await;
    let key = NodeKey::generate();
    for i in 0..REGISTRATION_FAILURES_PER_ACTIVATION {
        let wrong = registration(&act.id, &format!("wrong-code-{i:09}"), &key, "Linux");
        let (st, v) = register_raw(&s.endpoint, &wrong).await;
        assert_eq!((st, code(&v)), (400, "InvalidActivation"), "try {i}: {v}");
    }
    // Now even the right code is not checked.
    let right = registration(&act.id, &act.code, &key, "Linux");
    let (st, v) = register_raw(&s.endpoint, &right).await;
    assert_eq!((st, code(&v)), (400, "TooManyUpdates"), "{v}");
    // Other activations are unaffected, and the throttled one was not used up.
    FakeNode::register(&s.endpoint, (&other.id, &other.code), "Linux").await;
    let list = s
        .client
        .describe_activations()
        .send()
        .await
        .expect("describe");
    let throttled = list
        .activation_list()
        .iter()
        .find(|a| a.activation_id() == Some(act.id.as_str()))
        .expect("listed");
    assert_eq!(throttled.registrations_count(), Some(0));
}

#[tokio::test]
async fn guessing_across_activations_is_throttled_globally() {
    let s = TestServer::start().await;
    let act = s.new_activation().await;
    let key = NodeKey::generate();
    for i in 0..REGISTRATION_FAILURES_GLOBAL {
        let id = uuid::Uuid::new_v4().to_string();
        let (st, v) = register_raw(
            &s.endpoint,
            &registration(&id, "guess-guess-guess-00", &key, "Linux"),
        )
        .await;
        assert_eq!((st, code(&v)), (400, "InvalidActivationId"), "try {i}: {v}");
    }
    let (st, v) = register_raw(
        &s.endpoint,
        &registration(&act.id, &act.code, &key, "Linux"),
    )
    .await;
    assert_eq!((st, code(&v)), (400, "TooManyUpdates"), "{v}");
}

#[tokio::test]
async fn registration_refuses_unusable_public_keys_without_using_the_activation() {
    let s = TestServer::start().await;
    let act = s.new_activation().await;
    let key = NodeKey::generate();
    let mut rsa = registration(&act.id, &act.code, &key, "Linux");
    rsa["publicKeyType"] = "Rsa".into();
    let mut short = registration(&act.id, &act.code, &key, "Linux");
    short["publicKey"] = "c2hvcnQ=".into();
    let mut missing = registration(&act.id, &act.code, &key, "Linux");
    missing.as_object_mut().expect("object").remove("publicKey");
    for (body, want) in [
        (rsa, "InvalidPublicKey"),
        (short, "InvalidPublicKey"),
        (missing, "SerializationException"),
    ] {
        let (st, v) = register_raw(&s.endpoint, &body).await;
        assert_eq!((st, code(&v)), (400, want), "{v}");
    }
    let n = FakeNode::register(&s.endpoint, (&act.id, &act.code), "Linux").await;
    assert!(n.instance_id.starts_with("mi-"));
    assert_eq!(n.region, "us-east-1");
}
