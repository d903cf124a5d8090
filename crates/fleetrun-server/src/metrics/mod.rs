//! Prometheus metrics (`GET /metrics`, OpenMetrics text) and the health endpoints (`/healthz`,
//! `/readyz`). ARCHITECTURE.md, "Metrics and health", says why `prometheus-client` and why the
//! token.
//!
//! Every series is recorded where its event happens exactly once: API requests in `aws::handle`,
//! invocation state entries in `AppState::apply` (every committed transition passes there) and in
//! SendCommand (creation), dispatch latency and long polls in `agent_api::poll`, store calls in the
//! [`TimedStore`] decorator. Depths of the outboxes are read from the store at scrape time.
//!
//! Labels take only values from fixed sets (operations served, error codes, states, store
//! methods): never a node id, a command id or anything a client wrote, so the number of series is
//! bounded whatever the traffic.

mod agents;
mod store;

use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use fleetrun_core::clock::Millis;
use fleetrun_core::status::InvocationState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use sha2::{Digest, Sha256};

pub(crate) use agents::PollHeld;
pub use store::TimedStore;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The file in the data dir holding the bearer token `/metrics` asks for (unless
/// `--metrics-public`).
pub const METRICS_TOKEN_FILE: &str = "metrics-token";

/// The code label of a request that succeeded.
pub const NO_ERROR: &str = "none";

/// The op label of a request whose X-Amz-Target names no operation the server serves.
pub const UNKNOWN_OP: &str = "unknown";

/// OpenMetrics 1.0, which `prometheus-client` writes and Prometheus asks for first.
const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Request and store latencies: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Sent → acknowledged: milliseconds when the node is polling, up to hours when the rollout
/// holds an invocation back or its node is offline (Delayed).
const DISPATCH_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    3600.0,
];

/// How long a scrape or a readiness check waits for the store.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    op: &'static str,
    /// An `ApiError::code()`, or [`NO_ERROR`].
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    /// The invocation's StatusDetails (`InvocationState`), finer than its Status.
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

/// Who may read `/metrics`.
#[derive(Clone)]
pub(crate) enum Access {
    /// Anyone who can reach the port (`--metrics-public`).
    Public,
    /// Requests carrying `Authorization: Bearer <token>`.
    Token(std::sync::Arc<str>),
}

/// The server's metrics: one registry per [`crate::Server`], so servers in one process (tests)
/// never mix their counts.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Latencies<OpLabels>,
    invocations: Family<StatusLabels, Counter>,
    dispatch_seconds: Histogram,
    agents: agents::Agents,
    store_seconds: Latencies<MethodLabels>,
    notification_backlog: Gauge,
    upload_backlog: Gauge,
}

