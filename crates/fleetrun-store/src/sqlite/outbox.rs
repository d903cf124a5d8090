//! The notification outbox: notices the transitions wrote (`lifecycle::Transitions::flush`),
//! leased to the server's deliverer until they are delivered.

use fleetrun_core::clock::Millis;
use fleetrun_core::notification::OutboxEntry;
use rusqlite::{params, Connection};

use super::Result;

/// Leases the due notices in one write transaction (the writer is the only writer, so nothing
/// else leases between the read and the update).
pub(crate) fn lease(
    conn: &mut Connection,
    now: Millis,
    lease_ms: Millis,
    limit: usize,
) -> Result<Vec<OutboxEntry>> {
    let tx = conn.savepoint()?;
    let due: Vec<OutboxEntry> = {
        let mut stmt = tx.prepare_cached(
            "SELECT message_id, topic_arn, body, event_time, attempts FROM notification_outbox
             WHERE next_attempt_at <= ?1 ORDER BY next_attempt_at, event_time LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now, super::to_i64(limit)], |r| {
            Ok(OutboxEntry {
                message_id: r.get(0)?,
                topic_arn: r.get(1)?,
                body: r.get(2)?,
                event_time: r.get(3)?,
                attempts: r.get::<_, u32>(4)?.saturating_add(1),
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    {
        let mut lease = tx.prepare_cached(
            "UPDATE notification_outbox SET attempts = attempts + 1, next_attempt_at = ?2
             WHERE message_id = ?1",
        )?;
        for e in &due {
            lease.execute(params![e.message_id, now.saturating_add(lease_ms)])?;
        }
    }
    tx.commit()?;
    Ok(due)
}

pub(crate) fn delivered(conn: &mut Connection, message_id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM notification_outbox WHERE message_id = ?1")?
        .execute([message_id])?;
    Ok(())
}

pub(crate) fn retry_at(conn: &mut Connection, message_id: &str, at: Millis) -> Result<()> {
    conn.prepare_cached(
        "UPDATE notification_outbox SET next_attempt_at = ?2 WHERE message_id = ?1",
    )?
    .execute(params![message_id, at])?;
    Ok(())
}

pub(crate) fn backlog(conn: &Connection) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM notification_outbox")?
        .query_row([], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}
