//! AddTagsToResource / RemoveTagsFromResource / ListTagsForResource for managed nodes.
//!
//! Only `ResourceType: ManagedInstance` (registered `mi-…` nodes) is taggable here; the other
//! members of the model's enum answer `InvalidResourceType` (Document included, until documents
//! carry tags). Constraint violations answer `ValidationException` in AWS's wording; keys in the
//! reserved `aws:` namespace are refused the same way (choice: AWS documents the reservation, not
//! the SSM error code).

use fleetrun_core::ids::InstanceId;
use fleetrun_core::node::Tag;
use fleetrun_core::targets::{
    is_reserved_key, tag_text_ok, MAX_TAGS_PER_REQUEST, TAG_KEY_MAX, TAG_KEY_MIN, TAG_PATTERN,
    TAG_VALUE_MAX,
};
use fleetrun_core::CoreError;
use fleetrun_wire::ssm;
use fleetrun_wire::tags::{
    AddTagsToResourceRequest, EmptyResult, ListTagsForResourceRequest, ListTagsForResourceResult,
    RemoveTagsFromResourceRequest,
};
use fleetrun_wire::validate::Violations;

use super::validate::finish;
use crate::audit::audit;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The model's `ResourceTypeForTagging` enum.
const RESOURCE_TYPES: [&str; 10] = [
    "Document",
    "ManagedInstance",
    "MaintenanceWindow",
    "Parameter",
    "PatchBaseline",
    "OpsItem",
    "OpsMetadata",
    "Automation",
    "Association",
    "CloudConnector",
];

/// Required ResourceType (enum) and ResourceId.
fn check_resource(v: &mut Violations, resource_type: Option<&str>, resource_id: Option<&str>) {
    match resource_type {
        None => v.required("ResourceType", false),
        Some(t) => v.one_of("ResourceType", t, &RESOURCE_TYPES),
    }
    v.required("ResourceId", resource_id.is_some());
}

/// A tag key: 1..128 characters of the model's pattern.
fn check_key(v: &mut Violations, path: &str, key: &str) {
    v.length(path, key, TAG_KEY_MIN, Some(TAG_KEY_MAX));
    v.pattern(path, key, tag_text_ok(key), TAG_PATTERN);
}

/// After the constraint checks: the node a ManagedInstance resource id names.
fn managed_instance(resource_type: &str, resource_id: &str) -> ApiResult<InstanceId> {
    if resource_type != "ManagedInstance" {
        return Err(CoreError::UnsupportedResourceType {
            resource_type: resource_type.to_string(),
        }
        .into());
    }
    InstanceId::parse(resource_id)
        .filter(|id| id.as_str().starts_with("mi-"))
        .ok_or_else(|| CoreError::UnknownResource(resource_id.to_string()).into())
}

fn refuse_reserved(keys: &[&str]) -> ApiResult<()> {
    match keys.iter().find(|k| is_reserved_key(k)) {
        Some(k) => Err(ApiError::Validation(format!(
            "Tag key '{k}' is not valid: keys starting with 'aws:' are reserved for AWS use."
        ))),
        None => Ok(()),
    }
}

pub async fn add_tags_to_resource(
    st: AppState,
    caller: Caller,
    req: AddTagsToResourceRequest,
) -> ApiResult<EmptyResult> {
    let mut v = Violations::new();
    check_resource(
        &mut v,
        req.resource_type.as_deref(),
        req.resource_id.as_deref(),
    );
    match req.tags.as_deref() {
        None => v.required("Tags", false),
        Some(t) => v.count("Tags", "[...]", t.len(), 0, Some(MAX_TAGS_PER_REQUEST)),
    }
    let input = req.tags.unwrap_or_default();
    let mut tags = Vec::with_capacity(input.len());
    for (i, t) in input.iter().enumerate() {
        let at = |m: &str| format!("Tags.{}.member.{m}", i + 1);
        match t.key.as_deref() {
            None => v.required(&at("Key"), false),
            Some(k) => check_key(&mut v, &at("Key"), k),
        }
        match t.value.as_deref() {
            None => v.required(&at("Value"), false),
            Some(val) => {
                v.length(&at("Value"), val, 0, Some(TAG_VALUE_MAX));
                v.pattern(&at("Value"), val, tag_text_ok(val), TAG_PATTERN);
            }
        }
        tags.push(Tag {
            key: t.key.clone().unwrap_or_default(),
            value: t.value.clone().unwrap_or_default(),
        });
    }
    finish(v)?;
    let node = managed_instance(
        req.resource_type.as_deref().unwrap_or_default(),
        req.resource_id.as_deref().unwrap_or_default(),
    )?;
    refuse_reserved(&tags.iter().map(|t| t.key.as_str()).collect::<Vec<_>>())?;
    st.store.add_node_tags(&node, &tags).await?;
    // Keys only: tag values are the caller's data.
    let keys: Vec<&str> = tags.iter().map(|t| t.key.as_str()).collect();
    audit!(caller, "AddTagsToResource", instance_id = %node, keys = ?keys, "tags added");
    Ok(EmptyResult {})
}

pub async fn remove_tags_from_resource(
    st: AppState,
    caller: Caller,
    req: RemoveTagsFromResourceRequest,
) -> ApiResult<EmptyResult> {
    let mut v = Violations::new();
    check_resource(
        &mut v,
        req.resource_type.as_deref(),
        req.resource_id.as_deref(),
    );
    v.required("TagKeys", req.tag_keys.is_some());
    let keys = req.tag_keys.unwrap_or_default();
    for (i, k) in keys.iter().enumerate() {
        check_key(&mut v, &format!("TagKeys.{}.member", i + 1), k);
    }
    finish(v)?;
    let node = managed_instance(
        req.resource_type.as_deref().unwrap_or_default(),
        req.resource_id.as_deref().unwrap_or_default(),
    )?;
    refuse_reserved(&keys.iter().map(String::as_str).collect::<Vec<_>>())?;
    st.store.remove_node_tags(&node, &keys).await?;
    audit!(caller, "RemoveTagsFromResource", instance_id = %node, keys = ?keys, "tags removed");
    Ok(EmptyResult {})
}

pub async fn list_tags_for_resource(
    st: AppState,
    req: ListTagsForResourceRequest,
) -> ApiResult<ListTagsForResourceResult> {
    let mut v = Violations::new();
    check_resource(
        &mut v,
        req.resource_type.as_deref(),
        req.resource_id.as_deref(),
    );
    finish(v)?;
    let node = managed_instance(
        req.resource_type.as_deref().unwrap_or_default(),
        req.resource_id.as_deref().unwrap_or_default(),
    )?;
    let tags = st.store.node_tags(&node).await?;
    Ok(ListTagsForResourceResult {
        tag_list: tags
            .into_iter()
            .map(|t| ssm::Tag {
                key: t.key,
                value: t.value,
            })
            .collect(),
    })
}
