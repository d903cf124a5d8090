//! The S3 upload queue on PostgreSQL: as `sqlite/uploads.rs`, leased with `FOR UPDATE SKIP
//! LOCKED` so several servers never upload the same invocation at once.

use deadpool_postgres::{GenericClient, Transaction};
use fleetrun_core::clock::Millis;
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::s3_output::UploadJob;

use super::{col, command_id, execute, instance_id, query, query_one, to_i64, Result};

/// Inside a finish: queues the invocation's upload, due at once.
pub(crate) async fn queue(
    tx: &Transaction<'_>,
    command_seq: i64,
    node: &InstanceId,
    now: Millis,
) -> Result<()> {
    execute(
        tx,
        "INSERT INTO s3_uploads (command_seq, instance_id, next_attempt_at) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        &[&command_seq, &node.as_str(), &now],
    )
    .await?;
    Ok(())
}

pub(crate) async fn lease<C: GenericClient>(
    c: &C,
    now: Millis,
    lease_ms: Millis,
    limit: usize,
) -> Result<Vec<UploadJob>> {
    let rows = query(
        c,
        "WITH due AS (
             SELECT command_seq, instance_id FROM s3_uploads WHERE next_attempt_at <= $1
             ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
         UPDATE s3_uploads u SET attempts = u.attempts + 1, next_attempt_at = $2
         FROM due, commands c
         WHERE u.command_seq = due.command_seq AND u.instance_id = due.instance_id
           AND c.seq = u.command_seq
         RETURNING c.command_id, u.instance_id, u.attempts",
        &[&now, &now.saturating_add(lease_ms), &to_i64(limit)],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(UploadJob {
                command_id: command_id(col(r, 0)?)?,
                instance_id: instance_id(col(r, 1)?)?,
                attempts: u32::try_from(col::<i32>(r, 2)?).unwrap_or(0),
            })
        })
        .collect()
}

const WHERE_JOB: &str = "command_seq = (SELECT seq FROM commands WHERE command_id = $1)
     AND instance_id = $2";

pub(crate) async fn done<C: GenericClient>(
    c: &C,
    command: &CommandId,
    node: &InstanceId,
) -> Result<()> {
    execute(
        c,
        &format!("DELETE FROM s3_uploads WHERE {WHERE_JOB}"),
        &[&command.as_str(), &node.as_str()],
    )
    .await?;
    Ok(())
}

pub(crate) async fn retry_at<C: GenericClient>(
    c: &C,
    command: &CommandId,
    node: &InstanceId,
    at: Millis,
) -> Result<()> {
    execute(
        c,
        &format!("UPDATE s3_uploads SET next_attempt_at = $3 WHERE {WHERE_JOB}"),
        &[&command.as_str(), &node.as_str(), &at],
    )
    .await?;
    Ok(())
}

pub(crate) async fn backlog<C: GenericClient>(c: &C) -> Result<u64> {
    let row = query_one(c, "SELECT COUNT(*) FROM s3_uploads", &[]).await?;
    Ok(u64::try_from(col::<i64>(&row, 0)?).unwrap_or(0))
}
