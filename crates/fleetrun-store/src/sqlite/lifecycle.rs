//! Everything that moves an invocation after SendCommand: agent polls (claim), agent reports
//! (finish), CancelCommand, expiry, and retention (purge).
//!
//! The rules are `fleetrun_core::lifecycle`'s; this module holds the loops and the SQL. All state
//! changes go through [`Transitions`]: it asks `fleetrun_core::status::transition` for the next
//! state, applies it with compare-and-set (`... WHERE state = <the state we read>`), records it in
//! the command's [`Tally`], and on commit rewrites each touched command's aggregate columns.
//! [`with_transitions`] wraps that in one write transaction, so an invocation and its command's
//! status can never disagree.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use fleetrun_core::clock::Millis;
use fleetrun_core::command::{Claim, Delivery, Finished, Report};
use fleetrun_core::document::Plan;
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::lifecycle::{
    cancel_scope, reconcile_held, report_times, Effects, HeldAction, InvocationChange, Tally,
};
use fleetrun_core::notification::NotifySpec;
use fleetrun_core::rate::Rollout;
use fleetrun_core::status::{transition, CommandState, InvocationEvent, InvocationState};
use fleetrun_core::store::CancelOutcome;
use fleetrun_core::CoreError;
use rusqlite::{params, Connection, OptionalExtension, Savepoint};

use super::{command_id, instance_id, invocation_state, Error, Result};

/// One invocation as read inside the transaction: enough to apply an event to it.
#[derive(Debug, Clone)]
pub(crate) struct InvocationRef {
    pub(crate) command_seq: i64,
    pub(crate) command_id: String,
    pub(crate) instance_id: String,
    pub(crate) state: InvocationState,
    /// Released to its node by the rollout (see `rollout`).
    pub(crate) released: bool,
}

/// Invocation transitions applied within one transaction: each touched command's [`Tally`] (its
/// counters, loaded once and written back on commit) and the [`Effects`] for the server.
#[derive(Default)]
pub(crate) struct Transitions {
    pub(crate) touched: HashMap<i64, (CommandId, Tally)>,
    pub(crate) effects: Effects,
    /// The touched commands that announce their changes, by seq.
    notify: HashMap<i64, NotifySpec>,
}

