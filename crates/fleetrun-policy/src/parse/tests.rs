//! Tables for what `Policy::parse` accepts, what it refuses (and where it says the fault is), and the
//! `to_json` round trip.

use super::*;

fn refusal(json: &str) -> PolicyError {
    match Policy::parse(json) {
        Ok(p) => panic!("accepted: {json} as {p:?}"),
        Err(e) => e,
    }
}

/// A one-statement document with `extra` members added to an Allow ssm:* on * statement.
fn stmt(extra: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":"ssm:*","Resource":"*"{extra}}}}}"#
    )
}

fn cond(block: &str) -> String {
    stmt(&format!(r#","Condition":{block}"#))
}

#[test]
fn accepted_documents() {
    let ok = [
        r#"{"Statement":[]}"#,
        r#"{"Version":"2012-10-17","Statement":[]}"#,
        r#"{"Version":"2008-10-17","Id":"x","Statement":{"Effect":"Deny","Action":"*","Resource":"*"}}"#,
        r#"{"Statement":[{"Sid":"A","Effect":"Allow","Action":["ssm:List*","ssm:Get*"],"Resource":["*"]},
                         {"Sid":"B","Effect":"Deny","NotAction":"ssm:SendCommand","NotResource":"arn:aws:ssm:*"}]}"#,
        r#"{"Statement":[{"Sid":"","Effect":"Allow","Action":"ssm:*","Resource":"*"},{"Sid":"","Effect":"Allow","Action":"ssm:*","Resource":"*"}]}"#,
        &cond(r#"{}"#),
        &cond(r#"{"StringLike":{"ssm:resourceTag/Finance":["WebServers"]}}"#),
        &cond(
            r#"{"StringEquals":{"aws:ResourceTag/env":"prod","aws:RequestTag/team":["a","b"]},"StringNotLikeIfExists":{"ssm:resourceTag/x":"y*"}}"#,
        ),
        &cond(r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env","team"]}}"#),
        &cond(r#"{"ForAnyValue:StringLike":{"aws:tagkeys":"e*"}}"#),
        &cond(r#"{"Null":{"aws:TagKeys":"true","ssm:resourceTag/env":false}}"#),
        &cond(r#"{"StringEquals":{"ssm:resourceTag/tier":1}}"#),
        &cond(r#"{"StringEquals":{"ssm:resourceTag/flag":true}}"#),
        " \n{ \"Statement\" : [ ] }\n ",
    ];
    for json in ok {
        if let Err(e) = Policy::parse(json) {
            panic!("refused: {json}: {e}");
        }
    }
}

#[test]
fn refused_documents_say_what_and_where() {
    let long = format!(
        r#"{{"Statement":[],"Id":"{}"}}"#,
        "x".repeat(MAX_POLICY_LEN)
    );
    let table: Vec<(String, PolicyError)> = vec![
        (long.clone(), PolicyError::TooLarge { len: long.len(), max: MAX_POLICY_LEN }),
        (r#"{"Version":"2012-10-17"}"#.into(), PolicyError::Missing { location: "policy".into(), element: "Statement" }),
        (r#"{"Statement":[],"Statement":[]}"#.into(), PolicyError::DuplicateKey { location: "policy".into(), key: "Statement".into() }),
        (r#"{"Statement":[],"Extra":1}"#.into(), PolicyError::UnknownElement { location: "policy".into(), element: "Extra".into() }),
        (r#"{"statement":[]}"#.into(), PolicyError::UnknownElement { location: "policy".into(), element: "statement".into() }),
        (r#"{"Version":"2012-10-18","Statement":[]}"#.into(), PolicyError::Version { location: "Version".into(), value: "2012-10-18".into() }),
        (r#"{"Version":2012,"Statement":[]}"#.into(), PolicyError::WrongType { location: "Version".into(), expected: "a string" }),
        (r#"{"Statement":"x"}"#.into(), PolicyError::WrongType { location: "Statement".into(), expected: "an object or an array of objects" }),
        (r#"{"Statement":[1]}"#.into(), PolicyError::WrongType { location: "Statement[0]".into(), expected: "an object" }),
        (r#"[]"#.into(), PolicyError::WrongType { location: "policy".into(), expected: "an object" }),
        (r#"{"Statement":{"Effect":"allow","Action":"*","Resource":"*"}}"#.into(), PolicyError::Effect { location: "Statement.Effect".into(), value: "allow".into() }),
        (r#"{"Statement":{"Action":"*","Resource":"*"}}"#.into(), PolicyError::Missing { location: "Statement".into(), element: "Effect" }),
        (r#"{"Statement":[{"Effect":"Allow","Resource":"*"}]}"#.into(), PolicyError::Missing { location: "Statement[0]".into(), element: "Action (or NotAction)" }),
        (r#"{"Statement":[{"Effect":"Allow","Action":"*"}]}"#.into(), PolicyError::Missing { location: "Statement[0]".into(), element: "Resource (or NotResource)" }),
        (r#"{"Statement":{"Effect":"Allow","Action":"*","NotAction":"ssm:x","Resource":"*"}}"#.into(), PolicyError::Conflict { location: "Statement".into(), first: "Action", second: "NotAction" }),
        (r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","NotResource":"*"}}"#.into(), PolicyError::Conflict { location: "Statement".into(), first: "Resource", second: "NotResource" }),
        (r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Principal":"*"}}"#.into(), PolicyError::UnknownElement { location: "Statement".into(), element: "Principal".into() }),
        (r#"{"Statement":{"Effect":"Allow","Effect":"Deny","Action":"*","Resource":"*"}}"#.into(), PolicyError::DuplicateKey { location: "Statement".into(), key: "Effect".into() }),
        (r#"{"Statement":[{"Sid":"A","Effect":"Allow","Action":"*","Resource":"*"},{"Sid":"A","Effect":"Deny","Action":"*","Resource":"*"}]}"#.into(), PolicyError::DuplicateSid { location: "Statement[1].Sid".into(), sid: "A".into() }),
        (r#"{"Statement":{"Effect":"Allow","Action":[],"Resource":"*"}}"#.into(), PolicyError::Empty { location: "Statement.Action".into() }),
        (r#"{"Statement":{"Effect":"Allow","Action":["ssm:x",3],"Resource":"*"}}"#.into(), PolicyError::WrongType { location: "Statement.Action".into(), expected: "a string or a non-empty array of strings" }),
        (r#"{"Statement":{"Effect":"Allow","Action":["ssm:x","SendCommand"],"Resource":"*"}}"#.into(), PolicyError::Action { location: "Statement.Action[1]".into(), value: "SendCommand".into(), reason: "expected \"*\" or \"<service>:<action>\"" }),
        (r#"{"Statement":{"Effect":"Allow","Action":"ssm:*","Resource":"document/*"}}"#.into(), PolicyError::Resource { location: "Statement.Resource".into(), value: "document/*".into(), reason: "expected \"*\" or an ARN (arn:partition:service:region:account:resource)" }),
        (r#"{"Statement":{"Effect":"Allow","Action":"ssm:*","Resource":["*","arn:aws:*:*:*:*"]}}"#.into(), PolicyError::Resource { location: "Statement.Resource[1]".into(), value: "arn:aws:*:*:*:*".into(), reason: "the service segment of an ARN cannot hold a wildcard" }),
        (r#"{"Statement":{"Effect":"Allow","Action":"ssm:*","Resource":"arn:aws:ssm:*:*:document/${aws:username}"}}"#.into(), PolicyError::PolicyVariable { location: "Statement.Resource".into(), value: "arn:aws:ssm:*:*:document/${aws:username}".into() }),
        (r#"{"Statement":{"Effect":"Allow","Action":"ssm:${x}","Resource":"*"}}"#.into(), PolicyError::PolicyVariable { location: "Statement.Action".into(), value: "ssm:${x}".into() }),
        (cond(r#"{"StringEquals":{"ssm:resourceTag/owner":"${aws:username}"}}"#), PolicyError::PolicyVariable { location: r#"Statement.Condition.StringEquals["ssm:resourceTag/owner"]"#.into(), value: "${aws:username}".into() }),
        (cond(r#"{"StringEquals":{"aws:PrincipalTag/${x}":"y"}}"#), PolicyError::PolicyVariable { location: r#"Statement.Condition.StringEquals["aws:PrincipalTag/${x}"]"#.into(), value: "aws:PrincipalTag/${x}".into() }),
        (cond(r#"{"ArnLike":{"aws:SourceArn":"arn:*"}}"#), PolicyError::Operator { location: "Statement.Condition".into(), operator: "ArnLike".into() }),
        (cond(r#"{"StringEqualsIgnoreCase":{"ssm:resourceTag/a":"b"}}"#), PolicyError::Operator { location: "Statement.Condition".into(), operator: "StringEqualsIgnoreCase".into() }),
        (cond(r#"{"stringEquals":{"ssm:resourceTag/a":"b"}}"#), PolicyError::Operator { location: "Statement.Condition".into(), operator: "stringEquals".into() }),
        (cond(r#"{"StringEquals":{"aws:username":"bob"}}"#), PolicyError::ConditionKey { location: "Statement.Condition.StringEquals".into(), key: "aws:username".into() }),
        (cond(r#"{"StringEquals":{"ssm:resourceTag/*":"b"}}"#), PolicyError::ConditionKey { location: "Statement.Condition.StringEquals".into(), key: "ssm:resourceTag/*".into() }),
        (cond(r#"{"StringEquals":{}}"#), PolicyError::Empty { location: "Statement.Condition.StringEquals".into() }),
        (cond(r#"{"StringEquals":{"ssm:resourceTag/a":[]}}"#), PolicyError::Empty { location: r#"Statement.Condition.StringEquals["ssm:resourceTag/a"]"#.into() }),
        (cond(r#"{"StringEquals":{"ssm:resourceTag/a":1.5}}"#), PolicyError::WrongType { location: r#"Statement.Condition.StringEquals["ssm:resourceTag/a"]"#.into(), expected: "a string, boolean or integer, or a non-empty array of them" }),
        (cond(r#"{"StringEquals":{"ssm:resourceTag/a":{"b":"c"}}}"#), PolicyError::WrongType { location: r#"Statement.Condition.StringEquals["ssm:resourceTag/a"]"#.into(), expected: "a string, boolean or integer, or a non-empty array of them" }),
        (cond(r#"{"StringEquals":{"ssm:resourceTag/a":"b","ssm:resourceTag/a":"c"}}"#), PolicyError::DuplicateKey { location: "Statement.Condition.StringEquals".into(), key: "ssm:resourceTag/a".into() }),
        (cond(r#"{"StringEquals":{"aws:TagKeys":"env"}}"#), PolicyError::NeedsSetOperator { location: r#"Statement.Condition.StringEquals["aws:TagKeys"]"#.into(), key: "aws:TagKeys".into(), operator: "StringEquals".into() }),
        (cond(r#"{"ForAnyValue:StringEquals":{"ssm:resourceTag/env":"prod"}}"#), PolicyError::SetOperatorOnSingleValuedKey { location: r#"Statement.Condition.ForAnyValue:StringEquals["ssm:resourceTag/env"]"#.into(), key: "ssm:resourceTag/env".into(), operator: "ForAnyValue:StringEquals".into() }),
        (cond(r#"{"Null":{"aws:TagKeys":"yes"}}"#), PolicyError::NullValue { location: r#"Statement.Condition.Null["aws:TagKeys"]"#.into(), value: "yes".into() }),
        (cond(r#"{"NullIfExists":{"aws:TagKeys":"true"}}"#), PolicyError::Operator { location: "Statement.Condition".into(), operator: "NullIfExists".into() }),
        (cond(r#"[]"#), PolicyError::WrongType { location: "Statement.Condition".into(), expected: "an object" }),
    ];
    for (json, want) in table {
        assert_eq!(refusal(&json), want, "{json}");
    }
}

#[test]
fn json_errors_carry_their_position() {
    match refusal("{\"Statement\": [}\n") {
        PolicyError::Json {
            line,
            column,
            message,
        } => {
            assert_eq!((line, column), (1, 16), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(refusal(""), PolicyError::Json { .. }));
    assert!(matches!(
        refusal("{\"Statement\":[]} x"),
        PolicyError::Json { .. }
    ));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(refusal(&deep), PolicyError::Json { .. }));
}

#[test]
fn error_messages_name_the_location() {
    let e = refusal(&cond(r#"{"StringEquals":{"aws:username":"bob"}}"#));
    assert!(
        e.to_string().starts_with(
            "Statement.Condition.StringEquals: unsupported condition key \"aws:username\""
        ),
        "{e}"
    );
}

#[test]
fn to_json_is_iam_ordered_and_round_trips() {
    let json = r#"{"Statement":[{"Resource":"arn:aws:ssm:*:*:managed-instance/*","Condition":{"StringLike":{"ssm:resourceTag/Finance":"Web\"Servers"},"ForAllValues:StringEquals":{"aws:TagKeys":["a","b"]},"Null":{"aws:RequestTag/x":true}},"Action":"ssm:SendCommand","Effect":"Allow","Sid":"Nodes"},{"Effect":"Deny","NotAction":"ssm:*","NotResource":["arn:aws:ssm:*"]}],"Id":"P","Version":"2012-10-17"}"#;
    let policy = Policy::parse(json).unwrap_or_else(|e| panic!("{e}"));
    let text = policy.to_json();
    assert_eq!(
        text,
        concat!(
            r#"{"Version":"2012-10-17","Id":"P","Statement":["#,
            r#"{"Sid":"Nodes","Effect":"Allow","Action":["ssm:SendCommand"],"Resource":["arn:aws:ssm:*:*:managed-instance/*"],"#,
            r#""Condition":{"StringLike":{"ssm:resourceTag/Finance":["Web\"Servers"]},"ForAllValues:StringEquals":{"aws:TagKeys":["a","b"]},"Null":{"aws:RequestTag/x":["true"]}}},"#,
            r#"{"Effect":"Deny","NotAction":["ssm:*"],"NotResource":["arn:aws:ssm:*"]}]}"#
        )
    );
    assert_eq!(Policy::parse(&text), Ok(policy));
}

#[test]
fn statement_object_and_one_element_array_are_the_same_policy() {
    let one = Policy::parse(r#"{"Statement":{"Effect":"Allow","Action":"ssm:*","Resource":"*"}}"#);
    let list =
        Policy::parse(r#"{"Statement":[{"Effect":"Allow","Action":["ssm:*"],"Resource":["*"]}]}"#);
    assert_eq!(one, list);
    assert!(one.is_ok());
}
