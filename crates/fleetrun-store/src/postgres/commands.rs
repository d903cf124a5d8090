//! Commands and invocations as rows: inserting a command with its invocations, bulk seeding,
//! reading them back, and the ListCommands / ListCommandInvocations queries (filters, newest-first
//! order, keyset paging).
//!
//! The list SQL is built in one place ([`list_commands_sql`], [`list_invocations_sql`]) so the
//! `EXPLAIN` helpers check exactly what runs. The paging key means what it means on SQLite:
//! `(requested_at, seq)` of the last row (plus the node id for invocations), compared as a row, so
//! a NextToken issued by one server continues on any other server of the same database. State
//! changes after insertion belong to `lifecycle`, never here.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{GenericClient, Transaction};
use fleetrun_core::clock::Millis;
use fleetrun_core::command::{
    Command, CommandEcho, Invocation, ListedBody, ListedCommand, NewCommand, StepResult,
};
use fleetrun_core::document::Plan;
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::query::{CommandQuery, ExecutionStage, PageKey, StatusMatch};
use fleetrun_core::status::{
    aggregate, CommandAggregate, InvocationEvent, InvocationState, StateCounts,
};
use fleetrun_core::CoreError;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Row;

use super::lifecycle::{InvocationRef, Transitions};
use super::{
    col, col_u32, command_id, instance_id, invocation_state, query_listing, query_one, query_opt,
    Error, Param, Result,
};

/// The columns [`command_from_row`] decodes, in order (the table is aliased `c`).
const COMMAND_COLUMNS: &str =
    "c.seq, c.command_id, c.requested_at, c.expires_at, c.document_name, \
     c.document_version, c.comment, c.timeout_seconds, c.max_concurrency, c.max_errors, \
     c.error_budget, c.echo_json, c.plan_json, c.counts_json, c.cancel_requested";

/// [`COMMAND_COLUMNS`] as a ListCommands page reads them, plus the rendering (column 15): a
/// rendered command's echo and plan are not sent over the wire; an unrendered one is decoded
/// whole from the same row (so from the same snapshot).
const LISTED_COLUMNS: &str = "c.seq, c.command_id, c.requested_at, c.expires_at, c.document_name, \
     c.document_version, c.comment, c.timeout_seconds, c.max_concurrency, c.max_errors, \
     c.error_budget, CASE WHEN c.rendered IS NULL THEN c.echo_json END, \
     CASE WHEN c.rendered IS NULL THEN c.plan_json END, c.counts_json, c.cancel_requested, \
     c.rendered";

/// The columns [`invocation_from_row`] decodes, in order (the table is aliased `i`).
const INVOCATION_COLUMNS: &str = "i.command_id, i.command_seq, i.instance_id, i.requested_at, \
     i.state, i.response_code, i.started_at, i.ended_at, i.steps_json";

pub(crate) fn command_from_row(row: &Row) -> Result<Command> {
    let echo: CommandEcho = serde_json::from_str(col(row, 11)?)?;
    let plan: Plan = serde_json::from_str(col(row, 12)?)?;
    let counts: StateCounts = serde_json::from_str(col(row, 13)?)?;
    Ok(Command {
        seq: col(row, 0)?,
        id: command_id(col(row, 1)?)?,
        requested_at: col(row, 2)?,
        expires_at: col(row, 3)?,
        document_name: col(row, 4)?,
        document_version: col(row, 5)?,
        comment: col(row, 6)?,
        timeout_seconds: col_u32(row, 7)?,
        max_concurrency: col(row, 8)?,
        max_errors: col(row, 9)?,
        error_budget: col_u32(row, 10)?,
        echo,
        plan,
        counts,
        cancel_requested: col(row, 14)?,
    })
}

