//! Every AWS error code fleetrun answers, spelled in one place, with its HTTP status.
//!
//! Domain errors become API errors in exactly one exhaustive `match` ([`From<CoreError>`]); internal
//! causes are never sent to the client. Every error answer is logged once ([`Answered`]): at INFO
//! for client errors (4xx), at ERROR with the internal cause for server faults (5xx).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fleetrun_core::error::{GroupQueryProblem, RegistrationRefusal, TargetKeyProblem};
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
    /// SendCommand: a NotificationArn that names no topic this server delivers to (`--webhook`).
    InvalidNotificationConfig {
        topic_arn: String,
    },
    /// SendCommand: `OutputS3BucketName` names a bucket that does not exist.
    InvalidOutputFolder(String),
    /// CloudWatch: an alarm that does not exist (HTTP 404).
    AlarmNotFound(String),
    /// CloudWatch: `StateReasonData` that is not JSON.
    InvalidFormat(String),
    /// CloudWatch: a missing or out-of-range member (the query protocol's `ValidationError`).
    CloudWatchValidation(String),
    /// CloudWatch Logs: a log group or stream that does not exist.
    LogResourceNotFound(String),
    /// CloudWatch Logs: a parameter out of range or in conflict with another (the Logs API's
    /// validation code).
    InvalidParameter(String),
    /// SendCommand: the document does not run on a named node's platform.
    UnsupportedPlatformType(String),
    /// Agent endpoints: credentials missing or wrong.
    UnrecognizedClient(String),
    /// Agent endpoints: a node the server does not know (deregistered, or never registered here)
    /// signed the request; it holds the `mi-` id.
    NodeNotRegistered(String),
    /// A request that failed SigV4 verification (security-facts §1 rows 1 and 3–9).
    Signature(fleetrun_sigv4::AuthError),
    /// A session token past its expiry.
    ExpiredToken,
    /// Agent endpoints: a signed request whose signature was already accepted once.
    ReplayedRequest,
    /// Agent registration throttled after too many failures (an SSM error name).
    TooManyUpdates(String),
    /// Agent registration: a public key or key type the server cannot use (an SSM error name).
    InvalidPublicKey(String),
    /// A request under `/agent/v1/` (HTTP 426): the agent speaks a retired protocol version.
    AgentProtocolMismatch,
    /// Admin API: no access key with that id (IAM's code).
    NoSuchEntity(String),
    /// Admin API: a policy document fleetrun cannot accept (IAM's code).
    MalformedPolicyDocument(String),
    /// The caller's identity policies do not allow the action on the resource.
    AccessDenied {
        principal: String,
        action: String,
        resource: String,
        explicit: bool,
    },
    /// The server is shutting down.
    ServiceUnavailable,
    /// `/readyz`: the server cannot serve now (its store does not answer).
    NotReady(String),
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
    // ---- resource groups (rest-json; the model gives each error its HTTP status) ----
    /// Resource Groups: a request the service refuses (constraints, a taken name, a bad query).
    BadRequest(String),
    /// Resource Groups: a group that does not exist (HTTP 404).
    NotFound(String),
}

impl ApiError {
    /// AWS's answer for a document name that does not resolve.
    pub fn unknown_document(name: &str) -> Self {
        Self::InvalidDocument(format!("Document {name} does not exist in your account"))
    }

    /// AWS's answer for a version name a document does not have at the requested version.
    pub fn unknown_document_version_name(name: &str, version_name: &str) -> Self {
        Self::InvalidDocumentVersion(format!(
            "Document {name} does not have version name {version_name} at the requested version"
        ))
    }

