//! The audit trail: who changed what. One INFO event per mutating API call, on its own tracing
//! target [`TARGET`] (`RUST_LOG=fleetrun::audit=info` selects it alone, `…,fleetrun::audit=off`
//! silences it), with the same four fields first on every line:
//!
//! ```text
//! op              the operation (SendCommand, CreateAccessKey, …)
//! access_key_id   the key that signed the call (verified)
//! user            that key's user name
//! outcome         allowed | denied
//! ```
//!
//! then the object: the command id, document name and number of nodes resolved (SendCommand), the
//! document and version, the activation, the node, the tag keys, the access key. A call refused
//! with `AccessDeniedException` gets a `denied` line naming the action and resource asked for.
//! Calls that fail validation change nothing and are not audited (the edge logs them as client
//! errors, `error::Answered`).
//!
//! Never logged: secrets (activation codes, secret access keys, signatures), parameter values,
//! document content, tag values, command output.

use crate::auth::Caller;

/// The tracing target of every audit event.
pub const TARGET: &str = "fleetrun::audit";

/// Logs the audit event of an allowed, successful mutating call:
/// `audit!(caller, "CancelCommand", command_id = %id, "cancel requested")`. After the caller and
/// the operation come the object's fields and the message, as for `tracing::info!`.
macro_rules! audit {
    ($caller:expr, $op:expr, $($rest:tt)+) => {
        tracing::info!(
            target: $crate::audit::TARGET,
            op = %$op,
            access_key_id = %$caller.access_key_id,
            user = %$caller.user_name,
            outcome = %"allowed",
            $($rest)+
        )
    };
}
pub(crate) use audit;

/// The operations that change something (the only ones audited). `admin`: `FleetrunAdmin.*`.
pub(crate) fn mutating(op: &str, admin: bool) -> bool {
    if admin {
        return matches!(
            op,
            "CreateAccessKey" | "UpdateAccessKey" | "DeleteAccessKey"
        );
    }
    matches!(
        op,
        "SendCommand"
            | "PutMetricAlarm"
            | "SetAlarmState"
            | "CancelCommand"
            | "CreateActivation"
            | "DeleteActivation"
            | "DeregisterManagedInstance"
            | "AddTagsToResource"
            | "CreateGroup"
            | "UpdateGroupQuery"
            | "DeleteGroup"
            | "RemoveTagsFromResource"
            | "CreateDocument"
            | "UpdateDocument"
            | "UpdateDocumentDefaultVersion"
            | "DeleteDocument"
    )
}

/// Logs a mutating call refused by the caller's policies.
pub(crate) fn denied(caller: &Caller, op: &str, action: &str, resource: &str) {
    tracing::info!(
        target: TARGET,
        op = %op,
        access_key_id = %caller.access_key_id,
        user = %caller.user_name,
        outcome = %"denied",
        action = %action,
        resource = %resource,
        "refused: AccessDeniedException"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_mutating() {
        for op in [
            "ListCommands",
            "GetCommandInvocation",
            "DescribeDocument",
            "ListTagsForResource",
            "DescribeInstanceInformation",
        ] {
            assert!(!mutating(op, false), "{op}");
        }
        assert!(!mutating("ListAccessKeys", true));
        assert!(mutating("SendCommand", false) && mutating("DeleteAccessKey", true));
        // The admin names mean nothing on the SSM target, and the reverse.
        assert!(!mutating("CreateAccessKey", false) && !mutating("SendCommand", true));
    }
}
