//! The Resource Groups API subset (rest-json; routing in `crate::resource_groups`): CreateGroup,
//! GetGroup, GetGroupQuery, UpdateGroupQuery, DeleteGroup, ListGroups, ListGroupResources and
//! SearchResources, for `TAG_FILTERS_1_0` queries over managed nodes.
//!
//! Constraint violations answer `BadRequestException` (the service's code for them; it has no
//! `ValidationException`), a missing group `NotFoundException` (404). What a query means lives in
//! core (`fleetrun_core::resource_groups`); members are resolved by the store exactly as
//! SendCommand's tag targets are. Members page by node id with the same signed tokens as the SSM
//! listings (`crate::token`), written in standard base64 as the model's NextToken pattern wants.

use fleetrun_core::clock::now_millis;
use fleetrun_core::ids::InstanceId;
use fleetrun_core::query::PageKey;
use fleetrun_core::resource_groups::{
    group_name, supported_type, ResourceGroup, TagQuery, MANAGED_INSTANCE,
};
use fleetrun_wire::resource_groups::{
    CreateGroupInput, CreateGroupOutput, Filter, Group, GroupIdentifier, GroupOutput, GroupQuery,
    GroupQueryOutput, GroupRef, ListGroupResourcesInput, ListGroupResourcesItem,
    ListGroupResourcesOutput, ListGroupsInput, ListGroupsOutput, ResourceIdentifier, ResourceQuery,
    SearchResourcesInput, SearchResourcesOutput, UpdateGroupQueryInput,
};
use fleetrun_wire::validate::Violations;

use super::authorize::node_resource;
use crate::audit::audit;
use crate::auth::{Caller, ACCOUNT_ID};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The model's `MaxResults` bounds; fleetrun's default when absent.
const MAX_RESULTS: i64 = 50;
/// `Description`: at most 1024 characters of letters, digits, whitespace and `_.-`.
const DESCRIPTION_MAX: usize = 1024;
/// `Query`: at most 4096 characters.
const QUERY_MAX: usize = 4096;

