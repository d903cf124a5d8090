//! `fleetrun-agent`: the node agent alone, for nodes. Same flags, environment variables and
//! behaviour as `fleetrun agent`, but this binary links no server, SQL or AWS SDK code, so far fewer
//! pages are mapped and touched: its idle RSS is what BENCHMARKS.md reports against the ≤ 5 MB target.
//!
//! Flags are parsed by hand (no clap) to keep the binary small; `--help` lists them, then the
//! registration behaviour, state dir layout, environment and exit codes in the words
//! `fleetrun agent --help` uses (`fleetrun_agent::cli::HELP_DETAILS`).
//!
//! Registration is a one-shot step (`fleetrun-agent register …`) that reads the activation code
//! from a file, standard input or `FLEETRUN_ACTIVATION_CODE` (removed from the environment once
//! read), never from the command line: the long-running agent's `/proc/PID/cmdline` holds no
//! secret.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use fleetrun_agent::cli::{self, exit};
use fleetrun_agent::{Activation, AgentConfig, AgentError, DEFAULT_MAX_CONCURRENT};

const HELP: &str = "fleetrun-agent: the fleetrun node agent

Usage: fleetrun-agent register --server URL --state-dir DIR --activation-id ID
                               [--activation-code-file FILE|-] [--force] [--register-timeout T]
       fleetrun-agent [run] --server URL --state-dir DIR [--region REGION] [--max-concurrent N]
                            [--activation-id ID [--activation-code-file FILE|-]]
                            [--register-timeout T]

  register               register this node once (a fresh Ed25519 key; only its public half
                         is sent), save the identity in the state dir, and exit
  run (the default)      run with the saved identity; with --activation-id, register first
                         if the state dir has no identity yet
  --server               server URL, http://127.0.0.1:8089 or https://host:8089 [env FLEETRUN_SERVER]
                         (replicas on one database: URLs separated by commas, tried in turn)
  --state-dir            node identity, queued results, script work dirs    [env FLEETRUN_STATE_DIR]
  --activation-id        from `aws ssm create-activation`                   [env FLEETRUN_ACTIVATION_ID]
  --activation-code-file file holding the activation code, - for standard input; without it
                         the code is read from env FLEETRUN_ACTIVATION_CODE (then removed)
  --force                register even if the state dir holds an identity
  --region               given to scripts as AWS_SSM_REGION_NAME (us-east-1) [env FLEETRUN_REGION]
  --max-concurrent       commands run at once; the rest wait in order (5)   [env FLEETRUN_MAX_CONCURRENT]
  --drain-grace-secs     on shutdown, seconds to wait for running commands (5); those still
                         running are not killed: the next start reports them [env FLEETRUN_DRAIN_GRACE]
  --register-timeout     how long to keep retrying registration while the server is unreachable:
                         seconds or 30s/5m/2h; 0 tries once (default: keep trying)
                                                                     [env FLEETRUN_REGISTER_TIMEOUT]
  --ca-cert              PEM CA (or the server's self-signed certificate) an https:// server
                         must chain to (default: the system's CAs)         [env FLEETRUN_CA_CERT]
  --server-fingerprint   SHA-256 of the server's certificate, hex, colons optional: pins it
                                                                   [env FLEETRUN_SERVER_FINGERPRINT]
Logging: RUST_LOG=error|warn|info|debug|trace (a level only; default info), to stderr;
coloured only when stderr is a terminal and NO_COLOR is unset.";

/// How the binary ends: an exit code, and for failures the message to log.
enum Ending {
    Code(u8),
    Failed(u8, String),
}

impl From<AgentError> for Ending {
    fn from(e: AgentError) -> Self {
        Self::Failed(e.exit_code(), fleetrun_agent::describe(&e))
    }
}

/// The flags, each falling back to its environment variable.
struct Flags {
    register: bool,
    server: Option<String>,
    state_dir: Option<String>,
    activation_id: Option<String>,
    activation_code_file: Option<PathBuf>,
    force: bool,
    region: String,
    max_concurrent: usize,
    drain_grace: std::time::Duration,
    ca_cert: Option<PathBuf>,
    server_fingerprint: Option<String>,
    register_timeout: Option<Duration>,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Flags, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut f = Flags {
        register: false,
        server: env("FLEETRUN_SERVER"),
        state_dir: env("FLEETRUN_STATE_DIR"),
        activation_id: env("FLEETRUN_ACTIVATION_ID"),
        activation_code_file: None,
        force: false,
        region: env("FLEETRUN_REGION").unwrap_or_else(|| "us-east-1".into()),
        max_concurrent: DEFAULT_MAX_CONCURRENT,
        drain_grace: fleetrun_agent::DEFAULT_DRAIN_GRACE,
        ca_cert: env("FLEETRUN_CA_CERT").map(PathBuf::from),
        server_fingerprint: env("FLEETRUN_SERVER_FINGERPRINT"),
        register_timeout: None,
    };
    let mut max = env("FLEETRUN_MAX_CONCURRENT");
    let mut drain = env("FLEETRUN_DRAIN_GRACE");
    let mut register_timeout = env("FLEETRUN_REGISTER_TIMEOUT");
    let mut args = args.peekable();
    match args.peek().map(String::as_str) {
        Some("register") => {
            f.register = true;
            args.next();
        }
        Some("run") => {
            args.next();
        }
        _ => {}
    }
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        if flag == "--force" && f.register {
            f.force = true;
            continue;
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(format!("{name} needs a value")),
        };
        match name.as_str() {
            "--server" => f.server = Some(value),
            "--state-dir" => f.state_dir = Some(value),
            "--activation-id" => f.activation_id = Some(value),
            "--activation-code-file" => f.activation_code_file = Some(PathBuf::from(value)),
            "--activation-code" => {
                return Err(
                    "--activation-code is gone: the code must not sit on a command line; use --activation-code-file FILE (or - for standard input) or env FLEETRUN_ACTIVATION_CODE".into(),
                )
            }
            "--region" => f.region = value,
            "--max-concurrent" => max = Some(value),
            "--drain-grace-secs" => drain = Some(value),
            "--ca-cert" => f.ca_cert = Some(PathBuf::from(value)),
            "--server-fingerprint" => f.server_fingerprint = Some(value),
            "--register-timeout" => register_timeout = Some(value),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if let Some(m) = max {
        f.max_concurrent = m
            .parse::<usize>()
            .map_err(|_| format!("--max-concurrent: {m:?} is not a number"))?
            .max(1);
    }
    if let Some(d) = drain {
        f.drain_grace = d
            .parse::<f64>()
            .ok()
            .and_then(|secs| std::time::Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| format!("--drain-grace-secs: {d:?} is not a number of seconds"))?;
    }
    if let Some(t) = register_timeout {
        f.register_timeout =
            Some(cli::parse_duration(&t).map_err(|e| format!("--register-timeout: {e}"))?);
    }
    Ok(f)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// The activation to register with, if `--activation-id` was given (required for `register`).
/// Reads the code, and always clears `FLEETRUN_ACTIVATION_CODE` from the environment: it runs
/// before any other thread exists.
fn activation(f: &Flags) -> Result<Option<Activation>, String> {
    let Some(id) = f.activation_id.clone() else {
        std::env::remove_var(fleetrun_agent::ACTIVATION_CODE_ENV);
        return if f.register {
            Err("register needs --activation-id".into())
        } else {
            Ok(None)
        };
    };
    let code = fleetrun_agent::read_activation_code(f.activation_code_file.as_deref())
        .map_err(|e| e.to_string())?;
    Ok(Some(Activation { id, code }))
}

/// Registers (`register`) or runs the agent; the exit code, or the failure to report.
async fn agent(f: Flags, activation: Option<Activation>) -> Ending {
    let usage = |m: &str| Ending::Failed(exit::USAGE, m.to_owned());
    let Some(server) = f.server else {
        return usage("--server is required");
    };
    let Some(state_dir) = f.state_dir else {
        return usage("--state-dir is required");
    };
    if f.register {
        let Some(activation) = activation else {
            return usage("register needs --activation-id");
        };
        let mut cfg = AgentConfig::new(&server, &state_dir, None, &f.region);
        cfg.ca_cert = f.ca_cert;
        cfg.server_fingerprint = f.server_fingerprint;
        cfg.register_timeout = f.register_timeout;
        let identity = tokio::select! {
            registered = fleetrun_agent::register(&cfg, &activation, f.force) => match registered {
                Ok(identity) => identity,
                Err(e) => return e.into(),
            },
            () = shutdown_signal() => {
                return Ending::Failed(exit::INTERRUPTED,
                    "interrupted before the server answered; this node is not registered".into());
            }
        };
        println!(
            "registered as managed node {}; run it with: fleetrun-agent --server {server} --state-dir {state_dir}",
            identity.instance_id
        );
        return Ending::Code(exit::CLEAN);
    }
    let mut cfg = AgentConfig::new(&server, state_dir, activation, &f.region);
    cfg.max_concurrent = f.max_concurrent;
    cfg.drain_grace = f.drain_grace;
    cfg.ca_cert = f.ca_cert;
    cfg.server_fingerprint = f.server_fingerprint;
    cfg.register_timeout = f.register_timeout;
    // Stopping while still waiting for the server to register is a clean stop.
    let identity = tokio::select! {
        loaded = fleetrun_agent::register_or_load(&cfg) => match loaded {
            Ok(identity) => identity,
            Err(e) => return e.into(),
        },
        () = shutdown_signal() => {
            tracing::info!("stopped before registering");
            return Ending::Code(exit::CLEAN);
        }
    };
    match fleetrun_agent::run(cfg, identity, shutdown_signal()).await {
        Ok(()) => Ending::Code(exit::CLEAN),
        Err(e) => e.into(),
    }
}

fn main() -> ExitCode {
    let flags = match parse(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(msg) if msg.is_empty() => {
            println!("{HELP}\n\n{}", cli::HELP_DETAILS);
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("fleetrun-agent: {msg}\n\n{HELP}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let activation = match activation(&flags) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("fleetrun-agent: {msg}");
            return ExitCode::from(exit::USAGE);
        }
    };
    // A plain level, not `EnvFilter`: its directive syntax links the regex engine, about a
    // megabyte of code that would be paged in at start.
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    // Colour only for a person watching: stderr a terminal, `NO_COLOR` unset or empty.
    let colour = {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    // One thread keeps the agent's footprint small (as `fleetrun agent` does).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetrun-agent: starting the runtime: {e}");
            return ExitCode::from(exit::STARTUP);
        }
    };
    match runtime.block_on(agent(flags, activation)) {
        Ending::Code(code) => ExitCode::from(code),
        Ending::Failed(code, message) => {
            // Logged (once), so it lands wherever the agent's log goes; usage errors, before
            // logging starts, are printed above.
            tracing::error!(exit_code = code, "{message}");
            ExitCode::from(code)
        }
    }
}
