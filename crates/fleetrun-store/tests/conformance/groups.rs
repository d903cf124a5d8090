//! Checks for resource groups: create (a taken name refused), read, page by name, replace the
//! query, delete, and a group's query resolved to its members as SendCommand resolves it.

use super::support::*;

use fleetrun_core::node::Tag;
use fleetrun_core::resource_groups::{ResourceGroup, TagQuery, TAG_FILTERS};
use fleetrun_core::{CoreError, Store};

fn group(name: &str, query: &str) -> ResourceGroup {
    ResourceGroup {
        name: name.into(),
        description: Some(format!("group {name}")),
        query_type: TAG_FILTERS.into(),
        query: query.into(),
        created_at: T0,
    }
}

fn tier(value: &str) -> String {
    format!(
        r#"{{"ResourceTypeFilters":["AWS::SSM::ManagedInstance"],"TagFilters":[{{"Key":"tier","Values":["{value}"]}}]}}"#
    )
}

async fn members(store: &dyn Store, name: &str) -> Vec<String> {
    let g = store.group(name).await.expect("read").expect("exists");
    let q = TagQuery::parse(&g.query_type, &g.query).expect("stored query parses");
    store
        .resolve_targets(&q.specs())
        .await
        .expect("resolve")
        .iter()
        .map(|id| id.to_string())
        .collect()
}

pub async fn check_resource_groups(store: &dyn Store) {
    // Create, refuse a taken name, read back as stored.
    let web = group("web", &tier("web"));
    store.create_group(&web).await.expect("create");
    let again = store.create_group(&group("web", &tier("db"))).await;
    assert!(
        matches!(&again, Err(CoreError::GroupExists { name }) if name == "web"),
        "{again:?}"
    );
    assert_eq!(store.group("web").await.expect("get"), Some(web.clone()));
    assert_eq!(store.group("nope").await.expect("get"), None);

    // Pages by name (byte order), strictly after the key.
    for name in ["b-group", "a-group", "C-group"] {
        store
            .create_group(&group(name, &tier("x")))
            .await
            .expect("create");
    }
    let names = |gs: Vec<ResourceGroup>| gs.into_iter().map(|g| g.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.groups_page(None, 3).await.expect("page")),
        ["C-group", "a-group", "b-group"]
    );
    assert_eq!(
        names(store.groups_page(Some("b-group"), 3).await.expect("page")),
        ["web"]
    );
    assert!(store
        .groups_page(Some("web"), 3)
        .await
        .expect("page")
        .is_empty());

    // Members are what the query matches now.
    let a = activation(3, T0 + HOUR, "code");
    store
        .create_activation(a.clone())
        .await
        .expect("activation");
    for i in 1..=3 {
        store
            .register_node(registration(&a, "code", i), T0)
            .await
            .expect("register");
    }
    let tag = |v: &str| Tag {
        key: "tier".into(),
        value: v.into(),
    };
    for (i, v) in [(1, "web"), (2, "db"), (3, "web")] {
        store.add_node_tags(&node(i), &[tag(v)]).await.expect("tag");
    }
    assert_eq!(
        members(store, "web").await,
        [node(1).to_string(), node(3).to_string()]
    );

    // Replacing the query changes the members; an unknown group is UnknownGroup.
    let updated = store
        .update_group_query("web", TAG_FILTERS, &tier("db"))
        .await
        .expect("update");
    assert_eq!(updated.query, tier("db"));
    assert_eq!(updated.description, web.description);
    assert_eq!(members(store, "web").await, [node(2).to_string()]);
    let unknown = store
        .update_group_query("nope", TAG_FILTERS, &tier("db"))
        .await;
    assert!(
        matches!(unknown, Err(CoreError::UnknownGroup { .. })),
        "{unknown:?}"
    );

    // Delete returns what was deleted, once.
    let deleted = store.delete_group("web").await.expect("delete");
    assert_eq!(deleted.name, "web");
    assert_eq!(store.group("web").await.expect("get"), None);
    let twice = store.delete_group("web").await;
    assert!(
        matches!(twice, Err(CoreError::UnknownGroup { .. })),
        "{twice:?}"
    );
}
