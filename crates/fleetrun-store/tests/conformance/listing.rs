//! Checks for storing and listing: round trips, ListCommands filters and keyset paging,
//! ListCommandInvocations, retention.

use super::support::*;
use std::collections::HashSet;

use fleetrun_core::command::{Command, ListedBody, ListedCommand};
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::query::{CommandQuery, ExecutionStage, ListKind, PageKey, StatusMatch};
use fleetrun_core::status::{CommandState, ExecutionOutcome, InvocationState};
use fleetrun_core::{CoreError, Store};

/// Stored fields round-trip; listing is newest first with seq breaking ties.
pub async fn check_insert_get_list(store: &dyn Store) {
    let a = insert(store, T0, "AWS-RunShellScript", &[node(1), node(2)]).await;
    let b = insert(store, T0 + 1_000, "AWS-RunShellScript", &[node(1)]).await;
    let c = insert(store, T0 + 1_000, "AWS-RunShellScript", &[node(3)]).await;
    assert!(b.seq > a.seq && c.seq > b.seq);
    assert_eq!(a.counts.get(InvocationState::Pending), 2);
    assert_eq!(a.aggregate().state, CommandState::Pending);
    assert_eq!(a.aggregate().target_count, 2);

    let got = command(store, &a.id).await;
    assert_eq!(got, a);
    assert_eq!(
        got.echo.parameters["commands"],
        vec!["echo hello".to_string()]
    );
    assert_eq!(got.plan, plan());
    assert!(store
        .command(&CommandId::generate())
        .await
        .expect("get")
        .is_none());

    let inv = store
        .invocation(&a.id, &node(2))
        .await
        .expect("get invocation")
        .expect("exists");
    assert_eq!(inv.state, InvocationState::Pending);
    assert_eq!(inv.requested_at, T0);
    assert_eq!(inv.command_seq, a.seq);
    assert_eq!(inv.response_code, -1);
    assert!(inv.started_at.is_none() && inv.ended_at.is_none() && inv.steps.is_empty());
    assert!(store
        .invocation(&a.id, &node(3))
        .await
        .expect("get")
        .is_none());

    let listed = store
        .list_commands(&CommandQuery::default(), None, 10)
        .await
        .expect("list");
    assert_eq!(
        listed,
        vec![listed_as_sent(&c), listed_as_sent(&b), listed_as_sent(&a)]
    );

    // No targets: the aggregate says NoInstancesInTag (Status Success), already terminal.
    let empty = insert(store, T0 + 2_000, "AWS-RunShellScript", &[]).await;
    assert_eq!(empty.aggregate().state, CommandState::NoInstancesInTag);
    assert_eq!(
        ids(store, &query(&[("ExecutionStage", "Complete")])).await,
        vec![empty.id.clone()]
    );
    assert_eq!(
        ids(store, &query(&[("Status", "Success")])).await,
        vec![empty.id]
    );

    // A node listed twice is refused, and nothing is stored.
    let dup = new_command(T0, "AWS-RunShellScript", &[node(1), node(1)]);
    let dup_id = dup.id.clone();
    assert!(matches!(
        store.insert_command(dup).await,
        Err(CoreError::DuplicateInstance(_))
    ));
    assert!(store.command(&dup_id).await.expect("get").is_none());
}

/// How a page lists a command inserted by [`new_command`]: its counters and its rendering verbatim.
fn listed_as_sent(c: &Command) -> ListedCommand {
    ListedCommand {
        seq: c.seq,
        id: c.id.clone(),
        requested_at: c.requested_at,
        error_budget: c.error_budget,
        counts: c.counts,
        cancel_requested: c.cancel_requested,
        body: ListedBody::Rendered(rendering_of(&c.id)),
    }
}

/// A command stored without a rendering (as by a build before renderings) is listed whole, with
/// the same live counters, beside rendered ones.
pub async fn check_unrendered_listing(store: &dyn Store) {
    let rendered = insert(store, T0, "AWS-RunShellScript", &[node(1)]).await;
    let mut bare = new_command(T0 + 1, "AWS-RunShellScript", &[node(1), node(2)]);
    bare.rendered = None;
    let bare = store.insert_command(bare).await.expect("insert").command;
    store
        .claim(&node(2), "s", &[], T0 + 2)
        .await
        .expect("claim");
    let bare = command(store, &bare.id).await;

    let listed = store
        .list_commands(&CommandQuery::default(), None, 10)
        .await
        .expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].body, ListedBody::Whole(Box::new(bare.clone())));
    assert_eq!(
        (listed[0].id.clone(), listed[0].seq, listed[0].counts),
        (bare.id.clone(), bare.seq, bare.counts)
    );
    assert_eq!(listed[0].aggregate(), bare.aggregate());
    assert_eq!(listed[1], listed_as_sent(&rendered));
    // The node filter lists through the invocations; the bodies are the same.
    let on_node = store
        .list_commands(
            &CommandQuery {
                instance_id: Some(node(2)),
                ..Default::default()
            },
            None,
            10,
        )
        .await
        .expect("list");
    assert_eq!(on_node, vec![listed[0].clone()]);
}

