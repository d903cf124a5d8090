//! GetCommandInvocation: one node's result for one step, with the AWS output limits.

use fleetrun_core::clock::{iso8601, iso8601_duration};
use fleetrun_core::ids::CommandId;
use fleetrun_wire::ssm::{GetCommandInvocationRequest, GetCommandInvocationResult};
use fleetrun_wire::validate::Violations;

use super::validate::{finish, instance_id};
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub async fn get_command_invocation(
    st: AppState,
    req: GetCommandInvocationRequest,
) -> ApiResult<GetCommandInvocationResult> {
    let mut v = Violations::new();
    let command_id = super::validate::command_id(&mut v, "CommandId", req.command_id.as_deref());
    v.required("InstanceId", req.instance_id.is_some());
    if let Some(p) = req.plugin_name.as_deref() {
        v.length("PluginName", p, 4, None);
    }
    finish(v)?;
    let command_id: CommandId = command_id.ok_or(ApiError::InvocationDoesNotExist)?;
    let node = instance_id(req.instance_id.as_deref().unwrap_or_default())?;
    let command = st
        .store
        .command(&command_id)
        .await?
        .ok_or(ApiError::InvocationDoesNotExist)?;
    let inv = st
        .store
        .invocation(&command_id, &node)
        .await?
        .ok_or(ApiError::InvocationDoesNotExist)?;
    let views = convert::steps(&command, &inv);
    let view = match req.plugin_name.as_deref() {
        Some(name) => views.iter().find(|s| s.name == name).ok_or_else(|| {
            ApiError::InvalidPluginName(format!(
                "The plugin name {name} is not part of command {command_id}."
            ))
        })?,
        None if views.len() == 1 => &views[0],
        None => {
            return Err(ApiError::InvalidPluginName(
                "This document has more than one step: specify PluginName.".into(),
            ))
        }
    };
    let (stdout, stderr) = convert::excerpts(view);
    // With PluginName the step's own status; without it (single step) the invocation's.
    let (status, details) = if req.plugin_name.is_some() && view.result.is_some() {
        (view.status(), view.status_details())
    } else {
        (
            inv.state.status().as_str().to_string(),
            inv.state.as_str().to_string(),
        )
    };
    let (start, elapsed, end) = match view.result {
        Some(r) => (
            iso8601(r.started_at),
            iso8601_duration(r.ended_at - r.started_at),
            iso8601(r.ended_at),
        ),
        None => Default::default(),
    };
    Ok(GetCommandInvocationResult {
        command_id: command_id.to_string(),
        instance_id: node.to_string(),
        comment: command.comment.clone(),
        document_name: command.document_name.clone(),
        document_version: command.document_version.clone(),
        plugin_name: view.name.clone(),
        response_code: view.response_code(),
        execution_start_date_time: start,
        execution_elapsed_time: elapsed,
        execution_end_date_time: end,
        status,
        status_details: details,
        standard_output_content: stdout,
        standard_output_url: String::new(),
        standard_error_content: stderr,
        standard_error_url: String::new(),
        cloud_watch_output_config: convert::cloudwatch(&command),
    })
}
