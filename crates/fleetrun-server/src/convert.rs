//! Domain records → AWS response shapes.

use fleetrun_core::command::{Command, Invocation, NewCommand, StepResult};
use fleetrun_core::ids::InstanceId;
use fleetrun_core::output::{plugin_view, stderr_view, stdout_view, Stream};
use fleetrun_core::s3_output::OutputLocation;
use fleetrun_core::status::{CommandAggregate, InvocationState, InvocationStatus, StateCounts};
use fleetrun_core::step_skips;
use fleetrun_wire::listing::{encode_fixed_members, CommandProgress};
use fleetrun_wire::ssm::{self, epoch};

use crate::s3_output;

pub fn notification(c: &Command) -> ssm::NotificationConfig {
    let n = &c.echo.notification;
    ssm::NotificationConfig {
        notification_arn: Some(n.arn.clone()),
        notification_events: Some(n.events.clone()),
        notification_type: Some(n.kind.clone()),
    }
}

pub fn cloudwatch(c: &Command) -> ssm::CloudWatchOutputConfig {
    let cw = &c.echo.cloudwatch;
    ssm::CloudWatchOutputConfig {
        cloud_watch_log_group_name: Some(cw.log_group_name.clone()),
        cloud_watch_output_enabled: Some(cw.enabled),
    }
}

/// Moves the command's fields into the response shape: a ListCommands page carries up to 50
/// commands of up to 50 InstanceIds each, and cloning them showed in its profile.
pub fn command(c: Command) -> ssm::Command {
    let agg = c.aggregate();
    let notification_config = notification(&c);
    let cloud_watch_output_config = cloudwatch(&c);
    let echo = c.echo;
    ssm::Command {
        command_id: c.id.to_string(),
        document_name: c.document_name,
        document_version: c.document_version,
        comment: c.comment,
        expires_after: epoch(c.expires_at),
        parameters: echo.parameters,
        instance_ids: echo.instance_ids,
        targets: echo
            .targets
            .into_iter()
            .map(|t| ssm::Target {
                key: Some(t.key),
                values: Some(t.values),
            })
            .collect(),
        requested_date_time: epoch(c.requested_at),
        status: agg.state.status().as_str().into(),
        status_details: agg.state.as_str().into(),
        output_s3_region: echo.output_s3_region,
        output_s3_bucket_name: echo.output_s3_bucket_name,
        output_s3_key_prefix: echo.output_s3_key_prefix,
        max_concurrency: c.max_concurrency,
        max_errors: c.max_errors,
        target_count: agg.target_count,
        completed_count: agg.completed_count,
        error_count: agg.error_count,
        delivery_timed_out_count: agg.delivery_timed_out_count,
        service_role: echo.service_role,
        notification_config,
        cloud_watch_output_config,
        timeout_seconds: c.timeout_seconds,
        triggered_alarms: echo.alarm_configuration.as_ref().map(|_| {
            c.triggered_alarms
                .into_iter()
                .map(|t| ssm::AlarmStateInformation {
                    name: t.name,
                    state: t.state,
                })
                .collect()
        }),
        alarm_configuration: echo.alarm_configuration,
        interactive: false,
    }
}

/// The members of a listed command that move while it runs.
pub fn progress(agg: &CommandAggregate) -> CommandProgress<'static> {
    CommandProgress {
        status: agg.state.status().as_str(),
        status_details: agg.state.as_str(),
        target_count: agg.target_count,
        completed_count: agg.completed_count,
        error_count: agg.error_count,
        delivery_timed_out_count: agg.delivery_timed_out_count,
    }
}

/// [`NewCommand::rendered`]: the members of its `Command` shape that never change once it is sent.
pub fn rendering(new: &NewCommand) -> Result<String, serde_json::Error> {
    let sent = new.clone().into_command(0, StateCounts::default(), false);
    encode_fixed_members(&command(sent))
}

/// A stored command's rendering again, for a command whose fixed members changed (the
/// TriggeredAlarms its alarm set).
pub fn rerendering(c: &Command) -> Result<String, serde_json::Error> {
    encode_fixed_members(&command(c.clone()))
}

/// A plugin's coarse status string: the plugin enum has no Delayed or Cancelling.
fn plugin_status(s: InvocationStatus) -> &'static str {
    match s {
        InvocationStatus::Delayed => "Pending",
        InvocationStatus::Cancelling => "InProgress",
        other => other.as_str(),
    }
}

/// The view of one step: its reported result, or the invocation's state when it never ran.
pub struct StepView<'a> {
    pub name: String,
    /// Its plugin (`aws:runShellScript`).
    pub action: String,
    pub result: Option<&'a StepResult>,
    pub state: InvocationState,
}

