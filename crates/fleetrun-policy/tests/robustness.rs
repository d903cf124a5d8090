//! Property-style checks with a seeded generator (no extra crates): `Policy::parse` never panics on
//! garbage or on mangled policies; every policy it accepts round-trips through `to_json`; and
//! `evaluate` never panics and keeps IAM's algebra (order-independent, a deny-only set never allows,
//! adding a policy never weakens an explicit deny nor withdraws an allow).

use fleetrun_policy::{evaluate, Decision, Policy, Request};

/// xorshift64*: deterministic, so a failure reproduces from its iteration number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Each pool: valid entries first, then `…_BAD` entries drawn now and then so refusals get exercised.
const ACTIONS: &[&str] = &[
    "*",
    "ssm:*",
    "ssm:SendCommand",
    "ssm:List*",
    "ssm:Get*",
    "ssm:Describe*",
    "SSM:sendcommand",
    "ssm:?endCommand",
    "fleetrun:*",
    "ec2:*",
    "ssm:Send*d",
];
const ACTIONS_BAD: &[&str] = &["ssm", "ssm:", "ssm:${x}", ""];
const RESOURCES: &[&str] = &[
    "*",
    "arn:aws:ssm:*",
    "arn:aws:ssm:*:*:document/*",
    "arn:aws:ssm:*:*:document/Safe-*",
    "arn:aws:ssm:us-east-1::document/AWS-*",
    "arn:aws:ssm:*:*:managed-instance/*",
    "arn:aws:ssm:us-east-1:000000000000:managed-instance/mi-0123456789abcdef0",
    "arn:aws:ssm:us-east-?:*",
];
const RESOURCES_BAD: &[&str] = &[
    "arn:aws:*:*",
    "doc",
    "arn:aws:ssm:*:*:document/${aws:username}",
];
const REQUEST_RESOURCES: &[&str] = &[
    "*",
    "arn:aws:ssm:us-east-1::document/AWS-RunShellScript",
    "arn:aws:ssm:us-east-1:000000000000:document/Safe-Restart",
    "arn:aws:ssm:us-east-1:000000000000:managed-instance/mi-0123456789abcdef0",
    "arn:aws:ssm:eu-west-1:000000000000:managed-instance/mi-00000000000000001",
];
const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringLike",
    "StringNotLike",
    "StringEqualsIfExists",
    "StringNotLikeIfExists",
    "Null",
];
const SET_OPERATORS: &[&str] = &[
    "ForAnyValue:StringEquals",
    "ForAllValues:StringLike",
    "ForAllValues:StringNotEquals",
];
const OPERATORS_BAD: &[&str] = &["ArnLike", "NullIfExists", "stringequals"];
const KEYS: &[&str] = &[
    "ssm:resourceTag/env",
    "aws:ResourceTag/env",
    "SSM:RESOURCETAG/team",
    "aws:RequestTag/team",
];
const KEYS_BAD: &[&str] = &["aws:username", "ssm:resourceTag/", "ssm:resourceTag/e*"];
const VALUES: &[&str] = &["prod", "dev", "p*", "?ev", "*", "", "team", "env"];
const NULL_VALUES: &[&str] = &["true", "false"];
const VALUES_BAD: &[&str] = &["${aws:username}", "maybe"];

fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Mostly from `good`, 1 time in 40 from `bad`.
fn pick<'a>(rng: &mut Rng, good: &[&'a str], bad: &[&'a str]) -> &'a str {
    if rng.below(40) == 0 {
        rng.pick(bad)
    } else {
        rng.pick(good)
    }
}

/// A string or an array of 1–3 strings (now and then an empty array).
fn list(rng: &mut Rng, good: &[&str], bad: &[&str]) -> String {
    match rng.below(40) {
        0 => "[]".to_owned(),
        n if n < 20 => quoted(pick(rng, good, bad)),
        _ => {
            let items: Vec<String> = (0..1 + rng.below(3))
                .map(|_| quoted(pick(rng, good, bad)))
                .collect();
            format!("[{}]", items.join(","))
        }
    }
}

fn condition(rng: &mut Rng) -> String {
    let blocks: Vec<String> = (0..rng.below(3))
        .map(|_| {
            let set = rng.chance(25);
            let operator = if set {
                pick(rng, SET_OPERATORS, OPERATORS_BAD)
            } else {
                pick(rng, OPERATORS, OPERATORS_BAD)
            };
            let keys: Vec<String> = (0..1 + rng.below(2))
                .map(|_| {
                    let key = if set {
                        "aws:TagKeys"
                    } else {
                        pick(rng, KEYS, KEYS_BAD)
                    };
                    let values = if operator == "Null" {
                        NULL_VALUES
                    } else {
                        VALUES
                    };
                    format!("{}:{}", quoted(key), list(rng, values, VALUES_BAD))
                })
                .collect();
            format!("{}:{{{}}}", quoted(operator), keys.join(","))
        })
        .collect();
    format!("{{{}}}", blocks.join(","))
}

fn statement(rng: &mut Rng) -> String {
    let mut members = Vec::new();
    if rng.chance(30) {
        members.push(format!("\"Sid\":\"S{}\"", rng.below(4)));
    }
    if rng.chance(99) {
        members.push(format!(
            "\"Effect\":\"{}\"",
            pick(rng, &["Allow", "Deny"], &["allow", "Permit"])
        ));
    }
    let action = if rng.chance(80) {
        "Action"
    } else {
        "NotAction"
    };
    if rng.chance(97) {
        members.push(format!("\"{action}\":{}", list(rng, ACTIONS, ACTIONS_BAD)));
    }
    let resource = if rng.chance(80) {
        "Resource"
    } else {
        "NotResource"
    };
    if rng.chance(97) {
        members.push(format!(
            "\"{resource}\":{}",
            list(rng, RESOURCES, RESOURCES_BAD)
        ));
    }
    if rng.chance(50) {
        members.push(format!("\"Condition\":{}", condition(rng)));
    }
    if rng.chance(2) {
        members.push("\"Principal\":\"*\"".to_owned());
    }
    format!("{{{}}}", members.join(","))
}

fn document(rng: &mut Rng) -> String {
    let statements: Vec<String> = (0..rng.below(4)).map(|_| statement(rng)).collect();
    let versions = [
        "",
        "\"Version\":\"2012-10-17\",",
        "\"Version\":\"2008-10-17\",",
    ];
    let version = pick(
        rng,
        &versions,
        &["\"Version\":\"2019-01-01\",", "\"Version\":2012,"],
    );
    if statements.len() == 1 && rng.chance(50) {
        format!("{{{version}\"Statement\":{}}}", statements[0])
    } else {
        format!("{{{version}\"Statement\":[{}]}}", statements.join(","))
    }
}

fn context(rng: &mut Rng) -> Vec<(String, Vec<String>)> {
    (0..rng.below(4))
        .map(|_| {
            let values = (0..rng.below(3))
                .map(|_| rng.pick(VALUES).to_owned())
                .collect();
            let key = if rng.chance(20) {
                "aws:TagKeys"
            } else {
                rng.pick(KEYS)
            };
            (key.to_owned(), values)
        })
        .collect()
}

#[test]
fn parse_never_panics_on_garbage() {
    let mut rng = Rng(0x5EED_0001);
    let alphabet = b"{}[]\":,\\ \n0123456789.-+eEtrufalsn*?$ArnStatementEffectAllowDenyActionResource\xc3\xa9\x00\xff";
    for _ in 0..20_000 {
        let len = rng.below(80);
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let _ = Policy::parse(&String::from_utf8_lossy(&bytes));
    }
    // Every prefix and single-byte mutation of a real policy.
    let real = r#"{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":["ssm:SendCommand"],"Resource":"arn:aws:ssm:*:*:managed-instance/*","Condition":{"StringLike":{"ssm:resourceTag/Finance":["Web*"]},"ForAllValues:StringEquals":{"aws:TagKeys":"x"}}}]}"#;
    for end in 0..=real.len() {
        let _ = Policy::parse(&real[..end]);
    }
    let bytes = real.as_bytes();
    for _ in 0..20_000 {
        let mut mutated = bytes.to_vec();
        let at = rng.below(mutated.len());
        match rng.below(3) {
            0 => {
                mutated.remove(at);
            }
            1 => mutated.insert(at, alphabet[rng.below(alphabet.len())]),
            _ => mutated[at] = alphabet[rng.below(alphabet.len())],
        }
        let _ = Policy::parse(&String::from_utf8_lossy(&mutated));
    }
}

#[test]
fn generated_policies_round_trip_and_evaluate_without_panicking() {
    let mut rng = Rng(0x5EED_0002);
    let (mut accepted, mut refused) = (0, 0);
    let mut pool: Vec<Policy> = Vec::new();
    let mut seen = [0usize; 3]; // Allow, ImplicitDeny, ExplicitDeny
    for i in 0..4_000 {
        let text = document(&mut rng);
        let policy = match Policy::parse(&text) {
            Ok(p) => p,
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
                continue;
            }
        };
        accepted += 1;
        assert_eq!(
            Policy::parse(&policy.to_json()).as_ref(),
            Ok(&policy),
            "#{i}: {text}"
        );
        for _ in 0..5 {
            let ctx = context(&mut rng);
            let request = Request {
                action: rng.pick(&[
                    "ssm:SendCommand",
                    "ssm:SendCommand",
                    "ssm:ListCommands",
                    "fleetrun:CreateAccessKey",
                    "ec2:X",
                    "",
                ]),
                resource: rng.pick(REQUEST_RESOURCES),
                context: &ctx,
            };
            let alone = evaluate(std::slice::from_ref(&policy), &request);
            seen[alone as usize] += 1;
            if let Some(other) = pool.last() {
                let before = evaluate(std::slice::from_ref(other), &request);
                let pair = [other.clone(), policy.clone()];
                let together = evaluate(&pair, &request);
                let reversed = evaluate(&[policy.clone(), other.clone()], &request);
                assert_eq!(together, reversed, "#{i}: order matters");
                if before == Decision::ExplicitDeny || alone == Decision::ExplicitDeny {
                    assert_eq!(together, Decision::ExplicitDeny, "#{i}: a deny was lost");
                } else if before == Decision::Allow || alone == Decision::Allow {
                    assert_eq!(together, Decision::Allow, "#{i}: an allow was lost");
                } else {
                    assert_eq!(together, Decision::ImplicitDeny, "#{i}: an allow appeared");
                }
            }
            if !policy.to_json().contains("\"Allow\"") {
                assert_ne!(
                    alone,
                    Decision::Allow,
                    "#{i}: a policy without Allow allowed: {text}"
                );
            }
        }
        pool.push(policy);
    }
    // The generator must exercise both paths, or this test would prove nothing.
    assert!(accepted > 400, "only {accepted} generated policies parsed");
    assert!(
        refused > 400,
        "only {refused} generated policies were refused"
    );
    assert!(
        seen.iter().all(|&n| n > 100),
        "decisions (allow, implicit, explicit): {seen:?}"
    );
}
