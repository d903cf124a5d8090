//! The agent endpoints (protocol v2, see `fleetrun_wire::agent`): registration, session
//! credentials, the long poll that is also the heartbeat, result reports, and the goodbye of an
//! agent that stops cleanly (its node is `ConnectionLost` at once), and live output. Who is calling is
//! decided by `node_auth` before a handler reads the body; the authenticated node is the only
//! identity used, so a node can fetch, acknowledge and report only its own invocations. Paths
//! under `/agent/v1/` answer 426 `UnsupportedAgentProtocolException`.
//!
//! Steps a node skips (a false `precondition`, a plugin its platform lacks) are left out of the Run
//! message and added back to the agent's report as Skipped, with the steps a 168/169 exit skipped
//! (`fleetrun_core::step_skips`): the agent protocol does not change.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::{any, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use fleetrun_core::clock::now_millis;
use fleetrun_core::command::{Delivery, Report, ReportedStep};
use fleetrun_core::document_content::plan_supports_platform;
use fleetrun_core::ids::{ActivationId, CommandId, InstanceId};
use fleetrun_core::live_output::{NewChunk, OutputStream, StreamKey};
use fleetrun_core::node::{NodeInfo, NodeRegistration};
use fleetrun_core::status::ExecutionOutcome;
use fleetrun_core::step_skips;
use fleetrun_wire::agent::{
    AgentMessage, GoodbyeAck, GoodbyeRequest, MachineInfo, Outcome, OutputAck, OutputShipment,
    PollRequest, PollResponse, RegisterRequest, RegisterResponse, ResultAck, ResultReport,
    StepSpec, TokenRequest, TokenResponse, GOODBYE_PATH, KEY_TYPE_ED25519, MAX_OUTPUT_CHUNK_BYTES,
    OUTPUT_PATH, POLL_PATH, REGISTER_PATH, RESULT_PATH, TOKEN_PATH,
};

use crate::error::{ApiError, ApiResult};
use crate::node_auth::{self, AgentRequest};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(REGISTER_PATH, post(register))
        .route(TOKEN_PATH, post(token))
        .route(POLL_PATH, post(poll))
        .route(RESULT_PATH, post(result))
        .route(GOODBYE_PATH, post(goodbye))
        .route(OUTPUT_PATH, post(output))
        .route("/agent/v1/{*rest}", any(legacy))
}

/// Every path of the retired protocol v1: the old agent is told to upgrade and register again.
async fn legacy() -> ApiError {
    ApiError::AgentProtocolMismatch
}

/// Decodes a JSON body; a body that does not fit is a `SerializationException`, like the SSM API.
fn decode<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::Serialization(format!("Could not parse the request body: {e}")))
}

fn node_info(m: MachineInfo) -> NodeInfo {
    NodeInfo {
        computer_name: m.computer_name,
        ip_address: m.ip_address,
        platform_type: m.platform_type,
        platform_name: m.platform_name,
        platform_version: m.platform_version,
        agent_version: m.agent_version,
    }
}

/// An Ed25519 public key as registration must carry it: standard base64 of 32 bytes that decode
/// to a curve point.
fn check_public_key(req: &RegisterRequest) -> ApiResult<()> {
    if req.public_key_type != KEY_TYPE_ED25519 {
        return Err(ApiError::InvalidPublicKey(format!(
            "PublicKeyType '{}' is not supported; this server accepts {KEY_TYPE_ED25519}.",
            req.public_key_type
        )));
    }
    let bytes: Option<[u8; 32]> = STANDARD
        .decode(req.public_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok());
    match bytes.map(|b| ed25519_dalek::VerifyingKey::from_bytes(&b)) {
        Some(Ok(_)) => Ok(()),
        _ => Err(ApiError::InvalidPublicKey(
            "PublicKey is not the base64 of a 32-byte Ed25519 public key.".into(),
        )),
    }
}

