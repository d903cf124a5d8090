//! `fleetrun-bench`: the benchmark harness behind `scripts/bench.sh` and BENCHMARKS.md.
//!
//! Phases, each independent (a failing one is reported and makes the exit status non-zero, the
//! others still run), each on SQLite and, with `--postgres`, again on PostgreSQL (`stores`):
//! 1. for each N: seed a fresh store through the store API, serve it with an in-process
//!    `fleetrun_server::Server` on 127.0.0.1:0, time ListCommands cases and a full pagination walk
//!    with `aws-sdk-ssm` (`list`, `seed`);
//! 2. SendCommand → process start with a real in-process agent (on PostgreSQL: sent through one
//!    replica, the agent polling another), and the idle RSS of the agent binary as a child process
//!    (`dispatch`);
//! 3. one command to K simulated nodes against `fleetrun server` child processes (on PostgreSQL:
//!    two replicas, the nodes split between them) (`fanout`);
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
mod stores;
mod util;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_ssm::Client;
use clap::Parser;
use fleetrun_core::clock::{iso8601, now_millis};
use fleetrun_core::store::WakeBus;
use fleetrun_core::Store;
use fleetrun_server::{Server, ServerConfig};
use tokio::sync::watch;

use crate::list::CaseInputs;
use crate::report::{ListRun, Results};
use crate::stores::{Backend, PhaseStore};

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
    /// A PostgreSQL admin URL: every phase runs again on PostgreSQL, each in a database of its own
    /// created (and dropped) through this URL. Without it only SQLite is measured.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "bench-results.md")]
    out: PathBuf,
    /// Only seed the first of `--sizes` commands into this SQLite file (a server's
    /// `<data-dir>/fleetrun.db`), then exit: a history to look at, e.g. in the console.
    #[arg(long, value_name = "FILE")]
    seed_only: Option<PathBuf>,
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
/// `admin`: the administrator key a replica shares with the first server on its database.
async fn start_server(
    data: &Path,
    (store, bus): (Arc<dyn Store>, Option<Arc<dyn WakeBus>>),
    admin: Option<&(String, String)>,
) -> anyhow::Result<Started> {
    std::fs::create_dir_all(data)?;
    let mut server = Server::new(ServerConfig::new(data), store).await?;
    if let Some(bus) = bus {
        server = server.with_replicas(bus);
    }
    let (access_key_id, secret_access_key) = match admin {
        Some(key) => key.clone(),
        None => {
            let admin = server
                .admin_credentials()
                .await?
                .context("the server wrote no admin-credentials file")?;
            (admin.access_key_id, admin.secret_access_key)
        }
    };

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let client = util::signed_client(&endpoint, &access_key_id, &secret_access_key);
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
        key: (access_key_id, secret_access_key),
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

async fn list_phase(
    n: u64,
    backend: Backend,
    work: &Path,
    plan: &Plan,
    args: &Args,
) -> anyhow::Result<ListRun> {
    let dir = work.join(format!("list-{n}-{}", backend.label()));
    std::fs::create_dir_all(&dir)?;
    let store = PhaseStore::create(backend, &dir, args.postgres.as_deref()).await?;
    eprintln!("{}: seeding {n} commands ...", backend.label());
    let seeded = seed::seed(store.seed_target(), n, now_millis()).await?;
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
    } = start_server(&dir.join("data"), store.server_store(), None).await?;
    let result = async {
        let (command_id, _) = list::probe(&client).await?;
        let inputs = CaseInputs {
            command_id,
            instance_id: seed::node(7).to_string(),
            middle: iso8601(seeded.first_at + (seeded.last_at - seeded.first_at) / 2),
        };
        let cases = list::cases(&inputs);
        eprintln!("ListCommands at N = {n}: {} cases ...", cases.len());
        let results =
            list::run_cases(&client, &cases, plan.iterations, plan.warmup, backend).await?;
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
            backend,
            seeded,
            cases: results,
            walk,
            ceiling,
        })
    }
    .await;
    let _ = stop.send(true);
    let _ = task.await;
    drop(store);
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
    let store = PhaseStore::create(Backend::Sqlite, &dir, None).await?;
    let Started {
        client,
        key: _,
        endpoint,
        stop,
        task,
    } = start_server(&dir.join("data"), store.server_store(), None).await?;
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

