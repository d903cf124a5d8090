//! `FleetrunAdmin.GetCommandOutput`: a command's live output as the agents shipped it, in the
//! order it was stored, for `fleetrun tail` (ARCHITECTURE.md, "Live output").

use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_wire::admin::{GetCommandOutputRequest, GetCommandOutputResponse, OutputPiece};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Pieces per answer (each at most one shipment, 256 KiB).
const PAGE: usize = 16;

pub async fn get_command_output(
    st: AppState,
    req: GetCommandOutputRequest,
) -> ApiResult<GetCommandOutputResponse> {
    let command_id = CommandId::parse(&req.command_id).ok_or_else(|| {
        ApiError::InvalidCommandId(format!("Command id '{}' is not valid.", req.command_id))
    })?;
    let instance = match &req.instance_id {
        Some(id) => Some(InstanceId::parse(id).ok_or_else(|| {
            ApiError::InvalidInstanceId(format!("Instance id '{id}' is not valid."))
        })?),
        None => None,
    };
    let after: i64 = match &req.next_token {
        Some(t) => t.parse().map_err(|_| ApiError::InvalidNextToken)?,
        None => 0,
    };
    // The status first: output stored before it was final is all read once a page comes back
    // empty after it.
    let command = st.store.command(&command_id).await?.ok_or_else(|| {
        ApiError::InvalidCommandId(format!("Command {command_id} does not exist."))
    })?;
    let status = command.aggregate().state.status().as_str().to_owned();
    let chunks = st
        .store
        .command_output(&command_id, instance.as_ref(), after, PAGE)
        .await?;
    let next = chunks.last().map_or(after, |c| c.id);
    Ok(GetCommandOutputResponse {
        command_status: status,
        output: chunks
            .into_iter()
            .map(|c| OutputPiece {
                instance_id: c.instance_id.to_string(),
                step_name: c.step,
                stream: c.stream.as_str().to_owned(),
                offset: c.offset,
                content: String::from_utf8_lossy(&c.data).into_owned(),
            })
            .collect(),
        next_token: next.to_string(),
    })
}
