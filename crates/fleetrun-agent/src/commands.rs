//! The command table: which commands this agent knows (queued, running, or finished but not yet
//! acknowledged), the limit of `max_concurrent` running at once with the rest queued in arrival
//! order (tokio's semaphore is fair), duplicate `Run` suppression, `Cancel`, and the commands
//! dropped without a report (told to the server on the next poll). One task per command goes
//! queued → running (executor) → delivering (channel).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use fleetrun_wire::agent::{Outcome, ResultReport, StepSpec};
use tokio::task::JoinSet;

use crate::executor::{self, StopHandle, StopReason, StopSignal};
use crate::outbox::valid_command_id;
use crate::{channel, Agent};

/// How many acknowledged command ids are remembered to ignore late redeliveries of their `Run`.
const RECENT_LIMIT: usize = 1024;
/// How many dropped commands are remembered until a poll tells the server (beyond it, the oldest
/// are forgotten; the server fails them when the agent restarts).
const DROPPED_LIMIT: usize = 1024;

enum Live {
    Queued(StopHandle),
    Running(StopHandle),
    /// Finished; the report is in the outbox waiting for the server's acknowledgement.
    Reporting,
}

/// Commands this agent knows about.
#[derive(Default)]
pub(crate) struct Table {
    live: HashMap<String, Live>,
    recent: VecDeque<String>,
    recent_set: HashSet<String>,
    /// Commands this agent will never report, oldest first (`PollRequest::dropped_commands`).
    dropped: VecDeque<String>,
}