/// Keyset pages: no duplicate and no gap while newer commands arrive between pages.
pub async fn check_keyset_paging(store: &dyn Store) {
    let mut expected = Vec::new();
    for i in 0..23 {
        // Groups of three share a timestamp so the seq tiebreak crosses page boundaries.
        let c = insert(
            store,
            T0 + (i / 3) * 1_000,
            "AWS-RunShellScript",
            &[node(1)],
        )
        .await;
        expected.push(c.id);
    }
    expected.reverse();

    let q = CommandQuery::default();
    let mut seen = Vec::new();
    let mut after: Option<PageKey> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_commands(&q, after.as_ref(), 4)
            .await
            .expect("page");
        pages += 1;
        let Some(last) = page.last() else { break };
        after = Some(key_of(last));
        seen.extend(page.iter().map(|c| c.id.clone()));
        // Newer commands, including one sharing the cursor's timestamp, land before the cursor.
        insert(
            store,
            T0 + 100 * HOUR + pages,
            "AWS-RunShellScript",
            &[node(1)],
        )
        .await;
        insert(store, last.requested_at, "AWS-RunShellScript", &[node(2)]).await;
        if page.len() < 4 {
            break;
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());
    assert_eq!(pages, 6);

    // The same with a filter, and through the instance index.
    let mut q = CommandQuery {
        instance_id: Some(node(1)),
        ..Default::default()
    };
    q.add_filter(ListKind::Commands, "InvokedBefore", "2024-07-03T09:46:40Z")
        .expect("filter");
    // T0 = 2024-07-03T09:46:40Z, so this selects nothing; drop it and page the node's commands.
    assert!(store
        .list_commands(&q, None, 10)
        .await
        .expect("list")
        .is_empty());
    q.invoked_before = Some(T0 + 10 * HOUR);
    let mut seen = Vec::new();
    let mut after: Option<PageKey> = None;
    loop {
        let page = store
            .list_commands(&q, after.as_ref(), 5)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some(key_of(last));
        seen.extend(page.into_iter().map(|c| c.id));
    }
    assert_eq!(seen, expected);

    // A cursor newer than InvokedBefore: the filter alone bounds the page.
    let q = CommandQuery {
        invoked_before: Some(T0 + 1_000),
        ..Default::default()
    };
    let far = PageKey {
        requested_at: T0 + 50 * HOUR,
        seq: i64::MAX,
        instance_id: None,
    };
    let unbounded = store.list_commands(&q, None, 100).await.expect("list");
    assert!(unbounded.len() >= 3);
    assert_eq!(
        store
            .list_commands(&q, Some(&far), 100)
            .await
            .expect("list"),
        unbounded
    );
}

