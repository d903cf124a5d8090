//! The agent ⇄ server protocol, version 2 (JSON over HTTP).
//!
//! ```text
//! POST /agent/v2/register   RegisterRequest → RegisterResponse   unsigned: activation id + code + public key
//! POST /agent/v2/token      TokenRequest    → TokenResponse      signed with the node's Ed25519 key
//! POST /agent/v2/poll       PollRequest     → PollResponse       SigV4 (HMAC) with session credentials
//! POST /agent/v2/result     ResultReport    → ResultAck          SigV4 (HMAC) with session credentials
//! POST /agent/v2/goodbye    GoodbyeRequest  → GoodbyeAck         SigV4 (HMAC) with session credentials
//! POST /agent/v2/output     OutputShipment  → OutputAck          SigV4 (HMAC) with session credentials
//! ```
//! `output` carries a piece of a running (or finished) step's stdout or stderr at its byte offset
//! in the stream; the answer says how many bytes of that stream the server holds, and the agent
//! continues from there (so a resend or a lost answer neither duplicates nor loses output).
//! As with AWS hybrid nodes: registration sends the node's public key once (the private key never
//! leaves the node); `token` is signed in the SigV4 layout with the `mi-` id as access key id and
//! `Signature=<base64 Ed25519 signature over the SigV4 string-to-sign>` (AWS uses RSA-PSS there);
//! it returns short-lived session credentials, and every poll and result is an ordinary SigV4
//! request (`AWS4-HMAC-SHA256`, service [`SIGNING_SERVICE`], the region from [`RegisterResponse`])
//! signed with them and carrying `X-Amz-Security-Token`. The agent refreshes them at half their
//! lifetime. A request is accepted once: replays inside the 5-minute window are refused.
//!
//! `goodbye` is sent by an agent that stops cleanly: the server reports the node `ConnectionLost`
//! at once instead of after its ping timeout; the node's next poll makes it `Online` again.
//!
//! Errors are `{"__type": code, "Message": text}` with HTTP 4xx/5xx, like the AWS API; `/agent/v1/*`
//! answers 426 [`PROTOCOL_MISMATCH_CODE`]. A node the server no longer knows (deregistered) gets
//! [`NOT_REGISTERED_CODE`] from `token`, `poll`, `result` and `goodbye`. The server owns every
//! clock: agents send durations, not times (the SigV4 `X-Amz-Date` is checked against a window,
//! never stored).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Protocol version; path prefix `/agent/v{PROTOCOL_VERSION}`.
pub const PROTOCOL_VERSION: u32 = 2;
pub const REGISTER_PATH: &str = "/agent/v2/register";
pub const TOKEN_PATH: &str = "/agent/v2/token";
pub const POLL_PATH: &str = "/agent/v2/poll";
pub const RESULT_PATH: &str = "/agent/v2/result";
pub const GOODBYE_PATH: &str = "/agent/v2/goodbye";
pub const OUTPUT_PATH: &str = "/agent/v2/output";
/// Most output bytes one shipment carries (before base64).
pub const MAX_OUTPUT_CHUNK_BYTES: usize = 256 * 1024;
/// Prefix of the retired protocol v1; the server answers every path under it with
/// [`PROTOCOL_MISMATCH_CODE`].
pub const V1_PREFIX: &str = "/agent/v1/";
/// Header the agent sends with its protocol version.
pub const VERSION_HEADER: &str = "x-fleetrun-agent-protocol";
/// The SigV4 service name in the credential scope of every signed agent request (as for SSM).
pub const SIGNING_SERVICE: &str = "ssm";
/// The only node key type so far.
pub const KEY_TYPE_ED25519: &str = "Ed25519";
/// `__type` of the answer to a request in another protocol version (HTTP 426).
pub const PROTOCOL_MISMATCH_CODE: &str = "UnsupportedAgentProtocolException";
/// Its message.
pub const PROTOCOL_MISMATCH_MESSAGE: &str =
    "this server speaks agent protocol v2; upgrade fleetrun-agent and register it again";
/// `__type` of the answer to a signed request from a node the server does not know: it was
/// deregistered (`DeregisterManagedInstance`), or never registered there. AWS answers a
/// deregistered hybrid node's token request with the same code ("Not existing InstanceId"). Only
/// registering again, with a new activation, cures it.
pub const NOT_REGISTERED_CODE: &str = "InvalidInstanceId";

/// Facts about the machine the agent runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineInfo {
    pub computer_name: String,
    pub ip_address: String,
    /// `Linux` or `MacOS`.
    pub platform_type: String,
    pub platform_name: String,
    pub platform_version: String,
    pub agent_version: String,
}

