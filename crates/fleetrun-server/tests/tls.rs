//! TLS end to end: a server with a generated self-signed certificate, agents that trust it by
//! fingerprint pin or as their CA, one with a wrong pin, and aws-sdk-ssm trusting the certificate.

mod common;

use common::{TestAgent, TestServer};
use fleetrun_agent::AgentError;

/// Registers an agent with `tweak` applied over the TLS default (the certificate as CA), runs
/// `echo` on it and checks the answer came back Success through the TLS endpoint.
async fn runs_a_command(
    s: &TestServer,
    name: &str,
    tweak: impl FnOnce(&mut fleetrun_agent::AgentConfig),
) -> TestAgent {
    let activation = s.new_activation().await;
    let dir = s.dir.path().join(name);
    let agent = s
        .start_agent_with(dir, Some(activation), tweak)
        .await
        .expect("registers over TLS");
    let id = s.run(&[&agent.instance_id], &["echo over-tls"]).await;
    let out = s.wait(&id, &agent.instance_id).await;
    assert_eq!(out.status().map(|s| s.as_str()), Some("Success"));
    assert_eq!(out.standard_output_content(), Some("over-tls\n"));
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_pinned_by_fingerprint_registers_and_runs_a_command() {
    let s = TestServer::start_tls().await;
    assert!(s.endpoint.starts_with("https://"), "{}", s.endpoint);
    let tls = s.tls.clone().expect("tls");
    // The banner's form (upper case, colons) and the bare lower-case hex both pin.
    let bare = tls.fingerprint.replace(':', "").to_lowercase();
    for (name, pin) in [
        ("agent-pin", tls.fingerprint.clone()),
        ("agent-bare-pin", bare),
    ] {
        let agent = runs_a_command(&s, name, |cfg| {
            cfg.ca_cert = None;
            cfg.server_fingerprint = Some(pin);
        })
        .await;
        agent.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_trusting_the_certificate_as_its_ca_runs_a_command() {
    let s = TestServer::start_tls().await;
    let cert = s.tls.as_ref().expect("tls").cert_path.clone();
    let agent = runs_a_command(&s, "agent-ca", |cfg| {
        cfg.ca_cert = Some(cert);
        cfg.server_fingerprint = None;
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_with_a_wrong_fingerprint_cannot_connect_and_says_why() {
    let s = TestServer::start_tls().await;
    let real = s.tls.as_ref().expect("tls").fingerprint.clone();
    let wrong = "00".repeat(32);
    let activation = s.new_activation().await;
    let err = s
        .start_agent_with(
            s.dir.path().join("agent-wrong-pin"),
            Some(activation),
            |cfg| {
                cfg.ca_cert = None;
                cfg.server_fingerprint = Some(wrong);
            },
        )
        .await
        .err()
        .expect("a wrong pin must not connect");
    assert!(matches!(err, AgentError::Transport { .. }), "{err:?}");
    let text = fleetrun_agent::describe(&err);
    assert!(text.contains("fingerprint"), "{text}");
    assert!(
        text.contains(&real),
        "names the presented certificate: {text}"
    );
    // Nothing was registered: the node list is empty.
    let nodes = s
        .client
        .describe_instance_information()
        .send()
        .await
        .expect("describe");
    assert!(nodes.instance_information_list().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_trusting_another_ca_cannot_connect() {
    let s = TestServer::start_tls().await;
    let other = tempfile::tempdir().expect("tempdir");
    let other_tls =
        fleetrun_server::tls::self_signed(other.path(), &["127.0.0.1".into()]).expect("cert");
    let activation = s.new_activation().await;
    let err = s
        .start_agent_with(
            s.dir.path().join("agent-other-ca"),
            Some(activation),
            |cfg| {
                cfg.ca_cert = Some(other_tls.cert_path.clone());
            },
        )
        .await
        .err()
        .expect("another CA must not verify the server");
    assert!(matches!(err, AgentError::Transport { .. }), "{err:?}");
    let text = fleetrun_agent::describe(&err);
    assert!(
        text.contains("not issued by a CA in the --ca-cert file"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_trusting_the_certificate_works_and_one_that_does_not_is_refused() {
    let s = TestServer::start_tls().await;
    let listed = s
        .client
        .list_commands()
        .send()
        .await
        .expect("list over TLS");
    assert!(listed.commands().is_empty());

    // The same key without the certificate in its trust store: the handshake fails.
    let other = tempfile::tempdir().expect("tempdir");
    let other_tls =
        fleetrun_server::tls::self_signed(other.path(), &["127.0.0.1".into()]).expect("cert");
    let untrusting = common::client_trusting(&s.endpoint, &s.admin, &other_tls.cert_path);
    let err = untrusting
        .list_commands()
        .send()
        .await
        .expect_err("an untrusted certificate must fail");
    assert!(
        err.as_service_error().is_none(),
        "a transport failure: {err:?}"
    );
}
