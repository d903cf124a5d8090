//! A latency check for ListCommands on a large database (ignored by default; run in release):
//!
//! ```text
//! FLEETRUN_BENCH_COMMANDS=1000000 cargo test --release -p fleetrun-store --test bench_list -- --ignored --nocapture
//! ```
//!
//! Seeds N commands with `insert_commands_bulk` in the shape `fleetrun-bench` seeds (1–50 nodes per
//! command from a pool of 2,000, about 3.2 invocations per command, mixed documents and final
//! states), then times the first page (50 rows) and a later page of `list_commands` for each single
//! filter, and a full pagination walk, through the async `Store` API as the server calls it (one
//! row more than the page, as the server asks, to know whether a NextToken follows).
//!
//! Environment:
//! * `FLEETRUN_BENCH_COMMANDS` — N (default 1,000,000);
//! * `FLEETRUN_BENCH_DB` — keep the seeded database at this path and reuse it on later runs
//!   (seeding 1M commands takes minutes); the caller deletes it;
//! * `FLEETRUN_BENCH_ONLY` — comma-separated case names to run (`none`, `InstanceId`,
//!   `Status=Success`, ..., and `walk`); default all;
//! * `FLEETRUN_BENCH_SAMPLES` — first-page requests per case (default 300).

use std::collections::BTreeMap;
use std::path::PathBuf;
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
/// Distinct nodes the seeded commands target (as in `fleetrun-bench`).
const NODE_POOL: u64 = 2_000;
/// The page size of every timed request.
const PAGE: usize = 50;

fn node(n: u64) -> InstanceId {
    InstanceId::parse(&format!("mi-{:017x}", 0x00b0_0000_0000_0000_u64 + n)).expect("valid node id")
}

/// splitmix64's finaliser: a deterministic hash of the command index.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// 70 % one node, 20 % 2–5, 8 % 6–20, 2 % 21–50 (as `fleetrun-bench`'s seed).
fn target_count(h: u64) -> u64 {
    let x = h >> 8;
    match h % 100 {
        0..=69 => 1,
        70..=89 => 2 + x % 4,
        90..=97 => 6 + x % 15,
        _ => 21 + x % 30,
    }
}

fn command(i: u64) -> (NewCommand, Option<InvocationState>) {
    let docs = ["AWS-RunShellScript", "Deploy", "Patch", "Backup", "Audit"];
    let h = mix(i);
    let state = match i % 100 {
        0..=89 => Some(InvocationState::Success),
        90..=93 => Some(InvocationState::Failed),
        94..=95 => None,
        96..=97 => Some(InvocationState::InProgress),
        98 => Some(InvocationState::DeliveryTimedOut),
        _ => Some(InvocationState::Cancelled),
    };
    let lines = vec![
        format!("cd /srv/app-{}", i % 97),
        format!("./run.sh --job {i}"),
    ];
    let mut parameters = BTreeMap::new();
    parameters.insert("commands".to_string(), lines.clone());
    let at = T0 + i64::try_from(i).unwrap_or(0) * 250;
    let start = (h >> 40) % NODE_POOL;
    let targets: Vec<_> = (0..target_count(h >> 32))
        .map(|k| node((start + k) % NODE_POOL))
        .collect();
    let mut cmd = NewCommand {
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
                commands: lines,
                working_directory: String::new(),
                timeout_seconds: 3600,
                precondition: None,
            }],
        },
        targets,
        rendered: None,
        access_denied: Vec::new(),
    };
    // A stand-in for the server's rendering, of about its size (the store keeps it opaque).
    cmd.rendered = serde_json::to_string(&cmd.echo).ok();
    (cmd, state)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or_default()
}

fn key_of(c: &fleetrun_core::command::ListedCommand) -> PageKey {
    PageKey {
        requested_at: c.requested_at,
        seq: c.seq,
        instance_id: None,
    }
}

fn file_mb(path: &std::path::Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(p).ok().map(|m| m.len())
        })
        .sum::<u64>()
        / 1_000_000
}

async fn seed(store: &SqliteStore, n: u64) {
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
    eprintln!(
        "seeded {n} commands in {:.1?} ({} MB)",
        started.elapsed(),
        file_mb(store.path())
    );
}