async fn register(State(st): State<AppState>, body: Bytes) -> ApiResult<Json<RegisterResponse>> {
    let req: RegisterRequest = decode(&body)?;
    let activation_id = ActivationId::parse(&req.activation_id).ok_or_else(|| {
        ApiError::InvalidActivationId(format!(
            "Activation id '{}' is not valid.",
            req.activation_id
        ))
    })?;
    check_public_key(&req)?;
    st.node_auth.registration_allowed(&activation_id)?;
    let registered = st
        .store
        .register_node(
            NodeRegistration {
                activation_id: activation_id.clone(),
                activation_code: req.activation_code,
                instance_id: InstanceId::generate(),
                public_key: req.public_key.trim().to_owned(),
                info: node_info(req.machine),
            },
            now_millis(),
        )
        .await
        .map_err(ApiError::from);
    let node = match registered {
        Ok(node) => node,
        Err(e) => {
            match &e {
                ApiError::InvalidActivationId(_) => st.node_auth.registration_failed(None),
                ApiError::InvalidActivation(_) => {
                    st.node_auth.registration_failed(Some(&activation_id));
                }
                _ => {}
            }
            return Err(e);
        }
    };
    tracing::info!(instance_id = %node.instance_id, computer = %node.info.computer_name, "node registered");
    Ok(Json(RegisterResponse {
        instance_id: node.instance_id.to_string(),
        region: st.config.region.clone(),
    }))
}

