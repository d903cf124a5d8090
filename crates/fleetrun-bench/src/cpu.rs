//! Where a request's CPU goes: per-thread on-CPU time from `/proc/self/task/*/schedstat`, grouped
//! by thread name into the `aws-sdk-ssm` client, the server's HTTP runtime and the store: SQLite's
//! threads, or on PostgreSQL the database server's own processes (`/proc/<pid>/schedstat` of every
//! process named `postgres`; the benchmark is the only client of the database while it runs).
//!
//! The in-process server runs on its own runtime whose threads are named [`SERVER_THREAD`] (the
//! PostgreSQL driver's work runs there too); SQLite's reader and writer threads are named
//! `fleetrun-sqlite-…`; every other thread of the process (the harness's runtime, where the client
//! runs) counts as client. Nanosecond resolution, unlike `/proc/*/stat`'s 10 ms ticks.

use std::collections::HashMap;
use std::time::Duration;

/// Thread name of the in-process server's runtime (15 bytes: the kernel keeps 15).
pub const SERVER_THREAD: &str = "fleetrun-server";

/// CPU time by side, over some interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSplit {
    pub client: Duration,
    pub server: Duration,
    /// SQLite's threads, or the PostgreSQL server's processes.
    pub store: Duration,
}

impl CpuSplit {
    /// This split divided evenly over `n` requests.
    pub fn per(&self, n: usize) -> CpuSplit {
        let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        CpuSplit {
            client: self.client / n,
            server: self.server / n,
            store: self.store / n,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
    Sqlite,
}

/// On-CPU nanoseconds of every thread of this process, by thread id, and of every PostgreSQL
/// server process, by pid.
pub struct Snapshot {
    threads: HashMap<String, (Side, u64)>,
    postgres: HashMap<String, u64>,
}

fn side(comm: &str) -> Side {
    if comm.starts_with(SERVER_THREAD) {
        Side::Server
    } else if comm.starts_with("fleetrun-sqlit") {
        Side::Sqlite
    } else {
        Side::Client
    }
}

/// `(comm, on-CPU ns)` of each entry of `dir` (`/proc/self/task` or `/proc`), by entry name;
/// entries that cannot be read (just exited, not a process) are skipped.
fn read_schedstats(dir: &str) -> impl Iterator<Item = (String, String, u64)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let ns = std::fs::read_to_string(path.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())?;
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            Some((
                entry.file_name().to_string_lossy().into_owned(),
                comm.trim().to_string(),
                ns,
            ))
        })
}

/// Reads every counter. `postgres`: also the PostgreSQL server's processes.
pub fn snapshot_with(postgres: bool) -> Snapshot {
    let threads = read_schedstats("/proc/self/task")
        .map(|(tid, comm, ns)| (tid, (side(&comm), ns)))
        .collect();
    let postgres = if postgres {
        read_schedstats("/proc")
            .filter(|(_, comm, _)| comm == "postgres")
            .map(|(pid, _, ns)| (pid, ns))
            .collect()
    } else {
        HashMap::new()
    };
    Snapshot { threads, postgres }
}

impl Snapshot {
    /// CPU time spent since `self` (threads started since count from zero).
    pub fn elapsed(&self) -> CpuSplit {
        let now = snapshot_with(!self.postgres.is_empty());
        let mut split = CpuSplit::default();
        for (tid, (side, ns)) in now.threads {
            let before = self.threads.get(&tid).map_or(0, |(_, b)| *b);
            let spent = Duration::from_nanos(ns.saturating_sub(before));
            match side {
                Side::Client => split.client += spent,
                Side::Server => split.server += spent,
                Side::Sqlite => split.store += spent,
            }
        }
        for (pid, ns) in now.postgres {
            let before = self.postgres.get(&pid).copied().unwrap_or(0);
            split.store += Duration::from_nanos(ns.saturating_sub(before));
        }
        split
    }
}
