//! `Condition` blocks: which operators and keys are accepted, and when a condition holds
//! (security-facts.md §6.2; IAM "condition operators" and "single-valued vs. multivalued context keys").
//!
//! Semantics, for a condition `Operator: { key: [v1, v2, …] }` against the request context:
//! - Key names compare case-insensitively, values case-sensitively. `StringEquals` is exact;
//!   `StringLike` uses `*` / `?` ([`crate::matching::glob`]).
//! - Several values for one key: OR (the request value equals/matches any of them). For the negated
//!   operators (`StringNotEquals`, `StringNotLike`) that becomes NOR: the request value must equal /
//!   match none of them.
//! - Several keys under one operator, and several operators, are ANDed (the statement keeps one flat
//!   list of conditions that must all hold).
//! - Key absent from the context (no entry, or an entry with no values): a positive operator is false,
//!   a negated one true; `…IfExists` makes any operator true; `Null: {key: "true"}` is true exactly
//!   when the key is absent, `"false"` exactly when present.
//! - Set operators are **implemented**: `ForAnyValue:Op` holds when at least one request value
//!   satisfies `Op` (false when the key is absent); `ForAllValues:Op` holds when every request value
//!   does (true when the key is absent — IAM's documented, deliberately surprising rule).
//!
//! Fail-closed choices, following IAM's own guidance ("multivalued context keys require a condition
//! set operator"; set operators on single-valued keys "can result in overly permissive policies"):
//! `aws:TagKeys` must be used with `ForAnyValue:` / `ForAllValues:` (or `Null`), and the set
//! qualifiers are refused on the single-valued tag keys. `Null` takes no qualifier and no `IfExists`.
//! Should the context carry several values for a single-valued key anyway (two tag keys differing
//! only in case), a positive operator holds if any value satisfies it and a negated one only if all do.

use crate::matching::glob;
use crate::parse::{no_variable, object, Json, PolicyError};

/// The comparison an operator makes, before qualifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Test {
    StringEquals,
    StringNotEquals,
    StringLike,
    StringNotLike,
    Null,
}

