//! The IAM policy parser (operators upload policies: CreateAccessKey `PolicyDocument`), then
//! evaluation of what parsed against requests taken from the input, and the documented round
//! trip `Policy::parse(p.to_json()) == p`.
//!
//! Input: `<policy JSON>` optionally followed by `\n\0\n<action>\n<resource>\n<key>=<value>…`.
#![no_main]

use fleetrun_policy::{evaluate, Policy, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (doc, req) = text.split_once("\n\0\n").unwrap_or((&text, ""));
    let Ok(policy) = Policy::parse(doc) else {
        return;
    };
    let json = policy.to_json();
    let again =
        Policy::parse(&json).unwrap_or_else(|e| panic!("to_json does not parse: {e}: {json}"));
    assert_eq!(again, policy, "round trip changed the policy: {json}");

    let mut lines = req.split('\n');
    let action = lines
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("ssm:SendCommand");
    let resource = lines.next().filter(|s| !s.is_empty()).unwrap_or("*");
    let context: Vec<(String, Vec<String>)> = lines
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_owned(), v.split(',').map(str::to_owned).collect())
        })
        .collect();
    let request = Request {
        action,
        resource,
        context: &context,
    };
    let decision = evaluate(std::slice::from_ref(&policy), &request);
    // Evaluation is a function of the policy: the re-parsed copy decides alike.
    assert_eq!(evaluate(&[again], &request), decision);
});
