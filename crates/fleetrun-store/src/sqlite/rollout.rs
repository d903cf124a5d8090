//! Rate control and reachability: releasing a command's invocations to their nodes under the
//! MaxConcurrency ramp, terminating what was never sent once MaxErrors is exceeded, marking work for
//! unreachable nodes Delayed, and deregistering nodes (their undelivered work becomes Undeliverable).
//!
//! The decisions live in `fleetrun_core::lifecycle` and `fleetrun_core::rate`; this module only
//! reads and writes rows. It runs
//! inside the same transaction as the transition that triggered it (see `lifecycle::Transitions`).

use fleetrun_core::clock::Millis;
use fleetrun_core::ids::InstanceId;
use fleetrun_core::lifecycle::{Effects, RolloutStep};
use fleetrun_core::status::{InvocationEvent, InvocationState};
use fleetrun_core::CoreError;
use rusqlite::{params, Connection};

use super::lifecycle::{with_transitions, InvocationRef, Transitions};
use super::{instance_id, invocation_state, Result};

/// Invocations of one command not yet delivered (Pending/Delayed), released or not, in node order.
const UNDELIVERED_SQL: &str = "SELECT command_id, instance_id, state, released FROM invocations
     WHERE command_seq = ?1 AND state IN ('Pending', 'Delayed') ORDER BY instance_id";

/// The next unreleased invocations of one command (index `invocations_by_release`).
const NEXT_SQL: &str = "SELECT command_id, instance_id FROM invocations
     WHERE command_seq = ?1 AND released = 0 AND state = 'Pending'
     ORDER BY instance_id LIMIT ?2";

fn invocation_refs(
    tx: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    seq: Option<i64>,
) -> Result<Vec<InvocationRef>> {
    let mut stmt = tx.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let state: String = r.get(2)?;
        out.push(InvocationRef {
            command_seq: match seq {
                Some(s) => s,
                None => r.get(4)?,
            },
            command_id: r.get(0)?,
            instance_id: r.get(1)?,
            state: invocation_state(&state)?,
            released: r.get(3)?,
        });
    }
    Ok(out)
}

impl Transitions {
    /// Moves one touched command's rollout on as [`Tally::next_step`] decides: release the next
    /// invocations in node order, or terminate everything undelivered.
    pub(crate) fn advance(&mut self, tx: &Connection, seq: i64) -> Result<()> {
        let step = match self.touched.get_mut(&seq) {
            Some((_, tally)) => tally.next_step(),
            None => return Ok(()),
        };
        match step {
            RolloutStep::Hold => Ok(()),
            RolloutStep::TerminateUndelivered => {
                for inv in invocation_refs(tx, UNDELIVERED_SQL, [seq], Some(seq))? {
                    self.apply(tx, &inv, InvocationEvent::Terminated)?;
                }
                Ok(())
            }
            RolloutStep::Release(n) => {
                let next: Vec<(String, String)> = {
                    let mut stmt = tx.prepare_cached(NEXT_SQL)?;
                    let rows = stmt.query_map(params![seq, n], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect::<rusqlite::Result<_>>()?
                };
                // By primary key: (command_seq, instance_id) would walk the command's whole index
                // range.
                let mut release = tx.prepare_cached(
                    "UPDATE invocations SET released = 1 WHERE command_id = ?1 AND instance_id = ?2",
                )?;
                for (command, node) in &next {
                    release.execute(params![command, node])?;
                    self.effects.wake(instance_id(node)?);
                }
                self.tally(tx, seq)?.released(next.len());
                Ok(())
            }
        }
    }
}

/// Released, still-Pending invocations on unreachable nodes: silent since `silent_since`, or
/// signed off (`fleetrun_core::node::Node::reachable`, in SQL).
const SILENT_SQL: &str = "SELECT i.command_id, i.instance_id, i.state, i.released, i.command_seq
     FROM invocations i JOIN nodes n ON n.instance_id = i.instance_id
     WHERE i.state = 'Pending' AND i.released = 1
       AND (n.last_ping_at < ?1 OR n.signed_off_at IS NOT NULL)";

/// Work released to nodes whose channel is down (silent, or signed off) becomes Delayed; it is
/// delivered when they poll again. Its effects wake nodes that received work as rollouts moved on.
pub(crate) fn mark_unreachable(conn: &mut Connection, silent_since: Millis) -> Result<Effects> {
    let ((), effects) = with_transitions(conn, |tx, tr| {
        for inv in invocation_refs(tx, SILENT_SQL, [silent_since], None)? {
            tr.apply(tx, &inv, InvocationEvent::DeliveryFailed)?;
        }
        Ok(())
    })?;
    Ok(effects)
}

/// DeregisterManagedInstance: the node's undelivered invocations become Undeliverable and the node
/// (with its tags and credentials) is removed.
pub(crate) fn deregister(conn: &mut Connection, node: &InstanceId) -> Result<Effects> {
    let ((), effects) = with_transitions(conn, |tx, tr| {
        let removed = tx
            .prepare_cached("DELETE FROM nodes WHERE instance_id = ?1")?
            .execute([node.as_str()])?;
        if removed == 0 {
            return Err(CoreError::UnknownInstance(node.to_string()).into());
        }
        let waiting = invocation_refs(
            tx,
            "SELECT i.command_id, i.instance_id, i.state, i.released, i.command_seq
             FROM invocations i INDEXED BY invocations_by_claim
             WHERE i.instance_id = ?1 AND i.state IN ('Pending', 'Delayed')",
            [node.as_str()],
            None,
        )?;
        for inv in waiting {
            debug_assert!(matches!(
                inv.state,
                InvocationState::Pending | InvocationState::Delayed
            ));
            tr.apply(tx, &inv, InvocationEvent::NodeGone)?;
        }
        Ok(())
    })?;
    Ok(effects)
}
