//! The HTTP edge between the transport and the handlers: every error the router can produce is a
//! typed awsJson answer (`{"__type", "Message"}`, `application/x-amz-json-1.1`, `x-amzn-RequestId`)
//! — unknown paths, wrong methods, bodies over their limit, slow bodies, axum's own rejections —
//! and request bodies are read (or discarded) in full before any handler sees them, so a refused
//! body never leaves a half-read connection behind.
//!
//! It is also where every error answer is logged, once (`typed_errors`, with the operation and the
//! caller; `raw_error` for the answers the transport writes itself).
//!
//! The codes come from `error.rs`; the choices are in ARCHITECTURE.md ("Choices").

use std::pin::Pin;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use crate::auth::Caller;
use crate::error::{Answered, ApiError, Asker};
use crate::AppState;

const AMZ_JSON: &str = "application/x-amz-json-1.1";

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An error as a response, with its own request id.
pub(crate) fn error_response(err: ApiError) -> Response {
    let mut resp = err.into_response();
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

fn closing(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// An error as the raw bytes of a complete HTTP/1.1 response that closes the connection, for the
/// transport to write where hyper would have answered (or said nothing).
/// Logged here: no request was parsed, so no operation or caller is known.
pub(crate) fn raw_error(err: &ApiError) -> Vec<u8> {
    let body = fleetrun_wire::error::error_json(err.code(), &err.message());
    let status = err.status();
    let id = request_id();
    Answered::of(err).log(&Asker {
        op: "-",
        request_id: Some(&id),
        ..Asker::default()
    });
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {AMZ_JSON}\r\nx-amzn-errortype: {}\r\nx-amzn-requestid: {id}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        err.code(),
        body.len(),
    )
    .into_bytes()
}

/// The typed error for a request hyper could not parse and answered with `status`.
pub(crate) fn parse_failure(status: u16) -> ApiError {
    match status {
        414 | 431 => ApiError::HeadersTooLarge(
            "The request line or headers exceed the server's limits.".into(),
        ),
        _ => ApiError::Serialization("The request is not valid HTTP/1.1.".into()),
    }
}

/// A path for a message: printable ASCII, at most 100 characters.
fn shown(uri: &Uri) -> String {
    uri.path()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(100)
        .collect()
}

/// Fallback for paths nothing is served at.
pub(crate) async fn not_found(method: Method, uri: Uri) -> Response {
    error_response(ApiError::UnknownPath(format!(
        "No operation is served at {method} {}; the SSM API is POST /.",
        shown(&uri)
    )))
}

/// Fallback for a served path called with the wrong method.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error_response(ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}; use POST.",
        shown(&uri)
    )))
}

/// The operation a request asks for, for log lines: the `X-Amz-Target` operation of `POST /`
/// (`SendCommand`, `CreateAccessKey`), else the method and path (`POST /agent/v2/poll`).
fn operation_of(method: &Method, uri: &Uri, headers: &axum::http::HeaderMap) -> String {
    // The console's adaptor (`console::api`) takes the same target header as `POST /`.
    if method == Method::POST && matches!(uri.path(), "/" | "/console/api") {
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let op = ["AmazonSSM.", "FleetrunAdmin."]
            .iter()
            .find_map(|p| target.strip_prefix(p))
            .unwrap_or(target);
        return op
            .chars()
            .filter(char::is_ascii_graphic)
            .take(100)
            .collect();
    }
    format!("{method} {}", shown(uri))
}

/// The access key id a request claims to be signed with (`Credential=<id>/…` of its
/// Authorization header, whatever the algorithm), before any verification.
fn claimed_access_key(headers: &axum::http::HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let (_, rest) = auth.split_once("Credential=")?;
    let id: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(128)
        .collect();
    (!id.is_empty()).then_some(id)
}

/// Last line of defence: an error response that is not typed awsJson (an axum rejection, a
/// layer's own answer) is replaced by the typed error for its status; a typed one without a
/// request id gets one. Then every error answer is logged here, once ([`Answered::log`]), with
/// the operation and the caller (the verified one `aws::handle` leaves on its response, else
/// the key the request claims).
pub(crate) async fn typed_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let op = operation_of(&method, &uri, req.headers());
    let claimed = claimed_access_key(req.headers());
    let mut resp = typed(method, uri, next.run(req).await).await;
    if let Some(answered) = resp.extensions_mut().remove::<Answered>() {
        let caller = resp.extensions().get::<Caller>();
        let request_id = resp
            .headers()
            .get("x-amzn-requestid")
            .and_then(|v| v.to_str().ok());
        answered.log(&Asker {
            op: &op,
            access_key_id: caller
                .map(|c| c.access_key_id.as_str())
                .or(claimed.as_deref()),
            user: caller.map(|c| c.user_name.as_str()),
            request_id,
        });
    }
    resp
}

async fn typed(method: Method, uri: Uri, mut resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let typed = resp.headers().get(CONTENT_TYPE).is_some_and(|v| {
        // Ours, in either JSON version (CloudWatch's errors are JSON 1.0).
        v.as_bytes() == AMZ_JSON.as_bytes()
            || v.as_bytes() == fleetrun_wire::cloudwatch::CONTENT_TYPE.as_bytes()
    });
    if typed {
        // Handlers outside `aws::handle` (the agent endpoints) answer errors without an id.
        if !resp.headers().contains_key("x-amzn-requestid") {
            if let Ok(v) = HeaderValue::from_str(&request_id()) {
                resp.headers_mut().insert("x-amzn-requestid", v);
            }
        }
        return resp;
    }
    let err = match status {
        StatusCode::NOT_FOUND => return not_found(method, uri).await,
        StatusCode::METHOD_NOT_ALLOWED => return method_not_allowed(method, uri).await,
        StatusCode::REQUEST_TIMEOUT => ApiError::RequestTimeout("The request timed out.".into()),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge("The request body is too large.".into())
        }
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            ApiError::HeadersTooLarge("The request headers are too large.".into())
        }
        StatusCode::SERVICE_UNAVAILABLE => ApiError::ServiceUnavailable,
        s if s.is_server_error() => ApiError::Internal(format!("untyped {s} from a layer")),
        s => ApiError::Serialization(format!("The request was refused: {s}.")),
    };
    error_response(err)
}

