//! The executor: runs one command's `aws:runShellScript` steps and turns them into a
//! [`ResultReport`]. Each step is written to `<work_root>/<command_id>/<step>/_script.sh` and run
//! the way amazon-ssm-agent runs it (`sh -c <file>`: a `#!` line picks the interpreter), in its own
//! process group, in a clean environment (`environment`), with stdout and stderr going straight
//! to the files `stdout` and `stderr` beside it (`capture`): any output size works, and the agent
//! holds none of it in memory. The report carries the first `REPORT_STDOUT_CHARS` /
//! `REPORT_STDERR_CHARS` characters of each, flagged when cut, and is kept within
//! `MAX_REPORT_BYTES` (`report::fit`).
//!
//! A step's processes do not depend on the agent's (`step_process`): the command's progress is
//! kept in a job record (`job`), so an agent that stops — cleanly after its drain, or killed —
//! leaves its scripts running, and the next agent process carries on with [`resume`]: it watches
//! the running step to its real end, then runs the remaining steps. A timeout or a cancel SIGKILLs
//! the whole group (exit code 137, as amazon-ssm-agent reports on Linux/macOS). It knows nothing of
//! HTTP, queues or the outbox.
//!
//! Step results follow amazon-ssm-agent: exit 0 → Success, other codes → Failed, with
//! `failed to run commands: exit status N` appended to stderr; 168 → Success and skip the
//! remaining steps; 169 → Failed and skip them; a timed-out, cancelled or lost step also ends the
//! command; any other failure does not stop the next step. Skipped steps are not reported. The
//! command's outcome is the agent's precedence: any Failed → Failed, else any TimedOut → TimedOut,
//! else any Cancelled → Cancelled, else Success. Times are wall-clock (they must survive a
//! restart of the agent), measured from the first step's start.

use std::path::PathBuf;
use std::time::Duration;

use fleetrun_wire::agent::{
    Outcome, ResultReport, StepReport, StepSpec, REPORT_STDERR_CHARS, REPORT_STDOUT_CHARS,
};
use tokio::sync::watch;

use crate::capture::{create_output_file, read_prefix, Prefix};
use crate::environment::{valid_name, valid_value};
use crate::identity::ensure_private_dir;
use crate::job;
use crate::outbox::valid_command_id;
use crate::ship::{self, StepShipping};
use crate::step_process::{self, Ended, StepStart, Watch};

pub use crate::environment::{base_env, SCRIPT_PATH, SCRIPT_SHELL};
pub use crate::job::Job;

/// Exit code of a process the agent killed (128 + SIGKILL).
pub const KILLED_EXIT_CODE: i64 = 137;
/// Exit code meaning "step succeeded; skip the remaining steps".
pub const EXIT_SUCCESS_AND_STOP: i64 = 168;
/// Exit code meaning "step failed; skip the remaining steps".
pub const EXIT_FAILED_AND_STOP: i64 = 169;
/// Execution timeout used when a step carries none (amazon-ssm-agent's default).
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 3600;
/// Longest execution timeout honoured (AWS-RunShellScript's maximum, 48 h).
pub const MAX_TIMEOUT_SECONDS: u64 = 172_800;

/// Where and how the executor works.
#[derive(Clone)]
pub struct ExecConfig {
    /// Parent of the per-command work directories (`state_dir/work`).
    pub work_root: PathBuf,
    /// Characters of each step's stdout put into its report (default `REPORT_STDOUT_CHARS`);
    /// the whole stream stays in the step's `stdout` file.
    pub report_stdout_chars: usize,
    /// The same for stderr (default `REPORT_STDERR_CHARS`).
    pub report_stderr_chars: usize,
    /// The environment every script starts from, before the command's own variables
    /// (default [`base_env`]); nothing else of the agent's environment reaches a script.
    pub base_env: Vec<(String, String)>,
    /// Where running steps' output is shipped as it is written (`ship`; default: nowhere).
    pub output_sink: ship::Sink,
}

impl std::fmt::Debug for ExecConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecConfig")
            .field("work_root", &self.work_root)
            .field("report_stdout_chars", &self.report_stdout_chars)
            .field("report_stderr_chars", &self.report_stderr_chars)
            .finish_non_exhaustive()
    }
}