impl StepView<'_> {
    pub fn status(&self) -> String {
        match self.result {
            // A skipped step (precondition, exit 168/169) counts as a success (core::step_skips).
            Some(r) if r.status == step_skips::SKIPPED => "Success".into(),
            Some(r) => r.status.clone(),
            None => plugin_status(self.state.status()).into(),
        }
    }

    pub fn status_details(&self) -> String {
        match self.result {
            Some(r) if r.status == "TimedOut" => "ExecutionTimedOut".into(),
            Some(r) => r.status.clone(),
            None => self.state.as_str().into(),
        }
    }

    pub fn response_code(&self) -> i64 {
        self.result.map_or(-1, |r| r.exit_code)
    }
}

/// Every step of the command's plan, matched with what the node reported.
pub fn steps<'a>(c: &Command, inv: &'a Invocation) -> Vec<StepView<'a>> {
    c.plan
        .steps
        .iter()
        .map(|step| StepView {
            name: step.name.clone(),
            action: step.action.clone(),
            result: inv.steps.iter().find(|r| r.name == step.name),
            state: inv.state,
        })
        .collect()
}

/// Where a step's output is in S3: its two URLs (under `s3_base`, `S3Settings::url_base`) once
/// it has a result and the command names a bucket, else empty (ARCHITECTURE.md, "S3 output").
pub fn output_urls(
    s3_base: &str,
    c: &Command,
    node: &InstanceId,
    view: &StepView<'_>,
) -> (String, String) {
    match view.result {
        Some(_) => {
            s3_output::step_urls(s3_base, c, node, &view.action, &view.name).unwrap_or_default()
        }
        None => Default::default(),
    }
}

fn plugin(
    s3_base: &str,
    c: &Command,
    node: &InstanceId,
    view: &StepView<'_>,
) -> ssm::CommandPlugin {
    let (standard_output_url, standard_error_url) = output_urls(s3_base, c, node, view);
    let has_bucket = !c.echo.output_s3_bucket_name.is_empty();
    ssm::CommandPlugin {
        name: view.name.clone(),
        status: view.status(),
        status_details: view.status_details(),
        response_code: view.response_code(),
        response_start_date_time: view.result.map(|r| epoch(r.started_at)),
        response_finish_date_time: view.result.map(|r| epoch(r.ended_at)),
        output: view
            .result
            .map(|r| plugin_view(stdout_of(r), stderr_of(r)))
            .unwrap_or_default(),
        standard_output_url,
        standard_error_url,
        output_s3_region: c.echo.output_s3_region.clone(),
        output_s3_bucket_name: c.echo.output_s3_bucket_name.clone(),
        // The agent reports the prefix down to the plugin's directory, and only with a bucket.
        output_s3_key_prefix: if has_bucket {
            OutputLocation::of(&c.echo.output_s3_bucket_name, &c.echo.output_s3_key_prefix)
                .map(|l| l.plugin_prefix(&c.id, node, &view.action))
                .unwrap_or_default()
        } else {
            c.echo.output_s3_key_prefix.clone()
        },
    }
}

pub fn invocation(
    s3_base: &str,
    c: &Command,
    inv: &Invocation,
    details: bool,
) -> ssm::CommandInvocation {
    let views = steps(c, inv);
    // Populated "if there is just one plugin defined for the command".
    let (standard_output_url, standard_error_url) = match views.as_slice() {
        [only] => output_urls(s3_base, c, &inv.instance_id, only),
        _ => Default::default(),
    };
    ssm::CommandInvocation {
        command_id: inv.command_id.to_string(),
        instance_id: inv.instance_id.to_string(),
        instance_name: String::new(),
        comment: c.comment.clone(),
        document_name: c.document_name.clone(),
        document_version: c.document_version.clone(),
        requested_date_time: epoch(inv.requested_at),
        status: inv.state.status().as_str().into(),
        status_details: inv.state.as_str().into(),
        trace_output: String::new(),
        standard_output_url,
        standard_error_url,
        command_plugins: if details {
            views
                .iter()
                .map(|v| plugin(s3_base, c, &inv.instance_id, v))
                .collect()
        } else {
            vec![]
        },
        service_role: c.echo.service_role.clone(),
        notification_config: notification(c),
        cloud_watch_output_config: cloudwatch(c),
    }
}

/// The excerpt fields of GetCommandInvocation for one step.
pub fn excerpts(view: &StepView<'_>) -> (String, String) {
    match view.result {
        Some(r) => (stdout_view(stdout_of(r)), stderr_view(stderr_of(r))),
        None => (String::new(), String::new()),
    }
}

/// A step's stored stdout: the beginning the agent reported, and whether it is all of it.
fn stdout_of(r: &StepResult) -> Stream<'_> {
    Stream {
        text: &r.stdout,
        truncated: r.stdout_truncated,
    }
}

fn stderr_of(r: &StepResult) -> Stream<'_> {
    Stream {
        text: &r.stderr,
        truncated: r.stderr_truncated,
    }
}