    /// AWS's answer for a version a document does not have.
    pub fn unknown_document_version(name: &str, version: &str) -> Self {
        Self::InvalidDocumentVersion(format!("Document {name} does not have version {version}"))
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Serialization(_) => "SerializationException",
            Self::UnknownOperation(_) => "UnknownOperationException",
            Self::UnknownPath(_) | Self::MethodNotAllowed(_) => "UnknownOperationException",
            Self::PayloadTooLarge(_) | Self::HeadersTooLarge(_) => "ValidationException",
            Self::RequestTimeout(_) => "RequestTimeoutException",
            Self::Validation(_) => "ValidationException",
            Self::LogResourceNotFound(_) => "ResourceNotFoundException",
            Self::InvalidOutputFolder(_) => "InvalidOutputFolder",
            Self::AlarmNotFound(_) => "ResourceNotFound",
            Self::InvalidFormat(_) => "InvalidFormat",
            Self::CloudWatchValidation(_) => "ValidationError",
            Self::InvalidParameter(_) => "InvalidParameterException",
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
            Self::InvalidNotificationConfig { .. } => "InvalidNotificationConfig",
            Self::UnsupportedPlatformType(_) => "UnsupportedPlatformType",
            Self::UnrecognizedClient(_) => "UnrecognizedClientException",
            Self::NodeNotRegistered(_) => fleetrun_wire::agent::NOT_REGISTERED_CODE,
            Self::Signature(e) => signature_code(e),
            Self::ExpiredToken => "ExpiredTokenException",
            Self::ReplayedRequest => "InvalidSignatureException",
            Self::TooManyUpdates(_) => "TooManyUpdates",
            Self::InvalidPublicKey(_) => "InvalidPublicKey",
            Self::AgentProtocolMismatch => fleetrun_wire::agent::PROTOCOL_MISMATCH_CODE,
            Self::NoSuchEntity(_) => "NoSuchEntity",
            Self::MalformedPolicyDocument(_) => "MalformedPolicyDocument",
            Self::AccessDenied { .. } => "AccessDeniedException",
            Self::ServiceUnavailable | Self::NotReady(_) => "ServiceUnavailable",
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
            Self::BadRequest(_) => "BadRequestException",
            Self::NotFound(_) => "NotFoundException",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ServiceUnavailable | Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UnknownPath(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::AgentProtocolMismatch => StatusCode::UPGRADE_REQUIRED,
            Self::AlarmNotFound(_) | Self::NotFound(_) => StatusCode::NOT_FOUND,
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
            | Self::LogResourceNotFound(m)
            | Self::AlarmNotFound(m)
            | Self::InvalidFormat(m)
            | Self::CloudWatchValidation(m)
            | Self::InvalidParameter(m)
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
            | Self::TooManyUpdates(m)
            | Self::InvalidPublicKey(m)
            | Self::NoSuchEntity(m)
            | Self::MalformedPolicyDocument(m)
            | Self::InvalidDocumentContent(m)
            | Self::InvalidDocumentSchemaVersion(m)
            | Self::InvalidDocumentType(m)
            | Self::DocumentAlreadyExists(m)
            | Self::MaxDocumentSizeExceeded(m)
            | Self::DocumentLimitExceeded(m)
            | Self::DocumentVersionLimitExceeded(m)
            | Self::DuplicateDocumentContent(m)
            | Self::DuplicateDocumentVersionName(m)
            | Self::InvalidDocumentOperation(m)
            | Self::BadRequest(m)
            | Self::NotFound(m)
            | Self::NotReady(m) => m.clone(),
            Self::Signature(e) => signature_message(e),
            Self::ExpiredToken => "The security token included in the request is expired".into(),
            // The model's description of the error, with the topic named.
            Self::InvalidNotificationConfig { topic_arn } => format!(
                "One or more configuration items isn't valid. Verify that a valid Amazon Resource Name (ARN) was provided for an Amazon Simple Notification Service topic: {topic_arn} is not a topic this server delivers to."
            ),
            // AWS has no replay check (SigV4 allows replays inside the window); our sentence.
            Self::ReplayedRequest => "The request signature has already been used; sign every request anew.".into(),
            Self::AgentProtocolMismatch => fleetrun_wire::agent::PROTOCOL_MISMATCH_MESSAGE.into(),
            Self::NodeNotRegistered(id) => format!(
                "Managed node {id} is not registered with this server (it was deregistered); register it again with a new activation."
            ),
            // AWS's form since 2021 (security-facts §1 row 11).
            Self::AccessDenied {
                principal,
                action,
                resource,
                explicit,
            } => {
                if *explicit {
                    format!("User: {principal} is not authorized to perform: {action} on resource: {resource} with an explicit deny in an identity-based policy")
                } else {
                    format!("User: {principal} is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action")
                }
            }
            Self::InvalidNextToken => "The specified token isn't valid.".into(),
            // The model's description, with the bucket named.
            Self::InvalidOutputFolder(bucket) => {
                format!("The S3 bucket doesn't exist: {bucket}.")
            }
            Self::InvocationDoesNotExist => "The command ID and instance ID you specified didn't match any invocations. Verify the command ID and the instance ID and try again.".into(),
            Self::ServiceUnavailable => "The server is shutting down.".into(),
            Self::Internal(_) => "An internal error occurred.".into(),
        }
    }
}

