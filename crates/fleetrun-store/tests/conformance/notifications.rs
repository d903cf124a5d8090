//! Checks for the notification outbox: the transitions write the notices a command's
//! NotificationConfig asks for, in the transaction that changes the status, and a deliverer
//! leases, retries and removes them.

use super::support::*;

use fleetrun_core::command::Notification;
use fleetrun_core::status::ExecutionOutcome;
use fleetrun_core::Store;

const TOPIC: &str = "arn:aws:sns:us-east-1:000000000000:fleet-events";

/// Per-node messages for a command of type Invocation: InProgress at delivery, Success at the
/// report, each once; nothing for a command without a topic; lease, retry and delivery.
pub async fn check_notification_outbox(store: &dyn Store) {
    let mut announced = new_command(T0, "AWS-RunShellScript", &[node(1), node(2)]);
    announced.echo.notification = Notification {
        arn: TOPIC.into(),
        events: vec!["All".into()],
        kind: "Invocation".into(),
    };
    let announced = store
        .insert_command(announced)
        .await
        .expect("insert")
        .command;
    let _silent = insert(store, T0 + 1, "AWS-RunShellScript", &[node(1), node(2)]).await;
    assert_eq!(
        store.notice_backlog().await.expect("backlog"),
        0,
        "nothing yet"
    );

    for n in [node(1), node(2)] {
        store.claim(&n, "s", &[], T0 + 10).await.expect("claim");
    }
    let done = store
        .finish(
            &node(1),
            report(&announced.id, ExecutionOutcome::Success, 0),
            T0 + 20,
        )
        .await
        .expect("finish");
    assert!(done.applied);
    // A repeated report changes nothing, so it announces nothing.
    store
        .finish(
            &node(1),
            report(&announced.id, ExecutionOutcome::Success, 0),
            T0 + 21,
        )
        .await
        .expect("finish again");
    assert_eq!(store.notice_backlog().await.expect("backlog"), 3);

    let now = fleetrun_core::clock::now_millis();
    let leased = store.lease_notices(now, 60_000, 10).await.expect("lease");
    let mut seen: Vec<(String, String)> = leased
        .iter()
        .map(|e| {
            assert_eq!(e.topic_arn, TOPIC);
            assert_eq!(e.attempts, 1);
            let body: serde_json::Value = serde_json::from_str(&e.body).expect("json body");
            assert_eq!(body["commandId"], announced.id.as_str());
            (
                body["instanceId"].as_str().unwrap_or_default().to_string(),
                body["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (node(1).to_string(), "InProgress".to_string()),
            (node(1).to_string(), "Success".to_string()),
            (node(2).to_string(), "InProgress".to_string()),
        ]
    );
    // Leased: nobody gets them again before the lease ends.
    assert!(store
        .lease_notices(now, 60_000, 10)
        .await
        .expect("lease")
        .is_empty());
    assert_eq!(
        store
            .lease_notices(now + 60_000, 60_000, 10)
            .await
            .expect("after the lease")
            .len(),
        3
    );
    // A failed delivery comes back when its retry is due, counting its attempts.
    let first = &leased[0].message_id;
    store.retry_notice_at(first, now + 1).await.expect("retry");
    let again = store
        .lease_notices(now + 1, 60_000, 10)
        .await
        .expect("lease");
    assert_eq!(again.len(), 1);
    assert_eq!(&again[0].message_id, first);
    assert_eq!(again[0].attempts, 3);
    for e in &leased {
        store
            .notice_delivered(&e.message_id)
            .await
            .expect("delivered");
    }
    store
        .notice_delivered(first)
        .await
        .expect("a repeat is harmless");
    assert_eq!(store.notice_backlog().await.expect("backlog"), 0);
}