impl ExecConfig {
    /// The defaults for `work_root`. Looks the agent's user up (for `HOME`).
    pub fn new(work_root: impl Into<PathBuf>) -> Self {
        Self {
            work_root: work_root.into(),
            report_stdout_chars: REPORT_STDOUT_CHARS,
            report_stderr_chars: REPORT_STDERR_CHARS,
            base_env: base_env(),
            output_sink: std::sync::Arc::new(ship::NoSink),
        }
    }

    /// Where step `index` of `command_id` runs and leaves its output.
    pub fn step_dir(&self, command_id: &str, index: usize) -> PathBuf {
        self.work_root.join(command_id).join(index.to_string())
    }

    /// Where the records of that step's processes are kept (beside, not in, the directory the
    /// script sees as its working directory).
    pub fn step_records_dir(&self, command_id: &str, index: usize) -> PathBuf {
        self.work_root
            .join(command_id)
            .join(format!("{index}.state"))
    }
}

/// Why a command is being stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A `Cancel` message: the running step is killed and ends Cancelled.
    Cancel,
    /// The agent is shutting down. Only a command still queued is stopped by it (dropped
    /// unreported); a running one is left to run on, detached, and is resumed by the next start.
    Shutdown,
}

/// The sending half of a stop request; the first reason given wins.
#[derive(Debug)]
pub struct StopHandle(watch::Sender<Option<StopReason>>);

/// The receiving half, handed to [`run_command`].
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<Option<StopReason>>);

/// A connected stop handle and signal.
pub fn stop_pair() -> (StopHandle, StopSignal) {
    let (tx, rx) = watch::channel(None);
    (StopHandle(tx), StopSignal(rx))
}

