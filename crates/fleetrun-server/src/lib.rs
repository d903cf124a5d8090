//! The fleetrun control plane: the AWS SSM awsJson1_1 endpoint (`POST /`), the agent endpoints
//! (`/agent/v2/*`, nodes authenticated by `node_auth`), and the background timekeeper. `main` builds a [`Server`] and calls [`Server::serve`].

pub mod agent_api;
pub mod alarms;
pub mod audit;
pub mod auth;
mod aws;
pub mod console;
mod convert;
mod edge;
mod effects;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod node_auth;
mod notifier;
mod ops;
pub mod parse_pool;
pub mod resource_groups;
pub mod s3_output;
pub mod sigv4;
mod timekeeper;
pub mod tls;
pub mod token;
pub mod transport;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use fleetrun_core::clock::{now_millis, Millis};
use fleetrun_core::ids::{random_secret, ActivationId};
use fleetrun_core::node::{hash_secret, NewActivation};
use fleetrun_core::store::WakeBus;
use fleetrun_core::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What SendCommand stores as a command's `rendered` listing part; tools that seed a store
/// directly (the benchmark) use it so their commands list as sent ones do.
pub use convert::rendering as render_command;
pub use notifier::Notifier;
use token::TokenKey;

/// Settings the operator chooses (validated by the binary).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub region: String,
    /// A node that has not polled for this long is reported ConnectionLost.
    pub ping_timeout: Duration,
    /// Longest a long poll is held open.
    pub max_poll_wait: Duration,
    /// Delete commands older than this; `None` keeps history forever.
    pub retention: Option<Duration>,
    /// How often the timekeeper looks for expired commands.
    pub tick: Duration,
    /// Timeouts, the connection cap, body and header limits, parser slots.
    pub limits: limits::Limits,
    /// Lifetime of the session credentials nodes get from `/agent/v2/token` (agents refresh them
    /// at half of it).
    pub node_credentials_lifetime: Duration,
    /// How far a request's SigV4 timestamp may be from the server's clock (SSM: 5 minutes).
    pub signature_window: Duration,
    /// The SNS topics this server delivers notifications for, and to whom (`--webhook`).
    pub webhooks: Vec<webhooks::Subscriber>,
    /// Longest wait between two attempts to deliver a notification.
    pub webhook_retry_max: Duration,
    /// How command output reaches S3 (`--s3-*`).
    pub s3: s3_output::S3Settings,
    /// Serve `/metrics` without its bearer token (`--metrics-public`).
    pub metrics_public: bool,
}

impl ServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            region: "us-east-1".into(),
            ping_timeout: Duration::from_secs(60),
            max_poll_wait: Duration::from_secs(25),
            retention: None,
            tick: Duration::from_secs(1),
            limits: limits::Limits::default(),
            node_credentials_lifetime: node_auth::DEFAULT_CREDENTIALS_LIFETIME,
            signature_window: Duration::from_secs(300),
            webhooks: Vec::new(),
            webhook_retry_max: Duration::from_secs(60),
            s3: s3_output::S3Settings::default(),
            metrics_public: false,
        }
    }
}

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub notifier: Notifier,
    pub tokens: TokenKey,
    /// API access keys, cached for the SigV4 verifier.
    pub keys: auth::KeyCache,
    pub config: Arc<ServerConfig>,
    /// Document content parsing, off the async threads (`parse_pool`).
    pub parsers: parse_pool::ContentParsers,
    /// Node session keys, the replay set and the registration throttle.
    pub node_auth: Arc<node_auth::NodeAuth>,
    /// Flips to true when shutdown begins, so long polls return at once.
    pub shutting_down: watch::Receiver<bool>,
    /// Wake-ups for other replicas on the same store, when it has a wake bus.
    pub(crate) replicas: Option<effects::ReplicaWakes>,
    /// Rung when a store call changed a status: the notification deliverer looks for notices.
    pub(crate) outbox: Arc<tokio::sync::Notify>,
    /// Rung when a report arrived: the S3 uploader looks for uploads.
    pub(crate) uploads: Arc<tokio::sync::Notify>,
    /// The S3 client, made on first use (`s3_output`).
    pub(crate) s3: Arc<tokio::sync::OnceCell<s3_output::S3Output>>,
    /// Rung when an alarm changed: the alarm watcher looks at running commands at once.
    pub(crate) alarms: Arc<tokio::sync::Notify>,
    /// The bearer token the Alertmanager webhook must carry (`alarms::alertmanager`).
    pub(crate) alertmanager_token: Arc<str>,
    /// The Prometheus series (`metrics`), and who may read them.
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) metrics_access: metrics::Access,
    /// The key console sessions are signed with (`console::session`).
    pub(crate) console: console::SessionKey,
}

