//! [`Transitions`]: how every state change is applied, within one transaction.
//!
//! It locks the command's row (`SELECT ... FOR UPDATE`) before touching any of its invocations,
//! asks `fleetrun_core::status::transition` for the next state, applies it with compare-and-set
//! (`... WHERE state = <the state we read>`; no row changed = lost a race, nothing happens), records
//! it in the command's `fleetrun_core::lifecycle::Tally`, and at the end ([`Transitions::flush`])
//! advances the rollouts (`rollout`) and rewrites each changed command's aggregate columns. The counterpart of the `Transitions` in
//! `sqlite/lifecycle.rs`, with the locking several servers need.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use deadpool_postgres::Transaction;
use fleetrun_core::ids::CommandId;
use fleetrun_core::lifecycle::{Effects, InvocationChange, Tally};
use fleetrun_core::notification::NotifySpec;
use fleetrun_core::rate::Rollout;
use fleetrun_core::status::{transition, CommandState, InvocationEvent, InvocationState};
use tokio_postgres::Row;

use super::{col, col_u32, command_id, execute, instance_id, query, query_opt, Error, Result};

/// One invocation as read inside the transaction: enough to apply an event to it.
#[derive(Debug, Clone)]
pub(crate) struct InvocationRef {
    pub(crate) command_seq: i64,
    pub(crate) command_id: String,
    pub(crate) instance_id: String,
    pub(crate) state: InvocationState,
}

/// A command locked by this transaction: its counters, loaded once and written back at the end.
pub(crate) struct Locked {
    pub(crate) id: CommandId,
    pub(crate) tally: Tally,
    /// The stored aggregate says the command is done.
    pub(crate) terminal: bool,
    /// Something changed: the rollout advances and the row is rewritten at the end. (A command
    /// locked only to read its invocations safely is left as it was.)
    pub(crate) dirty: bool,
    /// What its notices are built from, when it announces its changes.
    pub(crate) notify: Option<NotifySpec>,
}

/// Invocation transitions applied within one transaction, and what they changed.
#[derive(Default)]
pub(crate) struct Transitions {
    /// Every command locked by this transaction, by seq.
    pub(crate) touched: BTreeMap<i64, Locked>,
    pub(crate) effects: Effects,
}

/// The columns [`locked_from_row`] decodes (after the seq in column 0).
const TALLY_COLUMNS: &str = "seq, counts_json, error_budget, cancel_requested, max_concurrency, \
     terminal, released, acked, settled, command_id, status_details, notify_json";

