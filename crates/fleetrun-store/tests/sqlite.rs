//! SQLite-only checks: query plans (every ListCommands filter is served by an index), file setup
//! (WAL, schema version), bulk seeding and node tags.

use std::collections::BTreeMap;

use fleetrun_core::clock::Millis;
use fleetrun_core::command::{CommandEcho, ListedCommand, NewCommand};
use fleetrun_core::document::{Plan, PlanStep};
use fleetrun_core::ids::{ActivationId, CommandId, InstanceId};
use fleetrun_core::node::{hash_secret, NewActivation, NodeInfo, NodeRegistration, Tag};
use fleetrun_core::query::{CommandQuery, ExecutionStage, ListKind, PageKey, StatusMatch};
use fleetrun_core::status::{CommandState, InvocationState};
use fleetrun_core::{CoreError, Store};
use fleetrun_store::SqliteStore;
use tempfile::TempDir;

const T0: Millis = 1_720_000_000_000;

fn open() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("fleetrun.db")).expect("open");
    (dir, store)
}

fn node(n: u32) -> InstanceId {
    InstanceId::parse(&format!("mi-{n:017x}")).expect("valid node id")
}

fn new_command(at: Millis, doc: &str, targets: Vec<InstanceId>) -> NewCommand {
    let mut parameters = BTreeMap::new();
    parameters.insert("commands".to_string(), vec!["uptime".to_string()]);
    NewCommand {
        id: CommandId::generate(),
        requested_at: at,
        expires_at: at + 7_200_000,
        document_name: doc.into(),
        document_version: "1".into(),
        comment: String::new(),
        timeout_seconds: 3600,
        max_concurrency: "50".into(),
        max_errors: "0".into(),
        error_budget: 0,
        echo: CommandEcho {
            parameters,
            ..Default::default()
        },
        plan: Plan {
            steps: vec![PlanStep {
                name: "aws:runShellScript".into(),
                action: "aws:runShellScript".into(),
                commands: vec!["uptime".into()],
                working_directory: String::new(),
                timeout_seconds: 3600,
                precondition: None,
            }],
        },
        targets,
        rendered: None,
        access_denied: Vec::new(),
    }
}

/// Every single-filter ListCommands query, by name.
fn single_filter_queries() -> Vec<(String, CommandQuery)> {
    let mut out = vec![
        ("none".to_string(), CommandQuery::default()),
        (
            "CommandId".to_string(),
            CommandQuery {
                command_id: Some(CommandId::generate()),
                ..Default::default()
            },
        ),
        (
            "InstanceId".to_string(),
            CommandQuery {
                instance_id: Some(node(1)),
                ..Default::default()
            },
        ),
    ];
    for value in fleetrun_core::query::status_values(ListKind::Commands) {
        let mut q = CommandQuery::default();
        q.add_filter(ListKind::Commands, "Status", value)
            .expect("filter");
        out.push((format!("Status={value}"), q));
    }
    for (key, value) in [
        ("DocumentName", "AWS-RunShellScript"),
        ("ExecutionStage", "Executing"),
        ("ExecutionStage", "Complete"),
        ("InvokedAfter", "2024-07-07T00:00:00Z"),
        ("InvokedBefore", "2024-07-07T00:00:00Z"),
    ] {
        let mut q = CommandQuery::default();
        q.add_filter(ListKind::Commands, key, value)
            .expect("filter");
        out.push((format!("{key}={value}"), q));
    }
    out
}

fn assert_indexed(name: &str, plan: &str, table: &str) {
    let uses_index = plan.lines().any(|l| {
        let l = l.trim();
        (l.starts_with(&format!("SEARCH {table} ")) || l.starts_with(&format!("SCAN {table} ")))
            && (l.contains("INDEX") || l.contains("PRIMARY KEY"))
    });
    assert!(uses_index, "{name}: no index on {table}:\n{plan}");
    for line in plan.lines().map(str::trim) {
        assert!(
            line != format!("SCAN {table}"),
            "{name}: full scan of {table}:\n{plan}"
        );
        assert!(
            !line.contains("TEMP B-TREE"),
            "{name}: sorts in a temp b-tree:\n{plan}"
        );
    }
}

