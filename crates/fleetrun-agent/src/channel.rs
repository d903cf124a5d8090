//! The channel to the server: the HTTP client for the protocol calls (`/agent/v2/register`
//! unsigned, `/token` signed with the node's key, `/poll`, `/result` and `/goodbye` SigV4-signed
//! with session credentials from `credentials`), registration with retries while the server is
//! unreachable ([`register_patiently`]), the long-poll loop that receives `Run` and `Cancel`
//! messages, result delivery with retries from the outbox, and the goodbye of a clean stop
//! ([`say_goodbye`]). There is no fixed-interval polling:
//! a new poll starts as soon as the previous one answers; only failures wait (0.5 s doubling to
//! 10 s, jittered), and so does an empty answer that came back at once (a server not holding
//! polls, e.g. while it shuts down, must not be hammered). Executing commands is the executor's job; the queue is `commands`.
//!
//! A node the server no longer knows ([`NOT_REGISTERED_CODE`] on any signed call) ends the poll
//! loop: [`outcome`] then makes `run` return [`AgentError::Deregistered`], and nothing retries.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use fleetrun_sigv4::HttpRequest;
use fleetrun_wire::agent::{
    AgentMessage, GoodbyeAck, GoodbyeRequest, MachineInfo, OutputAck, OutputShipment, PollRequest,
    PollResponse, RegisterRequest, RegisterResponse, ResultAck, ResultReport, TokenRequest,
    TokenResponse, GOODBYE_PATH, MAX_DROPPED_PER_POLL, NOT_REGISTERED_CODE, OUTPUT_PATH, POLL_PATH,
    PROTOCOL_MISMATCH_CODE, PROTOCOL_VERSION, REGISTER_PATH, RESULT_PATH, TOKEN_PATH,
    VERSION_HEADER,
};
use reqwest::header::{HeaderValue, CONTENT_TYPE, HOST};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::credentials::SessionCache;
use crate::error::describe;
use crate::identity::Identity;
use crate::ship::{OutputSink, Piece, ShipFailure};
use crate::signing::{self, SessionCredentials};
use crate::{commands, Agent, AgentConfig, AgentError};

/// Extra time the HTTP timeout of a poll allows beyond the wait the server may hold it.
const POLL_SLACK: Duration = Duration::from_secs(10);
/// Timeout of the register and result calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Registration retries: 1 s doubling to 30 s (jittered). Slower than the poll loop's: many nodes
/// may be registering against a server that is still coming up.
const REGISTER_BACKOFF_FIRST: Duration = Duration::from_secs(1);
const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The longest a goodbye may delay the end of shutdown (token request included).
pub(crate) const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// An empty poll answer faster than this means the server did not hold the poll.
const EARLY_EMPTY_ANSWER: Duration = Duration::from_millis(250);

/// HTTP client for the agent protocol. Without an identity it can only register.
#[derive(Clone)]
pub(crate) struct ServerClient {
    http: reqwest::Client,
    /// The servers to talk to: replicas of one fleetrun (any answers any call). Requests go to
    /// the current one; one that cannot be reached (or answers 502/503/504) hands over to the next.
    servers: Arc<[Endpoint]>,
    current: Arc<AtomicUsize>,
    node: Option<Arc<NodeSession>>,
    /// Named in the advice when the server says this node is deregistered.
    state_dir: PathBuf,
}

/// One server URL, taken apart for signing.
struct Endpoint {
    base: String,
    /// The `Host` header, sent and signed.
    host: String,
    /// The server URL's path (no trailing `/`), signed in front of each protocol path.
    prefix: String,
}

impl Endpoint {
    fn parse(server_url: &str) -> Result<(Endpoint, reqwest::Url), AgentError> {
        let url = reqwest::Url::parse(server_url)
            .map_err(|e| AgentError::Config(format!("server URL {server_url:?}: {e}")))?;
        let malformed = || {
            AgentError::Config(format!(
                "server URL {server_url:?}: expected http[s]://host[:port]"
            ))
        };
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(malformed());
        }
        let host = signing::host_header(&url).ok_or_else(malformed)?;
        let endpoint = Endpoint {
            base: server_url.trim_end_matches('/').to_owned(),
            host,
            prefix: url.path().trim_end_matches('/').to_owned(),
        };
        Ok((endpoint, url))
    }
}

