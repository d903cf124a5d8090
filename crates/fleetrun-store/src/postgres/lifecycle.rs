//! Everything that moves an invocation after SendCommand: agent polls (claim), agent reports
//! (finish), CancelCommand, expiry, and retention (purge). The same rules as `sqlite/lifecycle.rs`,
//! made safe for several servers sharing the database.
//!
//! All state changes go through `transitions::Transitions` (lock the command's row, then
//! compare-and-set each invocation, then rewrite the command's counters once).
//!
//! The rule that keeps counts exact: every transaction that writes an invocation holds its
//! command's row lock, taken before the invocation is read. Under READ COMMITTED each statement
//! reads the latest committed rows, so an invocation read after the lock is what it really is, and
//! the counters in the locked row move with exactly the rows that change. Commands are locked in
//! seq order where a transaction needs several, so concurrent transactions rarely deadlock (and
//! are retried whole when they do).

use std::collections::HashSet;

use deadpool_postgres::{GenericClient, Transaction};
use fleetrun_core::clock::Millis;
use fleetrun_core::command::{Claim, Delivery, Finished, Report};
use fleetrun_core::document::Plan;
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::lifecycle::{cancel_scope, reconcile_held, report_times, Effects, HeldAction};
use fleetrun_core::status::InvocationEvent;
use fleetrun_core::store::CancelOutcome;
use fleetrun_core::CoreError;

use super::transitions::{InvocationRef, Transitions};
use super::{col, command_id, execute, invocation_state, query, query_opt, Result};

/// An invocation this node holds or may receive, with what a delivery needs.
struct NodeWork {
    inv: InvocationRef,
    delivered_session: Option<String>,
    cancel_sent: bool,
    document_name: String,
    plan_json: String,
}

impl NodeWork {
    fn delivery(&self) -> Result<Delivery> {
        let plan: Plan = serde_json::from_str(&self.plan_json)?;
        Ok(Delivery {
            command_id: command_id(&self.inv.command_id)?,
            document_name: self.document_name.clone(),
            plan,
        })
    }
}

/// The commands a poll of this node may change: those of the invocations it holds
/// (InProgress/Cancelling) and of those released to it and waiting (Pending/Delayed, unexpired).
/// Read before locking; the locked re-reads below decide.
const CANDIDATES_SQL: &str = "SELECT DISTINCT i.command_seq
     FROM invocations i JOIN commands c ON c.seq = i.command_seq
     WHERE i.instance_id = $1
       AND (i.state IN ('InProgress', 'Cancelling')
            OR (i.state IN ('Pending', 'Delayed') AND i.released AND c.expires_at > $2))";

/// This node's invocations that the agent holds (InProgress/Cancelling) among the locked
/// commands, oldest first.
const HELD_SQL: &str = "SELECT i.command_seq, i.command_id, i.state, i.delivered_session,
        i.cancel_sent, c.document_name, c.plan_json
     FROM invocations i JOIN commands c ON c.seq = i.command_seq
     WHERE i.instance_id = $1 AND i.state IN ('InProgress', 'Cancelling')
       AND c.expires_at > $2 AND i.command_seq = ANY($3)
     ORDER BY i.requested_at, i.command_seq";

/// This node's invocations released to it and waiting for delivery (Pending/Delayed) of unexpired
/// commands among the locked ones, oldest first.
const WAITING_SQL: &str = "SELECT i.command_seq, i.command_id, i.state, i.delivered_session,
        i.cancel_sent, c.document_name, c.plan_json
     FROM invocations i JOIN commands c ON c.seq = i.command_seq
     WHERE i.instance_id = $1 AND i.state IN ('Pending', 'Delayed') AND i.released
       AND c.expires_at > $2 AND i.command_seq = ANY($3)
     ORDER BY i.requested_at, i.command_seq";

/// Runs [`HELD_SQL`] or [`WAITING_SQL`] for `node`.
async fn node_work(
    tx: &Transaction<'_>,
    sql: &str,
    node: &InstanceId,
    now: Millis,
    locked: &[i64],
) -> Result<Vec<NodeWork>> {
    let rows = query(tx, sql, &[&node.as_str(), &now, &locked]).await?;
    rows.iter()
        .map(|r| {
            Ok(NodeWork {
                inv: InvocationRef {
                    command_seq: col(r, 0)?,
                    command_id: col(r, 1)?,
                    instance_id: node.as_str().to_string(),
                    state: invocation_state(col(r, 2)?)?,
                },
                delivered_session: col(r, 3)?,
                cancel_sent: col(r, 4)?,
                document_name: col(r, 5)?,
                plan_json: col(r, 6)?,
            })
        })
        .collect()
}

