//! CreateDocument / UpdateDocument / UpdateDocumentDefaultVersion / DescribeDocument / GetDocument /
//! DeleteDocument for `Command` documents, and [`resolve`], the lookup SendCommand uses.
//!
//! The built-in `AWS-RunShellScript` (owner `Amazon`) is served from `fleetrun_core::document` and
//! can be read but not changed; custom documents live in the store. Content is validated by
//! `fleetrun_core::document_content`; ListDocuments is in `list_documents`.

use fleetrun_core::clock::now_millis;
use fleetrun_core::document::{self, DocumentSpec, RUN_SHELL_SCRIPT};
use fleetrun_core::document_content::{default_text, platform_types};
use fleetrun_core::documents::{
    content_hash, plain_name, reserved_prefix, Document, DocumentFormat, DocumentVersion,
    NewDocument, NewDocumentVersion, VersionSelector, ACCOUNT_ID, AMAZON_OWNER, MAX_DOCUMENTS,
    MAX_DOCUMENT_VERSIONS,
};
use fleetrun_core::node::Tag;
use fleetrun_wire::documents::{
    CreateDocumentRequest, CreateDocumentResult, DescribeDocumentResult,
    DocumentDefaultVersionDescription, DocumentDescription, DocumentParameter, DocumentRequest,
    GetDocumentResult, UpdateDocumentDefaultVersionRequest, UpdateDocumentDefaultVersionResult,
    UpdateDocumentRequest,
};
use fleetrun_wire::ssm::{self, epoch};
use fleetrun_wire::validate::Violations;

use super::send_command::document_version_ok;
use super::validate::finish;
use crate::audit::audit;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub const DOCUMENT_NAME_PATTERN: &str = "^[a-zA-Z0-9_\\-.]{3,128}$";
pub const DOCUMENT_ARN_PATTERN: &str = "^[a-zA-Z0-9_\\-.:/]{3,128}$";
const VERSION_NAME_PATTERN: &str = "^[a-zA-Z0-9_\\-.]{1,128}$";
const DISPLAY_NAME_PATTERN: &str = "^[\\w\\.\\-\\:\\/ ]*$";
const TARGET_TYPE_PATTERN: &str = "^\\/[\\w\\.\\-\\:\\/]*$";
const DOCUMENT_VERSION_PATTERN: &str = "([$]LATEST|[$]DEFAULT|^[1-9][0-9]*$)";
const DOCUMENT_TYPES: [&str; 17] = [
    "Command",
    "Policy",
    "Automation",
    "Session",
    "Package",
    "ApplicationConfiguration",
    "ApplicationConfigurationSchema",
    "DeploymentStrategy",
    "ChangeCalendar",
    "Automation.ChangeTemplate",
    "ProblemAnalysis",
    "ProblemAnalysisTemplate",
    "CloudFormation",
    "ConformancePackTemplate",
    "QuickSetup",
    "ManualApprovalPolicy",
    "AutoApprovalPolicy",
];
const FORMATS: [&str; 3] = ["YAML", "JSON", "TEXT"];

fn chars_ok(s: &str, min: usize, extra: &str) -> bool {
    (min..=128).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

pub fn name_ok(s: &str) -> bool {
    chars_ok(s, 3, "_-.")
}

pub fn arn_ok(s: &str) -> bool {
    chars_ok(s, 3, "_-.:/")
}

fn version_name_ok(s: &str) -> bool {
    chars_ok(s, 1, "_-.")
}

fn word_ok(s: &str, extra: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || c == '_' || extra.contains(c))
}