impl StopHandle {
    /// Requests a stop; ignored if a stop was already requested.
    pub fn stop(&self, reason: StopReason) {
        self.0.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

impl StopSignal {
    /// The stop requested so far, if any.
    pub fn get(&self) -> Option<StopReason> {
        *self.0.borrow()
    }

    /// Resolves once a stop is requested (never, if the handle is dropped without one).
    pub async fn wait(&mut self) -> StopReason {
        loop {
            if let Some(reason) = *self.0.borrow_and_update() {
                return reason;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Resolves once a cancel is requested (never for a shutdown: running work outlives it).
    async fn cancelled(&mut self) {
        if self.wait().await != StopReason::Cancel {
            std::future::pending::<()>().await;
        }
    }
}

/// Runs `steps` in order for `command_id` with `env` added to [`ExecConfig::base_env`], honouring
/// cancels on `stop`. Each step's output stays in [`ExecConfig::step_dir`]; the report carries its
/// beginning and stays within `MAX_REPORT_BYTES`. The command's progress is kept in its job
/// record until [`forget_job`], so that [`resume`] can finish it after a restart of the agent.
pub async fn run_command(
    cfg: &ExecConfig,
    command_id: &str,
    steps: &[StepSpec],
    env: &[(String, String)],
    document_name: &str,
    stop: StopSignal,
) -> ResultReport {
    if !valid_command_id(command_id) {
        // The caller filters these out; never build a path from one.
        return ResultReport {
            command_id: command_id.to_owned(),
            outcome: Outcome::Failed,
            response_code: -1,
            elapsed_ms: 0,
            steps: Vec::new(),
            finished_at_ms: None,
            held_ms: 0,
        };
    }
    let job = Job {
        command_id: command_id.to_owned(),
        document_name: document_name.to_owned(),
        steps: steps.to_vec(),
        env: env.to_vec(),
        started_at_ms: step_process::unix_millis(),
        done: Vec::new(),
        ended: false,
    };
    // Records of an earlier run of the same id (a re-delivery) describe other processes.
    for index in 0..steps.len() {
        let records = cfg.step_records_dir(command_id, index);
        if let Err(e) = std::fs::remove_dir_all(&records) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %records.display(), error = %e, "cannot remove old step records");
            }
        }
    }
    let saved = ensure_private_dir(&cfg.work_root.join(command_id))
        .and_then(|()| job::save(&cfg.work_root, &job));
    if let Err(e) = saved {
        tracing::warn!(%command_id, error = %crate::error::describe(&e),
            "cannot record the command's progress; a restart of the agent will lose it");
    }
    drive(cfg, job, stop).await
}

/// The commands an earlier agent process was running when it stopped (their job records).
pub fn pending_jobs(cfg: &ExecConfig) -> Vec<Job> {
    job::load_all(&cfg.work_root)
}

/// Carries on with a command an earlier agent process was running: watches its running step to
/// its real end (or learns how it ended meanwhile), then runs the steps left.
pub async fn resume(cfg: &ExecConfig, job: Job, stop: StopSignal) -> ResultReport {
    drive(cfg, job, stop).await
}

/// Drops a command's job record once its report is safe elsewhere (the outbox).
pub fn forget_job(cfg: &ExecConfig, command_id: &str) {
    job::remove(&cfg.work_root, command_id);
}

async fn drive(cfg: &ExecConfig, mut job: Job, mut stop: StopSignal) -> ResultReport {
    let mut cancelled_between = false;
    while !job.ended && job.done.len() < job.steps.len() {
        if stop.get() == Some(StopReason::Cancel) {
            cancelled_between = true;
            break;
        }
        let index = job.done.len();
        let dirs = StepDirs {
            output: cfg.step_dir(&job.command_id, index),
            records: cfg.step_records_dir(&job.command_id, index),
        };
        let run = match step_process::read_start(&dirs.records) {
            Some(start) => continue_step(cfg, &job, index, &dirs, start, &mut stop).await,
            None => start_step(cfg, &job, index, &dirs, &mut stop).await,
        };
        job.ended = run.ends_command;
        job.done.push(run.report);
        if let Err(e) = job::save(&cfg.work_root, &job) {
            tracing::warn!(command_id = %job.command_id, error = %crate::error::describe(&e),
                "cannot record the command's progress");
        }
    }
    let mut outcomes: Vec<Outcome> = job.done.iter().map(|s| s.outcome).collect();
    if cancelled_between {
        outcomes.push(Outcome::Cancelled);
    }
    let last_end = job
        .done
        .last()
        .map(|s| job.started_at_ms + s.start_offset_ms + s.duration_ms);
    let mut report = ResultReport {
        command_id: job.command_id,
        outcome: aggregate(&outcomes),
        response_code: job.done.last().map_or(-1, |s| s.exit_code),
        elapsed_ms: job
            .done
            .last()
            .map_or(0, |s| s.start_offset_ms + s.duration_ms),
        steps: job.done,
        // The real end, even when this agent learnt of it only after a restart: the outbox then
        // says how long the report was held, and the server dates the end back by that.
        finished_at_ms: last_end,
        held_ms: 0,
    };
    crate::report::fit(&mut report, crate::report::FIT_BYTES);
    report
}

/// The command outcome from its steps' outcomes: Failed > TimedOut > Cancelled > Success
/// (amazon-ssm-agent's document status precedence). No steps → Success.
pub fn aggregate(outcomes: &[Outcome]) -> Outcome {
    [Outcome::Failed, Outcome::TimedOut, Outcome::Cancelled]
        .into_iter()
        .find(|o| outcomes.contains(o))
        .unwrap_or(Outcome::Success)
}

/// The execution timeout actually applied: 0 means "unset" (3600 s), and no step runs longer than
/// the document maximum of 172800 s.
pub fn effective_timeout(timeout_seconds: u64) -> Duration {
    let secs = match timeout_seconds {
        0 => DEFAULT_TIMEOUT_SECONDS,
        s => s.min(MAX_TIMEOUT_SECONDS),
    };
    Duration::from_secs(secs)
}

/// The text amazon-ssm-agent appends to a failed step's stderr (Go's `exec.ExitError`).
pub fn failure_trailer(exit_code: i64) -> String {
    format!("failed to run commands: exit status {exit_code}")
}

/// A step's two directories: what the script sees, and the agent's records of its processes.
struct StepDirs {
    output: PathBuf,
    records: PathBuf,
}

struct StepRun {
    report: StepReport,
    /// No later step runs (exit 168/169, a kill, a lost step).
    ends_command: bool,
}

/// How one step came out, before its output is read.
struct StepEnd {
    outcome: Outcome,
    exit_code: i64,
    ends_command: bool,
    /// Appended to the stderr file (once).
    stderr_note: Option<String>,
}

impl StepEnd {
    fn from(ended: Ended) -> Self {
        let (outcome, exit_code, ends_command, stderr_note) = match ended {
            Ended::Exited(code @ (0 | EXIT_SUCCESS_AND_STOP)) => {
                (Outcome::Success, code, code == EXIT_SUCCESS_AND_STOP, None)
            }
            Ended::Exited(code) => (
                Outcome::Failed,
                code,
                code == EXIT_FAILED_AND_STOP,
                Some(failure_trailer(code)),
            ),
            Ended::Stopped(outcome) => (outcome, KILLED_EXIT_CODE, true, None),
            // The wrapper itself was killed (the group signalled from outside the agent).
            Ended::Vanished(Some(code)) => {
                (Outcome::Failed, code, true, Some(failure_trailer(code)))
            }
            Ended::Vanished(None) => (
                Outcome::Failed,
                -1,
                true,
                Some(
                    "fleetrun-agent: the step's processes ended while no agent watched them, \
                     without an exit status (killed from outside?)"
                        .to_owned(),
                ),
            ),
            Ended::Rebooted => (
                Outcome::Failed,
                -1,
                true,
                Some(
                    "fleetrun-agent: the node restarted while the step ran; its processes are gone"
                        .to_owned(),
                ),
            ),
        };
        Self {
            outcome,
            exit_code,
            ends_command,
            stderr_note,
        }
    }
}

/// The beginning of an output file for the report; a file that cannot be read says so instead.
async fn read_output(path: PathBuf, max_chars: usize) -> Prefix {
    let read = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || read_prefix(&path, max_chars)).await
    };
    match read {
        Ok(Ok(prefix)) => prefix,
        Ok(Err(e)) => Prefix {
            text: format!("fleetrun-agent: cannot read {}: {e}\n", path.display()),
            ..Prefix::default()
        },
        Err(e) => Prefix {
            text: format!("fleetrun-agent: cannot read {}: {e}\n", path.display()),
            ..Prefix::default()
        },
    }
}

