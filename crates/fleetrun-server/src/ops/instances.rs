//! DescribeInstanceInformation: registered nodes with their ping status and machine facts.
//!
//! Nodes come from the store by id in batches (keyset: strictly after the NextToken's node id);
//! the filters run here, since a ping status depends on the time of the request, until a page
//! plus one has matched.

use fleetrun_core::clock::now_millis;
use fleetrun_core::ids::InstanceId;
use fleetrun_core::node::Node;
use fleetrun_core::query::PageKey;
use fleetrun_wire::ssm::{
    epoch, DescribeInstanceInformationRequest, DescribeInstanceInformationResult,
    InstanceInformation, InstanceInformationFilter, InstanceInformationStringFilter,
};
use fleetrun_wire::validate::Violations;

use super::paging::Batches;
use super::validate::{finish, max_results, page_start};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// What a NextToken is bound to: every filter as the request sent it, tag filters included, so a
/// token cannot resume a listing under different filters.
fn token_scope(
    legacy: &[InstanceInformationFilter],
    modern: &[InstanceInformationStringFilter],
) -> String {
    format!(
        "DescribeInstanceInformation|{:?}|{:?}",
        legacy
            .iter()
            .map(|f| (&f.key, &f.value_set))
            .collect::<Vec<_>>(),
        modern
            .iter()
            .map(|f| (&f.key, &f.values))
            .collect::<Vec<_>>()
    )
}

const KEYS: [&str; 8] = [
    "InstanceIds",
    "AgentVersion",
    "PingStatus",
    "PlatformTypes",
    "ActivationIds",
    "IamRole",
    "ResourceType",
    "AssociationStatus",
];

/// One filter: key and accepted values (ORed); filters are ANDed.
struct Filter {
    key: String,
    values: Vec<String>,
}