#[test]
fn every_list_commands_filter_uses_an_index() {
    let (_dir, store) = open();
    let key = PageKey {
        requested_at: T0,
        seq: 42,
        instance_id: None,
    };
    for (name, q) in single_filter_queries() {
        let first = store.explain_list_commands(&q).expect("explain");
        let later = store
            .explain_list_commands_after(&q, Some(&key))
            .expect("explain");
        eprintln!("ListCommands {name}:\n{first}page 2:\n{later}");
        // `c` is the commands table; with InstanceId the invocations index drives the join.
        let driver = if q.instance_id.is_some() { "i" } else { "c" };
        assert_indexed(&name, &first, driver);
        assert_indexed(&format!("{name} (page 2)"), &later, driver);
        if q.instance_id.is_some() {
            assert!(
                first.contains("SEARCH c USING INTEGER PRIMARY KEY"),
                "{name}:\n{first}"
            );
        }
    }
}

#[test]
fn list_commands_index_choice() {
    let (_dir, store) = open();
    let plan_of = |q: &CommandQuery| store.explain_list_commands(q).expect("explain");
    let q = CommandQuery {
        statuses: vec![StatusMatch::Status("Failed")],
        ..Default::default()
    };
    assert!(
        plan_of(&q).contains("commands_by_status"),
        "{}",
        plan_of(&q)
    );
    let q = CommandQuery {
        statuses: vec![StatusMatch::Details("Incomplete")],
        ..Default::default()
    };
    assert!(
        plan_of(&q).contains("commands_by_details"),
        "{}",
        plan_of(&q)
    );
    let q = CommandQuery {
        stage: Some(ExecutionStage::Executing),
        ..Default::default()
    };
    assert!(plan_of(&q).contains("commands_by_stage"), "{}", plan_of(&q));
    let q = CommandQuery {
        document_names: vec!["AWS-RunShellScript".into()],
        ..Default::default()
    };
    assert!(
        plan_of(&q).contains("commands_by_document"),
        "{}",
        plan_of(&q)
    );
    let q = CommandQuery {
        instance_id: Some(node(1)),
        ..Default::default()
    };
    assert!(
        plan_of(&q).contains("invocations_by_node"),
        "{}",
        plan_of(&q)
    );
}

#[test]
fn every_list_invocations_filter_uses_an_index() {
    let (_dir, store) = open();
    let mut queries = vec![
        ("none".to_string(), CommandQuery::default()),
        (
            "CommandId".to_string(),
            CommandQuery {
                command_id: Some(CommandId::generate()),
                ..Default::default()
            },
        ),
        (
            "InstanceId".to_string(),
            CommandQuery {
                instance_id: Some(node(1)),
                ..Default::default()
            },
        ),
        (
            "CommandId+InstanceId".to_string(),
            CommandQuery {
                command_id: Some(CommandId::generate()),
                instance_id: Some(node(1)),
                ..Default::default()
            },
        ),
    ];
    for value in fleetrun_core::query::status_values(ListKind::Invocations) {
        let mut q = CommandQuery::default();
        q.add_filter(ListKind::Invocations, "Status", value)
            .expect("filter");
        queries.push((format!("Status={value}"), q));
    }
    for (key, value) in [
        ("DocumentName", "AWS-RunShellScript"),
        ("InvokedAfter", "2024-07-07T00:00:00Z"),
        ("InvokedBefore", "2024-07-07T00:00:00Z"),
    ] {
        let mut q = CommandQuery::default();
        q.add_filter(ListKind::Invocations, key, value)
            .expect("filter");
        queries.push((format!("{key}={value}"), q));
    }
    let key = PageKey {
        requested_at: T0,
        seq: 42,
        instance_id: Some(node(3).to_string()),
    };
    for (name, q) in queries {
        for after in [None, Some(&key)] {
            let plan = store.explain_list_invocations(&q, after).expect("explain");
            eprintln!(
                "ListCommandInvocations {name} after={}:\n{plan}",
                after.is_some()
            );
            assert_indexed(&name, &plan, "i");
        }
    }
}

