//! Command documents: parameter definitions, `{{ name }}` substitution and the execution plan the agent runs.
//!
//! The built-in `AWS-RunShellScript` (schema 1.2) and custom documents (schema 1.2 and 2.2, parsed by
//! `document_content`) share this machinery. Parameter rules follow the fact sheet §10; which steps a
//! node skips (preconditions, exit codes 168/169) lives in `step_skips`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CoreError, CoreResult};

/// Parameter types a Command document may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParamType {
    String,
    StringList,
}

/// One declared document parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamDef {
    pub name: String,
    pub param_type: ParamType,
    pub description: String,
    /// A parameter without a default is required.
    pub default: Option<Value>,
    pub allowed_values: Vec<String>,
    pub allowed_pattern: Option<String>,
    pub min_items: Option<usize>,
    pub max_items: Option<usize>,
    pub min_chars: Option<usize>,
    pub max_chars: Option<usize>,
}

/// One step as written in the document, before substitution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTemplate {
    /// Reported as CommandPlugin.Name / PluginName.
    pub name: String,
    pub action: String,
    pub inputs: Value,
    /// Schema 2.2 `precondition: {StringEquals: [a, b]}`, before substitution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precondition: Option<Precondition>,
}

/// A step's `StringEquals` precondition; the operand `platformType` stands for the node's platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Precondition {
    pub left: String,
    pub right: String,
}

impl Precondition {
    fn operand<'a>(s: &'a str, platform_type: &'a str) -> &'a str {
        if s == "platformType" {
            platform_type
        } else {
            s
        }
    }

    /// Whether the step runs on a node of `platform_type` (`Linux`, `MacOS`, `Windows`).
    pub fn holds(&self, platform_type: &str) -> bool {
        Self::operand(&self.left, platform_type) == Self::operand(&self.right, platform_type)
    }

    /// As amazon-ssm-agent prints it in the skip message.
    pub fn describe(&self) -> String {
        format!("\"StringEquals\": [{}, {}]", self.left, self.right)
    }
}

/// A document version ready to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentSpec {
    pub name: String,
    pub version: String,
    pub schema_version: String,
    pub description: String,
    pub params: Vec<ParamDef>,
    pub steps: Vec<StepTemplate>,
}

/// One step the agent executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    pub name: String,
    pub action: String,
    pub commands: Vec<String>,
    pub working_directory: String,
    pub timeout_seconds: u64,
    /// Evaluated per node when the command is delivered (parameters already substituted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precondition: Option<Precondition>,
}

/// What SendCommand resolved: the steps to run, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<PlanStep>,
}

impl Plan {
    /// The execution part of the total timeout: the steps run one after another.
    pub fn execution_timeout_seconds(&self) -> u64 {
        self.steps.iter().map(|s| s.timeout_seconds).sum()
    }
}

pub const RUN_SHELL_SCRIPT: &str = "AWS-RunShellScript";
pub const RUN_SHELL_SCRIPT_ACTION: &str = "aws:runShellScript";
const EXECUTION_TIMEOUT_PATTERN: &str =
    "([1-9][0-9]{0,4})|(1[0-6][0-9]{4})|(17[0-1][0-9]{3})|(172[0-7][0-9]{2})|(172800)";
/// The agent's execution-timeout clamp (amazon-ssm-agent `ValidateExecutionTimeout`).
const DEFAULT_EXECUTION_TIMEOUT: u64 = 3600;
const MIN_EXECUTION_TIMEOUT: u64 = 5;
const MAX_EXECUTION_TIMEOUT: u64 = 172_800;

/// The content GetDocument returns for `AWS-RunShellScript` (parses to [`aws_run_shell_script`]).
pub const AWS_RUN_SHELL_SCRIPT_CONTENT: &str = r#"{
  "schemaVersion": "1.2",
  "description": "Run a shell script or specify the commands to run.",
  "parameters": {
    "commands": {
      "type": "StringList",
      "description": "(Required) Specify a shell script or a command to run.",
      "minItems": 1,
      "displayType": "textarea"
    },
    "workingDirectory": {
      "type": "String",
      "default": "",
      "description": "(Optional) The path to the working directory on your instance.",
      "maxChars": 4096
    },
    "executionTimeout": {
      "type": "String",
      "default": "3600",
      "description": "(Optional) The time in seconds for a command to complete before it is considered to have failed. Default is 3600 (1 hour). Maximum is 172800 (48 hours).",
      "allowedPattern": "([1-9][0-9]{0,4})|(1[0-6][0-9]{4})|(17[0-1][0-9]{3})|(172[0-7][0-9]{2})|(172800)"
    }
  },
  "runtimeConfig": {
    "aws:runShellScript": {
      "properties": [
        {
          "id": "0.aws:runShellScript",
          "runCommand": "{{ commands }}",
          "workingDirectory": "{{ workingDirectory }}",
          "timeoutSeconds": "{{ executionTimeout }}"
        }
      ]
    }
  }
}
"#;

