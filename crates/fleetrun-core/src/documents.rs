//! Custom Command documents as the domain stores them: a document (name, type, default and latest
//! version) with numbered versions (content, format, hash, derived facts), the naming rules, version
//! selectors (`$DEFAULT`, `$LATEST`, numbers) and ListDocuments filter semantics.
//!
//! Content parsing lives in `document_content`; the runnable form is `document::DocumentSpec`.
//! This module knows nothing of the wire: the server maps these records to AWS shapes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Millis;
use crate::error::{CoreError, CoreResult};
use crate::node::Tag;

/// Largest document accepted, in bytes: the content on CreateDocument / UpdateDocument, the content
/// plus the runtime parameter values on SendCommand (fact sheet §12, from the model's
/// `MaxDocumentSizeExceeded`: "The size limit of a document is 64 KB").
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Custom documents one server keeps (the model's "500 active SSM documents").
pub const MAX_DOCUMENTS: usize = 500;
/// Versions one document keeps (AWS's documented quota).
pub const MAX_DOCUMENT_VERSIONS: u32 = 1000;
/// The account id reported as `Owner` of custom documents (LocalStack's well-known fake account).
pub const ACCOUNT_ID: &str = "000000000000";
/// The owner reported for built-in documents.
pub const AMAZON_OWNER: &str = "Amazon";
/// Name prefixes AWS reserves (compared case-insensitively).
pub const RESERVED_PREFIXES: [&str; 6] = [
    "aws",
    "amazon",
    "amzn",
    "AWSEC2",
    "AWSConfigRemediation",
    "AWSSupport",
];

/// How the content is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DocumentFormat {
    Json,
    Yaml,
}

impl DocumentFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Yaml => "YAML",
        }
    }

    /// `JSON` or `YAML`; `TEXT` (and anything else) is not a Command document format.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "JSON" => Some(Self::Json),
            "YAML" => Some(Self::Yaml),
            _ => None,
        }
    }
}

/// SHA-256 of the content as sent, lowercase hex (`DocumentDescription.Hash`, `HashType` Sha256).
pub fn content_hash(content: &str) -> String {
    hex::encode(Sha256::digest(content.as_bytes()))
}

/// `MaxDocumentSizeExceeded` when `bytes` (of `what`, for the message) exceed [`MAX_DOCUMENT_BYTES`].
pub fn check_document_size(what: &str, bytes: usize) -> CoreResult<()> {
    if bytes <= MAX_DOCUMENT_BYTES {
        return Ok(());
    }
    Err(CoreError::MaxDocumentSizeExceeded(format!(
        "{what} is {bytes} bytes; the size limit of a document is 64 KB."
    )))
}

/// SendCommand's size rule: the document's content plus every runtime parameter value given
/// (fact sheet §3.1: "64 KB incl. runtime params"), within [`MAX_DOCUMENT_BYTES`].
pub fn check_command_size(
    content: &str,
    parameters: &BTreeMap<String, Vec<String>>,
) -> CoreResult<()> {
    let values: usize = parameters.values().flatten().map(String::len).sum();
    check_document_size(
        "Document content plus parameter values",
        content.len().saturating_add(values),
    )
}

/// SendCommand's `DocumentHash` / `DocumentHashType` check against the resolved version's Sha256
/// `hash` (the one DescribeDocument reports). An absent type means `Sha256`; the hex digits compare
/// case-insensitively. fleetrun keeps Sha256 hashes only (AWS deprecated Sha1 and reports `HashType`
/// Sha256), so a `Sha1` hash never matches.
///
/// A mismatch is [`CoreError::DocumentHashMismatch`] (the edge answers it `InvalidDocument`, worded
/// as AWS words it).
pub fn verify_document_hash(hash: &str, given: &str, hash_type: Option<&str>) -> CoreResult<()> {
    let hash_type = hash_type.unwrap_or("Sha256");
    if hash_type == "Sha256" && given.eq_ignore_ascii_case(hash) {
        return Ok(());
    }
    Err(CoreError::DocumentHashMismatch {
        given: given.to_owned(),
        hash_type: hash_type.to_owned(),
    })
}

