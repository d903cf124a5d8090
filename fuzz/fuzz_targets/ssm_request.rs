//! Every SSM (and FleetrunAdmin) operation's request body, decoded as the server decodes it
//! (`aws.rs` `decode`: blank → the empty request, else `serde_json` into the operation's shape),
//! then the pure checks that take its members: the `ValidationException` builder
//! (`fleetrun_wire::validate`), id parsers, and the policy parser for CreateAccessKey.
//!
//! Input: `Operation\n<body>`. An unknown operation decodes the body into every shape.
#![no_main]

use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_wire::validate::{java_list, Violations};
use fleetrun_wire::{admin, documents, ssm, tags};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

fn decode<T: DeserializeOwned + Default>(body: &[u8]) -> Option<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(T::default());
    }
    serde_json::from_slice(body).ok()
}

/// Feeds decoded strings through the validation helpers the handlers call.
fn check_strings(v: &mut Violations, path: &str, values: &[&str]) {
    v.count(path, &java_list(values), values.len(), 1, Some(50));
    for s in values {
        v.length(path, s, 1, Some(100));
        v.pattern(path, s, InstanceId::parse(s).is_some(), "^mi-\\w{17}$");
        v.one_of(path, s, &["Status", "InvokedAfter", "InvokedBefore"]);
        let _ = CommandId::parse(s);
    }
}

fn run(op: &str, body: &[u8]) {
    let mut v = Violations::new();
    let all = op.is_empty() || !KNOWN.contains(&op);
    if op == "SendCommand" || all {
        if let Some(r) = decode::<ssm::SendCommandRequest>(body) {
            let ids: Vec<&str> = r
                .instance_ids
                .iter()
                .flatten()
                .map(String::as_str)
                .collect();
            check_strings(&mut v, "InstanceIds", &ids);
            if let Some(t) = r.timeout_seconds {
                v.range("TimeoutSeconds", t, 30, 2_592_000);
            }
            for (k, vals) in r.parameters.iter().flatten() {
                let vals: Vec<&str> = vals.iter().map(String::as_str).collect();
                check_strings(&mut v, k, &vals);
            }
        }
    }
    if matches!(op, "ListCommands" | "ListCommandInvocations") || all {
        if let Some(r) = decode::<ssm::ListCommandsRequest>(body) {
            if let Some(n) = r.max_results {
                v.range("MaxResults", n, 1, 50);
            }
            for f in r.filters.iter().flatten() {
                check_strings(
                    &mut v,
                    "Filters.member.key",
                    &[f.key.as_deref().unwrap_or("")],
                );
            }
        }
    }
    if op == "GetCommandInvocation" || all {
        let _ = decode::<ssm::GetCommandInvocationRequest>(body);
    }
    if op == "CancelCommand" || all {
        let _ = decode::<ssm::CancelCommandRequest>(body);
    }
    if op == "CreateActivation" || all {
        if let Some(r) = decode::<ssm::CreateActivationRequest>(body) {
            for t in r.tags.iter().flatten() {
                check_strings(&mut v, "Tags.member.key", &[&t.key, &t.value]);
            }
        }
    }
    if op == "DescribeActivations" || all {
        let _ = decode::<ssm::DescribeActivationsRequest>(body);
    }
    if op == "DeleteActivation" || all {
        let _ = decode::<ssm::DeleteActivationRequest>(body);
    }
    if op == "DeregisterManagedInstance" || all {
        let _ = decode::<ssm::DeregisterManagedInstanceRequest>(body);
    }
    if op == "DescribeInstanceInformation" || all {
        let _ = decode::<ssm::DescribeInstanceInformationRequest>(body);
    }
    if op == "AddTagsToResource" || all {
        let _ = decode::<tags::AddTagsToResourceRequest>(body);
    }
    if op == "RemoveTagsFromResource" || all {
        let _ = decode::<tags::RemoveTagsFromResourceRequest>(body);
    }
    if op == "ListTagsForResource" || all {
        let _ = decode::<tags::ListTagsForResourceRequest>(body);
    }
    if op == "CreateDocument" || all {
        let _ = decode::<documents::CreateDocumentRequest>(body);
    }
    if op == "UpdateDocument" || all {
        let _ = decode::<documents::UpdateDocumentRequest>(body);
    }
    if matches!(op, "DescribeDocument" | "GetDocument" | "DeleteDocument") || all {
        let _ = decode::<documents::DocumentRequest>(body);
    }
    if op == "UpdateDocumentDefaultVersion" || all {
        let _ = decode::<documents::UpdateDocumentDefaultVersionRequest>(body);
    }
    if op == "ListDocuments" || all {
        let _ = decode::<documents::ListDocumentsRequest>(body);
    }
    if op == "CreateAccessKey" || all {
        if let Some(r) = decode::<admin::CreateAccessKeyRequest>(body) {
            if let Some(doc) = r.policy_document {
                let _ = fleetrun_policy::Policy::parse(&doc);
            }
        }
    }
    if op == "ListAccessKeys" || all {
        let _ = decode::<admin::ListAccessKeysRequest>(body);
    }
    if op == "UpdateAccessKey" || all {
        let _ = decode::<admin::UpdateAccessKeyRequest>(body);
    }
    if op == "DeleteAccessKey" || all {
        let _ = decode::<admin::DeleteAccessKeyRequest>(body);
    }
    let _ = v.finish();
}

const KNOWN: &[&str] = &[
    "SendCommand",
    "ListCommands",
    "ListCommandInvocations",
    "GetCommandInvocation",
    "CancelCommand",
    "CreateActivation",
    "DescribeActivations",
    "DeleteActivation",
    "DeregisterManagedInstance",
    "DescribeInstanceInformation",
    "AddTagsToResource",
    "RemoveTagsFromResource",
    "ListTagsForResource",
    "CreateDocument",
    "UpdateDocument",
    "DescribeDocument",
    "GetDocument",
    "DeleteDocument",
    "UpdateDocumentDefaultVersion",
    "ListDocuments",
    "CreateAccessKey",
    "ListAccessKeys",
    "UpdateAccessKey",
    "DeleteAccessKey",
];

fuzz_target!(|data: &[u8]| {
    let (op, body) = fleetrun_fuzz::split_line(data);
    let op = String::from_utf8_lossy(op);
    let op = op
        .trim()
        .trim_start_matches("AmazonSSM.")
        .trim_start_matches("FleetrunAdmin.");
    run(op, body);
});
