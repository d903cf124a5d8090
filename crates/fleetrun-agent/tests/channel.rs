//! The agent against a tiny fake server (hand-rolled HTTP/1.1 on a `TcpListener`): registration,
//! session credentials and their rotation, the long-poll loop, result delivery signed with the
//! node's credentials (the fake verifies every signature as the server does), the outbox across
//! restarts, the queue limit, cancel, and shutdown; registration retries while the server is
//! unreachable or busy (and none for a refusal), a deregistered node, and the goodbye.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use fleetrun_agent::signing::NodeKey;
use fleetrun_agent::{register_or_load, run, Activation, AgentConfig, AgentError, Identity};
use fleetrun_sigv4::HttpRequest;
use fleetrun_wire::agent::{
    AgentMessage, Outcome, OutputShipment, PollRequest, RegisterRequest, ResultReport, StepSpec,
    GOODBYE_PATH, OUTPUT_PATH, POLL_PATH, REGISTER_PATH, RESULT_PATH, TOKEN_PATH,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The seed of the test node's Ed25519 key (base64 of 32 bytes).
const KEY_SEED: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const INSTANCE: &str = "mi-0123456789abcdef0";
const REGION: &str = "us-east-1";

#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// For polls and results: the access key id whose valid signature the request carried.
    signed_by: Option<String>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).expect("request body")
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    /// Messages handed out on the next poll.
    outbox: VecDeque<AgentMessage>,
    /// Status for result posts (200 unless a test says otherwise).
    result_status: Option<u16>,
    /// Answer empty polls at once instead of holding them (a server shutting down does this).
    instant_polls: bool,
    /// Added to every poll's answer (a server re-sending work the agent does not list).
    resend: Option<AgentMessage>,
    /// The public key registration sent (the test identity's until a registration replaces it).
    public_key: Option<String>,
    /// Session credentials issued: access key id → (secret, session token).
    issued: HashMap<String, (String, String)>,
    /// `expiresInSecs` of issued credentials (3600 unless a test says otherwise).
    token_lifetime: Option<u64>,
    /// Answer the next this-many signed requests `ExpiredTokenException`.
    expire_next: usize,
    /// Answer every request 404 (a server that predates agent protocol v2).
    v1_server: bool,
    /// Answer the next this-many registrations 503 (a server still starting).
    busy_registrations: usize,
    /// Answer every signed request `InvalidInstanceId` (the node was deregistered).
    deregistered: bool,
    /// Never answer a goodbye (a server that hangs).
    hang_goodbye: bool,
    /// Live output received: `<command>/<stream>` → the bytes, each once.
    output: HashMap<String, Vec<u8>>,
}

#[derive(Clone)]
struct Fake {
    url: String,
    state: Arc<Mutex<State>>,
}