/// The server URLs of a `--server` value: one, or several separated by commas (replicas).
pub(crate) fn server_urls(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// A registered node's identity and its current session credentials.
struct NodeSession {
    identity: Identity,
    session: SessionCache,
    /// Set when the server answered that it does not know this node.
    deregistered: AtomicBool,
}

/// How one request is authenticated.
#[derive(Clone, Copy)]
enum Auth<'a> {
    /// Registration: nothing to prove yet.
    None,
    /// The token request: the node's Ed25519 key.
    Key(&'a Identity),
    /// Polls and results: SigV4 with session credentials.
    Session(&'a Identity, &'a SessionCredentials),
}

impl ServerClient {
    /// A client for `cfg.server_url` (`http[s]://host:port`, optionally with a path prefix, or
    /// several such URLs separated by commas: replicas, tried in turn), trusting an https server
    /// as `cfg.ca_cert` / `cfg.server_fingerprint` say (see `tls`).
    pub(crate) fn new(cfg: &AgentConfig, identity: Option<&Identity>) -> Result<Self, AgentError> {
        let mut servers = Vec::new();
        let mut scheme = None;
        for server_url in server_urls(&cfg.server_url) {
            let (endpoint, url) = Endpoint::parse(server_url)?;
            if scheme.get_or_insert_with(|| url.scheme().to_owned()) != url.scheme() {
                return Err(AgentError::Config(
                    "server URLs: all http:// or all https://, not both".into(),
                ));
            }
            servers.push(endpoint);
        }
        let Some(scheme) = scheme else {
            return Err(AgentError::Config("no server URL given".into()));
        };
        let tls = crate::tls::client_config(
            &scheme,
            cfg.ca_cert.as_deref(),
            cfg.server_fingerprint.as_deref(),
        )?;
        let node = identity.map(|id| {
            Arc::new(NodeSession {
                identity: id.clone(),
                session: SessionCache::default(),
                deregistered: AtomicBool::new(false),
            })
        });
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("fleetrun-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AgentError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            servers: servers.into(),
            current: Arc::new(AtomicUsize::new(0)),
            node,
            state_dir: cfg.state_dir.clone(),
        })
    }

    pub(crate) async fn register(
        &self,
        req: &RegisterRequest,
    ) -> Result<RegisterResponse, AgentError> {
        self.call(REGISTER_PATH, &encode(req)?, Auth::None, CALL_TIMEOUT)
            .await
    }

    pub(crate) async fn poll(
        &self,
        req: &PollRequest,
        wait: Duration,
    ) -> Result<PollResponse, AgentError> {
        self.signed_call(POLL_PATH, req, wait + POLL_SLACK).await
    }

    /// Tells the server this agent is stopping (its node shows `ConnectionLost` at once).
    pub(crate) async fn goodbye(&self) -> Result<GoodbyeAck, AgentError> {
        self.signed_call(GOODBYE_PATH, &GoodbyeRequest::default(), GOODBYE_TIMEOUT)
            .await
    }

    /// True once the server has answered that it does not know this node.
    pub(crate) fn is_deregistered(&self) -> bool {
        self.node
            .as_ref()
            .is_some_and(|n| n.deregistered.load(Ordering::Relaxed))
    }

    /// [`AgentError::Deregistered`] for this node (remembered) when `e` is the server's answer
    /// for a node it does not know; `e` unchanged otherwise.
    fn unless_deregistered(&self, node: &NodeSession, e: AgentError) -> AgentError {
        match e {
            AgentError::Server { code, .. } if code == NOT_REGISTERED_CODE => {
                node.deregistered.store(true, Ordering::Relaxed);
                self.deregistered_error(node)
            }
            other => other,
        }
    }

    fn deregistered_error(&self, node: &NodeSession) -> AgentError {
        AgentError::Deregistered {
            instance_id: node.identity.instance_id.clone(),
            state_dir: self.state_dir.clone(),
        }
    }

    /// Sends `report` with `held_ms` set to how long it has waited since it finished.
    pub(crate) async fn post_result(&self, report: &ResultReport) -> Result<ResultAck, AgentError> {
        let held_ms = report.finished_at_ms.map_or(0, |finished| {
            (crate::step_process::unix_millis() - finished).max(0)
        });
        let stamped = ResultReport {
            held_ms,
            ..report.clone()
        };
        self.signed_call(RESULT_PATH, &stamped, CALL_TIMEOUT).await
    }

    /// Ships a piece of live output; answers how many bytes of the stream the server holds.
    pub(crate) async fn post_output(&self, piece: Piece<'_>) -> Result<OutputAck, AgentError> {
        let shipment = OutputShipment {
            command_id: piece.command_id.to_owned(),
            step: piece.step.to_owned(),
            stream: piece.stream.to_owned(),
            offset: piece.offset,
            data: base64::engine::general_purpose::STANDARD.encode(piece.data),
        };
        self.signed_call(OUTPUT_PATH, &shipment, CALL_TIMEOUT).await
    }

    /// A poll or result with the session credentials (fetched or refreshed first when due). An
    /// answer saying they are bad (expired, unknown, signature refused) drops them and the
    /// request is tried once more with fresh ones.
    async fn signed_call<Q: Serialize, A: DeserializeOwned>(
        &self,
        path: &str,
        body: &Q,
        timeout: Duration,
    ) -> Result<A, AgentError> {
        let Some(node) = &self.node else {
            return Err(AgentError::Config(
                "this client has no node identity to sign with".into(),
            ));
        };
        if node.deregistered.load(Ordering::Relaxed) {
            return Err(self.deregistered_error(node));
        }
        let body = encode(body)?;
        let answer = async {
            let creds = self.session(node).await?;
            let auth = Auth::Session(&node.identity, &creds);
            match self.call(path, &body, auth, timeout).await {
                Err(e) if e.is_credential_error() => {
                    tracing::debug!(error = %describe(&e), "session credentials refused; fetching new ones");
                    node.session.forget(&creds).await;
                    let fresh = self.session(node).await?;
                    self.call(path, &body, Auth::Session(&node.identity, &fresh), timeout)
                        .await
                }
                other => other,
            }
        };
        answer.await.map_err(|e| self.unless_deregistered(node, e))
    }

    /// The node's session credentials, from `/agent/v2/token` when none are held or they are
    /// past half their lifetime.
    async fn session(&self, node: &NodeSession) -> Result<SessionCredentials, AgentError> {
        node.session
            .get(|| async {
                let body = encode(&TokenRequest::default())?;
                let answer: TokenResponse = self
                    .call(TOKEN_PATH, &body, Auth::Key(&node.identity), CALL_TIMEOUT)
                    .await?;
                Ok(SessionCredentials::from(answer))
            })
            .await
    }

    async fn call<A: DeserializeOwned>(
        &self,
        path: &str,
        body: &[u8],
        auth: Auth<'_>,
        timeout: Duration,
    ) -> Result<A, AgentError> {
        let at = self.current.load(Ordering::Relaxed);
        let server = &self.servers[at % self.servers.len()];
        let url = format!("{}{path}", server.base);
        let version = PROTOCOL_VERSION.to_string();
        let signed_path = format!("{}{path}", server.prefix);
        // Signed, so that two otherwise identical requests in the same second (X-Amz-Date has
        // one-second resolution) differ: the server accepts each signature once.
        let invocation = format!("{:016x}{:016x}", random_u64(), random_u64());
        let headers: [(&str, &[u8]); 4] = [
            ("amz-sdk-invocation-id", invocation.as_bytes()),
            ("content-type", b"application/json"),
            ("host", server.host.as_bytes()),
            (VERSION_HEADER, version.as_bytes()),
        ];
        let unsigned = HttpRequest {
            method: "POST",
            path: &signed_path,
            query: "",
            headers: &headers,
            body,
        };
        let now = signing::unix_now();
        let added = match auth {
            Auth::None => Vec::new(),
            Auth::Key(id) => {
                signing::sign_token_request(&id.key, &id.instance_id, &id.region, &unsigned, now)
            }
            Auth::Session(id, creds) => {
                signing::sign_with_session(creds, &id.region, &unsigned, now)
            }
        };
        let mut request = self
            .http
            .post(&url)
            .timeout(timeout)
            .header(CONTENT_TYPE, "application/json")
            .header(HOST, &server.host)
            .header("amz-sdk-invocation-id", &invocation)
            .header(VERSION_HEADER, &version);
        for (name, value) in added {
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| AgentError::Config(format!("{name} is not a valid header value")))?;
            value.set_sensitive(true);
            request = request.header(name, value);
        }
        let request = request.body(body.to_vec());
        let transport = |e: reqwest::Error| {
            self.hand_over(at);
            AgentError::Transport {
                url: url.clone(),
                source: e.without_url(),
            }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            if matches!(status.as_u16(), 502..=504) {
                self.hand_over(at);
            }
            return Err(refusal(&server.base, path, status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| AgentError::Protocol {
            url: url.clone(),
            detail: e.to_string(),
        })
    }
}

impl ServerClient {
    /// The URL of the server requests go to now.
    pub(crate) fn current_base(&self) -> &str {
        let at = self.current.load(Ordering::Relaxed);
        &self.servers[at % self.servers.len()].base
    }

    /// After a failed call to server number `at`: the next call goes to the next server (once,
    /// however many calls to `at` failed at the same time).
    fn hand_over(&self, at: usize) {
        if self.servers.len() < 2 {
            return;
        }
        if self
            .current
            .compare_exchange(at, at.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let next = &self.servers[at.wrapping_add(1) % self.servers.len()];
            tracing::info!(from = %self.servers[at % self.servers.len()].base,
                to = %next.base, "server unreachable; trying the next one");
        }
    }
}

fn encode<Q: Serialize>(body: &Q) -> Result<Vec<u8>, AgentError> {
    serde_json::to_vec(body).map_err(|e| AgentError::Config(format!("encoding a request: {e}")))
}

/// The error for a non-2xx answer. A server that lacks the v2 paths (404: an older server) or
/// says it speaks another version is a [`AgentError::ProtocolMismatch`], with advice.
fn refusal(base: &str, path: &str, status: u16, body: &[u8]) -> AgentError {
    let error = AgentError::from_response(status, body);
    let mismatch = match &error {
        AgentError::Server { code, message, .. } if code == PROTOCOL_MISMATCH_CODE => {
            Some(message.clone())
        }
        AgentError::Server { status: 404, .. } => Some(format!(
            "it answered 404 for {path}; upgrade the fleetrun server, or run the fleetrun-agent version that matches it"
        )),
        _ => None,
    };
    match mismatch {
        Some(detail) => AgentError::ProtocolMismatch {
            url: base.to_owned(),
            detail,
        },
        None => error,
    }
}

/// Retry delays: 0.5 s doubling to 10 s (registration: 1 s to 30 s), each jittered to between
/// half and all of its value so that many agents do not reconnect in lockstep after a server
/// restart.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self::between(BACKOFF_FIRST, BACKOFF_MAX)
    }

    pub(crate) fn between(first: Duration, max: Duration) -> Self {
        Self { next: first, max }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = base / 2;
        let millis = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_millis(random_u64() % (millis + 1))
    }
}

