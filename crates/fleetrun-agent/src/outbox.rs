//! The outbox: finished commands' [`ResultReport`]s persisted under `state_dir/outbox/<id>.json`
//! until the server acknowledges them, so a result survives a lost response, a server outage or
//! an agent restart. A report the server refuses outright is moved to `outbox/rejected/` for an
//! operator to look at instead of being retried forever; the fallback report that replaces it
//! (`report::fallback`) waits under the command's usual name. It owns file handling only; sending
//! is the channel's job.

use std::path::{Path, PathBuf};

use fleetrun_wire::agent::ResultReport;

use crate::identity::{ensure_private_dir, write_private_file};
use crate::AgentError;

/// Directory of unacknowledged result reports.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// Opens (creating if needed) `state_dir/outbox`.
    pub(crate) fn open(state_dir: &Path) -> Result<Self, AgentError> {
        let dir = state_dir.join("outbox");
        ensure_private_dir(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, command_id: &str) -> PathBuf {
        self.dir.join(format!("{command_id}.json"))
    }

    /// Persists a report (atomically, mode 0600). The id must satisfy [`valid_command_id`].
    pub(crate) fn save(&self, report: &ResultReport) -> Result<(), AgentError> {
        let json = serde_json::to_vec(report)
            .map_err(|e| AgentError::io("encoding a result report", std::io::Error::other(e)))?;
        write_private_file(&self.path(&report.command_id), &json)
    }

    /// True when a report of this command waits to be sent.
    pub(crate) fn contains(&self, command_id: &str) -> bool {
        valid_command_id(command_id) && self.path(command_id).exists()
    }

    /// Forgets an acknowledged report.
    pub(crate) fn remove(&self, command_id: &str) {
        let path = self.path(command_id);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove outbox entry");
            }
        }
    }

    /// Moves a report the server refused to `outbox/rejected/`, out of the retry path.
    pub(crate) fn reject(&self, command_id: &str) {
        self.quarantine(&self.path(command_id));
    }

    /// `outbox/rejected/`.
    pub(crate) fn rejected_dir(&self) -> PathBuf {
        self.dir.join("rejected")
    }

    /// True when a report of this command was refused before: the one pending now is its fallback.
    pub(crate) fn has_rejected(&self, command_id: &str) -> bool {
        self.rejected_dir()
            .join(format!("{command_id}.json"))
            .exists()
    }

    fn quarantine(&self, path: &Path) {
        let rejected = self.rejected_dir();
        let moved = ensure_private_dir(&rejected).ok().and_then(|()| {
            let target = rejected.join(path.file_name()?);
            std::fs::rename(path, target).ok()
        });
        if moved.is_none() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Every pending report, oldest first. Unreadable files are quarantined and skipped.
    pub(crate) fn load_all(&self) -> Vec<ResultReport> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<(std::time::SystemTime, ResultReport)> = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                // A `.tmp` left by a crash mid-write is incomplete by construction.
                if path.is_file() {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            let parsed = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<ResultReport>(&b).ok())
                .filter(|r| {
                    valid_command_id(&r.command_id)
                        && path.file_stem().and_then(|s| s.to_str()) == Some(r.command_id.as_str())
                });
            match parsed {
                Some(report) => {
                    let mtime = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
                    found.push((mtime, report));
                }
                None => {
                    tracing::warn!(path = %path.display(), "unreadable outbox entry; moved to rejected/");
                    self.quarantine(&path);
                }
            }
        }
        found.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| a.1.command_id.cmp(&b.1.command_id))
        });
        found.into_iter().map(|(_, r)| r).collect()
    }
}

/// Command ids become file and directory names, so only a safe alphabet is accepted
/// (`[A-Za-z0-9_.-]`, 1..=128 characters, not starting with a dot). Real ids are UUIDs.
pub(crate) fn valid_command_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetrun_wire::agent::Outcome;

    fn report(id: &str) -> ResultReport {
        ResultReport {
            command_id: id.into(),
            outcome: Outcome::Success,
            response_code: 0,
            elapsed_ms: 1,
            steps: vec![],
            finished_at_ms: None,
            held_ms: 0,
        }
    }

    #[test]
    fn save_load_remove_reject() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(dir.path()).expect("open");
        outbox.save(&report("a")).expect("save");
        outbox.save(&report("b")).expect("save");
        std::fs::write(dir.path().join("outbox/junk.json"), b"{").expect("write");
        let mut ids: Vec<_> = outbox
            .load_all()
            .into_iter()
            .map(|r| r.command_id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["a", "b"]);
        assert!(dir.path().join("outbox/rejected/junk.json").exists());
        outbox.remove("a");
        assert!(!outbox.has_rejected("b"));
        outbox.reject("b");
        assert!(outbox.load_all().is_empty());
        assert!(dir.path().join("outbox/rejected/b.json").exists());
        assert!(outbox.has_rejected("b"));
    }

    #[test]
    fn command_ids_are_safe_file_names() {
        assert!(valid_command_id("0b5d1f0e-3c6e-4bb0-9c1e-5a3b7f6e2d10"));
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b", "é"] {
            assert!(!valid_command_id(bad), "{bad:?}");
        }
    }
}