fn listed_from_row(row: &Row) -> Result<ListedCommand> {
    let body = match col::<Option<&str>>(row, 15)? {
        Some(rendered) => ListedBody::Rendered(rendered.to_owned()),
        None => ListedBody::Whole(Box::new(command_from_row(row)?)),
    };
    Ok(ListedCommand {
        seq: col(row, 0)?,
        id: command_id(col(row, 1)?)?,
        requested_at: col(row, 2)?,
        error_budget: col_u32(row, 10)?,
        counts: serde_json::from_str(col(row, 13)?)?,
        cancel_requested: col(row, 14)?,
        body,
    })
}

pub(crate) fn invocation_from_row(row: &Row) -> Result<Invocation> {
    let steps: Vec<StepResult> = match col::<Option<&str>>(row, 8)? {
        Some(json) => serde_json::from_str(json)?,
        None => Vec::new(),
    };
    Ok(Invocation {
        command_id: command_id(col(row, 0)?)?,
        command_seq: col(row, 1)?,
        instance_id: instance_id(col(row, 2)?)?,
        requested_at: col(row, 3)?,
        state: invocation_state(col(row, 4)?)?,
        response_code: col(row, 5)?,
        started_at: col(row, 6)?,
        ended_at: col(row, 7)?,
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

/// What a command's row starts with when all its `n` invocations are in `state`: counts,
/// aggregate, cancel flag, and (for seeded rows, `released`) the rollout counters.
struct Start {
    counts: StateCounts,
    agg: CommandAggregate,
    cancel_requested: bool,
    released: i64,
    acked: i64,
    settled: i64,
}

fn start(cmd: &NewCommand, state: InvocationState, released: bool) -> Result<Start> {
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
    let n = i64::from(n);
    let (released, acked, settled) = if released {
        let acked = if state == InvocationState::Pending {
            0
        } else {
            n
        };
        (n, acked, if state.is_terminal() { n } else { 0 })
    } else {
        (0, 0, 0)
    };
    Ok(Start {
        counts,
        agg,
        cancel_requested,
        released,
        acked,
        settled,
    })
}

/// How a seeded invocation in `state` looks: (response code, started_at, ended_at). Seeded
/// invocations that ran are stamped as having run instantly at the request time.
fn seeded_times(cmd: &NewCommand, state: InvocationState) -> (i64, Option<Millis>, Option<Millis>) {
    use InvocationState as S;
    let ran = matches!(state, S::Success | S::Failed | S::ExecutionTimedOut);
    let started = ran || matches!(state, S::InProgress | S::Cancelling);
    let response_code = match state {
        S::Success => 0,
        S::Failed => 1,
        _ => -1,
    };
    (
        response_code,
        started.then_some(cmd.requested_at),
        ran.then_some(cmd.requested_at),
    )
}

const INSERT_COMMAND_SQL: &str = "INSERT INTO commands (command_id, requested_at, expires_at,
         document_name, document_version, comment, timeout_seconds, max_concurrency, max_errors,
         error_budget, echo_json, plan_json, counts_json, cancel_requested, status,
         status_details, terminal, released, acked, settled, rendered)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
         $19, $20, $21)
     RETURNING seq";

/// SendCommand's write: the command and its Pending invocations (one statement for all targets),
/// and the first release of its rollout, atomically. Returns the seq, the counts and cancel flag
/// stored, and the nodes that received work.
pub(crate) async fn insert(
    tx: &Transaction<'_>,
    cmd: &NewCommand,
) -> Result<(i64, StateCounts, bool, Vec<InstanceId>)> {
    reject_duplicate_targets(&cmd.targets)?;
    let s = start(cmd, InvocationState::Pending, false)?;
    let row = query_one(
        tx,
        INSERT_COMMAND_SQL,
        &[
            &cmd.id.as_str(),
            &cmd.requested_at,
            &cmd.expires_at,
            &cmd.document_name,
            &cmd.document_version,
            &cmd.comment,
            &i64::from(cmd.timeout_seconds),
            &cmd.max_concurrency,
            &cmd.max_errors,
            &i64::from(cmd.error_budget),
            &serde_json::to_string(&cmd.echo)?,
            &serde_json::to_string(&cmd.plan)?,
            &serde_json::to_string(&s.counts)?,
            &s.cancel_requested,
            &s.agg.state.status().as_str(),
            &s.agg.state.as_str(),
            &s.agg.state.is_terminal(),
            &s.released,
            &s.acked,
            &s.settled,
            &cmd.rendered,
        ],
    )
    .await?;
    let seq: i64 = col(&row, 0)?;
    let targets: Vec<&str> = cmd.targets.iter().map(InstanceId::as_str).collect();
    let pending = InvocationState::Pending;
    let inserted = super::execute(
        tx,
        "INSERT INTO invocations (command_seq, command_id, instance_id, requested_at,
             document_name, state, status, released)
         SELECT $1, $2, t, $3, $4, $5, $6, FALSE FROM UNNEST($7::text[]) AS t",
        &[
            &seq,
            &cmd.id.as_str(),
            &cmd.requested_at,
            &cmd.document_name,
            &pending.as_str(),
            &pending.status().as_str(),
            &targets,
        ],
    )
    .await;
    if let Err(e) = inserted {
        // Targets are checked above; a duplicate here would still be the caller's, not ours.
        return Err(match e.unique_violation() {
            Some("invocations_pkey") => {
                CoreError::DuplicateInstance(format!("a target of {}", cmd.id)).into()
            }
            _ => e,
        });
    }
    let mut tr = Transitions::default();
    tr.touch(tx, seq).await?;
    for node in &cmd.access_denied {
        let invocation = InvocationRef {
            command_seq: seq,
            command_id: cmd.id.as_str().to_owned(),
            instance_id: node.as_str().to_owned(),
            state: InvocationState::Pending,
        };
        tr.apply(tx, &invocation, InvocationEvent::AccessDenied)
            .await?;
    }
    let counts = tr.touched.get(&seq).map_or(s.counts, |t| t.counts);
    let wake = tr.flush(tx).await?;
    Ok((seq, counts, s.cancel_requested, wake))
}

