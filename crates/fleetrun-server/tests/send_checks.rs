//! SendCommand's document checks over real HTTP with the real aws-sdk-ssm client: `DocumentHash`
//! against the resolved version, the 64 KB limit on content plus parameter values
//! (`MaxDocumentSizeExceeded`) and the platform of nodes named in `InstanceIds`
//! (`UnsupportedPlatformType`). A refused request stores no command.

mod common;

use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::operation::send_command::builders::SendCommandFluentBuilder;
use aws_sdk_ssm::operation::send_command::SendCommandOutput;
use aws_sdk_ssm::types::{DocumentHashType, Target};
use common::{code, SentId, TestServer};

const LINUX_ONLY: &str = r#"{"schemaVersion": "2.2", "parameters": {"word": {"type": "String", "default": "hi"}},
  "mainSteps": [{"action": "aws:runShellScript", "name": "say", "inputs": {"runCommand": ["echo {{ word }}"]}}]}"#;
const WINDOWS_ONLY: &str = r#"{"schemaVersion": "2.2",
  "mainSteps": [{"action": "aws:runPowerShellScript", "name": "ps", "inputs": {"runCommand": ["Write-Output hi"]}}]}"#;
const BOTH: &str = r#"{"schemaVersion": "2.2", "mainSteps": [
  {"action": "aws:runPowerShellScript", "name": "ps", "inputs": {"runCommand": ["Write-Output hi"]}},
  {"action": "aws:runShellScript", "name": "sh", "inputs": {"runCommand": ["echo hi"]}}]}"#;

fn message<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> String {
    err.as_service_error()
        .and_then(|e| e.message())
        .unwrap_or_default()
        .to_string()
}

async fn hash(s: &TestServer, name: &str, version: &str) -> String {
    let d = s
        .client
        .describe_document()
        .name(name)
        .document_version(version)
        .send()
        .await
        .expect("describe");
    let d = d.document().expect("description");
    assert_eq!(d.hash_type().map(|t| t.as_str()), Some("Sha256"));
    d.hash().expect("hash").to_string()
}

fn send(s: &TestServer, node: &str, document: &str) -> SendCommandFluentBuilder {
    s.client
        .send_command()
        .instance_ids(node)
        .document_name(document)
}

/// Outcome of a SendCommand: the new command's id, or the error code and message.
async fn outcome(b: SendCommandFluentBuilder) -> Result<String, (String, String)> {
    match b.send().await {
        Ok(out) => Ok(out.sent_id()),
        Err(e) => Err((code(&e), message(&e))),
    }
}

async fn tag(s: &TestServer, node: &str, key: &str, value: &str) {
    s.client
        .add_tags_to_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::ManagedInstance)
        .resource_id(node)
        .tags(
            aws_sdk_ssm::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("tag");
}

/// SendCommand to the nodes tagged `role=<role>`, which must be accepted.
async fn send_to_role(s: &TestServer, role: &str, document: &str) -> SendCommandOutput {
    s.client
        .send_command()
        .targets(Target::builder().key("tag:role").values(role).build())
        .document_name(document)
        .send()
        .await
        .expect("a tag target is not refused")
}

/// The server holds exactly the commands in `sent`: every refused request stored nothing.
async fn assert_only_stored(s: &TestServer, mut sent: Vec<String>) {
    let mut stored: Vec<String> = s
        .client
        .list_commands()
        .send()
        .await
        .expect("list commands")
        .commands()
        .iter()
        .filter_map(|c| c.command_id().map(str::to_string))
        .collect();
    stored.sort();
    sent.sort();
    assert_eq!(stored, sent, "refused requests stored nothing");
}

