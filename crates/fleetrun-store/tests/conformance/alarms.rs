//! Checks for alarms: definitions and states, the queries DescribeAlarms makes, and a stop: what
//! has not reached its node ends Cancelled, what runs finishes, the command ends Cancelled with
//! its TriggeredAlarms.

use super::support::*;

use fleetrun_core::alarms::{AlarmDefinition, AlarmQuery, AlarmState, StateChange, TriggeredAlarm};
use fleetrun_core::status::{CommandState, ExecutionOutcome, InvocationState};
use fleetrun_core::Store;
use serde_json::json;

fn change(name: &str, state: AlarmState, create: bool) -> StateChange {
    StateChange {
        name: name.into(),
        state,
        reason: "test".into(),
        reason_data: None,
        at: T0,
        create,
    }
}

fn query(limit: usize) -> AlarmQuery {
    AlarmQuery {
        limit,
        ..AlarmQuery::default()
    }
}

pub async fn check_alarms(store: &dyn Store) {
    for name in ["cpu-high", "cpu-low", "disk"] {
        store
            .put_alarm(AlarmDefinition {
                name: name.into(),
                definition: json!({"MetricName": "CPU", "Threshold": 90.0}),
                at: T0,
            })
            .await
            .expect("put");
    }
    let all = store.alarms(query(10)).await.expect("alarms");
    let names: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["cpu-high", "cpu-low", "disk"]);
    assert!(all.iter().all(|a| a.state == AlarmState::InsufficientData));
    assert_eq!(all[0].definition["Threshold"], 90.0);

    assert!(store
        .set_alarm_state(change("cpu-high", AlarmState::Alarm, false))
        .await
        .expect("set"));
    assert!(
        !store
            .set_alarm_state(change("nope", AlarmState::Alarm, false))
            .await
            .expect("set"),
        "an unknown alarm is not created"
    );
    assert!(store
        .set_alarm_state(change("from-alertmanager", AlarmState::Alarm, true))
        .await
        .expect("upsert"));
    // A new definition keeps the state.
    store
        .put_alarm(AlarmDefinition {
            name: "cpu-high".into(),
            definition: json!({"Threshold": 95.0}),
            at: T0 + 1,
        })
        .await
        .expect("put again");
    let firing = store
        .alarms(AlarmQuery {
            state: Some(AlarmState::Alarm),
            ..query(10)
        })
        .await
        .expect("by state");
    let firing: Vec<(&str, f64)> = firing
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                a.definition["Threshold"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    assert_eq!(firing, [("cpu-high", 95.0), ("from-alertmanager", 0.0)]);
    let prefixed = store
        .alarms(AlarmQuery {
            prefix: Some("cpu".into()),
            after: Some("cpu-high".into()),
            ..query(10)
        })
        .await
        .expect("prefix");
    assert_eq!(prefixed.len(), 1);
    assert_eq!(prefixed[0].name, "cpu-low");
    let named = store
        .alarms(AlarmQuery {
            names: Some(vec!["disk".into(), "missing".into()]),
            ..query(10)
        })
        .await
        .expect("names");
    assert_eq!(named.len(), 1, "unknown names are left out");
    assert_eq!(store.alarms(query(2)).await.expect("limit").len(), 2);

    // A command watching an alarm; one node runs, two wait.
    let mut watched = new_command(T0, "AWS-RunShellScript", &[node(1), node(2), node(3)]);
    watched.echo.alarm_configuration = Some(json!({"Alarms": [{"Name": "cpu-high"}]}));
    watched.max_concurrency = "1".into();
    let watched = store.insert_command(watched).await.expect("insert").command;
    let _plain = insert(store, T0 + 1, "AWS-RunShellScript", &[node(1)]).await;
    let watchers = store.alarm_watchers().await.expect("watchers");
    assert_eq!(watchers.len(), 1);
    assert_eq!(watchers[0].0, watched.id);
    assert_eq!(watchers[0].1.alarm, "cpu-high");
    store
        .claim(&node(1), "s", &[], T0 + 10)
        .await
        .expect("claim");
    assert_eq!(
        invocation_state(store, &watched.id, &node(1)).await,
        InvocationState::InProgress
    );

    let triggered = TriggeredAlarm {
        name: "cpu-high".into(),
        state: "ALARM".into(),
    };
    store
        .stop_for_alarm(&watched.id, triggered.clone(), Some("{}".into()))
        .await
        .expect("stop");
    for n in [node(2), node(3)] {
        assert_eq!(
            invocation_state(store, &watched.id, &n).await,
            InvocationState::Cancelled,
            "never reached its node"
        );
    }
    assert_eq!(
        invocation_state(store, &watched.id, &node(1)).await,
        InvocationState::InProgress,
        "what runs finishes"
    );
    let stopped = command(store, &watched.id).await;
    assert_eq!(stopped.triggered_alarms, std::slice::from_ref(&triggered));
    assert!(store.alarm_watchers().await.expect("watchers").is_empty());
    // A second stop changes nothing.
    store
        .stop_for_alarm(
            &watched.id,
            TriggeredAlarm {
                name: "cpu-high".into(),
                state: "UNKNOWN".into(),
            },
            None,
        )
        .await
        .expect("stop again");
    assert_eq!(
        command(store, &watched.id).await.triggered_alarms,
        [triggered]
    );
    store
        .finish(
            &node(1),
            report(&watched.id, ExecutionOutcome::Success, 0),
            T0 + 20,
        )
        .await
        .expect("finish");
    assert_eq!(state_of(store, &watched.id).await, CommandState::Cancelled);
}