/// Checks the members Create and Update share.
fn check_common(
    v: &mut Violations,
    content: Option<&str>,
    display: Option<&str>,
    version_name: Option<&str>,
    format: Option<&str>,
    target: Option<&str>,
) {
    match content {
        None => v.required("Content", false),
        Some(c) => v.length("Content", c, 1, None),
    }
    if let Some(d) = display {
        v.length("DisplayName", d, 0, Some(1024));
        v.pattern("DisplayName", d, word_ok(d, ".-:/ "), DISPLAY_NAME_PATTERN);
    }
    if let Some(n) = version_name {
        v.pattern("VersionName", n, version_name_ok(n), VERSION_NAME_PATTERN);
    }
    if let Some(f) = format {
        v.one_of("DocumentFormat", f, &FORMATS);
    }
    if let Some(t) = target {
        v.length("TargetType", t, 0, Some(200));
        v.pattern(
            "TargetType",
            t,
            t.starts_with('/') && word_ok(t, ".-:/"),
            TARGET_TYPE_PATTERN,
        );
    }
}

fn check_name(v: &mut Violations, name: Option<&str>, arn: bool) {
    match name {
        None => v.required("Name", false),
        Some(n) if arn => v.pattern("Name", n, arn_ok(n), DOCUMENT_ARN_PATTERN),
        Some(n) => v.pattern("Name", n, name_ok(n), DOCUMENT_NAME_PATTERN),
    }
}

fn check_version(v: &mut Violations, version: Option<&str>, version_name: Option<&str>) {
    if let Some(s) = version {
        v.pattern(
            "DocumentVersion",
            s,
            document_version_ok(s),
            DOCUMENT_VERSION_PATTERN,
        );
    }
    if let Some(n) = version_name {
        v.pattern("VersionName", n, version_name_ok(n), VERSION_NAME_PATTERN);
    }
}

fn content_format(format: Option<&str>) -> ApiResult<DocumentFormat> {
    match format {
        None => Ok(DocumentFormat::Json),
        Some(f) => DocumentFormat::parse(f).ok_or_else(|| {
            ApiError::InvalidDocumentContent(format!(
                "DocumentFormat {f} is not supported for Command documents; use JSON or YAML."
            ))
        }),
    }
}

/// A document version with everything DescribeDocument reports.
pub struct Loaded {
    pub doc: Document,
    pub ver: DocumentVersion,
    pub own: bool,
    pub spec: DocumentSpec,
}

