//! Checks for node tags and target resolution (SendCommand `Targets`, tag filters).

use super::support::*;

use fleetrun_core::ids::InstanceId;
use fleetrun_core::node::{NewActivation, Tag};
use fleetrun_core::status::CommandState;
use fleetrun_core::targets::{TargetSpec, MAX_TAGS_PER_NODE};
use fleetrun_core::{CoreError, Store};

fn tag(k: &str, v: &str) -> Tag {
    Tag {
        key: k.into(),
        value: v.into(),
    }
}

fn pairs(tags: &[Tag]) -> Vec<(&str, &str)> {
    tags.iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect()
}

/// Registers nodes 1..=n with one activation (tag `env=prod` from the activation fixture).
async fn register(store: &dyn Store, n: u32) -> NewActivation {
    let a = activation(n, T0 + HOUR, "code");
    store.create_activation(a.clone()).await.expect("create");
    for i in 1..=n {
        store
            .register_node(registration(&a, "code", i), T0)
            .await
            .expect("register");
    }
    a
}

/// Add (overwrite, last repeated key wins), list (by key), remove (absent keys ignored), unknown node,
/// the 50-tag limit applied atomically.
pub async fn check_tags(store: &dyn Store) {
    register(store, 2).await;
    let n1 = node(1);
    assert_eq!(
        pairs(&store.node_tags(&n1).await.expect("list")),
        vec![("env", "prod")]
    );
    store
        .add_node_tags(
            &n1,
            &[
                tag("role", "web"),
                tag("env", "staging"),
                tag("zone", "a"),
                tag("zone", "b"),
            ],
        )
        .await
        .expect("add");
    assert_eq!(
        pairs(&store.node_tags(&n1).await.expect("list")),
        vec![("env", "staging"), ("role", "web"), ("zone", "b")]
    );
    store
        .add_node_tags(&n1, &[tag("empty", "")])
        .await
        .expect("empty value");
    store
        .remove_node_tags(&n1, &["zone".into(), "nope".into(), "empty".into()])
        .await
        .expect("remove");
    assert_eq!(
        pairs(&store.node_tags(&n1).await.expect("list")),
        vec![("env", "staging"), ("role", "web")]
    );
    // Node 2 is untouched.
    assert_eq!(
        pairs(&store.node_tags(&node(2)).await.expect("list")),
        vec![("env", "prod")]
    );

    let ghost = node(99);
    for r in [
        store.node_tags(&ghost).await.map(|_| ()),
        store.add_node_tags(&ghost, &[tag("a", "b")]).await,
        store.remove_node_tags(&ghost, &["a".into()]).await,
    ] {
        assert!(
            matches!(r, Err(CoreError::UnknownResource(ref id)) if id == ghost.as_str()),
            "{r:?}"
        );
    }

    // Limit: node 2 has 1 tag; 49 more fit, one beyond is refused and nothing of that call is kept.
    let fill: Vec<Tag> = (1..MAX_TAGS_PER_NODE)
        .map(|i| tag(&format!("k{i:02}"), "v"))
        .collect();
    store
        .add_node_tags(&node(2), &fill)
        .await
        .expect("fill to 50");
    let over = store
        .add_node_tags(&node(2), &[tag("env", "dev"), tag("one-more", "x")])
        .await;
    assert!(matches!(over, Err(CoreError::TooManyTags(_))), "{over:?}");
    let now = store.node_tags(&node(2)).await.expect("list");
    assert_eq!(now.len(), MAX_TAGS_PER_NODE);
    assert!(now.contains(&tag("env", "prod")), "rolled back");
    // Overwriting at the limit is fine.
    store
        .add_node_tags(&node(2), &[tag("env", "dev")])
        .await
        .expect("overwrite at limit");
}