impl Fake {
    async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("addr")).await
    }

    async fn start_on(addr: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let fake = Self {
            url,
            state: Arc::default(),
        };
        let server = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.serve(stream).await });
            }
        });
        fake
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("state")
    }

    fn send(&self, message: AgentMessage) {
        self.state().outbox.push_back(message);
    }

    fn requests(&self, path: &str) -> Vec<Request> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn results(&self) -> Vec<ResultReport> {
        self.requests(RESULT_PATH)
            .iter()
            .map(Request::json)
            .collect()
    }

    async fn wait_until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn serve(&self, mut stream: TcpStream) {
        let Some(request) = read_request(&mut stream).await else {
            return;
        };
        let (status, body) = self.answer(&request).await;
        let reason = if status == 200 { "OK" } else { "Error" };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    /// Checks a token request's Ed25519 signature against the registered public key.
    fn token_signature_ok(&self, request: &Request) -> bool {
        let Ok(signed) = request.parse_signed() else {
            return false;
        };
        let public = self
            .state()
            .public_key
            .clone()
            .unwrap_or_else(|| identity().key.public_key_base64());
        let key: Option<[u8; 32]> = STANDARD.decode(public).ok().and_then(|b| b.try_into().ok());
        let sig: Option<[u8; 64]> = STANDARD
            .decode(&signed.auth.signature)
            .ok()
            .and_then(|b| b.try_into().ok());
        let (Some(key), Some(sig)) = (key, sig) else {
            return false;
        };
        signed.auth.access_key_id == INSTANCE
            && fleetrun_sigv4::check_scope(&signed, REGION, "ssm").is_ok()
            && VerifyingKey::from_bytes(&key).is_ok_and(|k| {
                k.verify(
                    signed.string_to_sign.as_bytes(),
                    &Signature::from_bytes(&sig),
                )
                .is_ok()
            })
    }

    /// The access key id of a validly session-signed request.
    fn session_signer(&self, request: &Request) -> Option<String> {
        let signed = request.parse_signed().ok()?;
        let akid = signed.auth.access_key_id.clone();
        let (secret, token) = self.state().issued.get(&akid).cloned()?;
        (signed.session_token.as_deref() == Some(token.as_str())
            && fleetrun_sigv4::check_scope(&signed, REGION, "ssm").is_ok()
            && fleetrun_sigv4::verify_signature(&signed, &secret).is_ok())
        .then_some(akid)
    }

    async fn answer(&self, request: &Request) -> (u16, String) {
        let mut request = request.clone();
        if matches!(
            request.path.as_str(),
            POLL_PATH | RESULT_PATH | GOODBYE_PATH | OUTPUT_PATH
        ) {
            request.signed_by = self.session_signer(&request);
        }
        self.state().requests.push(request.clone());
        let request = &request;
        if self.state().v1_server {
            return (404, String::new());
        }
        if request.path != REGISTER_PATH && self.state().deregistered {
            let body = serde_json::json!({"__type": "InvalidInstanceId",
                "Message": format!("Managed node {INSTANCE} is not registered with this server")});
            return (400, body.to_string());
        }
        if matches!(
            request.path.as_str(),
            POLL_PATH | RESULT_PATH | GOODBYE_PATH | OUTPUT_PATH
        ) {
            if request.signed_by.is_none() {
                return (
                    400,
                    r#"{"__type":"InvalidSignatureException","message":"bad signature"}"#.into(),
                );
            }
            let mut state = self.state();
            if state.expire_next > 0 {
                state.expire_next -= 1;
                return (
                    400,
                    r#"{"__type":"ExpiredTokenException","message":"The security token included in the request is expired"}"#.into(),
                );
            }
        }
        match request.path.as_str() {
            TOKEN_PATH => {
                if !self.token_signature_ok(request) {
                    return (
                        400,
                        r#"{"__type":"InvalidSignatureException","message":"bad key signature"}"#
                            .into(),
                    );
                }
                let mut state = self.state();
                let n = state.issued.len();
                let akid = format!("ASIAFAKE{n:012}");
                let (secret, token) = (format!("secret-{n}"), format!("token-{n}"));
                state
                    .issued
                    .insert(akid.clone(), (secret.clone(), token.clone()));
                let lifetime = state.token_lifetime.unwrap_or(3600);
                (
                    200,
                    serde_json::json!({"accessKeyId": akid, "secretAccessKey": secret,
                        "sessionToken": token, "expiresInSecs": lifetime})
                    .to_string(),
                )
            }
            REGISTER_PATH => {
                let r: RegisterRequest = request.json();
                let busy = {
                    let mut state = self.state();
                    let busy = state.busy_registrations > 0;
                    state.busy_registrations = state.busy_registrations.saturating_sub(1);
                    busy
                };
                if busy {
                    (
                        503,
                        r#"{"__type":"ServiceUnavailable","Message":"starting"}"#.into(),
                    )
                } else if r.activation_code == "good-code" {
                    self.state().public_key = Some(r.public_key);
                    (
                        200,
                        format!(r#"{{"instanceId":"{INSTANCE}","region":"{REGION}"}}"#),
                    )
                } else {
                    (
                        400,
                        r#"{"__type":"InvalidActivation","Message":"Activation not found"}"#.into(),
                    )
                }
            }
            POLL_PATH => {
                let p: PollRequest = request.json();
                let mut messages: Vec<AgentMessage> = self.state().outbox.drain(..).collect();
                messages.extend(self.state().resend.clone());
                if messages.is_empty() && !self.state().instant_polls {
                    // A short long poll: nothing to do, answer after a while.
                    tokio::time::sleep(Duration::from_millis(p.wait_ms.min(100))).await;
                }
                (200, serde_json::json!({ "messages": messages }).to_string())
            }
            GOODBYE_PATH => {
                let hang = self.state().hang_goodbye;
                if hang {
                    std::future::pending::<()>().await;
                }
                (200, "{}".into())
            }
            OUTPUT_PATH => {
                // Takes everything, as a server holding each byte once would answer.
                let shipment: OutputShipment = request.json();
                let data = STANDARD.decode(&shipment.data).expect("base64");
                let mut state = self.state();
                let key = format!("{}/{}", shipment.command_id, shipment.stream);
                let held = state.output.entry(key).or_default();
                let start = usize::try_from(shipment.offset).expect("offset");
                if start <= held.len() {
                    let skip = held.len() - start;
                    if skip < data.len() {
                        held.extend_from_slice(&data[skip..]);
                    }
                }
                (200, format!(r#"{{"committed":{}}}"#, held.len()))
            }
            RESULT_PATH => match self.state().result_status.unwrap_or(200) {
                200 => (200, r#"{"applied":true}"#.into()),
                400 => (
                    400,
                    r#"{"__type":"InvalidCommandId","Message":"unknown command"}"#.into(),
                ),
                s => (
                    s,
                    r#"{"__type":"InternalServerError","Message":"try later"}"#.into(),
                ),
            },
            _ => (
                404,
                r#"{"__type":"UnknownOperationException","Message":"?"}"#.into(),
            ),
        }
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        path,
        headers,
        body,
        signed_by: None,
    })
}

impl Request {
    /// The request as the SigV4 verifier takes it.
    fn parse_signed(&self) -> Result<fleetrun_sigv4::SignedRequest, fleetrun_sigv4::AuthError> {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        fleetrun_sigv4::parse(&HttpRequest {
            method: "POST",
            path: &self.path,
            query: "",
            headers: &headers,
            body: &self.body,
        })
    }
}

fn config(fake: &Fake, state_dir: &Path) -> AgentConfig {
    let mut cfg = AgentConfig::new(&fake.url, state_dir, None, "us-east-1");
    cfg.poll_wait = Duration::from_millis(200);
    cfg
}

fn identity() -> Identity {
    Identity {
        instance_id: INSTANCE.into(),
        region: REGION.into(),
        key: NodeKey::from_base64(KEY_SEED).expect("test key"),
    }
}

fn run_message(id: &str, lines: &[&str]) -> AgentMessage {
    AgentMessage::Run {
        command_id: id.into(),
        document_name: "AWS-RunShellScript".into(),
        steps: vec![StepSpec {
            name: "aws:runShellScript".into(),
            action: "aws:runShellScript".into(),
            commands: lines.iter().map(|l| (*l).to_owned()).collect(),
            working_directory: String::new(),
            timeout_seconds: 60,
        }],
        env: vec![("SSM_COMMAND_ID".into(), id.into())],
    }
}

/// A running agent and the means to stop it.
struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), AgentError>>,
}

fn start(cfg: AgentConfig) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(cfg, identity(), async move {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

impl Running {
    async fn stop(self) -> Duration {
        let t0 = Instant::now();
        let _ = self.stop.send(());
        let result = tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("agent stops")
            .expect("join");
        assert!(result.is_ok(), "{result:?}");
        t0.elapsed()
    }
}

#[tokio::test]
async fn register_saves_identity_and_a_restart_reuses_it() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");

    let mut cfg = config(&fake, &state);
    assert!(matches!(
        register_or_load(&cfg).await,
        Err(AgentError::NotRegistered(_))
    ));

    cfg.activation = Some(Activation {
        id: "act-1".into(),
        code: "wrong".into(),
    });
    match register_or_load(&cfg).await {
        Err(e @ AgentError::RegistrationRefused { .. }) => {
            assert!(e.to_string().contains("InvalidActivation"), "{e}");
            assert_eq!(
                e.exit_code(),
                fleetrun_agent::cli::exit::REGISTRATION_REFUSED
            );
        }
        other => panic!("expected InvalidActivation, got {other:?}"),
    }
    assert!(!state.join("identity.json").exists());
    // A refusal that cannot change is not retried.
    assert_eq!(fake.requests(REGISTER_PATH).len(), 1);

    cfg.activation = Some(Activation {
        id: "act-1".into(),
        code: "good-code".into(),
    });
    let first = register_or_load(&cfg).await.expect("register");
    assert_eq!(
        (first.instance_id.as_str(), first.region.as_str()),
        (INSTANCE, REGION)
    );
    let registrations = fake.requests(REGISTER_PATH);
    assert_eq!(registrations.len(), 2);
    let body: RegisterRequest = registrations[1].json();
    assert_eq!(body.activation_id, "act-1");
    // Only the public half of a fresh key pair travels.
    assert_eq!(body.public_key, first.key.public_key_base64());
    assert_ne!(body.public_key, identity().key.public_key_base64());
    assert_eq!(body.public_key_type, "Ed25519");
    assert!(!String::from_utf8_lossy(&registrations[1].body).contains(&first.key.to_base64()));
    assert_eq!(body.machine.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(body.machine.ip_address, "127.0.0.1");
    assert!(registrations[1].header("authorization").is_none());
    assert_eq!(
        registrations[1].header("x-fleetrun-agent-protocol"),
        Some("2")
    );

    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(state.join("identity.json")).expect("identity saved");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let meta = std::fs::metadata(&state).expect("state dir");
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);

    // A restart loads the saved identity (the same private key) and does not register again.
    let again = register_or_load(&cfg).await.expect("load");
    assert_eq!(again, first);
    assert_eq!(fake.requests(REGISTER_PATH).len(), 2);

    // `register` without replace refuses to overwrite it; with replace it makes a new key.
    let activation = cfg.activation.clone().expect("activation");
    match fleetrun_agent::register(&cfg, &activation, false).await {
        Err(AgentError::AlreadyRegistered { instance_id, .. }) => assert_eq!(instance_id, INSTANCE),
        other => panic!("expected AlreadyRegistered, got {other:?}"),
    }
    let replaced = fleetrun_agent::register(&cfg, &activation, true)
        .await
        .expect("re-register");
    assert_ne!(replaced.key, first.key);
    assert_eq!(register_or_load(&cfg).await.expect("load"), replaced);
}

#[tokio::test]
async fn a_protocol_v1_identity_or_server_gets_a_clear_error() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("dir");
    std::fs::write(
        state.join("identity.json"),
        br#"{"instanceId":"mi-0123456789abcdef0","nodeSecret":"old-secret"}"#,
    )
    .expect("v1 identity");
    let mut cfg = config(&fake, &state);
    match register_or_load(&cfg).await {
        Err(e @ AgentError::LegacyIdentity(_)) => {
            assert!(e.to_string().contains("register this node again"), "{e}");
        }
        other => panic!("expected LegacyIdentity, got {other:?}"),
    }
    // With an activation, the v1 identity is replaced.
    cfg.activation = Some(Activation {
        id: "act-1".into(),
        code: "good-code".into(),
    });
    let identity = register_or_load(&cfg).await.expect("registers anew");
    assert_eq!(identity.instance_id, INSTANCE);

    // A server that predates protocol v2 answers 404 for the v2 paths.
    fake.state().v1_server = true;
    match fleetrun_agent::register(&cfg, cfg.activation.as_ref().expect("a"), true).await {
        Err(e @ AgentError::ProtocolMismatch { .. }) => {
            assert!(
                e.to_string().contains("does not speak agent protocol v2"),
                "{e}"
            );
            assert!(
                e.is_retryable(),
                "a result is kept for a server that speaks v2"
            );
        }
        other => panic!("expected ProtocolMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_run_is_executed_and_its_result_posted_with_the_node_credentials() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    fake.send(run_message(
        "cmd-a",
        &["sleep 0.4", "echo \"hi from $SSM_COMMAND_ID\""],
    ));
    let agent = start(config(&fake, dir.path()));

    fake.wait_until("a result", |f| !f.results().is_empty())
        .await;
    let posts = fake.requests(RESULT_PATH);
    // Signed with session credentials from one token request; the node key never travels.
    let tokens = fake.requests(TOKEN_PATH);
    assert_eq!(tokens.len(), 1);
    let token_auth = tokens[0]
        .header("authorization")
        .expect("token request signed");
    assert!(
        token_auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={INSTANCE}/")),
        "{token_auth}"
    );
    let akid = posts[0]
        .signed_by
        .clone()
        .expect("result signed with the session credentials");
    assert!(akid.starts_with("ASIA"));
    assert!(posts[0].header("x-amz-security-token").is_some());
    assert_eq!(posts[0].header("x-fleetrun-agent-protocol"), Some("2"));
    let seed = identity().key.to_base64();
    assert!(fake
        .state()
        .requests
        .iter()
        .all(|r| r.headers.iter().all(|(_, v)| !v.contains(&seed))));
    let report: ResultReport = posts[0].json();
    assert_eq!(
        (report.command_id.as_str(), report.outcome),
        ("cmd-a", Outcome::Success)
    );
    assert_eq!(report.response_code, 0);
    assert_eq!(report.steps[0].stdout, "hi from cmd-a\n");
    assert!(report.elapsed_ms >= 400, "{report:?}");
    assert!(report.finished_at_ms.is_some(), "{report:?}");
    assert!(report.held_ms < 1_000, "sent at once: {report:?}");

    // Redelivery of a finished command is ignored.
    fake.send(run_message("cmd-a", &["echo again"]));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.results().len(), 1);
    assert!(std::fs::read_dir(dir.path().join("outbox"))
        .expect("outbox")
        .flatten()
        .all(|e| e.path().is_dir()));

    agent.stop().await;
    let polls = fake.requests(POLL_PATH);
    assert!(polls.len() >= 3, "{} polls", polls.len());
    for p in &polls {
        assert_eq!(p.signed_by.as_deref(), Some(akid.as_str()));
    }
    // Each signed request is unique (the server accepts a signature once), even two polls with
    // the same body in the same second.
    let ids: std::collections::HashSet<_> = polls
        .iter()
        .map(|p| {
            p.header("amz-sdk-invocation-id")
                .expect("invocation id")
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), polls.len());
    let bodies: Vec<PollRequest> = polls.iter().map(Request::json).collect();
    let machine = bodies[0]
        .machine
        .as_ref()
        .expect("machine info on the first poll");
    assert_eq!(machine.ip_address, "127.0.0.1");
    assert!(bodies[1..].iter().all(|b| b.machine.is_none()));
    assert!(bodies
        .iter()
        .all(|b| b.session_id == bodies[0].session_id && b.wait_ms == 200));
    assert!(
        bodies.iter().any(|b| b.known_commands == ["cmd-a"]),
        "polls while cmd-a ran should list it"
    );
    assert!(bodies.last().is_some_and(|b| b.known_commands.is_empty()));
}

