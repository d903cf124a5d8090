//! Commands and invocations as rows: inserting a command with its invocations, reading them back,
//! and the ListCommands / ListCommandInvocations queries (filters, newest-first order, keyset paging),
//! plus the by-key page query the node and document listings share ([`key_page_sql`]).
//!
//! The list SQL is built in one place ([`list_commands_sql`], [`list_invocations_sql`]) so the
//! `EXPLAIN QUERY PLAN` helpers check exactly what runs. State changes after insertion belong to
//! `lifecycle`, never here.

use std::collections::HashSet;

use fleetrun_core::clock::Millis;
use fleetrun_core::command::{
    Command, CommandEcho, Invocation, ListedBody, ListedCommand, NewCommand, StepResult,
};
use fleetrun_core::document::Plan;
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::lifecycle::Effects;
use fleetrun_core::query::{CommandQuery, ExecutionStage, PageKey, StatusMatch};
use fleetrun_core::status::{aggregate, InvocationEvent, InvocationState, StateCounts};
use fleetrun_core::CoreError;
use rusqlite::types::{Type, Value};
use rusqlite::{params, params_from_iter, Connection, Row};

use fleetrun_core::notification::NotifySpec;

use super::lifecycle::{with_transitions, InvocationRef};
use super::{command_id, instance_id, invocation_state, to_i64, Error, Result};

/// The columns [`command_from_row`] decodes, in order (the table is aliased `c`).
const COMMAND_COLUMNS: &str =
    "c.seq, c.command_id, c.requested_at, c.expires_at, c.document_name, \
     c.document_version, c.comment, c.timeout_seconds, c.max_concurrency, c.max_errors, \
     c.error_budget, c.echo_json, c.plan_json, c.counts_json, c.cancel_requested, \
     c.triggered_json";

/// The columns [`listed_from_row`] decodes, in order: what a ListCommands page needs besides the
/// rendering (the table is aliased `c`). The echo and plan are not read for a rendered command.
const LISTED_COLUMNS: &str = "c.seq, c.command_id, c.requested_at, c.error_budget, c.counts_json, \
     c.cancel_requested, c.rendered";

/// The columns [`invocation_from_row`] decodes, in order (the table is aliased `i`).
const INVOCATION_COLUMNS: &str = "i.command_id, i.command_seq, i.instance_id, i.requested_at, \
     i.state, i.response_code, i.started_at, i.ended_at, i.steps_json";

/// A TEXT column borrowed from the row, without copying.
fn text<'r>(row: &'r Row<'_>, i: usize) -> Result<&'r str> {
    row.get_ref(i)?.as_str().map_err(|e| {
        Error::Sql(rusqlite::Error::FromSqlConversionFailure(
            i,
            Type::Text,
            Box::new(e),
        ))
    })
}

pub(crate) fn command_from_row(row: &Row<'_>) -> Result<Command> {
    let echo: CommandEcho = serde_json::from_str(text(row, 11)?)?;
    let plan: Plan = serde_json::from_str(text(row, 12)?)?;
    let counts: StateCounts = serde_json::from_str(text(row, 13)?)?;
    Ok(Command {
        seq: row.get(0)?,
        id: command_id(text(row, 1)?)?,
        requested_at: row.get(2)?,
        expires_at: row.get(3)?,
        document_name: row.get(4)?,
        document_version: row.get(5)?,
        comment: row.get(6)?,
        timeout_seconds: row.get(7)?,
        max_concurrency: row.get(8)?,
        max_errors: row.get(9)?,
        error_budget: row.get(10)?,
        echo,
        plan,
        counts,
        cancel_requested: row.get(14)?,
        triggered_alarms: match row.get::<_, Option<String>>(15)? {
            Some(json) => serde_json::from_str(&json)?,
            None => Vec::new(),
        },
    })
}

/// One row of [`LISTED_COLUMNS`]; a command stored without a rendering is read whole, on the same
/// connection while the page's statement is open, so from the same snapshot.
fn listed_from_row(conn: &Connection, row: &Row<'_>) -> Result<ListedCommand> {
    let seq: i64 = row.get(0)?;
    let body = match row.get_ref(6)?.as_str_or_null() {
        Ok(Some(rendered)) => ListedBody::Rendered(rendered.to_owned()),
        _ => {
            let whole = get_by_seq(conn, seq)?.ok_or_else(|| {
                CoreError::Store(format!("command row {seq} vanished while being listed"))
            })?;
            ListedBody::Whole(Box::new(whole))
        }
    };
    Ok(ListedCommand {
        seq,
        id: command_id(text(row, 1)?)?,
        requested_at: row.get(2)?,
        error_budget: row.get(3)?,
        counts: serde_json::from_str(text(row, 4)?)?,
        cancel_requested: row.get(5)?,
        body,
    })
}

