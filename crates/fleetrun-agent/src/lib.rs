//! fleetrun-agent: the node agent. It registers with an activation (or loads its saved identity:
//! an Ed25519 key pair whose public half the server keeps), fetches short-lived session
//! credentials with it and signs every request with them (agent protocol v2),
//! long-polls the server for `Run`/`Cancel` messages, runs `aws:runShellScript` steps in process
//! groups of their own that outlive the agent process, and reports results through a persistent
//! outbox. It speaks only the
//! protocol in `fleetrun_wire::agent` and links no server code.
//!
//! This file owns the configuration and [`run`], the agent's lifetime: start (resume commands an
//! earlier process left running, clean stale work dirs, resend the outbox), the channel, and the
//! drain on shutdown. Modules: `identity`
//! (registration, state dir), [`signing`] (the node key, request signing), `credentials`
//! (session credentials, refreshed at half-life), `channel` (HTTP, long poll, delivery), `commands` (queue and
//! concurrency), [`executor`] (steps; `step_process`: a step's detached processes, `job`: a
//! command's persisted progress, `environment`, `capture`: what a script gets and where its
//! output goes), `report` (the report's size bound, the fallback for a refused one),
//! `outbox` (persisted results), `workdir` (retention), `machine` (host facts), `tls` (trust in an
//! https server), [`cli`] (exit codes and the help both binaries share).
//!
//! ```text
//! state_dir/identity.json          instance id, region, Ed25519 private key (0600; dir 0700)
//! state_dir/outbox/<id>.json       results not yet acknowledged; rejected/ holds refused ones
//! state_dir/work/<id>/job.json     a running command's progress, until its report is in the outbox
//! state_dir/work/<id>/<step>/      _script.sh, the step's full stdout and stderr (0600), the
//!                                  records of its processes (step_process), and its default
//!                                  working directory; kept for `work_retention` (7 days)
//! ```

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

mod capture;
mod channel;
pub mod cli;
mod commands;
mod credentials;
mod environment;
mod error;
pub mod executor;
mod identity;
mod job;
mod machine;
mod outbox;
mod report;
pub mod ship;
pub mod signing;
mod step_process;
mod tls;
mod workdir;

pub use error::{describe, AgentError};
pub use fleetrun_wire::agent::MachineInfo;
pub use identity::{
    load_identity, read_activation_code, register, register_or_load, Identity, SavedIdentity,
    ACTIVATION_CODE_ENV,
};
pub use machine::machine_info;

/// Default longest time the server may hold a poll open.
pub const DEFAULT_POLL_WAIT: Duration = Duration::from_secs(20);
/// Default number of commands run at once (amazon-ssm-agent's is 5).
pub const DEFAULT_MAX_CONCURRENT: usize = 5;
/// Default time a command's work directory (and its output) is kept on the node.
pub const DEFAULT_WORK_RETENTION: Duration = workdir::DEFAULT_RETENTION;
/// Default drain on shutdown: how long running commands may still finish (and their results be
/// sent) before the agent stops anyway. What still runs then is left running, detached, and the
/// next start of the agent picks it up (ARCHITECTURE.md, "Scripts survive agent restarts").
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(5);

/// An activation to register with: `CreateActivation`'s id and code.
#[derive(Clone, PartialEq, Eq)]
pub struct Activation {
    pub id: String,
    pub code: String,
}

impl fmt::Debug for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Activation")
            .field("id", &self.id)
            .field("code", &"<redacted>")
            .finish()
    }
}

/// Everything the agent needs to know; see [`AgentConfig::new`] for the defaults.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `http://host:port` or `https://host:port` of the fleetrun server.
    pub server_url: String,
    /// PEM file of the CA (or the self-signed certificate) an `https://` server's certificate must
    /// chain to; `None`: the system's CA store, unless `server_fingerprint` is set.
    pub ca_cert: Option<PathBuf>,
    /// SHA-256 of the server's leaf certificate (hex, colons optional): pins that certificate.
    pub server_fingerprint: Option<String>,
    /// Holds the identity, the outbox and the work directories.
    pub state_dir: PathBuf,
    /// Used to register when `state_dir` has no identity yet.
    pub activation: Option<Activation>,
    /// Region name given to scripts as `AWS_SSM_REGION_NAME` unless the server sends one.
    pub region: String,
    /// Longest time the server may hold a poll open (default 20 s).
    pub poll_wait: Duration,
    /// Commands run at once; more are queued in arrival order (default 5).
    pub max_concurrent: usize,
    /// How long a command's work directory, with its full output, stays on the node after its
    /// last change (default 7 days); refused reports in `outbox/rejected/` likewise.
    pub work_retention: Duration,
    /// On shutdown, how long to wait for running commands to finish (default 5 s); the ones
    /// still running after it keep running and are resumed by the next start.
    pub drain_grace: Duration,
    /// How long registration keeps retrying while the server is unreachable or busy; `None`
    /// (the default) keeps trying, `Some(ZERO)` tries once.
    pub register_timeout: Option<Duration>,
}

