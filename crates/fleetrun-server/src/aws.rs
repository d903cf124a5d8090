//! awsJson1_1 routing: `POST /` with `X-Amz-Target: AmazonSSM.<Operation>`, the CloudWatch Logs
//! reads (`Logs_20140328.<Operation>`, signed for `logs`) and fleetrun's own `FleetrunAdmin.*`.
//!
//! Verifies the SigV4 signature (`auth`), authorizes the operation against the caller's policies,
//! decodes the body into the operation's request shape (`SerializationException` when it does not
//! fit), calls the handler, encodes the result. Each request gets an `x-amzn-RequestId` and a span.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;
use tracing::Instrument;

use crate::audit;
use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};
use crate::ops;
use crate::sigv4::parse_authorization;
use crate::AppState;

const TARGET_PREFIX: &str = "AmazonSSM.";
/// fleetrun's own administration API (access keys), served on the same endpoint and signed alike.
const ADMIN_TARGET_PREFIX: &str = "FleetrunAdmin.";

/// Which API a request's X-Amz-Target names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Ssm,
    Admin,
    Logs,
    CloudWatch,
}

impl Api {
    /// The API and operation of an X-Amz-Target (SSM's when no prefix matches: an unknown or
    /// missing target is then reported as SSM would).
    fn of(target: &str) -> (Self, &str) {
        for (api, prefix) in [
            (Self::Admin, ADMIN_TARGET_PREFIX),
            (Self::Logs, fleetrun_wire::logs::TARGET_PREFIX),
            (Self::CloudWatch, fleetrun_wire::cloudwatch::TARGET_PREFIX),
            (Self::Ssm, TARGET_PREFIX),
        ] {
            if let Some(op) = target.strip_prefix(prefix) {
                return (api, op);
            }
        }
        (Self::Ssm, "")
    }

    /// The service name its requests are signed for.
    fn signing_service(self) -> &'static str {
        match self {
            Self::Ssm | Self::Admin => auth::SERVICE,
            Self::Logs => fleetrun_wire::logs::SIGNING_SERVICE,
            Self::CloudWatch => fleetrun_wire::cloudwatch::SIGNING_SERVICE,
        }
    }

    /// The operations this API serves (the arms of its `dispatch*`): the only values of the
    /// metrics' `op` label, since an X-Amz-Target is whatever the client wrote.
    fn operations(self) -> &'static [&'static str] {
        match self {
            Self::Ssm => &[
                "SendCommand",
                "ListCommands",
                "ListCommandInvocations",
                "GetCommandInvocation",
                "CancelCommand",
                "CreateActivation",
                "DescribeActivations",
                "DeleteActivation",
                "DeregisterManagedInstance",
                "DescribeInstanceInformation",
                "AddTagsToResource",
                "RemoveTagsFromResource",
                "ListTagsForResource",
                "CreateDocument",
                "UpdateDocument",
                "UpdateDocumentDefaultVersion",
                "DescribeDocument",
                "GetDocument",
                "DeleteDocument",
                "ListDocuments",
            ],
            Self::Admin => &[
                "GetCommandOutput",
                "CreateAccessKey",
                "ListAccessKeys",
                "UpdateAccessKey",
                "DeleteAccessKey",
            ],
            Self::Logs => &[
                "DescribeLogGroups",
                "DescribeLogStreams",
                "GetLogEvents",
                "FilterLogEvents",
            ],
            Self::CloudWatch => &["PutMetricAlarm", "SetAlarmState", "DescribeAlarms"],
        }
    }

    /// `op` as the metrics label: its name when this API serves it, else `unknown`.
    fn op_label(self, op: &str) -> &'static str {
        self.operations()
            .iter()
            .find(|o| **o == op)
            .copied()
            .unwrap_or(crate::metrics::UNKNOWN_OP)
    }
}

/// [`record`] for a call that named its operation by `target` (the console's adaptor).
pub(crate) fn record_target(state: &AppState, target: &str, response: &Response, started: Instant) {
    let (api, op) = Api::of(target);
    record(state, api, op, response, started);
}

/// Counts an answered request by operation and error code (read from the answer: every error
/// answer carries its code in `x-amzn-errortype`) and records its latency.
fn record(state: &AppState, api: Api, op: &str, response: &Response, started: Instant) {
    let label = api.op_label(op);
    // An operation answered with success but missing from `Api::operations` would be counted as
    // unknown: caught by every test run on a debug build.
    debug_assert!(
        label != crate::metrics::UNKNOWN_OP || !response.status().is_success(),
        "operation {op:?} is served but not listed in Api::operations"
    );
    let code = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(crate::metrics::NO_ERROR);
    state.metrics.api_request(label, code, started.elapsed());
}

fn decode<T: DeserializeOwned + Default>(body: &Bytes) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::Serialization(format!("Could not parse the request body: {e}")))
}

fn encode<T: Serialize>(value: &T) -> ApiResult<Response> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(json_response(body))
}

