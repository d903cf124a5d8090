//! Where a command goes: SendCommand's `InstanceIds` or `Targets` turned into the nodes to run on,
//! and DescribeInstanceInformation's `tag-key` / `tag:<key>` filters.
//!
//! Three steps, so errors come in AWS's order: [`check`] collects constraint violations (with the
//! other members' violations, one `ValidationException`), [`interpret`] reads the target keys
//! (`ValidationException` for keys that name no target kind), [`resolve`] asks the store when the
//! command is sent (a `resource-groups:Name` group's tag query is read then, so the command follows
//! the group as it is at that moment) and checks the platforms of named nodes.
//! Several targets are ANDed, values ORed.

use std::collections::HashSet;

use fleetrun_core::command::Target;
use fleetrun_core::document_content::check_platform;
use fleetrun_core::error::{GroupQueryProblem, TargetKeyProblem};
use fleetrun_core::ids::InstanceId;
use fleetrun_core::node::Node;
use fleetrun_core::resource_groups::{type_filter_keeps_nodes, TagQuery};
use fleetrun_core::targets::{
    parse_target_key, tag_filter, target_key_ok, TargetKey, TargetSpec, MAX_TARGETS,
    MAX_TARGET_VALUES, TARGET_KEY_PATTERN,
};
use fleetrun_core::CoreError;
use fleetrun_wire::ssm::{InstanceInformationStringFilter, SendCommandRequest};
use fleetrun_wire::validate::{java_list, Violations};

use super::validate::instance_ids;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// What SendCommand asked for, interpreted but not yet resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Targeting {
    /// `InstanceIds`: exactly these nodes, in the order given.
    Ids(Vec<InstanceId>),
    /// `Targets`: the nodes matching every spec.
    Specs(Vec<TargetSpec>),
    /// `Targets` with `resource-groups:Name`: the group's members (narrowed by
    /// `resource-groups:ResourceTypeFilters` when given) that also match every spec.
    Group {
        name: String,
        types: Option<Vec<String>>,
        specs: Vec<TargetSpec>,
    },
}

/// Constraint checks on `InstanceIds` and `Targets` (lengths, counts, the key pattern).
pub fn check(v: &mut Violations, req: &SendCommandRequest) {
    let ids = req.instance_ids.as_deref().unwrap_or_default();
    v.count("InstanceIds", &java_list(ids), ids.len(), 0, Some(50));
    let targets = req.targets.as_deref().unwrap_or_default();
    v.count("Targets", "[...]", targets.len(), 0, Some(MAX_TARGETS));
    for (i, t) in targets.iter().enumerate() {
        let key = t.key.as_deref().unwrap_or("");
        let path = format!("Targets.{}.member.Key", i + 1);
        v.length(&path, key, 1, Some(163));
        v.pattern(&path, key, target_key_ok(key), TARGET_KEY_PATTERN);
        let values = t.values.as_deref().unwrap_or_default();
        v.count(
            &format!("Targets.{}.member.Values", i + 1),
            &java_list(values),
            values.len(),
            0,
            Some(MAX_TARGET_VALUES),
        );
    }
}