/// Registration (unsigned, like AWS's RegisterManagedInstance).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    pub activation_id: String,
    pub activation_code: String,
    /// Standard base64 of the node's 32-byte Ed25519 public key.
    pub public_key: String,
    /// [`KEY_TYPE_ED25519`].
    pub public_key_type: String,
    pub machine: MachineInfo,
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("activation_id", &self.activation_id)
            .field("activation_code", &"<redacted>")
            .field("public_key", &self.public_key)
            .field("public_key_type", &self.public_key_type)
            .field("machine", &self.machine)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    /// `mi-` + 17 hex characters: the access key id of the node's token requests.
    pub instance_id: String,
    /// The server's region: the region of every credential scope the node signs.
    pub region: String,
}

/// The body of a token request (the proof is in the signature; nothing else is needed yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {}

/// Short-lived session credentials (AWS RequestManagedInstanceRoleToken's answer).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    /// `ASIA` + 16 characters.
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Sent as `X-Amz-Security-Token` with every signed request.
    pub session_token: String,
    /// Seconds the credentials stay valid from now (the agent refreshes at half of it).
    pub expires_in_secs: u64,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expires_in_secs", &self.expires_in_secs)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollRequest {
    /// Random per agent process start; lets the server tell a restarted agent from a lost response.
    pub session_id: String,
    /// Command ids the agent is running or has finished but not yet reported.
    pub known_commands: Vec<String>,
    /// How long the server may hold the request open when there is nothing to do.
    pub wait_ms: u64,
    /// Sent on the first poll of a session (and whenever it changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<MachineInfo>,
    /// Commands this agent was given but will never report: the server refused their result
    /// report and the fallback report too. The server ends them `Failed` instead of handing them
    /// out again. At most [`MAX_DROPPED_PER_POLL`] per poll; absent from older agents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_commands: Vec<String>,
}