fn json_response(body: Vec<u8>) -> Response {
    ([("content-type", "application/x-amz-json-1.1")], body).into_response()
}

/// Decodes the request and runs the handler.
async fn run<I, O, F, Fut>(state: &AppState, body: &Bytes, f: F) -> ApiResult<O>
where
    I: DeserializeOwned + Default,
    F: FnOnce(AppState, I) -> Fut,
    Fut: std::future::Future<Output = ApiResult<O>>,
{
    f(state.clone(), decode::<I>(body)?).await
}

/// [`run`], then encodes the handler's result shape.
async fn call<I, O, F, Fut>(state: &AppState, body: &Bytes, f: F) -> ApiResult<Response>
where
    I: DeserializeOwned + Default,
    O: Serialize,
    F: FnOnce(AppState, I) -> Fut,
    Fut: std::future::Future<Output = ApiResult<O>>,
{
    encode(&run(state, body, f).await?)
}

async fn dispatch(state: &AppState, caller: Caller, op: &str, body: &Bytes) -> ApiResult<Response> {
    ops::authorize::operation(state, &caller, op, body)?;
    match op {
        "SendCommand" => {
            call(state, body, |st, req| {
                ops::send_command::send_command(st, caller, req)
            })
            .await
        }
        // Its handler encodes the body itself, splicing pre-encoded parts (`wire::listing`).
        "ListCommands" => run(state, body, ops::list::list_commands)
            .await
            .map(json_response),
        "ListCommandInvocations" => call(state, body, ops::list::list_command_invocations).await,
        "GetCommandInvocation" => {
            call(state, body, ops::get_invocation::get_command_invocation).await
        }
        // Mutating operations get the caller: they write its audit line (`audit`).
        "CancelCommand" => {
            call(state, body, |st, req| {
                ops::cancel::cancel_command(st, caller, req)
            })
            .await
        }
        "CreateActivation" => {
            call(state, body, |st, req| {
                ops::activations::create_activation(st, caller, req)
            })
            .await
        }
        "DescribeActivations" => call(state, body, ops::activations::describe_activations).await,
        "DeleteActivation" => {
            call(state, body, |st, req| {
                ops::activations::delete_activation(st, caller, req)
            })
            .await
        }
        "DeregisterManagedInstance" => {
            call(state, body, |st, req| {
                ops::deregister::deregister_managed_instance(st, caller, req)
            })
            .await
        }
        "DescribeInstanceInformation" => {
            call(state, body, ops::instances::describe_instance_information).await
        }
        "AddTagsToResource" => {
            call(state, body, |st, req| {
                ops::tags::add_tags_to_resource(st, caller, req)
            })
            .await
        }
        "RemoveTagsFromResource" => {
            call(state, body, |st, req| {
                ops::tags::remove_tags_from_resource(st, caller, req)
            })
            .await
        }
        "ListTagsForResource" => call(state, body, ops::tags::list_tags_for_resource).await,
        "CreateDocument" => {
            call(state, body, |st, req| {
                ops::documents::create_document(st, caller, req)
            })
            .await
        }
        "UpdateDocument" => {
            call(state, body, |st, req| {
                ops::documents::update_document(st, caller, req)
            })
            .await
        }
        "UpdateDocumentDefaultVersion" => {
            call(state, body, |st, req| {
                ops::documents::update_document_default_version(st, caller, req)
            })
            .await
        }
        "DescribeDocument" => call(state, body, ops::documents::describe_document).await,
        "GetDocument" => call(state, body, ops::documents::get_document).await,
        "DeleteDocument" => {
            call(state, body, |st, req| {
                ops::documents::delete_document(st, caller, req)
            })
            .await
        }
        "ListDocuments" => call(state, body, ops::list_documents::list_documents).await,
        other => Err(ApiError::UnknownOperation(format!(
            "Operation {other} is not supported by this server."
        ))),
    }
}

async fn dispatch_admin(
    state: &AppState,
    caller: Caller,
    op: &str,
    body: &Bytes,
) -> ApiResult<Response> {
    if op == "GetCommandOutput" {
        caller.authorize("ssm:GetCommandInvocation", "*", &[])?;
        return call(state, body, ops::output::get_command_output).await;
    }
    caller.authorize(&format!("fleetrun:{op}"), "*", &[])?;
    let admin = ops::access_keys::Admin { caller };
    match op {
        "CreateAccessKey" => call(state, body, |st, req| admin.create(st, req)).await,
        "ListAccessKeys" => call(state, body, |st, req| admin.list(st, req)).await,
        "UpdateAccessKey" => call(state, body, |st, req| admin.update(st, req)).await,
        "DeleteAccessKey" => call(state, body, |st, req| admin.delete(st, req)).await,
        other => Err(ApiError::UnknownOperation(format!(
            "Operation {other} is not supported by this server."
        ))),
    }
}

