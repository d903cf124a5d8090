//! AWS SSM shapes of the tagging operations (AddTagsToResource, RemoveTagsFromResource,
//! ListTagsForResource), named exactly as the botocore model names them. Request members are all
//! optional so the server can answer AWS's errors for missing ones; responses are what AWS returns.

use serde::{Deserialize, Serialize};

use crate::ssm::Tag;

/// A tag as a request carries it (`Key` and `Value` are required by the model; checked by the server).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagInput {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddTagsToResourceRequest {
    #[serde(default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub resource_id: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<TagInput>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RemoveTagsFromResourceRequest {
    #[serde(default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub resource_id: Option<String>,
    #[serde(default)]
    pub tag_keys: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForResourceRequest {
    #[serde(default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub resource_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForResourceResult {
    pub tag_list: Vec<Tag>,
}

/// The empty `{}` of AddTagsToResource and RemoveTagsFromResource.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EmptyResult {}