/// Commands in many states, then every ListCommands filter on its own and combined.
pub async fn check_filters(store: &dyn Store) {
    let now = T0 + 10_000;
    // Pending.
    let pending = insert(store, T0, "AWS-RunShellScript", &[node(1)]).await;
    // InProgress.
    let running = insert(store, T0 + 1_000, "AWS-RunShellScript", &[node(2)]).await;
    store.claim(&node(2), "s2", &[], now).await.expect("claim");
    // Success.
    let ok = insert(store, T0 + 2_000, "Custom-Doc", &[node(3)]).await;
    store.claim(&node(3), "s3", &[], now).await.expect("claim");
    let done = store
        .finish(&node(3), report(&ok.id, ExecutionOutcome::Success, 0), now)
        .await
        .expect("finish");
    assert!(done.applied);
    // Failed.
    let failed = insert(store, T0 + 3_000, "AWS-RunShellScript", &[node(4)]).await;
    store.claim(&node(4), "s4", &[], now).await.expect("claim");
    store
        .finish(
            &node(4),
            report(&failed.id, ExecutionOutcome::Failed, 2),
            now,
        )
        .await
        .expect("finish");
    // Cancelled while pending.
    let cancelled = insert(store, T0 + 4_000, "AWS-RunShellScript", &[node(5)]).await;
    store
        .cancel(&cancelled.id, None, now)
        .await
        .expect("cancel");
    // Delivery timed out.
    let mut expiring = new_command(T0 + 5_000, "AWS-RunShellScript", &[node(6)]);
    expiring.expires_at = T0 + 6_000;
    let expiring = store
        .insert_command(expiring)
        .await
        .expect("insert")
        .command;
    assert_eq!(
        store
            .expire_due(now)
            .await
            .expect("expire")
            .invocations
            .len(),
        1
    );
    // Incomplete: one success, one failure within a budget of one error.
    let mut mixed = new_command(T0 + 6_000, "Custom-Doc", &[node(7), node(8)]);
    mixed.error_budget = 1;
    mixed.max_errors = "1".into();
    let mixed = store.insert_command(mixed).await.expect("insert").command;
    store.claim(&node(7), "s7", &[], now).await.expect("claim");
    store.claim(&node(8), "s8", &[], now).await.expect("claim");
    store
        .finish(
            &node(7),
            report(&mixed.id, ExecutionOutcome::Success, 0),
            now,
        )
        .await
        .expect("finish");
    store
        .finish(
            &node(8),
            report(&mixed.id, ExecutionOutcome::Failed, 1),
            now,
        )
        .await
        .expect("finish");

    assert_eq!(state_of(store, &pending.id).await, CommandState::Pending);
    assert_eq!(state_of(store, &running.id).await, CommandState::InProgress);
    assert_eq!(state_of(store, &ok.id).await, CommandState::Success);
    assert_eq!(state_of(store, &failed.id).await, CommandState::Failed);
    assert_eq!(
        state_of(store, &cancelled.id).await,
        CommandState::Cancelled
    );
    assert_eq!(
        state_of(store, &expiring.id).await,
        CommandState::DeliveryTimedOut
    );
    assert_eq!(state_of(store, &mixed.id).await, CommandState::Incomplete);

    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a CommandId>);
    let cases: Vec<Case> = vec![
        (
            vec![],
            vec![
                &mixed.id,
                &expiring.id,
                &cancelled.id,
                &failed.id,
                &ok.id,
                &running.id,
                &pending.id,
            ],
        ),
        (vec![("Status", "Pending")], vec![&pending.id]),
        (vec![("Status", "InProgress")], vec![&running.id]),
        (vec![("Status", "Success")], vec![&ok.id]),
        (vec![("Status", "Failed")], vec![&mixed.id, &failed.id]),
        (vec![("Status", "Cancelled")], vec![&cancelled.id]),
        (vec![("Status", "TimedOut")], vec![&expiring.id]),
        (vec![("Status", "DeliveryTimedOut")], vec![&expiring.id]),
        (vec![("Status", "ExecutionTimedOut")], vec![]),
        (vec![("Status", "Incomplete")], vec![&mixed.id]),
        (vec![("Status", "NoInstancesInTag")], vec![]),
        (
            vec![("DocumentName", "Custom-Doc")],
            vec![&mixed.id, &ok.id],
        ),
        (vec![("DocumentName", "Nope")], vec![]),
        (
            vec![("ExecutionStage", "Executing")],
            vec![&running.id, &pending.id],
        ),
        (
            vec![("ExecutionStage", "Complete")],
            vec![&mixed.id, &expiring.id, &cancelled.id, &failed.id, &ok.id],
        ),
        // InvokedAfter is inclusive, InvokedBefore exclusive.
        (
            vec![("InvokedAfter", "2024-07-03T09:46:43Z")],
            vec![&mixed.id, &expiring.id, &cancelled.id, &failed.id],
        ),
        (
            vec![("InvokedBefore", "2024-07-03T09:46:43Z")],
            vec![&ok.id, &running.id, &pending.id],
        ),
        (
            vec![
                ("InvokedAfter", "2024-07-03T09:46:41Z"),
                ("InvokedBefore", "2024-07-03T09:46:46Z"),
            ],
            vec![&expiring.id, &cancelled.id, &failed.id, &ok.id, &running.id],
        ),
        // ANDed.
        (
            vec![("Status", "Failed"), ("DocumentName", "Custom-Doc")],
            vec![&mixed.id],
        ),
        (
            vec![("Status", "Failed"), ("ExecutionStage", "Executing")],
            vec![],
        ),
        (
            vec![
                ("ExecutionStage", "Complete"),
                ("InvokedBefore", "2024-07-03T09:46:43Z"),
            ],
            vec![&ok.id],
        ),
    ];
    for (filters, want) in cases {
        let want: Vec<CommandId> = want.into_iter().cloned().collect();
        assert_eq!(ids(store, &query(&filters)).await, want, "{filters:?}");
    }

    let by_id = CommandQuery {
        command_id: Some(failed.id.clone()),
        ..Default::default()
    };
    assert_eq!(ids(store, &by_id).await, vec![failed.id.clone()]);
    let mut by_id_and_status = by_id.clone();
    by_id_and_status
        .statuses
        .push(StatusMatch::Status("Success"));
    assert!(ids(store, &by_id_and_status).await.is_empty());
    let unknown = CommandQuery {
        command_id: Some(CommandId::generate()),
        ..Default::default()
    };
    assert!(ids(store, &unknown).await.is_empty());
}

