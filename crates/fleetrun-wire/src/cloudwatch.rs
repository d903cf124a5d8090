//! The CloudWatch alarm shapes fleetrun serves (integration fact sheet §7): AWS JSON 1.0
//! (`X-Amz-Target: GraniteServiceVersion20100801.<Op>`, `Content-Type: application/x-amz-json-1.0`,
//! signing name `monitoring`), which botocore ≥ 1.42.7 and CLI v2 ≥ 2.32.14 speak. Timestamps are
//! epoch seconds. Errors carry `x-amzn-query-error: <Code>;Sender`, the service being
//! query-compatible.

use serde::{Deserialize, Serialize};

pub const TARGET_PREFIX: &str = "GraniteServiceVersion20100801.";
pub const SIGNING_SERVICE: &str = "monitoring";
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// PutMetricAlarm: the name, and every other member kept as sent (DescribeAlarms echoes them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PutMetricAlarmInput {
    pub alarm_name: Option<String>,
    #[serde(flatten)]
    pub definition: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SetAlarmStateInput {
    pub alarm_name: Option<String>,
    pub state_value: Option<String>,
    pub state_reason: Option<String>,
    pub state_reason_data: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeAlarmsInput {
    pub alarm_names: Option<Vec<String>>,
    pub alarm_name_prefix: Option<String>,
    pub alarm_types: Option<Vec<String>>,
    pub children_of_alarm_name: Option<String>,
    pub parents_of_alarm_name: Option<String>,
    pub state_value: Option<String>,
    pub action_prefix: Option<String>,
    pub max_records: Option<i64>,
    pub next_token: Option<String>,
}

/// A metric alarm as DescribeAlarms lists it: the state members, then the definition as sent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricAlarm {
    pub alarm_name: String,
    pub alarm_arn: String,
    pub state_value: String,
    pub state_reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason_data: Option<String>,
    pub state_updated_timestamp: f64,
    pub state_transitioned_timestamp: f64,
    #[serde(flatten)]
    pub definition: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeAlarmsOutput {
    pub metric_alarms: Vec<MetricAlarm>,
    pub composite_alarms: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// An Alertmanager webhook notification (its `version: "4"` payload), as far as alarms go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AlertmanagerPayload {
    pub status: String,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
}
