//! The IAM identity-policy subset fleetrun authorizes API calls with (security-facts.md §6.4): parse
//! and validate a policy document, refusing anything outside the subset (fail closed), and answer one
//! (action, resource, condition context) question over a principal's policies the way IAM does
//! (§6.2: explicit deny wins, then any allow, else implicit deny).
//!
//! Pure: no I/O, no clock, no principals. The AWS `AccessDeniedException` sentence (§1 row 11) is
//! written by the server from the [`Decision`], which says whether a deny was implicit or explicit.
//!
//! What a document may contain:
//! - top level: `Version` (`"2012-10-17"` or `"2008-10-17"`, optional), `Id` (optional string),
//!   `Statement` (one object or an array; an empty array allows nothing);
//! - statement: `Sid` (optional, unique within the policy), `Effect` (`Allow` | `Deny`), exactly one
//!   of `Action` / `NotAction`, exactly one of `Resource` / `NotResource`, `Condition` (optional);
//! - actions `"*"` or `service:Name`, case-insensitive, with `*` and `?` (see [`matching`]);
//! - resources `"*"` or ARNs, case-sensitive, with `*` and `?` (no wildcard in the service segment);
//! - condition operators `StringEquals`, `StringNotEquals`, `StringLike`, `StringNotLike`, each also
//!   as `…IfExists` and with the `ForAnyValue:` / `ForAllValues:` set qualifiers, and `Null`
//!   (see [`condition`] for the exact semantics);
//! - condition keys `ssm:resourceTag/<key>`, `aws:ResourceTag/<key>`, `aws:RequestTag/<key>` (single
//!   valued) and `aws:TagKeys` (multi valued); key names are case-insensitive, values case-sensitive.
//!
//! Refused at parse time with a [`PolicyError`] naming what and where: any other element
//! (`Principal`, `NotPrincipal`, misspellings), operator or key; policy variables (`${…}`) anywhere;
//! duplicate JSON keys; documents over [`MAX_POLICY_LEN`] bytes.

pub mod condition;
mod eval;
pub mod matching;
mod parse;

use condition::Condition;

pub use eval::evaluate;
pub use parse::{PolicyError, MAX_POLICY_LEN};

/// A parsed, validated identity-based policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub(crate) version: Option<Version>,
    pub(crate) id: Option<String>,
    pub(crate) statements: Vec<Statement>,
}

/// The policy language versions IAM accepts. They differ only in how `${…}` is read, and policy
/// variables are refused either way, so both evaluate alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V2012_10_17,
    V2008_10_17,
}

impl Version {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Version::V2012_10_17 => "2012-10-17",
            Version::V2008_10_17 => "2008-10-17",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    Allow,
    Deny,
}

/// `Action` (`not == false`) or `NotAction` (`not == true`); likewise for resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    pub(crate) not: bool,
    pub(crate) patterns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    pub(crate) sid: Option<String>,
    pub(crate) effect: Effect,
    pub(crate) action: Scope,
    pub(crate) resource: Scope,
    /// All must hold (AND), in document order.
    pub(crate) conditions: Vec<Condition>,
}

impl Policy {
    /// Parses and validates an IAM JSON policy document; see the crate docs for what is accepted.
    pub fn parse(json: &str) -> Result<Policy, PolicyError> {
        parse::parse(json)
    }

    /// The document as compact JSON in IAM element order. Lists are always arrays; `Policy::parse`
    /// of this text gives back an equal `Policy`.
    pub fn to_json(&self) -> String {
        parse::render(self)
    }

    /// The administrator policy: Allow `ssm:*`, `logs:*` (the CloudWatch Logs reads of live
    /// output), `cloudwatch:*` (alarms), `resource-groups:*` (tag-query groups) and `fleetrun:*`
    /// on `*`.
    pub fn full_access() -> Policy {
        Self::allow_on_everything(&[
            "ssm:*",
            "logs:*",
            "cloudwatch:*",
            "resource-groups:*",
            "fleetrun:*",
        ])
    }

    /// `AmazonSSMReadOnlyAccess`: Allow `ssm:Describe*`, `ssm:Get*`, `ssm:List*` on `*`.
    pub fn read_only() -> Policy {
        Self::allow_on_everything(&["ssm:Describe*", "ssm:Get*", "ssm:List*"])
    }

    fn allow_on_everything(actions: &[&str]) -> Policy {
        Policy {
            version: Some(Version::V2012_10_17),
            id: None,
            statements: vec![Statement {
                sid: None,
                effect: Effect::Allow,
                action: Scope {
                    not: false,
                    patterns: actions.iter().map(|a| (*a).to_owned()).collect(),
                },
                resource: Scope {
                    not: false,
                    patterns: vec!["*".to_owned()],
                },
                conditions: Vec::new(),
            }],
        }
    }