impl Transitions {
    pub(crate) fn tally(&mut self, tx: &Connection, seq: i64) -> Result<&mut Tally> {
        match self.touched.entry(seq) {
            Entry::Occupied(e) => Ok(&mut e.into_mut().1),
            Entry::Vacant(e) => {
                type Row = (
                    String,
                    String,
                    String,
                    u32,
                    bool,
                    String,
                    Rollout,
                    Option<String>,
                );
                let (
                    id,
                    counts_json,
                    details,
                    error_budget,
                    cancel_requested,
                    max_concurrency,
                    rollout,
                    notify_json,
                ): Row = tx
                    .prepare_cached(
                        "SELECT command_id, counts_json, status_details, error_budget,
                             cancel_requested, max_concurrency, released, acked, settled,
                             notify_json
                         FROM commands WHERE seq = ?1",
                    )?
                    .query_row([seq], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            Rollout {
                                released: r.get(6)?,
                                acked: r.get(7)?,
                                settled: r.get(8)?,
                                ..Rollout::default()
                            },
                            r.get(9)?,
                        ))
                    })?;
                if let Some(json) = notify_json {
                    self.notify.insert(seq, serde_json::from_str(&json)?);
                }
                let loaded_state = CommandState::parse(&details)
                    .ok_or_else(|| Error::Corrupt(format!("command state {details:?}")))?;
                let tally = Tally {
                    counts: serde_json::from_str(&counts_json)?,
                    error_budget,
                    cancel_requested,
                    max_concurrency,
                    rollout,
                    loaded_state,
                };
                Ok(&mut e.insert((command_id(&id)?, tally)).1)
            }
        }
    }

    /// Applies `event` to `inv` if the state machine allows it and the row still holds the state we
    /// read. Returns the new state, or `None` when nothing changed (not applicable, or lost a race).
    pub(crate) fn apply(
        &mut self,
        tx: &Connection,
        inv: &InvocationRef,
        event: InvocationEvent,
    ) -> Result<Option<InvocationState>> {
        let Some(to) = transition(inv.state, event) else {
            return Ok(None);
        };
        let changed = tx
            .prepare_cached(
                "UPDATE invocations SET state = ?1, status = ?2
                 WHERE command_id = ?3 AND instance_id = ?4 AND state = ?5",
            )?
            .execute(params![
                to.as_str(),
                to.status().as_str(),
                inv.command_id,
                inv.instance_id,
                inv.state.as_str(),
            ])?;
        if changed == 0 {
            return Ok(None);
        }
        self.tally(tx, inv.command_seq)?
            .record(inv.state, to, inv.released);
        self.effects.invocation_changed(InvocationChange {
            command_id: command_id(&inv.command_id)?,
            instance_id: instance_id(&inv.instance_id)?,
            from: inv.state,
            to,
        });
        Ok(Some(to))
    }

    /// Loads a command into this transaction so its rollout advances on commit (a new command).
    pub(crate) fn touch(&mut self, tx: &Connection, command_seq: i64) -> Result<()> {
        self.tally(tx, command_seq).map(|_| ())
    }

    /// Records that CancelCommand was called for the whole command.
    pub(crate) fn request_cancel(&mut self, tx: &Connection, command_seq: i64) -> Result<()> {
        self.tally(tx, command_seq)?.cancel_requested = true;
        Ok(())
    }

    /// Advances every touched command's rollout, then rewrites counts, rollout counters, status,
    /// status details and the terminal flag. Returns what the transaction changed.
    fn flush(mut self, tx: &Connection) -> Result<Effects> {
        let seqs: Vec<i64> = self.touched.keys().copied().collect();
        for seq in seqs {
            self.advance(tx, seq)?;
        }
        let mut update = tx.prepare_cached(
            "UPDATE commands SET counts_json = ?1, cancel_requested = ?2, status = ?3,
                 status_details = ?4, terminal = ?5, released = ?6, acked = ?7, settled = ?8
             WHERE seq = ?9",
        )?;
        for (seq, (id, tally)) in &self.touched {
            let agg = tally.aggregate();
            update.execute(params![
                serde_json::to_string(&tally.counts)?,
                tally.cancel_requested,
                agg.state.status().as_str(),
                agg.state.as_str(),
                agg.state.is_terminal(),
                tally.rollout.released,
                tally.rollout.acked,
                tally.rollout.settled,
                seq,
            ])?;
            self.effects
                .command_changed(id.clone(), tally.loaded_state, agg.state);
        }
        let effects = self.effects.settled();
        if !self.notify.is_empty() {
            let now = fleetrun_core::clock::now_millis();
            let mut enqueue = tx.prepare_cached(
                "INSERT OR IGNORE INTO notification_outbox
                     (message_id, topic_arn, body, event_time, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )?;
            for spec in self.notify.values() {
                for n in spec.notices(&effects, now) {
                    enqueue.execute(params![n.message_id, n.topic_arn, n.body, n.event_time])?;
                }
            }
        }
        Ok(effects)
    }
}

/// Runs `f` in one write transaction with a fresh [`Transitions`], then advances the touched
/// rollouts, writes their aggregates and commits. An error anywhere rolls everything back.
/// Returns `f`'s result and what the transaction changed.
pub(crate) fn with_transitions<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Savepoint<'_>, &mut Transitions) -> Result<T>,
) -> Result<(T, Effects)> {
    let tx = conn.savepoint()?;
    let mut transitions = Transitions::default();
    let out = f(&tx, &mut transitions)?;
    let effects = transitions.flush(&tx)?;
    tx.commit()?;
    Ok((out, effects))
}

/// An invocation this node holds or may receive, with what a delivery needs.
struct NodeWork {
    inv: InvocationRef,
    delivered_session: Option<String>,
    cancel_sent: bool,
    document_name: String,
    plan_json: String,
    requested_at: Millis,
}

impl NodeWork {
    fn delivery(&self) -> Result<Delivery> {
        let plan: Plan = serde_json::from_str(&self.plan_json)?;
        Ok(Delivery {
            command_id: command_id(&self.inv.command_id)?,
            document_name: self.document_name.clone(),
            plan,
            requested_at: self.requested_at,
        })
    }
}