/// The AWS-owned `AWS-RunShellScript`, version 1, schema 1.2.
pub fn aws_run_shell_script() -> DocumentSpec {
    let param = |name: &str, t, desc: &str, default: Option<Value>| ParamDef {
        name: name.into(),
        param_type: t,
        description: desc.into(),
        default,
        allowed_values: vec![],
        allowed_pattern: None,
        min_items: None,
        max_items: None,
        min_chars: None,
        max_chars: None,
    };
    let mut commands = param(
        "commands",
        ParamType::StringList,
        "(Required) Specify a shell script or a command to run.",
        None,
    );
    commands.min_items = Some(1);
    let mut wd = param(
        "workingDirectory",
        ParamType::String,
        "(Optional) The path to the working directory on your instance.",
        Some(Value::String(String::new())),
    );
    wd.max_chars = Some(4096);
    let mut timeout = param(
        "executionTimeout",
        ParamType::String,
        "(Optional) The time in seconds for a command to complete before it is considered to have failed. Default is 3600 (1 hour). Maximum is 172800 (48 hours).",
        Some(Value::String("3600".into())),
    );
    timeout.allowed_pattern = Some(EXECUTION_TIMEOUT_PATTERN.into());
    DocumentSpec {
        name: RUN_SHELL_SCRIPT.into(),
        version: "1".into(),
        schema_version: "1.2".into(),
        description: "Run a shell script or specify the commands to run.".into(),
        params: vec![commands, wd, timeout],
        steps: vec![StepTemplate {
            name: RUN_SHELL_SCRIPT_ACTION.into(),
            action: RUN_SHELL_SCRIPT_ACTION.into(),
            inputs: serde_json::json!({
                "runCommand": "{{ commands }}",
                "workingDirectory": "{{ workingDirectory }}",
                "timeoutSeconds": "{{ executionTimeout }}"
            }),
            precondition: None,
        }],
    }
}

/// Looks up a built-in document by name and version (`""`, `$DEFAULT`, `$LATEST` or a number).
pub fn builtin(name: &str, version: &str) -> CoreResult<DocumentSpec> {
    let name_only = name.rsplit('/').next().unwrap_or(name);
    if name_only != RUN_SHELL_SCRIPT {
        return Err(CoreError::UnknownDocument {
            name: name.to_owned(),
        });
    }
    let doc = aws_run_shell_script();
    match version {
        "" | "$DEFAULT" | "$LATEST" => Ok(doc),
        v if v == doc.version => Ok(doc),
        v => Err(CoreError::UnknownDocumentVersion {
            name: name.to_owned(),
            version: v.to_owned(),
        }),
    }
}

fn invalid(msg: String) -> CoreError {
    CoreError::InvalidParameters(msg)
}

/// Validates SendCommand `Parameters` against the document and returns every parameter's value
/// (defaults filled in) as JSON: a String parameter as a string, a StringList as an array.
pub fn bind_parameters(
    doc: &DocumentSpec,
    given: &BTreeMap<String, Vec<String>>,
) -> CoreResult<BTreeMap<String, Value>> {
    for name in given.keys() {
        if !doc.params.iter().any(|p| &p.name == name) {
            return Err(invalid(format!(
                "Parameter \"{name}\" is not defined in document {}.",
                doc.name
            )));
        }
    }
    let mut bound = BTreeMap::new();
    for p in &doc.params {
        let value = match (given.get(&p.name), &p.default) {
            (Some(values), _) => check_value(p, values)?,
            (None, Some(default)) => default.clone(),
            (None, None) => {
                return Err(invalid(format!(
                    "Parameter \"{}\" is required by document {} but was not provided.",
                    p.name, doc.name
                )))
            }
        };
        bound.insert(p.name.clone(), value);
    }
    Ok(bound)
}

