//! Checks for activations, registration and nodes.

use super::support::*;

use fleetrun_core::error::RegistrationRefusal;
use fleetrun_core::ids::{ActivationId, InstanceId};
use fleetrun_core::node::{Node, NodeInfo};
use fleetrun_core::{CoreError, Store};

/// Activations: registration rules, listing, deletion; nodes and heartbeats.
pub async fn check_activations(store: &dyn Store) {
    let now = T0 + 1_000;
    let a = activation(2, T0 + HOUR, "code-a");
    let mut b = activation(5, T0 + 10, "code-b");
    b.created_at = T0 + 1;
    store.create_activation(a.clone()).await.expect("create");
    store.create_activation(b.clone()).await.expect("create");
    let listed = store.activations().await.expect("list");
    assert_eq!(
        listed.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
        vec![a.id.clone(), b.id.clone()]
    );
    assert_eq!(listed[0].registrations_count, 0);
    assert_eq!(listed[0].tags, a.tags);

    // Register twice (the limit), in reverse id order.
    let n2 = store
        .register_node(registration(&a, "code-a", 2), now)
        .await
        .expect("register");
    assert_eq!(n2.name, "web");
    assert_eq!(n2.iam_role, "SSMServiceRole");
    assert_eq!((n2.registered_at, n2.last_ping_at), (now, now));
    assert_eq!(n2.activation_id, a.id.to_string());
    store
        .register_node(registration(&a, "code-a", 1), now)
        .await
        .expect("register");
    assert_eq!(
        store.activations().await.expect("list")[0].registrations_count,
        2
    );
    let refused = store
        .register_node(registration(&a, "code-a", 3), now)
        .await;
    assert!(
        matches!(
            refused,
            Err(CoreError::ActivationRefused {
                reason: RegistrationRefusal::LimitReached { .. },
                ..
            })
        ),
        "{refused:?}"
    );
    // The same attempt again (same activation, same public key: an agent retrying after a lost
    // answer) gets the node it created, although the limit is now reached; nothing is counted.
    let mut retry = registration(&a, "code-a", 2);
    retry.instance_id = node(7);
    let again = store.register_node(retry.clone(), now + 1).await;
    assert_eq!(
        again.as_ref().ok().map(|n| n.instance_id.clone()),
        Some(node(2)),
        "{again:?}"
    );
    assert_eq!(again.expect("same node").registered_at, now);
    assert_eq!(
        store.activations().await.expect("list")[0].registrations_count,
        2
    );
    // Only with the right code, and only on the same activation.
    retry.activation_code = "wrong".into();
    assert!(matches!(
        store.register_node(retry.clone(), now).await,
        Err(CoreError::ActivationRefused { .. })
    ));

    // Wrong code, expired, deleted, unknown.
    let mut c = activation(5, T0 + HOUR, "code-c");
    c.created_at = T0 + 2;
    store.create_activation(c.clone()).await.expect("create");
    let wrong = store.register_node(registration(&c, "nope", 4), now).await;
    assert!(
        matches!(
            wrong,
            Err(CoreError::ActivationRefused {
                reason: RegistrationRefusal::WrongCode,
                ..
            })
        ),
        "{wrong:?}"
    );
    let expired = store
        .register_node(registration(&b, "code-b", 4), now)
        .await;
    assert!(
        matches!(
            expired,
            Err(CoreError::ActivationRefused {
                reason: RegistrationRefusal::Expired,
                ..
            })
        ),
        "{expired:?}"
    );
    store.delete_activation(&c.id).await.expect("delete");
    let deleted = store
        .register_node(registration(&c, "code-c", 4), now)
        .await;
    assert!(
        matches!(
            deleted,
            Err(CoreError::ActivationRefused {
                reason: RegistrationRefusal::Deleted,
                ..
            })
        ),
        "{deleted:?}"
    );
    assert!(matches!(
        store.delete_activation(&c.id).await,
        Err(CoreError::UnknownActivation(_))
    ));
    assert!(matches!(
        store.delete_activation(&ActivationId::generate()).await,
        Err(CoreError::UnknownActivation(_))
    ));
    let unknown = activation(1, T0 + HOUR, "x");
    assert!(matches!(
        store
            .register_node(registration(&unknown, "x", 4), now)
            .await,
        Err(CoreError::UnknownActivation(_))
    ));
    // Deleted activations are not listed; failed attempts did not count.
    let listed = store.activations().await.expect("list");
    assert_eq!(
        listed.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
        vec![a.id.clone(), b.id.clone()]
    );
    assert_eq!(listed[1].registrations_count, 0);

    // Nodes, by id.
    let nodes = store.nodes_page(None, 100).await.expect("nodes");
    assert_eq!(
        nodes
            .iter()
            .map(|n| n.instance_id.clone())
            .collect::<Vec<_>>(),
        vec![node(1), node(2)]
    );
    assert!(store.node(&node(4)).await.expect("node").is_none());
    let got = store.node(&node(2)).await.expect("node").expect("exists");
    assert_eq!(got, n2);

    // Heartbeats.
    store
        .touch_node(&node(2), now + 5, None)
        .await
        .expect("touch");
    let got = store.node(&node(2)).await.expect("node").expect("exists");
    assert_eq!(got.last_ping_at, now + 5);
    assert_eq!(got.info, n2.info);
    let info = NodeInfo {
        agent_version: "0.2.0".into(),
        ..n2.info.clone()
    };
    store
        .touch_node(&node(2), now + 6, Some(info.clone()))
        .await
        .expect("touch");
    let got = store.node(&node(2)).await.expect("node").expect("exists");
    assert_eq!((got.last_ping_at, got.info), (now + 6, info));
    assert!(matches!(
        store.touch_node(&node(9), now, None).await,
        Err(CoreError::UnknownInstance(_))
    ));
    // A poll is a heartbeat too, recorded at most every few seconds (an idle poll within that
    // window is answered without a write).
    store
        .claim(&node(1), "s", &[], now + 10_000)
        .await
        .expect("claim");
    let got = store.node(&node(1)).await.expect("node").expect("exists");
    assert_eq!(got.last_ping_at, now + 10_000);
    store
        .claim(&node(1), "s", &[], now + 11_000)
        .await
        .expect("claim");
    let got = store.node(&node(1)).await.expect("node").expect("exists");
    assert_eq!(got.last_ping_at, now + 10_000);
}

