//! Work-directory retention. Each command leaves `state_dir/work/<command_id>/<step>/` behind
//! (`_script.sh`, the full `stdout` and `stderr`, whatever the script wrote there), as
//! amazon-ssm-agent keeps its orchestration directory; the same goes for the reports in
//! `outbox/rejected/`. [`clean`] removes what has not changed for the retention period (default 7
//! days, longer than the 48 h a step may run): at agent start, and again at most once an hour
//! after a command finishes ([`Janitor`]). Directories of commands the agent still holds are
//! never removed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// How long work directories are kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Shortest time between two cleanings while the agent runs.
const CLEAN_EVERY: Duration = Duration::from_secs(3600);

/// The newest modification time of `path` and of what lies at most two levels below it (a
/// command dir, its step dirs, their files: a long-running script's output file is recent).
fn last_change(path: &Path, depth: u32) -> Option<SystemTime> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let mut newest = meta.modified().ok()?;
    if depth > 0 && meta.is_dir() {
        for entry in std::fs::read_dir(path).ok()?.flatten() {
            if let Some(t) = last_change(&entry.path(), depth - 1) {
                newest = newest.max(t);
            }
        }
    }
    Some(newest)
}

/// Removes the entries of `dir` unchanged for `retention`, except those named in `keep`.
/// Returns how many were removed. Errors are logged, never fatal.
pub(crate) fn clean(dir: &Path, retention: Duration, keep: &HashSet<String>) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let stem = name.strip_suffix(".json").unwrap_or(&name);
        if keep.contains(stem) {
            continue;
        }
        let old = last_change(&path, 2)
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= retention);
        if !old {
            continue;
        }
        let gone = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match gone {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an old work entry")
            }
        }
    }
    removed
}

/// Cleans the work root and `outbox/rejected/` now and then.
#[derive(Debug)]
pub(crate) struct Janitor {
    dirs: Vec<PathBuf>,
    retention: Duration,
    last: Mutex<Option<Instant>>,
}

impl Janitor {
    pub(crate) fn new(dirs: Vec<PathBuf>, retention: Duration) -> Self {
        Self {
            dirs,
            retention,
            last: Mutex::new(None),
        }
    }

    /// Cleans if it never did or did more than an hour ago; blocking (file system walks).
    pub(crate) fn run_if_due(&self, keep: &HashSet<String>) {
        {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < CLEAN_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let removed: usize = self
            .dirs
            .iter()
            .map(|d| clean(d, self.retention, keep))
            .sum();
        if removed > 0 {
            tracing::info!(
                removed,
                retention_secs = self.retention.as_secs(),
                "removed old work directories"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dates `path` `age` ago.
    fn age(path: &Path, age: Duration) {
        let file = std::fs::File::open(path).expect("open");
        file.set_modified(SystemTime::now() - age)
            .expect("set mtime");
    }

    #[test]
    fn old_entries_go_recent_and_held_ones_stay() {
        let root = tempfile::tempdir().expect("tempdir");
        let week = Duration::from_secs(8 * 24 * 3600);
        for id in ["old", "held", "fresh"] {
            let step = root.path().join(id).join("0");
            std::fs::create_dir_all(&step).expect("mkdir");
            std::fs::write(step.join("stdout"), "x").expect("write");
            for p in [step.join("stdout"), step.clone(), root.path().join(id)] {
                age(&p, week);
            }
        }
        std::fs::write(root.path().join("old.json"), "{}").expect("write");
        age(&root.path().join("old.json"), week);
        // A long-running script still writing its output.
        std::fs::write(root.path().join("fresh/0/stdout"), "still running").expect("write");
        let keep: HashSet<String> = ["held".to_owned()].into();
        assert_eq!(clean(root.path(), DEFAULT_RETENTION, &keep), 2);
        assert!(!root.path().join("old").exists() && !root.path().join("old.json").exists());
        assert!(root.path().join("held").exists(), "held by the agent");
        assert!(
            root.path().join("fresh").exists(),
            "its output changed recently"
        );
    }

    #[test]
    fn the_janitor_runs_at_most_hourly() {
        let root = tempfile::tempdir().expect("tempdir");
        let janitor = Janitor::new(vec![root.path().to_owned()], Duration::ZERO);
        std::fs::create_dir(root.path().join("a")).expect("mkdir");
        janitor.run_if_due(&HashSet::new());
        assert!(!root.path().join("a").exists());
        std::fs::create_dir(root.path().join("b")).expect("mkdir");
        janitor.run_if_due(&HashSet::new());
        assert!(root.path().join("b").exists(), "not due again yet");
    }
}