/// Commands per multi-row INSERT of the bulk seed.
const BULK_CHUNK: usize = 2_000;

/// Many commands in the caller's transaction, each with all its invocations in the given state:
/// commands by multi-row `INSERT ... SELECT FROM UNNEST` of column arrays (which hands back their
/// seqs), invocations by one binary COPY.
pub(crate) async fn insert_bulk(
    tx: &Transaction<'_>,
    cmds: &[(NewCommand, Option<InvocationState>)],
) -> Result<()> {
    // A million commands take longer than any sensible statement timeout.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    for (cmd, _) in cmds {
        reject_duplicate_targets(&cmd.targets)?;
    }
    let mut seqs: HashMap<String, i64> = HashMap::with_capacity(cmds.len());
    for chunk in cmds.chunks(BULK_CHUNK) {
        insert_command_chunk(tx, chunk, &mut seqs).await?;
    }
    let sink = tx
        .copy_in(
            "COPY invocations (command_seq, command_id, instance_id, requested_at, document_name,
                 state, status, released, response_code, started_at, ended_at)
             FROM STDIN (FORMAT binary)",
        )
        .await?;
    let types = [
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::BOOL,
        Type::INT8,
        Type::INT8,
        Type::INT8,
    ];
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    for (cmd, state) in cmds {
        let state = state.unwrap_or(InvocationState::Pending);
        let seq = *seqs
            .get(cmd.id.as_str())
            .ok_or_else(|| Error::Corrupt(format!("no seq came back for {}", cmd.id)))?;
        let (code, started_at, ended_at) = seeded_times(cmd, state);
        for target in &cmd.targets {
            writer
                .as_mut()
                .write(&[
                    &seq,
                    &cmd.id.as_str(),
                    &target.as_str(),
                    &cmd.requested_at,
                    &cmd.document_name,
                    &state.as_str(),
                    &state.status().as_str(),
                    &true,
                    &code,
                    &started_at,
                    &ended_at,
                ])
                .await?;
        }
    }
    writer.as_mut().finish().await?;
    Ok(())
}

