//! The `fleetrun` binary: `fleetrun server` (the control plane, optionally with this machine as a node)
//! and `fleetrun agent` (the node agent). `main` parses flags, sets up logging and hands over.
//! `fleetrun agent` ends with the exit codes of `fleetrun_agent::cli::exit` (its `--help` lists
//! them, in the same words as `fleetrun-agent --help`); the other commands exit 1 on any error.

mod admin;
mod api_client;
mod completions;
mod store_choice;
mod tail;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use fleetrun_agent::cli::{self as agent_cli, exit};
use fleetrun_agent::{Activation, AgentConfig, AgentError};
use fleetrun_server::{tls, Server, ServerConfig};
use store_choice::StoreChoice;

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
    /// Manage API access keys and their policies (signed with the administrator key).
    Admin(admin::AdminArgs),
    /// Follow a command's output as its scripts print it, until the command ends.
    /// Exit status: 0 when the command ended Success, 1 when it ended otherwise, 2 on errors.
    Tail(tail::TailArgs),
    /// Print a shell completion script for fleetrun (or, with --agent, for fleetrun-agent).
    Completions(completions::CompletionsArgs),
}

#[derive(Parser)]
struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "FLEETRUN_LISTEN", default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// Directory holding the SQLite database and server state; created if missing.
    #[arg(long, env = "FLEETRUN_DATA_DIR", default_value = "fleetrun-data")]
    data_dir: PathBuf,
    /// Where commands, nodes and keys are kept: `sqlite` (<data-dir>/fleetrun.db, needs
    /// nothing) or a PostgreSQL URL (postgres://user@host:5432/database) so that several
    /// servers share one database. Give a password through PGPASSWORD or this variable, never
    /// on the command line.
    #[arg(
        long,
        env = "FLEETRUN_STORE",
        default_value = "sqlite",
        hide_env_values = true
    )]
    store: StoreChoice,
    /// Region reported to scripts (AWS_SSM_REGION_NAME) and used in examples.
    #[arg(long, env = "FLEETRUN_REGION", default_value = "us-east-1")]
    region: String,
    /// Also run an agent for this machine in the same process, registered as a managed node.
    /// Its scripts run detached: a restart of the server does not stop them.
    #[arg(long, env = "FLEETRUN_LOCAL_NODE")]
    local_node: bool,
    /// With --local-node: on shutdown, seconds the local agent waits for running commands to
    /// finish (and be reported) before the server stops; commands still running then keep
    /// running and are reported after the restart.
    #[arg(long, env = "FLEETRUN_DRAIN_GRACE", default_value_t = 5.0)]
    drain_grace_secs: f64,
    /// Seconds without a poll before a node is reported ConnectionLost.
    #[arg(long, env = "FLEETRUN_PING_TIMEOUT", default_value_t = 60)]
    ping_timeout_secs: u64,
    /// Keep command history this many days (default: forever).
    #[arg(long, env = "FLEETRUN_RETENTION_DAYS")]
    retention_days: Option<u64>,
    /// Deliver notifications for the SNS topic ARN to this HTTP(S) webhook:
    /// `arn:aws:sns:REGION:ACCOUNT:TOPIC=https://receiver/path`. Repeatable (several topics,
    /// several subscribers per topic); the env var takes a comma-separated list. A command whose
    /// NotificationConfig names another topic is refused (InvalidNotificationConfig). Each POST
    /// is signed: X-Fleetrun-Signature = sha256=HMAC-SHA256(secret, body), each subscriber's
    /// secret in <data-dir>/webhook-secrets.
    #[arg(long = "webhook", env = "FLEETRUN_WEBHOOK", value_name = "TOPIC_ARN=URL",
        value_delimiter = ',', value_parser = parse_webhook)]
    webhooks: Vec<fleetrun_server::webhooks::Subscriber>,
    /// Longest wait, in seconds, between two attempts to deliver a notification (attempts back
    /// off 1 s, 2 s, 4 s, … up to this).
    #[arg(long, env = "FLEETRUN_WEBHOOK_RETRY_MAX", default_value_t = 60)]
    webhook_retry_max_secs: u64,
    /// Upload command output (OutputS3BucketName) to this S3-compatible endpoint, e.g.
    /// http://127.0.0.1:9000 (default: AWS S3). Credentials come from the usual AWS sources:
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or --s3-profile, the shared
    /// config and credentials files. The invocations' StandardOutputUrl points there too.
    #[arg(long, env = "FLEETRUN_S3_ENDPOINT", value_name = "URL")]
    s3_endpoint: Option<String>,
    /// The region S3 requests are signed for (default: --region).
    #[arg(long, env = "FLEETRUN_S3_REGION")]
    s3_region: Option<String>,
    /// Path-style S3 requests (<endpoint>/<bucket>/<key>). Default: true with --s3-endpoint
    /// (what self-hosted stores expect), false for AWS S3.
    #[arg(long, env = "FLEETRUN_S3_PATH_STYLE", value_name = "BOOL")]
    s3_path_style: Option<bool>,
    /// The AWS profile (shared config/credentials files) whose credentials sign S3 requests.
    #[arg(long, env = "FLEETRUN_S3_PROFILE")]
    s3_profile: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (leaf first). Without it a non-loopback
    /// address gets a self-signed certificate generated in <data-dir>/tls/.
    #[arg(
        long,
        env = "FLEETRUN_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "insecure_http"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "FLEETRUN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address: signatures, node credentials and command
    /// output then cross the network unencrypted.
    #[arg(long, env = "FLEETRUN_INSECURE_HTTP")]
    insecure_http: bool,
    /// Serve /metrics to anyone who reaches the port. Without it a scrape needs
    /// `Authorization: Bearer <token>`, the token in <data-dir>/metrics-token.
    #[arg(long, env = "FLEETRUN_METRICS_PUBLIC")]
    metrics_public: bool,
}

