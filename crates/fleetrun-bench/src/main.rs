//! `fleetrun-bench`: the benchmark harness behind `scripts/bench.sh` and BENCHMARKS.md.
//!
//! Phases, each independent (a failing one is reported and makes the exit status non-zero, the
//! others still run):
//! 1. for each N: seed an SQLite store through the store API, serve it with an in-process
//!    `fleetrun_server::Server` on 127.0.0.1:0, time ListCommands cases and a full pagination walk
//!    with `aws-sdk-ssm` (`list`, `seed`);
//! 2. SendCommand → process start with a real in-process agent, and the idle RSS of the agent binary
//!    as a child process (`dispatch`);
//! 3. one command to K simulated nodes against a `fleetrun server` child process (`fanout`);
//! 4. the same ListCommands cases against moto's server, if `--moto-server` is given (`moto`).
//!
//! Then prints the Markdown report and writes it to `--out`. Targets are judged in the report only;
//! the harness never fails because a number is slow.

mod cpu;
mod dispatch;
mod fanout;
mod list;
mod moto;
mod replay;
mod report;
mod seed;
mod util;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_ssm::Client;
use clap::Parser;
use fleetrun_core::clock::{iso8601, now_millis};
use fleetrun_server::{Server, ServerConfig};
use fleetrun_store::SqliteStore;
use tokio::sync::watch;

use crate::list::CaseInputs;
use crate::report::{ListRun, Results};

/// Benchmarks fleetrun (ListCommands, dispatch, fan-out, agent RSS) against moto in one run.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Tiny run for CI: N = 1,000, K = 100, few iterations. Judges no target.
    #[arg(long)]
    smoke: bool,
    /// Also measure N = 1,000,000 (seeding takes a few minutes).
    #[arg(long)]
    million: bool,
    /// Comma-separated N values instead of the defaults (10000,100000[,1000000]).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<u64>>,
    /// Fan-out width K (default 10,000; 100 with --smoke; 0 skips the fan-out).
    #[arg(long)]
    fanout: Option<usize>,
    /// ListCommands requests per case (default 300; 20 with --smoke).
    #[arg(long)]
    iterations: Option<usize>,
    /// SendCommand → process start samples (default 50; 5 with --smoke).
    #[arg(long)]
    dispatch: Option<usize>,
    /// Path of moto's `moto_server`; without it moto is skipped.
    #[arg(long)]
    moto_server: Option<PathBuf>,
    /// Commands seeded into moto (default: the smallest N, at most 10,000).
    #[arg(long)]
    moto_commands: Option<u64>,
    /// ListCommands requests per case against moto (default 5; 2 with --smoke).
    #[arg(long)]
    moto_iterations: Option<usize>,
    /// The `fleetrun` binary for the child processes (default: next to this executable).
    #[arg(long)]
    fleetrun_bin: Option<PathBuf>,
    /// A smaller agent binary to measure too (default: `fleetrun-agent` next to this executable, if any).
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "bench-results.md")]
    out: PathBuf,
}

/// What this run measures, resolved from the flags.
struct Plan {
    sizes: Vec<u64>,
    iterations: usize,
    warmup: usize,
    dispatch: usize,
    fanout: usize,
    fanout_limit: Duration,
    moto_commands: u64,
    moto_iterations: usize,
    idle: Duration,
}

impl Plan {
    fn from(args: &Args) -> Self {
        let sizes = args.sizes.clone().unwrap_or_else(|| {
            if args.smoke {
                vec![1_000]
            } else if args.million {
                vec![10_000, 100_000, 1_000_000]
            } else {
                vec![10_000, 100_000]
            }
        });
        let smallest = sizes.iter().copied().min().unwrap_or(10_000);
        Plan {
            iterations: args.iterations.unwrap_or(if args.smoke { 20 } else { 300 }),
            warmup: if args.smoke { 2 } else { 20 },
            dispatch: args.dispatch.unwrap_or(if args.smoke { 5 } else { 50 }),
            fanout: args.fanout.unwrap_or(if args.smoke { 100 } else { 10_000 }),
            fanout_limit: Duration::from_secs(if args.smoke { 30 } else { 120 }),
            moto_commands: args.moto_commands.unwrap_or(smallest.min(10_000)),
            moto_iterations: args
                .moto_iterations
                .unwrap_or(if args.smoke { 2 } else { 5 }),
            idle: Duration::from_secs(if args.smoke { 2 } else { 4 }),
            sizes,
        }
    }
}

