//! Rate control and reachability: the MaxConcurrency ramp, MaxErrors → Terminated, Delayed for silent
//! nodes, Undeliverable for deregistered ones.

use fleetrun_core::ids::InstanceId;
use fleetrun_core::status::{CommandState, ExecutionOutcome, InvocationState};
use fleetrun_core::Store;

use crate::support::*;

async fn runs(store: &dyn Store, n: &InstanceId, at: i64) -> usize {
    store
        .claim(n, "s", &[], at)
        .await
        .expect("claim")
        .runs
        .len()
}

/// One node first; once it is delivered, two more; then doubling, bounded by MaxConcurrency.
pub async fn check_ramp(store: &dyn Store) {
    let nodes: Vec<InstanceId> = (1..=10).map(node).collect();
    let mut cmd = new_command(T0, "AWS-RunShellScript", &nodes);
    cmd.max_concurrency = "3".into();
    let sent = store.insert_command(cmd).await.expect("insert");
    assert_eq!(
        sent.effects.wake,
        vec![node(1)],
        "only the first node at first"
    );
    let id = sent.command.id.clone();
    // Nodes 2.. have nothing yet.
    assert_eq!(runs(store, &node(2), T0 + 1).await, 0);
    // Delivering to node 1 releases two more (window 3).
    let claim = store
        .claim(&node(1), "s", &[], T0 + 2)
        .await
        .expect("claim");
    assert_eq!(claim.runs.len(), 1);
    assert_eq!(claim.effects.wake, vec![node(2), node(3)]);
    assert_eq!(runs(store, &node(2), T0 + 3).await, 1);
    assert_eq!(runs(store, &node(3), T0 + 3).await, 1);
    // Three in flight = MaxConcurrency 3: nothing more until one finishes.
    assert_eq!(runs(store, &node(4), T0 + 4).await, 0);
    let done = store
        .finish(&node(1), report(&id, ExecutionOutcome::Success, 0), T0 + 5)
        .await
        .expect("finish");
    assert!(done.applied);
    assert_eq!(done.effects.wake, vec![node(4)]);
    assert_eq!(runs(store, &node(4), T0 + 6).await, 1);
    // Finish everything in order; every invocation is eventually released exactly once.
    // Each finish frees one slot and releases exactly one more node, which then polls.
    for n in 2..=10 {
        let done = store
            .finish(&node(n), report(&id, ExecutionOutcome::Success, 0), T0 + 8)
            .await
            .expect("finish");
        assert!(done.applied, "node {n} was running");
        let next = n + 3;
        if next <= 10 {
            assert_eq!(done.effects.wake, vec![node(next)]);
            assert_eq!(runs(store, &node(next), T0 + 9).await, 1);
        } else {
            assert!(done.effects.wake.is_empty());
        }
    }
    let c = command(store, &id).await;
    assert_eq!(c.aggregate().state, CommandState::Success);
    assert_eq!(c.aggregate().completed_count, 10);
}

/// MaxErrors 1 with MaxConcurrency 1: the second error stops the rollout; the rest is Terminated.
pub async fn check_max_errors(store: &dyn Store) {
    let nodes: Vec<InstanceId> = (1..=6).map(node).collect();
    let mut cmd = new_command(T0, "AWS-RunShellScript", &nodes);
    cmd.max_concurrency = "1".into();
    cmd.max_errors = "1".into();
    cmd.error_budget = 1;
    let id = store.insert_command(cmd).await.expect("insert").command.id;
    for (n, outcome) in [
        (1, ExecutionOutcome::Failed),
        (2, ExecutionOutcome::Success),
        (3, ExecutionOutcome::Failed),
    ] {
        assert_eq!(runs(store, &node(n), T0 + 1).await, 1, "node {n} released");
        let code = if outcome == ExecutionOutcome::Success {
            0
        } else {
            1
        };
        store
            .finish(&node(n), report(&id, outcome, code), T0 + 2)
            .await
            .expect("finish");
    }
    for n in 4..=6 {
        assert_eq!(runs(store, &node(n), T0 + 3).await, 0);
        assert_eq!(
            invocation_state(store, &id, &node(n)).await,
            InvocationState::Terminated
        );
    }
    let agg = command(store, &id).await.aggregate();
    assert_eq!(agg.state, CommandState::Failed);
    assert_eq!(
        (agg.error_count, agg.completed_count, agg.target_count),
        (2, 6, 6)
    );
}

/// A released invocation on a silent node becomes Delayed and is delivered when the node polls.
pub async fn check_unreachable_then_back(store: &dyn Store) {
    let a = activation(5, T0 + 100 * HOUR, "code-code-code-code1");
    store
        .create_activation(a.clone())
        .await
        .expect("activation");
    let reg = store
        .register_node(registration(&a, "code-code-code-code1", 1), T0)
        .await
        .expect("register");
    let n = reg.instance_id.clone();
    let id = store
        .insert_command(new_command(
            T0 + 10,
            "AWS-RunShellScript",
            std::slice::from_ref(&n),
        ))
        .await
        .expect("insert")
        .command
        .id;
    // Not silent yet (last ping T0 is after the cutoff): nothing changes.
    store.mark_unreachable(T0 - 1, T0 + 20).await.expect("mark");
    assert_eq!(
        invocation_state(store, &id, &n).await,
        InvocationState::Pending
    );
    store.mark_unreachable(T0 + 5, T0 + 20).await.expect("mark");
    assert_eq!(
        invocation_state(store, &id, &n).await,
        InvocationState::Delayed
    );
    assert_eq!(state_of(store, &id).await, CommandState::InProgress);
    // The node comes back.
    assert_eq!(runs(store, &n, T0 + 30).await, 1);
    assert_eq!(
        invocation_state(store, &id, &n).await,
        InvocationState::InProgress
    );
}

