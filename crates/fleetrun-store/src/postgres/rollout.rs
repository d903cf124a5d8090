//! Rate control and reachability: releasing a command's invocations to their nodes under the
//! MaxConcurrency ramp, terminating what was never sent once MaxErrors is exceeded, marking work for
//! unreachable nodes Delayed, and deregistering nodes (their undelivered work becomes Undeliverable).
//!
//! The decisions live in `fleetrun_core::lifecycle` and `fleetrun_core::rate`; this module only
//! reads and writes rows. It runs
//! inside the same transaction as the transition that triggered it (see `lifecycle::Transitions`),
//! with the command's row locked, so the release counters it reads are the committed ones and no
//! other server releases the same command at the same time: MaxConcurrency is never exceeded.

use deadpool_postgres::Transaction;
use fleetrun_core::clock::Millis;
use fleetrun_core::ids::InstanceId;
use fleetrun_core::lifecycle::{Effects, RolloutStep};
use fleetrun_core::status::{InvocationEvent, InvocationState};
use fleetrun_core::CoreError;
use tokio_postgres::types::ToSql;

use super::transitions::{InvocationRef, Transitions};
use super::{col, execute, instance_id, invocation_state, query, Result};

/// Invocations of one command not yet delivered (Pending/Delayed), released or not, in node order.
const UNDELIVERED_SQL: &str = "SELECT command_id, instance_id, state, command_seq FROM invocations
     WHERE command_seq = $1 AND state IN ('Pending', 'Delayed') ORDER BY instance_id";

/// Releases the next `$2` unreleased invocations of one command, in node order (index
/// `invocations_by_release`), in one statement.
const RELEASE_SQL: &str = "UPDATE invocations SET released = TRUE
     WHERE (command_id, instance_id) IN (
         SELECT command_id, instance_id FROM invocations
         WHERE command_seq = $1 AND NOT released AND state = 'Pending'
         ORDER BY instance_id LIMIT $2)
     RETURNING instance_id";

/// Rows of (command_id, instance_id, state, command_seq) as [`InvocationRef`]s.
async fn invocation_refs(
    tx: &Transaction<'_>,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
) -> Result<Vec<InvocationRef>> {
    query(tx, sql, args)
        .await?
        .iter()
        .map(|r| {
            Ok(InvocationRef {
                command_id: col(r, 0)?,
                instance_id: col(r, 1)?,
                state: invocation_state(col(r, 2)?)?,
                command_seq: col(r, 3)?,
            })
        })
        .collect()
}

impl Transitions {
    /// Moves one changed command's rollout on as `Tally::next_step` decides: release the next
    /// invocations in node order, or terminate everything undelivered.
    pub(crate) async fn advance(&mut self, tx: &Transaction<'_>, seq: i64) -> Result<()> {
        let step = match self.touched.get_mut(&seq) {
            Some(locked) => locked.tally.next_step(),
            None => return Ok(()),
        };
        match step {
            RolloutStep::Hold => Ok(()),
            RolloutStep::TerminateUndelivered => {
                for inv in invocation_refs(tx, UNDELIVERED_SQL, &[&seq]).await? {
                    self.apply(tx, &inv, InvocationEvent::Terminated).await?;
                }
                Ok(())
            }
            RolloutStep::Release(n) => {
                let rows = query(tx, RELEASE_SQL, &[&seq, &i64::from(n)]).await?;
                let mut released: Vec<String> =
                    rows.iter().map(|r| col(r, 0)).collect::<Result<_>>()?;
                // In node order, as the release picked them (RETURNING has no order of its own).
                released.sort_unstable();
                if let Some(locked) = self.touched.get_mut(&seq) {
                    locked.tally.released(released.len());
                }
                for node in &released {
                    self.effects.wake(instance_id(node)?);
                }
                Ok(())
            }
        }
    }
}

/// Released, still-Pending invocations on unreachable nodes: silent since `$1`, or signed off
/// (`fleetrun_core::node::Node::reachable`, in SQL). `$2`: the locked commands to look in, or NULL
/// for all (the first, unlocked read that finds which commands to lock).
const SILENT_SQL: &str = "SELECT i.command_id, i.instance_id, i.state, i.command_seq
     FROM invocations i JOIN nodes n ON n.instance_id = i.instance_id
     WHERE i.state = 'Pending' AND i.released
       AND (n.last_ping_at < $1 OR n.signed_off_at IS NOT NULL)
       AND ($2::bigint[] IS NULL OR i.command_seq = ANY($2))
     ORDER BY i.command_seq, i.instance_id";

/// Work released to nodes whose channel is down (silent, or signed off) becomes Delayed; it is
/// delivered when they poll again. Its effects wake nodes that received work as rollouts moved on.
pub(crate) async fn mark_unreachable(
    tx: &Transaction<'_>,
    silent_since: Millis,
) -> Result<Effects> {
    let mut tr = Transitions::default();
    let all: Option<Vec<i64>> = None;
    let found = invocation_refs(tx, SILENT_SQL, &[&silent_since, &all]).await?;
    tr.lock(tx, found.iter().map(|i| i.command_seq)).await?;
    let locked: Option<Vec<i64>> = Some(tr.touched.keys().copied().collect());
    // Read again under the locks: what another server delivered meanwhile is no longer Pending.
    for inv in invocation_refs(tx, SILENT_SQL, &[&silent_since, &locked]).await? {
        tr.apply(tx, &inv, InvocationEvent::DeliveryFailed).await?;
    }
    tr.flush(tx).await
}

/// This node's undelivered invocations (index `invocations_by_claim`); `$2` as in [`SILENT_SQL`].
const NODE_WAITING_SQL: &str = "SELECT command_id, instance_id, state, command_seq FROM invocations
     WHERE instance_id = $1 AND state IN ('Pending', 'Delayed')
       AND ($2::bigint[] IS NULL OR command_seq = ANY($2))";

/// DeregisterManagedInstance: the node (with its tags and credentials) is removed and its
/// undelivered invocations become Undeliverable.
pub(crate) async fn deregister(tx: &Transaction<'_>, node: &InstanceId) -> Result<Effects> {
    // The node's row first, as claim locks it: a poll in flight finishes before, or finds no node.
    let removed = execute(
        tx,
        "DELETE FROM nodes WHERE instance_id = $1",
        &[&node.as_str()],
    )
    .await?;
    if removed == 0 {
        return Err(CoreError::UnknownInstance(node.to_string()).into());
    }
    let mut tr = Transitions::default();
    let all: Option<Vec<i64>> = None;
    let found = invocation_refs(tx, NODE_WAITING_SQL, &[&node.as_str(), &all]).await?;
    tr.lock(tx, found.iter().map(|i| i.command_seq)).await?;
    let locked: Option<Vec<i64>> = Some(tr.touched.keys().copied().collect());
    for inv in invocation_refs(tx, NODE_WAITING_SQL, &[&node.as_str(), &locked]).await? {
        debug_assert!(matches!(
            inv.state,
            InvocationState::Pending | InvocationState::Delayed
        ));
        tr.apply(tx, &inv, InvocationEvent::NodeGone).await?;
    }
    tr.flush(tx).await
}