/// The group's ARN (`GroupArn`), in the server's region and account.
pub fn group_arn(st: &AppState, name: &str) -> String {
    format!(
        "arn:aws:resource-groups:{}:{ACCOUNT_ID}:group/{name}",
        st.config.region
    )
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn bad(v: Violations) -> ApiResult<()> {
    v.finish().map_err(ApiError::BadRequest)
}

/// The group a request names (`Group`, name or ARN, or the deprecated `GroupName`).
fn named_group(group: Option<&str>, legacy: Option<&str>) -> ApiResult<String> {
    let Some(given) = group.or(legacy) else {
        return Err(ApiError::BadRequest(
            "Either Group or GroupName must be specified.".into(),
        ));
    };
    let name = group_name(given);
    if given.chars().count() > 1600 || name.chars().count() > 300 || !name_ok(name) {
        return Err(ApiError::BadRequest(format!(
            "Group '{given}' is not a valid group name or ARN."
        )));
    }
    Ok(name.to_string())
}

/// A `ResourceQuery` checked against the model and parsed (core decides what it may ask for).
fn checked_query(q: Option<&ResourceQuery>) -> ApiResult<(String, String, TagQuery)> {
    let mut v = Violations::new();
    let (t, text) = match q {
        None => {
            v.required("ResourceQuery", false);
            (None, None)
        }
        Some(q) => (q.r#type.as_deref(), q.query.as_deref()),
    };
    if q.is_some() {
        v.required("ResourceQuery.Type", t.is_some());
        v.required("ResourceQuery.Query", text.is_some());
    }
    if let Some(text) = text {
        v.length("ResourceQuery.Query", text, 0, Some(QUERY_MAX));
    }
    bad(v)?;
    let (t, text) = (t.unwrap_or_default(), text.unwrap_or_default());
    let parsed = TagQuery::parse(t, text)?;
    Ok((t.to_string(), text.to_string(), parsed))
}

fn wire_group(st: &AppState, g: &ResourceGroup) -> Group {
    Group {
        group_arn: group_arn(st, &g.name),
        name: g.name.clone(),
        description: g.description.clone(),
    }
}

fn wire_query(g: &ResourceGroup) -> GroupQueryOutput {
    GroupQueryOutput {
        group_query: GroupQuery {
            group_name: g.name.clone(),
            resource_query: ResourceQuery {
                r#type: Some(g.query_type.clone()),
                query: Some(g.query.clone()),
            },
        },
    }
}

async fn load(st: &AppState, name: &str) -> ApiResult<ResourceGroup> {
    st.store.group(name).await?.ok_or_else(|| {
        fleetrun_core::CoreError::UnknownGroup {
            name: name.to_string(),
        }
        .into()
    })
}

pub async fn create_group(
    st: AppState,
    caller: Caller,
    input: CreateGroupInput,
) -> ApiResult<CreateGroupOutput> {
    let mut v = Violations::new();
    let name = input.name.clone().unwrap_or_default();
    v.required("Name", input.name.is_some());
    if input.name.is_some() {
        v.length("Name", &name, 1, Some(300));
        v.pattern("Name", &name, name_ok(&name), "[a-zA-Z0-9_\\.-]+");
    }
    if let Some(d) = input.description.as_deref() {
        v.length("Description", d, 0, Some(DESCRIPTION_MAX));
        let ok = d
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || "_.-".contains(c));
        v.pattern("Description", d, ok, "[\\sa-zA-Z0-9_\\.-]*");
    }
    bad(v)?;
    // AWS reserves names starting with "AWS" in any capitalization.
    if name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("aws")) {
        return Err(ApiError::BadRequest(
            "Group names cannot start with 'AWS' or 'aws'.".into(),
        ));
    }
    let unsupported = [
        ("Tags", input.tags.as_ref().is_some_and(|t| !t.is_empty())),
        (
            "Configuration",
            input.configuration.as_ref().is_some_and(|c| !c.is_empty()),
        ),
        ("Criticality", input.criticality.is_some()),
        ("Owner", input.owner.is_some()),
        ("DisplayName", input.display_name.is_some()),
    ];
    if let Some((member, _)) = unsupported.iter().find(|(_, given)| *given) {
        return Err(ApiError::BadRequest(format!(
            "{member} is not supported by this server; create the group with Name, Description \
             and ResourceQuery only."
        )));
    }
    let (query_type, query, _) = checked_query(input.resource_query.as_ref())?;
    caller.authorize("resource-groups:CreateGroup", &group_arn(&st, &name), &[])?;
    let group = ResourceGroup {
        name,
        description: input.description.filter(|d| !d.is_empty()),
        query_type,
        query,
        created_at: now_millis(),
    };
    st.store.create_group(&group).await?;
    audit!(caller, "CreateGroup", group = %group.name, "resource group created");
    Ok(CreateGroupOutput {
        group: wire_group(&st, &group),
        resource_query: wire_query(&group).group_query.resource_query,
    })
}

pub async fn get_group(st: AppState, caller: Caller, input: GroupRef) -> ApiResult<GroupOutput> {
    let name = named_group(input.group.as_deref(), input.group_name.as_deref())?;
    caller.authorize("resource-groups:GetGroup", &group_arn(&st, &name), &[])?;
    let group = load(&st, &name).await?;
    Ok(GroupOutput {
        group: wire_group(&st, &group),
    })
}

pub async fn get_group_query(
    st: AppState,
    caller: Caller,
    input: GroupRef,
) -> ApiResult<GroupQueryOutput> {
    let name = named_group(input.group.as_deref(), input.group_name.as_deref())?;
    caller.authorize("resource-groups:GetGroupQuery", &group_arn(&st, &name), &[])?;
    Ok(wire_query(&load(&st, &name).await?))
}

