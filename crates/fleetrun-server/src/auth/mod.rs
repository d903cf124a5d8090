//! Who is calling the SSM API, and may they? Every `POST /` is SigV4-verified against the store's
//! access keys before dispatch ([`authenticate`]); the verified [`Caller`] is then handed to the
//! operation, which asks [`Caller::authorize`] for each resource it touches.
//!
//! Order of checks follows security-facts §1 ("Suggested evaluation order"): presence, parse, key
//! lookup, scope, clock window, signature, then policy. The verifier itself is the pure
//! `fleetrun-sigv4` crate; this module only looks keys up and applies the server's settings.

mod keys;

use std::sync::Arc;

use axum::http::{HeaderMap, Method, Uri};
use fleetrun_policy::{Decision, Policy, Request};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub use keys::{
    bootstrap_admin_key, read_credentials_file, write_credentials_file, AdminCredentials, KeyCache,
    ADMIN_CREDENTIALS_FILE, ADMIN_USER,
};

/// The administrator key a server wrote to `<data_dir>/admin-credentials`, if the file is there.
pub fn read_admin_credentials(
    data_dir: &std::path::Path,
) -> std::io::Result<Option<AdminCredentials>> {
    read_credentials_file(&data_dir.join(ADMIN_CREDENTIALS_FILE))
}

/// The account id in every ARN fleetrun builds (the same fake id documents report as `Owner`).
pub const ACCOUNT_ID: &str = "000000000000";
/// The service name clients sign SSM calls for.
pub const SERVICE: &str = "ssm";

/// A verified API caller: the access key that signed the request and the policies attached to it.
#[derive(Clone)]
pub struct Caller {
    pub access_key_id: String,
    pub user_name: String,
    policies: Arc<[Policy]>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("access_key_id", &self.access_key_id)
            .field("user_name", &self.user_name)
            .finish_non_exhaustive()
    }
}

impl Caller {
    pub(crate) fn new(access_key_id: String, user_name: String, policies: Arc<[Policy]>) -> Self {
        Self {
            access_key_id,
            user_name,
            policies,
        }
    }

    /// The IAM-style principal ARN named in denials: `arn:aws:iam::<account>:user/<name>`.
    pub fn principal_arn(&self) -> String {
        format!("arn:aws:iam::{ACCOUNT_ID}:user/{}", self.user_name)
    }

    /// The policy decision for `action` on `resource` with condition `context`.
    pub fn decide(
        &self,
        action: &str,
        resource: &str,
        context: &[(String, Vec<String>)],
    ) -> Decision {
        fleetrun_policy::evaluate(
            &self.policies,
            &Request {
                action,
                resource,
                context,
            },
        )
    }

    /// `Ok` when allowed, else AWS's `AccessDeniedException` naming principal, action and resource.
    pub fn authorize(
        &self,
        action: &str,
        resource: &str,
        context: &[(String, Vec<String>)],
    ) -> ApiResult<()> {
        match self.decide(action, resource, context) {
            Decision::Allow => Ok(()),
            denied => Err(ApiError::AccessDenied {
                principal: self.principal_arn(),
                action: action.to_owned(),
                resource: resource.to_owned(),
                explicit: denied == Decision::ExplicitDeny,
            }),
        }
    }

    /// True when some resource-level question about `action` could depend on resource tags, so a
    /// caller must fetch them; the administrator's `*` policy never does.
    pub fn needs_resource_tags(&self) -> bool {
        // A policy without conditions decides the same whatever the context (conservative: any
        // condition at all means the tags are fetched).
        self.policies.iter().any(Policy::has_conditions)
    }
}

/// The Unix time now, for the signature's clock window.
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Verifies a request's SigV4 signature, made for `service`, against the store's access keys.
pub async fn authenticate(
    state: &AppState,
    service: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Caller> {
    let pairs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let request = fleetrun_sigv4::HttpRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &pairs,
        body,
    };
    let signed = fleetrun_sigv4::parse(&request).map_err(ApiError::Signature)?;
    let unrecognized = || {
        ApiError::UnrecognizedClient(
            "The security token included in the request is invalid.".into(),
        )
    };
    let key = state
        .keys
        .get(state.store.as_ref(), &signed.auth.access_key_id)
        .await?
        .ok_or_else(unrecognized)?;
    // Long-term keys carry no session token; one that is sent anyway is not ours to accept.
    if signed.session_token.is_some() {
        return Err(unrecognized());
    }
    fleetrun_sigv4::check_scope(&signed, &state.config.region, service)
        .map_err(ApiError::Signature)?;
    fleetrun_sigv4::check_time(
        &signed,
        now_unix(),
        state.config.signature_window.as_secs() as i64,
    )
    .map_err(ApiError::Signature)?;
    fleetrun_sigv4::verify_signature(&signed, &key.secret_access_key)
        .map_err(ApiError::Signature)?;
    Ok(Caller::new(
        key.access_key_id.clone(),
        key.user_name.clone(),
        key.policies.clone(),
    ))
}
