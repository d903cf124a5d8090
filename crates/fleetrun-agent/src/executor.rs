//! The executor: runs one command's `aws:runShellScript` steps and turns them into a
//! [`ResultReport`]. Each step is written to `<work_root>/<command_id>/<step>/_script.sh` and run as
//! `sh _script.sh` in its own process group, in a clean environment (`environment`), with stdout and
//! stderr going straight to the files `stdout` and `stderr` beside it (`capture`): any output size
//! works, and the agent holds none of it in memory. The report carries the first
//! `REPORT_STDOUT_CHARS` / `REPORT_STDERR_CHARS` characters of each, flagged when cut, and is kept
//! within `MAX_REPORT_BYTES` (`report::fit`). The work directory stays for the retention period
//! (`workdir`). A timeout, a cancel or agent shutdown SIGKILLs the whole group (exit code 137, as
//! amazon-ssm-agent reports on Linux/macOS). It knows nothing of HTTP, queues or the outbox.
//!
//! Step results follow amazon-ssm-agent: exit 0 → Success, other codes → Failed; 168 → Success and
//! skip the remaining steps; 169 → Failed and skip them; a timed-out, cancelled or killed step also
//! ends the command; any other failure does not stop the next step. Skipped steps are not reported.
//! The command's outcome is the agent's precedence: any Failed → Failed, else any TimedOut →
//! TimedOut, else any Cancelled → Cancelled, else Success.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fleetrun_wire::agent::{
    Outcome, ResultReport, StepReport, StepSpec, REPORT_STDERR_CHARS, REPORT_STDOUT_CHARS,
};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::capture::{create_output_file, read_prefix, Prefix};
use crate::environment::{valid_name, valid_value};
use crate::identity::{ensure_private_dir, write_private_file};
use crate::outbox::valid_command_id;

pub use crate::environment::{base_env, SCRIPT_PATH, SCRIPT_SHELL};

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
#[derive(Debug, Clone)]
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
}

impl ExecConfig {
    /// The defaults for `work_root`. Looks the agent's user up (for `HOME`).
    pub fn new(work_root: impl Into<PathBuf>) -> Self {
        Self {
            work_root: work_root.into(),
            report_stdout_chars: REPORT_STDOUT_CHARS,
            report_stderr_chars: REPORT_STDERR_CHARS,
            base_env: base_env(),
        }
    }

    /// Where step `index` of `command_id` runs and leaves its output.
    pub fn step_dir(&self, command_id: &str, index: usize) -> PathBuf {
        self.work_root.join(command_id).join(index.to_string())
    }
}

/// Why a command is being stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A `Cancel` message: the running step ends Cancelled.
    Cancel,
    /// The agent is shutting down: the running step ends Failed (as amazon-ssm-agent reports).
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
}