/// This node's invocations that the agent holds (InProgress/Cancelling), oldest first.
/// `INDEXED BY`: the planner would otherwise walk the node's whole history in
/// `invocations_by_node` to avoid a sort; the live rows are few, so sorting them is cheap.
const HELD_SQL: &str = "SELECT i.command_seq, i.command_id, i.state, i.delivered_session,
        i.cancel_sent, c.document_name, c.plan_json, i.released, i.requested_at
     FROM invocations i INDEXED BY invocations_by_claim JOIN commands c ON c.seq = i.command_seq
     WHERE i.instance_id = ?1 AND i.state IN ('InProgress', 'Cancelling') AND c.expires_at > ?2
     ORDER BY i.requested_at, i.command_seq";

/// This node's invocations released to it and waiting for delivery (Pending/Delayed) of unexpired
/// commands, oldest first.
const WAITING_SQL: &str = "SELECT i.command_seq, i.command_id, i.state, i.delivered_session,
        i.cancel_sent, c.document_name, c.plan_json, i.released, i.requested_at
     FROM invocations i INDEXED BY invocations_by_claim JOIN commands c ON c.seq = i.command_seq
     WHERE i.instance_id = ?1 AND i.state IN ('Pending', 'Delayed') AND i.released = 1
       AND c.expires_at > ?2
     ORDER BY i.requested_at, i.command_seq";

/// Runs [`HELD_SQL`] or [`WAITING_SQL`] for `node`.
fn node_work(tx: &Connection, sql: &str, node: &InstanceId, now: Millis) -> Result<Vec<NodeWork>> {
    let mut stmt = tx.prepare_cached(sql)?;
    let mut rows = stmt.query(params![node.as_str(), now])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let state: String = r.get(2)?;
        out.push(NodeWork {
            inv: InvocationRef {
                command_seq: r.get(0)?,
                command_id: r.get(1)?,
                instance_id: node.as_str().to_string(),
                state: invocation_state(&state)?,
                released: r.get(7)?,
            },
            delivered_session: r.get(3)?,
            cancel_sent: r.get(4)?,
            document_name: r.get(5)?,
            plan_json: r.get(6)?,
            requested_at: r.get(8)?,
        });
    }
    Ok(out)
}

/// How stale a node's recorded heartbeat may get before an idle poll writes a fresh one. Well under
/// any sensible ping timeout (default 60 s), so PingStatus is unaffected.
const PING_REFRESH_MS: Millis = 5_000;

/// Whether a poll can be answered "nothing to do" without a write: the node holds no invocation
/// (nothing to reconcile or cancel), has none released and waiting, its heartbeat is fresh and it
/// has not signed off (the poll after a goodbye must make it reachable again).
pub(crate) fn idle_poll(conn: &Connection, node: &InstanceId, now: Millis) -> Result<bool> {
    let last_ping: Option<(Millis, bool)> = conn
        .prepare_cached(
            "SELECT last_ping_at, signed_off_at IS NOT NULL FROM nodes WHERE instance_id = ?1",
        )?
        .query_row([node.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((last_ping, signed_off)) = last_ping else {
        return Ok(false);
    };
    if signed_off || now - last_ping >= PING_REFRESH_MS {
        return Ok(false);
    }
    let busy: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM invocations INDEXED BY invocations_by_claim
                 WHERE instance_id = ?1
                   AND (state IN ('InProgress', 'Cancelling')
                        OR (state IN ('Pending', 'Delayed') AND released = 1)))",
        )?
        .query_row([node.as_str()], |r| r.get(0))?;
    Ok(!busy)
}

