//! Agent polls (claims) and agent reports (finishes), applied **in batches**: every claim or
//! finish that arrives while the previous batch runs goes into the next one, in one transaction
//! whose statements each cover the whole batch (`= ANY($1)`, `unnest(...)`).
//!
//! Why: every claim and every report of one command changes that command's counters, so each holds
//! the command's row lock until it commits. One at a time, a fan-out to 10,000 nodes is 20,000
//! transactions of about ten round trips each, one after the other behind that lock. In batches,
//! it is a few dozen transactions of about ten statements each (ARCHITECTURE.md, "The PostgreSQL
//! backend"). The rules are the same as for one poll: `fleetrun_core::lifecycle::reconcile_held`,
//! `fleetrun_core::status::transition`, `Tally`, applied by `Transitions` under the row locks.
//!
//! A node polls at most once per batch and an invocation is reported at most once per batch (the
//! batcher holds repeats back for the next one), so each statement's read is the truth for every
//! job in it.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{GenericClient, Transaction};
use fleetrun_core::clock::Millis;
use fleetrun_core::command::{Claim, Delivery, Finished, Report};
use fleetrun_core::document::Plan;
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::lifecycle::{reconcile_held, report_times, HeldAction};
use fleetrun_core::status::{transition, InvocationEvent, InvocationState};
use fleetrun_core::CoreError;

use super::transitions::{InvocationRef, Transitions};
use super::{col, command_id, execute, invocation_state, query, query_opt, Result};

/// One agent poll: see [`fleetrun_core::Store::claim`].
pub(crate) struct ClaimJob {
    pub(crate) node: InstanceId,
    pub(crate) session: String,
    pub(crate) known: Vec<CommandId>,
    pub(crate) now: Millis,
}

/// One agent report: see [`fleetrun_core::Store::finish`].
pub(crate) struct FinishJob {
    pub(crate) node: InstanceId,
    pub(crate) report: Report,
    pub(crate) now: Millis,
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

/// The commands a poll of these nodes may change: those of the invocations they hold
/// (InProgress/Cancelling) and of those released to them and waiting (Pending/Delayed,
/// unexpired). Read before locking; the locked re-reads below decide.
pub(crate) const CANDIDATES_SQL: &str = "SELECT DISTINCT i.command_seq
     FROM invocations i JOIN commands c ON c.seq = i.command_seq
     WHERE i.instance_id = ANY($1)
       AND (i.state IN ('InProgress', 'Cancelling')
            OR (i.state IN ('Pending', 'Delayed') AND i.released AND c.expires_at > $2))";

/// These nodes' invocations that their agents hold (InProgress/Cancelling) among the locked
/// commands, oldest first.
pub(crate) const HELD_SQL: &str =
    "SELECT i.command_seq, i.command_id, i.state, i.delivered_session,
        i.cancel_sent, c.document_name, c.plan_json, i.instance_id, i.requested_at
     FROM invocations i JOIN commands c ON c.seq = i.command_seq
     WHERE i.instance_id = ANY($1) AND i.state IN ('InProgress', 'Cancelling')
       AND c.expires_at > $2 AND i.command_seq = ANY($3)
     ORDER BY i.requested_at, i.command_seq";

/// These nodes' invocations released to them and waiting for delivery (Pending/Delayed) of
/// unexpired commands among the locked ones, oldest first.
pub(crate) const WAITING_SQL: &str =
    "SELECT i.command_seq, i.command_id, i.state, i.delivered_session,
        i.cancel_sent, c.document_name, c.plan_json, i.instance_id, i.requested_at
     FROM invocations i JOIN commands c ON c.seq = i.command_seq
     WHERE i.instance_id = ANY($1) AND i.state IN ('Pending', 'Delayed') AND i.released
       AND c.expires_at > $2 AND i.command_seq = ANY($3)
     ORDER BY i.requested_at, i.command_seq";

/// Delivers a batch of waiting invocations with one compare-and-set: each row moves from the
/// state read to InProgress only if it still holds that state.
const DELIVER_SQL: &str = "UPDATE invocations i
     SET state = u.to_state, status = u.to_status, delivered_session = u.session,
         started_at = $5, cancel_sent = FALSE
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $6::text[], $7::text[])
          AS u(command_id, instance_id, from_state, session, to_state, to_status)
     WHERE i.command_id = u.command_id AND i.instance_id = u.instance_id
       AND i.state = u.from_state
     RETURNING i.command_id, i.instance_id, i.released";

