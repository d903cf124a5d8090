//! One command fanned out to K nodes, until every invocation is terminal, with each server's peak RSS.
//!
//! The server is the real `fleetrun server` binary as a child process, so its RSS is its own; on
//! PostgreSQL there are two of them (replicas on one database), the nodes registered and polling
//! round-robin, the command sent through the first — so half the fan-out crosses replicas. The K
//! nodes are an **agent simulator**: each simulated node registers through `/agent/v2/register`
//! with its own Ed25519 key (activations tagged `fleetrun-bench=fanout`, 1,000 registrations
//! each), fetches session credentials from `/agent/v2/token`, long-polls `/agent/v2/poll` and
//! reports `/agent/v2/result`, each SigV4-signed, over real HTTP connections to the server, exactly
//! as the agent's channel does — but it runs no process and reports Success at once. What is
//! measured is therefore the control plane: delivery to K parked polls, K claims, K results.
//!
//! Timing starts just before SendCommand and stops when the last simulated node's result is
//! acknowledged; the command's status is then checked through ListCommands. The target is one
//! SendCommand with `Targets` `tag:fleetrun-bench`; while the server does not resolve tag targets
//! yet, the harness falls back to K/50 SendCommands of 50 InstanceIds each (and says so).

use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_ssm::types::{Tag, Target};
use aws_sdk_ssm::Client;
use fleetrun_agent::signing::{self, NodeKey, SessionCredentials};
use fleetrun_wire::agent::{
    AgentMessage, MachineInfo, Outcome, PollRequest, PollResponse, RegisterRequest,
    RegisterResponse, ResultReport, StepReport, TokenResponse, KEY_TYPE_ED25519, POLL_PATH,
    PROTOCOL_VERSION, REGISTER_PATH, RESULT_PATH, TOKEN_PATH, VERSION_HEADER,
};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::stores::Backend;
use crate::util::{
    free_port, open_files_limit, proc_status_bytes, signed_client, wait_http, wait_idle, ChildGuard,
};

const TAG_KEY: &str = "fleetrun-bench";
const TAG_VALUE: &str = "fanout";
/// AWS caps an activation's RegistrationLimit at 1,000.
const PER_ACTIVATION: usize = 1_000;

/// The fan-out result.
#[derive(Debug, Clone)]
pub struct Fanout {
    pub backend: Backend,
    /// Servers the nodes were split over.
    pub replicas: usize,
    pub nodes: usize,
    /// How the command was addressed: "1 SendCommand (tag target)" or the fallback.
    pub how: String,
    pub all_terminal: Duration,
    /// Peak VmRSS of each server, sampled every 20 ms during the fan-out.
    pub peak_rss_fanout: Vec<u64>,
    /// VmHWM of each server at the end (peak over its life, registration included).
    pub hwm: Vec<u64>,
    /// Time to register the K simulated nodes (setup, not part of the target).
    pub register: Duration,
}

struct SimNode {
    /// The server this node registered with and polls.
    base: Arc<str>,
    instance_id: String,
    region: String,
    /// Issued for an hour (the server's default): longer than any fan-out run.
    creds: SessionCredentials,
}

/// A request id unique within the run (a counter mixed with the process's random hash keys).
fn rand_id() -> u128 {
    use std::hash::{BuildHasher, RandomState};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (u128::from(RandomState::new().hash_one(n)) << 64) | n as u128
}

/// How a simulated node signs a request.
enum Sign<'a> {
    None,
    Key(&'a str, &'a str, &'a NodeKey),
    Session(&'a SimNode),
}

/// A POST of `body` to `path`, signed as the agent signs it.
fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: Vec<u8>,
    sign: Sign<'_>,
) -> reqwest::RequestBuilder {
    let host = base.trim_start_matches("http://");
    let version = PROTOCOL_VERSION.to_string();
    // Unique per request, as the agent's (identical signed requests are accepted once).
    let invocation = format!("{:032x}", rand_id());
    let headers: [(&str, &[u8]); 4] = [
        ("amz-sdk-invocation-id", invocation.as_bytes()),
        ("content-type", b"application/json"),
        ("host", host.as_bytes()),
        (VERSION_HEADER, version.as_bytes()),
    ];
    let req = fleetrun_sigv4::HttpRequest {
        method: "POST",
        path,
        query: "",
        headers: &headers,
        body: &body,
    };
    let now = signing::unix_now();
    let added = match sign {
        Sign::None => Vec::new(),
        Sign::Key(id, region, key) => signing::sign_token_request(key, id, region, &req, now),
        Sign::Session(node) => signing::sign_with_session(&node.creds, &node.region, &req, now),
    };
    let mut builder = http
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header("host", host)
        .header("amz-sdk-invocation-id", invocation)
        .header(VERSION_HEADER, version);
    for (name, value) in added {
        builder = builder.header(name, value);
    }
    builder.body(body)
}

