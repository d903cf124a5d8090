//! Fixtures shared by the checks: the backend switch ([`TestStore`]), ids, commands, reports,
//! activations, small query helpers.

use std::collections::BTreeMap;

use fleetrun_core::clock::Millis;
use fleetrun_core::command::{
    Command, CommandEcho, ListedCommand, NewCommand, Report, ReportedStep,
};
use fleetrun_core::document::{Plan, PlanStep};
use fleetrun_core::ids::{ActivationId, CommandId, InstanceId};
use fleetrun_core::node::{hash_secret, NewActivation, NodeInfo, NodeRegistration, Tag};
use fleetrun_core::query::{CommandQuery, ListKind, PageKey};
use fleetrun_core::status::{CommandState, ExecutionOutcome, InvocationState};
use fleetrun_core::Store;
use fleetrun_store::postgres::TempDatabase;
use fleetrun_store::{PostgresStore, SqliteStore};

pub(crate) const T0: Millis = 1_720_000_000_000;
pub(crate) const HOUR: Millis = 3_600_000;

pub(crate) fn node(n: u32) -> InstanceId {
    InstanceId::parse(&format!("mi-{n:017x}")).expect("valid node id")
}

pub(crate) fn plan() -> Plan {
    Plan {
        steps: vec![PlanStep {
            name: "aws:runShellScript".into(),
            action: "aws:runShellScript".into(),
            commands: vec!["echo hello".into()],
            working_directory: String::new(),
            timeout_seconds: 3600,
            precondition: None,
        }],
    }
}

/// The opaque rendering [`new_command`] stores with each command (any text will do).
pub(crate) fn rendering_of(id: &CommandId) -> String {
    format!("\"CommandId\":\"{id}\",\"Note\":\"ünïcode \\\" kept verbatim\"")
}

pub(crate) fn new_command(at: Millis, doc: &str, targets: &[InstanceId]) -> NewCommand {
    let mut parameters = BTreeMap::new();
    parameters.insert("commands".to_string(), vec!["echo hello".to_string()]);
    let id = CommandId::generate();
    NewCommand {
        rendered: Some(rendering_of(&id)),
        access_denied: Vec::new(),
        id,
        requested_at: at,
        expires_at: at + 2 * HOUR,
        document_name: doc.into(),
        document_version: "1".into(),
        comment: "conformance".into(),
        timeout_seconds: 3600,
        max_concurrency: "50".into(),
        max_errors: "0".into(),
        error_budget: 0,
        echo: CommandEcho {
            parameters,
            instance_ids: targets.iter().map(ToString::to_string).collect(),
            ..Default::default()
        },
        plan: plan(),
        targets: targets.to_vec(),
    }
}

pub(crate) fn report(id: &CommandId, outcome: ExecutionOutcome, code: i64) -> Report {
    Report {
        command_id: id.clone(),
        outcome,
        response_code: code,
        elapsed_ms: 1_500,
        held_ms: 0,
        steps: vec![ReportedStep {
            name: "aws:runShellScript".into(),
            status: format!("{outcome:?}"),
            exit_code: code,
            start_offset_ms: 100,
            duration_ms: 1_200,
            stdout: "hello\n".into(),
            stderr: if code == 0 {
                String::new()
            } else {
                "boom\n".into()
            },
            stdout_truncated: false,
            stderr_truncated: false,
        }],
    }
}

pub(crate) async fn insert(
    store: &dyn Store,
    at: Millis,
    doc: &str,
    targets: &[InstanceId],
) -> Command {
    store
        .insert_command(new_command(at, doc, targets))
        .await
        .expect("insert command")
        .command
}

pub(crate) async fn command(store: &dyn Store, id: &CommandId) -> Command {
    store
        .command(id)
        .await
        .expect("get")
        .expect("command exists")
}

pub(crate) async fn state_of(store: &dyn Store, id: &CommandId) -> CommandState {
    command(store, id).await.aggregate().state
}