/// The script's environment: the base, then the command's variables (later ones win). Names or
/// values `execve` cannot carry are left out.
fn script_env(cfg: &ExecConfig, env: &[(String, String)]) -> Vec<(String, String)> {
    cfg.base_env
        .iter()
        .chain(env)
        .filter(|(k, v)| {
            let ok = valid_name(k) && valid_value(v);
            if !ok {
                tracing::warn!(name = %k.escape_debug(), "leaving out an unusable environment variable");
            }
            ok
        })
        .cloned()
        .collect()
}

/// A step that could not start: Failed, exit code 1, the reason on stderr.
fn not_started(job: &Job, index: usize, started_at_ms: i64, reason: String) -> StepRun {
    StepRun {
        report: StepReport {
            name: job.steps[index].name.clone(),
            outcome: Outcome::Failed,
            exit_code: 1,
            start_offset_ms: (started_at_ms - job.started_at_ms).max(0),
            duration_ms: 0,
            stdout: String::new(),
            stderr: reason,
            stdout_truncated: false,
            stderr_truncated: false,
        },
        ends_command: false,
    }
}

async fn start_step(
    cfg: &ExecConfig,
    job: &Job,
    index: usize,
    dirs: &StepDirs,
    stop: &mut StopSignal,
) -> StepRun {
    let step = &job.steps[index];
    let step_dir = dirs.output.as_path();
    let now = step_process::unix_millis();
    let script_path = step_dir.join("_script.sh");
    let (stdout_path, stderr_path) = (step_dir.join("stdout"), step_dir.join("stderr"));
    let mut script = step.commands.join("\n");
    script.push('\n');
    let prepared = ensure_private_dir(step_dir)
        .and_then(|()| ensure_private_dir(&dirs.records))
        .and_then(|()| {
            step_process::write_script(&script_path, script.as_bytes())
                .map_err(|e| crate::AgentError::io(format!("writing {}", script_path.display()), e))
        })
        .and_then(|()| {
            Ok((
                create_output_file(&stdout_path)?,
                create_output_file(&stderr_path)?,
            ))
        });
    let (stdout_file, stderr_file) = match prepared {
        Ok(files) => files,
        Err(e) => {
            let e = crate::error::describe(&e);
            return not_started(
                job,
                index,
                now,
                format!("fleetrun-agent: cannot prepare the step: {e}\n"),
            );
        }
    };
    let cwd = if step.working_directory.is_empty() {
        step_dir.to_owned()
    } else {
        // A relative path is taken relative to the step's work directory.
        let wd = step_dir.join(&step.working_directory);
        if !wd.is_dir() {
            return not_started(
                job,
                index,
                now,
                format!(
                    "fleetrun-agent: working directory {:?} does not exist or is not a directory\n",
                    step.working_directory
                ),
            );
        }
        wd
    };
    let start = StepStart {
        started_at_ms: now,
        boot_id: step_process::boot_id(),
    };
    // Recorded before the processes exist, so a restarted agent never starts the step twice.
    if let Err(e) = step_process::record_start(&dirs.records, &start) {
        let e = crate::error::describe(&e);
        return not_started(
            job,
            index,
            now,
            format!("fleetrun-agent: cannot prepare the step: {e}\n"),
        );
    }
    let env = script_env(cfg, &job.env);
    match step_process::spawn(
        &dirs.records,
        &script_path,
        &cwd,
        env.into_iter(),
        stdout_file,
        stderr_file,
    ) {
        Ok(watch) => watch_step(cfg, job, index, dirs, &start, watch, stop, true).await,
        Err(e) => not_started(
            job,
            index,
            now,
            format!("fleetrun-agent: cannot start sh: {e}\n"),
        ),
    }
}

