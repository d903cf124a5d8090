//! The notification outbox on PostgreSQL: notices the transitions wrote (`Transitions::flush`),
//! leased to whichever server's deliverer asks first.

use deadpool_postgres::GenericClient;
use fleetrun_core::clock::Millis;
use fleetrun_core::notification::OutboxEntry;

use super::{col, execute, query, query_one, to_i64, Result};

/// One statement: `FOR UPDATE SKIP LOCKED` lets several servers lease at once without waiting
/// for, or getting, each other's rows.
pub(crate) async fn lease<C: GenericClient>(
    c: &C,
    now: Millis,
    lease_ms: Millis,
    limit: usize,
) -> Result<Vec<OutboxEntry>> {
    let rows = query(
        c,
        "UPDATE notification_outbox SET attempts = attempts + 1, next_attempt_at = $2
         WHERE message_id IN (
             SELECT message_id FROM notification_outbox WHERE next_attempt_at <= $1
             ORDER BY next_attempt_at, event_time LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING message_id, topic_arn, body, event_time, attempts",
        &[&now, &now.saturating_add(lease_ms), &to_i64(limit)],
    )
    .await?;
    let mut due = rows
        .iter()
        .map(|r| {
            Ok(OutboxEntry {
                message_id: col(r, 0)?,
                topic_arn: col(r, 1)?,
                body: col(r, 2)?,
                event_time: col(r, 3)?,
                attempts: u32::try_from(col::<i32>(r, 4)?).unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    due.sort_by_key(|e| e.event_time);
    Ok(due)
}

pub(crate) async fn delivered<C: GenericClient>(c: &C, message_id: &str) -> Result<()> {
    execute(
        c,
        "DELETE FROM notification_outbox WHERE message_id = $1",
        &[&message_id],
    )
    .await?;
    Ok(())
}

pub(crate) async fn retry_at<C: GenericClient>(c: &C, message_id: &str, at: Millis) -> Result<()> {
    execute(
        c,
        "UPDATE notification_outbox SET next_attempt_at = $2 WHERE message_id = $1",
        &[&message_id, &at],
    )
    .await?;
    Ok(())
}

pub(crate) async fn backlog<C: GenericClient>(c: &C) -> Result<u64> {
    let row = query_one(c, "SELECT COUNT(*) FROM notification_outbox", &[]).await?;
    Ok(u64::try_from(col::<i64>(&row, 0)?).unwrap_or(0))
}
