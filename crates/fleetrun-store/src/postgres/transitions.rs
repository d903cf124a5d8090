//! [`Transitions`]: how every state change is applied, within one transaction.
//!
//! It locks the command's row (`SELECT ... FOR UPDATE`) before touching any of its invocations,
//! asks `fleetrun_core::status::transition` for the next state, applies it with compare-and-set
//! (`... WHERE state = <the state we read>`; no row changed = lost a race, nothing happens), shifts
//! the command's per-state counts, and at the end ([`Transitions::flush`]) advances the rollouts
//! (`rollout`) and rewrites each changed command's aggregate columns from
//! `fleetrun_core::status::aggregate`. The counterpart of the `Transitions` in
//! `sqlite/lifecycle.rs`, with the locking several servers need.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet};

use deadpool_postgres::Transaction;
use fleetrun_core::ids::InstanceId;
use fleetrun_core::rate::Rollout;
use fleetrun_core::status::{aggregate, transition, InvocationEvent, InvocationState, StateCounts};
use tokio_postgres::Row;

use super::{col, col_u32, execute, instance_id, query, query_opt, Result};

/// One invocation as read inside the transaction: enough to apply an event to it.
#[derive(Debug, Clone)]
pub(crate) struct InvocationRef {
    pub(crate) command_seq: i64,
    pub(crate) command_id: String,
    pub(crate) instance_id: String,
    pub(crate) state: InvocationState,
}

/// A locked command's counters, loaded once per transaction and written back at its end.
pub(crate) struct Tally {
    pub(crate) counts: StateCounts,
    pub(crate) error_budget: u32,
    pub(crate) cancel_requested: bool,
    pub(crate) max_concurrency: String,
    /// The stored aggregate says the command is done.
    pub(crate) terminal: bool,
    /// `total` and `concurrency` are filled in when the rollout advances.
    pub(crate) rollout: Rollout,
    /// Something changed: the rollout advances and the row is rewritten at the end. (A command
    /// locked only to read its invocations safely is left as it was.)
    pub(crate) dirty: bool,
}

/// Invocation transitions applied within one transaction, and the aggregates they change.
#[derive(Default)]
pub(crate) struct Transitions {
    /// Every command locked by this transaction, by seq.
    pub(crate) touched: BTreeMap<i64, Tally>,
    /// Nodes that received released work in this transaction.
    pub(crate) wake: Vec<String>,
}

/// The columns [`tally_from_row`] decodes (after the seq in column 0).
const TALLY_COLUMNS: &str = "seq, counts_json, error_budget, cancel_requested, max_concurrency, \
     terminal, released, acked, settled";

fn tally_from_row(row: &Row) -> Result<Tally> {
    Ok(Tally {
        counts: serde_json::from_str(col(row, 1)?)?,
        error_budget: col_u32(row, 2)?,
        cancel_requested: col(row, 3)?,
        max_concurrency: col(row, 4)?,
        terminal: col(row, 5)?,
        rollout: Rollout {
            released: col_u32(row, 6)?,
            acked: col_u32(row, 7)?,
            settled: col_u32(row, 8)?,
            ..Rollout::default()
        },
        dirty: false,
    })
}

impl Transitions {
    /// Locks and loads the commands among `seqs` not locked yet, in seq order (so two
    /// transactions locking overlapping sets take them in the same order). Commands that no
    /// longer exist (purged) are skipped.
    pub(crate) async fn lock(
        &mut self,
        tx: &Transaction<'_>,
        seqs: impl IntoIterator<Item = i64>,
    ) -> Result<()> {
        let mut want: Vec<i64> = seqs
            .into_iter()
            .filter(|s| !self.touched.contains_key(s))
            .collect();
        if want.is_empty() {
            return Ok(());
        }
        want.sort_unstable();
        want.dedup();
        let sql = format!(
            "SELECT {TALLY_COLUMNS} FROM commands WHERE seq = ANY($1) ORDER BY seq FOR UPDATE"
        );
        for row in query(tx, &sql, &[&want]).await? {
            self.touched.insert(col(&row, 0)?, tally_from_row(&row)?);
        }
        Ok(())
    }