#[tokio::test]
async fn unsent_results_stay_in_the_outbox_and_are_sent_first_after_a_restart() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    fake.state().result_status = Some(503);
    fake.send(run_message("cmd-b", &["echo kept"]));
    let agent = start(config(&fake, dir.path()));

    fake.wait_until("two result attempts", |f| f.results().len() >= 2)
        .await;
    // The command finished before its first attempt, so by the resend it has been held at least this.
    let held_since = std::time::Instant::now();
    let saved = dir.path().join("outbox/cmd-b.json");
    assert!(saved.exists(), "result persisted before sending");
    fake.wait_until("a poll listing cmd-b", |f| {
        f.requests(POLL_PATH)
            .iter()
            .any(|r| r.json::<PollRequest>().known_commands == ["cmd-b"])
    })
    .await;
    agent.stop().await;
    assert!(saved.exists(), "an unacknowledged result survives shutdown");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Restart against a healthy server: the outbox goes out before the first poll.
    fake.state().result_status = None;
    let before = fake.state().requests.len();
    let agent = start(config(&fake, dir.path()));
    // (After the token request that fetches session credentials for the new process.)
    let after_token = |f: &Fake| -> Vec<Request> {
        f.state().requests[before..]
            .iter()
            .filter(|r| r.path != TOKEN_PATH)
            .cloned()
            .collect()
    };
    fake.wait_until("the resent result", |f| !after_token(f).is_empty())
        .await;
    let first = after_token(&fake)[0].clone();
    assert_eq!(first.path, RESULT_PATH);
    let report: ResultReport = first.json();
    assert_eq!(
        (report.command_id.as_str(), report.steps[0].stdout.as_str()),
        ("cmd-b", "kept\n")
    );
    // The resend says how long the result waited on the node, so the server can date it.
    let waited = i64::try_from(held_since.elapsed().as_millis()).unwrap_or(i64::MAX);
    assert!(
        report.held_ms >= waited - 100 && report.held_ms >= 500,
        "held {} ms, waited at least {waited} ms",
        report.held_ms
    );
    assert!(report.held_ms > fake.results()[0].held_ms);
    fake.wait_until("the outbox to empty", |_| !saved.exists())
        .await;
    fake.wait_until("a poll after the ack", |f| {
        f.state().requests[before..]
            .iter()
            .filter(|r| r.path == POLL_PATH)
            .any(|r| r.json::<PollRequest>().known_commands.is_empty())
    })
    .await;
    agent.stop().await;
    assert!(
        fake.results().iter().all(|r| r.command_id == "cmd-b"),
        "cmd-b never ran twice"
    );
}

