//! Checks for what moves invocations: claim, finish, cancel, expiry, the aggregate counters,
//! concurrent agents, durability.

use super::support::*;

use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::query::CommandQuery;
use fleetrun_core::status::{CommandState, ExecutionOutcome, InvocationState};
use fleetrun_core::{CoreError, Store};

/// Claim hands work out once; a lost response is handed out again on the same session; a new
/// session (agent restart) means the old process's work died with it.
pub async fn check_claim(store: &dyn Store) {
    let a = insert(store, T0, "AWS-RunShellScript", &[node(1)]).await;
    let b = insert(store, T0 + 1, "AWS-RunShellScript", &[node(1)]).await;
    let claim = store
        .claim(&node(1), "session-1", &[], T0 + 10)
        .await
        .expect("claim");
    assert_eq!(
        claim
            .runs
            .iter()
            .map(|d| d.command_id.clone())
            .collect::<Vec<_>>(),
        vec![a.id.clone(), b.id.clone()]
    );
    assert_eq!(claim.runs[0].plan, plan());
    assert_eq!(claim.runs[0].document_name, "AWS-RunShellScript");
    assert!(claim.cancels.is_empty());
    let inv = store
        .invocation(&a.id, &node(1))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(inv.state, InvocationState::InProgress);
    assert_eq!(inv.started_at, Some(T0 + 10));
    assert_eq!(state_of(store, &a.id).await, CommandState::InProgress);

    // The agent holds both: nothing new.
    let known = [a.id.clone(), b.id.clone()];
    let claim = store
        .claim(&node(1), "session-1", &known, T0 + 20)
        .await
        .expect("claim");
    assert!(claim.runs.is_empty() && claim.cancels.is_empty());

    // Same session, `b` not listed: the response carrying it was lost, so it comes again, told
    // apart from new work (the server does not answer with only re-sends at once).
    let claim = store
        .claim(&node(1), "session-1", std::slice::from_ref(&a.id), T0 + 30)
        .await
        .expect("claim");
    assert!(claim.runs.is_empty());
    assert_eq!(
        claim
            .resent
            .iter()
            .map(|d| d.command_id.clone())
            .collect::<Vec<_>>(),
        vec![b.id.clone()]
    );
    assert_eq!(
        invocation_state(store, &b.id, &node(1)).await,
        InvocationState::InProgress
    );

    // New session without `a`: the agent restarted and `a` died with it.
    let claim = store
        .claim(&node(1), "session-2", std::slice::from_ref(&b.id), T0 + 40)
        .await
        .expect("claim");
    assert!(claim.runs.is_empty());
    assert_eq!(
        invocation_state(store, &a.id, &node(1)).await,
        InvocationState::Failed
    );
    assert_eq!(state_of(store, &a.id).await, CommandState::Failed);
    assert_eq!(
        invocation_state(store, &b.id, &node(1)).await,
        InvocationState::InProgress
    );

    // Other nodes' work is not handed to this node; the node's last ping moves.
    let c = insert(store, T0 + 2, "AWS-RunShellScript", &[node(2)]).await;
    let claim = store
        .claim(&node(1), "session-2", std::slice::from_ref(&b.id), T0 + 50)
        .await
        .expect("claim");
    assert!(claim.runs.is_empty());
    assert_eq!(
        invocation_state(store, &c.id, &node(2)).await,
        InvocationState::Pending
    );

    // An expired command is not handed out.
    let mut late = new_command(T0 + 3, "AWS-RunShellScript", &[node(3)]);
    late.expires_at = T0 + 100;
    let late = store.insert_command(late).await.expect("insert").command;
    let claim = store
        .claim(&node(3), "s", &[], T0 + 100)
        .await
        .expect("claim");
    assert!(claim.runs.is_empty());
    assert_eq!(
        invocation_state(store, &late.id, &node(3)).await,
        InvocationState::Pending
    );
}

