//! PostgreSQL-only checks: query plans (every ListCommands / ListCommandInvocations filter is one
//! index range read, no sort), migrations (idempotent, safe when servers start together), several
//! stores on one database (no double delivery, MaxConcurrency never exceeded, counts exact), and
//! prompt connection failures.
//!
//! They need a server: they run when `FLEETRUN_TEST_STORE=postgres` (admin URL
//! `FLEETRUN_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`) and otherwise
//! print a SKIPPED line and return. The connection-failure checks need no server and always run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetrun_core::clock::Millis;
use fleetrun_core::command::{CommandEcho, NewCommand, Report};
use fleetrun_core::document::{Plan, PlanStep};
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::query::{CommandQuery, ExecutionStage, ListKind, PageKey, StatusMatch};
use fleetrun_core::status::{ExecutionOutcome, InvocationState, StateCounts};
use fleetrun_core::store::WakeBus;
use fleetrun_core::{CoreError, Store};
use fleetrun_store::postgres::TempDatabase;
use fleetrun_store::{PoolOptions, PostgresStore};

const T0: Millis = 1_720_000_000_000;

/// The admin URL, or `None` (after printing why) when the PostgreSQL checks are not selected.
fn admin_url(test: &str) -> Option<String> {
    if std::env::var("FLEETRUN_TEST_STORE").as_deref() != Ok("postgres") {
        // Straight to stderr, past the test harness's output capture: a skip must show.
        let line =
            format!("SKIPPED {test}: needs PostgreSQL; run with FLEETRUN_TEST_STORE=postgres\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        return None;
    }
    Some(
        std::env::var("FLEETRUN_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string()),
    )
}

async fn temp_db(admin: &str) -> TempDatabase {
    TempDatabase::create(admin).await.expect("create database")
}

/// A plain connection to `url`, for what the Store API does not expose (ANALYZE, row counts).
async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

fn node(n: u64) -> InstanceId {
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
        rendered: Some("{}".into()),
        access_denied: Vec::new(),
    }
}

fn success(id: &CommandId) -> Report {
    Report {
        command_id: id.clone(),
        outcome: ExecutionOutcome::Success,
        response_code: 0,
        elapsed_ms: 10,
        held_ms: 0,
        steps: Vec::new(),
    }
}

// ---- (a) query plans ----

const SEEDED: u64 = 30_000;
const NODES: u64 = 400;

/// Tens of thousands of commands spread evenly over states, documents and nodes, then ANALYZE, so
/// the planner decides on real statistics.
async fn seeded_store(db: &TempDatabase) -> PostgresStore {
    let store = PostgresStore::connect(db.url()).await.expect("connect");
    let states = [
        None,
        Some(InvocationState::InProgress),
        Some(InvocationState::Success),
        Some(InvocationState::Failed),
        Some(InvocationState::DeliveryTimedOut),
        Some(InvocationState::Cancelled),
        Some(InvocationState::ExecutionTimedOut),
    ];
    let docs = ["AWS-RunShellScript", "Deploy", "Patch", "Backup", "Audit"];
    let mut batch = Vec::new();
    for i in 0..SEEDED {
        let targets = (0..1 + i % 3).map(|k| node((i * 7 + k) % NODES)).collect();
        let at = T0 + i64::try_from(i).expect("small") * 1_000;
        batch.push((
            new_command(at, docs[(i % 5) as usize], targets),
            states[(i % 7) as usize],
        ));
    }
    let started = Instant::now();
    store.insert_commands_bulk(batch).await.expect("seed");
    eprintln!("seeded {SEEDED} commands in {:?}", started.elapsed());
    raw(db.url())
        .await
        .batch_execute("ANALYZE")
        .await
        .expect("analyze");
    store
}

/// Why the plan is not one read of `table` through `index` (an index scan, in either direction)
/// with no Sort and no sequential or bitmap scan of either table; `None` when it is.
fn plan_problem(name: &str, plan: &str, index: &str, table: &str) -> Option<String> {
    if !plan
        .lines()
        .any(|l| l.contains("Index") && l.contains(&format!(" using {index} on {table} ")))
    {
        return Some(format!(
            "{name}: no index scan using {index} on {table}:\n{plan}"
        ));
    }
    for bad in ["Sort", "Seq Scan", "Bitmap Heap Scan"] {
        if plan.contains(bad) {
            return Some(format!("{name}: {bad} in the plan:\n{plan}"));
        }
    }
    None
}

/// Fails with every problem found, not only the first.
fn assert_no_problems(problems: &[String]) {
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every single-filter ListCommands query, by name, with the index that should serve it.
fn list_commands_cases(some_id: &CommandId) -> Vec<(String, CommandQuery, &'static str)> {
    let mut out = vec![
        (
            "none".to_string(),
            CommandQuery::default(),
            "commands_by_time",
        ),
        (
            "CommandId".to_string(),
            CommandQuery {
                command_id: Some(some_id.clone()),
                ..Default::default()
            },
            "commands_command_id_key",
        ),
        (
            "InstanceId".to_string(),
            CommandQuery {
                instance_id: Some(node(7)),
                ..Default::default()
            },
            "invocations_by_node",
        ),
    ];
    for value in fleetrun_core::query::status_values(ListKind::Commands) {
        let mut q = CommandQuery::default();
        q.add_filter(ListKind::Commands, "Status", value)
            .expect("filter");
        let index = match q.statuses[0] {
            StatusMatch::Status(_) => "commands_by_status",
            StatusMatch::Details(_) => "commands_by_details",
        };
        out.push((format!("Status={value}"), q, index));
    }
    for (key, value, index) in [
        ("DocumentName", "Deploy", "commands_by_document"),
        ("ExecutionStage", "Executing", "commands_by_stage"),
        ("ExecutionStage", "Complete", "commands_by_stage"),
        ("InvokedAfter", "2024-07-03T12:00:00Z", "commands_by_time"),
        ("InvokedBefore", "2024-07-03T12:00:00Z", "commands_by_time"),
    ] {
        let mut q = CommandQuery::default();
        q.add_filter(ListKind::Commands, key, value)
            .expect("filter");
        out.push((format!("{key}={value}"), q, index));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_every_list_commands_filter_is_one_index_range_read() {
    let Some(admin) = admin_url("pg_every_list_commands_filter_is_one_index_range_read") else {
        return;
    };
    let db = temp_db(&admin).await;
    let store = seeded_store(&db).await;
    let newest = store
        .list_commands(&CommandQuery::default(), None, 1)
        .await
        .expect("list");
    let some_id = newest[0].id.clone();
    // A key in the middle of the data: the second page of a deep walk.
    let middle = PageKey {
        requested_at: T0 + i64::try_from(SEEDED / 2).expect("small") * 1_000,
        seq: i64::try_from(SEEDED / 2).expect("small"),
        instance_id: None,
    };
    let mut problems = Vec::new();
    for (name, q, index) in list_commands_cases(&some_id) {
        let first = store.explain_list_commands(&q).await.expect("explain");
        let later = store
            .explain_list_commands_after(&q, Some(&middle))
            .await
            .expect("explain");
        eprintln!("ListCommands {name}:\n{first}page after a key:\n{later}");
        let table = if q.instance_id.is_some() {
            "invocations i"
        } else {
            "commands c"
        };
        problems.extend(plan_problem(&name, &first, index, table));
        problems.extend(plan_problem(
            &format!("{name} (after a key)"),
            &later,
            index,
            table,
        ));
        if q.instance_id.is_some() {
            for plan in [&first, &later] {
                problems.extend(plan_problem(&name, plan, "commands_pkey", "commands c"));
            }
        }
    }
    // Two filters: one drives the index read, the other filters it; still no sort.
    let q = CommandQuery {
        statuses: vec![StatusMatch::Status("Failed")],
        document_names: vec!["Patch".into()],
        stage: Some(ExecutionStage::Complete),
        ..Default::default()
    };
    let plan = store.explain_list_commands(&q).await.expect("explain");
    problems.extend(plan_problem(
        "Status+DocumentName+ExecutionStage",
        &plan,
        "commands_by_status",
        "commands c",
    ));
    assert_no_problems(&problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_every_list_invocations_filter_is_one_index_range_read() {
    let Some(admin) = admin_url("pg_every_list_invocations_filter_is_one_index_range_read") else {
        return;
    };
    let db = temp_db(&admin).await;
    let store = seeded_store(&db).await;
    let newest = store
        .list_commands(&CommandQuery::default(), None, 1)
        .await
        .expect("list");
    let some_id = newest[0].id.clone();
    let mut cases = vec![
        (
            "none".to_string(),
            CommandQuery::default(),
            "invocations_by_time",
        ),
        (
            "CommandId".to_string(),
            CommandQuery {
                command_id: Some(some_id.clone()),
                ..Default::default()
            },
            "invocations_pkey",
        ),
        (
            "InstanceId".to_string(),
            CommandQuery {
                instance_id: Some(node(7)),
                ..Default::default()
            },
            "invocations_by_node",
        ),
        (
            "CommandId+InstanceId".to_string(),
            CommandQuery {
                command_id: Some(some_id),
                instance_id: Some(node(7)),
                ..Default::default()
            },
            "invocations_pkey",
        ),
    ];
    for value in fleetrun_core::query::status_values(ListKind::Invocations) {
        let mut q = CommandQuery::default();
        q.add_filter(ListKind::Invocations, "Status", value)
            .expect("filter");
        let index = match q.statuses[0] {
            StatusMatch::Status(_) => "invocations_by_status",
            StatusMatch::Details(_) => "invocations_by_details",
        };
        cases.push((format!("Status={value}"), q, index));
    }
    for (key, value, index) in [
        ("DocumentName", "Deploy", "invocations_by_document"),
        (
            "InvokedAfter",
            "2024-07-03T12:00:00Z",
            "invocations_by_time",
        ),
        (
            "InvokedBefore",
            "2024-07-03T12:00:00Z",
            "invocations_by_time",
        ),
    ] {
        let mut q = CommandQuery::default();
        q.add_filter(ListKind::Invocations, key, value)
            .expect("filter");
        cases.push((format!("{key}={value}"), q, index));
    }
    let key = PageKey {
        requested_at: T0 + i64::try_from(SEEDED / 2).expect("small") * 1_000,
        seq: i64::try_from(SEEDED / 2).expect("small"),
        instance_id: Some(node(3).to_string()),
    };
    let mut problems = Vec::new();
    for (name, q, index) in cases {
        for after in [None, Some(&key)] {
            let plan = store
                .explain_list_invocations(&q, after)
                .await
                .expect("explain");
            eprintln!(
                "ListCommandInvocations {name} after={}:\n{plan}",
                after.is_some()
            );
            problems.extend(plan_problem(&name, &plan, index, "invocations i"));
        }
    }
    assert_no_problems(&problems);
}

/// The lifecycle's lookups read indexes too (a claim runs on every poll of every node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_seeded_data_pages_and_claims_like_sqlite() {
    let Some(admin) = admin_url("pg_seeded_data_pages_and_claims_like_sqlite") else {
        return;
    };
    let db = temp_db(&admin).await;
    let store = seeded_store(&db).await;
    // A full walk by (requested_at, seq) pages: every command once, newest first.
    let mut after: Option<PageKey> = None;
    let mut seen = HashSet::new();
    let mut last_key = (i64::MAX, i64::MAX);
    loop {
        let page = store
            .list_commands(&CommandQuery::default(), after.as_ref(), 500)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        for c in &page {
            assert!((c.requested_at, c.seq) < last_key, "newest first");
            last_key = (c.requested_at, c.seq);
            assert!(seen.insert(c.id.clone()), "listed twice");
        }
        after = Some(PageKey {
            requested_at: last.requested_at,
            seq: last.seq,
            instance_id: None,
        });
    }
    assert_eq!(seen.len() as u64, SEEDED);
    // Seeded Pending work is claimed like any other.
    let claim = store.claim(&node(0), "s", &[], T0).await.expect("claim");
    assert!(!claim.runs.is_empty());
}

/// DescribeInstanceInformation and ListDocuments page through these: each page one range read of
/// the key's primary key (plus a primary-key lookup of each document's default version), no sort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_node_and_document_pages_read_the_primary_key() {
    let Some(admin) = admin_url("pg_node_and_document_pages_read_the_primary_key") else {
        return;
    };
    let db = temp_db(&admin).await;
    let store = PostgresStore::connect(db.url()).await.expect("connect");
    // Rows straight in by SQL: thousands of registrations through the API would take minutes.
    raw(db.url())
        .await
        .batch_execute(
            "INSERT INTO nodes (instance_id, activation_id, name, iam_role, registered_at,
                 last_ping_at, public_key, computer_name, ip_address, platform_type, platform_name,
                 platform_version, agent_version)
             SELECT 'mi-' || lpad(to_hex(n), 17, '0'), 'a', 'web', 'role', 0, 0, 'key-' || n,
                 'host', '10.0.0.1', 'Linux', 'Debian', '12', '0.1.0'
             FROM generate_series(1, 5000) AS n;
             INSERT INTO documents (name, document_type, created_at, default_version,
                 latest_version, last_assigned, tags_json)
             SELECT 'Doc-' || n, 'Command', 0, 1, 2, 2, '[]' FROM generate_series(1, 5000) AS n;
             INSERT INTO document_versions (name, version, content, format, hash, schema_version,
                 description, platform_types, display_name, target_type, created_at)
             SELECT 'Doc-' || n, v, '{}', 'JSON', 'h' || v, '2.2', '', '[]', '', '', 0
             FROM generate_series(1, 5000) AS n, generate_series(1, 2) AS v;
             ANALYZE",
        )
        .await
        .expect("seed");
    let middle = node(2500);
    let mut problems = Vec::new();
    for (name, after) in [("nodes", None), ("nodes after a key", Some(&middle))] {
        let plan = store.explain_nodes_page(after).await.expect("explain");
        eprintln!("{name}:\n{plan}");
        problems.extend(plan_problem(name, &plan, "nodes_pkey", "nodes"));
    }
    for (name, after) in [
        ("documents", None),
        ("documents after a key", Some("Doc-2500")),
    ] {
        let plan = store.explain_documents_page(after).await.expect("explain");
        eprintln!("{name}:\n{plan}");
        problems.extend(plan_problem(name, &plan, "documents_pkey", "documents d"));
        problems.extend(plan_problem(
            name,
            &plan,
            "document_versions_pkey",
            "document_versions v",
        ));
        // One lookup per document, never a merge join's read of the versions table.
        if !plan.contains("Index Cond: ((name = d.name) AND (version = d.default_version))") {
            problems.push(format!(
                "{name}: the default version is no key lookup:\n{plan}"
            ));
        }
    }
    assert_no_problems(&problems);
    // The seeded rows decode, and a walk sees each once.
    let mut after: Option<InstanceId> = None;
    let mut seen = 0;
    loop {
        let page = store.nodes_page(after.as_ref(), 700).await.expect("page");
        let Some(last) = page.last() else { break };
        seen += page.len();
        after = Some(last.instance_id.clone());
    }
    assert_eq!(seen, 5000);
    let docs = store
        .documents_page(Some("Doc-2500"), 3)
        .await
        .expect("documents");
    let summary: Vec<_> = docs
        .iter()
        .map(|(d, v)| (d.name.as_str(), v.version))
        .collect();
    assert_eq!(summary, [("Doc-2501", 1), ("Doc-2502", 1), ("Doc-2503", 1)]);
}

// ---- (b) migrations ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_migrations_are_idempotent_and_race_free() {
    let Some(admin) = admin_url("pg_migrations_are_idempotent_and_race_free") else {
        return;
    };
    let db = temp_db(&admin).await;
    // Two servers starting at once on a fresh database: both succeed, each migration ran once.
    let (a, b) = tokio::join!(
        PostgresStore::connect(db.url()),
        PostgresStore::connect(db.url())
    );
    let (a, b) = (a.expect("first"), b.expect("second"));
    let c = raw(db.url()).await;
    let rows = c
        .query("SELECT version FROM schema_version ORDER BY version", &[])
        .await
        .expect("versions");
    let applied: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    // Every version once, in order, however many this build has (at least the live-output one).
    let latest = i64::try_from(applied.len()).expect("count");
    assert!(latest >= 4, "{applied:?}");
    assert_eq!(applied, (1..=latest).collect::<Vec<i64>>());
    // Both work on the same data.
    let sent = a
        .insert_command(new_command(T0, "Doc", vec![node(1)]))
        .await
        .expect("insert");
    assert!(b.command(&sent.command.id).await.expect("get").is_some());
    drop((a, b));
    // Connecting again changes nothing.
    let again = PostgresStore::connect(db.url()).await.expect("reconnect");
    drop(again);
    let rows = c
        .query("SELECT count(*) FROM schema_version", &[])
        .await
        .expect("count");
    assert_eq!(rows[0].get::<_, i64>(0), latest);
    // A database from a newer build is refused.
    c.batch_execute("INSERT INTO schema_version (version) VALUES (99)")
        .await
        .expect("bump");
    match PostgresStore::connect(db.url()).await {
        Err(CoreError::Store(msg)) => assert!(msg.contains("newer"), "{msg}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

// ---- (c) several stores on one database ----

/// Two stores (two servers) on one database, several pollers each, all for the same node:
/// every invocation is handed out (in `runs`) exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_two_servers_never_deliver_an_invocation_twice() {
    let Some(admin) = admin_url("pg_two_servers_never_deliver_an_invocation_twice") else {
        return;
    };
    let db = temp_db(&admin).await;
    let a = PostgresStore::connect(db.url()).await.expect("a");
    let b = PostgresStore::connect(db.url()).await.expect("b");
    const COMMANDS: usize = 40;
    let mut ids = Vec::new();
    for i in 0..COMMANDS {
        let at = T0 + i64::try_from(i).expect("small");
        let cmd = new_command(at, "Doc", vec![node(1), node(2)]);
        ids.push(a.insert_command(cmd).await.expect("insert").command.id);
    }
    // What the agent holds, shared by its pollers so none reconciles another's work away.
    let held: Arc<Mutex<HashSet<CommandId>>> = Arc::default();
    let delivered: Arc<Mutex<Vec<CommandId>>> = Arc::default();
    let mut tasks = Vec::new();
    for (k, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        let (held, delivered) = (held.clone(), delivered.clone());
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while delivered.lock().expect("lock").len() < COMMANDS && Instant::now() < deadline {
                let known: Vec<CommandId> = held.lock().expect("lock").iter().cloned().collect();
                let now = T0 + 100 + i64::try_from(k).expect("small");
                let claim = store
                    .claim(&node(1), "s", &known, now)
                    .await
                    .expect("claim");
                {
                    let mut h = held.lock().expect("lock");
                    let mut d = delivered.lock().expect("lock");
                    for run in claim.runs {
                        h.insert(run.command_id.clone());
                        d.push(run.command_id);
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("poller");
    }
    let delivered = delivered.lock().expect("lock").clone();
    let unique: HashSet<&CommandId> = delivered.iter().collect();
    assert_eq!(
        unique.len(),
        delivered.len(),
        "an invocation was delivered twice"
    );
    assert_eq!(unique.len(), COMMANDS, "every invocation was delivered");
    for id in &ids {
        let inv = b
            .invocation(id, &node(1))
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(inv.state, InvocationState::InProgress);
    }
    assert_counts_match_rows(&db).await;
}

/// Released-and-unsettled invocations of a command (what MaxConcurrency bounds), and whether its
/// stored counters agree with its rows.
async fn assert_counts_match_rows(db: &TempDatabase) {
    let c = raw(db.url()).await;
    let commands = c
        .query(
            "SELECT seq, counts_json, released, acked, settled FROM commands",
            &[],
        )
        .await
        .expect("commands");
    for row in commands {
        let seq: i64 = row.get(0);
        let counts: StateCounts = serde_json::from_str(row.get(1)).expect("counts");
        let states = c
            .query(
                "SELECT state, released FROM invocations WHERE command_seq = $1",
                &[&seq],
            )
            .await
            .expect("invocations");
        let mut actual = StateCounts::default();
        let (mut released, mut acked, mut settled) = (0i64, 0i64, 0i64);
        for s in &states {
            let state = InvocationState::parse(s.get(0)).expect("state");
            actual.add(state, 1);
            if s.get::<_, bool>(1) {
                released += 1;
                acked += i64::from(state != InvocationState::Pending);
                settled += i64::from(state.is_terminal());
            }
        }
        assert_eq!(
            counts, actual,
            "command {seq}: counts drifted from its rows"
        );
        let stored: (i64, i64, i64) = (row.get(2), row.get(3), row.get(4));
        assert_eq!(
            stored,
            (released, acked, settled),
            "command {seq}: rollout counters drifted"
        );
    }
}

/// Two stores, many nodes polling and reporting through either, one command with
/// MaxConcurrency 3: at no moment are more than 3 of its invocations released and unsettled,
/// every node runs once, and the counters match the rows at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_two_servers_never_exceed_max_concurrency() {
    let Some(admin) = admin_url("pg_two_servers_never_exceed_max_concurrency") else {
        return;
    };
    let db = temp_db(&admin).await;
    let a = PostgresStore::connect(db.url()).await.expect("a");
    let b = PostgresStore::connect(db.url()).await.expect("b");
    const TARGETS: u64 = 30;
    const LIMIT: i64 = 3;
    let nodes: Vec<InstanceId> = (1..=TARGETS).map(node).collect();
    let mut cmd = new_command(T0, "Doc", nodes.clone());
    cmd.max_concurrency = LIMIT.to_string();
    let id = a.insert_command(cmd).await.expect("insert").command.id;

    // An observer samples the database while the agents work.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let observer = {
        let (url, done) = (db.url().to_string(), done.clone());
        tokio::spawn(async move {
            let c = raw(&url).await;
            let mut worst = 0;
            let mut samples = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let row = c
                    .query_one(
                        "SELECT count(*) FROM invocations WHERE released
                         AND state IN ('Pending', 'InProgress', 'Delayed', 'Cancelling')",
                        &[],
                    )
                    .await
                    .expect("sample");
                worst = worst.max(row.get::<_, i64>(0));
                samples += 1;
            }
            (worst, samples)
        })
    };
    let ran: Arc<Mutex<HashMap<InstanceId, usize>>> = Arc::default();
    let mut agents = Vec::new();
    for (k, n) in nodes.iter().enumerate() {
        let (n, id, ran) = (n.clone(), id.clone(), ran.clone());
        // Each node polls and reports through the two servers in turn.
        let stores = if k % 2 == 0 {
            [a.clone(), b.clone()]
        } else {
            [b.clone(), a.clone()]
        };
        agents.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(90);
            let mut turn = 0;
            while Instant::now() < deadline {
                let store = &stores[turn % 2];
                turn += 1;
                let claim = store.claim(&n, "s", &[], T0 + 10).await.expect("claim");
                if let Some(d) = claim.runs.first() {
                    *ran.lock().expect("lock").entry(n.clone()).or_default() += 1;
                    let report = stores[turn % 2]
                        .finish(&n, success(&d.command_id), T0 + 20)
                        .await
                        .expect("finish");
                    assert!(report.applied, "{n}: a delivered invocation finishes once");
                    assert_eq!(d.command_id, id);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            panic!("{n} was never released");
        }));
    }
    for t in agents {
        t.await.expect("agent");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (worst, samples) = observer.await.expect("observer");
    eprintln!("{samples} samples, at most {worst} released and unsettled");
    assert!(worst <= LIMIT, "{worst} in flight, MaxConcurrency {LIMIT}");
    let ran = ran.lock().expect("lock").clone();
    assert_eq!(ran.len() as u64, TARGETS);
    assert!(ran.values().all(|n| *n == 1), "{ran:?}");
    let agg = a
        .command(&id)
        .await
        .expect("get")
        .expect("exists")
        .aggregate();
    assert_eq!(
        (agg.completed_count, agg.target_count),
        (TARGETS as u32, TARGETS as u32)
    );
    assert_counts_match_rows(&db).await;
}

/// Expiry, cancel and reports racing from two servers: every invocation ends once, and the
/// counters match the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_two_servers_racing_cancel_expire_and_reports_keep_counts_exact() {
    let Some(admin) =
        admin_url("pg_two_servers_racing_cancel_expire_and_reports_keep_counts_exact")
    else {
        return;
    };
    let db = temp_db(&admin).await;
    let a = PostgresStore::connect(db.url()).await.expect("a");
    let b = PostgresStore::connect(db.url()).await.expect("b");
    let nodes: Vec<InstanceId> = (1..=12).map(node).collect();
    let mut ids = Vec::new();
    for i in 0..6 {
        let mut cmd = new_command(T0 + i, "Doc", nodes.clone());
        cmd.expires_at = T0 + 1_000;
        ids.push(a.insert_command(cmd).await.expect("insert").command.id);
    }
    // Deliver what the ramps released so far, through both servers.
    for (k, n) in nodes.iter().enumerate() {
        let store = if k % 2 == 0 { &a } else { &b };
        store.claim(n, "s", &[], T0 + 10).await.expect("claim");
    }
    let mut reports = Vec::new();
    for (k, n) in nodes.iter().enumerate() {
        for id in &ids {
            let store = if k % 2 == 0 { a.clone() } else { b.clone() };
            let (n, id) = (n.clone(), id.clone());
            reports.push(tokio::spawn(async move {
                store.finish(&n, success(&id), T0 + 20).await
            }));
        }
    }
    let cancel = {
        let (b, id) = (b.clone(), ids[0].clone());
        tokio::spawn(async move { b.cancel(&id, None, T0 + 30).await })
    };
    let expire_a = {
        let a = a.clone();
        tokio::spawn(async move { a.expire_due(T0 + 2_000).await })
    };
    let expire_b = {
        let b = b.clone();
        tokio::spawn(async move { b.expire_due(T0 + 2_000).await })
    };
    for r in reports {
        r.await.expect("join").expect("finish");
    }
    cancel.await.expect("join").expect("cancel");
    expire_a.await.expect("join").expect("expire");
    expire_b.await.expect("join").expect("expire");
    // Whatever interleaving happened, nothing is left live after expiry and the counts add up.
    a.expire_due(T0 + 2_000).await.expect("expire");
    for id in &ids {
        let c = a.command(id).await.expect("get").expect("exists");
        assert_eq!(c.counts.total(), 12);
        assert!(c.aggregate().state.is_terminal(), "{:?}", c.aggregate());
    }
    assert_counts_match_rows(&db).await;
}

/// One command to 500 nodes (MaxConcurrency 100%), every node polling and reporting at once
/// through two stores, woken by the effects as the ramp releases work: each node gets its invocation once, each report applies once, the
/// counters match the rows — and the polls and reports went in batches (far fewer transactions
/// than one each would take; counted by the store, since the database's commit counter also counts
/// every idle poll's read, which the test's timing makes vary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_wide_fan_out_is_claimed_and_reported_in_batches_with_exact_counts() {
    let Some(admin) =
        admin_url("pg_a_wide_fan_out_is_claimed_and_reported_in_batches_with_exact_counts")
    else {
        return;
    };
    let db = temp_db(&admin).await;
    let a = PostgresStore::connect(db.url()).await.expect("a");
    let b = PostgresStore::connect(db.url()).await.expect("b");
    const WIDTH: u64 = 500;
    let nodes: Vec<InstanceId> = (1..=WIDTH).map(node).collect();
    let mut cmd = new_command(T0, "Doc", nodes.clone());
    cmd.max_concurrency = "100%".into();
    let id = a.insert_command(cmd).await.expect("insert").command.id;
    let stats = raw(db.url()).await;
    let commits = || async {
        stats
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await
            .expect("stats")
            .get::<_, i64>(0)
    };
    // The statistics collector reports a little late; settle it before and after.
    stats
        .execute("SELECT pg_stat_clear_snapshot()", &[])
        .await
        .expect("snapshot");
    let before = commits().await;
    let batches_before = (a.batch_counts(), b.batch_counts());
    // Each node waits for a wake-up as a parked long poll does: the effects of every claim and
    // report name the nodes the ramp (1, 3, 7, … fact sheet §7.1) released work to.
    let wakes: Arc<HashMap<InstanceId, tokio::sync::Notify>> = Arc::new(
        nodes
            .iter()
            .map(|n| (n.clone(), tokio::sync::Notify::new()))
            .collect(),
    );
    let wake = |wakes: &HashMap<InstanceId, tokio::sync::Notify>, who: &[InstanceId]| {
        for n in who {
            if let Some(w) = wakes.get(n) {
                w.notify_one();
            }
        }
    };
    let mut agents = Vec::new();
    for (k, n) in nodes.iter().enumerate() {
        let store = if k % 2 == 0 { a.clone() } else { b.clone() };
        let (n, id, wakes) = (n.clone(), id.clone(), wakes.clone());
        agents.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let run = loop {
                let claim = store.claim(&n, "s", &[], T0 + 10).await.expect("claim");
                wake(&wakes, &claim.effects.wake);
                if let Some(run) = claim.runs.first() {
                    assert_eq!(claim.runs.len(), 1, "{n}: one delivery");
                    break run.clone();
                }
                assert!(Instant::now() < deadline, "{n} was never released");
                let parked = wakes.get(&n).expect("registered").notified();
                let _ = tokio::time::timeout(Duration::from_secs(2), parked).await;
            };
            assert_eq!(run.command_id, id);
            let done = store
                .finish(&n, success(&id), T0 + 20)
                .await
                .expect("finish");
            wake(&wakes, &done.effects.wake);
            assert!(done.applied, "{n}: the report applies");
            let again = store
                .finish(&n, success(&id), T0 + 21)
                .await
                .expect("finish");
            assert!(!again.applied, "{n}: a repeated report changes nothing");
        }));
    }
    for t in agents {
        t.await.expect("agent");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stats
        .execute("SELECT pg_stat_clear_snapshot()", &[])
        .await
        .expect("snapshot");
    let spent = commits().await - before;
    let agg = a
        .command(&id)
        .await
        .expect("get")
        .expect("exists")
        .aggregate();
    assert_eq!(
        (agg.completed_count, agg.target_count, agg.error_count),
        (WIDTH as u32, WIDTH as u32, 0)
    );
    assert_counts_match_rows(&db).await;
    // Every delivering claim and every report went through a batch; idle polls (answered
    // without a transaction, however often the timing makes nodes poll) are in neither count.
    let ((tx_a, jobs_a), (tx_b, jobs_b)) = (a.batch_counts(), b.batch_counts());
    let ((tx_a0, jobs_a0), (tx_b0, jobs_b0)) = batches_before;
    let (transactions, jobs) = (
        tx_a + tx_b - tx_a0 - tx_b0,
        jobs_a + jobs_b - jobs_a0 - jobs_b0,
    );
    eprintln!(
        "{jobs} polls and reports in {transactions} batched transactions; {spent} commits in all"
    );
    assert!(
        jobs >= 3 * WIDTH,
        "{jobs} batched jobs: every delivery and both reports of each node are batched"
    );
    // One transaction each would be at least 1,500.
    assert!(
        transactions * 3 < jobs,
        "{transactions} transactions for {jobs} jobs: the polls and reports were not batched"
    );
}