#[tokio::test]
async fn refused_results_are_set_aside_a_fallback_sent_and_the_command_dropped() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    fake.state().result_status = Some(400);
    fake.send(run_message("cmd-r", &["echo out", "exit 3"]));
    let agent = start(config(&fake, dir.path()));
    let rejected = dir.path().join("outbox/rejected/cmd-r.json");
    fake.wait_until("a poll telling the server cmd-r is dropped", |f| {
        f.requests(POLL_PATH)
            .iter()
            .any(|r| r.json::<PollRequest>().dropped_commands == ["cmd-r"])
    })
    .await;
    // The server keeps sending the finished command (as one without `droppedCommands` would):
    // the agent never runs it again and does not answer with a busy loop.
    let before = fake.requests(POLL_PATH).len();
    fake.state().resend = Some(run_message("cmd-r", &["echo again"]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let polls = fake.requests(POLL_PATH).len() - before;
    agent.stop().await;
    assert!(polls <= 8, "{polls} polls in 1.5 s");
    let results = fake.results();
    assert_eq!(
        results.len(),
        2,
        "the report, then its fallback; neither retried"
    );
    assert_eq!(results[0].steps[0].stdout, "out\n");
    let fallback = &results[1];
    assert_eq!(
        (fallback.outcome, fallback.response_code),
        (Outcome::Failed, 3)
    );
    assert!(fallback.steps[0].stdout.is_empty());
    assert!(
        fallback.steps[0].stderr.contains("refused")
            && fallback.steps[0].stderr.contains("work/cmd-r"),
        "{:?}",
        fallback.steps[0].stderr
    );
    assert!(
        rejected.exists(),
        "the refused report is kept for an operator"
    );
    assert!(!dir.path().join("outbox/cmd-r.json").exists());
}

#[tokio::test]
async fn queued_and_running_commands_can_be_cancelled() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&fake, dir.path());
    cfg.max_concurrent = 1;
    fake.send(run_message("cmd-1", &["echo first", "sleep 100"]));
    fake.send(run_message("cmd-2", &["echo second"]));
    let agent = start(cfg);

    fake.wait_until("both commands known", |f| {
        f.requests(POLL_PATH)
            .iter()
            .any(|r| r.json::<PollRequest>().known_commands == ["cmd-1", "cmd-2"])
    })
    .await;
    fake.send(AgentMessage::Cancel {
        command_id: "cmd-2".into(),
    });
    fake.wait_until("cmd-2's result", |f| !f.results().is_empty())
        .await;
    let r = &fake.results()[0];
    assert_eq!(r.command_id, "cmd-2");
    assert_eq!(
        (r.outcome, r.response_code, r.steps.len()),
        (Outcome::Cancelled, -1, 0)
    );

    fake.send(AgentMessage::Cancel {
        command_id: "cmd-1".into(),
    });
    fake.wait_until("cmd-1's result", |f| f.results().len() == 2)
        .await;
    let r = &fake.results()[1];
    assert_eq!(r.command_id, "cmd-1");
    assert_eq!((r.outcome, r.response_code), (Outcome::Cancelled, 137));
    assert_eq!(r.steps[0].stdout, "first\n");
    agent.stop().await;
}