/// How stale a node's recorded heartbeat may get before an idle poll writes a fresh one. Well under
/// any sensible ping timeout (default 60 s), so PingStatus is unaffected.
const PING_REFRESH_MS: Millis = 5_000;

/// Whether a poll can be answered "nothing to do" without a transaction: the node holds no
/// invocation (nothing to reconcile or cancel), has none released and waiting, its heartbeat is
/// fresh and it has not signed off (the poll after a goodbye must make it reachable again).
pub(crate) async fn idle_poll<C: GenericClient>(
    c: &C,
    node: &InstanceId,
    now: Millis,
) -> Result<bool> {
    let found = query_opt(
        c,
        "SELECT n.last_ping_at, n.signed_off_at IS NOT NULL,
             EXISTS (SELECT 1 FROM invocations i
                     WHERE i.instance_id = n.instance_id
                       AND (i.state IN ('InProgress', 'Cancelling')
                            OR (i.state IN ('Pending', 'Delayed') AND i.released)))
         FROM nodes n WHERE n.instance_id = $1",
        &[&node.as_str()],
    )
    .await?;
    let Some(row) = found else {
        return Ok(false);
    };
    let (last_ping, signed_off, busy): (Millis, bool, bool) =
        (col(&row, 0)?, col(&row, 1)?, col(&row, 2)?);
    Ok(!signed_off && now - last_ping < PING_REFRESH_MS && !busy)
}

/// One agent poll. See [`fleetrun_core::Store::claim`]; the steps are:
/// 1. lock the node's row (the heartbeat), then the commands the poll may change;
/// 2. reconcile what the agent holds: an invocation it should hold but does not list in `known`
///    was either handed out on this same session and the response lost (deliver it again, in
///    `Claim::resent`) or died with a previous agent process (`LostByAgent`);
/// 3. cancellations not yet sent for invocations the agent holds;
/// 4. new work: Pending/Delayed invocations of unexpired commands become InProgress.
pub(crate) async fn claim(
    tx: &Transaction<'_>,
    node: &InstanceId,
    session: &str,
    known: &[CommandId],
    now: Millis,
) -> Result<Claim> {
    let known: HashSet<&str> = known.iter().map(CommandId::as_str).collect();
    // Lock order everywhere: the node, then commands by seq (deregister does the same).
    execute(
        tx,
        "UPDATE nodes SET last_ping_at = $2, signed_off_at = NULL WHERE instance_id = $1",
        &[&node.as_str(), &now],
    )
    .await?;
    let mut tr = Transitions::default();
    // Work released to this node by a transaction that committed after the candidates were read
    // shows up in the next read; a few rounds catch it, the next poll catches the rest.
    for _ in 0..3 {
        let rows = query(tx, CANDIDATES_SQL, &[&node.as_str(), &now]).await?;
        let seqs: Vec<i64> = rows.iter().map(|r| col(r, 0)).collect::<Result<_>>()?;
        if seqs.iter().all(|s| tr.touched.contains_key(s)) {
            break;
        }
        tr.lock(tx, seqs).await?;
    }
    let locked: Vec<i64> = tr.touched.keys().copied().collect();
    let mut claim = Claim::default();

    for held in node_work(tx, HELD_SQL, node, Millis::MIN, &locked).await? {
        let action = reconcile_held(
            held.inv.state,
            known.contains(held.inv.command_id.as_str()),
            held.delivered_session.as_deref() == Some(session),
            held.cancel_sent,
        );
        match action {
            HeldAction::Resend => claim.resent.push(held.delivery()?),
            HeldAction::Lose => {
                tr.apply(tx, &held.inv, InvocationEvent::LostByAgent)
                    .await?;
            }
            HeldAction::SendCancel => {
                execute(
                    tx,
                    "UPDATE invocations SET cancel_sent = TRUE
                     WHERE command_id = $1 AND instance_id = $2",
                    &[&held.inv.command_id, &held.inv.instance_id],
                )
                .await?;
                claim.cancels.push(command_id(&held.inv.command_id)?);
            }
            HeldAction::Keep => {}
        }
    }

    for work in node_work(tx, WAITING_SQL, node, now, &locked).await? {
        if tr
            .apply(tx, &work.inv, InvocationEvent::Delivered)
            .await?
            .is_none()
        {
            continue;
        }
        execute(
            tx,
            "UPDATE invocations SET delivered_session = $3, started_at = $4, cancel_sent = FALSE
             WHERE command_id = $1 AND instance_id = $2",
            &[&work.inv.command_id, &work.inv.instance_id, &session, &now],
        )
        .await?;
        claim.runs.push(work.delivery()?);
    }
    // This poll's own node never needs a wake-up: it is being answered.
    claim.effects = tr.flush(tx).await?.without_wake(node);
    Ok(claim)
}

