//! Seeding a store with N commands of realistic variety, through
//! each store's `insert_commands_bulk` (the store API, not HTTP: a million SendCommands over HTTP
//! would measure SendCommand, not ListCommands).
//!
//! The shape of the history, deterministic for a given N (a splitmix64 hash of the index):
//! * request times spread evenly over the year ending now, in insertion order;
//! * 1–50 invocations per command, skewed like real use (70 % one node, 20 % 2–5, 8 % 6–20,
//!   2 % 21–50; about 3.2 invocations per command), drawn from a pool of [`NODE_POOL`] nodes;
//! * eight document names, AWS-RunShellScript the most common;
//! * final states for everything older than a day (Success 88 %, Failed 5 %, ExecutionTimedOut 2 %,
//!   DeliveryTimedOut 2 %, Cancelled 2 %, Terminated 1 %); a quarter of the last day's commands are
//!   still Pending or InProgress, with an expiry in the future so the server's timekeeper leaves
//!   the seeded data alone while it is being measured.

use std::collections::BTreeMap;
use std::time::Instant;

use fleetrun_core::clock::Millis;
use fleetrun_core::command::{CommandEcho, NewCommand};
use fleetrun_core::document::{Plan, PlanStep};
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::status::InvocationState;
use fleetrun_store::{PostgresStore, SqliteStore};

/// Distinct nodes the seeded commands target.
pub const NODE_POOL: u64 = 2_000;
/// Document names, most common first (weights in [`document`]).
pub const DOCUMENTS: [&str; 8] = [
    "AWS-RunShellScript",
    "Deploy-WebApp",
    "Patch-Baseline",
    "Backup-Nightly",
    "Audit-Users",
    "Rotate-Logs",
    "Restart-Service",
    "Collect-Diagnostics",
];
const DAY_MS: Millis = 86_400_000;
const YEAR_MS: Millis = 365 * DAY_MS;
/// Commands seeded per transaction.
const BATCH: u64 = 20_000;

/// What was seeded, for the report and for building queries.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub commands: u64,
    pub invocations: u64,
    /// Time of the oldest and the newest seeded command.
    pub first_at: Millis,
    pub last_at: Millis,
    pub seconds: f64,
    pub db_bytes: u64,
}

/// A deterministic 64-bit hash of `x` (splitmix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The seeded node with index `n` (also used by the InstanceId query).
pub fn node(n: u64) -> InstanceId {
    let id = format!("mi-{:017x}", 0x00b0_0000_0000_0000_u64 + n);
    // The format above always yields a valid id; fall back to a random one rather than panic.
    InstanceId::parse(&id).unwrap_or_else(InstanceId::generate)
}

fn target_count(h: u64) -> u64 {
    let r = h % 100;
    let x = h >> 8;
    match r {
        0..=69 => 1,
        70..=89 => 2 + x % 4,
        90..=97 => 6 + x % 15,
        _ => 21 + x % 30,
    }
}

fn document(h: u64) -> &'static str {
    let i = match h % 100 {
        0..=49 => 0,
        50..=61 => 1,
        62..=71 => 2,
        72..=79 => 3,
        80..=86 => 4,
        87..=92 => 5,
        93..=96 => 6,
        _ => 7,
    };
    DOCUMENTS[i]
}

fn final_state(h: u64) -> InvocationState {
    match h % 100 {
        0..=87 => InvocationState::Success,
        88..=92 => InvocationState::Failed,
        93..=94 => InvocationState::ExecutionTimedOut,
        95..=96 => InvocationState::DeliveryTimedOut,
        97..=98 => InvocationState::Cancelled,
        _ => InvocationState::Terminated,
    }
}

/// The document and the target nodes of command `i` (shared with the moto seeding).
pub fn shape(i: u64) -> (&'static str, Vec<InstanceId>) {
    let h = mix(i);
    let count = target_count(h >> 32);
    let start = (h >> 40) % NODE_POOL;
    let targets = (0..count).map(|k| node((start + k) % NODE_POOL)).collect();
    (document(h >> 4), targets)
}