pub(crate) async fn invocation_state(
    store: &dyn Store,
    id: &CommandId,
    n: &InstanceId,
) -> InvocationState {
    store
        .invocation(id, n)
        .await
        .expect("get invocation")
        .expect("invocation exists")
        .state
}

pub(crate) async fn ids(store: &dyn Store, q: &CommandQuery) -> Vec<CommandId> {
    store
        .list_commands(q, None, 100)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect()
}

pub(crate) fn query(filters: &[(&str, &str)]) -> CommandQuery {
    let mut q = CommandQuery::default();
    for (k, v) in filters {
        q.add_filter(ListKind::Commands, k, v)
            .expect("valid filter");
    }
    q
}

pub(crate) fn key_of(c: &ListedCommand) -> PageKey {
    PageKey {
        requested_at: c.requested_at,
        seq: c.seq,
        instance_id: None,
    }
}

pub(crate) fn activation(limit: u32, expires_at: Millis, code: &str) -> NewActivation {
    NewActivation {
        id: ActivationId::generate(),
        code_hash: hash_secret(code),
        description: "test".into(),
        default_instance_name: "web".into(),
        iam_role: "SSMServiceRole".into(),
        registration_limit: limit,
        expires_at,
        created_at: T0,
        tags: vec![Tag {
            key: "env".into(),
            value: "prod".into(),
        }],
    }
}

pub(crate) fn registration(a: &NewActivation, code: &str, n: u32) -> NodeRegistration {
    NodeRegistration {
        activation_id: a.id.clone(),
        activation_code: code.into(),
        instance_id: node(n),
        public_key: format!("key-{n}"),
        info: NodeInfo {
            computer_name: format!("host-{n}"),
            ip_address: "10.0.0.1".into(),
            platform_type: "Linux".into(),
            platform_name: "Debian".into(),
            platform_version: "12".into(),
            agent_version: "0.1.0".into(),
        },
    }
}

/// Polls all futures concurrently (a tiny `join_all`, so the suite needs no extra crate).
pub(crate) async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => done = false,
                }
            }
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The admin URL of the PostgreSQL server the suite uses when none is given.
pub(crate) const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Where a check's store lives; removed when dropped.
enum Place {
    Dir(tempfile::TempDir),
    Database(TempDatabase),
}

/// A fresh store of the backend `FLEETRUN_TEST_STORE` names (`sqlite`, the default, or
/// `postgres`), and the place it lives in. An unknown value fails the test rather than quietly
/// testing something else.
pub(crate) struct TestStore {
    // Field order is drop order: the store's connections close before its place is removed.
    store: Box<dyn Store>,
    place: Place,
}

impl TestStore {
    pub(crate) async fn open() -> TestStore {
        let place = match std::env::var("FLEETRUN_TEST_STORE").as_deref() {
            Err(_) | Ok("" | "sqlite") => Place::Dir(tempfile::tempdir().expect("tempdir")),
            Ok("postgres") => {
                let admin = std::env::var("FLEETRUN_TEST_PG_URL")
                    .unwrap_or_else(|_| DEFAULT_PG_URL.to_string());
                Place::Database(
                    TempDatabase::create(&admin)
                        .await
                        .unwrap_or_else(|e| panic!("FLEETRUN_TEST_STORE=postgres: {e}")),
                )
            }
            Ok(other) => panic!("FLEETRUN_TEST_STORE={other:?}: expected sqlite or postgres"),
        };
        let store = Self::connect(&place).await;
        TestStore { store, place }
    }

    async fn connect(place: &Place) -> Box<dyn Store> {
        match place {
            Place::Dir(dir) => {
                Box::new(SqliteStore::open(&dir.path().join("fleetrun.db")).expect("open sqlite"))
            }
            Place::Database(db) => Box::new(
                PostgresStore::connect(db.url())
                    .await
                    .expect("connect postgres"),
            ),
        }
    }

    /// A new store on the same place (a server restart), after the old one is closed.
    pub(crate) async fn reopen(self) -> TestStore {
        let TestStore { store, place } = self;
        drop(store);
        let store = Self::connect(&place).await;
        TestStore { store, place }
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}