async fn insert_command_chunk(
    tx: &Transaction<'_>,
    chunk: &[(NewCommand, Option<InvocationState>)],
    seqs: &mut HashMap<String, i64>,
) -> Result<()> {
    let n = chunk.len();
    let mut ids = Vec::with_capacity(n);
    let (mut requested, mut expires) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut docs, mut doc_versions, mut comments) = (Vec::new(), Vec::new(), Vec::new());
    let (mut timeouts, mut concurrency, mut max_errors) = (Vec::new(), Vec::new(), Vec::new());
    let (mut budgets, mut echoes, mut plans, mut counts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut cancels, mut statuses, mut details, mut terminals) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut released, mut acked, mut settled, mut rendered) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (cmd, state) in chunk {
        let s = start(cmd, state.unwrap_or(InvocationState::Pending), true)?;
        ids.push(cmd.id.as_str());
        requested.push(cmd.requested_at);
        expires.push(cmd.expires_at);
        docs.push(cmd.document_name.as_str());
        doc_versions.push(cmd.document_version.as_str());
        comments.push(cmd.comment.as_str());
        timeouts.push(i64::from(cmd.timeout_seconds));
        concurrency.push(cmd.max_concurrency.as_str());
        max_errors.push(cmd.max_errors.as_str());
        budgets.push(i64::from(cmd.error_budget));
        echoes.push(serde_json::to_string(&cmd.echo)?);
        plans.push(serde_json::to_string(&cmd.plan)?);
        counts.push(serde_json::to_string(&s.counts)?);
        cancels.push(s.cancel_requested);
        statuses.push(s.agg.state.status().as_str());
        details.push(s.agg.state.as_str());
        terminals.push(s.agg.state.is_terminal());
        released.push(s.released);
        acked.push(s.acked);
        settled.push(s.settled);
        rendered.push(cmd.rendered.as_deref());
    }
    let rows = super::query(
        tx,
        "INSERT INTO commands (command_id, requested_at, expires_at, document_name,
             document_version, comment, timeout_seconds, max_concurrency, max_errors,
             error_budget, echo_json, plan_json, counts_json, cancel_requested, status,
             status_details, terminal, released, acked, settled, rendered)
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
             $6::text[], $7::bigint[], $8::text[], $9::text[], $10::bigint[], $11::text[],
             $12::text[], $13::text[], $14::boolean[], $15::text[], $16::text[], $17::boolean[],
             $18::bigint[], $19::bigint[], $20::bigint[], $21::text[])
         RETURNING command_id, seq",
        &[
            &ids,
            &requested,
            &expires,
            &docs,
            &doc_versions,
            &comments,
            &timeouts,
            &concurrency,
            &max_errors,
            &budgets,
            &echoes,
            &plans,
            &counts,
            &cancels,
            &statuses,
            &details,
            &terminals,
            &released,
            &acked,
            &settled,
            &rendered,
        ],
    )
    .await?;
    for row in &rows {
        seqs.insert(col(row, 0)?, col(row, 1)?);
    }
    Ok(())
}

pub(crate) async fn get<C: GenericClient>(c: &C, id: &CommandId) -> Result<Option<Command>> {
    let sql = format!("SELECT {COMMAND_COLUMNS} FROM commands c WHERE c.command_id = $1");
    query_opt(c, &sql, &[&id.as_str()])
        .await?
        .map(|row| command_from_row(&row))
        .transpose()
}

pub(crate) async fn get_invocation<C: GenericClient>(
    c: &C,
    command: &CommandId,
    node: &InstanceId,
) -> Result<Option<Invocation>> {
    let sql = format!(
        "SELECT {INVOCATION_COLUMNS} FROM invocations i
         WHERE i.command_id = $1 AND i.instance_id = $2"
    );
    query_opt(c, &sql, &[&command.as_str(), &node.as_str()])
        .await?
        .map(|row| invocation_from_row(&row))
        .transpose()
}