/// Registers with `request`, retrying with backoff (1 s doubling to 30 s, jittered; each retry
/// logged at WARN with its cause and delay) while the server cannot be reached or is busy
/// ([`AgentError::registration_may_succeed_later`]), for at most `patience` (`None`: until it
/// succeeds; dropping the future stops it). Every attempt sends the same request, public key
/// included, so an attempt whose answer was lost is recognised by the server and answered with
/// the node it created. A refusal that cannot change is [`AgentError::RegistrationRefused`];
/// running out of patience is [`AgentError::RegistrationGaveUp`].
pub(crate) async fn register_patiently(
    client: &ServerClient,
    request: &RegisterRequest,
    patience: Option<Duration>,
) -> Result<RegisterResponse, AgentError> {
    let started = Instant::now();
    let mut backoff = Backoff::between(REGISTER_BACKOFF_FIRST, REGISTER_BACKOFF_MAX);
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        let e = match client.register(request).await {
            Ok(answer) => {
                if attempt > 1 {
                    tracing::info!(attempt, "the server answered; registered");
                }
                return Ok(answer);
            }
            Err(e) if e.registration_may_succeed_later() => e,
            Err(AgentError::Server {
                status,
                code,
                message,
            }) => {
                return Err(AgentError::RegistrationRefused {
                    status,
                    code,
                    message,
                })
            }
            Err(e) => return Err(e),
        };
        let mut delay = backoff.next_delay();
        if let Some(patience) = patience {
            let left = patience.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(AgentError::RegistrationGaveUp {
                    url: client.current_base().to_owned(),
                    waited: started.elapsed(),
                    last: Box::new(e),
                });
            }
            delay = delay.min(left);
        }
        tracing::warn!(attempt, error = %describe(&e), retry_in = ?delay,
            "cannot register with the server; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// A random number without a dependency: std's per-instance random SipHash keys.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

fn machine_now(agent: &Agent) -> impl Future<Output = MachineInfo> {
    let url = agent.cfg.server_url.clone();
    async move {
        tokio::task::spawn_blocking(move || crate::machine_info(&url))
            .await
            .unwrap_or_default()
    }
}

/// Long-polls until `shutdown` resolves, handing each message to the command table.
pub(crate) async fn poll_loop<F: Future<Output = ()>>(
    agent: &Arc<Agent>,
    tasks: &mut JoinSet<()>,
    mut shutdown: Pin<&mut F>,
) {
    let session_id = format!("{:016x}{:016x}", random_u64(), random_u64());
    let mut last_machine = machine_now(agent).await;
    let mut machine_to_send = Some(last_machine.clone());
    let mut backoff = Backoff::new();
    let mut outage = false;
    tracing::debug!(%session_id, "channel session started");
    loop {
        // Reap finished command and delivery tasks.
        while tasks.try_join_next().is_some() {}
        // Read together: a command dropped in between would otherwise be in neither list.
        let (known_commands, dropped) = {
            let table = agent.table();
            (table.known(), table.dropped(MAX_DROPPED_PER_POLL))
        };
        let request = PollRequest {
            session_id: session_id.clone(),
            known_commands,
            wait_ms: u64::try_from(agent.cfg.poll_wait.as_millis()).unwrap_or(u64::MAX),
            machine: machine_to_send.clone(),
            dropped_commands: dropped.clone(),
        };
        let sent = Instant::now();
        let answer = tokio::select! {
            answer = agent.client.poll(&request, agent.cfg.poll_wait) => answer,
            () = shutdown.as_mut() => return,
        };
        match answer {
            Ok(response) => {
                // A server that answers "nothing" at once is not holding polls (it may be shutting
                // down); polling it again immediately would be a busy loop.
                let mut pause = response.messages.is_empty()
                    && agent.cfg.poll_wait >= Duration::from_secs(1)
                    && sent.elapsed() < EARLY_EMPTY_ANSWER;
                agent.table().told_dropped(&dropped);
                machine_to_send = None;
                backoff = Backoff::new();
                if outage {
                    outage = false;
                    tracing::info!("connection to the server restored");
                    // The address may have changed with the outage (DHCP, VPN, ...).
                    let machine = machine_now(agent).await;
                    if machine != last_machine {
                        machine_to_send = Some(machine.clone());
                        last_machine = machine;
                    }
                }
                // Nor may an answer of messages this agent ignores (duplicates) be polled again
                // at once: a server that keeps sending them would make a busy loop.
                let mut acted = response.messages.is_empty();
                for message in response.messages {
                    acted |= handle(agent, tasks, message);
                }
                pause |= !acted;
                if pause {
                    let delay = Backoff::new().next_delay();
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.as_mut() => return,
                    }
                }
            }
            // Nothing to retry: `run` stops and returns the error (`outcome`).
            Err(AgentError::Deregistered { .. }) => return,
            Err(e) => {
                if !outage {
                    outage = true;
                    if e.is_clock_skew() {
                        tracing::warn!(error = %describe(&e),
                            "the server refuses this node's clock: it is more than 5 minutes from the server's; fix it (NTP). Retrying with backoff");
                    } else {
                        tracing::warn!(error = %describe(&e), "cannot poll the server; retrying with backoff");
                    }
                } else {
                    tracing::debug!(error = %describe(&e), "poll failed again");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    () = shutdown.as_mut() => return,
                }
            }
        }
    }
}