#[test]
fn file_is_wal_and_versioned() {
    let (dir, store) = open();
    let path = dir.path().join("fleetrun.db");
    assert_eq!(store.path(), path.as_path());
    let conn = rusqlite::Connection::open(&path).expect("open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(version, 12);
    drop(store);
    // Reopening an up-to-date file changes nothing; a file from a newer build is refused.
    drop(SqliteStore::open(&path).expect("reopen"));
    conn.pragma_update(None, "user_version", 99).expect("bump");
    match SqliteStore::open(&path) {
        Err(CoreError::Store(msg)) => assert!(msg.contains("newer"), "{msg}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The database, its WAL and shared-memory files hold secrets and output: 0600 whatever the umask,
/// and a file someone loosened is tightened on the next open.
#[tokio::test]
async fn database_files_are_private_under_umask_022() {
    use std::os::unix::fs::PermissionsExt;
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fleetrun.db");
    let store = SqliteStore::open(&path).expect("open");
    // A write makes SQLite create the -wal and -shm files.
    store
        .create_activation(NewActivation {
            id: ActivationId::generate(),
            code_hash: hash_secret("code"),
            description: String::new(),
            default_instance_name: String::new(),
            iam_role: "r".into(),
            registration_limit: 1,
            expires_at: T0,
            created_at: T0,
            tags: vec![],
        })
        .await
        .expect("write");
    let mode = |suffix: &str| {
        let file = dir.path().join(format!("fleetrun.db{suffix}"));
        std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .permissions()
            .mode()
            & 0o777
    };
    for suffix in ["", "-wal", "-shm"] {
        assert_eq!(mode(suffix), 0o600, "fleetrun.db{suffix}");
    }
    drop(store);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("loosen");
    drop(SqliteStore::open(&path).expect("reopen"));
    assert_eq!(mode(""), 0o600);
    nix::sys::stat::umask(old);
}

#[test]
fn opening_a_non_database_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![0x42u8; 8192]).expect("write");
    assert!(matches!(SqliteStore::open(&path), Err(CoreError::Store(_))));
    assert!(matches!(
        SqliteStore::open(&dir.path().join("missing-dir").join("x.db")),
        Err(CoreError::Store(_))
    ));
}

#[tokio::test]
async fn bulk_seeding_sets_counts_and_status() {
    let (_dir, store) = open();
    let states = [
        None,
        Some(InvocationState::InProgress),
        Some(InvocationState::Success),
        Some(InvocationState::Failed),
        Some(InvocationState::DeliveryTimedOut),
        Some(InvocationState::Cancelled),
    ];
    let mut batch = Vec::new();
    for i in 0..600u32 {
        let doc = if i % 2 == 0 {
            "AWS-RunShellScript"
        } else {
            "Custom"
        };
        let targets = vec![node(i % 7), node(100 + i % 5)];
        batch.push((
            new_command(T0 + i64::from(i), doc, targets),
            states[i as usize % states.len()],
        ));
    }
    let seeded = tokio::task::spawn_blocking({
        let store = store.clone();
        move || store.insert_commands_bulk(batch)
    })
    .await
    .expect("join");
    seeded.expect("bulk insert");

    let count = |filters: Vec<(&'static str, &'static str)>| {
        let store = store.clone();
        async move {
            let mut q = CommandQuery::default();
            for (k, v) in filters {
                q.add_filter(ListKind::Commands, k, v).expect("filter");
            }
            let mut n = 0;
            let mut after = None;
            loop {
                let page = store
                    .list_commands(&q, after.as_ref(), 50)
                    .await
                    .expect("list");
                let Some(last) = page.last() else { break };
                after = Some(PageKey {
                    requested_at: last.requested_at,
                    seq: last.seq,
                    instance_id: None,
                });
                n += page.len();
            }
            n
        }
    };
    assert_eq!(count(vec![]).await, 600);
    assert_eq!(count(vec![("Status", "Pending")]).await, 100);
    assert_eq!(count(vec![("Status", "InProgress")]).await, 100);
    assert_eq!(count(vec![("Status", "Success")]).await, 100);
    assert_eq!(count(vec![("Status", "Failed")]).await, 100);
    assert_eq!(count(vec![("Status", "TimedOut")]).await, 100);
    assert_eq!(count(vec![("Status", "DeliveryTimedOut")]).await, 100);
    assert_eq!(count(vec![("Status", "Cancelled")]).await, 100);
    assert_eq!(count(vec![("ExecutionStage", "Executing")]).await, 200);
    assert_eq!(count(vec![("ExecutionStage", "Complete")]).await, 400);
    assert_eq!(count(vec![("DocumentName", "Custom")]).await, 300);
    assert_eq!(
        count(vec![("DocumentName", "Custom"), ("Status", "Success")]).await,
        0,
        "successes are the even i, Custom the odd"
    );

    let first = store
        .list_commands(&CommandQuery::default(), None, 1)
        .await
        .expect("list");
    let newest = &first[0];
    assert_eq!(newest.requested_at, T0 + 599);
    // i = 599 → states[599 % 6 = 5] = Cancelled.
    assert_eq!(newest.aggregate().state, CommandState::Cancelled);
    assert_eq!(newest.counts.get(InvocationState::Cancelled), 2);
    let q = CommandQuery {
        instance_id: Some(node(100)),
        ..Default::default()
    };
    let on_node = store.list_commands(&q, None, 1000).await.expect("list");
    assert_eq!(on_node.len(), 120);
    let inv = store
        .invocation(&newest.id, &node(599 % 7))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(inv.state, InvocationState::Cancelled);

    // Seeded Pending work can be claimed like any other.
    let claim = store
        .claim(&node(0), "s", &[], T0 + 1_000)
        .await
        .expect("claim");
    assert!(!claim.runs.is_empty());
}

#[tokio::test]
async fn registration_copies_activation_tags() {
    let (_dir, store) = open();
    let a = NewActivation {
        id: ActivationId::generate(),
        code_hash: hash_secret("code"),
        description: String::new(),
        default_instance_name: "db".into(),
        iam_role: "role".into(),
        registration_limit: 1,
        expires_at: T0 + 1_000,
        created_at: T0,
        tags: vec![
            Tag {
                key: "team".into(),
                value: "infra".into(),
            },
            Tag {
                key: "env".into(),
                value: "prod".into(),
            },
        ],
    };
    store.create_activation(a.clone()).await.expect("create");
    let reg = NodeRegistration {
        activation_id: a.id.clone(),
        activation_code: "code".into(),
        instance_id: node(1),
        public_key: "cHVibGljLWtleQ==".into(),
        info: NodeInfo::default(),
    };
    store.register_node(reg, T0).await.expect("register");
    let tags = store.node_tags(&node(1)).await.expect("tags");
    assert_eq!(
        tags.iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect::<Vec<_>>(),
        vec![("env", "prod"), ("team", "infra")]
    );
    assert!(matches!(
        store.node_tags(&node(2)).await,
        Err(CoreError::UnknownResource(_))
    ));
}

/// Every command of `store`, newest first, as ListCommands pages them, and each one read whole.
async fn everything_listed(store: &SqliteStore) -> (Vec<ListedCommand>, Vec<String>) {
    let q = CommandQuery::default();
    let (mut listed, mut whole) = (Vec::new(), Vec::new());
    let mut after = None;
    loop {
        let page = store
            .list_commands(&q, after.as_ref(), 7)
            .await
            .expect("list");
        let Some(last) = page.last() else { break };
        after = Some(PageKey {
            requested_at: last.requested_at,
            seq: last.seq,
            instance_id: None,
        });
        for c in &page {
            let cmd = store.command(&c.id).await.expect("get").expect("exists");
            whole.push(format!("{cmd:?} {:?}", cmd.aggregate()));
        }
        listed.extend(page);
    }
    (listed, whole)
}

/// A data dir written before schema v8 (per-state counts stored by position) opens and lists
/// exactly as it did: same commands, same counts, same statuses.
#[tokio::test]
async fn a_data_dir_from_before_counts_by_name_lists_as_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fleetrun.db");
    let store = SqliteStore::open(&path).expect("open");
    let states = [
        None,
        Some(InvocationState::InProgress),
        Some(InvocationState::Success),
        Some(InvocationState::Failed),
        Some(InvocationState::Cancelled),
        Some(InvocationState::AccessDenied),
    ];
    let batch: Vec<_> = (0..30u32)
        .map(|i| {
            let targets = vec![node(i % 4), node(50 + i % 3)];
            let cmd = new_command(T0 + i64::from(i), "AWS-RunShellScript", targets);
            (cmd, states[i as usize % states.len()])
        })
        .collect();
    tokio::task::spawn_blocking({
        let store = store.clone();
        move || store.insert_commands_bulk(batch)
    })
    .await
    .expect("join")
    .expect("seed");
    let before = everything_listed(&store).await;
    assert_eq!(before.0.len(), 30);
    drop(store);

    // Rewrite the file as a version 7 build left it: counts as arrays by state position.
    let conn = rusqlite::Connection::open(&path).expect("open");
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT seq, counts_json FROM commands")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    for (seq, by_name) in rows {
        let counts: fleetrun_core::status::StateCounts =
            serde_json::from_str(&by_name).expect("counts");
        let positional = serde_json::to_string(&counts.0.to_vec()).expect("json");
        conn.execute(
            "UPDATE commands SET counts_json = ?1 WHERE seq = ?2",
            rusqlite::params![positional, seq],
        )
        .expect("rewrite");
    }
    // And without what later versions added.
    conn.execute_batch(
        "DROP TABLE server_secrets;
         DROP TABLE notification_outbox;
         ALTER TABLE commands DROP COLUMN notify_json;
         DROP TABLE output_chunks;
         DROP TABLE output_streams;
         DROP TABLE s3_uploads;
         DROP TABLE alarms;
         DROP INDEX commands_watching_alarms;
         ALTER TABLE commands DROP COLUMN log_group;
         ALTER TABLE commands DROP COLUMN s3_bucket;
         ALTER TABLE commands DROP COLUMN alarm_name;
         ALTER TABLE commands DROP COLUMN triggered_json;
         DROP TABLE resource_groups;",
    )
    .expect("drop what v9, v10, v11 and v12 added");
    conn.pragma_update(None, "user_version", 7)
        .expect("version");
    drop(conn);

    let store = SqliteStore::open(&path).expect("reopen migrates");
    assert_eq!(everything_listed(&store).await, before);
}