/// Whom the agent trusts as an `https://` server (default: the system's CA store).
#[derive(clap::Args)]
struct TrustArgs {
    /// PEM file of the CA, or of the server's self-signed certificate, the server must chain to.
    #[arg(long, env = "FLEETRUN_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// SHA-256 fingerprint of the server's certificate (hex, colons optional): pins it.
    #[arg(long, env = "FLEETRUN_SERVER_FINGERPRINT")]
    server_fingerprint: Option<String>,
}

impl TrustArgs {
    fn apply(self, cfg: &mut AgentConfig) {
        cfg.ca_cert = self.ca_cert;
        cfg.server_fingerprint = self.server_fingerprint;
    }
}

/// `fleetrun agent [--server …]` runs the agent; `fleetrun agent register …` registers once.
#[derive(Parser)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = agent_cli::HELP_DETAILS
)]
struct AgentArgs {
    #[command(subcommand)]
    action: Option<AgentAction>,
    /// The fleetrun server URL, e.g. http://127.0.0.1:8089; several servers on one database
    /// (replicas) as a comma-separated list: requests go to the next when one is unreachable.
    #[arg(long, env = "FLEETRUN_SERVER", required = true)]
    server: Option<String>,
    /// Activation id from `aws ssm create-activation`: registers first if the state dir holds
    /// no identity yet (else `fleetrun agent register` does it once).
    #[arg(long, env = "FLEETRUN_ACTIVATION_ID")]
    activation_id: Option<String>,
    /// File holding the activation code (`-`: standard input); without it the code comes from
    /// env FLEETRUN_ACTIVATION_CODE, which is then removed. Never on the command line.
    #[arg(long, requires = "activation_id")]
    activation_code_file: Option<PathBuf>,
    /// Directory for the node identity, queued results and script work dirs.
    #[arg(long, env = "FLEETRUN_STATE_DIR", required = true)]
    state_dir: Option<PathBuf>,
    /// Region reported to scripts as AWS_SSM_REGION_NAME.
    #[arg(long, env = "FLEETRUN_REGION", default_value = "us-east-1")]
    region: String,
    /// Commands run at once; the rest wait in order.
    #[arg(long, env = "FLEETRUN_MAX_CONCURRENT", default_value_t = 5)]
    max_concurrent: usize,
    /// On shutdown (SIGTERM, Ctrl-C), seconds to wait for running commands to finish and be
    /// reported. Commands still running then are not killed: their scripts run on, and the
    /// next start of the agent watches them again and reports their real results.
    #[arg(long, env = "FLEETRUN_DRAIN_GRACE", default_value_t = 5.0)]
    drain_grace_secs: f64,
    /// With --activation-id: how long to keep retrying registration while the server is
    /// unreachable (seconds, or 30s / 5m / 2h; 0 tries once). Default: keep trying.
    #[arg(long, env = "FLEETRUN_REGISTER_TIMEOUT", value_parser = agent_cli::parse_duration)]
    register_timeout: Option<Duration>,
    #[command(flatten)]
    trust: TrustArgs,
}

