//! Who is calling the agent endpoints. Nodes prove their identity as AWS hybrid nodes do (agent
//! protocol v2, `fleetrun_wire::agent`): the token request is signed in the SigV4 layout with the
//! node's Ed25519 key ([`authenticate_node_key`]); it yields short-lived session credentials
//! ([`NodeAuth::issue`], stateless: `session`); polls and results are ordinary SigV4 requests
//! signed with them ([`authenticate_session`]). Each accepted signature is remembered until it
//! leaves the clock window, so a replay is refused (`replay`). The node authenticated here is the
//! only identity the handlers use. Activation-code guessing is throttled (`throttle`).
//!
//! Order of checks for a session request: parse → session token (ours, for this access key id,
//! not expired) → scope (region from the config, service `ssm`) → 5-minute window → signature →
//! replay → the node still exists (so `DeregisterManagedInstance` cuts it off at once, with
//! `InvalidInstanceId`: the agent stops and says to register again).

mod replay;
mod session;
mod throttle;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use fleetrun_core::ids::{ActivationId, InstanceId};
use fleetrun_core::node::Node;
use fleetrun_core::Store;
use fleetrun_sigv4::{AuthError, HttpRequest, SignedRequest};
use fleetrun_wire::agent::{TokenResponse, SIGNING_SERVICE};

use crate::error::{ApiError, ApiResult};
use crate::{AppState, ServerConfig};

pub use replay::CAPACITY as REPLAY_CAPACITY;
pub use session::KEY_FILE;
pub use throttle::{
    GLOBAL as REGISTRATION_FAILURES_GLOBAL, GLOBAL_WINDOW as REGISTRATION_GLOBAL_WINDOW,
    PER_ACTIVATION as REGISTRATION_FAILURES_PER_ACTIVATION,
    PER_ACTIVATION_WINDOW as REGISTRATION_ACTIVATION_WINDOW,
};

/// How far a signed agent request's timestamp may be from the server's clock (SSM's window).
pub const CLOCK_WINDOW_SECS: i64 = 300;
/// Default lifetime of node session credentials (AWS's hybrid-node tokens last about an hour).
pub const DEFAULT_CREDENTIALS_LIFETIME: Duration = Duration::from_secs(3600);

/// The node-authentication state shared by all requests.
pub struct NodeAuth {
    key: session::SessionKey,
    lifetime: Duration,
    replay: Mutex<replay::ReplayCache>,
    throttle: Mutex<throttle::RegistrationThrottle>,
    issued: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The store's name for the node session key.
const NODE_SESSION_SECRET: &str = "node-session-key";

impl NodeAuth {
    /// Node authentication with the session key every replica on `store` shares (created on
    /// the first start).
    pub async fn open(config: &ServerConfig, store: &dyn Store) -> std::io::Result<Self> {
        let candidate = session::SessionKey::candidate(&config.data_dir);
        let stored = store
            .shared_secret(NODE_SESSION_SECRET, &candidate)
            .await
            .map_err(std::io::Error::other)?;
        let key = session::SessionKey::from_stored(&stored)
            .ok_or_else(|| std::io::Error::other("the stored node session key is too short"))?;
        Ok(Self {
            key,
            lifetime: config.node_credentials_lifetime,
            replay: Mutex::new(replay::ReplayCache::new(replay::CAPACITY)),
            throttle: Mutex::default(),
            issued: AtomicU64::new(0),
        })
    }

    /// Session credentials issued since start (for tests and logs).
    pub fn credentials_issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// Fresh session credentials for `node`.
    pub(crate) fn issue(&self, node: &InstanceId) -> TokenResponse {
        let secs = self.lifetime.as_secs().max(1);
        let expires_at = unix_now().saturating_add(i64::try_from(secs).unwrap_or(i64::MAX));
        let issued = self.key.issue(node, expires_at);
        self.issued.fetch_add(1, Ordering::Relaxed);
        TokenResponse {
            access_key_id: issued.access_key_id,
            secret_access_key: issued.secret_access_key,
            session_token: issued.session_token,
            expires_in_secs: secs,
        }
    }

    /// `TooManyUpdates` when registrations on `activation_id` (or all of them) have failed too
    /// often lately; the code is then not checked at all.
    pub(crate) fn registration_allowed(&self, activation_id: &ActivationId) -> ApiResult<()> {
        lock(&self.throttle)
            .check(activation_id.as_str(), Instant::now())
            .map_err(|limit| {
                tracing::warn!(activation_id = %activation_id, ?limit, "registration throttled");
                ApiError::TooManyUpdates(
                    "Too many failed registration attempts; try again later.".into(),
                )
            })
    }

    /// Counts a refused registration (`None`: the activation does not exist).
    pub(crate) fn registration_failed(&self, activation_id: Option<&ActivationId>) {
        lock(&self.throttle).failed(activation_id.map(ActivationId::as_str), Instant::now());
    }

