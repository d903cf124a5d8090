//! DeregisterManagedInstance: removes a node. Its undelivered invocations end Undeliverable and its
//! agent's credentials stop working; running invocations end when their command expires.

use fleetrun_core::clock::now_millis;
use fleetrun_wire::ssm::DeregisterManagedInstanceRequest;
use fleetrun_wire::validate::Violations;

use super::validate::finish;
use crate::audit::audit;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

const MANAGED_INSTANCE_PATTERN: &str = "^mi-[0-9a-f]{17}$";

fn managed_id_ok(s: &str) -> bool {
    s.strip_prefix("mi-").is_some_and(|h| {
        h.len() == 17
            && h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

pub async fn deregister_managed_instance(
    st: AppState,
    caller: Caller,
    req: DeregisterManagedInstanceRequest,
) -> ApiResult<serde_json::Value> {
    let mut v = Violations::new();
    let raw = req.instance_id.unwrap_or_default();
    v.required("InstanceId", !raw.is_empty());
    if !raw.is_empty() {
        v.pattern(
            "InstanceId",
            &raw,
            managed_id_ok(&raw),
            MANAGED_INSTANCE_PATTERN,
        );
    }
    finish(v)?;
    let id = fleetrun_core::ids::InstanceId::parse(&raw)
        .ok_or_else(|| ApiError::InvalidInstanceId(format!("Instance id '{raw}' is not valid.")))?;
    let mut effects = st.store.deregister_node(&id, now_millis()).await?;
    let undeliverable = effects.invocations.len();
    // The node's own long poll, if parked, answers at once that it is gone: its agent stops.
    effects.wake(id.clone());
    st.apply(&effects);
    audit!(caller, "DeregisterManagedInstance", instance_id = %id, undeliverable, "node deregistered");
    Ok(serde_json::json!({}))
}