// ---- (d) connection failures ----

/// Nothing listens on port 1: `connect` fails at once with a storage error that names the
/// server but not the password.
#[tokio::test]
async fn pg_connect_to_a_closed_port_fails_promptly() {
    let started = Instant::now();
    let got = PostgresStore::connect("postgres://fleetrun:s3cret-pw@127.0.0.1:1/fleetrun").await;
    let elapsed = started.elapsed();
    match got {
        Err(CoreError::Store(msg)) => {
            assert!(!msg.contains("s3cret-pw"), "{msg}");
            assert!(msg.contains("127.0.0.1:1"), "{msg}");
            eprintln!("{msg}");
        }
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
}

/// A server that accepts the TCP connection and then never answers: the connect timeout ends
/// the attempt, with an error, instead of hanging.
#[tokio::test]
async fn pg_connect_to_a_silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accepts, then holds the connections open without a word.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let options = PoolOptions {
        connect_timeout: Duration::from_secs(1),
        ..PoolOptions::default()
    };
    let started = Instant::now();
    let got = PostgresStore::connect_with(
        &format!("postgres://fleetrun:s3cret-pw@127.0.0.1:{port}/fleetrun"),
        options,
    )
    .await;
    let elapsed = started.elapsed();
    silent.abort();
    match got {
        Err(CoreError::Store(msg)) => {
            assert!(!msg.contains("s3cret-pw"), "{msg}");
            eprintln!("{msg}");
        }
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
}

/// A URL that does not parse is refused without echoing it (it may hold a password).
#[tokio::test]
async fn pg_bad_url_is_refused_without_echoing_it() {
    match PostgresStore::connect("postgres://fleetrun:s3cret-pw@127.0.0.1:notaport/x").await {
        Err(CoreError::Store(msg)) => assert!(!msg.contains("s3cret-pw"), "{msg}"),
        other => panic!("expected a storage error, got {other:?}"),
    }
}

/// `url` with `params` added to its query string.
fn with_params(url: &str, params: &str) -> String {
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}{params}")
}