impl AgentConfig {
    /// A configuration with the defaults for the rest: 20 s polls, 5 concurrent commands,
    /// work directories kept 7 days.
    pub fn new(
        server_url: impl Into<String>,
        state_dir: impl Into<PathBuf>,
        activation: Option<Activation>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            server_url: server_url.into(),
            ca_cert: None,
            server_fingerprint: None,
            state_dir: state_dir.into(),
            activation,
            region: region.into(),
            poll_wait: DEFAULT_POLL_WAIT,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            work_retention: DEFAULT_WORK_RETENTION,
            drain_grace: DEFAULT_DRAIN_GRACE,
            register_timeout: None,
        }
    }
}

/// State shared by the channel and the command tasks.
pub(crate) struct Agent {
    cfg: AgentConfig,
    identity: Identity,
    client: channel::ServerClient,
    outbox: outbox::Outbox,
    exec: executor::ExecConfig,
    janitor: workdir::Janitor,
    table: Mutex<commands::Table>,
    slots: Arc<Semaphore>,
    /// Becomes true when shutdown starts; result delivery then stops retrying.
    shutting_down: watch::Sender<bool>,
}

impl Agent {
    fn table(&self) -> MutexGuard<'_, commands::Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn known_commands(&self) -> Vec<String> {
        self.table().known()
    }

    fn mark_reporting(&self, id: &str) {
        self.table().mark_reporting(id);
    }

    fn forget(&self, id: &str) {
        self.table().forget(id);
    }
}

/// Runs the agent until `shutdown` resolves: resends results left in the outbox, then long-polls
/// and executes commands. Server outages are retried forever; errors are returned only for
/// problems found while starting (state directory, configuration) and for
/// [`AgentError::Deregistered`] (the server no longer knows this node; it stops as if shut down).
///
/// On shutdown it drains: stops polling, drops queued commands (unreported: the next session's
/// poll omits them, which tells the server they died with this process), and lets running
/// commands finish for up to [`AgentConfig::drain_grace`]. Commands still running then are not
/// killed: their scripts run on, detached, and the next start resumes watching them and reports
/// their real results. Reports not yet acknowledged stay in the outbox and are sent on the next
/// start.
pub async fn run(
    mut cfg: AgentConfig,
    identity: Identity,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    identity::ensure_private_dir(&cfg.state_dir)?;
    // Scripts run with their own working directory, so every path handed to them must be absolute.
    cfg.state_dir = std::path::absolute(&cfg.state_dir)
        .map_err(|e| AgentError::io(format!("resolving {}", cfg.state_dir.display()), e))?;
    let work_root = cfg.state_dir.join("work");
    identity::ensure_private_dir(&work_root)?;
    let outbox = outbox::Outbox::open(&cfg.state_dir)?;
    let janitor = workdir::Janitor::new(
        vec![work_root.clone(), outbox.rejected_dir()],
        cfg.work_retention,
    );
    // The base environment needs a passwd lookup, which may block (NSS).
    let mut exec = tokio::task::spawn_blocking(move || executor::ExecConfig::new(work_root))
        .await
        .map_err(|e| AgentError::Config(format!("preparing the executor: {e}")))?;
    let client = channel::ServerClient::new(&cfg, Some(&identity))?;
    exec.output_sink = Arc::new(client.clone());
    let agent = Arc::new(Agent {
        client,
        outbox,
        exec,
        janitor,
        table: Mutex::new(commands::Table::default()),
        slots: Arc::new(Semaphore::new(cfg.max_concurrent.max(1))),
        shutting_down: watch::Sender::new(false),
        identity,
        cfg,
    });
    tracing::info!(instance_id = %agent.identity.instance_id, server = %agent.cfg.server_url,
        max_concurrent = agent.slots.available_permits(), "agent started");

    // Commands an earlier agent process left running are held again before the first poll lists
    // what this agent holds; then output of earlier runs past its retention goes.
    let mut tasks = JoinSet::new();
    commands::resume_jobs(&agent, &mut tasks);
    commands::clean_work_dirs(&agent).await;
    tokio::pin!(shutdown);
    let stopped_early = tokio::select! {
        () = channel::flush_outbox(&agent, &mut tasks) => false,
        () = shutdown.as_mut() => true,
    };
    if !stopped_early {
        channel::poll_loop(&agent, &mut tasks, shutdown.as_mut()).await;
    }
    shut_down(&agent, &mut tasks).await;
    channel::outcome(&agent)
}

async fn shut_down(agent: &Agent, tasks: &mut JoinSet<()>) {
    tracing::info!(
        drain_grace_secs = agent.cfg.drain_grace.as_secs_f64(),
        "shutting down: no new work; waiting for running commands"
    );
    agent.shutting_down.send_replace(true);
    agent.table().stop_queued();
    if !drain(tasks, agent.cfg.drain_grace).await && agent.table().busy() {
        tracing::info!(
            running = ?agent.table().running(),
            "commands still running after the drain grace keep running; the next start of the agent reports them"
        );
    }
    // Dropping a running command's task leaves its processes and its job record in place.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    tracing::info!(
        unacknowledged = agent.known_commands().len(),
        "agent stopped"
    );
    channel::say_goodbye(agent).await;
}

/// Waits for every task to end, at most `limit`; true if they all did.
async fn drain(tasks: &mut JoinSet<()>, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { return true },
            () = tokio::time::sleep_until(deadline) => return false,
        }
    }
}