/// The InstanceId filter returns the commands that have an invocation on that node.
pub async fn check_instance_filter(store: &dyn Store) {
    let a = insert(store, T0, "AWS-RunShellScript", &[node(1), node(2)]).await;
    let b = insert(store, T0 + 1, "AWS-RunShellScript", &[node(2)]).await;
    let c = insert(store, T0 + 2, "Custom-Doc", &[node(1)]).await;
    let _d = insert(store, T0 + 3, "AWS-RunShellScript", &[node(3)]).await;
    let on = |n: u32| CommandQuery {
        instance_id: Some(node(n)),
        ..Default::default()
    };
    assert_eq!(ids(store, &on(1)).await, vec![c.id.clone(), a.id.clone()]);
    assert_eq!(ids(store, &on(2)).await, vec![b.id.clone(), a.id.clone()]);
    assert!(ids(store, &on(9)).await.is_empty());

    let mut q = on(1);
    q.document_names.push("Custom-Doc".into());
    assert_eq!(ids(store, &q).await, vec![c.id.clone()]);

    store
        .claim(&node(1), "s", &[], T0 + 10)
        .await
        .expect("claim");
    store
        .finish(
            &node(1),
            report(&a.id, ExecutionOutcome::Success, 0),
            T0 + 20,
        )
        .await
        .expect("finish");
    // The command's status, not the invocation's: `a` is still running on node 2.
    let mut q = on(1);
    q.stage = Some(ExecutionStage::Executing);
    assert_eq!(ids(store, &q).await, vec![c.id.clone(), a.id.clone()]);
    let mut q = on(1);
    q.statuses.push(StatusMatch::Status("InProgress"));
    assert_eq!(ids(store, &q).await, vec![c.id.clone(), a.id.clone()]);
    let mut q = on(2);
    q.command_id = Some(a.id.clone());
    assert_eq!(ids(store, &q).await, vec![a.id.clone()]);

    // Pages through the instance index.
    let page = store.list_commands(&on(1), None, 1).await.expect("page");
    assert_eq!(page.len(), 1);
    let next = store
        .list_commands(&on(1), Some(&key_of(&page[0])), 1)
        .await
        .expect("page");
    assert_eq!(next.iter().map(|c| &c.id).collect::<Vec<_>>(), vec![&a.id]);
}