/// The AWS code for each SigV4 failure (security-facts §1; every auth failure is HTTP 400 on awsJson).
fn signature_code(e: &fleetrun_sigv4::AuthError) -> &'static str {
    use fleetrun_sigv4::AuthError as A;
    match e {
        A::MissingAuthentication => "MissingAuthenticationTokenException",
        A::PresignedNotSupported
        | A::HeaderAndQueryAuth
        | A::DuplicateAuthorization { .. }
        | A::NonUtf8Header { .. }
        | A::NotKeyValuePair { .. }
        | A::DuplicateComponent { .. }
        | A::UnsupportedAlgorithm { .. }
        | A::MissingParts { .. }
        | A::CredentialParts { .. }
        | A::BadDateFormat { .. }
        | A::SignedHeadersNotCanonical { .. }
        | A::HostNotSigned
        | A::DateNotSigned { .. }
        | A::SignedHeaderAbsent { .. } => "IncompleteSignatureException",
        A::MalformedSignature { .. }
        | A::WrongRegion { .. }
        | A::WrongService { .. }
        | A::ScopeDateMismatch { .. }
        | A::BadTerminator { .. }
        | A::Expired { .. }
        | A::NotYetCurrent { .. }
        | A::SignatureMismatch => "InvalidSignatureException",
    }
}