/// CreateDocument's rules, once the store knows whether `name` is taken and how many documents
/// exist.
pub fn check_new_document(name: &str, taken: bool, documents: usize, max: usize) -> CoreResult<()> {
    if taken {
        return Err(CoreError::DocumentAlreadyExists {
            name: name.to_owned(),
        });
    }
    if documents >= max {
        return Err(CoreError::DocumentLimitExceeded { max });
    }
    Ok(())
}

/// What the store knows about a document when a version is added to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestVersion<'a> {
    pub latest: u32,
    /// Content hash of the latest version.
    pub hash: &'a str,
    /// Versions the document has.
    pub versions: u32,
}

/// UpdateDocument's rules, in AWS's order: the base must be the latest version, the content must
/// differ from it, a version name must be unused (`version_name_taken`), and the document must have
/// room for one more of at most `max_versions`.
pub fn check_new_version(
    name: &str,
    expected_latest: u32,
    new: &NewDocumentVersion,
    current: LatestVersion<'_>,
    version_name_taken: bool,
    max_versions: u32,
) -> CoreResult<()> {
    if current.latest != expected_latest {
        return Err(CoreError::NotLatestDocumentVersion {
            name: name.to_owned(),
            latest: current.latest,
            given: expected_latest,
        });
    }
    if current.hash == new.hash {
        return Err(CoreError::DuplicateDocumentContent {
            name: name.to_owned(),
            latest: current.latest,
        });
    }
    if let (true, Some(version_name)) = (version_name_taken, &new.version_name) {
        return Err(CoreError::DuplicateDocumentVersionName {
            name: name.to_owned(),
            version_name: version_name.clone(),
        });
    }
    if current.versions >= max_versions {
        return Err(CoreError::DocumentVersionLimitExceeded {
            name: name.to_owned(),
            versions: current.versions,
        });
    }
    Ok(())
}

/// DeleteDocument of one existing `version`: `Ok(true)` when it is the only one (the whole
/// document goes), `Ok(false)` for just that version; the default version of a document that has
/// others cannot be deleted.
pub fn check_version_delete(
    name: &str,
    version: u32,
    default_version: u32,
    versions: u32,
) -> CoreResult<bool> {
    if versions <= 1 {
        return Ok(true);
    }
    if version == default_version {
        return Err(CoreError::DefaultVersionInUse {
            name: name.to_owned(),
            version,
        });
    }
    Ok(false)
}

/// A version about to be stored. Its number is assigned by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDocumentVersion {
    pub content: String,
    pub format: DocumentFormat,
    pub hash: String,
    pub schema_version: String,
    pub description: String,
    /// Derived from the plugins (`aws:runShellScript` → Linux, MacOS).
    pub platform_types: Vec<String>,
    pub version_name: Option<String>,
    pub display_name: String,
    pub target_type: String,
    pub created_at: Millis,
}

/// A stored version of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentVersion {
    pub name: String,
    pub version: u32,
    pub content: String,
    pub format: DocumentFormat,
    pub hash: String,
    pub schema_version: String,
    pub description: String,
    pub platform_types: Vec<String>,
    pub version_name: Option<String>,
    pub display_name: String,
    pub target_type: String,
    pub created_at: Millis,
}

/// A document about to be created with its first version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDocument {
    pub name: String,
    /// Always `Command` today.
    pub document_type: String,
    pub tags: Vec<Tag>,
    pub first: NewDocumentVersion,
}

/// A stored document: what all its versions share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub name: String,
    pub document_type: String,
    pub created_at: Millis,
    pub default_version: u32,
    pub latest_version: u32,
    pub tags: Vec<Tag>,
}

