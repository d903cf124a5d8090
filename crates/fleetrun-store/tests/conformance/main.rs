//! The store conformance suite: what every `Store` backend must do, written against `&dyn Store` only
//! so every backend runs the same `check_*` functions. The `backend` module below runs each check on
//! a fresh store of the backend `FLEETRUN_TEST_STORE` selects: `sqlite` (the default) or
//! `postgres` (a temporary database through the admin URL `FLEETRUN_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). With `postgres` selected, a server that cannot
//! be reached fails every check: nothing is skipped quietly.

mod access_keys;
mod activations;
mod alarms;
mod documents;
mod groups;
mod lifecycle;
mod listing;
mod notifications;
mod output;
mod rollout;
mod support;
mod tags;
mod uploads;

pub use access_keys::*;
pub use activations::*;
pub use alarms::*;
pub use documents::*;
pub use groups::*;
pub use lifecycle::*;
pub use listing::*;
pub use notifications::*;
pub use output::*;
pub use rollout::*;
pub use tags::*;
pub use uploads::*;

/// Each check on a fresh store of the backend `FLEETRUN_TEST_STORE` names (see
/// [`support::TestStore`]): SQLite in a temporary directory by default, a temporary PostgreSQL
/// database with `FLEETRUN_TEST_STORE=postgres`.
mod backend {
    use super::support::TestStore;

    macro_rules! conformance {
        ($($check:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let t = TestStore::open().await;
                super::$check(t.store()).await;
            }
        )*};
    }

    conformance!(
        check_access_keys,
        check_first_access_key,
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
        check_nodes_paging,
        check_purge,
        check_concurrent_agents,
        check_ramp,
        check_max_errors,
        check_unreachable_then_back,
        check_sign_off_then_back,
        check_deregister,
        check_tags,
        check_resolve_targets,
        check_resource_groups,
        check_no_instances_command,
        check_documents,
        check_documents_paging,
        check_notification_outbox,
        check_live_output,
        check_upload_queue,
        check_alarms,
    );

    /// What was written survives a restart: the SQLite file reopened, or a new PostgreSQL pool
    /// connected to the same database.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durable_across_reopen() {
        let t = TestStore::open().await;
        let id = super::check_durable_write(t.store()).await;
        let t = t.reopen().await;
        super::check_durable_read(t.store(), &id).await;
    }
}
