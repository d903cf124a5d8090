//! The example policies Run Command users write (security-facts.md §6.3, after the Systems Manager
//! user guide's run-command-setting-up page and the AWS managed policies), asked the questions the
//! server asks: SendCommand once for the document ARN and once per target node ARN (with that node's
//! tags), every other action on `*`.

use fleetrun_policy::{
    document_arn, evaluate, managed_instance_arn, resource_tag_context, Decision, Policy, Request,
};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "000000000000";

fn policy(json: &str) -> Policy {
    Policy::parse(json).unwrap_or_else(|e| panic!("{e}\n{json}"))
}

fn aws_doc(name: &str) -> String {
    document_arn(REGION, ACCOUNT, name, true)
}

fn own_doc(name: &str) -> String {
    document_arn(REGION, ACCOUNT, name, false)
}

fn node(id: &str) -> String {
    managed_instance_arn(REGION, ACCOUNT, id)
}

fn on(policies: &[Policy], action: &str, resource: &str, tags: &[(&str, &str)]) -> Decision {
    let context = resource_tag_context(tags.iter().copied());
    evaluate(
        policies,
        &Request {
            action,
            resource,
            context: &context,
        },
    )
}

/// The decision on a node with these tags, for SendCommand.
fn send_to(policies: &[Policy], tags: &[(&str, &str)]) -> Decision {
    on(
        policies,
        "ssm:SendCommand",
        &node("mi-0123456789abcdef0"),
        tags,
    )
}

fn send_doc(policies: &[Policy], document: &str) -> Decision {
    on(policies, "ssm:SendCommand", document, &[])
}

const TAG_SCOPED_RUNNER: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    { "Effect": "Allow", "Action": ["ssm:SendCommand"], "Resource": ["arn:aws:ssm:*:*:document/*"] },
    { "Effect": "Allow", "Action": ["ssm:SendCommand"], "Resource": ["arn:aws:ssm:*:*:managed-instance/*"],
      "Condition": { "StringLike": { "ssm:resourceTag/Finance": ["WebServers"] } } }
  ]
}"#;

#[test]
fn tag_scoped_runner_may_send_only_to_nodes_tagged_finance_webservers() {
    let p = [policy(TAG_SCOPED_RUNNER)];
    assert_eq!(
        send_doc(&p, &aws_doc("AWS-RunShellScript")),
        Decision::Allow
    );
    assert_eq!(send_doc(&p, &own_doc("Deploy")), Decision::Allow);
    assert_eq!(send_to(&p, &[("Finance", "WebServers")]), Decision::Allow);
    assert_eq!(
        send_to(&p, &[("Finance", "WebServers"), ("env", "x")]),
        Decision::Allow
    );
    assert_eq!(send_to(&p, &[]), Decision::ImplicitDeny);
    assert_eq!(
        send_to(&p, &[("Finance", "Databases")]),
        Decision::ImplicitDeny
    );
    assert_eq!(
        send_to(&p, &[("Finance", "webservers")]),
        Decision::ImplicitDeny
    );
    assert_eq!(send_to(&p, &[("finance", "WebServers")]), Decision::Allow); // key names fold case
    assert_eq!(on(&p, "ssm:ListCommands", "*", &[]), Decision::ImplicitDeny);
}

const TWO_TAG_AND: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    { "Effect": "Allow", "Action": "ssm:SendCommand", "Resource": "arn:aws:ssm:*:*:managed-instance/*",
      "Condition": { "StringEquals": { "ssm:resourceTag/Finance": "WebServers", "ssm:resourceTag/Stack": "Production" } } },
    { "Effect": "Allow", "Action": "ssm:SendCommand", "Resource": "arn:aws:ssm:us-east-1::document/AWS-*" },
    { "Effect": "Allow",
      "Action": ["ssm:ListCommands", "ssm:ListCommandInvocations", "ssm:GetDocument", "ssm:UpdateInstanceInformation"],
      "Resource": "*" }
  ]
}"#;

