//! Custom Command documents end to end: the aws-sdk-ssm client against a real server and real agents.

mod common;

use aws_sdk_ssm::types::{DocumentFormat, DocumentType};
use common::{code, SentId, TestServer};

const TWO_STEPS: &str = r#"{
  "schemaVersion": "2.2",
  "description": "Greets, then counts.",
  "parameters": {
    "greeting": {"type": "String", "description": "What to say", "default": "hello",
                 "allowedValues": ["hello", "hi"]},
    "count": {"type": "String", "description": "How many", "allowedPattern": "^[0-9]+$"}
  },
  "mainSteps": [
    {"action": "aws:runShellScript", "name": "greet",
     "inputs": {"runCommand": ["echo {{ greeting }}"]}},
    {"action": "aws:runPowerShellScript", "name": "windowsOnly",
     "precondition": {"StringEquals": ["platformType", "Windows"]},
     "inputs": {"runCommand": ["Write-Output nope"]}},
    {"action": "aws:runShellScript", "name": "count",
     "precondition": {"StringEquals": ["platformType", "Linux"]},
     "inputs": {"runCommand": ["seq {{ count }}", "echo done >&2"]}}
  ]
}"#;

const TWO_STEPS_YAML: &str = r#"
schemaVersion: '2.2'
description: Greets, then counts.
parameters:
  greeting:
    type: String
    default: hello
    allowedValues: [hello, hi]
  count:
    type: String
    allowedPattern: '^[0-9]+$'
mainSteps:
  - action: aws:runShellScript
    name: greet
    inputs:
      runCommand: ['echo {{ greeting }}']
  - action: aws:runShellScript
    name: count
    inputs:
      runCommand: ['seq {{ count }}']
"#;

async fn create(s: &TestServer, name: &str, content: &str, format: DocumentFormat) {
    s.client
        .create_document()
        .name(name)
        .content(content)
        .document_type(DocumentType::Command)
        .document_format(format)
        .send()
        .await
        .expect("create document");
}

async fn send(
    s: &TestServer,
    node: &str,
    doc: &str,
    version: Option<&str>,
    params: &[(&str, &str)],
) -> Result<String, String> {
    let mut req = s
        .client
        .send_command()
        .document_name(doc)
        .set_document_version(version.map(String::from))
        .instance_ids(node);
    for (k, v) in params {
        req = req.parameters(*k, vec![v.to_string()]);
    }
    match req.send().await {
        Ok(out) => Ok(out.sent_id()),
        Err(e) => Err(code(&e)),
    }
}

