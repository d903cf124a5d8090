//! Test harness: a real fleetrun server on 127.0.0.1:0 over a fresh data dir and store, real agents
//! (each with its own identity and state dir) and the real `aws-sdk-ssm` client.
//!
//! The store is SQLite in the data dir, or with `FLEETRUN_TEST_STORE=postgres` a fresh PostgreSQL
//! database per [`TestDir`] (admin URL `FLEETRUN_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped with it.
#![allow(dead_code)]

pub mod node;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ssm::config::{BehaviorVersion, Region};
use aws_sdk_ssm::Client;
use fleetrun_agent::{Activation, AgentConfig};
use fleetrun_core::store::WakeBus;
use fleetrun_core::Store;
use fleetrun_server::{Server, ServerConfig};
use fleetrun_store::postgres::TempDatabase;
use fleetrun_store::{PostgresStore, SqliteStore};
use tempfile::TempDir;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub endpoint: String,
    /// aws-sdk-ssm signed with the administrator key the server created on first start.
    pub client: Client,
    /// That administrator key (id, secret).
    pub admin: (String, String),
    /// The server's node authentication (credentials issued, ...).
    pub node_auth: Arc<fleetrun_server::node_auth::NodeAuth>,
    pub dir: Arc<TestDir>,
    /// The generated certificate when started with [`TestServer::start_tls`] (`endpoint` is then
    /// `https://…`, `client` trusts it and agents get it as their `ca_cert`).
    pub tls: Option<fleetrun_server::tls::ServerTls>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