#[derive(Subcommand)]
enum AgentAction {
    /// Register this node once (a fresh Ed25519 key; only its public half is sent), save the
    /// identity in the state dir, and exit.
    #[command(after_help = agent_cli::HELP_DETAILS)]
    Register(AgentRegisterArgs),
}

#[derive(Parser)]
struct AgentRegisterArgs {
    /// The fleetrun server URL, e.g. http://127.0.0.1:8089; several servers on one database
    /// (replicas) as a comma-separated list: requests go to the next when one is unreachable.
    #[arg(long, env = "FLEETRUN_SERVER")]
    server: String,
    /// Directory the node identity is saved in.
    #[arg(long, env = "FLEETRUN_STATE_DIR")]
    state_dir: PathBuf,
    /// Activation id from `aws ssm create-activation`.
    #[arg(long, env = "FLEETRUN_ACTIVATION_ID")]
    activation_id: String,
    /// File holding the activation code (`-`: standard input); without it the code comes from
    /// env FLEETRUN_ACTIVATION_CODE, which is then removed.
    #[arg(long)]
    activation_code_file: Option<PathBuf>,
    /// Register even if the state dir already holds an identity.
    #[arg(long)]
    force: bool,
    /// How long to keep retrying while the server is unreachable (seconds, or 30s / 5m / 2h;
    /// 0 tries once). Default: keep trying.
    #[arg(long, env = "FLEETRUN_REGISTER_TIMEOUT", value_parser = agent_cli::parse_duration)]
    register_timeout: Option<Duration>,
    #[command(flatten)]
    trust: TrustArgs,
}

