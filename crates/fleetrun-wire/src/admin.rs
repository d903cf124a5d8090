//! fleetrun's administration API (`X-Amz-Target: FleetrunAdmin.<Operation>`, awsJson1_1, SigV4
//! signed like every SSM call). Named after IAM's access-key operations, which it mirrors in a
//! small way: a key belongs to a user name and carries one identity policy.
//!
//! ```text
//! CreateAccessKey  {UserName, PolicyDocument?, Policy?}  → {AccessKey: {AccessKeyId, SecretAccessKey, …}}
//! ListAccessKeys   {}                                     → {AccessKeyMetadata: [{AccessKeyId, UserName, Status, CreateDate, PolicyDocument}]}
//! UpdateAccessKey  {AccessKeyId, Status}                  → {}
//! DeleteAccessKey  {AccessKeyId}                          → {}
//! ```

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