/// The error code of a SendCommand that must be refused.
async fn refusal(b: SendCommandFluentBuilder) -> String {
    outcome(b).await.expect_err("refused").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_hash_must_match_the_resolved_version() {
    let s = TestServer::start().await;
    let node = s.register_node("Linux").await;
    s.create_document("Hashed", LINUX_ONLY)
        .await
        .expect("create document");
    s.client
        .update_document()
        .name("Hashed")
        .content(LINUX_ONLY.replace("echo", "echo again:"))
        .document_version("$LATEST")
        .send()
        .await
        .expect("update");
    let (v1, v2) = (hash(&s, "Hashed", "1").await, hash(&s, "Hashed", "2").await);
    assert_ne!(v1, v2);
    let mut sent = Vec::new();

    // The default version (1) with its own hash, with and without DocumentHashType.
    let b = send(&s, &node, "Hashed").document_hash(&v1);
    sent.push(outcome(b).await.expect("v1 hash, no type"));
    let b = send(&s, &node, "Hashed")
        .document_hash(&v1)
        .document_hash_type(DocumentHashType::Sha256);
    sent.push(outcome(b).await.expect("v1 hash, Sha256"));
    let b = send(&s, &node, "Hashed")
        .document_version("$LATEST")
        .document_hash(&v2);
    sent.push(outcome(b).await.expect("v2 hash for $LATEST"));
    let b = send(&s, &node, "Hashed").document_hash("");
    sent.push(outcome(b).await.expect("an empty hash is no hash"));

    // Another version's hash, or the right digits called Sha1: InvalidDocument, AWS's wording.
    let b = send(&s, &node, "Hashed").document_hash(&v2);
    assert_eq!(
        outcome(b).await,
        Err((
            "InvalidDocument".to_string(),
            format!("document hash {v2} does not match Sha256.")
        ))
    );
    let b = send(&s, &node, "Hashed")
        .document_version("2")
        .document_hash(&v1)
        .document_hash_type(DocumentHashType::Sha256);
    assert_eq!(refusal(b).await, "InvalidDocument");
    let b = send(&s, &node, "Hashed")
        .document_hash(&v1)
        .document_hash_type(DocumentHashType::Sha1);
    assert_eq!(
        outcome(b).await,
        Err((
            "InvalidDocument".to_string(),
            format!("document hash {v1} does not match Sha1.")
        ))
    );

    // The built-in document has the hash DescribeDocument reports for it.
    let builtin = hash(&s, "AWS-RunShellScript", "1").await;
    let b = send(&s, &node, "AWS-RunShellScript")
        .parameters("commands", vec!["true".into()])
        .document_hash(&builtin);
    sent.push(outcome(b).await.expect("built-in hash"));
    let b = send(&s, &node, "AWS-RunShellScript")
        .parameters("commands", vec!["true".into()])
        .document_hash(&v1);
    assert_eq!(refusal(b).await, "InvalidDocument");

    assert_only_stored(&s, sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_plus_parameter_values_over_64_kb_is_max_document_size_exceeded() {
    let s = TestServer::start().await;
    let node = s.register_node("Linux").await;
    let content = s
        .client
        .get_document()
        .name("AWS-RunShellScript")
        .send()
        .await
        .expect("get document")
        .content()
        .expect("content")
        .len();
    let room = 64 * 1024 - content;
    let mut sent = Vec::new();

    // Exactly 64 KB in all (two values, so values are summed), then one byte more.
    let b = send(&s, &node, "AWS-RunShellScript").parameters(
        "commands",
        vec![format!("#{}", "a".repeat(room - 11)), "b".repeat(10)],
    );
    sent.push(outcome(b).await.expect("exactly 64 KB"));
    let b = send(&s, &node, "AWS-RunShellScript")
        .parameters(
            "commands",
            vec![format!("#{}", "a".repeat(room - 11)), "b".repeat(10)],
        )
        .parameters("workingDirectory", vec!["/".into()]);
    let (code_, msg) = outcome(b).await.expect_err("one byte over");
    assert_eq!(code_, "MaxDocumentSizeExceeded");
    assert_eq!(
        msg,
        "Document content plus parameter values is 65537 bytes; the size limit of a document is 64 KB."
    );

    // A custom document: its content counts as stored, parameter values on top.
    let big = LINUX_ONLY.replacen(
        "\"schemaVersion\"",
        &format!(
            "\"description\": \"{}\", \"schemaVersion\"",
            "d".repeat(60_000)
        ),
        1,
    );
    s.create_document("Big", &big)
        .await
        .expect("create document");
    let b = send(&s, &node, "Big").parameters("word", vec!["w".repeat(1000)]);
    sent.push(outcome(b).await.expect("under the limit"));
    let b = send(&s, &node, "Big").parameters("word", vec!["w".repeat(64 * 1024 - big.len() + 1)]);
    assert_eq!(refusal(b).await, "MaxDocumentSizeExceeded");

    assert_only_stored(&s, sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_nodes_of_an_unsupported_platform_are_unsupported_platform_type() {
    let s = TestServer::start().await;
    let agent = s.add_agent().await;
    let linux = agent.instance_id.clone();
    let windows = s.register_node("Windows").await;
    s.create_document("WindowsOnly", WINDOWS_ONLY)
        .await
        .expect("create document");
    s.create_document("Both", BOTH)
        .await
        .expect("create document");
    let mut sent = Vec::new();

    // AWS-RunShellScript (Linux, MacOS) naming a Windows node, even alongside a Linux one.
    let b = s
        .client
        .send_command()
        .instance_ids(&linux)
        .instance_ids(&windows)
        .document_name("AWS-RunShellScript")
        .parameters("commands", vec!["true".into()]);
    assert_eq!(
        outcome(b).await,
        Err((
            "UnsupportedPlatformType".to_string(),
            format!("Cannot perform operation for instance id {windows} of platform type Windows")
        ))
    );
    // A Windows-only document naming the (real, Linux or macOS) agent's node.
    let (code_, msg) = outcome(send(&s, &linux, "WindowsOnly"))
        .await
        .expect_err("Windows-only document on a Linux node");
    assert_eq!(code_, "UnsupportedPlatformType");
    assert!(
        msg.starts_with(&format!(
            "Cannot perform operation for instance id {linux} of platform type "
        )),
        "{msg}"
    );

    // Accepted: the document supports the platform of every named node.
    sent.push(
        outcome(send(&s, &windows, "WindowsOnly"))
            .await
            .expect("Windows doc, Windows node"),
    );
    let b = s
        .client
        .send_command()
        .instance_ids(&linux)
        .instance_ids(&windows)
        .document_name("Both");
    sent.push(outcome(b).await.expect("multi-platform document"));

    // Nodes reached through Targets are not refused at SendCommand (AWS reports them per invocation).
    tag(&s, &linux, "role", "web").await;
    let out = send_to_role(&s, "web", "WindowsOnly").await;
    let command = out.command().expect("command");
    assert_eq!(command.target_count(), 1);
    sent.push(command.command_id().expect("id").to_string());

    assert_only_stored(&s, sent).await;
    agent.stop().await;
}

/// A node reached through Targets whose platform the document lacks is not refused at SendCommand;
/// its invocation ends `InvalidPlatform` at delivery without reaching the agent, and a command whose
/// every invocation ended so is `Failed` (the fact sheet's "all invocations in that state").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_targeted_nodes_of_another_platform_end_invalid_platform() {
    let s = TestServer::start().await;
    let agent = s.add_agent().await;
    let linux = agent.instance_id.clone();
    s.create_document("WindowsOnly", WINDOWS_ONLY)
        .await
        .expect("create document");
    tag(&s, &linux, "role", "ps").await;
    let out = send_to_role(&s, "ps", "WindowsOnly").await;
    let id = out.sent_id();

    let inv = s.wait(&id, &linux).await;
    assert_eq!(inv.status().map(|s| s.as_str()), Some("Failed"));
    assert_eq!(inv.status_details(), Some("InvalidPlatform"));
    assert_eq!(inv.response_code(), -1);
    assert_eq!(inv.standard_output_content(), Some(""), "nothing ran");

    let listed = s
        .client
        .list_commands()
        .command_id(&id)
        .send()
        .await
        .expect("list");
    let command = listed.commands().first().expect("the command");
    assert_eq!(command.status().map(|s| s.as_str()), Some("Failed"));
    assert_eq!(command.status_details(), Some("Failed"));
    assert_eq!(command.target_count(), 1);

    // The same node still runs what its platform supports.
    let ok = s.run(&[&linux], &["echo still here"]).await;
    let inv = s.wait(&ok, &linux).await;
    assert_eq!(inv.status_details(), Some("Success"));
    assert_eq!(inv.standard_output_content(), Some("still here\n"));
    agent.stop().await;
}