/// A node whose agent said goodbye is unreachable at once: its released Pending work becomes
/// Delayed by the same pass that handles silent nodes (long before the cutoff), work it is
/// running is left alone, and its next poll makes it reachable and delivers the Delayed work.
pub async fn check_sign_off_then_back(store: &dyn Store) {
    let a = activation(5, T0 + 100 * HOUR, "code-code-code-code3");
    store
        .create_activation(a.clone())
        .await
        .expect("activation");
    let n = store
        .register_node(registration(&a, "code-code-code-code3", 1), T0)
        .await
        .expect("register")
        .instance_id;
    let send = |at| new_command(at, "AWS-RunShellScript", std::slice::from_ref(&n));
    let running = store.insert_command(send(T0 + 10)).await.expect("insert");
    assert_eq!(runs(store, &n, T0 + 20).await, 1);
    let waiting = store
        .insert_command(send(T0 + 30))
        .await
        .expect("insert")
        .command
        .id;
    let running = running.command.id;

    store.sign_off_node(&n, T0 + 40).await.expect("sign off");
    let node_now = store.node(&n).await.expect("node").expect("exists");
    assert_eq!(node_now.signed_off_at, Some(T0 + 40));
    assert_eq!(
        node_now.last_ping_at,
        T0 + 20,
        "the last ping is kept as it was"
    );
    assert!(!node_now.reachable(T0 + 41, HOUR));
    // A cutoff no silent node is behind: only the goodbye makes the node unreachable.
    store.mark_unreachable(T0 - 1, T0 + 41).await.expect("mark");
    assert_eq!(
        invocation_state(store, &waiting, &n).await,
        InvocationState::Delayed
    );
    assert_eq!(
        invocation_state(store, &running, &n).await,
        InvocationState::InProgress
    );
    assert!(matches!(
        store.sign_off_node(&node(9), T0).await,
        Err(fleetrun_core::CoreError::UnknownInstance(_))
    ));

    // The next poll (even one that finds nothing else to do) makes it reachable again.
    store
        .claim(&n, "s2", std::slice::from_ref(&running), T0 + 50)
        .await
        .expect("claim");
    let node_now = store.node(&n).await.expect("node").expect("exists");
    assert_eq!(
        (node_now.signed_off_at, node_now.last_ping_at),
        (None, T0 + 50)
    );
    assert!(node_now.reachable(T0 + 51, HOUR));
    assert_eq!(
        invocation_state(store, &waiting, &n).await,
        InvocationState::InProgress
    );
    // An idle poll (nothing held, nothing waiting) right after a goodbye is still recorded: the
    // write-free shortcut for idle polls does not apply to a node that signed off.
    let idle = store
        .register_node(registration(&a, "code-code-code-code3", 2), T0)
        .await
        .expect("register")
        .instance_id;
    assert_eq!(runs(store, &idle, T0 + 100).await, 0);
    store
        .sign_off_node(&idle, T0 + 101)
        .await
        .expect("sign off");
    assert_eq!(runs(store, &idle, T0 + 102).await, 0);
    let idle_now = store.node(&idle).await.expect("node").expect("exists");
    assert_eq!(
        (idle_now.signed_off_at, idle_now.last_ping_at),
        (None, T0 + 102)
    );
    // So does a heartbeat.
    store.sign_off_node(&n, T0 + 70).await.expect("sign off");
    store.touch_node(&n, T0 + 71, None).await.expect("touch");
    let node_now = store.node(&n).await.expect("node").expect("exists");
    assert_eq!(
        (node_now.signed_off_at, node_now.last_ping_at),
        (None, T0 + 71)
    );
}

/// A deregistered node's undelivered invocations end Undeliverable; the node is gone.
pub async fn check_deregister(store: &dyn Store) {
    let a = activation(5, T0 + 100 * HOUR, "code-code-code-code2");
    store
        .create_activation(a.clone())
        .await
        .expect("activation");
    let gone = store
        .register_node(registration(&a, "code-code-code-code2", 1), T0)
        .await
        .expect("register")
        .instance_id;
    let id = store
        .insert_command(new_command(
            T0 + 10,
            "AWS-RunShellScript",
            std::slice::from_ref(&gone),
        ))
        .await
        .expect("insert")
        .command
        .id;
    store
        .deregister_node(&gone, T0 + 20)
        .await
        .expect("deregister");
    assert!(store.node(&gone).await.expect("node").is_none());
    assert_eq!(
        invocation_state(store, &id, &gone).await,
        InvocationState::Undeliverable
    );
    assert_eq!(state_of(store, &id).await, CommandState::Failed);
    assert!(matches!(
        store.deregister_node(&gone, T0 + 30).await,
        Err(fleetrun_core::CoreError::UnknownInstance(_))
    ));
}
