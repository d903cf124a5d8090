//! SendCommand → agent process start, with a real agent (`fleetrun_agent::run`) on loopback, and the
//! real agent's idle RSS (the `fleetrun agent` binary as a child process).
//!
//! The script is `date +%s%N > file`: the latency is that wall-clock stamp minus the wall clock read
//! just before `send_command`. It therefore includes the SendCommand HTTP round trip, validation,
//! the insert transaction, the long-poll wake-up, the claim transaction, the poll response, the
//! agent writing `_script.sh`, spawning `sh`, and `sh` starting `date`.

use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use aws_sdk_ssm::Client;
use fleetrun_agent::{Activation, AgentConfig};
use tokio::sync::watch;

use crate::util::{proc_status_bytes, ChildGuard, Dist};

/// Creates an activation for `limit` nodes through the SSM API.
pub async fn activation(client: &Client, limit: i32) -> anyhow::Result<Activation> {
    let act = client
        .create_activation()
        .iam_role("fleetrun-bench")
        .registration_limit(limit)
        .send()
        .await
        .context("CreateActivation")?;
    Ok(Activation {
        id: act.activation_id().context("no ActivationId")?.to_string(),
        code: act
            .activation_code()
            .context("no ActivationCode")?
            .to_string(),
    })
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Reads the stamp once `date` has written a whole line.
async fn wait_stamp(path: &Path, limit: Duration) -> anyhow::Result<i128> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(text) = tokio::fs::read_to_string(path).await {
            if let Some(line) = text.strip_suffix('\n') {
                return line
                    .trim()
                    .parse()
                    .with_context(|| format!("parsing the stamp {line:?}"));
            }
        }
        if Instant::now() > deadline {
            bail!("the script did not start within {limit:?}");
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// Waits until the invocation is no longer Pending/InProgress (untimed: keeps iterations apart).
async fn wait_done(client: &Client, command_id: &str, node: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = client
            .get_command_invocation()
            .command_id(command_id)
            .instance_id(node)
            .send()
            .await;
        if let Ok(out) = out {
            let status = out.status().map(|s| s.as_str()).unwrap_or("");
            if status == "Success" {
                return Ok(());
            }
            if !matches!(status, "Pending" | "InProgress" | "Delayed") {
                bail!("the dispatch probe ended {status}");
            }
        }
        if Instant::now() > deadline {
            bail!("the dispatch probe did not finish");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `iterations` sequential SendCommands to one real in-process agent and returns the
/// SendCommand → process start latencies.
pub async fn dispatch_latency(
    client: &Client,
    endpoint: &str,
    work: &Path,
    iterations: usize,
) -> anyhow::Result<Dist> {
    let act = activation(client, 1).await?;
    let mut cfg = AgentConfig::new(endpoint, work.join("agent"), Some(act), "us-east-1");
    cfg.poll_wait = Duration::from_secs(20);
    let identity = fleetrun_agent::register_or_load(&cfg)
        .await
        .map_err(|e| anyhow::anyhow!("registering the dispatch agent: {e}"))?;
    let node = identity.instance_id.clone();
    let (stop, mut stopped) = watch::channel(false);
    let agent = tokio::spawn(fleetrun_agent::run(cfg, identity, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    // Let the agent park its first long poll.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut samples = Vec::with_capacity(iterations);
    let result: anyhow::Result<()> = async {
        for i in 0..iterations + 2 {
            let stamp = work.join(format!("stamp-{i}"));
            let script = format!("date +%s%N > {}", stamp.display());
            let before = now_ns();
            let sent = client
                .send_command()
                .document_name("AWS-RunShellScript")
                .instance_ids(&node)
                .parameters("commands", vec![script])
                .send()
                .await
                .context("SendCommand (dispatch)")?;
            let id = sent
                .command()
                .and_then(|c| c.command_id())
                .context("no CommandId")?
                .to_string();
            let started = wait_stamp(&stamp, Duration::from_secs(10)).await?;
            // The first two are warm-up (first script run, page cache).
            if i >= 2 {
                let ns = u64::try_from((started - before).max(0)).unwrap_or(0);
                samples.push(Duration::from_nanos(ns));
            }
            wait_done(client, &id, &node).await?;
            // Give the agent time to report and park its next poll, as an idle node would be.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
    .await;
    let _ = stop.send(true);
    let _ = agent.await;
    result?;
    Ok(Dist::new(samples))
}

/// Idle RSS of an agent binary: started as a child, registered, left polling for `idle`.
#[derive(Debug, Clone)]
pub struct IdleRss {
    pub binary: String,
    pub rss: u64,
    pub hwm: u64,
    pub file_bytes: u64,
}

pub async fn agent_idle_rss(
    client: &Client,
    endpoint: &str,
    binary: &Path,
    args_before: &[&str],
    work: &Path,
    idle: Duration,
) -> anyhow::Result<IdleRss> {
    let act = activation(client, 1).await?;
    let state = work.join(format!(
        "idle-{}",
        binary
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("agent")
    ));
    let child = Process::new(binary)
        .args(args_before)
        .arg("--server")
        .arg(endpoint)
        .arg("--state-dir")
        .arg(&state)
        .arg("--activation-id")
        .arg(&act.id)
        // The code never goes on the command line; the agent removes it from its environment.
        .env(fleetrun_agent::ACTIVATION_CODE_ENV, &act.code)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut guard = ChildGuard(child);
    tokio::time::sleep(idle).await;
    if let Some(status) = guard.0.try_wait()? {
        bail!("{} exited early ({status})", binary.display());
    }
    if !state.join("identity.json").exists() {
        bail!("{} did not register", binary.display());
    }
    let pid = guard.pid();
    Ok(IdleRss {
        binary: format!(
            "{} {}",
            binary.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
            args_before.join(" ")
        )
        .trim()
        .to_string(),
        rss: proc_status_bytes(pid, "VmRSS")?,
        hwm: proc_status_bytes(pid, "VmHWM")?,
        file_bytes: std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0),
    })
}