pub(crate) fn invocation_from_row(row: &Row<'_>) -> Result<Invocation> {
    let steps: Vec<StepResult> = match row.get_ref(8)?.as_str_or_null() {
        Ok(Some(json)) => serde_json::from_str(json)?,
        Ok(None) => Vec::new(),
        Err(e) => {
            let e = rusqlite::Error::FromSqlConversionFailure(8, Type::Text, Box::new(e));
            return Err(e.into());
        }
    };
    Ok(Invocation {
        command_id: command_id(text(row, 0)?)?,
        command_seq: row.get(1)?,
        instance_id: instance_id(text(row, 2)?)?,
        requested_at: row.get(3)?,
        state: invocation_state(text(row, 4)?)?,
        response_code: row.get(5)?,
        started_at: row.get(6)?,
        ended_at: row.get(7)?,
        steps,
    })
}

fn reject_duplicate_targets(targets: &[InstanceId]) -> Result<()> {
    let mut seen = HashSet::with_capacity(targets.len());
    match targets.iter().find(|t| !seen.insert(t.as_str())) {
        Some(dup) => Err(CoreError::DuplicateInstance(dup.to_string()).into()),
        None => Ok(()),
    }
}

/// Inserts the command row and one invocation per target, all in `state`; returns the new seq, the
/// counts stored and the cancel flag. Runs inside the caller's transaction.
fn insert_rows(
    tx: &Connection,
    cmd: &NewCommand,
    state: InvocationState,
    released: bool,
) -> Result<(i64, StateCounts, bool)> {
    let n = u32::try_from(cmd.targets.len())
        .map_err(|_| CoreError::Store(format!("{} targets is too many", cmd.targets.len())))?;
    let mut counts = StateCounts::default();
    counts.add(state, n);
    // A seeded command already cancelled must aggregate as Cancelled, which needs the request flag.
    let cancel_requested = matches!(
        state,
        InvocationState::Cancelling | InvocationState::Cancelled
    ) && n > 0;
    let agg = aggregate(&counts, cmd.error_budget, cancel_requested);
    // A sent command starts unreleased: its rollout releases it. Seeded ones count as released,
    // acknowledged unless Pending, settled when terminal.
    let (rel, acked, settled) = if released {
        let acked = if state == InvocationState::Pending {
            0
        } else {
            n
        };
        (n, acked, if state.is_terminal() { n } else { 0 })
    } else {
        (0, 0, 0)
    };
    tx.prepare_cached(
        "INSERT INTO commands (command_id, requested_at, expires_at, document_name, document_version,
             comment, timeout_seconds, max_concurrency, max_errors, error_budget, echo_json, plan_json,
             counts_json, cancel_requested, status, status_details, terminal, released, acked, settled,
             rendered, notify_json, log_group, s3_bucket, alarm_name)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
             ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
    )?
    .execute(params![
        cmd.id.as_str(),
        cmd.requested_at,
        cmd.expires_at,
        cmd.document_name,
        cmd.document_version,
        cmd.comment,
        cmd.timeout_seconds,
        cmd.max_concurrency,
        cmd.max_errors,
        cmd.error_budget,
        serde_json::to_string(&cmd.echo)?,
        serde_json::to_string(&cmd.plan)?,
        serde_json::to_string(&counts)?,
        cancel_requested,
        agg.state.status().as_str(),
        agg.state.as_str(),
        agg.state.is_terminal(),
        rel,
        acked,
        settled,
        cmd.rendered,
        NotifySpec::of(cmd)
            .map(|spec| serde_json::to_string(&spec))
            .transpose()?,
        cmd.log_group(),
        cmd.s3_bucket(),
        cmd.alarm_watch().map(|w| w.alarm),
    ])?;
    let seq = tx.last_insert_rowid();

    use InvocationState as S;
    // Seeded invocations that ran are stamped as having run instantly at the request time.
    let ran = matches!(state, S::Success | S::Failed | S::ExecutionTimedOut);
    let started = ran || matches!(state, S::InProgress | S::Cancelling);
    let started_at = started.then_some(cmd.requested_at);
    let ended_at = ran.then_some(cmd.requested_at);
    let response_code: i64 = match state {
        S::Success => 0,
        S::Failed => 1,
        _ => -1,
    };
    let mut insert = tx.prepare_cached(
        "INSERT INTO invocations (command_seq, command_id, instance_id, requested_at, document_name,
             state, status, response_code, started_at, ended_at, released)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for target in &cmd.targets {
        insert.execute(params![
            seq,
            cmd.id.as_str(),
            target.as_str(),
            cmd.requested_at,
            cmd.document_name,
            state.as_str(),
            state.status().as_str(),
            response_code,
            started_at,
            ended_at,
            released,
        ])?;
    }
    Ok((seq, counts, cancel_requested))
}