/// One agent poll. See [`fleetrun_core::Store::claim`]; the steps are:
/// 1. reconcile what the agent holds: an invocation it should hold but does not list in `known` was
///    either handed out on this same session and the response lost (deliver it again, in
///    `Claim::resent`) or died with a previous agent process (`LostByAgent`);
/// 2. cancellations not yet sent for invocations the agent holds;
/// 3. new work: Pending/Delayed invocations of unexpired commands become InProgress.
pub(crate) fn claim(
    conn: &mut Connection,
    node: &InstanceId,
    session: &str,
    known: &[CommandId],
    now: Millis,
) -> Result<Claim> {
    let known: HashSet<&str> = known.iter().map(CommandId::as_str).collect();
    let (mut claim, effects) = with_transitions(conn, |tx, tr| {
        tx.prepare_cached(
            "UPDATE nodes SET last_ping_at = ?2, signed_off_at = NULL WHERE instance_id = ?1",
        )?
        .execute(params![node.as_str(), now])?;
        let mut claim = Claim::default();

        for held in node_work(tx, HELD_SQL, node, Millis::MIN)? {
            let action = reconcile_held(
                held.inv.state,
                known.contains(held.inv.command_id.as_str()),
                held.delivered_session.as_deref() == Some(session),
                held.cancel_sent,
            );
            match action {
                HeldAction::Resend => claim.resent.push(held.delivery()?),
                HeldAction::Lose => {
                    tr.apply(tx, &held.inv, InvocationEvent::LostByAgent)?;
                }
                HeldAction::SendCancel => {
                    tx.prepare_cached(
                        "UPDATE invocations SET cancel_sent = 1
                         WHERE command_id = ?1 AND instance_id = ?2",
                    )?
                    .execute(params![held.inv.command_id, held.inv.instance_id])?;
                    claim.cancels.push(command_id(&held.inv.command_id)?);
                }
                HeldAction::Keep => {}
            }
        }

        for work in node_work(tx, WAITING_SQL, node, now)? {
            if tr
                .apply(tx, &work.inv, InvocationEvent::Delivered)?
                .is_none()
            {
                continue;
            }
            tx.prepare_cached(
                "UPDATE invocations SET delivered_session = ?3, started_at = ?4, cancel_sent = 0
                 WHERE command_id = ?1 AND instance_id = ?2",
            )?
            .execute(params![
                work.inv.command_id,
                work.inv.instance_id,
                session,
                now
            ])?;
            claim.runs.push(work.delivery()?);
        }
        Ok(claim)
    })?;
    // This poll's own node never needs a wake-up: it is being answered.
    claim.effects = effects.without_wake(node);
    Ok(claim)
}

/// An agent's final report. Ok(false) when the invocation had already left InProgress/Cancelling.
pub(crate) fn finish(
    conn: &mut Connection,
    node: &InstanceId,
    report: &Report,
    now: Millis,
) -> Result<Finished> {
    let (applied, effects) = with_transitions(conn, |tx, tr| {
        // `started_at` holds the delivery time until the report replaces it.
        /// command_seq, state, released, started_at, the command's log group and bucket.
        type Found = (
            i64,
            String,
            bool,
            Option<Millis>,
            Option<String>,
            Option<String>,
        );
        let found: Option<Found> = tx
            .prepare_cached(
                "SELECT i.command_seq, i.state, i.released, i.started_at, c.log_group, c.s3_bucket
                 FROM invocations i JOIN commands c ON c.seq = i.command_seq
                 WHERE i.command_id = ?1 AND i.instance_id = ?2",
            )?
            .query_row(params![report.command_id.as_str(), node.as_str()], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .optional()?;
        let Some((command_seq, state, released, delivered_at, log_group, bucket)) = found else {
            return Err(CoreError::NoSuchInvocation(
                report.command_id.to_string(),
                node.to_string(),
            )
            .into());
        };
        let inv = InvocationRef {
            command_seq,
            command_id: report.command_id.as_str().to_string(),
            instance_id: node.as_str().to_string(),
            state: invocation_state(&state)?,
            released,
        };
        if tr
            .apply(tx, &inv, InvocationEvent::Finished(report.outcome))?
            .is_none()
        {
            return Ok(false);
        }
        let times = report_times(report, now, delivered_at);
        tx.prepare_cached(
            "UPDATE invocations SET response_code = ?3, started_at = ?4, ended_at = ?5, steps_json = ?6
             WHERE command_id = ?1 AND instance_id = ?2",
        )?
        .execute(params![
            inv.command_id,
            inv.instance_id,
            report.response_code,
            times.started_at,
            times.ended_at,
            serde_json::to_string(&times.steps)?,
        ])?;
        if let Some(group) = log_group {
            super::output::store_report_output(
                tx,
                command_seq,
                &group,
                node,
                &report.command_id,
                report,
                now,
            )?;
        }
        if bucket.is_some() {
            super::uploads::queue(tx, command_seq, node, now)?;
        }
        Ok(true)
    })?;
    Ok(Finished { applied, effects })
}

/// Every invocation of one command, in node order.
pub(crate) fn command_invocations(
    tx: &Connection,
    command_seq: i64,
    only_live: bool,
) -> Result<Vec<InvocationRef>> {
    let sql = if only_live {
        "SELECT command_id, instance_id, state, released FROM invocations
         WHERE command_seq = ?1 AND state IN ('Pending', 'InProgress', 'Delayed', 'Cancelling')
         ORDER BY instance_id"
    } else {
        "SELECT command_id, instance_id, state, released FROM invocations WHERE command_seq = ?1
         ORDER BY instance_id"
    };
    let mut stmt = tx.prepare_cached(sql)?;
    let mut rows = stmt.query([command_seq])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let state: String = r.get(2)?;
        out.push(InvocationRef {
            command_seq,
            command_id: r.get(0)?,
            instance_id: r.get(1)?,
            state: invocation_state(&state)?,
            released: r.get(3)?,
        });
    }
    Ok(out)
}