impl Test {
    fn name(self) -> &'static str {
        match self {
            Test::StringEquals => "StringEquals",
            Test::StringNotEquals => "StringNotEquals",
            Test::StringLike => "StringLike",
            Test::StringNotLike => "StringNotLike",
            Test::Null => "Null",
        }
    }

    fn negated(self) -> bool {
        matches!(self, Test::StringNotEquals | Test::StringNotLike)
    }

    /// Whether policy value `pattern` equals / matches request value `value`, before negation.
    fn hits(self, pattern: &str, value: &str) -> bool {
        match self {
            Test::StringEquals | Test::StringNotEquals => pattern == value,
            Test::StringLike | Test::StringNotLike => glob(pattern, value, false),
            Test::Null => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetQualifier {
    ForAnyValue,
    ForAllValues,
}

/// A condition operator: `[ForAnyValue:|ForAllValues:]<Test>[IfExists]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Operator {
    pub(crate) set: Option<SetQualifier>,
    pub(crate) test: Test,
    pub(crate) if_exists: bool,
}

impl Operator {
    /// Operator names are case-sensitive, as IAM spells them; anything else is refused.
    pub(crate) fn parse(name: &str) -> Option<Operator> {
        let (set, rest) = if let Some(rest) = name.strip_prefix("ForAnyValue:") {
            (Some(SetQualifier::ForAnyValue), rest)
        } else if let Some(rest) = name.strip_prefix("ForAllValues:") {
            (Some(SetQualifier::ForAllValues), rest)
        } else {
            (None, name)
        };
        let (rest, if_exists) = match rest.strip_suffix("IfExists") {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let test = match rest {
            "StringEquals" => Test::StringEquals,
            "StringNotEquals" => Test::StringNotEquals,
            "StringLike" => Test::StringLike,
            "StringNotLike" => Test::StringNotLike,
            "Null" => Test::Null,
            _ => return None,
        };
        if test == Test::Null && (if_exists || set.is_some()) {
            return None;
        }
        Some(Operator {
            set,
            test,
            if_exists,
        })
    }

    pub(crate) fn name(self) -> String {
        let set = match self.set {
            None => "",
            Some(SetQualifier::ForAnyValue) => "ForAnyValue:",
            Some(SetQualifier::ForAllValues) => "ForAllValues:",
        };
        let suffix = if self.if_exists { "IfExists" } else { "" };
        format!("{set}{}{suffix}", self.test.name())
    }
}

/// One operator applied to one key with its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Condition {
    pub(crate) operator: Operator,
    /// As written in the policy (compared case-insensitively).
    pub(crate) key: String,
    /// Never empty; for `Null` each is `"true"` or `"false"`.
    pub(crate) values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    SingleValued,
    MultiValued,
}

/// The condition keys the subset knows (security-facts.md §6.1, §6.4).
fn key_kind(key: &str) -> Option<KeyKind> {
    let lower = key.to_ascii_lowercase();
    if lower == "aws:tagkeys" {
        return Some(KeyKind::MultiValued);
    }
    ["ssm:resourcetag/", "aws:resourcetag/", "aws:requesttag/"]
        .iter()
        .filter_map(|prefix| lower.strip_prefix(prefix))
        // Condition key names take no wildcards; a `*` here is a misunderstanding, not a tag key.
        .find(|tag| !tag.is_empty() && !tag.contains(['*', '?']))
        .map(|_| KeyKind::SingleValued)
}

/// Parses a statement's `Condition` value into its flat AND-list, in document order.
pub(crate) fn parse_block(value: &Json, loc: &str) -> Result<Vec<Condition>, PolicyError> {
    let mut conditions = Vec::new();
    for (name, keys) in object(value, loc)? {
        let op_loc = format!("{loc}.{name}");
        let operator = Operator::parse(name).ok_or_else(|| PolicyError::Operator {
            location: loc.to_owned(),
            operator: name.clone(),
        })?;
        let keys = object(keys, &op_loc)?;
        if keys.is_empty() {
            return Err(PolicyError::Empty { location: op_loc });
        }
        for (key, values) in keys {
            let key_loc = format!("{op_loc}[{key:?}]");
            no_variable(key, &key_loc)?;
            let kind = key_kind(key).ok_or_else(|| PolicyError::ConditionKey {
                location: op_loc.clone(),
                key: key.clone(),
            })?;
            match (kind, operator.set, operator.test) {
                (KeyKind::MultiValued, None, test) if test != Test::Null => {
                    return Err(PolicyError::NeedsSetOperator {
                        location: key_loc,
                        key: key.clone(),
                        operator: operator.name(),
                    });
                }
                (KeyKind::SingleValued, Some(_), _) => {
                    return Err(PolicyError::SetOperatorOnSingleValuedKey {
                        location: key_loc,
                        key: key.clone(),
                        operator: operator.name(),
                    });
                }
                _ => {}
            }
            let values = condition_values(values, &key_loc)?;
            for value in &values {
                no_variable(value, &key_loc)?;
                if operator.test == Test::Null && value != "true" && value != "false" {
                    return Err(PolicyError::NullValue {
                        location: key_loc.clone(),
                        value: value.clone(),
                    });
                }
            }
            conditions.push(Condition {
                operator,
                key: key.clone(),
                values,
            });
        }
    }
    Ok(conditions)
}

/// A condition's value(s): a string, boolean or integer (IAM compares their text), or a non-empty
/// array of them.
fn condition_values(value: &Json, loc: &str) -> Result<Vec<String>, PolicyError> {
    let scalar = |v: &Json| match v {
        Json::Str(s) | Json::Int(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let wrong = || PolicyError::WrongType {
        location: loc.to_owned(),
        expected: "a string, boolean or integer, or a non-empty array of them",
    };
    match value {
        Json::Array(items) if items.is_empty() => Err(PolicyError::Empty {
            location: loc.to_owned(),
        }),
        Json::Array(items) => items.iter().map(|v| scalar(v).ok_or_else(wrong)).collect(),
        other => scalar(other).map(|s| vec![s]).ok_or_else(wrong),
    }
}

impl Condition {
    /// Whether the condition holds for this context (see the module docs).
    pub(crate) fn holds(&self, context: &[(String, Vec<String>)]) -> bool {
        let present: Vec<&str> = context
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(&self.key))
            .flat_map(|(_, values)| values.iter().map(String::as_str))
            .collect();
        let op = self.operator;
        if op.test == Test::Null {
            let absent = present.is_empty();
            return self.values.iter().any(|v| (v == "true") == absent);
        }
        if present.is_empty() {
            return op.if_exists
                || match op.set {
                    None => op.test.negated(),
                    Some(SetQualifier::ForAnyValue) => false,
                    Some(SetQualifier::ForAllValues) => true,
                };
        }
        let satisfies = |value: &&str| {
            let hit = self.values.iter().any(|p| op.test.hits(p, value));
            hit != op.test.negated()
        };
        match op.set {
            None if op.test.negated() => present.iter().all(satisfies),
            None | Some(SetQualifier::ForAnyValue) => present.iter().any(satisfies),
            Some(SetQualifier::ForAllValues) => present.iter().all(satisfies),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Context = Vec<(String, Vec<String>)>;

    fn ctx(entries: &[(&str, &[&str])]) -> Context {
        entries
            .iter()
            .map(|(k, vs)| {
                (
                    (*k).to_owned(),
                    vs.iter().map(|v| (*v).to_owned()).collect(),
                )
            })
            .collect()
    }

    fn cond(operator: &str, key: &str, values: &[&str]) -> Condition {
        Condition {
            operator: Operator::parse(operator).unwrap_or_else(|| panic!("operator {operator}")),
            key: key.to_owned(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn operator_names_table() {
        let ok = [
            "StringEquals",
            "StringNotEquals",
            "StringLike",
            "StringNotLike",
            "StringEqualsIfExists",
            "StringNotLikeIfExists",
            "ForAnyValue:StringEquals",
            "ForAllValues:StringLike",
            "ForAllValues:StringNotEqualsIfExists",
            "Null",
        ];
        for name in ok {
            let op = Operator::parse(name).unwrap_or_else(|| panic!("{name} refused"));
            assert_eq!(op.name(), name);
        }
        let refused = [
            "stringequals",
            "StringEqualsIgnoreCase",
            "ArnLike",
            "NumericEquals",
            "Bool",
            "NullIfExists",
            "ForAnyValue:Null",
            "ForAnyValue:",
            "IfExists",
            "ForSomeValues:StringEquals",
            "StringEqualsIfExistsIfExists",
        ];
        for name in refused {
            assert_eq!(Operator::parse(name), None, "{name} accepted");
        }
    }

    #[test]
    fn key_kind_table() {
        let table: &[(&str, Option<KeyKind>)] = &[
            ("ssm:resourceTag/Finance", Some(KeyKind::SingleValued)),
            ("SSM:RESOURCETAG/Finance", Some(KeyKind::SingleValued)),
            ("aws:ResourceTag/env", Some(KeyKind::SingleValued)),
            ("aws:RequestTag/x", Some(KeyKind::SingleValued)),
            ("aws:TagKeys", Some(KeyKind::MultiValued)),
            ("aws:tagkeys", Some(KeyKind::MultiValued)),
            ("ssm:resourceTag/", None),
            ("ssm:resourceTag/env*", None),
            ("aws:username", None),
            ("aws:SourceIp", None),
            ("ssm:resourceTag", None),
            ("ec2:ResourceTag/env", None),
        ];
        for &(key, want) in table {
            assert_eq!(key_kind(key), want, "{key}");
        }
    }

    #[test]
    fn holds_table() {
        let tagged = ctx(&[("ssm:resourceTag/Finance", &["WebServers"])]);
        let other = ctx(&[("ssm:resourceTag/Finance", &["Db"])]);
        let none = ctx(&[]);
        let emptied = ctx(&[("ssm:resourceTag/Finance", &[])]);
        let keys = ctx(&[("aws:TagKeys", &["env", "team"])]);
        let k = "ssm:resourceTag/Finance";
        // (operator, key, policy values, request context, holds)
        type Row<'a> = (&'a str, &'a str, &'a [&'a str], &'a Context, bool);
        let table: &[Row] = &[
            ("StringEquals", k, &["WebServers"], &tagged, true),
            ("StringEquals", k, &["webservers"], &tagged, false), // values case-sensitive
            (
                "StringEquals",
                "SSM:ResourceTag/finance",
                &["WebServers"],
                &tagged,
                true,
            ), // keys not
            ("StringEquals", k, &["Db", "WebServers"], &tagged, true), // values OR
            ("StringEquals", k, &["Web*"], &tagged, false),       // no wildcards in Equals
            ("StringEquals", k, &["WebServers"], &other, false),
            ("StringEquals", k, &["WebServers"], &none, false), // absent: positive false
            ("StringEquals", k, &["WebServers"], &emptied, false),
            ("StringEqualsIfExists", k, &["WebServers"], &none, true),
            ("StringEqualsIfExists", k, &["WebServers"], &other, false),
            ("StringNotEquals", k, &["WebServers"], &tagged, false),
            ("StringNotEquals", k, &["WebServers"], &other, true),
            ("StringNotEquals", k, &["Db", "WebServers"], &other, false), // NOR
            ("StringNotEquals", k, &["WebServers"], &none, true),         // absent: negated true
            ("StringNotEqualsIfExists", k, &["WebServers"], &none, true),
            ("StringLike", k, &["Web*"], &tagged, true),
            ("StringLike", k, &["web*"], &tagged, false),
            ("StringLike", k, &["W?bServers"], &tagged, true),
            ("StringLike", k, &["Db", "*Servers"], &tagged, true),
            ("StringLike", k, &["*"], &none, false),
            ("StringLikeIfExists", k, &["Db"], &none, true),
            ("StringNotLike", k, &["Web*"], &tagged, false),
            ("StringNotLike", k, &["Web*"], &other, true),
            ("StringNotLike", k, &["D*", "W*"], &other, false),
            ("StringNotLike", k, &["Web*"], &none, true),
            ("StringNotLikeIfExists", k, &["Web*"], &none, true),
            ("Null", k, &["true"], &none, true),
            ("Null", k, &["true"], &emptied, true),
            ("Null", k, &["true"], &tagged, false),
            ("Null", k, &["false"], &tagged, true),
            ("Null", k, &["false"], &none, false),
            (
                "ForAnyValue:StringEquals",
                "aws:TagKeys",
                &["team"],
                &keys,
                true,
            ),
            (
                "ForAnyValue:StringEquals",
                "aws:TagKeys",
                &["owner"],
                &keys,
                false,
            ),
            (
                "ForAnyValue:StringEquals",
                "aws:TagKeys",
                &["team"],
                &none,
                false,
            ),
            (
                "ForAnyValue:StringEqualsIfExists",
                "aws:TagKeys",
                &["team"],
                &none,
                true,
            ),
            (
                "ForAnyValue:StringNotEquals",
                "aws:TagKeys",
                &["env"],
                &keys,
                true,
            ),
            (
                "ForAnyValue:StringNotEquals",
                "aws:TagKeys",
                &["env", "team"],
                &keys,
                false,
            ),
            (
                "ForAnyValue:StringNotEquals",
                "aws:TagKeys",
                &["env"],
                &none,
                false,
            ),
            (
                "ForAllValues:StringEquals",
                "aws:TagKeys",
                &["env", "team", "x"],
                &keys,
                true,
            ),
            (
                "ForAllValues:StringEquals",
                "aws:TagKeys",
                &["env"],
                &keys,
                false,
            ),
            (
                "ForAllValues:StringEquals",
                "aws:TagKeys",
                &["env"],
                &none,
                true,
            ), // vacuous
            (
                "ForAllValues:StringLike",
                "aws:TagKeys",
                &["*e*"],
                &keys,
                true,
            ),
            (
                "ForAllValues:StringNotLike",
                "aws:TagKeys",
                &["o*"],
                &keys,
                true,
            ),
            (
                "ForAllValues:StringNotLike",
                "aws:TagKeys",
                &["t*"],
                &keys,
                false,
            ),
        ];
        for &(op, key, values, context, want) in table {
            assert_eq!(
                cond(op, key, values).holds(context),
                want,
                "{op} {key} {values:?} in {context:?}"
            );
        }
    }

    #[test]
    fn several_context_values_for_a_single_valued_key() {
        let both = ctx(&[
            ("ssm:resourceTag/env", &["prod"]),
            ("ssm:resourceTag/Env", &["dev"]),
        ]);
        let k = "ssm:resourceTag/env";
        assert!(cond("StringEquals", k, &["dev"]).holds(&both));
        assert!(!cond("StringNotEquals", k, &["dev"]).holds(&both));
        assert!(cond("StringNotEquals", k, &["test"]).holds(&both));
    }
}
