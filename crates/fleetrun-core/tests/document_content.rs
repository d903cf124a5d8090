//! Document content parsing: schema 2.2 and 1.2, JSON and YAML, and every rejection.

use std::collections::BTreeMap;

use fleetrun_core::document::{self, plan, AWS_RUN_SHELL_SCRIPT_CONTENT};
use fleetrun_core::document_content::{convert, parse, platform_types};
use fleetrun_core::documents::DocumentFormat;
use fleetrun_core::CoreError;

const TWO_STEPS_JSON: &str = r#"{
  "schemaVersion": "2.2",
  "description": "Greets, then lists.",
  "parameters": {
    "greeting": {"type": "String", "default": "hello", "allowedValues": ["hello", "hi"]},
    "dirs": {"type": "StringList", "default": ["/tmp"], "maxItems": 3}
  },
  "mainSteps": [
    {"action": "aws:runShellScript", "name": "greet",
     "inputs": {"runCommand": ["echo {{ greeting }}"], "timeoutSeconds": "60"}},
    {"action": "aws:runShellScript", "name": "list",
     "precondition": {"StringEquals": ["platformType", "Linux"]},
     "inputs": {"runCommand": "{{ dirs }}", "workingDirectory": "/"}}
  ]
}"#;

const TWO_STEPS_YAML: &str = r#"
schemaVersion: '2.2'
description: Greets, then lists.
parameters:
  greeting:
    type: String
    default: hello
    allowedValues: [hello, hi]
  dirs:
    type: StringList
    default: [/tmp]
    maxItems: 3
mainSteps:
  - action: aws:runShellScript
    name: greet
    inputs:
      runCommand:
        - echo {{ greeting }}
      timeoutSeconds: '60'
  - action: aws:runShellScript
    name: list
    precondition:
      StringEquals: [platformType, Linux]
    inputs:
      runCommand: '{{ dirs }}'
      workingDirectory: /
"#;

fn given(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect()
}

#[test]
fn schema_2_2_json_and_yaml_agree() {
    let json = parse("Greet", "1", TWO_STEPS_JSON, DocumentFormat::Json).expect("json");
    let yaml = parse("Greet", "1", TWO_STEPS_YAML, DocumentFormat::Yaml).expect("yaml");
    assert_eq!(json, yaml);
    assert_eq!(json.schema_version, "2.2");
    assert_eq!(json.steps.len(), 2);
    assert_eq!(platform_types(&json), ["Linux", "MacOS"]);
    let p = plan(&json, &given(&[("greeting", &["hi"])])).expect("plan");
    assert_eq!(p.steps[0].name, "greet");
    assert_eq!(p.steps[0].commands, ["echo hi"]);
    assert_eq!(p.steps[0].timeout_seconds, 60);
    assert_eq!(p.steps[1].commands, ["/tmp"]);
    assert_eq!(p.steps[1].working_directory, "/");
    let pre = p.steps[1].precondition.as_ref().expect("precondition");
    assert!(pre.holds("Linux") && !pre.holds("MacOS"));
    assert_eq!(p.execution_timeout_seconds(), 60 + 3600);
    for bad in [
        given(&[("greeting", &["hey"])]),
        given(&[("dirs", &["a", "b", "c", "d"])]),
        given(&[("nope", &["x"])]),
    ] {
        assert!(
            matches!(plan(&json, &bad), Err(CoreError::InvalidParameters(_))),
            "{bad:?}"
        );
    }
    // Round trip through the other format.
    let as_yaml =
        convert(TWO_STEPS_JSON, DocumentFormat::Json, DocumentFormat::Yaml).expect("yaml");
    assert_eq!(
        parse("Greet", "1", &as_yaml, DocumentFormat::Yaml).expect("reparse"),
        json
    );
}

#[test]
fn builtin_content_matches_the_builtin_spec() {
    let parsed = parse(
        document::RUN_SHELL_SCRIPT,
        "1",
        AWS_RUN_SHELL_SCRIPT_CONTENT,
        DocumentFormat::Json,
    )
    .expect("parse");
    let builtin = document::aws_run_shell_script();
    let mut want = builtin.params.clone();
    want.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(parsed.params, want);
    assert_eq!(parsed.description, builtin.description);
    let args = given(&[("commands", &["echo a"]), ("executionTimeout", &["30"])]);
    assert_eq!(
        plan(&parsed, &args).expect("a"),
        plan(&builtin, &args).expect("b")
    );
}