/// Why a body was not read.
#[derive(Debug)]
enum BodyError {
    /// Over the limit; `drained` when it was read to its end (the connection stays usable).
    TooLarge {
        seen: u64,
        drained: bool,
    },
    Timeout,
    Broken(String),
}

/// Reads the body whole if it fits `limit`; otherwise discards it up to `drain_limit` bytes.
async fn read_body(
    mut body: Body,
    declared: Option<u64>,
    limit: usize,
    drain_limit: usize,
    deadline: Instant,
) -> Result<Bytes, BodyError> {
    if let Some(n) = declared.filter(|&n| n > drain_limit as u64) {
        return Err(BodyError::TooLarge {
            seen: n,
            drained: false,
        });
    }
    let mut over = declared.is_some_and(|n| n > limit as u64);
    let mut buf = Vec::with_capacity(if over {
        0
    } else {
        declared.unwrap_or(0) as usize
    });
    let mut seen: u64 = 0;
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
        let frame = match tokio::time::timeout_at(deadline, next).await {
            Err(_) => return Err(BodyError::Timeout),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyError::Broken(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        if seen > drain_limit as u64 {
            return Err(BodyError::TooLarge {
                seen,
                drained: false,
            });
        }
        if !over && seen > limit as u64 {
            over = true;
            buf = Vec::new();
        }
        if !over {
            buf.extend_from_slice(&data);
        }
    }
    if over {
        return Err(BodyError::TooLarge {
            seen,
            drained: true,
        });
    }
    Ok(Bytes::from(buf))
}

/// Buffers every request body within its limit (`Limits::body_limit`); a body over it gets a
/// typed 413, a slow one a typed 408, a broken one a typed 400.
pub(crate) async fn limit_body(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let limits = &st.config.limits;
    let limit = limits.body_limit(req.uri().path());
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let deadline = Instant::now() + limits.body_timeout;
    match read_body(body, declared, limit, limits.drain_limit, deadline).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(BodyError::TooLarge { seen, drained }) => {
            let size = if drained {
                format!("{seen} bytes")
            } else {
                format!("at least {seen} bytes")
            };
            let resp = error_response(ApiError::PayloadTooLarge(format!(
                "The request body ({size}) exceeds the limit of {limit} bytes."
            )));
            if drained {
                resp
            } else {
                closing(resp)
            }
        }
        Err(BodyError::Timeout) => closing(error_response(ApiError::RequestTimeout(format!(
            "The request body did not arrive within {} seconds.",
            limits.body_timeout.as_secs()
        )))),
        Err(BodyError::Broken(cause)) => closing(error_response(ApiError::Serialization(format!(
            "The request body could not be read: {cause}."
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadline() -> Instant {
        Instant::now() + std::time::Duration::from_secs(5)
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_kept_whole() {
        let got = read_body(Body::from("x".repeat(10)), Some(10), 10, 100, deadline()).await;
        assert_eq!(got.expect("fits").len(), 10);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_drained_up_to_the_drain_limit() {
        let got = read_body(Body::from("x".repeat(50)), None, 10, 100, deadline()).await;
        assert!(matches!(
            got,
            Err(BodyError::TooLarge {
                seen: 50,
                drained: true
            })
        ));
        let got = read_body(Body::from("x".repeat(500)), None, 10, 100, deadline()).await;
        assert!(matches!(
            got,
            Err(BodyError::TooLarge { drained: false, .. })
        ));
        let declared = read_body(Body::empty(), Some(1000), 10, 100, deadline()).await;
        assert!(matches!(
            declared,
            Err(BodyError::TooLarge {
                seen: 1000,
                drained: false
            })
        ));
    }

    #[test]
    fn log_lines_name_the_operation_and_the_claimed_key() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonSSM.SendCommand"),
        );
        headers.insert("authorization", HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261127/us-east-1/ssm/aws4_request, SignedHeaders=host, Signature=ab",
        ));
        let root: Uri = "/".parse().expect("uri");
        assert_eq!(operation_of(&Method::POST, &root, &headers), "SendCommand");
        assert_eq!(claimed_access_key(&headers).as_deref(), Some("AKIAEXAMPLE"));
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("FleetrunAdmin.CreateAccessKey"),
        );
        assert_eq!(
            operation_of(&Method::POST, &root, &headers),
            "CreateAccessKey"
        );
        let poll: Uri = "/agent/v2/poll".parse().expect("uri");
        assert_eq!(
            operation_of(&Method::POST, &poll, &headers),
            "POST /agent/v2/poll"
        );
        headers.insert("authorization", HeaderValue::from_static("Bearer x"));
        assert_eq!(claimed_access_key(&headers), None);
    }

    #[test]
    fn an_error_answer_carries_what_the_edge_logs() {
        let resp = ApiError::InvalidNextToken.into_response();
        let answered = resp.extensions().get::<Answered>().expect("answered");
        assert_eq!(answered.code(), "InvalidNextToken");
    }

    #[test]
    fn raw_errors_are_complete_typed_responses() {
        let raw = String::from_utf8(raw_error(&parse_failure(431))).expect("utf8");
        let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("content-type: application/x-amz-json-1.1"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["__type"], "ValidationException");
    }
}
