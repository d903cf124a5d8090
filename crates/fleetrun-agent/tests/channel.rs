//! The agent against a tiny fake server (hand-rolled HTTP/1.1 on a `TcpListener`): registration,
//! the long-poll loop, result delivery with the node's credentials, the outbox across restarts,
//! the queue limit, cancel, and shutdown.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetrun_agent::{register_or_load, run, Activation, AgentConfig, AgentError, Identity};
use fleetrun_wire::agent::{
    AgentMessage, Outcome, PollRequest, RegisterRequest, ResultReport, StepSpec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const SECRET: &str = "node-secret-1";
const INSTANCE: &str = "mi-0123456789abcdef0";

#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
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
}

#[derive(Clone)]
struct Fake {
    url: String,
    state: Arc<Mutex<State>>,
}

impl Fake {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
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
        self.requests("/agent/v1/result")
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

    async fn answer(&self, request: &Request) -> (u16, String) {
        self.state().requests.push(request.clone());
        match request.path.as_str() {
            "/agent/v1/register" => {
                let r: RegisterRequest = request.json();
                if r.activation_code == "good-code" {
                    (
                        200,
                        format!(r#"{{"instanceId":"{INSTANCE}","nodeSecret":"{SECRET}"}}"#),
                    )
                } else {
                    (
                        400,
                        r#"{"__type":"InvalidActivation","Message":"Activation not found"}"#.into(),
                    )
                }
            }
            "/agent/v1/poll" => {
                let p: PollRequest = request.json();
                let mut messages: Vec<AgentMessage> = self.state().outbox.drain(..).collect();
                messages.extend(self.state().resend.clone());
                if messages.is_empty() && !self.state().instant_polls {
                    // A short long poll: nothing to do, answer after a while.
                    tokio::time::sleep(Duration::from_millis(p.wait_ms.min(100))).await;
                }
                (200, serde_json::json!({ "messages": messages }).to_string())
            }
            "/agent/v1/result" => match self.state().result_status.unwrap_or(200) {
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
    })
}

fn config(fake: &Fake, state_dir: &Path) -> AgentConfig {
    let mut cfg = AgentConfig::new(&fake.url, state_dir, None, "us-east-1");
    cfg.poll_wait = Duration::from_millis(200);
    cfg
}

fn identity() -> Identity {
    Identity {
        instance_id: INSTANCE.into(),
        node_secret: SECRET.into(),
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
        Err(AgentError::Server {
            status: 400, code, ..
        }) => assert_eq!(code, "InvalidActivation"),
        other => panic!("expected InvalidActivation, got {other:?}"),
    }
    assert!(!state.join("identity.json").exists());

    cfg.activation = Some(Activation {
        id: "act-1".into(),
        code: "good-code".into(),
    });
    let first = register_or_load(&cfg).await.expect("register");
    assert_eq!(first, identity());
    let registrations = fake.requests("/agent/v1/register");
    assert_eq!(registrations.len(), 2);
    let body: RegisterRequest = registrations[1].json();
    assert_eq!(body.activation_id, "act-1");
    assert_eq!(body.machine.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(body.machine.ip_address, "127.0.0.1");
    assert!(registrations[1].header("authorization").is_none());
    assert_eq!(
        registrations[1].header("x-fleetrun-agent-protocol"),
        Some("1")
    );

    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(state.join("identity.json")).expect("identity saved");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // A restart loads the saved identity and does not register again.
    let again = register_or_load(&cfg).await.expect("load");
    assert_eq!(again, first);
    assert_eq!(fake.requests("/agent/v1/register").len(), 2);
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
    let posts = fake.requests("/agent/v1/result");
    let auth = format!("FleetrunNode {INSTANCE}:{SECRET}");
    assert_eq!(posts[0].header("authorization"), Some(auth.as_str()));
    assert_eq!(posts[0].header("x-fleetrun-agent-protocol"), Some("1"));
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
    let polls = fake.requests("/agent/v1/poll");
    assert!(polls.len() >= 3, "{} polls", polls.len());
    for p in &polls {
        assert_eq!(p.header("authorization"), Some(auth.as_str()));
    }
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
        f.requests("/agent/v1/poll")
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
    fake.wait_until("the resent result", |f| {
        !f.state().requests[before..].is_empty()
    })
    .await;
    let first = fake.state().requests[before].clone();
    assert_eq!(first.path, "/agent/v1/result");
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
            .filter(|r| r.path == "/agent/v1/poll")
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
        f.requests("/agent/v1/poll")
            .iter()
            .any(|r| r.json::<PollRequest>().dropped_commands == ["cmd-r"])
    })
    .await;
    // The server keeps sending the finished command (as one without `droppedCommands` would):
    // the agent never runs it again and does not answer with a busy loop.
    let before = fake.requests("/agent/v1/poll").len();
    fake.state().resend = Some(run_message("cmd-r", &["echo again"]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let polls = fake.requests("/agent/v1/poll").len() - before;
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
        f.requests("/agent/v1/poll")
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
async fn shutdown_waits_briefly_then_kills_and_keeps_the_result() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    fake.state().result_status = Some(503);
    fake.send(run_message("cmd-s", &["sleep 100"]));
    let agent = start(config(&fake, dir.path()));
    fake.wait_until("cmd-s running", |f| {
        f.requests("/agent/v1/poll")
            .iter()
            .any(|r| r.json::<PollRequest>().known_commands == ["cmd-s"])
    })
    .await;
    let took = agent.stop().await;
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(9),
        "{took:?}"
    );
    let saved = std::fs::read(dir.path().join("outbox/cmd-s.json")).expect("kept in the outbox");
    let report: ResultReport = serde_json::from_slice(&saved).expect("report");
    assert_eq!(
        (report.outcome, report.response_code),
        (Outcome::Failed, 137)
    );
    // The killed script's output stays in its work directory.
    assert!(dir.path().join("work/cmd-s/0/stdout").exists());
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
    assert!(fake.requests("/agent/v1/poll")[0]
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
    let polls = fake.requests("/agent/v1/poll").len();
    assert!((2..=8).contains(&polls), "{polls} polls in 1.5 s");
    // Work is still picked up promptly.
    fake.send(run_message("cmd-i", &["true"]));
    fake.wait_until("the result", |f| !f.results().is_empty())
        .await;
    agent.stop().await;
}