pub async fn update_group_query(
    st: AppState,
    caller: Caller,
    input: UpdateGroupQueryInput,
) -> ApiResult<GroupQueryOutput> {
    let name = named_group(input.group.as_deref(), input.group_name.as_deref())?;
    let (query_type, query, _) = checked_query(input.resource_query.as_ref())?;
    caller.authorize(
        "resource-groups:UpdateGroupQuery",
        &group_arn(&st, &name),
        &[],
    )?;
    let group = st
        .store
        .update_group_query(&name, &query_type, &query)
        .await?;
    audit!(caller, "UpdateGroupQuery", group = %name, "resource group query replaced");
    Ok(wire_query(&group))
}

pub async fn delete_group(st: AppState, caller: Caller, input: GroupRef) -> ApiResult<GroupOutput> {
    let name = named_group(input.group.as_deref(), input.group_name.as_deref())?;
    caller.authorize("resource-groups:DeleteGroup", &group_arn(&st, &name), &[])?;
    let group = st.store.delete_group(&name).await?;
    audit!(caller, "DeleteGroup", group = %name, "resource group deleted");
    Ok(GroupOutput {
        group: wire_group(&st, &group),
    })
}

/// `MaxResults` (1..50, default 50) and the key a `NextToken` resumes after.
fn paging(
    st: &AppState,
    scope: &str,
    max_results: Option<i64>,
    next_token: Option<&str>,
) -> ApiResult<(usize, Option<String>)> {
    let mut v = Violations::new();
    if let Some(n) = max_results {
        v.range("MaxResults", n, 1, MAX_RESULTS);
    }
    bad(v)?;
    let limit = usize::try_from(max_results.unwrap_or(MAX_RESULTS)).unwrap_or(1);
    let after = match next_token.filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => {
            let url_safe = token.replace('+', "-").replace('/', "_");
            let key = st
                .tokens
                .decode(scope, url_safe.trim_end_matches('='))
                .ok_or_else(|| ApiError::BadRequest("The specified token isn't valid.".into()))?;
            key.instance_id
        }
    };
    Ok((limit, after))
}

/// A NextToken resuming after `key`, in the model's standard-base64 alphabet.
fn token(st: &AppState, scope: &str, key: &str) -> String {
    let t = st.tokens.encode(
        scope,
        &PageKey {
            requested_at: 0,
            seq: 0,
            instance_id: Some(key.to_string()),
        },
    );
    t.replace('-', "+").replace('_', "/")
}

/// Values of the `resource-type` filter (the only filter name both listings accept).
fn resource_type_filter(
    filters: Option<&[Filter]>,
    names: &[&str],
) -> ApiResult<Option<Vec<String>>> {
    let mut types: Option<Vec<String>> = None;
    for f in filters.unwrap_or_default() {
        let name = f.name.as_deref().unwrap_or_default();
        if !names.contains(&name) {
            return Err(ApiError::BadRequest(format!(
                "Filter name '{name}' is not supported by this server; use resource-type."
            )));
        }
        let values = f.values.clone().unwrap_or_default();
        if values.is_empty() || values.len() > 5 {
            return Err(ApiError::BadRequest(
                "A filter must have between 1 and 5 values.".into(),
            ));
        }
        types.get_or_insert_with(Vec::new).extend(values);
    }
    Ok(types)
}