/// Command `i` of `n`, requested between `first_at` and `now`.
fn command(i: u64, n: u64, first_at: Millis, now: Millis) -> (NewCommand, Option<InvocationState>) {
    let h = mix(i);
    let span = i128::from(now - first_at);
    let offset = span * i128::from(i) / i128::from(n.max(1));
    let at = first_at + i64::try_from(offset).unwrap_or(0);
    let recent = now - at < DAY_MS;
    let state = if recent && (h >> 20).is_multiple_of(4) {
        if (h >> 24).is_multiple_of(3) {
            None
        } else {
            Some(InvocationState::InProgress)
        }
    } else {
        Some(final_state(h >> 12))
    };
    // Live commands must not expire while the benchmark runs (the timekeeper would rewrite them).
    let expires_at = if state.is_some_and(|s| s.is_terminal()) {
        at + 2 * 3_600_000
    } else {
        now + 2 * DAY_MS
    };
    let (doc, targets) = shape(i);
    let lines = vec![
        format!("cd /srv/app-{}", i % 97),
        format!("./run.sh --job {i}"),
    ];
    let mut parameters = BTreeMap::new();
    parameters.insert("commands".to_string(), lines.clone());
    let mut cmd = NewCommand {
        id: CommandId::generate(),
        requested_at: at,
        expires_at,
        document_name: doc.into(),
        document_version: String::new(),
        comment: if h.is_multiple_of(3) {
            format!("nightly job {}", i % 1000)
        } else {
            String::new()
        },
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
    // As SendCommand does, so pages list these commands the way they list sent ones.
    cmd.rendered = fleetrun_server::render_command(&cmd).ok();
    (cmd, state)
}

/// The store being seeded, as the harness holds it.
pub enum Target<'a> {
    Sqlite(&'a SqliteStore),
    Postgres(&'a PostgresStore),
}

/// Seeds `n` commands into `store` in transactions of [`BATCH`] commands.
pub async fn seed(store: Target<'_>, n: u64, now: Millis) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let first_at = now - YEAR_MS;
    let mut invocations = 0u64;
    let mut i = 0;
    while i < n {
        let cmds: Vec<_> = (i..(i + BATCH).min(n))
            .map(|k| command(k, n, first_at, now))
            .collect();
        invocations += cmds
            .iter()
            .map(|(c, _)| c.targets.len() as u64)
            .sum::<u64>();
        match store {
            Target::Sqlite(s) => {
                let s = s.clone();
                tokio::task::spawn_blocking(move || s.insert_commands_bulk(cmds))
                    .await
                    .map_err(|e| anyhow::anyhow!("seeding task: {e}"))?
            }
            Target::Postgres(s) => s.insert_commands_bulk(cmds).await,
        }
        .map_err(|e| anyhow::anyhow!("seeding: {e}"))?;
        i += BATCH;
    }
    let seconds = started.elapsed().as_secs_f64();
    let db_bytes = match store {
        Target::Sqlite(s) => ["", "-wal"]
            .iter()
            .filter_map(|suffix| {
                let mut p = s.path().as_os_str().to_owned();
                p.push(suffix);
                std::fs::metadata(p).ok().map(|m| m.len())
            })
            .sum(),
        Target::Postgres(s) => s.database_bytes().await.unwrap_or(0),
    };
    let last_at = first_at
        + i64::try_from(
            i128::from(now - first_at) * i128::from(n.saturating_sub(1)) / i128::from(n.max(1)),
        )
        .unwrap_or(0);
    Ok(Seeded {
        commands: n,
        invocations,
        first_at,
        last_at,
        seconds,
        db_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variety_is_realistic() {
        let now = 1_800_000_000_000;
        let n = 10_000;
        let cmds: Vec<_> = (0..n).map(|i| command(i, n, now - YEAR_MS, now)).collect();
        let inv: usize = cmds.iter().map(|(c, _)| c.targets.len()).sum();
        assert!((2 * n as usize..5 * n as usize).contains(&inv), "{inv}");
        assert!(cmds
            .iter()
            .all(|(c, _)| (1..=50).contains(&c.targets.len())));
        let live = cmds
            .iter()
            .filter(|(_, s)| !s.is_some_and(|s| s.is_terminal()));
        assert!(live.clone().count() > 0);
        assert!(live.clone().all(|(c, _)| c.expires_at > now));
        assert!(cmds
            .windows(2)
            .all(|w| w[0].0.requested_at <= w[1].0.requested_at));
    }
}