/// Finish applies the agent's report once; later reports are ignored.
pub async fn check_finish(store: &dyn Store) {
    let a = insert(store, T0, "AWS-RunShellScript", &[node(1), node(2)]).await;
    // A report for an invocation that was never delivered does not apply.
    let early = store
        .finish(
            &node(1),
            report(&a.id, ExecutionOutcome::Success, 0),
            T0 + 5,
        )
        .await
        .expect("finish");
    assert!(!early.applied);
    assert_eq!(
        invocation_state(store, &a.id, &node(1)).await,
        InvocationState::Pending
    );

    store
        .claim(&node(1), "s1", &[], T0 + 10)
        .await
        .expect("claim");
    store
        .claim(&node(2), "s2", &[], T0 + 10)
        .await
        .expect("claim");
    let now = T0 + 10_000;
    assert!(
        store
            .finish(&node(1), report(&a.id, ExecutionOutcome::Success, 0), now)
            .await
            .expect("finish")
            .applied
    );
    let inv = store
        .invocation(&a.id, &node(1))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(inv.state, InvocationState::Success);
    assert_eq!(inv.response_code, 0);
    assert_eq!(inv.ended_at, Some(now));
    assert_eq!(inv.started_at, Some(now - 1_500));
    assert_eq!(inv.steps.len(), 1);
    let step = &inv.steps[0];
    assert_eq!(step.started_at, now - 1_500 + 100);
    assert_eq!(step.ended_at, now - 1_500 + 100 + 1_200);
    assert_eq!(step.stdout, "hello\n");
    assert!(!step.stdout_truncated && !step.stderr_truncated);
    assert_eq!(step.exit_code, 0);
    assert_eq!(state_of(store, &a.id).await, CommandState::InProgress);

    // A stream the agent sent only the beginning of stays marked as such.
    let mut failed = report(&a.id, ExecutionOutcome::Failed, 3);
    failed.steps[0].stderr_truncated = true;
    assert!(
        store
            .finish(&node(2), failed, now)
            .await
            .expect("finish")
            .applied
    );
    let inv = store
        .invocation(&a.id, &node(2))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(inv.state, InvocationState::Failed);
    assert_eq!(inv.response_code, 3);
    assert_eq!(inv.steps[0].stderr, "boom\n");
    assert!(inv.steps[0].stderr_truncated && !inv.steps[0].stdout_truncated);
    let cmd = command(store, &a.id).await;
    let agg = cmd.aggregate();
    assert_eq!(agg.state, CommandState::Failed);
    assert_eq!(
        (agg.target_count, agg.completed_count, agg.error_count),
        (2, 2, 1)
    );

    // Duplicate / late reports change nothing.
    assert!(
        !store
            .finish(
                &node(1),
                report(&a.id, ExecutionOutcome::Failed, 9),
                now + 1
            )
            .await
            .expect("finish")
            .applied
    );
    let inv = store
        .invocation(&a.id, &node(1))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (inv.state, inv.response_code),
        (InvocationState::Success, 0)
    );
    assert_eq!(command(store, &a.id).await.counts, cmd.counts);

    // No such invocation.
    assert!(matches!(
        store
            .finish(&node(3), report(&a.id, ExecutionOutcome::Success, 0), now)
            .await,
        Err(CoreError::NoSuchInvocation(_, _))
    ));
    assert!(matches!(
        store
            .finish(
                &node(1),
                report(&CommandId::generate(), ExecutionOutcome::Success, 0),
                now
            )
            .await,
        Err(CoreError::NoSuchInvocation(_, _))
    ));

    // An execution timeout reported by the agent.
    let t = insert(store, T0 + 1, "AWS-RunShellScript", &[node(4)]).await;
    store.claim(&node(4), "s4", &[], now).await.expect("claim");
    assert!(
        store
            .finish(
                &node(4),
                report(&t.id, ExecutionOutcome::TimedOut, 137),
                now
            )
            .await
            .expect("finish")
            .applied
    );
    assert_eq!(
        state_of(store, &t.id).await,
        CommandState::ExecutionTimedOut
    );
}