/// ListCommandInvocations: filters, order (newest command, then node id descending) and paging.
pub async fn check_list_invocations(store: &dyn Store) {
    let a = insert(
        store,
        T0,
        "AWS-RunShellScript",
        &[node(1), node(2), node(3)],
    )
    .await;
    let b = insert(store, T0 + 1_000, "Custom-Doc", &[node(2)]).await;
    // The rollout releases `a` to node 1 first; its delivery releases nodes 2 and 3.
    store
        .claim(&node(1), "s", &[], T0 + 1_500)
        .await
        .expect("claim");
    store
        .finish(
            &node(1),
            report(&a.id, ExecutionOutcome::Success, 0),
            T0 + 1_600,
        )
        .await
        .expect("finish");
    store
        .claim(&node(2), "s", &[], T0 + 2_000)
        .await
        .expect("claim");
    store
        .finish(
            &node(2),
            report(&b.id, ExecutionOutcome::Failed, 1),
            T0 + 3_000,
        )
        .await
        .expect("finish");

    let all = store
        .list_invocations(&CommandQuery::default(), None, 100)
        .await
        .expect("list");
    let order: Vec<(CommandId, InstanceId)> = all
        .iter()
        .map(|i| (i.command_id.clone(), i.instance_id.clone()))
        .collect();
    assert_eq!(
        order,
        vec![
            (b.id.clone(), node(2)),
            (a.id.clone(), node(3)),
            (a.id.clone(), node(2)),
            (a.id.clone(), node(1)),
        ]
    );
    let failed = &all[0];
    assert_eq!(failed.state, InvocationState::Failed);
    assert_eq!(failed.response_code, 1);
    assert_eq!(failed.steps.len(), 1);

    // Keyset with the node id as the last tiebreak.
    let mut seen = Vec::new();
    let mut after: Option<PageKey> = None;
    loop {
        let page = store
            .list_invocations(&CommandQuery::default(), after.as_ref(), 1)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some(PageKey {
            requested_at: last.requested_at,
            seq: last.command_seq,
            instance_id: Some(last.instance_id.to_string()),
        });
        seen.extend(
            page.iter()
                .map(|i| (i.command_id.clone(), i.instance_id.clone())),
        );
    }
    assert_eq!(seen, order);

    let inv_ids = |q: CommandQuery| async move {
        store
            .list_invocations(&q, None, 100)
            .await
            .expect("list")
            .into_iter()
            .map(|i| (i.command_id, i.instance_id))
            .collect::<Vec<_>>()
    };
    let mut q = CommandQuery::default();
    q.add_filter(ListKind::Invocations, "Status", "Pending")
        .expect("filter");
    assert_eq!(inv_ids(q).await, vec![(a.id.clone(), node(3))]);
    let mut q = CommandQuery::default();
    q.add_filter(ListKind::Invocations, "Status", "Failed")
        .expect("filter");
    assert_eq!(inv_ids(q).await, vec![(b.id.clone(), node(2))]);
    let mut q = CommandQuery::default();
    q.add_filter(ListKind::Invocations, "DocumentName", "Custom-Doc")
        .expect("filter");
    assert_eq!(inv_ids(q).await, vec![(b.id.clone(), node(2))]);
    let q = CommandQuery {
        instance_id: Some(node(2)),
        ..Default::default()
    };
    assert_eq!(
        inv_ids(q).await,
        vec![(b.id.clone(), node(2)), (a.id.clone(), node(2))]
    );
    let q = CommandQuery {
        command_id: Some(a.id.clone()),
        ..Default::default()
    };
    assert_eq!(
        inv_ids(q.clone()).await,
        vec![
            (a.id.clone(), node(3)),
            (a.id.clone(), node(2)),
            (a.id.clone(), node(1))
        ]
    );
    // Paging within one command.
    let first = store.list_invocations(&q, None, 2).await.expect("page");
    let last = first.last().expect("two rows");
    let key = PageKey {
        requested_at: last.requested_at,
        seq: last.command_seq,
        instance_id: Some(last.instance_id.to_string()),
    };
    let rest = store
        .list_invocations(&q, Some(&key), 2)
        .await
        .expect("page");
    assert_eq!(
        rest.iter()
            .map(|i| i.instance_id.clone())
            .collect::<Vec<_>>(),
        vec![node(1)]
    );
    let mut q = CommandQuery::default();
    q.add_filter(
        ListKind::Invocations,
        "InvokedAfter",
        "2024-07-03T09:46:41Z",
    )
    .expect("filter");
    assert_eq!(inv_ids(q).await, vec![(b.id.clone(), node(2))]);
}

/// Retention removes old commands with their invocations.
pub async fn check_purge(store: &dyn Store) {
    let old = insert(store, T0, "AWS-RunShellScript", &[node(1)]).await;
    let new = insert(store, T0 + HOUR, "AWS-RunShellScript", &[node(1)]).await;
    assert_eq!(store.purge_before(T0 + HOUR).await.expect("purge"), 1);
    assert!(store.command(&old.id).await.expect("get").is_none());
    assert!(store
        .invocation(&old.id, &node(1))
        .await
        .expect("get")
        .is_none());
    assert!(store.command(&new.id).await.expect("get").is_some());
    let q = CommandQuery {
        instance_id: Some(node(1)),
        ..Default::default()
    };
    assert_eq!(ids(store, &q).await, vec![new.id.clone()]);
    let invs = store
        .list_invocations(&CommandQuery::default(), None, 10)
        .await
        .expect("list");
    assert_eq!(invs.len(), 1);
}
