//! Policy text ⇄ [`Policy`]: the JSON reader (which keeps duplicate keys visible so they can be
//! refused), the element-by-element validation with locations such as
//! `Statement[1].Condition.StringLike["ssm:resourceTag/Finance"]`, [`PolicyError`], and the
//! normalised writer behind [`Policy::to_json`].

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::condition::{self, Condition};
use crate::matching::{action_problem, resource_problem};
use crate::{Effect, Policy, Scope, Statement, Version};

/// The longest policy text accepted, in bytes. IAM's largest (a role's inline policies together)
/// is 10,240 characters; this leaves room for whitespace while bounding the matching work a
/// single document can demand.
pub const MAX_POLICY_LEN: usize = 65_536;

/// Why a policy document was refused. `location` is a path into the document, e.g.
/// `Statement[0].Resource[2]`; `policy` is the document itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy document is {len} bytes long; at most {max} are accepted")]
    TooLarge { len: usize, max: usize },
    #[error("the policy document is not valid JSON: {message}")]
    Json {
        message: String,
        line: usize,
        column: usize,
    },
    #[error("{location}: key {key:?} appears more than once")]
    DuplicateKey { location: String, key: String },
    #[error("{location}: unknown or unsupported element {element:?}")]
    UnknownElement { location: String, element: String },
    #[error("{location}: the required element {element:?} is missing")]
    Missing {
        location: String,
        element: &'static str,
    },
    #[error("{location}: {first:?} and {second:?} cannot both be given")]
    Conflict {
        location: String,
        first: &'static str,
        second: &'static str,
    },
    #[error("{location}: expected {expected}")]
    WrongType {
        location: String,
        expected: &'static str,
    },
    #[error("{location}: must not be empty")]
    Empty { location: String },
    #[error("{location}: unsupported Version {value:?} (use \"2012-10-17\")")]
    Version { location: String, value: String },
    #[error("{location}: Effect must be \"Allow\" or \"Deny\", not {value:?}")]
    Effect { location: String, value: String },
    #[error("{location}: Sid {sid:?} is used by another statement")]
    DuplicateSid { location: String, sid: String },
    #[error("{location}: invalid action {value:?}: {reason}")]
    Action {
        location: String,
        value: String,
        reason: &'static str,
    },
    #[error("{location}: invalid resource {value:?}: {reason}")]
    Resource {
        location: String,
        value: String,
        reason: &'static str,
    },
    #[error("{location}: unsupported condition operator {operator:?} (supported: StringEquals, StringNotEquals, StringLike, StringNotLike, their …IfExists forms, the ForAnyValue:/ForAllValues: qualifiers, and Null)")]
    Operator { location: String, operator: String },
    #[error("{location}: unsupported condition key {key:?} (supported: ssm:resourceTag/<key>, aws:ResourceTag/<key>, aws:RequestTag/<key>, aws:TagKeys)")]
    ConditionKey { location: String, key: String },
    #[error(
        "{location}: {key:?} is multivalued: use ForAnyValue:{operator} or ForAllValues:{operator}"
    )]
    NeedsSetOperator {
        location: String,
        key: String,
        operator: String,
    },
    #[error("{location}: {key:?} is single-valued: {operator} is refused, use the operator without ForAnyValue:/ForAllValues:")]
    SetOperatorOnSingleValuedKey {
        location: String,
        key: String,
        operator: String,
    },
    #[error("{location}: Null takes \"true\" or \"false\", not {value:?}")]
    NullValue { location: String, value: String },
    #[error("{location}: policy variables are not supported: {value:?}")]
    PolicyVariable { location: String, value: String },
}

/// A JSON value as written: objects keep every entry in order, duplicates included.
#[derive(Debug)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// An integer, as its decimal text.
    Int(String),
    /// A number with a fraction or exponent; never valid anywhere in a policy.
    Float,
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Int(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Int(v.to_string()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Float)
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, Json>()? {
            entries.push(entry);
        }
        Ok(Json::Object(entries))
    }
}

/// The entries of an object, refusing duplicate keys (which JSON readers resolve differently, so a
/// document could mean one thing to its author's tools and another here).
pub(crate) fn object<'a>(value: &'a Json, loc: &str) -> Result<&'a [(String, Json)], PolicyError> {
    let Json::Object(entries) = value else {
        return Err(PolicyError::WrongType {
            location: loc.to_owned(),
            expected: "an object",
        });
    };
    let mut seen = HashSet::new();
    for (key, _) in entries {
        if !seen.insert(key.as_str()) {
            return Err(PolicyError::DuplicateKey {
                location: loc.to_owned(),
                key: key.clone(),
            });
        }
    }
    Ok(entries)
}