/// Colour in log lines only for a person watching: stderr is a terminal and `NO_COLOR` is unset or
/// empty (<https://no-color.org>). A file, a pipe or journald gets plain text.
fn log_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`). JSON mode writes one object per line
/// (event fields under `fields`, the request span under `span`); nothing else is written to stderr.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(log_colour()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
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

fn main() -> ExitCode {
    // One TLS crypto provider for every client and server in the process (rustls is built
    // without a default one, see ARCHITECTURE.md).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let ran = match cli.command {
        Cmd::Server(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(server(args, cli.log_format))),
        // One thread keeps the agent's footprint small.
        Cmd::Admin(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(admin::run(args))),
        Cmd::Completions(args) => {
            completions::print(&args, Cli::command(), AgentArgs::command());
            Ok(())
        }
        Cmd::Tail(args) => {
            let followed = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(tail::run(args)));
            return match followed {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("Error: {e:?}");
                    ExitCode::from(2)
                }
            };
        }
        Cmd::Agent(args) => {
            let code = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(agent(args)),
                Err(e) => {
                    tracing::error!(error = %e, "starting the runtime");
                    exit::STARTUP
                }
            };
            return ExitCode::from(code);
        }
    };
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

async fn server(args: ServerArgs, log_format: LogFormat) -> anyhow::Result<()> {
    fleetrun_server::private_dir(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let opened = args.store.open(&args.data_dir).await?;
    tracing::info!(store = %opened.describe, "store opened");
    let mut config = ServerConfig::new(&args.data_dir);
    config.region = args.region.clone();
    config.ping_timeout = Duration::from_secs(args.ping_timeout_secs);
    config.retention = args.retention_days.map(|d| Duration::from_secs(d * 86_400));
    config.webhooks = args.webhooks.clone();
    config.webhook_retry_max = Duration::from_secs(args.webhook_retry_max_secs.max(1));
    config.metrics_public = args.metrics_public;
    config.s3 = fleetrun_server::s3_output::S3Settings {
        path_style: args.s3_path_style.unwrap_or(args.s3_endpoint.is_some()),
        endpoint: args.s3_endpoint.clone(),
        region: args.s3_region.clone(),
        profile: args.s3_profile.clone(),
    };
    let mut server = Server::new(config, opened.store).await?;
    if let Some(bus) = opened.replicas {
        server = server.with_replicas(bus);
    }
    let admin = server
        .admin_credentials()
        .await
        .context("creating the administrator access key")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let tls_mode = tls::decide(
        addr,
        args.tls_cert.clone().zip(args.tls_key.clone()),
        args.insecure_http,
    );
    let tls = tls::configure(&tls_mode, &args.data_dir, addr).context("setting up TLS")?;
    let endpoint = endpoint_for(addr, tls.is_some());
    match &tls {
        Some(t) => tracing::info!(%endpoint, listen = %addr, data_dir = %args.data_dir.display(),
            certificate = %t.cert_path.display(), fingerprint = %t.fingerprint,
            generated = t.generated_now, "fleetrun server listening (TLS)"),
        None => tracing::info!(%endpoint, listen = %addr, data_dir = %args.data_dir.display(),
            "fleetrun server listening (plain HTTP)"),
    }
    if tls.is_none() && !tls::is_loopback(addr.ip()) {
        tracing::warn!(listen = %addr, "--insecure-http: serving plain HTTP beyond this machine; \
            signatures, node credentials and command output cross the network unencrypted");
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The local agent stops first, while the server still serves: the results of commands it
    // finishes during its shutdown grace, and its goodbye, reach the server.
    let (agent_stop_tx, agent_stop_rx) = tokio::sync::watch::channel(false);
    let local = if args.local_node {
        let state_dir = args.data_dir.join("local-node");
        // A protocol v1 identity (a shared secret) is useless now: register again.
        let saved = fleetrun_agent::load_identity(&state_dir);
        let activation = if matches!(saved, Ok(fleetrun_agent::SavedIdentity::Current(_))) {
            None
        } else {
            let (id, code) = server
                .local_activation()
                .await
                .map_err(|e| anyhow::anyhow!("creating the local activation: {}", e.message()))?;
            Some(Activation { id, code })
        };
        let mut cfg = AgentConfig::new(&endpoint, state_dir, activation, &args.region);
        cfg.drain_grace = drain_grace(args.drain_grace_secs)?;
        // The local agent pins this server's own certificate, whoever issued it.
        cfg.server_fingerprint = tls.as_ref().map(|t| t.fingerprint.clone());
        Some(cfg)
    } else {
        None
    };

    let mut serve_stop = stop_rx.clone();
    let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
    let serving = tokio::spawn(server.serve_tls(listener, acceptor, async move {
        let _ = serve_stop.wait_for(|s| *s).await;
    }));

    let mut local_task = None;
    let mut local_id = None;
    if let Some(cfg) = local {
        let identity = fleetrun_agent::register_or_load(&cfg)
            .await
            .context("registering the local node")?;
        local_id = Some(identity.instance_id.clone());
        let mut agent_stop = agent_stop_rx.clone();
        local_task = Some(tokio::spawn(fleetrun_agent::run(
            cfg,
            identity,
            async move {
                let _ = agent_stop.wait_for(|s| *s).await;
            },
        )));
    }
    let banner = Banner {
        endpoint: &endpoint,
        region: &args.region,
        data_dir: &args.data_dir,
        node: local_id.as_deref(),
        admin: admin.as_ref(),
        tls: tls
            .as_ref()
            .map(|t| (t, tls_mode == tls::TlsMode::SelfSigned)),
    };
    banner.log();
    // The banner is for a person at a terminal; in JSON mode the event above says it all, and
    // stdout stays empty so a collector reading both streams sees only JSON.
    if matches!(log_format, LogFormat::Text) {
        banner.print();
    }

    shutdown_signal().await;
    let _ = agent_stop_tx.send(true);
    if let Some(t) = local_task {
        if let Ok(Err(e)) = t.await {
            tracing::warn!(error = %e, "local agent stopped with an error");
        }
    }
    let _ = stop_tx.send(true);
    serving.await??;
    tracing::info!("fleetrun server stopped");
    Ok(())
}

/// The URL clients on this machine dial: the listen address, or loopback when listening on all
/// interfaces (`0.0.0.0` is no address to connect to; loopback is in every generated certificate).
fn endpoint_for(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// What a fresh server tells its operator: where to point clients, with which key.
struct Banner<'a> {
    endpoint: &'a str,
    region: &'a str,
    data_dir: &'a std::path::Path,
    node: Option<&'a str>,
    admin: Option<&'a fleetrun_server::auth::AdminCredentials>,
    /// The certificate served, and whether it is self-signed (clients must then trust it).
    tls: Option<(&'a tls::ServerTls, bool)>,
}

impl Banner<'_> {
    /// A certificate (or key file) named by absolute path: clients run from other directories.
    fn absolute(path: &std::path::Path) -> PathBuf {
        std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
    }

    /// The banner's facts as one log event (never the secret: only where its file is).
    fn log(&self) {
        let credentials = self
            .admin
            .map(|k| Self::absolute(&k.path).display().to_string());
        let certificate = self
            .tls
            .map(|(t, _)| Self::absolute(&t.cert_path).display().to_string());
        tracing::info!(
            endpoint = %self.endpoint,
            region = %self.region,
            data_dir = %self.data_dir.display(),
            local_node = self.node.map(tracing::field::display),
            admin_credentials_file = credentials.map(tracing::field::display),
            tls_certificate = certificate.map(tracing::field::display),
            tls_fingerprint = self.tls.map(|(t, _)| tracing::field::display(&t.fingerprint)),
            "fleetrun server ready"
        );
    }

    /// The start-up banner on stdout (not the log): where to point the `aws` CLI, with which key.
    /// The administrator secret is printed here so the first start ends with a working command;
    /// it is never logged, and it is read from the 0600 file the server keeps it in.
    fn print(&self) {
        let Self {
            endpoint,
            region,
            data_dir,
            node,
            admin,
            tls,
        } = self;
        println!();
        println!("fleetrun is serving the SSM Run Command API at {endpoint}");
        println!("  region {region}, data in {}", data_dir.display());
        println!("  web console at {endpoint}/console (sign in with an access key id and secret)");
        // A self-signed certificate is what clients must trust: name it by absolute path.
        let mut ca_bundle = String::new();
        if let Some((t, self_signed)) = tls {
            let cert = Self::absolute(&t.cert_path);
            println!("  TLS certificate {}", cert.display());
            println!("  SHA-256 fingerprint {}", t.fingerprint);
            println!(
                "  agents elsewhere: fleetrun agent --server https://<this host>:{} --server-fingerprint {}",
                endpoint.rsplit(':').next().unwrap_or_default(),
                t.fingerprint
            );
            if *self_signed {
                ca_bundle = format!(" AWS_CA_BUNDLE={}", cert.display());
            }
        }
        match node {
            Some(id) => println!("  this machine is managed node {id}"),
            None => println!(
                "  no local node (start with --local-node, or register agents with create-activation)"
            ),
        }
        println!();
        match admin {
            Some(key) => {
                println!(
                    "Every call is SigV4-signed. Administrator key (also in {}):",
                    key.path.display()
                );
                println!(
                    "  export AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_DEFAULT_REGION={region} AWS_ENDPOINT_URL={endpoint}{ca_bundle}",
                    key.access_key_id, key.secret_access_key
                );
            }
            None => println!(
                "Every call is SigV4-signed. The administrator key file {}/admin-credentials was removed; use a key from `fleetrun admin create-key`.",
                data_dir.display()
            ),
        }
        if let Some(id) = node {
            println!("Try it:");
            println!(
                "  aws ssm send-command --instance-ids {id} --document-name AWS-RunShellScript --parameters 'commands=[\"uname -a\"]'"
            );
        }
        println!();
    }
}

/// `--drain-grace-secs` as a duration: finite and not negative.
fn drain_grace(secs: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        anyhow::anyhow!("--drain-grace-secs must be a number of seconds ≥ 0, not {secs}")
    })
}

/// The activation code (file, stdin, or env, which is then cleared) for `id`. Runs first thing
/// on the agent's single-threaded runtime, before any other thread could read the environment.
fn activation(
    id: Option<String>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<Activation>> {
    let Some(id) = id else {
        std::env::remove_var(fleetrun_agent::ACTIVATION_CODE_ENV);
        return Ok(None);
    };
    let code = fleetrun_agent::read_activation_code(file)?;
    Ok(Some(Activation { id, code }))
}

/// `fleetrun agent …`: the exit code (`fleetrun_agent::cli::exit`); a failure is logged once, at
/// ERROR, with its causes.
async fn agent(args: AgentArgs) -> u8 {
    match agent_inner(args).await {
        Ok(code) => code,
        Err(e) => {
            // Context layers keep the agent's own error reachable, and with it its exit code.
            let code = e
                .downcast_ref::<AgentError>()
                .map_or(exit::STARTUP, AgentError::exit_code);
            tracing::error!(exit_code = code, "{e:#}");
            code
        }
    }
}

async fn agent_inner(args: AgentArgs) -> anyhow::Result<u8> {
    if let Some(AgentAction::Register(r)) = args.action {
        let activation = activation(Some(r.activation_id), r.activation_code_file.as_deref())?
            .context("an activation is required")?;
        let mut cfg = AgentConfig::new(&r.server, &r.state_dir, None, "us-east-1");
        cfg.register_timeout = r.register_timeout;
        r.trust.apply(&mut cfg);
        let identity = tokio::select! {
            registered = fleetrun_agent::register(&cfg, &activation, r.force) => {
                registered.context("registering with the server")?
            }
            () = shutdown_signal() => {
                tracing::error!(exit_code = exit::INTERRUPTED,
                    "interrupted before the server answered; this node is not registered");
                return Ok(exit::INTERRUPTED);
            }
        };
        println!(
            "registered as managed node {}; run it with: fleetrun agent --server {} --state-dir {}",
            identity.instance_id,
            r.server,
            r.state_dir.display()
        );
        return Ok(exit::CLEAN);
    }
    let activation = activation(args.activation_id, args.activation_code_file.as_deref())?;
    let server = args.server.context("--server is required")?;
    let state_dir = args.state_dir.context("--state-dir is required")?;
    let mut cfg = AgentConfig::new(&server, state_dir, activation, &args.region);
    cfg.max_concurrent = args.max_concurrent.max(1);
    cfg.drain_grace = drain_grace(args.drain_grace_secs)?;
    cfg.register_timeout = args.register_timeout;
    args.trust.apply(&mut cfg);
    // Stopping while still waiting for the server to register is a clean stop.
    let identity = tokio::select! {
        loaded = fleetrun_agent::register_or_load(&cfg) => {
            loaded.context("registering with the server")?
        }
        () = shutdown_signal() => {
            tracing::info!("stopped before registering");
            return Ok(exit::CLEAN);
        }
    };
    // `fleetrun_agent::run` logs "agent started" (with its settings) and "agent stopped".
    fleetrun_agent::run(cfg, identity, shutdown_signal()).await?;
    Ok(exit::CLEAN)
}

fn parse_webhook(spec: &str) -> Result<fleetrun_server::webhooks::Subscriber, String> {
    fleetrun_server::webhooks::Subscriber::parse(spec)
}