    /// Refuses a signature accepted before (inside its window).
    fn admit(&self, signed: &SignedRequest, now: i64) -> ApiResult<()> {
        let valid_until = signed.timestamp_unix.saturating_add(CLOCK_WINDOW_SECS);
        lock(&self.replay)
            .admit(
                &signed.auth.access_key_id,
                &signed.auth.signature,
                valid_until,
                now,
            )
            .map_err(|refused| match refused {
                replay::Refused::Replayed => ApiError::ReplayedRequest,
                replay::Refused::Full => ApiError::TooManyUpdates(
                    "Too many signed agent requests in the last minutes; try again later.".into(),
                ),
            })
    }
}

/// An agent request as received, for verification.
pub(crate) struct AgentRequest<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
}

fn parse(req: &AgentRequest<'_>) -> ApiResult<SignedRequest> {
    let headers: Vec<(&str, &[u8])> = req
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    fleetrun_sigv4::parse(&HttpRequest {
        method: req.method.as_str(),
        path: req.uri.path(),
        query: req.uri.query().unwrap_or(""),
        headers: &headers,
        body: req.body,
    })
    .map_err(ApiError::Signature)
}

fn unrecognized() -> ApiError {
    ApiError::UnrecognizedClient("The security token included in the request is invalid.".into())
}

fn scope_and_time(st: &AppState, signed: &SignedRequest, now: i64) -> ApiResult<()> {
    fleetrun_sigv4::check_scope(signed, &st.config.region, SIGNING_SERVICE)
        .map_err(ApiError::Signature)?;
    fleetrun_sigv4::check_time(signed, now, CLOCK_WINDOW_SECS).map_err(ApiError::Signature)
}

/// The registered node behind `id`; `InvalidInstanceId` ([`ApiError::NodeNotRegistered`]) when
/// there is none (deregistered, or never registered here: only registering again helps, and the
/// agent stops instead of retrying), `UnrecognizedClientException` for a node registered with
/// agent protocol v1 (no key).
///
/// For a token request this is answered before the signature is checked (there is no key to
/// check it with), as AWS answers a deregistered node's token request ("InvalidInstanceId: Not
/// existing InstanceId"); whether an `mi-` id exists is no secret from anyone who can send
/// requests (an unknown id and a bad signature were always told apart).
async fn registered_node(st: &AppState, id: &InstanceId) -> ApiResult<Node> {
    match st.store.node(id).await? {
        Some(node) if !node.public_key.is_empty() => Ok(node),
        Some(_) => {
            tracing::info!(instance_id = %id, "node registered with agent protocol v1 has no key; it must register again");
            Err(unrecognized())
        }
        None => {
            tracing::debug!(instance_id = %id, "request from a node that is not registered");
            Err(ApiError::NodeNotRegistered(id.to_string()))
        }
    }
}

fn verifying_key(node: &Node) -> ApiResult<VerifyingKey> {
    let bytes = STANDARD.decode(&node.public_key).ok();
    let key: Option<[u8; 32]> = bytes.and_then(|b| b.try_into().ok());
    key.and_then(|k| VerifyingKey::from_bytes(&k).ok())
        .ok_or_else(|| {
            ApiError::Internal(format!(
                "node {} has an unusable stored public key",
                node.instance_id
            ))
        })
}

/// The token request: SigV4 layout, access key id = the node's `mi-` id, `Signature` = base64
/// Ed25519 signature of the string to sign, verified with the node's registered public key.
pub(crate) async fn authenticate_node_key(
    st: &AppState,
    req: &AgentRequest<'_>,
) -> ApiResult<Node> {
    let signed = parse(req)?;
    let id = InstanceId::parse(&signed.auth.access_key_id)
        .filter(|id| id.as_str().starts_with("mi-"))
        .ok_or_else(unrecognized)?;
    let now = unix_now();
    scope_and_time(st, &signed, now)?;
    let node = registered_node(st, &id).await?;
    let key = verifying_key(&node)?;
    let signature = STANDARD
        .decode(&signed.auth.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or(ApiError::Signature(AuthError::SignatureMismatch))?;
    key.verify(signed.string_to_sign.as_bytes(), &signature)
        .map_err(|_| ApiError::Signature(AuthError::SignatureMismatch))?;
    st.node_auth.admit(&signed, now)?;
    Ok(node)
}

/// A poll or result: SigV4 (HMAC) with session credentials issued by [`NodeAuth::issue`].
pub(crate) async fn authenticate_session(st: &AppState, req: &AgentRequest<'_>) -> ApiResult<Node> {
    let signed = parse(req)?;
    let token = signed.session_token.as_deref().ok_or_else(unrecognized)?;
    let claims = st.node_auth.key.open(token).ok_or_else(unrecognized)?;
    if claims.access_key_id != signed.auth.access_key_id {
        return Err(unrecognized());
    }
    let now = unix_now();
    if claims.expires_at <= now {
        return Err(ApiError::ExpiredToken);
    }
    scope_and_time(st, &signed, now)?;
    let secret = st.node_auth.key.secret_for(&claims.access_key_id);
    fleetrun_sigv4::verify_signature(&signed, &secret).map_err(ApiError::Signature)?;
    st.node_auth.admit(&signed, now)?;
    registered_node(st, &claims.instance_id).await
}