const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// AWS's sentences for SigV4 failures, as quoted in security-facts §1 (rows 6–9 partly unverified
/// there; where AWS's text is unknown the sentence is ours, in the same style).
fn signature_message(e: &fleetrun_sigv4::AuthError) -> String {
    use fleetrun_sigv4::{AuthError as A, MissingPart};
    match e {
        A::MissingAuthentication => "Request is missing Authentication Token".into(),
        A::PresignedNotSupported => {
            "Query-string (presigned) authentication is not supported by this service; sign the Authorization header.".into()
        }
        A::HeaderAndQueryAuth => "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified".into(),
        A::DuplicateAuthorization { .. } => "Only one Authorization header is allowed.".into(),
        A::NonUtf8Header { name } => format!("Header '{name}' is not valid UTF-8."),
        A::NotKeyValuePair { token, header } => format!(
            "'{token}' not a valid key=value pair (missing equal-sign) in Authorization header: '{header}'."
        ),
        A::DuplicateComponent { name, header } => {
            format!("Authorization header has '{name}' more than once: '{header}'.")
        }
        A::UnsupportedAlgorithm { algorithm } => format!(
            "Unsupported Authorization algorithm '{algorithm}'; this service accepts AWS4-HMAC-SHA256."
        ),
        A::MissingParts { missing, header } => {
            let mut text = String::new();
            for part in missing {
                text.push_str(match part {
                    MissingPart::Credential => "Authorization header requires 'Credential' parameter. ",
                    MissingPart::Signature => "Authorization header requires 'Signature' parameter. ",
                    MissingPart::SignedHeaders => {
                        "Authorization header requires 'SignedHeaders' parameter. "
                    }
                    MissingPart::DateHeader => "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
                });
            }
            format!("{text}Authorization={header}")
        }
        A::CredentialParts { value } => format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{value}'"
        ),
        A::BadDateFormat { value } => format!(
            "Date must be in ISO-8601 'basic format'. Got '{value}'. See http://en.wikipedia.org/wiki/ISO_8601"
        ),
        A::SignedHeadersNotCanonical { value } => format!(
            "SignedHeaders must be lower-case, sorted and without duplicates, got '{value}'."
        ),
        A::HostNotSigned => {
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into()
        }
        A::DateNotSigned { name } => {
            format!("'{name}' must be a 'SignedHeader' in the AWS Authorization.")
        }
        A::SignedHeaderAbsent { name } => {
            format!("Signed header '{name}' is not present in the request.")
        }
        A::MalformedSignature { .. } | A::SignatureMismatch => SIGNATURE_MISMATCH.into(),
        A::WrongRegion { region } => {
            format!("Credential should be scoped to a valid region, not '{region}'. ")
        }
        A::WrongService { expected } => {
            format!("Credential should be scoped to correct service: '{expected}'. ")
        }
        A::ScopeDateMismatch {
            scope,
            date,
            timestamp,
        } => format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope}' != '{date}', from '{timestamp}'."
        ),
        A::BadTerminator { terminator } => format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
        ),
        A::Expired {
            timestamp,
            earliest,
            now,
            window_mins,
        } => format!(
            "Signature expired: {timestamp} is now earlier than {earliest} ({now} - {window_mins} min.)"
        ),
        A::NotYetCurrent {
            timestamp,
            latest,
            now,
            window_mins,
        } => format!(
            "Signature not yet current: {timestamp} is still later than {latest} ({now} + {window_mins} min.)"
        ),
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
            CoreError::UnknownDocument { name } => Self::unknown_document(&name),
            // As AWS words it when a Run Command task's stored hash no longer matches the document
            // (observed, aws-samples/aws-security-reference-architecture-examples#301; the API
            // reference lists InvalidDocument as SendCommand's document error).
            CoreError::DocumentHashMismatch { given, hash_type } => Self::InvalidDocument(format!(
                "document hash {given} does not match {hash_type}."
            )),
            CoreError::UnknownDocumentVersion { name, version } => {
                Self::unknown_document_version(&name, &version)
            }
            CoreError::NotLatestDocumentVersion {
                name,
                latest,
                given,
            } => Self::InvalidDocumentVersion(format!(
                "Only the latest version of document {name} ({latest}) can be updated; got {given}."
            )),
            CoreError::InvalidParameters(m) => Self::InvalidParameters(m),
            CoreError::InvalidNextToken => Self::InvalidNextToken,
            CoreError::UnknownActivation(id) => {
                Self::InvalidActivationId(format!("Activation {id} does not exist."))
            }
            CoreError::ActivationRefused {
                activation_id: id,
                reason,
            } => Self::InvalidActivation(match reason {
                RegistrationRefusal::WrongCode => {
                    format!("the activation code does not match activation {id}")
                }
                RegistrationRefusal::Deleted => format!("activation {id} has been deleted"),
                RegistrationRefusal::Expired => format!("activation {id} has expired"),
                RegistrationRefusal::LimitReached { limit } => {
                    format!("activation {id} has reached its registration limit of {limit}")
                }
            }),
            CoreError::NodeAuthFailed => Self::UnrecognizedClient(
                "The security token included in the request is invalid.".into(),
            ),
            CoreError::UnknownResource(id) => Self::InvalidResourceId(format!(
                "The resource ID \"{id}\" is not valid. Verify the ID and try again."
            )),
            CoreError::UnsupportedResourceType { resource_type } => {
                Self::InvalidResourceType(format!(
                    "Resource type {resource_type} cannot be tagged on this server; only \
                     ManagedInstance resources (registered mi- nodes) can."
                ))
            }
            CoreError::TooManyTags(id) => Self::TooManyTagsError(format!(
                "The resource {id} can have at most {} tags.",
                fleetrun_core::targets::MAX_TAGS_PER_NODE
            )),
            CoreError::InvalidTarget { key } => {
                Self::InvalidTarget(format!("Target key '{key}' cannot be resolved here."))
            }
            CoreError::UnsupportedTargetKey { key, problem } => Self::Validation(match problem {
                TargetKeyProblem::Unknown => format!(
                    "Target key '{key}' is not supported. Use InstanceIds, tag:<key> or tag-key."
                ),
                TargetKeyProblem::TagKeyLength { min, max } => format!(
                    "Target key '{key}' must name a tag key of {min} to {max} characters after 'tag:'."
                ),
                TargetKeyProblem::NoValues => {
                    format!("Target '{key}' must list at least one value.")
                }
            }),
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
            CoreError::DocumentAlreadyExists { name } => {
                Self::DocumentAlreadyExists(format!("Document with name {name} already exists."))
            }
            CoreError::MaxDocumentSizeExceeded(m) => Self::MaxDocumentSizeExceeded(m),
            CoreError::DocumentLimitExceeded { max } => Self::DocumentLimitExceeded(format!(
                "You can have at most {max} active SSM documents."
            )),
            CoreError::DocumentVersionLimitExceeded { name, versions } => {
                Self::DocumentVersionLimitExceeded(format!(
                    "Document {name} has {versions} versions, the most it can have. Delete one or \
                     more versions and try again."
                ))
            }
            CoreError::DuplicateDocumentContent { name, latest } => {
                Self::DuplicateDocumentContent(format!(
                    "The content of document {name} matches its latest version {latest}."
                ))
            }
            CoreError::DuplicateDocumentVersionName { name, version_name } => {
                Self::DuplicateDocumentVersionName(format!(
                    "The version name {version_name} has already been used in document {name}."
                ))
            }
            CoreError::DefaultVersionInUse { name, version } => {
                Self::InvalidDocumentOperation(format!(
                    "Version {version} is the default version of document {name}; set another \
                     default version before deleting it."
                ))
            }
            CoreError::AccessKeyExists(id) => Self::Internal(format!("access key {id} exists")),
            CoreError::GroupExists { .. } => {
                Self::BadRequest("Cannot create group: group already exists".into())
            }
            CoreError::UnknownGroup { name } => {
                Self::NotFound(format!("Cannot find group {name}."))
            }
            CoreError::UnknownTargetGroup { name } => Self::InvalidTarget(format!(
                "Resource group {name} does not exist. Verify the resource-groups:Name value."
            )),
            CoreError::InvalidGroupQuery(problem) => group_query_error(problem),
        }
    }
}

