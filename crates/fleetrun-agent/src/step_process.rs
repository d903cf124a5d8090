//! One step's processes, detached from the agent so that they outlive it (ARCHITECTURE.md,
//! "Scripts survive agent restarts"). The script runs under a small `sh` wrapper in a process
//! group of its own; the wrapper records its pid and, when the script ends, the exit status, in
//! files of the step directory. The agent that started the step waits for its child; an agent
//! started later finds the step again from those files and watches the pid until the status file
//! appears. Nothing here depends on the agent process staying alive: a restarted agent reads the
//! real result, or — when the processes are gone without a status (killed, the node rebooted) —
//! says so.
//!
//! The records live in a directory of their own beside the step's working directory
//! (`work/<command>/<step>.state/`), so a script sees only its own files:
//!
//! ```text
//! step.json     written before the wrapper starts: wall-clock start, boot id
//! pid           written by the wrapper first thing: its pid (= the process group id)
//! process.json  written by the starting agent: that pid and the kernel's start time of it
//! exit_status   written by the wrapper when the script exits: its exit status
//! stopped       written by an agent before it kills the group: Cancelled | TimedOut
//! ```
//!
//! The script file is run the way amazon-ssm-agent's runShellScript runs it (`sh -c <file>`):
//! executed directly, so a `#!` line chooses the interpreter, and read by `sh` when it has none.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use fleetrun_wire::agent::Outcome;
use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::identity::write_private_record;
use crate::AgentError;

/// How often an agent that is not the step's parent looks whether it has ended.
const ATTACHED_POLL: Duration = Duration::from_millis(100);
/// How long a restarted agent waits for the pid of a step whose start it may have interrupted.
const PID_GRACE: Duration = Duration::from_secs(2);
/// How long a killed group gets to disappear before the agent stops waiting for it.
const KILL_WAIT: Duration = Duration::from_secs(5);

const STEP_FILE: &str = "step.json";
const PID_FILE: &str = "pid";
const PROCESS_FILE: &str = "process.json";
const EXIT_STATUS_FILE: &str = "exit_status";
const STOPPED_FILE: &str = "stopped";

/// The shell that runs the wrapper: POSIX puts it here on every system the agent supports.
const SHELL: &str = "/bin/sh";

/// Run as `sh -c WRAPPER fleetrun-step <script> <step dir>`: records its pid, runs the script as
/// `sh -c <script>` would (executed directly; the shell reads it itself when it has no `#!`), then
/// records the script's exit status. Each record is one short `printf`, a single write: a reader
/// sees it empty or whole, and only a line ending in a newline counts.
const WRAPPER: &str = r#"printf '%s\n' "$$" > "$2/pid"
"$1"
code=$?
printf '%s\n' "$code" > "$2/exit_status"
exit "$code""#;

/// Held while a script file is open for writing and while a step process is forked. A child
/// forked by another thread inherits every open descriptor until it execs; if one of them is a
/// script being written, executing that script fails with ETXTBSY ("Text file busy"). Under
/// this lock no fork happens while a script is open, and a fork is exec'd (std's spawn returns
/// only then) before a script is opened again.
static FORK_LOCK: Mutex<()> = Mutex::new(());

/// Writes a step's script, executable by the agent's user only (0700, as amazon-ssm-agent leaves
/// it: the kernel reads its `#!` line).
pub(crate) fn write_script(path: &Path, script: &[u8]) -> std::io::Result<()> {
    let _forks = FORK_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .open(path)?;
    // `mode` applies only to a new file.
    file.set_permissions(std::fs::Permissions::from_mode(0o700))?;
    file.write_all(script)
}

/// What is recorded before a step's processes start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StepStart {
    /// Wall-clock start, Unix milliseconds.
    pub(crate) started_at_ms: i64,
    /// The Linux boot the step started in: after a reboot its processes are certainly gone.
    #[serde(default)]
    pub(crate) boot_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProcessRecord {
    pid: i32,
    /// Field 22 of `/proc/<pid>/stat`; tells a reused pid from the wrapper (0: unknown).
    start_ticks: u64,
}

/// How the agent is connected to a running step.
pub(crate) enum Watch {
    /// This agent started it and can wait for it.
    Child(tokio::process::Child, ProcessRecord),
    /// An earlier agent process started it; only its pid is known.
    Attached(ProcessRecord),
}

/// How a step's processes ended, before it is turned into a step outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The wrapper recorded the script's exit status.
    Exited(i64),
    /// An agent killed the group for this reason (Cancelled or TimedOut).
    Stopped(Outcome),
    /// The wrapper died without recording a status; `Some` is its wait status when known.
    Vanished(Option<i64>),
    /// The step's processes were lost with a reboot of the node.
    Rebooted,
}