fn locked_from_row(row: &Row) -> Result<Locked> {
    let details: &str = col(row, 10)?;
    let loaded_state = CommandState::parse(details)
        .ok_or_else(|| Error::Corrupt(format!("command state {details:?}")))?;
    Ok(Locked {
        id: command_id(col(row, 9)?)?,
        tally: Tally {
            counts: serde_json::from_str(col(row, 1)?)?,
            error_budget: col_u32(row, 2)?,
            cancel_requested: col(row, 3)?,
            max_concurrency: col(row, 4)?,
            rollout: Rollout {
                released: col_u32(row, 6)?,
                acked: col_u32(row, 7)?,
                settled: col_u32(row, 8)?,
                ..Rollout::default()
            },
            loaded_state,
        },
        terminal: col(row, 5)?,
        dirty: false,
        notify: col::<Option<&str>>(row, 11)?
            .map(serde_json::from_str)
            .transpose()?,
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
            self.touched.insert(col(&row, 0)?, locked_from_row(&row)?);
        }
        Ok(())
    }

    /// Locks and loads the commands with these ids not locked yet, in seq order; returns the seq
    /// of each id found.
    pub(crate) async fn lock_ids(
        &mut self,
        tx: &Transaction<'_>,
        ids: &[&str],
    ) -> Result<BTreeMap<String, i64>> {
        let sql = format!(
            "SELECT {TALLY_COLUMNS} FROM commands WHERE command_id = ANY($1) ORDER BY seq FOR UPDATE"
        );
        let mut found = BTreeMap::new();
        for row in query(tx, &sql, &[&ids]).await? {
            let seq: i64 = col(&row, 0)?;
            let id: &str = col(&row, 9)?;
            found.insert(id.to_string(), seq);
            if let Entry::Vacant(e) = self.touched.entry(seq) {
                e.insert(locked_from_row(&row)?);
            }
        }
        Ok(found)
    }

    /// Locks and loads the command with this id; its seq, or `None` when there is none.
    pub(crate) async fn lock_id(&mut self, tx: &Transaction<'_>, id: &str) -> Result<Option<i64>> {
        let sql = format!("SELECT {TALLY_COLUMNS} FROM commands WHERE command_id = $1 FOR UPDATE");
        let Some(row) = query_opt(tx, &sql, &[&id]).await? else {
            return Ok(None);
        };
        let seq: i64 = col(&row, 0)?;
        if let Entry::Vacant(e) = self.touched.entry(seq) {
            e.insert(locked_from_row(&row)?);
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
        self.record_applied(inv, to, released)
    }

    /// Books a change from `inv.state` to `to` that the caller's own compare-and-set applied (a
    /// batched UPDATE) into the locked command's tally and the effects. `None` when the command
    /// is not locked by this transaction (nothing is booked).
    pub(crate) fn record_applied(
        &mut self,
        inv: &InvocationRef,
        to: InvocationState,
        released: bool,
    ) -> Result<Option<InvocationState>> {
        let Some(locked) = self.touched.get_mut(&inv.command_seq) else {
            return Ok(None);
        };
        locked.dirty = true;
        locked.tally.record(inv.state, to, released);
        self.effects.invocation_changed(InvocationChange {
            command_id: command_id(&inv.command_id)?,
            instance_id: instance_id(&inv.instance_id)?,
            from: inv.state,
            to,
        });
        Ok(Some(to))
    }

    /// Locks a command into this transaction so its rollout advances at the end (a new command).
    pub(crate) async fn touch(&mut self, tx: &Transaction<'_>, command_seq: i64) -> Result<()> {
        self.lock(tx, [command_seq]).await?;
        if let Some(locked) = self.touched.get_mut(&command_seq) {
            locked.dirty = true;
        }
        Ok(())
    }

    /// Records that CancelCommand was called for the whole (locked) command.
    pub(crate) fn request_cancel(&mut self, command_seq: i64) {
        if let Some(locked) = self.touched.get_mut(&command_seq) {
            locked.tally.cancel_requested = true;
            locked.dirty = true;
        }
    }

    /// Advances every changed command's rollout, then rewrites counts, rollout counters, status,
    /// status details and the terminal flag. Returns what the transaction changed.
    pub(crate) async fn flush(mut self, tx: &Transaction<'_>) -> Result<Effects> {
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
            let Some(locked) = self.touched.get(seq) else {
                continue;
            };
            let tally = &locked.tally;
            let agg = tally.aggregate();
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
            self.effects
                .command_changed(locked.id.clone(), tally.loaded_state, agg.state);
        }
        let effects = self.effects.settled();
        let now = fleetrun_core::clock::now_millis();
        let notices: Vec<_> = self
            .touched
            .values()
            .filter_map(|l| l.notify.as_ref())
            .flat_map(|spec| spec.notices(&effects, now))
            .collect();
        if !notices.is_empty() {
            let column = |f: fn(&fleetrun_core::notification::Notice) -> String| -> Vec<String> {
                notices.iter().map(f).collect()
            };
            let ids = column(|n| n.message_id.clone());
            let topics = column(|n| n.topic_arn.clone());
            let bodies = column(|n| n.body.clone());
            let times: Vec<i64> = notices.iter().map(|n| n.event_time).collect();
            execute(
                tx,
                "INSERT INTO notification_outbox
                     (message_id, topic_arn, body, event_time, next_attempt_at)
                 SELECT id, topic, body, at, at
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
                     AS n(id, topic, body, at)
                 ON CONFLICT (message_id) DO NOTHING",
                &[&ids, &topics, &bodies, &times],
            )
            .await?;
        }
        Ok(effects)
    }
}