fn rejects(content: &str) -> CoreError {
    parse("D", "1", content, DocumentFormat::Json).expect_err(content)
}

#[test]
fn invalid_content() {
    for content in [
        "not json",
        "[]",
        r#"{"mainSteps": []}"#,
        r#"{"schemaVersion": "2.2"}"#,
        r#"{"schemaVersion": "2.2", "mainSteps": []}"#,
        r#"{"schemaVersion": "2.2", "mainSteps": [{"action": "aws:runShellScript", "name": "a"}]}"#,
        r#"{"schemaVersion": "2.2", "mainSteps": [{"action": "aws:copy", "name": "a", "inputs": {"runCommand": []}}]}"#,
        r#"{"schemaVersion": "2.2", "mainSteps": [{"action": "aws:runShellScript", "name": "a", "inputs": {"runCommand": ["x"]}},
            {"action": "aws:runShellScript", "name": "a", "inputs": {"runCommand": ["y"]}}]}"#,
        r#"{"schemaVersion": "2.2", "mainSteps": [{"action": "aws:runShellScript", "name": "a", "inputs": {"runCommand": ["{{ missing }}"]}}]}"#,
        r#"{"schemaVersion": "2.2", "mainSteps": [{"action": "aws:runShellScript", "name": "a",
            "precondition": {"StringLike": ["platformType", "Linux"]}, "inputs": {"runCommand": ["x"]}}]}"#,
        r#"{"schemaVersion": "2.2", "parameters": {"p": {"type": "Integer"}},
            "mainSteps": [{"action": "aws:runShellScript", "name": "a", "inputs": {"runCommand": ["x"]}}]}"#,
        r#"{"schemaVersion": "2.2", "parameters": {"p-q": {"type": "String"}},
            "mainSteps": [{"action": "aws:runShellScript", "name": "a", "inputs": {"runCommand": ["x"]}}]}"#,
        r#"{"schemaVersion": "2.2", "parameters": {"p": {"type": "String", "default": "z", "allowedValues": ["a"]}},
            "mainSteps": [{"action": "aws:runShellScript", "name": "a", "inputs": {"runCommand": ["x"]}}]}"#,
        r#"{"schemaVersion": "1.2", "runtimeConfig": {"aws:runPowerShellScript": {"properties": [{"runCommand": ["x"]}]}}}"#,
    ] {
        assert!(
            matches!(rejects(content), CoreError::InvalidDocumentContent(_)),
            "{content}"
        );
    }
    for version in ["0.3", "2.0", "1.0"] {
        let content = format!(r#"{{"schemaVersion": "{version}", "mainSteps": []}}"#);
        assert!(
            matches!(
                rejects(&content),
                CoreError::InvalidDocumentSchemaVersion(_)
            ),
            "{version}"
        );
    }
    let big = format!(
        r#"{{"schemaVersion": "2.2", "description": "{}", "mainSteps": []}}"#,
        "x".repeat(64 * 1024)
    );
    assert!(matches!(
        rejects(&big),
        CoreError::MaxDocumentSizeExceeded(_)
    ));
    assert!(matches!(
        parse("D", "1", "a: [", DocumentFormat::Yaml),
        Err(CoreError::InvalidDocumentContent(_))
    ));
}

#[test]
fn multi_platform_documents_are_accepted() {
    let content = r#"{"schemaVersion": "2.2", "mainSteps": [
        {"action": "aws:runPowerShellScript", "name": "win",
         "precondition": {"StringEquals": ["platformType", "Windows"]}, "inputs": {"runCommand": ["dir"]}},
        {"action": "aws:runShellScript", "name": "nix",
         "precondition": {"StringEquals": ["platformType", "Linux"]}, "inputs": {"runCommand": ["ls"]}}]}"#;
    let spec = parse("D", "1", content, DocumentFormat::Json).expect("parse");
    assert_eq!(platform_types(&spec), ["Windows", "Linux", "MacOS"]);
}
