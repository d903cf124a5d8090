//! The CloudWatch Logs API subset over live output (ARCHITECTURE.md, "Live output"):
//! DescribeLogGroups, DescribeLogStreams, GetLogEvents, FilterLogEvents. Each call is authorized
//! as `logs:<Op>` on its log group's ARN.

mod events;

use fleetrun_core::live_output::{LogGroup, LogStream, StreamOrder, StreamQuery};
use fleetrun_wire::logs as wire;

use crate::auth::{Caller, ACCOUNT_ID};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub use events::{filter_log_events, get_log_events};

/// Most groups or streams one describe call returns (the model's maximum and default).
const MAX_DESCRIBE: i64 = 50;

pub(crate) fn group_arn(region: &str, group: &str) -> String {
    format!("arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{group}")
}

/// Authorizes `logs:<op>` on a group (`*` for every group).
pub(crate) fn authorize(st: &AppState, caller: &Caller, op: &str, group: &str) -> ApiResult<()> {
    let resource = format!("{}:*", group_arn(&st.config.region, group));
    caller.authorize(&format!("logs:{op}"), &resource, &[])
}

/// The group a request names: `logGroupName`, or `logGroupIdentifier` (a name or an ARN);
/// exactly one of them.
pub(crate) fn named_group(name: Option<String>, identifier: Option<String>) -> ApiResult<String> {
    match (name, identifier) {
        (Some(_), Some(_)) => Err(ApiError::InvalidParameter(
            "LogGroupName and LogGroupIdentifier are mutually exclusive parameters.".into(),
        )),
        (Some(name), None) => check_group_name(name),
        (None, Some(id)) => match id.strip_prefix("arn:") {
            Some(_) => id
                .split_once(":log-group:")
                .map(|(_, rest)| rest.strip_suffix(":*").unwrap_or(rest).to_owned())
                .ok_or_else(|| ApiError::InvalidParameter(format!("{id} is not a log group ARN."))),
            None => check_group_name(id),
        },
        (None, None) => Err(ApiError::InvalidParameter(
            "Either LogGroupName or LogGroupIdentifier must be provided.".into(),
        )),
    }
}

fn check_group_name(name: String) -> ApiResult<String> {
    if name.is_empty() || name.chars().count() > 512 {
        return Err(constraint(
            "logGroupName",
            &name,
            "Member must have length between 1 and 512",
        ));
    }
    Ok(name)
}

/// The Logs API's sentence for a violated model constraint.
pub(crate) fn constraint(member: &str, value: &str, rule: &str) -> ApiError {
    ApiError::InvalidParameter(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {rule}"
    ))
}

/// A `limit` within `1..=max`, or `default` when absent.
pub(crate) fn limit(value: Option<i64>, max: i64, default: i64) -> ApiResult<usize> {
    let n = value.unwrap_or(default);
    if !(1..=max).contains(&n) {
        return Err(constraint(
            "limit",
            &n.to_string(),
            &format!("Member must have value between 1 and {max}"),
        ));
    }
    Ok(usize::try_from(n).unwrap_or(1))
}

pub(crate) fn group_not_found() -> ApiError {
    ApiError::LogResourceNotFound("The specified log group does not exist.".into())
}

pub(crate) fn bad_token() -> ApiError {
    ApiError::InvalidParameter("The specified nextToken is invalid.".into())
}

fn group_shape(st: &AppState, g: LogGroup) -> wire::LogGroup {
    let arn = group_arn(&st.config.region, &g.name);
    wire::LogGroup {
        creation_time: g.created_at,
        retention_in_days: st
            .config
            .retention
            .map(|d| i64::try_from(d.as_secs() / 86_400).unwrap_or(i64::MAX)),
        metric_filter_count: 0,
        arn: format!("{arn}:*"),
        stored_bytes: g.stored_bytes,
        log_group_class: "STANDARD".into(),
        log_group_arn: arn,
        log_group_name: g.name,
    }
}