pub struct TestAgent {
    pub instance_id: String,
    pub state_dir: std::path::PathBuf,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// An SDK client for `endpoint` signing with `(access key id, secret)`.
pub fn client(endpoint: &str, key: &(String, String)) -> Client {
    client_in(endpoint, key, "us-east-1")
}

/// [`client`] for an `https://` endpoint whose certificate chains to the PEM file `ca_cert`.
pub fn client_trusting(
    endpoint: &str,
    key: &(String, String),
    ca_cert: &std::path::Path,
) -> Client {
    use aws_smithy_http_client::tls;
    let pem = std::fs::read(ca_cert).expect("CA certificate");
    let trust = tls::TrustStore::empty().with_pem_certificate(pem);
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(
            tls::TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .expect("TLS context"),
        )
        .build_https();
    let conf = client(endpoint, key)
        .config()
        .to_builder()
        .http_client(http)
        .build();
    Client::from_conf(conf)
}

/// [`client`] for another region (whose signatures the server must refuse).
pub fn client_in(endpoint: &str, key: &(String, String), region: &str) -> Client {
    let creds =
        aws_credential_types::Credentials::new(key.0.clone(), key.1.clone(), None, None, "test");
    let conf = aws_sdk_ssm::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_ssm::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

/// Whether this run's stores are PostgreSQL (`FLEETRUN_TEST_STORE=postgres`).
pub fn on_postgres() -> bool {
    match std::env::var("FLEETRUN_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("FLEETRUN_TEST_STORE={other:?}: expected sqlite or postgres"),
    }
}

/// A test's directory (data dirs, agents' state dirs) and, on PostgreSQL, its database: servers
/// restarted over the same `TestDir` find their data again; both go when it is dropped.
pub struct TestDir {
    tmp: TempDir,
    database: Option<TempDatabase>,
}

impl TestDir {
    pub async fn new() -> Arc<TestDir> {
        let database = if on_postgres() {
            let admin = std::env::var("FLEETRUN_TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            Some(TempDatabase::create(&admin).await.expect("test database"))
        } else {
            None
        };
        Arc::new(TestDir {
            tmp: tempfile::tempdir().expect("tempdir"),
            database,
        })
    }

    pub fn path(&self) -> &std::path::Path {
        self.tmp.path()
    }

    /// Opens this test's store for a server whose data dir is `data` (and, on PostgreSQL, its
    /// wake bus for other replicas).
    pub async fn open_store(
        &self,
        data: &std::path::Path,
    ) -> (Arc<dyn Store>, Option<Arc<dyn WakeBus>>) {
        match &self.database {
            Some(db) => {
                let store = PostgresStore::connect(db.url()).await.expect("open store");
                let bus: Arc<dyn WakeBus> = Arc::new(store.wake_bus());
                (Arc::new(store), Some(bus))
            }
            None => {
                let store = SqliteStore::open(&data.join("fleetrun.db")).expect("open store");
                (Arc::new(store), None)
            }
        }
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_in(TestDir::new().await, None).await
    }

    /// Starts a fresh server with a tweaked configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::start_configured(TestDir::new().await, None, tweak, false).await
    }

    /// Starts a server over `dir` (reusing its data when restarting), optionally on a fixed address.
    pub async fn start_in(dir: Arc<TestDir>, addr: Option<std::net::SocketAddr>) -> Self {
        Self::start_configured(dir, addr, |_| {}, false).await
    }

    /// [`TestServer::start_in`] with a tweaked configuration (a restart with the same settings).
    pub async fn start_in_with(dir: Arc<TestDir>, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::start_configured(dir, None, tweak, false).await
    }

    /// Starts a fresh server over TLS with a self-signed certificate generated in its data dir, as
    /// `fleetrun server` does on a non-loopback address.
    pub async fn start_tls() -> Self {
        Self::start_configured(TestDir::new().await, None, |_| {}, true).await
    }

    /// Another server (a replica) on the same store as `self`, with a data dir of its own
    /// (`name`). Only PostgreSQL can be shared.
    pub async fn replica(&self, name: &str) -> Self {
        assert!(on_postgres(), "replicas need FLEETRUN_TEST_STORE=postgres");
        let admin = Some(self.admin.clone());
        Self::start_over(Arc::clone(&self.dir), name, None, |_| {}, false, admin).await
    }

    async fn start_configured(
        dir: Arc<TestDir>,
        addr: Option<std::net::SocketAddr>,
        tweak: impl FnOnce(&mut ServerConfig),
        tls: bool,
    ) -> Self {
        Self::start_over(dir, "data", addr, tweak, tls, None).await
    }

    async fn start_over(
        dir: Arc<TestDir>,
        data_name: &str,
        addr: Option<std::net::SocketAddr>,
        tweak: impl FnOnce(&mut ServerConfig),
        tls: bool,
        known_admin: Option<(String, String)>,
    ) -> Self {
        let data = dir.path().join(data_name);
        std::fs::create_dir_all(&data).expect("data dir");
        let (store, bus) = dir.open_store(&data).await;
        let mut config = ServerConfig::new(&data);
        config.tick = Duration::from_millis(200);
        tweak(&mut config);
        let mut server = Server::new(config, store).await.expect("server");
        if let Some(bus) = bus {
            server = server.with_replicas(bus);
        }
        let node_auth = server.state().node_auth.clone();
        let created = server.admin_credentials().await.expect("admin key");
        // A replica finds the key the first server created (and wrote to its own data dir).
        let admin = match (created, known_admin) {
            (Some(admin), _) => (admin.access_key_id, admin.secret_access_key),
            (None, Some(admin)) => admin,
            (None, None) => panic!("no admin-credentials file"),
        };
        let bind = addr.unwrap_or_else(|| "127.0.0.1:0".parse().expect("addr"));
        let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tls = tls.then(|| {
            let names = fleetrun_server::tls::certificate_names(addr);
            fleetrun_server::tls::self_signed(&data, &names).expect("self-signed certificate")
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://{addr}");
        let (stop, mut rx) = watch::channel(false);
        let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
        let task = tokio::spawn(server.serve_tls(listener, acceptor, async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        let client = match &tls {
            Some(t) => client_trusting(&endpoint, &admin, &t.cert_path),
            None => client(&endpoint, &admin),
        };
        Self {
            client,
            tls,
            admin,
            node_auth,
            endpoint,
            dir,
            stop,
            task: Some(task),
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.endpoint
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .parse()
            .expect("addr")
    }

    pub async fn stop(mut self) -> Arc<TestDir> {
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
        self.fake_node(platform_type).await.instance_id
    }

    /// [`register_node`](Self::register_node), keeping the node's key so the test can send raw
    /// signed agent requests as that node.
    pub async fn fake_node(&self, platform_type: &str) -> node::FakeNode {
        let act = self.new_activation().await;
        node::FakeNode::register(&self.endpoint, (&act.id, &act.code), platform_type).await
    }

    /// Starts an agent over an existing (or new) state dir.
    pub async fn start_agent(
        &self,
        state_dir: std::path::PathBuf,
        activation: Option<Activation>,
    ) -> TestAgent {
        self.start_agent_with(state_dir, activation, |_| {})
            .await
            .expect("register")
    }

    /// [`start_agent`](Self::start_agent) with a tweaked configuration (over TLS it trusts the
    /// server's certificate as its CA unless `tweak` says otherwise); the registration error if
    /// registering fails.
    pub async fn start_agent_with(
        &self,
        state_dir: std::path::PathBuf,
        activation: Option<Activation>,
        tweak: impl FnOnce(&mut AgentConfig),
    ) -> Result<TestAgent, fleetrun_agent::AgentError> {
        let mut cfg = AgentConfig::new(&self.endpoint, state_dir.clone(), activation, "us-east-1");
        cfg.poll_wait = Duration::from_secs(10);
        cfg.ca_cert = self.tls.as_ref().map(|t| t.cert_path.clone());
        tweak(&mut cfg);
        let identity = fleetrun_agent::register_or_load(&cfg).await?;
        let instance_id = identity.instance_id.clone();
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let _ = fleetrun_agent::run(cfg, identity, async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
        });
        Ok(TestAgent {
            instance_id,
            state_dir,
            stop,
            task: Some(task),
        })
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

/// How a hand-made API request is signed: by which key (none = unsigned), at which clock, for
/// which region and service. `Signing::admin(s)` is what a real client with the right key does.
pub struct Signing<'a> {
    pub key: Option<&'a (String, String)>,
    pub now_unix: i64,
    pub region: &'a str,
    pub service: &'a str,
}

impl<'a> Signing<'a> {
    pub fn admin(s: &'a TestServer) -> Self {
        Self::with(Some(&s.admin))
    }

    pub fn with(key: Option<&'a (String, String)>) -> Self {
        Self {
            key,
            now_unix: fleetrun_sigv4_now(),
            region: "us-east-1",
            service: "ssm",
        }
    }
}

fn fleetrun_sigv4_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl TestServer {
    /// POSTs `body` to `/` with an optional X-Amz-Target, signed as `signing` says (fleetrun-sigv4,
    /// for requests an SDK would never send: bad bodies, other clocks, other services).
    pub async fn signed_post(
        &self,
        target: Option<&str>,
        body: &str,
        signing: &Signing<'_>,
    ) -> reqwest::Response {
        let host = self.endpoint.trim_start_matches("http://").to_string();
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("content-type", b"application/x-amz-json-1.1"),
            ("host", host.as_bytes()),
        ];
        if let Some(t) = target {
            headers.push(("x-amz-target", t.as_bytes()));
        }
        let mut req = node::http()
            .post(format!("{}/", self.endpoint))
            .header("content-type", "application/x-amz-json-1.1")
            .body(body.to_string());
        if let Some(t) = target {
            req = req.header("x-amz-target", t);
        }
        if let Some((id, secret)) = signing.key {
            let request = fleetrun_sigv4::HttpRequest {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                body: body.as_bytes(),
            };
            let creds = fleetrun_sigv4::Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: None,
            };
            let signed = fleetrun_sigv4::sign(
                &request,
                &creds,
                signing.region,
                signing.service,
                signing.now_unix,
            );
            for (name, value) in signed {
                req = req.header(name, value);
            }
        }
        req.send().await.expect("post")
    }
}