impl AppState {
    pub fn ping_timeout_ms(&self) -> Millis {
        self.config.ping_timeout.as_millis() as Millis
    }
}

/// A configured server: state plus the shutdown switch.
pub struct Server {
    state: AppState,
    shutdown_tx: watch::Sender<bool>,
}

/// The NextToken key every replica on `store` shares. An earlier version kept it in
/// `<data_dir>/token.key`: that file is the first candidate, so its tokens stay valid.
async fn token_key(data_dir: &Path, store: &dyn Store) -> std::io::Result<TokenKey> {
    let candidate = match std::fs::read(data_dir.join("token.key")) {
        Ok(bytes) if bytes.len() >= 32 => bytes,
        _ => random_secret(48).into_bytes(),
    };
    let key = store
        .shared_secret("token-key", &candidate)
        .await
        .map_err(std::io::Error::other)?;
    Ok(TokenKey::new(key))
}

/// The Alertmanager webhook's bearer token: shared by every replica on `store`, written to
/// `<data_dir>/alertmanager-token` (0600) for the operator's Alertmanager configuration.
async fn alertmanager_token(store: &dyn Store, data_dir: &Path) -> std::io::Result<Arc<str>> {
    let secret = store
        .shared_secret("alertmanager-token", random_secret(40).as_bytes())
        .await
        .map_err(std::io::Error::other)?;
    let token = String::from_utf8(secret).map_err(std::io::Error::other)?;
    write_private(
        &data_dir.join(alarms::ALERTMANAGER_TOKEN_FILE),
        token.as_bytes(),
    )?;
    Ok(token.into())
}

/// Creates `dir` (and parents) and makes it 0700: it holds keys and the database, whatever the umask.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    make_private(dir, 0o700)
}

/// Tightens `path` to `mode` when group or others have any access.
fn make_private(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Writes a secret file created 0600 (never briefly world-readable).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    make_private(path, 0o600)
}

impl Server {
    /// Builds the server over an opened store; the signing keys come from the store (created on
    /// the first start).
    pub async fn new(config: ServerConfig, store: Arc<dyn Store>) -> std::io::Result<Self> {
        private_dir(&config.data_dir)?;
        let metrics = Arc::new(metrics::Metrics::new(config.ping_timeout));
        // Every store call of the server, timed (`fleetrun_store_call_duration_seconds`).
        let store: Arc<dyn Store> = Arc::new(metrics::TimedStore::new(store, metrics.clone()));
        let metrics_access = metrics::access(&config, store.as_ref()).await?;
        let tokens = token_key(&config.data_dir, store.as_ref()).await?;
        let node_auth = Arc::new(node_auth::NodeAuth::open(&config, store.as_ref()).await?);
        if !config.webhooks.is_empty() {
            let path =
                webhooks::write_secrets(store.as_ref(), &config.data_dir, &config.webhooks).await?;
            let topics: std::collections::BTreeSet<&str> = config
                .webhooks
                .iter()
                .map(|w| w.topic_arn.as_str())
                .collect();
            tracing::info!(topics = topics.len(), subscribers = config.webhooks.len(),
                secrets = %path.display(), "notifications: delivering to webhooks");
        }
        let alertmanager_token = alertmanager_token(store.as_ref(), &config.data_dir).await?;
        let console = console::SessionKey::load(store.as_ref()).await?;
        let (shutdown_tx, shutting_down) = watch::channel(false);
        Ok(Self {
            state: AppState {
                store,
                notifier: Notifier::default(),
                tokens,
                keys: auth::KeyCache::default(),
                parsers: parse_pool::ContentParsers::new(config.limits.content_parsers),
                config: Arc::new(config),
                node_auth,
                shutting_down,
                replicas: None,
                outbox: Arc::new(tokio::sync::Notify::new()),
                uploads: Arc::new(tokio::sync::Notify::new()),
                s3: Arc::new(tokio::sync::OnceCell::new()),
                alarms: Arc::new(tokio::sync::Notify::new()),
                alertmanager_token,
                metrics,
                metrics_access,
                console,
            },
            shutdown_tx,
        })
    }