fn ids_of(nodes: Vec<Node>) -> Vec<InstanceId> {
    nodes.into_iter().map(|n| n.instance_id).collect()
}

/// Nodes page by id: in order, strictly after the key given (registered or not), at most `limit`;
/// a walk page by page lists every node exactly once.
pub async fn check_nodes_paging(store: &dyn Store) {
    let a = activation(100, T0 + HOUR, "code-p");
    store.create_activation(a.clone()).await.expect("create");
    // Registered out of id order, so the order must come from the query.
    let numbers = [7, 3, 11, 1, 9, 5, 2, 10, 4, 8, 6];
    for n in numbers {
        store
            .register_node(registration(&a, "code-p", n), T0)
            .await
            .expect("register");
    }
    let mut want: Vec<InstanceId> = numbers.iter().map(|n| node(*n)).collect();
    want.sort();
    let page = |after: Option<InstanceId>, limit: usize| async move {
        ids_of(store.nodes_page(after.as_ref(), limit).await.expect("page"))
    };
    assert_eq!(page(None, 100).await, want);
    assert_eq!(page(None, 3).await, want[..3]);
    assert_eq!(page(Some(want[2].clone()), 4).await, want[3..7]);
    assert!(page(Some(want[10].clone()), 5).await.is_empty());
    assert!(page(None, 0).await.is_empty());
    // A key that is no node's (here, a deregistered one) starts at the next id.
    store
        .deregister_node(&node(5), T0 + 1)
        .await
        .expect("deregister");
    want.retain(|n| *n != node(5));
    assert_eq!(page(Some(node(5)), 2).await, [node(6), node(7)]);
    assert_eq!(page(Some(node(99)), 2).await, Vec::<InstanceId>::new());

    // Walks with several page sizes see every node once, in order.
    for limit in [1, 2, 3, 10, 11] {
        let mut walked = Vec::new();
        let mut after = None;
        loop {
            let got = page(after.clone(), limit).await;
            assert!(got.len() <= limit, "limit {limit}: {got:?}");
            let Some(last) = got.last().cloned() else {
                break;
            };
            walked.extend(got);
            after = Some(last);
        }
        assert_eq!(walked, want, "limit {limit}");
    }
}
