//! What moves an invocation after SendCommand apart from agents' polls and reports (those are
//! batched, in `polls`): CancelCommand, expiry, and retention (purge). The same rules as
//! `sqlite/lifecycle.rs`, made safe for several servers sharing the database.
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

use deadpool_postgres::Transaction;
use fleetrun_core::clock::Millis;
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::lifecycle::{cancel_scope, Effects};
use fleetrun_core::status::InvocationEvent;
use fleetrun_core::store::CancelOutcome;
use fleetrun_core::CoreError;

use super::transitions::{InvocationRef, Transitions};
use super::{col, execute, invocation_state, query, Result};

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
    use crate::postgres::polls::{CANDIDATES_SQL, HELD_SQL, WAITING_SQL};
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
        let nodes = vec![node];
        for sql in [HELD_SQL, WAITING_SQL] {
            let rows = client
                .query(&format!("EXPLAIN {sql}"), &[&nodes, &0i64, &locked])
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
            .query(&format!("EXPLAIN {CANDIDATES_SQL}"), &[&nodes, &0i64])
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
