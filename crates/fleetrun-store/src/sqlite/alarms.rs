//! Alarms (their states and definitions) and the commands that watch them: the stop itself goes
//! through the transitions like every other status change (`InvocationEvent::AlarmStopped`).

use fleetrun_core::alarms::{
    Alarm, AlarmDefinition, AlarmQuery, AlarmState, AlarmWatch, StateChange, TriggeredAlarm,
};
use fleetrun_core::command::CommandEcho;
use fleetrun_core::ids::CommandId;
use fleetrun_core::lifecycle::Effects;
use fleetrun_core::status::InvocationEvent;
use fleetrun_core::CoreError;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::lifecycle::{command_invocations, with_transitions};
use super::{command_id, Error, Result};

/// PutMetricAlarm: a new alarm starts INSUFFICIENT_DATA; an update keeps its state.
pub(crate) fn put(conn: &mut Connection, def: &AlarmDefinition) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO alarms (name, state, reason, state_updated_at, definition_json)
         VALUES (?1, 'INSUFFICIENT_DATA', 'Unchecked: Initial alarm creation', ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET definition_json = excluded.definition_json",
    )?
    .execute(params![def.name, def.at, def.definition.to_string()])?;
    Ok(())
}

pub(crate) fn set_state(conn: &mut Connection, change: &StateChange) -> Result<bool> {
    let sql = if change.create {
        "INSERT INTO alarms (name, state, reason, reason_data, state_updated_at, definition_json)
         VALUES (?1, ?2, ?3, ?4, ?5, '{}')
         ON CONFLICT (name) DO UPDATE SET state = excluded.state, reason = excluded.reason,
             reason_data = excluded.reason_data, state_updated_at = excluded.state_updated_at"
    } else {
        "UPDATE alarms SET state = ?2, reason = ?3, reason_data = ?4, state_updated_at = ?5
         WHERE name = ?1"
    };
    let changed = conn.prepare_cached(sql)?.execute(params![
        change.name,
        change.state.as_str(),
        change.reason,
        change.reason_data,
        change.at
    ])?;
    Ok(changed > 0)
}

pub(crate) fn query(conn: &Connection, q: &AlarmQuery) -> Result<Vec<Alarm>> {
    let mut sql = String::from(
        "SELECT name, state, reason, reason_data, state_updated_at, definition_json FROM alarms
         WHERE 1 = 1",
    );
    let mut args: Vec<Value> = Vec::new();
    let mut bind = |sql: &mut String, cond: &str, v: Value| {
        args.push(v);
        sql.push_str(&cond.replace('#', &format!("?{}", args.len())));
    };
    if let Some(names) = &q.names {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        sql.push_str(" AND name IN (");
        for (i, n) in names.iter().enumerate() {
            bind(&mut sql, if i == 0 { "#" } else { ", #" }, n.clone().into());
        }
        sql.push(')');
    }
    if let Some(prefix) = &q.prefix {
        bind(
            &mut sql,
            " AND substr(name, 1, length(#)) = #",
            prefix.clone().into(),
        );
    }
    if let Some(state) = q.state {
        bind(&mut sql, " AND state = #", state.as_str().to_owned().into());
    }
    if let Some(after) = &q.after {
        bind(&mut sql, " AND name > #", after.clone().into());
    }
    sql.push_str(&format!(" ORDER BY name LIMIT {}", q.limit));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, state, reason, reason_data, at, definition) = row?;
        out.push(Alarm {
            state: AlarmState::parse(&state)
                .ok_or_else(|| Error::Corrupt(format!("alarm state {state:?}")))?,
            name,
            reason,
            reason_data,
            state_updated_at: at,
            definition: serde_json::from_str(&definition)?,
        });
    }
    Ok(out)
}

/// Unfinished commands that watch an alarm and were not stopped by it yet.
pub(crate) fn watching(conn: &Connection) -> Result<Vec<(CommandId, AlarmWatch)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT command_id, echo_json FROM commands
         WHERE alarm_name IS NOT NULL AND terminal = 0 AND triggered_json IS NULL",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, echo) = row?;
        let echo: CommandEcho = serde_json::from_str(&echo)?;
        if let Some(watch) = AlarmWatch::of(echo.alarm_configuration.as_ref()) {
            out.push((command_id(&id)?, watch));
        }
    }
    Ok(out)
}

/// Stops a command for its alarm: what has not reached its node ends Cancelled, the command is
/// marked cancel-requested (so it ends Cancelled) with its TriggeredAlarms, and, when given, its
/// listing rendering is replaced (it shows TriggeredAlarms). A command already stopped or
/// finished changes nothing.
pub(crate) fn stop(
    conn: &mut Connection,
    command: &CommandId,
    triggered: &TriggeredAlarm,
    rendered: Option<&str>,
) -> Result<Effects> {
    let ((), effects) = with_transitions(conn, |tx, tr| {
        let found: Option<(i64, bool, Option<String>)> = tx
            .prepare_cached(
                "SELECT seq, terminal, triggered_json FROM commands WHERE command_id = ?1",
            )?
            .query_row([command.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((seq, terminal, already)) = found else {
            return Err(CoreError::UnknownCommand(command.to_string()).into());
        };
        if terminal || already.is_some() {
            return Ok(());
        }
        tx.prepare_cached(
            "UPDATE commands SET triggered_json = ?2, rendered = COALESCE(?3, rendered)
             WHERE seq = ?1",
        )?
        .execute(params![seq, serde_json::to_string(&[triggered])?, rendered])?;
        tr.request_cancel(tx, seq)?;
        for inv in command_invocations(tx, seq, true)? {
            tr.apply(tx, &inv, InvocationEvent::AlarmStopped)?;
        }
        Ok(())
    })?;
    Ok(effects)
}
