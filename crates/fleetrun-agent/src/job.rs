//! The job record: what a restarted agent needs to carry on with a command it was running.
//! `work/<command_id>/job.json` (0600) is written when the command starts and after each step,
//! and removed once the command's report is in the outbox. Written without fsync: it must survive
//! the agent process, and a crash of the machine ends the processes it describes anyway. A
//! record found at start is a command whose steps may still be running, detached
//! (`step_process`): the agent lists it as held and finishes it (ARCHITECTURE.md, "Scripts
//! survive agent restarts").

use std::path::{Path, PathBuf};

use fleetrun_wire::agent::{StepReport, StepSpec};
use serde::{Deserialize, Serialize};

use crate::identity::write_private_record;
use crate::outbox::valid_command_id;
use crate::AgentError;

const JOB_FILE: &str = "job.json";

/// A command being run, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub command_id: String,
    pub document_name: String,
    pub steps: Vec<StepSpec>,
    /// The command's own variables, added to the base environment.
    pub env: Vec<(String, String)>,
    /// Wall-clock start of the first step, Unix milliseconds: step offsets are measured from it.
    pub started_at_ms: i64,
    /// Reports of the steps already finished, in order.
    pub done: Vec<StepReport>,
    /// No further step runs: a step ended the command (exit 168/169, a kill).
    #[serde(default)]
    pub ended: bool,
}

fn path(work_root: &Path, command_id: &str) -> PathBuf {
    work_root.join(command_id).join(JOB_FILE)
}

/// Persists `job` atomically. The command id must satisfy `valid_command_id`.
pub(crate) fn save(work_root: &Path, job: &Job) -> Result<(), AgentError> {
    let json = serde_json::to_vec(job)
        .map_err(|e| AgentError::io("encoding a job record", std::io::Error::other(e)))?;
    write_private_record(&path(work_root, &job.command_id), &json)
}

/// Forgets a command's record (its report is safe in the outbox). Missing is fine.
pub(crate) fn remove(work_root: &Path, command_id: &str) {
    if !valid_command_id(command_id) {
        return;
    }
    let path = path(work_root, command_id);
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a job record");
        }
    }
}

/// Every job record under `work_root`, oldest start first. Unreadable ones are logged and left.
pub(crate) fn load_all(work_root: &Path) -> Vec<Job> {
    let Ok(entries) = std::fs::read_dir(work_root) else {
        return Vec::new();
    };
    let mut jobs = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !valid_command_id(&name) {
            continue;
        }
        let file = path(work_root, &name);
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        match serde_json::from_slice::<Job>(&bytes) {
            Ok(job) if job.command_id == name => jobs.push(job),
            _ => tracing::warn!(path = %file.display(), "unreadable job record; ignored"),
        }
    }
    jobs.sort_by(|a, b| {
        a.started_at_ms
            .cmp(&b.started_at_ms)
            .then_with(|| a.command_id.cmp(&b.command_id))
    });
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, started_at_ms: i64) -> Job {
        Job {
            command_id: id.into(),
            document_name: "AWS-RunShellScript".into(),
            steps: Vec::new(),
            env: vec![("SSM_COMMAND_ID".into(), id.into())],
            started_at_ms,
            done: Vec::new(),
            ended: false,
        }
    }

    #[test]
    fn saved_jobs_load_oldest_first_and_go_when_removed() {
        let root = tempfile::tempdir().expect("tempdir");
        for (id, at) in [("b", 2), ("a", 5)] {
            std::fs::create_dir_all(root.path().join(id)).expect("mkdir");
            save(root.path(), &job(id, at)).expect("save");
        }
        std::fs::create_dir_all(root.path().join("junk")).expect("mkdir");
        std::fs::write(root.path().join("junk/job.json"), "{").expect("write");
        let ids: Vec<String> = load_all(root.path())
            .into_iter()
            .map(|j| j.command_id)
            .collect();
        assert_eq!(ids, ["b", "a"]);
        remove(root.path(), "b");
        remove(root.path(), "missing");
        assert_eq!(load_all(root.path()), vec![job("a", 5)]);
    }
}