/// SendCommand's write: the command and its Pending invocations, and the first release of its
/// rollout, atomically. Returns the command as stored and what changed (the nodes woken).
pub(crate) fn insert(conn: &mut Connection, cmd: NewCommand) -> Result<(Command, Effects)> {
    reject_duplicate_targets(&cmd.targets)?;
    let ((seq, counts, cancel_requested), effects) = with_transitions(conn, |tx, tr| {
        let inserted = insert_rows(tx, &cmd, InvocationState::Pending, false)?;
        tr.touch(tx, inserted.0)?;
        for node in &cmd.access_denied {
            let invocation = InvocationRef {
                command_seq: inserted.0,
                command_id: cmd.id.as_str().to_owned(),
                instance_id: node.as_str().to_owned(),
                state: InvocationState::Pending,
                released: false,
            };
            tr.apply(tx, &invocation, InvocationEvent::AccessDenied)?;
        }
        let inserted = match tr.touched.get(&inserted.0) {
            Some((_, tally)) => (inserted.0, tally.counts, inserted.2),
            None => inserted,
        };
        Ok(inserted)
    })?;
    Ok((cmd.into_command(seq, counts, cancel_requested), effects))
}

/// Many commands in one transaction, each with all its invocations in the given state.
pub(crate) fn insert_bulk(
    conn: &mut Connection,
    cmds: Vec<(NewCommand, Option<InvocationState>)>,
) -> Result<()> {
    let tx = conn.savepoint()?;
    for (cmd, state) in &cmds {
        reject_duplicate_targets(&cmd.targets)?;
        insert_rows(&tx, cmd, state.unwrap_or(InvocationState::Pending), true)?;
    }
    tx.commit()?;
    Ok(())
}

pub(crate) fn get(conn: &Connection, id: &CommandId) -> Result<Option<Command>> {
    let sql = format!("SELECT {COMMAND_COLUMNS} FROM commands c WHERE c.command_id = ?1");
    one_command(conn, &sql, Value::Text(id.as_str().to_owned()))
}

fn get_by_seq(conn: &Connection, seq: i64) -> Result<Option<Command>> {
    let sql = format!("SELECT {COMMAND_COLUMNS} FROM commands c WHERE c.seq = ?1");
    one_command(conn, &sql, Value::Integer(seq))
}

fn one_command(conn: &Connection, sql: &str, key: Value) -> Result<Option<Command>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([key])?;
    match rows.next()? {
        Some(row) => Ok(Some(command_from_row(row)?)),
        None => Ok(None),
    }
}

pub(crate) fn get_invocation(
    conn: &Connection,
    command: &CommandId,
    node: &InstanceId,
) -> Result<Option<Invocation>> {
    let sql = format!(
        "SELECT {INVOCATION_COLUMNS} FROM invocations i WHERE i.command_id = ?1 AND i.instance_id = ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([command.as_str(), node.as_str()])?;
    match rows.next()? {
        Some(row) => Ok(Some(invocation_from_row(row)?)),
        None => Ok(None),
    }
}

/// The most rows a list result reserves room for before reading (a server page is at most 51).
const PRESIZE_ROWS: usize = 64;

/// A list query ready to run: SQL with positional `?` parameters and their values.
#[derive(Debug, Clone)]
pub(crate) struct BuiltQuery {
    pub(crate) sql: String,
    pub(crate) params: Vec<Value>,
    /// The LIMIT bound in `params`: the most rows the query returns.
    pub(crate) limit: usize,
}

/// ANDed WHERE terms and their parameters.
#[derive(Default)]
struct Terms {
    terms: Vec<String>,
    params: Vec<Value>,
}

impl Terms {
    fn push(&mut self, term: impl Into<String>, values: impl IntoIterator<Item = Value>) {
        self.terms.push(term.into());
        self.params.extend(values);
    }

    fn finish(mut self, select_from: &str, order_by: &str, limit: usize) -> BuiltQuery {
        let mut sql = String::from(select_from);
        if !self.terms.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.terms.join(" AND "));
        }
        sql.push_str(" ORDER BY ");
        sql.push_str(order_by);
        sql.push_str(" LIMIT ?");
        self.params.push(Value::Integer(to_i64(limit)));
        BuiltQuery {
            sql,
            params: self.params,
            limit,
        }
    }
}

