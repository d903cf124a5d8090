//! The Resource Groups API's rest-json routing: each operation has its own `POST` path (the
//! model's `requestUri`, [`fleetrun_wire::resource_groups::OPERATIONS`]), a JSON body, and (for
//! ListGroups) paging members in the query string.
//!
//! Requests are verified as every API call is (`auth::authenticate`, signed for
//! `resource-groups`), then authorized per operation (`resource-groups:<Op>`) in the handlers
//! (`ops::resource_groups`). Errors are rest-json errors: the code in `x-amzn-errortype` (where
//! botocore's rest-json parser reads it first) and in the body's `__type`, the message in
//! `Message`, with the model's HTTP status ([`ApiError::status`]).

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::Instrument;

use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};
use crate::ops::resource_groups as rg;
use crate::AppState;
use fleetrun_wire::resource_groups::{OPERATIONS, SIGNING_SERVICE};

/// Every operation's path, routed to [`handle`].
pub fn routes() -> Router<AppState> {
    OPERATIONS
        .iter()
        .fold(Router::new(), |r, (path, _)| r.route(path, post(handle)))
}

/// ListGroups' query-string members (`maxResults`, `nextToken`).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Paging {
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn decode<T: DeserializeOwned + Default>(body: &Bytes) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("Could not parse the request body: {e}")))
}

fn encode<T: Serialize>(value: &T) -> ApiResult<Response> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([("content-type", "application/json")], body).into_response())
}

async fn dispatch(
    st: AppState,
    caller: Caller,
    op: &str,
    uri: &Uri,
    body: &Bytes,
) -> ApiResult<Response> {
    match op {
        "CreateGroup" => encode(&rg::create_group(st, caller, decode(body)?).await?),
        "GetGroup" => encode(&rg::get_group(st, caller, decode(body)?).await?),
        "GetGroupQuery" => encode(&rg::get_group_query(st, caller, decode(body)?).await?),
        "UpdateGroupQuery" => encode(&rg::update_group_query(st, caller, decode(body)?).await?),
        "DeleteGroup" => encode(&rg::delete_group(st, caller, decode(body)?).await?),
        "ListGroups" => {
            let paging = Query::<Paging>::try_from_uri(uri)
                .map(|q| q.0)
                .map_err(|e| ApiError::BadRequest(format!("Bad query string: {e}")))?;
            let out = rg::list_groups(
                st,
                caller,
                decode(body)?,
                paging.max_results,
                paging.next_token,
            )
            .await?;
            encode(&out)
        }
        "ListGroupResources" => encode(&rg::list_group_resources(st, caller, decode(body)?).await?),
        "SearchResources" => encode(&rg::search_resources(st, caller, decode(body)?).await?),
        other => Err(ApiError::UnknownOperation(format!(
            "Operation {other} is not supported by this server."
        ))),
    }
}

/// `POST <operation path>`: authenticate, run, answer (a success's JSON, or a rest-json error).
pub async fn handle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let op: &'static str = OPERATIONS
        .iter()
        .find(|(path, _)| *path == uri.path())
        .map(|(_, op)| *op)
        .unwrap_or(crate::metrics::UNKNOWN_OP);
    let (request_id, span) = crate::aws::request_span(&headers, op);
    let authenticated = auth::authenticate(&state, SIGNING_SERVICE, &method, &uri, &headers, &body)
        .instrument(span.clone())
        .await;
    let mut response = match authenticated {
        Ok(caller) => {
            let result = dispatch(state.clone(), caller.clone(), op, &uri, &body)
                .instrument(span)
                .await;
            match result {
                Ok(r) => r,
                Err(e) => {
                    if let ApiError::AccessDenied {
                        action, resource, ..
                    } = &e
                    {
                        if matches!(op, "CreateGroup" | "UpdateGroupQuery" | "DeleteGroup") {
                            crate::audit::denied(&caller, op, action, resource);
                        }
                    }
                    let mut response = e.into_response();
                    response.extensions_mut().insert(caller);
                    response
                }
            }
        }
        Err(e) => {
            // rest-json services answer a failed signature check with 403, where SSM's awsJson
            // answers 400 (security fact sheet, the SigV4 error table).
            let mut response = e.into_response();
            *response.status_mut() = axum::http::StatusCode::FORBIDDEN;
            response
        }
    };
    let code = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(crate::metrics::NO_ERROR)
        .to_string();
    state.metrics.api_request(op, &code, started.elapsed());
    crate::aws::stamp_request_id(&mut response, &request_id);
    response
}