pub(crate) fn check_value(p: &ParamDef, values: &[String]) -> CoreResult<Value> {
    let items = values.len();
    match p.param_type {
        ParamType::String if items != 1 => {
            return Err(invalid(format!(
                "Parameter \"{}\" is a String and takes exactly one value, got {items}.",
                p.name
            )))
        }
        _ => {}
    }
    if let Some(min) = p.min_items.filter(|m| items < *m) {
        return Err(invalid(format!(
            "Parameter \"{}\" needs at least {min} item(s), got {items}.",
            p.name
        )));
    }
    if let Some(max) = p.max_items.filter(|m| items > *m) {
        return Err(invalid(format!(
            "Parameter \"{}\" takes at most {max} item(s), got {items}.",
            p.name
        )));
    }
    for v in values {
        let chars = v.chars().count();
        if let Some(min) = p.min_chars.filter(|m| chars < *m) {
            return Err(invalid(format!(
                "Parameter \"{}\" value must have at least {min} characters.",
                p.name
            )));
        }
        if let Some(max) = p.max_chars.filter(|m| chars > *m) {
            return Err(invalid(format!(
                "Parameter \"{}\" value must have at most {max} characters.",
                p.name
            )));
        }
        if !p.allowed_values.is_empty() && !p.allowed_values.contains(v) {
            return Err(invalid(format!(
                "Parameter \"{}\" value \"{v}\" is not one of the allowed values: {}.",
                p.name,
                p.allowed_values.join(", ")
            )));
        }
        if let Some(pattern) = &p.allowed_pattern {
            // Anchored as Java's `matches()` anchors the document's pattern.
            let re = regex::Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| invalid(format!("Parameter \"{}\" has a bad pattern: {e}", p.name)))?;
            if !re.is_match(v) {
                return Err(invalid(format!(
                    "Parameter \"{}\" value \"{v}\" failed to satisfy constraint: pattern {pattern}",
                    p.name
                )));
            }
        }
    }
    Ok(match p.param_type {
        ParamType::String => Value::String(values.first().cloned().unwrap_or_default()),
        ParamType::StringList => Value::Array(values.iter().cloned().map(Value::String).collect()),
    })
}

/// Replaces `{{ name }}` placeholders the way the agent does: a string that is exactly one placeholder
/// becomes the raw value (a list stays a list); embedded placeholders get the value's string form.
pub fn substitute(template: &Value, params: &BTreeMap<String, Value>) -> Value {
    match template {
        Value::String(s) => substitute_str(s, params),
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, params)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute(v, params)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn placeholder_name(inner: &str) -> Option<&str> {
    let name = inner.trim();
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric())).then_some(name)
}