#[test]
fn two_tag_and_needs_both_tags_and_an_aws_document() {
    let p = [policy(TWO_TAG_AND)];
    let both = [("Finance", "WebServers"), ("Stack", "Production")];
    assert_eq!(send_to(&p, &both), Decision::Allow);
    assert_eq!(send_to(&p, &both[..1]), Decision::ImplicitDeny);
    assert_eq!(send_to(&p, &both[1..]), Decision::ImplicitDeny);
    assert_eq!(
        send_to(&p, &[("Finance", "WebServers"), ("Stack", "Test")]),
        Decision::ImplicitDeny
    );
    assert_eq!(
        send_doc(&p, &aws_doc("AWS-RunShellScript")),
        Decision::Allow
    );
    assert_eq!(
        send_doc(&p, &own_doc("AWS-Lookalike")),
        Decision::ImplicitDeny
    );
    assert_eq!(
        send_doc(
            &p,
            &document_arn("eu-west-1", ACCOUNT, "AWS-RunShellScript", true)
        ),
        Decision::ImplicitDeny
    );
    assert_eq!(on(&p, "ssm:ListCommands", "*", &[]), Decision::Allow);
    assert_eq!(
        on(&p, "ssm:ListCommandInvocations", "*", &[]),
        Decision::Allow
    );
    assert_eq!(
        on(&p, "ssm:DescribeInstanceInformation", "*", &[]),
        Decision::ImplicitDeny
    );
    assert_eq!(
        on(&p, "ssm:CancelCommand", "*", &[]),
        Decision::ImplicitDeny
    );
}

const TWO_GROUPS_OR: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    { "Effect": "Allow", "Action": "ssm:SendCommand", "Resource": "arn:aws:ssm:*:*:document/*" },
    { "Effect": "Allow", "Action": "ssm:SendCommand", "Resource": "arn:aws:ssm:*:*:managed-instance/*",
      "Condition": { "StringEquals": { "ssm:resourceTag/Finance": "WebServers" } } },
    { "Effect": "Allow", "Action": "ssm:SendCommand", "Resource": "arn:aws:ssm:*:*:managed-instance/*",
      "Condition": { "StringEquals": { "aws:ResourceTag/Department": "Ops" } } }
  ]
}"#;

#[test]
fn two_tag_groups_in_two_statements_are_ored() {
    let p = [policy(TWO_GROUPS_OR)];
    assert_eq!(send_to(&p, &[("Finance", "WebServers")]), Decision::Allow);
    assert_eq!(send_to(&p, &[("Department", "Ops")]), Decision::Allow);
    assert_eq!(
        send_to(&p, &[("Finance", "WebServers"), ("Department", "Ops")]),
        Decision::Allow
    );
    assert_eq!(
        send_to(&p, &[("Finance", "Ops"), ("Department", "WebServers")]),
        Decision::ImplicitDeny
    );
    assert_eq!(send_to(&p, &[]), Decision::ImplicitDeny);
}

#[test]
fn read_only_reads_and_never_sends() {
    let p = [Policy::read_only()];
    for action in [
        "ssm:ListCommands",
        "ssm:ListCommandInvocations",
        "ssm:GetCommandInvocation",
        "ssm:DescribeInstanceInformation",
        "ssm:DescribeActivations",
        "ssm:ListDocuments",
        "ssm:GetDocument",
        "ssm:DescribeDocument",
        "ssm:listcommands",
    ] {
        assert_eq!(on(&p, action, "*", &[]), Decision::Allow, "{action}");
    }
    for action in [
        "ssm:SendCommand",
        "ssm:CancelCommand",
        "ssm:CreateActivation",
        "ssm:DeleteActivation",
        "ssm:DeregisterManagedInstance",
        "ssm:CreateDocument",
        "fleetrun:ListAccessKeys",
    ] {
        assert_eq!(on(&p, action, "*", &[]), Decision::ImplicitDeny, "{action}");
    }
    assert_eq!(
        send_doc(&p, &aws_doc("AWS-RunShellScript")),
        Decision::ImplicitDeny
    );
    assert_eq!(policy(&Policy::read_only().to_json()), Policy::read_only());
}

#[test]
fn full_access_allows_every_ssm_and_fleetrun_action_only() {
    let p = [Policy::full_access()];
    assert_eq!(
        send_doc(&p, &aws_doc("AWS-RunShellScript")),
        Decision::Allow
    );
    assert_eq!(send_to(&p, &[]), Decision::Allow);
    for action in [
        "ssm:ListCommands",
        "ssm:CreateActivation",
        "fleetrun:CreateAccessKey",
        "FLEETRUN:anything",
        "resource-groups:CreateGroup",
    ] {
        assert_eq!(on(&p, action, "*", &[]), Decision::Allow, "{action}");
    }
    assert_eq!(on(&p, "ec2:RunInstances", "*", &[]), Decision::ImplicitDeny);
    assert_eq!(on(&p, "iam:CreateUser", "*", &[]), Decision::ImplicitDeny);
}