async fn dispatch_cloudwatch(
    state: &AppState,
    caller: Caller,
    op: &str,
    body: &Bytes,
) -> ApiResult<Response> {
    use crate::alarms;
    let answer = match op {
        "PutMetricAlarm" => {
            call(state, body, |st, req| {
                alarms::put_metric_alarm(st, caller, req)
            })
            .await
        }
        "SetAlarmState" => {
            call(state, body, |st, req| {
                alarms::set_alarm_state(st, caller, req)
            })
            .await
        }
        "DescribeAlarms" => {
            call(state, body, |st, req| {
                alarms::describe_alarms(st, caller, req)
            })
            .await
        }
        other => Err(ApiError::UnknownOperation(format!(
            "Operation {other} is not supported by this server."
        ))),
    };
    answer.map(|mut r| {
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static(fleetrun_wire::cloudwatch::CONTENT_TYPE),
        );
        r
    })
}

/// CloudWatch's error form: the JSON 1.0 content type, and the code in `x-amzn-query-error`
/// (the service is query-compatible: botocore takes the code from that header).
fn cloudwatch_error(mut response: Response, code: &str) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static(fleetrun_wire::cloudwatch::CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{code};Sender")) {
        headers.insert("x-amzn-query-error", v);
    }
    response
}

async fn dispatch_logs(
    state: &AppState,
    caller: Caller,
    op: &str,
    body: &Bytes,
) -> ApiResult<Response> {
    use ops::logs;
    match op {
        "DescribeLogGroups" => {
            call(state, body, |st, req| {
                logs::describe_log_groups(st, caller, req)
            })
            .await
        }
        "DescribeLogStreams" => {
            call(state, body, |st, req| {
                logs::describe_log_streams(st, caller, req)
            })
            .await
        }
        "GetLogEvents" => call(state, body, |st, req| logs::get_log_events(st, caller, req)).await,
        "FilterLogEvents" => {
            call(state, body, |st, req| {
                logs::filter_log_events(st, caller, req)
            })
            .await
        }
        other => Err(ApiError::UnknownOperation(format!(
            "Operation {other} is not supported by this server."
        ))),
    }
}

pub async fn handle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (api, op) = Api::of(target);
    let (request_id, span) = request_span(&headers, op);
    // Authentication comes first, as on AWS: an unsigned request learns nothing, not even
    // whether its target exists.
    let authenticated = auth::authenticate(
        &state,
        api.signing_service(),
        &method,
        &uri,
        &headers,
        &body,
    )
    .instrument(span.clone())
    .await;
    let mut response = match authenticated {
        Ok(caller) => {
            dispatch_as(&state, caller, target, &body)
                .instrument(span)
                .await
        }
        Err(e) => {
            let code = e.code();
            let response = e.into_response();
            if api == Api::CloudWatch {
                cloudwatch_error(response, code)
            } else {
                response
            }
        }
    };
    record(&state, api, op, &response, started);
    stamp_request_id(&mut response, &request_id);
    response
}

/// A new request id, and the `api` span every log line of the request carries (the access key
/// id as the client claims it: verified or not, it names who to look for).
pub(crate) fn request_span(headers: &HeaderMap, op: &str) -> (String, tracing::Span) {
    let request_id = uuid::Uuid::new_v4().to_string();
    let access_key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_authorization)
        .map(|a| a.access_key_id)
        .unwrap_or_default();
    let span = tracing::info_span!("api", %request_id, op = %op, access_key_id = %access_key);
    (request_id, span)
}

/// `x-amzn-RequestId` on every answer, as AWS sends it.
pub(crate) fn stamp_request_id(response: &mut Response, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
}

/// Everything after authentication: the operation `target` names, run as `caller`, its error as
/// the API answers it (the audit line of a denied mutation, CloudWatch's error form, the caller
/// for the edge's log line). Shared by [`handle`] (SigV4) and the console's adaptor
/// (`console::api`, a session cookie), so both go through the same authorization, validation,
/// errors and audit lines.
pub(crate) async fn dispatch_as(
    state: &AppState,
    caller: Caller,
    target: &str,
    body: &Bytes,
) -> Response {
    let (api, op) = Api::of(target);
    let admin = api == Api::Admin;
    let result = if op.is_empty() {
        Err(ApiError::UnknownOperation(format!(
            "Missing or unrecognized X-Amz-Target header: '{target}'."
        )))
    } else {
        match api {
            Api::Admin => dispatch_admin(state, caller.clone(), op, body).await,
            Api::Logs => dispatch_logs(state, caller.clone(), op, body).await,
            Api::CloudWatch => dispatch_cloudwatch(state, caller.clone(), op, body).await,
            Api::Ssm => dispatch(state, caller.clone(), op, body).await,
        }
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            if let ApiError::AccessDenied {
                action, resource, ..
            } = &e
            {
                if audit::mutating(op, admin) {
                    audit::denied(&caller, op, action, resource);
                }
            }
            let code = e.code();
            let mut response = e.into_response();
            if api == Api::CloudWatch {
                response = cloudwatch_error(response, code);
            }
            // The verified caller, for the edge's log line of this error (`edge::typed_errors`).
            response.extensions_mut().insert(caller);
            response
        }
    }
}
