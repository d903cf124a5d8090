//! Checks shared by several operations, with the model's patterns.

use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_wire::validate::{java_list, Violations};

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use fleetrun_core::query::PageKey;

pub const INSTANCE_ID_PATTERN: &str = "(^i-(\\w{8}|\\w{17})$)|(^mi-\\w{17}$)";

/// Turns collected violations into a `ValidationException`.
pub fn finish(v: Violations) -> ApiResult<()> {
    v.finish().map_err(ApiError::Validation)
}

/// A required CommandId of exactly 36 characters.
pub fn command_id(v: &mut Violations, path: &str, value: Option<&str>) -> Option<CommandId> {
    match value {
        None => {
            v.required(path, false);
            None
        }
        Some(s) => {
            v.length(path, s, 36, Some(36));
            CommandId::parse(s)
        }
    }
}

/// A node id; malformed ids are `InvalidInstanceId`, as the model's error list for these operations says.
pub fn instance_id(value: &str) -> ApiResult<InstanceId> {
    InstanceId::parse(value).ok_or_else(|| {
        ApiError::InvalidInstanceId(format!(
            "Instance id '{value}' does not satisfy the pattern {INSTANCE_ID_PATTERN}."
        ))
    })
}

/// A list of node ids: at most 50, each well-formed, none repeated.
pub fn instance_ids(v: &mut Violations, path: &str, ids: &[String]) -> ApiResult<Vec<InstanceId>> {
    v.count(path, &java_list(ids), ids.len(), 0, Some(50));
    let mut out: Vec<InstanceId> = Vec::with_capacity(ids.len());
    for raw in ids {
        let id = instance_id(raw)?;
        if out.contains(&id) {
            return Err(ApiError::DuplicateInstanceId(format!(
                "Instance {id} is specified more than once."
            )));
        }
        out.push(id);
    }
    Ok(out)
}

/// Where a page starts: nowhere for the first page (no or empty token), else the position a
/// NextToken issued for the same query (`scope`) carries; any other token is `InvalidNextToken`.
pub fn page_start(st: &AppState, scope: &str, token: Option<&str>) -> ApiResult<Option<PageKey>> {
    match token {
        None | Some("") => Ok(None),
        Some(t) => st
            .tokens
            .decode(scope, t)
            .map(Some)
            .ok_or(ApiError::InvalidNextToken),
    }
}

/// MaxResults within `min..=max`, defaulting to `default`.
pub fn max_results(
    v: &mut Violations,
    value: Option<i64>,
    min: i64,
    max: i64,
    default: usize,
) -> usize {
    match value {
        Some(n) => {
            v.range("MaxResults", n, min, max);
            n.clamp(min, max) as usize
        }
        None => default,
    }
}
