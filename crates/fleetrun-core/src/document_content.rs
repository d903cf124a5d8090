//! Parsing and validating Command document content (JSON or YAML; schema 1.2 `runtimeConfig` or
//! 2.2 `mainSteps`) into a [`DocumentSpec`], with the facts DescribeDocument reports (platform types,
//! parameters). Errors are `InvalidDocumentContent`, `InvalidDocumentSchemaVersion` and
//! `MaxDocumentSizeExceeded`, as CreateDocument / UpdateDocument answer them.
//!
//! Rules (fact sheet §10): parameter names `^[a-zA-Z0-9]+$`; types String and StringList; a default
//! must satisfy the parameter's own constraints; `{{ name }}` may only name declared parameters;
//! step names are unique; `precondition` supports `StringEquals` with two operands.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::content_guard;
use crate::document::{
    check_value, DocumentSpec, ParamDef, ParamType, Plan, Precondition, StepTemplate,
};
use crate::documents::{check_document_size, DocumentFormat};
use crate::error::{CoreError, CoreResult};
use crate::node::effective_platform_type;

/// The plugin fleetrun agents run.
pub const RUN_SHELL_SCRIPT: &str = "aws:runShellScript";
/// Accepted in 2.2 documents so multi-platform documents work; always skipped on fleetrun nodes.
pub const RUN_POWERSHELL_SCRIPT: &str = "aws:runPowerShellScript";

/// The platforms an action runs on, in AWS's order.
pub fn action_platforms(action: &str) -> &'static [&'static str] {
    match action {
        RUN_SHELL_SCRIPT => &["Linux", "MacOS"],
        RUN_POWERSHELL_SCRIPT => &["Windows"],
        _ => &[],
    }
}

fn bad(msg: impl Into<String>) -> CoreError {
    CoreError::InvalidDocumentContent(msg.into())
}

/// Parses `content` written in `format` into a runnable spec named `name`, version `version`.
pub fn parse(
    name: &str,
    version: &str,
    content: &str,
    format: DocumentFormat,
) -> CoreResult<DocumentSpec> {
    check_document_size("Document content", content.len())?;
    let root: Value = match format {
        DocumentFormat::Json => serde_json::from_str(content)
            .map_err(|e| bad(format!("The content is not valid JSON: {e}")))?,
        DocumentFormat::Yaml => {
            content_guard::check_yaml(content)?;
            serde_yaml_ng::from_str(content)
                .map_err(|e| bad(format!("The content is not valid YAML: {e}")))?
        }
    };
    let obj = root
        .as_object()
        .ok_or_else(|| bad("The document content must be a JSON or YAML object."))?;
    let schema_version = match obj.get("schemaVersion") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(bad("schemaVersion must be a string such as \"2.2\".")),
        None => return Err(bad("The document content is missing schemaVersion.")),
    };
    let description = match obj.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("description must be a string.")),
    };
    let params = parameters(obj.get("parameters"))?;
    let steps = match schema_version.as_str() {
        "2.2" => main_steps(obj)?,
        "1.2" => runtime_config(obj)?,
        other => {
            return Err(CoreError::InvalidDocumentSchemaVersion(format!(
                "Document schema version {other} is not supported for Command documents; use 1.2 or 2.2."
            )))
        }
    };
    let declared: BTreeSet<&str> = params.iter().map(|p| p.name.as_str()).collect();
    for step in &steps {
        let mut used = Vec::new();
        placeholders(&step.inputs, &mut used);
        if let Some(p) = &step.precondition {
            placeholders(&Value::String(p.left.clone()), &mut used);
            placeholders(&Value::String(p.right.clone()), &mut used);
        }
        if let Some(missing) = used.iter().find(|u| !declared.contains(u.as_str())) {
            return Err(bad(format!(
                "Step {} references parameter {{{{ {missing} }}}}, which the document does not declare.",
                step.name
            )));
        }
    }
    Ok(DocumentSpec {
        name: name.into(),
        version: version.into(),
        schema_version,
        description,
        params,
        steps,
    })
}

/// PlatformTypes of a spec: the union of its actions' platforms, in AWS's order.
pub fn platform_types(spec: &DocumentSpec) -> Vec<String> {
    ["Windows", "Linux", "MacOS"]
        .into_iter()
        .filter(|p| {
            spec.steps
                .iter()
                .any(|s| action_platforms(&s.action).contains(p))
        })
        .map(String::from)
        .collect()
}