/// The runtime the in-process server runs on, apart from the client's, so that their CPU time can
/// be told apart (`cpu`) and a request crosses threads as it would between two processes.
static SERVER_RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();

fn server_runtime() -> anyhow::Result<&'static tokio::runtime::Runtime> {
    if let Some(rt) = SERVER_RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(cpu::SERVER_THREAD)
        .enable_all()
        .build()?;
    // Another caller may have won the race; then this runtime is dropped here, outside any runtime.
    let _ = SERVER_RUNTIME.set(rt);
    SERVER_RUNTIME
        .get()
        .context("the server runtime was not kept")
}

/// An in-process server over `store` on 127.0.0.1:0; stops when the returned sender sends true.
async fn start_server(data: &Path, store: SqliteStore) -> anyhow::Result<Started> {
    let server = Server::new(ServerConfig::new(data), Arc::new(store)).await?;
    let admin = server
        .admin_credentials()
        .await?
        .context("the server wrote no admin-credentials file")?;

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let client = util::signed_client(&endpoint, &admin.access_key_id, &admin.secret_access_key);
    let (stop, mut rx) = watch::channel(false);
    let rt = server_runtime()?;
    // The listener must be registered with the server runtime's reactor, so it is converted there.
    let listener = {
        let _in_server_runtime = rt.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let task = rt.spawn(async move {
        let _ = server
            .serve(listener, async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok(Started {
        client,
        key: (admin.access_key_id, admin.secret_access_key),
        endpoint,
        stop,
        task,
    })
}

/// A running in-process server and an SDK client signing with its administrator key.
struct Started {
    client: Client,
    /// The administrator key (id, secret), for requests signed by hand.
    key: (String, String),
    endpoint: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn list_phase(n: u64, work: &Path, plan: &Plan) -> anyhow::Result<ListRun> {
    let dir = work.join(format!("list-{n}"));
    std::fs::create_dir_all(&dir)?;
    let store = SqliteStore::open(&dir.join("fleetrun.db")).map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("seeding {n} commands ...");
    let seeding = store.clone();
    let seeded = tokio::task::spawn_blocking(move || seed::seed(&seeding, n, now_millis()))
        .await
        .context("seeding task")??;
    eprintln!(
        "  {:.1} s, {} invocations",
        seeded.seconds, seeded.invocations
    );
    let Started {
        client,
        key,
        endpoint,
        stop,
        task,
    } = start_server(&dir, store).await?;
    let result = async {
        let (command_id, _) = list::probe(&client).await?;
        let inputs = CaseInputs {
            command_id,
            instance_id: seed::node(7).to_string(),
            middle: iso8601(seeded.first_at + (seeded.last_at - seeded.first_at) / 2),
        };
        let cases = list::cases(&inputs);
        eprintln!("ListCommands at N = {n}: {} cases ...", cases.len());
        let results = list::run_cases(&client, &cases, plan.iterations, plan.warmup).await?;
        eprintln!("pagination walk over {n} ...");
        let walk = list::walk(&client).await?;
        anyhow::ensure!(
            walk.commands as u64 == n,
            "the walk returned {} commands, expected {n}",
            walk.commands
        );
        eprintln!("pagination walk ceiling (recorded answers replayed from memory) ...");
        let ceiling = replay::ceiling(&endpoint, &key, server_runtime()?).await?;
        Ok(ListRun {
            seeded,
            cases: results,
            walk,
            ceiling,
        })
    }
    .await;
    let _ = stop.send(true);
    let _ = task.await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn dispatch_phase(
    work: &Path,
    plan: &Plan,
    args: &Args,
    results: &mut Results,
) -> anyhow::Result<()> {
    let dir = work.join("dispatch");
    std::fs::create_dir_all(&dir)?;
    let store = SqliteStore::open(&dir.join("fleetrun.db")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Started {
        client,
        key: _,
        endpoint,
        stop,
        task,
    } = start_server(&dir, store).await?;
    let outcome = async {
        eprintln!("SendCommand → process start, {} runs ...", plan.dispatch);
        results.dispatch =
            Some(dispatch::dispatch_latency(&client, &endpoint, &dir, plan.dispatch).await?);
        let fleetrun = util::fleetrun_bin(args.fleetrun_bin.as_deref())?;
        eprintln!("agent idle RSS ...");
        results.idle.push(
            dispatch::agent_idle_rss(&client, &endpoint, &fleetrun, &["agent"], &dir, plan.idle)
                .await?,
        );
        let small = args.agent_bin.clone().or_else(|| {
            let p = std::env::current_exe()
                .ok()?
                .with_file_name("fleetrun-agent");
            p.exists().then_some(p)
        });
        if let Some(small) = small {
            results.idle.push(
                dispatch::agent_idle_rss(&client, &endpoint, &small, &[], &dir, plan.idle).await?,
            );
        }
        anyhow::Ok(())
    }
    .await;
    let _ = stop.send(true);
    let _ = task.await;
    outcome
}

async fn run(args: Args) -> anyhow::Result<Results> {
    let plan = Plan::from(&args);
    let work = tempfile::Builder::new()
        .prefix("fleetrun-bench-")
        .tempdir()
        .context("creating a work dir")?;
    let mut results = Results {
        smoke: args.smoke,
        ..Default::default()
    };
    for &n in &plan.sizes {
        match list_phase(n, work.path(), &plan).await {
            Ok(run) => results.lists.push(run),
            Err(e) => results
                .failures
                .push(format!("ListCommands at N = {n}: {e:#}")),
        }
    }
    if let Err(e) = dispatch_phase(work.path(), &plan, &args, &mut results).await {
        results
            .failures
            .push(format!("dispatch / agent RSS: {e:#}"));
    }
    if plan.fanout > 0 {
        eprintln!("fan-out to {} simulated nodes ...", plan.fanout);
        let outcome = async {
            let fleetrun = util::fleetrun_bin(args.fleetrun_bin.as_deref())?;
            fanout::fanout(&fleetrun, work.path(), plan.fanout, plan.fanout_limit).await
        }
        .await;
        match outcome {
            Ok(f) => results.fanout = Some(f),
            Err(e) => results.failures.push(format!("fan-out: {e:#}")),
        }
    }
    if let Some(moto_server) = &args.moto_server {
        eprintln!("moto: seeding {} commands ...", plan.moto_commands);
        match moto::run(moto_server, plan.moto_commands, plan.moto_iterations).await {
            Ok(m) => results.moto = Some(m),
            Err(e) => results.failures.push(format!("moto: {e:#}")),
        }
    }
    Ok(results)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() -> anyhow::Result<()> {
    // rustls is built without a default crypto provider (ARCHITECTURE.md); every HTTP client here
    // needs one, even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let out = args.out.clone();
    let mode = if args.smoke { "smoke" } else { "full" };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(run(args))?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let title = format!(
        "fleetrun-bench ({mode} run, {}, {cores} cores: {})",
        iso8601(now_millis()),
        cpu_model()
    );
    let md = results.markdown(&title);
    println!("{md}");
    std::fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("report written to {}", out.display());
    if !results.failures.is_empty() {
        anyhow::bail!("{} measurement(s) failed", results.failures.len());
    }
    Ok(())
}