fn machine(i: usize) -> MachineInfo {
    MachineInfo {
        computer_name: format!("sim-{i:05}"),
        ip_address: "127.0.0.1".into(),
        platform_type: "Linux".into(),
        platform_name: "fleetrun-bench simulator".into(),
        platform_version: "1".into(),
        agent_version: "sim".into(),
    }
}

async fn register(
    http: &reqwest::Client,
    base: &str,
    act: &(String, String),
    i: usize,
) -> anyhow::Result<SimNode> {
    let key = NodeKey::generate();
    let body = serde_json::to_vec(&RegisterRequest {
        activation_id: act.0.clone(),
        activation_code: act.1.clone(),
        public_key: key.public_key_base64(),
        public_key_type: KEY_TYPE_ED25519.into(),
        machine: machine(i),
    })?;
    let resp = post(http, base, REGISTER_PATH, body, Sign::None)
        .send()
        .await
        .context("register")?;
    if !resp.status().is_success() {
        bail!("register: HTTP {}", resp.status());
    }
    let r: RegisterResponse = resp.json().await.context("register response")?;
    let sign = Sign::Key(&r.instance_id, &r.region, &key);
    let resp = post(http, base, TOKEN_PATH, b"{}".to_vec(), sign)
        .send()
        .await
        .context("token")?;
    if !resp.status().is_success() {
        bail!("token: HTTP {}", resp.status());
    }
    let t: TokenResponse = resp.json().await.context("token response")?;
    Ok(SimNode {
        base: base.into(),
        instance_id: r.instance_id,
        region: r.region,
        creds: SessionCredentials::from(t),
    })
}

async fn poll(
    http: &reqwest::Client,
    base: &str,
    node: &SimNode,
    session: &str,
    wait_ms: u64,
) -> anyhow::Result<PollResponse> {
    let body = serde_json::to_vec(&PollRequest {
        session_id: session.to_string(),
        known_commands: vec![],
        wait_ms,
        machine: None,
        dropped_commands: vec![],
    })?;
    let resp = post(http, base, POLL_PATH, body, Sign::Session(node))
        .send()
        .await
        .context("poll")?;
    if !resp.status().is_success() {
        bail!("poll: HTTP {}", resp.status());
    }
    resp.json().await.context("poll response")
}

async fn report(
    http: &reqwest::Client,
    base: &str,
    node: &SimNode,
    command_id: &str,
) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&ResultReport {
        command_id: command_id.to_string(),
        outcome: Outcome::Success,
        response_code: 0,
        elapsed_ms: 0,
        steps: vec![StepReport {
            name: "aws:runShellScript".into(),
            outcome: Outcome::Success,
            exit_code: 0,
            start_offset_ms: 0,
            duration_ms: 0,
            stdout: "simulated\n".into(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
        }],
        finished_at_ms: None,
        held_ms: 0,
    })?;
    let resp = post(http, base, RESULT_PATH, body, Sign::Session(node))
        .send()
        .await
        .context("result")?;
    if !resp.status().is_success() {
        bail!("result: HTTP {}", resp.status());
    }
    Ok(())
}

/// Counts results acknowledged by the server, and wakes the waiter at K.
struct Progress {
    done: AtomicUsize,
    errors: AtomicUsize,
    target: usize,
    all: Notify,
}

