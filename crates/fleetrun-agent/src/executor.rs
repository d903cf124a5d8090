//! The executor: runs one command's `aws:runShellScript` steps and turns them into a
//! [`ResultReport`]. Each step is written to `<work_root>/<command_id>/<step>/_script.sh` and run as
//! `sh _script.sh` in its own process group, with stdout and stderr captured concurrently up to a
//! cap. A timeout, a cancel or agent shutdown SIGKILLs the whole group (exit code 137, as
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
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fleetrun_wire::agent::{Outcome, ResultReport, StepReport, StepSpec};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::identity::{ensure_private_dir, write_private_file};
use crate::outbox::valid_command_id;

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
/// After a script exits, how long to wait for its output pipes to close. A process it left in the
/// background may hold them open forever; its later output is drained and dropped.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Where and how much the executor works.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Parent of the per-command work directories (`state_dir/work`).
    pub work_root: PathBuf,
    /// Bytes kept of each of stdout and stderr per step; the rest is read and discarded.
    pub output_cap_bytes: usize,
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

/// Runs `steps` in order for `command_id` with `env` added to the agent's environment, honouring
/// `stop`, and removes the command's work directory afterwards. Offsets and durations are
/// measured from the first step's start with a monotonic clock.
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
    let command_dir = cfg.work_root.join(command_id);
    for (index, step) in steps.iter().enumerate() {
        if let Some(reason) = stop.get() {
            stopped_between = Some(reason);
            break;
        }
        let offset = started.elapsed();
        let step_dir = command_dir.join(index.to_string());
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
            stdout: run.stdout,
            stderr: run.stderr,
        });
        if ends_command {
            break;
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&command_dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(command_id, error = %e, "cannot remove work directory");
        }
    }
    let mut outcomes: Vec<Outcome> = reports.iter().map(|s| s.outcome).collect();
    match stopped_between {
        Some(StopReason::Cancel) => outcomes.push(Outcome::Cancelled),
        Some(StopReason::Shutdown) => outcomes.push(Outcome::Failed),
        None => {}
    }
    ResultReport {
        command_id: command_id.to_owned(),
        outcome: aggregate(&outcomes),
        response_code: reports.last().map_or(-1, |s| s.exit_code),
        elapsed_ms: reports
            .last()
            .map_or(0, |s| s.start_offset_ms + s.duration_ms),
        steps: reports,
        finished_at_ms: None,
        held_ms: 0,
    }
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
    stdout: String,
    stderr: String,
}

impl StepRun {
    /// A step that could not start: Failed, exit code 1, the reason on stderr.
    fn not_started(reason: String) -> Self {
        Self {
            outcome: Outcome::Failed,
            exit_code: 1,
            killed: false,
            stdout: String::new(),
            stderr: reason,
        }
    }
}

enum Ending {
    Exited(std::io::Result<std::process::ExitStatus>),
    Killed(Outcome),
}

async fn run_step(
    cfg: &ExecConfig,
    step_dir: &Path,
    step: &StepSpec,
    env: &[(String, String)],
    stop: &mut StopSignal,
) -> StepRun {
    let script_path = step_dir.join("_script.sh");
    let mut script = step.commands.join("\n");
    script.push('\n');
    if let Err(e) = ensure_private_dir(step_dir)
        .and_then(|()| write_private_file(&script_path, script.as_bytes()))
    {
        let e = crate::error::describe(&e);
        return StepRun::not_started(format!("fleetrun-agent: cannot write the script: {e}\n"));
    }
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
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return StepRun::not_started(format!("fleetrun-agent: cannot start sh: {e}\n")),
    };
    let mut group = GroupGuard(child.id().and_then(|pid| i32::try_from(pid).ok()));
    let stdout = Capture::spawn(child.stdout.take(), cfg.output_cap_bytes);
    let stderr = Capture::spawn(child.stderr.take(), cfg.output_cap_bytes);

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
    let (stdout, stderr) = tokio::join!(stdout.finish(), stderr.finish());
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

#[derive(Default)]
struct CaptureBuf {
    data: Vec<u8>,
    truncated: bool,
    /// Set once the step is reported; later output is only drained.
    closed: bool,
}

/// One output stream being read to its end: the first `cap` bytes are kept, the rest discarded.
struct Capture {
    buf: Arc<Mutex<CaptureBuf>>,
    task: Option<JoinHandle<()>>,
}

impl Capture {
    fn spawn<R: AsyncRead + Unpin + Send + 'static>(reader: Option<R>, cap: usize) -> Self {
        let buf = Arc::new(Mutex::new(CaptureBuf::default()));
        let task = reader.map(|mut reader| {
            let buf = Arc::clone(&buf);
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    let n = match reader.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let mut b = buf.lock().unwrap_or_else(PoisonError::into_inner);
                    if b.closed {
                        continue;
                    }
                    let room = cap.saturating_sub(b.data.len());
                    if n > room {
                        b.truncated = true;
                    }
                    let keep = n.min(room);
                    b.data.extend_from_slice(&chunk[..keep]);
                }
            })
        });
        Self { buf, task }
    }

    /// Waits briefly for the end of the stream, then returns what was kept, decoded lossily.
    async fn finish(mut self) -> String {
        if let Some(task) = self.task.as_mut() {
            // On timeout the task is left running (detached) to drain the pipe.
            let _ = tokio::time::timeout(DRAIN_GRACE, task).await;
        }
        let mut b = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        b.closed = true;
        let mut data = std::mem::take(&mut b.data);
        if b.truncated {
            // Do not let the cut through a multi-byte character show up as U+FFFD.
            if let Err(e) = std::str::from_utf8(&data) {
                if e.error_len().is_none() {
                    data.truncate(e.valid_up_to());
                }
            }
        }
        String::from_utf8_lossy(&data).into_owned()
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
