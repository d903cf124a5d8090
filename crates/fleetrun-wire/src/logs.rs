//! The CloudWatch Logs shapes fleetrun serves (awsJson1.1, `X-Amz-Target: Logs_20140328.<Op>`,
//! signing name `logs`): the reads that `aws logs tail`, `get-log-events`, `filter-log-events`
//! and the describe calls use. Names as in botocore's `logs` model; times are ms since the epoch.

use serde::{Deserialize, Serialize};

/// The X-Amz-Target prefix of the CloudWatch Logs API.
pub const TARGET_PREFIX: &str = "Logs_20140328.";
/// The SigV4 service name clients sign Logs calls for.
pub const SIGNING_SERVICE: &str = "logs";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DescribeLogGroupsRequest {
    pub log_group_name_prefix: Option<String>,
    pub log_group_name_pattern: Option<String>,
    pub next_token: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogGroup {
    pub log_group_name: String,
    pub creation_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_in_days: Option<i64>,
    pub metric_filter_count: i64,
    pub arn: String,
    pub stored_bytes: u64,
    pub log_group_class: String,
    pub log_group_arn: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogGroupsResponse {
    pub log_groups: Vec<LogGroup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DescribeLogStreamsRequest {
    pub log_group_name: Option<String>,
    pub log_group_identifier: Option<String>,
    pub log_stream_name_prefix: Option<String>,
    pub order_by: Option<String>,
    pub descending: Option<bool>,
    pub next_token: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogStream {
    pub log_stream_name: String,
    pub creation_time: i64,
    pub first_event_timestamp: i64,
    pub last_event_timestamp: i64,
    pub last_ingestion_time: i64,
    pub arn: String,
    pub stored_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogStreamsResponse {
    pub log_streams: Vec<LogStream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GetLogEventsRequest {
    pub log_group_name: Option<String>,
    pub log_group_identifier: Option<String>,
    pub log_stream_name: Option<String>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub next_token: Option<String>,
    pub limit: Option<i64>,
    pub start_from_head: Option<bool>,
    pub unmask: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputLogEvent {
    pub timestamp: i64,
    pub message: String,
    pub ingestion_time: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetLogEventsResponse {
    pub events: Vec<OutputLogEvent>,
    pub next_forward_token: String,
    pub next_backward_token: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FilterLogEventsRequest {
    pub log_group_name: Option<String>,
    pub log_group_identifier: Option<String>,
    pub log_stream_names: Option<Vec<String>>,
    pub log_stream_name_prefix: Option<String>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub filter_pattern: Option<String>,
    pub next_token: Option<String>,
    pub limit: Option<i64>,
    /// Deprecated and ignored (events are always interleaved); `aws logs tail` sends it.
    pub interleaved: Option<bool>,
    pub unmask: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilteredLogEvent {
    pub log_stream_name: String,
    pub timestamp: i64,
    pub message: String,
    pub ingestion_time: i64,
    pub event_id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterLogEventsResponse {
    pub events: Vec<FilteredLogEvent>,
    /// Deprecated; always empty.
    pub searched_log_streams: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}