/// A report that waited in the node's outbox is dated back by the time it was held, but never
/// before the delivery: the server's clock decides, the node only supplies a duration.
pub async fn check_held_report(store: &dyn Store) {
    let a = insert(store, T0, "AWS-RunShellScript", &[node(1), node(2)]).await;
    for (n, session) in [(1, "s1"), (2, "s2")] {
        store
            .claim(&node(n), session, &[], T0 + 10)
            .await
            .expect("claim");
    }
    let arrived = T0 + 600_000;
    // Finishes node `n`'s invocation with a report held `held_ms`; returns it as stored.
    let finish_held = |n: u32, held_ms: i64| {
        let id = a.id.clone();
        async move {
            let mut held = report(&id, ExecutionOutcome::Success, 0);
            held.held_ms = held_ms;
            let done = store.finish(&node(n), held, arrived).await.expect("finish");
            assert!(done.applied);
            store
                .invocation(&id, &node(n))
                .await
                .expect("get")
                .expect("exists")
        }
    };

    let inv = finish_held(1, 300_000).await;
    assert_eq!(inv.ended_at, Some(arrived - 300_000));
    assert_eq!(inv.started_at, Some(arrived - 300_000 - 1_500));
    assert_eq!(inv.steps[0].started_at, arrived - 300_000 - 1_500 + 100);

    // A node claiming it held the report longer than the command was out is clamped to delivery.
    let inv = finish_held(2, 10 * 600_000).await;
    assert_eq!(inv.ended_at, Some(T0 + 10));
}

/// Cancelling pending work stops it outright; running work goes Cancelling and the agent is told once.
pub async fn check_cancel(store: &dyn Store) {
    let now = T0 + 100;
    assert!(matches!(
        store.cancel(&CommandId::generate(), None, now).await,
        Err(CoreError::UnknownCommand(_))
    ));

    // Pending only.
    let p = insert(store, T0, "AWS-RunShellScript", &[node(1), node(2)]).await;
    let out = store.cancel(&p.id, None, now).await.expect("cancel");
    assert!(out.effects.wake.is_empty());
    assert_eq!(
        invocation_state(store, &p.id, &node(1)).await,
        InvocationState::Cancelled
    );
    let cmd = command(store, &p.id).await;
    assert!(cmd.cancel_requested);
    assert_eq!(cmd.aggregate().state, CommandState::Cancelled);
    // Nothing is handed out for it any more.
    let claim = store.claim(&node(1), "s1", &[], now).await.expect("claim");
    assert!(claim.runs.is_empty());
    // Cancelling a finished command again is a no-op.
    let again = store.cancel(&p.id, None, now).await.expect("cancel again");
    assert!(again.effects.wake.is_empty());

    // Running on node 3, pending on node 4.
    let r = insert(store, T0 + 1, "AWS-RunShellScript", &[node(3), node(4)]).await;
    store.claim(&node(3), "s3", &[], now).await.expect("claim");
    assert!(matches!(
        store.cancel(&r.id, Some(&[node(9)]), now).await,
        Err(CoreError::UnknownInstance(_))
    ));
    assert_eq!(state_of(store, &r.id).await, CommandState::InProgress);
    let out = store.cancel(&r.id, None, now).await.expect("cancel");
    assert_eq!(out.effects.wake, vec![node(3)]);
    assert_eq!(
        invocation_state(store, &r.id, &node(3)).await,
        InvocationState::Cancelling
    );
    assert_eq!(
        invocation_state(store, &r.id, &node(4)).await,
        InvocationState::Cancelled
    );
    assert_eq!(state_of(store, &r.id).await, CommandState::Cancelling);
    assert_eq!(
        command(store, &r.id)
            .await
            .aggregate()
            .state
            .status()
            .as_str(),
        "Cancelling"
    );

    // The cancel message goes out once, to the session that holds the invocation.
    let known = [r.id.clone()];
    let claim = store
        .claim(&node(3), "s3", &known, now + 1)
        .await
        .expect("claim");
    assert_eq!(claim.cancels, vec![r.id.clone()]);
    assert!(claim.runs.is_empty());
    let claim = store
        .claim(&node(3), "s3", &known, now + 2)
        .await
        .expect("claim");
    assert!(claim.cancels.is_empty());
    // A second CancelCommand while Cancelling notifies nobody new.
    let out = store.cancel(&r.id, None, now + 3).await.expect("cancel");
    assert!(out.effects.wake.is_empty());

    assert!(
        store
            .finish(
                &node(3),
                report(&r.id, ExecutionOutcome::Cancelled, 137),
                now + 4
            )
            .await
            .expect("finish")
            .applied
    );
    assert_eq!(
        invocation_state(store, &r.id, &node(3)).await,
        InvocationState::Cancelled
    );
    assert_eq!(state_of(store, &r.id).await, CommandState::Cancelled);

    // Cancelling one node of several leaves the others running.
    let s = insert(store, T0 + 2, "AWS-RunShellScript", &[node(5), node(6)]).await;
    let out = store
        .cancel(&s.id, Some(&[node(5)]), now)
        .await
        .expect("cancel");
    // Node 5 held the first release; its cancellation moves the rollout on to node 6.
    assert_eq!(out.effects.wake, vec![node(6)]);
    assert_eq!(
        invocation_state(store, &s.id, &node(5)).await,
        InvocationState::Cancelled
    );
    assert_eq!(
        invocation_state(store, &s.id, &node(6)).await,
        InvocationState::Pending
    );
    assert_eq!(state_of(store, &s.id).await, CommandState::InProgress);
    let claim = store.claim(&node(6), "s6", &[], now).await.expect("claim");
    assert_eq!(claim.runs.len(), 1);
}