/// (name, status, details, code, output) per plugin of one invocation.
async fn plugins(s: &TestServer, id: &str) -> Vec<(String, String, String, i32, String)> {
    let out = s
        .client
        .list_command_invocations()
        .command_id(id)
        .details(true)
        .send()
        .await
        .expect("list invocations");
    out.command_invocations()[0]
        .command_plugins()
        .iter()
        .map(|p| {
            (
                p.name().unwrap_or_default().to_string(),
                p.status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                p.status_details().unwrap_or_default().to_string(),
                p.response_code(),
                p.output().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_2_2_steps_run_in_order_with_parameters() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let node = a.instance_id.clone();
    create(&s, "Greet-And-Count", TWO_STEPS, DocumentFormat::Json).await;
    let id = send(
        &s,
        &node,
        "Greet-And-Count",
        None,
        &[("greeting", "hi"), ("count", "3")],
    )
    .await
    .expect("send");
    let out = s.wait(&id, &node).await;
    // Several steps and no PluginName: the invocation's status, no step output.
    assert_eq!(out.status().map(|s| s.as_str()), Some("Success"));
    assert_eq!(out.standard_output_content(), Some(""));
    assert_eq!(out.response_code(), 0);
    let p = plugins(&s, &id).await;
    let names: Vec<&str> = p.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(names, ["greet", "windowsOnly", "count"]);
    assert_eq!((p[0].1.as_str(), p[0].3), ("Success", 0));
    assert_eq!(p[0].4, "hi\n");
    assert_eq!(
        (p[1].1.as_str(), p[1].2.as_str(), p[1].3),
        ("Success", "Skipped", 0)
    );
    assert!(
        p[1].4
            .starts_with("Step execution skipped due to unsatisfied preconditions"),
        "{}",
        p[1].4
    );
    assert_eq!(p[2].4, "1\n2\n3\n\n----------ERROR-------\ndone\n");

    let step = s
        .client
        .get_command_invocation()
        .command_id(&id)
        .instance_id(&node)
        .plugin_name("count")
        .send()
        .await
        .expect("get count");
    assert_eq!(step.plugin_name(), Some("count"));
    assert_eq!(step.standard_output_content(), Some("1\n2\n3\n"));
    assert_eq!(step.standard_error_content(), Some("done\n"));
    let bad = s
        .client
        .get_command_invocation()
        .command_id(&id)
        .instance_id(&node)
        .plugin_name("nope")
        .send()
        .await
        .expect_err("unknown step");
    assert_eq!(code(&bad), "InvalidPluginName");
    let cmd = s
        .client
        .list_commands()
        .command_id(&id)
        .send()
        .await
        .expect("list");
    assert_eq!(cmd.commands()[0].document_name(), Some("Greet-And-Count"));

    // YAML, and parameters the document rejects.
    create(&s, "Greet-Yaml", TWO_STEPS_YAML, DocumentFormat::Yaml).await;
    let id = send(&s, &node, "Greet-Yaml", None, &[("count", "2")])
        .await
        .expect("send yaml");
    s.wait(&id, &node).await;
    let p = plugins(&s, &id).await;
    assert_eq!(p[0].4, "hello\n");
    assert_eq!(p[1].4, "1\n2\n");
    for bad in [
        vec![("count", "x")],
        vec![("greeting", "hey"), ("count", "1")],
        vec![("count", "1"), ("other", "1")],
        vec![],
    ] {
        assert_eq!(
            send(&s, &node, "Greet-Yaml", None, &bad).await,
            Err("InvalidParameters".to_string()),
            "{bad:?}"
        );
    }
    assert_eq!(
        send(&s, &node, "No-Such-Doc", None, &[]).await,
        Err("InvalidDocument".to_string())
    );
    assert_eq!(
        send(&s, &node, "Greet-Yaml", Some("7"), &[("count", "1")]).await,
        Err("InvalidDocumentVersion".to_string())
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_168_and_169_skip_the_remaining_steps() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let node = a.instance_id.clone();
    let doc = |first: &str| {
        format!(
            r#"{{"schemaVersion": "2.2", "mainSteps": [
              {{"action": "aws:runShellScript", "name": "first", "inputs": {{"runCommand": ["echo one", "{first}"]}}}},
              {{"action": "aws:runShellScript", "name": "second", "inputs": {{"runCommand": ["echo two"]}}}},
              {{"action": "aws:runShellScript", "name": "third", "inputs": {{"runCommand": ["echo three"]}}}}]}}"#
        )
    };
    create(&s, "Stop-Ok", &doc("exit 168"), DocumentFormat::Json).await;
    create(&s, "Stop-Fail", &doc("exit 169"), DocumentFormat::Json).await;
    create(&s, "Go-On", &doc("exit 3"), DocumentFormat::Json).await;

    let id = send(&s, &node, "Stop-Ok", None, &[]).await.expect("send");
    let out = s.wait(&id, &node).await;
    assert_eq!(out.status().map(|s| s.as_str()), Some("Success"));
    let p = plugins(&s, &id).await;
    assert_eq!((p[0].1.as_str(), p[0].3), ("Success", 168));
    assert!(p[0].4.contains("Step exited with code 168"), "{}", p[0].4);
    for skipped in &p[1..] {
        assert_eq!(
            (skipped.1.as_str(), skipped.2.as_str()),
            ("Success", "Skipped")
        );
        assert!(skipped
            .4
            .contains("skipped due to prior step with an exit condition"));
    }

    let id = send(&s, &node, "Stop-Fail", None, &[]).await.expect("send");
    let out = s.wait(&id, &node).await;
    assert_eq!(out.status().map(|s| s.as_str()), Some("Failed"));
    let p = plugins(&s, &id).await;
    assert_eq!((p[0].1.as_str(), p[0].3), ("Failed", 169));
    assert_eq!((p[1].2.as_str(), p[2].2.as_str()), ("Skipped", "Skipped"));

    // Any other failure does not stop the document: the later steps run.
    let id = send(&s, &node, "Go-On", None, &[]).await.expect("send");
    let out = s.wait(&id, &node).await;
    assert_eq!(out.status().map(|s| s.as_str()), Some("Failed"));
    let p = plugins(&s, &id).await;
    assert_eq!((p[0].1.as_str(), p[0].3), ("Failed", 3));
    assert_eq!((p[1].1.as_str(), p[1].4.as_str()), ("Success", "two\n"));
    assert_eq!((p[2].1.as_str(), p[2].4.as_str()), ("Success", "three\n"));
    a.stop().await;
}

fn version_doc(word: &str) -> String {
    format!(
        "schemaVersion: '2.2'\nmainSteps:\n  - action: aws:runShellScript\n    name: say\n    inputs:\n      runCommand: ['echo {word}']\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_default_and_latest() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let node = a.instance_id.clone();
    let created = s
        .client
        .create_document()
        .name("Versioned")
        .content(version_doc("one"))
        .document_format(DocumentFormat::Yaml)
        .version_name("release-1")
        .send()
        .await
        .expect("create");
    let d = created.document_description().expect("description");
    assert_eq!(d.status().map(|s| s.as_str()), Some("Creating"));
    assert_eq!(
        (
            d.document_version(),
            d.default_version(),
            d.latest_version()
        ),
        (Some("1"), Some("1"), Some("1"))
    );
    assert_eq!(d.hash_type().map(|h| h.as_str()), Some("Sha256"));
    assert_eq!(d.owner(), Some("000000000000"));
    assert_eq!(d.document_type().map(|t| t.as_str()), Some("Command"));
    let platforms: Vec<&str> = d.platform_types().iter().map(|p| p.as_str()).collect();
    assert_eq!(platforms, ["Linux", "MacOS"]);
    let described = s
        .client
        .describe_document()
        .name("Versioned")
        .send()
        .await
        .expect("describe");
    assert_eq!(
        described
            .document()
            .and_then(|d| d.status())
            .map(|s| s.as_str()),
        Some("Active")
    );

    let updated = s
        .client
        .update_document()
        .name("Versioned")
        .content(version_doc("two"))
        .document_format(DocumentFormat::Yaml)
        .document_version("$LATEST")
        .send()
        .await
        .expect("update");
    let d = updated.document_description().expect("description");
    assert_eq!(
        (
            d.document_version(),
            d.default_version(),
            d.latest_version()
        ),
        (Some("2"), Some("1"), Some("2"))
    );
    let dup = s
        .client
        .update_document()
        .name("Versioned")
        .content(version_doc("two"))
        .document_format(DocumentFormat::Yaml)
        .send()
        .await
        .expect_err("same content");
    assert_eq!(code(&dup), "DuplicateDocumentContent");
    let stale = s
        .client
        .update_document()
        .name("Versioned")
        .content(version_doc("three"))
        .document_format(DocumentFormat::Yaml)
        .document_version("1")
        .send()
        .await
        .expect_err("not the latest");
    assert_eq!(code(&stale), "InvalidDocumentVersion");

    let run = |version: Option<&'static str>| {
        let (s, node) = (&s, node.clone());
        async move {
            let id = send(s, &node, "Versioned", version, &[])
                .await
                .expect("send");
            s.wait(&id, &node)
                .await
                .standard_output_content()
                .unwrap_or_default()
                .to_string()
        }
    };
    assert_eq!(run(None).await, "one\n");
    assert_eq!(run(Some("$DEFAULT")).await, "one\n");
    assert_eq!(run(Some("$LATEST")).await, "two\n");
    assert_eq!(run(Some("2")).await, "two\n");
    let def = s
        .client
        .update_document_default_version()
        .name("Versioned")
        .document_version("2")
        .send()
        .await
        .expect("set default");
    assert_eq!(
        def.description().and_then(|d| d.default_version()),
        Some("2")
    );
    assert_eq!(run(None).await, "two\n");

    // GetDocument by version, by version name, converted to JSON.
    let got = s
        .client
        .get_document()
        .name("Versioned")
        .version_name("release-1")
        .document_format(DocumentFormat::Json)
        .send()
        .await
        .expect("get");
    assert_eq!(got.document_version(), Some("1"));
    assert_eq!(got.document_format().map(|f| f.as_str()), Some("JSON"));
    let json: serde_json::Value =
        serde_json::from_str(got.content().unwrap_or_default()).expect("json");
    assert_eq!(json["mainSteps"][0]["inputs"]["runCommand"][0], "echo one");
    let got = s
        .client
        .get_document()
        .name("Versioned")
        .document_version("$LATEST")
        .send()
        .await
        .expect("get");
    assert_eq!(got.content(), Some(version_doc("two").as_str()));

    // Deleting versions: not the default one; then the whole document.
    let del = s
        .client
        .delete_document()
        .name("Versioned")
        .document_version("2")
        .send()
        .await
        .expect_err("default");
    assert_eq!(code(&del), "InvalidDocumentOperation");
    s.client
        .delete_document()
        .name("Versioned")
        .document_version("1")
        .send()
        .await
        .expect("delete v1");
    let gone = s
        .client
        .describe_document()
        .name("Versioned")
        .document_version("1")
        .send()
        .await
        .expect_err("v1 gone");
    assert_eq!(code(&gone), "InvalidDocumentVersion");
    s.client
        .delete_document()
        .name("Versioned")
        .send()
        .await
        .expect("delete");
    let gone = s
        .client
        .describe_document()
        .name("Versioned")
        .send()
        .await
        .expect_err("gone");
    assert_eq!(code(&gone), "InvalidDocument");
    a.stop().await;
}