/// Hands one message to the command table; false when it was ignored.
fn handle(agent: &Arc<Agent>, tasks: &mut JoinSet<()>, message: AgentMessage) -> bool {
    match message {
        AgentMessage::Run {
            command_id,
            document_name,
            steps,
            env,
        } => commands::accept_run(agent, tasks, command_id, document_name, steps, env),
        AgentMessage::Cancel { command_id } => {
            // The server sends each cancel once, so one that finds nothing cannot loop.
            commands::cancel(agent, &command_id);
            true
        }
    }
}

/// Which report of a command is being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// The executor's report.
    Report,
    /// The fallback sent after the server refused the report (`report::fallback`).
    Fallback,
}

/// Sends every report left in the outbox by an earlier run, before the first poll. One attempt
/// each while the server answers; the rest (and retryable failures) get background retries. A
/// pending report whose command already has a refused one in `outbox/rejected/` is its fallback.
pub(crate) async fn flush_outbox(agent: &Arc<Agent>, tasks: &mut JoinSet<()>) {
    let pending = agent.outbox.load_all();
    for report in &pending {
        agent.mark_reporting(&report.command_id);
    }
    let mut reachable = true;
    for report in pending {
        let attempt = if agent.outbox.has_rejected(&report.command_id) {
            Attempt::Fallback
        } else {
            Attempt::Report
        };
        if reachable {
            match agent.client.post_result(&report).await {
                Ok(ack) => {
                    acknowledged(agent, &report, &ack);
                    continue;
                }
                // The node is gone: nothing will be taken; the poll loop stops the agent.
                Err(AgentError::Deregistered { .. }) => return,
                // Refused: the background task below sends the fallback (or drops the command).
                Err(e) if !e.is_retryable() => {}
                Err(e) => {
                    tracing::warn!(error = %describe(&e), "cannot send pending results; will retry");
                    reachable = false;
                }
            }
        }
        let agent = Arc::clone(agent);
        tasks.spawn(async move { send_until_acked(&agent, report, attempt).await });
    }
}

