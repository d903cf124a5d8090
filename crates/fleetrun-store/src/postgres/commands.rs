//! Commands and invocations as rows: inserting a command with its invocations, bulk seeding, and
//! reading them back (the listings are in `listing`). State changes after insertion belong to
//! `lifecycle`, never here.

use fleetrun_core::notification::NotifySpec;
use std::collections::{HashMap, HashSet};

use deadpool_postgres::{GenericClient, Transaction};
use fleetrun_core::clock::Millis;
use fleetrun_core::command::{
    Command, CommandEcho, Invocation, ListedBody, ListedCommand, NewCommand, StepResult,
};
use fleetrun_core::document::Plan;
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::lifecycle::Effects;
use fleetrun_core::status::{
    aggregate, CommandAggregate, InvocationEvent, InvocationState, StateCounts,
};
use fleetrun_core::CoreError;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Row;

use super::transitions::{InvocationRef, Transitions};
use super::{
    col, col_u32, command_id, instance_id, invocation_state, query_one, query_opt, Error, Result,
};

/// The columns [`command_from_row`] decodes, in order (the table is aliased `c`).
const COMMAND_COLUMNS: &str =
    "c.seq, c.command_id, c.requested_at, c.expires_at, c.document_name, \
     c.document_version, c.comment, c.timeout_seconds, c.max_concurrency, c.max_errors, \
     c.error_budget, c.echo_json, c.plan_json, c.counts_json, c.cancel_requested, \
     c.triggered_json";

/// [`COMMAND_COLUMNS`] as a ListCommands page reads them, plus the rendering (column 16): a
/// rendered command's echo and plan are not sent over the wire; an unrendered one is decoded
/// whole from the same row (so from the same snapshot).
pub(crate) const LISTED_COLUMNS: &str =
    "c.seq, c.command_id, c.requested_at, c.expires_at, c.document_name, \
     c.document_version, c.comment, c.timeout_seconds, c.max_concurrency, c.max_errors, \
     c.error_budget, CASE WHEN c.rendered IS NULL THEN c.echo_json END, \
     CASE WHEN c.rendered IS NULL THEN c.plan_json END, c.counts_json, c.cancel_requested, \
     c.triggered_json, c.rendered";

/// The columns [`invocation_from_row`] decodes, in order (the table is aliased `i`).
pub(crate) const INVOCATION_COLUMNS: &str =
    "i.command_id, i.command_seq, i.instance_id, i.requested_at, \
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
        triggered_alarms: match col::<Option<&str>>(row, 15)? {
            Some(json) => serde_json::from_str(json)?,
            None => Vec::new(),
        },
    })
}

pub(crate) fn listed_from_row(row: &Row) -> Result<ListedCommand> {
    let body = match col::<Option<&str>>(row, 16)? {
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
         status_details, terminal, released, acked, settled, rendered, notify_json, log_group,
         s3_bucket, alarm_name)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
         $19, $20, $21, $22, $23, $24, $25)
     RETURNING seq";

/// SendCommand's write: the command and its Pending invocations (one statement for all targets),
/// and the first release of its rollout, atomically. Returns the seq, the counts and cancel flag
/// stored, and the nodes that received work.
pub(crate) async fn insert(
    tx: &Transaction<'_>,
    cmd: &NewCommand,
) -> Result<(i64, StateCounts, bool, Effects)> {
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
            &NotifySpec::of(cmd)
                .map(|spec| serde_json::to_string(&spec))
                .transpose()?,
            &cmd.log_group(),
            &cmd.s3_bucket(),
            &cmd.alarm_watch().map(|w| w.alarm),
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
    let counts = tr.touched.get(&seq).map_or(s.counts, |t| t.tally.counts);
    let effects = tr.flush(tx).await?;
    Ok((seq, counts, s.cancel_requested, effects))
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
