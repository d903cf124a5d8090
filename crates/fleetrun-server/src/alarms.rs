//! Alarms (ARCHITECTURE.md, "Alarms"): the CloudWatch alarm operations (PutMetricAlarm,
//! SetAlarmState, DescribeAlarms), the Alertmanager webhook receiver, and the watcher that stops
//! a command whose alarm goes into ALARM, at send time or while it rolls out.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use fleetrun_core::alarms::{
    Alarm, AlarmDefinition, AlarmQuery, AlarmState, AlarmWatch, StateChange,
};
use fleetrun_core::clock::now_millis;
use fleetrun_core::ids::CommandId;
use fleetrun_wire::cloudwatch as wire;
use sha2::{Digest, Sha256};

use crate::audit::audit;
use crate::auth::{Caller, ACCOUNT_ID};
use crate::error::{ApiError, ApiResult};
use crate::{convert, AppState};

/// Where Alertmanager posts (`webhook_configs[].url`).
pub const ALERTMANAGER_PATH: &str = "/alertmanager";
/// The file holding the bearer token Alertmanager must send (`http_config.authorization`).
pub const ALERTMANAGER_TOKEN_FILE: &str = "alertmanager-token";
/// How often unfinished commands' alarms are looked at when nothing rings the watcher.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// DescribeAlarms' MaxRecords: 1–100, default 50.
const MAX_RECORDS: i64 = 100;
const DEFAULT_RECORDS: i64 = 50;

fn alarm_arn(st: &AppState, name: &str) -> String {
    format!(
        "arn:aws:cloudwatch:{}:{ACCOUNT_ID}:alarm:{name}",
        st.config.region
    )
}

fn required(name: Option<String>, member: &str) -> ApiResult<String> {
    match name {
        Some(n) if !n.is_empty() && n.chars().count() <= 255 => Ok(n),
        Some(n) if !n.is_empty() => Err(ApiError::CloudWatchValidation(format!(
            "1 validation error detected: Value '{n}' at '{member}' failed to satisfy constraint: Member must have length less than or equal to 255"
        ))),
        _ => Err(ApiError::CloudWatchValidation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))),
    }
}

pub async fn put_metric_alarm(
    st: AppState,
    caller: Caller,
    req: wire::PutMetricAlarmInput,
) -> ApiResult<serde_json::Value> {
    let name = required(req.alarm_name, "alarmName")?;
    caller.authorize("cloudwatch:PutMetricAlarm", &alarm_arn(&st, &name), &[])?;
    st.store
        .put_alarm(AlarmDefinition {
            name: name.clone(),
            definition: serde_json::Value::Object(req.definition),
            at: now_millis(),
        })
        .await?;
    audit!(caller, "PutMetricAlarm", alarm = %name, "alarm defined");
    // A new alarm is INSUFFICIENT_DATA, which may matter to a command watching that name.
    st.alarms.notify_one();
    Ok(serde_json::json!({}))
}

pub async fn set_alarm_state(
    st: AppState,
    caller: Caller,
    req: wire::SetAlarmStateInput,
) -> ApiResult<serde_json::Value> {
    let name = required(req.alarm_name, "alarmName")?;
    caller.authorize("cloudwatch:SetAlarmState", &alarm_arn(&st, &name), &[])?;
    let value = req.state_value.unwrap_or_default();
    let state = AlarmState::parse(&value).ok_or_else(|| {
        ApiError::CloudWatchValidation(format!(
            "1 validation error detected: Value '{value}' at 'stateValue' failed to satisfy constraint: Member must satisfy enum value set: [INSUFFICIENT_DATA, ALARM, OK]"
        ))
    })?;
    let reason = req.state_reason.ok_or_else(|| {
        ApiError::CloudWatchValidation(
            "1 validation error detected: Value null at 'stateReason' failed to satisfy constraint: Member must not be null".into(),
        )
    })?;
    if let Some(data) = &req.state_reason_data {
        if serde_json::from_str::<serde_json::Value>(data).is_err() {
            return Err(ApiError::InvalidFormat(
                "StateReasonData must be a valid JSON string.".into(),
            ));
        }
    }
    let changed = st
        .store
        .set_alarm_state(StateChange {
            name: name.clone(),
            state,
            reason,
            reason_data: req.state_reason_data,
            at: now_millis(),
            create: false,
        })
        .await?;
    if !changed {
        return Err(ApiError::AlarmNotFound(format!(
            "Alarm {name} does not exist."
        )));
    }
    audit!(caller, "SetAlarmState", alarm = %name, state = state.as_str(), "alarm state set");
    st.alarms.notify_one();
    Ok(serde_json::json!({}))
}