/// Persists a finished command's report to the outbox, then sends it until the server takes it.
pub(crate) async fn deliver(agent: &Arc<Agent>, mut report: ResultReport) {
    report
        .finished_at_ms
        .get_or_insert_with(crate::step_process::unix_millis);
    save(agent, &report);
    // The report now carries the command's outcome: its progress record has done its job.
    crate::executor::forget_job(&agent.exec, &report.command_id);
    agent.mark_reporting(&report.command_id);
    send_until_acked(agent, report, Attempt::Report).await;
}

fn save(agent: &Agent, report: &ResultReport) {
    if let Err(e) = agent.outbox.save(report) {
        tracing::error!(command_id = %report.command_id, error = %describe(&e),
            "cannot persist the result; it is lost if the agent stops before sending it");
    }
}

/// How one report's sending ended.
enum Sent {
    Acked(ResultAck),
    /// A refusal that retrying cannot cure: a 4xx other than authentication or throttling.
    Refused(AgentError),
    /// The agent is shutting down; the report stays in the outbox for the next start.
    Stopped,
}

/// Posts `report` until the server takes it or refuses it outright. A refused report is moved to
/// `outbox/rejected/` and replaced by its fallback, which is sent the same way; when that is
/// refused too, the command is dropped: the next poll tells the server this agent holds nothing
/// for it, so the server ends the invocation instead of handing it out again. No refusal leads to
/// a retry loop.
async fn send_until_acked(agent: &Arc<Agent>, mut report: ResultReport, mut attempt: Attempt) {
    loop {
        let e = match post_until_settled(agent, &report).await {
            Sent::Acked(ack) => return acknowledged(agent, &report, &ack),
            Sent::Stopped => return,
            Sent::Refused(e) => e,
        };
        let id = report.command_id.clone();
        match attempt {
            Attempt::Report => {
                tracing::error!(command_id = %id, error = %describe(&e),
                    "the server refused the result; moved to outbox/rejected/, sending a fallback report");
                agent.outbox.reject(&id);
                let command_dir = agent.exec.work_root.join(&id);
                report = crate::report::fallback(&report, &describe(&e), &command_dir);
                save(agent, &report);
                attempt = Attempt::Fallback;
            }
            Attempt::Fallback => {
                tracing::error!(command_id = %id, error = %describe(&e),
                    "the server refused the fallback report too; telling it this agent holds nothing for the command");
                agent.outbox.remove(&id);
                agent.table().drop_unreported(&id);
                return;
            }
        }
    }
}