/// SendCommand → process start on PostgreSQL, across replicas: the command goes to replica A, the
/// agent long-polls replica B, so every sample includes the wake-up between the two servers.
async fn cross_replica_dispatch_phase(
    work: &Path,
    plan: &Plan,
    args: &Args,
) -> anyhow::Result<util::Dist> {
    let dir = work.join("dispatch-replicas");
    std::fs::create_dir_all(&dir)?;
    let store = PhaseStore::create(Backend::Postgres, &dir, args.postgres.as_deref()).await?;
    let a = start_server(&dir.join("a"), store.server_store(), None).await?;
    let b = start_server(&dir.join("b"), store.replica().await?, Some(&a.key)).await?;
    eprintln!(
        "PostgreSQL: SendCommand on replica A → process start, agent on replica B, {} runs ...",
        plan.dispatch
    );
    let outcome = dispatch::dispatch_latency(&a.client, &b.endpoint, &dir, plan.dispatch).await;
    for server in [a, b] {
        let _ = server.stop.send(true);
        let _ = server.task.await;
    }
    drop(store);
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
    let backends: &[Backend] = if args.postgres.is_some() {
        &[Backend::Sqlite, Backend::Postgres]
    } else {
        &[Backend::Sqlite]
    };
    for &n in &plan.sizes {
        for &backend in backends {
            match list_phase(n, backend, work.path(), &plan, &args).await {
                Ok(run) => results.lists.push(run),
                Err(e) => results.failures.push(format!(
                    "ListCommands at N = {n} on {}: {e:#}",
                    backend.label()
                )),
            }
        }
    }
    if let Err(e) = dispatch_phase(work.path(), &plan, &args, &mut results).await {
        results
            .failures
            .push(format!("dispatch / agent RSS: {e:#}"));
    }
    if args.postgres.is_some() {
        match cross_replica_dispatch_phase(work.path(), &plan, &args).await {
            Ok(d) => results.cross_replica_dispatch = Some(d),
            Err(e) => results
                .failures
                .push(format!("cross-replica dispatch (PostgreSQL): {e:#}")),
        }
    }
    if plan.fanout > 0 {
        for &backend in backends {
            eprintln!(
                "fan-out to {} simulated nodes on {} ...",
                plan.fanout,
                backend.label()
            );
            let outcome = async {
                let fleetrun = util::fleetrun_bin(args.fleetrun_bin.as_deref())?;
                let dir = work.path().join(format!("fanout-{}", backend.label()));
                std::fs::create_dir_all(&dir)?;
                let store = PhaseStore::create(backend, &dir, args.postgres.as_deref()).await?;
                let replicas = if backend == Backend::Postgres { 2 } else { 1 };
                let run = fanout::fanout(
                    &fleetrun,
                    &dir,
                    store.url(),
                    replicas,
                    plan.fanout,
                    plan.fanout_limit,
                )
                .await;
                // The servers are gone by now: the database can be dropped.
                drop(store);
                run
            }
            .await;
            match outcome {
                Ok(f) => results.fanouts.push(f),
                Err(e) => results
                    .failures
                    .push(format!("fan-out on {}: {e:#}", backend.label())),
            }
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
    if let Some(path) = &args.seed_only {
        let n = Plan::from(&args).sizes.first().copied().unwrap_or(10_000);
        let store = fleetrun_store::SqliteStore::open(path)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
        let seeded = runtime.block_on(seed::seed(seed::Target::Sqlite(&store), n, now_millis()))?;
        eprintln!(
            "seeded {} commands ({} invocations) into {} in {:.1} s",
            seeded.commands,
            seeded.invocations,
            path.display(),
            seeded.seconds
        );
        return Ok(());
    }
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