/// Strips an ARN (`arn:aws:ssm:<region>:<account>:document/<name>`) down to the document name.
pub fn plain_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The reserved prefix `name` starts with, if any.
pub fn reserved_prefix(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    RESERVED_PREFIXES
        .into_iter()
        .find(|p| lower.starts_with(&p.to_ascii_lowercase()))
}

/// Which version a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSelector {
    Default,
    Latest,
    Number(u32),
}

impl VersionSelector {
    /// `""` (absent) and `$DEFAULT` → default, `$LATEST` → latest, a positive number → that one.
    pub fn parse(name: &str, s: &str) -> CoreResult<Self> {
        match s {
            "" | "$DEFAULT" => Ok(Self::Default),
            "$LATEST" => Ok(Self::Latest),
            n => n
                .parse::<u32>()
                .ok()
                .filter(|v| *v > 0 && !n.starts_with('0'))
                .map(Self::Number)
                .ok_or_else(|| CoreError::UnknownDocumentVersion {
                    name: name.to_owned(),
                    version: s.to_owned(),
                }),
        }
    }

    /// The version number this selects in `doc`.
    pub fn resolve(self, doc: &Document) -> u32 {
        match self {
            Self::Default => doc.default_version,
            Self::Latest => doc.latest_version,
            Self::Number(n) => n,
        }
    }
}

/// One document as ListDocuments sees it: its default version, plus who owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedDocument {
    pub name: String,
    pub owner: String,
    /// True for the account's own documents (Owner `Self` / `Private`).
    pub own: bool,
    pub document_type: String,
    pub schema_version: String,
    pub platform_types: Vec<String>,
    pub target_type: String,
    pub tags: Vec<Tag>,
}

/// One ListDocuments filter, already checked: key and values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentFilter {
    /// `Self` | `Private` (ours), `Amazon` (built-ins), `Public` | `ThirdParty` (none here).
    Owner(String),
    /// Name prefixes (any).
    Name(Vec<String>),
    PlatformTypes(Vec<String>),
    DocumentType(Vec<String>),
    SchemaVersion(Vec<String>),
    TargetType(Vec<String>),
    /// `tag:<key>` with values (any); no values = the key is present.
    Tag(String, Vec<String>),
}

/// Valid Owner filter values.
pub const OWNER_VALUES: [&str; 5] = ["Self", "Amazon", "Private", "Public", "ThirdParty"];

impl DocumentFilter {
    /// Builds a filter from a wire key and values; `None` for an unknown key (`InvalidFilterKey`).
    pub fn new(key: &str, values: Vec<String>) -> Option<Self> {
        Some(match key {
            "Owner" => Self::Owner(values.into_iter().next().unwrap_or_default()),
            "Name" => Self::Name(values),
            "PlatformTypes" => Self::PlatformTypes(values),
            "DocumentType" => Self::DocumentType(values),
            "SchemaVersion" => Self::SchemaVersion(values),
            "TargetType" => Self::TargetType(values),
            k => Self::Tag(k.strip_prefix("tag:")?.to_string(), values),
        })
    }

