//! The `fleetrun` binary: `fleetrun server` (the control plane, optionally with this machine as a node)
//! and `fleetrun agent` (the node agent). `main` parses flags, sets up logging and hands over.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use fleetrun_agent::{Activation, AgentConfig};
use fleetrun_server::{Server, ServerConfig};
use fleetrun_store::SqliteStore;

/// A self-hosted command runner that speaks the AWS Systems Manager Run Command API.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "FLEETRUN_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the control plane: the SSM API on POST / and the agent endpoints.
    Server(ServerArgs),
    /// Run the node agent: register with an activation (first start) and run commands.
    Agent(AgentArgs),
}

#[derive(Parser)]
struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "FLEETRUN_LISTEN", default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// Directory holding the SQLite database and server state; created if missing.
    #[arg(long, env = "FLEETRUN_DATA_DIR", default_value = "fleetrun-data")]
    data_dir: PathBuf,
    /// Region reported to scripts (AWS_SSM_REGION_NAME) and used in examples.
    #[arg(long, env = "FLEETRUN_REGION", default_value = "us-east-1")]
    region: String,
    /// Also run an agent for this machine in the same process, registered as a managed node.
    #[arg(long, env = "FLEETRUN_LOCAL_NODE")]
    local_node: bool,
    /// Seconds without a poll before a node is reported ConnectionLost.
    #[arg(long, env = "FLEETRUN_PING_TIMEOUT", default_value_t = 60)]
    ping_timeout_secs: u64,
    /// Keep command history this many days (default: forever).
    #[arg(long, env = "FLEETRUN_RETENTION_DAYS")]
    retention_days: Option<u64>,
}

#[derive(Parser)]
struct AgentArgs {
    /// The fleetrun server URL, e.g. http://127.0.0.1:8089.
    #[arg(long, env = "FLEETRUN_SERVER")]
    server: String,
    /// Activation id from `aws ssm create-activation` (needed on first start only).
    #[arg(long, env = "FLEETRUN_ACTIVATION_ID", requires = "activation_code")]
    activation_id: Option<String>,
    /// Activation code from `aws ssm create-activation` (needed on first start only).
    #[arg(long, env = "FLEETRUN_ACTIVATION_CODE", requires = "activation_id")]
    activation_code: Option<String>,
    /// Directory for the node identity, queued results and script work dirs.
    #[arg(long, env = "FLEETRUN_STATE_DIR")]
    state_dir: PathBuf,
    /// Region reported to scripts as AWS_SSM_REGION_NAME.
    #[arg(long, env = "FLEETRUN_REGION", default_value = "us-east-1")]
    region: String,
    /// Commands run at once; the rest wait in order.
    #[arg(long, env = "FLEETRUN_MAX_CONCURRENT", default_value_t = 5)]
    max_concurrent: usize,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Cmd::Server(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(server(args)),
        // One thread keeps the agent's footprint small.
        Cmd::Agent(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(agent(args)),
    }
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let db = args.data_dir.join("fleetrun.db");
    let store = SqliteStore::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let mut config = ServerConfig::new(&args.data_dir);
    config.region = args.region.clone();
    config.ping_timeout = Duration::from_secs(args.ping_timeout_secs);
    config.retention = args.retention_days.map(|d| Duration::from_secs(d * 86_400));
    let server = Server::new(config, Arc::new(store))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let endpoint = format!("http://{addr}");
    tracing::info!(%endpoint, data_dir = %args.data_dir.display(), "fleetrun server listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let local = if args.local_node {
        let state_dir = args.data_dir.join("local-node");
        let activation = if state_dir.join("identity.json").exists() {
            None
        } else {
            let (id, code) = server
                .local_activation()
                .await
                .map_err(|e| anyhow::anyhow!("creating the local activation: {}", e.message()))?;
            Some(Activation { id, code })
        };
        Some(AgentConfig::new(
            &endpoint,
            state_dir,
            activation,
            &args.region,
        ))
    } else {
        None
    };

    let mut serve_stop = stop_rx.clone();
    let serving = tokio::spawn(server.serve(listener, async move {
        let _ = serve_stop.wait_for(|s| *s).await;
    }));

    let mut local_task = None;
    let mut local_id = None;
    if let Some(cfg) = local {
        let identity = fleetrun_agent::register_or_load(&cfg)
            .await
            .context("registering the local node")?;
        local_id = Some(identity.instance_id.clone());
        let mut agent_stop = stop_rx.clone();
        local_task = Some(tokio::spawn(fleetrun_agent::run(
            cfg,
            identity,
            async move {
                let _ = agent_stop.wait_for(|s| *s).await;
            },
        )));
    }
    print_banner(&endpoint, &args.region, &args.data_dir, local_id.as_deref());

    shutdown_signal().await;
    let _ = stop_tx.send(true);
    if let Some(t) = local_task {
        if let Ok(Err(e)) = t.await {
            tracing::warn!(error = %e, "local agent stopped with an error");
        }
    }
    serving.await??;
    tracing::info!("fleetrun server stopped");
    Ok(())
}

fn print_banner(endpoint: &str, region: &str, data_dir: &std::path::Path, node: Option<&str>) {
    println!();
    println!("fleetrun is serving the SSM Run Command API at {endpoint}");
    println!("  region {region}, data in {}", data_dir.display());
    match node {
        Some(id) => {
            println!("  this machine is managed node {id}");
            println!();
            println!("Try it (any credentials are accepted for now):");
            println!(
                "  AWS_ACCESS_KEY_ID=fleetrun AWS_SECRET_ACCESS_KEY=fleetrun aws ssm send-command --endpoint-url {endpoint} --region {region} --instance-ids {id} --document-name AWS-RunShellScript --parameters 'commands=[\"uname -a\"]'"
            );
        }
        None => {
            println!("  no local node (start with --local-node, or register agents with create-activation)");
        }
    }
    println!();
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let activation = match (args.activation_id, args.activation_code) {
        (Some(id), Some(code)) => Some(Activation { id, code }),
        _ => None,
    };
    let mut cfg = AgentConfig::new(&args.server, args.state_dir, activation, &args.region);
    cfg.max_concurrent = args.max_concurrent.max(1);
    let identity = fleetrun_agent::register_or_load(&cfg)
        .await
        .context("registering with the server")?;
    tracing::info!(instance_id = %identity.instance_id, server = %args.server, "agent started");
    fleetrun_agent::run(cfg, identity, shutdown_signal()).await?;
    tracing::info!("agent stopped");
    Ok(())
}