#[tokio::test]
async fn shutdown_drains_short_work_and_leaves_long_work_running_for_the_next_start() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&fake, dir.path());
    cfg.drain_grace = Duration::from_millis(1500);
    fake.send(run_message("cmd-quick", &["sleep 0.5", "echo quick"]));
    fake.send(run_message("cmd-long", &["sleep 3", "echo done"]));
    let agent = start(cfg.clone());
    fake.wait_until("both running", |f| {
        f.requests(POLL_PATH)
            .iter()
            .any(|r| r.json::<PollRequest>().known_commands == ["cmd-long", "cmd-quick"])
    })
    .await;
    let took = agent.stop().await;
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(3),
        "waited the drain grace, not for the long command: {took:?}"
    );
    // The short command finished within the drain and was reported.
    let results = fake.results();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].command_id, "cmd-quick");
    assert_eq!(results[0].steps[0].stdout, "quick\n");
    // The long one was not killed and not reported: it runs on, and its progress is on disk.
    assert!(dir.path().join("work/cmd-long/job.json").exists());
    assert!(!dir.path().join("outbox/cmd-long.json").exists());

    // The next agent process holds it from its first poll on and reports its real end.
    let agent = start(cfg);
    fake.wait_until("the long command's result", |f| {
        f.results().iter().any(|r| r.command_id == "cmd-long")
    })
    .await;
    let polls = fake.requests(POLL_PATH);
    let first_of_restart = polls
        .iter()
        .map(|r| r.json::<PollRequest>())
        .find(|p| p.machine.is_some() && p.known_commands == ["cmd-long"]);
    assert!(
        first_of_restart.is_some(),
        "the restarted agent listed the command"
    );
    let report = fake
        .results()
        .into_iter()
        .find(|r| r.command_id == "cmd-long")
        .expect("result");
    assert_eq!(
        (report.outcome, report.response_code),
        (Outcome::Success, 0)
    );
    assert_eq!(report.steps[0].stdout, "done\n");
    assert!(report.steps[0].duration_ms >= 2900, "{report:?}");
    agent.stop().await;
    assert!(
        !dir.path().join("work/cmd-long/job.json").exists(),
        "forgotten once reported"
    );
}