/// An agent's final report. `applied` false when the invocation had already left
/// InProgress/Cancelling.
pub(crate) async fn finish(
    tx: &Transaction<'_>,
    node: &InstanceId,
    report: &Report,
    now: Millis,
) -> Result<Finished> {
    let no_such =
        || CoreError::NoSuchInvocation(report.command_id.to_string(), node.to_string()).into();
    let mut tr = Transitions::default();
    let Some(command_seq) = tr.lock_id(tx, report.command_id.as_str()).await? else {
        return Err(no_such());
    };
    // `started_at` holds the delivery time until the report replaces it.
    let found = query_opt(
        tx,
        "SELECT state, started_at FROM invocations WHERE command_id = $1 AND instance_id = $2",
        &[&report.command_id.as_str(), &node.as_str()],
    )
    .await?;
    let Some(row) = found else {
        return Err(no_such());
    };
    let delivered_at: Option<Millis> = col(&row, 1)?;
    let inv = InvocationRef {
        command_seq,
        command_id: report.command_id.as_str().to_string(),
        instance_id: node.as_str().to_string(),
        state: invocation_state(col(&row, 0)?)?,
    };
    if tr
        .apply(tx, &inv, InvocationEvent::Finished(report.outcome))
        .await?
        .is_none()
    {
        return Ok(Finished {
            applied: false,
            effects: Effects::default(),
        });
    }
    let times = report_times(report, now, delivered_at);
    execute(
        tx,
        "UPDATE invocations SET response_code = $3, started_at = $4, ended_at = $5, steps_json = $6
         WHERE command_id = $1 AND instance_id = $2",
        &[
            &inv.command_id,
            &inv.instance_id,
            &report.response_code,
            &times.started_at,
            &times.ended_at,
            &serde_json::to_string(&times.steps)?,
        ],
    )
    .await?;
    Ok(Finished {
        applied: true,
        effects: tr.flush(tx).await?,
    })
}

/// Every invocation of one (locked) command, in node order.
pub(crate) async fn command_invocations(
    tx: &Transaction<'_>,
    command_seq: i64,
    only_live: bool,
) -> Result<Vec<InvocationRef>> {
    let sql = if only_live {
        "SELECT command_id, instance_id, state FROM invocations
         WHERE command_seq = $1 AND state IN ('Pending', 'InProgress', 'Delayed', 'Cancelling')
         ORDER BY instance_id"
    } else {
        "SELECT command_id, instance_id, state FROM invocations WHERE command_seq = $1
         ORDER BY instance_id"
    };
    query(tx, sql, &[&command_seq])
        .await?
        .iter()
        .map(|r| {
            Ok(InvocationRef {
                command_seq,
                command_id: col(r, 0)?,
                instance_id: col(r, 1)?,
                state: invocation_state(col(r, 2)?)?,
            })
        })
        .collect()
}

/// CancelCommand over `fleetrun_core::lifecycle::cancel_scope`. Pending/Delayed invocations are
/// cancelled outright; running ones become Cancelling and their nodes are woken so the agents can
/// be told (the next claim carries the cancel once). A command that already finished is left
/// untouched.
pub(crate) async fn cancel(
    tx: &Transaction<'_>,
    command: &CommandId,
    nodes: Option<&[InstanceId]>,
    _now: Millis,
) -> Result<CancelOutcome> {
    let mut tr = Transitions::default();
    let Some(seq) = tr.lock_id(tx, command.as_str()).await? else {
        return Err(CoreError::UnknownCommand(command.to_string()).into());
    };
    let terminal = tr.touched.get(&seq).is_some_and(|t| t.terminal);
    let all = command_invocations(tx, seq, false).await?;
    let on: Vec<&str> = all.iter().map(|i| i.instance_id.as_str()).collect();
    let scope = cancel_scope(&on, nodes)?;
    if terminal {
        return Ok(CancelOutcome::default());
    }
    if scope.whole_command {
        tr.request_cancel(seq);
    }
    for at in scope.targets {
        tr.apply(tx, &all[at], InvocationEvent::CancelRequested)
            .await?;
    }
    Ok(CancelOutcome {
        effects: tr.flush(tx).await?,
    })
}

