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
    #[error("registration with activation {activation_id} refused: {reason:?}")]
    ActivationRefused {
        activation_id: String,
        reason: RegistrationRefusal,
    },
    /// The node's credentials do not match.
    #[error("node authentication failed")]
    NodeAuthFailed,
    /// A taggable resource (a managed node) that does not exist.
    #[error("resource {0} does not exist")]
    UnknownResource(String),
    /// A resource type fleetrun cannot tag (yet).
    #[error("resource type {resource_type} cannot be tagged")]
    UnsupportedResourceType { resource_type: String },
    /// The resource would carry more tags than allowed.
    #[error("resource {0} would have more than the allowed number of tags")]
    TooManyTags(String),
    /// A Target whose kind is valid in AWS but cannot be resolved here (resource groups).
    #[error("target key {key} cannot be resolved here")]
    InvalidTarget { key: String },
    /// A Target key that names no target kind, or a Target without values.
    #[error("target key {key}: {problem:?}")]
    UnsupportedTargetKey {
        key: String,
        problem: TargetKeyProblem,
    },
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
    #[error("document {name} already exists")]
    DocumentAlreadyExists { name: String },
    /// Content over 64 KB.
    #[error("{0}")]
    MaxDocumentSizeExceeded(String),
    /// Too many documents.
    #[error("at most {max} documents")]
    DocumentLimitExceeded { max: usize },
    /// Too many versions of one document.
    #[error("document {name} already has {versions} versions")]
    DocumentVersionLimitExceeded { name: String, versions: u32 },
    /// UpdateDocument with the content the latest version already has.
    #[error("document {name}: the content matches its latest version {latest}")]
    DuplicateDocumentContent { name: String, latest: u32 },
    /// A VersionName another version of the document already uses.
    #[error("document {name}: version name {version_name} is taken")]
    DuplicateDocumentVersionName { name: String, version_name: String },
    /// Deleting the default version of a document that has other versions.
    #[error("document {name}: version {version} is the default")]
    DefaultVersionInUse { name: String, version: u32 },
    // ---- resource groups ----
    /// CreateGroup with a name another group has.
    #[error("resource group {name} already exists")]
    GroupExists { name: String },
    /// A resource group that does not exist (Resource Groups API calls).
    #[error("resource group {name} does not exist")]
    UnknownGroup { name: String },
    /// SendCommand's `resource-groups:Name` names a group that does not exist.
    #[error("target resource group {name} does not exist")]
    UnknownTargetGroup { name: String },
    /// A resource query fleetrun cannot accept.
    #[error("resource query: {0:?}")]
    InvalidGroupQuery(GroupQueryProblem),
}

/// What is wrong with a resource group's `ResourceQuery` (or a group target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupQueryProblem {
    /// A query `Type` other than `TAG_FILTERS_1_0` (`CLOUDFORMATION_STACK_1_0`, or unknown).
    UnsupportedType(String),
    /// The `Query` string is not the JSON object its type defines; the parser's words.
    Malformed(String),
    /// A resource type other than `AWS::SSM::ManagedInstance` / `AWS::AllSupported`.
    UnsupportedResourceType(String),
    /// No `ResourceTypeFilters`.
    NoResourceTypes,
    /// No `TagFilters`.
    NoTagFilters,
    /// More entries than allowed in a list (`what`, limit).
    TooMany { what: &'static str, max: usize },
    /// A tag key or value outside the tag rules (length or characters).
    BadTag(String),
    /// `resource-groups:Name` with other than one value.
    OneGroupName,
    /// `resource-groups:ResourceTypeFilters` without `resource-groups:Name`.
    TypeFiltersWithoutName,
}

/// Why an activation refused a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationRefusal {
    WrongCode,
    Deleted,
    Expired,
    LimitReached { limit: u32 },
}

/// What is wrong with a Target's key (or its values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKeyProblem {
    /// Names no target kind.
    Unknown,
    /// `tag:` followed by a key of the wrong length.
    TagKeyLength { min: usize, max: usize },
    /// The Target lists no values.
    NoValues,
}

pub type CoreResult<T> = Result<T, CoreError>;