/// A list query ready to run: SQL with numbered parameters and their values.
#[derive(Debug, Clone)]
pub(crate) struct BuiltQuery {
    pub(crate) sql: String,
    pub(crate) params: Vec<Param>,
    /// The LIMIT: the most rows the query returns.
    pub(crate) limit: usize,
}

/// ANDed WHERE terms and their parameters.
#[derive(Default)]
struct Terms {
    terms: Vec<String>,
    params: Vec<Param>,
}

impl Terms {
    /// Adds a term whose `?` placeholders stand for `values`, in order.
    fn push(&mut self, term: &str, values: impl IntoIterator<Item = Param>) {
        let mut sql = String::with_capacity(term.len() + 4);
        let mut values = values.into_iter();
        for ch in term.chars() {
            match ch {
                '?' => {
                    if let Some(v) = values.next() {
                        self.params.push(v);
                    }
                    sql.push_str(&format!("${}", self.params.len()));
                }
                other => sql.push(other),
            }
        }
        self.terms.push(sql);
    }

    /// `order_by` `None`: the filters admit at most one row, so no order is asked for (and the
    /// planner adds no Sort to the unique index read).
    fn finish(self, select_from: &str, order_by: Option<&str>, limit: usize) -> BuiltQuery {
        let mut sql = String::from(select_from);
        if !self.terms.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.terms.join(" AND "));
        }
        if let Some(order_by) = order_by {
            sql.push_str(" ORDER BY ");
            sql.push_str(order_by);
        }
        // A literal, not a parameter: the planner then knows how few rows are wanted.
        sql.push_str(&format!(" LIMIT {limit}"));
        BuiltQuery {
            sql,
            params: self.params,
            limit,
        }
    }
}

fn text(s: &str) -> Param {
    Param::Text(s.to_string())
}

/// Keeps only the tighter of `InvokedBefore` and the keyset bound (as on SQLite): given both, the
/// index range would start at one and filter on the other, which on a deep page walks every row
/// already paged. If the cursor is older than `before` the cursor implies `before`; otherwise
/// every row older than `before` is past the cursor.
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

/// The equality filter whose index a page is read through: `column = value`, where the index is
/// `(column, requested_at, seq[, instance_id])`.
///
/// Why not plain `column = $1 ... ORDER BY requested_at DESC, seq DESC`: then `column` is a
/// constant to the planner, every index ending in `(requested_at, seq)` gives that order, and
/// with statistics it may prefer `commands_by_time` and filter — fine while matching rows are
/// spread evenly over time, a walk of the whole table when they are all old (stuck Pending
/// commands). Written as a range on the leading column with the order including it, only the
/// intended index gives the order without a sort, so the plan is one backward range read of that
/// index whatever the statistics say. The range `column BETWEEN value AND value` and the row
/// bounds below select exactly the rows the equality would.
struct Lead {
    column: &'static str,
    value: Param,
}

impl Lead {
    /// The lower bound: `column = value` and, with `from`, `requested_at >= from`.
    fn lower(&self, t: &mut Terms, time: &str, seq: &str, from: Option<Millis>) {
        let column = self.column;
        match from {
            Some(from) => t.push(
                &format!("({column}, {time}, {seq}) >= (?, ?, ?)"),
                [self.value.clone(), Param::Int(from), Param::Int(i64::MIN)],
            ),
            None => t.push(&format!("{column} >= ?"), [self.value.clone()]),
        }
    }

