//! Resource groups: a tag query saved under a name (AWS Resource Groups, `TAG_FILTERS_1_0`), and
//! what such a query matches. SendCommand's `resource-groups:Name` target and the Resource Groups
//! API (`ListGroupResources`, `SearchResources`) both turn a group's query into [`TargetSpec`]s and
//! let the store resolve them exactly as tag targets are resolved.
//!
//! The only resources fleetrun has are managed nodes, so a query must ask for
//! `AWS::SSM::ManagedInstance` or `AWS::AllSupported` (which then means managed nodes); any other
//! type is refused rather than silently matching nothing (ARCHITECTURE.md, "Resource groups").
//! Semantics of `TAG_FILTERS_1_0` (AWS Resource Groups user guide): the filters are ANDed, the
//! values of one filter ORed, a filter without values matches any value of its key.
//! No I/O, no wire format.

use serde::Deserialize;

use crate::clock::Millis;
use crate::error::{CoreError, CoreResult, GroupQueryProblem};
use crate::targets::{tag_text_ok, TargetSpec, TAG_KEY_MAX, TAG_KEY_MIN, TAG_VALUE_MAX};

/// The one query type fleetrun evaluates.
pub const TAG_FILTERS: &str = "TAG_FILTERS_1_0";
/// The resource type of a managed node.
pub const MANAGED_INSTANCE: &str = "AWS::SSM::ManagedInstance";
/// "Every type the service supports": for fleetrun, managed nodes.
pub const ALL_SUPPORTED: &str = "AWS::AllSupported";
/// Most `TagFilters` in one query (AWS's documented limit).
pub const MAX_TAG_FILTERS: usize = 50;
/// Most values in one tag filter (AWS's documented limit).
pub const MAX_TAG_FILTER_VALUES: usize = 20;
/// Most `ResourceTypeFilters` entries fleetrun accepts (it knows two types).
pub const MAX_RESOURCE_TYPES: usize = 20;
/// Most values of SendCommand's `resource-groups:ResourceTypeFilters` (User Guide: up to 5).
pub const MAX_TARGET_TYPE_FILTERS: usize = 5;

/// A stored group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGroup {
    pub name: String,
    pub description: Option<String>,
    /// The `ResourceQuery` as given (type and query text), echoed by GetGroupQuery.
    pub query_type: String,
    pub query: String,
    pub created_at: Millis,
}

