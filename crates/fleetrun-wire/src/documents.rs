//! AWS SSM shapes for the document operations (CreateDocument, GetDocument, DescribeDocument,
//! ListDocuments, UpdateDocument, UpdateDocumentDefaultVersion, DeleteDocument), named exactly as
//! the botocore model names them. Requests: every member optional; responses: optional members
//! omitted when unset (the model marks none of them required).

use serde::{Deserialize, Serialize};

use crate::ssm::Tag;

// ---------------------------------------------------------------- requests

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateDocumentRequest {
    pub content: Option<String>,
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub version_name: Option<String>,
    pub document_type: Option<String>,
    pub document_format: Option<String>,
    pub target_type: Option<String>,
    pub tags: Option<Vec<Tag>>,
    pub requires: Option<serde_json::Value>,
    pub attachments: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateDocumentRequest {
    pub content: Option<String>,
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub version_name: Option<String>,
    pub document_version: Option<String>,
    pub document_format: Option<String>,
    pub target_type: Option<String>,
    pub attachments: Option<serde_json::Value>,
}

/// DescribeDocument, GetDocument and DeleteDocument requests share these members.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DocumentRequest {
    pub name: Option<String>,
    pub document_version: Option<String>,
    pub version_name: Option<String>,
    /// GetDocument only.
    pub document_format: Option<String>,
    /// DeleteDocument only.
    pub force: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateDocumentDefaultVersionRequest {
    pub name: Option<String>,
    pub document_version: Option<String>,
}

/// `DocumentKeyValuesFilter`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DocumentKeyValuesFilter {
    pub key: Option<String>,
    pub values: Option<Vec<String>>,
}

/// `DocumentFilter` (legacy): lowercase members in the model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DocumentFilter {
    pub key: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListDocumentsRequest {
    pub document_filter_list: Option<Vec<DocumentFilter>>,
    pub filters: Option<Vec<DocumentKeyValuesFilter>>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

// ---------------------------------------------------------------- responses

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DocumentParameter {
    pub name: String,
    #[serde(rename = "Type")]
    pub param_type: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
}

/// `DocumentDescription`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DocumentDescription {
    pub hash: String,
    pub hash_type: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_name: Option<String>,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_date: Option<f64>,
    pub status: String,
    pub document_version: String,
    pub description: String,
    pub parameters: Vec<DocumentParameter>,
    pub platform_types: Vec<String>,
    pub document_type: String,
    pub schema_version: String,
    pub latest_version: String,
    pub default_version: String,
    pub document_format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateDocumentResult {
    pub document_description: DocumentDescription,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDocumentResult {
    pub document: DocumentDescription,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetDocumentResult {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_name: Option<String>,
    pub document_version: String,
    pub status: String,
    pub content: String,
    pub document_type: String,
    pub document_format: String,
}

/// `DocumentIdentifier`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DocumentIdentifier {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_name: Option<String>,
    pub platform_types: Vec<String>,
    pub document_version: String,
    pub document_type: String,
    pub schema_version: String,
    pub document_format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListDocumentsResult {
    pub document_identifiers: Vec<DocumentIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `DocumentDefaultVersionDescription`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DocumentDefaultVersionDescription {
    pub name: String,
    pub default_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_version_name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateDocumentDefaultVersionResult {
    pub description: DocumentDefaultVersionDescription,
}
