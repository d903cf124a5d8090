//! Notifications are restart-safe: notices a server could not deliver before it stopped (its
//! webhook refused connections) are delivered, signed, by the next start over the same store.
//! (What is announced, and the envelope, are tested in core and in tests/e2e/test_notifications.py.)

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ssm::types::{NotificationConfig, NotificationEvent, NotificationType};
use axum::body::Bytes;
use axum::http::HeaderMap;
use common::TestServer;
use fleetrun_server::webhooks::{signature, Subscriber, SECRETS_FILE};

const TOPIC: &str = "arn:aws:sns:us-east-1:000000000000:restart-test";

type Posts = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A webhook on `port` that records every POST.
async fn receiver(port: u16) -> Posts {
    let posts: Posts = Arc::default();
    let recorded = posts.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let recorded = recorded.clone();
            async move {
                recorded.lock().expect("lock").push((headers, body));
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the webhook's port");
    tokio::spawn(async move { axum::serve(listener, app).await });
    posts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_a_server_could_not_deliver_are_delivered_after_its_restart() {
    // A port nobody listens on yet: every delivery is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let hooks = vec![Subscriber {
        topic_arn: TOPIC.into(),
        url: url.clone(),
    }];
    let configure = |hooks: Vec<Subscriber>| {
        move |c: &mut fleetrun_server::ServerConfig| {
            c.webhooks = hooks;
            c.webhook_retry_max = Duration::from_secs(1);
        }
    };
    let first = TestServer::start_with(configure(hooks.clone())).await;
    let agent = first.add_agent().await;
    let node = agent.instance_id.clone();
    let sent = first
        .client
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(&node)
        .parameters("commands", vec!["echo notified".to_string()])
        .notification_config(
            NotificationConfig::builder()
                .notification_arn(TOPIC)
                .notification_events(NotificationEvent::All)
                .notification_type(NotificationType::Command)
                .build(),
        )
        .send()
        .await
        .expect("send");
    let id = sent
        .command()
        .and_then(|c| c.command_id())
        .expect("id")
        .to_string();
    first.wait(&id, &node).await;
    // Let the refused deliveries be tried (and scheduled again), then stop everything.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    agent.stop().await;
    let dir = first.stop().await;

    let posts = receiver(port).await;
    let second = TestServer::start_in_with(dir.clone(), configure(hooks)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got: Vec<(HeaderMap, Bytes)> = posts
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, body)| String::from_utf8_lossy(body).contains(&id))
            .cloned()
            .collect();
        if got.len() >= 2 {
            break got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted server delivered {} of 2 notices",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let secrets =
        std::fs::read_to_string(dir.path().join("data").join(SECRETS_FILE)).expect("secrets file");
    let secret = secrets
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{url} ")))
        .expect("the webhook's secret");
    let mut statuses = Vec::new();
    for (headers, body) in &got {
        let signed = headers
            .get("x-fleetrun-signature")
            .and_then(|v| v.to_str().ok())
            .expect("signature header");
        assert_eq!(signed, signature(secret, body), "the signature verifies");
        let envelope: serde_json::Value = serde_json::from_slice(body).expect("envelope");
        let message: serde_json::Value =
            serde_json::from_str(envelope["Message"].as_str().expect("Message")).expect("message");
        statuses.push(message["status"].as_str().unwrap_or_default().to_string());
    }
    statuses.sort();
    assert_eq!(statuses, ["InProgress", "Success"]);
    second.stop().await;
}