    /// How many statements the document has (an empty policy allows nothing).
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }

    /// True when some statement has a `Condition`, i.e. a decision may depend on the request's
    /// context (a caller uses this to skip looking up resource tags for unconditional policies).
    pub fn has_conditions(&self) -> bool {
        self.statements.iter().any(|s| !s.conditions.is_empty())
    }
}

/// One authorization question. SendCommand asks one per resource: the document ARN, then each
/// target node's ARN with that node's tags in `context`; actions without resource types ask about `"*"`.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// e.g. `"ssm:SendCommand"` (policy patterns compare case-insensitively, wildcards `*` and `?`).
    pub action: &'a str,
    /// e.g. `"arn:aws:ssm:us-east-1::document/AWS-RunShellScript"`,
    /// `"arn:aws:ssm:us-east-1:000000000000:managed-instance/mi-…"`, or `"*"`.
    pub resource: &'a str,
    /// Condition context: key (`"ssm:resourceTag/env"`, `"aws:ResourceTag/env"`, `"aws:RequestTag/x"`,
    /// `"aws:TagKeys"`) → values. Keys are matched case-insensitively; an entry with no values counts
    /// as absent. See [`resource_tag_context`] for a resource's tags.
    pub context: &'a [(String, Vec<String>)],
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// Some statement allows it and none denies it.
    Allow,
    /// No statement allows it ("because no identity-based policy allows the … action").
    ImplicitDeny,
    /// A `Deny` statement matched ("with an explicit deny in an identity-based policy").
    ExplicitDeny,
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// A document's ARN. AWS-owned documents (`AWS-…`) have an empty account field:
/// `arn:aws:ssm:us-east-1::document/AWS-RunShellScript` (security-facts.md §6.1, §1 row 11).
pub fn document_arn(region: &str, account: &str, name: &str, aws_owned: bool) -> String {
    let account = if aws_owned { "" } else { account };
    format!("arn:aws:ssm:{region}:{account}:document/{name}")
}

/// A managed (hybrid) node's ARN: `arn:aws:ssm:<region>:<account>:managed-instance/mi-…`.
pub fn managed_instance_arn(region: &str, account: &str, instance_id: &str) -> String {
    format!("arn:aws:ssm:{region}:{account}:managed-instance/{instance_id}")
}

/// The condition context for a resource carrying `tags`: each tag under both names IAM uses for it,
/// `ssm:resourceTag/<key>` and `aws:ResourceTag/<key>`, so a policy may use either.
pub fn resource_tag_context<I, K, V>(tags: I) -> Vec<(String, Vec<String>)>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut context = Vec::new();
    for (key, value) in tags {
        let (key, value) = (key.as_ref(), value.as_ref());
        context.push((format!("ssm:resourceTag/{key}"), vec![value.to_owned()]));
        context.push((format!("aws:ResourceTag/{key}"), vec![value.to_owned()]));
    }
    context
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_arn_of_an_aws_owned_document_has_no_account() {
        assert_eq!(
            document_arn("us-east-1", "000000000000", "AWS-RunShellScript", true),
            "arn:aws:ssm:us-east-1::document/AWS-RunShellScript"
        );
        assert_eq!(
            document_arn("eu-west-1", "123456789012", "Mine", false),
            "arn:aws:ssm:eu-west-1:123456789012:document/Mine"
        );
    }

    #[test]
    fn managed_instance_arn_has_the_account() {
        assert_eq!(
            managed_instance_arn("us-east-1", "000000000000", "mi-0123456789abcdef0"),
            "arn:aws:ssm:us-east-1:000000000000:managed-instance/mi-0123456789abcdef0"
        );
    }

    #[test]
    fn resource_tag_context_names_each_tag_both_ways() {
        let context = resource_tag_context([("Finance", "WebServers")]);
        assert_eq!(
            context,
            vec![
                (
                    "ssm:resourceTag/Finance".to_owned(),
                    vec!["WebServers".to_owned()]
                ),
                (
                    "aws:ResourceTag/Finance".to_owned(),
                    vec!["WebServers".to_owned()]
                ),
            ]
        );
    }

    #[test]
    fn builtins_round_trip_through_json() {
        for policy in [Policy::full_access(), Policy::read_only()] {
            assert_eq!(Policy::parse(&policy.to_json()), Ok(policy));
        }
    }

    #[test]
    fn has_conditions_only_with_a_condition() {
        assert!(!Policy::full_access().has_conditions());
        let plain =
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{}}]}"#;
        assert_eq!(Policy::parse(plain).map(|p| p.has_conditions()), Ok(false));
        let tagged = r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},
            {"Effect":"Deny","Action":"*","Resource":"*","Condition":{"Null":{"aws:TagKeys":"true"}}}]}"#;
        assert_eq!(Policy::parse(tagged).map(|p| p.has_conditions()), Ok(true));
    }

    #[test]
    fn only_allow_is_allowed() {
        assert!(Decision::Allow.is_allowed());
        assert!(!Decision::ImplicitDeny.is_allowed());
        assert!(!Decision::ExplicitDeny.is_allowed());
    }
}
