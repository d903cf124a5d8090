//! Commands and invocations as the domain sees them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::document::Plan;
use crate::ids::{CommandId, InstanceId};
use crate::lifecycle::Effects;
use crate::status::{aggregate, CommandAggregate, InvocationState, StateCounts};

/// A SendCommand target criterion, echoed as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub key: String,
    pub values: Vec<String>,
}

/// Notification settings (stored and echoed; SNS is not contacted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub arn: String,
    pub events: Vec<String>,
    pub kind: String,
}

/// CloudWatch output settings (stored and echoed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudWatchOutput {
    pub log_group_name: String,
    pub enabled: bool,
}

/// The request members a command echoes back but fleetrun does not act on (yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandEcho {
    pub parameters: BTreeMap<String, Vec<String>>,
    /// `InstanceIds` as sent (empty when Targets were used).
    pub instance_ids: Vec<String>,
    pub targets: Vec<Target>,
    pub output_s3_region: String,
    pub output_s3_bucket_name: String,
    pub output_s3_key_prefix: String,
    pub service_role: String,
    pub notification: Notification,
    pub cloudwatch: CloudWatchOutput,
    /// AlarmConfiguration exactly as sent, if any.
    pub alarm_configuration: Option<serde_json::Value>,
}

/// A command about to be stored, with every node it resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCommand {
    pub id: CommandId,
    pub requested_at: Millis,
    pub expires_at: Millis,
    pub document_name: String,
    pub document_version: String,
    pub comment: String,
    pub timeout_seconds: u32,
    pub max_concurrency: String,
    pub max_errors: String,
    /// MaxErrors resolved against the target count.
    pub error_budget: u32,
    pub echo: CommandEcho,
    pub plan: Plan,
    pub targets: Vec<InstanceId>,
    /// The API layer's encoding of what never changes about the command once sent, made once so
    /// that a listing need not decode and re-encode it. Opaque here and in the store.
    pub rendered: Option<String>,
    /// Targets the caller may not run this command on (resolved through `Targets`): their
    /// invocations end `AccessDenied` when the command is stored, as AWS reports them.
    pub access_denied: Vec<InstanceId>,
}

impl NewCommand {
    /// The alarm that stops it, if any.
    pub fn alarm_watch(&self) -> Option<crate::alarms::AlarmWatch> {
        crate::alarms::AlarmWatch::of(self.echo.alarm_configuration.as_ref())
    }

    /// The bucket its output is uploaded to, if any.
    pub fn s3_bucket(&self) -> Option<String> {
        let bucket = &self.echo.output_s3_bucket_name;
        (!bucket.is_empty()).then(|| bucket.clone())
    }

    /// The log group its output goes to, when CloudWatch output is enabled.
    pub fn log_group(&self) -> Option<String> {
        crate::live_output::log_group(&self.echo.cloudwatch, &self.document_name)
    }

    /// The stored command this becomes, once the store has given it `seq` and its counters.
    pub fn into_command(self, seq: i64, counts: StateCounts, cancel_requested: bool) -> Command {
        Command {
            seq,
            id: self.id,
            requested_at: self.requested_at,
            expires_at: self.expires_at,
            document_name: self.document_name,
            document_version: self.document_version,
            comment: self.comment,
            timeout_seconds: self.timeout_seconds,
            max_concurrency: self.max_concurrency,
            max_errors: self.max_errors,
            error_budget: self.error_budget,
            echo: self.echo,
            plan: self.plan,
            counts,
            cancel_requested,
            triggered_alarms: Vec::new(),
        }
    }
}

/// A stored command with its live counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Insertion order; with `requested_at` it is the paging key.
    pub seq: i64,
    pub id: CommandId,
    pub requested_at: Millis,
    pub expires_at: Millis,
    pub document_name: String,
    pub document_version: String,
    pub comment: String,
    pub timeout_seconds: u32,
    pub max_concurrency: String,
    pub max_errors: String,
    pub error_budget: u32,
    pub echo: CommandEcho,
    pub plan: Plan,
    pub counts: StateCounts,
    pub cancel_requested: bool,
    /// The alarm that stopped it (`TriggeredAlarms`), once one did.
    pub triggered_alarms: Vec<crate::alarms::TriggeredAlarm>,
}

impl Command {
    pub fn aggregate(&self) -> CommandAggregate {
        aggregate(&self.counts, self.error_budget, self.cancel_requested)
    }
}

/// One command of a ListCommands page: its paging key, its live counters, and the rest either
/// as the API layer rendered it at insert or, for a command stored without a rendering, whole.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedCommand {
    pub seq: i64,
    pub id: CommandId,
    pub requested_at: Millis,
    pub error_budget: u32,
    pub counts: StateCounts,
    pub cancel_requested: bool,
    pub body: ListedBody,
}