/// ExpiresAfter: waiting and running invocations become DeliveryTimedOut.
pub async fn check_expiry(store: &dyn Store) {
    let mut a = new_command(T0, "AWS-RunShellScript", &[node(1), node(2), node(3)]);
    a.expires_at = T0 + HOUR;
    let a = store.insert_command(a).await.expect("insert").command;
    store
        .claim(&node(1), "s1", &[], T0 + 10)
        .await
        .expect("claim");
    store
        .claim(&node(2), "s2", &[], T0 + 10)
        .await
        .expect("claim");
    store
        .finish(
            &node(2),
            report(&a.id, ExecutionOutcome::Success, 0),
            T0 + 20,
        )
        .await
        .expect("finish");
    let b = insert(store, T0, "AWS-RunShellScript", &[node(4)]).await; // expires at T0 + 2h

    assert_eq!(
        store
            .expire_due(T0 + HOUR - 1)
            .await
            .expect("expire")
            .invocations
            .len(),
        0
    );
    assert_eq!(
        store
            .expire_due(T0 + HOUR)
            .await
            .expect("expire")
            .invocations
            .len(),
        2
    );
    assert_eq!(
        invocation_state(store, &a.id, &node(1)).await,
        InvocationState::DeliveryTimedOut
    );
    assert_eq!(
        invocation_state(store, &a.id, &node(2)).await,
        InvocationState::Success
    );
    assert_eq!(
        invocation_state(store, &a.id, &node(3)).await,
        InvocationState::DeliveryTimedOut
    );
    let cmd = command(store, &a.id).await;
    let agg = cmd.aggregate();
    assert_eq!(agg.state, CommandState::DeliveryTimedOut);
    assert_eq!(agg.state.status().as_str(), "TimedOut");
    assert_eq!(agg.delivery_timed_out_count, 2);
    assert_eq!(agg.completed_count, 3);
    assert_eq!(
        invocation_state(store, &b.id, &node(4)).await,
        InvocationState::Pending
    );
    // Idempotent.
    assert_eq!(
        store
            .expire_due(T0 + HOUR)
            .await
            .expect("expire")
            .invocations
            .len(),
        0
    );
    // A late report for an expired invocation is ignored.
    assert!(
        !store
            .finish(
                &node(1),
                report(&a.id, ExecutionOutcome::Success, 0),
                T0 + HOUR + 1
            )
            .await
            .expect("finish")
            .applied
    );

    // A cancel the agent never confirmed counts as done at expiry.
    store
        .claim(&node(4), "s4", &[], T0 + 30)
        .await
        .expect("claim");
    store.cancel(&b.id, None, T0 + 40).await.expect("cancel");
    assert_eq!(
        store
            .expire_due(T0 + 2 * HOUR)
            .await
            .expect("expire")
            .invocations
            .len(),
        1
    );
    assert_eq!(
        invocation_state(store, &b.id, &node(4)).await,
        InvocationState::Cancelled
    );
    assert_eq!(state_of(store, &b.id).await, CommandState::Cancelled);
}

