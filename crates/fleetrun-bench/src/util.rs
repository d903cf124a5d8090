//! Small shared pieces: the `aws-sdk-ssm` client every query goes through, latency distributions,
//! `/proc` readings (RSS, CPU time, file-descriptor limit), free ports and child processes.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_ssm::config::{BehaviorVersion, Region};
use aws_sdk_ssm::Client;

/// The real AWS SDK client, pointed at `endpoint`, with fixed credentials and retries off (a retry
/// would hide a failure and distort a latency). For servers that do not check signatures (moto,
/// the replay ceiling); fleetrun needs [`signed_client`].
pub fn sdk_client(endpoint: &str) -> Client {
    signed_client(endpoint, "AKIDFLEETRUNBENCH", "fleetrun-bench")
}

/// [`sdk_client`] signing with a real key (fleetrun's administrator key).
pub fn signed_client(endpoint: &str, access_key_id: &str, secret: &str) -> Client {
    let creds = aws_credential_types::Credentials::new(
        access_key_id.to_owned(),
        secret.to_owned(),
        None,
        None,
        "fleetrun-bench",
    );
    let conf = aws_sdk_ssm::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_ssm::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

/// Latencies of one measured case.
#[derive(Debug, Clone, Default)]
pub struct Dist {
    sorted: Vec<Duration>,
}

impl Dist {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self { sorted: samples }
    }

    /// The `p` quantile (0.0–1.0), nearest rank.
    pub fn quantile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let idx = ((self.sorted.len() as f64 - 1.0) * p).round() as usize;
        self.sorted.get(idx).copied().unwrap_or_default()
    }

    pub fn p50(&self) -> Duration {
        self.quantile(0.5)
    }

    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }
}

/// Milliseconds with three decimals, as the tables show them.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// A `kB` field (`VmRSS`, `VmHWM`) of `/proc/<pid>/status`, in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .with_context(|| format!("{field} missing from {path}"))?;
    let kb: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("parsing {line:?}"))?;
    Ok(kb * 1024)
}

/// User + system CPU time of a process, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
pub fn proc_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) may contain spaces; the fields we want follow its closing ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("parsing {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .with_context(|| format!("{path} too short"))?
            .parse::<u64>()
            .with_context(|| format!("parsing {path}"))
    };
    // After ')': field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    Ok(get(11)? + get(12)?)
}

/// Waits until `pid` has used less than two clock ticks of CPU over 300 ms (it is idle), at most
/// `limit`. Used to start a timed phase only after the server has digested the previous one.
pub async fn wait_idle(pid: u32, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut before = proc_cpu_ticks(pid)?;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = proc_cpu_ticks(pid)?;
        if now.saturating_sub(before) < 2 {
            return Ok(());
        }
        before = now;
    }
    Ok(())
}

/// The soft limit on open files of this process.
pub fn open_files_limit() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("no 'Max open files' in /proc/self/limits")?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()
        .context("parsing the open files limit")?;
    if soft == "unlimited" {
        return Ok(u64::MAX);
    }
    soft.parse().context("parsing the open files limit")
}

/// A port free on 127.0.0.1 right now (for child processes that take `--listen` / `-p`).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Waits until `url` answers any HTTP status (the child process is up), at most `limit`.
pub async fn wait_http(url: &str, child: &mut Child, limit: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{url}: the process exited ({status}) before answering");
        }
        if http.get(url).send().await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process killed (and reaped) when dropped, so a failed measurement leaves nothing running.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `fleetrun` binary to run as a child: `--fleetrun-bin`, else next to this executable.
pub fn fleetrun_bin(explicit: Option<&Path>) -> anyhow::Result<std::path::PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let me = std::env::current_exe().context("locating fleetrun-bench")?;
    let sibling = me.with_file_name("fleetrun");
    if !sibling.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p fleetrun) or pass --fleetrun-bin",
            sibling.display()
        );
    }
    Ok(sibling)
}