/// DescribeInstanceInformation and ListDocuments page through these: each page one range read of
/// the key's primary key (plus a primary-key lookup of each document's default version), no sort.
#[test]
fn node_and_document_pages_read_the_primary_key() {
    let (_dir, store) = open();
    for (name, after) in [("nodes", None), ("nodes after a key", Some(node(3)))] {
        let plan = store.explain_nodes_page(after.as_ref()).expect("explain");
        eprintln!("{name}:\n{plan}");
        assert_indexed(name, &plan, "nodes");
    }
    // `documents` is WITHOUT ROWID: the table is its primary-key b-tree, so the first page is a
    // plain `SCAN d` in key order (stopped by the LIMIT), a later one a search of that b-tree.
    for (name, after, read) in [
        ("documents", None, "SCAN d"),
        (
            "documents after a key",
            Some("Deploy"),
            "SEARCH d USING PRIMARY KEY (name>?)",
        ),
    ] {
        let plan = store.explain_documents_page(after).expect("explain");
        eprintln!("{name}:\n{plan}");
        let lines: Vec<&str> = plan.lines().map(str::trim).collect();
        assert!(lines.contains(&read), "{name}: no `{read}`:\n{plan}");
        assert!(
            lines.contains(&"SEARCH v USING PRIMARY KEY (name=? AND version=?) LEFT-JOIN"),
            "{name}: default version not looked up by key:\n{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{name}: sorts:\n{plan}");
    }
}