/// A simulated node's life: long-poll, report every Run at once, until stopped.
async fn sim_loop(
    http: reqwest::Client,
    node: SimNode,
    session: String,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) {
    let base = node.base.clone();
    loop {
        let polled = tokio::select! {
            r = poll(&http, &base, &node, &session, 20_000) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let messages = match polled {
            Ok(r) => r.messages,
            Err(_) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        for m in messages {
            if let AgentMessage::Run { command_id, .. } = m {
                match report(&http, &base, &node, &command_id).await {
                    Ok(()) => {
                        if progress.done.fetch_add(1, Ordering::AcqRel) + 1 >= progress.target {
                            progress.all.notify_one();
                        }
                    }
                    Err(_) => {
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// Sends the fan-out command(s); returns the command ids and how they were addressed.
async fn send(client: &Client, nodes: &[String]) -> anyhow::Result<(Vec<String>, String)> {
    let target = Target::builder()
        .key(format!("tag:{TAG_KEY}"))
        .values(TAG_VALUE)
        .build();
    let tagged = client
        .send_command()
        .document_name("AWS-RunShellScript")
        .targets(target)
        .max_concurrency("100%")
        .max_errors("100%")
        .parameters("commands", vec!["true".into()])
        .send()
        .await;
    match tagged {
        Ok(out) => {
            let id = out
                .command()
                .and_then(|c| c.command_id())
                .context("no CommandId")?;
            Ok((vec![id.to_string()], "1 SendCommand (tag target)".into()))
        }
        Err(e) => {
            let code = e.as_service_error().and_then(|s| {
                use aws_sdk_ssm::error::ProvideErrorMetadata;
                s.code().map(str::to_string)
            });
            if code.as_deref() != Some("InvalidParameters") {
                return Err(e).context("SendCommand (tag target)");
            }
            // Tag targets are not resolved by this build: 50 InstanceIds per SendCommand.
            let mut ids = Vec::new();
            for chunk in nodes.chunks(50) {
                let out = client
                    .send_command()
                    .document_name("AWS-RunShellScript")
                    .set_instance_ids(Some(chunk.to_vec()))
                    .max_concurrency("100%")
                    .max_errors("100%")
                    .parameters("commands", vec!["true".into()])
                    .send()
                    .await
                    .context("SendCommand (50 InstanceIds)")?;
                ids.push(
                    out.command()
                        .and_then(|c| c.command_id())
                        .context("no CommandId")?
                        .to_string(),
                );
            }
            let how = format!(
                "{} SendCommands of ≤50 InstanceIds (tag targets not in this build)",
                ids.len()
            );
            Ok((ids, how))
        }
    }
}

/// Checks through ListCommands that every fan-out command ended Success on all its nodes.
async fn verify(client: &Client, ids: &[String], k: usize) -> anyhow::Result<()> {
    let mut completed = 0;
    for id in ids {
        let out = client
            .list_commands()
            .command_id(id)
            .send()
            .await
            .context("ListCommands (verify fan-out)")?;
        let cmd = out.commands().first().context("fan-out command missing")?;
        let status = cmd.status().map(|s| s.as_str()).unwrap_or("");
        if status != "Success" {
            bail!("fan-out command {id} is {status}, not Success");
        }
        completed += cmd.completed_count() as usize;
    }
    if completed != k {
        bail!("fan-out completed {completed} invocations, expected {k}");
    }
    Ok(())
}

/// One `fleetrun server` child process.
struct ServerChild {
    base: Arc<str>,
    data: std::path::PathBuf,
    guard: ChildGuard,
}

fn spawn_server(
    fleetrun: &std::path::Path,
    data: std::path::PathBuf,
    store_url: Option<&str>,
) -> anyhow::Result<ServerChild> {
    let port = free_port()?;
    let mut cmd = Process::new(fleetrun);
    cmd.arg("server")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(url) = store_url {
        // By environment, as a URL with a password should be passed.
        cmd.env("FLEETRUN_STORE", url);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", fleetrun.display()))?;
    Ok(ServerChild {
        base: format!("http://127.0.0.1:{port}").into(),
        data,
        guard: ChildGuard(child),
    })
}

/// Runs the fan-out against fresh `fleetrun server` child processes: one on SQLite (`store_url`
/// None), or `replicas` sharing the PostgreSQL database at `store_url`.
pub async fn fanout(
    fleetrun: &std::path::Path,
    work: &std::path::Path,
    store_url: Option<&str>,
    replicas: usize,
    k: usize,
    limit: Duration,
) -> anyhow::Result<Fanout> {
    let fds = open_files_limit()?;
    let needed = k as u64 + 256;
    if fds < needed {
        bail!("fan-out to {k} nodes needs about {needed} open files but `ulimit -n` is {fds}; raise it (scripts/bench.sh raises the soft limit to the hard one)");
    }
    let backend = if store_url.is_some() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let replicas = replicas.max(1);
    let mut servers: Vec<ServerChild> = Vec::with_capacity(replicas);
    for i in 0..replicas {
        // One at a time: the first creates the schema and the administrator key.
        let mut server =
            spawn_server(fleetrun, work.join(format!("fanout-server-{i}")), store_url)?;
        wait_http(
            &format!("{}/healthz", server.base),
            &mut server.guard.0,
            Duration::from_secs(20),
        )
        .await?;
        servers.push(server);
    }
    let pids: Vec<u32> = servers.iter().map(|s| s.guard.pid()).collect();
    let admin = fleetrun_server::auth::read_admin_credentials(&servers[0].data)?
        .context("the server wrote no admin-credentials file")?;
    let client = signed_client(
        &servers[0].base,
        &admin.access_key_id,
        &admin.secret_access_key,
    );

    // Activations (tagged, so a tag target can find the nodes), then K registrations.
    let mut acts = Vec::new();
    for chunk in 0..k.div_ceil(PER_ACTIVATION) {
        let limit = (k - chunk * PER_ACTIVATION).min(PER_ACTIVATION);
        let act = client
            .create_activation()
            .iam_role("fleetrun-bench")
            .registration_limit(i32::try_from(limit)?)
            .tags(Tag::builder().key(TAG_KEY).value(TAG_VALUE).build()?)
            .send()
            .await
            .context("CreateActivation (fan-out)")?;
        acts.push((
            act.activation_id().context("no ActivationId")?.to_string(),
            act.activation_code()
                .context("no ActivationCode")?
                .to_string(),
        ));
    }
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(600))
        .build()?;
    let registering = Instant::now();
    let mut nodes = Vec::with_capacity(k);
    let mut set = JoinSet::new();
    for i in 0..k {
        if set.len() >= 32 {
            if let Some(r) = set.join_next().await {
                nodes.push(r??);
            }
        }
        let base = servers[i % replicas].base.clone();
        let (http, act) = (http.clone(), acts[i / PER_ACTIVATION].clone());
        set.spawn(async move { register(&http, &base, &act, i).await });
    }
    while let Some(r) = set.join_next().await {
        nodes.push(r??);
    }
    let register_time = registering.elapsed();

    // One short poll per node first: opens every connection and runs each node's first claim, so
    // the timed phase measures delivery, not connection set-up.
    let session = |i: usize| format!("sim-session-{i}");
    let nodes = Arc::new(nodes);
    let mut warm = JoinSet::new();
    for i in 0..k {
        let (http, nodes) = (http.clone(), nodes.clone());
        warm.spawn(async move {
            let node = &nodes[i];
            poll(&http, &node.base, node, &session(i), 0)
                .await
                .map(|_| ())
        });
    }
    while let Some(r) = warm.join_next().await {
        r??;
    }
    let nodes = Arc::try_unwrap(nodes).map_err(|_| anyhow::anyhow!("nodes still shared"))?;

    let progress = Arc::new(Progress {
        done: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
        target: k,
        all: Notify::new(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sims = JoinSet::new();
    let ids: Vec<String> = nodes.iter().map(|n| n.instance_id.clone()).collect();
    for (i, node) in nodes.into_iter().enumerate() {
        sims.spawn(sim_loop(
            http.clone(),
            node,
            session(i),
            progress.clone(),
            stop_rx.clone(),
        ));
    }
    // Every long poll is parked once the servers stop using CPU.
    for &pid in &pids {
        wait_idle(pid, Duration::from_secs(30)).await?;
    }

    let sampling = Arc::new(AtomicUsize::new(1));
    let sampler = {
        let (sampling, pids) = (sampling.clone(), pids.clone());
        tokio::spawn(async move {
            let mut peak = vec![0u64; pids.len()];
            while sampling.load(Ordering::Relaxed) == 1 {
                for (peak, &pid) in peak.iter_mut().zip(&pids) {
                    if let Ok(rss) = proc_status_bytes(pid, "VmRSS") {
                        *peak = (*peak).max(rss);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let started = Instant::now();
    let sent = send(&client, &ids).await;
    let waited = match &sent {
        Ok(_) => tokio::time::timeout(limit, async {
            while progress.done.load(Ordering::Acquire) < k {
                tokio::select! {
                    _ = progress.all.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        })
        .await
        .is_ok(),
        Err(_) => false,
    };
    let all_terminal = started.elapsed();
    sampling.store(0, Ordering::Relaxed);
    let peak_rss_fanout = sampler.await.unwrap_or_default();
    let hwm = pids
        .iter()
        .map(|&pid| proc_status_bytes(pid, "VmHWM"))
        .collect::<anyhow::Result<Vec<u64>>>()?;
    let _ = stop_tx.send(true);
    sims.abort_all();
    while sims.join_next().await.is_some() {}
    let (cmd_ids, how) = sent?;
    if !waited {
        bail!(
            "fan-out: {} of {k} results after {limit:?} ({} simulator errors)",
            progress.done.load(Ordering::Acquire),
            progress.errors.load(Ordering::Relaxed)
        );
    }
    verify(&client, &cmd_ids, k).await?;
    drop(servers);
    Ok(Fanout {
        backend,
        replicas,
        nodes: k,
        how,
        all_terminal,
        peak_rss_fanout,
        hwm,
        register: register_time,
    })
}