/// Runs `steps` in order for `command_id` with `env` added to [`ExecConfig::base_env`], honouring
/// `stop`. Each step's output stays in [`ExecConfig::step_dir`]; the report carries its beginning
/// and stays within `MAX_REPORT_BYTES`. Offsets and durations are measured from the first step's
/// start with a monotonic clock.
pub async fn run_command(
    cfg: &ExecConfig,
    command_id: &str,
    steps: &[StepSpec],
    env: &[(String, String)],
    mut stop: StopSignal,
) -> ResultReport {
    let started = Instant::now();
    let mut reports: Vec<StepReport> = Vec::new();
    let mut stopped_between: Option<StopReason> = None;
    if !valid_command_id(command_id) {
        // The caller filters these out; never build a path from one.
        return ResultReport {
            command_id: command_id.to_owned(),
            outcome: Outcome::Failed,
            response_code: -1,
            elapsed_ms: 0,
            steps: reports,
            finished_at_ms: None,
            held_ms: 0,
        };
    }
    for (index, step) in steps.iter().enumerate() {
        if let Some(reason) = stop.get() {
            stopped_between = Some(reason);
            break;
        }
        let offset = started.elapsed();
        let step_dir = cfg.step_dir(command_id, index);
        let run = run_step(cfg, &step_dir, step, env, &mut stop).await;
        let ends_command = match run.outcome {
            Outcome::TimedOut | Outcome::Cancelled => true,
            Outcome::Success | Outcome::Failed => {
                run.killed || matches!(run.exit_code, EXIT_SUCCESS_AND_STOP | EXIT_FAILED_AND_STOP)
            }
        };
        reports.push(StepReport {
            name: step.name.clone(),
            outcome: run.outcome,
            exit_code: run.exit_code,
            start_offset_ms: millis(offset),
            duration_ms: millis(started.elapsed().saturating_sub(offset)),
            stdout: run.stdout.text,
            stderr: run.stderr.text,
            stdout_truncated: run.stdout.truncated,
            stderr_truncated: run.stderr.truncated,
        });
        if ends_command {
            break;
        }
    }
    let mut outcomes: Vec<Outcome> = reports.iter().map(|s| s.outcome).collect();
    match stopped_between {
        Some(StopReason::Cancel) => outcomes.push(Outcome::Cancelled),
        Some(StopReason::Shutdown) => outcomes.push(Outcome::Failed),
        None => {}
    }
    let mut report = ResultReport {
        command_id: command_id.to_owned(),
        outcome: aggregate(&outcomes),
        response_code: reports.last().map_or(-1, |s| s.exit_code),
        elapsed_ms: reports
            .last()
            .map_or(0, |s| s.start_offset_ms + s.duration_ms),
        steps: reports,
        finished_at_ms: None,
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

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

struct StepRun {
    outcome: Outcome,
    exit_code: i64,
    /// The agent killed the process group (timeout, cancel, shutdown).
    killed: bool,
    stdout: Prefix,
    stderr: Prefix,
}

impl StepRun {
    /// A step that could not start: Failed, exit code 1, the reason on stderr.
    fn not_started(reason: String) -> Self {
        Self {
            outcome: Outcome::Failed,
            exit_code: 1,
            killed: false,
            stdout: Prefix::default(),
            stderr: Prefix {
                text: reason,
                ..Prefix::default()
            },
        }
    }
}

enum Ending {
    Exited(std::io::Result<std::process::ExitStatus>),
    Killed(Outcome),
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
fn script_env<'a>(
    cfg: &'a ExecConfig,
    env: &'a [(String, String)],
) -> impl Iterator<Item = (&'a str, &'a str)> {
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
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

async fn run_step(
    cfg: &ExecConfig,
    step_dir: &Path,
    step: &StepSpec,
    env: &[(String, String)],
    stop: &mut StopSignal,
) -> StepRun {
    let script_path = step_dir.join("_script.sh");
    let (stdout_path, stderr_path) = (step_dir.join("stdout"), step_dir.join("stderr"));
    let mut script = step.commands.join("\n");
    script.push('\n');
    let prepared = ensure_private_dir(step_dir)
        .and_then(|()| write_private_file(&script_path, script.as_bytes()))
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
            return StepRun::not_started(format!("fleetrun-agent: cannot prepare the step: {e}\n"));
        }
    };
    let cwd = if step.working_directory.is_empty() {
        step_dir.to_owned()
    } else {
        // A relative path is taken relative to the step's work directory.
        let wd = step_dir.join(&step.working_directory);
        if !wd.is_dir() {
            return StepRun::not_started(format!(
                "fleetrun-agent: working directory {:?} does not exist or is not a directory\n",
                step.working_directory
            ));
        }
        wd
    };
    let mut command = tokio::process::Command::new("sh");
    command
        .arg(&script_path)
        .current_dir(&cwd)
        .env_clear()
        .envs(script_env(cfg, env))
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout_file))
        .stderr(Stdio::from(stderr_file))
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return StepRun::not_started(format!("fleetrun-agent: cannot start sh: {e}\n")),
    };
    // The child holds the files now; the Command's copies are closed when it is dropped.
    drop(command);
    let mut group = GroupGuard(child.id().and_then(|pid| i32::try_from(pid).ok()));

    let ending = tokio::select! {
        status = child.wait() => Ending::Exited(status),
        () = tokio::time::sleep(effective_timeout(step.timeout_seconds)) => Ending::Killed(Outcome::TimedOut),
        reason = stop.wait() => Ending::Killed(match reason {
            StopReason::Cancel => Outcome::Cancelled,
            StopReason::Shutdown => Outcome::Failed,
        }),
    };
    let (outcome, exit_code, killed) = match ending {
        Ending::Killed(outcome) => {
            group.kill();
            let _ = child.wait().await;
            (outcome, KILLED_EXIT_CODE, true)
        }
        Ending::Exited(Ok(status)) => {
            let code = match (status.code(), status.signal()) {
                (Some(code), _) => i64::from(code),
                (None, Some(signal)) => 128 + i64::from(signal),
                (None, None) => 1,
            };
            let outcome = match code {
                0 | EXIT_SUCCESS_AND_STOP => Outcome::Success,
                _ => Outcome::Failed,
            };
            (outcome, code, false)
        }
        Ending::Exited(Err(e)) => {
            tracing::warn!(error = %e, "cannot wait for a script; killing its process group");
            group.kill();
            (Outcome::Failed, 1, false)
        }
    };
    // The leader is reaped: its pid (= the group id) may be reused, so never signal it again.
    group.0 = None;
    // A process the script left behind may still write; the report takes what is there now.
    let (stdout, stderr) = tokio::join!(
        read_output(stdout_path, cfg.report_stdout_chars),
        read_output(stderr_path, cfg.report_stderr_chars),
    );
    StepRun {
        outcome,
        exit_code,
        killed,
        stdout,
        stderr,
    }
}

/// Kills the script's process group if the step future is dropped before the script was reaped
/// (for example when the agent aborts on shutdown), so no script outlives its supervision.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.0 {
            // ESRCH (the group is already gone) is fine.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
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