/// Pages through every command newest first, as a client following NextToken does.
async fn walk(store: &SqliteStore) -> (usize, Duration) {
    let q = CommandQuery::default();
    let started = Instant::now();
    let mut after: Option<PageKey> = None;
    let mut total = 0;
    loop {
        let mut page = store
            .list_commands(&q, after.as_ref(), PAGE + 1)
            .await
            .expect("list");
        let more = page.len() > PAGE;
        page.truncate(PAGE);
        total += page.len();
        if !more {
            break;
        }
        after = page.last().map(key_of);
    }
    (total, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "seeds a large database; run explicitly in release"]
async fn list_commands_latency() {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let n: u64 = env("FLEETRUN_BENCH_COMMANDS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let samples: usize = env("FLEETRUN_BENCH_SAMPLES")
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let only: Option<Vec<String>> =
        env("FLEETRUN_BENCH_ONLY").map(|v| v.split(',').map(str::to_string).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, keep) = match env("FLEETRUN_BENCH_DB") {
        Some(p) => (PathBuf::from(p), true),
        None => (dir.path().join("bench.db"), false),
    };
    let reuse = keep && path.exists();
    let store = SqliteStore::open(&path).expect("open");
    if reuse {
        let have: u64 = rusqlite::Connection::open(&path)
            .and_then(|c| c.query_row("SELECT count(*) FROM commands", [], |r| r.get(0)))
            .expect("count");
        assert_eq!(have, n, "{} holds {have} commands, not {n}", path.display());
        eprintln!("reusing {} ({} MB)", path.display(), file_mb(&path));
    } else {
        seed(&store, n).await;
    }

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
    cases.retain(|(name, _)| wanted(name));

    eprintln!(
        "{:<32} {:>5} {:>7} {:>10} {:>10} {:>12}",
        "filter", "rows", "ids/row", "p50", "p99", "page 10 p50"
    );
    let mut worst_p50 = Duration::ZERO;
    for (name, q) in &cases {
        let mut times = Vec::new();
        let mut rows = 0;
        let mut ids = 0;
        for _ in 0..samples {
            let t = Instant::now();
            let page = store.list_commands(q, None, PAGE + 1).await.expect("list");
            times.push(t.elapsed());
            rows = page.len().min(PAGE);
            ids = page
                .iter()
                .take(PAGE)
                .map(|c| c.aggregate().target_count as usize)
                .sum::<usize>();
        }
        times.sort();
        // A deep page: follow the keyset nine times, then time the tenth page.
        let mut after: Option<PageKey> = None;
        for _ in 0..9 {
            let page = store
                .list_commands(q, after.as_ref(), PAGE + 1)
                .await
                .expect("list");
            after = page.get(PAGE - 1).or(page.last()).map(key_of);
        }
        let mut deep = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            store
                .list_commands(q, after.as_ref(), PAGE + 1)
                .await
                .expect("list");
            deep.push(t.elapsed());
        }
        deep.sort();
        let p50 = percentile(&times, 0.5);
        worst_p50 = worst_p50.max(p50);
        eprintln!(
            "{name:<32} {rows:>5} {:>7.1} {:>10.3?} {:>10.3?} {:>12.3?}",
            ids as f64 / rows.max(1) as f64,
            p50,
            percentile(&times, 0.99),
            percentile(&deep, 0.5)
        );
    }
    if !cases.is_empty() {
        eprintln!("worst first-page p50: {worst_p50:.3?}");
    }
    if let Some((_, q)) = cases.iter().find(|(name, _)| name == "InstanceId") {
        let plan = store.explain_list_commands(q).expect("explain");
        eprintln!("InstanceId plan:\n{plan}");
    }
    if wanted("walk") {
        for round in 1..=2 {
            let (total, took) = walk(&store).await;
            assert_eq!(total as u64, n, "the walk returned {total} commands");
            eprintln!(
                "walk {round}: {total} commands in {took:.2?}: {:.0} commands/s ({:.1} µs per page)",
                total as f64 / took.as_secs_f64(),
                took.as_secs_f64() * 1e6 / total.div_ceil(PAGE) as f64
            );
        }
    }
}
