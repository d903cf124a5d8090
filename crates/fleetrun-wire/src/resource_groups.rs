//! AWS Resource Groups shapes (rest-json, `resource-groups-2017-11-27`) for the operations fleetrun
//! serves: CreateGroup, GetGroup, GetGroupQuery, UpdateGroupQuery, DeleteGroup, ListGroups,
//! ListGroupResources, SearchResources. Names exactly as the botocore model spells them; request
//! members all optional so the server answers the model's errors for missing ones. No I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The service name requests are signed for (the model's `signingName`).
pub const SIGNING_SERVICE: &str = "resource-groups";

/// Each operation's HTTP path (all `POST`), from the model's `requestUri`.
pub const OPERATIONS: &[(&str, &str)] = &[
    ("/groups", "CreateGroup"),
    ("/get-group", "GetGroup"),
    ("/get-group-query", "GetGroupQuery"),
    ("/update-group-query", "UpdateGroupQuery"),
    ("/delete-group", "DeleteGroup"),
    ("/groups-list", "ListGroups"),
    ("/list-group-resources", "ListGroupResources"),
    ("/resources/search", "SearchResources"),
];

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceQuery {
    #[serde(default)]
    pub r#type: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateGroupInput {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub resource_query: Option<ResourceQuery>,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub configuration: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub criticality: Option<i64>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// GetGroup, GetGroupQuery, DeleteGroup: `Group` (name or ARN), or the deprecated `GroupName`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupRef {
    #[serde(default)]
    pub group_name: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateGroupQueryInput {
    #[serde(default)]
    pub group_name: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub resource_query: Option<ResourceQuery>,
}

/// A `GroupFilter` (ListGroups) or `ResourceFilter` (ListGroupResources).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Filter {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub values: Option<Vec<String>>,
}

/// ListGroups' body (its `MaxResults` / `NextToken` travel in the query string).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGroupsInput {
    #[serde(default)]
    pub filters: Option<Vec<Filter>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGroupResourcesInput {
    #[serde(default)]
    pub group_name: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub filters: Option<Vec<Filter>>,
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchResourcesInput {
    #[serde(default)]
    pub resource_query: Option<ResourceQuery>,
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Group {
    pub group_arn: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupIdentifier {
    pub group_name: String,
    pub group_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupQuery {
    pub group_name: String,
    pub resource_query: ResourceQuery,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateGroupOutput {
    pub group: Group,
    pub resource_query: ResourceQuery,
}

/// GetGroup and DeleteGroup.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupOutput {
    pub group: Group,
}

/// GetGroupQuery and UpdateGroupQuery.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupQueryOutput {
    pub group_query: GroupQuery,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGroupsOutput {
    pub group_identifiers: Vec<GroupIdentifier>,
    /// Deprecated by the model in favour of `GroupIdentifiers`; still filled, as AWS does.
    pub groups: Vec<Group>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceIdentifier {
    pub resource_arn: String,
    pub resource_type: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGroupResourcesItem {
    pub identifier: ResourceIdentifier,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGroupResourcesOutput {
    pub resources: Vec<ListGroupResourcesItem>,
    /// Deprecated by the model in favour of `Resources`; still filled, as AWS does.
    pub resource_identifiers: Vec<ResourceIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    pub query_errors: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchResourcesOutput {
    pub resource_identifiers: Vec<ResourceIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    pub query_errors: Vec<serde_json::Value>,
}