/// Whether a node reporting `reported_platform` can run `plan`: its platform is among the plan's
/// actions' platforms (the document's PlatformTypes). A node reached through `Targets` that cannot
/// ends `InvalidPlatform` at delivery, as AWS documents for such invocations.
pub fn plan_supports_platform(plan: &Plan, reported_platform: &str) -> bool {
    let platform = effective_platform_type(reported_platform);
    plan.steps.is_empty()
        || plan
            .steps
            .iter()
            .any(|s| action_platforms(&s.action).contains(&platform))
}

/// SendCommand's platform rule for a node named in `InstanceIds`: a document whose PlatformTypes
/// ([`platform_types`]) lack the node's platform is refused with `UnsupportedPlatformType` ("The
/// document doesn't support the platform type of the given managed node IDs", botocore model; seen
/// on AWS as `Cannot perform operation for instance id i-… of platform type Windows`,
/// aws/aws-sdk-java#1209, gruntwork-io/terratest#978). Nodes reached through `Targets` are not
/// refused here: AWS documents a per-invocation `InvalidPlatform` status for them instead.
/// A node that never reported its platform counts as Linux, as for preconditions.
pub fn check_platform(
    platform_types: &[String],
    instance_id: &str,
    reported_platform: &str,
) -> CoreResult<()> {
    let platform = effective_platform_type(reported_platform);
    if platform_types.iter().any(|p| p == platform) {
        return Ok(());
    }
    Err(CoreError::UnsupportedPlatformType {
        instance_id: instance_id.to_string(),
        platform_type: platform.to_string(),
    })
}

/// `{{ name }}` names used in string values (not `{{ssm:...}}` references).
fn placeholders(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{") {
                let after = &rest[start + 2..];
                let Some(end) = after.find("}}") else { break };
                let inner = after[..end].trim();
                if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric()) {
                    out.push(inner.to_string());
                }
                rest = &after[end + 2..];
            }
        }
        Value::Array(items) => items.iter().for_each(|i| placeholders(i, out)),
        Value::Object(map) => map.values().for_each(|i| placeholders(i, out)),
        _ => {}
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn count(def: &Map<String, Value>, key: &str, param: &str) -> CoreResult<Option<usize>> {
    match def.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => scalar_text(v)
            .and_then(|s| s.parse::<usize>().ok())
            .map(Some)
            .ok_or_else(|| {
                bad(format!(
                    "Parameter {param}: {key} must be a non-negative integer."
                ))
            }),
    }
}

fn parameters(v: Option<&Value>) -> CoreResult<Vec<ParamDef>> {
    let map = match v {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(bad(
                "parameters must be an object of parameter definitions.",
            ))
        }
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, def) in map {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad(format!(
                "Parameter name {name:?} is not valid: use letters and digits only."
            )));
        }
        let def = def
            .as_object()
            .ok_or_else(|| bad(format!("Parameter {name} must be an object.")))?;
        let param_type = match def.get("type").and_then(Value::as_str) {
            Some("String") => ParamType::String,
            Some("StringList") => ParamType::StringList,
            Some(other) => {
                return Err(bad(format!(
                    "Parameter {name} has type {other}; Command documents support String and StringList."
                )))
            }
            None => return Err(bad(format!("Parameter {name} is missing its type."))),
        };
        let allowed_values = match def.get("allowedValues") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    scalar_text(i).ok_or_else(|| {
                        bad(format!("Parameter {name}: allowedValues must be strings."))
                    })
                })
                .collect::<CoreResult<_>>()?,
            Some(_) => {
                return Err(bad(format!(
                    "Parameter {name}: allowedValues must be a list."
                )))
            }
        };
        let allowed_pattern = match def.get("allowedPattern") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => {
                regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                    bad(format!(
                        "Parameter {name}: allowedPattern does not compile: {e}"
                    ))
                })?;
                Some(p.clone())
            }
            Some(_) => {
                return Err(bad(format!(
                    "Parameter {name}: allowedPattern must be a string."
                )))
            }
        };
        let mut p = ParamDef {
            name: name.clone(),
            param_type,
            description: def
                .get("description")
                .and_then(scalar_text)
                .unwrap_or_default(),
            default: None,
            allowed_values,
            allowed_pattern,
            min_items: count(def, "minItems", name)?,
            max_items: count(def, "maxItems", name)?,
            min_chars: count(def, "minChars", name)?,
            max_chars: count(def, "maxChars", name)?,
        };
        if let Some(default) = def.get("default").filter(|d| !d.is_null()) {
            let values: Vec<String> = match (param_type, default) {
                (ParamType::StringList, Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        scalar_text(i).ok_or_else(|| {
                            bad(format!(
                                "Parameter {name}: the default must be a list of strings."
                            ))
                        })
                    })
                    .collect::<CoreResult<_>>()?,
                (ParamType::String, d) => vec![scalar_text(d).ok_or_else(|| {
                    bad(format!("Parameter {name}: the default must be a string."))
                })?],
                _ => {
                    return Err(bad(format!(
                        "Parameter {name}: the default must be a list of strings."
                    )))
                }
            };
            // An empty String default is always allowed (AWS-RunShellScript's workingDirectory).
            let check = !(param_type == ParamType::String && values.iter().all(String::is_empty));
            let value = if check {
                check_value(&p, &values).map_err(|e| {
                    bad(format!(
                        "Parameter {name}: the default value is not valid: {e}"
                    ))
                })?
            } else {
                Value::String(String::new())
            };
            p.default = Some(value);
        }
        out.push(p);
    }
    Ok(out)
}