#[tokio::test]
async fn the_agent_rides_out_a_server_outage() {
    // Nothing listens on this port at first: the agent backs off, then connects when it appears.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = AgentConfig::new(format!("http://{addr}"), dir.path(), None, "us-east-1");
    cfg.poll_wait = Duration::from_millis(200);
    let agent = start(cfg);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let listener = TcpListener::bind(addr).await.expect("rebind");
    let fake = Fake {
        url: format!("http://{addr}"),
        state: Arc::default(),
    };
    let server = fake.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move { server.serve(stream).await });
        }
    });
    fake.send(run_message("cmd-o", &["echo back"]));
    fake.wait_until("the result after the outage", |f| !f.results().is_empty())
        .await;
    assert!(fake.requests(POLL_PATH)[0]
        .json::<PollRequest>()
        .machine
        .is_some());
    agent.stop().await;
}

#[tokio::test]
async fn a_server_that_does_not_hold_polls_is_not_hammered() {
    let fake = Fake::start().await;
    fake.state().instant_polls = true;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&fake, dir.path());
    cfg.poll_wait = Duration::from_secs(20);
    let agent = start(cfg);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let polls = fake.requests(POLL_PATH).len();
    assert!((2..=8).contains(&polls), "{polls} polls in 1.5 s");
    // Work is still picked up promptly.
    fake.send(run_message("cmd-i", &["true"]));
    fake.wait_until("the result", |f| !f.results().is_empty())
        .await;
    agent.stop().await;
}