/// A step an earlier agent process started.
async fn continue_step(
    cfg: &ExecConfig,
    job: &Job,
    index: usize,
    dirs: &StepDirs,
    start: StepStart,
    stop: &mut StopSignal,
) -> StepRun {
    match step_process::attach(&dirs.records, &start).await {
        Ok(watch) => {
            tracing::info!(command_id = %job.command_id, step = index,
                "found the step still running; watching it");
            watch_step(cfg, job, index, dirs, &start, watch, stop, false).await
        }
        Err(ended) => {
            // It ended while no agent watched: the status file was written at its end.
            let ended_at_ms = match ended {
                Ended::Exited(_) => step_process::exit_time_ms(&dirs.records),
                _ => None,
            };
            let shipping =
                StepShipping::new(&job.command_id, &job.steps[index].name, &dirs.output, false);
            finish_step(cfg, job, index, dirs, &start, ended, ended_at_ms, shipping).await
        }
    }
}

enum Interrupt {
    Ended(Ended),
    Stop(Outcome),
}

/// Watches a running step to its end (or its timeout, or a cancel) while its output is shipped.
/// `fresh`: this process started it (the server holds none of its output yet).
#[allow(clippy::too_many_arguments)]
async fn watch_step(
    cfg: &ExecConfig,
    job: &Job,
    index: usize,
    dirs: &StepDirs,
    start: &StepStart,
    mut process: Watch,
    stop: &mut StopSignal,
    fresh: bool,
) -> StepRun {
    let timeout_ms = i64::try_from(effective_timeout(job.steps[index].timeout_seconds).as_millis())
        .unwrap_or(i64::MAX);
    // Measured from the step's recorded start, so a restart does not extend its timeout.
    let remaining_ms = start
        .started_at_ms
        .saturating_add(timeout_ms)
        .saturating_sub(step_process::unix_millis())
        .max(0);
    let remaining = Duration::from_millis(u64::try_from(remaining_ms).unwrap_or(0));
    let mut shipping =
        StepShipping::new(&job.command_id, &job.steps[index].name, &dirs.output, fresh);
    let (done, ended_signal) = watch::channel(false);
    let run = async {
        let interrupt = tokio::select! {
            ended = process.ended(&dirs.records) => Interrupt::Ended(ended),
            () = tokio::time::sleep(remaining) => Interrupt::Stop(Outcome::TimedOut),
            () = stop.cancelled() => Interrupt::Stop(Outcome::Cancelled),
        };
        let ended = match interrupt {
            Interrupt::Ended(ended) => ended,
            Interrupt::Stop(reason) => process.stop(&dirs.records, reason).await,
        };
        let _ = done.send(true);
        ended
    };
    let (ended, ()) = tokio::join!(run, shipping.follow(cfg.output_sink.as_ref(), ended_signal));
    finish_step(cfg, job, index, dirs, start, ended, None, shipping).await
}