    /// Whether `doc` passes this filter. Values within a filter are ORed; filters are ANDed.
    pub fn matches(&self, doc: &ListedDocument) -> bool {
        let any =
            |values: &[String], field: &str| values.is_empty() || values.iter().any(|v| v == field);
        match self {
            Self::Owner(o) => match o.as_str() {
                "Self" | "Private" => doc.own,
                "Amazon" => !doc.own,
                _ => false,
            },
            Self::Name(prefixes) => {
                prefixes.is_empty() || prefixes.iter().any(|p| doc.name.starts_with(p.as_str()))
            }
            Self::PlatformTypes(v) => {
                v.is_empty() || doc.platform_types.iter().any(|p| v.contains(p))
            }
            Self::DocumentType(v) => any(v, &doc.document_type),
            Self::SchemaVersion(v) => any(v, &doc.schema_version),
            Self::TargetType(v) => any(v, &doc.target_type),
            Self::Tag(key, values) => doc
                .tags
                .iter()
                .any(|t| &t.key == key && (values.is_empty() || values.contains(&t.value))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, own: bool) -> ListedDocument {
        ListedDocument {
            name: name.into(),
            owner: if own { ACCOUNT_ID } else { AMAZON_OWNER }.into(),
            own,
            document_type: "Command".into(),
            schema_version: "2.2".into(),
            platform_types: vec!["Linux".into(), "MacOS".into()],
            target_type: String::new(),
            tags: vec![Tag {
                key: "team".into(),
                value: "ops".into(),
            }],
        }
    }

    #[test]
    fn names_and_versions() {
        assert_eq!(
            plain_name("arn:aws:ssm:us-east-1:1:document/My-Doc"),
            "My-Doc"
        );
        assert_eq!(reserved_prefix("AWS-Mine"), Some("aws"));
        assert_eq!(reserved_prefix("amazonish"), Some("amazon"));
        assert_eq!(reserved_prefix("awsec2thing"), Some("aws"));
        assert_eq!(reserved_prefix("My-aws"), None);
        let doc = Document {
            name: "d".into(),
            document_type: "Command".into(),
            created_at: 0,
            default_version: 1,
            latest_version: 3,
            tags: vec![],
        };
        for (s, want) in [("", 1), ("$DEFAULT", 1), ("$LATEST", 3), ("2", 2)] {
            assert_eq!(VersionSelector::parse("d", s).expect(s).resolve(&doc), want);
        }
        for bad in ["0", "01", "x", "-1"] {
            assert!(VersionSelector::parse("d", bad).is_err(), "{bad}");
        }
        assert_eq!(
            content_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn filters() {
        let mine = listed("Deploy-Web", true);
        let builtin = listed("AWS-RunShellScript", false);
        let f = |k: &str, v: &[&str]| {
            DocumentFilter::new(k, v.iter().map(|s| s.to_string()).collect()).expect(k)
        };
        assert!(f("Owner", &["Self"]).matches(&mine) && !f("Owner", &["Self"]).matches(&builtin));
        assert!(f("Owner", &["Amazon"]).matches(&builtin));
        assert!(!f("Owner", &["Public"]).matches(&mine));
        assert!(f("Name", &["Dep", "X"]).matches(&mine) && !f("Name", &["dep"]).matches(&mine));
        assert!(f("PlatformTypes", &["Windows", "Linux"]).matches(&mine));
        assert!(!f("PlatformTypes", &["Windows"]).matches(&mine));
        assert!(f("DocumentType", &["Command"]).matches(&mine));
        assert!(f("SchemaVersion", &["2.2"]).matches(&mine));
        assert!(f("tag:team", &["ops", "dev"]).matches(&mine));
        assert!(f("tag:team", &[]).matches(&mine) && !f("tag:env", &[]).matches(&mine));
        assert!(DocumentFilter::new("Bogus", vec![]).is_none());
    }

    #[test]
    fn command_size_counts_content_and_parameter_values() {
        let content = "x".repeat(1000);
        let at_limit = BTreeMap::from([(
            "commands".to_string(),
            vec!["a".repeat(MAX_DOCUMENT_BYTES - 1000 - 10), "b".repeat(10)],
        )]);
        assert!(check_command_size(&content, &at_limit).is_ok());
        let over = BTreeMap::from([
            (
                "commands".to_string(),
                vec!["a".repeat(MAX_DOCUMENT_BYTES - 1000)],
            ),
            ("workingDirectory".to_string(), vec!["/".to_string()]),
        ]);
        match check_command_size(&content, &over) {
            Err(CoreError::MaxDocumentSizeExceeded(m)) => {
                assert!(m.contains(&(MAX_DOCUMENT_BYTES + 1).to_string()), "{m}")
            }
            other => panic!("expected MaxDocumentSizeExceeded, got {other:?}"),
        }
        // Parameter names do not count, only values.
        let long_name = BTreeMap::from([("n".repeat(100), vec![String::new()])]);
        assert!(check_command_size(&"x".repeat(MAX_DOCUMENT_BYTES), &long_name).is_ok());
    }

    #[test]
    fn document_hash_must_match_the_sha256() {
        let hash = content_hash("{}");
        assert!(verify_document_hash(&hash, &hash, None).is_ok());
        assert!(verify_document_hash(&hash, &hash, Some("Sha256")).is_ok());
        assert!(verify_document_hash(&hash, &hash.to_uppercase(), Some("Sha256")).is_ok());
        let wrong = content_hash("{ }");
        match verify_document_hash(&hash, &wrong, None) {
            Err(CoreError::DocumentHashMismatch { given, hash_type }) => {
                assert_eq!((given, hash_type.as_str()), (wrong, "Sha256"))
            }
            other => panic!("expected DocumentHashMismatch, got {other:?}"),
        }
        // Sha1 hashes are deprecated and never kept: even the Sha256 value does not pass as Sha1.
        assert!(matches!(
            verify_document_hash(&hash, &hash, Some("Sha1")),
            Err(CoreError::DocumentHashMismatch { hash_type, .. }) if hash_type == "Sha1"
        ));
    }

    fn version(hash: &str, version_name: Option<&str>) -> NewDocumentVersion {
        NewDocumentVersion {
            content: String::new(),
            format: DocumentFormat::Json,
            hash: hash.into(),
            schema_version: "2.2".into(),
            description: String::new(),
            platform_types: Vec::new(),
            version_name: version_name.map(Into::into),
            display_name: String::new(),
            target_type: String::new(),
            created_at: 0,
        }
    }

    #[test]
    fn new_document_rules() {
        assert!(check_new_document("d", false, 9, 10).is_ok());
        assert!(matches!(
            check_new_document("d", true, 0, 10),
            Err(CoreError::DocumentAlreadyExists { name }) if name == "d"
        ));
        assert!(matches!(
            check_new_document("d", false, 10, 10),
            Err(CoreError::DocumentLimitExceeded { max: 10 })
        ));
    }

    #[test]
    fn new_version_rules_in_order() {
        let at = |latest, versions| LatestVersion {
            latest,
            hash: "h1",
            versions,
        };
        assert!(check_new_version("d", 3, &version("h2", None), at(3, 3), false, 5).is_ok());
        assert!(matches!(
            check_new_version("d", 2, &version("h1", Some("v")), at(3, 5), true, 5),
            Err(CoreError::NotLatestDocumentVersion {
                latest: 3,
                given: 2,
                ..
            })
        ));
        assert!(matches!(
            check_new_version("d", 3, &version("h1", Some("v")), at(3, 5), true, 5),
            Err(CoreError::DuplicateDocumentContent { latest: 3, .. })
        ));
        assert!(matches!(
            check_new_version("d", 3, &version("h2", Some("v")), at(3, 5), true, 5),
            Err(CoreError::DuplicateDocumentVersionName { version_name, .. }) if version_name == "v"
        ));
        assert!(matches!(
            check_new_version("d", 3, &version("h2", None), at(3, 5), false, 5),
            Err(CoreError::DocumentVersionLimitExceeded { versions: 5, .. })
        ));
    }

    #[test]
    fn version_delete_rules() {
        assert_eq!(
            check_version_delete("d", 1, 1, 1).ok(),
            Some(true),
            "only version"
        );
        assert_eq!(check_version_delete("d", 2, 1, 3).ok(), Some(false));
        assert!(matches!(
            check_version_delete("d", 1, 1, 3),
            Err(CoreError::DefaultVersionInUse { version: 1, .. })
        ));
    }
}