pub async fn list_groups(
    st: AppState,
    caller: Caller,
    input: ListGroupsInput,
    max_results: Option<i64>,
    next_token: Option<String>,
) -> ApiResult<ListGroupsOutput> {
    caller.authorize("resource-groups:ListGroups", "*", &[])?;
    let types = resource_type_filter(input.filters.as_deref(), &["resource-type"])?;
    let scope = format!("ListGroups|{types:?}");
    let (limit, mut after) = paging(&st, &scope, max_results, next_token.as_deref())?;
    let keep = |g: &ResourceGroup| match &types {
        None => true,
        Some(wanted) => TagQuery::parse(&g.query_type, &g.query)
            .map(|q| q.resource_types.iter().any(|t| wanted.contains(t)))
            .unwrap_or(false),
    };
    // One past the page, to know whether there is a next one.
    let mut page = Vec::with_capacity(limit + 1);
    loop {
        let batch = st.store.groups_page(after.as_deref(), limit + 1).await?;
        let short = batch.len() <= limit;
        after = batch.last().map(|g| g.name.clone());
        page.extend(batch.into_iter().filter(keep));
        if short || page.len() > limit {
            break;
        }
    }
    let next_token = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|g| token(&st, &scope, &g.name))
    } else {
        None
    };
    Ok(ListGroupsOutput {
        group_identifiers: page
            .iter()
            .map(|g| GroupIdentifier {
                group_name: g.name.clone(),
                group_arn: group_arn(&st, &g.name),
                description: g.description.clone(),
            })
            .collect(),
        groups: page.iter().map(|g| wire_group(&st, g)).collect(),
        next_token,
    })
}

/// One page of `members` (sorted by id) after `after`, and the token for the next.
fn member_page(
    st: &AppState,
    scope: &str,
    members: Vec<InstanceId>,
    after: Option<&str>,
    limit: usize,
) -> (Vec<ResourceIdentifier>, Option<String>) {
    let mut rest: Vec<InstanceId> = members
        .into_iter()
        .filter(|id| after.is_none_or(|a| id.as_str() > a))
        .collect();
    let next = if rest.len() > limit {
        rest.truncate(limit);
        rest.last().map(|id| token(st, scope, id.as_str()))
    } else {
        None
    };
    let ids = rest
        .iter()
        .map(|id| ResourceIdentifier {
            resource_arn: node_resource(&st.config.region, id.as_str()),
            resource_type: MANAGED_INSTANCE.to_string(),
        })
        .collect();
    (ids, next)
}

pub async fn list_group_resources(
    st: AppState,
    caller: Caller,
    input: ListGroupResourcesInput,
) -> ApiResult<ListGroupResourcesOutput> {
    let name = named_group(input.group.as_deref(), input.group_name.as_deref())?;
    caller.authorize(
        "resource-groups:ListGroupResources",
        &group_arn(&st, &name),
        &[],
    )?;
    let types = resource_type_filter(input.filters.as_deref(), &["resource-type"])?;
    let scope = format!("ListGroupResources|{name}|{types:?}");
    let (limit, after) = paging(&st, &scope, input.max_results, input.next_token.as_deref())?;
    let group = load(&st, &name).await?;
    let query = TagQuery::parse(&group.query_type, &group.query)?;
    let members = if types
        .as_ref()
        .is_none_or(|ts| ts.iter().any(|t| t == MANAGED_INSTANCE))
    {
        st.store.resolve_targets(&query.specs()).await?
    } else {
        Vec::new()
    };
    let (ids, next_token) = member_page(&st, &scope, members, after.as_deref(), limit);
    Ok(ListGroupResourcesOutput {
        resources: ids
            .iter()
            .map(|i| ListGroupResourcesItem {
                identifier: i.clone(),
            })
            .collect(),
        resource_identifiers: ids,
        next_token,
        query_errors: Vec::new(),
    })
}

pub async fn search_resources(
    st: AppState,
    caller: Caller,
    input: SearchResourcesInput,
) -> ApiResult<SearchResourcesOutput> {
    caller.authorize("resource-groups:SearchResources", "*", &[])?;
    let (query_type, text, query) = checked_query(input.resource_query.as_ref())?;
    debug_assert!(query.resource_types.iter().all(|t| supported_type(t)));
    let scope = format!("SearchResources|{query_type}|{text}");
    let (limit, after) = paging(&st, &scope, input.max_results, input.next_token.as_deref())?;
    let members = st.store.resolve_targets(&query.specs()).await?;
    let (ids, next_token) = member_page(&st, &scope, members, after.as_deref(), limit);
    Ok(SearchResourcesOutput {
        resource_identifiers: ids,
        next_token,
        query_errors: Vec::new(),
    })
}