/// The built-in AWS-RunShellScript as a stored document would look.
pub fn builtin() -> Loaded {
    let spec = document::aws_run_shell_script();
    let content = document::AWS_RUN_SHELL_SCRIPT_CONTENT;
    Loaded {
        doc: Document {
            name: RUN_SHELL_SCRIPT.into(),
            document_type: "Command".into(),
            created_at: 0,
            default_version: 1,
            latest_version: 1,
            tags: vec![],
        },
        ver: DocumentVersion {
            name: RUN_SHELL_SCRIPT.into(),
            version: 1,
            content: content.into(),
            format: DocumentFormat::Json,
            hash: content_hash(content),
            schema_version: spec.schema_version.clone(),
            description: spec.description.clone(),
            platform_types: platform_types(&spec),
            version_name: None,
            display_name: String::new(),
            target_type: String::new(),
            created_at: 0,
        },
        own: false,
        spec,
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::unknown_document(name)
}

/// Loads one version: by `version` (`$DEFAULT` when absent) and/or `version_name` (both must agree).
pub async fn load(
    st: &AppState,
    name: &str,
    version: Option<&str>,
    version_name: Option<&str>,
) -> ApiResult<Loaded> {
    let name = plain_name(name);
    let selector = VersionSelector::parse(name, version.unwrap_or(""))?;
    if name == RUN_SHELL_SCRIPT {
        let b = builtin();
        if selector.resolve(&b.doc) != 1 || version_name.is_some() {
            return Err(ApiError::InvalidDocumentVersion(format!(
                "Document {name} does not have the requested version"
            )));
        }
        return Ok(b);
    }
    let doc = st
        .store
        .document(name)
        .await?
        .ok_or_else(|| not_found(name))?;
    let ver = match version_name {
        Some(vn) => {
            let found = st
                .store
                .document_versions(name)
                .await?
                .into_iter()
                .find(|v| v.version_name.as_deref() == Some(vn));
            match found {
                Some(v) if version.is_none() || selector.resolve(&doc) == v.version => v,
                _ => return Err(ApiError::unknown_document_version_name(name, vn)),
            }
        }
        None => {
            let n = selector.resolve(&doc);
            st.store
                .document_version(name, n)
                .await?
                .ok_or_else(|| ApiError::unknown_document_version(name, &n.to_string()))?
        }
    };
    let spec = st
        .parsers
        .parse(name, &ver.version.to_string(), &ver.content, ver.format)
        .await?;
    Ok(Loaded {
        doc,
        ver,
        own: true,
        spec,
    })
}

/// SendCommand's lookup: built-ins first, then the store; `version` is `""`, `$DEFAULT`,
/// `$LATEST` or a number. The version comes with its content and hash, which SendCommand checks
/// (`DocumentHash`, the 64 KB limit).
pub async fn resolve(st: &AppState, name: &str, version: &str) -> ApiResult<Loaded> {
    if plain_name(name) == RUN_SHELL_SCRIPT {
        document::builtin(name, version)?;
        return Ok(builtin());
    }
    load(st, name, Some(version), None).await
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn created(ms: i64) -> Option<f64> {
    (ms > 0).then(|| epoch(ms))
}

pub fn wire_tags(tags: &[Tag]) -> Vec<ssm::Tag> {
    tags.iter()
        .map(|t| ssm::Tag {
            key: t.key.clone(),
            value: t.value.clone(),
        })
        .collect()
}

/// The `DocumentDescription` of a loaded version, with `status` (`Creating`, `Updating`, `Active`).
pub fn description(l: &Loaded, status: &str) -> DocumentDescription {
    DocumentDescription {
        hash: l.ver.hash.clone(),
        hash_type: "Sha256".into(),
        name: l.doc.name.clone(),
        display_name: opt(&l.ver.display_name),
        version_name: l.ver.version_name.clone(),
        owner: if l.own { ACCOUNT_ID } else { AMAZON_OWNER }.into(),
        created_date: created(l.ver.created_at),
        status: status.into(),
        document_version: l.ver.version.to_string(),
        description: l.spec.description.clone(),
        parameters: l
            .spec
            .params
            .iter()
            .map(|p| DocumentParameter {
                name: p.name.clone(),
                param_type: format!("{:?}", p.param_type),
                description: p.description.clone(),
                default_value: default_text(p),
            })
            .collect(),
        platform_types: l.ver.platform_types.clone(),
        document_type: l.doc.document_type.clone(),
        schema_version: l.ver.schema_version.clone(),
        latest_version: l.doc.latest_version.to_string(),
        default_version: l.doc.default_version.to_string(),
        document_format: l.ver.format.as_str().into(),
        target_type: opt(&l.ver.target_type),
        tags: wire_tags(&l.doc.tags),
    }
}

/// Parses and hashes new content into a version record.
async fn new_version(
    st: &AppState,
    name: &str,
    content: String,
    format: DocumentFormat,
    version_name: Option<String>,
    display_name: String,
    target_type: String,
) -> ApiResult<NewDocumentVersion> {
    let spec = st.parsers.parse(name, "", &content, format).await?;
    Ok(NewDocumentVersion {
        hash: content_hash(&content),
        schema_version: spec.schema_version.clone(),
        description: spec.description.clone(),
        platform_types: platform_types(&spec),
        content,
        format,
        version_name,
        display_name,
        target_type,
        created_at: now_millis(),
    })
}

pub async fn create_document(
    st: AppState,
    caller: Caller,
    req: CreateDocumentRequest,
) -> ApiResult<CreateDocumentResult> {
    let mut v = Violations::new();
    check_name(&mut v, req.name.as_deref(), false);
    check_common(
        &mut v,
        req.content.as_deref(),
        req.display_name.as_deref(),
        req.version_name.as_deref(),
        req.document_format.as_deref(),
        req.target_type.as_deref(),
    );
    if let Some(t) = req.document_type.as_deref() {
        v.one_of("DocumentType", t, &DOCUMENT_TYPES);
    }
    let tags = req.tags.clone().unwrap_or_default();
    v.count("Tags", "[...]", tags.len(), 0, Some(1000));
    for (i, t) in tags.iter().enumerate() {
        v.length(&format!("Tags.{}.member.Key", i + 1), &t.key, 1, Some(128));
        v.length(
            &format!("Tags.{}.member.Value", i + 1),
            &t.value,
            0,
            Some(256),
        );
    }
    finish(v)?;
    let name = req.name.unwrap_or_default();
    if let Some(prefix) = reserved_prefix(&name) {
        return Err(ApiError::Validation(format!(
            "Document name {name} is not valid: the prefix '{prefix}' is reserved by AWS."
        )));
    }
    let doc_type = req.document_type.unwrap_or_else(|| "Command".into());
    if doc_type != "Command" {
        return Err(ApiError::InvalidDocumentType(format!(
            "DocumentType {doc_type} is not supported by this server; only Command documents are."
        )));
    }
    let format = content_format(req.document_format.as_deref())?;
    let first = new_version(
        &st,
        &name,
        req.content.unwrap_or_default(),
        format,
        req.version_name,
        req.display_name.unwrap_or_default(),
        req.target_type.unwrap_or_default(),
    )
    .await?;
    let doc = st
        .store
        .create_document(
            NewDocument {
                name: name.clone(),
                document_type: doc_type,
                tags: tags
                    .into_iter()
                    .map(|t| Tag {
                        key: t.key,
                        value: t.value,
                    })
                    .collect(),
                first,
            },
            MAX_DOCUMENTS,
        )
        .await?;
    audit!(caller, "CreateDocument", document = %doc.name, version = 1, "document created");
    let loaded = load(&st, &name, Some("1"), None).await?;
    Ok(CreateDocumentResult {
        document_description: description(&loaded, "Creating"),
    })
}

fn immutable(name: &str, what: &str) -> ApiError {
    ApiError::InvalidDocumentOperation(format!(
        "Document {name} is owned by Amazon and cannot be {what}."
    ))
}

pub async fn update_document(
    st: AppState,
    caller: Caller,
    req: UpdateDocumentRequest,
) -> ApiResult<CreateDocumentResult> {
    let mut v = Violations::new();
    check_name(&mut v, req.name.as_deref(), false);
    check_common(
        &mut v,
        req.content.as_deref(),
        req.display_name.as_deref(),
        req.version_name.as_deref(),
        req.document_format.as_deref(),
        req.target_type.as_deref(),
    );
    check_version(&mut v, req.document_version.as_deref(), None);
    finish(v)?;
    let name = req.name.unwrap_or_default();
    if name == RUN_SHELL_SCRIPT {
        return Err(immutable(&name, "updated"));
    }
    let doc = st
        .store
        .document(&name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    let selector =
        VersionSelector::parse(&name, req.document_version.as_deref().unwrap_or("$LATEST"))?;
    let expected = selector.resolve(&doc);
    let latest = st
        .store
        .document_version(&name, doc.latest_version)
        .await?
        .ok_or_else(|| not_found(&name))?;
    let format = content_format(req.document_format.as_deref())?;
    let next = new_version(
        &st,
        &name,
        req.content.unwrap_or_default(),
        format,
        req.version_name,
        req.display_name.unwrap_or(latest.display_name),
        req.target_type.unwrap_or(latest.target_type),
    )
    .await?;
    let doc = st
        .store
        .add_document_version(&name, expected, next, MAX_DOCUMENT_VERSIONS)
        .await?;
    audit!(caller, "UpdateDocument", document = %name, version = doc.latest_version, "document updated");
    let loaded = load(&st, &name, Some(&doc.latest_version.to_string()), None).await?;
    Ok(CreateDocumentResult {
        document_description: description(&loaded, "Updating"),
    })
}

pub async fn update_document_default_version(
    st: AppState,
    caller: Caller,
    req: UpdateDocumentDefaultVersionRequest,
) -> ApiResult<UpdateDocumentDefaultVersionResult> {
    let mut v = Violations::new();
    check_name(&mut v, req.name.as_deref(), false);
    match req.document_version.as_deref() {
        None => v.required("DocumentVersion", false),
        Some(s) => v.pattern(
            "DocumentVersion",
            s,
            !s.starts_with('$') && document_version_ok(s),
            "(^[1-9][0-9]*$)",
        ),
    }
    finish(v)?;
    let name = req.name.unwrap_or_default();
    if name == RUN_SHELL_SCRIPT {
        return Err(ApiError::InvalidDocument(format!(
            "Document {name} is owned by Amazon; only your own documents have a default version to change."
        )));
    }
    let version =
        match VersionSelector::parse(&name, req.document_version.as_deref().unwrap_or(""))? {
            VersionSelector::Number(n) => n,
            _ => {
                return Err(ApiError::InvalidDocumentVersion(
                    "DocumentVersion must be a version number.".into(),
                ))
            }
        };
    st.store
        .set_default_document_version(&name, version)
        .await?;
    let ver = st
        .store
        .document_version(&name, version)
        .await?
        .ok_or_else(|| not_found(&name))?;
    audit!(caller, "UpdateDocumentDefaultVersion", document = %name, version, "default document version changed");
    Ok(UpdateDocumentDefaultVersionResult {
        description: DocumentDefaultVersionDescription {
            name,
            default_version: version.to_string(),
            default_version_name: ver.version_name,
        },
    })
}

fn check_read(req: &DocumentRequest) -> ApiResult<()> {
    let mut v = Violations::new();
    check_name(&mut v, req.name.as_deref(), true);
    check_version(
        &mut v,
        req.document_version.as_deref(),
        req.version_name.as_deref(),
    );
    if let Some(f) = req.document_format.as_deref() {
        v.one_of("DocumentFormat", f, &FORMATS);
    }
    finish(v)
}

pub async fn describe_document(
    st: AppState,
    req: DocumentRequest,
) -> ApiResult<DescribeDocumentResult> {
    check_read(&req)?;
    let loaded = load(
        &st,
        req.name.as_deref().unwrap_or_default(),
        req.document_version.as_deref(),
        req.version_name.as_deref(),
    )
    .await?;
    Ok(DescribeDocumentResult {
        document: description(&loaded, "Active"),
    })
}

pub async fn get_document(st: AppState, req: DocumentRequest) -> ApiResult<GetDocumentResult> {
    check_read(&req)?;
    let l = load(
        &st,
        req.name.as_deref().unwrap_or_default(),
        req.document_version.as_deref(),
        req.version_name.as_deref(),
    )
    .await?;
    let format = match req.document_format.as_deref() {
        None => l.ver.format,
        Some(f) => content_format(Some(f))?,
    };
    let content = st
        .parsers
        .convert(&l.ver.content, l.ver.format, format)
        .await?;
    Ok(GetDocumentResult {
        name: l.doc.name.clone(),
        created_date: created(l.ver.created_at),
        display_name: opt(&l.ver.display_name),
        version_name: l.ver.version_name.clone(),
        document_version: l.ver.version.to_string(),
        status: "Active".into(),
        content,
        document_type: l.doc.document_type.clone(),
        document_format: format.as_str().into(),
    })
}

pub async fn delete_document(
    st: AppState,
    caller: Caller,
    req: DocumentRequest,
) -> ApiResult<serde_json::Value> {
    let mut v = Violations::new();
    check_name(&mut v, req.name.as_deref(), false);
    check_version(
        &mut v,
        req.document_version.as_deref(),
        req.version_name.as_deref(),
    );
    finish(v)?;
    let name = req.name.clone().unwrap_or_default();
    if name == RUN_SHELL_SCRIPT {
        return Err(immutable(&name, "deleted"));
    }
    let version = if req.document_version.is_some() || req.version_name.is_some() {
        Some(
            load(
                &st,
                &name,
                req.document_version.as_deref(),
                req.version_name.as_deref(),
            )
            .await?
            .ver
            .version,
        )
    } else {
        None
    };
    st.store.delete_document(&name, version).await?;
    // No version: the whole document went.
    audit!(caller, "DeleteDocument", document = %name, version, "document deleted");
    Ok(serde_json::json!({}))
}