/// A resource query fleetrun refuses: `BadRequestException` from the Resource Groups API,
/// `InvalidTarget` for SendCommand's `resource-groups:` targets.
fn group_query_error(problem: GroupQueryProblem) -> ApiError {
    use fleetrun_core::resource_groups::{ALL_SUPPORTED, MANAGED_INSTANCE, TAG_FILTERS};
    ApiError::BadRequest(match problem {
        GroupQueryProblem::OneGroupName => {
            return ApiError::InvalidTarget(
                "Target resource-groups:Name takes exactly one group name.".into(),
            )
        }
        GroupQueryProblem::TypeFiltersWithoutName => {
            return ApiError::InvalidTarget(
                "Target resource-groups:ResourceTypeFilters needs a resource-groups:Name target."
                    .into(),
            )
        }
        GroupQueryProblem::UnsupportedType(t) => format!(
            "Query type {t} is not supported by this server; use {TAG_FILTERS}."
        ),
        GroupQueryProblem::Malformed(why) => format!("Query not valid: {why}"),
        GroupQueryProblem::UnsupportedResourceType(t) => format!(
            "Resource type {t} is not supported by this server; use {MANAGED_INSTANCE} or {ALL_SUPPORTED}."
        ),
        GroupQueryProblem::NoResourceTypes => {
            "Query not valid: ResourceTypeFilters must list at least one resource type.".into()
        }
        GroupQueryProblem::NoTagFilters => {
            "Query not valid: TagFilters must list at least one tag filter.".into()
        }
        GroupQueryProblem::TooMany { what, max } => {
            format!("Query not valid: {what} can have at most {max} entries.")
        }
        GroupQueryProblem::BadTag(text) => format!(
            "Query not valid: tag key or value '{text}' breaks the tag rules (length, characters)."
        ),
    })
}