/// The per-state counts and the four counters AWS reports.
pub async fn check_aggregate_counts(store: &dyn Store) {
    let mut c = new_command(
        T0,
        "AWS-RunShellScript",
        &[node(1), node(2), node(3), node(4)],
    );
    c.error_budget = 5;
    let c = store.insert_command(c).await.expect("insert").command;
    for n in 1..=3 {
        store
            .claim(&node(n), "s", &[], T0 + 1)
            .await
            .expect("claim");
    }
    store
        .finish(
            &node(1),
            report(&c.id, ExecutionOutcome::Success, 0),
            T0 + 2,
        )
        .await
        .expect("finish");
    store
        .finish(&node(2), report(&c.id, ExecutionOutcome::Failed, 1), T0 + 2)
        .await
        .expect("finish");
    let cmd = command(store, &c.id).await;
    assert_eq!(cmd.counts.get(InvocationState::Success), 1);
    assert_eq!(cmd.counts.get(InvocationState::Failed), 1);
    assert_eq!(cmd.counts.get(InvocationState::InProgress), 1);
    assert_eq!(cmd.counts.get(InvocationState::Pending), 1);
    let agg = cmd.aggregate();
    assert_eq!(agg.state, CommandState::InProgress);
    assert_eq!(
        (
            agg.target_count,
            agg.completed_count,
            agg.error_count,
            agg.delivery_timed_out_count
        ),
        (4, 2, 1, 0)
    );
    // The list returns the same live counters.
    let listed = store
        .list_commands(&CommandQuery::default(), None, 1)
        .await
        .expect("list");
    assert_eq!(listed[0].counts, cmd.counts);

    store
        .finish(
            &node(3),
            report(&c.id, ExecutionOutcome::Success, 0),
            T0 + 3,
        )
        .await
        .expect("finish");
    store
        .claim(&node(4), "s", &[], T0 + 4)
        .await
        .expect("claim");
    store
        .finish(
            &node(4),
            report(&c.id, ExecutionOutcome::Success, 0),
            T0 + 5,
        )
        .await
        .expect("finish");
    let agg = command(store, &c.id).await.aggregate();
    assert_eq!(agg.state, CommandState::Incomplete);
    assert_eq!((agg.completed_count, agg.error_count), (4, 1));
}

/// Many agents polling and reporting at once: every invocation ends exactly once.
pub async fn check_concurrent_agents(store: &dyn Store) {
    let nodes: Vec<InstanceId> = (1..=8).map(node).collect();
    let mut cmds = Vec::new();
    for i in 0..10 {
        cmds.push(insert(store, T0 + i, "AWS-RunShellScript", &nodes).await.id);
    }
    // Each agent polls until it has run its 10 invocations: the rollouts release them in steps.
    let work = nodes.iter().map(|n| async move {
        let mut ran = 0;
        for _ in 0..1000 {
            let claim = store.claim(n, "s", &[], T0 + 100).await.expect("claim");
            for d in &claim.runs {
                let applied = store
                    .finish(
                        n,
                        report(&d.command_id, ExecutionOutcome::Success, 0),
                        T0 + 200,
                    )
                    .await
                    .expect("finish");
                assert!(applied.applied, "each invocation ends exactly once");
            }
            ran += claim.runs.len();
            if ran == 10 {
                break;
            }
            tokio::task::yield_now().await;
        }
        ran
    });
    let delivered: usize = join_all(work.collect()).await.into_iter().sum();
    assert_eq!(delivered, 80);
    for id in &cmds {
        let agg = command(store, id).await.aggregate();
        assert_eq!((agg.state, agg.completed_count), (CommandState::Success, 8));
    }
}

