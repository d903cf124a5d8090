//! Checks for API access keys.

use fleetrun_core::access::{AccessKey, AccessKeyStatus};
use fleetrun_core::{CoreError, Store};

fn key(id: &str, at: i64) -> AccessKey {
    AccessKey {
        access_key_id: id.into(),
        secret_access_key: format!("secret-of-{id}"),
        user_name: format!("user-{id}"),
        policy_json: r#"{"Version":"2012-10-17","Statement":[]}"#.into(),
        status: AccessKeyStatus::Active,
        created_at: at,
    }
}

/// Create, look up, list oldest first, refuse a duplicate id, disable, delete.
pub async fn check_access_keys(store: &dyn Store) {
    assert!(store.access_keys().await.expect("list").is_empty());
    let a = key("AKIAAAAAAAAAAAAAAAAA", 2);
    let b = key("AKIABBBBBBBBBBBBBBBB", 1);
    store.create_access_key(a.clone()).await.expect("create a");
    store.create_access_key(b.clone()).await.expect("create b");
    assert!(matches!(
        store.create_access_key(key(&a.access_key_id, 9)).await,
        Err(CoreError::AccessKeyExists(id)) if id == a.access_key_id
    ));
    assert_eq!(
        store.access_key(&a.access_key_id).await.expect("get"),
        Some(a.clone())
    );
    assert_eq!(store.access_key("AKIANOPE").await.expect("get"), None);
    let ids: Vec<String> = store
        .access_keys()
        .await
        .expect("list")
        .into_iter()
        .map(|k| k.access_key_id)
        .collect();
    assert_eq!(ids, vec![b.access_key_id.clone(), a.access_key_id.clone()]);

    assert!(store
        .set_access_key_status(&a.access_key_id, AccessKeyStatus::Inactive)
        .await
        .expect("disable"));
    let stored = store.access_key(&a.access_key_id).await.expect("get");
    assert_eq!(stored.map(|k| k.status), Some(AccessKeyStatus::Inactive));
    assert!(!store
        .set_access_key_status("AKIANOPE", AccessKeyStatus::Inactive)
        .await
        .expect("unknown"));

    assert!(store
        .delete_access_key(&b.access_key_id)
        .await
        .expect("delete"));
    assert!(!store
        .delete_access_key(&b.access_key_id)
        .await
        .expect("again"));
    assert_eq!(store.access_key(&b.access_key_id).await.expect("get"), None);
}

/// Of several first keys offered at once to an empty store, exactly one is stored; once a key
/// exists, none is.
pub async fn check_first_access_key(store: &dyn Store) {
    let offers: Vec<AccessKey> = (0..6)
        .map(|i| key(&format!("AKIAFIRST{i:011}"), i))
        .collect();
    let first = |i: usize| store.create_first_access_key(offers[i].clone());
    let (a, b, c, d, e, f) =
        tokio::join!(first(0), first(1), first(2), first(3), first(4), first(5));
    let won: Vec<bool> = [a, b, c, d, e, f]
        .into_iter()
        .map(|r| r.expect("create_first_access_key"))
        .collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "winners: {won:?}");
    let stored = store.access_keys().await.expect("list");
    assert_eq!(stored.len(), 1);
    let winner = won.iter().position(|w| *w).expect("one winner");
    assert_eq!(stored[0], offers[winner]);
    assert!(!store
        .create_first_access_key(key("AKIALATECOMER0000000", 9))
        .await
        .expect("later offer"));
}

/// The first candidate stored under a name is the secret from then on, for every caller.
pub async fn check_shared_secret(store: &dyn Store) {
    let first = store
        .shared_secret("token-key", b"first candidate")
        .await
        .expect("store");
    assert_eq!(first, b"first candidate");
    let again = store
        .shared_secret("token-key", b"another")
        .await
        .expect("read");
    assert_eq!(again, b"first candidate", "the stored secret wins");
    let other = store
        .shared_secret("node-session-key", b"\x00\xffbinary")
        .await
        .expect("store");
    assert_eq!(
        other, b"\x00\xffbinary",
        "names are independent; bytes kept exactly"
    );
}
