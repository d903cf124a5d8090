//! Test harness: a real fleetrun server on 127.0.0.1:0 over a fresh SQLite data dir, real agents
//! (each with its own identity and state dir) and the real `aws-sdk-ssm` client.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ssm::config::{BehaviorVersion, Region};
use aws_sdk_ssm::Client;
use fleetrun_agent::{Activation, AgentConfig};
use fleetrun_server::{Server, ServerConfig};
use fleetrun_store::SqliteStore;
use tempfile::TempDir;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub endpoint: String,
    pub client: Client,
    pub dir: Arc<TempDir>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

pub struct TestAgent {
    pub instance_id: String,
    pub state_dir: std::path::PathBuf,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

pub fn client(endpoint: &str) -> Client {
    let creds =
        aws_credential_types::Credentials::new("AKIDFLEETRUNTEST", "secret", None, None, "test");
    let conf = aws_sdk_ssm::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_ssm::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_in(Arc::new(tempfile::tempdir().expect("tempdir")), None).await
    }

    /// Starts a fresh server with a tweaked configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::start_configured(dir, None, tweak).await
    }

    /// Starts a server over `dir` (reusing its data when restarting), optionally on a fixed address.
    pub async fn start_in(dir: Arc<TempDir>, addr: Option<std::net::SocketAddr>) -> Self {
        Self::start_configured(dir, addr, |_| {}).await
    }

    async fn start_configured(
        dir: Arc<TempDir>,
        addr: Option<std::net::SocketAddr>,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let store = SqliteStore::open(&data.join("fleetrun.db")).expect("open store");
        let mut config = ServerConfig::new(&data);
        config.tick = Duration::from_millis(200);
        tweak(&mut config);
        let server = Server::new(config, Arc::new(store)).expect("server");
        let bind = addr.unwrap_or_else(|| "127.0.0.1:0".parse().expect("addr"));
        let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        Self {
            client: client(&endpoint),
            endpoint,
            dir,
            stop,
            task: Some(task),
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.endpoint
            .trim_start_matches("http://")
            .parse()
            .expect("addr")
    }

    pub async fn stop(mut self) -> Arc<TempDir> {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.dir.clone()
    }

    /// Creates an activation through the SSM API and starts a fresh agent registered with it.
    pub async fn add_agent(&self) -> TestAgent {
        let activation = self.new_activation().await;
        let state_dir = self.dir.path().join(format!("agent-{}", uuid_like()));
        self.start_agent(state_dir, Some(activation)).await
    }

    /// A one-node activation created through the SSM API.
    pub async fn new_activation(&self) -> Activation {
        let act = self
            .client
            .create_activation()
            .iam_role("test-role")
            .registration_limit(1)
            .send()
            .await
            .expect("create activation");
        Activation {
            id: act.activation_id().expect("id").to_string(),
            code: act.activation_code().expect("code").to_string(),
        }
    }

    /// A registered node whose agent has stopped: work sent to it waits undelivered.
    pub async fn stopped_node(&self) -> String {
        let agent = self.add_agent().await;
        let node = agent.instance_id.clone();
        agent.stop().await;
        node
    }

    /// Registers a node that reports `platform_type` through the agent endpoint (as an agent on that
    /// platform would) without running an agent: work sent to it stays Pending. Returns its id.
    pub async fn register_node(&self, platform_type: &str) -> String {
        let act = self.new_activation().await;
        let body = serde_json::json!({
            "activationId": act.id,
            "activationCode": act.code,
            "machine": {"computerName": "node", "ipAddress": "127.0.0.1",
                "platformType": platform_type, "platformName": platform_type,
                "platformVersion": "1", "agentVersion": "0.1.0"}});
        let resp = reqwest::Client::new()
            .post(format!("{}/agent/v1/register", self.endpoint))
            .json(&body)
            .send()
            .await
            .expect("register over HTTP");
        assert_eq!(resp.status().as_u16(), 200, "register");
        let body: serde_json::Value = resp.json().await.expect("json");
        body["instanceId"].as_str().expect("instanceId").to_string()
    }

    /// Starts an agent over an existing (or new) state dir.
    pub async fn start_agent(
        &self,
        state_dir: std::path::PathBuf,
        activation: Option<Activation>,
    ) -> TestAgent {
        let mut cfg = AgentConfig::new(&self.endpoint, state_dir.clone(), activation, "us-east-1");
        cfg.poll_wait = Duration::from_secs(10);
        let identity = fleetrun_agent::register_or_load(&cfg)
            .await
            .expect("register");
        let instance_id = identity.instance_id.clone();
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let _ = fleetrun_agent::run(cfg, identity, async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
        });
        TestAgent {
            instance_id,
            state_dir,
            stop,
            task: Some(task),
        }
    }

    /// CreateDocument (JSON content); the error code when it is refused.
    pub async fn create_document(&self, name: &str, content: &str) -> Result<(), String> {
        self.client
            .create_document()
            .name(name)
            .content(content)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| code(&e))
    }

    /// Sends a shell script to the given nodes and returns the command id.
    pub async fn run(&self, nodes: &[&str], commands: &[&str]) -> String {
        self.client
            .send_command()
            .document_name("AWS-RunShellScript")
            .set_instance_ids(Some(nodes.iter().map(|s| s.to_string()).collect()))
            .parameters("commands", commands.iter().map(|s| s.to_string()).collect())
            .send()
            .await
            .expect("send command")
            .sent_id()
    }

    /// Polls GetCommandInvocation until the invocation is terminal.
    pub async fn wait(
        &self,
        command_id: &str,
        node: &str,
    ) -> aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let out = self
                .client
                .get_command_invocation()
                .command_id(command_id)
                .instance_id(node)
                .send()
                .await
                .expect("get invocation");
            let status = out
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            if !matches!(
                status.as_str(),
                "Pending" | "InProgress" | "Delayed" | "Cancelling"
            ) {
                return out;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "invocation still {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl TestAgent {
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The id of the command a SendCommand answer describes.
pub trait SentId {
    fn sent_id(&self) -> String;
}

impl SentId for aws_sdk_ssm::operation::send_command::SendCommandOutput {
    fn sent_id(&self) -> String {
        self.command()
            .and_then(|c| c.command_id())
            .expect("SendCommand answers with a command id")
            .to_string()
    }
}

/// The AWS error code of an SDK error.
pub fn code<E, R>(err: &aws_sdk_ssm::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ssm::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("<not a service error>")
        .to_string()
}