pub async fn describe_log_groups(
    st: AppState,
    caller: Caller,
    req: wire::DescribeLogGroupsRequest,
) -> ApiResult<wire::DescribeLogGroupsResponse> {
    authorize(&st, &caller, "DescribeLogGroups", "*")?;
    if req.log_group_name_pattern.is_some() && req.log_group_name_prefix.is_some() {
        return Err(ApiError::InvalidParameter(
            "LogGroupNamePrefix and LogGroupNamePattern are mutually exclusive parameters.".into(),
        ));
    }
    if req.log_group_name_pattern.is_some() {
        return Err(ApiError::InvalidParameter(
            "logGroupNamePattern is not supported by this server; use logGroupNamePrefix.".into(),
        ));
    }
    let limit = limit(req.limit, MAX_DESCRIBE, MAX_DESCRIBE)?;
    let prefix = req.log_group_name_prefix.unwrap_or_default();
    let after = match &req.next_token {
        Some(t) => Some(t.strip_prefix("g/").ok_or_else(bad_token)?),
        None => None,
    };
    let mut groups = st.store.log_groups(&prefix, after, limit + 1).await?;
    let next_token = more(&mut groups, limit).map(|last| format!("g/{}", last.name));
    Ok(wire::DescribeLogGroupsResponse {
        log_groups: groups.into_iter().map(|g| group_shape(&st, g)).collect(),
        next_token,
    })
}

/// Cuts a page fetched with one extra row back to `limit`; the last row kept when there is more.
fn more<T: Clone>(rows: &mut Vec<T>, limit: usize) -> Option<T> {
    if rows.len() > limit {
        rows.truncate(limit);
        rows.last().cloned()
    } else {
        None
    }
}

pub async fn describe_log_streams(
    st: AppState,
    caller: Caller,
    req: wire::DescribeLogStreamsRequest,
) -> ApiResult<wire::DescribeLogStreamsResponse> {
    let group = named_group(req.log_group_name, req.log_group_identifier)?;
    authorize(&st, &caller, "DescribeLogStreams", &group)?;
    let order = match req.order_by.as_deref() {
        None | Some("LogStreamName") => StreamOrder::Name,
        Some("LastEventTime") => StreamOrder::LastEventTime,
        Some(other) => {
            return Err(constraint(
                "orderBy",
                other,
                "Member must satisfy enum value set: [LogStreamName, LastEventTime]",
            ))
        }
    };
    let prefix = req.log_stream_name_prefix.unwrap_or_default();
    if order == StreamOrder::LastEventTime && !prefix.is_empty() {
        return Err(ApiError::InvalidParameter(
            "Cannot order by LastEventTime with a logStreamNamePrefix.".into(),
        ));
    }
    let limit = limit(req.limit, MAX_DESCRIBE, MAX_DESCRIBE)?;
    let after = match &req.next_token {
        Some(t) => Some(decode_stream_token(t).ok_or_else(bad_token)?),
        None => None,
    };
    let mut streams = st
        .store
        .log_streams(StreamQuery {
            group: group.clone(),
            prefix,
            order,
            descending: req.descending.unwrap_or(false),
            after,
            limit: limit + 1,
        })
        .await?
        .ok_or_else(group_not_found)?;
    let next_token =
        more(&mut streams, limit).map(|last| format!("s/{}/{}", last.last_event_at, last.name));
    let arn = group_arn(&st.config.region, &group);
    Ok(wire::DescribeLogStreamsResponse {
        log_streams: streams
            .into_iter()
            .map(|s: LogStream| wire::LogStream {
                arn: format!("{arn}:log-stream:{}", s.name),
                creation_time: s.created_at,
                first_event_timestamp: s.first_event_at,
                last_event_timestamp: s.last_event_at,
                last_ingestion_time: s.last_event_at,
                stored_bytes: s.stored_bytes,
                log_stream_name: s.name,
            })
            .collect(),
        next_token,
    })
}

/// `s/<last event time>/<name>`: where a DescribeLogStreams page stopped.
fn decode_stream_token(token: &str) -> Option<(i64, String)> {
    let rest = token.strip_prefix("s/")?;
    let (at, name) = rest.split_once('/')?;
    Some((at.parse().ok()?, name.to_owned()))
}