fn step_name_ok(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
}

fn precondition(step: &str, v: Option<&Value>) -> CoreResult<Option<Precondition>> {
    let map = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad(format!("Step {step}: precondition must be an object."))),
    };
    let mut entries = map.iter();
    match (entries.next(), entries.next()) {
        (Some((op, Value::Array(args))), None) if op == "StringEquals" => {
            let texts: Vec<String> = args.iter().filter_map(scalar_text).collect();
            match texts.as_slice() {
                [left, right] if args.len() == 2 => Ok(Some(Precondition {
                    left: left.clone(),
                    right: right.clone(),
                })),
                _ => Err(bad(format!(
                    "Step {step}: StringEquals takes exactly two string operands."
                ))),
            }
        }
        _ => Err(bad(format!(
            "Step {step}: the only supported precondition is {{\"StringEquals\": [\"platformType\", \"Linux\"]}}."
        ))),
    }
}

fn shell_inputs(step: &str, inputs: Option<&Value>) -> CoreResult<Value> {
    let inputs = inputs
        .and_then(Value::as_object)
        .ok_or_else(|| bad(format!("Step {step}: inputs must be an object.")))?;
    match inputs.get("runCommand") {
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(|i| i.is_string() || i.is_array()) => {}
        Some(_) => {
            return Err(bad(format!(
                "Step {step}: runCommand must be a list of strings."
            )))
        }
        None => return Err(bad(format!("Step {step}: inputs.runCommand is required."))),
    }
    for key in ["workingDirectory", "timeoutSeconds"] {
        if let Some(v) = inputs.get(key).filter(|v| !v.is_null()) {
            if scalar_text(v).is_none() {
                return Err(bad(format!("Step {step}: {key} must be a string.")));
            }
        }
    }
    Ok(Value::Object(inputs.clone()))
}

fn main_steps(obj: &Map<String, Value>) -> CoreResult<Vec<StepTemplate>> {
    if obj.contains_key("runtimeConfig") {
        return Err(bad(
            "runtimeConfig is a schema 1.2 element; schema 2.2 uses mainSteps.",
        ));
    }
    let steps = match obj.get("mainSteps") {
        Some(Value::Array(s)) if !s.is_empty() => s,
        _ => {
            return Err(bad(
                "A schema 2.2 document needs a non-empty mainSteps list.",
            ))
        }
    };
    let mut out: Vec<StepTemplate> = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let step = step
            .as_object()
            .ok_or_else(|| bad(format!("mainSteps[{i}] must be an object.")))?;
        let name = step
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| step_name_ok(n))
            .ok_or_else(|| {
                bad(format!(
                    "mainSteps[{i}] needs a name of letters, digits, '_', '-', '.' or ':'."
                ))
            })?;
        if out.iter().any(|s| s.name == name) {
            return Err(bad(format!("Step name {name} is used more than once.")));
        }
        let action = step
            .get("action")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("Step {name} needs an action.")))?;
        if action_platforms(action).is_empty() {
            return Err(bad(format!(
                "Step {name}: action {action} is not supported; use {RUN_SHELL_SCRIPT}."
            )));
        }
        out.push(StepTemplate {
            name: name.into(),
            action: action.into(),
            inputs: shell_inputs(name, step.get("inputs"))?,
            precondition: precondition(name, step.get("precondition"))?,
        });
    }
    Ok(out)
}

