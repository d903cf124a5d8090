//! Checks for the S3 upload queue: a finish queues its invocation's upload only when the command
//! names a bucket, once; leases, retries and completion.

use super::support::*;

use fleetrun_core::status::ExecutionOutcome;
use fleetrun_core::Store;

pub async fn check_upload_queue(store: &dyn Store) {
    let mut uploaded = new_command(T0, "AWS-RunShellScript", &[node(1), node(2)]);
    uploaded.echo.output_s3_bucket_name = "fleet-output".into();
    let uploaded = store
        .insert_command(uploaded)
        .await
        .expect("insert")
        .command;
    let plain = insert(store, T0 + 1, "AWS-RunShellScript", &[node(1)])
        .await
        .id;
    for n in [node(1), node(2)] {
        store.claim(&n, "s", &[], T0 + 10).await.expect("claim");
    }
    assert_eq!(store.upload_backlog().await.expect("backlog"), 0, "before");
    for id in [&uploaded.id, &plain] {
        store
            .finish(&node(1), report(id, ExecutionOutcome::Success, 0), T0 + 20)
            .await
            .expect("finish");
    }
    // A repeated report changes nothing, so it queues nothing.
    store
        .finish(
            &node(1),
            report(&uploaded.id, ExecutionOutcome::Success, 0),
            T0 + 21,
        )
        .await
        .expect("finish again");
    assert_eq!(store.upload_backlog().await.expect("backlog"), 1);

    let now = fleetrun_core::clock::now_millis();
    let leased = store.lease_uploads(now, 60_000, 10).await.expect("lease");
    assert_eq!(leased.len(), 1);
    assert_eq!(
        (
            &leased[0].command_id,
            &leased[0].instance_id,
            leased[0].attempts
        ),
        (&uploaded.id, &node(1), 1)
    );
    assert!(
        store
            .lease_uploads(now, 60_000, 10)
            .await
            .expect("lease")
            .is_empty(),
        "leased"
    );
    store
        .retry_upload_at(&uploaded.id, &node(1), now)
        .await
        .expect("retry");
    let again = store.lease_uploads(now, 60_000, 10).await.expect("lease");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    store
        .upload_done(&uploaded.id, &node(1))
        .await
        .expect("done");
    store
        .upload_done(&uploaded.id, &node(1))
        .await
        .expect("done twice");
    assert_eq!(store.upload_backlog().await.expect("backlog"), 0);

    // An upload goes with its command.
    store
        .finish(
            &node(2),
            report(&uploaded.id, ExecutionOutcome::Success, 0),
            T0 + 30,
        )
        .await
        .expect("finish 2");
    assert_eq!(store.upload_backlog().await.expect("backlog"), 1);
    store.purge_before(T0 + 1).await.expect("purge");
    assert_eq!(store.upload_backlog().await.expect("backlog"), 0);
}