/// Posts `report`, retrying what may be cured by waiting (backoff), until it is settled.
async fn post_until_settled(agent: &Agent, report: &ResultReport) -> Sent {
    let mut backoff = Backoff::new();
    let mut shutting_down = agent.shutting_down.subscribe();
    let mut warned = false;
    loop {
        match agent.client.post_result(report).await {
            Ok(ack) => return Sent::Acked(ack),
            // Kept in the outbox, as at shutdown: the agent is stopping.
            Err(AgentError::Deregistered { .. }) => return Sent::Stopped,
            Err(e) if !e.is_retryable() => return Sent::Refused(e),
            Err(e) => {
                if !warned {
                    warned = true;
                    tracing::warn!(command_id = %report.command_id, error = %describe(&e),
                        "cannot send the result; retrying with backoff");
                }
                if *shutting_down.borrow_and_update() {
                    return Sent::Stopped;
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutting_down.changed() => return Sent::Stopped,
                }
            }
        }
    }
}

/// How the agent's run ends once it has shut down: [`AgentError::Deregistered`] when the server
/// said it does not know this node, else `Ok`.
pub(crate) fn outcome(agent: &Agent) -> Result<(), AgentError> {
    match &agent.client.node {
        Some(node) if node.deregistered.load(Ordering::Relaxed) => {
            Err(agent.client.deregistered_error(node))
        }
        _ => Ok(()),
    }
}