fn runtime_config(obj: &Map<String, Value>) -> CoreResult<Vec<StepTemplate>> {
    if obj.contains_key("mainSteps") {
        return Err(bad(
            "mainSteps is a schema 2.2 element; schema 1.2 uses runtimeConfig.",
        ));
    }
    let plugins = match obj.get("runtimeConfig") {
        Some(Value::Object(p)) if !p.is_empty() => p,
        _ => {
            return Err(bad(
                "A schema 1.2 document needs a non-empty runtimeConfig object.",
            ))
        }
    };
    let mut out = Vec::new();
    for (plugin, body) in plugins {
        if plugin != RUN_SHELL_SCRIPT {
            return Err(bad(format!(
                "Plugin {plugin} is not supported; use {RUN_SHELL_SCRIPT}."
            )));
        }
        let props = body.get("properties");
        let inputs = match props {
            Some(Value::Array(items)) if items.len() == 1 => items.first(),
            Some(Value::Object(_)) => props,
            _ => {
                return Err(bad(format!(
                    "{plugin}: properties must hold exactly one entry."
                )))
            }
        };
        out.push(StepTemplate {
            name: plugin.clone(),
            action: plugin.clone(),
            inputs: shell_inputs(plugin, inputs)?,
            precondition: None,
        });
    }
    Ok(out)
}

/// Renders a document's content in another format (GetDocument `DocumentFormat`).
pub fn convert(content: &str, from: DocumentFormat, to: DocumentFormat) -> CoreResult<String> {
    if from == to {
        return Ok(content.to_string());
    }
    let value: Value = match from {
        DocumentFormat::Json => serde_json::from_str(content).map_err(|e| bad(e.to_string()))?,
        DocumentFormat::Yaml => {
            content_guard::check_yaml(content)?;
            serde_yaml_ng::from_str(content).map_err(|e| bad(e.to_string()))?
        }
    };
    match to {
        DocumentFormat::Json => {
            serde_json::to_string_pretty(&value).map_err(|e| bad(e.to_string()))
        }
        DocumentFormat::Yaml => serde_yaml_ng::to_string(&value).map_err(|e| bad(e.to_string())),
    }
}

/// Parameters as DescribeDocument lists them: name, type, description, default (a list default as
/// its JSON text).
pub fn default_text(p: &ParamDef) -> Option<String> {
    p.default.as_ref().map(|d| match d {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_nodes_must_run_on_a_document_platform() {
        let shell = vec!["Linux".to_string(), "MacOS".to_string()];
        assert!(check_platform(&shell, "mi-00000000000000001", "Linux").is_ok());
        assert!(check_platform(&shell, "mi-00000000000000001", "MacOS").is_ok());
        // A node that never reported its platform counts as Linux.
        assert!(check_platform(&shell, "mi-00000000000000001", "").is_ok());
        match check_platform(&shell, "mi-00000000000000001", "Windows") {
            Err(CoreError::UnsupportedPlatformType {
                instance_id,
                platform_type,
            }) => assert_eq!(
                (instance_id.as_str(), platform_type.as_str()),
                ("mi-00000000000000001", "Windows")
            ),
            other => panic!("expected UnsupportedPlatformType, got {other:?}"),
        }
        let windows = vec!["Windows".to_string()];
        assert!(check_platform(&windows, "mi-00000000000000001", "").is_err());
    }

    fn plan_of(actions: &[&str]) -> Plan {
        Plan {
            steps: actions
                .iter()
                .enumerate()
                .map(|(i, action)| crate::document::PlanStep {
                    name: format!("step{i}"),
                    action: (*action).to_string(),
                    commands: vec!["true".into()],
                    working_directory: String::new(),
                    timeout_seconds: 60,
                    precondition: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_plan_runs_on_the_platforms_of_its_actions() {
        let shell = plan_of(&[RUN_SHELL_SCRIPT]);
        assert!(plan_supports_platform(&shell, "Linux"));
        assert!(plan_supports_platform(&shell, "MacOS"));
        assert!(
            plan_supports_platform(&shell, ""),
            "unreported counts as Linux"
        );
        assert!(!plan_supports_platform(&shell, "Windows"));
        let windows = plan_of(&[RUN_POWERSHELL_SCRIPT]);
        assert!(plan_supports_platform(&windows, "Windows"));
        assert!(!plan_supports_platform(&windows, "Linux"));
        let mixed = plan_of(&[RUN_POWERSHELL_SCRIPT, RUN_SHELL_SCRIPT]);
        assert!(
            plan_supports_platform(&mixed, "Windows") && plan_supports_platform(&mixed, "Linux")
        );
    }
}
