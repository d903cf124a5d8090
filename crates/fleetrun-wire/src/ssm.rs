//! AWS SSM shapes for the operations fleetrun serves, named exactly as the botocore model names them.
//!
//! Requests: every member optional (presence is checked by the server, which answers AWS errors) and
//! unknown members ignored. Responses: every modeled member AWS fills, including empty strings for unset
//! strings, as observed on AWS. Timestamps are epoch seconds as JSON numbers ([`epoch`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Epoch milliseconds → epoch seconds (JSON number with millisecond fraction).
pub fn epoch(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

// ---------------------------------------------------------------- shared structures

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NotificationConfig {
    #[serde(default)]
    pub notification_arn: Option<String>,
    #[serde(default)]
    pub notification_events: Option<Vec<String>>,
    #[serde(default)]
    pub notification_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CloudWatchOutputConfig {
    #[serde(default)]
    pub cloud_watch_log_group_name: Option<String>,
    #[serde(default)]
    pub cloud_watch_output_enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// `CommandFilter`: lowercase member names in the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandFilter {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

// ---------------------------------------------------------------- SendCommand

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendCommandRequest {
    pub instance_ids: Option<Vec<String>>,
    pub targets: Option<Vec<Target>>,
    pub document_name: Option<String>,
    pub document_version: Option<String>,
    pub document_hash: Option<String>,
    pub document_hash_type: Option<String>,
    pub timeout_seconds: Option<i64>,
    pub comment: Option<String>,
    pub parameters: Option<BTreeMap<String, Vec<String>>>,
    pub output_s3_region: Option<String>,
    pub output_s3_bucket_name: Option<String>,
    pub output_s3_key_prefix: Option<String>,
    pub max_concurrency: Option<String>,
    pub max_errors: Option<String>,
    pub service_role_arn: Option<String>,
    pub notification_config: Option<NotificationConfig>,
    pub cloud_watch_output_config: Option<CloudWatchOutputConfig>,
    pub alarm_configuration: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendCommandResult {
    pub command: Command,
}

/// The `Command` structure.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Command {
    pub command_id: String,
    pub document_name: String,
    pub document_version: String,
    pub comment: String,
    pub expires_after: f64,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub instance_ids: Vec<String>,
    pub targets: Vec<Target>,
    pub requested_date_time: f64,
    pub status: String,
    pub status_details: String,
    pub output_s3_region: String,
    pub output_s3_bucket_name: String,
    pub output_s3_key_prefix: String,
    pub max_concurrency: String,
    pub max_errors: String,
    pub target_count: u32,
    pub completed_count: u32,
    pub error_count: u32,
    pub delivery_timed_out_count: u32,
    pub service_role: String,
    pub notification_config: NotificationConfig,
    pub cloud_watch_output_config: CloudWatchOutputConfig,
    pub timeout_seconds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm_configuration: Option<serde_json::Value>,
    /// With an AlarmConfiguration: `[]`, or the alarm that stopped the command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triggered_alarms: Option<Vec<AlarmStateInformation>>,
    /// Unmodeled but present in real ListCommands output.
    pub interactive: bool,
}

/// `TriggeredAlarms[]`: `State` is `ALARM` or `UNKNOWN`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AlarmStateInformation {
    pub name: String,
    pub state: String,
}

// ---------------------------------------------------------------- ListCommands / ListCommandInvocations

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListCommandsRequest {
    pub command_id: Option<String>,
    pub instance_id: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub filters: Option<Vec<CommandFilter>>,
    /// ListCommandInvocations only.
    pub details: Option<bool>,
}

/// ListCommands' answer. The server writes it spliced from pre-encoded parts ([`crate::listing`]);
/// this shape is what the splice is tested against.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListCommandsResult {
    pub commands: Vec<Command>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListCommandInvocationsResult {
    pub command_invocations: Vec<CommandInvocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CommandInvocation {
    pub command_id: String,
    pub instance_id: String,
    pub instance_name: String,
    pub comment: String,
    pub document_name: String,
    pub document_version: String,
    pub requested_date_time: f64,
    pub status: String,
    pub status_details: String,
    pub trace_output: String,
    pub standard_output_url: String,
    pub standard_error_url: String,
    pub command_plugins: Vec<CommandPlugin>,
    pub service_role: String,
    pub notification_config: NotificationConfig,
    pub cloud_watch_output_config: CloudWatchOutputConfig,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CommandPlugin {
    pub name: String,
    pub status: String,
    pub status_details: String,
    pub response_code: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_start_date_time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_finish_date_time: Option<f64>,
    pub output: String,
    pub standard_output_url: String,
    pub standard_error_url: String,
    pub output_s3_region: String,
    pub output_s3_bucket_name: String,
    pub output_s3_key_prefix: String,
}

// ---------------------------------------------------------------- GetCommandInvocation

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetCommandInvocationRequest {
    pub command_id: Option<String>,
    pub instance_id: Option<String>,
    pub plugin_name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetCommandInvocationResult {
    pub command_id: String,
    pub instance_id: String,
    pub comment: String,
    pub document_name: String,
    pub document_version: String,
    pub plugin_name: String,
    pub response_code: i64,
    pub execution_start_date_time: String,
    pub execution_elapsed_time: String,
    pub execution_end_date_time: String,
    pub status: String,
    pub status_details: String,
    pub standard_output_content: String,
    pub standard_output_url: String,
    pub standard_error_content: String,
    pub standard_error_url: String,
    pub cloud_watch_output_config: CloudWatchOutputConfig,
}

// ---------------------------------------------------------------- CancelCommand

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CancelCommandRequest {
    pub command_id: Option<String>,
    pub instance_ids: Option<Vec<String>>,
}

// ---------------------------------------------------------------- Activations

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateActivationRequest {
    pub description: Option<String>,
    pub default_instance_name: Option<String>,
    pub iam_role: Option<String>,
    pub registration_limit: Option<i64>,
    pub expiration_date: Option<f64>,
    pub tags: Option<Vec<Tag>>,
    pub registration_metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateActivationResult {
    pub activation_id: String,
    pub activation_code: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeActivationsFilter {
    pub filter_key: Option<String>,
    pub filter_values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeActivationsRequest {
    pub filters: Option<Vec<DescribeActivationsFilter>>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Activation {
    pub activation_id: String,
    pub description: String,
    pub default_instance_name: String,
    pub iam_role: String,
    pub registration_limit: u32,
    pub registrations_count: u32,
    pub expiration_date: f64,
    pub expired: bool,
    pub created_date: f64,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeActivationsResult {
    pub activation_list: Vec<Activation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteActivationRequest {
    pub activation_id: Option<String>,
}

// ---------------------------------------------------------------- DescribeInstanceInformation

/// Legacy filter: lowercase `key` / `valueSet`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InstanceInformationFilter {
    pub key: Option<String>,
    #[serde(rename = "valueSet")]
    pub value_set: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceInformationStringFilter {
    pub key: Option<String>,
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstanceInformationRequest {
    pub instance_information_filter_list: Option<Vec<InstanceInformationFilter>>,
    pub filters: Option<Vec<InstanceInformationStringFilter>>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceInformation {
    pub instance_id: String,
    pub ping_status: String,
    pub last_ping_date_time: f64,
    pub agent_version: String,
    pub is_latest_version: bool,
    pub platform_type: String,
    pub platform_name: String,
    pub platform_version: String,
    pub activation_id: String,
    pub iam_role: String,
    pub registration_date: f64,
    pub resource_type: String,
    pub name: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    pub computer_name: String,
    pub source_id: String,
    pub source_type: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstanceInformationResult {
    pub instance_information_list: Vec<InstanceInformation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

// ---------------------------------------------------------------- DeregisterManagedInstance

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeregisterManagedInstanceRequest {
    pub instance_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_use_model_member_names() {
        let r: ListCommandsRequest = serde_json::from_str(
            r#"{"MaxResults":7,"Filters":[{"key":"Status","value":"Success"}],"Unknown":1}"#,
        )
        .expect("parse");
        assert_eq!(r.max_results, Some(7));
        let f = &r.filters.expect("filters")[0];
        assert_eq!(f.key.as_deref(), Some("Status"));
        let s: SendCommandRequest = serde_json::from_str(
            r#"{"DocumentName":"AWS-RunShellScript","Parameters":{"commands":["echo hi"]},"TimeoutSeconds":30}"#,
        )
        .expect("parse");
        assert_eq!(s.parameters.expect("params")["commands"], vec!["echo hi"]);
        let d: DescribeInstanceInformationRequest = serde_json::from_str(
            r#"{"InstanceInformationFilterList":[{"key":"PingStatus","valueSet":["Online"]}]}"#,
        )
        .expect("parse");
        assert_eq!(
            d.instance_information_filter_list.expect("f")[0]
                .value_set
                .as_ref()
                .map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn epoch_has_millisecond_fraction() {
        assert_eq!(
            serde_json::to_string(&epoch(1_550_173_814_717)).expect("json"),
            "1550173814.717"
        );
    }
}