/// The last word of a clean stop: tells the server this agent is going, so its node shows
/// `ConnectionLost` at once (not after the ping timeout) and work sent meanwhile waits as
/// `Delayed`; commands it was running stay InProgress. Never delays shutdown by more than
/// [`GOODBYE_TIMEOUT`]; failing (server down) only costs the early `ConnectionLost`. Skipped when
/// the server has said it does not know this node.
pub(crate) async fn say_goodbye(agent: &Agent) {
    if agent.client.is_deregistered() {
        return;
    }
    match tokio::time::timeout(GOODBYE_TIMEOUT, agent.client.goodbye()).await {
        Ok(Ok(_)) => tracing::info!("told the server this agent has stopped"),
        Ok(Err(e)) => tracing::warn!(error = %describe(&e),
            "cannot tell the server this agent has stopped; it shows the node ConnectionLost after its ping timeout"),
        Err(_) => tracing::warn!(timeout = ?GOODBYE_TIMEOUT,
            "the server did not answer the goodbye in time; it shows the node ConnectionLost after its ping timeout"),
    }
}

fn acknowledged(agent: &Agent, report: &ResultReport, ack: &ResultAck) {
    tracing::debug!(command_id = %report.command_id, applied = ack.applied, "result acknowledged");
    agent.outbox.remove(&report.command_id);
    agent.forget(&report.command_id);
}

impl OutputSink for ServerClient {
    fn ship<'a>(
        &'a self,
        piece: Piece<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<u64, ShipFailure>> + Send + 'a>> {
        Box::pin(async move {
            match self.post_output(piece).await {
                Ok(ack) => Ok(ack.committed),
                // A server from before live output: the step's report still carries its output.
                Err(e @ AgentError::ProtocolMismatch { .. }) => {
                    Err(ShipFailure::Refused(describe(&e)))
                }
                Err(e) if e.is_retryable() => Err(ShipFailure::Retry(describe(&e))),
                Err(e) => Err(ShipFailure::Refused(describe(&e))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_ten_seconds_with_jitter() {
        let mut b = Backoff::new();
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(
            d[0] >= Duration::from_millis(250) && d[0] <= Duration::from_millis(500),
            "{d:?}"
        );
        assert!(
            d[1] >= Duration::from_millis(500) && d[1] <= Duration::from_secs(1),
            "{d:?}"
        );
        for late in &d[5..] {
            assert!(
                *late >= Duration::from_secs(5) && *late <= BACKOFF_MAX,
                "{d:?}"
            );
        }
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        let at = |url: &str| crate::AgentConfig::new(url, "/nonexistent", None, "us-east-1");
        assert!(ServerClient::new(&at("http://127.0.0.1:8080"), None).is_ok());
        let mut pinned = at("https://127.0.0.1:8443");
        pinned.server_fingerprint = Some("ab".repeat(32));
        assert!(ServerClient::new(&pinned, None).is_ok());
        for bad in ["127.0.0.1:8080", "ftp://x", "http://"] {
            assert!(
                matches!(
                    ServerClient::new(&at(bad), None),
                    Err(AgentError::Config(_))
                ),
                "{bad}"
            );
        }
    }
}
