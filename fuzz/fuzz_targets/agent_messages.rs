//! Every agent protocol message (`fleetrun_wire::agent`), both directions: what the server reads
//! from nodes (RegisterRequest, TokenRequest, PollRequest, ResultReport) and what an agent reads
//! from the server (RegisterResponse, TokenResponse, PollResponse with its Run/Cancel messages,
//! ResultAck). Whatever decodes must survive encode → decode unchanged (the
//! outbox stores reports re-encoded), and the output views cut from a report stay within their
//! limits (`fleetrun_core::output`). The server's handling of them is the `ssm_api` target's
//! `/agent/v2/*` inputs.
//!
//! Input: `<MessageName>\n<json>`; an unknown name decodes the body into every shape.
#![no_main]

use fleetrun_core::output::{
    plugin_view, stderr_view, stdout_view, Stream, PLUGIN_OUTPUT_LIMIT, STDERR_LIMIT, STDOUT_LIMIT,
};
use fleetrun_wire::agent::{
    AgentMessage, PollRequest, PollResponse, RegisterRequest, RegisterResponse, ResultAck,
    ResultReport, TokenRequest, TokenResponse,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trip<T: DeserializeOwned + Serialize + PartialEq>(body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(body) else {
        return;
    };
    let json = serde_json::to_vec(&value).expect("a decoded message encodes");
    let again: T = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "re-encoded {} does not decode: {e}",
            std::any::type_name::<T>()
        )
    });
    assert!(
        again == value,
        "{} changed in a round trip",
        std::any::type_name::<T>()
    );
}

/// The API views the server cuts from a report's streams stay within AWS's character limits.
fn views(body: &[u8]) {
    let Ok(report) = serde_json::from_slice::<ResultReport>(body) else {
        return;
    };
    let chars = |s: &str| s.chars().count();
    for step in &report.steps {
        let out = Stream {
            text: &step.stdout,
            truncated: step.stdout_truncated,
        };
        let err = Stream {
            text: &step.stderr,
            truncated: step.stderr_truncated,
        };
        assert!(chars(&stdout_view(out)) <= STDOUT_LIMIT);
        assert!(chars(&stderr_view(err)) <= STDERR_LIMIT);
        let plugin = plugin_view(out, err);
        assert!(
            chars(&plugin) <= PLUGIN_OUTPUT_LIMIT,
            "{} characters",
            chars(&plugin)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let (name, body) = fleetrun_fuzz::split_line(data);
    let name = std::str::from_utf8(name).unwrap_or("");
    let all = !matches!(
        name,
        "RegisterRequest"
            | "TokenRequest"
            | "PollRequest"
            | "ResultReport"
            | "RegisterResponse"
            | "TokenResponse"
            | "PollResponse"
            | "AgentMessage"
            | "ResultAck"
    );
    if all || name == "RegisterRequest" {
        round_trip::<RegisterRequest>(body);
    }
    if all || name == "TokenRequest" {
        round_trip::<TokenRequest>(body);
    }
    if all || name == "PollRequest" {
        round_trip::<PollRequest>(body);
    }
    if all || name == "ResultReport" {
        round_trip::<ResultReport>(body);
        views(body);
    }
    if all || name == "RegisterResponse" {
        round_trip::<RegisterResponse>(body);
    }
    if all || name == "TokenResponse" {
        round_trip::<TokenResponse>(body);
    }
    if all || name == "PollResponse" {
        round_trip::<PollResponse>(body);
    }
    if all || name == "AgentMessage" {
        round_trip::<AgentMessage>(body);
    }
    if all || name == "ResultAck" {
        round_trip::<ResultAck>(body);
    }
});