    /// Locks and loads the command with this id; its seq, or `None` when there is none.
    pub(crate) async fn lock_id(&mut self, tx: &Transaction<'_>, id: &str) -> Result<Option<i64>> {
        let sql = format!("SELECT {TALLY_COLUMNS} FROM commands WHERE command_id = $1 FOR UPDATE");
        let Some(row) = query_opt(tx, &sql, &[&id]).await? else {
            return Ok(None);
        };
        let seq: i64 = col(&row, 0)?;
        if let Entry::Vacant(e) = self.touched.entry(seq) {
            e.insert(tally_from_row(&row)?);
        }
        Ok(Some(seq))
    }

    /// Applies `event` to `inv` if the state machine allows it and the row still holds the state we
    /// read. Returns the new state, or `None` when nothing changed (not applicable, lost a race,
    /// or the command is gone).
    pub(crate) async fn apply(
        &mut self,
        tx: &Transaction<'_>,
        inv: &InvocationRef,
        event: InvocationEvent,
    ) -> Result<Option<InvocationState>> {
        let Some(to) = transition(inv.state, event) else {
            return Ok(None);
        };
        // The command's row first (a no-op when the caller locked it already).
        self.lock(tx, [inv.command_seq]).await?;
        if !self.touched.contains_key(&inv.command_seq) {
            return Ok(None);
        }
        let changed = query_opt(
            tx,
            "UPDATE invocations SET state = $1, status = $2
             WHERE command_id = $3 AND instance_id = $4 AND state = $5
             RETURNING released",
            &[
                &to.as_str(),
                &to.status().as_str(),
                &inv.command_id,
                &inv.instance_id,
                &inv.state.as_str(),
            ],
        )
        .await?;
        let Some(row) = changed else {
            return Ok(None);
        };
        let released: bool = col(&row, 0)?;
        let Some(tally) = self.touched.get_mut(&inv.command_seq) else {
            return Ok(None);
        };
        tally.dirty = true;
        tally.counts.shift(inv.state, to);
        if released {
            if inv.state == InvocationState::Pending {
                tally.rollout.acked += 1;
            }
            if !inv.state.is_terminal() && to.is_terminal() {
                tally.rollout.settled += 1;
            }
        }
        Ok(Some(to))
    }

    /// Locks a command into this transaction so its rollout advances at the end (a new command).
    pub(crate) async fn touch(&mut self, tx: &Transaction<'_>, command_seq: i64) -> Result<()> {
        self.lock(tx, [command_seq]).await?;
        if let Some(tally) = self.touched.get_mut(&command_seq) {
            tally.dirty = true;
        }
        Ok(())
    }

    /// Records that CancelCommand was called for the whole (locked) command.
    pub(crate) fn request_cancel(&mut self, command_seq: i64) {
        if let Some(tally) = self.touched.get_mut(&command_seq) {
            tally.cancel_requested = true;
            tally.dirty = true;
        }
    }

    /// Advances every changed command's rollout, then rewrites counts, rollout counters, status,
    /// status details and the terminal flag. Returns the nodes that received work, each once.
    pub(crate) async fn flush(mut self, tx: &Transaction<'_>) -> Result<Vec<InstanceId>> {
        let dirty: Vec<i64> = self
            .touched
            .iter()
            .filter(|(_, t)| t.dirty)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in &dirty {
            self.advance(tx, *seq).await?;
        }
        for seq in &dirty {
            let Some(tally) = self.touched.get(seq) else {
                continue;
            };
            let agg = aggregate(&tally.counts, tally.error_budget, tally.cancel_requested);
            execute(
                tx,
                "UPDATE commands SET counts_json = $1, cancel_requested = $2, status = $3,
                     status_details = $4, terminal = $5, released = $6, acked = $7, settled = $8
                 WHERE seq = $9",
                &[
                    &serde_json::to_string(&tally.counts)?,
                    &tally.cancel_requested,
                    &agg.state.status().as_str(),
                    &agg.state.as_str(),
                    &agg.state.is_terminal(),
                    &i64::from(tally.rollout.released),
                    &i64::from(tally.rollout.acked),
                    &i64::from(tally.rollout.settled),
                    seq,
                ],
            )
            .await?;
        }
        let mut seen = HashSet::new();
        self.wake
            .into_iter()
            .filter(|n| seen.insert(n.clone()))
            .map(|n| instance_id(&n))
            .collect()
    }
}