#[test]
fn a_list_only_policy_cannot_send_commands() {
    let p = [policy(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ssm:List*","Resource":"*"}}"#,
    )];
    assert_eq!(on(&p, "ssm:ListCommands", "*", &[]), Decision::Allow);
    assert_eq!(
        send_doc(&p, &aws_doc("AWS-RunShellScript")),
        Decision::ImplicitDeny
    );
    assert_eq!(send_to(&p, &[]), Decision::ImplicitDeny);
    assert_eq!(
        on(&p, "ssm:GetCommandInvocation", "*", &[]),
        Decision::ImplicitDeny
    );
}

#[test]
fn a_safe_documents_policy_cannot_run_aws_runshellscript() {
    let p = [policy(
        r#"{"Version":"2012-10-17","Statement":[
             {"Effect":"Allow","Action":"ssm:SendCommand","Resource":"arn:aws:ssm:*:*:document/Safe-*"},
             {"Effect":"Allow","Action":"ssm:SendCommand","Resource":"arn:aws:ssm:*:*:managed-instance/*"}]}"#,
    )];
    assert_eq!(
        send_doc(&p, &aws_doc("AWS-RunShellScript")),
        Decision::ImplicitDeny
    );
    assert_eq!(send_doc(&p, &own_doc("Safe-Restart")), Decision::Allow);
    assert_eq!(
        send_doc(&p, &own_doc("safe-Restart")),
        Decision::ImplicitDeny
    ); // resources: case-sensitive
    assert_eq!(
        send_doc(&p, &own_doc("Unsafe-Restart")),
        Decision::ImplicitDeny
    );
    assert_eq!(send_to(&p, &[]), Decision::Allow);
}

#[test]
fn an_explicit_deny_on_production_nodes_beats_full_access() {
    let deny_prod = policy(
        r#"{"Version":"2012-10-17","Statement":{"Sid":"NoProd","Effect":"Deny","Action":"ssm:SendCommand",
             "Resource":"arn:aws:ssm:*:*:managed-instance/*","Condition":{"StringEquals":{"ssm:resourceTag/env":"prod"}}}}"#,
    );
    let p = [Policy::full_access(), deny_prod];
    assert_eq!(send_to(&p, &[("env", "prod")]), Decision::ExplicitDeny);
    assert_eq!(send_to(&p, &[("env", "dev")]), Decision::Allow);
    assert_eq!(send_to(&p, &[]), Decision::Allow);
    assert_eq!(
        send_doc(&p, &aws_doc("AWS-RunShellScript")),
        Decision::Allow
    );
}

#[test]
fn request_tags_restrict_activation_tags() {
    // CreateActivation carries aws:RequestTag/<k> and aws:TagKeys (security-facts.md §6.1).
    let p = [policy(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ssm:CreateActivation","Resource":"*",
             "Condition":{"StringEquals":{"aws:RequestTag/team":"web"},"ForAllValues:StringEquals":{"aws:TagKeys":["team","env"]}}}}"#,
    )];
    let ask = |tags: &[(&str, &str)]| {
        let mut context: Vec<(String, Vec<String>)> = tags
            .iter()
            .map(|(k, v)| (format!("aws:RequestTag/{k}"), vec![(*v).to_owned()]))
            .collect();
        context.push((
            "aws:TagKeys".to_owned(),
            tags.iter().map(|(k, _)| (*k).to_owned()).collect(),
        ));
        evaluate(
            &p,
            &Request {
                action: "ssm:CreateActivation",
                resource: "*",
                context: &context,
            },
        )
    };
    assert_eq!(ask(&[("team", "web")]), Decision::Allow);
    assert_eq!(ask(&[("team", "web"), ("env", "prod")]), Decision::Allow);
    assert_eq!(
        ask(&[("team", "web"), ("owner", "me")]),
        Decision::ImplicitDeny
    );
    assert_eq!(ask(&[("team", "db")]), Decision::ImplicitDeny);
    assert_eq!(ask(&[]), Decision::ImplicitDeny);
}