/// One page of a listing ordered by the text column `key` (nodes by id, documents by name),
/// strictly after `after`: with the key indexed, a range read of `limit` entries and no sort.
pub(crate) fn key_page_sql(
    select_from: &str,
    key: &str,
    after: Option<&str>,
    limit: usize,
) -> BuiltQuery {
    let mut t = Terms::default();
    if let Some(after) = after {
        t.push(format!("{key} > ?"), [text_value(after)]);
    }
    t.finish(select_from, key, limit)
}

/// Runs a built query, decoding each row with `decode`.
pub(crate) fn query_built<T>(
    conn: &Connection,
    q: &BuiltQuery,
    decode: impl Fn(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(&q.sql)?;
    let mut rows = stmt.query(params_from_iter(q.params.iter()))?;
    let mut out = Vec::with_capacity(q.limit.min(PRESIZE_ROWS));
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

fn text_value(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// Keeps only the tighter of `InvokedBefore` and the keyset bound: given both, SQLite ranges the
/// index on one and filters on the other, which on a deep page would walk every row already paged.
/// If the cursor is older than `before` the cursor implies `before`; otherwise every row older than
/// `before` is past the cursor.
fn upper_bound(
    before: Option<Millis>,
    after: Option<&PageKey>,
) -> (Option<Millis>, Option<&PageKey>) {
    match (before, after) {
        (Some(until), Some(key)) if key.requested_at < until => (None, Some(key)),
        (Some(until), Some(_)) => (Some(until), None),
        other => other,
    }
}

/// The ListCommands SQL for one page.
///
/// With an `InstanceId` filter the query is driven from that node's invocations (index
/// `invocations_by_node`, whose `requested_at` mirrors the command's) and joins each command by seq;
/// otherwise it reads `commands` through the index of its most selective equality filter, whose
/// trailing `(requested_at, seq)` columns give the order and the keyset bound for free.
pub(crate) fn list_commands_sql(
    q: &CommandQuery,
    after: Option<&PageKey>,
    limit: usize,
) -> BuiltQuery {
    let mut t = Terms::default();
    let (select_from, time, seq) = match &q.instance_id {
        Some(node) => {
            t.push("i.instance_id = ?", [text_value(node.as_str())]);
            (
                format!(
                    "SELECT {LISTED_COLUMNS} FROM invocations i \
                     CROSS JOIN commands c ON c.seq = i.command_seq"
                ),
                "i.requested_at",
                "i.command_seq",
            )
        }
        None => (
            format!("SELECT {LISTED_COLUMNS} FROM commands c"),
            "c.requested_at",
            "c.seq",
        ),
    };
    if let Some(id) = &q.command_id {
        t.push("c.command_id = ?", [text_value(id.as_str())]);
    }
    for status in &q.statuses {
        match status {
            StatusMatch::Status(s) => t.push("c.status = ?", [text_value(s)]),
            StatusMatch::Details(s) => t.push("c.status_details = ?", [text_value(s)]),
        }
    }
    for name in &q.document_names {
        t.push("c.document_name = ?", [text_value(name)]);
    }
    match q.stage {
        Some(ExecutionStage::Executing) => t.push("c.terminal = 0", []),
        Some(ExecutionStage::Complete) => t.push("c.terminal = 1", []),
        None => {}
    }
    if let Some(from) = q.invoked_after {
        t.push(format!("{time} >= ?"), [Value::Integer(from)]);
    }
    let (before, after) = upper_bound(q.invoked_before, after);
    if let Some(until) = before {
        t.push(format!("{time} < ?"), [Value::Integer(until)]);
    }
    if let Some(key) = after {
        t.push(
            format!("({time}, {seq}) < (?, ?)"),
            [Value::Integer(key.requested_at), Value::Integer(key.seq)],
        );
    }
    t.finish(&select_from, &format!("{time} DESC, {seq} DESC"), limit)
}

/// The ListCommandInvocations SQL for one page: newest command first, then node id descending.
///
/// `Status` matches the invocation's coarse status or its fine state; `stage` does not apply to
/// invocations and is ignored. Within one command (a `CommandId` filter) `requested_at` and
/// `command_seq` are constant, so the order reduces to the node id and the primary key serves it.
pub(crate) fn list_invocations_sql(
    q: &CommandQuery,
    after: Option<&PageKey>,
    limit: usize,
) -> BuiltQuery {
    let mut t = Terms::default();
    if let Some(node) = &q.instance_id {
        t.push("i.instance_id = ?", [text_value(node.as_str())]);
    }
    if let Some(id) = &q.command_id {
        t.push("i.command_id = ?", [text_value(id.as_str())]);
    }
    for status in &q.statuses {
        match status {
            StatusMatch::Status(s) => t.push("i.status = ?", [text_value(s)]),
            StatusMatch::Details(s) => t.push("i.state = ?", [text_value(s)]),
        }
    }
    for name in &q.document_names {
        t.push("i.document_name = ?", [text_value(name)]);
    }
    if let Some(from) = q.invoked_after {
        t.push("i.requested_at >= ?", [Value::Integer(from)]);
    }
    let (before, after) = upper_bound(q.invoked_before, after);
    if let Some(until) = before {
        t.push("i.requested_at < ?", [Value::Integer(until)]);
    }
    if let Some(key) = after {
        match &key.instance_id {
            Some(node) => t.push(
                "(i.requested_at, i.command_seq, i.instance_id) < (?, ?, ?)",
                [
                    Value::Integer(key.requested_at),
                    Value::Integer(key.seq),
                    text_value(node),
                ],
            ),
            None => t.push(
                "(i.requested_at, i.command_seq) < (?, ?)",
                [Value::Integer(key.requested_at), Value::Integer(key.seq)],
            ),
        }
    }
    let order_by = if q.command_id.is_some() && q.instance_id.is_none() {
        "i.instance_id DESC"
    } else {
        "i.requested_at DESC, i.command_seq DESC, i.instance_id DESC"
    };
    let select_from = format!("SELECT {INVOCATION_COLUMNS} FROM invocations i");
    t.finish(&select_from, order_by, limit)
}

pub(crate) fn list_commands(conn: &Connection, q: &BuiltQuery) -> Result<Vec<ListedCommand>> {
    let mut stmt = conn.prepare_cached(&q.sql)?;
    let mut rows = stmt.query(params_from_iter(q.params.iter()))?;
    // Sized for a full page up front: growing a Vec of these large rows while decoding them made
    // glibc consolidate the decoder's freed fragments on every regrowth (~11 % of a page walk).
    let mut out = Vec::with_capacity(q.limit.min(PRESIZE_ROWS));
    while let Some(row) = rows.next()? {
        out.push(listed_from_row(conn, row)?);
    }
    Ok(out)
}

pub(crate) fn list_invocations(conn: &Connection, q: &BuiltQuery) -> Result<Vec<Invocation>> {
    let mut stmt = conn.prepare_cached(&q.sql)?;
    let mut rows = stmt.query(params_from_iter(q.params.iter()))?;
    let mut out = Vec::with_capacity(q.limit.min(PRESIZE_ROWS));
    while let Some(row) = rows.next()? {
        out.push(invocation_from_row(row)?);
    }
    Ok(out)
}

/// `EXPLAIN QUERY PLAN` of `q`, one plan node per line, indented by depth.
pub(crate) fn explain(conn: &Connection, q: &BuiltQuery) -> Result<String> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", q.sql))?;
    let mut rows = stmt.query(params_from_iter(q.params.iter()))?;
    let mut depth_of: Vec<(i64, usize)> = Vec::new();
    let mut out = String::new();
    while let Some(row) = rows.next()? {
        let (id, parent): (i64, i64) = (row.get(0)?, row.get(1)?);
        let detail: String = row.get(3)?;
        let depth = depth_of
            .iter()
            .find(|(pid, _)| *pid == parent)
            .map_or(0, |(_, d)| d + 1);
        depth_of.push((id, depth));
        out.push_str(&"  ".repeat(depth));
        out.push_str(&detail);
        out.push('\n');
    }
    Ok(out)
}
