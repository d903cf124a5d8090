//! End to end: a request body to a real in-process server (router, handlers, SQLite store),
//! signed for real, so decoding, validation, the handlers and the agent endpoints all see it.
//! Fails on a panic, a 5xx, or an answer that is not typed awsJson (`harness::Answer::check`).
//!
//! Input: `<target>\n<body>`. A target starting with `/` is an agent path (`/agent/v2/poll`,
//! `/agent/v2/result`, `/agent/v2/token`, `/agent/v2/register`, `/agent/v1/…`), signed as the
//! registered node signs it there (`/agent/v2/poll <token>` sends `<token>` as the session token
//! instead of the live one); anything else is the `X-Amz-Target` of `POST /`
//! (`AmazonSSM.SendCommand`, `FleetrunAdmin.CreateAccessKey`, …), signed with the admin key.
#![no_main]

use fleetrun_fuzz::harness::harness;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (target, body) = fleetrun_fuzz::split_line(data);
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let answer = if target.starts_with('/') {
        harness().agent(target, body)
    } else {
        harness().ssm(target, body)
    };
    if let Some(answer) = answer {
        answer.check(target);
    }
});
