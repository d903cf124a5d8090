//! The domain's errors. The server maps each variant to exactly one AWS error code (`fleetrun-server/src/error.rs`).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoreError {
    /// A node id that is well-formed but not registered (or deregistered).
    #[error("instance {0} is not a registered managed node")]
    UnknownInstance(String),
    /// A node id given twice in one request.
    #[error("instance {0} appears more than once")]
    DuplicateInstance(String),
    /// A command id that does not exist.
    #[error("command {0} does not exist")]
    UnknownCommand(String),
    /// No invocation for this command and node.
    #[error("no invocation of command {0} on instance {1}")]
    NoSuchInvocation(String, String),
    /// A plugin/step name not in the invocation.
    #[error("plugin {0} is not part of this invocation")]
    UnknownPlugin(String),
    /// The document does not exist (or is not visible to this account).
    #[error("document {name} does not exist")]
    UnknownDocument { name: String },
    /// A `DocumentHash` that is not the hash of the version being run.
    #[error("document hash {given} does not match ({hash_type})")]
    DocumentHashMismatch { given: String, hash_type: String },
    /// The document has no such version (or the text is no version at all).
    #[error("document {name} has no version {version}")]
    UnknownDocumentVersion { name: String, version: String },
    /// UpdateDocument named a base version other than the latest.
    #[error("document {name}: only the latest version ({latest}) can be updated, not {given}")]
    NotLatestDocumentVersion {
        name: String,
        latest: u32,
        given: u32,
    },
    /// Parameters that the document rejects.
    #[error("{0}")]
    InvalidParameters(String),
    /// A paging token that this server did not issue for this query.
    #[error("the specified token isn't valid")]
    InvalidNextToken,
    /// An activation id that does not exist.
    #[error("activation {0} does not exist")]
    UnknownActivation(String),
    /// Registration refused: wrong code, expired, deleted or used up.
    #[error("{0}")]
    ActivationRefused(String),
    /// The node's credentials do not match.
    #[error("node authentication failed")]
    NodeAuthFailed,
    /// A taggable resource (a managed node) that does not exist.
    #[error("resource {0} does not exist")]
    UnknownResource(String),
    /// A resource type fleetrun cannot tag (yet).
    #[error("{0}")]
    UnsupportedResourceType(String),
    /// The resource would carry more tags than allowed.
    #[error("resource {0} would have more than the allowed number of tags")]
    TooManyTags(String),
    /// A Target whose kind is valid in AWS but cannot be resolved here (resource groups).
    #[error("{0}")]
    InvalidTarget(String),
    /// A Target key that names no target kind, or a Target without values.
    #[error("{0}")]
    UnsupportedTargetKey(String),
    /// SendCommand named a node whose platform the document does not support.
    #[error("document does not support platform {platform_type} of instance {instance_id}")]
    UnsupportedPlatformType {
        instance_id: String,
        platform_type: String,
    },
    /// An access key id that is already stored.
    #[error("access key {0} already exists")]
    AccessKeyExists(String),
    /// A backend failure: never the client's fault.
    #[error("storage failure: {0}")]
    Store(String),
    // ---- documents (CreateDocument, UpdateDocument, ...) ----
    /// Content that does not parse or breaks the document schema.
    #[error("{0}")]
    InvalidDocumentContent(String),
    /// A `schemaVersion` Command documents do not support.
    #[error("{0}")]
    InvalidDocumentSchemaVersion(String),
    /// A DocumentType other than Command.
    #[error("{0}")]
    InvalidDocumentType(String),
    /// A document name already taken (or reserved by a built-in).
    #[error("{0}")]
    DocumentAlreadyExists(String),
    /// Content over 64 KB.
    #[error("{0}")]
    MaxDocumentSizeExceeded(String),
    /// Too many documents.
    #[error("{0}")]
    DocumentLimitExceeded(String),
    /// Too many versions of one document.
    #[error("{0}")]
    DocumentVersionLimitExceeded(String),
    /// UpdateDocument with the content the latest version already has.
    #[error("{0}")]
    DuplicateDocumentContent(String),
    /// A VersionName another version of the document already uses.
    #[error("{0}")]
    DuplicateDocumentVersionName(String),
    /// An operation the document does not allow (deleting the default version, changing a built-in).
    #[error("{0}")]
    InvalidDocumentOperation(String),
}

pub type CoreResult<T> = Result<T, CoreError>;
