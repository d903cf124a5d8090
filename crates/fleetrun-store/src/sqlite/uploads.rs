//! The S3 upload queue: one row per finished invocation whose command names an output bucket,
//! leased to the server's uploader until its objects are stored.

use fleetrun_core::clock::Millis;
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::s3_output::UploadJob;
use rusqlite::{params, Connection};

use super::{command_id, instance_id, to_i64, Result};

/// Inside a finish: queues the invocation's upload, due at once.
pub(crate) fn queue(
    tx: &Connection,
    command_seq: i64,
    node: &InstanceId,
    now: Millis,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO s3_uploads (command_seq, instance_id, next_attempt_at)
         VALUES (?1, ?2, ?3)",
    )?
    .execute(params![command_seq, node.as_str(), now])?;
    Ok(())
}

pub(crate) fn lease(
    conn: &mut Connection,
    now: Millis,
    lease_ms: Millis,
    limit: usize,
) -> Result<Vec<UploadJob>> {
    let tx = conn.savepoint()?;
    let due: Vec<(i64, String, String, u32)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT u.command_seq, c.command_id, u.instance_id, u.attempts FROM s3_uploads u
             JOIN commands c ON c.seq = u.command_seq
             WHERE u.next_attempt_at <= ?1 ORDER BY u.next_attempt_at LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now, to_i64(limit)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut jobs = Vec::with_capacity(due.len());
    {
        let mut lease = tx.prepare_cached(
            "UPDATE s3_uploads SET attempts = attempts + 1, next_attempt_at = ?3
             WHERE command_seq = ?1 AND instance_id = ?2",
        )?;
        for (seq, command, node, attempts) in due {
            lease.execute(params![seq, node, now.saturating_add(lease_ms)])?;
            jobs.push(UploadJob {
                command_id: command_id(&command)?,
                instance_id: instance_id(&node)?,
                attempts: attempts.saturating_add(1),
            });
        }
    }
    tx.commit()?;
    Ok(jobs)
}

const WHERE_JOB: &str = "command_seq = (SELECT seq FROM commands WHERE command_id = ?1)
     AND instance_id = ?2";

pub(crate) fn done(conn: &mut Connection, command: &CommandId, node: &InstanceId) -> Result<()> {
    conn.prepare_cached(&format!("DELETE FROM s3_uploads WHERE {WHERE_JOB}"))?
        .execute(params![command.as_str(), node.as_str()])?;
    Ok(())
}

pub(crate) fn retry_at(
    conn: &mut Connection,
    command: &CommandId,
    node: &InstanceId,
    at: Millis,
) -> Result<()> {
    conn.prepare_cached(&format!(
        "UPDATE s3_uploads SET next_attempt_at = ?3 WHERE {WHERE_JOB}"
    ))?
    .execute(params![command.as_str(), node.as_str(), at])?;
    Ok(())
}

pub(crate) fn backlog(conn: &Connection) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM s3_uploads")?
        .query_row([], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}