/// Unfinished commands whose ExpiresAfter has passed (index `commands_by_expiry`).
const EXPIRED_SQL: &str =
    "SELECT seq FROM commands WHERE terminal = FALSE AND expires_at <= $1 ORDER BY seq";

/// ExpiresAfter passed: every invocation still waiting or running becomes DeliveryTimedOut (a
/// Cancelling one becomes Cancelled). Returns what changed.
pub(crate) async fn expire_due(tx: &Transaction<'_>, now: Millis) -> Result<Effects> {
    let due: Vec<i64> = query(tx, EXPIRED_SQL, &[&now])
        .await?
        .iter()
        .map(|r| col(r, 0))
        .collect::<Result<_>>()?;
    let mut tr = Transitions::default();
    tr.lock(tx, due.iter().copied()).await?;
    for seq in due {
        // Another server may have expired it between the read above and the lock: then nothing
        // is live any more and nothing changes.
        for inv in command_invocations(tx, seq, true).await? {
            tr.apply(tx, &inv, InvocationEvent::Expired).await?;
        }
    }
    tr.flush(tx).await
}

/// Retention: deletes commands requested before `before`; their invocations go with them
/// (ON DELETE CASCADE). The deletes wait for any transaction holding a command's lock.
pub(crate) async fn purge_before(tx: &Transaction<'_>, before: Millis) -> Result<usize> {
    let removed = execute(
        tx,
        "DELETE FROM commands WHERE requested_at < $1",
        &[&before],
    )
    .await?;
    Ok(usize::try_from(removed).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::{PostgresStore, TempDatabase};

    /// The lookups every poll and the timekeeper run read their indexes (the live-only claim
    /// index, the expiry index), never a table scan. Needs PostgreSQL (`FLEETRUN_TEST_STORE`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pg_lifecycle_queries_use_their_indexes() {
        if std::env::var("FLEETRUN_TEST_STORE").as_deref() != Ok("postgres") {
            // Straight to stderr, past the test harness's output capture: a skip must show.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"SKIPPED pg_lifecycle_queries_use_their_indexes: needs PostgreSQL; \
                  run with FLEETRUN_TEST_STORE=postgres\n",
            );
            return;
        }
        let admin = std::env::var("FLEETRUN_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let db = TempDatabase::create(&admin).await.expect("database");
        let store = PostgresStore::connect(db.url()).await.expect("connect");
        let client = store.client().await.expect("client");
        // Enough finished history that a scan would cost more than the indexes.
        client
            .batch_execute(
                "INSERT INTO commands (command_id, requested_at, expires_at, document_name,
                     document_version, comment, timeout_seconds, max_concurrency, max_errors,
                     error_budget, echo_json, plan_json, counts_json, status, status_details,
                     terminal)
                 SELECT 'c' || g, g, g + 1000, 'Doc', '1', '', 3600, '50', '0', 0, '{}', '{}',
                     '{}', 'Success', 'Success', TRUE
                 FROM generate_series(1, 20000) g;
                 INSERT INTO invocations (command_seq, command_id, instance_id, requested_at,
                     document_name, state, status, released)
                 SELECT seq, command_id, 'mi-' || lpad((seq % 300)::text, 17, '0'), requested_at,
                     'Doc', 'Success', 'Success', TRUE
                 FROM commands;
                 ANALYZE",
            )
            .await
            .expect("seed");
        let node = "mi-00000000000000007";
        let locked: Vec<i64> = vec![1, 2, 3];
        let plan = |rows: Vec<tokio_postgres::Row>| {
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
                .join("\n")
        };
        for sql in [HELD_SQL, WAITING_SQL] {
            let rows = client
                .query(&format!("EXPLAIN {sql}"), &[&node, &0i64, &locked])
                .await
                .expect("explain");
            let p = plan(rows);
            assert!(
                p.contains("using invocations_by_claim on invocations i"),
                "{p}"
            );
            assert!(p.contains("using commands_pkey on commands c"), "{p}");
            assert!(!p.contains("Seq Scan"), "{p}");
        }
        let rows = client
            .query(&format!("EXPLAIN {CANDIDATES_SQL}"), &[&node, &0i64])
            .await
            .expect("explain");
        let p = plan(rows);
        assert!(p.contains("on invocations_by_claim"), "{p}");
        assert!(!p.contains("Seq Scan"), "{p}");
        let rows = client
            .query(&format!("EXPLAIN {EXPIRED_SQL}"), &[&0i64])
            .await
            .expect("explain");
        let p = plan(rows);
        assert!(p.contains("using commands_by_expiry on commands"), "{p}");
    }
}