/// Reads the targeting members. Returns the targeting and the `InstanceIds` / `Targets` echo.
pub fn interpret(req: &SendCommandRequest) -> ApiResult<(Targeting, Vec<String>, Vec<Target>)> {
    let ids = req.instance_ids.as_deref().unwrap_or_default();
    let targets = req.targets.as_deref().unwrap_or_default();
    match (ids.is_empty(), targets.is_empty()) {
        (true, true) => {
            return Err(ApiError::Validation(
                "Either InstanceIds or Targets must be specified.".into(),
            ))
        }
        (false, false) => {
            return Err(ApiError::Validation(
                "InstanceIds and Targets cannot both be specified.".into(),
            ))
        }
        _ => {}
    }
    // Counts were checked already; this scratch collector only satisfies `instance_ids`.
    let mut scratch = Violations::new();
    if !ids.is_empty() {
        let resolved = instance_ids(&mut scratch, "InstanceIds", ids)?;
        return Ok((Targeting::Ids(resolved), ids.to_vec(), vec![]));
    }
    let mut specs = Vec::with_capacity(targets.len());
    let mut echo = Vec::with_capacity(targets.len());
    let (mut group, mut types) = (None, None);
    for t in targets {
        let key = t.key.clone().unwrap_or_default();
        let values = t.values.clone().unwrap_or_default();
        let kind = parse_target_key(&key)?;
        if values.is_empty() {
            return Err(CoreError::UnsupportedTargetKey {
                key,
                problem: TargetKeyProblem::NoValues,
            }
            .into());
        }
        echo.push(Target {
            key: key.clone(),
            values: values.clone(),
        });
        specs.push(match kind {
            TargetKey::GroupName => {
                if values.len() != 1 || group.is_some() {
                    return Err(
                        CoreError::InvalidGroupQuery(GroupQueryProblem::OneGroupName).into(),
                    );
                }
                group = values.into_iter().next();
                continue;
            }
            TargetKey::GroupTypeFilters => {
                if values.len() > fleetrun_core::resource_groups::MAX_TARGET_TYPE_FILTERS {
                    return Err(ApiError::InvalidTarget(format!(
                        "Target resource-groups:ResourceTypeFilters takes at most {} values.",
                        fleetrun_core::resource_groups::MAX_TARGET_TYPE_FILTERS
                    )));
                }
                types = Some(values);
                continue;
            }
            TargetKey::InstanceIds => TargetSpec::InstanceIds(instance_ids(
                &mut scratch,
                "Targets.member.Values",
                &values,
            )?),
            TargetKey::Tag(tag) => TargetSpec::Tag { key: tag, values },
            TargetKey::TagKey => TargetSpec::TagKeys(values),
        });
    }
    let targeting = match (group, types) {
        (Some(name), types) => Targeting::Group { name, types, specs },
        (None, Some(_)) => {
            return Err(
                CoreError::InvalidGroupQuery(GroupQueryProblem::TypeFiltersWithoutName).into(),
            )
        }
        (None, None) => Targeting::Specs(specs),
    };
    Ok((targeting, vec![], echo))
}

/// Named node ids must all be registered (`InvalidInstanceId` lists the others); returns the nodes.
async fn registered(st: &AppState, ids: &[InstanceId]) -> ApiResult<Vec<Node>> {
    let mut nodes = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in ids {
        match st.store.node(id).await? {
            Some(node) => nodes.push(node),
            None => missing.push(id.to_string()),
        }
    }
    if missing.is_empty() {
        return Ok(nodes);
    }
    Err(ApiError::InvalidInstanceId(format!(
        "Instances [[{}]] not in a valid state for account.",
        missing.join(", ")
    )))
}

/// The nodes the command goes to, resolved now (tags added later do not join the command).
///
/// Nodes named in `InstanceIds` must run on one of the document's `platform_types`, else the
/// request fails with `UnsupportedPlatformType` (core `document_content::check_platform`, which
/// cites the AWS sources). Nodes reached through `Targets` are not checked here.
pub async fn resolve(
    st: &AppState,
    targeting: Targeting,
    platform_types: &[String],
) -> ApiResult<Vec<InstanceId>> {
    match targeting {
        Targeting::Ids(ids) => {
            for node in registered(st, &ids).await? {
                check_platform(
                    platform_types,
                    node.instance_id.as_str(),
                    &node.info.platform_type,
                )?;
            }
            Ok(ids)
        }
        Targeting::Specs(specs) => {
            for spec in &specs {
                if let TargetSpec::InstanceIds(ids) = spec {
                    registered(st, ids).await?;
                }
            }
            Ok(st.store.resolve_targets(&specs).await?)
        }
        Targeting::Group { name, types, specs } => group_members(st, &name, types, specs).await,
    }
}