fn check_values(key: &str, values: &[String]) -> ApiResult<()> {
    let allowed: &[&str] = match key {
        "PingStatus" => &["Online", "ConnectionLost", "Inactive"],
        "PlatformTypes" => &["Windows", "Linux", "MacOS"],
        "ResourceType" => &["EC2Instance", "ManagedInstance"],
        "AssociationStatus" => &["Success", "Pending", "Failed"],
        _ => return Ok(()),
    };
    match values.iter().find(|v| !allowed.contains(&v.as_str())) {
        Some(bad) => Err(ApiError::InvalidInstanceInformationFilterValue(format!(
            "The filter value '{bad}' is not valid for key {key}. Valid values: {}.",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn matches(node: &Node, ping: &str, f: &Filter) -> bool {
    let field = match f.key.as_str() {
        "InstanceIds" => node.instance_id.as_str(),
        "AgentVersion" => node.info.agent_version.as_str(),
        "PingStatus" => ping,
        "PlatformTypes" => node.info.platform_type.as_str(),
        "ActivationIds" => node.activation_id.as_str(),
        "IamRole" => node.iam_role.as_str(),
        "ResourceType" => "ManagedInstance",
        // No associations exist, so no node has an association status.
        _ => return false,
    };
    f.values.iter().any(|v| v == field)
}

pub async fn describe_instance_information(
    st: AppState,
    req: DescribeInstanceInformationRequest,
) -> ApiResult<DescribeInstanceInformationResult> {
    let mut v = Violations::new();
    let limit = max_results(&mut v, req.max_results, 5, 50, 10);
    let legacy = req.instance_information_filter_list.unwrap_or_default();
    let mut modern = req.filters.unwrap_or_default();
    for (i, f) in legacy.iter().enumerate() {
        let n = f.value_set.as_ref().map_or(0, Vec::len);
        v.count(
            &format!("InstanceInformationFilterList.{}.member.valueSet", i + 1),
            "[...]",
            n,
            1,
            Some(100),
        );
    }
    for (i, f) in modern.iter().enumerate() {
        let n = f.values.as_ref().map_or(0, Vec::len);
        v.count(
            &format!("Filters.{}.member.Values", i + 1),
            "[...]",
            n,
            1,
            Some(100),
        );
    }
    finish(v)?;
    if !legacy.is_empty() && !modern.is_empty() {
        return Err(ApiError::Validation(
            "InstanceInformationFilterList and Filters cannot be used together.".into(),
        ));
    }
    let scope = token_scope(&legacy, &modern);
    let tagged = super::targets::take_tag_filters(&st, &mut modern, !legacy.is_empty()).await?;
    let mut filters = Vec::new();
    for (key, values) in legacy
        .into_iter()
        .map(|f| (f.key.unwrap_or_default(), f.value_set.unwrap_or_default()))
        .chain(
            modern
                .into_iter()
                .map(|f| (f.key.unwrap_or_default(), f.values.unwrap_or_default())),
        )
    {
        if !KEYS.contains(&key.as_str()) {
            return Err(ApiError::InvalidFilterKey(format!(
                "The filter key '{key}' is not supported. Supported keys: {}.",
                KEYS.join(", ")
            )));
        }
        check_values(&key, &values)?;
        filters.push(Filter { key, values });
    }
    // A token's key is a node id this server wrote; anything else was not issued by it.
    let after =
        match page_start(&st, &scope, req.next_token.as_deref())?.and_then(|k| k.instance_id) {
            Some(id) => Some(InstanceId::parse(&id).ok_or(ApiError::InvalidNextToken)?),
            None => None,
        };
    let now = now_millis();
    let ping_timeout = st.ping_timeout_ms();
    let store = &st.store;
    let mut nodes = Batches::new(
        after,
        limit + 1,
        |n: &Node| n.instance_id.clone(),
        |after, n| async move { store.nodes_page(after.as_ref(), n).await },
    );
    // One past the page, to know whether there is a next one.
    let mut page: Vec<(Node, &'static str)> = Vec::with_capacity(limit + 1);
    while page.len() <= limit {
        let Some(n) = nodes.next().await? else { break };
        let ping = n.ping_status(now, ping_timeout);
        let wanted = filters.iter().all(|f| matches(&n, ping, f))
            && tagged.as_ref().is_none_or(|t| t.contains(&n.instance_id));
        if wanted {
            page.push((n, ping));
        }
    }
    let next_token = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|(n, _)| {
            st.tokens.encode(
                &scope,
                &PageKey {
                    requested_at: 0,
                    seq: 0,
                    instance_id: Some(n.instance_id.to_string()),
                },
            )
        })
    } else {
        None
    };
    Ok(DescribeInstanceInformationResult {
        instance_information_list: page
            .into_iter()
            .map(|(n, ping)| InstanceInformation {
                instance_id: n.instance_id.to_string(),
                ping_status: ping.into(),
                last_ping_date_time: epoch(n.last_ping_at),
                agent_version: n.info.agent_version,
                is_latest_version: true,
                platform_type: n.info.platform_type,
                platform_name: n.info.platform_name,
                platform_version: n.info.platform_version,
                activation_id: n.activation_id,
                iam_role: n.iam_role,
                registration_date: epoch(n.registered_at),
                resource_type: "ManagedInstance".into(),
                name: n.name,
                ip_address: n.info.ip_address,
                computer_name: n.info.computer_name,
                source_id: n.instance_id.to_string(),
                source_type: "AWS::SSM::ManagedInstance".into(),
            })
            .collect(),
        next_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(key: &str, values: &[&str]) -> InstanceInformationStringFilter {
        InstanceInformationStringFilter {
            key: Some(key.into()),
            values: Some(values.iter().map(|v| (*v).to_string()).collect()),
        }
    }

    #[test]
    fn next_tokens_are_bound_to_tag_filters_too() {
        let web = token_scope(&[], &[filter("tag:role", &["web"])]);
        assert_ne!(web, token_scope(&[], &[filter("tag:role", &["db"])]));
        assert_ne!(web, token_scope(&[], &[filter("tag-key", &["role"])]));
        assert_ne!(web, token_scope(&[], &[]));
        assert_eq!(web, token_scope(&[], &[filter("tag:role", &["web"])]));
    }
}