/// Runs [`HELD_SQL`] or [`WAITING_SQL`] for `nodes`.
async fn nodes_work(
    tx: &Transaction<'_>,
    sql: &str,
    nodes: &[&str],
    now: Millis,
    locked: &[i64],
) -> Result<Vec<NodeWork>> {
    let rows = query(tx, sql, &[&nodes, &now, &locked]).await?;
    rows.iter()
        .map(|r| {
            Ok(NodeWork {
                inv: InvocationRef {
                    command_seq: col(r, 0)?,
                    command_id: col(r, 1)?,
                    instance_id: col(r, 7)?,
                    state: invocation_state(col(r, 2)?)?,
                },
                delivered_session: col(r, 3)?,
                cancel_sent: col(r, 4)?,
                document_name: col(r, 5)?,
                plan_json: col(r, 6)?,
                requested_at: col(r, 8)?,
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

/// A batch of agent polls, each node at most once; one [`Claim`] per job, in order. The steps,
/// each one statement for the whole batch:
/// 1. lock the nodes' rows (the heartbeat), in id order, then the commands the polls may change,
///    in seq order (the lock order everywhere: nodes, then commands by seq);
/// 2. reconcile what each agent holds: an invocation it should hold but does not list in `known`
///    was either handed out on this same session and the answer lost (delivered again, in
///    `Claim::resent`) or died with a previous agent process (`LostByAgent`);
/// 3. cancellations not yet sent for invocations an agent holds;
/// 4. new work: Pending/Delayed invocations of unexpired commands become InProgress.
///
/// The batch's effects (other nodes woken as rollouts moved on, never a polling node) ride on the
/// first claim.
pub(crate) async fn claim_batch(tx: &Transaction<'_>, jobs: &[ClaimJob]) -> Result<Vec<Claim>> {
    let Some(now) = jobs.iter().map(|j| j.now).max() else {
        return Ok(Vec::new());
    };
    let mut nodes: Vec<&str> = jobs.iter().map(|j| j.node.as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    query(
        tx,
        "SELECT 1 FROM nodes WHERE instance_id = ANY($1) ORDER BY instance_id FOR UPDATE",
        &[&nodes],
    )
    .await?;
    execute(
        tx,
        "UPDATE nodes SET last_ping_at = $2, signed_off_at = NULL WHERE instance_id = ANY($1)",
        &[&nodes, &now],
    )
    .await?;
    let mut tr = Transitions::default();
    // Work released to these nodes by a transaction that committed after the candidates were read
    // shows up in the next read; a few rounds catch it, the next poll catches the rest.
    for _ in 0..3 {
        let rows = query(tx, CANDIDATES_SQL, &[&nodes, &now]).await?;
        let seqs: Vec<i64> = rows.iter().map(|r| col(r, 0)).collect::<Result<_>>()?;
        if seqs.iter().all(|s| tr.touched.contains_key(s)) {
            break;
        }
        tr.lock(tx, seqs).await?;
    }
    let locked: Vec<i64> = tr.touched.keys().copied().collect();
    let at: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.node.as_str(), i))
        .collect();
    let known: Vec<HashSet<&str>> = jobs
        .iter()
        .map(|j| j.known.iter().map(CommandId::as_str).collect())
        .collect();
    let mut claims: Vec<Claim> = jobs.iter().map(|_| Claim::default()).collect();

    for held in nodes_work(tx, HELD_SQL, &nodes, Millis::MIN, &locked).await? {
        let Some(&i) = at.get(held.inv.instance_id.as_str()) else {
            continue;
        };
        let action = reconcile_held(
            held.inv.state,
            known[i].contains(held.inv.command_id.as_str()),
            held.delivered_session.as_deref() == Some(jobs[i].session.as_str()),
            held.cancel_sent,
        );
        match action {
            HeldAction::Resend => claims[i].resent.push(held.delivery()?),
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
                claims[i].cancels.push(command_id(&held.inv.command_id)?);
            }
            HeldAction::Keep => {}
        }
    }

    // New work: one compare-and-set for every waiting invocation of the batch.
    let waiting = nodes_work(tx, WAITING_SQL, &nodes, now, &locked).await?;
    let mut deliver: Vec<(&NodeWork, InvocationState)> = Vec::with_capacity(waiting.len());
    for work in &waiting {
        if let Some(to) = transition(work.inv.state, InvocationEvent::Delivered) {
            deliver.push((work, to));
        }
    }
    if !deliver.is_empty() {
        let column = |f: &dyn Fn(&(&NodeWork, InvocationState)) -> String| -> Vec<String> {
            deliver.iter().map(f).collect()
        };
        let ids = column(&|(w, _)| w.inv.command_id.clone());
        let insts = column(&|(w, _)| w.inv.instance_id.clone());
        let from = column(&|(w, _)| w.inv.state.as_str().to_string());
        let sessions = column(&|(w, _)| {
            at.get(w.inv.instance_id.as_str())
                .map_or_else(String::new, |&i| jobs[i].session.clone())
        });
        let to = column(&|(_, to)| to.as_str().to_string());
        let to_status = column(&|(_, to)| to.status().as_str().to_string());
        let rows = query(
            tx,
            DELIVER_SQL,
            &[&ids, &insts, &from, &sessions, &now, &to, &to_status],
        )
        .await?;
        let mut delivered: HashMap<(String, String), bool> = HashMap::with_capacity(rows.len());
        for row in &rows {
            delivered.insert((col(row, 0)?, col(row, 1)?), col(row, 2)?);
        }
        // In the order read (oldest first per node), booking only what the update changed.
        for (work, to) in deliver {
            let key = (work.inv.command_id.clone(), work.inv.instance_id.clone());
            let Some(&released) = delivered.get(&key) else {
                continue;
            };
            if tr.record_applied(&work.inv, to, released)?.is_none() {
                continue;
            }
            if let Some(&i) = at.get(work.inv.instance_id.as_str()) {
                claims[i].runs.push(work.delivery()?);
            }
        }
    }
    let mut effects = tr.flush(tx).await?;
    // The polling nodes never need a wake-up: they are being answered.
    let polling: HashSet<&str> = nodes.iter().copied().collect();
    effects.wake.retain(|n| !polling.contains(n.as_str()));
    if let Some(first) = claims.first_mut() {
        first.effects = effects;
    }
    Ok(claims)
}

/// The invocations a batch of reports is about, read under the command locks.
const REPORTED_SQL: &str =
    "SELECT i.command_id, i.instance_id, i.state, i.started_at, i.command_seq, c.log_group,
            c.s3_bucket
     FROM invocations i
     JOIN unnest($1::text[], $2::text[]) AS u(command_id, instance_id)
       ON i.command_id = u.command_id AND i.instance_id = u.instance_id
     JOIN commands c ON c.seq = i.command_seq";

/// Records a batch of final reports with one compare-and-set.
const FINISH_SQL: &str = "UPDATE invocations i
     SET state = u.to_state, status = u.to_status, response_code = u.response_code,
         started_at = u.started_at, ended_at = u.ended_at, steps_json = u.steps_json
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                 $7::bigint[], $8::bigint[], $9::text[])
          AS u(command_id, instance_id, from_state, to_state, to_status, response_code,
               started_at, ended_at, steps_json)
     WHERE i.command_id = u.command_id AND i.instance_id = u.instance_id
       AND i.state = u.from_state
     RETURNING i.command_id, i.instance_id, i.released";

/// A batch of agents' final reports, each invocation at most once; one answer per job, in order
/// (`NoSuchInvocation` for a report about an invocation that does not exist; `applied` false
/// when the invocation had already left InProgress/Cancelling). The batch's effects ride on the
/// first report that changed something.
pub(crate) async fn finish_batch(
    tx: &Transaction<'_>,
    jobs: &[FinishJob],
) -> Result<Vec<std::result::Result<Finished, CoreError>>> {
    let mut tr = Transitions::default();
    let mut ids: Vec<&str> = jobs.iter().map(|j| j.report.command_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let seqs = tr.lock_ids(tx, &ids).await?;
    let cmd_ids: Vec<&str> = jobs.iter().map(|j| j.report.command_id.as_str()).collect();
    let insts: Vec<&str> = jobs.iter().map(|j| j.node.as_str()).collect();
    let mut found: HashMap<(String, String), (InvocationState, Option<Millis>)> = HashMap::new();
    let mut log_groups: HashMap<String, String> = HashMap::new();
    let mut with_bucket: HashSet<String> = HashSet::new();
    for row in query(tx, REPORTED_SQL, &[&cmd_ids, &insts]).await? {
        let state = invocation_state(col(&row, 2)?)?;
        let command: String = col(&row, 0)?;
        if let Some(group) = col::<Option<String>>(&row, 5)? {
            log_groups.insert(command.clone(), group);
        }
        if col::<Option<String>>(&row, 6)?.is_some() {
            with_bucket.insert(command.clone());
        }
        found.insert((command, col(&row, 1)?), (state, col(&row, 3)?));
    }

    /// A report that passed the checks, waiting for the batched update.
    struct Pending {
        job: usize,
        inv: InvocationRef,
        to: InvocationState,
        times: fleetrun_core::lifecycle::ReportTimes,
    }
    let mut answers: Vec<Option<std::result::Result<Finished, CoreError>>> =
        jobs.iter().map(|_| None).collect();
    let mut pending: Vec<Pending> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let cid = job.report.command_id.as_str();
        let key = (cid.to_string(), job.node.as_str().to_string());
        let (Some(&seq), Some(&(state, delivered_at))) = (seqs.get(cid), found.get(&key)) else {
            answers[i] = Some(Err(CoreError::NoSuchInvocation(
                cid.to_string(),
                job.node.to_string(),
            )));
            continue;
        };
        let Some(to) = transition(state, InvocationEvent::Finished(job.report.outcome)) else {
            answers[i] = Some(Ok(Finished {
                applied: false,
                effects: Default::default(),
            }));
            continue;
        };
        pending.push(Pending {
            job: i,
            inv: InvocationRef {
                command_seq: seq,
                command_id: key.0,
                instance_id: key.1,
                state,
            },
            to,
            // `started_at` holds the delivery time until the report replaces it.
            times: report_times(&job.report, job.now, delivered_at),
        });
    }

    let mut changed: HashMap<(String, String), bool> = HashMap::new();
    if !pending.is_empty() {
        let text =
            |f: &dyn Fn(&Pending) -> String| -> Vec<String> { pending.iter().map(f).collect() };
        let number = |f: &dyn Fn(&Pending) -> i64| -> Vec<i64> { pending.iter().map(f).collect() };
        let steps = pending
            .iter()
            .map(|p| serde_json::to_string(&p.times.steps))
            .collect::<std::result::Result<Vec<String>, _>>()?;
        let rows = query(
            tx,
            FINISH_SQL,
            &[
                &text(&|p| p.inv.command_id.clone()),
                &text(&|p| p.inv.instance_id.clone()),
                &text(&|p| p.inv.state.as_str().to_string()),
                &text(&|p| p.to.as_str().to_string()),
                &text(&|p| p.to.status().as_str().to_string()),
                &number(&|p| jobs[p.job].report.response_code),
                &number(&|p| p.times.started_at),
                &number(&|p| p.times.ended_at),
                &steps,
            ],
        )
        .await?;
        for row in &rows {
            changed.insert((col(row, 0)?, col(row, 1)?), col(row, 2)?);
        }
    }
    let mut applied_jobs = Vec::new();
    for p in &pending {
        let key = (p.inv.command_id.clone(), p.inv.instance_id.clone());
        let applied = match changed.get(&key) {
            Some(&released) => tr.record_applied(&p.inv, p.to, released)?.is_some(),
            None => false,
        };
        if applied {
            applied_jobs.push(p.job);
            if let Some(group) = log_groups.get(&p.inv.command_id) {
                let job = &jobs[p.job];
                super::output::store_report_output(
                    tx,
                    p.inv.command_seq,
                    group,
                    &job.node,
                    &job.report.command_id,
                    &job.report,
                    job.now,
                )
                .await?;
            }
            if with_bucket.contains(&p.inv.command_id) {
                let job = &jobs[p.job];
                super::uploads::queue(tx, p.inv.command_seq, &job.node, job.now).await?;
            }
        }
        answers[p.job] = Some(Ok(Finished {
            applied,
            effects: Default::default(),
        }));
    }
    let effects = tr.flush(tx).await?;
    if let Some(&first) = applied_jobs.first() {
        if let Some(Some(Ok(finished))) = answers.get_mut(first) {
            finished.effects = effects;
        }
    }
    Ok(answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(CoreError::Store("report not answered".into()))))
        .collect())
}

/// Splits `jobs` into the first batch (each key once) and the rest, keeping order.
pub(crate) fn first_unique<T, K: Eq + std::hash::Hash>(
    jobs: Vec<T>,
    key: impl Fn(&T) -> K,
) -> (Vec<T>, Vec<T>) {
    let mut seen = HashSet::new();
    let (mut now, mut later) = (Vec::new(), Vec::new());
    for job in jobs {
        if seen.insert(key(&job)) {
            now.push(job);
        } else {
            later.push(job);
        }
    }
    (now, later)
}
