//! Which resource each operation is authorized against (security-facts §6.1, the Service
//! Authorization Reference): documents by ARN, managed nodes by ARN, everything else `*`.
//!
//! Checked before the operation runs. SendCommand is the exception: its document is checked here,
//! its nodes in the handler once the targets are resolved (named nodes refuse the call, nodes found
//! through tags end `AccessDenied`, as on AWS).

use axum::body::Bytes;
use fleetrun_policy::{document_arn, managed_instance_arn};
use serde::Deserialize;

use crate::auth::{Caller, ACCOUNT_ID};
use crate::error::ApiResult;
use crate::AppState;

/// The members an authorization check reads; every other member is ignored here and validated
/// by the operation itself.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Named {
    name: Option<String>,
    document_name: Option<String>,
    instance_id: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
}

/// The ARN of a document given by name (or already by ARN). Names starting `AWS-` are AWS-owned
/// documents, whose ARN has no account.
pub fn document_resource(region: &str, name: &str) -> String {
    if name.starts_with("arn:") {
        return name.to_owned();
    }
    document_arn(region, ACCOUNT_ID, name, name.starts_with("AWS-"))
}

/// The ARN of a managed node.
pub fn node_resource(region: &str, instance_id: &str) -> String {
    managed_instance_arn(region, ACCOUNT_ID, instance_id)
}

/// Which member of an operation's body names the resource it is authorized against.
enum NamedBy {
    DocumentName,
    Name,
    InstanceId,
    TaggedResource,
}

/// `None` for the operations without resource types (`Resource: "*"`).
fn named_by(op: &str) -> Option<NamedBy> {
    Some(match op {
        "SendCommand" => NamedBy::DocumentName,
        "CreateDocument"
        | "UpdateDocument"
        | "UpdateDocumentDefaultVersion"
        | "DescribeDocument"
        | "GetDocument"
        | "DeleteDocument" => NamedBy::Name,
        "DeregisterManagedInstance" => NamedBy::InstanceId,
        "AddTagsToResource" | "RemoveTagsFromResource" | "ListTagsForResource" => {
            NamedBy::TaggedResource
        }
        _ => return None,
    })
}

/// Authorizes `op` for `caller` (SendCommand: its document only).
pub fn operation(state: &AppState, caller: &Caller, op: &str, body: &Bytes) -> ApiResult<()> {
    let region = &state.config.region;
    let action = format!("ssm:{op}");
    // Operations without resource types are decided without reading the body, so ListCommands and
    // the other hot paths parse their body once, in the operation.
    let Some(kind) = named_by(op) else {
        return caller.authorize(&action, "*", &[]);
    };
    // A body that does not decode names no resource: ask about `*`, which a resource-scoped
    // policy does not allow, and let the operation report the body's error if allowed.
    let named: Named = serde_json::from_slice(body).unwrap_or_default();
    let resource = match kind {
        NamedBy::DocumentName => named.document_name.map(|n| document_resource(region, &n)),
        NamedBy::Name => named.name.map(|n| document_resource(region, &n)),
        NamedBy::InstanceId => named.instance_id.map(|id| node_resource(region, &id)),
        NamedBy::TaggedResource => match (named.resource_type.as_deref(), named.resource_id) {
            (Some("ManagedInstance"), Some(id)) => Some(node_resource(region, &id)),
            _ => None,
        },
    };
    caller.authorize(&action, resource.as_deref().unwrap_or("*"), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_arns() {
        assert_eq!(
            document_resource("us-east-1", "AWS-RunShellScript"),
            "arn:aws:ssm:us-east-1::document/AWS-RunShellScript"
        );
        assert_eq!(
            document_resource("eu-west-1", "Safe-Hello"),
            "arn:aws:ssm:eu-west-1:000000000000:document/Safe-Hello"
        );
        let arn = "arn:aws:ssm:us-east-1::document/AWS-RunShellScript";
        assert_eq!(document_resource("us-east-1", arn), arn);
    }
}