/// Session credentials for a node that signed with its registered key.
async fn token(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<TokenResponse>> {
    let request = AgentRequest {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    let node = node_auth::authenticate_node_key(&st, &request).await?;
    let _: TokenRequest = decode(&body)?;
    let creds = st.node_auth.issue(&node.instance_id);
    tracing::debug!(instance_id = %node.instance_id, access_key_id = %creds.access_key_id, "node session credentials issued");
    Ok(Json(creds))
}

fn run_message(st: &AppState, node: &InstanceId, d: Delivery, platform: &str) -> AgentMessage {
    AgentMessage::Run {
        command_id: d.command_id.to_string(),
        document_name: d.document_name,
        steps: step_skips::for_platform(&d.plan, platform)
            .steps
            .into_iter()
            .map(|s| StepSpec {
                name: s.name,
                action: s.action,
                commands: s.commands,
                working_directory: s.working_directory,
                timeout_seconds: s.timeout_seconds,
            })
            .collect(),
        env: vec![
            ("AWS_SSM_INSTANCE_ID".into(), node.to_string()),
            ("AWS_SSM_REGION_NAME".into(), st.config.region.clone()),
            ("SSM_COMMAND_ID".into(), d.command_id.to_string()),
        ],
    }
}

async fn poll(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<PollResponse>> {
    let request = AgentRequest {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    let authenticated = node_auth::authenticate_session(&st, &request).await?;
    let node = authenticated.instance_id;
    let req: PollRequest = decode(&body)?;
    st.metrics.agent_polled(node.as_str());
    let _held = st.metrics.poll_held();
    // The platform the agent reports on this poll, else the one it reported before.
    let platform = req
        .machine
        .as_ref()
        .map_or(authenticated.info.platform_type, |m| {
            m.platform_type.clone()
        });
    if let Some(machine) = req.machine.clone() {
        st.store
            .touch_node(&node, now_millis(), Some(node_info(machine)))
            .await?;
    }
    let known: Vec<CommandId> = req
        .known_commands
        .iter()
        .filter_map(|c| CommandId::parse(c))
        .collect();
    end_dropped(&st, &node, &req.dropped_commands).await?;
    let wait = Duration::from_millis(req.wait_ms).min(st.config.max_poll_wait);
    let start = tokio::time::Instant::now();
    let deadline = start + wait;
    let resend_deadline = start + wait.max(RESEND_MIN_HOLD);
    let wake = st.notifier.handle(node.as_str());
    let mut shutting_down = st.shutting_down.clone();
    let mut woken = false;
    loop {
        let now = now_millis();
        let claim = st.store.claim(&node, &req.session_id, &known, now).await?;
        st.apply(&claim.effects);
        // Each run is an invocation this claim moved to InProgress: delivered to its agent now.
        for d in &claim.runs {
            st.metrics.delivered(d.requested_at, now);
        }
        let mut messages: Vec<AgentMessage> = claim
            .cancels
            .into_iter()
            .map(|c| AgentMessage::Cancel {
                command_id: c.to_string(),
            })
            .collect();
        for d in claim.runs {
            if !plan_supports_platform(&d.plan, &platform) {
                reject_platform(&st, &node, &d.command_id, &platform).await?;
                continue;
            }
            tracing::debug!(instance_id = %node, command_id = %d.command_id, "delivered");
            messages.push(run_message(&st, &node, d, &platform));
        }
        // Work handed out on this session that the agent does not list goes out again, but only
        // with other messages or when the poll ends (at least RESEND_MIN_HOLD): an agent that
        // ignores it cannot turn the long poll into a busy loop.
        let mut resent: Vec<AgentMessage> = claim
            .resent
            .into_iter()
            .map(|d| {
                tracing::debug!(instance_id = %node, command_id = %d.command_id, "delivered again");
                run_message(&st, &node, d, &platform)
            })
            .collect();
        if !messages.is_empty() {
            messages.append(&mut resent);
            return Ok(Json(PollResponse { messages }));
        }
        // A wake with nothing to deliver may be DeregisterManagedInstance's: then the poll answers
        // at once that the node is gone, instead of at the end of the wait. (Looked up only here,
        // off the path of a wake that delivers work.)
        if woken && st.store.node(&node).await?.is_none() {
            return Err(ApiError::NodeNotRegistered(node.to_string()));
        }
        if *shutting_down.borrow() {
            return Ok(Json(PollResponse { messages: resent }));
        }
        let until = if resent.is_empty() {
            deadline
        } else {
            resend_deadline
        };
        tokio::select! {
            _ = wake.notified() => woken = true,
            _ = tokio::time::sleep_until(until) => return Ok(Json(PollResponse { messages: resent })),
            _ = shutting_down.changed() => return Ok(Json(PollResponse { messages: resent })),
        }
    }
}

/// An agent stopping cleanly: its node is unreachable (`ConnectionLost`) from now until it polls
/// again, and the reachability pass the timekeeper runs every tick runs now, so the node's released
/// Pending work becomes `Delayed` at once, exactly as after the ping timeout. Work the node is
/// running (InProgress) is left alone: the agent may leave scripts running across a restart and
/// report them when it is back.
async fn goodbye(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<GoodbyeAck>> {
    let request = AgentRequest {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    let node = node_auth::authenticate_session(&st, &request)
        .await?
        .instance_id;
    let _: GoodbyeRequest = decode(&body)?;
    let now = now_millis();
    match st.store.sign_off_node(&node, now).await {
        Ok(()) => {}
        Err(fleetrun_core::CoreError::UnknownInstance(_)) => {
            return Err(ApiError::NodeNotRegistered(node.to_string()))
        }
        Err(e) => return Err(e.into()),
    }
    st.metrics.agent_left(node.as_str());
    crate::timekeeper::mark_unreachable(&st, now).await?;
    tracing::info!(instance_id = %node, "agent said goodbye: ConnectionLost until it polls again");
    Ok(Json(GoodbyeAck {}))
}

/// The shortest time a poll answering only with re-sent work is held, even when the agent asked
/// for a shorter wait.
const RESEND_MIN_HOLD: Duration = Duration::from_secs(1);

/// Ends the invocations the agent says it will never report (`PollRequest::dropped_commands`:
/// the server refused their report and the agent's fallback too) as Failed, ResponseCode -1,
/// so they are not handed out again. Ids this node has no invocation for are ignored.
async fn end_dropped(st: &AppState, node: &InstanceId, dropped: &[String]) -> ApiResult<()> {
    let limit = fleetrun_wire::agent::MAX_DROPPED_PER_POLL;
    for command_id in dropped
        .iter()
        .take(limit)
        .filter_map(|c| CommandId::parse(c))
    {
        let report = Report {
            command_id: command_id.clone(),
            outcome: ExecutionOutcome::Failed,
            response_code: -1,
            elapsed_ms: 0,
            held_ms: 0,
            steps: Vec::new(),
        };
        match st.store.finish(node, report, now_millis()).await {
            Ok(finished) => {
                st.apply(&finished.effects);
                if finished.applied {
                    tracing::warn!(instance_id = %node, %command_id,
                        "the agent dropped a result it could not report: Failed");
                }
            }
            Err(fleetrun_core::CoreError::NoSuchInvocation(..)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What the server keeps of a reported stream: at most `max_chars` characters (the widest view
/// of it, so every view stays exact), still marked truncated when it was cut here or by the
/// agent. An agent that predates the report bound may send up to the body limit whole.
fn kept(mut text: String, truncated: bool, max_chars: usize) -> (String, bool) {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => {
            text.truncate(cut);
            (text, true)
        }
        None => (text, truncated),
    }
}

/// A node reached through Targets whose platform the document lacks: the invocation ends
/// `InvalidPlatform` without reaching the agent (nodes named in InstanceIds were refused by
/// SendCommand with `UnsupportedPlatformType` instead).
async fn reject_platform(
    st: &AppState,
    node: &InstanceId,
    command_id: &CommandId,
    platform: &str,
) -> ApiResult<()> {
    let finished = st
        .store
        .finish(
            node,
            Report {
                command_id: command_id.clone(),
                outcome: ExecutionOutcome::InvalidPlatform,
                response_code: -1,
                elapsed_ms: 0,
                held_ms: 0,
                steps: Vec::new(),
            },
            now_millis(),
        )
        .await?;
    st.apply(&finished.effects);
    tracing::info!(instance_id = %node, %command_id, platform, "document does not support the node's platform: InvalidPlatform");
    Ok(())
}

fn outcome(o: Outcome) -> ExecutionOutcome {
    match o {
        Outcome::Success => ExecutionOutcome::Success,
        Outcome::Failed => ExecutionOutcome::Failed,
        Outcome::TimedOut => ExecutionOutcome::TimedOut,
        Outcome::Cancelled => ExecutionOutcome::Cancelled,
    }
}

fn plugin_status(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "Success",
        Outcome::Failed => "Failed",
        Outcome::TimedOut => "TimedOut",
        Outcome::Cancelled => "Cancelled",
    }
}

async fn result(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<ResultAck>> {
    let request = AgentRequest {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    let authenticated = node_auth::authenticate_session(&st, &request).await?;
    let node = authenticated.instance_id;
    let report: ResultReport = decode(&body)?;
    let command_id = CommandId::parse(&report.command_id).ok_or_else(|| {
        ApiError::InvalidCommandId(format!("Command id '{}' is not valid.", report.command_id))
    })?;
    let mut steps: Vec<ReportedStep> = report
        .steps
        .into_iter()
        .map(|s| {
            use fleetrun_wire::agent::{REPORT_STDERR_CHARS, REPORT_STDOUT_CHARS};
            let (stdout, stdout_truncated) =
                kept(s.stdout, s.stdout_truncated, REPORT_STDOUT_CHARS);
            let (stderr, stderr_truncated) =
                kept(s.stderr, s.stderr_truncated, REPORT_STDERR_CHARS);
            ReportedStep {
                name: s.name,
                status: plugin_status(s.outcome).into(),
                exit_code: s.exit_code,
                start_offset_ms: s.start_offset_ms.max(0),
                duration_ms: s.duration_ms.max(0),
                stdout,
                stderr,
                stdout_truncated,
                stderr_truncated,
            }
        })
        .collect();
    let mut response_code = report.response_code;
    if let Some(command) = st.store.command(&command_id).await? {
        let platform = &authenticated.info.platform_type;
        step_skips::complete_report(&command.plan, platform, &mut steps, &mut response_code);
    }
    let finished = st
        .store
        .finish(
            &node,
            Report {
                command_id: command_id.clone(),
                outcome: outcome(report.outcome),
                response_code,
                elapsed_ms: report.elapsed_ms.max(0),
                held_ms: report.held_ms.max(0),
                steps,
            },
            now_millis(),
        )
        .await?;
    st.apply(&finished.effects);
    let applied = finished.applied;
    if applied {
        // The finish may have queued an S3 upload.
        st.uploads.notify_one();
    }
    tracing::info!(instance_id = %node, command_id = %command_id, outcome = ?report.outcome, applied, "result reported");
    Ok(Json(ResultAck { applied }))
}

/// A piece of a step's output (ARCHITECTURE.md, "Live output"): kept at its offset, answered
/// with how much of the stream the store holds.
async fn output(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<OutputAck>> {
    let request = AgentRequest {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    let node = node_auth::authenticate_session(&st, &request)
        .await?
        .instance_id;
    let shipment: OutputShipment = decode(&body)?;
    let invalid = |what: &str| ApiError::Validation(format!("Output shipment: {what}."));
    let command_id = CommandId::parse(&shipment.command_id).ok_or_else(|| {
        ApiError::InvalidCommandId(format!(
            "Command id '{}' is not valid.",
            shipment.command_id
        ))
    })?;
    let stream = OutputStream::parse(&shipment.stream)
        .ok_or_else(|| invalid("stream must be stdout or stderr"))?;
    if shipment.step.is_empty() || shipment.step.len() > MAX_STEP_NAME_BYTES {
        return Err(invalid("step must be a step name"));
    }
    let data = STANDARD
        .decode(shipment.data.as_bytes())
        .map_err(|_| invalid("data must be base64"))?;
    if data.len() > MAX_OUTPUT_CHUNK_BYTES {
        return Err(invalid("data is longer than one shipment may be"));
    }
    let ack = st
        .store
        .append_output(NewChunk {
            key: StreamKey {
                command_id,
                instance_id: node,
                step: shipment.step,
                stream,
            },
            offset: shipment.offset,
            data,
            at: now_millis(),
        })
        .await?;
    Ok(Json(OutputAck {
        committed: ack.committed,
    }))
}

/// Longest step name a shipment may name (a document's step names are far shorter).
const MAX_STEP_NAME_BYTES: usize = 256;
