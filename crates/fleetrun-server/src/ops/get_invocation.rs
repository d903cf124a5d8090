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
        Some(name) => Some(views.iter().find(|s| s.name == name).ok_or_else(|| {
            ApiError::InvalidPluginName(format!(
                "The plugin name {name} is not part of command {command_id}."
            ))
        })?),
        None if views.len() == 1 => views.first(),
        // Several steps and no PluginName: the invocation as a whole, without step output (what
        // AWS answers; the CommandExecuted waiter relies on it).
        None => None,
    };
    let (stdout, stderr) = view.map(convert::excerpts).unwrap_or_default();
    // With PluginName the step's own status; without it the invocation's.
    let (status, details) = match view {
        Some(v) if req.plugin_name.is_some() && v.result.is_some() => {
            (v.status(), v.status_details())
        }
        _ => (
            inv.state.status().as_str().to_string(),
            inv.state.as_str().to_string(),
        ),
    };
    let span = match view {
        Some(v) => v.result.map(|r| (r.started_at, r.ended_at)),
        None => inv.started_at.zip(inv.ended_at),
    };
    let (start, elapsed, end) = match span {
        Some((started, ended)) => (
            iso8601(started),
            iso8601_duration(ended - started),
            iso8601(ended),
        ),
        None => Default::default(),
    };
    let plugin_name = view.map(|v| v.name.clone()).unwrap_or_default();
    let s3_base = st.config.s3.url_base(&st.config.region);
    let (standard_output_url, standard_error_url) = view
        .map(|v| convert::output_urls(&s3_base, &command, &node, v))
        .unwrap_or_default();
    let response_code = view.map_or(inv.response_code, |v| v.response_code());
    Ok(GetCommandInvocationResult {
        command_id: command_id.to_string(),
        instance_id: node.to_string(),
        comment: command.comment.clone(),
        document_name: command.document_name.clone(),
        document_version: command.document_version.clone(),
        plugin_name,
        response_code,
        execution_start_date_time: start,
        execution_elapsed_time: elapsed,
        execution_end_date_time: end,
        status,
        status_details: details,
        standard_output_content: stdout,
        standard_output_url,
        standard_error_content: stderr,
        standard_error_url,
        cloud_watch_output_config: convert::cloudwatch(&command),
    })
}