/// Refuses `${…}`: IAM substitutes policy variables (`${aws:username}`) in 2012-10-17 documents,
/// fleetrun does not, so any such text would silently mean something else here.
pub(crate) fn no_variable(text: &str, loc: &str) -> Result<(), PolicyError> {
    if text.contains("${") {
        return Err(PolicyError::PolicyVariable {
            location: loc.to_owned(),
            value: text.to_owned(),
        });
    }
    Ok(())
}

fn string<'a>(value: &'a Json, loc: &str) -> Result<&'a str, PolicyError> {
    match value {
        Json::Str(s) => Ok(s),
        _ => Err(PolicyError::WrongType {
            location: loc.to_owned(),
            expected: "a string",
        }),
    }
}

/// A string or a non-empty array of strings, each with its own location.
fn string_list(value: &Json, loc: &str) -> Result<Vec<(String, String)>, PolicyError> {
    let wrong = || PolicyError::WrongType {
        location: loc.to_owned(),
        expected: "a string or a non-empty array of strings",
    };
    match value {
        Json::Str(s) => Ok(vec![(s.clone(), loc.to_owned())]),
        Json::Array(items) if items.is_empty() => Err(PolicyError::Empty {
            location: loc.to_owned(),
        }),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Json::Str(s) => Ok((s.clone(), format!("{loc}[{i}]"))),
                _ => Err(wrong()),
            })
            .collect(),
        _ => Err(wrong()),
    }
}

pub(crate) fn parse(text: &str) -> Result<Policy, PolicyError> {
    if text.len() > MAX_POLICY_LEN {
        return Err(PolicyError::TooLarge {
            len: text.len(),
            max: MAX_POLICY_LEN,
        });
    }
    // serde_json bounds nesting (128 levels), so hostile depth is an error, not a stack overflow.
    let root: Json = serde_json::from_str(text).map_err(|e| PolicyError::Json {
        message: e.to_string(),
        line: e.line(),
        column: e.column(),
    })?;
    let loc = "policy";
    let (mut version, mut id, mut statements) = (None, None, None);
    for (key, value) in object(&root, loc)? {
        match key.as_str() {
            "Version" => {
                version = Some(match string(value, "Version")? {
                    "2012-10-17" => Version::V2012_10_17,
                    "2008-10-17" => Version::V2008_10_17,
                    other => {
                        return Err(PolicyError::Version {
                            location: "Version".to_owned(),
                            value: other.to_owned(),
                        })
                    }
                })
            }
            "Id" => id = Some(string(value, "Id")?.to_owned()),
            "Statement" => statements = Some(parse_statements(value)?),
            other => {
                return Err(PolicyError::UnknownElement {
                    location: loc.to_owned(),
                    element: other.to_owned(),
                })
            }
        }
    }
    let statements = statements.ok_or(PolicyError::Missing {
        location: loc.to_owned(),
        element: "Statement",
    })?;
    Ok(Policy {
        version,
        id,
        statements,
    })
}

fn parse_statements(value: &Json) -> Result<Vec<Statement>, PolicyError> {
    let statements = match value {
        Json::Object(_) => vec![parse_statement(value, "Statement")?],
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_statement(item, &format!("Statement[{i}]")))
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(PolicyError::WrongType {
                location: "Statement".to_owned(),
                expected: "an object or an array of objects",
            })
        }
    };
    let mut sids = HashSet::new();
    for (i, statement) in statements.iter().enumerate() {
        if let Some(sid) = statement.sid.as_deref().filter(|s| !s.is_empty()) {
            if !sids.insert(sid) {
                return Err(PolicyError::DuplicateSid {
                    location: format!("Statement[{i}].Sid"),
                    sid: sid.to_owned(),
                });
            }
        }
    }
    Ok(statements)
}