/// The server's `SHOW <setting>`, through a plain connection.
async fn server_setting(admin: &str, setting: &str) -> String {
    raw(admin)
        .await
        .query_one(&format!("SHOW {setting}"), &[])
        .await
        .expect("show")
        .get(0)
}

/// Says past the harness's capture why a TLS test cannot run against this server.
fn tls_skipped(test: &str, why: &str) {
    let line = format!("SKIPPED {test}: {why}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

/// With no `sslmode` (libpq's default, `prefer`) a server that offers TLS gets encrypted
/// connections — the pool's and the wake bus's; `sslmode=disable` keeps them plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_connections_are_encrypted_when_the_server_offers_tls() {
    let test = "pg_connections_are_encrypted_when_the_server_offers_tls";
    let Some(admin) = admin_url(test) else {
        return;
    };
    if server_setting(&admin, "ssl").await != "on" {
        return tls_skipped(test, "this PostgreSQL server has ssl = off");
    }
    let db = temp_db(&admin).await;
    let store = PostgresStore::connect(db.url()).await.expect("connect");
    assert!(store.uses_tls().await.expect("ask"), "prefer: encrypted");
    let plain = PostgresStore::connect(&with_params(db.url(), "sslmode=disable"))
        .await
        .expect("connect plain");
    assert!(!plain.uses_tls().await.expect("ask"), "disable: plain");
    // The wake bus listens over its own connection, with the same TLS settings.
    let woken = Arc::new(tokio::sync::Notify::new());
    let on_wake = woken.clone();
    store
        .wake_bus()
        .subscribe(Arc::new(move |_| on_wake.notify_one()));
    tokio::time::timeout(Duration::from_secs(10), woken.notified())
        .await
        .expect("the wake bus connected over TLS and started listening");
}

/// `verify-ca` trusts the root named by `sslrootcert`; `verify-full`, and `require` with a
/// root given (libpq's rule), refuse a server whose certificate that root did not sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_certificates_are_checked_against_sslrootcert() {
    let test = "pg_certificates_are_checked_against_sslrootcert";
    let Some(admin) = admin_url(test) else {
        return;
    };
    if server_setting(&admin, "ssl").await != "on" {
        return tls_skipped(test, "this PostgreSQL server has ssl = off");
    }
    let server_cert = server_setting(&admin, "ssl_cert_file").await;
    if std::fs::read(&server_cert).is_err() {
        return tls_skipped(
            test,
            &format!("cannot read the server's certificate {server_cert}"),
        );
    }
    let db = temp_db(&admin).await;
    // A self-signed server certificate is its own root: the chain checks out, whatever its name.
    let trusted = with_params(
        db.url(),
        &format!("sslmode=verify-ca&sslrootcert={server_cert}"),
    );
    let store = PostgresStore::connect(&trusted).await.expect("verify-ca");
    assert!(store.uses_tls().await.expect("ask"));

    let dir = tempfile::tempdir().expect("tempdir");
    let other =
        rcgen::generate_simple_self_signed(vec!["other.example".to_string()]).expect("certificate");
    let other_root = dir.path().join("other-root.pem");
    std::fs::write(&other_root, other.cert.pem()).expect("write root");
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = with_params(
            db.url(),
            &format!("sslmode={mode}&sslrootcert={}", other_root.display()),
        );
        let refused = PostgresStore::connect(&url).await.expect_err(mode);
        let text = refused.to_string();
        assert!(
            text.to_lowercase().contains("certificate"),
            "{mode}: the refusal names the certificate: {text}"
        );
    }
}