    /// The upper bound: `column = value` and `requested_at < until`, or `(requested_at, seq) <
    /// key` (`or_equal`: `<=`, for invocations whose node tiebreak is checked separately).
    fn upper(
        &self,
        t: &mut Terms,
        time: &str,
        seq: &str,
        until: Option<Millis>,
        key: Option<&PageKey>,
        or_equal: bool,
    ) {
        let column = self.column;
        let op = if or_equal { "<=" } else { "<" };
        match (until, key) {
            (_, Some(key)) => t.push(
                &format!("({column}, {time}, {seq}) {op} (?, ?, ?)"),
                [
                    self.value.clone(),
                    Param::Int(key.requested_at),
                    Param::Int(key.seq),
                ],
            ),
            (Some(until), None) => t.push(
                &format!("({column}, {time}, {seq}) < (?, ?, ?)"),
                [self.value.clone(), Param::Int(until), Param::Int(i64::MIN)],
            ),
            (None, None) => t.push(&format!("{column} <= ?"), [self.value.clone()]),
        }
    }
}

/// The ListCommands SQL for one page.
///
/// With an `InstanceId` filter the query is driven from that node's invocations (index
/// `invocations_by_node`, whose `requested_at` mirrors the command's) and joins each command by
/// seq; otherwise it reads `commands` through the index of one equality filter (see [`Lead`]:
/// Status, then DocumentName, then ExecutionStage; the others filter that read), or through
/// `commands_by_time` when there is none. A `CommandId` filter admits one command at most: read by
/// the unique index, with no order.
pub(crate) fn list_commands_sql(
    q: &CommandQuery,
    after: Option<&PageKey>,
    limit: usize,
) -> BuiltQuery {
    let mut t = Terms::default();
    let (select_from, time, seq) = match &q.instance_id {
        Some(_) => (
            format!(
                "SELECT {LISTED_COLUMNS} FROM invocations i \
                 JOIN commands c ON c.seq = i.command_seq"
            ),
            "i.requested_at",
            "i.command_seq",
        ),
        None => (
            format!("SELECT {LISTED_COLUMNS} FROM commands c"),
            "c.requested_at",
            "c.seq",
        ),
    };
    let mut equal: Vec<Lead> = Vec::new();
    if let Some(node) = &q.instance_id {
        equal.push(Lead {
            column: "i.instance_id",
            value: text(node.as_str()),
        });
    }
    for status in &q.statuses {
        equal.push(match status {
            StatusMatch::Status(s) => Lead {
                column: "c.status",
                value: text(s),
            },
            StatusMatch::Details(s) => Lead {
                column: "c.status_details",
                value: text(s),
            },
        });
    }
    for name in &q.document_names {
        equal.push(Lead {
            column: "c.document_name",
            value: text(name),
        });
    }
    if let Some(stage) = q.stage {
        equal.push(Lead {
            column: "c.terminal",
            value: Param::Bool(stage == ExecutionStage::Complete),
        });
    }
    let (before, after) = upper_bound(q.invoked_before, after);
    let order_by = match &q.command_id {
        Some(cid) => {
            // At most one row: plain equalities (with an InstanceId, the invocations' primary key
            // (command_id, instance_id) finds it).
            let id = if q.instance_id.is_some() {
                "i.command_id"
            } else {
                "c.command_id"
            };
            t.push(&format!("{id} = ?"), [text(cid.as_str())]);
            for e in equal {
                t.push(&format!("{} = ?", e.column), [e.value]);
            }
            plain_time_bounds(&mut t, time, seq, q.invoked_after, before, after);
            None
        }
        None => {
            let mut equal = equal.into_iter();
            let lead = equal.next();
            for e in equal {
                t.push(&format!("{} = ?", e.column), [e.value]);
            }
            match lead {
                Some(lead) => {
                    lead.lower(&mut t, time, seq, q.invoked_after);
                    lead.upper(&mut t, time, seq, before, after, false);
                    Some(format!("{} DESC, {time} DESC, {seq} DESC", lead.column))
                }
                None => {
                    plain_time_bounds(&mut t, time, seq, q.invoked_after, before, after);
                    Some(format!("{time} DESC, {seq} DESC"))
                }
            }
        }
    };
    t.finish(&select_from, order_by.as_deref(), limit)
}