fn parse_statement(value: &Json, loc: &str) -> Result<Statement, PolicyError> {
    let (mut sid, mut effect, mut conditions) = (None, None, Vec::new());
    let (mut action, mut resource): (Option<Scope>, Option<Scope>) = (None, None);
    for (key, value) in object(value, loc)? {
        let here = format!("{loc}.{key}");
        match key.as_str() {
            "Sid" => sid = Some(string(value, &here)?.to_owned()),
            "Effect" => {
                effect = Some(match string(value, &here)? {
                    "Allow" => Effect::Allow,
                    "Deny" => Effect::Deny,
                    other => {
                        return Err(PolicyError::Effect {
                            location: here,
                            value: other.to_owned(),
                        })
                    }
                })
            }
            "Action" | "NotAction" => {
                if action.is_some() {
                    return Err(conflict(loc, "Action", "NotAction"));
                }
                let mut patterns = Vec::new();
                for (pattern, at) in string_list(value, &here)? {
                    no_variable(&pattern, &at)?;
                    if let Some(reason) = action_problem(&pattern) {
                        return Err(PolicyError::Action {
                            location: at,
                            value: pattern,
                            reason,
                        });
                    }
                    patterns.push(pattern);
                }
                let not = key == "NotAction";
                action = Some(Scope { not, patterns });
            }
            "Resource" | "NotResource" => {
                if resource.is_some() {
                    return Err(conflict(loc, "Resource", "NotResource"));
                }
                let mut patterns = Vec::new();
                for (pattern, at) in string_list(value, &here)? {
                    no_variable(&pattern, &at)?;
                    if let Some(reason) = resource_problem(&pattern) {
                        return Err(PolicyError::Resource {
                            location: at,
                            value: pattern,
                            reason,
                        });
                    }
                    patterns.push(pattern);
                }
                let not = key == "NotResource";
                resource = Some(Scope { not, patterns });
            }
            "Condition" => conditions = condition::parse_block(value, &here)?,
            // Principal / NotPrincipal belong to resource-based policies, which fleetrun has none
            // of (neither has Systems Manager); they land here like any unknown element.
            other => {
                return Err(PolicyError::UnknownElement {
                    location: loc.to_owned(),
                    element: other.to_owned(),
                })
            }
        }
    }
    let missing = |element| PolicyError::Missing {
        location: loc.to_owned(),
        element,
    };
    Ok(Statement {
        sid,
        effect: effect.ok_or_else(|| missing("Effect"))?,
        action: action.ok_or_else(|| missing("Action (or NotAction)"))?,
        resource: resource.ok_or_else(|| missing("Resource (or NotResource)"))?,
        conditions,
    })
}

fn conflict(loc: &str, first: &'static str, second: &'static str) -> PolicyError {
    PolicyError::Conflict {
        location: loc.to_owned(),
        first,
        second,
    }
}

/// JSON string literal for `s` (serde_json's escaping; `Value`'s `Display` cannot fail).
fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(","))
}

/// Compact JSON in IAM element order (written by hand because serde_json's map may sort keys).
pub(crate) fn render(policy: &Policy) -> String {
    let mut top = Vec::new();
    if let Some(version) = policy.version {
        top.push(format!("\"Version\":{}", quote(version.as_str())));
    }
    if let Some(id) = &policy.id {
        top.push(format!("\"Id\":{}", quote(id)));
    }
    let statements: Vec<String> = policy.statements.iter().map(render_statement).collect();
    top.push(format!("\"Statement\":[{}]", statements.join(",")));
    format!("{{{}}}", top.join(","))
}

fn render_statement(statement: &Statement) -> String {
    let mut members = Vec::new();
    if let Some(sid) = &statement.sid {
        members.push(format!("\"Sid\":{}", quote(sid)));
    }
    let effect = match statement.effect {
        Effect::Allow => "Allow",
        Effect::Deny => "Deny",
    };
    members.push(format!("\"Effect\":\"{effect}\""));
    let action = if statement.action.not {
        "NotAction"
    } else {
        "Action"
    };
    members.push(format!("\"{action}\":{}", list(&statement.action.patterns)));
    let resource = if statement.resource.not {
        "NotResource"
    } else {
        "Resource"
    };
    members.push(format!(
        "\"{resource}\":{}",
        list(&statement.resource.patterns)
    ));
    if !statement.conditions.is_empty() {
        members.push(format!(
            "\"Condition\":{}",
            render_conditions(&statement.conditions)
        ));
    }
    format!("{{{}}}", members.join(","))
}

/// Regroups the flat condition list by operator. Parsing produced each operator's conditions as
/// one consecutive run (operator names are unique within a block), so this restores the block.
fn render_conditions(conditions: &[Condition]) -> String {
    let mut blocks: Vec<(String, Vec<String>)> = Vec::new();
    for condition in conditions {
        let name = condition.operator.name();
        let entry = format!("{}:{}", quote(&condition.key), list(&condition.values));
        match blocks.last_mut() {
            Some((last, entries)) if *last == name => entries.push(entry),
            _ => blocks.push((name, vec![entry])),
        }
    }
    let blocks: Vec<String> = blocks
        .iter()
        .map(|(name, entries)| format!("{}:{{{}}}", quote(name), entries.join(",")))
        .collect();
    format!("{{{}}}", blocks.join(","))
}

#[cfg(test)]
mod tests;
