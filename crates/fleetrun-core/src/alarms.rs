//! Alarms that stop a rollout (integration fact sheet §5 and §7; ARCHITECTURE.md, "Alarms"):
//! their states, set through the CloudWatch alarm API subset or an Alertmanager webhook, and the
//! rule that decides, from a command's `AlarmConfiguration` and its alarm's state, whether the
//! command must stop.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// A CloudWatch alarm state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlarmState {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "ALARM")]
    Alarm,
    #[serde(rename = "INSUFFICIENT_DATA")]
    InsufficientData,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Alarm => "ALARM",
            Self::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "OK" => Some(Self::Ok),
            "ALARM" => Some(Self::Alarm),
            "INSUFFICIENT_DATA" => Some(Self::InsufficientData),
            _ => None,
        }
    }
}

/// A stored alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    pub name: String,
    pub state: AlarmState,
    pub reason: String,
    pub reason_data: Option<String>,
    pub state_updated_at: Millis,
    /// The PutMetricAlarm members other than the name, as sent (echoed by DescribeAlarms; the
    /// metric is not evaluated).
    pub definition: serde_json::Value,
}

/// A new or changed alarm definition (PutMetricAlarm).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmDefinition {
    pub name: String,
    pub definition: serde_json::Value,
    pub at: Millis,
}

/// A new state for an alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    pub name: String,
    pub state: AlarmState,
    pub reason: String,
    pub reason_data: Option<String>,
    pub at: Millis,
    /// Create the alarm when there is none (an Alertmanager alert names any alarm it likes);
    /// otherwise a missing alarm is `None` from the store.
    pub create: bool,
}

/// A DescribeAlarms page request: names, or a prefix (or neither), a state, after a name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlarmQuery {
    pub names: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub state: Option<AlarmState>,
    pub after: Option<String>,
    pub limit: usize,
}

/// What a command records when its alarm stopped it (`TriggeredAlarms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggeredAlarm {
    pub name: String,
    /// `ALARM`, or `UNKNOWN` when the alarm could not be read.
    pub state: String,
}

/// A command's `AlarmConfiguration` as far as stopping goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmWatch {
    pub alarm: String,
    pub ignore_poll_failure: bool,
}

impl AlarmWatch {
    /// From the configuration as sent (`{"Alarms": [{"Name": …}], "IgnorePollAlarmFailure": …}`;
    /// the model allows exactly one alarm).
    pub fn of(config: Option<&serde_json::Value>) -> Option<Self> {
        let config = config?;
        let alarm = config["Alarms"].as_array()?.first()?["Name"].as_str()?;
        Some(Self {
            alarm: alarm.to_owned(),
            ignore_poll_failure: config["IgnorePollAlarmFailure"].as_bool().unwrap_or(false),
        })
    }

    /// Whether the command stops, given its alarm as read (`None`: there is no such alarm, so its
    /// state cannot be read). ALARM stops it; OK and INSUFFICIENT_DATA let it run
    /// ("regardless of" IgnorePollAlarmFailure); an unreadable alarm stops it unless
    /// IgnorePollAlarmFailure is set.
    pub fn verdict(&self, alarm: Option<&Alarm>) -> Option<TriggeredAlarm> {
        let state = match alarm.map(|a| a.state) {
            Some(AlarmState::Alarm) => "ALARM",
            Some(AlarmState::Ok | AlarmState::InsufficientData) => return None,
            None if self.ignore_poll_failure => return None,
            None => "UNKNOWN",
        };
        Some(TriggeredAlarm {
            name: self.alarm.clone(),
            state: state.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alarm(state: AlarmState) -> Alarm {
        Alarm {
            name: "cpu".into(),
            state,
            reason: String::new(),
            reason_data: None,
            state_updated_at: 0,
            definition: json!({}),
        }
    }

    #[test]
    fn the_stop_rule() {
        let watch = AlarmWatch::of(Some(&json!({"Alarms": [{"Name": "cpu"}]}))).expect("watch");
        assert_eq!(
            watch.verdict(Some(&alarm(AlarmState::Alarm))),
            Some(TriggeredAlarm {
                name: "cpu".into(),
                state: "ALARM".into()
            })
        );
        assert_eq!(watch.verdict(Some(&alarm(AlarmState::Ok))), None);
        assert_eq!(
            watch.verdict(Some(&alarm(AlarmState::InsufficientData))),
            None
        );
        assert_eq!(
            watch.verdict(None).map(|t| t.state),
            Some("UNKNOWN".into()),
            "an alarm that cannot be read stops the command"
        );
        let lenient = AlarmWatch::of(Some(
            &json!({"Alarms": [{"Name": "cpu"}], "IgnorePollAlarmFailure": true}),
        ))
        .expect("watch");
        assert_eq!(lenient.verdict(None), None);
        assert_eq!(
            lenient
                .verdict(Some(&alarm(AlarmState::Alarm)))
                .map(|t| t.state),
            Some("ALARM".into()),
            "the flag is about unreadable alarms only"
        );
        assert_eq!(AlarmWatch::of(None), None);
        assert_eq!(AlarmWatch::of(Some(&json!({"Alarms": []}))), None);
    }
}
