//! `fleetrun-agent`: the node agent alone, for nodes. Same flags, environment variables and
//! behaviour as `fleetrun agent`, but this binary links no server, SQL or AWS SDK code, so far fewer
//! pages are mapped and touched: its idle RSS is what BENCHMARKS.md reports against the ≤ 5 MB target.
//!
//! Flags are parsed by hand (no clap) to keep the binary small; `--help` lists them.

use std::process::ExitCode;

use fleetrun_agent::{Activation, AgentConfig, DEFAULT_MAX_CONCURRENT};

const HELP: &str = "fleetrun-agent: the fleetrun node agent

Usage: fleetrun-agent --server URL --state-dir DIR [--activation-id ID --activation-code CODE]
                      [--region REGION] [--max-concurrent N]

  --server           fleetrun server URL, e.g. http://127.0.0.1:8089        [env FLEETRUN_SERVER]
  --state-dir        node identity, queued results, script work dirs        [env FLEETRUN_STATE_DIR]
  --activation-id    from `aws ssm create-activation` (first start only)   [env FLEETRUN_ACTIVATION_ID]
  --activation-code  from `aws ssm create-activation` (first start only)   [env FLEETRUN_ACTIVATION_CODE]
  --region           given to scripts as AWS_SSM_REGION_NAME (us-east-1)  [env FLEETRUN_REGION]
  --max-concurrent   commands run at once; the rest wait in order (5)      [env FLEETRUN_MAX_CONCURRENT]
Logging: RUST_LOG=error|warn|info|debug|trace (a level only; default info), to stderr.";

/// The flags, each falling back to its environment variable.
struct Flags {
    server: Option<String>,
    state_dir: Option<String>,
    activation_id: Option<String>,
    activation_code: Option<String>,
    region: String,
    max_concurrent: usize,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Flags, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut f = Flags {
        server: env("FLEETRUN_SERVER"),
        state_dir: env("FLEETRUN_STATE_DIR"),
        activation_id: env("FLEETRUN_ACTIVATION_ID"),
        activation_code: env("FLEETRUN_ACTIVATION_CODE"),
        region: env("FLEETRUN_REGION").unwrap_or_else(|| "us-east-1".into()),
        max_concurrent: DEFAULT_MAX_CONCURRENT,
    };
    let mut max = env("FLEETRUN_MAX_CONCURRENT");
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
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
            "--activation-code" => f.activation_code = Some(value),
            "--region" => f.region = value,
            "--max-concurrent" => max = Some(value),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if let Some(m) = max {
        f.max_concurrent = m
            .parse::<usize>()
            .map_err(|_| format!("--max-concurrent: {m:?} is not a number"))?
            .max(1);
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

async fn agent(f: Flags) -> Result<(), String> {
    let server = f.server.ok_or("--server is required")?;
    let state_dir = f.state_dir.ok_or("--state-dir is required")?;
    let activation = match (f.activation_id, f.activation_code) {
        (Some(id), Some(code)) => Some(Activation { id, code }),
        (None, None) => None,
        _ => return Err("--activation-id and --activation-code go together".into()),
    };
    let mut cfg = AgentConfig::new(&server, state_dir, activation, &f.region);
    cfg.max_concurrent = f.max_concurrent;
    let identity = fleetrun_agent::register_or_load(&cfg)
        .await
        .map_err(|e| format!("registering with the server: {e}"))?;
    fleetrun_agent::run(cfg, identity, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let flags = match parse(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(msg) if msg.is_empty() => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("fleetrun-agent: {msg}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    // A plain level, not `EnvFilter`: its directive syntax links the regex engine, about a
    // megabyte of code that would be paged in at start.
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    // One thread keeps the agent's footprint small (as `fleetrun agent` does).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetrun-agent: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(agent(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleetrun-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