fn substitute_str(s: &str, params: &BTreeMap<String, Value>) -> Value {
    let trimmed = s.trim();
    if let Some(inner) = trimmed
        .strip_prefix("{{")
        .and_then(|r| r.strip_suffix("}}"))
    {
        if !inner.contains("{{") {
            if let Some(v) = placeholder_name(inner).and_then(|n| params.get(n)) {
                return v.clone();
            }
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                match placeholder_name(&after[..end]).and_then(|n| params.get(n)) {
                    Some(Value::String(v)) => out.push_str(v),
                    Some(other) => out.push_str(&other.to_string()),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Value::String(out)
}

/// [`substitute`] for a string that must stay a string (a list value is JSON-encoded).
fn substitute_text(s: &str, params: &BTreeMap<String, Value>) -> String {
    match substitute_str(s, params) {
        Value::String(v) => v,
        other => other.to_string(),
    }
}

fn flatten_commands(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten_commands(i, out)),
        Value::String(s) => out.push(s.clone()),
        Value::Null => {}
        other => out.push(other.to_string()),
    }
}

/// The agent's clamp: unparsable or out-of-range timeouts become 3600.
fn clamp_timeout(v: Option<&Value>) -> u64 {
    let parsed = match v {
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(Value::Number(n)) => n.as_f64(),
        _ => None,
    };
    match parsed {
        Some(t) if (MIN_EXECUTION_TIMEOUT as f64..=MAX_EXECUTION_TIMEOUT as f64).contains(&t) => {
            t as u64
        }
        _ => DEFAULT_EXECUTION_TIMEOUT,
    }
}

/// Validates parameters and produces the steps the agent runs.
pub fn plan(doc: &DocumentSpec, given: &BTreeMap<String, Vec<String>>) -> CoreResult<Plan> {
    let bound = bind_parameters(doc, given)?;
    let steps = doc
        .steps
        .iter()
        .map(|step| {
            let inputs = substitute(&step.inputs, &bound);
            let mut commands = Vec::new();
            flatten_commands(
                inputs.get("runCommand").unwrap_or(&Value::Null),
                &mut commands,
            );
            let working_directory = match inputs.get("workingDirectory") {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            PlanStep {
                name: step.name.clone(),
                action: step.action.clone(),
                commands,
                working_directory,
                timeout_seconds: clamp_timeout(inputs.get("timeoutSeconds")),
                precondition: step.precondition.as_ref().map(|p| Precondition {
                    left: substitute_text(&p.left, &bound),
                    right: substitute_text(&p.right, &bound),
                }),
            }
        })
        .collect();
    Ok(Plan { steps })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn run_shell_script_plan() {
        let doc = aws_run_shell_script();
        let p = plan(
            &doc,
            &params(&[
                ("commands", &["echo a", "echo b"]),
                ("executionTimeout", &["30"]),
            ]),
        )
        .expect("valid");
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].name, "aws:runShellScript");
        assert_eq!(p.steps[0].commands, vec!["echo a", "echo b"]);
        assert_eq!(p.steps[0].timeout_seconds, 30);
        assert_eq!(p.steps[0].working_directory, "");
        let p = plan(&doc, &params(&[("commands", &["true"])])).expect("valid");
        assert_eq!(p.execution_timeout_seconds(), 3600);
    }

    #[test]
    fn run_shell_script_rejects_bad_parameters() {
        let doc = aws_run_shell_script();
        for bad in [
            params(&[]),
            params(&[("commands", &[])]),
            params(&[("commands", &["x"]), ("nope", &["1"])]),
            params(&[("commands", &["x"]), ("executionTimeout", &["0"])]),
            params(&[("commands", &["x"]), ("executionTimeout", &["172801"])]),
            params(&[("commands", &["x"]), ("executionTimeout", &["1", "2"])]),
        ] {
            assert!(
                matches!(plan(&doc, &bad), Err(CoreError::InvalidParameters(_))),
                "{bad:?}"
            );
        }
        let long = "d".repeat(4097);
        assert!(plan(
            &doc,
            &params(&[("commands", &["x"]), ("workingDirectory", &[&long])])
        )
        .is_err());
    }

    #[test]
    fn substitution_keeps_list_type_for_whole_placeholders() {
        let mut bound = BTreeMap::new();
        bound.insert("cmds".to_string(), serde_json::json!(["a", "b"]));
        bound.insert("who".to_string(), serde_json::json!("world"));
        assert_eq!(
            substitute(&serde_json::json!("{{ cmds }}"), &bound),
            serde_json::json!(["a", "b"])
        );
        assert_eq!(
            substitute(&serde_json::json!("hello {{who}}!"), &bound),
            serde_json::json!("hello world!")
        );
        assert_eq!(
            substitute(&serde_json::json!("{{ missing }}"), &bound),
            serde_json::json!("{{ missing }}")
        );
        // Single pass: a value that looks like a placeholder is not expanded again.
        bound.insert("x".to_string(), serde_json::json!("{{who}}"));
        assert_eq!(
            substitute(&serde_json::json!("[{{x}}]"), &bound),
            serde_json::json!("[{{who}}]")
        );
    }

    #[test]
    fn builtin_lookup() {
        assert!(builtin("AWS-RunShellScript", "").is_ok());
        assert!(builtin("AWS-RunShellScript", "$LATEST").is_ok());
        assert!(builtin("arn:aws:ssm:us-east-1::document/AWS-RunShellScript", "1").is_ok());
        assert!(matches!(
            builtin("AWS-RunShellScript", "2"),
            Err(CoreError::UnknownDocumentVersion { .. })
        ));
        assert!(matches!(
            builtin("My-Doc", ""),
            Err(CoreError::UnknownDocument { .. })
        ));
    }
}