/// See [`ListedCommand`].
#[derive(Debug, Clone, PartialEq)]
pub enum ListedBody {
    /// [`NewCommand::rendered`], as stored.
    Rendered(String),
    /// The whole command (it was stored without a rendering).
    Whole(Box<Command>),
}

impl ListedCommand {
    pub fn aggregate(&self) -> CommandAggregate {
        aggregate(&self.counts, self.error_budget, self.cancel_requested)
    }
}

/// What one step of an invocation produced, as the agent reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    pub name: String,
    /// Plugin status: Success, Failed, TimedOut or Cancelled (or Pending for a step never started).
    pub status: String,
    pub exit_code: i64,
    pub started_at: Millis,
    pub ended_at: Millis,
    /// The beginning of the step's stdout (the whole stream stays on the node when it is longer).
    pub stdout: String,
    pub stderr: String,
    /// True when `stdout` is only the beginning of the stream: every view then ends in AWS's
    /// truncation marker (`output::stdout_view`). Absent in rows stored before it existed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdout_truncated: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub stderr_truncated: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One command on one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub command_id: CommandId,
    pub command_seq: i64,
    pub instance_id: InstanceId,
    pub requested_at: Millis,
    pub state: InvocationState,
    pub response_code: i64,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    pub steps: Vec<StepResult>,
}

/// An invocation handed to an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub command_id: CommandId,
    pub document_name: String,
    pub plan: Plan,
    /// When the command was requested (the server measures dispatch latency from it).
    pub requested_at: Millis,
}

/// What a poll hands the agent: new work and cancellations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claim {
    pub runs: Vec<Delivery>,
    /// Invocations handed out on this same agent session that the agent does not list: the
    /// answer carrying them was lost, or the agent ignores them. Sent again, but never at once
    /// on their own, so an agent that ignores them cannot make polls spin (server `agent_api`).
    pub resent: Vec<Delivery>,
    pub cancels: Vec<CommandId>,
    /// What the poll changed; its wake-ups are other nodes that received work because this poll
    /// moved a rollout forward (never the polling node: it is being answered).
    pub effects: Effects,
}

/// A stored command and the nodes its first release went to.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub command: Command,
    /// Wakes the nodes with work released to them now (the start of the ramp, not every target).
    pub effects: Effects,
}

/// The effect of an agent's report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Finished {
    /// False when the invocation was already final (a duplicate or late report).
    pub applied: bool,
    /// The transitions, and the nodes with work released to them because this invocation finished.
    pub effects: Effects,
}

/// The agent's final report for one invocation. Times are durations; the server stamps the clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub command_id: CommandId,
    pub outcome: crate::status::ExecutionOutcome,
    pub response_code: i64,
    pub elapsed_ms: i64,
    /// How long the report waited on the node before it was sent (its outbox, while the server was
    /// unreachable), measured by the node's clock as a difference, so clock skew cancels out.
    pub held_ms: i64,
    pub steps: Vec<ReportedStep>,
}

impl Report {
    /// When the invocation ended, by the server's clock: the report's arrival minus the time it
    /// was held on the node, never before the delivery (`delivered_at`) nor after the arrival —
    /// a node whose clock jumped cannot date a result outside the window it could have run in.
    pub fn ended_at(&self, received_at: Millis, delivered_at: Option<Millis>) -> Millis {
        let end = received_at.saturating_sub(self.held_ms.max(0));
        delivered_at.map_or(end, |d| end.max(d)).min(received_at)
    }
}

/// One step of a [`Report`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedStep {
    pub name: String,
    pub status: String,
    pub exit_code: i64,
    /// Offset of the step's start from the invocation's start.
    pub start_offset_ms: i64,
    pub duration_ms: i64,
    pub stdout: String,
    pub stderr: String,
    /// The agent sent only the beginning of the stream.
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ExecutionOutcome;

    fn held(ms: i64) -> Report {
        Report {
            command_id: CommandId::generate(),
            outcome: ExecutionOutcome::Success,
            response_code: 0,
            elapsed_ms: 0,
            held_ms: ms,
            steps: Vec::new(),
        }
    }

    #[test]
    fn the_end_is_the_arrival_minus_the_hold_within_the_delivery_window() {
        assert_eq!(held(0).ended_at(10_000, Some(1_000)), 10_000);
        assert_eq!(held(4_000).ended_at(10_000, Some(1_000)), 6_000);
        assert_eq!(
            held(60_000).ended_at(10_000, Some(1_000)),
            1_000,
            "not before delivery"
        );
        assert_eq!(
            held(-5).ended_at(10_000, Some(1_000)),
            10_000,
            "not after arrival"
        );
        assert_eq!(held(4_000).ended_at(10_000, None), 6_000);
        assert_eq!(
            held(4_000).ended_at(10_000, Some(20_000)),
            10_000,
            "never after arrival"
        );
    }
}
