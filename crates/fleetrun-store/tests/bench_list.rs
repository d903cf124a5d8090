//! A latency check for ListCommands on a large database (ignored by default; run in release):
//!
//! ```text
//! FLEETRUN_BENCH_COMMANDS=1000000 cargo test --release -p fleetrun-store --test bench_list -- --ignored --nocapture
//! ```
//!
//! Seeds N commands (one node each, mixed documents and final states) with `insert_commands_bulk`,
//! then times the first page (50 rows) and a later page of `list_commands` for each single filter,
//! through the async `Store` API as the server calls it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fleetrun_core::clock::Millis;
use fleetrun_core::command::{CommandEcho, NewCommand};
use fleetrun_core::document::{Plan, PlanStep};
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::query::{CommandQuery, ListKind, PageKey};
use fleetrun_core::status::InvocationState;
use fleetrun_core::Store;
use fleetrun_store::SqliteStore;

const T0: Millis = 1_700_000_000_000;

fn node(n: u64) -> InstanceId {
    InstanceId::parse(&format!("mi-{n:017x}")).expect("valid node id")
}

fn command(i: u64) -> (NewCommand, Option<InvocationState>) {
    let docs = ["AWS-RunShellScript", "Deploy", "Patch", "Backup", "Audit"];
    let state = match i % 100 {
        0..=89 => Some(InvocationState::Success),
        90..=93 => Some(InvocationState::Failed),
        94..=95 => None,
        96..=97 => Some(InvocationState::InProgress),
        98 => Some(InvocationState::DeliveryTimedOut),
        _ => Some(InvocationState::Cancelled),
    };
    let mut parameters = BTreeMap::new();
    parameters.insert("commands".to_string(), vec![format!("echo {i}")]);
    let at = T0 + i64::try_from(i).unwrap_or(0) * 250;
    let targets = vec![node(i % 1000)];
    let cmd = NewCommand {
        id: CommandId::generate(),
        requested_at: at,
        expires_at: at + 7_200_000,
        document_name: docs[(i % 5) as usize].into(),
        document_version: "1".into(),
        comment: String::new(),
        timeout_seconds: 3600,
        max_concurrency: "50".into(),
        max_errors: "0".into(),
        error_budget: 0,
        echo: CommandEcho {
            parameters,
            instance_ids: targets.iter().map(ToString::to_string).collect(),
            ..Default::default()
        },
        plan: Plan {
            steps: vec![PlanStep {
                name: "aws:runShellScript".into(),
                action: "aws:runShellScript".into(),
                commands: vec![format!("echo {i}")],
                working_directory: String::new(),
                timeout_seconds: 3600,
                precondition: None,
            }],
        },
        targets,
    };
    (cmd, state)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "seeds a large database; run explicitly in release"]
async fn list_commands_latency() {
    let n: u64 = std::env::var("FLEETRUN_BENCH_COMMANDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let store = SqliteStore::open(&path).expect("open");

    let started = Instant::now();
    let batch = 20_000;
    let mut i = 0;
    while i < n {
        let cmds: Vec<_> = (i..(i + batch).min(n)).map(command).collect();
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.insert_commands_bulk(cmds))
            .await
            .expect("join")
            .expect("seed");
        i += batch;
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "seeded {n} commands in {:.1?} ({} MB)",
        started.elapsed(),
        size / 1_000_000
    );

    let some_id = store
        .list_commands(&CommandQuery::default(), None, 1)
        .await
        .expect("list")
        .first()
        .map(|c| c.id.clone());
    let mut cases: Vec<(String, CommandQuery)> = vec![
        ("none".into(), CommandQuery::default()),
        (
            "CommandId".into(),
            CommandQuery {
                command_id: some_id,
                ..Default::default()
            },
        ),
        (
            "InstanceId".into(),
            CommandQuery {
                instance_id: Some(node(7)),
                ..Default::default()
            },
        ),
    ];
    let middle = fleetrun_core::clock::iso8601(T0 + i64::try_from(n).unwrap_or(0) * 125);
    for (k, v) in [
        ("Status", "Success"),
        ("Status", "Failed"),
        ("Status", "Pending"),
        ("Status", "InProgress"),
        ("Status", "TimedOut"),
        ("Status", "Cancelled"),
        ("Status", "DeliveryTimedOut"),
        ("Status", "ExecutionTimedOut"),
        ("DocumentName", "Patch"),
        ("ExecutionStage", "Executing"),
        ("ExecutionStage", "Complete"),
        ("InvokedAfter", middle.as_str()),
        ("InvokedBefore", middle.as_str()),
    ] {
        let mut q = CommandQuery::default();
        q.add_filter(ListKind::Commands, k, v).expect("filter");
        cases.push((format!("{k}={v}"), q));
    }

    eprintln!(
        "{:<32} {:>5} {:>10} {:>10} {:>10}",
        "filter", "rows", "p50", "p99", "page 10 p50"
    );
    let mut worst_p50 = Duration::ZERO;
    for (name, q) in cases {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..300 {
            let t = Instant::now();
            let page = store.list_commands(&q, None, 50).await.expect("list");
            times.push(t.elapsed());
            rows = page.len();
        }
        times.sort();
        // A deep page: follow the keyset nine times, then time the tenth page.
        let mut after: Option<PageKey> = None;
        for _ in 0..9 {
            let page = store
                .list_commands(&q, after.as_ref(), 50)
                .await
                .expect("list");
            after = page.last().map(|c| PageKey {
                requested_at: c.requested_at,
                seq: c.seq,
                instance_id: None,
            });
        }
        let mut deep = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            store
                .list_commands(&q, after.as_ref(), 50)
                .await
                .expect("list");
            deep.push(t.elapsed());
        }
        deep.sort();
        let p50 = percentile(&times, 0.5);
        worst_p50 = worst_p50.max(p50);
        eprintln!(
            "{name:<32} {rows:>5} {:>10.3?} {:>10.3?} {:>10.3?}",
            p50,
            percentile(&times, 0.99),
            percentile(&deep, 0.5)
        );
    }
    eprintln!("worst first-page p50: {worst_p50:.3?}");
}