/// InvokedAfter, InvokedBefore and the keyset bound as plain comparisons (the index read is on
/// `(requested_at, seq)` itself, or the filters admit one row).
fn plain_time_bounds(
    t: &mut Terms,
    time: &str,
    seq: &str,
    from: Option<Millis>,
    until: Option<Millis>,
    key: Option<&PageKey>,
) {
    if let Some(from) = from {
        t.push(&format!("{time} >= ?"), [Param::Int(from)]);
    }
    if let Some(until) = until {
        t.push(&format!("{time} < ?"), [Param::Int(until)]);
    }
    if let Some(key) = key {
        t.push(
            &format!("({time}, {seq}) < (?, ?)"),
            [Param::Int(key.requested_at), Param::Int(key.seq)],
        );
    }
}

/// The ListCommandInvocations SQL for one page: newest command first, then node id descending.
///
/// `Status` matches the invocation's coarse status or its fine state; `stage` does not apply to
/// invocations and is ignored. The index read: `CommandId` (with `InstanceId`: one row) → the
/// primary key `(command_id, instance_id)`, whose node order is the listing's order within one
/// command; `InstanceId` → `invocations_by_node`; then Status, DocumentName as [`Lead`]s; none →
/// `invocations_by_time`.
pub(crate) fn list_invocations_sql(
    q: &CommandQuery,
    after: Option<&PageKey>,
    limit: usize,
) -> BuiltQuery {
    let mut t = Terms::default();
    let (time, seq, node) = ("i.requested_at", "i.command_seq", "i.instance_id");
    let mut equal: Vec<Lead> = Vec::new();
    if let Some(n) = &q.instance_id {
        equal.push(Lead {
            column: "i.instance_id",
            value: text(n.as_str()),
        });
    }
    for status in &q.statuses {
        equal.push(match status {
            StatusMatch::Status(s) => Lead {
                column: "i.status",
                value: text(s),
            },
            StatusMatch::Details(s) => Lead {
                column: "i.state",
                value: text(s),
            },
        });
    }
    for name in &q.document_names {
        equal.push(Lead {
            column: "i.document_name",
            value: text(name),
        });
    }
    let (before, after) = upper_bound(q.invoked_before, after);
    // The exact keyset bound; where an index range implies it, it is only rechecked.
    let keyset = |t: &mut Terms| {
        if let Some(key) = after {
            match &key.instance_id {
                Some(n) => t.push(
                    &format!("({time}, {seq}, {node}) < (?, ?, ?)"),
                    [Param::Int(key.requested_at), Param::Int(key.seq), text(n)],
                ),
                None => t.push(
                    &format!("({time}, {seq}) < (?, ?)"),
                    [Param::Int(key.requested_at), Param::Int(key.seq)],
                ),
            }
        }
    };
    let time_filters = |t: &mut Terms| {
        if let Some(from) = q.invoked_after {
            t.push(&format!("{time} >= ?"), [Param::Int(from)]);
        }
        if let Some(until) = before {
            t.push(&format!("{time} < ?"), [Param::Int(until)]);
        }
    };
    let order_by = if let Some(cid) = &q.command_id {
        for e in equal.iter().skip(usize::from(q.instance_id.is_some())) {
            t.push(&format!("{} = ?", e.column), [e.value.clone()]);
        }
        time_filters(&mut t);
        keyset(&mut t);
        match &q.instance_id {
            Some(n) => {
                // The primary key: one row at most.
                t.push("i.command_id = ?", [text(cid.as_str())]);
                t.push("i.instance_id = ?", [text(n.as_str())]);
                None
            }
            None => {
                // Within one command the order is the node's: the primary key, backwards.
                t.push(
                    "i.command_id >= ? AND i.command_id <= ?",
                    [text(cid.as_str()), text(cid.as_str())],
                );
                Some(format!("i.command_id DESC, {node} DESC"))
            }
        }
    } else {
        let mut rest = equal.into_iter();
        let lead = rest.next();
        for e in rest {
            t.push(&format!("{} = ?", e.column), [e.value]);
        }
        match lead {
            // invocations_by_node has no trailing node column (the node is the lead): the range
            // ends at (node, requested_at, seq) inclusive and the keyset recheck does the rest.
            Some(lead) if lead.column == node => {
                lead.lower(&mut t, time, seq, q.invoked_after);
                lead.upper(&mut t, time, seq, before, after, true);
                keyset(&mut t);
                Some(format!("{node} DESC, {time} DESC, {seq} DESC"))
            }
            Some(lead) => {
                let column = lead.column;
                match q.invoked_after {
                    Some(from) => t.push(
                        &format!("({column}, {time}, {seq}, {node}) >= (?, ?, ?, ?)"),
                        [
                            lead.value.clone(),
                            Param::Int(from),
                            Param::Int(i64::MIN),
                            text(""),
                        ],
                    ),
                    None => t.push(&format!("{column} >= ?"), [lead.value.clone()]),
                }
                match after {
                    Some(PageKey {
                        requested_at,
                        seq: key_seq,
                        instance_id: Some(n),
                    }) => t.push(
                        &format!("({column}, {time}, {seq}, {node}) < (?, ?, ?, ?)"),
                        [
                            lead.value.clone(),
                            Param::Int(*requested_at),
                            Param::Int(*key_seq),
                            text(n),
                        ],
                    ),
                    _ => lead.upper(&mut t, time, seq, before, after, false),
                }
                Some(format!(
                    "{column} DESC, {time} DESC, {seq} DESC, {node} DESC"
                ))
            }
            None => {
                time_filters(&mut t);
                keyset(&mut t);
                Some(format!("{time} DESC, {seq} DESC, {node} DESC"))
            }
        }
    };
    let select_from = format!("SELECT {INVOCATION_COLUMNS} FROM invocations i");
    t.finish(&select_from, order_by.as_deref(), limit)
}

