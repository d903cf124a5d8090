//! Alarms on PostgreSQL: as `sqlite/alarms.rs`; the stop locks its command's row first, as every
//! transaction that writes invocations does (`transitions`).

use deadpool_postgres::{GenericClient, Transaction};
use fleetrun_core::alarms::{
    Alarm, AlarmDefinition, AlarmQuery, AlarmState, AlarmWatch, StateChange, TriggeredAlarm,
};
use fleetrun_core::command::CommandEcho;
use fleetrun_core::ids::CommandId;
use fleetrun_core::lifecycle::Effects;
use fleetrun_core::status::InvocationEvent;
use fleetrun_core::CoreError;
use tokio_postgres::types::ToSql;

use super::lifecycle::command_invocations;
use super::transitions::Transitions;
use super::{col, command_id, execute, query, Error, Result};

pub(crate) async fn put<C: GenericClient>(c: &C, def: &AlarmDefinition) -> Result<()> {
    execute(
        c,
        "INSERT INTO alarms (name, state, reason, state_updated_at, definition_json)
         VALUES ($1, 'INSUFFICIENT_DATA', 'Unchecked: Initial alarm creation', $2, $3)
         ON CONFLICT (name) DO UPDATE SET definition_json = excluded.definition_json",
        &[&def.name, &def.at, &def.definition.to_string()],
    )
    .await?;
    Ok(())
}

pub(crate) async fn set_state<C: GenericClient>(c: &C, change: &StateChange) -> Result<bool> {
    let sql = if change.create {
        "INSERT INTO alarms (name, state, reason, reason_data, state_updated_at, definition_json)
         VALUES ($1, $2, $3, $4, $5, '{}')
         ON CONFLICT (name) DO UPDATE SET state = excluded.state, reason = excluded.reason,
             reason_data = excluded.reason_data, state_updated_at = excluded.state_updated_at"
    } else {
        "UPDATE alarms SET state = $2, reason = $3, reason_data = $4, state_updated_at = $5
         WHERE name = $1"
    };
    let changed = execute(
        c,
        sql,
        &[
            &change.name,
            &change.state.as_str(),
            &change.reason,
            &change.reason_data,
            &change.at,
        ],
    )
    .await?;
    Ok(changed > 0)
}

pub(crate) async fn query_alarms<C: GenericClient>(c: &C, q: &AlarmQuery) -> Result<Vec<Alarm>> {
    let mut sql = String::from(
        "SELECT name, state, reason, reason_data, state_updated_at, definition_json FROM alarms
         WHERE TRUE",
    );
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut bind = |v: Box<dyn ToSql + Sync + Send>| {
        args.push(v);
        format!("${}", args.len())
    };
    if let Some(names) = &q.names {
        sql.push_str(&format!(
            " AND name = ANY({}::text[])",
            bind(Box::new(names.clone()))
        ));
    }
    if let Some(prefix) = &q.prefix {
        sql.push_str(&format!(
            " AND starts_with(name, {})",
            bind(Box::new(prefix.clone()))
        ));
    }
    if let Some(state) = q.state {
        sql.push_str(&format!(" AND state = {}", bind(Box::new(state.as_str()))));
    }
    if let Some(after) = &q.after {
        sql.push_str(&format!(" AND name > {}", bind(Box::new(after.clone()))));
    }
    sql.push_str(&format!(" ORDER BY name LIMIT {}", q.limit));
    let refs: Vec<&(dyn ToSql + Sync)> = args
        .iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = query(c, &sql, &refs).await?;
    rows.iter()
        .map(|r| {
            let state: String = col(r, 1)?;
            Ok(Alarm {
                name: col(r, 0)?,
                state: AlarmState::parse(&state)
                    .ok_or_else(|| Error::Corrupt(format!("alarm state {state:?}")))?,
                reason: col(r, 2)?,
                reason_data: col(r, 3)?,
                state_updated_at: col(r, 4)?,
                definition: serde_json::from_str(col(r, 5)?)?,
            })
        })
        .collect()
}

pub(crate) async fn watching<C: GenericClient>(c: &C) -> Result<Vec<(CommandId, AlarmWatch)>> {
    let rows = query(
        c,
        "SELECT command_id, echo_json FROM commands
         WHERE alarm_name IS NOT NULL AND terminal = FALSE AND triggered_json IS NULL",
        &[],
    )
    .await?;
    let mut out = Vec::new();
    for r in &rows {
        let echo: CommandEcho = serde_json::from_str(col(r, 1)?)?;
        if let Some(watch) = AlarmWatch::of(echo.alarm_configuration.as_ref()) {
            out.push((command_id(col(r, 0)?)?, watch));
        }
    }
    Ok(out)
}

pub(crate) async fn stop(
    tx: &Transaction<'_>,
    command: &CommandId,
    triggered: &TriggeredAlarm,
    rendered: Option<&str>,
) -> Result<Effects> {
    let mut tr = Transitions::default();
    let Some(seq) = tr.lock_id(tx, command.as_str()).await? else {
        return Err(CoreError::UnknownCommand(command.to_string()).into());
    };
    let terminal = tr.touched.get(&seq).is_some_and(|t| t.terminal);
    let already = query(
        tx,
        "SELECT triggered_json IS NOT NULL FROM commands WHERE seq = $1",
        &[&seq],
    )
    .await?
    .first()
    .map(|r| col::<bool>(r, 0))
    .transpose()?
    .unwrap_or(false);
    if terminal || already {
        return Ok(Effects::default());
    }
    execute(
        tx,
        "UPDATE commands SET triggered_json = $2, rendered = COALESCE($3, rendered) WHERE seq = $1",
        &[&seq, &serde_json::to_string(&[triggered])?, &rendered],
    )
    .await?;
    tr.request_cancel(seq);
    for inv in command_invocations(tx, seq, true).await? {
        tr.apply(tx, &inv, InvocationEvent::AlarmStopped).await?;
    }
    tr.flush(tx).await
}