pub async fn describe_alarms(
    st: AppState,
    caller: Caller,
    req: wire::DescribeAlarmsInput,
) -> ApiResult<wire::DescribeAlarmsOutput> {
    caller.authorize("cloudwatch:DescribeAlarms", "*", &[])?;
    if req.alarm_names.is_some() && req.alarm_name_prefix.is_some() {
        return Err(ApiError::CloudWatchValidation(
            "AlarmNames and AlarmNamePrefix cannot be specified together.".into(),
        ));
    }
    let limit = req.max_records.unwrap_or(DEFAULT_RECORDS);
    if !(1..=MAX_RECORDS).contains(&limit) {
        return Err(ApiError::CloudWatchValidation(format!(
            "1 validation error detected: Value '{limit}' at 'maxRecords' failed to satisfy constraint: Member must have value between 1 and {MAX_RECORDS}"
        )));
    }
    let state = match req.state_value.as_deref() {
        None => None,
        Some(s) => Some(AlarmState::parse(s).ok_or_else(|| {
            ApiError::CloudWatchValidation(format!(
                "1 validation error detected: Value '{s}' at 'stateValue' failed to satisfy constraint: Member must satisfy enum value set: [INSUFFICIENT_DATA, ALARM, OK]"
            ))
        })?),
    };
    // Every alarm here is a metric alarm; without AlarmTypes only metric alarms are listed.
    let metric = req
        .alarm_types
        .as_ref()
        .is_none_or(|t| t.iter().any(|t| t == "MetricAlarm"));
    let relations = req.children_of_alarm_name.is_some() || req.parents_of_alarm_name.is_some();
    if !metric || relations || req.action_prefix.is_some() {
        // No composite alarms, no alarm actions: nothing matches.
        return Ok(wire::DescribeAlarmsOutput {
            metric_alarms: Vec::new(),
            composite_alarms: Vec::new(),
            next_token: None,
        });
    }
    let limit = usize::try_from(limit).unwrap_or(50);
    let mut alarms = st
        .store
        .alarms(AlarmQuery {
            names: req.alarm_names,
            prefix: req.alarm_name_prefix,
            state,
            after: req.next_token,
            limit: limit + 1,
        })
        .await?;
    let next_token = if alarms.len() > limit {
        alarms.truncate(limit);
        alarms.last().map(|a| a.name.clone())
    } else {
        None
    };
    Ok(wire::DescribeAlarmsOutput {
        metric_alarms: alarms.into_iter().map(|a| metric_alarm(&st, a)).collect(),
        composite_alarms: Vec::new(),
        next_token,
    })
}