/// The boot id of the running Linux kernel ("" elsewhere).
pub(crate) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// This node's wall clock in Unix milliseconds. Only differences of it reach the server (step
/// offsets and durations, `held_ms`).
pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Records the start of a step; must happen before [`spawn`].
pub(crate) fn record_start(records: &Path, start: &StepStart) -> Result<(), AgentError> {
    let json = serde_json::to_vec(start)
        .map_err(|e| AgentError::io("encoding a step record", std::io::Error::other(e)))?;
    write_private_record(&records.join(STEP_FILE), &json)
}

/// The start record of a step, if it was started at all.
pub(crate) fn read_start(records: &Path) -> Option<StepStart> {
    let bytes = std::fs::read(records.join(STEP_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Starts the wrapper for `script` in its own process group, its output going to the given files.
pub(crate) fn spawn(
    records: &Path,
    script: &Path,
    cwd: &Path,
    env: impl Iterator<Item = (String, String)>,
    stdout: std::fs::File,
    stderr: std::fs::File,
) -> std::io::Result<Watch> {
    // An absolute path, not `sh`: std can then start the child with posix_spawn (a vfork-style
    // clone) instead of fork. A program looked up in a PATH that the child's environment sets
    // forces fork, which copies the page tables of the whole agent process first: milliseconds
    // per step in a server with a few hundred MB mapped (`--local-node`).
    let mut command = tokio::process::Command::new(SHELL);
    command
        .arg("-c")
        .arg(WRAPPER)
        .arg("fleetrun-step")
        .arg(script)
        .arg(records)
        .current_dir(cwd)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        // Its own group: signals to the agent's group (Ctrl-C) do not reach it, and a cancel
        // reaches every process the script started.
        .process_group(0)
        // Outliving the agent is the point: never killed because a handle was dropped.
        .kill_on_drop(false);
    let child = {
        let _forks = FORK_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        command.spawn()?
    };
    drop(command);
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| std::io::Error::other("the step process has no pid"))?;
    let record = ProcessRecord {
        pid,
        start_ticks: start_ticks(pid).unwrap_or(0),
    };
    if let Ok(json) = serde_json::to_vec(&record) {
        if let Err(e) = write_private_record(&records.join(PROCESS_FILE), &json) {
            tracing::warn!(error = %crate::error::describe(&e), "cannot record the step's process");
        }
    }
    Ok(Watch::Child(child, record))
}

/// Finds a step an earlier agent process started. `Err` carries how it already ended (no
/// processes to watch); `Ok` a watch on its still-running wrapper.
pub(crate) async fn attach(records: &Path, start: &StepStart) -> Result<Watch, Ended> {
    if let Some(code) = read_exit_status(records) {
        return Err(Ended::Exited(code));
    }
    if !start.boot_id.is_empty() && start.boot_id != boot_id() {
        return Err(stopped_or(records, Ended::Rebooted));
    }
    let record = match read_process(records) {
        Some(r) => r,
        None => {
            // The agent stopped between starting the wrapper and recording it: the wrapper
            // writes its own pid first thing.
            let deadline = tokio::time::Instant::now() + PID_GRACE;
            loop {
                if let Some(pid) = read_pid(records) {
                    break ProcessRecord {
                        pid,
                        start_ticks: 0,
                    };
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(
                        read_exit_status(records).map_or(Ended::Vanished(None), Ended::Exited)
                    );
                }
                tokio::time::sleep(ATTACHED_POLL).await;
            }
        }
    };
    if alive(&record) {
        Ok(Watch::Attached(record))
    } else {
        Err(finished(records, None))
    }
}

impl Watch {
    /// Resolves when the step's wrapper has ended.
    pub(crate) async fn ended(&mut self, records: &Path) -> Ended {
        match self {
            Watch::Child(child, _) => {
                let status = child.wait().await.ok().map(|s| match s.code() {
                    Some(code) => i64::from(code),
                    None => 128 + i64::from(s.signal().unwrap_or(0)),
                });
                finished(records, status)
            }
            Watch::Attached(record) => {
                while alive(record) && read_exit_status(records).is_none() {
                    tokio::time::sleep(ATTACHED_POLL).await;
                }
                // The status is written just before the wrapper exits: give it that moment.
                if read_exit_status(records).is_none() {
                    tokio::time::sleep(ATTACHED_POLL).await;
                }
                finished(records, None)
            }
        }
    }

    /// Records why, then SIGKILLs the whole group and waits (bounded) for it to go.
    pub(crate) async fn stop(&mut self, records: &Path, reason: Outcome) -> Ended {
        let marker = format!("{reason:?}\n");
        if let Err(e) = write_private_record(&records.join(STOPPED_FILE), marker.as_bytes()) {
            tracing::warn!(error = %crate::error::describe(&e), "cannot record why a step is stopped");
        }
        let record = match self {
            Watch::Child(_, r) | Watch::Attached(r) => r.clone(),
        };
        // A child is not reaped yet, so its pid cannot have been reused; another agent's
        // wrapper is signalled only while its start time still matches.
        if matches!(self, Watch::Child(..)) || alive(&record) {
            match killpg(Pid::from_raw(record.pid), Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => {
                    tracing::warn!(error = %e, pid = record.pid, "cannot kill a step's processes")
                }
            }
        }
        match tokio::time::timeout(KILL_WAIT, self.ended(records)).await {
            Ok(ended) => ended,
            Err(_) => Ended::Stopped(reason),
        }
    }
}

/// How a step whose wrapper is gone ended: its recorded status, else the stop an agent recorded,
/// else unknown.
fn finished(records: &Path, wait_status: Option<i64>) -> Ended {
    match read_exit_status(records) {
        Some(code) if read_stopped(records).is_none() => Ended::Exited(code),
        _ => stopped_or(records, Ended::Vanished(wait_status)),
    }
}

fn stopped_or(records: &Path, otherwise: Ended) -> Ended {
    read_stopped(records).map_or(otherwise, Ended::Stopped)
}

fn read_line_file(path: PathBuf) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.strip_suffix('\n').map(str::to_owned)
}

fn read_exit_status(records: &Path) -> Option<i64> {
    read_line_file(records.join(EXIT_STATUS_FILE))?
        .trim()
        .parse()
        .ok()
}

/// When the wrapper recorded the exit status (the script's end), Unix milliseconds.
pub(crate) fn exit_time_ms(records: &Path) -> Option<i64> {
    let modified = std::fs::metadata(records.join(EXIT_STATUS_FILE))
        .and_then(|m| m.modified())
        .ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

fn read_pid(records: &Path) -> Option<i32> {
    read_line_file(records.join(PID_FILE))?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 1)
}

fn read_process(records: &Path) -> Option<ProcessRecord> {
    let bytes = std::fs::read(records.join(PROCESS_FILE)).ok()?;
    serde_json::from_slice::<ProcessRecord>(&bytes)
        .ok()
        .filter(|r| r.pid > 1)
}

fn read_stopped(records: &Path) -> Option<Outcome> {
    match read_line_file(records.join(STOPPED_FILE))?.trim() {
        "Cancelled" => Some(Outcome::Cancelled),
        "TimedOut" => Some(Outcome::TimedOut),
        _ => None,
    }
}

/// `starttime` (field 22) of `/proc/<pid>/stat`, and whether the process is a zombie.
fn proc_stat(pid: i32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; fields 3.. follow the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let zombie = fields.next()? == "Z";
    let ticks = fields.nth(18)?.parse().ok()?;
    Some((ticks, zombie))
}

fn start_ticks(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(ticks, _)| ticks)
}