/// Most `dropped_commands` one poll carries (the server reads no more).
pub const MAX_DROPPED_PER_POLL: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollResponse {
    pub messages: Vec<AgentMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AgentMessage {
    /// Run a command's steps, in order.
    #[serde(rename_all = "camelCase")]
    Run {
        command_id: String,
        document_name: String,
        steps: Vec<StepSpec>,
        /// Extra environment (`AWS_SSM_INSTANCE_ID`, `AWS_SSM_REGION_NAME`, `SSM_COMMAND_ID`).
        env: Vec<(String, String)>,
    },
    /// Stop a running command.
    #[serde(rename_all = "camelCase")]
    Cancel { command_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepSpec {
    /// Plugin/step name reported back (e.g. `aws:runShellScript`).
    pub name: String,
    /// Action, e.g. `aws:runShellScript`.
    pub action: String,
    /// Script lines, joined with `\n`.
    pub commands: Vec<String>,
    /// Empty for the agent's default.
    pub working_directory: String,
    pub timeout_seconds: u64,
}

/// Final outcome of a command on a node, as the agent saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Success,
    Failed,
    TimedOut,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultReport {
    pub command_id: String,
    pub outcome: Outcome,
    /// Exit code of the last step run (137 when the agent killed it; -1 if nothing ran).
    pub response_code: i64,
    /// Wall time from the first step's start to the last step's end.
    pub elapsed_ms: i64,
    pub steps: Vec<StepReport>,
    /// When the command finished, by the node's clock (Unix ms). Kept with the report in the
    /// node's outbox so `held_ms` can be computed at each send; the server never reads it as a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    /// How long the report has waited on the node since `finished_at_ms`, at the moment of this
    /// send (0 when sent at once). The server dates the end as its own clock minus this, so a
    /// result sent late from the outbox keeps its real times and node clock skew does not matter.
    #[serde(default)]
    pub held_ms: i64,
}

/// Most characters of a step's stdout a report carries: GetCommandInvocation's
/// `StandardOutputContent` limit, the widest view the API gives of it. A longer stream is sent as
/// exactly this many characters with `stdout_truncated`, so every view the server derives is the
/// one AWS shows. The whole stream stays on the node (`<state_dir>/work/<command>/<step>/stdout`).
pub const REPORT_STDOUT_CHARS: usize = 24_000;
/// The same for stderr: `StandardErrorContent`'s limit.
pub const REPORT_STDERR_CHARS: usize = 8_000;
/// Largest encoded [`ResultReport`] an agent sends, whatever its scripts print and however many
/// steps it has: 512 KiB, a quarter of the server's 2 MiB body limit. One step's two streams take
/// at most 32,000 characters × 6 bytes (`\u00XX`) = 192,000 bytes, so a one-step report always
/// fits whole; past the bound the agent shortens the longest streams (marking them truncated).
pub const MAX_REPORT_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    pub name: String,
    pub outcome: Outcome,
    pub exit_code: i64,
    pub start_offset_ms: i64,
    pub duration_ms: i64,
    /// The beginning of the step's stdout: all of it, or [`REPORT_STDOUT_CHARS`] characters (fewer
    /// only when a many-step report had to be shortened to [`MAX_REPORT_BYTES`]).
    pub stdout: String,
    /// The beginning of stderr, up to [`REPORT_STDERR_CHARS`] characters.
    pub stderr: String,
    /// True when `stdout` is not the whole stream (older agents never set it: they sent it whole).
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdout_truncated: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub stderr_truncated: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultAck {
    /// False when the server already had a final result (a retry after a lost response).
    pub applied: bool,
}

/// A piece of a step's output stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputShipment {
    pub command_id: String,
    /// The step's name, as in its [`StepSpec`].
    pub step: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// Where `data` starts in the stream, in bytes.
    pub offset: u64,
    /// The bytes, base64 (at most [`MAX_OUTPUT_CHUNK_BYTES`] decoded). Empty asks only how much
    /// the server holds.
    pub data: String,
}

/// The answer to an [`OutputShipment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputAck {
    /// Bytes of the stream the server holds: the offset of the next shipment.
    pub committed: u64,
}

/// The body of a goodbye: nothing yet (the signature says who is leaving).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoodbyeRequest {}

/// The answer to a goodbye.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoodbyeAck {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let t = TokenResponse {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "s3cr3t".into(),
            session_token: "t0k3n".into(),
            expires_in_secs: 3600,
        };
        let text = format!("{t:?}");
        assert!(
            text.contains("ASIAEXAMPLE") && !text.contains("s3cr3t") && !text.contains("t0k3n")
        );
        let r = RegisterRequest {
            activation_id: "a".into(),
            activation_code: "c0d3".into(),
            public_key: "pk".into(),
            public_key_type: KEY_TYPE_ED25519.into(),
            machine: MachineInfo::default(),
        };
        assert!(!format!("{r:?}").contains("c0d3"));
        let json = serde_json::to_value(&t).expect("json");
        assert_eq!(json["expiresInSecs"], 3600);
        assert_eq!(json["sessionToken"], "t0k3n");
    }

    #[test]
    fn messages_round_trip() {
        let m = AgentMessage::Run {
            command_id: "c".into(),
            document_name: "AWS-RunShellScript".into(),
            steps: vec![StepSpec {
                name: "aws:runShellScript".into(),
                action: "aws:runShellScript".into(),
                commands: vec!["echo hi".into()],
                working_directory: String::new(),
                timeout_seconds: 3600,
            }],
            env: vec![("SSM_COMMAND_ID".into(), "c".into())],
        };
        let json = serde_json::to_string(&m).expect("serialize");
        assert!(json.contains("\"type\":\"run\""), "{json}");
        assert_eq!(
            serde_json::from_str::<AgentMessage>(&json).expect("parse"),
            m
        );
        let c: AgentMessage =
            serde_json::from_str(r#"{"type":"cancel","commandId":"x"}"#).expect("parse");
        assert_eq!(
            c,
            AgentMessage::Cancel {
                command_id: "x".into()
            }
        );
    }

    #[test]
    fn truncation_flags_and_dropped_commands_are_optional() {
        // An older agent's step (no flags) reads as whole streams, and a whole stream is sent
        // without them, so old and new agents and servers understand each other.
        let old = r#"{"name":"s","outcome":"Success","exitCode":0,"startOffsetMs":0,
            "durationMs":1,"stdout":"out","stderr":""}"#;
        let step: StepReport = serde_json::from_str(old).expect("parse");
        assert!(!step.stdout_truncated && !step.stderr_truncated);
        let json = serde_json::to_string(&step).expect("serialize");
        assert!(!json.contains("Truncated"), "{json}");
        let cut = StepReport {
            stdout_truncated: true,
            ..step
        };
        let json = serde_json::to_string(&cut).expect("serialize");
        assert!(json.contains(r#""stdoutTruncated":true"#), "{json}");
        assert!(!json.contains("stderrTruncated"), "{json}");

        let poll: PollRequest =
            serde_json::from_str(r#"{"sessionId":"s","knownCommands":[],"waitMs":1}"#)
                .expect("parse");
        assert!(poll.dropped_commands.is_empty());
        let json = serde_json::to_string(&poll).expect("serialize");
        assert!(!json.contains("droppedCommands"), "{json}");
    }
}