    /// Joins the other replicas on the same store: wake-ups go both ways through `bus`.
    pub fn with_replicas(mut self, bus: Arc<dyn WakeBus>) -> Self {
        let notifier = self.state.notifier.clone();
        self.state.replicas = Some(effects::ReplicaWakes::start(bus, notifier));
        self
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Creates the administrator access key on a store that has none (first start) and returns the
    /// credentials kept in `<data_dir>/admin-credentials`, if that file is still there.
    pub async fn admin_credentials(&self) -> std::io::Result<Option<auth::AdminCredentials>> {
        auth::bootstrap_admin_key(self.state.store.as_ref(), &self.state.config.data_dir).await
    }

    /// Creates a one-use activation for the node this server runs on (`--local-node`).
    pub async fn local_activation(&self) -> Result<(String, String), error::ApiError> {
        let id = ActivationId::generate();
        let code = random_secret(20);
        let now = now_millis();
        self.state
            .store
            .create_activation(NewActivation {
                id: id.clone(),
                code_hash: hash_secret(&code),
                description: "fleetrun --local-node".into(),
                default_instance_name: "local-node".into(),
                iam_role: "fleetrun-local-node".into(),
                registration_limit: 1,
                expires_at: now + 3_600_000,
                created_at: now,
                tags: vec![],
            })
            .await?;
        Ok((id.to_string(), code))
    }

    /// Serves plain HTTP until `shutdown` resolves, then stops accepting, ends long polls and
    /// drains requests (`transport`).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_tls(listener, None, shutdown).await
    }

    /// [`Server::serve`], over TLS when `tls` is given (the handshake runs on the connection's own
    /// task, under `Limits::tls_handshake_timeout`).
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // The console marks its cookie Secure when served over TLS.
        let app = router(self.state.clone())
            .layer(axum::Extension(console::Transport { tls: tls.is_some() }));
        let limits = self.state.config.limits.clone();
        let ticker = tokio::spawn(timekeeper::run(self.state.clone()));
        let deliverer = tokio::spawn(webhooks::deliver(self.state.clone()));
        let uploader = tokio::spawn(s3_output::upload(self.state.clone()));
        let alarm_watcher = tokio::spawn(alarms::watch(self.state.clone()));
        let tx = self.shutdown_tx;
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = tx.send(true);
        };
        let result = transport::serve(listener, tls, app, limits, signal).await;
        ticker.abort();
        deliverer.abort();
        uploader.abort();
        alarm_watcher.abort();
        result
    }
}

/// All routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", post(aws::handle))
        .route("/healthz", get(metrics::alive))
        .route("/readyz", get(metrics::ready))
        .route("/metrics", get(metrics::scrape))
        .route(alarms::ALERTMANAGER_PATH, post(alarms::alertmanager))
        .merge(agent_api::routes())
        .merge(resource_groups::routes())
        .merge(console::routes())
        .fallback(edge::not_found)
        .method_not_allowed_fallback(edge::method_not_allowed)
        // Bodies are read, within their limit, by `edge::limit_body`.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::limit_body,
        ))
        .layer(axum::middleware::from_fn(edge::typed_errors))
        .with_state(state)
}