pub(crate) async fn list_commands(
    c: &tokio_postgres::Client,
    q: &BuiltQuery,
) -> Result<Vec<ListedCommand>> {
    let rows = query_listing(c, &q.sql, &q.params).await?;
    debug_assert!(rows.len() <= q.limit);
    rows.iter().map(listed_from_row).collect()
}

pub(crate) async fn list_invocations(
    c: &tokio_postgres::Client,
    q: &BuiltQuery,
) -> Result<Vec<Invocation>> {
    let rows = query_listing(c, &q.sql, &q.params).await?;
    rows.iter().map(invocation_from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut q = CommandQuery {
            statuses: vec![StatusMatch::Status("Failed")],
            invoked_after: Some(5),
            ..Default::default()
        };
        q.document_names.push("Doc".into());
        let key = PageKey {
            requested_at: 9,
            seq: 3,
            instance_id: None,
        };
        let built = list_commands_sql(&q, Some(&key), 51);
        assert!(
            built.sql.ends_with(
                "WHERE c.document_name = $1 \
                 AND (c.status, c.requested_at, c.seq) >= ($2, $3, $4) \
                 AND (c.status, c.requested_at, c.seq) < ($5, $6, $7) \
                 ORDER BY c.status DESC, c.requested_at DESC, c.seq DESC LIMIT 51"
            ),
            "{}",
            built.sql
        );
        assert_eq!(built.params.len(), 7);
    }

    #[test]
    fn a_command_id_filter_asks_for_no_order() {
        let q = CommandQuery {
            command_id: Some(CommandId::generate()),
            ..Default::default()
        };
        let built = list_commands_sql(&q, None, 51);
        assert!(!built.sql.contains("ORDER BY"), "{}", built.sql);
        let q = CommandQuery {
            instance_id: InstanceId::parse("mi-0123456789abcdef0"),
            ..q
        };
        let built = list_commands_sql(&q, None, 51);
        assert!(built.sql.contains("i.command_id = $1"), "{}", built.sql);
    }
}
