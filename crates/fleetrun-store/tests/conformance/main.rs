//! The store conformance suite: what every `Store` backend must do, written against `&dyn Store` only
//! so another backend (PostgreSQL) can run the same `check_*` functions. The `sqlite` module below
//! runs each check on a fresh `SqliteStore` in a temporary directory.

mod access_keys;
mod activations;
mod documents;
mod lifecycle;
mod listing;
mod rollout;
mod support;
mod tags;

pub use access_keys::*;
pub use activations::*;
pub use documents::*;
pub use lifecycle::*;
pub use listing::*;
pub use rollout::*;
pub use tags::*;

mod sqlite {
    use fleetrun_store::SqliteStore;
    use tempfile::TempDir;

    fn open() -> (TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("fleetrun.db")).expect("open");
        (dir, store)
    }

    macro_rules! conformance {
        ($($check:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (_dir, store) = open();
                super::$check(&store).await;
            }
        )*};
    }

    conformance!(
        check_access_keys,
        check_shared_secret,
        check_insert_get_list,
        check_unrendered_listing,
        check_keyset_paging,
        check_filters,
        check_instance_filter,
        check_list_invocations,
        check_claim,
        check_finish,
        check_effects,
        check_held_report,
        check_cancel,
        check_expiry,
        check_aggregate_counts,
        check_activations,
        check_purge,
        check_concurrent_agents,
        check_ramp,
        check_max_errors,
        check_unreachable_then_back,
        check_sign_off_then_back,
        check_deregister,
        check_tags,
        check_resolve_targets,
        check_no_instances_command,
        check_documents,
    );

    #[tokio::test]
    async fn durable_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fleetrun.db");
        let id = {
            let store = SqliteStore::open(&path).expect("open");
            super::check_durable_write(&store).await
        };
        let store = SqliteStore::open(&path).expect("reopen");
        super::check_durable_read(&store, &id).await;
    }
}