fn metric_alarm(st: &AppState, a: Alarm) -> wire::MetricAlarm {
    let at = a.state_updated_at as f64 / 1000.0;
    let mut definition = match a.definition {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    definition
        .entry("ActionsEnabled")
        .or_insert(serde_json::Value::Bool(true));
    wire::MetricAlarm {
        alarm_arn: alarm_arn(st, &a.name),
        alarm_name: a.name,
        state_value: a.state.as_str().into(),
        state_reason: a.reason,
        state_reason_data: a.reason_data,
        state_updated_timestamp: at,
        state_transitioned_timestamp: at,
        definition,
    }
}

/// `POST /alertmanager`: an Alertmanager webhook notification. Each alert's `alertname` names an
/// alarm (created when there is none): `firing` → ALARM, `resolved` → OK. The request must carry
/// `Authorization: Bearer <token>` with the token in `<data-dir>/alertmanager-token`.
pub async fn alertmanager(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Digests compared, so the time taken says nothing about the token.
    if Sha256::digest(presented.as_bytes()) != Sha256::digest(st.alertmanager_token.as_bytes()) {
        return Err(ApiError::UnrecognizedClient(
            "The Alertmanager bearer token is missing or wrong.".into(),
        ));
    }
    let payload: wire::AlertmanagerPayload = serde_json::from_slice(&body).map_err(|e| {
        ApiError::Serialization(format!("Not an Alertmanager webhook payload: {e}"))
    })?;
    let mut changed = 0;
    for alert in payload.alerts {
        let Some(name) = alert.labels.get("alertname").filter(|n| !n.is_empty()) else {
            continue;
        };
        let state = if alert.status == "resolved" {
            AlarmState::Ok
        } else {
            AlarmState::Alarm
        };
        let reason = alert
            .annotations
            .get("summary")
            .cloned()
            .unwrap_or_else(|| format!("Alertmanager: {}", alert.status));
        st.store
            .set_alarm_state(StateChange {
                name: name.clone(),
                state,
                reason,
                reason_data: None,
                at: now_millis(),
                create: true,
            })
            .await?;
        tracing::info!(alarm = %name, state = state.as_str(), "alarm state set by Alertmanager");
        changed += 1;
    }
    if changed > 0 {
        st.alarms.notify_one();
    }
    Ok(Json(serde_json::json!({})))
}

/// The stop check for one command, now: stops it when its alarm says so. True when it stopped.
pub async fn check_command(
    st: &AppState,
    command: &CommandId,
    watch: &AlarmWatch,
) -> ApiResult<bool> {
    let alarm = st
        .store
        .alarms(AlarmQuery {
            names: Some(vec![watch.alarm.clone()]),
            limit: 1,
            ..AlarmQuery::default()
        })
        .await?;
    stop_if(st, command, watch, alarm.first()).await
}

async fn stop_if(
    st: &AppState,
    command: &CommandId,
    watch: &AlarmWatch,
    alarm: Option<&Alarm>,
) -> ApiResult<bool> {
    let Some(triggered) = watch.verdict(alarm) else {
        return Ok(false);
    };
    // The listing shows TriggeredAlarms from the command's rendering: render it again.
    let rendered = match st.store.command(command).await? {
        Some(mut c) => {
            c.triggered_alarms = vec![triggered.clone()];
            convert::rerendering(&c).ok()
        }
        None => return Ok(false),
    };
    tracing::info!(command_id = %command, alarm = %triggered.name, state = %triggered.state,
        "alarm stops the command: invocations not yet delivered are cancelled");
    let effects = st
        .store
        .stop_for_alarm(command, triggered, rendered)
        .await?;
    st.apply(&effects);
    Ok(true)
}

/// Looks at every unfinished command's alarm each second, and at once when an alarm changes.
pub(crate) async fn watch(st: AppState) {
    loop {
        if let Err(e) = watch_once(&st).await {
            tracing::warn!(error = %e.message(), "cannot check the alarms of running commands");
        }
        tokio::select! {
            () = st.alarms.notified() => {}
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
    }
}

async fn watch_once(st: &AppState) -> ApiResult<()> {
    let watchers = st.store.alarm_watchers().await?;
    if watchers.is_empty() {
        return Ok(());
    }
    let names: BTreeSet<String> = watchers.iter().map(|(_, w)| w.alarm.clone()).collect();
    let alarms = st
        .store
        .alarms(AlarmQuery {
            limit: names.len(),
            names: Some(names.into_iter().collect()),
            ..AlarmQuery::default()
        })
        .await?;
    for (command, watch) in &watchers {
        let alarm = alarms.iter().find(|a| a.name == watch.alarm);
        stop_if(st, command, watch, alarm).await?;
    }
    Ok(())
}
