//! Where a request's CPU goes: per-thread on-CPU time from `/proc/self/task/*/schedstat`, grouped
//! by thread name into the `aws-sdk-ssm` client, the server's HTTP runtime and SQLite's threads.
//!
//! The in-process server runs on its own runtime whose threads are named [`SERVER_THREAD`]; the
//! store's reader and writer threads are named `fleetrun-sqlite-…`; every other thread of the
//! process (the harness's runtime, where the client runs) counts as client. Nanosecond resolution,
//! unlike `/proc/*/stat`'s 10 ms ticks.

use std::collections::HashMap;
use std::time::Duration;

/// Thread name of the in-process server's runtime (15 bytes: the kernel keeps 15).
pub const SERVER_THREAD: &str = "fleetrun-server";

/// CPU time by side, over some interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSplit {
    pub client: Duration,
    pub server: Duration,
    pub sqlite: Duration,
}

impl CpuSplit {
    /// This split divided evenly over `n` requests.
    pub fn per(&self, n: usize) -> CpuSplit {
        let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        CpuSplit {
            client: self.client / n,
            server: self.server / n,
            sqlite: self.sqlite / n,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
    Sqlite,
}

/// On-CPU nanoseconds of every thread of this process, by thread id.
pub struct Snapshot(HashMap<String, (Side, u64)>);

fn side(comm: &str) -> Side {
    if comm.starts_with(SERVER_THREAD) {
        Side::Server
    } else if comm.starts_with("fleetrun-sqlit") {
        Side::Sqlite
    } else {
        Side::Client
    }
}

/// Reads every thread's counter; threads that cannot be read (just exited) are skipped.
pub fn snapshot() -> Snapshot {
    let mut threads = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.flatten() {
            let path = entry.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            let ns = std::fs::read_to_string(path.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
            if let Some(ns) = ns {
                threads.insert(
                    entry.file_name().to_string_lossy().into_owned(),
                    (side(comm.trim()), ns),
                );
            }
        }
    }
    Snapshot(threads)
}

impl Snapshot {
    /// CPU time spent since `self` (threads started since count from zero).
    pub fn elapsed(&self) -> CpuSplit {
        let now = snapshot();
        let mut split = CpuSplit::default();
        for (tid, (side, ns)) in now.0 {
            let before = self.0.get(&tid).map_or(0, |(_, b)| *b);
            let spent = Duration::from_nanos(ns.saturating_sub(before));
            match side {
                Side::Client => split.client += spent,
                Side::Server => split.server += spent,
                Side::Sqlite => split.sqlite += spent,
            }
        }
        split
    }
}
