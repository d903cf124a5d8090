//! fleetrun's administration API (`X-Amz-Target: FleetrunAdmin.<Operation>`, awsJson1_1, SigV4
//! signed like every SSM call). Named after IAM's access-key operations, which it mirrors in a
//! small way: a key belongs to a user name and carries one identity policy.
//!
//! ```text
//! CreateAccessKey  {UserName, PolicyDocument?, Policy?}  → {AccessKey: {AccessKeyId, SecretAccessKey, …}}
//! ListAccessKeys   {}                                     → {AccessKeyMetadata: [{AccessKeyId, UserName, Status, CreateDate, PolicyDocument}]}
//! UpdateAccessKey  {AccessKeyId, Status}                  → {}
//! DeleteAccessKey  {AccessKeyId}                          → {}
//! GetCommandOutput {CommandId, InstanceId?, NextToken?}   → {CommandStatus, Output: [{InstanceId, StepName, Stream, Offset, Content}], NextToken}
//! ```
//! `GetCommandOutput` reads a command's live output as the agents shipped it (`fleetrun tail`);
//! it is authorized as `ssm:GetCommandInvocation`, the action whose data it shows.

use serde::{Deserialize, Serialize};

pub const TARGET_PREFIX: &str = "FleetrunAdmin.";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateAccessKeyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// An IAM JSON policy document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_document: Option<String>,
    /// A built-in policy instead of a document: `FullAccess` or `ReadOnly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKeyWithSecret {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub user_name: String,
    pub status: String,
    /// Epoch seconds.
    pub create_date: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateAccessKeyResult {
    pub access_key: AccessKeyWithSecret,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAccessKeysRequest {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKeyMetadata {
    pub access_key_id: String,
    pub user_name: String,
    pub status: String,
    pub create_date: f64,
    pub policy_document: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAccessKeysResult {
    pub access_key_metadata: Vec<AccessKeyMetadata>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateAccessKeyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// `Active` or `Inactive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteAccessKeyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
}

/// The empty answer of Update and Delete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetCommandOutputRequest {
    pub command_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The previous answer's `NextToken`: only output stored after it comes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OutputPiece {
    pub instance_id: String,
    pub step_name: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// Where `content` starts in the stream, in bytes.
    pub offset: u64,
    /// The bytes as text (invalid UTF-8 as U+FFFD).
    pub content: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetCommandOutputResponse {
    /// The command's status when the read began: once it is final and a page is empty, every
    /// piece that will ever be shipped has been read.
    pub command_status: String,
    pub output: Vec<OutputPiece>,
    /// Always present: pass it back to read what arrives next.
    pub next_token: String,
}