/// Resolution: tag values ORed, tag-key ORed, specs ANDed, ids, no matches, deduplication, order.
pub async fn check_resolve_targets(store: &dyn Store) {
    register(store, 6).await;
    let tags: [&[Tag]; 6] = [
        &[tag("role", "web"), tag("team", "a")],
        &[tag("role", "web")],
        &[tag("role", "db"), tag("team", "b")],
        &[tag("role", "cache"), tag("owner", "x")],
        &[tag("Role", "web")],
        &[],
    ];
    for (i, t) in tags.iter().enumerate() {
        store
            .add_node_tags(&node(i as u32 + 1), t)
            .await
            .expect("tag");
    }
    let resolve = |specs: Vec<TargetSpec>| async move {
        store
            .resolve_targets(&specs)
            .await
            .expect("resolve")
            .into_iter()
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
    };
    let ids = |ns: &[u32]| ns.iter().map(|n| node(*n).to_string()).collect::<Vec<_>>();
    let t = |k: &str, vs: &[&str]| TargetSpec::Tag {
        key: k.into(),
        values: vs.iter().map(|s| s.to_string()).collect(),
    };
    let keys = |ks: &[&str]| TargetSpec::TagKeys(ks.iter().map(|s| s.to_string()).collect());

    assert_eq!(
        resolve(vec![t("role", &["web"])]).await,
        ids(&[1, 2]),
        "keys are case-sensitive"
    );
    assert_eq!(
        resolve(vec![t("role", &["web", "db"])]).await,
        ids(&[1, 2, 3])
    );
    assert_eq!(resolve(vec![keys(&["team"])]).await, ids(&[1, 3]));
    assert_eq!(
        resolve(vec![keys(&["team", "owner", "nope"])]).await,
        ids(&[1, 3, 4])
    );
    // Every node has env=prod from its activation: a key/value and a key match all six.
    assert_eq!(
        resolve(vec![keys(&["env", "team"])]).await,
        ids(&[1, 2, 3, 4, 5, 6])
    );
    assert_eq!(
        resolve(vec![t("role", &["web", "db"]), keys(&["team"])]).await,
        ids(&[1, 3])
    );
    assert_eq!(
        resolve(vec![
            t("role", &["web"]),
            t("team", &["a"]),
            t("env", &["prod"])
        ])
        .await,
        ids(&[1])
    );
    assert_eq!(
        resolve(vec![
            TargetSpec::InstanceIds(vec![node(2), node(3), node(99)]),
            t("role", &["web", "db"])
        ])
        .await,
        ids(&[2, 3])
    );
    assert!(resolve(vec![t("role", &["nope"])]).await.is_empty());
    assert!(resolve(vec![t("role", &["web"]), t("role", &["db"])])
        .await
        .is_empty());
    assert!(resolve(vec![]).await.is_empty());
    assert!(resolve(vec![t("role", &[])]).await.is_empty());

    // Removing a tag takes the node out of later resolutions.
    store
        .remove_node_tags(&node(2), &["role".into()])
        .await
        .expect("remove");
    assert_eq!(resolve(vec![t("role", &["web"])]).await, ids(&[1]));
}

/// A command with no targets (a tag that matched nothing) is stored terminal: NoInstancesInTag,
/// Status Success, 0 targets; the Status filters find it under both names.
pub async fn check_no_instances_command(store: &dyn Store) {
    let targets: Vec<InstanceId> = Vec::new();
    let c = insert(store, T0, "AWS-RunShellScript", &targets).await;
    let got = command(store, &c.id).await;
    let agg = got.aggregate();
    assert_eq!(agg.state, CommandState::NoInstancesInTag);
    assert_eq!(agg.state.status().as_str(), "Success");
    assert_eq!(agg.target_count, 0);
    assert_eq!(
        ids(store, &query(&[("Status", "NoInstancesInTag")])).await,
        vec![c.id.clone()]
    );
    assert_eq!(
        ids(store, &query(&[("Status", "Success")])).await,
        vec![c.id.clone()]
    );
    assert_eq!(
        ids(store, &query(&[("ExecutionStage", "Complete")])).await,
        vec![c.id.clone()]
    );
    assert!(store
        .list_invocations(&query(&[]), None, 10)
        .await
        .expect("invocations")
        .is_empty());
}