impl Table {
    /// Ids for `PollRequest.known_commands`: queued, running and unacknowledged, sorted.
    pub(crate) fn known(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.live.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub(crate) fn mark_reporting(&mut self, id: &str) {
        self.live.insert(id.to_owned(), Live::Reporting);
    }

    /// Drops an acknowledged command, remembering its id for a while.
    pub(crate) fn forget(&mut self, id: &str) {
        self.live.remove(id);
        if self.recent_set.insert(id.to_owned()) {
            self.recent.push_back(id.to_owned());
            if self.recent.len() > RECENT_LIMIT {
                if let Some(old) = self.recent.pop_front() {
                    self.recent_set.remove(&old);
                }
            }
        }
    }

    /// Forgets a command whose report the server refused, and remembers to tell the server that
    /// this agent holds nothing for it.
    pub(crate) fn drop_unreported(&mut self, id: &str) {
        self.forget(id);
        self.note_dropped(id);
    }

    fn note_dropped(&mut self, id: &str) {
        if !self.dropped.iter().any(|d| d == id) {
            self.dropped.push_back(id.to_owned());
            if self.dropped.len() > DROPPED_LIMIT {
                self.dropped.pop_front();
            }
        }
    }

    /// The dropped commands the next poll carries (at most `limit`, oldest first).
    pub(crate) fn dropped(&self, limit: usize) -> Vec<String> {
        self.dropped.iter().take(limit).cloned().collect()
    }

    /// Forgets dropped commands once a poll carrying them was answered.
    pub(crate) fn told_dropped(&mut self, told: &[String]) {
        self.dropped.retain(|d| !told.contains(d));
    }

    /// True while any command is queued or running (not merely awaiting acknowledgement).
    pub(crate) fn busy(&self) -> bool {
        self.live
            .values()
            .any(|l| matches!(l, Live::Queued(_) | Live::Running(_)))
    }

    /// Stops every queued command: they end without a report. Running ones are left alone.
    pub(crate) fn stop_queued(&self) {
        for live in self.live.values() {
            if let Live::Queued(h) = live {
                h.stop(StopReason::Shutdown);
            }
        }
    }

    /// The ids of the commands running now, sorted.
    pub(crate) fn running(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .live
            .iter()
            .filter(|(_, l)| matches!(l, Live::Running(_)))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }
}

/// Accepts a `Run` message: queued behind at most `max_concurrent` running commands. A `Run` for a
/// command this agent already finished (its report acknowledged or refused) means the server still
/// waits for it: the next poll says it is dropped, so the server ends it instead of sending it
/// again. Returns false when nothing was started (that, a duplicate of a live command, an unusable
/// id), so the channel does not poll again at once: a server that keeps re-sending (one older
/// than `dropped_commands`) gets a poll every half second or so, never a busy loop.
pub(crate) fn accept_run(
    agent: &Arc<Agent>,
    tasks: &mut JoinSet<()>,
    command_id: String,
    document_name: String,
    steps: Vec<StepSpec>,
    env: Vec<(String, String)>,
) -> bool {
    if !valid_command_id(&command_id) {
        tracing::warn!(command_id = %command_id.escape_debug(), "ignoring a Run with an unusable command id");
        return false;
    }
    let (handle, signal) = executor::stop_pair();
    {
        let mut table = agent.table();
        if table.live.contains_key(&command_id) {
            tracing::debug!(%command_id, "ignoring a Run for a command already known");
            return false;
        }
        if table.recent_set.contains(&command_id) {
            tracing::info!(%command_id, "the server sent a finished command again; telling it this agent holds nothing for it");
            table.note_dropped(&command_id);
            return false;
        }
        table.live.insert(command_id.clone(), Live::Queued(handle));
    }
    tracing::debug!(%command_id, "command queued");
    let agent = Arc::clone(agent);
    tasks.spawn(async move {
        run_one(&agent, command_id, document_name, steps, env, signal).await;
    });
    true
}

/// Handles a `Cancel`: a queued command is dropped (reported Cancelled, nothing run), a running
/// one is killed. Cancels for unknown or already finished commands are ignored.
pub(crate) fn cancel(agent: &Agent, command_id: &str) {
    match agent.table().live.get(command_id) {
        Some(Live::Queued(h) | Live::Running(h)) => {
            tracing::info!(%command_id, "cancel requested");
            h.stop(StopReason::Cancel);
        }
        Some(Live::Reporting) | None => {
            tracing::debug!(%command_id, "ignoring a Cancel for a command not queued or running");
        }
    }
}

async fn run_one(
    agent: &Arc<Agent>,
    command_id: String,
    document_name: String,
    steps: Vec<StepSpec>,
    mut env: Vec<(String, String)>,
    mut signal: StopSignal,
) {
    let permit = tokio::select! {
        biased;
        reason = signal.wait() => return stopped_while_queued(agent, command_id, reason).await,
        permit = Arc::clone(&agent.slots).acquire_owned() => permit,
    };
    if let Some(reason) = signal.get() {
        return stopped_while_queued(agent, command_id, reason).await;
    }
    {
        let mut table = agent.table();
        if let Some(Live::Queued(h)) = table.live.remove(&command_id) {
            table.live.insert(command_id.clone(), Live::Running(h));
        }
    }
    tracing::info!(%command_id, %document_name, steps = steps.len(), "command started");
    // The agent's own values first: the server's, appended later, win.
    let mut full_env = vec![
        (
            "AWS_SSM_INSTANCE_ID".to_owned(),
            agent.identity.instance_id.clone(),
        ),
        ("AWS_SSM_REGION_NAME".to_owned(), agent.cfg.region.clone()),
        ("SSM_COMMAND_ID".to_owned(), command_id.clone()),
    ];
    full_env.append(&mut env);
    let report = executor::run_command(
        &agent.exec,
        &command_id,
        &steps,
        &full_env,
        &document_name,
        signal,
    )
    .await;
    drop(permit);
    tracing::info!(%command_id, outcome = ?report.outcome, response_code = report.response_code,
        elapsed_ms = report.elapsed_ms, output = %agent.exec.work_root.join(&command_id).display(),
        "command finished");
    clean_work_dirs(agent).await;
    channel::deliver(agent, report).await;
}

/// Holds again, and finishes, the commands an earlier agent process was running when it stopped
/// (their job records): listed as running from the first poll on, so the server keeps them
/// InProgress; their reports are sent when they end. A command whose report already waits in
/// the outbox only loses its record.
pub(crate) fn resume_jobs(agent: &Arc<Agent>, tasks: &mut JoinSet<()>) {
    for job in executor::pending_jobs(&agent.exec) {
        let command_id = job.command_id.clone();
        if agent.outbox.contains(&command_id) {
            executor::forget_job(&agent.exec, &command_id);
            continue;
        }
        let (handle, signal) = executor::stop_pair();
        agent
            .table()
            .live
            .insert(command_id.clone(), Live::Running(handle));
        tracing::info!(%command_id, document_name = %job.document_name,
            steps_done = job.done.len(), steps = job.steps.len(),
            "resuming a command an earlier agent process was running");
        let agent = Arc::clone(agent);
        tasks.spawn(async move {
            // It runs already: it takes a slot if one is free, but never waits for one.
            let permit = Arc::clone(&agent.slots).try_acquire_owned().ok();
            let report = executor::resume(&agent.exec, job, signal).await;
            drop(permit);
            tracing::info!(%command_id, outcome = ?report.outcome, response_code = report.response_code,
                elapsed_ms = report.elapsed_ms, "command finished");
            clean_work_dirs(&agent).await;
            channel::deliver(&agent, report).await;
        });
    }
}

/// Removes work directories past their retention, at most hourly (`workdir::Janitor`).
pub(crate) async fn clean_work_dirs(agent: &Arc<Agent>) {
    let keep: HashSet<String> = agent.table().live.keys().cloned().collect();
    let agent = Arc::clone(agent);
    let _ = tokio::task::spawn_blocking(move || agent.janitor.run_if_due(&keep)).await;
}

async fn stopped_while_queued(agent: &Arc<Agent>, command_id: String, reason: StopReason) {
    match reason {
        StopReason::Cancel => {
            tracing::info!(%command_id, outcome = ?Outcome::Cancelled, "command cancelled before it started");
            let report = ResultReport {
                command_id,
                outcome: Outcome::Cancelled,
                response_code: -1,
                elapsed_ms: 0,
                steps: Vec::new(),
                finished_at_ms: None,
                held_ms: 0,
            };
            channel::deliver(agent, report).await;
        }
        StopReason::Shutdown => {
            // Never started: dropped without a report. The next session's known_commands omit
            // it, which tells the server it died with this process (fleetrun's marks it Failed).
            tracing::info!(%command_id, "queued command dropped at shutdown");
            agent.table().live.remove(&command_id);
        }
    }
}