impl Metrics {
    /// `ping_timeout`: an agent that has not polled for this long no longer counts as connected.
    pub fn new(ping_timeout: Duration) -> Self {
        let mut registry = Registry::with_prefix("fleetrun");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "API requests (AWS JSON: SSM, CloudWatch Logs, CloudWatch, FleetrunAdmin) by operation and error code (none: success)",
            requests.clone(),
        );
        let request_seconds: Latencies<OpLabels> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "api_request_duration",
            "Time to answer an API request, from its arrival to its response, by operation",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let invocations = Family::<StatusLabels, Counter>::default();
        // Every state from the start, so a rate over a state not entered yet is 0, not absent.
        for state in InvocationState::ALL {
            let _ = invocations.get_or_create(&StatusLabels {
                status: state.as_str(),
            });
        }
        registry.register(
            "invocations_entered",
            "Invocations entering each state (StatusDetails): Pending when a command creates them, then every committed transition",
            invocations.clone(),
        );
        let dispatch_seconds = Histogram::new(DISPATCH_BUCKETS);
        registry.register_with_unit(
            "dispatch_latency",
            "From a command's RequestedDateTime to its delivery to a node's agent (the invocation becomes InProgress), per invocation",
            Unit::Seconds,
            dispatch_seconds.clone(),
        );
        let agents = agents::Agents::new(ping_timeout);
        registry.register(
            "agents_connected",
            "Agents that polled this server within the ping timeout",
            agents.connected.clone(),
        );
        registry.register(
            "agent_polls_held",
            "Agent long polls this server holds open now",
            agents.polls_held.clone(),
        );
        let store_seconds: Latencies<MethodLabels> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "store_call_duration",
            "Time a store call took (SQLite or PostgreSQL), by Store method",
            Unit::Seconds,
            store_seconds.clone(),
        );
        let notification_backlog = Gauge::default();
        registry.register(
            "notification_outbox_depth",
            "Notifications stored and not yet delivered to their webhooks (the store's, shared by every server on it)",
            notification_backlog.clone(),
        );
        let upload_backlog = Gauge::default();
        registry.register(
            "s3_upload_queue_depth",
            "Invocation outputs waiting to be uploaded to S3 (the store's, shared by every server on it)",
            upload_backlog.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            invocations,
            dispatch_seconds,
            agents,
            store_seconds,
            notification_backlog,
            upload_backlog,
        }
    }

    /// One API request answered. `op` is one of the operations served or [`UNKNOWN_OP`]; `code`
    /// is the error code answered or [`NO_ERROR`].
    pub(crate) fn api_request(&self, op: &'static str, code: &str, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                op,
                code: code.to_string(),
            })
            .inc();
        self.request_seconds
            .get_or_create(&OpLabels { op })
            .observe(took.as_secs_f64());
    }

    /// An invocation entered `state`.
    pub(crate) fn invocation_entered(&self, state: InvocationState) {
        self.invocations_entered(state, 1);
    }

    /// `n` invocations entered `state` (a new command's Pending ones).
    pub(crate) fn invocations_entered(&self, state: InvocationState, n: u64) {
        self.invocations
            .get_or_create(&StatusLabels {
                status: state.as_str(),
            })
            .inc_by(n);
    }

    /// An invocation of a command requested at `requested_at` was delivered to its agent at `now`.
    pub(crate) fn delivered(&self, requested_at: Millis, now: Millis) {
        let waited = now.saturating_sub(requested_at).max(0);
        self.dispatch_seconds.observe(waited as f64 / 1000.0);
    }

    /// The agent of `node` polled (it counts as connected until the ping timeout passes).
    pub(crate) fn agent_polled(&self, node: &str) {
        self.agents.polled(node, std::time::Instant::now());
    }

    /// The agent of `node` said goodbye.
    pub(crate) fn agent_left(&self, node: &str) {
        self.agents.left(node);
    }

    /// A long poll is held until the returned guard drops.
    pub(crate) fn poll_held(&self) -> PollHeld {
        self.agents.poll_held()
    }

    fn store_call(&self, method: &'static str, took: Duration) {
        self.store_seconds
            .get_or_create(&MethodLabels { method })
            .observe(took.as_secs_f64());
    }

    /// The registry in the text format.
    fn encode(&self) -> Result<String, std::fmt::Error> {
        self.encode_at(std::time::Instant::now())
    }

    /// [`Metrics::encode`] with `now` for the agents' ping timeout.
    fn encode_at(&self, now: std::time::Instant) -> Result<String, std::fmt::Error> {
        self.agents.refresh(now);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Reads the outbox depths (the store's, so every scrape sees the current ones). A store that
/// does not answer in time leaves the last values: the API metrics still matter then.
async fn refresh_depths(st: &AppState) {
    let store = st.store.as_ref();
    let (notices, uploads) = tokio::join!(
        tokio::time::timeout(STORE_PROBE_TIMEOUT, store.notice_backlog()),
        tokio::time::timeout(STORE_PROBE_TIMEOUT, store.upload_backlog()),
    );
    for (gauge, read, what) in [
        (
            &st.metrics.notification_backlog,
            notices,
            "notification outbox",
        ),
        (&st.metrics.upload_backlog, uploads, "S3 upload queue"),
    ] {
        match read {
            Ok(Ok(n)) => {
                gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "metrics: could not read the {what} depth"),
            Err(_) => tracing::warn!("metrics: the store did not tell the {what} depth in time"),
        }
    }
}

/// Who may read `/metrics` on a server configured with `config`: with a token unless
/// `--metrics-public`, the token shared by every server on `store` and written to
/// `<data-dir>/metrics-token` (0600) for Prometheus' `credentials_file`.
pub(crate) async fn access(
    config: &crate::ServerConfig,
    store: &dyn fleetrun_core::Store,
) -> std::io::Result<Access> {
    if config.metrics_public {
        return Ok(Access::Public);
    }
    let candidate = fleetrun_core::ids::random_secret(40);
    let secret = store
        .shared_secret("metrics-token", candidate.as_bytes())
        .await
        .map_err(std::io::Error::other)?;
    let token = String::from_utf8(secret).map_err(std::io::Error::other)?;
    crate::write_private(&config.data_dir.join(METRICS_TOKEN_FILE), token.as_bytes())?;
    Ok(Access::Token(token.into()))
}

/// Whether `headers` carry the bearer token `access` asks for.
fn allowed(access: &Access, headers: &HeaderMap) -> bool {
    let Access::Token(token) = access else {
        return true;
    };
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Digests compared, so the time taken says nothing about the token.
    Sha256::digest(presented.as_bytes()) == Sha256::digest(token.as_bytes())
}

/// `GET /metrics`.
pub(crate) async fn scrape(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if !allowed(&st.metrics_access, &headers) {
        return Err(ApiError::UnrecognizedClient(format!(
            "/metrics needs the bearer token in <data-dir>/{METRICS_TOKEN_FILE} (or a server started with --metrics-public)."
        )));
    }
    refresh_depths(&st).await;
    let body = st
        .metrics
        .encode()
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok(([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], body).into_response())
}

/// `GET /healthz`: the process answers.
pub(crate) async fn alive() -> &'static str {
    "ok"
}

/// `GET /readyz`: ready to serve when the store answers a cheap read in time, and not while
/// shutting down (a load balancer stops sending before the drain ends).
pub(crate) async fn ready(State(st): State<AppState>) -> ApiResult<&'static str> {
    if *st.shutting_down.borrow() {
        return Err(ApiError::ServiceUnavailable);
    }
    // One row by primary key order: cheap on both stores, and a real round trip to the database.
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, st.store.nodes_page(None, 1)).await {
        Ok(Ok(_)) => Ok("ready"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readyz: the store did not answer");
            Err(ApiError::NotReady("The store is unreachable.".into()))
        }
        Err(_) => {
            tracing::warn!(timeout = ?STORE_PROBE_TIMEOUT, "readyz: the store did not answer in time");
            Err(ApiError::NotReady(
                "The store did not answer in time.".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests;