/// An awsJson 1.1 error answer: the status, `{"__type", "message"}` and `x-amzn-errortype`.
pub(crate) fn aws_json_error(status: StatusCode, code: &'static str, message: &str) -> Response {
    let body = fleetrun_wire::error::error_json(code, message);
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    headers.insert("x-amzn-errortype", HeaderValue::from_static(code));
    resp
}

impl IntoResponse for ApiError {
    /// The awsJson error answer, carrying its [`Answered`] for the edge to log (not logged here:
    /// the edge knows the operation and the caller, `edge::typed_errors`).
    fn into_response(self) -> Response {
        let answered = Answered::of(&self);
        let mut resp = aws_json_error(self.status(), self.code(), &self.message());
        resp.extensions_mut().insert(answered);
        resp
    }
}

/// How much of an error's message is logged: AWS's validation sentences quote the offending
/// value, which may be long (a document).
const LOGGED_MESSAGE_CHARS: usize = 300;

/// What an error answer said, for its one log line: `into_response` leaves it in the response's
/// extensions and the edge logs it ([`Answered::log`]) with the request's operation and caller;
/// the transport logs the answers it writes itself (`edge::raw_error`).
#[derive(Debug, Clone)]
pub struct Answered {
    code: &'static str,
    status: StatusCode,
    message: String,
    /// The internal cause of a server fault (never sent).
    cause: Option<String>,
}

/// Who asked, as far as the edge knows, for the log line of an error answer.
#[derive(Debug, Default, Clone, Copy)]
pub struct Asker<'a> {
    /// The operation (`SendCommand`), or the method and path outside the SSM API.
    pub op: &'a str,
    /// The access key the request was signed with (verified, or as claimed when it failed).
    pub access_key_id: Option<&'a str>,
    /// The verified key's user name.
    pub user: Option<&'a str>,
    pub request_id: Option<&'a str>,
}

impl Answered {
    pub fn of(e: &ApiError) -> Self {
        let message = e.message();
        let message = match message.char_indices().nth(LOGGED_MESSAGE_CHARS) {
            Some((cut, _)) => format!("{}…", &message[..cut]),
            None => message,
        };
        Self {
            code: e.code(),
            status: e.status(),
            message,
            cause: match e {
                ApiError::Internal(cause) => Some(cause.clone()),
                _ => None,
            },
        }
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The one log line of this answer: a client error (4xx) at INFO, a server fault at ERROR.
    pub fn log(&self, who: &Asker<'_>) {
        let status = self.status.as_u16();
        if self.status.is_server_error() {
            tracing::error!(
                code = %self.code,
                status,
                op = %who.op,
                access_key_id = who.access_key_id.map(tracing::field::display),
                user = who.user.map(tracing::field::display),
                request_id = who.request_id.map(tracing::field::display),
                cause = self.cause.as_deref().map(tracing::field::display),
                "server error"
            );
        } else {
            tracing::info!(
                code = %self.code,
                status,
                op = %who.op,
                access_key_id = who.access_key_id.map(tracing::field::display),
                user = who.user.map(tracing::field::display),
                request_id = who.request_id.map(tracing::field::display),
                detail = %self.message,
                "client error"
            );
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