/// Turns how a step ended into its report: appends AWS's trailer (or the agent's note) to stderr,
/// reads the beginning of both streams, and ships the rest of the output that the report does
/// not carry whole. `ended_at_ms`: when it ended, if not just now.
#[allow(clippy::too_many_arguments)]
async fn finish_step(
    cfg: &ExecConfig,
    job: &Job,
    index: usize,
    dirs: &StepDirs,
    start: &StepStart,
    ended: Ended,
    ended_at_ms: Option<i64>,
    mut shipping: StepShipping,
) -> StepRun {
    let end = StepEnd::from(ended);
    let (stdout_path, stderr_path) = (dirs.output.join("stdout"), dirs.output.join("stderr"));
    if let Some(note) = &end.stderr_note {
        step_process::append_to_stderr(&stderr_path, note);
    }
    // Seen now (a file's mtime is only as fine as the kernel's coarse clock).
    let ended_at_ms = ended_at_ms.unwrap_or_else(step_process::unix_millis);
    // A process the script left behind may still write; the report takes what is there now.
    let (stdout, stderr) = tokio::join!(
        read_output(stdout_path, cfg.report_stdout_chars),
        read_output(stderr_path, cfg.report_stderr_chars),
    );
    shipping
        .finish(
            cfg.output_sink.as_ref(),
            [!stdout.truncated, !stderr.truncated],
        )
        .await;
    StepRun {
        report: StepReport {
            name: job.steps[index].name.clone(),
            outcome: end.outcome,
            exit_code: end.exit_code,
            start_offset_ms: (start.started_at_ms - job.started_at_ms).max(0),
            duration_ms: (ended_at_ms - start.started_at_ms).max(0),
            stdout: stdout.text,
            stderr: stderr.text,
            stdout_truncated: stdout.truncated,
            stderr_truncated: stderr.truncated,
        },
        ends_command: end.ends_command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_precedence() {
        use Outcome::*;
        assert_eq!(aggregate(&[]), Success);
        assert_eq!(aggregate(&[Success, Cancelled]), Cancelled);
        assert_eq!(aggregate(&[Cancelled, TimedOut]), TimedOut);
        assert_eq!(aggregate(&[TimedOut, Failed, Success]), Failed);
    }

    #[test]
    fn step_ends_follow_amazon_ssm_agent() {
        let end = StepEnd::from(Ended::Exited(1));
        assert_eq!(
            (end.outcome, end.exit_code, end.ends_command),
            (Outcome::Failed, 1, false)
        );
        assert_eq!(
            end.stderr_note.as_deref(),
            Some("failed to run commands: exit status 1")
        );
        let end = StepEnd::from(Ended::Exited(0));
        assert_eq!((end.outcome, end.stderr_note), (Outcome::Success, None));
        assert!(StepEnd::from(Ended::Exited(168)).ends_command);
        assert!(StepEnd::from(Ended::Exited(169)).ends_command);
        let end = StepEnd::from(Ended::Stopped(Outcome::TimedOut));
        assert_eq!(
            (end.outcome, end.exit_code, end.stderr_note),
            (Outcome::TimedOut, 137, None)
        );
        let end = StepEnd::from(Ended::Rebooted);
        assert_eq!(
            (end.outcome, end.exit_code, end.ends_command),
            (Outcome::Failed, -1, true)
        );
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(effective_timeout(0), Duration::from_secs(3600));
        assert_eq!(effective_timeout(1), Duration::from_secs(1));
        assert_eq!(effective_timeout(u64::MAX), Duration::from_secs(172_800));
    }

    #[tokio::test]
    async fn first_stop_reason_wins() {
        let (handle, mut signal) = stop_pair();
        assert_eq!(signal.get(), None);
        handle.stop(StopReason::Cancel);
        handle.stop(StopReason::Shutdown);
        assert_eq!(signal.wait().await, StopReason::Cancel);
    }
}
