//! CancelCommand: undelivered invocations end Cancelled at once; running ones go Cancelling and
//! their agents are woken to kill the script.

use fleetrun_core::clock::now_millis;
use fleetrun_wire::ssm::CancelCommandRequest;
use fleetrun_wire::validate::Violations;

use super::validate::{finish, instance_ids};
use crate::audit::audit;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub async fn cancel_command(
    st: AppState,
    caller: Caller,
    req: CancelCommandRequest,
) -> ApiResult<serde_json::Value> {
    let mut v = Violations::new();
    let command_id = super::validate::command_id(&mut v, "CommandId", req.command_id.as_deref());
    let nodes = match req.instance_ids.as_deref() {
        Some(ids) if !ids.is_empty() => Some(instance_ids(&mut v, "InstanceIds", ids)?),
        _ => None,
    };
    finish(v)?;
    let command_id =
        command_id.ok_or_else(|| ApiError::InvalidCommandId("Invalid command id.".into()))?;
    let outcome = st
        .store
        .cancel(&command_id, nodes.as_deref(), now_millis())
        .await?;
    st.apply(&outcome.effects);
    let running = outcome
        .effects
        .invocations
        .iter()
        .filter(|c| c.to == fleetrun_core::status::InvocationState::Cancelling)
        .count();
    audit!(caller, "CancelCommand", command_id = %command_id, instances = nodes.as_ref().map(Vec::len), running, "cancel requested");
    Ok(serde_json::json!({}))
}