/// CancelCommand over [`cancel_scope`]. Pending/Delayed invocations are cancelled outright; running
/// ones become Cancelling and their nodes are woken so the agents can be told (the next claim
/// carries the cancel once). A command that already finished is left untouched.
pub(crate) fn cancel(
    conn: &mut Connection,
    command: &CommandId,
    nodes: Option<&[InstanceId]>,
    _now: Millis,
) -> Result<CancelOutcome> {
    let ((), effects) = with_transitions(conn, |tx, tr| {
        let found: Option<(i64, bool)> = tx
            .prepare_cached("SELECT seq, terminal FROM commands WHERE command_id = ?1")?
            .query_row([command.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((seq, terminal)) = found else {
            return Err(CoreError::UnknownCommand(command.to_string()).into());
        };
        let all = command_invocations(tx, seq, false)?;
        let on: Vec<&str> = all.iter().map(|i| i.instance_id.as_str()).collect();
        let scope = cancel_scope(&on, nodes)?;
        if terminal {
            return Ok(());
        }
        if scope.whole_command {
            tr.request_cancel(tx, seq)?;
        }
        for at in scope.targets {
            tr.apply(tx, &all[at], InvocationEvent::CancelRequested)?;
        }
        Ok(())
    })?;
    Ok(CancelOutcome { effects })
}

/// Unfinished commands whose ExpiresAfter has passed (index `commands_by_expiry`).
const EXPIRED_SQL: &str =
    "SELECT seq FROM commands WHERE terminal = 0 AND expires_at <= ?1 ORDER BY expires_at";

/// ExpiresAfter passed: every invocation still waiting or running becomes DeliveryTimedOut (a
/// Cancelling one becomes Cancelled). Returns what changed.
pub(crate) fn expire_due(conn: &mut Connection, now: Millis) -> Result<Effects> {
    let ((), effects) = with_transitions(conn, |tx, tr| {
        let due: Vec<i64> = {
            let mut stmt = tx.prepare_cached(EXPIRED_SQL)?;
            let rows = stmt.query_map([now], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for seq in due {
            for inv in command_invocations(tx, seq, true)? {
                tr.apply(tx, &inv, InvocationEvent::Expired)?;
            }
        }
        Ok(())
    })?;
    Ok(effects)
}

/// Retention: deletes commands requested before `before`; their invocations go with them.
pub(crate) fn purge_before(conn: &mut Connection, before: Millis) -> Result<usize> {
    let tx = conn.savepoint()?;
    let removed = tx
        .prepare_cached("DELETE FROM commands WHERE requested_at < ?1")?
        .execute([before])?;
    tx.commit()?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &Connection, sql: &str, n: usize) -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let params = vec![rusqlite::types::Value::Integer(0); n];
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |r| {
                r.get::<_, String>(3)
            })
            .expect("query");
        rows.map(|r| r.expect("row")).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn lifecycle_queries_use_their_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = Connection::open(dir.path().join("t.db")).expect("open");
        crate::sqlite::schema::migrate(&mut conn).expect("migrate");
        for sql in [HELD_SQL, WAITING_SQL] {
            let p = plan(&conn, sql, 2);
            assert!(
                p.contains("invocations_by_claim (instance_id=? AND state=?)"),
                "{p}"
            );
            assert!(p.contains("SEARCH c USING INTEGER PRIMARY KEY"), "{p}");
        }
        let p = plan(&conn, EXPIRED_SQL, 1);
        assert!(
            p.contains("commands_by_expiry (terminal=? AND expires_at<?)"),
            "{p}"
        );
        assert!(!p.contains("TEMP B-TREE"), "{p}");
    }
}
