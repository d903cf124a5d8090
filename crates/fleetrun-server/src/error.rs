//! Every AWS error code fleetrun answers, spelled in one place, with its HTTP status.
//!
//! Domain errors become API errors in exactly one exhaustive `match` ([`From<CoreError>`]); internal
//! causes are logged here once and never sent to the client.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fleetrun_core::CoreError;

#[derive(Debug)]
pub enum ApiError {
    /// Body is not the JSON object the operation expects.
    Serialization(String),
    /// X-Amz-Target missing or naming an operation we do not serve.
    UnknownOperation(String),
    /// No route at that path (404; the code smithy servers answer an unknown route with).
    UnknownPath(String),
    /// A served path called with the wrong method (405).
    MethodNotAllowed(String),
    /// A request body over its limit (413).
    PayloadTooLarge(String),
    /// A request line or headers over the limits (431).
    HeadersTooLarge(String),
    /// A request head or body that did not arrive in time (408).
    RequestTimeout(String),
    /// A modeled constraint (length, range, pattern, enum) is violated.
    Validation(String),
    InvalidCommandId(String),
    InvalidInstanceId(String),
    DuplicateInstanceId(String),
    InvalidFilterKey(String),
    InvalidFilterValue(String),
    InvalidNextToken,
    InvalidPluginName(String),
    InvocationDoesNotExist,
    InvalidDocument(String),
    InvalidDocumentVersion(String),
    InvalidParameters(String),
    InvalidActivationId(String),
    InvalidActivation(String),
    InvalidFilter(String),
    InvalidInstanceInformationFilterValue(String),
    InvalidResourceType(String),
    InvalidResourceId(String),
    TooManyTagsError(String),
    InvalidTarget(String),
    /// SendCommand: the document does not run on a named node's platform.
    UnsupportedPlatformType(String),
    /// Agent endpoints: credentials missing or wrong.
    UnrecognizedClient(String),
    /// The server is shutting down.
    ServiceUnavailable,
    /// Never the client's fault; the cause is logged, not sent.
    Internal(String),
    // ---- documents ----
    InvalidDocumentContent(String),
    InvalidDocumentSchemaVersion(String),
    InvalidDocumentType(String),
    DocumentAlreadyExists(String),
    MaxDocumentSizeExceeded(String),
    DocumentLimitExceeded(String),
    DocumentVersionLimitExceeded(String),
    DuplicateDocumentContent(String),
    DuplicateDocumentVersionName(String),
    InvalidDocumentOperation(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Serialization(_) => "SerializationException",
            Self::UnknownOperation(_) => "UnknownOperationException",
            Self::UnknownPath(_) | Self::MethodNotAllowed(_) => "UnknownOperationException",
            Self::PayloadTooLarge(_) | Self::HeadersTooLarge(_) => "ValidationException",
            Self::RequestTimeout(_) => "RequestTimeoutException",
            Self::Validation(_) => "ValidationException",
            Self::InvalidCommandId(_) => "InvalidCommandId",
            Self::InvalidInstanceId(_) => "InvalidInstanceId",
            Self::DuplicateInstanceId(_) => "DuplicateInstanceId",
            Self::InvalidFilterKey(_) => "InvalidFilterKey",
            Self::InvalidFilterValue(_) => "InvalidFilterValue",
            Self::InvalidNextToken => "InvalidNextToken",
            Self::InvalidPluginName(_) => "InvalidPluginName",
            Self::InvocationDoesNotExist => "InvocationDoesNotExist",
            Self::InvalidDocument(_) => "InvalidDocument",
            Self::InvalidDocumentVersion(_) => "InvalidDocumentVersion",
            Self::InvalidParameters(_) => "InvalidParameters",
            Self::InvalidActivationId(_) => "InvalidActivationId",
            Self::InvalidActivation(_) => "InvalidActivation",
            Self::InvalidFilter(_) => "InvalidFilter",
            Self::InvalidInstanceInformationFilterValue(_) => {
                "InvalidInstanceInformationFilterValue"
            }
            Self::InvalidResourceType(_) => "InvalidResourceType",
            Self::InvalidResourceId(_) => "InvalidResourceId",
            Self::TooManyTagsError(_) => "TooManyTagsError",
            Self::InvalidTarget(_) => "InvalidTarget",
            Self::UnsupportedPlatformType(_) => "UnsupportedPlatformType",
            Self::UnrecognizedClient(_) => "UnrecognizedClientException",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::Internal(_) => "InternalServerError",
            Self::InvalidDocumentContent(_) => "InvalidDocumentContent",
            Self::InvalidDocumentSchemaVersion(_) => "InvalidDocumentSchemaVersion",
            Self::InvalidDocumentType(_) => "InvalidDocumentType",
            Self::DocumentAlreadyExists(_) => "DocumentAlreadyExists",
            Self::MaxDocumentSizeExceeded(_) => "MaxDocumentSizeExceeded",
            Self::DocumentLimitExceeded(_) => "DocumentLimitExceeded",
            Self::DocumentVersionLimitExceeded(_) => "DocumentVersionLimitExceeded",
            Self::DuplicateDocumentContent(_) => "DuplicateDocumentContent",
            Self::DuplicateDocumentVersionName(_) => "DuplicateDocumentVersionName",
            Self::InvalidDocumentOperation(_) => "InvalidDocumentOperation",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::UnknownPath(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UnrecognizedClient(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::Serialization(m)
            | Self::UnknownOperation(m)
            | Self::UnknownPath(m)
            | Self::MethodNotAllowed(m)
            | Self::PayloadTooLarge(m)
            | Self::HeadersTooLarge(m)
            | Self::RequestTimeout(m)
            | Self::Validation(m)
            | Self::InvalidCommandId(m)
            | Self::InvalidInstanceId(m)
            | Self::DuplicateInstanceId(m)
            | Self::InvalidFilterKey(m)
            | Self::InvalidFilterValue(m)
            | Self::InvalidPluginName(m)
            | Self::InvalidDocument(m)
            | Self::InvalidDocumentVersion(m)
            | Self::InvalidParameters(m)
            | Self::InvalidActivationId(m)
            | Self::InvalidActivation(m)
            | Self::InvalidFilter(m)
            | Self::InvalidInstanceInformationFilterValue(m)
            | Self::InvalidResourceType(m)
            | Self::InvalidResourceId(m)
            | Self::TooManyTagsError(m)
            | Self::InvalidTarget(m)
            | Self::UnsupportedPlatformType(m)
            | Self::UnrecognizedClient(m)
            | Self::InvalidDocumentContent(m)
            | Self::InvalidDocumentSchemaVersion(m)
            | Self::InvalidDocumentType(m)
            | Self::DocumentAlreadyExists(m)
            | Self::MaxDocumentSizeExceeded(m)
            | Self::DocumentLimitExceeded(m)
            | Self::DocumentVersionLimitExceeded(m)
            | Self::DuplicateDocumentContent(m)
            | Self::DuplicateDocumentVersionName(m)
            | Self::InvalidDocumentOperation(m) => m.clone(),
            Self::InvalidNextToken => "The specified token isn't valid.".into(),
            Self::InvocationDoesNotExist => "The command ID and instance ID you specified didn't match any invocations. Verify the command ID and the instance ID and try again.".into(),
            Self::ServiceUnavailable => "The server is shutting down.".into(),
            Self::Internal(_) => "An internal error occurred.".into(),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::UnknownInstance(id) => Self::InvalidInstanceId(format!(
                "Instances [[{id}]] not in a valid state for account."
            )),
            CoreError::DuplicateInstance(id) => {
                Self::DuplicateInstanceId(format!("Instance {id} is specified more than once."))
            }
            CoreError::UnknownCommand(id) => {
                Self::InvalidCommandId(format!("Command {id} does not exist."))
            }
            CoreError::NoSuchInvocation(..) => Self::InvocationDoesNotExist,
            CoreError::UnknownPlugin(name) => Self::InvalidPluginName(format!(
                "The plugin name {name} is not valid for this invocation."
            )),
            CoreError::InvalidDocument(m) => Self::InvalidDocument(m),
            CoreError::InvalidDocumentVersion(m) => Self::InvalidDocumentVersion(m),
            CoreError::InvalidParameters(m) => Self::InvalidParameters(m),
            CoreError::InvalidNextToken => Self::InvalidNextToken,
            CoreError::UnknownActivation(id) => {
                Self::InvalidActivationId(format!("Activation {id} does not exist."))
            }
            CoreError::ActivationRefused(m) => Self::InvalidActivation(m),
            CoreError::NodeAuthFailed => Self::UnrecognizedClient(
                "The security token included in the request is invalid.".into(),
            ),
            CoreError::UnknownResource(id) => Self::InvalidResourceId(format!(
                "The resource ID \"{id}\" is not valid. Verify the ID and try again."
            )),
            CoreError::UnsupportedResourceType(m) => Self::InvalidResourceType(m),
            CoreError::TooManyTags(id) => Self::TooManyTagsError(format!(
                "The resource {id} can have at most {} tags.",
                fleetrun_core::targets::MAX_TAGS_PER_NODE
            )),
            CoreError::InvalidTarget(m) => Self::InvalidTarget(m),
            CoreError::UnsupportedTargetKey(m) => Self::Validation(m),
            // AWS's wording (aws/aws-sdk-java#1209, gruntwork-io/terratest#978).
            CoreError::UnsupportedPlatformType {
                instance_id,
                platform_type,
            } => Self::UnsupportedPlatformType(format!(
                "Cannot perform operation for instance id {instance_id} of platform type {platform_type}"
            )),
            CoreError::Store(cause) => Self::Internal(cause),
            CoreError::InvalidDocumentContent(m) => Self::InvalidDocumentContent(m),
            CoreError::InvalidDocumentSchemaVersion(m) => Self::InvalidDocumentSchemaVersion(m),
            CoreError::InvalidDocumentType(m) => Self::InvalidDocumentType(m),
            CoreError::DocumentAlreadyExists(m) => Self::DocumentAlreadyExists(m),
            CoreError::MaxDocumentSizeExceeded(m) => Self::MaxDocumentSizeExceeded(m),
            CoreError::DocumentLimitExceeded(m) => Self::DocumentLimitExceeded(m),
            CoreError::DocumentVersionLimitExceeded(m) => Self::DocumentVersionLimitExceeded(m),
            CoreError::DuplicateDocumentContent(m) => Self::DuplicateDocumentContent(m),
            CoreError::DuplicateDocumentVersionName(m) => Self::DuplicateDocumentVersionName(m),
            CoreError::InvalidDocumentOperation(m) => Self::InvalidDocumentOperation(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(cause) => tracing::error!(%cause, "internal error"),
            other => {
                tracing::debug!(code = other.code(), message = %other.message(), "client error")
            }
        }
        let body = fleetrun_wire::error::error_json(self.code(), &self.message());
        let mut resp = (self.status(), body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        headers.insert("x-amzn-errortype", HeaderValue::from_static(self.code()));
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