/// Credentials issued for 2 s are refreshed at half-life: every poll and result stays validly
/// signed across several rotations, with no operator action.
#[tokio::test]
async fn session_credentials_rotate_at_half_life() {
    let fake = Fake::start().await;
    fake.state().token_lifetime = Some(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = start(config(&fake, dir.path()));
    for i in 0..4 {
        let id = format!("cmd-rot-{i}");
        fake.send(run_message(&id, &["true"]));
        fake.wait_until("the result", |f| {
            f.results().iter().any(|r| r.command_id == id)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    agent.stop().await;
    let tokens = fake.requests(TOKEN_PATH).len();
    assert!(
        (3..=8).contains(&tokens),
        "{tokens} token requests in ~4 s of 2 s credentials"
    );
    let signed: Vec<Request> = fake
        .state()
        .requests
        .iter()
        .filter(|r| r.path == POLL_PATH || r.path == RESULT_PATH)
        .cloned()
        .collect();
    assert!(
        signed.iter().all(|r| r.signed_by.is_some()),
        "every request validly signed"
    );
    let keys: std::collections::HashSet<_> =
        signed.iter().filter_map(|r| r.signed_by.clone()).collect();
    assert!(keys.len() >= 3, "{keys:?}");
}

/// Credentials the server calls expired are dropped and fetched anew; the request then goes
/// through, and a result refused that way is not set aside.
#[tokio::test]
async fn credentials_the_server_refuses_are_replaced_and_the_request_retried() {
    let fake = Fake::start().await;
    fake.state().expire_next = 1;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = start(config(&fake, dir.path()));
    fake.wait_until("a second token", |f| f.requests(TOKEN_PATH).len() >= 2)
        .await;
    fake.send(run_message("cmd-x", &["echo ok"]));
    fake.wait_until("the result", |f| {
        f.requests(RESULT_PATH)
            .iter()
            .any(|r| r.signed_by.is_some())
    })
    .await;
    fake.state().expire_next = 1;
    fake.send(run_message("cmd-y", &["echo ok"]));
    fake.wait_until("cmd-y's result accepted", |f| {
        f.requests(RESULT_PATH)
            .iter()
            .filter(|r| r.json::<ResultReport>().command_id == "cmd-y")
            .count()
            >= 1
            && f.requests(TOKEN_PATH).len() >= 3
    })
    .await;
    fake.wait_until("the outbox to empty", |_| {
        !dir.path().join("outbox/cmd-y.json").exists()
    })
    .await;
    agent.stop().await;
    assert!(!dir.path().join("outbox/rejected/cmd-x.json").exists());
    assert!(!dir.path().join("outbox/rejected/cmd-y.json").exists());
}

/// A free loopback address nothing listens on (yet).
fn free_addr() -> std::net::SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    probe.local_addr().expect("addr")
}

fn good_activation() -> Option<Activation> {
    Some(Activation {
        id: "act-1".into(),
        code: "good-code".into(),
    })
}

/// The agent starts before its server: registration retries (connection refused) until the
/// server is up, then succeeds; a busy server (503) is waited for the same way.
#[tokio::test]
async fn registration_waits_for_a_server_that_comes_up_late() {
    let addr = free_addr();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let mut cfg = AgentConfig::new(format!("http://{addr}"), &state, good_activation(), REGION);
    cfg.poll_wait = Duration::from_millis(200);
    let t0 = Instant::now();
    let registering = tokio::spawn({
        let cfg = cfg.clone();
        async move { register_or_load(&cfg).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!registering.is_finished(), "no server yet: still waiting");
    let fake = Fake::start_on(addr).await;
    fake.state().busy_registrations = 1;
    let identity = tokio::time::timeout(Duration::from_secs(20), registering)
        .await
        .expect("registers once the server is up")
        .expect("join")
        .expect("registered");
    assert_eq!(identity.instance_id, INSTANCE);
    assert!(t0.elapsed() >= Duration::from_millis(1500));
    let attempts = fake.requests(REGISTER_PATH);
    assert_eq!(attempts.len(), 2, "one answered 503, then success");
    // Every attempt carries the same public key, so a server that registered an attempt whose
    // answer was lost recognises the retry.
    let keys: Vec<String> = attempts
        .iter()
        .map(|r| r.json::<RegisterRequest>().public_key)
        .collect();
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[0], identity.key.public_key_base64());
    assert!(state.join("identity.json").exists());
}

/// `register_timeout` bounds the waiting: 0 tries once, a short one gives up after it.
#[tokio::test]
async fn registration_gives_up_after_its_timeout() {
    let addr = free_addr();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = AgentConfig::new(
        format!("http://{addr}"),
        dir.path(),
        good_activation(),
        REGION,
    );
    cfg.register_timeout = Some(Duration::ZERO);
    let t0 = Instant::now();
    let err = register_or_load(&cfg).await.expect_err("nothing listens");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert!(
        matches!(err, AgentError::RegistrationGaveUp { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.exit_code(),
        fleetrun_agent::cli::exit::REGISTRATION_GAVE_UP
    );
    let cause = std::error::Error::source(&err).expect("the last failure");
    assert!(cause.to_string().starts_with("cannot reach"), "{cause:?}");

    cfg.register_timeout = Some(Duration::from_secs(2));
    let t0 = Instant::now();
    let err = register_or_load(&cfg).await.expect_err("nothing listens");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert!(err.to_string().contains("gave up registering"), "{err}");
    assert!(!dir.path().join("identity.json").exists());
}

/// A node the server says it does not know (deregistered) stops the agent with a distinct error
/// naming the node and the state dir; results waiting in the outbox are not set aside as refused.
#[tokio::test]
async fn a_deregistered_node_stops_the_agent_with_a_clear_error() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    fake.send(run_message("cmd-d", &["echo before"]));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(config(&fake, dir.path()), identity(), async move {
        let _ = stopped.await;
    }));
    fake.wait_until("cmd-d's result", |f| !f.results().is_empty())
        .await;
    // Deregistered while running: the next poll (with credentials still valid) is refused.
    fake.state().deregistered = true;
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the agent stops by itself")
        .expect("join");
    drop(stop);
    let err = ended.expect_err("a deregistered node is an error");
    match &err {
        AgentError::Deregistered {
            instance_id,
            state_dir,
        } => {
            assert_eq!(instance_id, INSTANCE);
            assert_eq!(
                state_dir.canonicalize().expect("dir"),
                dir.path().canonicalize().expect("dir")
            );
        }
        other => panic!("expected Deregistered, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("deregistered on the server; register again with a new activation"),
        "{text}"
    );
    assert_eq!(err.exit_code(), fleetrun_agent::cli::exit::DEREGISTERED);
    // It stopped asking: no goodbye to a server that does not know it, no more polls.
    let polls = fake.requests(POLL_PATH).len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.requests(POLL_PATH).len(), polls);
    assert!(fake.requests(GOODBYE_PATH).is_empty());

    // Restarted with the same identity, it fails at once (the token request is refused), and a
    // result waiting in the outbox stays there rather than being set aside as refused.
    let outbox = dir.path().join("outbox");
    let pending = ResultReport {
        command_id: "cmd-e".into(),
        outcome: Outcome::Success,
        response_code: 0,
        elapsed_ms: 1,
        steps: Vec::new(),
        finished_at_ms: None,
        held_ms: 0,
    };
    std::fs::write(
        outbox.join("cmd-e.json"),
        serde_json::to_vec(&pending).expect("json"),
    )
    .expect("pending result");
    let t0 = Instant::now();
    let again = tokio::time::timeout(
        Duration::from_secs(10),
        run(
            config(&fake, dir.path()),
            identity(),
            std::future::pending(),
        ),
    )
    .await
    .expect("stops by itself");
    assert!(
        matches!(again, Err(AgentError::Deregistered { .. })),
        "{again:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(outbox.join("cmd-e.json").exists());
    assert!(!outbox.join("rejected/cmd-e.json").exists());
}

/// A clean stop ends with a goodbye signed with the session credentials; a server that does not
/// answer it delays the stop by at most about two seconds, and one that is down not at all.
#[tokio::test]
async fn a_clean_stop_says_goodbye_and_a_hung_server_delays_it_at_most_two_seconds() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = start(config(&fake, dir.path()));
    fake.wait_until("a poll", |f| !f.requests(POLL_PATH).is_empty())
        .await;
    let took = agent.stop().await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    let goodbyes = fake.requests(GOODBYE_PATH);
    assert_eq!(goodbyes.len(), 1);
    assert!(
        goodbyes[0]
            .signed_by
            .as_deref()
            .is_some_and(|k| k.starts_with("ASIA")),
        "signed with the session credentials"
    );
    // The goodbye is the last request.
    assert_eq!(
        fake.state().requests.last().map(|r| r.path.clone()),
        Some(GOODBYE_PATH.to_owned())
    );

    fake.state().hang_goodbye = true;
    let polls = fake.requests(POLL_PATH).len();
    let agent = start(config(&fake, dir.path()));
    fake.wait_until("a poll of the second run", |f| {
        f.requests(POLL_PATH).len() > polls
    })
    .await;
    let took = agent.stop().await;
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // No server at all: the goodbye fails at once.
    let addr = free_addr();
    let mut cfg = AgentConfig::new(format!("http://{addr}"), dir.path(), None, REGION);
    cfg.poll_wait = Duration::from_millis(200);
    let agent = start(cfg);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let took = agent.stop().await;
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// The `fleetrun-agent` binary against the fake, with an environment of its own.
fn agent_binary() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fleetrun-agent"));
    for (k, _) in std::env::vars() {
        if k.starts_with("FLEETRUN_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "info")
        .stdin(std::process::Stdio::piped());
    cmd
}

/// Runs `cmd` (with `input` on stdin) on a blocking thread; its exit code and stderr.
async fn exit_and_stderr(mut cmd: std::process::Command, input: &str) -> (i32, String) {
    let input = input.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn fleetrun-agent");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.as_bytes());
        }
        let out = child.wait_with_output().expect("wait");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

/// The exit codes `--help` documents, from the real binary: 2 for a usage error, 3 for a refused
/// registration (tried once), 4 with one clear ERROR line for a deregistered node.
#[tokio::test]
async fn the_binary_exits_with_the_documented_codes() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tempdir");

    let mut help = agent_binary();
    help.arg("--help");
    let out = tokio::task::spawn_blocking(move || help.output().expect("help"))
        .await
        .expect("join");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "Exit codes:",
        "deregistered on the server",
        "--register-timeout",
        "FLEETRUN_REGISTER_TIMEOUT",
        "identity.json",
        "outbox/",
        "work/<command-id>/<step>/",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert!(text.contains(fleetrun_agent::cli::HELP_DETAILS));

    let mut usage = agent_binary();
    usage.args(["--no-such-flag"]);
    assert_eq!(exit_and_stderr(usage, "").await.0, 2);
    let mut bad_timeout = agent_binary();
    bad_timeout.args([
        "--server",
        &fake.url,
        "--state-dir",
        "/nonexistent",
        "--register-timeout",
        "soon",
    ]);
    assert_eq!(exit_and_stderr(bad_timeout, "").await.0, 2);

    let state = dir.path().join("refused");
    let mut refused = agent_binary();
    refused.args([
        "register",
        "--server",
        &fake.url,
        "--activation-id",
        "act-1",
    ]);
    refused
        .args(["--activation-code-file", "-", "--state-dir"])
        .arg(&state);
    let (code, stderr) = exit_and_stderr(refused, "wrong-code\n").await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("refused the registration (InvalidActivation)"),
        "{stderr}"
    );
    assert_eq!(fake.requests(REGISTER_PATH).len(), 1, "not retried");

    let state = dir.path().join("gone");
    std::fs::create_dir_all(&state).expect("state dir");
    let saved = serde_json::json!({"protocol": 2, "instanceId": INSTANCE, "region": REGION,
        "keyType": "Ed25519", "privateKey": identity().key.to_base64()});
    std::fs::write(state.join("identity.json"), saved.to_string()).expect("identity");
    fake.state().deregistered = true;
    let mut gone = agent_binary();
    gone.args(["--server", &fake.url, "--state-dir"])
        .arg(&state);
    let (code, stderr) = exit_and_stderr(gone, "").await;
    assert_eq!(code, 4, "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(INSTANCE)
            && errors[0]
                .contains("deregistered on the server; register again with a new activation")
            && errors[0].contains(&state.display().to_string()),
        "{stderr}"
    );
}

/// Given several server URLs (replicas on one database), an agent whose first server cannot be
/// reached runs and reports through the next one.
#[tokio::test]
async fn an_unreachable_first_server_hands_over_to_the_next() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let down = probe.local_addr().expect("addr");
    drop(probe);
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = AgentConfig::new(
        format!("http://{down}, {}", fake.url),
        dir.path(),
        None,
        "us-east-1",
    );
    cfg.poll_wait = Duration::from_millis(200);
    fake.send(run_message("cmd-f", &["echo failed over"]));
    let agent = start(cfg);
    fake.wait_until("a result through the second server", |f| {
        !f.results().is_empty()
    })
    .await;
    let report: ResultReport = fake.requests(RESULT_PATH)[0].json();
    assert_eq!(report.steps[0].stdout, "failed over\n");
    agent.stop().await;
}

#[tokio::test]
async fn output_is_shipped_while_the_script_runs_and_a_short_step_is_whole_in_its_report() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    fake.send(run_message(
        "cmd-live",
        &["for i in 1 2 3; do echo line $i; sleep 0.6; done; echo oops >&2"],
    ));
    fake.send(run_message("cmd-short", &["echo short"]));
    let agent = start(config(&fake, dir.path()));
    fake.wait_until("the first line, live", |f| {
        f.state().output.get("cmd-live/stdout").map(Vec::as_slice) == Some(b"line 1\n".as_slice())
    })
    .await;
    assert!(
        !fake.results().iter().any(|r| r.command_id == "cmd-live"),
        "shipped before the command ended"
    );
    fake.wait_until("the live command's result", |f| {
        f.results().iter().any(|r| r.command_id == "cmd-live")
    })
    .await;
    {
        let state = fake.state();
        assert_eq!(
            state.output.get("cmd-live/stdout").map(Vec::as_slice),
            Some(b"line 1\nline 2\nline 3\n".as_slice())
        );
        assert!(
            !state.output.contains_key("cmd-live/stderr"),
            "stderr, written at the very end and short, rides in the report"
        );
        // A short step's output is left to its report (ship.rs unit tests pin that down); on a
        // loaded machine the step may outlive one shipping tick, and what was shipped then must
        // be the output itself, once.
        if let Some(shipped) = state.output.get("cmd-short/stdout") {
            assert_eq!(shipped.as_slice(), b"short\n".as_slice());
        }
    }
    let short = fake
        .results()
        .into_iter()
        .find(|r| r.command_id == "cmd-short")
        .expect("short result");
    assert_eq!(short.steps[0].stdout, "short\n");
    agent.stop().await;
}