/// Written before a restart ...
pub async fn check_durable_write(store: &dyn Store) -> CommandId {
    let c = insert(store, T0, "AWS-RunShellScript", &[node(1), node(2)]).await;
    store
        .claim(&node(1), "s", &[], T0 + 1)
        .await
        .expect("claim");
    store
        .finish(
            &node(1),
            report(&c.id, ExecutionOutcome::Success, 0),
            T0 + 2,
        )
        .await
        .expect("finish");
    store
        .create_activation(activation(3, T0 + HOUR, "code"))
        .await
        .expect("create");
    c.id
}

/// ... and read back after it.
pub async fn check_durable_read(store: &dyn Store, id: &CommandId) {
    let c = command(store, id).await;
    assert_eq!(c.counts.get(InvocationState::Success), 1);
    assert_eq!(c.counts.get(InvocationState::Pending), 1);
    assert_eq!(
        invocation_state(store, id, &node(1)).await,
        InvocationState::Success
    );
    assert_eq!(
        ids(store, &query(&[("Status", "InProgress")])).await,
        vec![id.clone()]
    );
    assert_eq!(store.activations().await.expect("list").len(), 1);
    // Work continues where it stopped.
    let claim = store
        .claim(&node(2), "s", &[], T0 + 3)
        .await
        .expect("claim");
    assert_eq!(claim.runs.len(), 1);
}

/// Every mutating call reports what it changed, for the server to act on: each invocation
/// transition once, each change of the command's status, and whom to wake.
pub async fn check_effects(store: &dyn Store) {
    use fleetrun_core::lifecycle::{CommandChange, InvocationChange};
    let sent = store
        .insert_command(new_command(T0, "AWS-RunShellScript", &[node(1), node(2)]))
        .await
        .expect("insert");
    let id = sent.command.id.clone();
    assert_eq!(sent.effects.wake, vec![node(1)], "the ramp starts with one");
    assert!(sent.effects.invocations.is_empty());

    let claim = store
        .claim(&node(1), "s1", &[], T0 + 10)
        .await
        .expect("claim");
    assert_eq!(
        claim.effects.invocations,
        vec![InvocationChange {
            command_id: id.clone(),
            instance_id: node(1),
            from: InvocationState::Pending,
            to: InvocationState::InProgress,
        }]
    );
    assert_eq!(
        claim.effects.commands,
        vec![CommandChange {
            command_id: id.clone(),
            from: CommandState::Pending,
            to: CommandState::InProgress,
        }]
    );
    assert_eq!(
        claim.effects.wake,
        vec![node(2)],
        "the next node, not the poller"
    );

    let cancel = store.cancel(&id, None, T0 + 20).await.expect("cancel");
    let mut moved: Vec<(InstanceId, InvocationState)> = cancel
        .effects
        .invocations
        .iter()
        .map(|c| (c.instance_id.clone(), c.to))
        .collect();
    moved.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    assert_eq!(
        moved,
        vec![
            (node(1), InvocationState::Cancelling),
            (node(2), InvocationState::Cancelled)
        ]
    );
    assert_eq!(
        cancel.effects.wake,
        vec![node(1)],
        "the running one is told"
    );
    assert_eq!(
        cancel.effects.commands,
        vec![CommandChange {
            command_id: id.clone(),
            from: CommandState::InProgress,
            to: CommandState::Cancelling,
        }]
    );

    let done = store
        .finish(
            &node(1),
            report(&id, ExecutionOutcome::Cancelled, -1),
            T0 + 30,
        )
        .await
        .expect("finish");
    assert_eq!(done.effects.invocations.len(), 1);
    assert_eq!(
        done.effects.commands,
        vec![CommandChange {
            command_id: id.clone(),
            from: CommandState::Cancelling,
            to: CommandState::Cancelled,
        }]
    );
    let again = store
        .finish(
            &node(1),
            report(&id, ExecutionOutcome::Cancelled, -1),
            T0 + 40,
        )
        .await
        .expect("finish");
    assert!(
        !again.applied && again.effects.is_empty(),
        "a duplicate changes nothing"
    );
}
