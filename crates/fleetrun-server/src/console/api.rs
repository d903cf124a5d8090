//! Sign-in, sign-out, `whoami`, and the adaptor that runs a signed-in operator's AWS operations.
//!
//! `POST /console/api` takes what `POST /` takes (an `X-Amz-Target` and the operation's JSON
//! body) and answers what it answers; only the proof of identity differs: a session cookie and
//! its CSRF token instead of a SigV4 signature. The session becomes the same [`Caller`] the
//! verifier makes, and `aws::dispatch_as` does the rest, so policies, validation, errors and
//! audit lines are the API's own.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use fleetrun_policy::Decision;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tracing::Instrument;

use super::session::{self, Session};
use super::{ConsoleError, Transport};
use crate::auth::Caller;
use crate::ops::authorize::document_resource;
use crate::{audit, aws, AppState};

/// The document the Send page opens with; `whoami` asks whether the key may send it.
const DEFAULT_DOCUMENT: &str = "AWS-RunShellScript";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SignIn {
    access_key_id: String,
    secret_access_key: String,
}

/// Who is signed in, the CSRF token the page must send, and what the page should offer.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WhoAmI {
    access_key_id: String,
    user_name: String,
    /// Unix seconds.
    expires: u64,
    csrf_token: String,
    /// Whether the key's policy allows `ssm:SendCommand` (on `AWS-RunShellScript`) and
    /// `ssm:CancelCommand`: the page hides what it may not do; the server checks every call
    /// anyway.
    can_send_command: bool,
    can_cancel_command: bool,
}

fn whoami_of(state: &AppState, session: &Session, caller: &Caller) -> WhoAmI {
    let allowed =
        |action: &str, resource: &str| caller.decide(action, resource, &[]) == Decision::Allow;
    let document = document_resource(&state.config.region, DEFAULT_DOCUMENT);
    WhoAmI {
        access_key_id: caller.access_key_id.clone(),
        user_name: caller.user_name.clone(),
        expires: session.expires,
        csrf_token: state.console.csrf(session),
        can_send_command: allowed("ssm:SendCommand", &document),
        can_cancel_command: allowed("ssm:CancelCommand", "*"),
    }
}

fn secure(transport: Option<Extension<Transport>>) -> bool {
    transport.is_some_and(|Extension(t)| t.tls)
}

fn with_cookie(mut resp: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// The caller of a request that carries a valid session (and, for a POST, its CSRF token),
/// looked up again so that a key disabled since sign-in is refused.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    csrf: bool,
) -> Result<(Session, Caller), Response> {
    let session = session::cookie_value(headers)
        .and_then(|v| state.console.verify(&v))
        .ok_or_else(|| ConsoleError::NoSession.into_response())?;
    if csrf {
        let token = headers
            .get(session::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !state.console.csrf_matches(&session, token) {
            return Err(ConsoleError::Csrf.into_response());
        }
    }
    let key = state
        .keys
        .get(state.store.as_ref(), &session.access_key_id)
        .await
        .map_err(IntoResponse::into_response)?
        .ok_or_else(|| ConsoleError::KeyInactive.into_response())?;
    let caller = Caller::new(
        key.access_key_id.clone(),
        key.user_name.clone(),
        key.policies.clone(),
    );
    Ok((session, caller))
}

/// `POST /console/session`: checks the key pair and installs the session cookie. JSON only, so
/// that a cross-site form cannot sign a browser in (a JSON post from another site needs a CORS
/// preflight, which this server never grants).
pub(super) async fn sign_in(
    State(state): State<AppState>,
    transport: Option<Extension<Transport>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().starts_with("application/json"));
    if !json {
        return ConsoleError::BadSignIn("the Content-Type must be application/json".into())
            .into_response();
    }
    let form: SignIn = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return ConsoleError::BadSignIn(e.to_string()).into_response(),
    };
    let key = match state
        .keys
        .get(state.store.as_ref(), form.access_key_id.trim())
        .await
    {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let Some(key) = key.filter(|k| {
        bool::from(
            k.secret_access_key
                .as_bytes()
                .ct_eq(form.secret_access_key.trim().as_bytes()),
        )
    }) else {
        // The id as typed goes into the log only if it looks like one (no log injection).
        let claimed = form.access_key_id.trim();
        let claimed = if claimed.len() <= 128 && claimed.chars().all(|c| c.is_ascii_alphanumeric())
        {
            claimed
        } else {
            "<not an access key id>"
        };
        tracing::info!(target: audit::TARGET, op = "ConsoleSignIn",
            access_key_id = %claimed, outcome = "denied", "console sign-in refused");
        return ConsoleError::SignInFailed.into_response();
    };
    let caller = Caller::new(
        key.access_key_id.clone(),
        key.user_name.clone(),
        key.policies.clone(),
    );
    let session = state.console.issue(&caller.access_key_id);
    tracing::info!(target: audit::TARGET, op = "ConsoleSignIn",
        access_key_id = %caller.access_key_id, user = %caller.user_name, outcome = "allowed",
        "console sign-in");
    let who = whoami_of(&state, &session, &caller);
    with_cookie(
        Json(who).into_response(),
        &session.set_cookie(secure(transport)),
    )
}

/// `POST /console/session/end`: removes the cookie. The session itself stays valid until it
/// expires (it is stateless): signing out ends it in this browser.
pub(super) async fn sign_out(
    State(state): State<AppState>,
    transport: Option<Extension<Transport>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = signed_in(&state, &headers, true).await {
        return refused;
    }
    with_cookie(
        Json(serde_json::json!({})).into_response(),
        &session::clear_cookie(secure(transport)),
    )
}

/// `GET /console/api/whoami`.
pub(super) async fn whoami(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers, false).await {
        Ok((session, caller)) => Json(whoami_of(&state, &session, &caller)).into_response(),
        Err(refused) => refused,
    }
}

/// `POST /console/api`: one AWS operation as the signed-in key.
pub(super) async fn call(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match signed_in(&state, &headers, true).await {
        Ok((_, caller)) => caller,
        Err(refused) => return refused,
    };
    let started = tokio::time::Instant::now();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let request_id = uuid::Uuid::new_v4().to_string();
    let op = target.rsplit('.').next().unwrap_or("");
    let span = tracing::info_span!("console", %request_id, op = %op,
        access_key_id = %caller.access_key_id);
    let mut resp = aws::dispatch_as(&state, caller, target, &body)
        .instrument(span)
        .await;
    // Counted with the SigV4 calls: the same operations, run the same way.
    aws::record_target(&state, target, &resp, started);
    aws::stamp_request_id(&mut resp, &request_id);
    resp
}
