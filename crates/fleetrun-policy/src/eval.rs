//! The decision over a principal's policies (security-facts.md §6.2, IAM "policy evaluation logic"
//! for identity-based policies within one account): every statement of every policy is considered,
//! order is irrelevant, an applicable `Deny` wins, else an applicable `Allow` allows, else the
//! request is implicitly denied.

use crate::{Decision, Effect, Policy, Request, Scope, Statement};

/// Evaluates all `policies` together for one request. No policies, or only empty ones, deny
/// implicitly.
pub fn evaluate(policies: &[Policy], request: &Request) -> Decision {
    let mut allowed = false;
    for statement in policies.iter().flat_map(|p| &p.statements) {
        if !applies(statement, request) {
            continue;
        }
        match statement.effect {
            // Nothing can outweigh an explicit deny, so there is no need to look further.
            Effect::Deny => return Decision::ExplicitDeny,
            Effect::Allow => allowed = true,
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// A statement applies when its action scope, its resource scope and all its conditions match.
fn applies(statement: &Statement, request: &Request) -> bool {
    in_scope(&statement.action, |p| {
        crate::matching::action_matches(p, request.action)
    }) && in_scope(&statement.resource, |p| {
        crate::matching::resource_matches(p, request.resource)
    }) && statement
        .conditions
        .iter()
        .all(|c| c.holds(request.context))
}

/// `Action`/`Resource`: some pattern matches. `NotAction`/`NotResource`: no pattern matches
/// (so `NotAction: ssm:SendCommand` covers every other action of every service).
fn in_scope(scope: &Scope, matches: impl Fn(&str) -> bool) -> bool {
    scope.patterns.iter().any(|p| matches(p)) != scope.not
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Policy {
        Policy::parse(json).unwrap_or_else(|e| panic!("{e}: {json}"))
    }

    fn ask(policies: &[Policy], action: &str, resource: &str) -> Decision {
        evaluate(
            policies,
            &Request {
                action,
                resource,
                context: &[],
            },
        )
    }

    const DOC: &str = "arn:aws:ssm:us-east-1::document/AWS-RunShellScript";
    const NODE: &str = "arn:aws:ssm:us-east-1:000000000000:managed-instance/mi-0123456789abcdef0";

    #[test]
    fn no_policies_and_empty_policies_deny_implicitly() {
        assert_eq!(ask(&[], "ssm:ListCommands", "*"), Decision::ImplicitDeny);
        let empty = policy(r#"{"Version":"2012-10-17","Statement":[]}"#);
        assert_eq!(
            ask(&[empty], "ssm:ListCommands", "*"),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn explicit_deny_wins_in_any_order_and_any_policy() {
        let allow = policy(r#"{"Statement":{"Effect":"Allow","Action":"ssm:*","Resource":"*"}}"#);
        let deny =
            policy(r#"{"Statement":{"Effect":"Deny","Action":"ssm:SendCommand","Resource":"*"}}"#);
        let both = policy(
            r#"{"Statement":[{"Effect":"Deny","Action":"ssm:SendCommand","Resource":"*"},
                             {"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        );
        for set in [
            vec![allow.clone(), deny.clone()],
            vec![deny.clone(), allow.clone()],
            vec![both],
        ] {
            assert_eq!(ask(&set, "ssm:SendCommand", DOC), Decision::ExplicitDeny);
            assert_eq!(ask(&set, "ssm:ListCommands", "*"), Decision::Allow);
        }
        assert_eq!(
            ask(&[deny], "ssm:ListCommands", "*"),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn not_action_and_not_resource_table() {
        let not_action = policy(
            r#"{"Statement":{"Effect":"Allow","NotAction":["ssm:SendCommand","ssm:Delete*"],"Resource":"*"}}"#,
        );
        let not_resource = policy(
            r#"{"Statement":{"Effect":"Allow","Action":"ssm:SendCommand","NotResource":"arn:aws:ssm:*:*:document/AWS-*"}}"#,
        );
        let deny_not_resource = policy(
            r#"{"Statement":[{"Effect":"Allow","Action":"ssm:*","Resource":"*"},
               {"Effect":"Deny","Action":"ssm:SendCommand","NotResource":["arn:aws:ssm:*:*:document/Safe-*","arn:aws:ssm:*:*:managed-instance/*"]}]}"#,
        );
        let safe = "arn:aws:ssm:us-east-1:000000000000:document/Safe-Restart";
        let table: &[(&Policy, &str, &str, Decision)] = &[
            (&not_action, "ssm:ListCommands", "*", Decision::Allow),
            (&not_action, "ec2:RunInstances", "*", Decision::Allow),
            (&not_action, "ssm:SendCommand", DOC, Decision::ImplicitDeny),
            (&not_action, "SSM:sendcommand", DOC, Decision::ImplicitDeny),
            (
                &not_action,
                "ssm:DeleteActivation",
                "*",
                Decision::ImplicitDeny,
            ),
            (
                &not_resource,
                "ssm:SendCommand",
                DOC,
                Decision::ImplicitDeny,
            ),
            (&not_resource, "ssm:SendCommand", safe, Decision::Allow),
            (&not_resource, "ssm:SendCommand", NODE, Decision::Allow),
            (
                &not_resource,
                "ssm:ListCommands",
                "*",
                Decision::ImplicitDeny,
            ),
            (
                &deny_not_resource,
                "ssm:SendCommand",
                DOC,
                Decision::ExplicitDeny,
            ),
            (&deny_not_resource, "ssm:SendCommand", safe, Decision::Allow),
            (&deny_not_resource, "ssm:SendCommand", NODE, Decision::Allow),
            (&deny_not_resource, "ssm:ListCommands", "*", Decision::Allow),
        ];
        for &(p, action, resource, want) in table {
            assert_eq!(
                ask(std::slice::from_ref(p), action, resource),
                want,
                "{action} on {resource} under {}",
                p.to_json()
            );
        }
    }

    #[test]
    fn conditions_and_with_action_and_resource() {
        let p = policy(
            r#"{"Statement":{"Effect":"Allow","Action":"ssm:SendCommand","Resource":"arn:aws:ssm:*:*:managed-instance/*",
                "Condition":{"StringEquals":{"ssm:resourceTag/env":"prod"},"StringNotEquals":{"ssm:resourceTag/team":"ops"}}}}"#,
        );
        let context = |tags: &[(&str, &str)]| crate::resource_tag_context(tags.iter().copied());
        type Tags<'a> = &'a [(&'a str, &'a str)];
        let table: &[(Tags, &str, Decision)] = &[
            (&[("env", "prod")], NODE, Decision::Allow),
            (&[("env", "prod"), ("team", "dev")], NODE, Decision::Allow),
            (
                &[("env", "prod"), ("team", "ops")],
                NODE,
                Decision::ImplicitDeny,
            ),
            (&[("env", "dev")], NODE, Decision::ImplicitDeny),
            (&[], NODE, Decision::ImplicitDeny),
            (&[("env", "prod")], DOC, Decision::ImplicitDeny),
        ];
        for &(tags, resource, want) in table {
            let ctx = context(tags);
            let request = Request {
                action: "ssm:SendCommand",
                resource,
                context: &ctx,
            };
            assert_eq!(
                evaluate(std::slice::from_ref(&p), &request),
                want,
                "{tags:?} {resource}"
            );
        }
    }
}