/// A `resource-groups:Name` target: the group's members now (its query read at this moment),
/// ANDed with the other targets. A group that does not exist → `InvalidTarget`.
async fn group_members(
    st: &AppState,
    name: &str,
    types: Option<Vec<String>>,
    mut specs: Vec<TargetSpec>,
) -> ApiResult<Vec<InstanceId>> {
    let Some(group) = st.store.group(name).await? else {
        return Err(CoreError::UnknownTargetGroup { name: name.into() }.into());
    };
    if !type_filter_keeps_nodes(types.as_deref()) {
        return Ok(Vec::new());
    }
    let query = TagQuery::parse(&group.query_type, &group.query)?;
    for spec in &specs {
        if let TargetSpec::InstanceIds(ids) = spec {
            registered(st, ids).await?;
        }
    }
    specs.extend(query.specs());
    Ok(st.store.resolve_targets(&specs).await?)
}

/// DescribeInstanceInformation: takes the `tag-key` / `tag:<key>` filters out of `filters` and
/// returns the set of nodes they allow (`None` when there are none). Tag filters cannot be combined
/// with other filters (AWS's rule) → `ValidationException`.
pub async fn take_tag_filters(
    st: &AppState,
    filters: &mut Vec<InstanceInformationStringFilter>,
    other_filters: bool,
) -> ApiResult<Option<HashSet<InstanceId>>> {
    let (tagged, rest): (Vec<_>, Vec<_>) = std::mem::take(filters).into_iter().partition(|f| {
        let key = f.key.as_deref().unwrap_or_default();
        key == "tag-key" || key.starts_with("tag:")
    });
    *filters = rest;
    if tagged.is_empty() {
        return Ok(None);
    }
    if other_filters || !filters.is_empty() {
        return Err(ApiError::Validation(
            "Tag filters (tag-key, tag:<key>) cannot be combined with other filter types.".into(),
        ));
    }
    let specs: Vec<TargetSpec> = tagged
        .iter()
        .filter_map(|f| {
            tag_filter(
                f.key.as_deref().unwrap_or_default(),
                f.values.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    Ok(Some(
        st.store
            .resolve_targets(&specs)
            .await?
            .into_iter()
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetrun_wire::ssm::Target as WireTarget;

    fn req(targets: &[(&str, &[&str])]) -> SendCommandRequest {
        SendCommandRequest {
            targets: Some(
                targets
                    .iter()
                    .map(|(k, vs)| WireTarget {
                        key: Some(k.to_string()),
                        values: Some(vs.iter().map(|s| s.to_string()).collect()),
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn interprets_targets_in_order() {
        let (t, ids, echo) =
            interpret(&req(&[("tag:role", &["web", "db"]), ("tag-key", &["env"])])).expect("valid");
        assert!(ids.is_empty());
        assert_eq!(echo.len(), 2);
        assert_eq!(
            t,
            Targeting::Specs(vec![
                TargetSpec::Tag {
                    key: "role".into(),
                    values: vec!["web".into(), "db".into()]
                },
                TargetSpec::TagKeys(vec!["env".into()]),
            ])
        );
        let code = |r: ApiResult<_>| r.err().map(|e: ApiError| e.code());
        assert_eq!(
            code(interpret(&req(&[("tag:role", &[])]))),
            Some("ValidationException")
        );
        assert!(matches!(
            interpret(&req(&[("resource-groups:Name", &["g"])])),
            Ok((Targeting::Group { .. }, _, _))
        ));
        assert_eq!(
            code(interpret(&req(&[("resource-groups:Name", &["g", "h"])]))),
            Some("InvalidTarget")
        );
        assert_eq!(
            code(interpret(&req(&[(
                "resource-groups:ResourceTypeFilters",
                &["AWS::SSM::ManagedInstance"]
            )]))),
            Some("InvalidTarget")
        );
        assert_eq!(
            code(interpret(&req(&[("Environment", &["prod"])]))),
            Some("ValidationException")
        );
        assert_eq!(
            code(interpret(&req(&[("InstanceIds", &["nope"])]))),
            Some("InvalidInstanceId")
        );
        assert_eq!(
            code(interpret(&SendCommandRequest::default())),
            Some("ValidationException")
        );
    }
}