/// True while the wrapper `record` names still runs (a zombie has ended).
fn alive(record: &ProcessRecord) -> bool {
    if Path::new("/proc/self/stat").exists() {
        return match proc_stat(record.pid) {
            None => false,
            Some((_, true)) => false,
            Some((ticks, false)) => record.start_ticks == 0 || ticks == record.start_ticks,
        };
    }
    // Without /proc (macOS): the pid exists, which is the best that can be known.
    matches!(
        kill(Pid::from_raw(record.pid), None),
        Ok(()) | Err(Errno::EPERM)
    )
}

/// Appends `line` to the step's stderr file unless it already ends with it (a restarted agent
/// finishing the same step again).
pub(crate) fn append_to_stderr(path: &Path, line: &str) {
    let already = std::fs::read(path).is_ok_and(|b| b.ends_with(line.as_bytes()));
    if already {
        return;
    }
    let appended = std::fs::OpenOptions::new()
        .append(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = appended {
        tracing::warn!(path = %path.display(), error = %e, "cannot append to a step's stderr");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_stat_is_readable_and_alive() {
        let pid = i32::try_from(std::process::id()).expect("pid");
        let ticks = start_ticks(pid).expect("own stat");
        assert!(alive(&ProcessRecord {
            pid,
            start_ticks: ticks
        }));
        assert!(
            !alive(&ProcessRecord {
                pid,
                start_ticks: ticks + 1
            }),
            "a reused pid is not the wrapper"
        );
    }

    #[test]
    fn records_count_only_when_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(EXIT_STATUS_FILE), "3").expect("write");
        assert_eq!(read_exit_status(dir.path()), None, "no newline yet");
        std::fs::write(dir.path().join(EXIT_STATUS_FILE), "3\n").expect("write");
        assert_eq!(read_exit_status(dir.path()), Some(3));
        assert_eq!(finished(dir.path(), None), Ended::Exited(3));
        std::fs::write(dir.path().join(STOPPED_FILE), "TimedOut\n").expect("write");
        assert_eq!(
            finished(dir.path(), None),
            Ended::Stopped(Outcome::TimedOut),
            "a recorded stop wins over the status of the killed script"
        );
    }

    #[test]
    fn the_stderr_trailer_is_appended_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stderr");
        std::fs::write(&path, "oops\n").expect("write");
        append_to_stderr(&path, "failed to run commands: exit status 1");
        append_to_stderr(&path, "failed to run commands: exit status 1");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "oops\nfailed to run commands: exit status 1"
        );
    }
}