/// A parsed `TAG_FILTERS_1_0` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagQuery {
    pub resource_types: Vec<String>,
    /// (key, values); empty values: any value of the key.
    pub tag_filters: Vec<(String, Vec<String>)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawQuery {
    resource_type_filters: Option<Vec<String>>,
    tag_filters: Option<Vec<RawFilter>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawFilter {
    key: String,
    #[serde(default)]
    values: Vec<String>,
}

fn bad(problem: GroupQueryProblem) -> CoreError {
    CoreError::InvalidGroupQuery(problem)
}

/// True for the resource types fleetrun serves (managed nodes, or all supported).
pub fn supported_type(t: &str) -> bool {
    t == MANAGED_INSTANCE || t == ALL_SUPPORTED
}

fn check_tag(text: &str, min: usize, max: usize) -> CoreResult<()> {
    let n = text.chars().count();
    if n < min || n > max || !tag_text_ok(text) {
        return Err(bad(GroupQueryProblem::BadTag(text.to_string())));
    }
    Ok(())
}

impl TagQuery {
    /// Parses and checks a `ResourceQuery`: its type must be `TAG_FILTERS_1_0`, its query the
    /// JSON object `{"ResourceTypeFilters": [...], "TagFilters": [{"Key", "Values"}]}`.
    pub fn parse(query_type: &str, query: &str) -> CoreResult<Self> {
        if query_type != TAG_FILTERS {
            return Err(bad(GroupQueryProblem::UnsupportedType(query_type.into())));
        }
        let raw: RawQuery = serde_json::from_str(query)
            .map_err(|e| bad(GroupQueryProblem::Malformed(e.to_string())))?;
        let resource_types = raw.resource_type_filters.unwrap_or_default();
        if resource_types.is_empty() {
            return Err(bad(GroupQueryProblem::NoResourceTypes));
        }
        if resource_types.len() > MAX_RESOURCE_TYPES {
            return Err(bad(GroupQueryProblem::TooMany {
                what: "ResourceTypeFilters",
                max: MAX_RESOURCE_TYPES,
            }));
        }
        if let Some(other) = resource_types.iter().find(|t| !supported_type(t)) {
            return Err(bad(GroupQueryProblem::UnsupportedResourceType(
                other.clone(),
            )));
        }
        let filters = raw.tag_filters.unwrap_or_default();
        if filters.is_empty() {
            return Err(bad(GroupQueryProblem::NoTagFilters));
        }
        if filters.len() > MAX_TAG_FILTERS {
            return Err(bad(GroupQueryProblem::TooMany {
                what: "TagFilters",
                max: MAX_TAG_FILTERS,
            }));
        }
        let mut tag_filters = Vec::with_capacity(filters.len());
        for f in filters {
            check_tag(&f.key, TAG_KEY_MIN, TAG_KEY_MAX)?;
            if f.values.len() > MAX_TAG_FILTER_VALUES {
                return Err(bad(GroupQueryProblem::TooMany {
                    what: "TagFilters.Values",
                    max: MAX_TAG_FILTER_VALUES,
                }));
            }
            for v in &f.values {
                check_tag(v, 0, TAG_VALUE_MAX)?;
            }
            tag_filters.push((f.key, f.values));
        }
        Ok(Self {
            resource_types,
            tag_filters,
        })
    }

    /// The target specs whose resolution is this query's members (ANDed filters, ORed values).
    pub fn specs(&self) -> Vec<TargetSpec> {
        self.tag_filters
            .iter()
            .map(|(key, values)| {
                if values.is_empty() {
                    TargetSpec::TagKeys(vec![key.clone()])
                } else {
                    TargetSpec::Tag {
                        key: key.clone(),
                        values: values.clone(),
                    }
                }
            })
            .collect()
    }
}

/// The group name in a `Group` / `GroupName` member, which may be the group's ARN
/// (`arn:aws:resource-groups:<region>:<account>:group/<name>`).
pub fn group_name(identifier: &str) -> &str {
    if identifier.starts_with("arn:") {
        if let Some((_, name)) = identifier.split_once(":group/") {
            return name;
        }
    }
    identifier
}

/// Whether SendCommand's `resource-groups:ResourceTypeFilters` values keep managed nodes (the only
/// members a group has here). `None` (no filter) keeps them.
pub fn type_filter_keeps_nodes(types: Option<&[String]>) -> bool {
    types.is_none_or(|ts| ts.iter().any(|t| supported_type(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = r#"{"ResourceTypeFilters":["AWS::SSM::ManagedInstance"],"TagFilters":[{"Key":"env","Values":["prod","stage"]},{"Key":"role"}]}"#;

    #[test]
    fn parses_tag_filters_into_specs() {
        let q = TagQuery::parse(TAG_FILTERS, Q).expect("valid");
        assert_eq!(
            q.specs(),
            vec![
                TargetSpec::Tag {
                    key: "env".into(),
                    values: vec!["prod".into(), "stage".into()]
                },
                TargetSpec::TagKeys(vec!["role".into()]),
            ]
        );
    }

    #[test]
    fn refuses_what_it_cannot_evaluate() {
        let problem = |t: &str, q: &str| match TagQuery::parse(t, q) {
            Err(CoreError::InvalidGroupQuery(p)) => Some(p),
            _ => None,
        };
        assert!(matches!(
            problem("CLOUDFORMATION_STACK_1_0", Q),
            Some(GroupQueryProblem::UnsupportedType(_))
        ));
        assert!(matches!(
            problem(TAG_FILTERS, "{nope"),
            Some(GroupQueryProblem::Malformed(_))
        ));
        assert!(matches!(
            problem(
                TAG_FILTERS,
                r#"{"ResourceTypeFilters":["AWS::EC2::Instance"],"TagFilters":[{"Key":"a"}]}"#
            ),
            Some(GroupQueryProblem::UnsupportedResourceType(_))
        ));
        assert_eq!(
            problem(TAG_FILTERS, r#"{"TagFilters":[{"Key":"a"}]}"#),
            Some(GroupQueryProblem::NoResourceTypes)
        );
        assert_eq!(
            problem(
                TAG_FILTERS,
                r#"{"ResourceTypeFilters":["AWS::AllSupported"]}"#
            ),
            Some(GroupQueryProblem::NoTagFilters)
        );
        assert!(matches!(
            problem(
                TAG_FILTERS,
                r#"{"ResourceTypeFilters":["AWS::AllSupported"],"TagFilters":[{"Key":"a*b"}]}"#
            ),
            Some(GroupQueryProblem::BadTag(_))
        ));
    }

    #[test]
    fn names_and_type_filters() {
        assert_eq!(group_name("web"), "web");
        assert_eq!(
            group_name("arn:aws:resource-groups:us-east-1:123456789012:group/web"),
            "web"
        );
        assert!(type_filter_keeps_nodes(None));
        assert!(type_filter_keeps_nodes(Some(&[MANAGED_INSTANCE.into()])));
        assert!(!type_filter_keeps_nodes(Some(&[
            "AWS::EC2::Instance".into()
        ])));
    }
}
